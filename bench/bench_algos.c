/*
 * bench_algos.c - throughput of the numerical modules, not a test: patch features per image, the greedy
 * coreset loop (N x 128 per iteration, against a read-bandwidth floor measured here) and k-NN search
 * (GFLOP/s against a plain cblas_sgemm of the same shape).
 * Usage: bench_algos [coreset_points=163856] [coreset_iters=2000] [knn_bank=16385] [FEATURES.npy]
 * With FEATURES.npy (float32 N x D, e.g. real patch features of a training set), also runs the whole
 * 10% greedy coreset on it, pruned and dense, and checks that both choose the same indices.
 */
#include "benchutil.h"
#include "cpuinfo.h"
#include "coreset.h"
#include "knn.h"
#include "patch_features.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void fill(float *x, size_t n, uint64_t seed) {
    pc_rng r = {seed};
    for (size_t i = 0; i < n; i++) x[i] = (float)(pc_rng_next(&r) >> 40) * 0x1p-24f - 0.5f;
}

static void bench_features(const char *name, pc_layer_shape a, pc_layer_shape b) {
    pc_layer_shape sh[2] = {a, b};
    float *acts[2];
    for (int l = 0; l < 2; l++) {
        size_t n = (size_t)sh[l].channels * sh[l].height * sh[l].width;
        acts[l] = pc_malloc(n * sizeof(float));
        fill(acts[l], n, 3 + l);
    }
    pc_features_plan *plan;
    if (pc_features_plan_create(&plan, sh, 2, 3, 1024, 1024) != PC_OK) exit(1);
    void *ws = pc_malloc(pc_features_workspace_size(plan));
    float *out = pc_malloc(sizeof(float) * 784 * 1024);
    const float *ap[2] = {acts[0], acts[1]};
    pc_features_compute(out, ap, plan, ws);
    int reps = 20;
    double t0 = now(), c0 = cpu();
    for (int i = 0; i < reps; i++) pc_features_compute(out, ap, plan, ws);
    double t = (now() - t0) / reps, c = (cpu() - c0) / reps;
    printf("features %-4s: %.2f ms/image wall, %.2f ms CPU (workspace %.1f MB)\n", name, t * 1e3, c * 1e3,
           pc_features_workspace_size(plan) / 1e6);
    pc_free(ws), pc_free(out), pc_free(acts[0]), pc_free(acts[1]);
    pc_features_plan_free(plan);
}

/* minimal .npy reader for a C-order float32 2-D array (benchmark input only) */
static float *load_npy_f32(const char *path, int64_t *rows, int64_t *cols) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char h[10];
    if (fread(h, 1, 10, f) != 10) { fclose(f); return NULL; }
    size_t hl = h[8] | (h[9] << 8);
    char hdr[4096] = {0};
    if (hl >= sizeof hdr || fread(hdr, 1, hl, f) != hl || !strstr(hdr, "<f4")) { fclose(f); return NULL; }
    char *sh = strstr(hdr, "'shape': (");
    if (!sh || sscanf(sh + 10, "%lld, %lld", (long long *)rows, (long long *)cols) != 2) { fclose(f); return NULL; }
    float *x = pc_malloc(sizeof(float) * (size_t)(*rows) * (size_t)(*cols));
    if (x && fread(x, sizeof(float), (size_t)(*rows * *cols), f) != (size_t)(*rows * *cols)) { pc_free(x); x = NULL; }
    fclose(f);
    return x;
}

