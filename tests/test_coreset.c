/*
 * test_coreset.c - the approximate greedy coreset against the reference sampler's loop written in torch
 * and numpy float64 (tests/ref/gen_algos.py: same projection matrix and start indices) and the plain C
 * reference, greedy properties on synthetic clustered data, the random/none samplers, determinism and
 * cancellation. Across implementations the selections are checked tie-robustly (replayed in float64,
 * every pick the maximum within a proven fp32 bound; testutil.h), since two candidates within rounding
 * may be ordered differently by different kernels or CPUs; within the library (pruned vs dense, one
 * projection either way) the indices must be identical.
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
    npy_array f, pj, st, idx, idx64, idxd, tpj;
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
    snprintf(rel, sizeof rel, "algos/coreset_%s_tproj.npy", name);
    if (npy_load(rel, &tpj) != 0) fail_msg("%s missing: references older than this test (make refs)", rel);
    const int64_t N = f.shape[0], n = idx.count;
    const int32_t D = (int32_t)f.shape[1], P = (int32_t)pj.shape[1], ns = (int32_t)st.count;
    int64_t *got = malloc(sizeof(int64_t) * (size_t)n), *gref = malloc(sizeof(int64_t) * (size_t)n);
    assert_int_equal(pc_coreset_greedy(got, f.data, N, D, pj.data, P, st.data, ns, n, NULL, NULL), PC_OK);
    assert_int_equal(pc_coreset_greedy_reference(gref, f.data, N, D, pj.data, P, st.data, ns, n), PC_OK);
    /* exact within the library: pruning changes nothing; pc_coreset_greedy is one projection call
     * (N < 65536) followed by the loop on it */
    int64_t *same = malloc(sizeof(int64_t) * (size_t)n);
    assert_int_equal(pc_coreset_greedy_dense(same, f.data, N, D, pj.data, P, st.data, ns, n, NULL, NULL), PC_OK);
    assert_memory_equal(got, same, sizeof(int64_t) * (size_t)n);
    float *pf = malloc(sizeof(float) * (size_t)N * P), *pr = malloc(sizeof(float) * (size_t)N * P);
    pc_coreset_project(pf, f.data, N, D, pj.data, P);
    assert_int_equal(pc_coreset_greedy_projected(same, pf, N, P, st.data, ns, n, NULL, NULL), PC_OK);
    assert_memory_equal(got, same, sizeof(int64_t) * (size_t)n);

    /* Across implementations (torch fp32, numpy float64, the C reference, and OpenBLAS kernels that
     * differ by CPU) only tie-robust checks: each selection replayed in float64 (testutil.h). */
    double *q = project_f64(f.data, N, D, pj.data, P, 0);
    for (int64_t i = 0; i < N * P; i++) pr[i] = (float)q[i]; /* the C reference's projection: double, rounded */
    double *s_got = projection_slack(pf, q, N, P), *s_ref = projection_slack(pr, q, N, P);
    double *s_torch = projection_slack(tpj.data, q, N, P), *s_64 = calloc((size_t)N, sizeof(double));
    greedy_replay r_got, r_ref, r_64;
    /* ours, with torch (fp32, direct differences) checked where it parts from us */
    assert_int_equal(greedy_replay_check("coreset (C)", q, N, P, st.data, ns, n, got, s_got, idxd.data, s_torch, &r_got),
                     -1);
    /* the plain C reference (double sums rounded to float), on its own */
    assert_int_equal(greedy_replay_check("coreset (C reference)", q, N, P, st.data, ns, n, gref, s_ref, NULL, NULL,
                                         &r_ref), -1);
    /* numpy float64 must agree with the replay itself wherever it parts from us (validates the replay) */
    assert_int_equal(greedy_replay_check("coreset (C vs float64)", q, N, P, st.data, ns, n, got, s_got, idx64.data, s_64,
                                         &r_64), -1);
    print_message("coreset %-9s N %lld n %lld: C replayed in float64: %lld proven near-ties (worst %.2f of the bound); "
                  "C = torch(fp32, differences) on %lld, = float64 on %lld, = C reference on %lld (reference: %lld "
                  "near-ties); torch mm form = C on %lld (not asserted: its cancellation error is outside the bound)\n",
                  name, (long long)N, (long long)n, (long long)r_got.off_argmax, r_got.worst,
                  (long long)r_got.other_first_diff, (long long)r_64.other_first_diff, (long long)first_diff(got, gref, n),
                  (long long)r_ref.off_argmax, (long long)first_diff(got, idx.data, n));

    /* the check can fail: a pick taken out of order is far outside the bound */
    memcpy(same, got, sizeof(int64_t) * (size_t)n);
    same[5] = got[n - 1], same[n - 1] = got[5];
    greedy_replay bad;
    print_message("(a deliberately wrong selection follows)\n");
    assert_int_equal(greedy_replay_check("coreset (pick 5 swapped)", q, N, P, st.data, ns, n, same, s_got, NULL, NULL,
                                         &bad), 5);
    free(got), free(gref), free(same), free(pf), free(pr), free(q), free(s_got), free(s_ref), free(s_torch), free(s_64);
    npy_free(&f), npy_free(&pj), npy_free(&st), npy_free(&idx), npy_free(&idx64), npy_free(&idxd), npy_free(&tpj);
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
