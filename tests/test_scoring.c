/*
 * test_scoring.c - anomaly maps against F.interpolate + scipy.ndimage.gaussian_filter (float32, as the
 * reference), patch/image scores and Eq. 7 against numpy (tests/ref/gen_algos.py). Tolerance: relative
 * 1e-4 of the maximum (we see ~1e-7), Eq. 7 relative 1e-5.
 */
#include "knn.h"
#include "scoring.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void run_map(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "algos/map_%s_cfg.npy", name);
    if (!ref_exists(rel)) TEST_SKIP_MSG("reference %s missing (run make refs)", rel);
    npy_array cfg, in, up, ref, sg;
    assert_int_equal(npy_load(rel, &cfg), 0);
    snprintf(rel, sizeof rel, "algos/map_%s_in.npy", name);
    assert_int_equal(npy_load(rel, &in), 0);
    snprintf(rel, sizeof rel, "algos/map_%s_up.npy", name);
    assert_int_equal(npy_load(rel, &up), 0);
    snprintf(rel, sizeof rel, "algos/map_%s_out.npy", name);
    assert_int_equal(npy_load(rel, &ref), 0);
    snprintf(rel, sizeof rel, "algos/map_%s_sigma.npy", name);
    assert_int_equal(npy_load(rel, &sg), 0);
    const int32_t *c = cfg.data;
    const double sigma = ((double *)sg.data)[0];
    const int32_t oh = c[2], ow = c[3];
    float *r = malloc(sizeof(float) * (size_t)oh * ow), *g = malloc(sizeof(float) * (size_t)oh * ow);
    void *ws = malloc(pc_resize_workspace_size(oh, ow));
    pc_resize_bilinear_f32(r, oh, ow, in.data, c[0], c[1], ws);
    double e_up = max_rel_err(r, up.data, (size_t)oh * ow);
    void *gws = malloc(pc_gaussian_workspace_size(oh, ow, sigma, 4.0));
    /* the Gaussian alone, from torch's upsampled map, so that each stage is checked on its own */
    pc_gaussian_filter_f32(g, up.data, oh, ow, sigma, 4.0, gws);
    double e_g = max_rel_err(g, ref.data, (size_t)oh * ow);
    double e_chain = -1;
    if (oh == ow && c[0] == c[1]) { /* the whole anomaly map (square) */
        void *mws = malloc(pc_anomaly_map_workspace_size(oh, sigma));
        pc_anomaly_map(g, in.data, c[0], c[1], oh, sigma, mws);
        e_chain = max_rel_err(g, ref.data, (size_t)oh * ow);
        free(mws);
        assert_true(e_chain <= 1e-4);
    }
    print_message("map %-5s %dx%d -> %dx%d sigma %.1f: bilinear vs torch %.2e, gaussian vs scipy %.2e, map %.2e\n",
                  name, c[0], c[1], oh, ow, sigma, e_up, e_g, e_chain);
    assert_true(e_up <= 1e-4);
    assert_true(e_g <= 1e-4);
    free(r), free(g), free(ws), free(gws);
    npy_free(&cfg), npy_free(&in), npy_free(&up), npy_free(&ref), npy_free(&sg);
}

static void test_map_std(void **s) { (void)s; run_map("std"); }
static void test_map_odd(void **s) { (void)s; run_map("odd"); }
static void test_map_small(void **s) { (void)s; run_map("small"); }
static void test_map_r18(void **s) { (void)s; run_map("r18"); }

/* Hand-checked Gaussian facts: radius int(4*4 + 0.5) = 16; a constant image stays constant (weights
 * sum to 1, reflect boundary); an impulse in the middle of a large image reproduces the kernel. */
