/*
 * test_ensemble.c - ensembles (docs/ensemble.md).
 *
 * The reference's test-set min-max rule (pc_minmax_*) against its numpy re-implementation
 * (tests/ref/gen_ensemble.py) on synthetic member outputs. Then, on real data (ResNet-18 weights and
 * bottle from ../shared), a two-member ensemble at crop 224 and 320:
 *   - its prediction is the mean of the members' raw outputs z-scored by the stored statistics (worked
 *     out here from the members' own predictions);
 *   - the stored statistics equal leave-one-out predictions recomputed here with a float64 brute-force
 *     nearest-neighbour search over the bank without each image's own entries;
 *   - save and load give a file that predicts bit for bit as the fitted model; its members' info;
 *   - eval with test-minmax equals the rule applied to the members' own evaluation outputs;
 *   - calibrate sets thresholds that survive the round trip; bad ensembles are refused.
 */
#include "testutil.h"
#include "patchcore.h"
#include "ensemble.h"
#include "model_internal.h"
#include "scoring.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the min-max rule against numpy ------------------------------------------------------------ */

static float *load_f32(const char *rel, int64_t *count) {
    char p[4096];
    npy_array a;
    if (npy_load(ref_path(p, sizeof p, "ensemble/%s", rel), &a) != 0) return NULL;
    assert_string_equal(a.dtype, "<f4");
    *count = a.count;
    return a.data;
}

static void test_minmax_rule(void **state) {
    (void)state;
    if (!ref_exists("ensemble/same_expect_maps.npy")) TEST_SKIP_MSG("references not generated (make refs)");
    const int32_t s0 = 24, s1 = 35;
    int64_t n = 0, c = 0;
    float *sc[3], *mp[3];
    char name[64];
    for (int i = 0; i < 3; i++) {
        snprintf(name, sizeof name, "same_scores%d.npy", i);
        sc[i] = load_f32(name, &n);
        snprintf(name, sizeof name, "same_maps%d.npy", i);
        mp[i] = load_f32(name, &c);
        assert_non_null(sc[i]), assert_non_null(mp[i]);
        assert_int_equal(c, n * s0 * s0);
    }
    float *acc_s = calloc((size_t)n, sizeof(float)), *acc_m = calloc((size_t)(n * s0 * s0), sizeof(float));
    void *ws = malloc(pc_minmax_workspace_size(s0, s1));
    for (int i = 0; i < 3; i++) pc_minmax_accumulate(acc_s, acc_m, n, s0, sc[i], mp[i], s0, ws);
    pc_minmax_finish(acc_s, acc_m, n, s0, 3);
    float *es = load_f32("same_expect_scores.npy", &c), *em = load_f32("same_expect_maps.npy", &c);
    /* the same float32 operations in the same order as numpy: equal to 1e-6 absolute (values in [0, 1]) */
    double ds = max_abs_diff(acc_s, es, (size_t)n), dm = max_abs_diff(acc_m, em, (size_t)(n * s0 * s0));
    print_message("same size: scores %.3g, maps %.3g max abs diff\n", ds, dm);
    assert_true(ds <= 1e-6 && dm <= 1e-6);
    free(es), free(em);

    /* a second member at another map size, resized to the first's (torch F.interpolate oracle) */
    float *sc1 = load_f32("mixed_scores1.npy", &c), *mp1 = load_f32("mixed_maps1.npy", &c);
    assert_int_equal(c, n * s1 * s1);
    memset(acc_s, 0, (size_t)n * sizeof(float));
    memset(acc_m, 0, (size_t)(n * s0 * s0) * sizeof(float));
    pc_minmax_accumulate(acc_s, acc_m, n, s0, sc[0], mp[0], s0, ws);
    pc_minmax_accumulate(acc_s, acc_m, n, s0, sc1, mp1, s1, ws);
    pc_minmax_finish(acc_s, acc_m, n, s0, 2);
    es = load_f32("mixed_expect_scores.npy", &c), em = load_f32("mixed_expect_maps.npy", &c);
    ds = max_abs_diff(acc_s, es, (size_t)n), dm = max_abs_diff(acc_m, em, (size_t)(n * s0 * s0));
    print_message("mixed sizes: scores %.3g, maps %.3g max abs diff\n", ds, dm);
    assert_true(ds <= 1e-6 && dm <= 1e-6);
    free(es), free(em), free(sc1), free(mp1);
    for (int i = 0; i < 3; i++) free(sc[i]), free(mp[i]);
    free(acc_s), free(acc_m), free(ws);
}

