/*
 * test_metrics.c - metrics and thresholds (src/metrics.c, src/calibrate.c) against the oracle values of
 * tests/ref/gen_metrics.py: sklearn (roc_auc_score, precision_recall_curve), a from-the-definition AUPRO
 * over scipy.ndimage.label regions, scipy component labelling, numpy quantile/std and brute-force
 * threshold rules. Tolerances: AUROC, F1-max, AUPRO 1e-6 absolute (all observed ~1e-15); score
 * thresholds (F1 threshold and its decision threshold, quantile, false-alarm, conformal) exact;
 * mean + k*std 1e-12 relative (summation order differs from numpy's pairwise sum); normalised scores
 * 1e-12 absolute; labels identical up to renumbering, areas/boxes/peaks exact.
 */
#include "metrics.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL_METRIC 1e-6

static int load_count(const char *name) {
    npy_array a;
    if (npy_load(name, &a) != 0) return -1;
    int n = ((int32_t *)a.data)[0];
    npy_free(&a);
    return n;
}

/* These references need only numpy/scipy/sklearn (not ../shared), so a missing one is a failure. */
#define NEED_REFS(name)                                                                        \
    do {                                                                                       \
        if (!ref_exists(name)) fail_msg("reference %s missing: run `make refs`", name);         \
    } while (0)

static void load_or_fail(npy_array *a, const char *fmt, int i) {
    char rel[256];
    snprintf(rel, sizeof rel, fmt, i);
    if (npy_load(rel, a) != 0) fail_msg("cannot load reference %s", rel);
}

/* ------------------------------------------------------------------------------------------- */

static void test_binary_vs_sklearn(void **state) {
    (void)state;
    NEED_REFS("metrics/bin_count.npy");
    int nc = load_count("metrics/bin_count.npy");
    assert_true(nc > 0);
    double worst_auc = 0, worst_f1 = 0;
    for (int i = 0; i < nc; i++) {
        npy_array s, y, e;
        load_or_fail(&s, "metrics/bin_%02d_scores.npy", i);
        load_or_fail(&y, "metrics/bin_%02d_labels.npy", i);
        load_or_fail(&e, "metrics/bin_%02d_expect.npy", i);
        const double *ex = e.data;
        size_t n = (size_t)s.count;
        pc_binary_metrics m;
        assert_int_equal(pc_metric_binary(&m, s.data, y.data, n), PC_OK);
        if (isnan(ex[0])) {
            assert_true(isnan(m.auroc));
            double a;
            assert_int_equal(pc_metric_auroc(&a, s.data, y.data, n), PC_ERR_INVALID_ARGUMENT);
            assert_non_null(strstr(pc_last_error(), "one class"));
        } else {
            double a;
            assert_int_equal(pc_metric_auroc(&a, s.data, y.data, n), PC_OK);
            assert_true(a == m.auroc);
            worst_auc = fmax(worst_auc, fabs(m.auroc - ex[0]));
            if (!(fabs(m.auroc - ex[0]) <= TOL_METRIC))
                fail_msg("case %d: AUROC %.12f, sklearn %.12f", i, m.auroc, ex[0]);
        }
        worst_f1 = fmax(worst_f1, fabs(m.f1_max - ex[1]));
        if (!(fabs(m.f1_max - ex[1]) <= TOL_METRIC)) fail_msg("case %d: F1 %.12f, sklearn %.12f", i, m.f1_max, ex[1]);
        if (!isnan(ex[2])) {
            if ((double)m.f1_threshold != ex[2])
                fail_msg("case %d: F1 threshold %.9g, sklearn %.9g", i, m.f1_threshold, ex[2]);
            if (m.f1_decision_threshold != ex[3])
                fail_msg("case %d: decision threshold %.17g, expected %.17g", i, m.f1_decision_threshold, ex[3]);
            double f1, thr;
            float t;
            assert_int_equal(pc_metric_f1_max(&f1, &t, s.data, y.data, n), PC_OK);
            assert_true(f1 == m.f1_max && t == m.f1_threshold);
            assert_int_equal(pc_threshold_f1(&thr, &f1, s.data, y.data, n), PC_OK);
            assert_true(thr == ex[3] && f1 == m.f1_max);
            /* The decision threshold with ">" gives the same operating point as sklearn's ">=". */
            const float *sc = s.data;
            for (size_t k = 0; k < n; k++) assert_true((sc[k] > thr) == (sc[k] >= m.f1_threshold));
        } else {
            double f1;
            assert_int_equal(pc_metric_f1_max(&f1, NULL, s.data, y.data, n), PC_ERR_INVALID_ARGUMENT);
        }
        npy_free(&s);
        npy_free(&y);
        npy_free(&e);
    }
    print_message("binary metrics: %d cases, max |AUROC - sklearn| %.3g, max |F1 - sklearn| %.3g\n", nc, worst_auc,
                  worst_f1);
}