static void test_gaussian_by_hand(void **s) {
    (void)s;
    assert_int_equal(pc_gaussian_radius(4.0, 4.0), 16);
    assert_int_equal(pc_gaussian_radius(2.5, 4.0), 10);
    enum { H = 41, W = 41 };
    static float img[H * W], out[H * W];
    void *ws = malloc(pc_gaussian_workspace_size(H, W, 4.0, 4.0));
    for (int i = 0; i < H * W; i++) img[i] = 3.0f;
    pc_gaussian_filter_f32(out, img, H, W, 4.0, 4.0, ws);
    for (int i = 0; i < H * W; i++) assert_float_equal(out[i], 3.0f, 3e-6);
    for (int i = 0; i < H * W; i++) img[i] = 0;
    img[20 * W + 20] = 1;
    pc_gaussian_filter_f32(out, img, H, W, 4.0, 4.0, ws);
    double z = 0;
    for (int x = -16; x <= 16; x++) z += exp(-x * x / 32.0);
    for (int dy = -16; dy <= 16; dy++)
        for (int dx = -16; dx <= 16; dx++)
            assert_float_equal(out[(20 + dy) * W + 20 + dx], exp(-(dx * dx + dy * dy) / 32.0) / (z * z), 1e-7);
    free(ws);
}

