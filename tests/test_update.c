/*
 * test_update.c - growing a bank without refitting (docs/update.md): pc_coreset_greedy_continue,
 * pc_model_update and pc_model_merge.
 *
 * Oracles: float64 recomputation here (exact projections, brute-force distances) and the tie-robust
 * replay of testutil.c (greedy_replay_check_continue: every pick must be the replay's farthest point up
 * to a proven fp32 bound, and the replay follows the pick), on synthetic data and on real data
 * (ResNet-18 weights and bottle from ../shared; those tests skip when it is absent):
 *   - a continued coreset on random points: picks checked by the replay; the radius stop leaves no point
 *     farther than the radius (float64), the reported radius is the replay's final maximum;
 *   - update with rule ratio / radius: the old bank is kept bit for bit, the added rows are rows of the
 *     new images' features (taken, bit for bit, from a sampler-none fit of the same images with the same
 *     batches: the same extraction), in an order the replay accepts, as many as the rule says;
 *   - update with the images already in the model adds nothing under rule radius;
 *   - sampler none: fit(A) + update(B) has the bank of fit(A + B), bit for bit, also for a tiled model
 *     and with a region of interest (only inside patches join);
 *   - merge: the bank is the concatenation, patch scores are the smaller of the two models' (1e-5
 *     relative); incompatible models and ensembles are refused naming the difference;
 *   - the coverage radius and the stale-threshold flag survive save and load; an unreadable image is
 *     reported and skipped; when none is usable the model is unchanged.
 */
#include "coreset.h"
#include "model_internal.h"
#include "patchcore.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the continued greedy coreset on synthetic points ------------------------------------------- */

static float *random_points(int64_t n, int32_t p, uint64_t seed, float spread) {
    float *x = malloc(sizeof(float) * (size_t)n * p);
    pc_rng r = {seed};
    for (int64_t i = 0; i < n * p; i++) x[i] = ((float)(pc_rng_next(&r) >> 40) * (1.0f / 16777216.0f) - 0.5f) * spread;
    return x;
}

