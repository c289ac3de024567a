/*
 * weights.c - reading tensor files users already have, without executing anything: .safetensors,
 * PyTorch's zip .pth (torch.save since 1.6) and its legacy .pth (a sequence of pickles followed by raw
 * storages). See weights.h for the interface and docs/weights.md for the formats, the pickle subset and
 * the limits.
 *
 * Everything here treats the file as hostile: every size, offset, shape and stride read from it is
 * range- and overflow-checked against the bytes actually present before it is used, and every error
 * names the file and what is wrong. Tensor data is converted straight from the file's bytes (mapped, not
 * copied) into each tensor's own float32 buffer: one pass, no intermediate copy (deflated zip entries,
 * which torch never writes by itself, are the one exception: they are inflated once).
 */
#include "weights.h"

#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights.c reads little-endian files by plain loads: port the loads below for big-endian hosts"
#endif

/* =============================================================================================
 * Dtypes and conversion to float32
 * =========================================================================================== */

static size_t dtype_size(pc_dtype dt) {
    switch (dt) {
    case PC_DTYPE_F32: return 4;
    case PC_DTYPE_F16: return 2;
    case PC_DTYPE_BF16: return 2;
    case PC_DTYPE_F64: return 8;
    case PC_DTYPE_I64: return 8;
    case PC_DTYPE_I32: return 4;
    case PC_DTYPE_OTHER: return 1;
    }
    return 1;
}

static int dtype_is_float(pc_dtype dt) {
    return dt == PC_DTYPE_F32 || dt == PC_DTYPE_F16 || dt == PC_DTYPE_BF16 || dt == PC_DTYPE_F64;
}

__attribute__((unused)) static const char *dtype_name(pc_dtype dt) {
    switch (dt) {
    case PC_DTYPE_F32: return "float32";
    case PC_DTYPE_F16: return "float16";
    case PC_DTYPE_BF16: return "bfloat16";
    case PC_DTYPE_F64: return "float64";
    case PC_DTYPE_I64: return "int64";
    case PC_DTYPE_I32: return "int32";
    case PC_DTYPE_OTHER: return "other";
    }
    return "?";
}

/* IEEE binary16 -> binary32, exact for every input: normals, subnormals (mant * 2^-24 is exact in
 * float), signed zeros, infinities and NaNs (payload kept, as numpy and c10 do). */
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else {
        float f = (float)mant * 0x1p-24f;
        memcpy(&bits, &f, 4);
        bits |= sign;
    }
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

static inline float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float out;
    memcpy(&out, &bits, 4);
    return out;
}

/* n consecutive elements of a float dtype at src (any alignment) -> out. */
static void convert_run(float *out, const uint8_t *src, pc_dtype dt, size_t n) {
    switch (dt) {
    case PC_DTYPE_F32:
        memcpy(out, src, n * 4);
        break;
    case PC_DTYPE_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = f16_to_f32(h);
        }
        break;
    case PC_DTYPE_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            out[i] = bf16_to_f32(h);
        }
        break;
    case PC_DTYPE_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d;
        }
        break;
    default:
        break;
    }
}

/* out (numel floats, row-major over shape) = base[offset + sum_i idx_i * stride_i] for every index.
 * The caller has checked that every addressed element lies inside the storage. */
__attribute__((unused)) static void convert_strided(float *out, const uint8_t *base, pc_dtype dt, int32_t ndim, const int64_t *shape,
                            const int64_t *stride, int64_t offset, int64_t numel) {
    size_t isz = dtype_size(dt);
    if (numel == 0) return;
    /* Contiguous (the normal case for state dicts): one run. Dimensions of size 1 have any stride. */
    int contiguous = 1;
    int64_t expect = 1;
    for (int32_t d = ndim - 1; d >= 0; d--) {
        if (shape[d] != 1 && stride[d] != expect) contiguous = 0;
        expect *= shape[d];
    }
    if (contiguous) {
        convert_run(out, base + (size_t)offset * isz, dt, (size_t)numel);
        return;
    }
    /* General gather: runs along the last dimension, an odometer over the others. */
    int64_t idx[PC_TENSOR_MAX_DIMS] = {0};
    int64_t inner = ndim > 0 ? shape[ndim - 1] : 1, inner_stride = ndim > 0 ? stride[ndim - 1] : 1;
    for (int64_t done = 0; done < numel; done += inner) {
        int64_t pos = offset;
        for (int32_t d = 0; d + 1 < ndim; d++) pos += idx[d] * stride[d];
        for (int64_t i = 0; i < inner; i++)
            convert_run(out + done + i, base + (size_t)(pos + i * inner_stride) * isz, dt, 1);
        for (int32_t d = ndim - 2; d >= 0; d--) {
            if (++idx[d] < shape[d]) break;
            idx[d] = 0;
        }
    }
}