/* ---- a real two-member ensemble ------------------------------------------------------------------ */

#define NTRAIN 6
#define NTEST 4

typedef struct fixture {
    char weights[4096], dir[4096];
    char *train[NTRAIN], *test[NTEST];
    pc_model *model;
} fixture;

static fixture F;

static int setup(void **state) {
    (void)state;
    memset(&F, 0, sizeof F);
    if (!shared_path(F.weights, sizeof F.weights, "weights/resnet18_in1k_to_layer3.safetensors")) return 0;
    if (!shared_path(F.dir, sizeof F.dir, "data/mvtec_ad/bottle")) return 0;
    static const char *test_rel[NTEST] = {"test/broken_large/000.png", "test/good/000.png",
                                          "test/contamination/001.png", "test/good/001.png"};
    for (int i = 0; i < NTRAIN; i++) {
        F.train[i] = malloc(8192);
        snprintf(F.train[i], 8192, "%s/train/good/%03d.png", F.dir, 20 * i);
    }
    for (int i = 0; i < NTEST; i++) {
        F.test[i] = malloc(8192);
        snprintf(F.test[i], 8192, "%s/%s", F.dir, test_rel[i]);
    }
    pc_fit_options o[2];
    pc_fit_options_init(&o[0]);
    o[0].weights = F.weights;
    o[0].coreset_size = 300;
    o[1] = o[0];
    o[1].resize = 366, o[1].crop = 320;
    o[1].layers[0] = 3, o[1].n_layers = 1; /* the members differ in layers and size */
    o[1].coreset_size = 200;
    pc_status st = pc_model_fit_ensemble(o, 2, (const char *const *)F.train, NTRAIN, &F.model);
    if (st) print_message("fit: %s\n", pc_last_error());
    return st != PC_OK;
}

static int teardown(void **state) {
    (void)state;
    pc_model_free(F.model);
    for (int i = 0; i < NTRAIN; i++) free(F.train[i]);
    for (int i = 0; i < NTEST; i++) free(F.test[i]);
    return 0;
}

#define NEED_FIXTURE()                                                                                      \
    do {                                                                                                    \
        if (!F.model) TEST_SKIP_MSG("../shared absent: no ResNet-18 weights or bottle");                    \
    } while (0)

static void test_info(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_model_info in, m0, m1;
    assert_int_equal(pc_model_get_info(F.model, &in), PC_OK);
    assert_int_equal(in.n_members, 2);
    assert_int_equal(pc_model_member_count(F.model), 2);
    assert_int_equal(pc_model_get_info(pc_model_member(F.model, 0), &m0), PC_OK);
    assert_int_equal(pc_model_get_info(pc_model_member(F.model, 1), &m1), PC_OK);
    assert_null(pc_model_member(F.model, 2));
    assert_int_equal(in.crop, 224), assert_int_equal(m0.crop, 224), assert_int_equal(m1.crop, 320);
    assert_int_equal(m1.n_layers, 1), assert_int_equal(m1.layers[0], 3);
    assert_int_equal(m0.bank_size, 300), assert_int_equal(m1.bank_size, 200);
    assert_int_equal(m0.n_members, 1);
    double z[4];
    assert_int_equal(pc_model_member_norm(F.model, 1, z), PC_OK);
    assert_true(z[1] > 0 && z[3] > 0);
    assert_int_not_equal(pc_model_member_norm(pc_model_member(F.model, 0), 0, z), PC_OK); /* a single model */
}

