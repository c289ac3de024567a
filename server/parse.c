/*
 * parse.c - the server's parsing of what clients send, as pure functions over buffers (no HTTP library,
 * no global state), so that fuzz/fuzz_serve.c can drive them alone: the route of a request path,
 * model names, and the one part of a multipart/form-data body (RFC 7578) the predict endpoint needs —
 * the uploaded file, as `curl -F image=@file.png` sends it. The body is already in memory and bounded
 * by --max-body, so multipart is a scan over a buffer (no streaming state): find the delimiters, read
 * each part's headers, return a pointer into the body; every bound is checked against len. Also
 * base64, for the maps and overlays returned inside JSON.
 */
#include "serve.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

bool srv_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= SRV_NAME_MAX || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

void srv_route_match(const char *url, srv_route *out) {
    memset(out, 0, sizeof *out);
    out->method = "GET";
    if (!strcmp(url, "/healthz")) {
        out->kind = SRV_ROUTE_HEALTHZ;
    } else if (!strcmp(url, "/readyz")) {
        out->kind = SRV_ROUTE_READYZ;
    } else if (!strcmp(url, "/metrics")) {
        out->kind = SRV_ROUTE_METRICS;
    } else if (!strcmp(url, "/v1/models") || !strcmp(url, "/v1/models/")) {
        out->kind = SRV_ROUTE_MODELS;
    } else if (!strcmp(url, "/v1/admin/reload")) {
        out->kind = SRV_ROUTE_RELOAD;
        out->method = "POST";
    } else if (!strncmp(url, "/v1/models/", 11)) {
        const char *name = url + 11, *slash = strchr(name, '/');
        size_t n = slash ? (size_t)(slash - name) : strlen(name);
        if (slash && strcmp(slash, "/predict") != 0) return; /* not found */
        out->kind = slash ? SRV_ROUTE_PREDICT : SRV_ROUTE_MODEL;
        if (slash) out->method = "POST";
        if (n >= sizeof out->model) {
            out->bad_name = true;
            return;
        }
        memcpy(out->model, name, n);
        out->model[n] = '\0';
        if (!srv_name_ok(out->model)) {
            out->bad_name = true;
            out->model[0] = '\0';
        }
    }
}

static bool ci_prefix(const char *s, const char *prefix) {
    for (; *prefix; s++, prefix++)
        if (tolower((unsigned char)*s) != tolower((unsigned char)*prefix)) return false;
    return true;
}

bool srv_multipart_boundary(const char *ct, char *out, size_t size) {
    if (!ct || !ci_prefix(ct, "multipart/form-data")) return false;
    const char *p = ct + strlen("multipart/form-data");
    while (*p) {
        while (*p == ';' || *p == ' ' || *p == '\t') p++;
        if (ci_prefix(p, "boundary=")) {
            p += strlen("boundary=");
            size_t n = 0;
            if (*p == '"') {
                p++;
                while (p[n] && p[n] != '"') n++;
                if (p[n] != '"') return false;
            } else {
                while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t') n++;
            }
            if (n == 0 || n > 70 || n + 1 > size) return false;
            memcpy(out, p, n);
            out[n] = '\0';
            return true;
        }
        while (*p && *p != ';') p++;
    }
    return false;
}

/* memmem over bounded buffers. */
static const uint8_t *find(const uint8_t *hay, size_t n, const uint8_t *needle, size_t m) {
    if (m == 0 || n < m) return NULL;
    for (size_t i = 0; i + m <= n; i++) {
        const uint8_t *q = memchr(hay + i, needle[0], n - m + 1 - i);
        if (!q) return NULL;
        i = (size_t)(q - hay);
        if (memcmp(q, needle, m) == 0) return q;
    }
    return NULL;
}

/* The value of param (name= or filename=) in a Content-Disposition header line [h, e), into out. */
static bool disp_param(const uint8_t *h, const uint8_t *e, const char *param, char *out, size_t size) {
    size_t pl = strlen(param);
    for (const uint8_t *p = h; p + pl + 1 < e; p++) {
        if ((p == h || p[-1] == ';' || p[-1] == ' ' || p[-1] == '\t') && memcmp(p, param, pl) == 0 && p[pl] == '=') {
            p += pl + 1;
            size_t n = 0;
            if (p < e && *p == '"') {
                p++;
                while (p + n < e && p[n] != '"') n++;
            } else {
                while (p + n < e && p[n] != ';' && p[n] != ' ') n++;
            }
            if (n + 1 > size) n = size - 1;
            for (size_t i = 0; i < n; i++) out[i] = (p[i] < 0x20 || p[i] == 0x7f) ? '_' : (char)p[i];
            out[n] = '\0';
            return true;
        }
    }
    return false;
}