static double sqnorm_f64(const float *x, int32_t d) {
    double a = 0;
    for (int32_t i = 0; i < d; i++) a += (double)x[i] * x[i];
    return a;
}
static double sqdist_f64(const float *x, const float *y, int32_t d) {
    double a = 0;
    for (int32_t i = 0; i < d; i++) a += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return a;
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_eq7(void **s) {
    (void)s;
    if (!ref_exists("algos/eq7_expect.npy")) TEST_SKIP_MSG("reference algos/eq7_expect.npy missing");
    npy_array bank, q, patch, nb, ex;
    assert_int_equal(npy_load("algos/eq7_bank.npy", &bank), 0);
    assert_int_equal(npy_load("algos/eq7_q.npy", &q), 0);
    assert_int_equal(npy_load("algos/eq7_patch.npy", &patch), 0);
    assert_int_equal(npy_load("algos/eq7_nb.npy", &nb), 0);
    assert_int_equal(npy_load("algos/eq7_expect.npy", &ex), 0);
    const double *e = ex.data;
    const int64_t N = bank.shape[0], M = q.shape[0];
    const int32_t D = (int32_t)bank.shape[1], k = (int32_t)e[4], b = (int32_t)e[5];
    /* the scoring chain: kNN -> patch scores -> image score (numpy: squared distances, mean, max) */
    float *dist = malloc(sizeof(float) * (size_t)(M * k)), *scores = malloc(sizeof(float) * (size_t)M);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)(M * k));
    size_t wsb = pc_knn_workspace_size(M);
    void *ws = pc_malloc(wsb);
    assert_int_equal(pc_knn_search(dist, idx, q.data, M, bank.data, NULL, N, D, k, ws, wsb), PC_OK);
    pc_patch_scores(scores, dist, M, k);
    assert_true(max_rel_err(scores, patch.data, (size_t)M) <= 1e-5);
    /* The exact index comparisons below (argmax patch, its nearest bank entry, the b nearest entries
     * of m* in order) are valid only if numpy's choices are not near-ties: every decisive gap in the
     * float64 data must exceed twice the fp32 error bound of a GEMM-form squared distance,
     * delta = 2.01 gamma_D (|q|^2 + max |b|^2) (docs/method-implementation.md §5), else another CPU's
     * kernel could legitimately choose otherwise. Checked here; the gaps are ~1e3 x delta. */
    double bmax = 0, qmax = 0;
    for (int64_t i = 0; i < N; i++) bmax = fmax(bmax, sqnorm_f64((const float *)bank.data + i * D, D));
    for (int64_t i = 0; i < M; i++) qmax = fmax(qmax, sqnorm_f64((const float *)q.data + i * D, D));
    const double u = 0x1p-24, gD = D * u / (1 - D * u), delta = 2.01 * gD * (fmax(qmax, bmax) + bmax);
    {
        const int64_t t = (int64_t)e[2];
        double s1 = -1, s2 = -1; /* the two largest reference patch scores */
        for (int64_t i = 0; i < M; i++) {
            double v = ((const float *)patch.data)[i];
            if (v > s1) s2 = s1, s1 = v;
            else if (v > s2) s2 = v;
        }
        double *d = malloc(sizeof(double) * (size_t)N);
        for (int64_t j = 0; j < N; j++) d[j] = sqdist_f64((const float *)q.data + t * D, (const float *)bank.data + j * D, D);
        double n1 = INFINITY, n2 = INFINITY;
        for (int64_t j = 0; j < N; j++)
            if (d[j] < n1) n2 = n1, n1 = d[j];
            else if (d[j] < n2) n2 = d[j];
        const float *ms = (const float *)bank.data + (int64_t)e[3] * D;
        for (int64_t j = 0; j < N; j++) d[j] = sqdist_f64(ms, (const float *)bank.data + j * D, D);
        qsort(d, (size_t)N, sizeof(double), cmp_double);
        double gb = INFINITY; /* consecutive gaps among the b + 1 nearest of m* */
        for (int j = 0; j < b; j++) gb = fmin(gb, d[j + 1] - d[j]);
        print_message("eq7 decisive gaps: top score %.3g, nearest neighbour %.3g, N_b(m*) order %.3g; fp32 bound %.3g\n",
                      s1 - s2, n2 - n1, gb, delta);
        assert_true(s1 - s2 > 2 * delta + 1e-6 * s1); /* + the reference scores' float32 rounding */
        assert_true(n2 - n1 > 2 * delta);
        assert_true(gb > 2 * delta);
        free(d);
    }
    int64_t top;
    float s_star = pc_image_score(scores, M, &top);
    assert_int_equal(top, (int64_t)e[2]);
    assert_float_equal(s_star, e[0], 1e-5 * e[0]);
    assert_int_equal(idx[top * k], (int64_t)e[3]);
    /* N_b(m*) by our kNN of m* against the bank, then Eq. 7 */
    const float *m_star = (const float *)bank.data + idx[top * k] * D;
    float *nd = malloc(sizeof(float) * (size_t)b), *nbv = malloc(sizeof(float) * (size_t)b * D);
    int64_t *ni = malloc(sizeof(int64_t) * (size_t)b);
    assert_int_equal(pc_knn_search(nd, ni, m_star, 1, bank.data, NULL, N, D, b, ws, wsb), PC_OK);
    assert_int_equal(ni[0], idx[top * k]); /* m* is its own nearest neighbour */
    for (int j = 0; j < b; j++) {
        assert_int_equal(ni[j], ((int64_t *)nb.data)[j]);
        for (int c = 0; c < D; c++) nbv[j * D + c] = ((const float *)bank.data)[ni[j] * D + c];
    }
    float rw = pc_score_reweight(s_star, (const float *)q.data + top * D, m_star, nbv, b, D);
    print_message("eq7: s* %.6g, reweighted %.6g, numpy %.6g\n", s_star, rw, e[1]);
    assert_float_equal(rw, e[1], 1e-5 * fabs(e[1]));
    assert_true(rw < s_star && rw > 0);
    /* stability: distances of 1000 would overflow exp(); the shifted form stays finite */
    float far_t[1] = {1000.f}, far_s[1] = {0.f}, far_n[2] = {0.f, 1.f};
    float v = pc_score_reweight(2.0f, far_t, far_s, far_n, 2, 1);
    /* w = 1 - e^1000 / (e^1000 + e^999) = 1 - 1/(1 + 1/e) */
    assert_float_equal(v, 2.0 * (1.0 - 1.0 / (1.0 + exp(-1.0))), 1e-6);
    assert_float_equal(pc_score_reweight(2.0f, far_t, far_s, far_n, 0, 1), 2.0f, 0);
    free(dist), free(scores), free(idx), free(nd), free(nbv), free(ni);
    pc_free(ws);
    npy_free(&bank), npy_free(&q), npy_free(&patch), npy_free(&nb), npy_free(&ex);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_by_hand), cmocka_unit_test(test_map_std), cmocka_unit_test(test_map_odd),
        cmocka_unit_test(test_map_small),        cmocka_unit_test(test_map_r18), cmocka_unit_test(test_eq7),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