static double *to_f64(const float *x, int64_t n) {
    double *d = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static void test_continue_synthetic(void **state) {
    (void)state;
    const int64_t N = 2000, NF = 500;
    const int32_t P = 32;
    float *pj = random_points(N, P, 11, 2.0f), *fixed = random_points(NF, P, 12, 1.0f);
    /* inputs are the exact values: no projection slack */
    double *q = to_f64(pj, N * P), *qf = to_f64(fixed, NF * P), *zero = calloc((size_t)N, sizeof(double));
    double *D0 = min_dist_f64(q, N, qf, NF, P);
    float *init = malloc(sizeof(float) * (size_t)N);
    assert_int_equal(pc_coreset_min_distances(init, pj, N, fixed, NF, P), PC_OK);
    /* the nearest kept point by the exact search, its distance by direct differences: within 1e-5
     * relative of float64 (the fp32 bound of one distance is ~1e-6; a nearest-point near-tie adds the
     * norm-trick error, ~1e-7 of the squared norms) */
    double *e0 = malloc(sizeof(double) * (size_t)N), worst = 0;
    for (int64_t i = 0; i < N; i++) {
        e0[i] = fabs((double)init[i] - D0[i]);
        worst = fmax(worst, e0[i] / fmax(D0[i], 1e-3));
    }
    print_message("initial distances: max relative error %.3g\n", worst);
    assert_true(worst <= 1e-5);

    /* a fixed number of picks */
    const int64_t n = 200;
    int64_t *picks = malloc(sizeof(int64_t) * (size_t)N), n_out = -1, off = 0;
    float radius = -1;
    assert_int_equal(pc_coreset_greedy_continue(picks, &n_out, &radius, pj, N, P, init, n, -1.f, NULL, NULL), PC_OK);
    assert_int_equal(n_out, n);
    assert_int_equal(greedy_replay_check_continue("continue", q, N, P, D0, e0, 0, n, picks, zero, &off), -1);
    print_message("200 picks: %lld proven near-ties\n", (long long)off);
    /* the reported radius: the largest remaining distance (float64 replay of the same picks, 1e-5) */
    double *D = malloc(sizeof(double) * (size_t)N), *qs = malloc(sizeof(double) * (size_t)n * P);
    for (int64_t t = 0; t < n; t++) memcpy(qs + (size_t)t * P, q + (size_t)picks[t] * P, sizeof(double) * P);
    double *Dp = min_dist_f64(q, N, qs, n, P), R = 0;
    for (int64_t i = 0; i < N; i++) R = fmax(R, fmin(D0[i], Dp[i]));
    print_message("radius %.9g, float64 %.9g\n", radius, R);
    assert_true(fabs(radius - R) <= 1e-5 * R);
    free(Dp);

    /* the radius stop: picks until nothing is farther than the stop, then no more */
    const float stop = (float)(0.9 * R);
    assert_int_equal(pc_coreset_greedy_continue(picks, &n_out, &radius, pj, N, P, init, N, stop, NULL, NULL), PC_OK);
    assert_true(n_out > n && n_out < N);
    assert_int_equal(greedy_replay_check_continue("radius stop", q, N, P, D0, e0, 0, n_out, picks, zero, &off), -1);
    free(qs);
    qs = malloc(sizeof(double) * (size_t)n_out * P);
    for (int64_t t = 0; t < n_out; t++) memcpy(qs + (size_t)t * P, q + (size_t)picks[t] * P, sizeof(double) * P);
    Dp = min_dist_f64(q, N, qs, n_out, P);
    double Rs = 0, before_last = 0;
    for (int64_t i = 0; i < N; i++) Rs = fmax(Rs, fmin(D0[i], Dp[i]));
    free(Dp);
    /* one pick fewer: something was still farther than the stop (else the loop had stopped there) */
    Dp = min_dist_f64(q, N, qs, n_out - 1, P);
    for (int64_t i = 0; i < N; i++) before_last = fmax(before_last, fmin(D0[i], Dp[i]));
    print_message("radius stop at %.6g: %lld picks, then max %.9g (before the last pick %.9g)\n", stop,
                  (long long)n_out, Rs, before_last);
    assert_true(Rs <= stop * (1 + 1e-5));
    assert_true(before_last > stop * (1 - 1e-5));
    assert_true(fabs(radius - Rs) <= 1e-5 * Rs);
    /* a stop above every distance: nothing */
    assert_int_equal(pc_coreset_greedy_continue(picks, &n_out, &radius, pj, N, P, init, N, 1e9f, NULL, NULL), PC_OK);
    assert_int_equal(n_out, 0);
    free(Dp), free(D), free(qs), free(picks), free(e0), free(init), free(D0), free(zero), free(q), free(qf);
    free(pj), free(fixed);
}

/* ---- real data -------------------------------------------------------------------------------- */

#define NA 4
#define NB 2

typedef struct fixture {
    char weights[4096], dir[4096];
    char *a[NA], *b[NB], *ab[NA + NB], *test;
    int ok;
} fixture;

static fixture F;

static int setup(void **state) {
    (void)state;
    memset(&F, 0, sizeof F);
    if (!shared_path(F.weights, sizeof F.weights, "weights/resnet18_in1k_to_layer3.safetensors")) return 0;
    if (!shared_path(F.dir, sizeof F.dir, "data/mvtec_ad/bottle")) return 0;
    for (int i = 0; i < NA + NB; i++) {
        F.ab[i] = malloc(8192);
        snprintf(F.ab[i], 8192, "%s/train/good/%03d.png", F.dir, 30 * i + 3);
        if (i < NA) F.a[i] = F.ab[i];
        else F.b[i - NA] = F.ab[i];
    }
    F.test = malloc(8192);
    snprintf(F.test, 8192, "%s/test/broken_large/002.png", F.dir);
    F.ok = 1;
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < NA + NB; i++) free(F.ab[i]);
    free(F.test);
    return 0;
}

#define NEED_FIXTURE()                                                                                      \
    do {                                                                                                    \
        if (!F.ok) TEST_SKIP_MSG("../shared absent: no ResNet-18 weights or bottle");                       \
    } while (0)

/* batches of 2 images: A (4) and B (2) are whole batches alone and within A + B, so each image's
 * features come from the same extraction in every fit and update below */
static void options(pc_fit_options *o, pc_sampler s) {
    pc_fit_options_init(o);
    o->weights = F.weights;
    o->batch_size = 2;
    o->sampler = s;
    o->coreset_ratio = 0.1;
}

