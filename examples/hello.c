/*
 * hello.c - the smallest program on libpatchcore's public API: decode an image, preprocess it as
 * torchvision does, and print the tensor's statistics. Build it against an installed library:
 *
 *     cc hello.c $(pkg-config --cflags --libs patchcore) -lm -o hello
 *     ./hello image.png            # or: ./hello image.png RESIZE CROP
 *
 * Output, one line per statistic: "version", then "mean", "std" (population), "min", "max" over the
 * whole 3 x S x S tensor and "mean0".."mean2" per channel, each printed with %.9g.
 * examples/inspect.c is the next step: load a model and predict.
 */
#include <patchcore.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 2 && argc != 4) {
        fprintf(stderr, "usage: %s IMAGE [RESIZE CROP]\n", argv[0]);
        return 2;
    }
    int32_t resize = argc == 4 ? atoi(argv[2]) : 256, crop = argc == 4 ? atoi(argv[3]) : 224;
    pc_image img;
    if (pc_image_load(argv[1], &img) != PC_OK) {
        fprintf(stderr, "hello: %s\n", pc_last_error());
        return 1;
    }
    size_t n = 3 * (size_t)crop * (size_t)crop;
    float *x = malloc(n * sizeof *x);
    pc_geometry g;
    pc_status st = x ? pc_preprocess(x, &img, resize, crop, &g) : PC_ERR_NO_MEMORY;
    if (st != PC_OK) {
        fprintf(stderr, "hello: %s: %s\n", argv[1], x ? pc_last_error() : "out of memory");
        free(x);
        pc_image_free(&img);
        return 1;
    }
    double sum = 0, sum2 = 0, lo = INFINITY, hi = -INFINITY, csum[3] = {0, 0, 0};
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        sum2 += (double)x[i] * x[i];
        csum[i / ((size_t)crop * crop)] += x[i];
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    double mean = sum / n;
    printf("version %s\n", pc_version());
    printf("image %dx%d resized %dx%d crop %d at (%d, %d)\n", (int)g.orig_width, (int)g.orig_height,
           (int)g.resized_width, (int)g.resized_height, (int)g.crop_size, (int)g.crop_left, (int)g.crop_top);
    printf("mean %.9g\nstd %.9g\nmin %.9g\nmax %.9g\n", mean, sqrt(sum2 / n - mean * mean), lo, hi);
    for (int c = 0; c < 3; c++) printf("mean%d %.9g\n", c, csum[c] / ((double)crop * crop));
    free(x);
    pc_image_free(&img);
    return 0;
}