static void bench_real_coreset(const char *path) {
    int64_t N, D;
    float *x = load_npy_f32(path, &N, &D);
    if (!x) { printf("cannot read %s\n", path); return; }
    int64_t n = pc_coreset_size(N, 0.1);
    int64_t *a = pc_malloc(sizeof(int64_t) * (size_t)n), *b = pc_malloc(sizeof(int64_t) * (size_t)n);
    float *proj = pc_malloc(sizeof(float) * (size_t)D * 128);
    pc_coreset_projection(proj, 0, (int32_t)D, 128);
    int64_t st[PC_CORESET_STARTS];
    int32_t s = pc_coreset_starts(st, 0, N);
    double t0 = now();
    pc_coreset_greedy(a, x, N, (int32_t)D, proj, 128, st, s, n, NULL, NULL);
    double tp = now() - t0;
    t0 = now();
    pc_coreset_greedy_dense(b, x, N, (int32_t)D, proj, 128, st, s, n, NULL, NULL);
    double td = now() - t0;
    printf("real coreset %s: %lld x %lld -> %lld: pruned %.1f s, dense %.1f s (incl. projection), same indices: %s\n",
           path, (long long)N, (long long)D, (long long)n, tp, td, memcmp(a, b, sizeof(int64_t) * (size_t)n) ? "NO" : "yes");
    pc_free(a), pc_free(b), pc_free(proj), pc_free(x);
}

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    int64_t N = argc > 1 ? atoll(argv[1]) : 163856, iters = argc > 2 ? atoll(argv[2]) : 2000;
    int64_t NB = argc > 3 ? atoll(argv[3]) : 16385;
    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    printf("threads: %d\n", nth);
    bench_features("r18", (pc_layer_shape){128, 28, 28}, (pc_layer_shape){256, 14, 14});
    bench_features("wrn", (pc_layer_shape){512, 28, 28}, (pc_layer_shape){1024, 14, 14});

    /* coreset loop on an N x 128 matrix (the projection of the bank): D = 128 with a 128 x 128
     * projection, so the loop sees exactly what it sees after projecting N x 1024 features */
    float *x = pc_malloc(sizeof(float) * (size_t)N * 128), *proj = pc_malloc(sizeof(float) * 128 * 128);
    fill(x, (size_t)N * 128, 11);
    pc_coreset_projection(proj, 1, 128, 128);
    int64_t starts[10], *idx = pc_malloc(sizeof(int64_t) * (size_t)iters);
    int32_t s = pc_coreset_starts(starts, 1, N);
    double t0 = now();
    pc_coreset_greedy(idx, x, N, 128, proj, 128, starts, s, 0, NULL, NULL);
    double t_setup = now() - t0;
    t0 = now();
    pc_coreset_greedy(idx, x, N, 128, proj, 128, starts, s, iters, NULL, NULL);
    double t_loop = (now() - t0 - t_setup) / (double)iters;
    double bytes = (double)N * 128 * 4 + (double)N * 4 * 2;
    int64_t *idx2 = pc_malloc(sizeof(int64_t) * (size_t)iters);
    t0 = now();
    pc_coreset_greedy_dense(idx2, x, N, 128, proj, 128, starts, s, iters, NULL, NULL);
    double t_dense = (now() - t0 - t_setup) / (double)iters;
    printf("coreset: pruned %.3f ms/iteration, dense fused pass %.3f ms/iteration (%.1fx), same indices: %s\n",
           t_loop * 1e3, t_dense * 1e3, t_dense / t_loop, memcmp(idx, idx2, sizeof(int64_t) * (size_t)iters) ? "NO" : "yes");
    pc_free(idx2);
    t_loop = t_dense; /* the bandwidth comparison below is for the dense pass */
    /* read-bandwidth floor: sum the same N x 128 floats, threaded */
    float sum = 0;
    t0 = now();
    for (int rep = 0; rep < 20; rep++) {
#pragma omp parallel for simd reduction(+ : sum) schedule(static)
        for (int64_t i = 0; i < N * 128; i++) sum += x[i];
    }
    double t_read = (now() - t0) / 20;
    printf("coreset dense pass: N %lld x 128, %.3f ms/iteration (%.1f GB/s of %.1f MB/iteration); plain threaded read "
           "of the matrix %.3f ms (%.1f GB/s) -> %.2fx the floor; projected %lld iterations: %.1f s (setup %.2f s)%s\n", 
           (long long)N, t_loop * 1e3, bytes / t_loop / 1e9, bytes / 1e6, t_read * 1e3, N * 128 * 4 / t_read / 1e9,
           t_loop / t_read, (long long)(N / 10 + (N % 10 ? 0 : 0)), t_loop * (double)(N / 10), t_setup,
           sum == 12345 ? "" : "");
    pc_free(x), pc_free(proj), pc_free(idx);

    /* kNN: one image (784 x 1024) against a bank of NB x 1024 */
    const int32_t D = 1024;
    const int64_t M = 784;
    float *bank = pc_malloc(sizeof(float) * (size_t)NB * D), *q = pc_malloc(sizeof(float) * (size_t)M * D);
    float *norms = pc_malloc(sizeof(float) * (size_t)NB), *dist = pc_malloc(sizeof(float) * (size_t)M);
    int64_t *ii = pc_malloc(sizeof(int64_t) * (size_t)M);
    fill(bank, (size_t)NB * D, 5);
    fill(q, (size_t)M * D, 6);
    pc_knn_norms(norms, bank, NB, D);
    size_t wsb = pc_knn_workspace_size(M);
    void *ws = pc_malloc(wsb);
    pc_knn_search(dist, ii, q, M, bank, norms, NB, D, 1, ws, wsb);
    int reps = 5;
    t0 = now();
    for (int r = 0; r < reps; r++) pc_knn_search(dist, ii, q, M, bank, norms, NB, D, 1, ws, wsb);
    double t_knn = (now() - t0) / reps;
    double flops = 2.0 * M * NB * D;
    /* the GEMM alone in the same tiles, for the floor */
    float *tile = ws;
    t0 = now();
    for (int r = 0; r < reps; r++)
        for (int64_t b0 = 0; b0 < NB; b0 += PC_KNN_BANK_BLOCK) {
            int64_t nb = NB - b0 < PC_KNN_BANK_BLOCK ? NB - b0 : PC_KNN_BANK_BLOCK;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nb, D, 1.0f, q, D, bank + (size_t)b0 * D, D,
                        0.0f, tile, PC_KNN_BANK_BLOCK);
        }
    double t_gemm = (now() - t0) / reps;
    printf("knn: M %lld x N %lld x D %d, k 1: %.1f ms/image = %.1f GFLOP/s (%.1f per thread); tiled sgemm alone "
           "%.1f ms = %.1f GFLOP/s\n", (long long)M, (long long)NB, D, t_knn * 1e3, flops / t_knn / 1e9,
           flops / t_knn / 1e9 / nth, t_gemm * 1e3, flops / t_gemm / 1e9);
    pc_free(bank), pc_free(q), pc_free(norms), pc_free(dist), pc_free(ii), pc_free(ws);
    if (argc > 4) bench_real_coreset(argv[4]);
    return 0;
}
