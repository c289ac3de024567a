/*
 * metrics.c - what `GET /metrics` reports, in the Prometheus text format (0.0.4): requests by model and
 * status, a latency histogram per model, the queue and in-flight gauges, and per model its load time,
 * generation and reload outcomes. Counters live in one small table under one mutex: a request touches
 * it once, at its end, so contention is negligible next to a prediction.
 */
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { N_BUCKETS = 12, MAX_CODES = 24, MAX_KEYS = SRV_MAX_MODELS + 1 };
static const double buckets[N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

typedef struct key_stats {
    char model[SRV_NAME_MAX]; /* "" for requests that name no model */
    int codes[MAX_CODES];
    uint64_t code_count[MAX_CODES];
    int n_codes;
    uint64_t bucket[N_BUCKETS]; /* non-cumulative here; summed when rendered */
    uint64_t count;
    double sum;
} key_stats;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static key_stats keys[MAX_KEYS];
static int n_keys;
static uint64_t other_codes; /* beyond MAX_CODES distinct codes for a key (never expected) */

void srv_metrics_init(void) {
    pthread_mutex_lock(&lock);
    memset(keys, 0, sizeof keys);
    n_keys = 0;
    pthread_mutex_unlock(&lock);
}

void srv_metrics_request(const char *model, int status, double seconds) {
    pthread_mutex_lock(&lock);
    key_stats *k = NULL;
    for (int i = 0; i < n_keys && !k; i++)
        if (strcmp(keys[i].model, model) == 0) k = &keys[i];
    if (!k && n_keys < MAX_KEYS) { /* model names are validated and registered: at most SRV_MAX_MODELS + "" */
        k = &keys[n_keys++];
        snprintf(k->model, sizeof k->model, "%s", model);
    }
    if (k) {
        int c = 0;
        while (c < k->n_codes && k->codes[c] != status) c++;
        if (c == k->n_codes && c < MAX_CODES) k->codes[k->n_codes++] = status;
        if (c < MAX_CODES)
            k->code_count[c]++;
        else
            other_codes++;
        int b = 0;
        while (b < N_BUCKETS && seconds > buckets[b]) b++;
        if (b < N_BUCKETS) k->bucket[b]++;
        k->count++;
        k->sum += seconds;
    }
    pthread_mutex_unlock(&lock);
}

char *srv_metrics_render(srv_registry *reg, size_t *len) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return NULL;
    fprintf(f, "# HELP patchcore_requests_total HTTP requests by model (\"\" for none) and status code.\n"
               "# TYPE patchcore_requests_total counter\n");
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_keys; i++)
        for (int c = 0; c < keys[i].n_codes; c++)
            fprintf(f, "patchcore_requests_total{model=\"%s\",code=\"%d\"} %llu\n", keys[i].model, keys[i].codes[c],
                    (unsigned long long)keys[i].code_count[c]);
    fprintf(f, "# HELP patchcore_request_duration_seconds Request latency from its headers to its response.\n"
               "# TYPE patchcore_request_duration_seconds histogram\n");
    for (int i = 0; i < n_keys; i++) {
        uint64_t cum = 0;
        for (int b = 0; b < N_BUCKETS; b++) {
            cum += keys[i].bucket[b];
            fprintf(f, "patchcore_request_duration_seconds_bucket{model=\"%s\",le=\"%g\"} %llu\n", keys[i].model,
                    buckets[b], (unsigned long long)cum);
        }
        fprintf(f, "patchcore_request_duration_seconds_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", keys[i].model,
                (unsigned long long)keys[i].count);
        fprintf(f, "patchcore_request_duration_seconds_sum{model=\"%s\"} %.6f\n", keys[i].model, keys[i].sum);
        fprintf(f, "patchcore_request_duration_seconds_count{model=\"%s\"} %llu\n", keys[i].model,
                (unsigned long long)keys[i].count);
    }
    pthread_mutex_unlock(&lock);
    int queued, running, capacity, workers;
    srv_pool_depth(&queued, &running, &capacity, &workers);
    fprintf(f, "# HELP patchcore_queue_depth Predictions waiting for a worker.\n# TYPE patchcore_queue_depth gauge\n"
               "patchcore_queue_depth %d\n", queued);
    fprintf(f, "# HELP patchcore_queue_capacity Predictions that may wait before requests get 503.\n"
               "# TYPE patchcore_queue_capacity gauge\npatchcore_queue_capacity %d\n", capacity);
    fprintf(f, "# HELP patchcore_inflight_predictions Predictions running on a worker.\n"
               "# TYPE patchcore_inflight_predictions gauge\npatchcore_inflight_predictions %d\n", running);
    fprintf(f, "# HELP patchcore_workers Inference worker threads.\n# TYPE patchcore_workers gauge\n"
               "patchcore_workers %d\n", workers);
    fprintf(f, "# HELP patchcore_inflight_requests HTTP requests received and not yet answered.\n"
               "# TYPE patchcore_inflight_requests gauge\npatchcore_inflight_requests %d\n",
            atomic_load(&srv_g.active_requests));
    fprintf(f, "# HELP patchcore_draining 1 while a graceful shutdown drains requests.\n"
               "# TYPE patchcore_draining gauge\npatchcore_draining %d\n", atomic_load(&srv_g.draining) ? 1 : 0);
    fprintf(f, "# HELP patchcore_model_load_seconds How long the serving model took to load.\n"
               "# TYPE patchcore_model_load_seconds gauge\n");
    char lines[5][SRV_MAX_MODELS][256];
    pthread_mutex_lock(&reg->lock);
    for (int i = 0; i < reg->n; i++) {
        const srv_slot *s = &reg->slots[i];
        snprintf(lines[0][i], sizeof lines[0][i], "patchcore_model_load_seconds{model=\"%s\"} %.6f\n", s->name,
                 s->cur ? s->cur->load_seconds : 0.0);
        snprintf(lines[1][i], sizeof lines[1][i], "patchcore_model_loaded_timestamp_seconds{model=\"%s\"} %.3f\n",
                 s->name, s->cur ? s->cur->loaded_at : 0.0);
        snprintf(lines[4][i], sizeof lines[4][i], "patchcore_model_generation{model=\"%s\"} %llu\n", s->name,
                 (unsigned long long)(s->cur ? s->cur->generation : 0));
        snprintf(lines[2][i], sizeof lines[2][i], "patchcore_model_reloads_total{model=\"%s\",result=\"ok\"} %llu\n"
                 "patchcore_model_reloads_total{model=\"%s\",result=\"error\"} %llu\n", s->name,
                 (unsigned long long)s->reloads_ok, s->name, (unsigned long long)s->reloads_failed);
        snprintf(lines[3][i], sizeof lines[3][i], "patchcore_model_reload_failing{model=\"%s\"} %d\n", s->name,
                 s->last_reload_failed ? 1 : 0);
    }
    const int n = reg->n;
    pthread_mutex_unlock(&reg->lock);
    for (int i = 0; i < n; i++) fputs(lines[0][i], f);
    fprintf(f, "# HELP patchcore_model_loaded_timestamp_seconds When the serving model was loaded (unix time).\n"
               "# TYPE patchcore_model_loaded_timestamp_seconds gauge\n");
    for (int i = 0; i < n; i++) fputs(lines[1][i], f);
    fprintf(f, "# HELP patchcore_model_generation 1 + successful reloads of the model.\n"
               "# TYPE patchcore_model_generation gauge\n");
    for (int i = 0; i < n; i++) fputs(lines[4][i], f);
    fprintf(f, "# HELP patchcore_model_reloads_total Reloads of the model file by outcome.\n"
               "# TYPE patchcore_model_reloads_total counter\n");
    for (int i = 0; i < n; i++) fputs(lines[2][i], f);
    fprintf(f, "# HELP patchcore_model_reload_failing 1 when the last reload of the file failed (the previous "
               "model still serves).\n# TYPE patchcore_model_reload_failing gauge\n");
    for (int i = 0; i < n; i++) fputs(lines[3][i], f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = size;
    return buf;
}