static pc_model *fit(pc_sampler s, char **paths, size_t n) {
    pc_fit_options o;
    options(&o, s);
    pc_model *m = NULL;
    pc_status st = pc_model_fit(&o, (const char *const *)paths, n, &m);
    if (st) print_message("fit: %s\n", pc_last_error());
    assert_int_equal(st, PC_OK);
    return m;
}

/* The index in feats (n x D) of the row equal to row, bit for bit; -1 if none. */
static int64_t find_row(const float *feats, int64_t n, int32_t D, const float *row) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(feats + (size_t)i * D, row, sizeof(float) * (size_t)D) == 0) return i;
    return -1;
}

/* fp32 projections as update makes them (a grid's worth of rows per call) */
static float *project_chunks(const float *x, int64_t n, int32_t D, const float *proj, int32_t P, int64_t chunk) {
    float *pj = malloc(sizeof(float) * (size_t)n * P);
    for (int64_t r = 0; r < n; r += chunk) pc_coreset_project(pj + (size_t)r * P, x + (size_t)r * D, PC_MIN(chunk, n - r), D, proj, P);
    return pj;
}

/* Checks the rows update(m0 -> m1) added against the replay. Returns the number added. */
static int64_t check_added(const pc_model *m0, const pc_model *m1, const float *fb, int64_t nb_rows, int64_t hw,
                           const char *what) {
    int64_t n0, n1;
    int32_t D, D1;
    const float *b0 = pc_model_bank(m0, &n0, &D), *b1 = pc_model_bank(m1, &n1, &D1);
    assert_int_equal(D, D1);
    assert_true(n1 >= n0);
    assert_memory_equal(b0, b1, sizeof(float) * (size_t)n0 * D); /* the old bank kept as it was */
    const int64_t added = n1 - n0;
    int64_t *picks = malloc(sizeof(int64_t) * (size_t)(added + 1));
    for (int64_t t = 0; t < added; t++) {
        picks[t] = find_row(fb, nb_rows, D, b1 + (size_t)(n0 + t) * D);
        assert_true(picks[t] >= 0); /* a row of the new images' features */
    }
    /* the replay: exact projections of the new features and of the old bank */
    pc_model_info in;
    assert_int_equal(pc_model_get_info(m0, &in), PC_OK);
    const int32_t P = PC_CORESET_PROJ_DIM;
    float *proj = malloc(sizeof(float) * (size_t)D * P);
    pc_coreset_projection(proj, in.seed, D, P);
    float *pf = project_chunks(fb, nb_rows, D, proj, P, hw), *pb = project_chunks(b0, n0, D, proj, P, hw);
    double *q = project_f64(fb, nb_rows, D, proj, P, 0), *qb = project_f64(b0, n0, D, proj, P, 0);
    double *slack = projection_slack(pf, q, nb_rows, P), *slack_b = projection_slack(pb, qb, n0, P);
    double S0 = 0;
    for (int64_t i = 0; i < n0; i++) S0 = fmax(S0, slack_b[i]);
    double *D0 = min_dist_f64(q, nb_rows, qb, n0, P);
    float *init = malloc(sizeof(float) * (size_t)nb_rows);
    assert_int_equal(pc_coreset_min_distances(init, pf, nb_rows, pb, n0, P), PC_OK);
    double *e0 = malloc(sizeof(double) * (size_t)nb_rows);
    for (int64_t i = 0; i < nb_rows; i++) e0[i] = fabs((double)init[i] - D0[i]);
    int64_t off = 0;
    assert_int_equal(greedy_replay_check_continue(what, q, nb_rows, P, D0, e0, S0, added, picks, slack, &off), -1);
    print_message("%s: %lld added, %lld proven near-ties\n", what, (long long)added, (long long)off);
    free(picks), free(proj), free(pf), free(pb), free(q), free(qb), free(slack), free(slack_b), free(D0), free(init);
    free(e0);
    return added;
}

