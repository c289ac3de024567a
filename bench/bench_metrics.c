/*
 * bench_metrics.c - time the pixel-level metrics at MVTec scale: N maps of S x S (default 83 x 224 x 224,
 * bottle's test set, ~4.2M pixels) with blob masks on most maps. Synthetic smooth maps (sums of random
 * cosines plus noise, quantised to float32); the numbers are timings, not accuracy.
 * usage: bench_metrics [N [S]]
 */
#include "cpuinfo.h"
#include "patchcore.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double urand(void) { return (double)rand() / ((double)RAND_MAX + 1.0); }

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    int n = argc > 1 ? atoi(argv[1]) : 83, s = argc > 2 ? atoi(argv[2]) : 224;
    if (n <= 0 || s <= 0) return 2;
    size_t hw = (size_t)s * s, total = hw * (size_t)n;
    float *maps = malloc(total * sizeof *maps);
    uint8_t *masks = calloc(total, 1);
    int32_t *lab = malloc(hw * sizeof *lab);
    if (!maps || !masks || !lab) return 1;
    srand(1);
    for (int k = 0; k < n; k++) {
        double fx[4], fy[4], ph[4];
        for (int j = 0; j < 4; j++) fx[j] = urand() * 0.1, fy[j] = urand() * 0.1, ph[j] = urand() * 6.28;
        int nb = k < n / 4 ? 0 : 1 + rand() % 3; /* a quarter of the maps are "good" */
        double cx[3], cy[3], r[3];
        for (int b = 0; b < nb; b++) cx[b] = urand() * s, cy[b] = urand() * s, r[b] = 4 + urand() * s / 8;
        for (int y = 0; y < s; y++)
            for (int x = 0; x < s; x++) {
                double v = 0.05 * urand();
                for (int j = 0; j < 4; j++) v += 0.25 * cos(fx[j] * x + fy[j] * y + ph[j]);
                int in = 0;
                for (int b = 0; b < nb; b++) in |= (x - cx[b]) * (x - cx[b]) + (y - cy[b]) * (y - cy[b]) <= r[b] * r[b];
                size_t p = (size_t)k * hw + (size_t)y * s + x;
                masks[p] = (uint8_t)in;
                maps[p] = (float)(v + 0.8 * in);
            }
    }
    printf("%d maps of %dx%d = %zu pixels\n", n, s, s, total);

    double t0 = now();
    pc_binary_metrics m;
    if (pc_metric_binary(&m, maps, masks, total) != PC_OK) return fprintf(stderr, "%s\n", pc_last_error()), 1;
    double t1 = now();
    printf("pixel AUROC %.6f, F1-max %.6f: %.1f ms\n", m.auroc, m.f1_max, 1e3 * (t1 - t0));

    double aupro;
    t0 = now();
    if (pc_metric_aupro(&aupro, maps, masks, n, s, s, PC_AUPRO_FPR_LIMIT) != PC_OK)
        return fprintf(stderr, "%s\n", pc_last_error()), 1;
    t1 = now();
    printf("AUPRO (FPR <= 0.3) %.6f: %.1f ms (incl. labelling)\n", aupro, 1e3 * (t1 - t0));

    t0 = now();
    int64_t regions = 0;
    for (int k = 0; k < n; k++) {
        int32_t nc;
        pc_label_components(lab, &nc, masks + (size_t)k * hw, s, s);
        regions += nc;
    }
    t1 = now();
    printf("labelling %d masks: %lld regions, %.2f ms\n", n, (long long)regions, 1e3 * (t1 - t0));
    free(maps);
    free(masks);
    free(lab);
    return 0;
}
