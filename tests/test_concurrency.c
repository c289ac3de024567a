/*
 * test_concurrency.c - predicting from several threads on one loaded model gives results identical
 * (bit for bit: scores and whole anomaly maps) to predicting serially. 4 threads each predict all
 * test images in a different order. Real bottle images and ResNet-18 weights at 64 x 64 (skips
 * without ../shared). Also built with -fsanitize=thread by `make tsan-test` (docs/robustness.md).
 */
#include "patchcore.h"
#include "testutil.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { N_IMG = 4, N_THREADS = 4, S = 64 };

static pc_model *model;
static pc_image imgs[N_IMG];
static float serial_score[N_IMG], serial_map[N_IMG][S * S];
static float thread_score[N_THREADS][N_IMG], thread_map[N_THREADS][N_IMG][S * S];
static pc_status thread_status[N_THREADS];

static void *worker(void *arg) {
    int t = (int)(intptr_t)arg;
    /* omp_set_num_threads (behind pc_set_num_threads) is per thread: a new thread starts with
     * OMP_NUM_THREADS, and the image score depends on the OpenMP thread count in its last bit
     * (found by this test; docs/robustness.md). Same count as the serial run, so exact equality holds. */
    pc_set_num_threads(1);
    for (int j = 0; j < N_IMG; j++) {
        int i = (j + t) % N_IMG; /* a different order per thread */
        pc_prediction p;
        pc_status st = pc_model_predict(model, &imgs[i], &p, thread_map[t][i], NULL);
        if (st) {
            thread_status[t] = st;
            return NULL;
        }
        thread_score[t][i] = p.score;
    }
    return NULL;
}

static void test_threads_equal_serial(void **state) {
    (void)state;
    char w[2048], tr[2][2048];
    const char *test_names[N_IMG] = {"data/mvtec_ad/bottle/test/broken_large/000.png",
                                     "data/mvtec_ad/bottle/test/good/000.png",
                                     "data/mvtec_ad/bottle/test/contamination/000.png",
                                     "data/mvtec_ad/bottle/test/broken_small/000.png"};
    if (!shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(tr[0], sizeof tr[0], "data/mvtec_ad/bottle/train/good/000.png") ||
        !shared_path(tr[1], sizeof tr[1], "data/mvtec_ad/bottle/train/good/001.png"))
        TEST_SKIP_MSG("../shared absent");
    pc_set_num_threads(1); /* the threads here are ours; keeps TSan away from uninstrumented OpenMP */
    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = w;
    opt.resize = S;
    opt.crop = S;
    const char *paths[2] = {tr[0], tr[1]};
    assert_int_equal(pc_model_fit(&opt, paths, 2, &model), PC_OK);
    for (int i = 0; i < N_IMG; i++) {
        char p[2048];
        assert_non_null(shared_path(p, sizeof p, test_names[i]));
        assert_int_equal(pc_image_load(p, &imgs[i]), PC_OK);
        pc_prediction pr;
        assert_int_equal(pc_model_predict(model, &imgs[i], &pr, serial_map[i], NULL), PC_OK);
        serial_score[i] = pr.score;
    }
    /* repeated serial predictions agree with the first ones */
    for (int i = N_IMG - 1; i >= 0; i--) {
        pc_prediction pr;
        assert_int_equal(pc_model_predict(model, &imgs[i], &pr, thread_map[0][i], NULL), PC_OK);
        if (pr.score != serial_score[i])
            print_error("serial repeat: image %d score %.9g vs %.9g\n", i, (double)pr.score, (double)serial_score[i]);
        assert_true(pr.score == serial_score[i]);
    }
    assert_memory_equal(thread_map[0], serial_map, sizeof serial_map);
    pthread_t th[N_THREADS];
    for (int t = 0; t < N_THREADS; t++) assert_int_equal(pthread_create(&th[t], NULL, worker, (void *)(intptr_t)t), 0);
    for (int t = 0; t < N_THREADS; t++) assert_int_equal(pthread_join(th[t], NULL), 0);
    for (int t = 0; t < N_THREADS; t++) {
        assert_int_equal(thread_status[t], PC_OK);
        /* exact equality: the same arithmetic on the same data, whatever the interleaving */
        assert_memory_equal(thread_score[t], serial_score, sizeof serial_score);
        assert_memory_equal(thread_map[t], serial_map, sizeof serial_map);
    }
    /* the images differ, so a result copied between threads would not pass */
    assert_true(serial_score[0] != serial_score[1]);
    for (int i = 0; i < N_IMG; i++) pc_image_free(&imgs[i]);
    pc_model_free(model);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_threads_equal_serial)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
