/*
 * http.c - the HTTP server proper, on libmicrohttpd (docs/serve.md, "Why libmicrohttpd"). MHD parses
 * requests, enforces the header-size, connection-count and idle-timeout limits and does TLS; this
 * file feeds it the settings, receives bodies within --max-body, checks the bearer token, queues
 * responses and writes the one log line per request when MHD reports the request complete.
 *
 * Threading: one thread per connection (MHD_USE_THREAD_PER_CONNECTION), capped by
 * --max-connections. A predict request's thread hands the image to the worker pool (workers.c) and
 * waits for the result, so a slow prediction never holds up other connections (health checks,
 * metrics) and the inference concurrency is the pool's, not the connections'.
 */
#define _GNU_SOURCE /* asprintf */
#include "serve.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <time.h>

srv_state srv_g;
static struct MHD_Daemon *daemon_;
static char *tls_cert_pem, *tls_key_pem;

double srv_wall_time(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* "2026-12-04T16:30:00.123Z" */
static void iso_time(char *buf, size_t size) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Escape s as JSON string content into out (truncating). */
static void json_escape(char *out, size_t size, const char *s) {
    size_t o = 0;
    for (; *s && o + 7 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out[o++] = '\\', out[o++] = (char)c;
        else if (c < 0x20)
            o += (size_t)snprintf(out + o, size - o, "\\u%04x", c);
        else
            out[o++] = (char)c;
    }
    out[o] = '\0';
}

void srv_log(const char *level, const char *fmt, ...) {
    char t[40], msg[2048], line[4400];
    iso_time(t, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (srv_g.cfg.log_json) {
        char esc[4200];
        json_escape(esc, sizeof esc, msg);
        snprintf(line, sizeof line, "{\"time\": \"%s\", \"level\": \"%s\", \"msg\": \"%s\"}\n", t, level, esc);
    } else {
        snprintf(line, sizeof line, "%s %s %s\n", t, level, msg);
    }
    fputs(line, stderr); /* one call: lines of concurrent threads do not interleave */
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
    srv_log("warn", "http: %s", msg);
}

char *srv_json_error(int status, const char *msg, size_t *len) {
    char esc[2048];
    json_escape(esc, sizeof esc, msg);
    char *b = NULL;
    int n = asprintf(&b, "{\"error\": \"%s\", \"status\": %d}\n", esc, status);
    if (n < 0) return NULL;
    *len = (size_t)n;
    return b;
}

int srv_respond(struct MHD_Connection *c, srv_request *r, int status, const char *ctype, char *body, size_t len,
                bool owned, const char *hdr, const char *value) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, body ? body : (char *)"", owned && body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (!resp) {
        if (owned) free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (atomic_load(&srv_g.draining)) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    if (hdr && value) MHD_add_response_header(resp, hdr, value);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) {
        r->status = status;
        r->bytes_out = len;
    }
    return ret;
}

int srv_respond_error(struct MHD_Connection *c, srv_request *r, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t len = 0;
    char *b = srv_json_error(status, msg, &len);
    const char *hdr = NULL, *val = NULL;
    if (status == 401) hdr = MHD_HTTP_HEADER_WWW_AUTHENTICATE, val = "Bearer";
    if (status == 503) hdr = MHD_HTTP_HEADER_RETRY_AFTER, val = "1";
    return srv_respond(c, r, status, "application/json", b, len, true, hdr, val);
}

bool srv_authorized(struct MHD_Connection *c) {
    if (!srv_g.token_len) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h);
    /* compare every byte of the token whatever the input, so the time does not tell the prefix */
    unsigned diff = n != srv_g.token_len;
    for (size_t i = 0; i < srv_g.token_len; i++) diff |= (unsigned)(unsigned char)srv_g.token[i] ^ (unsigned)(unsigned char)(i < n ? h[i] : 0);
    return diff == 0;
}

static void peer_of(struct MHD_Connection *c, srv_request *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(r->peer, sizeof r->peer, "-");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, r->peer, sizeof r->peer);
        r->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, r->peer, sizeof r->peer);
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        const uint8_t *b = in6->sin6_addr.s6_addr;
        r->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || (memcmp(b, v4mapped, 12) == 0 && b[12] == 127);
    }
}

