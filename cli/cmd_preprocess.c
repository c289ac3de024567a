/*
 * cmd_preprocess.c - `patchcore preprocess`: decode one image and write the normalised tensor that the
 * backbone sees (torchvision Resize(R) -> CenterCrop(S) -> ToTensor -> Normalize) as a .npy file.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: patchcore preprocess [--resize R] [--crop S] IMAGE -o OUT.npy\n"
            "\n"
            "Decode IMAGE (PNG or JPEG), convert it to RGB as PIL does, and write the 3 x S x S float32\n"
            "tensor of torchvision's Resize(R) -> CenterCrop(S) -> ToTensor -> Normalize(ImageNet mean/std).\n"
            "\n"
            "options:\n"
            "  --resize R      shorter side after resizing (default 256)\n"
            "  --crop S        side of the centre crop; larger than the resized image pads with zeros\n"
            "                  as torchvision does (default 224)\n"
            "  -o, --output F  the .npy file to write (required)\n"
            "  -h, --help      this help\n");
}

int cmd_preprocess(int argc, char **argv) {
    if (cli_wants_help(argc, argv)) {
        usage(stdout);
        return CLI_EXIT_OK;
    }
    int32_t resize = 256, crop = 224;
    const char *input = NULL, *output = NULL, *v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_match(a, "--resize")) {
            if (!cli_take_value(argc, argv, &i, "--resize", &v) || !cli_parse_int("--resize", v, 1, 65536, &resize))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--crop")) {
            if (!cli_take_value(argc, argv, &i, "--crop", &v) || !cli_parse_int("--crop", v, 1, 65536, &crop))
                return CLI_EXIT_USAGE;
        } else if (cli_match(a, "--output")) {
            if (!cli_take_value(argc, argv, &i, "--output", &output)) return CLI_EXIT_USAGE;
        } else if (strcmp(a, "-o") == 0) {
            if (!cli_take_value(argc, argv, &i, "-o", &output)) return CLI_EXIT_USAGE;
        } else if (a[0] == '-' && a[1] != '\0') {
            cli_error("preprocess: unknown option '%s' (see patchcore preprocess --help)", a);
            return CLI_EXIT_USAGE;
        } else if (!input) {
            input = a;
        } else {
            cli_error("preprocess: one IMAGE only ('%s' is extra)", a);
            return CLI_EXIT_USAGE;
        }
    }
    if (!input || !output) {
        cli_error("preprocess: needs IMAGE and -o OUT.npy (see patchcore preprocess --help)");
        return CLI_EXIT_USAGE;
    }
    pc_image img;
    pc_status st = pc_image_load(input, &img);
    if (st) {
        cli_error_status(st, "preprocess");
        return CLI_EXIT_ERROR;
    }
    float *t = malloc(sizeof(float) * 3 * (size_t)crop * (size_t)crop);
    if (!t) {
        pc_image_free(&img);
        cli_error("preprocess: out of memory");
        return CLI_EXIT_ERROR;
    }
    st = pc_preprocess(t, &img, resize, crop, NULL);
    pc_image_free(&img);
    int rc = CLI_EXIT_OK;
    if (st) {
        cli_error_status(st, input);
        rc = CLI_EXIT_ERROR;
    } else {
        int64_t shape[3] = {3, crop, crop};
        if (cli_write_npy_f32(output, t, 3, shape) != 0) rc = CLI_EXIT_ERROR;
    }
    free(t);
    return rc;
}
