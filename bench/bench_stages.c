/*
 * bench_stages.c - every stage of predict timed on its own, next to its floor on the machine at hand.
 *
 * Runs the predict pipeline stage by stage with the library's own building blocks (the same calls
 * pc_model_predict makes, in the same order, with the model's settings): decode, preprocess, backbone,
 * patch features, kNN (the model's search: pruned for banks of >= 4096 entries), patch scores + anomaly
 * map. Each stage's median over IMAGES x RUNS is printed with its floor:
 *   - backbone: its multiply-adds at the f32 (or bf16) GEMM peak oneDNN reaches here, measured first
 *     on a 784 x dim x 16384 matmul (the kNN's shape);
 *   - kNN: the distance work it really does (query-bank pairs x dim x 2 flops, from the search's own
 *     counters) at the peak of the precision its filter runs in (bf16 where the CPU has AVX512-BF16),
 *     and the brute force's (784 x bank x dim x 2) at the f32 peak;
 *   - the others: memory-bound or tiny; their share of the total says whether they matter.
 * The fit's feature stage is backbone + features per training image; its coreset stage is timed by
 * `patchcore fit --json` (bench/fit_predict.sh), see docs/performance.md.
 *
 * Usage: bench_stages MODEL.pcm WEIGHTS [--runs R] IMAGE...
 * (WEIGHTS: the file the model was fitted with; the backbone is rebuilt from it with the model's
 * batch-norm statistics and precision.)
 */
#include "benchutil.h"
#include "backbone_macs.h"
#include "cpuinfo.h"
#include "knn.h"
#include "model_internal.h"
#include "onednn.h"
#include "patch_features.h"
#include "patchcore.h"
#include "scoring.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* GFLOP/s of a oneDNN matmul (m x k) . (k x n) in dt (f32 accumulation and output): the best of 5. */
static double gemm_peak(dnnl_data_type_t dt, int64_t m, int64_t k, int64_t n, const char **impl) {
    *impl = "unavailable";
    dnnl_engine_t eng = pc_dnnl_engine();
    dnnl_stream_t st = NULL;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t da = {m, k}, db = {k, n}, dc = {m, n};
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t p = NULL;
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL;
    double best = 0;
    if (!eng || dnnl_stream_create(&st, eng, dnnl_stream_default_flags) ||
        dnnl_memory_desc_init_by_tag(&a, 2, da, dt, dnnl_ab) || dnnl_memory_desc_init_by_tag(&b, 2, db, dt, dnnl_ba) ||
        dnnl_memory_desc_init_by_tag(&c, 2, dc, dnnl_f32, dnnl_ab) || dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) ||
        dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL) || dnnl_primitive_create(&p, pd) ||
        dnnl_memory_create(&ma, &a, eng, DNNL_MEMORY_ALLOCATE) || dnnl_memory_create(&mb, &b, eng, DNNL_MEMORY_ALLOCATE) ||
        dnnl_memory_create(&mc, &c, eng, DNNL_MEMORY_ALLOCATE))
        goto out;
    *impl = pc_dnnl_impl(pd);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    for (int r = 0; r < 5; r++) {
        double t = now();
        if (dnnl_primitive_execute(p, st, 3, args) || dnnl_stream_wait(st)) goto out;
        t = now() - t;
        best = PC_MAX(best, 2.0 * m * k * n / t / 1e9);
    }
out:
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (p) dnnl_primitive_destroy(p);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (st) dnnl_stream_destroy(st);
    return best;
}

