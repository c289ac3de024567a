/*
 * routes.c - the endpoints of `patchcore serve` (docs/serve.md, "Endpoints"):
 *   GET  /healthz                      the process answers
 *   GET  /readyz                       models loaded and not draining (503 while draining)
 *   GET  /metrics                      Prometheus text (metrics.c)
 *   GET  /v1/models                    the models served
 *   GET  /v1/models/{name}             one model: what `patchcore info` says, as JSON
 *   POST /v1/models/{name}/predict     image bytes (raw or multipart) -> `predict --json`'s object
 *   POST /v1/admin/reload              reload every model file (loopback only, or with the token)
 * No request names a file: models are the names given on the command line, images come in the body.
 */
#include "serve.h"

#include <microhttpd.h>

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- checks on the headers ----------------------------------------------------------------------- */

typedef struct query {
    srv_map_kind map;
    bool overlay;
    char name[256];
    double timeout; /* ?timeout=S (0: not given) */
    char bad[160];  /* the first problem, for the 400 */
} query;

static enum MHD_Result query_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    (void)kind;
    query *q = cls;
    if (q->bad[0]) return MHD_NO;
    if (!strcmp(key, "map")) {
        if (value && !strcmp(value, "png16"))
            q->map = SRV_MAP_PNG16;
        else if (value && !strcmp(value, "npy"))
            q->map = SRV_MAP_NPY;
        else
            snprintf(q->bad, sizeof q->bad, "map= takes png16 or npy");
    } else if (!strcmp(key, "overlay")) {
        if (value && !strcmp(value, "png"))
            q->overlay = true;
        else
            snprintf(q->bad, sizeof q->bad, "overlay= takes png");
    } else if (!strcmp(key, "timeout")) {
        char *end = NULL;
        double t = value ? strtod(value, &end) : 0;
        if (!value || end == value || *end || !(t > 0 && t <= 86400))
            snprintf(q->bad, sizeof q->bad, "timeout= takes seconds, a number above 0 (e.g. timeout=2.5)");
        else
            q->timeout = t;
    } else if (!strcmp(key, "name")) {
        size_t n = value ? strlen(value) : 0;
        for (size_t i = 0; i < n && i + 1 < sizeof q->name; i++) /* a label only: printable, never opened */
            q->name[i] = (value[i] < 0x20 || value[i] == 0x7f) ? '_' : value[i], q->name[i + 1] = '\0';
    } else {
        char k[64];
        snprintf(k, sizeof k, "%s", key);
        for (char *p = k; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) *p = '?';
        snprintf(q->bad, sizeof q->bad, "unknown query parameter '%s' (map, overlay, name, timeout)", k);
    }
    return q->bad[0] ? MHD_NO : MHD_YES;
}

/* Record an error to answer once the body is in. */
static int reject(srv_request *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reject(srv_request *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reject_msg, sizeof r->reject_msg, fmt, ap);
    va_end(ap);
    r->reject = status;
    return status;
}