/* The ensemble's score and map from the members' raw outputs, worked out here. */
static void test_predict_combines(void **state) {
    (void)state;
    NEED_FIXTURE();
    const int S0 = 224, S1 = 320;
    float *map = malloc(sizeof(float) * S0 * S0), *m0 = malloc(sizeof(float) * S0 * S0);
    float *m1 = malloc(sizeof(float) * S1 * S1), *m1r = malloc(sizeof(float) * S0 * S0);
    float *expect = malloc(sizeof(float) * S0 * S0);
    void *rws = malloc(pc_resize_workspace_size(S0, S0));
    double z0[4], z1[4];
    pc_model_member_norm(F.model, 0, z0);
    pc_model_member_norm(F.model, 1, z1);
    for (int t = 0; t < NTEST; t++) {
        pc_prediction p, p0, p1;
        pc_geometry g, g0;
        assert_int_equal(pc_model_predict_file(F.model, F.test[t], &p, map, &g), PC_OK);
        assert_int_equal(pc_model_predict_file(pc_model_member(F.model, 0), F.test[t], &p0, m0, &g0), PC_OK);
        assert_int_equal(pc_model_predict_file(pc_model_member(F.model, 1), F.test[t], &p1, m1, NULL), PC_OK);
        const double s = ((p0.score - z0[0]) / z0[1] + (p1.score - z1[0]) / z1[1]) / 2;
        /* float32 result of a double expression: 1e-6 relative (or absolute near 0) */
        assert_true(fabs(p.score - s) <= 1e-6 * fmax(1.0, fabs(s)));
        assert_memory_equal(&g, &g0, sizeof g); /* the first member's geometry */
        pc_resize_bilinear_f32(m1r, S0, S0, m1, S1, S1, rws); /* resize: checked against torch in test_scoring */
        for (int i = 0; i < S0 * S0; i++)
            expect[i] = (float)((((double)m0[i] - z0[2]) / z0[3] + ((double)m1r[i] - z1[2]) / z1[3]) / 2);
        const double e = max_abs_diff(map, expect, (size_t)S0 * S0);
        assert_true(e <= 1e-5);
    }
    free(map), free(m0), free(m1), free(m1r), free(expect), free(rws);
}

/* The stored statistics against leave-one-out predictions recomputed in float64 brute force. */
static void test_loo_stats(void **state) {
    (void)state;
    NEED_FIXTURE();
    for (int32_t mi = 0; mi < 2; mi++) {
        pc_model *m = pc_model_member(F.model, mi);
        pc_model_info in;
        pc_model_get_info(m, &in);
        int64_t bn, nsel;
        int32_t D, nu;
        const float *bank = pc_model_bank(m, &bn, &D);
        const int64_t *sel = pc_model_coreset_indices(m, &nsel);
        const int64_t *usable = pc_model_usable_sources(m, &nu);
        assert_non_null(sel), assert_non_null(usable);
        assert_int_equal(nu, NTRAIN);
        const int64_t hw = (int64_t)in.grid_h * in.grid_w;
        float *feats = malloc(sizeof(float) * (size_t)(hw * D)), *ps = malloc(sizeof(float) * (size_t)hw);
        float *lmap = malloc(sizeof(float) * (size_t)in.crop * in.crop);
        void *mws = malloc(pc_anomaly_map_workspace_size(in.crop, 4.0));
        double img[NTRAIN], psum = 0, psq = 0, pn = 0;
        for (int u = 0; u < NTRAIN; u++) {
            pc_image im;
            assert_int_equal(pc_image_load(F.train[usable[u]], &im), PC_OK);
            assert_int_equal(pc_model_patch_outputs(m, &im, feats, NULL), PC_OK);
            pc_image_free(&im);
            double best_img = -1;
            for (int64_t q = 0; q < hw; q++) {
                double best = INFINITY;
                for (int64_t b = 0; b < bn; b++) {
                    if (sel[b] / hw == u) continue; /* this image's own entries are left out */
                    double d2 = 0;
                    for (int32_t k = 0; k < D; k++) {
                        const double d = (double)feats[q * D + k] - (double)bank[b * D + k];
                        d2 += d * d;
                    }
                    if (d2 < best) best = d2;
                }
                ps[q] = (float)best;
                if (best > best_img) best_img = best;
            }
            img[u] = best_img;
            pc_anomaly_map(lmap, ps, in.grid_h, in.grid_w, in.crop, 4.0, mws); /* checked against scipy elsewhere */
            for (int i = 0; i < in.crop * in.crop; i++) psum += lmap[i], psq += (double)lmap[i] * lmap[i], pn++;
        }
        double mean = 0, ss = 0;
        for (int u = 0; u < NTRAIN; u++) mean += img[u] / NTRAIN;
        for (int u = 0; u < NTRAIN; u++) ss += (img[u] - mean) * (img[u] - mean);
        const double sd = sqrt(ss / NTRAIN), pmean = psum / pn, psd = sqrt(psq / pn - pmean * pmean);
        double z[4];
        pc_model_member_norm(F.model, mi, z);
        print_message("member %d: image %.6g +- %.6g (ours %.6g +- %.6g), pixel %.6g +- %.6g (ours %.6g +- %.6g)\n",
                      (int)mi + 1, mean, sd, z[0], z[1], pmean, psd, z[2], z[3]);
        /* fp32 GEMM distances against float64 direct ones: 1e-4 relative */
        assert_true(fabs(z[0] - mean) <= 1e-4 * mean && fabs(z[1] - sd) <= 1e-4 * mean);
        assert_true(fabs(z[2] - pmean) <= 1e-4 * pmean && fabs(z[3] - psd) <= 1e-4 * pmean);
        free(feats), free(ps), free(lmap), free(mws);
    }
}

