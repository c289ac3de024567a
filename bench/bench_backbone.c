/*
 * bench_backbone.c - time our backbone forward (WEIGHTS: any architecture we load, e.g. wide_resnet50_2
 * or densenet201; to layer3 / denseblock3 at 224x224 by default).
 * usage: bench_backbone WEIGHTS [--batch N] [--threads T] [--runs R] [--size S] [--layer L] [--precision f32|bf16]
 * Prints one line: "ours arch=A path=P precision=X batch=N threads=T size=S median_ms=... min_ms=... cpu_ms=...
 * gflops=..." (cpu_ms: the median process CPU time of a forward, all threads; with one thread a busy
 * machine inflates it much less than wall time)
 * where GFLOP/s counts 2 flops per multiply-add of the architecture up to the layer at S (backbone_macs.h;
 * wide_resnet50_2 to layer3 at 224: 9.19 GMAC). The convolution path is
 * $PATCHCORE_CONV's or the default (src/backbone/backbone.c); on the oneDNN path the kernel oneDNN chose for each
 * distinct convolution shape goes to stderr ("kernels: ..."). bench/backbone.sh runs this beside
 * bench_backbone.py (torch) and prints the ratios.
 */
#include "backbone_macs.h"
#include "cpuinfo.h"
#include "patchcore.h"
#include "backbone_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of the whole process (every thread), ms: with one thread, a figure that a busy machine
 * inflates much less than wall time. */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    if (argc < 2) {
        fprintf(stderr, "usage: %s WEIGHTS [--batch N] [--threads T] [--runs R] [--size S] [--layer L]\n", argv[0]);
        return 2;
    }
    int batch = 1, threads = 2, runs = 5, size = 224, layer = 3, prec = PC_PRECISION_F32;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--precision") && (prec = pc_precision_from_name(argv[i + 1])) < 0) return 2;
        if (!strcmp(argv[i], "--batch")) batch = v;
        else if (!strcmp(argv[i], "--threads")) threads = v;
        else if (!strcmp(argv[i], "--runs")) runs = v;
        else if (!strcmp(argv[i], "--size")) size = v;
        else if (!strcmp(argv[i], "--layer")) layer = v;
    }
    if (batch < 1 || runs < 1 || runs > 1000 || size < 32 || layer < 1 || layer > 4) return 2;
    pc_set_num_threads(threads);
    pc_backbone *bb = NULL;
    pc_backbone_options opt;
    pc_backbone_options_init(&opt);
    opt.precision = (pc_precision)prec;
    if (pc_backbone_load_with(argv[1], PC_ARCH_UNKNOWN, PC_LAYER(layer), &opt, &bb) != PC_OK) {
        fprintf(stderr, "bench_backbone: %s\n", pc_last_error());
        return 1;
    }
    int32_t oh, ow;
    pc_backbone_out_size(bb, layer, size, size, &oh, &ow);
    size_t nin = (size_t)batch * 3 * size * size, nout = (size_t)batch * pc_backbone_channels(bb, layer) * oh * ow;
    float *in = malloc(nin * sizeof(float)), *out = malloc(nout * sizeof(float));
    float *outs[4] = {0};
    outs[layer - 1] = out;
    unsigned s = 1;
    for (size_t i = 0; i < nin; i++) in[i] = (float)((s = s * 1664525u + 1013904223u) >> 9) / 8388608.0f - 1.0f;
    char kernels[2048];
    if (pc_backbone_describe_kernels(bb, batch, size, size, kernels, sizeof kernels) != PC_OK) {
        fprintf(stderr, "bench_backbone: %s\n", pc_last_error());
        return 1;
    }
    fprintf(stderr, "path: %s, precision %s, oneDNN isa %s\n", pc_conv_path_name(pc_backbone_conv_path(bb)),
            pc_precision_name(pc_backbone_precision(bb)), pc_compute_isa());
    if (kernels[0]) fprintf(stderr, "kernels:\n%s\n", kernels);

    if (pc_backbone_reserve(bb, batch, size, size) != PC_OK ||
        pc_backbone_forward(bb, in, batch, size, size, PC_LAYER(layer), outs) != PC_OK) { /* warm-up */
        fprintf(stderr, "bench_backbone: %s\n", pc_last_error());
        return 1;
    }
    fprintf(stderr, "memory: weights %.1f MB, workspace %.1f MB\n", pc_backbone_weight_bytes(bb) / 1e6,
            pc_backbone_workspace_bytes(bb) / 1e6);
    double *t = malloc(sizeof(double) * (size_t)runs), *c = malloc(sizeof(double) * (size_t)runs);
    for (int r = 0; r < runs; r++) {
        double t0 = now_ms(), c0 = cpu_ms();
        pc_backbone_forward(bb, in, batch, size, size, PC_LAYER(layer), outs);
        t[r] = now_ms() - t0, c[r] = cpu_ms() - c0;
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_d);
    qsort(c, (size_t)runs, sizeof *c, cmp_d);
    double med = runs % 2 ? t[runs / 2] : 0.5 * (t[runs / 2 - 1] + t[runs / 2]);
    double cmed = runs % 2 ? c[runs / 2] : 0.5 * (c[runs / 2 - 1] + c[runs / 2]);
    double gflop = 2.0 * batch * backbone_macs(pc_backbone_arch(bb), layer, size) / 1e9;
    printf("ours arch=%s path=%s precision=%s batch=%d threads=%d size=%d median_ms=%.2f min_ms=%.2f cpu_ms=%.2f gflops=%.1f\n",
           pc_arch_name(pc_backbone_arch(bb)), pc_conv_path_name(pc_backbone_conv_path(bb)),
           pc_precision_name(pc_backbone_precision(bb)), batch, threads, size, med, t[0], cmed, gflop / (med / 1e3));
    free(t), free(c), free(in), free(out);
    pc_backbone_free(bb);
    return 0;
}
