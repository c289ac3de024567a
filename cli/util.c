/*
 * util.c - option parsing, error printing and .npy writing shared by the CLI verbs.
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void cli_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("patchcore: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void cli_error_status(pc_status st, const char *ctx) {
    const char *msg = pc_last_error();
    size_t n = ctx ? strlen(ctx) : 0;
    /* the library's message may already start with the same "ctx: " (e.g. "fit: ...") */
    if (n && msg && strncmp(msg, ctx, n) == 0 && msg[n] == ':') ctx = NULL;
    if (ctx && *ctx)
        fprintf(stderr, "patchcore: %s: %s\n", ctx, (msg && *msg) ? msg : pc_status_str(st));
    else
        fprintf(stderr, "patchcore: %s\n", (msg && *msg) ? msg : pc_status_str(st));
}

bool cli_match(const char *arg, const char *name) {
    size_t n = strlen(name);
    return strncmp(arg, name, n) == 0 && (arg[n] == '\0' || arg[n] == '=');
}

bool cli_take_value(int argc, char **argv, int *i, const char *name, const char **value) {
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return true;
    }
    if (*i + 1 >= argc) {
        cli_error("%s needs a value (see --help)", name);
        return false;
    }
    *value = argv[++*i];
    return true;
}

bool cli_parse_int(const char *opt, const char *s, long lo, long hi, int32_t *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        cli_error("%s: '%s' is not a whole number from %ld to %ld", opt, s, lo, hi);
        return false;
    }
    *out = (int32_t)v;
    return true;
}

bool cli_parse_bn(const char *opt, const char *s, pc_bn_stats *out) {
    const int b = pc_bn_stats_from_name(s);
    if (b >= 0) {
        *out = (pc_bn_stats)b;
        return true;
    }
    cli_error("%s: '%s' is not reference or trained", opt, s);
    return false;
}

bool cli_parse_precision(const char *opt, const char *s, pc_precision *out) {
    const int p = pc_precision_from_name(s);
    if (p >= 0) {
        *out = (pc_precision)p;
        return true;
    }
    cli_error("%s: '%s' is not f32 or bf16", opt, s);
    return false;
}

bool cli_parse_mask_rule(const char *opt, const char *s, pc_mask_rule *out) {
    int r = pc_mask_rule_from_name(s);
    if (r < 0) {
        cli_error("%s: unknown '%s' (full, half)", opt, s);
        return false;
    }
    *out = (pc_mask_rule)r;
    return true;
}

const char *cli_mask_rule_desc(pc_mask_rule rule) {
    return rule == PC_MASK_RULE_FULL ? "full (resized mask value == 255, the reference implementation's)"
                                     : "half (resized mask value >= 128)";
}

bool cli_parse_double(const char *opt, const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        cli_error("%s: '%s' is not a number from %g to %g", opt, s, lo, hi);
        return false;
    }
    *out = v;
    return true;
}

bool cli_wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) return false;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    }
    return false;
}

int cli_write_npy_f32(const char *path, const float *data, int ndim, const int64_t *shape) {
    char header[256], shp[160] = "";
    size_t count = 1, off = 0;
    for (int d = 0; d < ndim; d++) {
        off += (size_t)snprintf(shp + off, sizeof shp - off, "%lld%s", (long long)shape[d],
                                (ndim == 1 || d < ndim - 1) ? ", " : "");
        count *= (size_t)shape[d];
    }
    if (ndim == 1) shp[strlen(shp) - 1] = '\0'; /* "(n,)" */
    int hl = snprintf(header, sizeof header, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shp);
    /* magic(6) + version(2) + len(2) + header, padded with spaces to a multiple of 64, ending in \n */
    size_t total = 10 + (size_t)hl + 1;
    size_t pad = (64 - total % 64) % 64;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cli_error("%s: cannot write: %s", path, strerror(errno));
        return -1;
    }
    unsigned hlen = (unsigned)(hl + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 255), (unsigned char)(hlen >> 8)};
    fwrite(pre, 1, 10, f);
    fwrite(header, 1, (size_t)hl, f);
    for (size_t i = 0; i < pad; i++) fputc(' ', f);
    fputc('\n', f);
    fwrite(data, sizeof(float), count, f);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        cli_error("%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

void cli_on_image_error(void *user, const char *path, pc_status st, const char *msg) {
    cli_skipped *s = user;
    s->count++;
    fprintf(stderr, "patchcore: skipped %s: %s\n", path, msg && *msg ? msg : pc_status_str(st));
}
