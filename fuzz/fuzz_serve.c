/*
 * fuzz_serve.c - libFuzzer target for what `patchcore serve` parses itself (server/parse.c): request
 * paths to routes, model names, multipart/form-data bodies and their boundaries, base64. HTTP itself
 * is libmicrohttpd's (fuzzed upstream); the request handling between the two (routing, checks,
 * handlers, the worker queue) is fuzz_serve_http.c's. Built and run by `make fuzz` (FUZZ_TARGETS includes serve);
 * the seeds in fuzz/corpus/serve are replayed by test_fuzz_regressions.
 *
 * Input: line 1 = a request path, line 2 = a Content-Type, the rest = the body (each copied to a
 * buffer of its exact size, so that AddressSanitizer sees any read past it). Every result must stay
 * inside the body; a route's model name must be valid; base64 must have its exact length.
 */
#include "../server/parse.c"

#include <stdlib.h>
#include <string.h>

static size_t line_end(const uint8_t *d, size_t n) {
    const uint8_t *e = memchr(d, '\n', n);
    return e ? (size_t)(e - d) : n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t l1 = line_end(data, size);
    char *url = malloc(l1 + 1);
    if (!url) return 0;
    memcpy(url, data, l1);
    url[l1] = '\0';
    srv_route rt;
    srv_route_match(url, &rt);
    if ((rt.kind == SRV_ROUTE_PREDICT || rt.kind == SRV_ROUTE_MODEL) && !rt.bad_name && !srv_name_ok(rt.model)) abort();
    if (srv_name_ok(url) && strlen(url) >= SRV_NAME_MAX) abort();
    free(url);
    size_t off = l1 < size ? l1 + 1 : size;
    size_t l2 = line_end(data + off, size - off);
    char *ct = malloc(l2 + 1);
    if (!ct) return 0;
    memcpy(ct, data + off, l2);
    ct[l2] = '\0';
    off = off + l2 < size ? off + l2 + 1 : size;
    size_t n = size - off;
    uint8_t *body = malloc(n ? n : 1);
    if (!body) {
        free(ct);
        return 0;
    }
    memcpy(body, data + off, n);
    char boundary[80], fn[256], err[200];
    const uint8_t *part;
    size_t part_len;
    if (srv_multipart_boundary(ct, boundary, sizeof boundary)) {
        if (strlen(boundary) == 0 || strlen(boundary) > 70) abort();
        if (srv_multipart_find(body, n, boundary, "image", &part, &part_len, fn, sizeof fn, err, sizeof err) == 0 &&
            (part < body || part + part_len > body + n))
            abort();
    }
    if (srv_multipart_find(body, n, "b", NULL, &part, &part_len, fn, sizeof fn, err, sizeof err) == 0 &&
        (part < body || part + part_len > body + n))
        abort();
    size_t bl = 0;
    char *b64 = srv_base64(body, n, &bl);
    if (b64 && (bl != (n + 2) / 3 * 4 || strlen(b64) != bl)) abort();
    free(b64);
    free(body);
    free(ct);
    return 0;
}