/* =============================================================================================
 * The dictionary being built
 * =========================================================================================== */

typedef struct loader {
    const char *name; /* the file, for messages */
    pc_tensor_filter filter;
    void *user;
    pc_tensor_dict *dict;
    size_t cap;
} loader;

static int loader_wants(const loader *L, const char *tensor_name) {
    return L->filter == NULL || L->filter(tensor_name, L->user) != 0;
}

static pc_status shape_numel(const loader *L, const char *tname, int32_t ndim, const int64_t *shape, int64_t *numel) {
    size_t n = 1;
    for (int32_t d = 0; d < ndim; d++) {
        if (shape[d] < 0) return pc_fail(PC_ERR_FORMAT, "%s: tensor '%s': negative dimension %lld", L->name, tname, (long long)shape[d]);
        if (!pc_mul_size(n, (size_t)shape[d], &n) || n > (size_t)INT64_MAX / 8)
            return pc_fail(PC_ERR_TOO_LARGE, "%s: tensor '%s': element count overflows", L->name, tname);
    }
    *numel = (int64_t)n;
    return PC_OK;
}

/* Append a tensor (name copied) and allocate its float buffer when its dtype is a float type. */
static pc_status loader_add(loader *L, const char *tname, pc_dtype dt, int32_t ndim, const int64_t *shape,
                            int64_t numel, pc_tensor **out) {
    pc_tensor_dict *D = L->dict;
    for (size_t i = 0; i < D->count; i++)
        if (strcmp(D->tensors[i].name, tname) == 0)
            return pc_fail(PC_ERR_FORMAT, "%s: tensor '%s' appears twice", L->name, tname);
    if (D->count == L->cap) {
        size_t ncap = L->cap ? 2 * L->cap : 64;
        pc_tensor *nt = pc_calloc(ncap, sizeof *nt);
        if (!nt) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory for the tensor list", L->name);
        if (D->count) memcpy(nt, D->tensors, D->count * sizeof *nt);
        pc_free(D->tensors);
        D->tensors = nt;
        L->cap = ncap;
    }
    pc_tensor *t = &D->tensors[D->count];
    memset(t, 0, sizeof *t);
    size_t len = strlen(tname);
    t->name = pc_malloc(len + 1);
    if (!t->name) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", L->name);
    memcpy(t->name, tname, len + 1);
    D->count++; /* from here on the dictionary owns the name (and the data, below) */
    t->dtype = dt;
    t->ndim = ndim;
    for (int32_t d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->numel = numel;
    if (dtype_is_float(dt)) {
        t->data = pc_malloc((size_t)numel * sizeof(float));
        if (!t->data)
            return pc_fail(PC_ERR_NO_MEMORY, "%s: tensor '%s': cannot allocate %lld floats", L->name, tname,
                           (long long)numel);
    }
    *out = t;
    return PC_OK;
}

void pc_tensor_dict_free(pc_tensor_dict *d) {
    if (!d) return;
    for (size_t i = 0; i < d->count; i++) {
        pc_free(d->tensors[i].name);
        pc_free(d->tensors[i].data);
    }
    pc_free(d->tensors);
    pc_free(d);
}

const pc_tensor *pc_tensor_dict_get(const pc_tensor_dict *d, const char *name) {
    if (!d || !name) return NULL;
    for (size_t i = 0; i < d->count; i++)
        if (strcmp(d->tensors[i].name, name) == 0) return &d->tensors[i];
    return NULL;
}

/* =============================================================================================
 * A strict JSON reader, just enough for a safetensors header
 * =========================================================================================== */

typedef struct json {
    const char *p, *end;
    const char *file;
    const char *start; /* header start, for byte positions in messages */
    const char *err;   /* first error, static text */
} json;

#define JSON_MAX_DEPTH 64

static int json_fail(json *J, const char *what) {
    if (!J->err) J->err = what;
    return 0;
}

static void json_ws(json *J) {
    while (J->p < J->end && (*J->p == ' ' || *J->p == '\t' || *J->p == '\n' || *J->p == '\r')) J->p++;
}

static int json_peek(json *J, char c) {
    json_ws(J);
    return J->p < J->end && *J->p == c;
}

static int json_expect(json *J, char c) {
    json_ws(J);
    if (J->p < J->end && *J->p == c) {
        J->p++;
        return 1;
    }
    return json_fail(J, c == ':' ? "expected ':'" : c == ',' ? "expected ','" : c == '{' ? "expected '{'"
                     : c == '[' ? "expected '['" : c == ']' ? "expected ']'" : "expected '}'");
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int json_hex4(json *J, uint32_t *v) {
    if (J->end - J->p < 4) return json_fail(J, "truncated \\u escape");
    *v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(J->p[i]);
        if (h < 0) return json_fail(J, "bad \\u escape");
        *v = *v << 4 | (uint32_t)h;
    }
    J->p += 4;
    return 1;
}

/* Parse a string; if out != NULL, decode it (UTF-8, NUL-terminated) into a pc_malloc'd buffer.
 * Embedded NULs are refused (names are C strings). */
static int json_string(json *J, char **out) {
    if (out) *out = NULL;
    json_ws(J);
    if (J->p >= J->end || *J->p != '"') return json_fail(J, "expected a string");
    J->p++;
    /* Decoded length <= raw length (escapes only shrink, \uXXXX gives at most 3 bytes for 6, a
     * surrogate pair 4 for 12). */
    const char *q = J->p;
    while (q < J->end && *q != '"') q += (*q == '\\' && q + 1 < J->end) ? 2 : 1;
    if (q >= J->end) return json_fail(J, "unterminated string");
    char *buf = NULL, *w = NULL;
    if (out) {
        buf = pc_malloc((size_t)(q - J->p) + 1);
        if (!buf) return json_fail(J, "out of memory");
        w = buf;
    }
    while (J->p < J->end && *J->p != '"') {
        unsigned char c = (unsigned char)*J->p++;
        if (c < 0x20) {
            pc_free(buf);
            return json_fail(J, "control character in string");
        }
        if (c != '\\') {
            if (w) *w++ = (char)c;
            continue;
        }
        if (J->p >= J->end) break;
        char e = *J->p++;
        uint32_t cp = 0;
        switch (e) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            if (!json_hex4(J, &cp)) {
                pc_free(buf);
                return 0;
            }
            if (cp >= 0xd800 && cp < 0xdc00) {
                uint32_t lo;
                if (J->end - J->p < 2 || J->p[0] != '\\' || J->p[1] != 'u') {
                    pc_free(buf);
                    return json_fail(J, "unpaired surrogate in string");
                }
                J->p += 2;
                if (!json_hex4(J, &lo)) {
                    pc_free(buf);
                    return 0;
                }
                if (lo < 0xdc00 || lo >= 0xe000) {
                    pc_free(buf);
                    return json_fail(J, "unpaired surrogate in string");
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                pc_free(buf);
                return json_fail(J, "unpaired surrogate in string");
            }
            if (cp == 0) {
                pc_free(buf);
                return json_fail(J, "NUL character in string");
            }
            break;
        default:
            pc_free(buf);
            return json_fail(J, "bad escape in string");
        }
        if (!w) continue;
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xc0 | cp >> 6);
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xe0 | cp >> 12);
            *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *w++ = (char)(0xf0 | cp >> 18);
            *w++ = (char)(0x80 | (cp >> 12 & 0x3f));
            *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    if (J->p >= J->end) {
        pc_free(buf);
        return json_fail(J, "unterminated string");
    }
    J->p++; /* closing quote */
    if (w) {
        *w = '\0';
        *out = buf;
    }
    return 1;
}

