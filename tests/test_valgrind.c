/*
 * test_valgrind.c - valgrind memcheck over `patchcore fit` (2 bottle images, 64 x 64) and `predict`
 * (2 bottle images, a tiny PNG and a non-image, with --maps): no invalid access, no use of
 * uninitialised memory, no definite leak (valgrind exits 99 on any of them). Skips when valgrind or
 * ../shared is absent. OpenMP's thread stacks show as "possibly lost"; those are not counted.
 */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static int run(const char *cmd) {
    int st = system(cmd);
    if (!WIFEXITED(st)) fail_msg("killed (status %d): %s", st, cmd);
    return WEXITSTATUS(st);
}

static void test_fit_predict_memcheck(void **state) {
    (void)state;
    const char *cli = getenv("PC_CLI"), *b = getenv("PC_BUILD_DIR"), *src = getenv("PC_SOURCE_DIR");
    char w[2048], i0[2048], i1[2048], t0[2048], t1[2048], cmd[16384];
#ifdef __SANITIZE_ADDRESS__
    TEST_SKIP_MSG("ASan build: valgrind cannot run a sanitized CLI (the plain build runs this)");
#endif
    if (system("valgrind --version >/dev/null 2>&1") != 0) TEST_SKIP_MSG("valgrind not installed");
    if (!cli || !b || !src || !shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(i0, sizeof i0, "data/mvtec_ad/bottle/train/good/000.png") ||
        !shared_path(i1, sizeof i1, "data/mvtec_ad/bottle/train/good/001.png") ||
        !shared_path(t0, sizeof t0, "data/mvtec_ad/bottle/test/broken_large/000.png") ||
        !shared_path(t1, sizeof t1, "data/mvtec_ad/bottle/test/good/000.png"))
        TEST_SKIP_MSG("../shared or the test environment absent");
    const char *vg = "OMP_NUM_THREADS=2 valgrind -q --error-exitcode=99 --leak-check=full "
                     "--errors-for-leak-kinds=definite --show-possibly-lost=no";
    snprintf(cmd, sizeof cmd, "rm -rf '%s/vg_tmp' && mkdir -p '%s/vg_tmp'", b, b);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s '%s' fit --weights '%s' --resize 64 --crop 64 --no-progress -q -o '%s/vg_tmp/m.pcm' '%s' '%s'",
             vg, cli, w, b, i0, i1);
    assert_int_equal(run(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s '%s' predict -m '%s/vg_tmp/m.pcm' --maps '%s/vg_tmp/maps' '%s' '%s' '%s/fuzz/corpus/image/rgb.png' "
             "'%s/fuzz/corpus/weights/small.safetensors'", vg, cli, b, b, t0, t1, src, src);
    assert_int_equal(run(cmd), 3); /* the .safetensors is not an image: partial, as expected (99 = memcheck error) */
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fit_predict_memcheck)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
