/*
 * bench_centres.c - the greedy coreset's per-pick centre distances (pc_coreset_centre_distances), timed
 * alone: the new pick's distance to each of n earlier picks (n x 128 floats), the term of the loop that
 * every process of a distributed fit repeats (docs/mpi.md, cost model). Prints ns per centre and the
 * bandwidth it streams the centres at, the median of 20 passes, for n from 20 MB to 800 MB of centres (a 10 % bank of 2,000 and of 20,000 images).
 * usage: build/bench_centres [--threads N]
 */
#include "benchutil.h"
#include "coreset.h"
#include "cpuinfo.h"
#include "patchcore.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    int threads = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--threads") == 0) threads = atoi(argv[++i]);
    pc_set_num_threads(threads);
    const int P = PC_CORESET_PROJ_DIM, reps = 20;
    const int64_t sizes[] = {39200, 78400, 156800, 1568000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int64_t n = sizes[s];
        float *cent = malloc((size_t)n * P * sizeof(float)), *cd = malloc((size_t)n * sizeof(float));
        float sel[PC_CORESET_PROJ_DIM];
        if (!cent || !cd) return 1;
        for (size_t i = 0; i < (size_t)n * P; i++) cent[i] = (float)(i % 97) * 0.01f;
        for (int k = 0; k < P; k++) sel[k] = 0.3f;
        double t[20];
        for (int r = 0; r < reps; r++) {
            double t0 = now();
#pragma omp parallel
            pc_coreset_centre_distances(cd, cent, n, sel, P);
            t[r] = now() - t0;
            sel[r % P] += 1e-3f;
        }
        const double m = median(t, reps);
        printf("centres %lld (%.0f MB), %d threads: %.2f ns per centre, %.1f GB/s (median of %d; cd[0] %.3f)\n",
               (long long)n, (double)n * P * 4 / 1e6, (int)pc_get_num_threads(), m / (double)n * 1e9,
               (double)n * P * 4 / m / 1e9, reps, cd[0]);
        free(cent), free(cd);
    }
    return 0;
}