/* A non-negative JSON integer below 2^63 (shapes and offsets). */
static int json_uint(json *J, int64_t *v) {
    json_ws(J);
    const char *s = J->p;
    if (s >= J->end || *s < '0' || *s > '9') return json_fail(J, "expected a non-negative integer");
    if (*s == '0' && s + 1 < J->end && s[1] >= '0' && s[1] <= '9') return json_fail(J, "leading zero in integer");
    uint64_t x = 0;
    while (s < J->end && *s >= '0' && *s <= '9') {
        if (x > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(*s - '0')) / 10) return json_fail(J, "integer too large");
        x = x * 10 + (uint64_t)(*s - '0');
        s++;
    }
    if (s < J->end && (*s == '.' || *s == 'e' || *s == 'E')) return json_fail(J, "expected an integer, not a fraction");
    J->p = s;
    *v = (int64_t)x;
    return 1;
}

static int json_skip_value(json *J, int depth);

static int json_skip_number(json *J) {
    const char *s = J->p;
    if (s < J->end && *s == '-') s++;
    if (s >= J->end || *s < '0' || *s > '9') return json_fail(J, "bad value");
    if (*s == '0') s++;
    else while (s < J->end && *s >= '0' && *s <= '9') s++;
    if (s < J->end && *s == '.') {
        s++;
        if (s >= J->end || *s < '0' || *s > '9') return json_fail(J, "bad number");
        while (s < J->end && *s >= '0' && *s <= '9') s++;
    }
    if (s < J->end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < J->end && (*s == '+' || *s == '-')) s++;
        if (s >= J->end || *s < '0' || *s > '9') return json_fail(J, "bad number");
        while (s < J->end && *s >= '0' && *s <= '9') s++;
    }
    J->p = s;
    return 1;
}