static void test_update_ratio_and_radius(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_model *none_b = fit(PC_SAMPLER_NONE, F.b, NB); /* every feature of B, as update extracts them */
    int64_t nbr;
    int32_t D;
    const float *fb = pc_model_bank(none_b, &nbr, &D);
    pc_model_info in;
    assert_int_equal(pc_model_get_info(none_b, &in), PC_OK);
    const int64_t hw = (int64_t)in.grid_h * in.grid_w;
    assert_int_equal(nbr, NB * hw);

    /* rule ratio: floor(0.1 x the new patches), the continued greedy */
    pc_model *m0 = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA), *m = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA);
    pc_model_info i0;
    assert_int_equal(pc_model_get_info(m0, &i0), PC_OK);
    assert_true(i0.coverage_radius > 0);
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.rule = PC_UPDATE_RATIO;
    uo.batch_size = 2;
    pc_update_report rep;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.b, NB, &rep), PC_OK);
    assert_int_equal(rep.rule, PC_UPDATE_RATIO);
    assert_int_equal(rep.n_images, NB);
    assert_int_equal(rep.n_patches, NB * hw);
    assert_int_equal(rep.n_added, (int64_t)(NB * hw * 0.1));
    assert_int_equal(check_added(m0, m, fb, nbr, hw, "update ratio"), rep.n_added);
    pc_model_info i1;
    assert_int_equal(pc_model_get_info(m, &i1), PC_OK);
    assert_int_equal(i1.n_train_images, NA + NB);
    assert_int_equal(i1.n_patches_total, (NA + NB) * hw);
    assert_int_equal(i1.bank_size, i0.bank_size + rep.n_added);
    assert_true(i1.coverage_radius == fmax(i0.coverage_radius, rep.radius_new));
    assert_int_equal(i1.thresholds_stale, 0); /* nothing was calibrated */
    pc_model_free(m);

    /* rule radius (the default for this model): until B is covered as well as A was */
    m = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA);
    pc_update_options_init(&uo);
    uo.batch_size = 2;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.b, NB, &rep), PC_OK);
    assert_int_equal(rep.rule, PC_UPDATE_RADIUS);
    assert_true(rep.n_added > 0);
    check_added(m0, m, fb, nbr, hw, "update radius");
    /* float64: no patch of B farther than the radius from the grown bank (+ the allowance and the fp32
     * bound of a distance, 1e-5) */
    {
        int64_t n1;
        const float *b1 = pc_model_bank(m, &n1, &D);
        const int32_t P = PC_CORESET_PROJ_DIM;
        float *proj = malloc(sizeof(float) * (size_t)D * P);
        pc_coreset_projection(proj, i0.seed, D, P);
        double *q = project_f64(fb, nbr, D, proj, P, 0), *qb = project_f64(b1, n1, D, proj, P, 0);
        double *d = min_dist_f64(q, nbr, qb, n1, P), mx = 0;
        for (int64_t i = 0; i < nbr; i++) mx = fmax(mx, d[i]);
        print_message("radius %.9g; farthest patch of B after the update %.9g (reported %.9g)\n", i0.coverage_radius,
                      mx, rep.radius_new);
        assert_true(mx <= i0.coverage_radius * (1 + PC_UPDATE_RADIUS_SLACK + 1e-5));
        assert_true(fabs(mx - rep.radius_new) <= 1e-5 * mx);
        free(proj), free(q), free(qb), free(d);
    }
    pc_model_free(m);

    /* the images already in the model: every patch is within the radius, nothing is added */
    m = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA);
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.a, NA, &rep), PC_OK);
    print_message("update with the fitted images: radius %.9g, farthest %.9g, %lld added\n", rep.radius_before,
                  rep.radius_new, (long long)rep.n_added);
    assert_int_equal(rep.n_added, 0);
    assert_true(rep.radius_new <= rep.radius_before * (1 + PC_UPDATE_RADIUS_SLACK));
    int64_t n1;
    pc_model_bank(m, &n1, &D);
    assert_int_equal(n1, i0.bank_size);
    pc_model_free(m);
    pc_model_free(m0);
    pc_model_free(none_b);
}

