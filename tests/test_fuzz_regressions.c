/*
 * test_fuzz_regressions.c - replays every fuzz crasher (fuzz/regressions/<target>/...) and every seed
 * (fuzz/corpus/<target>/...) through the libFuzzer harnesses themselves (fuzz/fuzz_<target>.c, included
 * here under distinct names). A harness aborts when its invariant breaks (an error without the input's
 * name, a handle returned with an error, a tensor outside the buffer, ...); ASan/UBSan catch the rest
 * when this runs under `make asan-test`. The seeds must exist (a missing corpus is a failure).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLVMFuzzerTestOneInput fuzz_image_one
#include "../fuzz/fuzz_image.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_weights_one
#include "../fuzz/fuzz_weights.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_modelfile_one
#include "../fuzz/fuzz_modelfile.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_serve_one
#include "../fuzz/fuzz_serve.c"
#undef LLVMFuzzerTestOneInput

#include "testutil.h"

typedef int (*harness_fn)(const uint8_t *, size_t);

/* Feed every regular file of PC_SOURCE_DIR/fuzz/<kind>/<target> to fn; returns the count. */
static int replay_dir(const char *kind, const char *target, harness_fn fn) {
    const char *src = getenv("PC_SOURCE_DIR");
    assert_non_null(src);
    char dir[4096], path[8192];
    snprintf(dir, sizeof dir, "%s/fuzz/%s/%s", src, kind, target);
    DIR *d = opendir(dir);
    if (d == NULL) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        uint8_t *buf = NULL;
        size_t len = 0;
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        long sz = ftell(f);
        assert_true(sz >= 0);
        rewind(f);
        len = (size_t)sz;
        buf = malloc(len ? len : 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, len, f), len);
        fclose(f);
        fn(buf, len);
        /* Truncations of every seed too: each prefix must also fail cleanly or succeed. */
        for (size_t cut = len / 2; cut < len; cut += 1 + len / 16) fn(buf, cut);
        free(buf);
        n++;
    }
    closedir(d);
    return n;
}

static void run(const char *target, harness_fn fn) {
    int seeds = replay_dir("corpus", target, fn);
    int crashers = replay_dir("regressions", target, fn);
    print_message("%s: %d seeds, %d regressions replayed\n", target, seeds, crashers);
    assert_true(seeds > 0);
}

static void test_image(void **state) { (void)state; run("image", fuzz_image_one); }
static void test_weights(void **state) { (void)state; run("weights", fuzz_weights_one); }
static void test_modelfile(void **state) { (void)state; run("modelfile", fuzz_modelfile_one); }
static void test_serve(void **state) { (void)state; run("serve", fuzz_serve_one); }

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_modelfile),
        cmocka_unit_test(test_serve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
