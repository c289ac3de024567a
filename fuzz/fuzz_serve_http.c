/*
 * fuzz_serve_http.c - libFuzzer target for `patchcore serve`'s request handling above libmicrohttpd:
 * server/http.c's request callback (header checks, body accumulation within --max-body, the early
 * 413), server/routes.c (routing, method and token checks, query parameters, every handler) and
 * server/workers.c (the queue, a worker decoding the image, the JSON, ?map= and ?overlay=), plus the
 * completion callback (metrics, log). No network and no weights: the MHD functions the server calls
 * are replaced by the fakes below, which record the queued response, and the prediction by a stub
 * (workers.c's predict_fn seam) that derives a score and a map from the decoded pixels.
 *
 * Input: byte 0 = flags (bit 0 loopback peer, bit 1 a token is configured ("tok"), bit 2 draining,
 * bits 3-5 how the body is cut into upload chunks), then text lines: the method, the URL with an
 * optional ?query, header lines "Name: value" up to an empty line; the rest is the body. Invariants
 * (abort when broken): exactly one response per request, with a status in 100..599 and a
 * Content-Type; a JSON error body is {"error": ..., "status": <the status>} and one line; a 200 from
 * predict is a JSON object naming the model; the completion callback releases the request.
 * Built and run by `make fuzz` (FUZZ_TARGETS includes serve_http); the seeds in
 * fuzz/corpus/serve_http and crashers in fuzz/regressions/serve_http are replayed by the
 * test_fuzz_serve_http CTest (tests/replay_serve_http.c).
 */
#define _GNU_SOURCE
#include "../server/http.c"
#include "../server/routes.c"
#include "../server/parse.c"
#include "../server/metrics.c"
#include "../server/models.c"
#include "../server/workers.c"
#include "internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- fake libmicrohttpd ------------------------------------------------------------------------ */

enum { FAKE_MAX_KV = 64 };

struct MHD_Response {
    char *body;
    size_t len;
    bool must_free;
    int refs;
    char ctype[128];
};

struct MHD_Connection {
    const char *hk[FAKE_MAX_KV], *hv[FAKE_MAX_KV]; /* headers */
    int nh;
    const char *ak[FAKE_MAX_KV], *av[FAKE_MAX_KV]; /* query arguments (av NULL: "key" without '=') */
    int na;
    struct sockaddr_in peer;
    union MHD_ConnectionInfo info;
    int queued; /* responses queued */
    unsigned status;
    struct MHD_Response *resp;
};

const char *MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *key) {
    if (kind == MHD_HEADER_KIND) {
        for (int i = 0; i < c->nh; i++)
            if (!strcasecmp(c->hk[i], key)) return c->hv[i];
    } else if (kind == MHD_GET_ARGUMENT_KIND) {
        for (int i = 0; i < c->na; i++)
            if (!strcmp(c->ak[i], key)) return c->av[i];
    }
    return NULL;
}

int MHD_get_connection_values(struct MHD_Connection *c, enum MHD_ValueKind kind, MHD_KeyValueIterator it, void *cls) {
    int n = 0;
    const char **k = kind == MHD_GET_ARGUMENT_KIND ? c->ak : kind == MHD_HEADER_KIND ? c->hk : NULL;
    const char **v = kind == MHD_GET_ARGUMENT_KIND ? c->av : c->hv;
    const int cnt = kind == MHD_GET_ARGUMENT_KIND ? c->na : kind == MHD_HEADER_KIND ? c->nh : 0;
    for (int i = 0; k && i < cnt; i++) {
        n++;
        if (it && it(cls, kind, k[i], v[i]) != MHD_YES) break;
    }
    return n;
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer, enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (mode == MHD_RESPMEM_MUST_COPY) {
        r->body = malloc(size ? size : 1);
        if (!r->body) {
            free(r);
            return NULL;
        }
        memcpy(r->body, buffer, size);
        r->must_free = true;
    } else {
        r->body = buffer;
        r->must_free = mode == MHD_RESPMEM_MUST_FREE;
    }
    r->len = size;
    r->refs = 1;
    return r;
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *r, const char *h, const char *v) {
    /* MHD refuses header values with CR or LF (response splitting): the server must never send one */
    if (strpbrk(h, "\r\n: ") || strpbrk(v, "\r\n")) abort();
    if (!strcasecmp(h, MHD_HTTP_HEADER_CONTENT_TYPE)) snprintf(r->ctype, sizeof r->ctype, "%s", v);
    return MHD_YES;
}

void MHD_destroy_response(struct MHD_Response *r) {
    if (!r || --r->refs) return;
    if (r->must_free) free(r->body);
    free(r);
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status, struct MHD_Response *r) {
    if (c->queued++) abort(); /* a second response to one request */
    c->status = status;
    c->resp = r;
    r->refs++;
    return MHD_YES;
}

