/*
 * test_model_threads.c - pc_model_predict from several threads at once on one loaded model (issue 4:
 * "predict safe to call from several threads on one loaded model"). A model is fitted on six
 * real bottle images with the shared ResNet-18 into a 4,200-entry bank (so the pruned kNN index is used;
 * skipped when ../shared is absent), saved and loaded;
 * the test images are predicted serially, then NTHREADS pthreads predict all of them concurrently, in
 * different orders, for several rounds. Scores and maps must be bit-identical (memcmp) to the serial
 * ones. Also run under ThreadSanitizer by `make tsan-test` (see the Makefile).
 * No allocation per predict once the pool is warm: in the plain build this file interposes
 * posix_memalign (what pc_malloc calls) with a counter; a serial pc_model_predict on a decoded image
 * of a size seen before makes no allocation at all (the preprocessing tables and buffers live in the
 * predict context), while a standalone pc_preprocess of the same image does allocate (so the counter
 * is live). pc_model_predict_file also allocates while decoding the image.
 */
#include "patchcore.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define PC_COUNT_ALLOCS 1
#include <malloc.h>
static long n_memalign;
int posix_memalign(void **p, size_t align, size_t size) {
    __atomic_add_fetch(&n_memalign, 1, __ATOMIC_RELAXED);
    void *q = memalign(align, size);
    if (!q) return 12; /* ENOMEM */
    *p = q;
    return 0;
}
#endif

#define NTHREADS 4
#define NTEST 4
#define ROUNDS 3

typedef struct worker {
    pc_model *model;
    const pc_image *images; /* NTEST */
    const float *ref_scores;
    const float *ref_maps;  /* NTEST x S x S */
    int S, id, failures;
    pc_status status;
} worker;

static void *run_worker(void *arg) {
    worker *w = arg;
    size_t SS = (size_t)w->S * (size_t)w->S;
    float *map = malloc(SS * sizeof *map);
    if (!map) { w->failures++; return NULL; }
    for (int r = 0; r < ROUNDS; r++) {
        for (int j = 0; j < NTEST; j++) {
            int t = (j + w->id + r) % NTEST; /* each thread walks the images in its own order */
            pc_prediction pr;
            pc_status st = pc_model_predict(w->model, &w->images[t], &pr, map, NULL);
            if (st != PC_OK) { w->status = st; w->failures++; continue; }
            if (memcmp(&pr.score, &w->ref_scores[t], sizeof(float)) != 0) w->failures++;
            if (memcmp(map, w->ref_maps + (size_t)t * SS, SS * sizeof *map) != 0) w->failures++;
        }
    }
    free(map);
    return NULL;
}

static void test_concurrent_predict(void **state) {
    (void)state;
    char wpath[4096], dir[4096];
    if (!shared_path(wpath, sizeof wpath, "weights/resnet18_in1k_to_layer3.safetensors"))
        TEST_SKIP_MSG("../shared absent: no ResNet-18 weights");
    if (!shared_path(dir, sizeof dir, "data/mvtec_ad/bottle")) TEST_SKIP_MSG("../shared absent: no bottle");

    /* 6 images, a 4,200-entry bank: the pruned kNN index is in use (PC_KNN_MIN_BANK) */
    static const char *train_rel[] = {"train/good/000.png", "train/good/001.png", "train/good/002.png",
                                      "train/good/003.png", "train/good/004.png", "train/good/005.png"};
    static const char *test_rel[NTEST] = {"test/broken_large/000.png", "test/good/000.png",
                                          "test/contamination/000.png", "test/broken_small/000.png"};
    char *train[6];
    for (int i = 0; i < 6; i++) {
        train[i] = malloc(8192);
        assert_non_null(train[i]);
        snprintf(train[i], 8192, "%s/%s", dir, train_rel[i]);
    }
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = wpath;
    opt.coreset_size = 4200;
    pc_model *fitted = NULL;
    pc_status st = pc_model_fit(&opt, (const char *const *)train, 6, &fitted);
    assert_int_equal(st, PC_OK);
    char mpath[] = "/tmp/pc_threads_XXXXXX";
    int fd = mkstemp(mpath);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(pc_model_save(fitted, mpath), PC_OK);
    pc_model_free(fitted);
    pc_model *m = NULL;
    assert_int_equal(pc_model_load(mpath, &m), PC_OK);
    unlink(mpath);

    pc_model_info info;
    assert_int_equal(pc_model_get_info(m, &info), PC_OK);
    int S = info.crop;
    size_t SS = (size_t)S * (size_t)S;
    pc_image images[NTEST];
    float scores[NTEST];
    float *maps = malloc(NTEST * SS * sizeof *maps);
    assert_non_null(maps);
    for (int t = 0; t < NTEST; t++) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, test_rel[t]);
        assert_int_equal(pc_image_load(p, &images[t]), PC_OK);
        pc_prediction pr;
        assert_int_equal(pc_model_predict(m, &images[t], &pr, maps + (size_t)t * SS, NULL), PC_OK);
        scores[t] = pr.score;
    }
    /* The oracle is the serial run; make sure the images really differ so a stale buffer would show. */
    assert_true(scores[0] != scores[1]);

    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){m, images, scores, maps, S, i, 0, PC_OK};
        assert_int_equal(pthread_create(&th[i], NULL, run_worker, &w[i]), 0);
    }
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        if (w[i].failures) print_message("thread %d: %d mismatches/failures (status %d)\n", i, w[i].failures, (int)w[i].status);
        assert_int_equal(w[i].failures, 0);
    }
#ifdef PC_COUNT_ALLOCS
    {   /* pool warm (serial + concurrent runs above): one more serial predict allocates nothing */
        pc_prediction pr;
        long before = __atomic_load_n(&n_memalign, __ATOMIC_RELAXED);
        assert_int_equal(pc_model_predict(m, &images[0], &pr, maps, NULL), PC_OK);
        long after = __atomic_load_n(&n_memalign, __ATOMIC_RELAXED);
        assert_true(before > 0); /* the hook is live: fit and load went through it */
        float *input = malloc(3 * SS * sizeof *input);
        assert_non_null(input);
        long p0 = __atomic_load_n(&n_memalign, __ATOMIC_RELAXED);
        assert_int_equal(pc_preprocess(input, &images[0], info.resize, info.crop, NULL), PC_OK);
        long p1 = __atomic_load_n(&n_memalign, __ATOMIC_RELAXED);
        free(input);
        print_message("allocations: warm predict %ld, of which preprocess %ld\n", after - before, p1 - p0);
        assert_true(p1 - p0 > 0);
        assert_int_equal(after - before, 0);
        assert_memory_equal(&pr.score, &scores[0], sizeof(float));
    }
#endif
    for (int t = 0; t < NTEST; t++) pc_image_free(&images[t]);
    free(maps);
    for (int i = 0; i < 6; i++) free(train[i]);
    pc_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_concurrent_predict)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
