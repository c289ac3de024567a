/*
 * test_knn.c - blocked-SGEMM k-NN against faiss IndexFlatL2 (tests/ref/gen_algos.py: distances within
 * relative 1e-4 of the largest, indices equal wherever the distance is not tied) and against the
 * brute-force reference (exact tie order: lowest indices first), on odd shapes with duplicates and
 * k > 1, with a workspace too small for the queries (several query blocks) and without bank norms.
 * The pruned search (pc_knn_index_search) must return exactly what the brute force returns (memcmp of
 * distances and indices) on clustered random data with duplicated bank rows and queries equal to bank
 * rows, k = 1, 3, 9 (and k > n), across several query chunks and 2 threads, and on real ResNet-18
 * bottle features from the pipeline reference (tests/ref/gen_pipeline.py); and from 4 threads at once
 * on one index, each with its own workspace (bit-identical to the serial results).
 */
#include "coreset.h"
#include "knn.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void run_case(const char *name, size_t ws_queries) {
    char rel[256];
    snprintf(rel, sizeof rel, "algos/knn_%s_bank.npy", name);
    if (!ref_exists(rel)) TEST_SKIP_MSG("reference %s missing (run make refs)", rel);
    npy_array bank, q, rd, ri, kk;
    assert_int_equal(npy_load(rel, &bank), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_q.npy", name);
    assert_int_equal(npy_load(rel, &q), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_dist.npy", name);
    assert_int_equal(npy_load(rel, &rd), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_idx.npy", name);
    assert_int_equal(npy_load(rel, &ri), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_k.npy", name);
    assert_int_equal(npy_load(rel, &kk), 0);
    const int64_t N = bank.shape[0], M = q.shape[0];
    const int32_t D = (int32_t)bank.shape[1], k = ((int32_t *)kk.data)[0];
    float *norms = pc_malloc(sizeof(float) * (size_t)N), *dist = pc_malloc(sizeof(float) * (size_t)(M * k));
    float *bd = pc_malloc(sizeof(float) * (size_t)(M * k));
    int64_t *idx = pc_malloc(sizeof(int64_t) * (size_t)(M * k)), *bi = pc_malloc(sizeof(int64_t) * (size_t)(M * k));
    pc_knn_norms(norms, bank.data, N, D);
    size_t wsb = pc_knn_workspace_size((int64_t)ws_queries);
    void *ws = pc_malloc(wsb);
    for (int with_norms = 0; with_norms < 2; with_norms++) {
        assert_int_equal(pc_knn_search(dist, idx, q.data, M, bank.data, with_norms ? norms : NULL, N, D, k, ws, wsb), PC_OK);
        assert_int_equal(pc_knn_search_reference(bd, bi, q.data, M, bank.data, N, D, k), PC_OK);
        double e_faiss = max_rel_err(dist, rd.data, (size_t)(M * k));
        double e_brute = max_rel_err(dist, bd, (size_t)(M * k));
        /* indices: identical to brute force except where distances are within fp32 noise of each other */
        const float *fd = rd.data;
        const int64_t *fi = ri.data;
        double scale = 0;
        for (int64_t i = 0; i < M * k; i++) scale = fmax(scale, bd[i]);
        int64_t idx_diff = 0, faiss_diff = 0;
        for (int64_t i = 0; i < M * k; i++) {
            assert_true(i % k == 0 || dist[i] >= dist[i - 1]); /* ascending */
            assert_true(dist[i] >= 0.f);
            if (idx[i] != bi[i]) {
                idx_diff++;
                /* a swap is only allowed between candidates the fp32 GEMM cannot tell apart */
                assert_true(fabs((double)dist[i] - bd[i]) <= 1e-5 * scale);
            }
            if (idx[i] != fi[i]) {
                faiss_diff++;
                assert_true(fabs((double)dist[i] - fd[i]) <= 1e-5 * scale);
            }
        }
        print_message("knn %-4s M %lld N %lld D %d k %d (query block <= %zu, norms %s): vs faiss %.2e, vs brute "
                      "%.2e; index differences: %lld vs brute, %lld vs faiss (near-ties only)\n", name,
                      (long long)M, (long long)N, D, k, ws_queries, with_norms ? "given" : "computed", e_faiss,
                      e_brute, (long long)idx_diff, (long long)faiss_diff);
        assert_true(e_faiss <= 1e-4);
        assert_true(e_brute <= 1e-4);
    }
    pc_free(norms), pc_free(dist), pc_free(bd), pc_free(idx), pc_free(bi), pc_free(ws);
    npy_free(&bank), npy_free(&q), npy_free(&rd), npy_free(&ri), npy_free(&kk);
}

static void test_odd(void **s) { (void)s; run_case("odd", 50); }
static void test_wide(void **s) { (void)s; run_case("wide", 784); }
static void test_k3(void **s) { (void)s; run_case("k3", 7); }

/* Ties by construction, worked by hand: bank rows 0..5 on a line, 1-D: {2, 0, 2, -2, 5, 0};
 * query 0 -> distances {4, 0, 4, 4, 25, 0}: k = 4 gives (0:1) (0:5) (4:0) (4:2). k = 8 > N pads. */
static void test_ties_by_hand(void **s) {
    (void)s;
    const float bank[6] = {2, 0, 2, -2, 5, 0}, q = 0;
    float d[8];
    int64_t i[8];
    size_t wsb = pc_knn_workspace_size(1);
    void *ws = pc_malloc(wsb);
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 4, ws, wsb), PC_OK);
    const int64_t ei[4] = {1, 5, 0, 2};
    const float ed[4] = {0, 0, 4, 4};
    for (int t = 0; t < 4; t++) {
        assert_int_equal(i[t], ei[t]);
        assert_float_equal(d[t], ed[t], 0);
    }
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 8, ws, wsb), PC_OK);
    assert_int_equal(i[5], 4);
    assert_int_equal(i[6], -1);
    assert_true(isinf(d[7]));
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 0, ws, wsb), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 1, ws, 16), PC_ERR_INVALID_ARGUMENT);
    pc_free(ws);
}