static int json_skip_value(json *J, int depth) {
    if (depth > JSON_MAX_DEPTH) return json_fail(J, "nesting too deep");
    json_ws(J);
    if (J->p >= J->end) return json_fail(J, "unexpected end of header");
    char c = *J->p;
    if (c == '"') return json_string(J, NULL);
    if (c == '{') {
        J->p++;
        if (json_peek(J, '}')) return J->p++, 1;
        do {
            if (!json_string(J, NULL) || !json_expect(J, ':') || !json_skip_value(J, depth + 1)) return 0;
        } while (json_peek(J, ',') && J->p++);
        return json_expect(J, '}');
    }
    if (c == '[') {
        J->p++;
        if (json_peek(J, ']')) return J->p++, 1;
        do {
            if (!json_skip_value(J, depth + 1)) return 0;
        } while (json_peek(J, ',') && J->p++);
        return json_expect(J, ']');
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(lits[i]);
        if ((size_t)(J->end - J->p) >= n && memcmp(J->p, lits[i], n) == 0) {
            J->p += n;
            return 1;
        }
    }
    return json_skip_number(J);
}

/* =============================================================================================
 * .safetensors: u64 LE header length N, N bytes of JSON
 *   {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...}
 * then the data section; offsets are relative to its start.
 * =========================================================================================== */

#define ST_MAX_HEADER ((uint64_t)100 << 20) /* the reference implementation's limit */

typedef struct st_entry {
    char *name;
    pc_dtype dtype;
    size_t itemsize;
    const char *dtype_str; /* for messages: static */
    int32_t ndim;
    int64_t shape[PC_TENSOR_MAX_DIMS];
    int64_t numel;
    int64_t begin, end;
} st_entry;

static int st_dtype(const char *s, pc_dtype *dt, size_t *isz, const char **canon) {
    static const struct {
        const char *name;
        pc_dtype dt;
        size_t isz;
    } tab[] = {
        {"F32", PC_DTYPE_F32, 4},   {"F16", PC_DTYPE_F16, 2},     {"BF16", PC_DTYPE_BF16, 2},
        {"F64", PC_DTYPE_F64, 8},   {"I64", PC_DTYPE_I64, 8},     {"I32", PC_DTYPE_I32, 4},
        {"BOOL", PC_DTYPE_OTHER, 1}, {"U8", PC_DTYPE_OTHER, 1},   {"I8", PC_DTYPE_OTHER, 1},
        {"I16", PC_DTYPE_OTHER, 2}, {"U16", PC_DTYPE_OTHER, 2},   {"U32", PC_DTYPE_OTHER, 4},
        {"U64", PC_DTYPE_OTHER, 8}, {"F8_E4M3", PC_DTYPE_OTHER, 1}, {"F8_E5M2", PC_DTYPE_OTHER, 1},
        {"C64", PC_DTYPE_OTHER, 8},
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            *dt = tab[i].dt;
            *isz = tab[i].isz;
            *canon = tab[i].name;
            return 1;
        }
    return 0;
}

static int st_cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end < y->end ? -1 : x->end > y->end);
}

static void st_entries_free(st_entry *e, size_t n) {
    for (size_t i = 0; i < n; i++) pc_free(e[i].name);
    pc_free(e);
}

