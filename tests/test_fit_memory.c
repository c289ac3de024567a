/*
 * test_fit_memory.c - fit under a memory budget (pc_fit_options.max_memory, issue 7): the features go
 * to a temporary file and the coreset runs on their projection. Uses five real bottle training images
 * with the shared ResNet-18 at the default 224 crop (skipped when ../shared is absent).
 *  - the streamed fit is bit-identical to the unlimited one (memcmp of the coreset indices and of the
 *    whole bank) for the greedy, random and none samplers; the oracle for the unlimited fit itself is
 *    test_pipeline (PyTorch). Independently of that, a few bank rows are checked against the features
 *    pc_model_patch_outputs computes for the training image and patch their index names (relative
 *    error 1e-5: batch 8 in fit vs batch 1 there), so rows read back from the file land in the right
 *    slots;
 *  - with TMPDIR unusable a budgeted fit fails naming it (so it did stream) while an unlimited one and
 *    a sampler-none one (never streamed) succeed; the temporary folder is empty after every fit;
 *  - a budget that is too small fails with PC_ERR_TOO_LARGE before the first image (no "features"
 *    progress) and names a sufficient budget: a fit with exactly that budget succeeds, one MiB less
 *    fails; a negative budget is an invalid argument;
 *  - a failing write to the temporary file (PC_FAULT_WRITE) fails with PC_ERR_IO naming the file.
 * Peak RSS is not asserted here: bench/fit_large.sh measures it.
 */
#include "model_internal.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NTRAIN 5

static char weights[4096], *train[NTRAIN], tmpdir[4096];