/* The pruned search against the brute force (bit-identical) and the double-precision reference (the
 * same tolerance rule as run_case: distances within relative 1e-4 of the largest, an index may differ
 * only between candidates within 1e-5 of the largest distance). Returns the pairs the pruned search
 * computed, as a fraction of m n. ref_d/ref_i: the reference for ref_k >= k neighbours (its first k are the
 * reference for k: the order is total), or NULL to compute it here. Every candidate filter runs (f32, bf16
 * native where the CPU has it, else emulated, and bf16 emulated): each must equal the brute force bit for
 * bit. evals_out: re-evaluations per query of each filter, or NULL. ref_tol: the distance gap, relative to
 * the largest, within which an index may differ from the double reference. */
enum { N_FILTERS = 3 };
static const pc_knn_filter filters[N_FILTERS] = {PC_KNN_FILTER_F32, PC_KNN_FILTER_BF16, PC_KNN_FILTER_BF16_EMULATED};

static double check_pruned_ev(const char *name, const float *bank, int64_t n, const float *q, int64_t m, int32_t D,
                              int32_t k, int32_t clusters, int64_t ws_queries, const float *ref_d, const int64_t *ref_i,
                              int32_t ref_k, double *evals_out, double ref_tol) {
    float *norms = pc_malloc(sizeof(float) * (size_t)n);
    float *d0 = pc_malloc(sizeof(float) * (size_t)(m * k)), *d1 = pc_malloc(sizeof(float) * (size_t)(m * k));
    float *dr = pc_malloc(sizeof(float) * (size_t)(m * k));
    int64_t *i0 = pc_malloc(sizeof(int64_t) * (size_t)(m * k)), *i1 = pc_malloc(sizeof(int64_t) * (size_t)(m * k));
    int64_t *ir = pc_malloc(sizeof(int64_t) * (size_t)(m * k));
    pc_knn_norms(norms, bank, n, D);
    size_t wb = pc_knn_workspace_size(64);
    void *wsb = pc_malloc(wb);
    assert_int_equal(pc_knn_search(d0, i0, q, m, bank, norms, n, D, k, wsb, wb), PC_OK);
    if (ref_d) {
        for (int64_t i = 0; i < m; i++)
            for (int32_t t = 0; t < k; t++) dr[i * k + t] = ref_d[i * ref_k + t], ir[i * k + t] = ref_i[i * ref_k + t];
    } else {
        assert_int_equal(pc_knn_search_reference(dr, ir, q, m, bank, n, D, k), PC_OK);
    }
    double frac = 0;
    for (int f = 0; f < N_FILTERS; f++) {
        pc_knn_index *ix;
        assert_int_equal(pc_knn_index_build_filter(&ix, bank, norms, n, D, clusters, filters[f]), PC_OK);
        assert_true(pc_knn_index_filter(ix) == filters[f] ||
                    (filters[f] == PC_KNN_FILTER_BF16 && pc_knn_index_filter(ix) == PC_KNN_FILTER_BF16_EMULATED));
        size_t wi = pc_knn_index_workspace_size(ix, ws_queries, k, 2);
        void *wsi = pc_malloc(wi);
        pc_knn_stats st;
        memset(d1, 0xff, sizeof(float) * (size_t)(m * k));
        assert_int_equal(pc_knn_index_search(ix, d1, i1, q, m, k, wsi, wi, &st), PC_OK);
        int64_t diff = 0, ref_diff = 0;
        double scale = 0, e_ref = 0;
        for (int64_t i = 0; i < m * k; i++)
            if (isfinite(dr[i])) scale = fmax(scale, dr[i]);
        for (int64_t i = 0; i < m * k; i++) {
            diff += i0[i] != i1[i] || memcmp(&d0[i], &d1[i], sizeof(float)) != 0;
            if (isinf(dr[i])) { /* k > n: padding */
                assert_true(isinf(d1[i]) && i1[i] == -1 && ir[i] == -1);
                continue;
            }
            e_ref = fmax(e_ref, fabs((double)d1[i] - dr[i]) / fmax(scale, 1e-30));
            if (i1[i] != ir[i]) {
                ref_diff++;
                assert_true(fabs((double)d1[i] - dr[i]) <= ref_tol * scale);
            }
        }
        frac = (double)st.pairs / ((double)m * n);
        print_message("pruned %-9s n %5lld m %4lld D %4d k %2d, %4d clusters, query chunk %4lld, filter %-13s: %lld "
                      "differ from brute force; vs double reference %.1e, %lld near-tie index swaps; distance work "
                      "%.1f%%, %.1f re-evaluations per query\n", name, (long long)n, (long long)m, D, k,
                      pc_knn_index_clusters(ix), (long long)ws_queries, pc_knn_filter_name(pc_knn_index_filter(ix)),
                      (long long)diff, e_ref, (long long)ref_diff, 100 * frac, (double)st.evals / (double)m);
        assert_int_equal(diff, 0);
        assert_true(e_ref <= PC_MAX(1e-4, ref_tol));
        if (evals_out) evals_out[f] = (double)st.evals / (double)m;
        pc_knn_index_free(ix);
        pc_free(wsi);
    }
    pc_free(norms), pc_free(d0), pc_free(d1), pc_free(dr), pc_free(i0), pc_free(i1), pc_free(ir);
    pc_free(wsb);
    return frac;
}