/* One tensor's description {"dtype": .., "shape": [..], "data_offsets": [b, e]} (other keys ignored). */
static pc_status st_parse_entry(loader *L, json *J, st_entry *e) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (!json_expect(J, '{')) goto json_error;
    if (!json_peek(J, '}')) {
        do {
            char *key = NULL;
            if (!json_string(J, &key) || !json_expect(J, ':')) {
                pc_free(key);
                goto json_error;
            }
            if (strcmp(key, "dtype") == 0) {
                char *s = NULL;
                pc_free(key);
                if (!json_string(J, &s)) goto json_error;
                if (!st_dtype(s, &e->dtype, &e->itemsize, &e->dtype_str)) {
                    pc_status st = pc_fail(PC_ERR_UNSUPPORTED, "%s: tensor '%s': unknown safetensors dtype '%.40s'",
                                           L->name, e->name, s);
                    pc_free(s);
                    return st;
                }
                pc_free(s);
                have_dtype = 1;
            } else if (strcmp(key, "shape") == 0) {
                pc_free(key);
                if (!json_expect(J, '[')) goto json_error;
                e->ndim = 0;
                if (!json_peek(J, ']')) {
                    do {
                        int64_t v;
                        if (!json_uint(J, &v)) goto json_error;
                        if (e->ndim == PC_TENSOR_MAX_DIMS)
                            return pc_fail(PC_ERR_UNSUPPORTED, "%s: tensor '%s' has more than %d dimensions",
                                           L->name, e->name, PC_TENSOR_MAX_DIMS);
                        e->shape[e->ndim++] = v;
                    } while (json_peek(J, ',') && J->p++);
                }
                if (!json_expect(J, ']')) goto json_error;
                have_shape = 1;
            } else if (strcmp(key, "data_offsets") == 0) {
                pc_free(key);
                if (!json_expect(J, '[') || !json_uint(J, &e->begin) || !json_expect(J, ',') ||
                    !json_uint(J, &e->end) || !json_expect(J, ']'))
                    goto json_error;
                have_off = 1;
            } else {
                pc_free(key);
                if (!json_skip_value(J, 1)) goto json_error;
            }
        } while (json_peek(J, ',') && J->p++);
    }
    if (!json_expect(J, '}')) goto json_error;
    if (!have_dtype || !have_shape || !have_off)
        return pc_fail(PC_ERR_FORMAT, "%s: tensor '%s': missing \"%s\" in the safetensors header", L->name, e->name,
                       !have_dtype ? "dtype" : !have_shape ? "shape" : "data_offsets");
    return PC_OK;
json_error:
    return pc_fail(PC_ERR_FORMAT, "%s: bad safetensors header JSON (tensor '%s'): %s at header byte %ld", L->name, e->name,
                   J->err ? J->err : "syntax error", (long)(J->p - J->start));
}

