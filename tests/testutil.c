/*
 * testutil.c - .npy reading and comparison helpers for the C tests (see testutil.h).
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *ref_path(char *buf, size_t size, const char *fmt, ...) {
    const char *dir = getenv("PC_REF_DIR");
    char rel[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    snprintf(buf, size, "%s/%s", dir ? dir : "build/ref", rel);
    return buf;
}

int ref_exists(const char *rel) {
    char p[2048];
    struct stat st;
    return stat(ref_path(p, sizeof p, "%s", rel), &st) == 0;
}

const char *shared_path(char *buf, size_t size, const char *rel) {
    const char *dir = getenv("PC_SHARED_DIR");
    if (!dir || !*dir) dir = "../shared";
    snprintf(buf, size, "%s/%s", dir, rel);
    struct stat st;
    if (stat(buf, &st) != 0) {
        print_message("note: %s is absent (set PATCHCORE_SHARED at configure time or PC_SHARED_DIR)\n", buf);
        return NULL;
    }
    return buf;
}

static size_t dtype_size(const char *d) {
    size_t n = strlen(d);
    return n >= 3 ? (size_t)atoi(d + 2) : 0;
}

int npy_load(const char *path, npy_array *out) {
    memset(out, 0, sizeof *out);
    char full[2048];
    if (path[0] != '/') path = ref_path(full, sizeof full, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) { print_error("cannot open %s\n", path); return -1; }
    unsigned char magic[10];
    if (fread(magic, 1, 10, f) != 10 || memcmp(magic, "\x93NUMPY", 6) != 0) { fclose(f); return -1; }
    size_t hlen;
    if (magic[6] == 1) hlen = magic[8] | (magic[9] << 8);
    else {
        unsigned char b[2];
        if (fread(b, 1, 2, f) != 2) { fclose(f); return -1; }
        hlen = magic[8] | (magic[9] << 8) | ((size_t)b[0] << 16) | ((size_t)b[1] << 24);
    }
    char *hdr = calloc(1, hlen + 1);
    if (fread(hdr, 1, hlen, f) != hlen) { free(hdr); fclose(f); return -1; }
    char *d = strstr(hdr, "'descr': '");
    char *fo = strstr(hdr, "'fortran_order': ");
    char *sh = strstr(hdr, "'shape': (");
    if (!d || !fo || !sh || strncmp(fo + 17, "False", 5) != 0) { free(hdr); fclose(f); return -1; }
    d += 10;
    size_t i = 0;
    while (*d != '\'' && i < sizeof out->dtype - 1) out->dtype[i++] = *d++;
    sh += 10;
    out->count = 1;
    while (*sh && *sh != ')') {
        while (*sh == ' ' || *sh == ',') sh++;
        if (*sh == ')') break;
        long long v = strtoll(sh, &sh, 10);
        out->shape[out->ndim++] = v;
        out->count *= v;
    }
    free(hdr);
    size_t es = dtype_size(out->dtype);
    out->data = malloc(out->count * es + 1);
    size_t got = fread(out->data, es, (size_t)out->count, f);
    fclose(f);
    if (got != (size_t)out->count) { npy_free(out); return -1; }
    return 0;
}

void npy_free(npy_array *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

double max_abs_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates as a failure */
    }
    return m;
}

double max_rel_err(const float *a, const float *b, size_t n) {
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref = fmax(ref, fabs((double)b[i]));
    return max_abs_diff(a, b, n) / (ref > 0 ? ref : 1.0);
}