static double check_pruned(const char *name, const float *bank, int64_t n, const float *q, int64_t m, int32_t D,
                           int32_t k, int32_t clusters, int64_t ws_queries, const float *ref_d, const int64_t *ref_i,
                           int32_t ref_k) {
    return check_pruned_ev(name, bank, n, q, m, D, k, clusters, ws_queries, ref_d, ref_i, ref_k, NULL, 1e-5);
}

static float gauss(pc_rng *r) { /* sum of 4 uniforms, centred: close enough to a normal for blobs */
    float s = 0;
    for (int i = 0; i < 4; i++) s += (float)(pc_rng_next(r) >> 40) * 0x1p-24f;
    return s - 2.0f;
}

/* Blobs in D = 70 (not a multiple of the 32-wide canonical kernel): 40 centres, 4000 bank rows around
 * them at varied spreads, rows 3000.. copies of earlier rows (some of the first ones, the cluster
 * centres, included); queries: fresh blob points, exact copies of bank rows (duplicated ones too) and
 * a few far-away points. */
static void test_pruned_clustered(void **s) {
    (void)s;
    const int64_t n = 4000, m = 500, G = 40;
    const int32_t D = 70;
    pc_rng r = {12345};
    float *cent = pc_malloc(sizeof(float) * (size_t)(G * D)), *bank = pc_malloc(sizeof(float) * (size_t)(n * D));
    float *q = pc_malloc(sizeof(float) * (size_t)(m * D));
    for (int64_t i = 0; i < G * D; i++) cent[i] = 4 * gauss(&r);
    for (int64_t i = 0; i < n; i++) {
        int64_t g = (int64_t)pc_rng_below(&r, (uint64_t)G);
        float spread = 0.2f + (float)(i % 7) * 0.15f;
        if (i >= 3000) {
            int64_t src = i < 3030 ? (int64_t)pc_rng_below(&r, 60) : (int64_t)pc_rng_below(&r, 3000);
            memcpy(bank + (size_t)i * D, bank + (size_t)src * D, sizeof(float) * D);
        } else {
            for (int32_t c = 0; c < D; c++) bank[(size_t)i * D + c] = cent[g * D + c] + spread * gauss(&r);
        }
    }
    for (int64_t i = 0; i < m; i++) {
        float *x = q + (size_t)i * D;
        if (i % 5 == 0) { /* a bank row; every 10th query one that has a copy */
            int64_t src = i % 10 == 0 ? (int64_t)pc_rng_below(&r, 60) : (int64_t)pc_rng_below(&r, (uint64_t)n);
            memcpy(x, bank + (size_t)src * D, sizeof(float) * D);
        } else if (i % 97 == 1) {
            for (int32_t c = 0; c < D; c++) x[c] = 30 * gauss(&r);
        } else {
            int64_t g = (int64_t)pc_rng_below(&r, (uint64_t)G);
            for (int32_t c = 0; c < D; c++) x[c] = cent[g * D + c] + 0.5f * gauss(&r);
        }
    }
    const int32_t ks[3] = {1, 3, 9};
    for (int t = 0; t < 3; t++) {
        double frac = check_pruned("clustered", bank, n, q, m, D, ks[t], 0, t == 1 ? 77 : 1024, NULL, NULL, 0);
        assert_true(frac < 0.6); /* the blobs are far apart: most of the bank is skipped */
    }
    check_pruned("clustered", bank, n, q, m, D, 1, 7, 1024, NULL, NULL, 0); /* few, loose clusters */
    check_pruned("clustered", bank, n, q, m, D, 1, 4000, 1024, NULL, NULL, 0); /* every row its own cluster */
    /* a query equal to a bank row finds the lowest-indexed copy of that row first */
    {
        float d[3];
        int64_t idx[3];
        float *norms = pc_malloc(sizeof(float) * (size_t)n);
        pc_knn_norms(norms, bank, n, D);
        pc_knn_index *ix;
        assert_int_equal(pc_knn_index_build(&ix, bank, norms, n, D, 0), PC_OK);
        size_t wi = pc_knn_index_workspace_size(ix, 1, 3, 2);
        void *ws = pc_malloc(wi);
        for (int64_t i = 3000; i < 3030; i++) {
            int64_t lowest = i;
            for (int64_t j = 0; j < i; j++)
                if (!memcmp(bank + (size_t)j * D, bank + (size_t)i * D, sizeof(float) * D)) {
                    lowest = j;
                    break;
                }
            assert_true(lowest < 60);
            assert_int_equal(pc_knn_index_search(ix, d, idx, bank + (size_t)i * D, 1, 3, ws, wi, NULL), PC_OK);
            assert_int_equal(idx[0], lowest);
            assert_true(idx[1] > lowest && d[1] == d[0]); /* the next copy: same distance, next index */
        }
        pc_knn_index_free(ix);
        pc_free(ws), pc_free(norms);
    }
    pc_free(cent), pc_free(bank), pc_free(q);
}