/* pc_metric_roc_curve: the full curve equals sklearn's roc_curve(drop_intermediate=False) (points
 * 1e-12, thresholds exact); thinned curves are subsets of it with both ends, at most max_points
 * points, and each interior point at least 2 / (max_points - 2) further along FPR + TPR. */
static void test_roc_vs_sklearn(void **state) {
    (void)state;
    NEED_REFS("metrics/bin_count.npy");
    int nc = load_count("metrics/bin_count.npy"), checked = 0;
    for (int i = 0; i < nc; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "metrics/bin_%02d_roc.npy", i);
        if (!ref_exists(rel)) continue; /* one class only */
        npy_array s, y, r;
        load_or_fail(&s, "metrics/bin_%02d_scores.npy", i);
        load_or_fail(&y, "metrics/bin_%02d_labels.npy", i);
        load_or_fail(&r, "metrics/bin_%02d_roc.npy", i);
        size_t n = (size_t)s.count, m = (size_t)r.count / 3;
        const double *rf = r.data, *rt = rf + m, *rthr = rf + 2 * m;
        double *fpr = malloc((n + 1) * sizeof *fpr), *tpr = malloc((n + 1) * sizeof *tpr),
               *thr = malloc((n + 1) * sizeof *thr);
        assert_non_null(fpr), assert_non_null(tpr), assert_non_null(thr);
        size_t k;
        assert_int_equal(pc_metric_roc_curve(fpr, tpr, thr, n + 1, &k, s.data, y.data, n), PC_OK);
        if (k != m) fail_msg("case %d: %zu ROC points, sklearn %zu", i, k, m);
        for (size_t j = 0; j < m; j++)
            if (!(fabs(fpr[j] - rf[j]) <= 1e-12 && fabs(tpr[j] - rt[j]) <= 1e-12 && thr[j] == rthr[j]))
                fail_msg("case %d point %zu: (%g, %g, %g), sklearn (%g, %g, %g)", i, j, fpr[j], tpr[j], thr[j], rf[j],
                         rt[j], rthr[j]);
        const size_t caps[] = {2, 3, 4, 10, 100, 400};
        for (size_t c = 0; c < sizeof caps / sizeof *caps; c++) {
            size_t cap = caps[c];
            assert_int_equal(pc_metric_roc_curve(fpr, tpr, NULL, cap, &k, s.data, y.data, n), PC_OK);
            if (m <= cap) {
                assert_int_equal(k, m);
                continue;
            }
            assert_true(k >= 2 && k <= cap);
            assert_true(fpr[0] == 0 && tpr[0] == 0 && fpr[k - 1] == 1 && tpr[k - 1] == 1);
            size_t at = 0; /* each point is a later point of sklearn's curve */
            for (size_t j = 1; j < k; j++) {
                while (at < m && !(rf[at] == fpr[j] && rt[at] == tpr[j])) at++;
                if (at == m) fail_msg("case %d, max %zu: point %zu (%g, %g) is not on the curve", i, cap, j, fpr[j], tpr[j]);
                if (j < k - 1 && !(fpr[j] + tpr[j] >= fpr[j - 1] + tpr[j - 1] + 2.0 / (double)(cap - 2)))
                    fail_msg("case %d, max %zu: point %zu closer than the step", i, cap, j);
            }
        }
        checked++;
        free(fpr), free(tpr), free(thr);
        npy_free(&s), npy_free(&y), npy_free(&r);
    }
    assert_true(checked >= 10);
    /* Errors: one class, too few points, NULL outputs. */
    float sc[3] = {1, 2, 3};
    uint8_t one[3] = {1, 1, 1};
    double f[4], t[4];
    size_t k = 99;
    assert_int_equal(pc_metric_roc_curve(f, t, NULL, 4, &k, sc, one, 3), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "one class"));
    assert_int_equal(k, 0);
    uint8_t mixed[3] = {0, 1, 1};
    assert_int_equal(pc_metric_roc_curve(f, t, NULL, 1, &k, sc, mixed, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_roc_curve(NULL, t, NULL, 4, &k, sc, mixed, 3), PC_ERR_INVALID_ARGUMENT);
    /* By hand: scores 3 (pos), 2 (pos), 1 (neg): (0,0) (0,.5) (0,1) (1,1). */
    assert_int_equal(pc_metric_roc_curve(f, t, NULL, 4, &k, sc, (uint8_t[]){0, 1, 1}, 3), PC_OK);
    assert_int_equal(k, 4);
    assert_true(f[1] == 0 && t[1] == 0.5 && f[2] == 0 && t[2] == 1 && f[3] == 1 && t[3] == 1);
    print_message("ROC curves: %d cases equal sklearn's roc_curve; thinned to 2..400 points, subsets of it\n",
                  checked);
}

