/*
 * bench_preprocess.c - time decoding and preprocessing of one image (default: an MVTec bottle PNG).
 * usage: bench_preprocess [IMAGE] [ITERATIONS] ; prints milliseconds per call for decode,
 * pc_preprocess (Resize 256 -> CenterCrop 224 -> normalise) and the full-image resize.
 */
#include "cpuinfo.h"
#include "patchcore.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    const char *path = argc > 1 ? argv[1] : "../shared/data/mvtec_ad/bottle/train/good/000.png";
    int iters = argc > 2 ? atoi(argv[2]) : 20;
    pc_image im;
    double t0 = now_ms();
    for (int i = 0; i < iters; i++) {
        if (pc_image_load(path, &im) != PC_OK) {
            fprintf(stderr, "bench_preprocess: %s\n", pc_last_error());
            return 1;
        }
        if (i + 1 < iters) pc_image_free(&im);
    }
    double t1 = now_ms();
    float *t = malloc(sizeof(float) * 3 * 224 * 224);
    for (int i = 0; i < iters; i++) pc_preprocess(t, &im, 256, 224, NULL);
    double t2 = now_ms();
    pc_geometry g;
    pc_geometry_compute(im.width, im.height, 256, 224, &g);
    unsigned char *rs = malloc((size_t)g.resized_width * g.resized_height * 3);
    for (int i = 0; i < iters; i++)
        pc_resize_bilinear_u8(rs, g.resized_width, g.resized_height, im.data, im.width, im.height, 3);
    double t3 = now_ms();
    printf("%s (%dx%d): decode %.2f ms, preprocess 256/224 %.2f ms, full resize to %dx%d %.2f ms\n", path, im.width,
           im.height, (t1 - t0) / iters, (t2 - t1) / iters, g.resized_width, g.resized_height, (t3 - t2) / iters);
    free(rs);
    free(t);
    pc_image_free(&im);
    return 0;
}
