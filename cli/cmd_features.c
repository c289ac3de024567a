/*
 * cmd_features.c - `patchcore features`: run a backbone on one image and write each requested
 * layer's activation (C x H x W float32) to PREFIX.<layer>.npy.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore features [--weights FILE] [--backbone NAME] --layer NAME [--layer NAME ...]\n"
            "                          [--resize R] [--crop S] [--bn STATS] [--precision P] [--threads N]\n"
            "                          IMAGE -o PREFIX\n"
            "\n"
            "Decode IMAGE, preprocess it as torchvision does (Resize(R) -> CenterCrop(S) -> Normalize), run\n"
            "the backbone up to the deepest requested layer and write each requested layer's activation\n"
            "(C x H x W float32) to PREFIX.<layer>.npy, e.g. PREFIX.layer2.npy (PREFIX.denseblock2.npy for a\n"
            "DenseNet).\n"
            "\n"
            "options:\n"
            "  --weights FILE   torchvision state dict (.pth, zip or legacy) or .safetensors (default: the\n"
            "                   file named by $PATCHCORE_WEIGHTS, else torchvision's cache\n"
            "                   $TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints, for\n"
            "                   --backbone's standard file name)\n"
            "  --backbone NAME  resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2,\n"
            "                   wide_resnet101_2, resnext50_32x4d, resnext101_32x8d, densenet121, densenet161,\n"
            "                   densenet169, densenet201 (default: inferred from the weights' tensor shapes;\n"
            "                   wide_resnet50_2 when no --weights is given)\n"
            "  --layer NAME     layer1..layer4 (ResNets), denseblock1..denseblock4 (DenseNets: the dense\n"
            "                   block's output) or 1..4; repeatable (default: the second and third)\n"
            "  --resize R       shorter side after resizing (default 256)\n"
            "  --crop S         side of the centre crop (default 224)\n"
            "  --bn STATS       batch-norm statistics: reference (default: the reference code's warm-up, one\n"
            "                   training-mode pass of a ones image of S x S up to the deepest --layer) or\n"
            "                   trained (the weights' own running statistics)\n"
            "  --precision P    backbone arithmetic: f32 (default) or bf16 (bfloat16 convolutions; needs a\n"
            "                   CPU with AVX512-BF16 or AMX, else an error; docs/precision.md)\n"
            "  --threads N      threads (default: the CPUs this process may use, docs/threads.md)\n"
            "  -o, --output P   output prefix (required)\n"
            "  -h, --help       this help\n");
}

int cmd_features(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    int32_t resize = 256, crop = 224, threads = 0;
    uint32_t mask = 0;
    const char *names[8]; /* the --layer values, checked against the architecture once it is known */
    int nnames = 0;
    pc_bn_stats bn = PC_BN_REFERENCE;
    pc_precision prec = PC_PRECISION_F32;
    pc_arch arch = PC_ARCH_UNKNOWN;
    const char *weights = NULL, *input = NULL, *prefix = NULL, *v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--weights")) {
            if (!cli_take_value(argc, argv, &i, "--weights", &weights)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--backbone")) {
            if (!cli_take_value(argc, argv, &i, "--backbone", &v)) return CLI_EXIT_USAGE;
            if ((arch = pc_arch_from_name(v)) == PC_ARCH_UNKNOWN) {
                cli_error("features: unknown --backbone '%s' (see patchcore features --help)", v);
                return CLI_EXIT_USAGE;
            }
        } else if (cli_match(a, "--layer")) {
            if (!cli_take_value(argc, argv, &i, "--layer", &v)) return CLI_EXIT_USAGE;
            const int32_t ln = pc_layer_from_name(PC_ARCH_UNKNOWN, v);
            if (!ln) {
                cli_error("features: --layer '%s' is not one of layer1..layer4, denseblock1..denseblock4", v);
                return CLI_EXIT_USAGE;
            }
            if (nnames < 8) names[nnames++] = v;
            mask |= PC_LAYER(ln);
        } else if (cli_match(a, "--resize")) {
            if (!cli_take_value(argc, argv, &i, "--resize", &v) || !cli_parse_int("--resize", v, 1, 65536, &resize))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--crop")) {
            if (!cli_take_value(argc, argv, &i, "--crop", &v) || !cli_parse_int("--crop", v, 1, 65536, &crop))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--bn")) {
            if (!cli_take_value(argc, argv, &i, "--bn", &v) || !cli_parse_bn("--bn", v, &bn)) return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--precision")) {
            if (!cli_take_value(argc, argv, &i, "--precision", &v) || !cli_parse_precision("--precision", v, &prec))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--threads")) {
            if (!cli_take_value(argc, argv, &i, "--threads", &v) || !cli_parse_int("--threads", v, 0, 4096, &threads))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--output")) {
            if (!cli_take_value(argc, argv, &i, "--output", &prefix)) return CLI_EXIT_USAGE;
        } else if (strcmp(a, "-o") == 0) {
            if (!cli_take_value(argc, argv, &i, "-o", &prefix)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("features: unknown option '%s' (see patchcore features --help)", a);
            return CLI_EXIT_USAGE;
        } else if (!input) {
            input = a;
        } else {
            cli_error("features: one IMAGE only ('%s' is extra)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!input || !prefix) {
        cli_error("features: needs IMAGE and -o PREFIX (see patchcore features --help)");
        return CLI_EXIT_USAGE;
    }
    if (!mask) mask = PC_LAYER(2) | PC_LAYER(3);
    pc_set_num_threads(threads);

    char why[256];
    if (!pc_precision_supported(prec, why, sizeof why)) {
        cli_error("features: precision %s is not available on this CPU: %s", pc_precision_name(prec), why);
        return CLI_EXIT_ERROR;
    }
    pc_backbone *bb = NULL;
    pc_backbone_options bo = {.bn_stats = bn, .warmup_size = crop, .precision = prec};
    pc_status st = pc_backbone_load_with(weights, arch, mask, &bo, &bb);
    if (st) {
        cli_error_status(st, "features");
        return CLI_EXIT_ERROR;
    }
    const pc_arch got = pc_backbone_arch(bb);
    for (int k = 0; k < nnames; k++)
        if (!pc_layer_from_name(got, names[k])) { /* layerN of a DenseNet, or denseblockN of a ResNet */
            cli_error("features: --layer '%s' is not a layer of %s (its layers are %s1..%s4)", names[k],
                      pc_arch_name(got), pc_arch_is_densenet(got) ? "denseblock" : "layer",
                      pc_arch_is_densenet(got) ? "denseblock" : "layer");
            pc_backbone_free(bb);
            return CLI_EXIT_USAGE;
        }
    pc_image img;
    if ((st = pc_image_load(input, &img)) != PC_OK) {
        cli_error_status(st, "features");
        pc_backbone_free(bb);
        return CLI_EXIT_ERROR;
    }
    int rc = CLI_EXIT_OK;
    float *x = malloc(sizeof(float) * 3 * (size_t)crop * (size_t)crop);
    float *outs[4] = {0};
    int64_t shapes[4][3];
    for (int l = 1; l <= 4 && x; l++) {
        if (!(mask & PC_LAYER(l))) continue;
        int32_t oh, ow;
        if ((st = pc_backbone_out_size(bb, l, crop, crop, &oh, &ow)) != PC_OK) break;
        shapes[l - 1][0] = pc_backbone_channels(bb, l), shapes[l - 1][1] = oh, shapes[l - 1][2] = ow;
        outs[l - 1] = malloc(sizeof(float) * (size_t)shapes[l - 1][0] * (size_t)oh * (size_t)ow);
        if (!outs[l - 1]) x = (free(x), NULL);
    }
    if (!x) {
        cli_error("features: out of memory");
        rc = CLI_EXIT_ERROR;
    } else if (st || (st = pc_preprocess(x, &img, resize, crop, NULL)) != PC_OK ||
               (st = pc_backbone_forward(bb, x, 1, crop, crop, mask, outs)) != PC_OK) {
        cli_error_status(st, input);
        rc = CLI_EXIT_ERROR;
    } else {
        fprintf(stderr, "patchcore: %s (%s), batch-norm %s, precision %s\n", pc_arch_name(pc_backbone_arch(bb)),
                pc_backbone_path(bb), pc_bn_stats_name(bn), pc_precision_name(prec));
        for (int l = 1; l <= 4; l++) {
            if (!outs[l - 1]) continue;
            size_t n = strlen(prefix) + 24;
            char *path = malloc(n);
            if (!path) {
                rc = CLI_EXIT_ERROR;
                break;
            }
            snprintf(path, n, "%s.%s.npy", prefix, pc_layer_name(got, l));
            if (cli_write_npy_f32(path, outs[l - 1], 3, shapes[l - 1]) != 0) rc = CLI_EXIT_ERROR;
            else printf("%s\t%lld x %lld x %lld\n", path, (long long)shapes[l - 1][0], (long long)shapes[l - 1][1],
                        (long long)shapes[l - 1][2]);
            free(path);
        }
    }
    for (int l = 0; l < 4; l++) free(outs[l]);
    free(x);
    pc_image_free(&img);
    pc_backbone_free(bb);
    return rc;
}