/* A bank of 5 rows and k = 8 > n: the tail is padded (+inf, -1) as in the brute force; tiny banks. */
static void test_pruned_small(void **s) {
    (void)s;
    const float bank[6] = {2, 0, 2, -2, 5, 0}, q[3] = {0, 1.5f, 9};
    check_pruned("tiny", bank, 6, q, 3, 1, 8, 2, 1024, NULL, NULL, 0);
    check_pruned("tiny", bank, 6, q, 3, 1, 4, 0, 1, NULL, NULL, 0);
    check_pruned("tiny", bank, 1, q, 3, 1, 2, 0, 1024, NULL, NULL, 0);
}

/* Real ResNet-18 layer 2+3 features of bottle (the pipeline reference's 6 training images): the bank
 * is images 1-5's patches with the reference coreset's picks first (as in a fitted model, whose bank
 * is in coreset selection order), the queries every other patch of image 0 (the double-precision
 * reference is the slow part). */
static void test_pruned_real(void **s) {
    (void)s;
    if (!ref_exists("pipeline/r18/features_train.npy")) TEST_SKIP_MSG("pipeline reference missing (run make refs)");
    npy_array f, cs;
    assert_int_equal(npy_load("pipeline/r18/features_train.npy", &f), 0);
    assert_int_equal(npy_load("pipeline/r18/coreset.npy", &cs), 0);
    const int64_t N = f.shape[0], D = f.shape[1], hw = 784, ncs = cs.shape[0];
    assert_true(N > hw);
    const float *F = f.data;
    const int64_t *sel = cs.data;
    float *bank = pc_malloc(sizeof(float) * (size_t)(N * D));
    uint8_t *used = pc_calloc((size_t)N, 1);
    int64_t n = 0;
    for (int64_t i = 0; i < ncs; i++)
        if (sel[i] >= hw && !used[sel[i]]) used[sel[i]] = 1, memcpy(bank + (size_t)(n++) * D, F + (size_t)sel[i] * D, sizeof(float) * D);
    for (int64_t i = hw; i < N; i++)
        if (!used[i]) memcpy(bank + (size_t)(n++) * D, F + (size_t)i * D, sizeof(float) * D);
    assert_int_equal(n, N - hw);
    const int32_t ks[3] = {1, 3, 9};
    const int64_t m = hw / 2;
    float *q = pc_malloc(sizeof(float) * (size_t)(m * D)), *rd = pc_malloc(sizeof(float) * (size_t)(m * 9));
    int64_t *ri = pc_malloc(sizeof(int64_t) * (size_t)(m * 9));
    for (int64_t i = 0; i < m; i++) memcpy(q + (size_t)i * D, F + (size_t)(2 * i) * D, sizeof(float) * D);
    assert_int_equal(pc_knn_search_reference(rd, ri, q, m, bank, n, (int32_t)D, 9), PC_OK);
    for (int t = 0; t < 3; t++) {
        double frac = check_pruned("real r18", bank, n, q, m, (int32_t)D, ks[t], 0, t == 2 ? 100 : 1024, rd, ri, 9);
        assert_true(frac < 0.5);
    }
    pc_free(bank), pc_free(used), pc_free(q), pc_free(rd), pc_free(ri);
    npy_free(&f), npy_free(&cs);
}

