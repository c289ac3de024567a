/*
 * test_model_knn.c - the model's exact pruned nearest-neighbour search (pc_knn_index, used for banks of
 * PC_KNN_MIN_BANK entries and more with k <= 16) against the brute-force search (pc_knn_search, itself
 * checked against faiss IndexFlatL2 in test_knn) at the model level: a model fitted on 6 real bottle
 * images with the shared ResNet-18 and a 4,200-entry greedy-coreset bank (so the pruned path is
 * taken), then for real test images the patch scores of predict equal, bit for bit (memcmp), the mean
 * of the k brute-force distances of the same features against the same bank, for k = 1 and k = 3;
 * and a saved + loaded model (index rebuilt at load) predicts the same scores and maps bit for bit, with
 * each candidate filter of the index (PATCHCORE_KNN_FILTER=f32, bf16, bf16-emulated, and unset).
 * Skipped when ../shared is absent.
 */
#include "knn.h"
#include "model_internal.h"
#include "patchcore.h"
#include "scoring.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTRAIN 6
#define NTEST 3

static void check_k(int32_t k, const char *wpath, const char *dir) {
    char *train[NTRAIN];
    for (int i = 0; i < NTRAIN; i++) {
        train[i] = malloc(8192);
        assert_non_null(train[i]);
        snprintf(train[i], 8192, "%s/train/good/%03d.png", dir, 10 * i);
    }
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = wpath;
    opt.coreset_size = 4200;
    opt.k = k;
    pc_model *m = NULL;
    assert_int_equal(pc_model_fit(&opt, (const char *const *)train, NTRAIN, &m), PC_OK);
    int64_t n;
    int32_t dim;
    const float *bank = pc_model_bank(m, &n, &dim);
    assert_true(n == 4200 && n >= PC_KNN_MIN_BANK);
    pc_model_info info;
    assert_int_equal(pc_model_get_info(m, &info), PC_OK);
    const int64_t hw = (int64_t)info.grid_h * info.grid_w;
    float *norms = malloc((size_t)n * sizeof *norms), *feats = malloc((size_t)(hw * dim) * sizeof *feats);
    float *ps = malloc((size_t)hw * sizeof *ps), *dist = malloc((size_t)(hw * k) * sizeof *dist);
    float *bs = malloc((size_t)hw * sizeof *bs);
    int64_t *idx = malloc((size_t)(hw * k) * sizeof *idx);
    size_t wsb = pc_knn_workspace_size(hw);
    void *ws = aligned_alloc(64, (wsb + 63) / 64 * 64);
    assert_true(norms && feats && ps && dist && bs && idx && ws);
    pc_knn_norms(norms, bank, n, dim);

    static const char *test_rel[NTEST] = {"test/broken_large/000.png", "test/good/000.png", "test/contamination/000.png"};
    pc_image img[NTEST];
    float scores[NTEST], *maps = malloc((size_t)NTEST * info.crop * info.crop * sizeof *maps);
    assert_non_null(maps);
    for (int t = 0; t < NTEST; t++) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, test_rel[t]);
        assert_int_equal(pc_image_load(p, &img[t]), PC_OK);
        assert_int_equal(pc_model_patch_outputs(m, &img[t], feats, ps), PC_OK);
        assert_int_equal(pc_knn_search(dist, idx, feats, hw, bank, norms, n, dim, k, ws, wsb), PC_OK);
        pc_patch_scores(bs, dist, hw, k);
        int differ = 0;
        for (int64_t i = 0; i < hw; i++) differ += memcmp(&ps[i], &bs[i], sizeof(float)) != 0;
        print_message("k=%d %s: %d of %lld patch scores differ from brute force\n", (int)k, test_rel[t], differ,
                      (long long)hw);
        assert_int_equal(differ, 0);
        pc_prediction pr;
        assert_int_equal(pc_model_predict(m, &img[t], &pr, maps + (size_t)t * info.crop * info.crop, NULL), PC_OK);
        scores[t] = pr.score;
    }
    /* the index is rebuilt at load: same results */
    char mpath[] = "/tmp/pc_model_knn_XXXXXX";
    int fd = mkstemp(mpath);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_model_save(m, mpath), PC_OK);
    float *map2 = malloc((size_t)info.crop * info.crop * sizeof *map2);
    assert_non_null(map2);
    /* each candidate filter of the index (PATCHCORE_KNN_FILTER at load): the same scores and maps */
    static const char *filters[] = {"f32", "bf16", "bf16-emulated", NULL /* unset: auto */};
    const char *old = getenv("PATCHCORE_KNN_FILTER");
    char *saved = old ? strdup(old) : NULL;
    for (size_t f = 0; f < sizeof filters / sizeof *filters; f++) {
        if (filters[f]) setenv("PATCHCORE_KNN_FILTER", filters[f], 1);
        else if (saved) setenv("PATCHCORE_KNN_FILTER", saved, 1);
        else unsetenv("PATCHCORE_KNN_FILTER");
        pc_model *m2 = NULL;
        assert_int_equal(pc_model_load(mpath, &m2), PC_OK);
        for (int t = 0; t < NTEST; t++) {
            pc_prediction pr;
            assert_int_equal(pc_model_predict(m2, &img[t], &pr, map2, NULL), PC_OK);
            assert_memory_equal(&pr.score, &scores[t], sizeof(float));
            assert_memory_equal(map2, maps + (size_t)t * info.crop * info.crop, (size_t)info.crop * info.crop * sizeof(float));
        }
        print_message("k=%d loaded with PATCHCORE_KNN_FILTER=%s: scores and maps identical\n", (int)k,
                      filters[f] ? filters[f] : (saved ? saved : "(unset)"));
        pc_model_free(m2);
    }
    free(saved);
    unlink(mpath);
    for (int t = 0; t < NTEST; t++) pc_image_free(&img[t]);
    free(map2), free(maps), free(norms), free(feats), free(ps), free(dist), free(bs), free(idx), free(ws);
    for (int i = 0; i < NTRAIN; i++) free(train[i]);
    pc_model_free(m);
}

static void test_pruned_equals_brute(void **state) {
    (void)state;
    char wpath[4096], dir[4096];
    if (!shared_path(wpath, sizeof wpath, "weights/resnet18_in1k_to_layer3.pth"))
        TEST_SKIP_MSG("../shared absent: no ResNet-18 weights");
    if (!shared_path(dir, sizeof dir, "data/mvtec_ad/bottle")) TEST_SKIP_MSG("../shared absent: no bottle");
    check_k(1, wpath, dir);
    check_k(3, wpath, dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_pruned_equals_brute)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