static int setup(void **state) {
    (void)state;
    char dir[4096];
    if (!shared_path(weights, sizeof weights, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(dir, sizeof dir, "data/mvtec_ad/bottle/train/good"))
        return 0;
    for (int i = 0; i < NTRAIN; i++) {
        train[i] = malloc(8192);
        if (!train[i]) return -1;
        snprintf(train[i], 8192, "%s/%03d.png", dir, i);
    }
    const char *b = getenv("PC_BUILD_DIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/fit_memory_tmp", b && *b ? b : "/tmp");
    char cmd[8300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", tmpdir, tmpdir);
    if (system(cmd) != 0) return -1;
    setenv("TMPDIR", tmpdir, 1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < NTRAIN; i++) free(train[i]);
    if (tmpdir[0]) rmdir(tmpdir);
    return 0;
}

static void need_shared(void) {
    if (!train[0]) TEST_SKIP_MSG("../shared absent: no ResNet-18 weights or bottle images");
}

/* Entries in the temporary folder (the fit's file is unlinked at once: always 0). */
static int tmp_entries(void) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

typedef struct progress_log {
    int features, coreset;
} progress_log;

static int log_progress(void *user, const char *stage, int64_t done, int64_t total) {
    (void)done, (void)total;
    progress_log *l = user;
    if (!strcmp(stage, "features")) l->features++;
    if (!strcmp(stage, "coreset")) l->coreset++;
    return 0;
}

static pc_status fit(pc_sampler sampler, int64_t budget, progress_log *log, pc_model **m) {
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = weights;
    opt.sampler = sampler;
    opt.max_memory = budget;
    if (log) opt.progress = log_progress, opt.progress_user = log;
    return pc_model_fit(&opt, (const char *const *)train, NTRAIN, m);
}

/* The two models have the same coreset indices and bank, bit for bit. */
static void assert_same_model(const pc_model *a, const pc_model *b) {
    int64_t na, nb, ba, bb;
    int32_t da, db;
    const int64_t *ia = pc_model_coreset_indices(a, &na), *ib = pc_model_coreset_indices(b, &nb);
    const float *fa = pc_model_bank(a, &ba, &da), *fb = pc_model_bank(b, &bb, &db);
    assert_true(na > 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ia, ib, (size_t)na * sizeof *ia);
    assert_int_equal(ba, bb);
    assert_int_equal(da, db);
    assert_memory_equal(fa, fb, (size_t)ba * (size_t)da * sizeof *fa);
}

/* Bank row k against the features of training image idx[k] / HW at patch idx[k] % HW. */
static void check_rows_against_predict(pc_model *m, int64_t step) {
    pc_model_info info;
    assert_int_equal(pc_model_get_info(m, &info), PC_OK);
    const int64_t hw = (int64_t)info.grid_h * info.grid_w, D = info.dim;
    int64_t n, nbank;
    int32_t dim;
    const int64_t *idx = pc_model_coreset_indices(m, &n);
    const float *bank = pc_model_bank(m, &nbank, &dim);
    float *feats = malloc((size_t)(hw * D) * sizeof *feats);
    assert_non_null(feats);
    int checked = 0;
    for (int img = 0; img < NTRAIN; img++) {
        pc_image im = {0};
        assert_int_equal(pc_image_load(train[img], &im), PC_OK);
        assert_int_equal(pc_model_patch_outputs(m, &im, feats, NULL), PC_OK);
        for (int64_t k = 0; k < n; k += step) {
            if (idx[k] / hw != img) continue;
            double err = max_rel_err(bank + (size_t)k * D, feats + (size_t)(idx[k] % hw) * D, (size_t)D);
            if (err > 1e-5) fail_msg("bank row %lld (patch %lld): relative error %g", (long long)k, (long long)idx[k], err);
            checked++;
        }
        pc_image_free(&im);
    }
    free(feats);
    assert_true(checked >= 5);
}

static void test_streamed_identical(void **state) {
    (void)state;
    need_shared();
    static const pc_sampler samplers[] = {PC_SAMPLER_APPROX_GREEDY, PC_SAMPLER_RANDOM, PC_SAMPLER_NONE};
    static const char *names[] = {"approx", "random", "none"};
    for (int s = 0; s < 3; s++) {
        pc_model *a = NULL, *b = NULL;
        progress_log log = {0};
        assert_int_equal(fit(samplers[s], 0, NULL, &a), PC_OK);
        assert_int_equal(fit(samplers[s], (int64_t)4 << 30, &log, &b), PC_OK);
        assert_same_model(a, b);
        assert_true(log.features > 0); /* the stages are unchanged (none has no coreset stage) */
        assert_true(samplers[s] == PC_SAMPLER_NONE || log.coreset > 0);
        assert_int_equal(tmp_entries(), 0);
        if (samplers[s] != PC_SAMPLER_NONE) check_rows_against_predict(b, samplers[s] == PC_SAMPLER_RANDOM ? 97 : 53);
        int64_t n;
        pc_model_coreset_indices(b, &n);
        print_message("  %-7s streamed fit identical to the in-memory one (%lld bank rows)\n", names[s], (long long)n);
        pc_model_free(a);
        pc_model_free(b);
    }
}

static void test_budget_streams(void **state) {
    (void)state;
    need_shared();
    pc_model *m = NULL;
    setenv("TMPDIR", "/nonexistent/patchcore-test", 1);
    /* with a budget the features go to TMPDIR: an unusable one fails, naming it */
    pc_status st = fit(PC_SAMPLER_APPROX_GREEDY, (int64_t)4 << 30, NULL, &m);
    assert_int_equal(st, PC_ERR_IO);
    assert_null(m);
    assert_non_null(strstr(pc_last_error(), "/nonexistent/patchcore-test"));
    assert_non_null(strstr(pc_last_error(), "TMPDIR"));
    /* without one, or with sampler none (the features are the bank), TMPDIR is not used */
    assert_int_equal(fit(PC_SAMPLER_APPROX_GREEDY, 0, NULL, &m), PC_OK);
    pc_model_free(m);
    assert_int_equal(fit(PC_SAMPLER_NONE, (int64_t)4 << 30, NULL, &m), PC_OK);
    pc_model_free(m);
    setenv("TMPDIR", tmpdir, 1);
}

static void test_budget_too_small(void **state) {
    (void)state;
    need_shared();
    pc_fit_options o;
    pc_fit_options_init(&o);
    assert_int_equal(o.max_memory, 0); /* unlimited by default */
    pc_model *neg = NULL;
    assert_int_equal(fit(PC_SAMPLER_APPROX_GREEDY, -1, NULL, &neg), PC_ERR_INVALID_ARGUMENT);
    assert_null(neg);
    static const pc_sampler samplers[] = {PC_SAMPLER_APPROX_GREEDY, PC_SAMPLER_NONE};
    for (int s = 0; s < 2; s++) {
        pc_model *m = NULL;
        progress_log log = {0};
        pc_status st = fit(samplers[s], 1 << 20, &log, &m);
        assert_int_equal(st, PC_ERR_TOO_LARGE);
        assert_null(m);
        assert_int_equal(log.features, 0); /* failed before the first image */
        const char *e = pc_last_error(), *at = strstr(e, "at least ");
        print_message("  %s\n", e);
        assert_non_null(strstr(e, "memory budget of 1 MiB"));
        assert_non_null(at);
        long need = atol(at + 9);
        assert_true(need > 1);
        /* the advice is enough, and one MiB less is not */
        st = fit(samplers[s], ((int64_t)need - 1) << 20, NULL, &m);
        assert_int_equal(st, PC_ERR_TOO_LARGE);
        st = fit(samplers[s], (int64_t)need << 20, NULL, &m);
        assert_int_equal(st, PC_OK);
        pc_model_free(m);
        assert_int_equal(tmp_entries(), 0);
    }
}

static void test_temp_write_failure(void **state) {
    (void)state;
    need_shared();
    pc_model *m = NULL;
    setenv("PC_FAULT_WRITE", "2", 1); /* the second image's rows fail to reach the disk */
    pc_status st = fit(PC_SAMPLER_APPROX_GREEDY, (int64_t)4 << 30, NULL, &m);
    unsetenv("PC_FAULT_WRITE");
    assert_int_equal(st, PC_ERR_IO);
    assert_null(m);
    const char *e = pc_last_error();
    print_message("  %s\n", e);
    char prefix[4200];
    snprintf(prefix, sizeof prefix, "temporary file %s/patchcore-fit-", tmpdir);
    assert_non_null(strstr(e, prefix));
    assert_non_null(strstr(e, "No space left on device"));
    assert_non_null(strstr(e, "TMPDIR"));
    assert_int_equal(tmp_entries(), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_identical),
        cmocka_unit_test(test_budget_streams),
        cmocka_unit_test(test_budget_too_small),
        cmocka_unit_test(test_temp_write_failure),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