/* Near-ties on purpose: 3 groups of 400 bank rows, each row p_g + delta with |delta_i| <= 2e-3 around
 * a point p_g far from the origin (coordinates 8 + 3 N(0, 1), so that only centring keeps the bf16 rounding
 * small), p_g itself the group's first row and thus a cluster centre; 1 in 8 rows duplicates an earlier
 * row of its group. Queries at distance about 1 from their group's point see all its 400 rows within a
 * few 1e-3 of each other, inside the bf16 filter's margin: most candidates are re-evaluated
 * canonically, and the results must still equal the brute force's, ties included. Again with the points
 * near the origin, where the f32 filter's margin is far smaller than the bf16 one's. */
static void near_ties(float offset, float spread, int bf16_only) {
    const int64_t G = 3, per = 400, n = G * per, m = 60;
    const int32_t D = 64;
    pc_rng r = {4242};
    float *bank = pc_malloc(sizeof(float) * (size_t)(n * D)), *q = pc_malloc(sizeof(float) * (size_t)(m * D));
    float *p = pc_malloc(sizeof(float) * (size_t)(G * D));
    for (int64_t i = 0; i < G * D; i++) p[i] = offset + spread * gauss(&r);
    /* rows 0 .. G-1 are the points (the first rows become the cluster centres), then the groups in turn */
    for (int64_t i = 0; i < n; i++) {
        int64_t g = i < G ? i : (i - G) * G / (n - G);
        float *b = bank + (size_t)i * D;
        if (i >= G && i % 8 == 0) {
            int64_t src = i - 1 - (int64_t)pc_rng_below(&r, 5);
            if (src >= G && (src - G) * G / (n - G) == g) {
                memcpy(b, bank + (size_t)src * D, sizeof(float) * D);
                continue;
            }
        }
        for (int32_t c = 0; c < D; c++) b[c] = p[g * D + c] + (i < G ? 0.f : 1e-3f * gauss(&r));
    }
    for (int64_t i = 0; i < m; i++) {
        int64_t g = i % G;
        float dir[64], nn = 0;
        for (int32_t c = 0; c < D; c++) dir[c] = gauss(&r), nn += dir[c] * dir[c];
        for (int32_t c = 0; c < D; c++) q[(size_t)i * D + c] = p[g * D + c] + dir[c] / sqrtf(nn);
    }
    double ev[N_FILTERS];
    const int32_t ks[2] = {1, 9};
    for (int t = 0; t < 2; t++) {
        /* against the double reference only loosely: the near-ties (a few 1e-3) are within the fp32 GEMM
         * form's own error (gamma_K (|q|^2 + |b|^2) ~ 0.03 here), so its index order is not fp32's */
        check_pruned_ev("near-ties", bank, n, q, m, D, ks[t], (int32_t)G, 1024, NULL, NULL, 0, ev, 1e-1);
        assert_true(ev[1] > 0.5 * per); /* the bf16 filter's margin holds most of the group: re-evaluated */
        if (bf16_only) assert_true(ev[0] < 0.5 * ev[1]); /* ... where the f32 filter's would not */
    }
    pc_free(bank), pc_free(q), pc_free(p);
}

static void test_pruned_near_ties(void **s) {
    (void)s;
    near_ties(8.0f, 3.0f, 0); /* large norms: both filters re-evaluate nearly everything */
    near_ties(0.0f, 0.1f, 1); /* small norms: the f32 filter is sharp, the bf16 one's margin holds the ties */
}