static void test_save_load(void **state) {
    (void)state;
    NEED_FIXTURE();
    char path[] = "/tmp/pc_ensemble_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_model_set_thresholds(F.model, 1.5, 2.5, 0.75), PC_OK);
    assert_int_equal(pc_model_save(F.model, path), PC_OK);
    pc_model *m = NULL;
    assert_int_equal(pc_model_load(path, &m), PC_OK);
    pc_model_info a, b;
    pc_model_get_info(F.model, &a), pc_model_get_info(m, &b);
    assert_int_equal(b.n_members, 2);
    assert_true(b.image_threshold == 1.5 && b.pixel_threshold == 2.5 && b.score_scale == 0.75);
    for (int32_t i = 0; i < 2; i++) {
        double z[4], y[4];
        pc_model_member_norm(F.model, i, z), pc_model_member_norm(m, i, y);
        assert_memory_equal(z, y, sizeof z); /* written with 17 digits */
    }
    float *m1 = malloc(sizeof(float) * 224 * 224), *m2 = malloc(sizeof(float) * 224 * 224);
    for (int t = 0; t < NTEST; t++) {
        pc_prediction p, q;
        assert_int_equal(pc_model_predict_file(F.model, F.test[t], &p, m1, NULL), PC_OK);
        assert_int_equal(pc_model_predict_file(m, F.test[t], &q, m2, NULL), PC_OK);
        assert_memory_equal(&p.score, &q.score, sizeof p.score);
        assert_memory_equal(m1, m2, sizeof(float) * 224 * 224);
        assert_int_equal(p.anomalous, q.anomalous);
    }
    free(m1), free(m2);
    pc_model_free(m);
    pc_model_set_thresholds(F.model, NAN, NAN, NAN);
    unlink(path);
}

/* test-minmax: the rule (checked against numpy above) applied to the members' own evaluation outputs
 * equals what eval reports; the members' results are their own metrics. */
