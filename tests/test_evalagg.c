/*
 * test_evalagg.c - the model-free parts of evaluation (src/eval.c): pc_eval_aggregate against sklearn /
 * the from-the-definition AUPRO of tests/ref/gen_evalagg.py (AUROC, F1-max, AUPRO, per-type AUROC
 * 1e-9 absolute; F1 decision thresholds exact), the MVTec layout walker on a tree built here (sorted
 * order, masks found, clear errors for a wrong layout and a missing mask), the crop/resize undo of
 * region boxes against values worked out by hand, and pc_regions_from_map on a hand-made map; maps
 * of different sizes per image (pc_eval_aggregate_sizes, pc_metric_aupro_sizes) against sklearn on the
 * concatenated pixels and the from-the-definition AUPRO of gen_evalagg.py (agg_sizes).
 */
#include "testutil.h"
#include "patchcore.h"
#include "maps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TOL 1e-9

static void *load(const char *name, const char *dtype, int64_t *count) {
    char buf[512];
    npy_array a;
    ref_path(buf, sizeof buf, "evalagg/%s", name);
    if (npy_load(buf, &a) != 0) fail_msg("missing oracle %s (run tests/ref/gen_evalagg.py)", buf);
    assert_string_equal(a.dtype, dtype);
    if (count) *count = a.count;
    return a.data;
}

static void check_case(const char *name) {
    static const char *const types[] = {"broken_large", "broken_small", "contamination", "good"};
    char f[128];
    int64_t n, np_, c;
    snprintf(f, sizeof f, "%s_scores.npy", name);
    float *scores = load(f, "<f4", &n);
    snprintf(f, sizeof f, "%s_maps.npy", name);
    npy_array a;
    char buf[512];
    ref_path(buf, sizeof buf, "evalagg/%s", f);
    assert_int_equal(npy_load(buf, &a), 0);
    float *maps = a.data;
    int h = (int)a.shape[1], w = (int)a.shape[2];
    np_ = a.count;
    snprintf(f, sizeof f, "%s_masks.npy", name);
    uint8_t *masks = load(f, "|u1", &c);
    assert_int_equal(c, np_);
    snprintf(f, sizeof f, "%s_types.npy", name);
    int32_t *ty = load(f, "<i4", &c);
    snprintf(f, sizeof f, "%s_expect.npy", name);
    double *e = load(f, "<f8", &c);
    snprintf(f, sizeof f, "%s_pertype.npy", name);
    double *pt = load(f, "<f8", &c);

    pc_eval_result r;
    assert_int_equal(pc_eval_aggregate(&r, scores, maps, masks, ty, types, 4, 3, (int32_t)n, h, w), PC_OK);
    assert_true(fabs(r.image_auroc - e[0]) <= TOL);
    assert_true(fabs(r.pixel_auroc - e[1]) <= TOL);
    assert_true(fabs(r.aupro - e[2]) <= TOL);
    assert_true(fabs(r.image_f1_max - e[3]) <= TOL);
    assert_true(fabs(r.pixel_f1_max - e[4]) <= TOL);
    assert_true(r.image_f1_threshold == e[5]);
    assert_true(r.pixel_f1_threshold == e[6]);
    int64_t good = 0;
    for (int64_t i = 0; i < n; i++) good += ty[i] == 3;
    assert_int_equal(r.n_good, good);
    assert_int_equal(r.n_defective, n - good);
    assert_int_equal(r.n_types, 4);
    for (int t = 0; t < 4; t++) {
        assert_string_equal(r.per_type[t].name, types[t]);
        if (isnan(pt[t])) assert_true(isnan(r.per_type[t].image_auroc));
        else assert_true(fabs(r.per_type[t].image_auroc - pt[t]) <= TOL);
    }
    pc_eval_result_free(&r);

    /* all good: a clear error, not a NaN */
    int32_t *allgood = malloc((size_t)n * sizeof *allgood);
    for (int64_t i = 0; i < n; i++) allgood[i] = 3;
    assert_int_equal(pc_eval_aggregate(&r, scores, maps, masks, allgood, types, 4, 3, (int32_t)n, h, w),
                     PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "good and defective"));
    allgood[0] = 7;
    assert_int_equal(pc_eval_aggregate(&r, scores, maps, masks, allgood, types, 4, 3, (int32_t)n, h, w),
                     PC_ERR_INVALID_ARGUMENT);
    free(allgood);
    free(scores), free(maps), free(masks), free(ty), free(e), free(pt);
}

