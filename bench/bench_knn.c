/*
 * bench_knn.c - exact pruned k-NN (pc_knn_index_search) against the brute-force blocked SGEMM
 * (pc_knn_search) on a real model's memory bank and real query features: checks that both return
 * identical distances and indices, and reports the fraction of the query-bank distance work the pruned
 * search does and ms per image of each, as medians of several runs.
 * The pruned search runs with each candidate filter (f32: OpenBLAS SGEMM; bf16: our AVX512-BF16
 * vdpbf16ps kernel on centred bf16 vectors, or its fp32 emulation) and the bench prints which kernels ran.
 * Usage: bench_knn MODEL.pcm [--runs R] [--k K] [--clusters C] [--pruned-only 1] [--filter f32|bf16] IMAGE...
 * (--pruned-only skips the brute force after the first run, --filter the other filter after the first
 * run, for profiling.)
 */
#include "benchutil.h"
#include "cpuinfo.h"
#include "knn.h"
#include "model_internal.h"
#include "patchcore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    if (argc < 3) {
        fprintf(stderr, "usage: bench_knn MODEL.pcm [--runs R] [--k K] [--clusters C] IMAGE...\n");
        return 2;
    }
    int runs = 5, k = 1, clusters = 0, a = 2, pruned_only = 0, only = -1;
    for (; a + 1 < argc && strncmp(argv[a], "--", 2) == 0; a += 2) {
        if (!strcmp(argv[a], "--runs")) runs = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--k")) k = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--clusters")) clusters = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--pruned-only")) pruned_only = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "--filter")) only = !strcmp(argv[a + 1], "f32") ? 0 : !strcmp(argv[a + 1], "bf16") ? 1 : -1;
    }
    pc_model *m;
    if (pc_model_load(argv[1], &m)) {
        fprintf(stderr, "%s\n", pc_last_error());
        return 1;
    }
    int64_t n;
    int32_t D;
    const float *bank = pc_model_bank(m, &n, &D);
    const int n_img = argc - a;
    if (n_img < 1) return 2;
    const int64_t hw = 784;
    float *feats = malloc(sizeof(float) * (size_t)(n_img * hw * D));
    for (int i = 0; i < n_img; i++) {
        pc_image im;
        if (pc_image_load(argv[a + i], &im) || pc_model_patch_outputs(m, &im, feats + (size_t)i * hw * D, NULL)) {
            fprintf(stderr, "%s\n", pc_last_error());
            return 1;
        }
        pc_image_free(&im);
    }
    float *norms = malloc(sizeof(float) * (size_t)n);
    pc_knn_norms(norms, bank, n, D);
    /* the pruned search with each filter: f32 (SGEMM) and bf16 (vdpbf16ps where native, else emulated) */
    enum { NF = 2 };
    const pc_knn_filter want[NF] = {PC_KNN_FILTER_F32, PC_KNN_FILTER_BF16};
    pc_knn_index *ix[NF];
    double t_build[NF];
    int T = 1;
#ifdef _OPENMP
    T = omp_get_max_threads();
#endif
    size_t wb = pc_knn_workspace_size(hw), wi[NF];
    void *ws_b = pc_malloc(wb), *ws_i[NF];
    for (int f = 0; f < NF; f++) {
        double t0 = now();
        if (pc_knn_index_build_filter(&ix[f], bank, norms, n, D, clusters, want[f])) {
            fprintf(stderr, "%s\n", pc_last_error());
            return 1;
        }
        t_build[f] = now() - t0;
        wi[f] = pc_knn_index_workspace_size(ix[f], hw, k, T);
        ws_i[f] = pc_malloc(wi[f]);
    }
    float *d0 = malloc(sizeof(float) * (size_t)(hw * k)), *d1 = malloc(sizeof(float) * (size_t)(hw * k));
    int64_t *i0 = malloc(sizeof(int64_t) * (size_t)(hw * k)), *i1 = malloc(sizeof(int64_t) * (size_t)(hw * k));
    double *tb = malloc(sizeof(double) * (size_t)(runs * n_img));
    double *tp[NF];
    for (int f = 0; f < NF; f++) tp[f] = malloc(sizeof(double) * (size_t)(runs * n_img));
    int64_t pairs[NF] = {0}, evals[NF] = {0}, mismatches = 0;
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < n_img; i++) {
            const float *q = feats + (size_t)i * hw * D;
            const int brute = r == 0 || !pruned_only;
            double s = now();
            if (brute) pc_knn_search(d0, i0, q, hw, bank, norms, n, D, k, ws_b, wb);
            tb[r * n_img + i] = now() - s;
            for (int f = 0; f < NF; f++) {
                if (only >= 0 && f != only && r > 0) continue;
                pc_knn_stats st;
                double s2 = now();
                pc_knn_index_search(ix[f], d1, i1, q, hw, k, ws_i[f], wi[f], &st);
                tp[f][r * n_img + i] = now() - s2;
                if (r == 0) pairs[f] += st.pairs, evals[f] += st.evals;
                for (int64_t j = 0; j < (brute ? hw * k : 0); j++)
                    if (i0[j] != i1[j] || memcmp(&d0[j], &d1[j], sizeof(float))) mismatches++;
            }
        }
    }
    double mb = median(tb, runs * n_img) * 1e3;
    printf("knn bank %lld x %d, %d images x %lld queries, k %d, %d threads, %d clusters\n", (long long)n, D, n_img,
           (long long)hw, k, T, pc_knn_index_clusters(ix[0]));
    printf("  brute (f32 filter, openblas sgemm): %.1f ms/image\n", mb);
    for (int f = 0; f < NF; f++) {
        double mp = median(tp[f], runs * n_img) * 1e3;
        printf("  pruned, filter %-13s (%s, centres %s; index build %.1f ms, %s): distance work %.1f%%, canonical re-evaluations "
               "%.1f per query, %.1f ms/image: %.2fx brute\n", pc_knn_filter_name(pc_knn_index_filter(ix[f])),
               pc_knn_index_kernel(ix[f]), pc_knn_index_centre_kernel(ix[f]), t_build[f] * 1e3,
               pc_knn_index_build_kernel(ix[f]), 100.0 * pairs[f] / ((double)n_img * hw * n),
               (double)evals[f] / ((double)n_img * hw), mp, mb / mp);
    }
    printf("  results identical (brute, pruned f32, pruned bf16): %s (%lld differ, median of %d)\n",
           mismatches ? "NO" : "yes", (long long)mismatches, runs * n_img);
    for (int f = 0; f < NF; f++) pc_knn_index_free(ix[f]), pc_free(ws_i[f]), free(tp[f]);
    pc_free(ws_b);
    pc_model_free(m);
    return mismatches ? 1 : 0;
}
