/*
 * test_status.c - status codes, versions, the thread-local last error and the checked allocators.
 */
#include "internal.h"
#include "testutil.h"

#include <string.h>
#include <math.h>
#include <time.h>
#include <pthread.h>
#include <omp.h>

static void test_version(void **state) {
    (void)state;
    assert_string_equal(pc_version(), PC_VERSION_STRING);
    assert_int_equal(pc_version_number(), PC_VERSION_MAJOR * 1000000 + PC_VERSION_MINOR * 1000 + PC_VERSION_PATCH);
}

static void test_status_strings(void **state) {
    (void)state;
    assert_string_equal(pc_status_str(PC_OK), "ok");
    assert_string_equal(pc_status_str(PC_ERR_FORMAT), "malformed file");
    assert_string_equal(pc_status_str((pc_status)9999), "unknown status");
    /* Every defined code has its own text. */
    for (int a = PC_OK; a <= PC_ERR_INTERNAL; a++)
        for (int b = a + 1; b <= PC_ERR_INTERNAL; b++)
            assert_string_not_equal(pc_status_str((pc_status)a), pc_status_str((pc_status)b));
}

static void test_last_error(void **state) {
    (void)state;
    pc_clear_error();
    assert_string_equal(pc_last_error(), "");
    assert_int_equal(pc_fail(PC_ERR_IO, "%s: cannot open", "x.png"), PC_ERR_IO);
    assert_string_equal(pc_last_error(), "x.png: cannot open");
    assert_int_equal(pc_fail_context(PC_ERR_IO, "batch %d", 3), PC_ERR_IO);
    assert_string_equal(pc_last_error(), "batch 3: x.png: cannot open");
}

static void test_checked_sizes(void **state) {
    (void)state;
    size_t r;
    assert_true(pc_mul_size(1000, 1000, &r) && r == 1000000);
    assert_false(pc_mul_size(SIZE_MAX / 2 + 1, 2, &r));
    assert_false(pc_mul3_size(1u << 31, 1u << 31, 1u << 31, &r));
    assert_false(pc_add_size(SIZE_MAX, 1, &r));
    assert_null(pc_calloc(SIZE_MAX / 4, 8));
    void *p = pc_malloc(0);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 64, 0);
    pc_free(p);
}

static void test_read_file_missing(void **state) {
    (void)state;
    uint8_t *d;
    size_t n;
    assert_int_equal(pc_read_file("/nonexistent/dir/file.bin", &d, &n), PC_ERR_IO);
    assert_non_null(strstr(pc_last_error(), "/nonexistent/dir/file.bin"));
    assert_null(d);
}

/* pc_set_num_threads on the main thread reaches library calls made from threads the caller starts
 * later (OpenMP keeps its count per thread): such a thread starts at OpenMP's default and, after one
 * library call (here pc_overlay_render on a 2 x 2 image), runs with the chosen count. */
typedef struct { int before, after; pc_status st; } thread_seen;

static void *thread_body(void *arg) {
    thread_seen *t = arg;
    t->before = omp_get_max_threads();
    uint8_t px[12] = {0};
    pc_image img = {.width = 2, .height = 2, .channels = 3, .data = px}, out = {0};
    float map[4] = {0, 1, 2, 3};
    pc_geometry g;
    pc_overlay_options o;
    pc_overlay_options_init(&o, 1.5, 1.0);
    t->st = pc_geometry_compute(2, 2, 2, 2, &g);
    if (t->st == PC_OK) t->st = pc_overlay_render(&out, &img, map, &g, &o);
    pc_image_free(&out);
    t->after = omp_get_max_threads();
    return NULL;
}

static void test_threads_reach_other_threads(void **state) {
    (void)state;
    int def = omp_get_max_threads();
    int want = def == 1 ? 2 : 1; /* a count different from the default */
    pc_set_num_threads(want);
    assert_int_equal(pc_get_num_threads(), want);
    thread_seen t = {0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, thread_body, &t), 0);
    pthread_join(th, NULL);
    print_message("default %d, set %d on the main thread; new thread: %d before a library call, %d after\n", def,
                  want, t.before, t.after);
    assert_int_equal(t.st, PC_OK);
    assert_int_equal(t.after, want);
    pc_set_num_threads(def);
}

/* The per-thread deadline (src/cancel.c): none by default, passed after its time, cleared by 0, NaN
 * or a negative value, and per thread (another thread does not see this one's). */
static void *deadline_other_thread(void *arg) {
    *(pc_status *)arg = pc_deadline_check("on another thread");
    return NULL;
}

static void test_deadline(void **state) {
    (void)state;
    assert_int_equal(pc_deadline_check("x"), PC_OK);
    pc_set_deadline_local(3600);
    assert_int_equal(pc_deadline_check("x"), PC_OK);
    pc_set_deadline_local(1e-9); /* passed by the time it is checked */
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    pc_status other = PC_ERR_INTERNAL;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, deadline_other_thread, &other), 0);
    pthread_join(th, NULL);
    assert_int_equal(other, PC_OK);
    assert_int_equal(pc_deadline_check("before the backbone"), PC_ERR_CANCELLED);
    assert_non_null(strstr(pc_last_error(), "deadline passed"));
    assert_non_null(strstr(pc_last_error(), "before the backbone"));
    pc_set_deadline_local(0);
    assert_int_equal(pc_deadline_check("x"), PC_OK);
    pc_set_deadline_local(1e-9);
    nanosleep(&ts, NULL);
    pc_set_deadline_local(-1);
    assert_int_equal(pc_deadline_check("x"), PC_OK);
    pc_set_deadline_local(1e-9);
    nanosleep(&ts, NULL);
    pc_set_deadline_local(NAN);
    assert_int_equal(pc_deadline_check("x"), PC_OK);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),       cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_last_error),    cmocka_unit_test(test_checked_sizes),
        cmocka_unit_test(test_read_file_missing), cmocka_unit_test(test_threads_reach_other_threads),
        cmocka_unit_test(test_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
