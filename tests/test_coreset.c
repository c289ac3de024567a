/*
 * test_coreset.c - the approximate greedy coreset against the reference sampler's loop written in torch
 * (tests/ref/gen_algos.py: same projection matrix and start indices; indices must be identical), the
 * plain C reference, greedy properties on synthetic clustered data, the random/none samplers,
 * determinism and cancellation.
 */
#include "coreset.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t first_diff(const int64_t *a, const int64_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) return i;
    return n;
}

static void run_case(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "algos/coreset_%s_feats.npy", name);
    if (!ref_exists(rel)) TEST_SKIP_MSG("reference %s missing (run make refs)", rel);
    npy_array f, pj, st, idx, idx64, idxd;
    assert_int_equal(npy_load(rel, &f), 0);
    snprintf(rel, sizeof rel, "algos/coreset_%s_proj.npy", name);
    assert_int_equal(npy_load(rel, &pj), 0);
    snprintf(rel, sizeof rel, "algos/coreset_%s_starts.npy", name);
    assert_int_equal(npy_load(rel, &st), 0);
    snprintf(rel, sizeof rel, "algos/coreset_%s_idx.npy", name);
    assert_int_equal(npy_load(rel, &idx), 0);
    snprintf(rel, sizeof rel, "algos/coreset_%s_idx64.npy", name);
    assert_int_equal(npy_load(rel, &idx64), 0);
    snprintf(rel, sizeof rel, "algos/coreset_%s_idxd.npy", name);
    assert_int_equal(npy_load(rel, &idxd), 0);
    const int64_t N = f.shape[0], n = idx.count;
    const int32_t D = (int32_t)f.shape[1];
    int64_t *got = malloc(sizeof(int64_t) * (size_t)n), *gref = malloc(sizeof(int64_t) * (size_t)n);
    assert_int_equal(pc_coreset_greedy(got, f.data, N, D, pj.data, (int32_t)pj.shape[1], st.data, (int32_t)st.count,
                                       n, NULL, NULL), PC_OK);
    assert_int_equal(pc_coreset_greedy_reference(gref, f.data, N, D, pj.data, (int32_t)pj.shape[1], st.data,
                                                 (int32_t)st.count, n), PC_OK);
    int64_t *dense = malloc(sizeof(int64_t) * (size_t)n);
    assert_int_equal(pc_coreset_greedy_dense(dense, f.data, N, D, pj.data, (int32_t)pj.shape[1], st.data,
                                             (int32_t)st.count, n, NULL, NULL), PC_OK);
    assert_memory_equal(got, dense, sizeof(int64_t) * (size_t)n); /* pruning changes nothing */
    free(dense);
    int64_t dt = first_diff(got, idx.data, n), d64 = first_diff(got, idx64.data, n), dr = first_diff(got, gref, n);
    int64_t t64 = first_diff(idx.data, idx64.data, n), dd = first_diff(got, idxd.data, n);
    print_message("coreset %-9s N %lld n %lld: C = torch(fp32, mm form) on %lld, = torch(fp32, differences) on %lld, "
                  "= float64 on %lld, = C reference on %lld; torch mm form = float64 on %lld\n", name, (long long)N,
                  (long long)n, (long long)dt, (long long)dd, (long long)d64, (long long)dr, (long long)t64);
    /* identical to the torch reference as far as the torch reference is itself exact (agrees with
     * float64); beyond a near-tie where fp32 torch and float64 part ways, we must follow float64 */
    assert_true(dt >= t64);
    assert_int_equal(d64, n);
    assert_int_equal(dd, n);
    assert_int_equal(dr, n);
    free(got), free(gref);
    npy_free(&f), npy_free(&pj), npy_free(&st), npy_free(&idx), npy_free(&idx64), npy_free(&idxd);
}

static void test_gauss(void **s) { (void)s; run_case("gauss"); }
static void test_clustered_ref(void **s) { (void)s; run_case("clustered"); }

/* Synthetic clusters: K well separated blobs (centre distance ~ 40, spread 0.5) of different sizes in
 * D = 40. After K picks every cluster must hold one; the selected points' distances (the covering
 * radius at each step, recomputed here in double) must never grow. */