int srv_precheck(struct MHD_Connection *c, srv_request *r) {
    const srv_route *rt = &r->route;
    if (rt->kind == SRV_ROUTE_NOT_FOUND) {
        return reject(r, 404, "no such endpoint: %s (see docs/serve.md)", r->url);
    }
    const bool get_like = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD");
    if (!(strcmp(rt->method, "GET") == 0 ? get_like : strcmp(r->method, rt->method) == 0)) {
        const char *allow = strcmp(rt->method, "GET") == 0 ? "GET, HEAD" : rt->method;
        r->reject_hdr = MHD_HTTP_HEADER_ALLOW, r->reject_val = allow;
        return reject(r, 405, "%s takes %s, not %s", r->url, allow, r->method);
    }
    if (rt->kind != SRV_ROUTE_HEALTHZ && rt->kind != SRV_ROUTE_READYZ && !srv_authorized(c)) {
        return reject(r, 401, "missing or wrong bearer token (Authorization: Bearer <token>)");
    }
    if (rt->kind == SRV_ROUTE_RELOAD && !srv_g.token_len && !r->loopback) {
        return reject(r, 403, "reload is allowed from loopback only, unless the server has --token-file");
    }
    if (rt->bad_name) {
        return reject(r, 404, "not a model name (1-63 of A-Z a-z 0-9 . _ -)");
    }
    if ((rt->kind == SRV_ROUTE_PREDICT || rt->kind == SRV_ROUTE_MODEL)) {
        srv_model *m = srv_model_acquire(&srv_g.models, rt->model);
        if (!m) {
            return reject(r, 404, "no model named '%s' (GET /v1/models lists them)", rt->model);
        }
        srv_model_release(m);
    }
    if (rt->kind == SRV_ROUTE_PREDICT) {
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (n > srv_g.cfg.max_body) {
                return reject(r, 413, "Content-Length %llu is over the limit of %zu bytes (--max-body)", n,
                                  srv_g.cfg.max_body);
            }
        }
        query q = {0};
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_arg, &q);
        if (q.bad[0]) {
            return reject(r, 400, "%s", q.bad);
        }
        const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
        char boundary[80];
        if (ct && !strncasecmp(ct, "multipart/", 10) && !srv_multipart_boundary(ct, boundary, sizeof boundary)) {
            return reject(r, 400, "Content-Type multipart/form-data needs a boundary= of 1-70 characters");
        }
        if (ct && !strncasecmp(ct, "application/x-www-form-urlencoded", 33)) {
            return reject(r, 415, "send the image as its raw bytes (Content-Type image/png, image/jpeg or "
                                         "application/octet-stream) or as multipart/form-data (curl -F image=@FILE)");
        }
    }
    return 0;
}

/* ---- handlers ------------------------------------------------------------------------------------ */

static int json_ok(struct MHD_Connection *c, srv_request *r, int status, char *body, size_t len) {
    if (!body) return srv_respond_error(c, r, 500, "out of memory");
    return srv_respond(c, r, status, "application/json", body, len, true, NULL, NULL);
}

/* A double as JSON: null for NaN and infinities. */
static void put_num(FILE *f, const char *key, double v) {
    if (isfinite(v))
        fprintf(f, ", \"%s\": %.9g", key, v);
    else
        fprintf(f, ", \"%s\": null", key);
}

static void model_json(FILE *f, const srv_slot *s, const srv_model *m) {
    const pc_model_info *in = &m->info;
    fprintf(f, "{\"name\": ");
    cli_json_string(f, s->name);
    fprintf(f, ", \"file\": ");
    cli_json_string(f, s->path);
    fprintf(f, ", \"backbone\": \"%s\", \"layers\": [", pc_arch_name(in->arch));
    for (int i = 0; i < in->n_layers; i++) fprintf(f, "%s%d", i ? ", " : "", (int)in->layers[i]);
    fprintf(f, "], \"resize\": %d, \"crop\": %d, \"bn_stats\": \"%s\", \"precision\": \"%s\"", (int)in->resize,
            (int)in->crop, pc_bn_stats_name(in->bn_stats), pc_precision_name(in->precision));
    fprintf(f, ", \"patch\": %d, \"pre_dim\": %d, \"dim\": %d, \"grid\": [%d, %d]", (int)in->patch, (int)in->pre_dim,
            (int)in->dim, (int)in->grid_h, (int)in->grid_w);
    fprintf(f, ", \"sampler\": \"%s\", \"coreset_ratio\": %.9g, \"seed\": %llu",
            in->sampler == PC_SAMPLER_APPROX_GREEDY ? "approx" : in->sampler == PC_SAMPLER_RANDOM ? "random" : "none",
            in->coreset_ratio, (unsigned long long)in->seed);
    fprintf(f, ", \"bank_size\": %lld, \"n_patches_total\": %lld, \"n_train_images\": %d, \"k\": %d, \"reweight_b\": %d",
            (long long)in->bank_size, (long long)in->n_patches_total, (int)in->n_train_images, (int)in->k,
            (int)in->reweight_b);
    fprintf(f, ", \"calibrated\": %s", isnan(in->image_threshold) ? "false" : "true");
    put_num(f, "image_threshold", in->image_threshold);
    put_num(f, "pixel_threshold", in->pixel_threshold);
    put_num(f, "score_scale", in->score_scale);
    put_num(f, "pixel_scale", in->pixel_scale);
    fprintf(f, ", \"generation\": %llu, \"loaded_at\": %.3f, \"load_seconds\": %.6f", (unsigned long long)m->generation,
            m->loaded_at, m->load_seconds);
    fprintf(f, ", \"reloads_ok\": %llu, \"reloads_failed\": %llu, \"last_reload_error\": ",
            (unsigned long long)s->reloads_ok, (unsigned long long)s->reloads_failed);
    if (s->last_reload_failed)
        cli_json_string(f, s->last_error);
    else
        fprintf(f, "null");
    fputc('}', f);
}

