/*
 * bench_weights.c - how long reading a weights file takes (src/weights.c), warm page cache.
 *
 *   build/bench_weights FILE [RUNS]   prints the format, tensor count, float bytes and the median,
 *                                     min and max wall time of RUNS loads (default 7).
 */
#include "benchutil.h"
#include "cpuinfo.h"
#include "weights.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE [RUNS]\n", argv[0]);
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 7;
    if (runs < 1) runs = 1;
    double *t = calloc((size_t)runs, sizeof *t);
    size_t count = 0, floats = 0;
    char format[32] = "";
    for (int r = 0; r < runs; r++) {
        pc_tensor_dict *d;
        double t0 = now();
        pc_status st = pc_weights_load(argv[1], NULL, NULL, &d);
        t[r] = now() - t0;
        if (st != PC_OK) {
            fprintf(stderr, "%s\n", pc_last_error());
            return 1;
        }
        count = d->count;
        floats = 0;
        for (size_t i = 0; i < d->count; i++)
            if (d->tensors[i].data) floats += (size_t)d->tensors[i].numel;
        snprintf(format, sizeof format, "%s", d->format);
        pc_tensor_dict_free(d);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    printf("%s: %s, %zu tensors, %.1f MB of float32; load median %.2f ms (min %.2f, max %.2f, %d runs)\n", argv[1],
           format, count, floats * 4.0 / 1e6, t[runs / 2] * 1e3, t[0] * 1e3, t[runs - 1] * 1e3, runs);
    free(t);
    return 0;
}