/* PATCHCORE_KNN_FILTER selects the filter of pc_knn_index_build; an unknown value is an error. */
static void test_filter_env(void **s) {
    (void)s;
    const float bank[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    float norms[8];
    pc_knn_norms(norms, bank, 8, 1);
    pc_knn_index *ix = NULL;
    const char *old = getenv("PATCHCORE_KNN_FILTER");
    char *saved = old ? strdup(old) : NULL;
    static const struct {
        const char *v;
        pc_knn_filter f;
    } cases[] = {{"f32", PC_KNN_FILTER_F32}, {"bf16-emulated", PC_KNN_FILTER_BF16_EMULATED}, {"bf16", PC_KNN_FILTER_BF16}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        setenv("PATCHCORE_KNN_FILTER", cases[i].v, 1);
        assert_int_equal(pc_knn_index_build(&ix, bank, norms, 8, 1, 2), PC_OK);
        pc_knn_filter f = pc_knn_index_filter(ix);
        assert_true(f == cases[i].f || (cases[i].f == PC_KNN_FILTER_BF16 && f == PC_KNN_FILTER_BF16_EMULATED));
        print_message("PATCHCORE_KNN_FILTER=%s: filter %s, kernel %s\n", cases[i].v, pc_knn_filter_name(f),
                      pc_knn_index_kernel(ix));
        pc_knn_index_free(ix);
    }
    /* auto: the bf16 filter exactly where its native kernel runs, else f32 */
    setenv("PATCHCORE_KNN_FILTER", "auto", 1);
    assert_int_equal(pc_knn_index_build(&ix, bank, norms, 8, 1, 2), PC_OK);
    assert_true(pc_knn_index_filter(ix) == (pc_knn_bf16_native() ? PC_KNN_FILTER_BF16 : PC_KNN_FILTER_F32));
    print_message("PATCHCORE_KNN_FILTER=auto: filter %s, kernel %s\n", pc_knn_filter_name(pc_knn_index_filter(ix)),
                  pc_knn_index_kernel(ix));
    pc_knn_index_free(ix);
    setenv("PATCHCORE_KNN_FILTER", "fp8", 1);
    assert_int_equal(pc_knn_index_build(&ix, bank, norms, 8, 1, 2), PC_ERR_INVALID_ARGUMENT);
    assert_null(ix);
    if (saved) setenv("PATCHCORE_KNN_FILTER", saved, 1), free(saved);
    else unsetenv("PATCHCORE_KNN_FILTER");
}

/* Several threads search one index at once, each with its own workspace (as predict contexts do). */
typedef struct th_job {
    const pc_knn_index *ix;
    const float *q;
    int64_t m;
    int32_t k;
    float *d;
    int64_t *i;
    int status;
} th_job;

static void *th_run(void *arg) {
    th_job *j = arg;
    size_t wi = pc_knn_index_workspace_size(j->ix, j->m, j->k, 2);
    void *ws = pc_malloc(wi);
    j->status = ws ? 0 : -1;
    for (int r = 0; r < 3 && !j->status; r++) j->status = pc_knn_index_search(j->ix, j->d, j->i, j->q, j->m, j->k, ws, wi, NULL);
    pc_free(ws);
    return NULL;
}

static void test_pruned_threads(void **s) {
    (void)s;
    const int64_t n = 5000, m = 300;
    const int32_t D = 48, k = 3;
    pc_rng r = {777};
    float *bank = pc_malloc(sizeof(float) * (size_t)(n * D)), *q = pc_malloc(sizeof(float) * (size_t)(m * D));
    for (int64_t i = 0; i < n * D; i++) bank[i] = gauss(&r) + (float)((i / D) % 16) * (i % D == (i / D) % D);
    for (int64_t i = 0; i < m * D; i++) q[i] = bank[(i * 7) % (n * D)] + 0.1f * gauss(&r);
    float *norms = pc_malloc(sizeof(float) * (size_t)n), *d0 = pc_malloc(sizeof(float) * (size_t)(m * k));
    int64_t *i0 = pc_malloc(sizeof(int64_t) * (size_t)(m * k));
    pc_knn_norms(norms, bank, n, D);
    size_t wb = pc_knn_workspace_size(m);
    void *wsb = pc_malloc(wb);
    assert_int_equal(pc_knn_search(d0, i0, q, m, bank, norms, n, D, k, wsb, wb), PC_OK);
    for (int f = 0; f < N_FILTERS; f++) {
    pc_knn_index *ix;
    assert_int_equal(pc_knn_index_build_filter(&ix, bank, norms, n, D, 0, filters[f]), PC_OK);
    enum { NT = 4 };
    th_job jobs[NT];
    pthread_t th[NT];
    for (int t = 0; t < NT; t++) {
        jobs[t] = (th_job){ix, q, m, k, pc_malloc(sizeof(float) * (size_t)(m * k)), pc_malloc(sizeof(int64_t) * (size_t)(m * k)), -1};
        assert_int_equal(pthread_create(&th[t], NULL, th_run, &jobs[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        assert_int_equal(pthread_join(th[t], NULL), 0);
        assert_int_equal(jobs[t].status, PC_OK);
        assert_memory_equal(jobs[t].d, d0, sizeof(float) * (size_t)(m * k));
        assert_memory_equal(jobs[t].i, i0, sizeof(int64_t) * (size_t)(m * k));
        pc_free(jobs[t].d), pc_free(jobs[t].i);
    }
    pc_knn_index_free(ix);
    }
    pc_free(bank), pc_free(q), pc_free(norms), pc_free(d0), pc_free(i0), pc_free(wsb);
}

/* The bf16 product kernel against a double-precision dot of the same bf16 values, within what the
 * filter's bound assumes (docs/method-implementation.md §5): |out - x.y| <= gamma_K sum |x_j y_j| +
 * K' 2^-125 + 2^-126 (sum |x_j| + sum |y_j|) (sequential fp32 sums of exact products, denormal inputs
 * read as zero, products and sums below 2^-126 lost). Odd dims, short last shells, 1 .. 13 rows (the
 * 8/4/1-row blocks), values of mixed scales including bf16 denormals and products that underflow,
 * pairs whose two products cancel; the columns past the last shell's end are not written. */
static uint16_t t_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static double t_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float t_value(uint64_t *st, int kind) {
    *st = *st * 6364136223846793005ULL + 1442695040888963407ULL;
    const double r = (double)(*st >> 11) * 0x1p-53 * 2 - 1; /* [-1, 1) */
    switch (kind) {
    case 0: return (float)r;                  /* ordinary */
    case 1: return (float)(r * 0x1p-60);      /* products near 2^-120 (some underflow) */
    case 2: return (float)(r * 0x1p-127);     /* bf16 denormals */
    case 3: return (float)(r * 0x1p+40);      /* large */
    default: return (*st >> 40) & 1 ? 0.0f : -0.0f;
    }
}

static void test_bf16_kernel(void **s) {
    (void)s;
    if (!pc_knn_bf16_native()) {
        print_message("bf16 kernel: no AVX512-BF16 here (or oneDNN capped below it): kernel test skipped\n");
        assert_int_equal(pc_knn_bf16_tile(NULL, 0, NULL, 0, 0, NULL, 0, 0, 1), 0);
        return;
    }
    static const int32_t dims[] = {1, 2, 3, 7, 16, 31, 32, 33, 384, 385};
    static const int32_t rows_[] = {1, 3, 4, 5, 8, 9, 13};
    static const int32_t lasts[] = {1, 15, 16, 17, 31, 32};
    uint64_t st = 12345;
    double worst = 0;
    int64_t checked = 0;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int32_t D = dims[di], KP = pc_knn_bf16_kpairs(D), ldx = 2 * KP + 2;
        for (int mix = 0; mix < 6; mix++) {
            for (size_t li = 0; li < sizeof lasts / sizeof *lasts; li++) {
                const int32_t ns = 1 + (int32_t)((li + mix) % 3), last = lasts[li], nb = 32 * (ns - 1) + last;
                const int32_t R = rows_[(li + di + mix) % (sizeof rows_ / sizeof *rows_)];
                uint16_t *b = calloc((size_t)nb * D, 2), *pk = malloc((size_t)ns * KP * 64 * 2);
                uint16_t *x = calloc((size_t)R * ldx, 2);
                float *out = malloc(sizeof(float) * (size_t)R * 32 * ns);
                for (int64_t i = 0; i < (int64_t)nb * D; i++) {
                    /* mix 0: ordinary; 1: + tiny; 2: + denormals; 3: large, cancelling pairs; 4-5: all kinds */
                    int kind = mix == 0 ? 0 : mix == 1 ? (i % 3 ? 0 : 1) : mix == 2 ? (i % 2 ? 0 : 2)
                             : mix == 3 ? 3 : (int)(i % 5);
                    b[i] = t_bf16(t_value(&st, kind));
                }
                for (int32_t r = 0; r < R; r++)
                    for (int32_t j = 0; j < D; j++) {
                        int kind = mix == 0 ? 0 : mix == 1 ? (j % 2 ? 0 : 1) : mix == 2 ? (j % 3 ? 2 : 0)
                                 : mix == 3 ? 3 : (int)((j + r) % 5);
                        x[(size_t)r * ldx + j] = t_bf16(t_value(&st, kind));
                    }
                if (mix == 3 && D >= 2) /* pair 0 of row 0 against entry 0: the two products cancel exactly */
                    x[0] = b[1], x[1] = b[0] ^ 0x8000u;
                for (int32_t sh = 0; sh < ns; sh++)
                    pc_knn_bf16_pack_shell(pk + (size_t)sh * KP * 64, b + (size_t)sh * 32 * D, sh == ns - 1 ? last : 32, D);
                for (size_t i = 0; i < (size_t)R * 32 * ns; i++) out[i] = 12345.0f;
                assert_int_equal(pc_knn_bf16_tile(out, 32 * ns, x, R, ldx, pk, ns, last, D), 1);
                const double u = 0x1p-24, gk = D * u / (1 - D * u);
                for (int32_t r = 0; r < R; r++)
                    for (int32_t e = 0; e < 32 * ns; e++) {
                        const float o = out[(size_t)r * 32 * ns + e];
                        if (e >= nb) {
                            assert_true(o == 12345.0f);
                            continue;
                        }
                        double dot = 0, sabs = 0, l1 = 0;
                        for (int32_t j = 0; j < D; j++) {
                            double xv = t_from_bf16(x[(size_t)r * ldx + j]), yv = t_from_bf16(b[(size_t)e * D + j]);
                            dot += xv * yv; /* exact: bf16 x bf16 fits a double, and these sums stay exact enough */
                            sabs += fabs(xv * yv);
                            l1 += fabs(xv) + fabs(yv);
                        }
                        const double bound = gk * sabs + (D + 1) * 0x1p-125 + 0x1p-126 * l1 + 1e-300;
                        const double err = fabs((double)o - dot);
                        if (!(err <= bound))
                            print_message("D %d mix %d row %d col %d: out %.9g dot %.9g err %.3g bound %.3g\n", D, mix,
                                          r, e, o, dot, err, bound);
                        assert_true(err <= bound);
                        worst = fmax(worst, err / bound);
                        checked++;
                    }
                free(b), free(pk), free(x), free(out);
            }
        }
    }
    print_message("bf16 kernel: %lld outputs within the bound, worst error %.3f of it\n", (long long)checked, worst);
}

/* pc_set_deadline_local reaches into both searches (src/cancel.c): past it, the pruned search (checked
 * per cluster, on every thread) and the brute force (per bank block) stop with PC_ERR_CANCELLED; a
 * deadline that has not passed changes nothing (results memcmp-equal to those without one). */
static void test_deadline(void **s) {
    (void)s;
    const int64_t n = 6000, m = 300;
    const int32_t D = 32, k = 3;
    pc_rng r = {777};
    float *bank = pc_malloc(sizeof(float) * (size_t)(n * D)), *q = pc_malloc(sizeof(float) * (size_t)(m * D));
    for (int64_t i = 0; i < n * D; i++) bank[i] = gauss(&r);
    for (int64_t i = 0; i < m * D; i++) q[i] = gauss(&r);
    float *norms = pc_malloc(sizeof(float) * (size_t)n);
    pc_knn_norms(norms, bank, n, D);
    pc_knn_index *ix;
    assert_int_equal(pc_knn_index_build(&ix, bank, norms, n, D, 0), PC_OK);
    size_t wi = pc_knn_index_workspace_size(ix, m, k, 2), wb = pc_knn_workspace_size(m);
    void *ws = pc_malloc(wi > wb ? wi : wb);
    float *d0 = pc_malloc(sizeof(float) * (size_t)(m * k)), *d1 = pc_malloc(sizeof(float) * (size_t)(m * k));
    int64_t *i0 = pc_malloc(sizeof(int64_t) * (size_t)(m * k)), *i1 = pc_malloc(sizeof(int64_t) * (size_t)(m * k));
    for (int pruned = 0; pruned < 2; pruned++) {
        pc_status st0 = pruned ? pc_knn_index_search(ix, d0, i0, q, m, k, ws, wi, NULL)
                               : pc_knn_search(d0, i0, q, m, bank, norms, n, D, k, ws, wb);
        assert_int_equal(st0, PC_OK);
        pc_set_deadline_local(3600);
        pc_status st1 = pruned ? pc_knn_index_search(ix, d1, i1, q, m, k, ws, wi, NULL)
                               : pc_knn_search(d1, i1, q, m, bank, norms, n, D, k, ws, wb);
        assert_int_equal(st1, PC_OK);
        assert_memory_equal(d0, d1, sizeof(float) * (size_t)(m * k));
        assert_memory_equal(i0, i1, sizeof(int64_t) * (size_t)(m * k));
        pc_set_deadline_local(1e-9);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        st1 = pruned ? pc_knn_index_search(ix, d1, i1, q, m, k, ws, wi, NULL)
                     : pc_knn_search(d1, i1, q, m, bank, norms, n, D, k, ws, wb);
        pc_set_deadline_local(0);
        assert_int_equal(st1, PC_ERR_CANCELLED);
        assert_non_null(strstr(pc_last_error(), "during the kNN search"));
    }
    pc_knn_index_free(ix);
    pc_free(ws), pc_free(norms), pc_free(bank), pc_free(q), pc_free(d0), pc_free(d1), pc_free(i0), pc_free(i1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_by_hand),
        cmocka_unit_test(test_odd),
        cmocka_unit_test(test_wide),
        cmocka_unit_test(test_k3),
        cmocka_unit_test(test_pruned_small),
        cmocka_unit_test(test_pruned_clustered),
        cmocka_unit_test(test_pruned_real),
        cmocka_unit_test(test_pruned_near_ties),
        cmocka_unit_test(test_filter_env),
        cmocka_unit_test(test_pruned_threads),
        cmocka_unit_test(test_bf16_kernel),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