static void test_binary_by_hand(void **state) {
    (void)state;
    /* Worked by hand: scores 3,2,2,1 labels 1,0,1,0. ROC points (0,0) (0,.5) (.5,1) (1,1):
     * area = 0.5*0.5*(0.5+1) + 0.5*1 = 0.875. F1 at t=3: 2/(1+0+2) = 2/3; t=2: 4/(2+1+2) = 0.8;
     * t=1: 4/(2+2+2) = 2/3. So F1-max 0.8 at t=2, decision threshold (2+1)/2. */
    const float s[] = {3, 2, 2, 1};
    const uint8_t y[] = {1, 0, 1, 0};
    pc_binary_metrics m;
    assert_int_equal(pc_metric_binary(&m, s, y, 4), PC_OK);
    assert_true(fabs(m.auroc - 0.875) < 1e-15);
    assert_true(fabs(m.f1_max - 0.8) < 1e-15);
    assert_true(m.f1_threshold == 2.0f && m.f1_decision_threshold == 1.5);
    assert_int_equal(m.n_positive, 2);
    assert_int_equal(m.n_negative, 2);
    /* F1 ties: scores 4,3,2,1 labels 1,0,0,1: F1 = 2/3 at t=4 and at t=1; the lowest t is chosen. */
    const float s2[] = {4, 3, 2, 1};
    const uint8_t y2[] = {1, 0, 0, 1};
    assert_int_equal(pc_metric_binary(&m, s2, y2, 4), PC_OK);
    assert_true(fabs(m.f1_max - 2.0 / 3) < 1e-15);
    assert_true(m.f1_threshold == 1.0f && m.f1_decision_threshold == nextafter(1.0, 0.0));
}