/* JSON of the model(s): all (name NULL) or one. */
static int models_handler(struct MHD_Connection *c, srv_request *r, const char *name) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return srv_respond_error(c, r, 500, "out of memory");
    srv_registry *reg = &srv_g.models;
    if (!name) fprintf(f, "{\"models\": [");
    int shown = 0;
    for (int i = 0; i < reg->n; i++) {
        if (name && strcmp(reg->slots[i].name, name) != 0) continue;
        srv_model *m = srv_model_acquire_at(reg, i);
        if (!m) continue;
        srv_slot copy;
        pthread_mutex_lock(&reg->lock); /* the counters and last error change on reload */
        copy = reg->slots[i];
        pthread_mutex_unlock(&reg->lock);
        if (shown++) fprintf(f, ", ");
        model_json(f, &copy, m);
        srv_model_release(m);
    }
    if (!name) fprintf(f, "]}");
    fputc('\n', f);
    if (fclose(f) != 0) {
        free(buf);
        return srv_respond_error(c, r, 500, "out of memory");
    }
    if (name && !shown) {
        free(buf);
        return srv_respond_error(c, r, 404, "no model named '%s'", name);
    }
    return json_ok(c, r, 200, buf, size);
}

static int reload_handler(struct MHD_Connection *c, srv_request *r) {
    srv_log("info", "reload requested over HTTP by %s", r->peer);
    int failed = srv_registry_reload(&srv_g.models);
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    if (!f) return srv_respond_error(c, r, 500, "out of memory");
    srv_registry *reg = &srv_g.models;
    fprintf(f, "{\"failed\": %d, \"models\": [", failed);
    pthread_mutex_lock(&reg->lock);
    for (int i = 0; i < reg->n; i++) {
        const srv_slot *s = &reg->slots[i];
        fprintf(f, "%s{\"name\": ", i ? ", " : "");
        cli_json_string(f, s->name);
        fprintf(f, ", \"ok\": %s, \"generation\": %llu, \"error\": ", s->last_reload_failed ? "false" : "true",
                (unsigned long long)(s->cur ? s->cur->generation : 0));
        if (s->last_reload_failed)
            cli_json_string(f, s->last_error);
        else
            fprintf(f, "null");
        fputc('}', f);
    }
    pthread_mutex_unlock(&reg->lock);
    fprintf(f, "]}\n");
    if (fclose(f) != 0) {
        free(buf);
        return srv_respond_error(c, r, 500, "out of memory");
    }
    /* 500 when a file failed (the old model still serves): `curl -f` and deploy scripts notice */
    return json_ok(c, r, failed ? 500 : 200, buf, size);
}