static pc_status load_safetensors(loader *L, const uint8_t *buf, size_t len) {
    if (len < 8) return pc_fail(PC_ERR_FORMAT, "%s: too short for a safetensors file (%zu bytes)", L->name, len);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | buf[i];
    if (n > len - 8)
        return pc_fail(PC_ERR_FORMAT, "%s: safetensors header length %llu exceeds the file size (%zu bytes)", L->name,
                       (unsigned long long)n, len);
    if (n > ST_MAX_HEADER)
        return pc_fail(PC_ERR_TOO_LARGE, "%s: safetensors header of %llu bytes exceeds the %llu-byte limit", L->name,
                       (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    const uint8_t *data = buf + 8 + n;
    size_t data_len = len - 8 - (size_t)n;

    json J = {.p = (const char *)buf + 8, .end = (const char *)buf + 8 + n, .file = L->name,
              .start = (const char *)buf + 8};
    st_entry *ents = NULL;
    size_t count = 0, cap = 0;
    pc_status st = PC_OK;
    const char *why = NULL;
    int have_meta = 0;

    if (!json_expect(&J, '{')) goto json_error;
    if (!json_peek(&J, '}')) {
        do {
            char *key = NULL;
            if (!json_string(&J, &key)) goto json_error;
            if (!json_expect(&J, ':')) {
                pc_free(key);
                goto json_error;
            }
            if (strcmp(key, "__metadata__") == 0) {
                pc_free(key);
                if (have_meta) {
                    st = pc_fail(PC_ERR_FORMAT, "%s: two \"__metadata__\" entries in the safetensors header", L->name);
                    goto done;
                }
                have_meta = 1;
                /* A map of strings to strings; validated, not kept. */
                if (!json_expect(&J, '{')) goto json_error;
                if (!json_peek(&J, '}')) {
                    do {
                        if (!json_string(&J, NULL) || !json_expect(&J, ':')) goto json_error;
                        if (!json_peek(&J, '"')) {
                            why = "__metadata__ values must be strings";
                            goto json_error;
                        }
                        if (!json_string(&J, NULL)) goto json_error;
                    } while (json_peek(&J, ',') && J.p++);
                }
                if (!json_expect(&J, '}')) goto json_error;
                continue;
            }
            if (count == cap) {
                size_t ncap = cap ? 2 * cap : 64;
                st_entry *ne = pc_calloc(ncap, sizeof *ne);
                if (!ne) {
                    pc_free(key);
                    st = pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", L->name);
                    goto done;
                }
                if (count) memcpy(ne, ents, count * sizeof *ne);
                pc_free(ents);
                ents = ne;
                cap = ncap;
            }
            for (size_t i = 0; i < count; i++)
                if (strcmp(ents[i].name, key) == 0) {
                    st = pc_fail(PC_ERR_FORMAT, "%s: tensor '%s' appears twice in the safetensors header", L->name, key);
                    pc_free(key);
                    goto done;
                }
            st_entry *e = &ents[count++];
            memset(e, 0, sizeof *e);
            e->name = key;
            if ((st = st_parse_entry(L, &J, e)) != PC_OK) goto done;
        } while (json_peek(&J, ',') && J.p++);
    }
    if (!json_expect(&J, '}')) goto json_error;
    json_ws(&J);
    if (J.p != J.end) {
        why = "trailing bytes after the header object";
        goto json_error;
    }

    /* Sizes and offsets, all before any allocation of tensor data. */
    for (size_t i = 0; i < count; i++) {
        st_entry *e = &ents[i];
        if ((st = shape_numel(L, e->name, e->ndim, e->shape, &e->numel)) != PC_OK) goto done;
        size_t nbytes;
        if (!pc_mul_size((size_t)e->numel, e->itemsize, &nbytes)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "%s: tensor '%s': byte size overflows", L->name, e->name);
            goto done;
        }
        if (e->begin > e->end || (uint64_t)e->end > data_len) {
            st = pc_fail(PC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] outside the %zu-byte data section",
                         L->name, e->name, (long long)e->begin, (long long)e->end, data_len);
            goto done;
        }
        if ((uint64_t)(e->end - e->begin) != nbytes) {
            st = pc_fail(PC_ERR_FORMAT, "%s: tensor '%s': data_offsets span %lld bytes but %s%s needs %zu", L->name,
                         e->name, (long long)(e->end - e->begin), e->dtype_str, e->ndim ? " of that shape" : " scalar",
                         nbytes);
            goto done;
        }
    }
    if (count > 1) {
        st_entry **order = pc_malloc(count * sizeof *order);
        if (!order) {
            st = pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", L->name);
            goto done;
        }
        for (size_t i = 0; i < count; i++) order[i] = &ents[i];
        qsort(order, count, sizeof *order, st_cmp_begin);
        for (size_t i = 1; i < count; i++)
            if (order[i]->begin < order[i - 1]->end && order[i]->begin < order[i]->end) {
                st = pc_fail(PC_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data section ([%lld, %lld] and [%lld, %lld])",
                             L->name, order[i - 1]->name, order[i]->name, (long long)order[i - 1]->begin,
                             (long long)order[i - 1]->end, (long long)order[i]->begin, (long long)order[i]->end);
                break;
            }
        pc_free(order);
        if (st != PC_OK) goto done;
    }

    for (size_t i = 0; i < count; i++) {
        st_entry *e = &ents[i];
        if (!loader_wants(L, e->name)) continue;
        pc_tensor *t = NULL;
        if ((st = loader_add(L, e->name, e->dtype, e->ndim, e->shape, e->numel, &t)) != PC_OK) goto done;
        if (t->data) convert_run(t->data, data + e->begin, e->dtype, (size_t)e->numel);
    }
    goto done;

json_error:
    st = pc_fail(PC_ERR_FORMAT, "%s: bad safetensors header JSON: %s at header byte %ld", L->name,
                 why ? why : J.err ? J.err : "syntax error", (long)(J.p - J.start));
done:
    st_entries_free(ents, count);
    return st;
}

