/*
 * jobs.c - several images in flight for the CLI verbs (`predict --jobs N`): J worker threads each
 * predict whole images with their share of the thread count (pc_set_num_threads_local), while the
 * calling thread emits the results in input order (docs/threads.md).
 */
#include "cli.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct ordered {
    cli_job_work_fn work;
    cli_job_emit_fn emit;
    void *user;
    size_t n, window;
    int32_t threads_each;
    pthread_mutex_t lock;
    pthread_cond_t space, done_cv;
    size_t next, emitted; /* next item to start; items emitted so far */
    unsigned char *done;  /* per slot: its item is finished and not yet emitted */
} ordered;

static void *worker(void *arg) {
    ordered *o = arg;
    pc_set_num_threads_local(o->threads_each);
    pthread_mutex_lock(&o->lock);
    for (;;) {
        /* an item may start only when its slot is free: fewer than `window` items ahead of the emitter */
        while (o->next < o->n && o->next >= o->emitted + o->window) pthread_cond_wait(&o->space, &o->lock);
        if (o->next >= o->n) break;
        size_t i = o->next++;
        pthread_mutex_unlock(&o->lock);
        o->work(o->user, i, i % o->window);
        pthread_mutex_lock(&o->lock);
        o->done[i % o->window] = 1;
        pthread_cond_broadcast(&o->done_cv);
    }
    pthread_mutex_unlock(&o->lock);
    return NULL;
}

int cli_jobs_ordered(int32_t jobs, int32_t threads_each, size_t n, size_t window, cli_job_work_fn work,
                     cli_job_emit_fn emit, void *user) {
    if (jobs <= 1 || n <= 1) { /* the plain loop, on this thread */
        for (size_t i = 0; i < n; i++) {
            work(user, i, 0);
            emit(user, i, 0);
        }
        return 0;
    }
    if ((size_t)jobs > n) jobs = (int32_t)n;
    if (jobs > 256) jobs = 256;
    ordered o = {.work = work, .emit = emit, .user = user, .n = n, .window = window, .threads_each = threads_each};
    o.done = calloc(window, 1);
    if (!o.done) return -1;
    pthread_mutex_init(&o.lock, NULL);
    pthread_cond_init(&o.space, NULL);
    pthread_cond_init(&o.done_cv, NULL);
    pthread_t tid[256];
    int32_t started = 0;
    for (; started < jobs; started++)
        if (pthread_create(&tid[started], NULL, worker, &o) != 0) break;
    if (started == 0) { /* no thread at all: still do the work */
        for (size_t i = 0; i < n; i++) {
            work(user, i, 0);
            emit(user, i, 0);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            const size_t slot = i % window;
            pthread_mutex_lock(&o.lock);
            while (!o.done[slot]) pthread_cond_wait(&o.done_cv, &o.lock);
            o.done[slot] = 0;
            pthread_mutex_unlock(&o.lock);
            emit(user, i, slot);
            pthread_mutex_lock(&o.lock);
            o.emitted = i + 1;
            pthread_cond_broadcast(&o.space);
            pthread_mutex_unlock(&o.lock);
        }
    }
    for (int32_t t = 0; t < started; t++) pthread_join(tid[t], NULL);
    pthread_cond_destroy(&o.space);
    pthread_cond_destroy(&o.done_cv);
    pthread_mutex_destroy(&o.lock);
    free(o.done);
    return 0;
}