static void test_aggregate_vs_sklearn(void **state) {
    (void)state;
    check_case("agg_a");
    check_case("agg_b");
}

/* Maps of a different size per image (a tiled model's have each image's size), one after the other:
 * pc_eval_aggregate_sizes vs sklearn on the concatenated pixels and the from-the-definition AUPRO
 * over each mask's own regions (gen_evalagg.py agg_sizes; 1e-9 absolute, thresholds exact). And with
 * every size equal it is pc_eval_aggregate, bit for bit (agg_a). */
static void test_aggregate_sizes(void **state) {
    (void)state;
    static const char *const types[] = {"broken_large", "broken_small", "contamination", "good"};
    int64_t n, np_, c;
    float *scores = load("agg_sizes_scores.npy", "<f4", &n);
    float *maps = load("agg_sizes_maps.npy", "<f4", &np_);
    uint8_t *masks = load("agg_sizes_masks.npy", "|u1", &c);
    assert_int_equal(c, np_);
    int32_t *sizes = load("agg_sizes_sizes.npy", "<i4", &c);
    assert_int_equal(c, 2 * n);
    int32_t *ty = load("agg_sizes_types.npy", "<i4", &c);
    double *e = load("agg_sizes_expect.npy", "<f8", &c);
    double *pt = load("agg_sizes_pertype.npy", "<f8", &c);
    int32_t hs[64], ws[64];
    int64_t total = 0;
    bool differ = false;
    for (int64_t i = 0; i < n; i++) {
        hs[i] = sizes[2 * i], ws[i] = sizes[2 * i + 1];
        total += (int64_t)hs[i] * ws[i];
        differ |= hs[i] != hs[0] || ws[i] != ws[0];
    }
    assert_true(differ);
    assert_int_equal(total, np_);
    pc_eval_result r;
    assert_int_equal(pc_eval_aggregate_sizes(&r, scores, maps, masks, ty, types, 4, 3, (int32_t)n, hs, ws), PC_OK);
    print_message("agg_sizes: %lld maps of %lld pixels in all: pixel AUROC %.9f (sklearn %.9f), AUPRO %.9f (%.9f)\n",
                  (long long)n, (long long)np_, r.pixel_auroc, e[1], r.aupro, e[2]);
    assert_true(fabs(r.image_auroc - e[0]) <= TOL);
    assert_true(fabs(r.pixel_auroc - e[1]) <= TOL);
    assert_true(fabs(r.aupro - e[2]) <= TOL);
    assert_true(fabs(r.image_f1_max - e[3]) <= TOL);
    assert_true(fabs(r.pixel_f1_max - e[4]) <= TOL);
    assert_true(r.image_f1_threshold == e[5]);
    assert_true(r.pixel_f1_threshold == e[6]);
    for (int t = 0; t < 4; t++) {
        if (isnan(pt[t])) assert_true(isnan(r.per_type[t].image_auroc));
        else assert_true(fabs(r.per_type[t].image_auroc - pt[t]) <= TOL);
    }
    pc_eval_result_free(&r);
    /* AUPRO alone, and a size that does not add up to the pixels given is the caller's to get right;
     * a non-positive size is refused. */
    double a;
    assert_int_equal(pc_metric_aupro_sizes(&a, maps, masks, (int32_t)n, hs, ws, 0.3), PC_OK);
    assert_true(fabs(a - e[2]) <= TOL);
    int32_t h0 = hs[3];
    hs[3] = 0;
    assert_int_equal(pc_metric_aupro_sizes(&a, maps, masks, (int32_t)n, hs, ws, 0.3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_eval_aggregate_sizes(&r, scores, maps, masks, ty, types, 4, 3, (int32_t)n, hs, ws),
                     PC_ERR_INVALID_ARGUMENT);
    hs[3] = h0;
    free(scores), free(maps), free(masks), free(sizes), free(ty), free(e), free(pt);

    /* Equal sizes: the same bits as pc_eval_aggregate. */
    scores = load("agg_a_scores.npy", "<f4", &n);
    npy_array am;
    char buf[512];
    assert_int_equal(npy_load(ref_path(buf, sizeof buf, "evalagg/agg_a_maps.npy"), &am), 0);
    masks = load("agg_a_masks.npy", "|u1", &c);
    ty = load("agg_a_types.npy", "<i4", &c);
    const int h = (int)am.shape[1], w = (int)am.shape[2];
    for (int64_t i = 0; i < n; i++) hs[i] = h, ws[i] = w;
    pc_eval_result r1, r2;
    assert_int_equal(pc_eval_aggregate(&r1, scores, am.data, masks, ty, types, 4, 3, (int32_t)n, h, w), PC_OK);
    assert_int_equal(pc_eval_aggregate_sizes(&r2, scores, am.data, masks, ty, types, 4, 3, (int32_t)n, hs, ws), PC_OK);
    assert_memory_equal(&r1.image_auroc, &r2.image_auroc, sizeof r1.image_auroc);
    assert_memory_equal(&r1.pixel_auroc, &r2.pixel_auroc, sizeof r1.pixel_auroc);
    assert_memory_equal(&r1.aupro, &r2.aupro, sizeof r1.aupro);
    assert_memory_equal(&r1.pixel_f1_max, &r2.pixel_f1_max, sizeof r1.pixel_f1_max);
    assert_memory_equal(&r1.pixel_f1_threshold, &r2.pixel_f1_threshold, sizeof r1.pixel_f1_threshold);
    pc_eval_result_free(&r1), pc_eval_result_free(&r2);
    npy_free(&am);
    free(scores), free(masks), free(ty);
}

/* The ground-truth mask of a map (pc_mask_for_map): a tiled model's map has the image's size and the
 * mask is thresholded pixel for pixel (full: == 255, half: >= 128; worked out by hand on the values
 * around both cut points), a mask of another size is refused with both sizes named; an untiled
 * model's is pc_preprocess_mask_ex's, byte for byte. And pc_image_file_size reads a PNG's size. */
static void test_mask_for_map(void **state) {
    (void)state;
    enum { W = 5, H = 3 };
    uint8_t px[W * H] = {0, 1, 127, 128, 129, 200, 254, 255, 255, 0, 128, 127, 255, 254, 3};
    const uint8_t full[W * H] = {0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0};
    const uint8_t half[W * H] = {0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0};
    pc_image grey = {W, H, 1, px};
    pc_model_info info;
    memset(&info, 0, sizeof info);
    info.resize = 8, info.crop = 4, info.tiling.tile = 4;
    uint8_t out[64];
    assert_int_equal(pc_mask_for_map(out, &grey, &info, W, H, PC_MASK_RULE_FULL), PC_OK);
    assert_memory_equal(out, full, sizeof full);
    assert_int_equal(pc_mask_for_map(out, &grey, &info, W, H, PC_MASK_RULE_HALF), PC_OK);
    assert_memory_equal(out, half, sizeof half);
    assert_int_equal(pc_mask_for_map(out, &grey, &info, H, W, PC_MASK_RULE_FULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "5x3"));
    assert_non_null(strstr(pc_last_error(), "3x5"));
    /* untiled: the crop's mask, as pc_preprocess_mask_ex makes it */
    info.tiling.tile = 0;
    uint8_t want[16];
    for (int rule = 0; rule < 2; rule++) {
        assert_int_equal(pc_preprocess_mask_ex(want, &grey, 8, 4, (pc_mask_rule)rule), PC_OK);
        assert_int_equal(pc_mask_for_map(out, &grey, &info, 4, 4, (pc_mask_rule)rule), PC_OK);
        assert_memory_equal(out, want, 16);
    }
    assert_int_equal(pc_mask_for_map(out, &grey, &info, W, H, PC_MASK_RULE_FULL), PC_ERR_INVALID_ARGUMENT);

    char dir[] = "/tmp/pc_evalagg_size_XXXXXX", path[1200];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/evalagg_size.png", dir);
    uint8_t rgb[37 * 23 * 3] = {0};
    pc_image img = {37, 23, 3, rgb};
    assert_int_equal(pc_image_write_png(path, &img), PC_OK);
    int32_t w = 0, h = 0;
    assert_int_equal(pc_image_file_size(path, &w, &h), PC_OK);
    assert_int_equal(w, 37), assert_int_equal(h, 23);
    snprintf(path, sizeof path, "%s/evalagg_size.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("not an image", f);
    fclose(f);
    assert_int_not_equal(pc_image_file_size(path, &w, &h), PC_OK);
    assert_non_null(strstr(pc_last_error(), path));
    assert_int_equal(pc_image_file_size("/nonexistent-pc/x.png", &w, &h), PC_ERR_NOT_FOUND);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* ---- layout walker ---- */

static char tmpl[64];

static void mk(const char *rel, int dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", tmpl, rel);
    if (dir) assert_int_equal(mkdir(p, 0700), 0);
    else {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fclose(f);
    }
}

static void rmtree(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpl);
    assert_int_equal(system(cmd), 0);
}

static void test_walker(void **state) {
    (void)state;
    strcpy(tmpl, "/tmp/pc_evalagg_XXXXXX");
    assert_non_null(mkdtemp(tmpl));
    pc_dataset *ds = NULL;
    assert_int_equal(pc_dataset_open(tmpl, 1, &ds), PC_ERR_NOT_FOUND);
    assert_non_null(strstr(pc_last_error(), "train/good"));
    assert_null(ds);
    mk("train", 1), mk("train/good", 1), mk("train/good/001.png", 0), mk("train/good/000.png", 0);
    mk("train/good/notes.txt", 0);
    assert_int_equal(pc_dataset_open(tmpl, 1, &ds), PC_ERR_NOT_FOUND);
    assert_non_null(strstr(pc_last_error(), "/test"));
    mk("test", 1), mk("test/good", 1), mk("test/good/000.png", 0), mk("test/scratch", 1), mk("test/crack", 1);
    mk("test/scratch/001.PNG", 0), mk("test/scratch/000.png", 0), mk("test/crack/000.png", 0);
    mk("ground_truth", 1), mk("ground_truth/scratch", 1), mk("ground_truth/crack", 1);
    mk("ground_truth/scratch/000_mask.png", 0), mk("ground_truth/crack/000_mask.png", 0);
    assert_int_equal(pc_dataset_open(tmpl, 1, &ds), PC_ERR_NOT_FOUND);
    assert_non_null(strstr(pc_last_error(), "ground_truth/scratch/001_mask.png"));
    mk("ground_truth/scratch/001_mask.png", 0);
    assert_int_equal(pc_dataset_open(tmpl, 1, &ds), PC_OK);
    assert_int_equal(ds->n_train, 2);
    assert_non_null(strstr(ds->train_paths[0], "train/good/000.png"));
    assert_non_null(strstr(ds->train_paths[1], "train/good/001.png"));
    assert_int_equal(ds->n_types, 3);
    assert_string_equal(ds->type_names[0], "crack");
    assert_string_equal(ds->type_names[1], "good");
    assert_string_equal(ds->type_names[2], "scratch");
    assert_int_equal(ds->good_type, 1);
    assert_int_equal(ds->n_test, 4);
    assert_non_null(strstr(ds->test[0].path, "test/crack/000.png"));
    assert_non_null(strstr(ds->test[0].mask_path, "ground_truth/crack/000_mask.png"));
    assert_non_null(strstr(ds->test[1].path, "test/good/000.png"));
    assert_null(ds->test[1].mask_path);
    assert_non_null(strstr(ds->test[2].path, "test/scratch/000.png"));
    assert_non_null(strstr(ds->test[3].path, "test/scratch/001.PNG"));
    assert_non_null(strstr(ds->test[3].mask_path, "ground_truth/scratch/001_mask.png"));
    assert_int_equal(ds->test[3].type, 2);
    pc_dataset_free(ds);
    char p[256];
    snprintf(p, sizeof p, "%s/nope", tmpl);
    assert_int_equal(pc_dataset_open(p, 0, &ds), PC_ERR_NOT_FOUND);
    assert_non_null(strstr(pc_last_error(), "nope"));
    rmtree();
}

/* ---- geometry and regions, worked by hand ---- */

static void test_box_to_original(void **state) {
    (void)state;
    /* 900x900 -> Resize(256) 256x256 -> CenterCrop(224) at (16,16); scale 900/256 = 3.515625 */
    pc_geometry g = {900, 900, 256, 256, 16, 16, 224, 224, 224};
    int32_t a, b, c, d;
    assert_int_equal(pc_geometry_box_to_original(&g, 0, 0, 224, 224, &a, &b, &c, &d), PC_OK);
    /* 16*3.515625 = 56.25 -> 56; 240*3.515625 = 843.75 -> 844 */
    assert_int_equal(a, 56), assert_int_equal(b, 56), assert_int_equal(c, 844), assert_int_equal(d, 844);
    assert_int_equal(pc_geometry_box_to_original(&g, 10, 100, 20, 101, &a, &b, &c, &d), PC_OK);
    /* x: 26*3.515625 = 91.406 -> 91, 36*3.515625 = 126.5625 -> 127; y: 116*.. = 407.8125 -> 407,
     * 117*.. = 411.33 -> 412 */
    assert_int_equal(a, 91), assert_int_equal(b, 407), assert_int_equal(c, 127), assert_int_equal(d, 412);
    /* 400 wide x 300 high -> Resize(256): 341 x 256 -> crop 224 at left round(58.5) = 58, top 16.
     * sx = 400/341, sy = 300/256. Pixel (0,0): x 58*1.17302 = 68.04 -> 68, 59*1.17302 = 69.21 -> 70;
     * y 16*1.171875 = 18.75 -> 18, 17*1.171875 = 19.92 -> 20. */
    pc_geometry g2 = {400, 300, 341, 256, 58, 16, 224, 224, 224};
    assert_int_equal(pc_geometry_box_to_original(&g2, 0, 0, 1, 1, &a, &b, &c, &d), PC_OK);
    assert_int_equal(a, 68), assert_int_equal(b, 18), assert_int_equal(c, 70), assert_int_equal(d, 20);
    /* exact multiples stay exact: 2x upscale, no crop: [3,5) -> [6,10) */
    pc_geometry g3 = {20, 20, 10, 10, 0, 0, 10, 10, 10};
    assert_int_equal(pc_geometry_box_to_original(&g3, 3, 3, 5, 5, &a, &b, &c, &d), PC_OK);
    assert_int_equal(a, 6), assert_int_equal(b, 6), assert_int_equal(c, 10), assert_int_equal(d, 10);
    assert_int_equal(pc_geometry_box_to_original(&g3, 5, 3, 4, 5, &a, &b, &c, &d), PC_ERR_INVALID_ARGUMENT);
}

static void test_regions_from_map(void **state) {
    (void)state;
    /* 6x6, threshold 0.5: A = {(1,1),(2,2)} (diagonal: one 8-connected region) peak 0.7 at (2,2);
     * B = {(4,4),(5,4),(4,5)} peak 0.9 at (5,4); (0,5) = 0.5 is not above the threshold. */
    float m[36] = {0};
    m[1 * 6 + 1] = 0.6f, m[2 * 6 + 2] = 0.7f;
    m[4 * 6 + 4] = 0.8f, m[4 * 6 + 5] = 0.9f, m[5 * 6 + 4] = 0.55f;
    m[5 * 6 + 0] = 0.5f;
    pc_region r[4];
    int32_t n;
    assert_int_equal(pc_regions_from_map(r, 4, &n, m, 6, 0.5, NULL), PC_OK);
    assert_int_equal(n, 2);
    assert_true(r[0].peak == 0.9f); /* sorted by decreasing peak */
    assert_int_equal(r[0].area, 3);
    assert_int_equal(r[0].x0, 4), assert_int_equal(r[0].y0, 4), assert_int_equal(r[0].x1, 6), assert_int_equal(r[0].y1, 6);
    assert_int_equal(r[0].peak_x, 5), assert_int_equal(r[0].peak_y, 4);
    assert_true(r[1].peak == 0.7f);
    assert_int_equal(r[1].area, 2);
    assert_int_equal(r[1].x0, 1), assert_int_equal(r[1].y0, 1), assert_int_equal(r[1].x1, 3), assert_int_equal(r[1].y1, 3);
    /* max 1: only the strongest, n still 2; with a 2x geometry the box doubles */
    pc_geometry g = {12, 12, 6, 6, 0, 0, 6, 6, 6};
    assert_int_equal(pc_regions_from_map(r, 1, &n, m, 6, 0.5, &g), PC_OK);
    assert_int_equal(n, 2);
    assert_int_equal(r[0].x0, 8), assert_int_equal(r[0].y0, 8), assert_int_equal(r[0].x1, 12), assert_int_equal(r[0].y1, 12);
    assert_int_equal(pc_regions_from_map(NULL, 0, &n, m, 6, 0.95, NULL), PC_OK);
    assert_int_equal(n, 0);
    assert_int_equal(pc_regions_from_map(r, 4, &n, m, 6, NAN, NULL), PC_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aggregate_vs_sklearn),
        cmocka_unit_test(test_aggregate_sizes),
        cmocka_unit_test(test_mask_for_map),
        cmocka_unit_test(test_walker),
        cmocka_unit_test(test_box_to_original),
        cmocka_unit_test(test_regions_from_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