enum { S_DECODE, S_PRE, S_BACKBONE, S_FEAT, S_KNN, S_MAP, NSTAGE };
static const char *const stage_name[NSTAGE] = {"decode", "preprocess", "backbone", "features", "knn", "scores+map"};

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    if (argc < 4) {
        fprintf(stderr, "usage: bench_stages MODEL.pcm WEIGHTS [--runs R] IMAGE...\n");
        return 2;
    }
    const char *model_path = argv[1], *weights = argv[2];
    int runs = 3, first = 3;
    if (argc > 4 && !strcmp(argv[3], "--runs")) runs = atoi(argv[4]), first = 5;
    const int n_img = argc - first;
    if (runs < 1 || n_img < 1) {
        fprintf(stderr, "bench_stages: need --runs >= 1 and at least one image\n");
        return 2;
    }
    pc_model *m = NULL;
    pc_model_info info;
    if (pc_model_load(model_path, &m) || pc_model_get_info(m, &info)) {
        fprintf(stderr, "bench_stages: %s\n", pc_last_error());
        return 1;
    }
    uint32_t mask = 0;
    int deepest = 0;
    for (int i = 0; i < info.n_layers; i++) mask |= PC_LAYER(info.layers[i]), deepest = PC_MAX(deepest, info.layers[i]);
    pc_backbone_options bo;
    pc_backbone_options_init(&bo);
    bo.bn_stats = info.bn_stats, bo.warmup_size = info.crop, bo.precision = info.precision;
    pc_backbone *bb = NULL;
    if (pc_backbone_load_with(weights, info.arch, mask, &bo, &bb) || pc_backbone_reserve(bb, 1, info.crop, info.crop)) {
        fprintf(stderr, "bench_stages: %s\n", pc_last_error());
        return 1;
    }
    pc_layer_shape shapes[PC_MAX_LAYERS];
    float *acts[4] = {0};
    for (int l = 1; l <= deepest; l++) {
        int32_t h, w;
        pc_backbone_out_size(bb, l, info.crop, info.crop, &h, &w);
        acts[l - 1] = malloc(sizeof(float) * (size_t)pc_backbone_channels(bb, l) * h * w);
        for (int i = 0; i < info.n_layers; i++)
            if (info.layers[i] == l) shapes[i] = (pc_layer_shape){pc_backbone_channels(bb, l), h, w};
    }
    pc_features_plan *plan = NULL;
    if (pc_features_plan_create(&plan, shapes, info.n_layers, info.patch, info.pre_dim, info.dim)) {
        fprintf(stderr, "bench_stages: %s\n", pc_last_error());
        return 1;
    }
    int64_t bank_n;
    int32_t dim;
    const float *bank = pc_model_bank(m, &bank_n, &dim);
    const int64_t hw = (int64_t)info.grid_h * info.grid_w;
    float *norms = malloc(sizeof(float) * (size_t)bank_n);
    pc_knn_norms(norms, bank, bank_n, dim);
    pc_knn_index *kix = NULL;
    if (bank_n >= PC_KNN_MIN_BANK && info.k <= 16 && pc_knn_index_build(&kix, bank, norms, bank_n, dim, 0)) {
        fprintf(stderr, "bench_stages: %s\n", pc_last_error());
        return 1;
    }
    const size_t kws_size = kix ? pc_knn_index_workspace_size(kix, hw, info.k, pc_default_num_threads())
                                : pc_knn_workspace_size(hw);
    void *kws = NULL, *fws = NULL, *mws = NULL;
    if (posix_memalign(&kws, 64, kws_size) || posix_memalign(&fws, 64, pc_features_workspace_size(plan)) ||
        posix_memalign(&mws, 64, pc_anomaly_map_workspace_size(info.crop, 4.0))) {
        fprintf(stderr, "bench_stages: out of memory\n");
        return 1;
    }
    float *input = malloc(sizeof(float) * 3 * (size_t)info.crop * info.crop);
    float *feats = malloc(sizeof(float) * (size_t)hw * dim);
    float *dist = malloc(sizeof(float) * (size_t)hw * info.k);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)hw * info.k);
    float *ps = malloc(sizeof(float) * (size_t)hw);
    float *map = malloc(sizeof(float) * (size_t)info.crop * info.crop);

    /* The GEMM peak first, while nothing else runs: f32 and, where native, bf16. */
    const char *impl32, *impl16 = "n/a";
    const double peak32 = gemm_peak(dnnl_f32, hw, dim, 16384, &impl32);
    const double peak16 = pc_dnnl_bf16_native() ? gemm_peak(dnnl_bf16, hw, dim, 16384, &impl16) : 0;
    const double peak = info.precision == PC_PRECISION_BF16 && peak16 > 0 ? peak16 : peak32;

    const int total = n_img * runs;
    double *t[NSTAGE], *pairs = malloc(sizeof(double) * total);
    for (int s = 0; s < NSTAGE; s++) t[s] = malloc(sizeof(double) * total);
    int done = 0;
    for (int r = 0; r < runs; r++) {
        for (int i = 0; i < n_img; i++, done++) {
            const char *path = argv[first + i];
            pc_image img;
            pc_knn_stats ks = {0};
            double t0 = now();
            pc_status st = pc_image_load(path, &img);
            double t1 = now();
            if (!st) st = pc_preprocess(input, &img, info.resize, info.crop, NULL);
            double t2 = now();
            if (!st) st = pc_backbone_forward(bb, input, 1, info.crop, info.crop, mask, acts);
            double t3 = now();
            const float *per[PC_MAX_LAYERS];
            for (int l = 0; l < info.n_layers; l++) per[l] = acts[info.layers[l] - 1];
            if (!st) pc_features_compute(feats, per, plan, fws);
            double t4 = now();
            if (!st)
                st = kix ? pc_knn_index_search(kix, dist, idx, feats, hw, info.k, kws, kws_size, &ks)
                         : pc_knn_search(dist, idx, feats, hw, bank, norms, bank_n, dim, info.k, kws, kws_size);
            double t5 = now();
            if (!st) {
                pc_patch_scores(ps, dist, hw, info.k);
                pc_anomaly_map(map, ps, info.grid_h, info.grid_w, info.crop, 4.0, mws);
            }
            double t6 = now();
            pc_image_free(&img);
            if (st) {
                fprintf(stderr, "bench_stages: %s: %s\n", path, pc_last_error());
                return 1;
            }
            t[S_DECODE][done] = t1 - t0, t[S_PRE][done] = t2 - t1, t[S_BACKBONE][done] = t3 - t2;
            t[S_FEAT][done] = t4 - t3, t[S_KNN][done] = t5 - t4, t[S_MAP][done] = t6 - t5;
            pairs[done] = kix ? (double)ks.pairs : (double)hw * bank_n;
        }
    }
    double med[NSTAGE], sum = 0;
    for (int s = 0; s < NSTAGE; s++) sum += (med[s] = median(t[s], total));
    const double macs = backbone_macs(info.arch, deepest, info.crop);
    const double knn_flops = 2.0 * median(pairs, total) * dim, brute_flops = 2.0 * (double)hw * bank_n * dim;
    /* The search's products run in bf16 when its filter does (docs/method-implementation.md §5). */
    const int knn_bf16 = kix && pc_knn_index_filter(kix) == PC_KNN_FILTER_BF16 && peak16 > 0;
    const double knn_peak = knn_bf16 ? peak16 : peak32;

    printf("model %s: %s, layers", model_path, pc_arch_name(info.arch));
    for (int i = 0; i < info.n_layers; i++) printf(" %d", info.layers[i]);
    printf(", crop %d, bank %lld x %d, k %d, precision %s; %d images x %d runs, %d threads\n", info.crop,
           (long long)bank_n, dim, info.k, pc_precision_name(info.precision), n_img, runs, pc_default_num_threads());
    printf("gemm peak (oneDNN matmul %lld x %d x 16384): f32 %.0f GFLOP/s (%s)", (long long)hw, dim, peak32, impl32);
    if (peak16 > 0) printf(", bf16 %.0f GFLOP/s (%s)", peak16, impl16);
    printf("\n%-11s %9s %7s %11s %9s %s\n", "stage", "median_ms", "share", "GFLOP", "floor_ms", "of floor");
    for (int s = 0; s < NSTAGE; s++) {
        double fl = s == S_BACKBONE ? 2 * macs : s == S_KNN ? knn_flops : 0, pk = s == S_KNN ? knn_peak : peak;
        printf("%-11s %9.2f %6.1f%%", stage_name[s], med[s] * 1e3, 100 * med[s] / sum);
        if (fl > 0)
            printf(" %11.2f %9.2f %7.2fx\n", fl / 1e9, fl / (pk * 1e9) * 1e3, med[s] / (fl / (pk * 1e9)));
        else
            printf(" %11s %9s %8s\n", "-", "-", "-");
    }
    printf("%-11s %9.2f\n", "total", sum * 1e3);
    printf("knn: %s search, %s filter (%s), did %.1f%% of the brute force's distance work (brute force at the "
           "f32 peak: %.2f ms)\n", kix ? "pruned" : "brute-force", kix ? pc_knn_filter_name(pc_knn_index_filter(kix)) : "no",
           kix ? pc_knn_index_kernel(kix) : "openblas sgemm", 100 * knn_flops / brute_flops,
           brute_flops / (peak32 * 1e9) * 1e3);
    printf("fit features: %.2f ms/image (backbone + features), floor %.2f ms\n",
           (med[S_BACKBONE] + med[S_FEAT]) * 1e3, 2 * macs / (peak * 1e9) * 1e3);

    for (int s = 0; s < NSTAGE; s++) free(t[s]);
    free(pairs), free(input), free(feats), free(dist), free(idx), free(ps), free(map), free(norms);
    free(kws), free(fws), free(mws);
    for (int l = 0; l < 4; l++) free(acts[l]);
    pc_knn_index_free(kix);
    pc_features_plan_free(plan);
    pc_backbone_free(bb);
    pc_model_free(m);
    return 0;
}
