/*
 * test_faults.c - model-level fault injection through the CLI (each run its own process, since
 * PC_FAULT_ALLOC / PC_FAULT_WRITE are read per process): allocation failures during fit, save and
 * predict, disk-full while saving, and a batch with corrupt, empty and unsupported files. Every run
 * must exit with a CLI exit code (never a signal), print "patchcore: ..." on failure, and leave a
 * previous model at the output path byte-identical with no temporary file beside it.
 * The fit scans run twice: in memory, and with --max-memory (features streamed to a temporary file in
 * TMPDIR, which must be left empty whatever fails).
 * Uses real bottle images and ResNet-18 weights from ../shared at 64 x 64 (skips without them).
 */
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[2048], weights[2048], imgs[3][2048], test_imgs[2][2048];
static const char *cli;
static const char *fit_extra = ""; /* extra fit arguments (--max-memory for the streaming scans) */

static int setup(void **state) {
    (void)state;
    cli = getenv("PC_CLI");
    const char *b = getenv("PC_BUILD_DIR");
    char p[2048];
    if (!cli || !b || !shared_path(weights, sizeof weights, "weights/resnet18_in1k_to_layer3.safetensors")) return 0;
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "data/mvtec_ad/bottle/train/good/00%d.png", i);
        if (!shared_path(imgs[i], sizeof imgs[i], p)) return 0;
    }
    shared_path(test_imgs[0], sizeof test_imgs[0], "data/mvtec_ad/bottle/test/broken_large/000.png");
    shared_path(test_imgs[1], sizeof test_imgs[1], "data/mvtec_ad/bottle/test/good/000.png");
    snprintf(dir, sizeof dir, "%s/faults_tmp", b);
    snprintf(p, sizeof p, "rm -rf '%s' && mkdir -p '%s/out' '%s/batch' '%s/tmp'", dir, dir, dir, dir);
    return system(p) == 0 ? 0 : -1;
}

static void need_shared(void) {
    if (!dir[0]) TEST_SKIP_MSG("../shared weights/images or PC_CLI absent");
}

/* Run a shell command line; returns the exit code, failing the test on a signal. */
static int run(const char *cmd) {
    int st = system(cmd);
    if (!WIFEXITED(st) || WEXITSTATUS(st) >= 126) fail_msg("killed or not run (status %d): %s", st, cmd);
    return WEXITSTATUS(st);
}

static size_t slurp(const char *path, char **out) {
    FILE *f = fopen(path, "rb");
    *out = NULL;
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    *out = malloc((size_t)n + 1);
    assert_non_null(*out);
    assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
    (*out)[n] = 0;
    fclose(f);
    return (size_t)n;
}

/* Files in dir/out other than model.pcm, and in dir/tmp (TMPDIR): leftover temporary files. */
static int stray_files(void) {
    char p[2100];
    int n = 0;
    for (int k = 0; k < 2; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, k ? "tmp" : "out");
        DIR *d = opendir(p);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, "model.pcm")) n++;
        closedir(d);
    }
    return n;
}

static void fit_cmd(char *cmd, size_t size, const char *env) {
    snprintf(cmd, size,
             "%s TMPDIR='%s/tmp' OMP_NUM_THREADS=1 '%s' fit --weights '%s' --resize 64 --crop 64 --no-progress -q %s "
             "-o '%s/out/model.pcm' '%s' '%s' '%s' >'%s/stdout' 2>'%s/stderr'",
             env, dir, cli, weights, fit_extra, dir, imgs[0], imgs[1], imgs[2], dir, dir);
}

/* Fault at the n-th allocation / write, n growing geometrically until three runs in a row succeed. */
static void scan_fit(const char *var) {
    need_shared();
    char cmd[16384], env[64], path[2100], *prev, *now, *err;
    fit_cmd(cmd, sizeof cmd, "");
    assert_int_equal(run(cmd), 0);
    snprintf(path, sizeof path, "%s/out/model.pcm", dir);
    size_t prev_n = slurp(path, &prev);
    assert_true(prev_n > 0);
    int failures = 0, ok_in_row = 0;
    for (long n = 1; ok_in_row < 3 && n < 100000000; n = n < 8 ? n + 1 : n * 3 / 2) {
        snprintf(env, sizeof env, "%s=%ld", var, n);
        fit_cmd(cmd, sizeof cmd, env);
        int rc = run(cmd);
        char ep[2100];
        snprintf(ep, sizeof ep, "%s/stderr", dir);
        slurp(ep, &err);
        size_t now_n = slurp(path, &now);
        if (rc == 0 || rc == 3) { /* 3: an image failed to decode and was skipped; a model was still written */
            ok_in_row++;
            free(prev);
            prev = now, prev_n = now_n;
        } else {
            ok_in_row = 0, failures++;
            if (rc != 1) fail_msg("%s: exit %d", env, rc);
            if (!err || strncmp(err, "patchcore: ", 11) != 0) fail_msg("%s: no clear error: '%s'", env, err ? err : "");
            if (now_n != prev_n || memcmp(now, prev, prev_n) != 0) fail_msg("%s: previous model changed", env);
            free(now);
        }
        if (stray_files() != 0) fail_msg("%s: a temporary file was left beside the model", env);
        if (failures == 1 && rc) print_message("%s: %s", env, err);
        free(err);
    }
    print_message("%s: %d failing runs, all clean\n", var, failures);
    assert_true(failures > 0); /* the injection did reach fit */
    free(prev);
}