static void test_binary_errors(void **state) {
    (void)state;
    const float s[] = {1, NAN, 2};
    const uint8_t y[] = {0, 1, 1};
    pc_binary_metrics m;
    assert_int_equal(pc_metric_binary(&m, s, y, 3), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "score 1"));
    const float si[] = {1, 2, INFINITY};
    assert_int_equal(pc_metric_binary(&m, si, y, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_binary(&m, s, y, 0), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_binary(&m, NULL, y, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_binary(NULL, s, y, 3), PC_ERR_INVALID_ARGUMENT);
}

/* ------------------------------------------------------------------------------------------- */

static void test_aupro_vs_definition(void **state) {
    (void)state;
    NEED_REFS("metrics/pro_count.npy");
    int nc = load_count("metrics/pro_count.npy");
    assert_true(nc > 0);
    double worst = 0;
    for (int i = 0; i < nc; i++) {
        npy_array maps, masks, e;
        load_or_fail(&maps, "metrics/pro_%02d_maps.npy", i);
        load_or_fail(&masks, "metrics/pro_%02d_masks.npy", i);
        load_or_fail(&e, "metrics/pro_%02d_expect.npy", i);
        assert_int_equal(maps.ndim, 3);
        const double *ex = e.data;
        double v;
        assert_int_equal(pc_metric_aupro(&v, maps.data, masks.data, (int32_t)maps.shape[0], (int32_t)maps.shape[1],
                                         (int32_t)maps.shape[2], ex[0]),
                         PC_OK);
        worst = fmax(worst, fabs(v - ex[1]));
        if (!(fabs(v - ex[1]) <= TOL_METRIC)) fail_msg("case %d (limit %g): AUPRO %.12f, reference %.12f", i, ex[0], v, ex[1]);
        npy_free(&maps);
        npy_free(&masks);
        npy_free(&e);
    }
    print_message("AUPRO: %d cases, max |AUPRO - reference| %.3g\n", nc, worst);
}

static void test_aupro_by_hand(void **state) {
    (void)state;
    /* One 1x4 image, mask 0 0 1 1 (one region of 2), map .1 .3 .2 .4. Points from (0,0): t=.4 ->
     * (0, .5), t=.3 -> (.5, .5), t=.2 -> (.5, 1), t=.1 -> (1, 1). Limit 1: 0 + .5*.5 + 0 + .5*1 = .75.
     * Limit .3: (0,0)-(0,.5) has no width, (0,.5)-(.5,.5) cut at .3 gives .5*.3 = .15; /.3 = .5. */
    const float map[] = {.1f, .3f, .2f, .4f};
    const uint8_t mask[] = {0, 0, 1, 1};
    double v;
    assert_int_equal(pc_metric_aupro(&v, map, mask, 1, 1, 4, 1.0), PC_OK);
    assert_true(fabs(v - 0.75) < 1e-15);
    assert_int_equal(pc_metric_aupro(&v, map, mask, 1, 1, 4, 0.3), PC_OK);
    assert_true(fabs(v - 0.5) < 1e-15);
    /* Errors: no anomalous pixel, no nominal pixel, a bad limit, NaN. */
    const uint8_t none[] = {0, 0, 0, 0}, all[] = {1, 1, 1, 1};
    assert_int_equal(pc_metric_aupro(&v, map, none, 1, 1, 4, 0.3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_aupro(&v, map, all, 1, 1, 4, 0.3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_aupro(&v, map, mask, 1, 1, 4, 0.0), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_metric_aupro(&v, map, mask, 1, 1, 4, 1.5), PC_ERR_INVALID_ARGUMENT);
    const float bad[] = {.1f, NAN, .2f, .4f};
    assert_int_equal(pc_metric_aupro(&v, bad, mask, 1, 1, 4, 0.3), PC_ERR_INVALID_ARGUMENT);
    assert_true(isnan(v));
}

/* ------------------------------------------------------------------------------------------- */

static void test_labels_vs_scipy(void **state) {
    (void)state;
    NEED_REFS("metrics/lab_count.npy");
    int nc = load_count("metrics/lab_count.npy");
    assert_true(nc > 0);
    for (int i = 0; i < nc; i++) {
        npy_array mask, map, lab, st;
        load_or_fail(&mask, "metrics/lab_%02d_mask.npy", i);
        load_or_fail(&map, "metrics/lab_%02d_map.npy", i);
        load_or_fail(&lab, "metrics/lab_%02d_labels.npy", i);
        load_or_fail(&st, "metrics/lab_%02d_stats.npy", i);
        int32_t h = (int32_t)mask.shape[0], w = (int32_t)mask.shape[1];
        int32_t *out = malloc((size_t)h * w * sizeof *out);
        int32_t n;
        assert_int_equal(pc_label_components(out, &n, mask.data, h, w), PC_OK);
        assert_int_equal(n, st.shape[0]);
        /* The same partition: a bijection between our labels and scipy's. */
        int32_t *ours_to_scipy = calloc((size_t)n + 1, sizeof(int32_t));
        int32_t *scipy_to_ours = calloc((size_t)n + 1, sizeof(int32_t));
        const int32_t *ref = lab.data;
        for (int32_t p = 0; p < h * w; p++) {
            int32_t a = out[p], b = ref[p];
            assert_true((a == 0) == (b == 0));
            if (!a) continue;
            assert_true(a >= 1 && a <= n && b >= 1 && b <= n);
            if (!ours_to_scipy[a]) ours_to_scipy[a] = b;
            if (!scipy_to_ours[b]) scipy_to_ours[b] = a;
            assert_int_equal(ours_to_scipy[a], b);
            assert_int_equal(scipy_to_ours[b], a);
        }
        /* Areas, half-open boxes and peaks per region, matched through the bijection. */
        pc_region *reg = malloc(((size_t)n + 1) * sizeof *reg);
        assert_int_equal(pc_regions_describe(reg, out, n, map.data, h, w), PC_OK);
        const int64_t *row = st.data;
        for (int32_t r = 0; r < n; r++, row += 8) {
            const pc_region *g = &reg[scipy_to_ours[row[0]] - 1];
            assert_int_equal(g->label, scipy_to_ours[row[0]]);
            assert_int_equal(g->x0, row[1]);
            assert_int_equal(g->y0, row[2]);
            assert_int_equal(g->x1, row[3]);
            assert_int_equal(g->y1, row[4]);
            assert_int_equal(g->area, row[5]);
            assert_int_equal(g->peak_x, row[6]);
            assert_int_equal(g->peak_y, row[7]);
            assert_true(g->peak == ((const float *)map.data)[row[7] * w + row[6]]);
        }
        /* Our numbering is raster order of first pixels: labels appear as 1, 2, 3, ... */
        int32_t next = 1;
        for (int32_t p = 0; p < h * w; p++)
            if (out[p] == next) next++;
            else assert_true(out[p] < next);
        assert_int_equal(next, n + 1);
        free(reg);
        free(ours_to_scipy);
        free(scipy_to_ours);
        free(out);
        npy_free(&mask);
        npy_free(&map);
        npy_free(&lab);
        npy_free(&st);
    }
}

static void test_labels_errors(void **state) {
    (void)state;
    int32_t lab[4], n;
    const uint8_t m[4] = {1, 0, 0, 1};
    assert_int_equal(pc_label_components(lab, &n, m, 2, 2), PC_OK);
    assert_int_equal(n, 1); /* diagonal neighbours */
    assert_int_equal(pc_label_components(lab, &n, m, -1, 2), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_label_components(lab, &n, m, 65536, 65536), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_label_components(NULL, &n, m, 2, 2), PC_ERR_INVALID_ARGUMENT);
    pc_region r[1];
    lab[0] = 2;
    assert_int_equal(pc_regions_describe(r, lab, 1, NULL, 2, 2), PC_ERR_INVALID_ARGUMENT);
    lab[0] = 1;
    assert_int_equal(pc_regions_describe(r, lab, 1, NULL, 2, 2), PC_OK);
    assert_int_equal(r[0].area, 2);
    assert_int_equal(r[0].peak_x, -1);
}

/* ------------------------------------------------------------------------------------------- */

static void test_thresholds_vs_numpy(void **state) {
    (void)state;
    NEED_REFS("metrics/thr_count.npy");
    int nc = load_count("metrics/thr_count.npy");
    npy_array qs, ks, fars, conf;
    load_or_fail(&qs, "metrics/thr_qs.npy", 0);
    load_or_fail(&ks, "metrics/thr_ks.npy", 0);
    load_or_fail(&fars, "metrics/thr_fars.npy", 0);
    load_or_fail(&conf, "metrics/thr_conf.npy", 0);
    double worst_ms = 0, worst_norm = 0;
    for (int i = 0; i < nc; i++) {
        npy_array s, eq, ems, efar, econf, enorm;
        load_or_fail(&s, "metrics/thr_%02d_scores.npy", i);
        load_or_fail(&eq, "metrics/thr_%02d_quantile.npy", i);
        load_or_fail(&ems, "metrics/thr_%02d_meanstd.npy", i);
        load_or_fail(&efar, "metrics/thr_%02d_far.npy", i);
        load_or_fail(&econf, "metrics/thr_%02d_conformal.npy", i);
        load_or_fail(&enorm, "metrics/thr_%02d_norm.npy", i);
        const float *sc = s.data;
        size_t n = (size_t)s.count;
        double t, b;
        for (int64_t k = 0; k < qs.count; k++) {
            assert_int_equal(pc_threshold_quantile(&t, sc, n, ((double *)qs.data)[k]), PC_OK);
            if (t != ((double *)eq.data)[k])
                fail_msg("case %d q=%g: %.17g, numpy %.17g", i, ((double *)qs.data)[k], t, ((double *)eq.data)[k]);
        }
        for (int64_t k = 0; k < ks.count; k++) {
            double ex = ((double *)ems.data)[k];
            pc_status st = pc_threshold_mean_std(&t, sc, n, ((double *)ks.data)[k]);
            if (isnan(ex)) {
                assert_int_equal(st, PC_ERR_INVALID_ARGUMENT);
                continue;
            }
            assert_int_equal(st, PC_OK);
            double rel = fabs(t - ex) / fmax(fabs(ex), 1e-300);
            worst_ms = fmax(worst_ms, rel);
            if (!(rel <= 1e-12)) fail_msg("case %d k=%g: %.17g, numpy %.17g", i, ((double *)ks.data)[k], t, ex);
        }
        for (int64_t k = 0; k < fars.count; k++) {
            double rate = ((double *)fars.data)[k];
            assert_int_equal(pc_threshold_false_alarm(&t, sc, n, rate), PC_OK);
            if (t != ((double *)efar.data)[k])
                fail_msg("case %d rate=%g: %.17g, expected %.17g", i, rate, t, ((double *)efar.data)[k]);
        }
        for (int64_t k = 0; k < conf.count; k++) {
            double rate = ((double *)conf.data)[k];
            assert_int_equal(pc_threshold_conformal(&t, &b, sc, n, rate), PC_OK);
            const double *ec = (const double *)econf.data + 2 * k;
            if (t != ec[0] || b != ec[1])
                fail_msg("case %d conformal rate=%g: (%.17g, %.17g), expected (%.17g, %.17g)", i, rate, t, b, ec[0], ec[1]);
        }
        /* Default threshold, scale, normalised scores. */
        const double *en = enorm.data;
        size_t np_ = ((size_t)enorm.count - 2) / 2;
        assert_int_equal(pc_threshold_default(&t, &b, sc, n), PC_OK);
        assert_true(t == en[0]);
        double scale;
        assert_int_equal(pc_threshold_scale(&scale, t, sc, n), PC_OK);
        if (fabs(scale - en[1]) > 1e-12 * fabs(en[1])) fail_msg("case %d scale %.17g, expected %.17g", i, scale, en[1]);
        for (size_t k = 0; k < np_; k++) {
            double y = pc_threshold_normalize(en[2 + k], t, scale);
            worst_norm = fmax(worst_norm, fabs(y - en[2 + np_ + k]));
            if (!(fabs(y - en[2 + np_ + k]) <= 1e-12)) fail_msg("case %d normalize(%g) %.17g, scipy %.17g", i, en[2 + k], y, en[2 + np_ + k]);
            assert_true(y >= 0 && y <= 1);
        }
        assert_true(fabs(pc_threshold_normalize(t, t, scale) - 0.5) < 1e-15);
        npy_free(&s);
        npy_free(&eq);
        npy_free(&ems);
        npy_free(&efar);
        npy_free(&econf);
        npy_free(&enorm);
    }
    print_message("thresholds: %d cases; quantile/false-alarm/conformal exact, mean+k*std max rel %.3g, "
                  "normalised max abs %.3g\n", nc, worst_ms, worst_norm);
    npy_free(&qs);
    npy_free(&ks);
    npy_free(&fars);
    npy_free(&conf);
}

static void test_thresholds_semantics(void **state) {
    (void)state;
    /* The false-alarm rule by hand: scores 1..10, rate .2 -> at most 2 strictly above -> t = 8. */
    float s[10];
    for (int i = 0; i < 10; i++) s[i] = (float)(10 - i);
    double t, b;
    assert_int_equal(pc_threshold_false_alarm(&t, s, 10, 0.2), PC_OK);
    assert_true(t == 8.0);
    assert_int_equal(pc_threshold_false_alarm(&t, s, 10, 0.0), PC_OK);
    assert_true(t == 10.0);
    /* Conformal with n = 10 at 1%: m = floor(.11) = 0 -> the max, bound 1/11. At 20%: m = 2 -> 9. */
    assert_int_equal(pc_threshold_default(&t, &b, s, 10), PC_OK);
    assert_true(t == 10.0 && fabs(b - 1.0 / 11) < 1e-17);
    assert_int_equal(pc_threshold_conformal(&t, &b, s, 10, 0.2), PC_OK);
    assert_true(t == 9.0 && fabs(b - 2.0 / 11) < 1e-17);
    /* Monotone normalisation, 0.1 at the median by construction. */
    double scale;
    assert_int_equal(pc_threshold_scale(&scale, 10.0, s, 10), PC_OK);
    assert_true(scale == 4.5); /* 10 - median 5.5 */
    assert_true(fabs(pc_threshold_normalize(5.5, 10, scale) - 0.1) < 1e-15);
    assert_true(fabs(pc_threshold_normalize(14.5, 10, scale) - 0.9) < 1e-15);
    double prev = -1;
    for (double x = -100; x <= 100; x += 0.37) {
        double y = pc_threshold_normalize(x, 10, scale);
        assert_true(y >= prev && y >= 0 && y <= 1);
        prev = y;
    }
    assert_true(isnan(pc_threshold_normalize(NAN, 10, scale)));
    /* A threshold below the median falls back to the sample std; a constant sample to 1. */
    assert_int_equal(pc_threshold_scale(&scale, 0.0, s, 10), PC_OK);
    assert_true(fabs(scale - 3.0276503540974917) < 1e-12);
    const float c[3] = {2, 2, 2};
    assert_int_equal(pc_threshold_scale(&scale, 2.0, c, 3), PC_OK);
    assert_true(scale == 1.0);
    /* Errors. */
    assert_int_equal(pc_threshold_quantile(&t, s, 10, 1.5), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_threshold_quantile(&t, s, 0, 0.5), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_threshold_mean_std(&t, s, 1, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_threshold_false_alarm(&t, s, 10, 1.0), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_threshold_conformal(&t, &b, s, 10, 0.0), PC_ERR_INVALID_ARGUMENT);
    const uint8_t none[10] = {0};
    assert_int_equal(pc_threshold_f1(&t, NULL, s, none, 10), PC_ERR_INVALID_ARGUMENT);
    s[3] = NAN;
    assert_int_equal(pc_threshold_quantile(&t, s, 10, 0.5), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "score 3"));
}

/* The radix sort against qsort (the plain reference), on odd sizes and awkward values. */
static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_sort_vs_qsort(void **state) {
    (void)state;
    srand(7);
    const size_t sizes[] = {1, 2, 3, 255, 256, 257, 10007};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *o = malloc(n * sizeof *o);
        for (size_t i = 0; i < n; i++) {
            int r = rand() % 8;
            a[i] = r == 0 ? -0.0f : r == 1 ? 0.0f : r == 2 ? 1e-40f : r == 3 ? -3e38f
                 : (float)(rand() - RAND_MAX / 2) / 1000.0f;
        }
        memcpy(b, a, n * sizeof *a);
        qsort(b, n, sizeof *b, cmp_float);
        assert_int_equal(pc_sort_scores(o, a, n), PC_OK);
        for (size_t i = 0; i < n; i++) assert_true(o[i] == b[i]);
        free(a);
        free(b);
        free(o);
    }
}

/* The fast kernels against the plain references of src/metrics_ref.c on many random odd shapes,
 * with quantised values (ties) and sparse to dense masks. Labels must be identical (same numbering
 * rule); AUROC and AUPRO to 1e-12 (both exact up to summation order). */
static void test_fast_vs_plain_reference(void **state) {
    (void)state;
    srand(12345);
    double worst_auc = 0, worst_pro = 0;
    for (int trial = 0; trial < 300; trial++) {
        int32_t n = 1 + rand() % 3, h = 1 + rand() % 19, w = 1 + rand() % 23;
        size_t hw = (size_t)h * w, total = hw * n;
        uint8_t *mask = malloc(total);
        float *map = malloc(total * sizeof *map);
        int32_t *a = malloc(hw * sizeof *a), *b = malloc(hw * sizeof *b);
        int density = rand() % 100, levels = 1 + rand() % 12;
        for (size_t i = 0; i < total; i++) {
            mask[i] = rand() % 100 < density;
            map[i] = (float)(rand() % levels) + (mask[i] ? (float)(rand() % 3) : 0.0f);
        }
        for (int32_t k = 0; k < n; k++) {
            int32_t na, nb;
            assert_int_equal(pc_label_components(a, &na, mask + k * hw, h, w), PC_OK);
            assert_int_equal(pc_label_components_ref(b, &nb, mask + k * hw, h, w), PC_OK);
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, hw * sizeof *a);
        }
        size_t npos = 0;
        for (size_t i = 0; i < total; i++) npos += mask[i];
        if (npos > 0 && npos < total) {
            double fast, ref = pc_metric_auroc_ref(map, mask, total);
            assert_int_equal(pc_metric_auroc(&fast, map, mask, total), PC_OK);
            worst_auc = fmax(worst_auc, fabs(fast - ref));
            if (!(fabs(fast - ref) <= 1e-12)) fail_msg("trial %d: AUROC %.17g, plain %.17g", trial, fast, ref);
            double limit = trial % 3 == 0 ? 1.0 : trial % 3 == 1 ? 0.3 : 0.07;
            ref = pc_metric_aupro_ref(map, mask, n, h, w, limit);
            assert_int_equal(pc_metric_aupro(&fast, map, mask, n, h, w, limit), PC_OK);
            worst_pro = fmax(worst_pro, fabs(fast - ref));
            if (!(fabs(fast - ref) <= 1e-12)) fail_msg("trial %d: AUPRO %.17g, plain %.17g", trial, fast, ref);
        }
        free(mask);
        free(map);
        free(a);
        free(b);
    }
    print_message("fast vs plain: 300 random shapes, max |dAUROC| %.3g, max |dAUPRO| %.3g\n", worst_auc, worst_pro);
}

/* Out of memory: run the allocating functions in a child process with PC_FAULT_ALLOC=N (the N-th and
 * later allocations fail). Each call must return PC_OK or PC_ERR_NO_MEMORY, never crash, and free what
 * it took (the sanitizer build checks leaks at the child's exit). */
static int fault_child(void) {
    float maps[2 * 4 * 5];
    uint8_t masks[2 * 4 * 5] = {0};
    for (int i = 0; i < 40; i++) maps[i] = (float)((i * 7) % 11);
    masks[3] = masks[4] = masks[27] = 1;
    double v, t, b;
    pc_binary_metrics m;
    int n_nomem = 0;
    pc_status st[6] = {
        pc_metric_aupro(&v, maps, masks, 2, 4, 5, 0.3), pc_metric_binary(&m, maps, masks, 40),
        pc_threshold_quantile(&t, maps, 40, 0.5),      pc_threshold_false_alarm(&t, maps, 40, 0.1),
        pc_threshold_conformal(&t, &b, maps, 40, 0.1), pc_threshold_scale(&t, 20.0, maps, 40),
    };
    for (int i = 0; i < 6; i++) {
        if (st[i] != PC_OK && st[i] != PC_ERR_NO_MEMORY) return 10 + i;
        if (st[i] == PC_ERR_NO_MEMORY && !strstr(pc_last_error(), "allocate")) return 20 + i;
        n_nomem += st[i] == PC_ERR_NO_MEMORY;
    }
    return n_nomem > 0 ? 0 : 1; /* 1: no allocation failed (N beyond the last allocation) */
}

static void test_alloc_faults(void **state) {
    (void)state;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) TEST_SKIP_MSG("cannot find /proc/self/exe");
    self[len] = 0;
    int last = 0;
    for (int n = 1; n <= 64; n++) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "PC_FAULT_ALLOC=%d '%s' --fault-child", n, self);
        int rc = system(cmd);
        assert_true(WIFEXITED(rc));
        last = WEXITSTATUS(rc);
        if (last == 1) break;
        if (last != 0) fail_msg("PC_FAULT_ALLOC=%d: child exit %d", n, last);
    }
    assert_int_equal(last, 1); /* reached N with no failing allocation: every earlier N was covered */
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--fault-child") == 0) return fault_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary_vs_sklearn),  cmocka_unit_test(test_binary_by_hand),
        cmocka_unit_test(test_roc_vs_sklearn),
        cmocka_unit_test(test_binary_errors),      cmocka_unit_test(test_aupro_vs_definition),
        cmocka_unit_test(test_aupro_by_hand),      cmocka_unit_test(test_labels_vs_scipy),
        cmocka_unit_test(test_labels_errors),      cmocka_unit_test(test_thresholds_vs_numpy),
        cmocka_unit_test(test_thresholds_semantics), cmocka_unit_test(test_sort_vs_qsort),
        cmocka_unit_test(test_fast_vs_plain_reference), cmocka_unit_test(test_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
