/*
 * jobs.c - several items (images) in flight at once: pc_jobs_run runs a thread-safe function over
 * items 0..n-1 on J threads, each with its share of the thread count (pc_set_num_threads_local), so
 * that J x share never exceeds the count (docs/threads.md). The result is the serial loop's.
 */
#include "internal.h"

#include <pthread.h>
#include <string.h>

typedef struct jobs_state {
    pc_job_fn fn;
    void *user;
    size_t n;
    int32_t threads_each;
    size_t next;     /* next item to start (atomic) */
    size_t first_bad; /* lowest failing item so far, n if none (atomic, only decreases) */
    pthread_mutex_t lock; /* guards the failure record below */
    pc_status bad_status;
    char bad_msg[PC_ERRMSG_MAX];
} jobs_state;

static void jobs_loop(jobs_state *s) {
    for (;;) {
        size_t i = __atomic_fetch_add(&s->next, 1, __ATOMIC_RELAXED);
        /* items after a failure are not started; items before it still are (the serial loop ran them) */
        if (i >= s->n || i > __atomic_load_n(&s->first_bad, __ATOMIC_ACQUIRE)) return;
        pc_status st = s->fn(s->user, i);
        if (st == PC_OK) continue;
        pthread_mutex_lock(&s->lock);
        if (i < s->first_bad) {
            __atomic_store_n(&s->first_bad, i, __ATOMIC_RELEASE);
            s->bad_status = st;
            pc_copy_error(s->bad_msg);
        }
        pthread_mutex_unlock(&s->lock);
    }
}

static void *jobs_thread(void *arg) {
    jobs_state *s = arg;
    pc_set_num_threads_local(s->threads_each);
    jobs_loop(s);
    return NULL;
}

pc_status pc_jobs_run(int32_t jobs, int32_t threads_each, size_t n, pc_job_fn fn, void *user) {
    if (jobs > 1 && (size_t)jobs > n) jobs = (int32_t)PC_MAX(n, (size_t)1);
    if (jobs <= 1) {
        for (size_t i = 0; i < n; i++) {
            pc_status st = fn(user, i);
            if (st) return st;
        }
        return PC_OK;
    }
    jobs_state s = {.fn = fn, .user = user, .n = n, .threads_each = threads_each, .next = 0, .first_bad = n};
    pthread_mutex_init(&s.lock, NULL);
    pthread_t tid[256];
    int32_t started = 0;
    jobs = PC_MIN(jobs, 257);
    for (; started < jobs - 1; started++)
        if (pthread_create(&tid[started], NULL, jobs_thread, &s) != 0) break; /* fewer jobs: still correct */
    /* the caller is one of the jobs, with the same share, restored afterwards */
    const int32_t mine = pc_threads_local();
    pc_set_num_threads_local(threads_each);
    jobs_loop(&s);
    for (int32_t t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pc_set_num_threads_local(mine);
    pthread_mutex_destroy(&s.lock);
    if (s.first_bad < n) {
        pc_fail(s.bad_status, "%s", s.bad_msg);
        return s.bad_status;
    }
    return PC_OK;
}
