/*
 * cmd_info.c - `patchcore info`: describe a model file (everything it was built with), or a weights
 * file (detected architecture, the layers it can run to, tensor count).
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore info MODEL\n"
            "       patchcore info --weights FILE\n"
            "\n"
            "Describe a model file: the backbone, layers, preprocessing, feature and coreset settings,\n"
            "the memory bank, the training set size and the calibrated thresholds.\n"
            "With --weights, describe a weights file instead: its format, the architecture its tensor\n"
            "shapes show, the layers complete in it (with their channel counts) and how many tensors\n"
            "and values it holds.\n"
            "\n"
            "options:\n"
            "  --weights FILE  torchvision state dict (.pth, zip or legacy) or .safetensors\n"
            "  -h, --help      this help\n");
}

static int describe_weights(const char *path) {
    pc_weights_info info;
    pc_status st = pc_weights_inspect(path, &info);
    if (st) {
        cli_error_status(st, "info");
        return CLI_EXIT_ERROR;
    }
    const char *why = pc_last_error();
    printf("file:          %s\n", path);
    printf("format:        %s\n", info.format);
    printf("tensors:       %lld (%lld float values)\n", (long long)info.tensor_count, (long long)info.param_count);
    if (info.arch == PC_ARCH_UNKNOWN) {
        printf("architecture:  unknown%s%s\n", why[0] ? " - " : "", why);
        return CLI_EXIT_ERROR;
    }
    printf("architecture:  %s\n", pc_arch_name(info.arch));
    printf("layers:       ");
    if (!info.layer_mask) printf(" none complete (load it with --layer to see what is missing)");
    for (int l = 1; l <= 4; l++)
        if (info.layer_mask & PC_LAYER(l))
            printf(" %s (%d channels)", pc_layer_name(info.arch, l), (int)pc_arch_channels(info.arch, l));
    printf("\n");
    return CLI_EXIT_OK;
}

static const char *sampler_str(pc_sampler s) {
    return s == PC_SAMPLER_APPROX_GREEDY ? "approx (greedy coreset)" : s == PC_SAMPLER_RANDOM ? "random" : "none";
}

/* One single model's settings (an ensemble's member: indented under its heading). */
static void describe_single(const pc_model_info *in, const char *ind) {
    printf("%sbackbone:        %s\n", ind, pc_arch_name(in->arch));
    printf("%slayers:         ", ind);
    for (int i = 0; i < in->n_layers; i++) printf(" %s", pc_layer_name(in->arch, in->layers[i]));
    if (in->tiling.tile)
        printf("\n%stiling:          %dx%d tiles, overlap %g, scale %g, stitch %s (docs/tiles.md)\n", ind,
               (int)in->tiling.tile, (int)in->tiling.tile, in->tiling.overlap, in->tiling.scale,
               in->tiling.stitch == PC_STITCH_MAX ? "max" : "mean");
    else
        printf("\n%spreprocessing:   resize %d, crop %d\n", ind, (int)in->resize, (int)in->crop);
    if (in->bn_stats == PC_BN_REFERENCE)
        printf("%sbatch-norm:      reference (the reference code's warm-up on a ones image of %dx%d)\n", ind,
               (int)in->crop, (int)in->crop);
    else
        printf("%sbatch-norm:      trained (the weights' running statistics)%s\n", ind,
               in->bn_stats_implicit ? "; the model file predates this setting" : "");
    printf("%sprecision:       %s\n", ind, in->precision == PC_PRECISION_BF16
                                              ? "bf16 (bfloat16 backbone convolutions, float32 accumulation)"
                                              : "f32");
    printf("%spatch features:  p=%d, pre-dim %d, dim %d, grid %dx%d\n", ind, (int)in->patch, (int)in->pre_dim,
           (int)in->dim, (int)in->grid_h, (int)in->grid_w);
    printf("%ssampler:         %s, ratio %g, seed %llu\n", ind, sampler_str(in->sampler), in->coreset_ratio,
           (unsigned long long)in->seed);
    printf("%smemory bank:     %lld of %lld patches from %d images\n", ind, (long long)in->bank_size,
           (long long)in->n_patches_total, (int)in->n_train_images);
    if (in->coverage_radius == in->coverage_radius)
        printf("%scoverage:        every training patch within %.6g of the bank (projected; update --rule radius)\n",
               ind, in->coverage_radius);
    printf("%sscoring:         k=%d%s", ind, (int)in->k,
           in->reweight_b      ? ""
           : in->tiling.tile ? ", image score = max of the stitched map\n"
                             : ", image score = max patch score\n");
    if (in->reweight_b) printf(", Eq. 7 reweighting with b=%d\n", (int)in->reweight_b);
}

static int describe_model(const char *path) {
    pc_model *m;
    pc_status st = pc_model_load(path, &m);
    if (st) {
        cli_error_status(st, "info");
        return CLI_EXIT_ERROR;
    }
    pc_model_info in;
    pc_model_get_info(m, &in);
    printf("model:           %s\n", path);
    if (in.n_members <= 1) {
        describe_single(&in, "");
        pc_image roi;
        if (pc_model_roi(m, &roi) == PC_OK && roi.data) { /* docs/roi.md */
            size_t inside = 0, n = (size_t)roi.width * (size_t)roi.height;
            for (size_t k = 0; k < n; k++) inside += roi.data[k] != 0;
            printf("roi:             %dx%d mask, %.1f%% of it inside; the bank holds, and predict scores,\n"
                   "                 only the patches inside it (docs/roi.md)\n",
                   (int)roi.width, (int)roi.height, 100.0 * (double)inside / (double)n);
        }
    } else {
        printf("ensemble:        %d members, scores and maps averaged after train-zscore normalisation (the\n"
               "                 map and geometry are member 1's, %dx%d)\n", (int)in.n_members, (int)in.crop,
               (int)in.crop);
        for (int32_t i = 0; i < in.n_members; i++) {
            pc_model_info mi;
            double z[4];
            pc_model_get_info(pc_model_member(m, i), &mi);
            pc_model_member_norm(m, i, z);
            printf("member %d:\n", (int)i + 1);
            describe_single(&mi, "  ");
            printf("  normalisation:   image score mean %.6g, sd %.6g; map pixel mean %.6g, sd %.6g\n", z[0], z[1], z[2],
                   z[3]);
        }
    }
    if (in.image_threshold == in.image_threshold)
        printf("thresholds:      image %.6g, pixel %.6g, scale %.6g, pixel scale %.6g%s\n", in.image_threshold,
               in.pixel_threshold, in.score_scale, in.pixel_scale,
               in.thresholds_stale ? "\n                 STALE: the bank changed since they were calibrated "
                                     "(update/merge); recalibrate" : "");
    else
        printf("thresholds:      not calibrated\n");
    pc_model_free(m);
    return CLI_EXIT_OK;
}

int cmd_info(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *weights = NULL, *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--weights")) {
            if (!cli_take_value(argc, argv, &i, "--weights", &weights)) return CLI_EXIT_USAGE;
        } else if (a[0] != '-' && !model) {
            model = a;
        } else {
            cli_error("info: unexpected argument '%s' (see patchcore info --help)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!weights == !model) {
        cli_error("info: needs a MODEL or --weights FILE (see patchcore info --help)");
        return CLI_EXIT_USAGE;
    }
    if (model) return describe_model(model);
    return describe_weights(weights);
}