const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *c, enum MHD_ConnectionInfoType t, ...) {
    if (t != MHD_CONNECTION_INFO_CLIENT_ADDRESS) return NULL;
    c->info.client_addr = (struct sockaddr *)&c->peer;
    return &c->info;
}

/* The daemon itself is not used here; these only satisfy the linker. */
struct MHD_Daemon *MHD_start_daemon(unsigned int f, uint16_t p, MHD_AcceptPolicyCallback a, void *ac,
                                    MHD_AccessHandlerCallback d, void *dc, ...) {
    return NULL;
}
void MHD_stop_daemon(struct MHD_Daemon *d) {}
MHD_socket MHD_quiesce_daemon(struct MHD_Daemon *d) { return MHD_INVALID_SOCKET; }
const union MHD_DaemonInfo *MHD_get_daemon_info(struct MHD_Daemon *d, enum MHD_DaemonInfoType t, ...) { return NULL; }
enum MHD_Result MHD_is_feature_supported(enum MHD_FEATURE f) { return MHD_NO; }

/* ---- the stub prediction and the served models ------------------------------------------------ */

enum { STUB_CROP = 8 };

/* Score and map from the pixels; an image 3 pixels wide (mod 5) "runs past its deadline". */
static pc_status stub_predict(pc_model *m, const pc_image *img, pc_prediction *out, float *map, pc_geometry *g) {
    if (img->width % 5 == 3) return pc_fail(PC_ERR_CANCELLED, "deadline passed 1.0 ms ago, stopped after the backbone");
    pc_status st = pc_geometry_compute(img->width, img->height, STUB_CROP, STUB_CROP, g);
    if (st) return st;
    const size_t n = (size_t)img->width * img->height * img->channels;
    double sum = 0;
    for (int i = 0; i < STUB_CROP * STUB_CROP; i++) {
        map[i] = img->data[(size_t)i * 7919 % n] / 64.0f;
        sum += map[i];
    }
    out->score = (float)sum;
    out->anomalous = sum > 32;
    out->normalized = sum / 64;
    return PC_OK;
}

static pc_status stub_map_size(const pc_model *m, int32_t w, int32_t h, const pc_predict_options *opt, int32_t *mw,
                               int32_t *mh) {
    (void)m, (void)w, (void)h, (void)opt;
    *mw = *mh = STUB_CROP;
    return PC_OK;
}

static srv_model *fake_model(bool calibrated) {
    srv_model *m = calloc(1, sizeof *m);
    if (!m) abort();
    pc_model_info *in = &m->info;
    in->arch = PC_ARCH_RESNET18;
    in->n_layers = 2, in->layers[0] = 2, in->layers[1] = 3;
    in->resize = in->crop = STUB_CROP;
    in->patch = 3, in->pre_dim = in->dim = 8, in->k = 1, in->grid_h = in->grid_w = 2;
    in->image_threshold = calibrated ? 10.0 : NAN;
    in->pixel_threshold = calibrated ? 2.0 : NAN;
    in->score_scale = calibrated ? 1.0 : NAN;
    in->pixel_scale = calibrated ? 1.0 : NAN;
    m->generation = 1;
    atomic_init(&m->refs, 1);
    return m;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    srv_g.cfg = (srv_config){.listen = "127.0.0.1:0", .workers = 1, .threads = 1, .queue = 4, .max_body = 8192,
                             .max_connections = 4, .conn_timeout_s = 5, .request_timeout_s = 10,
                             .shutdown_timeout_s = 1, .max_header = 4096,
                             .quiet = getenv("FUZZ_SERVE_LOG") == NULL}; /* FUZZ_SERVE_LOG=1: request log lines */
    atomic_init(&srv_g.draining, false);
    atomic_init(&srv_g.active_requests, 0);
    srv_metrics_init();
    srv_registry_init(&srv_g.models);
    const char *names[2] = {"cal", "raw"};
    for (int i = 0; i < 2; i++) { /* paths that do not exist: a reload fails and keeps these */
        srv_slot *s = &srv_g.models.slots[i];
        snprintf(s->name, sizeof s->name, "%s", names[i]);
        snprintf(s->path, sizeof s->path, "/nonexistent/fuzz-%s.pcm", names[i]);
        s->cur = fake_model(i == 0);
    }
    srv_g.models.n = 2;
    predict_fn = stub_predict;
    map_size_fn = stub_map_size;
    pc_set_num_threads(1);
    if (srv_pool_start(1, 1, srv_g.cfg.queue) != 0) abort();
    return 0;
}

/* ---- one request -------------------------------------------------------------------------------- */