static int predict_handler(struct MHD_Connection *c, srv_request *r) {
    query q = {0};
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_arg, &q); /* checked in srv_precheck */
    const uint8_t *img = r->body;
    size_t img_len = r->len;
    char filename[256] = "";
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    char boundary[80];
    if (ct && srv_multipart_boundary(ct, boundary, sizeof boundary)) {
        char err[200];
        if (!r->body || srv_multipart_find(r->body, r->len, boundary, "image", &img, &img_len, filename,
                                           sizeof filename, err, sizeof err) != 0)
            return srv_respond_error(c, r, 400, "%s", r->body ? err : "multipart: empty body");
    }
    if (!img || img_len == 0)
        return srv_respond_error(c, r, 400, "no image: send its bytes as the body (curl --data-binary @FILE -H "
                                            "'Content-Type: image/png') or as multipart (curl -F image=@FILE)");
    srv_model *m = srv_model_acquire(&srv_g.models, r->route.model);
    if (!m) return srv_respond_error(c, r, 404, "no model named '%s'", r->route.model);
    /* the request's limit: --request-timeout, or less when the client asks (?timeout=S); counted from
     * here (the body is in) and covering the wait for a worker and the prediction */
    const double timeout = q.timeout > 0 && q.timeout < srv_g.cfg.request_timeout_s ? q.timeout
                                                                                    : srv_g.cfg.request_timeout_s;
    srv_job job = {.model = m, .image = img, .image_len = img_len, .model_name = r->route.model, .map = q.map,
                   .overlay = q.overlay, .deadline = cli_now() + timeout, .timeout_s = timeout};
    job.name = q.name[0] ? q.name : filename[0] ? filename : "-";
    const double t_submit = cli_now();
    if (srv_pool_submit(&job) != 0) {
        srv_model_release(m);
        return srv_respond_error(c, r, 503, atomic_load(&srv_g.draining) ? "shutting down"
                                                                        : "busy: the queue is full, retry later");
    }
    if (srv_pool_wait(&job, job.deadline - cli_now()) != 0) {
        srv_model_release(m);
        if (atomic_load(&srv_g.draining)) return srv_respond_error(c, r, 503, "shutting down");
        return srv_respond_error(c, r, 503, "no worker free within the request timeout of %g s (--request-timeout, "
                                 "?timeout=), retry later", timeout);
    }
    srv_model_release(m);
    r->queue_ms = (job.t_start - t_submit) * 1e3;
    r->work_ms = (job.t_end - job.t_start) * 1e3;
    if (!job.body) return srv_respond_error(c, r, 500, "out of memory");
    return srv_respond(c, r, job.status, "application/json", job.body, job.body_len, true, NULL, NULL);
}

/* A constant body: its pointer and length. */
#define LIT(s) (char *)(s), sizeof(s) - 1

int srv_dispatch(struct MHD_Connection *c, srv_request *r) {
    switch (r->route.kind) {
    case SRV_ROUTE_HEALTHZ: return srv_respond(c, r, 200, "application/json", LIT("{\"status\": \"ok\"}\n"), false, NULL, NULL);
    case SRV_ROUTE_READYZ:
        if (atomic_load(&srv_g.draining))
            return srv_respond(c, r, 503, "application/json", LIT("{\"status\": \"draining\"}\n"), false, NULL, NULL);
        return srv_respond(c, r, 200, "application/json", LIT("{\"status\": \"ready\"}\n"), false, NULL, NULL);
    case SRV_ROUTE_METRICS: {
        size_t len = 0;
        char *text = srv_metrics_render(&srv_g.models, &len);
        if (!text) return srv_respond_error(c, r, 500, "out of memory");
        return srv_respond(c, r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len, true, NULL, NULL);
    }
    case SRV_ROUTE_MODELS: return models_handler(c, r, NULL);
    case SRV_ROUTE_MODEL: return models_handler(c, r, r->route.model);
    case SRV_ROUTE_PREDICT: return predict_handler(c, r);
    case SRV_ROUTE_RELOAD: return reload_handler(c, r);
    default: return srv_respond_error(c, r, 404, "no such endpoint");
    }
}
