/*
 * bench_overlay.c - time what predict --overlays/--maps adds per image: drawing a 224x224 map on a
 * decoded image (default: an MVTec bottle PNG, 900x900), writing the overlay PNG, the 16-bit map PNG
 * and the float TIFF. usage: bench_overlay [IMAGE] [ITERATIONS] [OUTDIR]; prints ms per call.
 * The map is synthetic (smooth background + one blob); timings do not depend on its values much.
 */
#include "cpuinfo.h"
#include "patchcore.h"

#include <math.h>
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
    const char *path = argc > 1 ? argv[1] : "../shared/data/mvtec_ad/bottle/test/broken_large/000.png";
    int iters = argc > 2 ? atoi(argv[2]) : 10;
    const char *dir = argc > 3 ? argv[3] : "/tmp";
    pc_image im, ov;
    if (pc_image_load(path, &im) != PC_OK) {
        fprintf(stderr, "bench_overlay: %s\n", pc_last_error());
        return 1;
    }
    enum { S = 224 };
    static float map[S * S];
    for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
            map[y * S + x] = 1.0f + 0.2f * sinf(x / 20.0f) + 2.0f * expf(-((x - 150) * (x - 150) + (y - 80) * (y - 80)) / 400.0f);
    pc_geometry g;
    pc_geometry_compute(im.width, im.height, 256, S, &g);
    pc_overlay_options o;
    pc_overlay_options_init(&o, 2.0, 0.5);
    char f8[1024], f16[1024], ft[1024];
    snprintf(f8, sizeof f8, "%s/bench_overlay.png", dir);
    snprintf(f16, sizeof f16, "%s/bench_map16.png", dir);
    snprintf(ft, sizeof ft, "%s/bench_map.tiff", dir);
    double t0 = now_ms();
    for (int i = 0; i < iters; i++) {
        if (pc_overlay_render(&ov, &im, map, &g, &o) != PC_OK) {
            fprintf(stderr, "bench_overlay: %s\n", pc_last_error());
            return 1;
        }
        if (i + 1 < iters) pc_image_free(&ov);
    }
    double t1 = now_ms();
    for (int i = 0; i < iters; i++) pc_image_write_png(f8, &ov);
    double t2 = now_ms();
    for (int i = 0; i < iters; i++) pc_map_write_png16(f16, map, S, S, 4.0);
    double t3 = now_ms();
    for (int i = 0; i < iters; i++) pc_map_write_tiff(ft, map, S, S);
    double t4 = now_ms();
    printf("%s (%dx%d), %d threads: render %.2f ms, overlay PNG %.2f ms, 16-bit map PNG %.2f ms, "
           "float TIFF %.2f ms (each written atomically with fsync, into %s)\n",
           path, im.width, im.height, pc_get_num_threads(), (t1 - t0) / iters, (t2 - t1) / iters,
           (t3 - t2) / iters, (t4 - t3) / iters, dir);
    pc_image_free(&ov);
    pc_image_free(&im);
    return 0;
}
