/*
 * workers.c - inference off the HTTP threads: a bounded FIFO of jobs in front of N worker threads.
 * Each worker predicts on its share of the thread count (pc_set_num_threads_local(pc_job_threads(T,
 * N)), as `predict --jobs N` does: docs/threads.md), so N images in flight never run more than T
 * threads in all. A full queue is refused at once (the HTTP layer answers 503 + Retry-After) rather
 * than growing: under overload the server sheds requests instead of making every one of them slow.
 *
 * A job's result is the response body: the JSON line `patchcore predict --json` prints for the image
 * (written by the same cli_predict_json_fields, so the numbers are the CLI's byte for byte), plus the
 * model's name and, when asked, the anomaly map and the overlay as base64.
 */
#include "serve.h"
#include "eval_cli.h"
#include "outputs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_REGIONS = 16 }; /* as predict */

/* The prediction. A seam for fuzz/fuzz_serve_http.c, which includes this file and puts a stub here
 * that needs no weights; the server always runs pc_model_predict. */
static pc_status (*predict_fn)(pc_model *, const pc_image *, pc_prediction *, float *, pc_geometry *) = pc_model_predict;
/* The size of the map predict_fn writes for an image (the same seam: the stub's model is not real). */
static pc_status (*map_size_fn)(const pc_model *, int32_t, int32_t, const pc_predict_options *, int32_t *,
                                int32_t *) = pc_model_map_size;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work_cv, done_cv;
    srv_job **ring;
    int cap, head, count;
    int running;
    bool stopping;
    pthread_t tid[256];
    int n;
    int32_t threads_each;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER, .work_cv = PTHREAD_COND_INITIALIZER, .done_cv = PTHREAD_COND_INITIALIZER};

/* An error body {"error": MSG, "status": CODE}. */
static void job_error(srv_job *job, int status, const char *msg) {
    job->status = status;
    job->body = srv_json_error(status, msg, &job->body_len);
}

static int status_of(pc_status st) {
    switch (st) {
    case PC_ERR_TOO_LARGE: return 413;
    case PC_ERR_UNSUPPORTED: return 415;
    case PC_ERR_FORMAT:
    case PC_ERR_INVALID_ARGUMENT:
    case PC_ERR_SHAPE: return 422;
    case PC_ERR_NO_MEMORY: return 503;
    case PC_ERR_CANCELLED: return 504; /* the request's deadline passed during the prediction */
    default: return 500;
    }
}

/* The .npy bytes of a width x height float32 map, shape (height, width) (what `predict --maps`
 * writes), in a new buffer. */
static uint8_t *npy_encode(const float *map, int32_t width, int32_t height, size_t *size) {
    char header[128];
    int hl = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }",
                      (int)height, (int)width);
    size_t total = 10 + (size_t)hl + 1, pad = (64 - total % 64) % 64;
    size_t n = total + pad + sizeof(float) * (size_t)width * (size_t)height;
    uint8_t *b = malloc(n);
    if (!b) return NULL;
    unsigned hlen = (unsigned)((size_t)hl + pad + 1);
    const uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 255), (uint8_t)(hlen >> 8)};
    memcpy(b, pre, 10);
    memcpy(b + 10, header, (size_t)hl);
    memset(b + 10 + hl, ' ', pad);
    b[total + pad - 1] = '\n';
    memcpy(b + total + pad, map, sizeof(float) * (size_t)width * (size_t)height);
    *size = n;
    return b;
}

/* ", \"KEY\": \"<base64>\"" appended to f; false when out of memory. */
static bool put_b64(FILE *f, const char *key, const uint8_t *data, size_t n) {
    size_t bl;
    char *b = srv_base64(data, n, &bl);
    if (!b) return false;
    fprintf(f, ", \"%s\": \"", key);
    fwrite(b, 1, bl, f);
    fputc('"', f);
    free(b);
    return true;
}

/* Whether the job's deadline has passed; if so its answer becomes 504 saying where it stopped. */
static bool past_deadline(srv_job *job, const char *where) {
    if (!(job->deadline > 0 && cli_now() >= job->deadline)) return false;
    char msg[240];
    snprintf(msg, sizeof msg, "the request timeout of %g s passed %s (--request-timeout, ?timeout=)", job->timeout_s,
             where);
    job_error(job, 504, msg);
    return true;
}

