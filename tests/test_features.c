/*
 * test_features.c - patch features (src/patch_features.c) against PyTorch's Unfold / interpolate /
 * adaptive_avg_pool1d chain (tests/ref/gen_algos.py, the reference's _embed), and fast vs the plain
 * reference on the same inputs. Tolerance: max |c - torch| / max |torch| <= 1e-4 (METHOD.md §3).
 */
#include "patch_features.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

static void run_case(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "algos/feat_%s_cfg.npy", name);
    if (!ref_exists(rel)) TEST_SKIP_MSG("reference %s missing (run make refs)", rel);
    npy_array cfg, ref, acts[PC_FEATURES_MAX_LAYERS];
    assert_int_equal(npy_load(rel, &cfg), 0);
    const int32_t *c = cfg.data;
    const int32_t nl = c[0], p = c[1], pre = c[2], dim = c[3];
    pc_layer_shape shapes[PC_FEATURES_MAX_LAYERS];
    const float *ptrs[PC_FEATURES_MAX_LAYERS];
    for (int l = 0; l < nl; l++) {
        shapes[l] = (pc_layer_shape){c[4 + 3 * l], c[5 + 3 * l], c[6 + 3 * l]};
        snprintf(rel, sizeof rel, "algos/feat_%s_act%d.npy", name, l);
        assert_int_equal(npy_load(rel, &acts[l]), 0);
        assert_int_equal(acts[l].count, (int64_t)shapes[l].channels * shapes[l].height * shapes[l].width);
        ptrs[l] = acts[l].data;
    }
    snprintf(rel, sizeof rel, "algos/feat_%s_out.npy", name);
    assert_int_equal(npy_load(rel, &ref), 0);

    pc_features_plan *plan = NULL;
    assert_int_equal(pc_features_plan_create(&plan, shapes, nl, p, pre, dim), PC_OK);
    int32_t gh, gw, d;
    pc_features_plan_grid(plan, &gh, &gw, &d);
    assert_int_equal(d, dim);
    assert_int_equal((int64_t)gh * gw * dim, ref.count);
    void *ws = pc_malloc(pc_features_workspace_size(plan));
    float *fast = pc_malloc(sizeof(float) * (size_t)ref.count);
    float *naive = pc_malloc(sizeof(float) * (size_t)ref.count);
    assert_non_null(ws);
    /* poison the workspace: the result must not depend on its previous contents */
    memset(ws, 0xff, pc_features_workspace_size(plan));
    pc_features_compute(fast, ptrs, plan, ws);
    pc_features_compute(fast, ptrs, plan, ws); /* reuse of a dirty workspace */
    assert_int_equal(pc_features_reference(naive, ptrs, shapes, nl, p, pre, dim), PC_OK);
    double e_fast = max_rel_err(fast, ref.data, (size_t)ref.count);
    double e_naive = max_rel_err(naive, ref.data, (size_t)ref.count);
    double e_fn = max_rel_err(fast, naive, (size_t)ref.count);
    print_message("features %-5s grid %dx%d D %d: fast vs torch %.2e, naive vs torch %.2e, fast vs naive %.2e\n",
                  name, gh, gw, dim, e_fast, e_naive, e_fn);
    assert_true(e_fast <= 1e-4);
    assert_true(e_naive <= 1e-4);
    assert_true(e_fn <= 1e-4);
    pc_free(ws), pc_free(fast), pc_free(naive);
    pc_features_plan_free(plan);
    for (int l = 0; l < nl; l++) npy_free(&acts[l]);
    npy_free(&cfg), npy_free(&ref);
}

static void test_r18(void **s) { (void)s; run_case("r18"); }
static void test_wrn(void **s) { (void)s; run_case("wrn"); }
static void test_odd(void **s) { (void)s; run_case("odd"); }
static void test_odd5(void **s) { (void)s; run_case("odd5"); }
static void test_p1(void **s) { (void)s; run_case("p1"); }
static void test_p2(void **s) { (void)s; run_case("p2"); }

/* Worked by hand: one layer 1x1x1 of value 6, p = 3: the unfold is [0 0 0 0 6 0 0 0 0]; D_pre = 2
 * bins [0,5) and [4,9) both contain the 6 -> 6/5 each; D = 1 -> 6/5. */
static void test_by_hand(void **s) {
    (void)s;
    pc_layer_shape sh = {1, 1, 1};
    float act = 6.f, out = 0.f;
    const float *a = &act;
    pc_features_plan *plan;
    assert_int_equal(pc_features_plan_create(&plan, &sh, 1, 3, 2, 1), PC_OK);
    void *ws = pc_malloc(pc_features_workspace_size(plan));
    pc_features_compute(&out, &a, plan, ws);
    assert_float_equal(out, 6.f / 5.f, 1e-6);
    pc_free(ws);
    pc_features_plan_free(plan);
}

static void test_bad_args(void **s) {
    (void)s;
    pc_layer_shape sh[2] = {{4, 2, 2}, {4, 0, 2}};
    pc_features_plan *plan = (pc_features_plan *)1;
    assert_int_equal(pc_features_plan_create(&plan, sh, 2, 3, 8, 8), PC_ERR_INVALID_ARGUMENT);
    assert_null(plan);
    assert_int_equal(pc_features_plan_create(&plan, sh, 0, 3, 8, 8), PC_ERR_INVALID_ARGUMENT);
    /* an even patch of 4 pads by 1: a 1x1 layer gives an empty grid */
    sh[1].height = 1, sh[1].width = 1;
    assert_int_equal(pc_features_plan_create(&plan, sh, 2, 4, 8, 8), PC_ERR_SHAPE);
    assert_int_equal(pc_features_plan_create(&plan, sh, 2, 3, 0, 8), PC_ERR_INVALID_ARGUMENT);
    pc_features_plan_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_by_hand), cmocka_unit_test(test_bad_args), cmocka_unit_test(test_odd),
        cmocka_unit_test(test_odd5),    cmocka_unit_test(test_p1),       cmocka_unit_test(test_p2),
        cmocka_unit_test(test_r18),     cmocka_unit_test(test_wrn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