static void test_update_none_equals_fit(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_model *all = fit(PC_SAMPLER_NONE, F.ab, NA + NB), *m = fit(PC_SAMPLER_NONE, F.a, NA);
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.batch_size = 2;
    pc_update_report rep;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.b, NB, &rep), PC_OK);
    assert_int_equal(rep.rule, PC_UPDATE_ALL);
    int64_t na, nm;
    int32_t D;
    const float *ba = pc_model_bank(all, &na, &D), *bm = pc_model_bank(m, &nm, &D);
    assert_int_equal(na, nm);
    assert_memory_equal(ba, bm, sizeof(float) * (size_t)na * D);
    pc_prediction pa, pm;
    assert_int_equal(pc_model_predict_file(all, F.test, &pa, NULL, NULL), PC_OK);
    assert_int_equal(pc_model_predict_file(m, F.test, &pm, NULL, NULL), PC_OK);
    assert_true(pa.score == pm.score);
    pc_model_info ia, im;
    pc_model_get_info(all, &ia), pc_model_get_info(m, &im);
    assert_int_equal(ia.n_train_images, im.n_train_images);
    assert_int_equal(ia.n_patches_total, im.n_patches_total);
    assert_true(im.coverage_radius == 0);
    /* rule ratio makes no sense without a coreset */
    uo.rule = PC_UPDATE_RATIO;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.b, NB, &rep), PC_ERR_INVALID_ARGUMENT);
    uo.rule = PC_UPDATE_RADIUS;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.b, NB, &rep), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "approximate greedy"));
    pc_model_free(all), pc_model_free(m);
}

/* A tiled model grows the same way: every tile of the new images is an input (tile 224 on the bottle
 * images scaled to 225 x 225: four tiles each) */
static void test_update_tiled(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_fit_options o;
    options(&o, PC_SAMPLER_NONE);
    o.batch_size = 1;
    o.tiling.tile = 224, o.tiling.scale = 0.25;
    pc_model *all = NULL, *m = NULL;
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.ab, 3, &all), PC_OK);
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.ab, 2, &m), PC_OK);
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.batch_size = 1;
    pc_update_report rep;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.ab + 2, 1, &rep), PC_OK);
    assert_int_equal(rep.n_images, 1);
    assert_int_equal(rep.n_patches, 4 * 28 * 28);
    int64_t na, nm;
    int32_t D;
    const float *ba = pc_model_bank(all, &na, &D), *bm = pc_model_bank(m, &nm, &D);
    assert_int_equal(na, nm);
    assert_memory_equal(ba, bm, sizeof(float) * (size_t)na * D);
    pc_model_info ia, im;
    pc_model_get_info(all, &ia), pc_model_get_info(m, &im);
    assert_int_equal(im.n_train_images, 3);
    assert_int_equal(im.n_patches_total, ia.n_patches_total);
    assert_int_equal(im.tiling.tile, 224);
    /* merging a tiled model with an untiled one is refused */
    pc_model *u = fit(PC_SAMPLER_NONE, F.b, 1);
    assert_int_equal(pc_model_merge(m, u, NULL), PC_ERR_INVALID_ARGUMENT);
    pc_model_free(u), pc_model_free(all), pc_model_free(m);
}

/* With a region of interest only inside patches join the bank, as in the fit: fit(A) + update(B) with
 * sampler none has the bank of fit(A + B) with the same mask, bit for bit; a model without the mask
 * cannot be merged with it */
static void test_update_roi(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_image roi = {900, 900, 1, calloc(900 * 900, 1)};
    for (int y = 200; y < 700; y++) memset(roi.data + (size_t)y * 900 + 150, 255, 500); /* a 500 x 500 square */
    pc_fit_options o;
    options(&o, PC_SAMPLER_NONE);
    o.batch_size = 1;
    o.roi = &roi;
    pc_model *all = NULL, *m = NULL;
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.ab, 3, &all), PC_OK);
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.ab, 2, &m), PC_OK);
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.batch_size = 1;
    pc_update_report rep;
    assert_int_equal(pc_model_update(m, &uo, (const char *const *)F.ab + 2, 1, &rep), PC_OK);
    int64_t na, nm;
    int32_t D;
    const float *ba = pc_model_bank(all, &na, &D), *bm = pc_model_bank(m, &nm, &D);
    print_message("ROI: %lld of 784 patches of the new image inside, bank %lld\n", (long long)rep.n_patches, (long long)nm);
    assert_true(rep.n_patches > 0 && rep.n_patches < 784);
    assert_int_equal(na, nm);
    assert_memory_equal(ba, bm, sizeof(float) * (size_t)na * D);
    pc_model_info ia, im;
    pc_model_get_info(all, &ia), pc_model_get_info(m, &im);
    assert_int_equal(im.n_patches_total, ia.n_patches_total);
    pc_model *u = fit(PC_SAMPLER_NONE, F.b, 1);
    assert_int_equal(pc_model_merge(m, u, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "region of interest"));
    pc_model_free(u), pc_model_free(all), pc_model_free(m);
    free(roi.data);
}