/* Decode, predict, and write the JSON. map is this worker's buffer of map_cap floats (grown here). */
static void run_job(srv_job *job, float **map, size_t *map_cap) {
    const pc_model_info *info = &job->model->info;
    const bool calibrated = !isnan(info->image_threshold);
    const bool want_regions = !isnan(info->pixel_threshold);
    if ((job->overlay || job->map == SRV_MAP_PNG16) && !(isfinite(info->pixel_threshold) && info->pixel_threshold > 0)) {
        job_error(job, 422, job->overlay ? "overlay=png needs a model with a pixel threshold (patchcore calibrate)"
                                         : "map=png16 needs a model with a pixel threshold (its full scale is twice "
                                           "the threshold); use map=npy");
        return;
    }
    double t0 = cli_now();
    if (past_deadline(job, "before a worker started")) return; /* picked up just as its time ran out */
    pc_image img = {0};
    pc_status st = pc_image_load_memory(job->image, job->image_len, job->name, &img);
    if (st) {
        job_error(job, status_of(st), *pc_last_error() ? pc_last_error() : pc_status_str(st));
        return;
    }
    /* The map's size for this image (crop x crop, or the image's for a tiled model): the worker's
     * buffer grows when it is too small and is reused otherwise. */
    int32_t mw, mh;
    if ((st = map_size_fn(job->model->model, img.width, img.height, NULL, &mw, &mh)) != PC_OK) {
        job_error(job, status_of(st), *pc_last_error() ? pc_last_error() : pc_status_str(st));
        pc_image_free(&img);
        return;
    }
    const size_t need = (size_t)mw * (size_t)mh;
    if (*map_cap < need) {
        float *m = realloc(*map, need * sizeof(float));
        if (!m) {
            job_error(job, 503, "out of memory");
            pc_image_free(&img);
            return;
        }
        *map = m, *map_cap = need;
    }
    pc_prediction pred;
    pc_geometry geom;
    /* the time left bounds the prediction: past it, it stops at its next stage check (PC_ERR_CANCELLED) */
    if (job->deadline > 0) {
        const double left = job->deadline - cli_now();
        pc_set_deadline_local(left > 1e-9 ? left : 1e-9);
    }
    st = predict_fn(job->model->model, &img, &pred, *map, &geom);
    pc_set_deadline_local(0);
    const double ms = (cli_now() - t0) * 1e3;
    if (st == PC_ERR_CANCELLED) {
        char msg[600];
        snprintf(msg, sizeof msg, "the prediction did not finish within the request timeout of %g s "
                 "(--request-timeout, ?timeout=): %s", job->timeout_s, pc_last_error());
        job_error(job, 504, msg);
        pc_image_free(&img);
        return;
    }
    if (st) {
        job_error(job, status_of(st), *pc_last_error() ? pc_last_error() : pc_status_str(st));
        pc_image_free(&img);
        return;
    }
    /* The map as the geometry describes it (what pc_model_map_size announced, checked) */
    cli_map_dims(&geom, &mw, &mh);
    if ((size_t)mw * (size_t)mh > *map_cap) {
        job_error(job, 500, "the prediction's map is larger than its size announced");
        pc_image_free(&img);
        return;
    }
    pc_region regions[MAX_REGIONS];
    int32_t n_regions = 0;
    if (want_regions && pc_model_regions(job->model->model, *map, &geom, NAN, regions, MAX_REGIONS, &n_regions))
        n_regions = 0;
    char *body = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&body, &size);
    bool ok = f != NULL;
    if (ok) {
        cli_predict_json_fields(f, job->name, &pred, calibrated, NULL, NULL, regions,
                                n_regions < MAX_REGIONS ? n_regions : MAX_REGIONS, want_regions ? n_regions : -1, ms);
        fprintf(f, ", \"model\": ");
        cli_json_string(f, job->model_name);
        fprintf(f, ", \"generation\": %llu", (unsigned long long)job->model->generation);
    }
    if (ok && job->map != SRV_MAP_NONE) {
        uint8_t *bytes = NULL;
        size_t n = 0;
        if (job->map == SRV_MAP_NPY) {
            bytes = npy_encode(*map, mw, mh, &n);
            ok = bytes != NULL;
            fprintf(f, ", \"map_format\": \"npy\"");
        } else {
            const double full = 2.0 * info->pixel_threshold; /* predict's default full scale */
            ok = pc_map_encode_png16(&bytes, &n, *map, mh, mw, full) == PC_OK;
            fprintf(f, ", \"map_format\": \"png16\", \"map_full_scale\": %.17g", full);
        }
        ok = ok && put_b64(f, "map_base64", bytes, n);
        if (job->map == SRV_MAP_NPY)
            free(bytes);
        else
            pc_buffer_free(bytes);
    }
    /* the overlay is the one long step after the prediction (seconds for an image of tens of
     * megapixels): not started past the deadline */
    const bool late = ok && job->overlay && job->deadline > 0 && cli_now() >= job->deadline;
    if (ok && job->overlay && !late) {
        pc_overlay_options ov;
        pc_image out = {0};
        uint8_t *png = NULL;
        size_t n = 0;
        ok = cli_overlay_options(&ov, info, NAN, 0.6, "serve", NULL) && pc_overlay_render(&out, &img, *map, &geom, &ov) == PC_OK &&
             pc_image_encode_png(&png, &n, &out, -1) == PC_OK && put_b64(f, "overlay_base64", png, n);
        pc_image_free(&out);
        pc_buffer_free(png);
    }
    pc_image_free(&img);
    if (f) {
        fputs("}\n", f);
        ok = (fclose(f) == 0) && ok;
    }
    if (late) {
        free(body);
        past_deadline(job, "before rendering the overlay");
        return;
    }
    if (!ok) {
        free(body);
        job_error(job, 500, "could not encode the response (out of memory?)");
        return;
    }
    job->status = 200;
    job->body = body;
    job->body_len = size;
}