static void test_properties(void **s) {
    (void)s;
    enum { K = 9, D = 40, N = 2311, NSEL = 60 };
    float *x = malloc(sizeof(float) * N * D);
    int *lab = malloc(sizeof(int) * N);
    pc_rng r = {42};
    float cen[K][D];
    for (int k = 0; k < K; k++)
        for (int c = 0; c < D; c++) cen[k][c] = (float)((int)(pc_rng_below(&r, 2001)) - 1000) * 0.02f;
    for (int i = 0; i < N; i++) {
        lab[i] = i < 5 ? 0 : (int)pc_rng_below(&r, K); /* cluster 0 is tiny */
        if (i >= 5 && lab[i] == 0) lab[i] = 1;
        for (int c = 0; c < D; c++)
            x[i * D + c] = cen[lab[i]][c] + ((float)pc_rng_below(&r, 1001) - 500.f) * 0.001f;
    }
    int64_t sel[NSEL];
    assert_int_equal(pc_coreset_select(sel, PC_SAMPLER_APPROX_GREEDY, x, N, D, NSEL, 5, NULL, NULL), PC_OK);
    int covered[K] = {0};
    for (int t = 0; t < K; t++) covered[lab[sel[t]]]++;
    for (int k = 0; k < K; k++) assert_int_equal(covered[k], 1);
    /* covering radius in the projected space, recomputed from scratch */
    float *proj = malloc(sizeof(float) * D * 128);
    pc_coreset_projection(proj, 5, D, 128);
    double *px = malloc(sizeof(double) * N * 128), *dist = malloc(sizeof(double) * N);
    for (int i = 0; i < N; i++)
        for (int k = 0; k < 128; k++) {
            double a = 0;
            for (int c = 0; c < D; c++) a += (double)x[i * D + c] * proj[c * 128 + k];
            px[i * 128 + k] = a;
        }
    /* the method's distance: min(mean distance to the start points, distance to the picks so far) */
    int64_t st[PC_CORESET_STARTS];
    int32_t ns = pc_coreset_starts(st, 5, N);
    for (int i = 0; i < N; i++) {
        double m = 0;
        for (int j = 0; j < ns; j++) {
            double d2 = 0;
            for (int k = 0; k < 128; k++) d2 += (px[i * 128 + k] - px[st[j] * 128 + k]) * (px[i * 128 + k] - px[st[j] * 128 + k]);
            m += sqrt(d2);
        }
        dist[i] = m / ns;
    }
    double prev = INFINITY;
    for (int t = 0; t < NSEL; t++) {
        if (t > 0) { /* covering radius once t points are chosen */
            double rad = 0;
            for (int i = 0; i < N; i++) rad = fmax(rad, dist[i]);
            assert_true(rad <= prev * (1 + 1e-5));
            prev = rad;
        }
        for (int i = 0; i < N; i++) {
            double d2 = 0;
            for (int k = 0; k < 128; k++) d2 += (px[i * 128 + k] - px[sel[t] * 128 + k]) * (px[i * 128 + k] - px[sel[t] * 128 + k]);
            dist[i] = fmin(dist[i], sqrt(d2));
        }
        /* each pick is the farthest point under the current distances (up to fp32 noise) */
        if (t + 1 < NSEL) {
            double mx = 0;
            for (int i = 0; i < N; i++) mx = fmax(mx, dist[i]);
            assert_true(dist[sel[t + 1]] >= mx * (1 - 1e-5));
        }
    }
    for (int a = 0; a < NSEL; a++)
        for (int b = a + 1; b < NSEL; b++) assert_true(sel[a] != sel[b]);
    free(x), free(lab), free(proj), free(px), free(dist);
}

static int cancel_at_10(void *user, const char *stage, int64_t done, int64_t total) {
    (void)total;
    assert_string_equal(stage, "coreset");
    *(int64_t *)user = done;
    return done >= 10;
}

static void test_samplers(void **s) {
    (void)s;
    enum { N = 1000, D = 24 };
    float *x = malloc(sizeof(float) * N * D);
    pc_rng r = {1};
    for (int i = 0; i < N * D; i++) x[i] = (float)(pc_rng_next(&r) >> 40) * 0x1p-24f;
    int64_t a[200], b[200];
    /* deterministic for a seed, different for another */
    assert_int_equal(pc_coreset_select(a, PC_SAMPLER_APPROX_GREEDY, x, N, D, 100, 9, NULL, NULL), PC_OK);
    assert_int_equal(pc_coreset_select(b, PC_SAMPLER_APPROX_GREEDY, x, N, D, 100, 9, NULL, NULL), PC_OK);
    assert_memory_equal(a, b, sizeof(int64_t) * 100);
    assert_int_equal(pc_coreset_select(b, PC_SAMPLER_APPROX_GREEDY, x, N, D, 100, 10, NULL, NULL), PC_OK);
    assert_true(memcmp(a, b, sizeof(int64_t) * 100) != 0);
    /* random: distinct, in range, deterministic */
    assert_int_equal(pc_coreset_select(a, PC_SAMPLER_RANDOM, NULL, N, D, 200, 3, NULL, NULL), PC_OK);
    assert_int_equal(pc_coreset_select(b, PC_SAMPLER_RANDOM, NULL, N, D, 200, 3, NULL, NULL), PC_OK);
    assert_memory_equal(a, b, sizeof(int64_t) * 200);
    char seen[N] = {0};
    for (int i = 0; i < 200; i++) {
        assert_true(a[i] >= 0 && a[i] < N);
        assert_int_equal(seen[a[i]]++, 0);
    }
    /* none: everything, in order; any other n is an error */
    int64_t *all = malloc(sizeof(int64_t) * N);
    assert_int_equal(pc_coreset_select(all, PC_SAMPLER_NONE, x, N, D, N, 0, NULL, NULL), PC_OK);
    for (int i = 0; i < N; i++) assert_int_equal(all[i], i);
    assert_int_equal(pc_coreset_select(all, PC_SAMPLER_NONE, x, N, D, 10, 0, NULL, NULL), PC_ERR_INVALID_ARGUMENT);
    /* cancellation */
    int64_t done = 0;
    assert_int_equal(pc_coreset_select(a, PC_SAMPLER_APPROX_GREEDY, x, N, D, 100, 9, cancel_at_10, &done),
                     PC_ERR_CANCELLED);
    assert_int_equal(done, 10);
    /* starts: min(10, N) distinct; projection bounded by 1/sqrt(D), mean about 0 */
    int64_t st[PC_CORESET_STARTS];
    assert_int_equal(pc_coreset_starts(st, 4, 3), 3);
    assert_true(st[0] != st[1] && st[1] != st[2] && st[0] != st[2]);
    float *pj = malloc(sizeof(float) * D * 128);
    pc_coreset_projection(pj, 4, D, 128);
    double mean = 0, lim = 1 / sqrt((double)D);
    for (int i = 0; i < D * 128; i++) {
        assert_true(fabs(pj[i]) <= lim);
        mean += pj[i];
    }
    assert_true(fabs(mean / (D * 128)) < 0.05 * lim);
    assert_int_equal(pc_coreset_size(163856, 0.1), 16385);
    assert_int_equal(pc_coreset_size(5, 0.01), 1);
    free(x), free(all), free(pj);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_samplers),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_gauss),
        cmocka_unit_test(test_clustered_ref),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