static void test_merge(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_model *a = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA), *b = fit(PC_SAMPLER_APPROX_GREEDY, F.b, NB);
    pc_model *a0 = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA);
    pc_model_info ia, ib;
    pc_model_get_info(a, &ia), pc_model_get_info(b, &ib);
    assert_int_equal(pc_model_set_thresholds(a, 1.0, 2.0, 0.5), PC_OK);
    const int64_t hw = (int64_t)ia.grid_h * ia.grid_w;
    float *sa = malloc(sizeof(float) * (size_t)hw), *sb = malloc(sizeof(float) * (size_t)hw),
          *sm = malloc(sizeof(float) * (size_t)hw);
    pc_image img = {0};
    assert_int_equal(pc_image_load(F.test, &img), PC_OK);
    assert_int_equal(pc_model_patch_outputs(a, &img, NULL, sa), PC_OK);
    assert_int_equal(pc_model_patch_outputs(b, &img, NULL, sb), PC_OK);
    pc_update_report rep;
    assert_int_equal(pc_model_merge(a, b, &rep), PC_OK);
    assert_int_equal(rep.n_added, ib.bank_size);
    int64_t n0, n1, nb;
    int32_t D;
    const float *b0 = pc_model_bank(a0, &n0, &D), *bb = pc_model_bank(b, &nb, &D), *bm = pc_model_bank(a, &n1, &D);
    assert_int_equal(n1, n0 + nb);
    assert_memory_equal(bm, b0, sizeof(float) * (size_t)n0 * D);
    assert_memory_equal(bm + (size_t)n0 * D, bb, sizeof(float) * (size_t)nb * D);
    /* k = 1: a patch's score is its distance to the nearest entry of either bank */
    assert_int_equal(pc_model_patch_outputs(a, &img, NULL, sm), PC_OK);
    double worst = 0;
    for (int64_t i = 0; i < hw; i++) {
        const double want = fmin(sa[i], sb[i]);
        worst = fmax(worst, fabs(sm[i] - want) / fmax(want, 1e-6));
    }
    print_message("merged patch scores vs min of the two: max relative difference %.3g\n", worst);
    assert_true(worst <= 1e-5);
    pc_model_info im;
    pc_model_get_info(a, &im);
    assert_int_equal(im.n_train_images, NA + NB);
    assert_int_equal(im.thresholds_stale, 1);
    assert_true(im.coverage_radius == fmax(ia.coverage_radius, ib.coverage_radius));
    assert_true(im.image_threshold == 1.0); /* kept, flagged */

    /* save and load keep the radius and the flag; set_thresholds clears the flag */
    char path[] = "/tmp/pc_update_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_model_save(a, path), PC_OK);
    pc_model *l = NULL;
    assert_int_equal(pc_model_load(path, &l), PC_OK);
    pc_model_info il;
    pc_model_get_info(l, &il);
    assert_int_equal(il.thresholds_stale, 1);
    assert_true(il.coverage_radius == (double)(float)im.coverage_radius || fabs(il.coverage_radius - im.coverage_radius) <= 1e-8 * im.coverage_radius);
    assert_int_equal(il.bank_size, n1);
    assert_int_equal(pc_model_set_thresholds(l, 1.5, 2.0, 0.5), PC_OK);
    pc_model_get_info(l, &il);
    assert_int_equal(il.thresholds_stale, 0);
    /* a loaded model can be updated and merged too */
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.rule = PC_UPDATE_RATIO;
    assert_int_equal(pc_model_update(l, &uo, (const char *const *)F.b, 1, &rep), PC_OK);
    assert_int_equal(rep.n_added, (int64_t)(hw * 0.1));
    pc_model_get_info(l, &il);
    assert_int_equal(il.thresholds_stale, 1);
    pc_model_free(l);
    unlink(path);

    /* incompatible models are refused naming the difference, and left as they were */
    pc_fit_options o;
    options(&o, PC_SAMPLER_APPROX_GREEDY);
    o.layers[0] = 3, o.n_layers = 1;
    pc_model *c = NULL;
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.b, 1, &c), PC_OK);
    assert_int_equal(pc_model_merge(a0, c, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "layers"));
    pc_model_free(c);
    options(&o, PC_SAMPLER_APPROX_GREEDY);
    o.resize = 292, o.crop = 256;
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.b, 1, &c), PC_OK);
    assert_int_equal(pc_model_merge(a0, c, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "resize"));
    pc_model_free(c);
    options(&o, PC_SAMPLER_APPROX_GREEDY);
    o.bn_stats = PC_BN_TRAINED; /* same file, other batch-norm statistics */
    assert_int_equal(pc_model_fit(&o, (const char *const *)F.b, 1, &c), PC_OK);
    assert_int_equal(pc_model_merge(a0, c, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "batch-norm"));
    pc_model_free(c);
    assert_int_equal(pc_model_merge(a0, a0, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_model_bank(a0, &n1, &D) != NULL, 1);
    assert_int_equal(n1, n0);
    /* ensembles */
    pc_fit_options mo[2];
    options(&mo[0], PC_SAMPLER_APPROX_GREEDY);
    mo[1] = mo[0];
    mo[1].layers[0] = 3, mo[1].n_layers = 1;
    pc_model *e = NULL;
    assert_int_equal(pc_model_fit_ensemble(mo, 2, (const char *const *)F.b, NB, &e), PC_OK);
    assert_int_equal(pc_model_merge(a0, e, NULL), PC_ERR_UNSUPPORTED);
    assert_int_equal(pc_model_update(e, NULL, (const char *const *)F.b, 1, NULL), PC_ERR_UNSUPPORTED);
    pc_model_free(e);
    pc_image_free(&img);
    free(sa), free(sb), free(sm);
    pc_model_free(a), pc_model_free(b), pc_model_free(a0);
}