static void sanitise(char *out, size_t size, const char *s) {
    size_t o = 0;
    for (; *s && o + 1 < size; s++) {
        unsigned char ch = (unsigned char)*s;
        out[o++] = (ch <= 0x20 || ch >= 0x7f || ch == '"' || ch == '\\') ? '?' : (char)ch;
    }
    out[o] = '\0';
}

/* Answer the error srv_precheck recorded. */
static enum MHD_Result send_reject(struct MHD_Connection *c, srv_request *r) {
    if (!r->reject_hdr) return (enum MHD_Result)srv_respond_error(c, r, r->reject, "%s", r->reject_msg);
    size_t len = 0;
    char *b = srv_json_error(r->reject, r->reject_msg, &len);
    return (enum MHD_Result)srv_respond(c, r, r->reject, "application/json", b, len, true, r->reject_hdr, r->reject_val);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)cls, (void)version;
    srv_request *r = *con_cls;
    if (!r) { /* the headers are in: route, authorise, check the declared size */
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->t0 = cli_now();
        r->queue_ms = r->work_ms = -1;
        atomic_fetch_add(&srv_g.active_requests, 1);
        sanitise(r->method, sizeof r->method, method);
        sanitise(r->url, sizeof r->url, url);
        peer_of(c, r);
        srv_route_match(url, &r->route);
        if (srv_precheck(c, r) == 413) return send_reject(c, r); /* declared too large: do not read it */
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size;
        *upload_size = 0;
        r->received += n;
        if (r->status || r->reject || r->too_large) return MHD_YES; /* answered, refused or too large: drop */
        if (r->len + n > srv_g.cfg.max_body) {
            r->too_large = true;
            free(r->body);
            r->body = NULL;
            r->len = r->cap = 0;
            return MHD_YES;
        }
        if (r->len + n > r->cap) {
            /* first chunk: one buffer of the declared Content-Length (within --max-body), so that a
             * 500 KB upload is not copied through 64, 128 and 256 KB buffers on its way in */
            size_t cap = r->cap ? r->cap : 65536;
            const char *cl = r->cap ? NULL : MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl) {
                char *end;
                unsigned long long d = strtoull(cl, &end, 10);
                if (end != cl && !*end && d <= srv_g.cfg.max_body && d > cap) cap = (size_t)d;
            }
            while (cap < r->len + n) cap *= 2;
            if (cap > srv_g.cfg.max_body) cap = srv_g.cfg.max_body;
            uint8_t *b = realloc(r->body, cap);
            if (!b) return MHD_NO;
            r->body = b, r->cap = cap;
        }
        memcpy(r->body + r->len, upload_data, n);
        r->len += n;
        return MHD_YES;
    }
    if (r->status) return MHD_YES; /* the early answer is on its way */
    if (r->reject) return send_reject(c, r);
    if (r->too_large)
        return srv_respond_error(c, r, 413, "request body of %zu bytes or more is over the limit of %zu bytes (--max-body)",
                                 r->received, srv_g.cfg.max_body);
    return srv_dispatch(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c;
    srv_request *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    const double secs = cli_now() - r->t0;
    /* 499: the client went away (or timed out) before the response was sent, as nginx logs it */
    const int status = (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK && r->status) ? r->status : 499;
    const char *model = r->route.kind == SRV_ROUTE_PREDICT || r->route.kind == SRV_ROUTE_MODEL ? r->route.model : "";
    /* a name that is not served is counted as "" so that clients cannot grow the metrics table */
    srv_model *m = model[0] ? srv_model_acquire(&srv_g.models, model) : NULL;
    srv_metrics_request(m ? model : "", status, secs);
    srv_model_release(m);
    if (!srv_g.cfg.quiet) {
        char t[40], line[800], work[80] = "";
        iso_time(t, sizeof t);
        if (srv_g.cfg.log_json) {
            if (r->work_ms >= 0)
                snprintf(work, sizeof work, ", \"queue_ms\": %.2f, \"work_ms\": %.2f", r->queue_ms, r->work_ms);
            snprintf(line, sizeof line,
                     "{\"time\": \"%s\", \"method\": \"%s\", \"path\": \"%s\", \"model\": \"%s\", \"status\": %d, "
                     "\"ms\": %.2f%s, \"bytes_in\": %zu, \"bytes_out\": %zu, \"peer\": \"%s\"}\n",
                     t, r->method, r->url, r->route.model, status, secs * 1e3, work, r->received, r->bytes_out, r->peer);
        } else {
            if (r->work_ms >= 0) snprintf(work, sizeof work, " queue_ms=%.2f work_ms=%.2f", r->queue_ms, r->work_ms);
            snprintf(line, sizeof line, "%s %s %s model=%s status=%d ms=%.2f%s in=%zu out=%zu peer=%s\n", t, r->method,
                     r->url, r->route.model[0] ? r->route.model : "-", status, secs * 1e3, work, r->received,
                     r->bytes_out, r->peer);
        }
        fputs(line, stderr);
    }
    free(r->body);
    free(r);
    atomic_fetch_sub(&srv_g.active_requests, 1);
}

