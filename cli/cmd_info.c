/*
 * cmd_info.c - `patchcore info`: describe a weights file (detected architecture, the layers it can
 * run to, tensor count). Each kind of input has its own describe_* function; a model file
 * (`patchcore info MODEL`) is meant to be added beside describe_weights.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore info --weights FILE\n"
            "\n"
            "Describe a weights file: its format, the architecture its tensor shapes show, the layers\n"
            "complete in it (with their channel counts) and how many tensors and values it holds.\n"
            "\n"
            "options:\n"
            "  --weights FILE  torchvision state dict (.pth, zip or legacy) or .safetensors (required)\n"
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
    /* channels per layer of the ResNet family: basic blocks 64<<s, bottlenecks 4x that */
    const int bottleneck = info.arch != PC_ARCH_RESNET18 && info.arch != PC_ARCH_RESNET34;
    for (int l = 1; l <= 4; l++)
        if (info.layer_mask & PC_LAYER(l)) printf(" layer%d (%d channels)", l, (64 << (l - 1)) * (bottleneck ? 4 : 1));
    printf("\n");
    return CLI_EXIT_OK;
}

int cmd_info(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    const char *weights = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--weights")) {
            if (!cli_take_value(argc, argv, &i, "--weights", &weights)) return CLI_EXIT_USAGE;
        } else {
            cli_error("info: unexpected argument '%s' (see patchcore info --help)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!weights) {
        cli_error("info: needs --weights FILE (see patchcore info --help)");
        return CLI_EXIT_USAGE;
    }
    return describe_weights(weights);
}