static void test_eval_minmax(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_dataset *ds = NULL;
    assert_int_equal(pc_dataset_open(F.dir, 0, &ds), PC_OK);
    /* a small test set: the first 3 of every type */
    size_t keep = 0;
    int32_t seen[16] = {0};
    pc_eval_item *sub = malloc(ds->n_test * sizeof *sub); /* shallow copies; the dataset keeps ownership */
    for (size_t i = 0; i < ds->n_test; i++)
        if (seen[ds->test[i].type]++ < 3) sub[keep++] = ds->test[i];
    const size_t n_all = ds->n_test;
    pc_eval_item *all = ds->test;
    ds->test = sub, ds->n_test = keep;
    const size_t n = keep;
    pc_eval_result r, mr[2];
    pc_prediction *pred = malloc(n * sizeof *pred);
    float *maps = malloc(sizeof(float) * n * 224 * 224);
    pc_eval_detail det = {.predictions = pred, .maps = maps};
    assert_int_equal(pc_eval_run_norm(&r, F.model, ds, PC_MASK_RULE_FULL, 1, PC_ENSEMBLE_TEST_MINMAX, NULL, NULL, &det,
                                      mr), PC_OK);
    /* by hand: each member's eval, then the rule */
    float *acc_s = calloc(n, sizeof(float)), *acc_m = calloc(n * 224 * 224, sizeof(float));
    for (int32_t i = 0; i < 2; i++) {
        pc_model *mm = pc_model_member(F.model, i);
        pc_model_info in;
        pc_model_get_info(mm, &in);
        pc_prediction *pp = malloc(n * sizeof *pp);
        float *mp = malloc(sizeof(float) * n * in.crop * in.crop), *sc = malloc(n * sizeof(float));
        pc_eval_detail d = {.predictions = pp, .maps = mp};
        pc_eval_result ri;
        assert_int_equal(pc_eval_run_detail(&ri, mm, ds, NULL, NULL, &d), PC_OK);
        assert_true(ri.image_auroc == mr[i].image_auroc && ri.pixel_auroc == mr[i].pixel_auroc);
        for (size_t k = 0; k < n; k++) sc[k] = pp[k].score;
        void *ws = malloc(pc_minmax_workspace_size(224, in.crop));
        pc_minmax_accumulate(acc_s, acc_m, (int64_t)n, 224, sc, mp, in.crop, ws);
        free(ws), free(pp), free(mp), free(sc);
        pc_eval_result_free(&ri);
        pc_eval_result_free(&mr[i]);
    }
    pc_minmax_finish(acc_s, acc_m, (int64_t)n, 224, 2);
    for (size_t k = 0; k < n; k++) assert_memory_equal(&pred[k].score, &acc_s[k], sizeof(float));
    assert_memory_equal(maps, acc_m, sizeof(float) * n * 224 * 224);
    print_message("test-minmax on %zu images: image AUROC %.4f, pixel AUROC %.4f\n", n, r.image_auroc, r.pixel_auroc);
    pc_eval_result_free(&r);
    free(pred), free(maps), free(acc_s), free(acc_m);
    ds->test = all, ds->n_test = n_all;
    free(sub);
    pc_dataset_free(ds);
}

static void test_calibrate_and_errors(void **state) {
    (void)state;
    NEED_FIXTURE();
    pc_calibration c;
    const char *good[3] = {F.train[1], F.train[3], F.test[1]};
    assert_int_equal(pc_model_calibrate(F.model, PC_CALIB_CONFORMAL, PC_THRESHOLD_DEFAULT_RATE, good, 3, NULL, NULL, 0,
                                        NULL, NULL, &c),
                     PC_OK);
    pc_model_info in;
    pc_model_get_info(F.model, &in);
    assert_true(in.image_threshold == c.image_threshold && isfinite(c.image_threshold));
    pc_prediction p;
    assert_int_equal(pc_model_predict_file(F.model, F.test[0], &p, NULL, NULL), PC_OK);
    assert_true(p.anomalous == (p.score > c.image_threshold));
    pc_model_set_thresholds(F.model, NAN, NAN, NAN);
    pc_model_set_pixel_scale(F.model, NAN);

    /* refused: Eq. 7 in a member, one usable image, too many members */
    pc_fit_options o[2];
    pc_fit_options_init(&o[0]);
    o[0].weights = F.weights, o[0].coreset_size = 50;
    o[1] = o[0];
    o[1].reweight_b = 3;
    pc_model *m = NULL;
    assert_int_equal(pc_model_fit_ensemble(o, 2, (const char *const *)F.train, 2, &m), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_last_error(), "member 2"));
    o[1].reweight_b = 0;
    assert_int_equal(pc_model_fit_ensemble(o, 2, (const char *const *)F.train, 1, &m), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "at least 2 usable training images"));
    assert_int_equal(pc_model_fit_ensemble(o, 17, (const char *const *)F.train, 2, &m), PC_ERR_INVALID_ARGUMENT);
    assert_null(m);
}

int main(void) {
    const struct CMUnitTest rule[] = {cmocka_unit_test(test_minmax_rule)};
    const struct CMUnitTest real[] = {
        cmocka_unit_test(test_info),         cmocka_unit_test(test_predict_combines),
        cmocka_unit_test(test_loo_stats),    cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_eval_minmax),  cmocka_unit_test(test_calibrate_and_errors),
    };
    int fails = cmocka_run_group_tests_name("minmax rule", rule, NULL, NULL);
    return fails + cmocka_run_group_tests_name("two-member ensemble", real, setup, teardown);
}