static int errors_seen;
static void on_error(void *user, const char *path, pc_status st, const char *msg) {
    (void)user, (void)st;
    print_message("reported: %s: %s\n", path, msg);
    errors_seen++;
}

static void test_update_bad_inputs(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_model *m = fit(PC_SAMPLER_APPROX_GREEDY, F.a, NA);
    int64_t n0, n1;
    int32_t D;
    pc_model_bank(m, &n0, &D);
    const char *bad[] = {"/nonexistent/x.png", F.b[0]};
    pc_update_options uo;
    pc_update_options_init(&uo);
    uo.on_image_error = on_error;
    uo.rule = PC_UPDATE_RATIO;
    pc_update_report rep;
    errors_seen = 0;
    assert_int_equal(pc_model_update(m, &uo, bad, 2, &rep), PC_OK);
    assert_int_equal(errors_seen, 1);
    assert_int_equal(rep.n_images, 1);
    pc_model_bank(m, &n1, &D);
    assert_int_equal(n1, n0 + rep.n_added);
    /* none usable: an error, the model unchanged */
    errors_seen = 0;
    assert_int_equal(pc_model_update(m, &uo, bad, 1, &rep), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(errors_seen, 1);
    int64_t n2;
    pc_model_bank(m, &n2, &D);
    assert_int_equal(n2, n1);
    pc_prediction p;
    assert_int_equal(pc_model_predict_file(m, F.test, &p, NULL, NULL), PC_OK);
    /* bad options */
    uo.rule = (pc_update_rule)9;
    assert_int_equal(pc_model_update(m, &uo, bad + 1, 1, &rep), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_model_update(m, NULL, NULL, 0, &rep), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_update_rule_from_name("radius"), PC_UPDATE_RADIUS);
    assert_int_equal(pc_update_rule_from_name("nope"), -1);
    pc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_continue_synthetic),
        cmocka_unit_test(test_update_ratio_and_radius),
        cmocka_unit_test(test_update_none_equals_fit),
        cmocka_unit_test(test_update_tiled),
        cmocka_unit_test(test_update_roi),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_update_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