static void *worker(void *arg) {
    (void)arg;
    pc_set_num_threads_local(pool.threads_each);
    float *map = NULL;
    size_t map_cap = 0;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (!pool.count && !pool.stopping) pthread_cond_wait(&pool.work_cv, &pool.lock);
        if (!pool.count) break; /* stopping and nothing left */
        srv_job *job = pool.ring[pool.head];
        pool.head = (pool.head + 1) % pool.cap;
        pool.count--;
        job->state = SRV_JOB_RUNNING;
        pool.running++;
        pthread_mutex_unlock(&pool.lock);
        job->t_start = cli_now();
        run_job(job, &map, &map_cap);
        job->t_end = cli_now();
        pthread_mutex_lock(&pool.lock);
        pool.running--;
        job->state = SRV_JOB_DONE;
        pthread_cond_broadcast(&pool.done_cv);
    }
    pthread_mutex_unlock(&pool.lock);
    free(map);
    return NULL;
}

int srv_pool_start(int workers, int32_t threads_each, int queue) {
    if (workers < 1) workers = 1;
    if (workers > 256) workers = 256;
    pool.ring = calloc((size_t)queue, sizeof *pool.ring);
    if (!pool.ring) return -1;
    pool.cap = queue;
    pool.head = pool.count = pool.running = 0;
    pool.stopping = false;
    pool.threads_each = threads_each;
    for (pool.n = 0; pool.n < workers; pool.n++)
        if (pthread_create(&pool.tid[pool.n], NULL, worker, NULL) != 0) break;
    return pool.n > 0 ? 0 : -1;
}

int srv_pool_submit(srv_job *job) {
    pthread_mutex_lock(&pool.lock);
    if (pool.stopping || pool.count >= pool.cap) {
        pthread_mutex_unlock(&pool.lock);
        return -1;
    }
    job->state = SRV_JOB_QUEUED;
    pool.ring[(pool.head + pool.count) % pool.cap] = job;
    pool.count++;
    pthread_cond_signal(&pool.work_cv);
    pthread_mutex_unlock(&pool.lock);
    return 0;
}

/* Remove a queued job from the ring (lock held); the order of the others is kept. */
static void withdraw(srv_job *job) {
    int w = 0;
    for (int k = 0; k < pool.count; k++) {
        srv_job *j = pool.ring[(pool.head + k) % pool.cap];
        if (j != job) pool.ring[(pool.head + w++) % pool.cap] = j;
    }
    pool.count = w;
    job->state = SRV_JOB_CANCELLED;
}

int srv_pool_wait(srv_job *job, double timeout_s) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double end = (double)dl.tv_sec + dl.tv_nsec * 1e-9 + timeout_s;
    dl.tv_sec = (time_t)end;
    dl.tv_nsec = (long)((end - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&pool.lock);
    int rc = 0;
    while (job->state != SRV_JOB_DONE) {
        if (job->state == SRV_JOB_CANCELLED) { /* withdrawn by srv_pool_stop */
            rc = -1;
            break;
        }
        if (job->state == SRV_JOB_QUEUED) {
            if (pthread_cond_timedwait(&pool.done_cv, &pool.lock, &dl) == ETIMEDOUT && job->state == SRV_JOB_QUEUED) {
                withdraw(job);
                rc = -1;
                break;
            }
        } else {
            pthread_cond_wait(&pool.done_cv, &pool.lock); /* running: always to the end */
        }
    }
    pthread_mutex_unlock(&pool.lock);
    return rc;
}

void srv_pool_depth(int *queued, int *running, int *capacity, int *workers) {
    pthread_mutex_lock(&pool.lock);
    *queued = pool.count, *running = pool.running, *capacity = pool.cap, *workers = pool.n;
    pthread_mutex_unlock(&pool.lock);
}

void srv_pool_stop(void) {
    pthread_mutex_lock(&pool.lock);
    pool.stopping = true;
    while (pool.count) withdraw(pool.ring[pool.head]);
    pthread_cond_broadcast(&pool.work_cv);
    pthread_cond_broadcast(&pool.done_cv);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.n; i++) pthread_join(pool.tid[i], NULL);
    pool.n = 0;
    free(pool.ring);
    pool.ring = NULL;
}