/* %XX and '+' decoding in place, as MHD does for query arguments. */
static void unescape(char *s) {
    char *o = s;
    for (; *s; s++) {
        if (*s == '%' && s[1] && s[2] && strchr("0123456789abcdefABCDEF", s[1]) && strchr("0123456789abcdefABCDEF", s[2])) {
            char hex[3] = {s[1], s[2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            s += 2;
        } else {
            *o++ = *s == '+' ? ' ' : *s;
        }
    }
    *o = '\0';
}

/* The next line of d[*off..n) as a new string (NULL past the end). */
static char *next_line(const uint8_t *d, size_t n, size_t *off) {
    if (*off >= n) return NULL;
    const uint8_t *s = d + *off, *e = memchr(s, '\n', n - *off);
    size_t len = e ? (size_t)(e - s) : n - *off;
    *off += len + (e ? 1 : 0);
    if (len && s[len - 1] == '\r') len--;
    char *line = malloc(len + 1);
    if (!line) abort();
    memcpy(line, s, len);
    line[len] = '\0';
    return line;
}

static void check_response(const struct MHD_Connection *c, const srv_request *r) {
    if (c->queued != 1 || c->status < 100 || c->status > 599 || !c->resp->ctype[0]) abort();
    if ((int)c->status != r->status) abort();
    const char *b = c->resp->body;
    const size_t len = c->resp->len;
    if (!strcmp(c->resp->ctype, "application/json")) {
        if (len < 3 || b[0] != '{' || b[len - 2] != '}' || b[len - 1] != '\n' || memchr(b, '\n', len - 1)) abort();
        if (c->status >= 400 && r->route.kind != SRV_ROUTE_READYZ && r->route.kind != SRV_ROUTE_RELOAD) {
            char want[32];
            snprintf(want, sizeof want, "\"status\": %u}\n", c->status);
            if (len < 12 || memcmp(b, "{\"error\": \"", 11) || !memmem(b, len, want, strlen(want))) abort();
        }
        if (c->status == 200 && r->route.kind == SRV_ROUTE_PREDICT && !memmem(b, len, "\"model\": \"", 10)) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const uint8_t flags = data[0];
    size_t off = 1;
    char *method = next_line(data, size, &off), *url = next_line(data, size, &off);
    if (!method || !url) {
        free(method), free(url);
        return 0;
    }
    struct MHD_Connection *c = calloc(1, sizeof *c);
    if (!c) abort();
    char *lines[FAKE_MAX_KV];
    int nlines = 0;
    char *line;
    while (nlines < FAKE_MAX_KV && (line = next_line(data, size, &off)) != NULL) {
        if (!*line) {
            free(line);
            break;
        }
        lines[nlines++] = line;
        char *colon = strchr(line, ':');
        if (!colon || colon == line) continue; /* MHD would refuse the request */
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        c->hk[c->nh] = line, c->hv[c->nh++] = v;
    }
    char *q = strchr(url, '?');
    if (q) { /* MHD hands the path without the query, and the arguments decoded */
        *q++ = '\0';
        for (char *save = NULL, *kv = strtok_r(q, "&", &save); kv && c->na < FAKE_MAX_KV; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq) *eq = '\0', unescape(eq + 1);
            unescape(kv);
            c->ak[c->na] = kv, c->av[c->na++] = eq ? eq + 1 : NULL;
        }
    }
    unescape(url);
    c->peer.sin_family = AF_INET;
    c->peer.sin_addr.s_addr = htonl((flags & 1) ? 0x7f000001u : 0x0a000001u);
    if (flags & 2)
        snprintf(srv_g.token, sizeof srv_g.token, "tok"), srv_g.token_len = 3;
    else
        srv_g.token[0] = '\0', srv_g.token_len = 0;
    atomic_store(&srv_g.draining, (flags & 4) != 0);

    /* what MHD does: the callback on the headers, once per upload chunk, once at the end */
    const uint8_t *body = data + off;
    const size_t n = size - off;
    const size_t chunk = (size_t)1 << (((flags >> 3) & 7) * 2); /* 1, 4, 16, ... 16384 bytes */
    void *cls = NULL;
    size_t zero = 0;
    enum MHD_Result ret = on_request(NULL, c, url, method, "HTTP/1.1", NULL, &zero, &cls);
    srv_request *r = cls;
    if (ret == MHD_YES && !c->queued) {
        for (size_t at = 0; at < n && ret == MHD_YES; at += chunk) {
            size_t k = n - at < chunk ? n - at : chunk;
            ret = on_request(NULL, c, url, method, "HTTP/1.1", (const char *)body + at, &k, &cls);
            if (k != 0) abort(); /* every byte must be consumed */
        }
        zero = 0;
        if (ret == MHD_YES) ret = on_request(NULL, c, url, method, "HTTP/1.1", NULL, &zero, &cls);
    }
    if (ret == MHD_YES) check_response(c, r);
    if (r) on_completed(NULL, c, &cls, ret == MHD_YES ? MHD_REQUEST_TERMINATED_COMPLETED_OK
                                                     : MHD_REQUEST_TERMINATED_WITH_ERROR);
    if (cls) abort();
    if (atomic_load(&srv_g.active_requests) != 0) abort();
    if (c->resp) MHD_destroy_response(c->resp);
    free(c);
    for (int i = 0; i < nlines; i++) free(lines[i]);
    free(method), free(url);
    return 0;
}