static char *read_file(const char *path, size_t max, char *err, size_t errsize) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max + 1, f) : 0;
    fclose(f);
    if (!b || n > max) {
        snprintf(err, errsize, "%s: %s", path, b ? "too large" : "out of memory");
        free(b);
        return NULL;
    }
    b[n] = '\0';
    return b;
}

/* "HOST:PORT" (HOST an IPv4 address, or [IPv6]) into a sockaddr. */
static int parse_listen(const char *s, struct sockaddr_storage *ss, bool *v6) {
    memset(ss, 0, sizeof *ss);
    char host[128];
    const char *colon;
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof host) return -1;
        memcpy(host, s + 1, (size_t)(e - s - 1));
        host[e - s - 1] = '\0';
        colon = e + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535) return -1;
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *v6 = true;
        return 0;
    }
    return -1;
}

int srv_http_start(int *port) {
    const srv_config *cfg = &srv_g.cfg;
    struct sockaddr_storage ss;
    bool v6 = false;
    if (parse_listen(cfg->listen, &ss, &v6) != 0) {
        srv_log("error", "--listen '%s': expected HOST:PORT with HOST an IPv4 address, [IPv6] or localhost", cfg->listen);
        return -1;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    if (cfg->tls_cert || cfg->tls_key) {
        if (!cfg->tls_cert || !cfg->tls_key) {
            srv_log("error", "TLS needs both --tls-cert and --tls-key");
            return -1;
        }
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            srv_log("error", "this libmicrohttpd was built without TLS: use a TLS-terminating reverse proxy");
            return -1;
        }
        char err[600];
        if (!(tls_cert_pem = read_file(cfg->tls_cert, 1 << 20, err, sizeof err)) ||
            !(tls_key_pem = read_file(cfg->tls_key, 1 << 20, err, sizeof err))) {
            srv_log("error", "TLS: %s", err);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    struct MHD_OptionItem opts[16];
    int k = 0;
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_logger, NULL}; /* first */
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, cfg->conn_timeout_s, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)cfg->max_header, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 128, NULL};
    /* strict: refuse requests with bare LF, spaces in header names and the like (1 = strict) */
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
    if (tls_cert_pem) {
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, tls_cert_pem};
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, tls_key_pem};
    }
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!daemon_) {
        srv_log("error", "cannot listen on %s (address in use, or not an address of this host?)", cfg->listen);
        return -1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    *port = di ? di->port : 0;
    return 0;
}

void srv_http_quiesce(void) {
    if (!daemon_) return;
    MHD_socket s = MHD_quiesce_daemon(daemon_);
    if (s != MHD_INVALID_SOCKET) close(s);
}

void srv_http_stop(void) {
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = NULL;
    free(tls_cert_pem), free(tls_key_pem);
    tls_cert_pem = tls_key_pem = NULL;
}