int srv_multipart_find(const uint8_t *body, size_t len, const char *boundary, const char *field,
                       const uint8_t **data, size_t *data_len, char *filename, size_t fn_size, char *err,
                       size_t errsize) {
    uint8_t delim[80]; /* "\r\n--" + boundary (<= 70) */
    size_t bl = strlen(boundary);
    if (bl == 0 || bl > 70) {
        snprintf(err, errsize, "multipart: bad boundary");
        return -1;
    }
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, bl);
    const size_t dl = bl + 4;
    /* The first delimiter may start the body (no preamble): look for it as if a CRLF preceded it. */
    const uint8_t *p;
    if (len >= dl - 2 && memcmp(body, delim + 2, dl - 2) == 0)
        p = body + dl - 2;
    else {
        p = find(body, len, delim, dl);
        if (!p) {
            snprintf(err, errsize, "multipart: the boundary given in Content-Type does not occur in the body");
            return -1;
        }
        p += dl;
    }
    const uint8_t *end = body + len;
    const uint8_t *best = NULL;
    size_t best_len = 0;
    int best_rank = 0; /* 3: named field, 2: has a filename, 1: any part (the first one wins ties) */
    char best_fn[256] = "";
    int parts = 0;
    for (;;) {
        /* after a delimiter: "--" ends the body, else optional whitespace then CRLF */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') break;
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n') {
            snprintf(err, errsize, parts ? "multipart: body ends inside a part (no closing boundary)"
                                         : "multipart: malformed delimiter line");
            return -1;
        }
        p += 2;
        /* headers up to an empty line */
        const uint8_t *hend = find(p, (size_t)(end - p), (const uint8_t *)"\r\n\r\n", 4);
        const uint8_t *content;
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') { /* no headers at all */
            hend = p;
            content = p + 2;
        } else {
            if (!hend) {
                snprintf(err, errsize, "multipart: part %d: headers do not end", parts + 1);
                return -1;
            }
            content = hend + 4;
        }
        const uint8_t *next = find(content, (size_t)(end - content), delim, dl);
        if (!next) {
            snprintf(err, errsize, "multipart: part %d: no closing boundary", parts + 1);
            return -1;
        }
        parts++;
        char name[SRV_NAME_MAX] = "", fn[256] = "";
        bool has_fn = false;
        for (const uint8_t *h = p; h < hend;) { /* each header line */
            const uint8_t *le = find(h, (size_t)(hend - h), (const uint8_t *)"\r\n", 2);
            if (!le) le = hend;
            if ((size_t)(le - h) > 20 && ci_prefix((const char *)h, "content-disposition:")) {
                /* ci_prefix reads at most 20 bytes: within the line checked above */
                disp_param(h, le, "name", name, sizeof name);
                has_fn = disp_param(h, le, "filename", fn, sizeof fn);
            }
            h = le + 2;
        }
        int rank = (field && strcmp(name, field) == 0) ? 3 : has_fn ? 2 : 1;
        if (rank > best_rank) {
            best_rank = rank, best = content, best_len = (size_t)(next - content);
            snprintf(best_fn, sizeof best_fn, "%s", fn);
        }
        p = next + dl;
        if (parts > 1000) {
            snprintf(err, errsize, "multipart: more than 1000 parts");
            return -1;
        }
    }
    if (!parts) {
        snprintf(err, errsize, "multipart: no parts");
        return -1;
    }
    *data = best;
    *data_len = best_len;
    if (filename && fn_size) snprintf(filename, fn_size, "%s", best_fn);
    return 0;
}

char *srv_base64(const uint8_t *src, size_t n, size_t *out_len) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t m = (n + 2) / 3 * 4;
    char *out = malloc(m + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        out[o++] = tab[v >> 18], out[o++] = tab[(v >> 12) & 63], out[o++] = tab[(v >> 6) & 63], out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)src[i] << 16;
        out[o++] = tab[v >> 18], out[o++] = tab[(v >> 12) & 63], out[o++] = '=', out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8;
        out[o++] = tab[v >> 18], out[o++] = tab[(v >> 12) & 63], out[o++] = tab[(v >> 6) & 63], out[o++] = '=';
    }
    out[o] = '\0';
    if (out_len) *out_len = o;
    return out;
}