static void test_fit_alloc_faults(void **state) { (void)state; scan_fit("PC_FAULT_ALLOC"); }
static void test_fit_write_faults(void **state) { (void)state; scan_fit("PC_FAULT_WRITE"); }
static void test_fit_budget_alloc_faults(void **state) {
    (void)state;
    fit_extra = "--max-memory 1G";
    scan_fit("PC_FAULT_ALLOC");
    fit_extra = "";
}
static void test_fit_budget_write_faults(void **state) { /* the temporary feature file's writes, then save's */
    (void)state;
    fit_extra = "--max-memory 1G";
    scan_fit("PC_FAULT_WRITE");
    fit_extra = "";
}

static void test_predict_alloc_faults(void **state) {
    (void)state;
    need_shared();
    char cmd[16384], ep[2100], *err;
    fit_cmd(cmd, sizeof cmd, "");
    assert_int_equal(run(cmd), 0);
    snprintf(ep, sizeof ep, "%s/stderr", dir);
    int failures = 0, ok_in_row = 0;
    for (long n = 1; ok_in_row < 3 && n < 100000000; n = n < 8 ? n + 1 : n * 3 / 2) {
        snprintf(cmd, sizeof cmd,
                 "PC_FAULT_ALLOC=%ld OMP_NUM_THREADS=1 '%s' predict -m '%s/out/model.pcm' '%s' '%s' >'%s/stdout' 2>'%s'",
                 n, cli, dir, test_imgs[0], test_imgs[1], dir, ep);
        int rc = run(cmd);
        if (rc == 0) {
            ok_in_row++;
            continue;
        }
        ok_in_row = 0, failures++;
        if (rc != 1 && rc != 3) fail_msg("PC_FAULT_ALLOC=%ld: exit %d", n, rc);
        slurp(ep, &err);
        if (!err || strncmp(err, "patchcore: ", 11) != 0) fail_msg("PC_FAULT_ALLOC=%ld: no clear error", n);
        free(err);
    }
    print_message("predict: %d failing runs, all clean\n", failures);
    assert_true(failures > 0);
}

/* A batch holding a good image, an empty file, a truncated PNG, text named .jpg and a BMP: the good
 * one is scored, each other is reported with its path, the exit code is 3. */
static void test_predict_batch_partial(void **state) {
    (void)state;
    need_shared();
    char cmd[16384], p[2200], *out, *err, *png;
    fit_cmd(cmd, sizeof cmd, "");
    assert_int_equal(run(cmd), 0);
    size_t n = slurp(test_imgs[1], &png);
    assert_true(n > 1000);
    const struct { const char *name; size_t len; const char *data; } files[] = {
        {"a_good.png", n, png}, {"b_empty.png", 0, ""}, {"c_truncated.png", 600, png},
        {"d_text.jpg", 12, "not a jpeg\n"}, {"e_bitmap.bmp", 30, "BM\x1e\0\0\0\0\0\0\0\x1a\0\0\0\x0c\0\0\0\x01\0\x01\0\x01\0\x18\0\0\0\0"}};
    for (size_t i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/batch/%s", dir, files[i].name);
        FILE *f = fopen(p, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(files[i].data, 1, files[i].len, f), files[i].len);
        fclose(f);
    }
    free(png);
    snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 '%s' predict -m '%s/out/model.pcm' '%s/batch' >'%s/stdout' 2>'%s/stderr'",
             cli, dir, dir, dir, dir);
    assert_int_equal(run(cmd), 3);
    snprintf(p, sizeof p, "%s/stdout", dir);
    slurp(p, &out);
    snprintf(p, sizeof p, "%s/stderr", dir);
    slurp(p, &err);
    print_message("%s", err);
    assert_non_null(strstr(out, "a_good.png"));
    for (size_t i = 1; i < 5; i++) {
        assert_non_null(strstr(err, files[i].name));
        assert_null(strstr(out, files[i].name));
    }
    free(out);
    free(err);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fit_alloc_faults),
        cmocka_unit_test(test_fit_write_faults),
        cmocka_unit_test(test_fit_budget_alloc_faults),
        cmocka_unit_test(test_fit_budget_write_faults),
        cmocka_unit_test(test_predict_alloc_faults),
        cmocka_unit_test(test_predict_batch_partial),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