/* =============================================================================================
 * PyTorch .pth (zip and legacy) - see below
 * =========================================================================================== */

static pc_status load_pth_zip(loader *L, const uint8_t *buf, size_t len);
static pc_status load_pth_legacy(loader *L, const uint8_t *buf, size_t len);

/* =============================================================================================
 * Entry points
 * =========================================================================================== */

pc_status pc_weights_load_memory(const uint8_t *buf, size_t len, const char *name, pc_tensor_filter filter,
                                 void *user, pc_tensor_dict **out) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_weights_load_memory: out is NULL");
    *out = NULL;
    if (!name) name = "<memory>";
    if (!buf && len) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: NULL buffer", name);
    pc_tensor_dict *d = pc_calloc(1, sizeof *d);
    if (!d) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", name);
    loader L = {.name = name, .filter = filter, .user = user, .dict = d};
    pc_status st;
    if (len == 0) {
        st = pc_fail(PC_ERR_FORMAT, "%s: empty file", name);
    } else if (len >= 4 && memcmp(buf, "PK\x03\x04", 4) == 0) {
        snprintf(d->format, sizeof d->format, "pth-zip");
        st = load_pth_zip(&L, buf, len);
    } else if (len >= 2 && buf[0] == 0x80 && buf[1] >= 2 && buf[1] <= 5) {
        snprintf(d->format, sizeof d->format, "pth-legacy");
        st = load_pth_legacy(&L, buf, len);
    } else if (len >= 9 && buf[4] == 0 && buf[5] == 0 && buf[6] == 0 && buf[7] == 0 && buf[8] == '{') {
        /* A safetensors header is < 100 MB, so the high half of its length is zero, and the JSON
         * starts right after. */
        snprintf(d->format, sizeof d->format, "safetensors");
        st = load_safetensors(&L, buf, len);
    } else if (len >= 262 && memcmp(buf + 257, "ustar", 5) == 0) {
        st = pc_fail(PC_ERR_UNSUPPORTED, "%s: a tar archive (PyTorch's pre-0.4 format): re-save it with a current "
                     "torch.save", name);
    } else {
        st = pc_fail(PC_ERR_FORMAT, "%s: not a recognised weights file (expected a PyTorch .pth - zip or legacy - "
                     "or a .safetensors file)", name);
    }
    if (st != PC_OK) {
        pc_tensor_dict_free(d);
        return st;
    }
    *out = d;
    return PC_OK;
}

pc_status pc_weights_load(const char *path, pc_tensor_filter filter, void *user, pc_tensor_dict **out) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_weights_load: out is NULL");
    *out = NULL;
    if (!path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_weights_load: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pc_fail(errno == ENOENT ? PC_ERR_NOT_FOUND : PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pc_fail(PC_ERR_IO, "%s: not a regular file", path);
    }
    size_t len = (size_t)sb.st_size;
    if (len == 0) {
        close(fd);
        return pc_fail(PC_ERR_FORMAT, "%s: empty file", path);
    }
    /* Mapped, not read: tensors are converted straight from the page cache into their buffers. */
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        /* Fall back to reading (e.g. a file system without mmap). */
        uint8_t *data;
        pc_status st = pc_read_file(path, &data, &len);
        if (st != PC_OK) return st;
        st = pc_weights_load_memory(data, len, path, filter, user, out);
        pc_free(data);
        return st;
    }
    madvise(map, len, MADV_SEQUENTIAL);
    pc_status st = pc_weights_load_memory(map, len, path, filter, user, out);
    munmap(map, len);
    return st;
}

/* =============================================================================================
 * PyTorch zip format
 * =========================================================================================== */

static pc_status load_pth_zip(loader *L, const uint8_t *buf, size_t len) {
    (void)buf;
    (void)len;
    return pc_fail(PC_ERR_UNSUPPORTED, "%s: PyTorch zip .pth reading is not implemented yet", L->name);
}

static pc_status load_pth_legacy(loader *L, const uint8_t *buf, size_t len) {
    (void)buf;
    (void)len;
    return pc_fail(PC_ERR_UNSUPPORTED, "%s: legacy PyTorch .pth reading is not implemented yet", L->name);
}
