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

static const char *dtype_name(pc_dtype dt) {
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

float pc_f16_to_f32_ref(uint16_t h) { return f16_to_f32(h); }

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* Eight at a time with AVX2 integer ops (F16C's vcvtph2ps would quiet signalling NaNs; this keeps
 * every payload, like f16_to_f32): rebias the exponent, rebias infinities and NaNs once more, and
 * normalise subnormals by subtracting 2^-14 as a float (exact: the result m * 2^-24 is a normal float). */
__attribute__((target("avx2"))) static void f16_run_avx2(float *out, const uint8_t *src, size_t n) {
    const __m256i low15 = _mm256_set1_epi32(0x7fff), expmask = _mm256_set1_epi32(0x7c00 << 13);
    const __m256i bias = _mm256_set1_epi32(112 << 23), one = _mm256_set1_epi32(1 << 23);
    const __m256i signbit = _mm256_set1_epi32(0x8000);
    const __m256 magic = _mm256_set1_ps(0x1p-14f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + 2 * i)));
        __m256i o = _mm256_slli_epi32(_mm256_and_si256(h, low15), 13);
        __m256i exp = _mm256_and_si256(o, expmask);
        o = _mm256_add_epi32(o, bias);
        __m256i inf_nan = _mm256_add_epi32(o, bias);
        __m256 sub = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_add_epi32(o, one)), magic);
        o = _mm256_blendv_epi8(o, inf_nan, _mm256_cmpeq_epi32(exp, expmask));
        o = _mm256_blendv_epi8(o, _mm256_castps_si256(sub), _mm256_cmpeq_epi32(exp, _mm256_setzero_si256()));
        o = _mm256_or_si256(o, _mm256_slli_epi32(_mm256_and_si256(h, signbit), 16));
        _mm256_storeu_si256((__m256i *)(out + i), o);
    }
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = f16_to_f32(h);
    }
}
#endif

/* n float16 values at src (any alignment) -> float32. */
static void f16_run_fast(float *out, const uint8_t *src, size_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
    static int have_avx2 = -1;
    if (have_avx2 < 0) have_avx2 = __builtin_cpu_supports("avx2");
    if (have_avx2) {
        f16_run_avx2(out, src, n);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);
        out[i] = f16_to_f32(h);
    }
}

void pc_f16_to_f32(float *out, const uint16_t *src, size_t n) { f16_run_fast(out, (const uint8_t *)src, n); }

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
        f16_run_fast(out, src, n);
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
static void convert_strided(float *out, const uint8_t *base, pc_dtype dt, int32_t ndim, const int64_t *shape,
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

/* Where a kept tensor's values are: converted in one pass once every tensor is known, into one
 * arena sized for all of them. */
typedef struct pending {
    const uint8_t *base;  /* the storage's first byte */
    int64_t offset;       /* in elements */
    int64_t stride[PC_TENSOR_MAX_DIMS];
} pending;

typedef struct loader {
    const char *name; /* the file, for messages */
    pc_tensor_filter filter;
    void *user;
    pc_tensor_dict *dict;
    size_t cap;
    pending *pend; /* parallel to dict->tensors */
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

/* Append a tensor (name copied; names are unique by the time they get here) whose values are at
 * base[offset + sum idx * stride] (stride NULL: contiguous). Its float32 values are filled in by
 * loader_finish. The caller has checked that every addressed element lies inside the file. */
static pc_status loader_add(loader *L, const char *tname, pc_dtype dt, int32_t ndim, const int64_t *shape,
                            int64_t numel, const uint8_t *base, int64_t offset, const int64_t *stride) {
    pc_tensor_dict *D = L->dict;
    if (D->count == L->cap) {
        size_t ncap = L->cap ? 2 * L->cap : 64;
        pc_tensor *nt = pc_calloc(ncap, sizeof *nt);
        pending *np = pc_calloc(ncap, sizeof *np);
        if (!nt || !np) {
            pc_free(nt);
            pc_free(np);
            return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory for the tensor list", L->name);
        }
        if (D->count) {
            memcpy(nt, D->tensors, D->count * sizeof *nt);
            memcpy(np, L->pend, D->count * sizeof *np);
        }
        pc_free(D->tensors);
        pc_free(L->pend);
        D->tensors = nt;
        L->pend = np;
        L->cap = ncap;
    }
    pc_tensor *t = &D->tensors[D->count];
    pending *pd = &L->pend[D->count];
    memset(t, 0, sizeof *t);
    size_t len = strlen(tname);
    t->name = pc_malloc(len + 1);
    if (!t->name) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", L->name);
    memcpy(t->name, tname, len + 1);
    D->count++; /* from here on the dictionary owns the name */
    t->dtype = dt;
    t->ndim = ndim;
    t->numel = numel;
    pd->base = base;
    pd->offset = offset;
    int64_t contiguous = 1;
    for (int32_t d = ndim - 1; d >= 0; d--) {
        t->shape[d] = shape[d];
        pd->stride[d] = stride ? stride[d] : contiguous;
        contiguous *= shape[d];
    }
    return PC_OK;
}

/* Large arenas are mapped directly and asked for transparent huge pages: faulting in hundreds of
 * megabytes 4 KiB at a time costs more than converting them. */
#define ARENA_MMAP_MIN ((size_t)4 << 20)
#define ARENA_ALIGN ((size_t)2 << 20)

static size_t round64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Allocate one arena for every float tensor and convert them all (in parallel over tensors). */
static pc_status loader_finish(loader *L) {
    pc_tensor_dict *D = L->dict;
    size_t total = 0;
    for (size_t i = 0; i < D->count; i++)
        if (dtype_is_float(D->tensors[i].dtype)) {
            size_t bytes = round64((size_t)D->tensors[i].numel * sizeof(float));
            if (!pc_add_size(total, bytes, &total)) return pc_fail(PC_ERR_TOO_LARGE, "%s: tensors too large", L->name);
        }
    if (total == 0) return PC_OK;
    uint8_t *arena = NULL;
    if (total >= ARENA_MMAP_MIN && total <= SIZE_MAX - ARENA_ALIGN) {
        size_t maplen = total + ARENA_ALIGN;
        void *m = mmap(NULL, maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            D->arena_map = m;
            D->arena_map_len = maplen;
            arena = (uint8_t *)(((uintptr_t)m + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1));
#ifdef MADV_HUGEPAGE
            madvise(arena, total, MADV_HUGEPAGE);
#endif
        }
    }
    if (!arena) {
        arena = pc_malloc(total);
        if (!arena)
            return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes for the tensors", L->name, total);
        D->arena = arena;
    }
    size_t at = 0;
    for (size_t i = 0; i < D->count; i++)
        if (dtype_is_float(D->tensors[i].dtype)) {
            D->tensors[i].data = (float *)(arena + at);
            at += round64((size_t)D->tensors[i].numel * sizeof(float));
        }
    long n = (long)D->count;
#pragma omp parallel for schedule(dynamic, 1) if (total > ARENA_MMAP_MIN)
    for (long i = 0; i < n; i++) {
        pc_tensor *t = &D->tensors[i];
        if (t->data)
            convert_strided(t->data, L->pend[i].base, t->dtype, t->ndim, t->shape, L->pend[i].stride, L->pend[i].offset,
                            t->numel);
    }
    return PC_OK;
}

void pc_tensor_dict_free(pc_tensor_dict *d) {
    if (!d) return;
    for (size_t i = 0; i < d->count; i++) pc_free(d->tensors[i].name);
    pc_free(d->tensors);
    if (d->arena_map) munmap(d->arena_map, d->arena_map_len);
    pc_free(d->arena);
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
        if ((st = loader_add(L, e->name, e->dtype, e->ndim, e->shape, e->numel, data + e->begin, 0, NULL)) != PC_OK)
            goto done;
    }
    st = loader_finish(L);
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
    pc_free(L.pend);
    if (st != PC_OK) {
        pc_tensor_dict_free(d);
        return st;
    }
    *out = d;
    return PC_OK;
}

pc_status pc_weights_load(const char *path, pc_tensor_filter filter, void *user, pc_tensor_dict **out) {
    pc_threads_apply();
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
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
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
 * Storages: the raw arrays tensors point into (a zip entry, or a run of bytes in a legacy file)
 * =========================================================================================== */

typedef struct pstorage {
    char *key;              /* the persistent id's key ("0", "1", ... or a legacy object id) */
    pc_dtype dtype;
    size_t itemsize;
    const char *type_name;  /* "FloatStorage", ... (static) */
    int64_t declared_numel; /* from the persistent id */
    int sized;              /* nbytes known (from the zip directory, or the legacy scan) */
    int loaded;             /* data known (pointer into the file, or inflated) */
    const void *entry;      /* zip: its directory entry */
    const uint8_t *data;
    size_t nbytes;
    uint8_t *owned;         /* inflated copy (deflated zip entries), or NULL */
    uint32_t crc;           /* zip: the entry's CRC-32, to check */
} pstorage;

/* The torch storage types a state dict may reference, and their element types. Quantised and
 * complex storages are known to torch but not to us. */
static const struct {
    const char *name;
    pc_dtype dtype;
    size_t itemsize;
} storage_types[] = {
    {"FloatStorage", PC_DTYPE_F32, 4}, {"HalfStorage", PC_DTYPE_F16, 2},  {"BFloat16Storage", PC_DTYPE_BF16, 2},
    {"DoubleStorage", PC_DTYPE_F64, 8}, {"LongStorage", PC_DTYPE_I64, 8}, {"IntStorage", PC_DTYPE_I32, 4},
    {"ShortStorage", PC_DTYPE_OTHER, 2}, {"CharStorage", PC_DTYPE_OTHER, 1}, {"ByteStorage", PC_DTYPE_OTHER, 1},
    {"BoolStorage", PC_DTYPE_OTHER, 1},
};
#define N_STORAGE_TYPES ((int)(sizeof storage_types / sizeof storage_types[0]))

/* =============================================================================================
 * A restricted pickle machine
 *
 * It builds plain data (ints, floats, strings, tuples, lists, dicts) and exactly three kinds of calls:
 * collections.OrderedDict(), torch._utils._rebuild_tensor_v2(...) (and its v1 / _rebuild_parameter
 * wrappers), which produce tensor descriptions, and persistent ids naming storages. Every other global
 * is refused when it is read, as is every opcode outside the list below: nothing in the file can cause
 * code to run. Objects have reference semantics (the memo shares them, SETITEMS mutates a memoised
 * dict); all of them are kept in one registry and freed together.
 * =========================================================================================== */

typedef enum pk_kind {
    PK_NONE, PK_BOOL, PK_INT, PK_BIGINT, PK_FLOAT, PK_STR, PK_BYTES, PK_TUPLE, PK_LIST, PK_DICT,
    PK_GLOBAL, PK_STORAGE, PK_TENSOR
} pk_kind;

static const char *const pk_kind_names[] = {"None", "bool", "int", "long int", "float", "str", "bytes", "tuple",
                                            "list", "dict", "global", "storage", "tensor"};

typedef enum pk_global {
    G_ORDERED_DICT, G_REBUILD_TENSOR_V2, G_REBUILD_TENSOR, G_REBUILD_PARAMETER, G_REBUILD_PARAMETER_STATE,
    G_STORAGE_TYPE /* + index into storage_types */
} pk_global;

typedef struct pk_tensor {
    int32_t storage;        /* index into the storage table */
    int64_t storage_offset; /* elements */
    int32_t ndim;
    int64_t shape[PC_TENSOR_MAX_DIMS], stride[PC_TENSOR_MAX_DIMS];
} pk_tensor;

typedef struct pk_obj pk_obj;
struct pk_obj {
    pk_kind kind;
    union {
        int64_t i;                         /* INT, BOOL */
        double f;                          /* FLOAT */
        struct { char *s; size_t len; } str; /* STR, BYTES, BIGINT (little-endian two's complement bytes) */
        struct { pk_obj **v; size_t n, cap; } seq; /* TUPLE, LIST, DICT (key, value pairs: n = 2 * items) */
        int global;                        /* GLOBAL: pk_global (+ storage type index) */
        struct { int32_t index; int64_t offset, numel; } storage; /* STORAGE (a view: legacy offset/size) */
        pk_tensor *tensor;                 /* TENSOR */
    } u;
};

#define PK_MAX_OBJECTS ((size_t)1 << 22) /* a torchvision state dict needs ~10^4 */
#define PK_MAX_MEMO ((size_t)1 << 22)

typedef struct pvm {
    loader *L;
    const char *what; /* which pickle, for messages ("data.pkl") */
    const uint8_t *start, *p, *end;
    pk_obj **stack;
    size_t sp, scap;
    size_t *marks;
    size_t nmarks, mcap;
    pk_obj **memo;
    size_t nmemo;     /* slots allocated */
    size_t memo_len;  /* slots set (what MEMOIZE numbers from, as len(memo) in Python) */
    pk_obj **objs; /* every object made, for freeing */
    size_t nobjs, ocap;
    pstorage *st; /* storages named by persistent ids, shared by all pickles of a file */
    size_t nst, stcap;
    int legacy;   /* persistent ids have the legacy 6-tuple form */
} pvm;

static pc_status vfail(pvm *V, pc_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static pc_status vfail(pvm *V, pc_status status, const char *fmt, ...) {
    char msg[PC_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    long at = V->p ? (long)(V->p - V->start) : 0;
    return pc_fail(status, "%s: %s, byte %ld: %s", V->L->name, V->what, at, msg);
}

/* Generic growth of a pc_malloc'd array (no pc_realloc in internal.h). */
static int grow(void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need) {
        if (!pc_mul_size(ncap, 2, &ncap)) return 0;
    }
    size_t bytes;
    if (!pc_mul_size(ncap, elem, &bytes)) return 0;
    void *n = pc_malloc(bytes);
    if (!n) return 0;
    if (*cap) memcpy(n, *arr, *cap * elem);
    pc_free(*arr);
    *arr = n;
    *cap = ncap;
    return 1;
}

static void pvm_free(pvm *V) {
    for (size_t i = 0; i < V->nobjs; i++) {
        pk_obj *o = V->objs[i];
        if (o->kind == PK_STR || o->kind == PK_BYTES || o->kind == PK_BIGINT) pc_free(o->u.str.s);
        else if (o->kind == PK_TUPLE || o->kind == PK_LIST || o->kind == PK_DICT) pc_free(o->u.seq.v);
        else if (o->kind == PK_TENSOR) pc_free(o->u.tensor);
        pc_free(o);
    }
    pc_free(V->objs);
    pc_free(V->stack);
    pc_free(V->marks);
    pc_free(V->memo);
    for (size_t i = 0; i < V->nst; i++) {
        pc_free(V->st[i].key);
        pc_free(V->st[i].owned);
    }
    pc_free(V->st);
    memset(V, 0, sizeof *V);
}

static pk_obj *pk_new(pvm *V, pk_kind kind) {
    if (V->nobjs >= PK_MAX_OBJECTS) {
        vfail(V, PC_ERR_TOO_LARGE, "more than %zu objects in the pickle", PK_MAX_OBJECTS);
        return NULL;
    }
    if (!grow((void **)&V->objs, &V->ocap, V->nobjs + 1, sizeof *V->objs)) {
        vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    pk_obj *o = pc_calloc(1, sizeof *o);
    if (!o) {
        vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        return NULL;
    }
    o->kind = kind;
    V->objs[V->nobjs++] = o;
    return o;
}

static pc_status push(pvm *V, pk_obj *o) {
    if (!o) return PC_ERR_NO_MEMORY; /* message already set by pk_new */
    if (!grow((void **)&V->stack, &V->scap, V->sp + 1, sizeof *V->stack)) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
    V->stack[V->sp++] = o;
    return PC_OK;
}

/* The bottom of the current frame: objects below the last MARK are not reachable by plain pops. */
static size_t frame_base(const pvm *V) { return V->nmarks ? V->marks[V->nmarks - 1] : 0; }

static pc_status pop(pvm *V, pk_obj **o) {
    if (V->sp <= frame_base(V)) return vfail(V, PC_ERR_FORMAT, "pickle stack underflow");
    *o = V->stack[--V->sp];
    return PC_OK;
}

static pc_status pop_mark(pvm *V, size_t *base) {
    if (V->nmarks == 0) return vfail(V, PC_ERR_FORMAT, "no MARK on the pickle stack");
    *base = V->marks[--V->nmarks];
    return PC_OK;
}

static pc_status seq_append(pvm *V, pk_obj *seq, pk_obj *item) {
    if (!grow((void **)&seq->u.seq.v, &seq->u.seq.cap, seq->u.seq.n + 1, sizeof(pk_obj *)))
        return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
    seq->u.seq.v[seq->u.seq.n++] = item;
    return PC_OK;
}

/* A tuple of stack[base .. sp). */
static pc_status make_tuple(pvm *V, size_t base) {
    pk_obj *t = pk_new(V, PK_TUPLE);
    if (!t) return PC_ERR_NO_MEMORY;
    for (size_t i = base; i < V->sp; i++) {
        pc_status st = seq_append(V, t, V->stack[i]);
        if (st) return st;
    }
    V->sp = base;
    return push(V, t);
}

static pc_status dict_set(pvm *V, pk_obj *d, pk_obj *k, pk_obj *v) {
    if (d->kind != PK_DICT) return vfail(V, PC_ERR_FORMAT, "SETITEM on a %s, not a dict", pk_kind_names[d->kind]);
    /* A later value for an equal string key replaces the earlier one, as in Python. */
    if (k->kind == PK_STR)
        for (size_t i = 0; i < d->u.seq.n; i += 2) {
            pk_obj *ok = d->u.seq.v[i];
            if (ok->kind == PK_STR && ok->u.str.len == k->u.str.len && memcmp(ok->u.str.s, k->u.str.s, k->u.str.len) == 0) {
                d->u.seq.v[i + 1] = v;
                return PC_OK;
            }
        }
    pc_status st = seq_append(V, d, k);
    return st ? st : seq_append(V, d, v);
}

static int need(pvm *V, size_t n) { return (size_t)(V->end - V->p) >= n; }

static uint64_t rd_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static pc_status push_string(pvm *V, pk_kind kind, uint64_t n) {
    if (!need(V, n)) return vfail(V, PC_ERR_FORMAT, "truncated pickle (a %llu-byte string runs past the end)", (unsigned long long)n);
    pk_obj *o = pk_new(V, kind);
    if (!o) return PC_ERR_NO_MEMORY;
    o->u.str.s = pc_malloc((size_t)n + 1);
    if (!o->u.str.s) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
    memcpy(o->u.str.s, V->p, (size_t)n);
    o->u.str.s[n] = '\0';
    o->u.str.len = (size_t)n;
    V->p += n;
    return push(V, o);
}

static pc_status push_int(pvm *V, int64_t v) {
    pk_obj *o = pk_new(V, PK_INT);
    if (!o) return PC_ERR_NO_MEMORY;
    o->u.i = v;
    return push(V, o);
}

/* Printable copy of an untrusted name for messages. */
static void clean_name(char *dst, size_t size, const uint8_t *s, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n && j + 1 < size; i++) dst[j++] = (s[i] >= 0x20 && s[i] < 0x7f) ? (char)s[i] : '?';
    dst[j] = '\0';
}

static pc_status resolve_global(pvm *V, const uint8_t *mod, size_t mlen, const uint8_t *name, size_t nlen) {
    char m[128], n[128];
    clean_name(m, sizeof m, mod, mlen);
    clean_name(n, sizeof n, name, nlen);
    int g = -1;
    if (mlen == strlen(m) && nlen == strlen(n)) { /* no NULs or odd bytes */
        if (!strcmp(m, "collections") && !strcmp(n, "OrderedDict")) g = G_ORDERED_DICT;
        else if (!strcmp(m, "torch._utils") && !strcmp(n, "_rebuild_tensor_v2")) g = G_REBUILD_TENSOR_V2;
        else if (!strcmp(m, "torch._utils") && !strcmp(n, "_rebuild_tensor")) g = G_REBUILD_TENSOR;
        else if (!strcmp(m, "torch._utils") && !strcmp(n, "_rebuild_parameter")) g = G_REBUILD_PARAMETER;
        else if (!strcmp(m, "torch._utils") && !strcmp(n, "_rebuild_parameter_with_state")) g = G_REBUILD_PARAMETER_STATE;
        else if (!strcmp(m, "torch")) {
            for (int i = 0; i < N_STORAGE_TYPES; i++)
                if (!strcmp(n, storage_types[i].name)) g = G_STORAGE_TYPE + i;
            if (g < 0 && nlen > 7 && !strcmp(n + nlen - 7, "Storage"))
                return vfail(V, PC_ERR_UNSUPPORTED, "storage type torch.%s is not supported (float32/16/64, bfloat16 "
                             "and integer storages are)", n);
        }
    }
    if (g < 0)
        return vfail(V, PC_ERR_UNSUPPORTED, "pickle global %s.%s is not allowed: a state dict needs only "
                     "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage, and this reader "
                     "never runs code from a file (save model.state_dict() with torch.save)", m, n);
    pk_obj *o = pk_new(V, PK_GLOBAL);
    if (!o) return PC_ERR_NO_MEMORY;
    o->u.global = g;
    return push(V, o);
}

/* A newline-terminated line of a GLOBAL opcode. */
static pc_status read_line(pvm *V, const uint8_t **s, size_t *n) {
    const uint8_t *nl = memchr(V->p, '\n', (size_t)(V->end - V->p));
    if (!nl) return vfail(V, PC_ERR_FORMAT, "truncated pickle (GLOBAL without a newline)");
    *s = V->p;
    *n = (size_t)(nl - V->p);
    V->p = nl + 1;
    return PC_OK;
}

static int64_t tuple_len(const pk_obj *o) { return o->kind == PK_TUPLE ? (int64_t)o->u.seq.n : -1; }

/* persistent_load: ('storage', torch.XStorage, key, location, numel[, view_metadata]) -> a storage. */
static pc_status persistent_load(pvm *V, pk_obj *pid) {
    int64_t n = tuple_len(pid);
    if (n < 5 || n > 6) return vfail(V, PC_ERR_FORMAT, "persistent id is not a storage tuple");
    pk_obj **v = pid->u.seq.v;
    if (v[0]->kind != PK_STR || strcmp(v[0]->u.str.s, "storage") != 0)
        return vfail(V, PC_ERR_FORMAT, "persistent id of an unknown kind (not 'storage')");
    if (v[1]->kind != PK_GLOBAL || v[1]->u.global < G_STORAGE_TYPE)
        return vfail(V, PC_ERR_FORMAT, "persistent id without a storage type");
    if (v[2]->kind != PK_STR || v[2]->u.str.len == 0 || strlen(v[2]->u.str.s) != v[2]->u.str.len ||
        v[2]->u.str.len > 64 || strchr(v[2]->u.str.s, '/'))
        return vfail(V, PC_ERR_FORMAT, "persistent id with a bad storage key");
    if (v[4]->kind != PK_INT || v[4]->u.i < 0) return vfail(V, PC_ERR_FORMAT, "persistent id with a bad element count");
    int ti = v[1]->u.global - G_STORAGE_TYPE;
    const char *key = v[2]->u.str.s;
    int32_t index = -1;
    for (size_t i = 0; i < V->nst; i++)
        if (strcmp(V->st[i].key, key) == 0) index = (int32_t)i;
    if (index >= 0 && V->st[index].dtype != storage_types[ti].dtype)
        return vfail(V, PC_ERR_FORMAT, "storage '%s' is referenced as both %s and %s", key, V->st[index].type_name,
                     storage_types[ti].name);
    if (index < 0) {
        if (V->nst >= INT32_MAX || !grow((void **)&V->st, &V->stcap, V->nst + 1, sizeof *V->st))
            return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        pstorage *s = &V->st[V->nst];
        memset(s, 0, sizeof *s);
        s->key = pc_malloc(v[2]->u.str.len + 1);
        if (!s->key) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        memcpy(s->key, key, v[2]->u.str.len + 1);
        s->dtype = storage_types[ti].dtype;
        s->itemsize = storage_types[ti].itemsize;
        s->type_name = storage_types[ti].name;
        s->declared_numel = v[4]->u.i;
        index = (int32_t)V->nst++;
    } else if (V->st[index].declared_numel != v[4]->u.i) {
        return vfail(V, PC_ERR_FORMAT, "storage '%s' is declared with %lld and %lld elements", key,
                     (long long)V->st[index].declared_numel, (long long)v[4]->u.i);
    }
    pk_obj *o = pk_new(V, PK_STORAGE);
    if (!o) return PC_ERR_NO_MEMORY;
    o->u.storage.index = index;
    o->u.storage.offset = 0;
    o->u.storage.numel = -1;
    /* Legacy view metadata (torch < 0.4): (view_key, offset, size) of a view into the root storage. */
    if (n == 6 && v[5]->kind != PK_NONE) {
        pk_obj *vm = v[5];
        if (tuple_len(vm) != 3 || vm->u.seq.v[1]->kind != PK_INT || vm->u.seq.v[2]->kind != PK_INT ||
            vm->u.seq.v[1]->u.i < 0 || vm->u.seq.v[2]->u.i < 0)
            return vfail(V, PC_ERR_FORMAT, "bad storage view metadata");
        int64_t end;
        if (__builtin_add_overflow(vm->u.seq.v[1]->u.i, vm->u.seq.v[2]->u.i, &end) || end > v[4]->u.i)
            return vfail(V, PC_ERR_FORMAT, "storage view past the end of storage '%s'", key);
        o->u.storage.offset = vm->u.seq.v[1]->u.i;
        o->u.storage.numel = vm->u.seq.v[2]->u.i;
    }
    return push(V, o);
}

/* A tuple of ints (a tensor's size or stride) into out[]. */
static pc_status int_tuple(pvm *V, const pk_obj *t, const char *what, int64_t *out, int32_t *n) {
    if (t->kind != PK_TUPLE) return vfail(V, PC_ERR_FORMAT, "tensor %s is a %s, not a tuple", what, pk_kind_names[t->kind]);
    if (t->u.seq.n > PC_TENSOR_MAX_DIMS)
        return vfail(V, PC_ERR_UNSUPPORTED, "tensor with more than %d dimensions", PC_TENSOR_MAX_DIMS);
    for (size_t i = 0; i < t->u.seq.n; i++) {
        if (t->u.seq.v[i]->kind != PK_INT)
            return vfail(V, PC_ERR_FORMAT, "tensor %s entry is not an integer (or exceeds 64 bits)", what);
        out[i] = t->u.seq.v[i]->u.i;
    }
    *n = (int32_t)t->u.seq.n;
    return PC_OK;
}

static pc_status reduce(pvm *V) {
    pk_obj *args = NULL, *fn = NULL;
    pc_status st;
    if ((st = pop(V, &args)) || (st = pop(V, &fn))) return st;
    if (fn->kind != PK_GLOBAL) return vfail(V, PC_ERR_FORMAT, "REDUCE calls a %s", pk_kind_names[fn->kind]);
    if (args->kind != PK_TUPLE) return vfail(V, PC_ERR_FORMAT, "REDUCE with %s arguments", pk_kind_names[args->kind]);
    size_t n = args->u.seq.n;
    pk_obj **a = args->u.seq.v;
    switch (fn->u.global) {
    case G_ORDERED_DICT:
        if (n != 0) return vfail(V, PC_ERR_UNSUPPORTED, "OrderedDict() with arguments");
        return push(V, pk_new(V, PK_DICT));
    case G_REBUILD_TENSOR_V2: /* (storage, offset, size, stride, requires_grad, hooks[, metadata]) */
    case G_REBUILD_TENSOR: {  /* (storage, offset, size, stride) */
        size_t want = fn->u.global == G_REBUILD_TENSOR ? 4 : 6;
        if (n < want || n > want + 1)
            return vfail(V, PC_ERR_FORMAT, "_rebuild_tensor with %zu arguments", n);
        if (a[0]->kind != PK_STORAGE) return vfail(V, PC_ERR_FORMAT, "tensor rebuilt from a %s, not a storage", pk_kind_names[a[0]->kind]);
        if (a[1]->kind != PK_INT || a[1]->u.i < 0) return vfail(V, PC_ERR_FORMAT, "tensor with a bad storage offset");
        pk_obj *o = pk_new(V, PK_TENSOR);
        if (!o) return PC_ERR_NO_MEMORY;
        pk_tensor *t = o->u.tensor = pc_calloc(1, sizeof *t);
        if (!t) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        int32_t nstride;
        if ((st = int_tuple(V, a[2], "size", t->shape, &t->ndim)) || (st = int_tuple(V, a[3], "stride", t->stride, &nstride)))
            return st;
        if (nstride != t->ndim)
            return vfail(V, PC_ERR_FORMAT, "tensor stride has %d entries for %d dimensions", (int)nstride, (int)t->ndim);
        t->storage = a[0]->u.storage.index;
        if (__builtin_add_overflow(a[1]->u.i, a[0]->u.storage.offset, &t->storage_offset))
            return vfail(V, PC_ERR_FORMAT, "tensor storage offset overflows");
        return push(V, o);
    }
    case G_REBUILD_PARAMETER:       /* (data, requires_grad, hooks) */
    case G_REBUILD_PARAMETER_STATE: /* (data, requires_grad, hooks, state) */
        if (n < 3 || n > 4 || a[0]->kind != PK_TENSOR) return vfail(V, PC_ERR_FORMAT, "bad _rebuild_parameter arguments");
        return push(V, a[0]);
    default:
        return vfail(V, PC_ERR_FORMAT, "storage type %s called as a function", storage_types[fn->u.global - G_STORAGE_TYPE].name);
    }
}

static pc_status memo_put(pvm *V, uint64_t idx) {
    if (V->sp == 0) return vfail(V, PC_ERR_FORMAT, "memo put on an empty stack");
    if (idx >= PK_MAX_MEMO || idx > (uint64_t)(V->end - V->start))
        return vfail(V, PC_ERR_FORMAT, "memo index %llu out of range", (unsigned long long)idx);
    if (idx >= V->nmemo) {
        size_t cap = V->nmemo;
        if (!grow((void **)&V->memo, &cap, (size_t)idx + 1, sizeof *V->memo)) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
        memset(V->memo + V->nmemo, 0, (cap - V->nmemo) * sizeof *V->memo);
        V->nmemo = cap;
    }
    if (!V->memo[idx]) V->memo_len++;
    V->memo[idx] = V->stack[V->sp - 1];
    return PC_OK;
}

static pc_status memo_get(pvm *V, uint64_t idx) {
    if (idx >= V->nmemo || !V->memo[idx]) return vfail(V, PC_ERR_FORMAT, "memo entry %llu is not set", (unsigned long long)idx);
    return push(V, V->memo[idx]);
}

static const char *opcode_name(uint8_t op) {
    switch (op) {
    case 'i': return "INST";      case 'o': return "OBJ";        case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX"; case 'P': return "PERSID";    case 'S': return "STRING";
    case 'V': return "UNICODE";   case 'I': return "INT";        case 'L': return "LONG";
    case 'F': return "FLOAT";     case 'g': return "GET";        case 'p': return "PUT";
    case 'l': return "LIST";      case 'd': return "DICT";       case 0x82: return "EXT1";
    case 0x83: return "EXT2";     case 0x84: return "EXT4";      case 0x8b: return "LONG4";
    case 0x8f: return "EMPTY_SET"; case 0x90: return "ADDITEMS"; case 0x91: return "FROZENSET";
    case 0x96: return "BYTEARRAY8"; case 0x97: return "NEXT_BUFFER"; case 0x98: return "READONLY_BUFFER";
    case 0x8e: return "BINBYTES8";
    default: return NULL;
    }
}

/* Run one pickle from V->p to its STOP; *result is the object it returns. */
static pc_status pvm_run(pvm *V, const char *what, pk_obj **result) {
    pc_status st = PC_OK;
    V->what = what;
    V->sp = 0;
    V->nmarks = 0;
    if (V->memo) memset(V->memo, 0, V->nmemo * sizeof *V->memo);
    V->memo_len = 0;
    while (st == PC_OK) {
        if (V->p >= V->end) return vfail(V, PC_ERR_FORMAT, "truncated pickle (no STOP opcode)");
        const uint8_t *op_at = V->p;
        uint8_t op = *V->p++;
        pk_obj *a = NULL, *b = NULL, *c = NULL;
        size_t base = 0;
        switch (op) {
        case 0x80: /* PROTO */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            if (*V->p > 5) return vfail(V, PC_ERR_UNSUPPORTED, "pickle protocol %d", *V->p);
            V->p++;
            break;
        case 0x95: /* FRAME: a length hint only */
            if (!need(V, 8)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p += 8;
            break;
        case '.': /* STOP */
            if ((st = pop(V, result))) return st;
            return PC_OK;
        case '(': /* MARK */
            if (!grow((void **)&V->marks, &V->mcap, V->nmarks + 1, sizeof *V->marks)) return vfail(V, PC_ERR_NO_MEMORY, "out of memory");
            V->marks[V->nmarks++] = V->sp;
            break;
        case '0': /* POP */
            st = pop(V, &a);
            break;
        case '1': /* POP_MARK */
            if ((st = pop_mark(V, &base))) return st;
            V->sp = base;
            break;
        case '2': /* DUP */
            if ((st = pop(V, &a)) || (st = push(V, a))) return st;
            st = push(V, a);
            break;
        case 'N': st = push(V, pk_new(V, PK_NONE)); break;
        case 0x88: /* NEWTRUE */
        case 0x89: /* NEWFALSE */
            if (!(a = pk_new(V, PK_BOOL))) return PC_ERR_NO_MEMORY;
            a->u.i = op == 0x88;
            st = push(V, a);
            break;
        case 'J': /* BININT */
            if (!need(V, 4)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            st = push_int(V, (int32_t)(uint32_t)rd_le(V->p, 4));
            V->p += 4;
            break;
        case 'K': /* BININT1 */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            st = push_int(V, *V->p++);
            break;
        case 'M': /* BININT2 */
            if (!need(V, 2)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            st = push_int(V, (int64_t)rd_le(V->p, 2));
            V->p += 2;
            break;
        case 0x8a: { /* LONG1: n bytes of little-endian two's complement */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            size_t n = *V->p++;
            if (!need(V, n)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            if (n <= 8) {
                uint64_t u = n ? rd_le(V->p, (int)n) : 0;
                if (n && n < 8 && (V->p[n - 1] & 0x80)) u |= ~UINT64_C(0) << (8 * n); /* sign-extend */
                V->p += n;
                st = push_int(V, (int64_t)u);
            } else {
                st = push_string(V, PK_BIGINT, n);
            }
            break;
        }
        case 'G': { /* BINFLOAT: big-endian double */
            if (!need(V, 8)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            uint64_t u = 0;
            for (int i = 0; i < 8; i++) u = u << 8 | V->p[i];
            V->p += 8;
            if (!(a = pk_new(V, PK_FLOAT))) return PC_ERR_NO_MEMORY;
            memcpy(&a->u.f, &u, 8);
            st = push(V, a);
            break;
        }
        case 'X':  /* BINUNICODE */
        case 'T':  /* BINSTRING (Python 2) */
        case 'B':  /* BINBYTES */
            if (!need(V, 4)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p += 4;
            st = push_string(V, op == 'B' ? PK_BYTES : PK_STR, rd_le(V->p - 4, 4));
            break;
        case 0x8c: /* SHORT_BINUNICODE */
        case 'U':  /* SHORT_BINSTRING */
        case 'C':  /* SHORT_BINBYTES */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p++;
            st = push_string(V, op == 'C' ? PK_BYTES : PK_STR, V->p[-1]);
            break;
        case 0x8d: /* BINUNICODE8 */
            if (!need(V, 8)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p += 8;
            st = push_string(V, PK_STR, rd_le(V->p - 8, 8));
            break;
        case ')': st = push(V, pk_new(V, PK_TUPLE)); break;
        case 't': /* TUPLE */
            if ((st = pop_mark(V, &base))) return st;
            st = make_tuple(V, base);
            break;
        case 0x85: /* TUPLE1..3 */
        case 0x86:
        case 0x87: {
            size_t k = (size_t)(op - 0x84);
            if (V->sp < frame_base(V) + k) return vfail(V, PC_ERR_FORMAT, "pickle stack underflow");
            st = make_tuple(V, V->sp - k);
            break;
        }
        case ']': st = push(V, pk_new(V, PK_LIST)); break;
        case '}': st = push(V, pk_new(V, PK_DICT)); break;
        case 'a': /* APPEND */
            if ((st = pop(V, &a)) || (st = pop(V, &b))) return st;
            if (b->kind != PK_LIST) return vfail(V, PC_ERR_FORMAT, "APPEND to a %s", pk_kind_names[b->kind]);
            if ((st = seq_append(V, b, a))) return st;
            st = push(V, b);
            break;
        case 'e': /* APPENDS */
            if ((st = pop_mark(V, &base))) return st;
            if (base == 0 || base <= frame_base(V)) return vfail(V, PC_ERR_FORMAT, "pickle stack underflow");
            b = V->stack[base - 1];
            if (b->kind != PK_LIST) return vfail(V, PC_ERR_FORMAT, "APPENDS to a %s", pk_kind_names[b->kind]);
            for (size_t i = base; i < V->sp && st == PC_OK; i++) st = seq_append(V, b, V->stack[i]);
            V->sp = base;
            break;
        case 's': /* SETITEM */
            if ((st = pop(V, &c)) || (st = pop(V, &b)) || (st = pop(V, &a))) return st;
            if ((st = dict_set(V, a, b, c))) return st;
            st = push(V, a);
            break;
        case 'u': /* SETITEMS */
            if ((st = pop_mark(V, &base))) return st;
            if (base == 0 || base <= frame_base(V)) return vfail(V, PC_ERR_FORMAT, "pickle stack underflow");
            if ((V->sp - base) % 2) return vfail(V, PC_ERR_FORMAT, "SETITEMS with an odd number of items");
            a = V->stack[base - 1];
            for (size_t i = base; i < V->sp && st == PC_OK; i += 2) st = dict_set(V, a, V->stack[i], V->stack[i + 1]);
            V->sp = base;
            break;
        case 'c': { /* GLOBAL module\nname\n */
            const uint8_t *m = NULL, *n = NULL;
            size_t ml = 0, nl = 0;
            if ((st = read_line(V, &m, &ml)) || (st = read_line(V, &n, &nl))) return st;
            V->p = op_at; /* so that the message points at the opcode */
            st = resolve_global(V, m, ml, n, nl);
            V->p = n + nl + 1;
            break;
        }
        case 0x93: /* STACK_GLOBAL */
            if ((st = pop(V, &b)) || (st = pop(V, &a))) return st;
            if (a->kind != PK_STR || b->kind != PK_STR) return vfail(V, PC_ERR_FORMAT, "STACK_GLOBAL of non-strings");
            st = resolve_global(V, (const uint8_t *)a->u.str.s, a->u.str.len, (const uint8_t *)b->u.str.s, b->u.str.len);
            break;
        case 'R': st = reduce(V); break;
        case 'b': /* BUILD: only setting attributes of a dict (OrderedDict._metadata) or a tensor; ignored */
            if ((st = pop(V, &a)) || (st = pop(V, &b))) return st;
            if (b->kind != PK_DICT && b->kind != PK_TENSOR)
                return vfail(V, PC_ERR_UNSUPPORTED, "BUILD on a %s", pk_kind_names[b->kind]);
            st = push(V, b);
            break;
        case 'Q': /* BINPERSID */
            if ((st = pop(V, &a))) return st;
            st = persistent_load(V, a);
            break;
        case 'q': /* BINPUT */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            st = memo_put(V, *V->p++);
            break;
        case 'r': /* LONG_BINPUT */
            if (!need(V, 4)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p += 4;
            st = memo_put(V, rd_le(V->p - 4, 4));
            break;
        case 0x94: /* MEMOIZE */
            st = memo_put(V, V->memo_len);
            break;
        case 'h': /* BINGET */
            if (!need(V, 1)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            st = memo_get(V, *V->p++);
            break;
        case 'j': /* LONG_BINGET */
            if (!need(V, 4)) return vfail(V, PC_ERR_FORMAT, "truncated pickle");
            V->p += 4;
            st = memo_get(V, rd_le(V->p - 4, 4));
            break;
        default: {
            V->p = op_at;
            const char *name = opcode_name(op);
            if (name)
                return vfail(V, PC_ERR_UNSUPPORTED, "pickle opcode %s (0x%02x) is not allowed in a state dict", name, op);
            return vfail(V, PC_ERR_UNSUPPORTED, "unknown pickle opcode 0x%02x", op);
        }
        }
    }
    return st;
}

/* =============================================================================================
 * From the unpickled object to the dictionary
 * =========================================================================================== */

/* Storage data for a tensor: zip entries are looked up (and inflated) on first use; legacy storages
 * were located when the file was scanned. */
typedef pc_status (*storage_resolver)(pvm *V, pstorage *s, void *ctx, int load);

static pc_status add_tensor(pvm *V, const char *tname, const pk_tensor *pt, storage_resolver resolve, void *ctx) {
    loader *L = V->L;
    pstorage *s = &V->st[pt->storage];
    int64_t numel = 0;
    pc_status st;
    if ((st = shape_numel(L, tname, pt->ndim, pt->shape, &numel))) return st;
    if (!s->sized && (st = resolve(V, s, ctx, 0))) return st;
    /* Every element the tensor addresses must lie inside its storage. */
    int64_t cap = (int64_t)(s->nbytes / s->itemsize);
    if (numel > 0) {
        int64_t last = pt->storage_offset;
        int ovf = 0;
        for (int32_t d = 0; d < pt->ndim; d++) {
            if (pt->stride[d] < 0)
                return pc_fail(PC_ERR_FORMAT, "%s: tensor '%s': negative stride %lld", L->name, tname, (long long)pt->stride[d]);
            int64_t term;
            ovf |= __builtin_mul_overflow(pt->shape[d] - 1, pt->stride[d], &term);
            ovf |= __builtin_add_overflow(last, term, &last);
        }
        if (ovf || last >= cap)
            return pc_fail(PC_ERR_FORMAT, "%s: tensor '%s' (offset %lld, %lld elements) addresses elements beyond its "
                           "storage '%s' of %lld %s elements", L->name, tname, (long long)pt->storage_offset,
                           (long long)numel, s->key, (long long)cap, dtype_name(s->dtype));
    }
    if (!loader_wants(L, tname)) return PC_OK; /* its storage is not even read */
    if (!s->loaded && (st = resolve(V, s, ctx, 1))) return st;
    return loader_add(L, tname, s->dtype, pt->ndim, pt->shape, numel, s->data, pt->storage_offset, pt->stride);
}

/* The state dict: the pickle's top dict, or (for training checkpoints) a dict under "state_dict" or
 * "model" when the top one holds no tensors. */
static pc_status add_state_dict(pvm *V, pk_obj *top, storage_resolver resolve, void *ctx) {
    if (top->kind != PK_DICT)
        return pc_fail(PC_ERR_FORMAT, "%s: the pickle holds a %s, not a dictionary of tensors", V->L->name,
                       pk_kind_names[top->kind]);
    size_t ntensors = 0;
    for (size_t i = 0; i < top->u.seq.n; i += 2) ntensors += top->u.seq.v[i + 1]->kind == PK_TENSOR;
    if (ntensors == 0)
        for (size_t i = 0; i < top->u.seq.n; i += 2) {
            pk_obj *k = top->u.seq.v[i], *v = top->u.seq.v[i + 1];
            if (k->kind == PK_STR && v->kind == PK_DICT && (!strcmp(k->u.str.s, "state_dict") || !strcmp(k->u.str.s, "model")))
                return add_state_dict(V, v, resolve, ctx);
        }
    for (size_t i = 0; i < top->u.seq.n; i += 2) {
        pk_obj *k = top->u.seq.v[i], *v = top->u.seq.v[i + 1];
        if (k->kind != PK_STR || strlen(k->u.str.s) != k->u.str.len)
            return pc_fail(PC_ERR_FORMAT, "%s: a state-dict key is of type %s, not a string", V->L->name, pk_kind_names[k->kind]);
        if (v->kind != PK_TENSOR) continue; /* e.g. non-tensor extras: not weights */
        pc_status st = add_tensor(V, k->u.str.s, v->u.tensor, resolve, ctx);
        if (st) return st;
    }
    return PC_OK;
}

/* =============================================================================================
 * ZIP archives (what torch.save writes: entries stored, 64-byte aligned, ZIP64 end records)
 * =========================================================================================== */

#include <zlib.h>

/* ---- CRC-32 (the zip polynomial): zlib as the reference, carry-less multiplication where available.
 * zlib's table-driven CRC runs at ~3 GB/s and was half the cost of loading a zip .pth; folding 64
 * bytes per step with PCLMULQDQ (Gopal et al., "Fast CRC computation for generic polynomials using
 * PCLMULQDQ", Intel 2009; the constants are those of the reflected polynomial 0xEDB88320) runs near
 * memory speed. tests/test_weights.c checks it against zlib on many lengths and alignments. */

uint32_t pc_crc32_ref(uint32_t crc, const uint8_t *buf, size_t len) {
    return (uint32_t)crc32_z(crc, buf, len);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* crc is the running CRC in its internal (bit-inverted) form; len >= 64 and a multiple of 16. */
__attribute__((target("pclmul,sse4.1"))) static uint32_t crc32_fold_pclmul(uint32_t crc, const uint8_t *buf, size_t len) {
    const __m128i k1k2 = _mm_set_epi64x(0x01c6e41596, 0x0154442bd4);
    const __m128i k3k4 = _mm_set_epi64x(0x00ccaa009e, 0x01751997d0);
    const __m128i k5k0 = _mm_set_epi64x(0, 0x0163cd6124);
    const __m128i poly = _mm_set_epi64x(0x01f7011641, 0x01db710641);
    const __m128i mask32 = _mm_setr_epi32(~0, 0, ~0, 0);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    __m128i x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    buf += 64;
    len -= 64;
    while (len >= 64) { /* fold four 128-bit lanes by 512 bits */
        __m128i x5 = _mm_clmulepi64_si128(x1, k1k2, 0x00), x6 = _mm_clmulepi64_si128(x2, k1k2, 0x00);
        __m128i x7 = _mm_clmulepi64_si128(x3, k1k2, 0x00), x8 = _mm_clmulepi64_si128(x4, k1k2, 0x00);
        x1 = _mm_clmulepi64_si128(x1, k1k2, 0x11);
        x2 = _mm_clmulepi64_si128(x2, k1k2, 0x11);
        x3 = _mm_clmulepi64_si128(x3, k1k2, 0x11);
        x4 = _mm_clmulepi64_si128(x4, k1k2, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), _mm_loadu_si128((const __m128i *)(buf + 0x00)));
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), _mm_loadu_si128((const __m128i *)(buf + 0x10)));
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), _mm_loadu_si128((const __m128i *)(buf + 0x20)));
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), _mm_loadu_si128((const __m128i *)(buf + 0x30)));
        buf += 64;
        len -= 64;
    }
    /* four lanes into one, by 128 bits at a time */
    __m128i x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x2), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x3), x5);
    x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
    x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), x4), x5);
    while (len >= 16) {
        x5 = _mm_clmulepi64_si128(x1, k3k4, 0x00);
        x1 = _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x1, k3k4, 0x11), _mm_loadu_si128((const __m128i *)buf)), x5);
        buf += 16;
        len -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, k3k4, 0x10);
    x1 = _mm_xor_si128(_mm_srli_si128(x1, 8), x2);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, mask32);
    x1 = _mm_xor_si128(_mm_clmulepi64_si128(x1, k5k0, 0x00), x2);
    /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x10);
    x2 = _mm_and_si128(x2, mask32);
    x2 = _mm_clmulepi64_si128(x2, poly, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

uint32_t pc_crc32(uint32_t crc, const uint8_t *buf, size_t len) {
    static int have = -1;
    if (have < 0) have = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    if (have && len >= 64) {
        size_t chunk = len & ~(size_t)15;
        crc = ~crc32_fold_pclmul(~crc, buf, chunk);
        buf += chunk;
        len -= chunk;
    }
    return len ? pc_crc32_ref(crc, buf, len) : crc;
}
#else
uint32_t pc_crc32(uint32_t crc, const uint8_t *buf, size_t len) { return pc_crc32_ref(crc, buf, len); }
#endif

typedef struct zentry {
    const uint8_t *name;
    size_t name_len;
    uint16_t method, flags;
    uint32_t crc;
    uint64_t csize, usize, local;
} zentry;

typedef struct zarchive {
    const uint8_t *buf;
    size_t len;
    zentry *e; /* sorted by name */
    size_t n;
    uint64_t cd_start; /* entry data must end before the central directory */
} zarchive;

static uint32_t u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t u32(const uint8_t *p) { return u16(p) | (uint32_t)u16(p + 2) << 16; }
static uint64_t u64(const uint8_t *p) { return u32(p) | (uint64_t)u32(p + 4) << 32; }

static int zentry_cmp(const void *a, const void *b) {
    const zentry *x = a, *y = b;
    size_t n = PC_MIN(x->name_len, y->name_len);
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static pc_status zip_open(loader *L, const uint8_t *buf, size_t len, zarchive *Z) {
    memset(Z, 0, sizeof *Z);
    Z->buf = buf;
    Z->len = len;
    /* The end-of-central-directory record: the last "PK\5\6" that leaves room for its comment. */
    size_t eocd = SIZE_MAX;
    if (len >= 22)
        for (size_t i = len - 22, stop = len > 22 + 65535 ? len - 22 - 65535 : 0;; i--) {
            if (u32(buf + i) == 0x06054b50 && i + 22 + u16(buf + i + 20) <= len) {
                eocd = i;
                break;
            }
            if (i == stop) break;
        }
    if (eocd == SIZE_MAX)
        return pc_fail(PC_ERR_FORMAT, "%s: zip end-of-central-directory record not found: the file is truncated or "
                       "not a zip archive", L->name);
    if (u16(buf + eocd + 4) != 0 || u16(buf + eocd + 6) != 0)
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: multi-part zip archives are not supported", L->name);
    uint64_t count = u16(buf + eocd + 10), cd_size = u32(buf + eocd + 12), cd_off = u32(buf + eocd + 16);
    uint64_t cd_limit = eocd;
    /* ZIP64: a locator right before the record points at the 64-bit record (torch always writes one). */
    if (eocd >= 20 && u32(buf + eocd - 20) == 0x07064b50) {
        uint64_t z64 = u64(buf + eocd - 20 + 8);
        if (z64 > eocd - 20 || eocd - 20 - z64 < 56 || u32(buf + z64) != 0x06064b50)
            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: bad ZIP64 end-of-central-directory record", L->name);
        count = u64(buf + z64 + 32);
        cd_size = u64(buf + z64 + 40);
        cd_off = u64(buf + z64 + 48);
        cd_limit = z64;
    } else if (count == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu) {
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: ZIP64 sizes without a ZIP64 record", L->name);
    }
    if (cd_off > cd_limit || cd_size > cd_limit - cd_off)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: central directory (offset %llu, %llu bytes) outside the file",
                       L->name, (unsigned long long)cd_off, (unsigned long long)cd_size);
    if (count > cd_size / 46)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: %llu entries cannot fit a %llu-byte central directory", L->name,
                       (unsigned long long)count, (unsigned long long)cd_size);
    Z->cd_start = cd_off;
    Z->e = pc_calloc(count ? (size_t)count : 1, sizeof *Z->e);
    if (!Z->e) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", L->name);
    const uint8_t *p = buf + cd_off, *end = p + cd_size;
    for (uint64_t i = 0; i < count; i++) {
        if (end - p < 46 || u32(p) != 0x02014b50)
            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: bad central directory entry %llu", L->name, (unsigned long long)i);
        zentry *e = &Z->e[Z->n];
        e->flags = (uint16_t)u16(p + 8);
        e->method = (uint16_t)u16(p + 10);
        e->crc = u32(p + 16);
        e->csize = u32(p + 20);
        e->usize = u32(p + 24);
        size_t nl = u16(p + 28), xl = u16(p + 30), cl = u16(p + 32);
        e->local = u32(p + 42);
        if ((size_t)(end - p) < 46 + nl + xl + cl)
            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: central directory entry %llu overruns the directory", L->name,
                           (unsigned long long)i);
        e->name = p + 46;
        e->name_len = nl;
        /* ZIP64 extra field: the 64-bit values of whichever 32-bit fields are saturated, in order. */
        const uint8_t *x = p + 46 + nl, *xe = x + xl;
        while (xe - x >= 4) {
            uint32_t id = u16(x), sz = u16(x + 2);
            if ((size_t)(xe - x - 4) < sz) break;
            if (id == 0x0001) {
                const uint8_t *f = x + 4, *fe = f + sz;
                uint64_t *fields[3] = {&e->usize, &e->csize, &e->local};
                for (int k = 0; k < 3; k++)
                    if (*fields[k] == 0xffffffffu) {
                        if (fe - f < 8)
                            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: short ZIP64 extra field", L->name);
                        *fields[k] = u64(f);
                        f += 8;
                    }
            }
            x += 4 + sz;
        }
        if (e->flags & 1) {
            char nm[128];
            clean_name(nm, sizeof nm, e->name, e->name_len);
            return pc_fail(PC_ERR_UNSUPPORTED, "%s: zip entry '%s' is encrypted", L->name, nm);
        }
        p += 46 + nl + xl + cl;
        Z->n++;
    }
    qsort(Z->e, Z->n, sizeof *Z->e, zentry_cmp);
    for (size_t i = 1; i < Z->n; i++)
        if (zentry_cmp(&Z->e[i - 1], &Z->e[i]) == 0) {
            char nm[128];
            clean_name(nm, sizeof nm, Z->e[i].name, Z->e[i].name_len);
            return pc_fail(PC_ERR_FORMAT, "%s: zip entry '%s' appears twice", L->name, nm);
        }
    return PC_OK;
}

static const zentry *zip_find(const zarchive *Z, const char *name) {
    zentry key = {.name = (const uint8_t *)name, .name_len = strlen(name)};
    return bsearch(&key, Z->e, Z->n, sizeof *Z->e, zentry_cmp);
}

/* An entry's bytes: a pointer into the archive when stored, an inflated copy (*owned) when deflated.
 * The CRC-32 is checked either way. */
static pc_status zip_read(loader *L, const zarchive *Z, const zentry *e, const uint8_t **data, size_t *size,
                          uint8_t **owned, int check_crc) {
    char nm[160];
    clean_name(nm, sizeof nm, e->name, e->name_len);
    *owned = NULL;
    if (e->local > Z->cd_start || Z->cd_start - e->local < 30 || u32(Z->buf + e->local) != 0x04034b50)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: bad local header for '%s'", L->name, nm);
    const uint8_t *lh = Z->buf + e->local;
    uint64_t start = e->local + 30 + u16(lh + 26) + u16(lh + 28);
    if (start > Z->cd_start || e->csize > Z->cd_start - start)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: data of '%s' (%llu bytes) runs past the end of the file", L->name, nm,
                       (unsigned long long)e->csize);
    if (u16(lh + 26) != e->name_len || memcmp(lh + 30, e->name, e->name_len) != 0)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: local and central names differ for '%s'", L->name, nm);
    const uint8_t *src = Z->buf + start;
    if (e->method == 0) {
        if (e->csize != e->usize)
            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: stored entry '%s' with different sizes", L->name, nm);
        *data = src;
        *size = (size_t)e->usize;
    } else if (e->method == 8) {
        /* Deflate expands at most ~1032:1; anything claiming more is corrupt or a bomb. */
        if (e->usize > e->csize * 1032 + 1024)
            return pc_fail(PC_ERR_TOO_LARGE, "%s: zip entry '%s' claims %llu bytes from %llu compressed", L->name, nm,
                           (unsigned long long)e->usize, (unsigned long long)e->csize);
        uint8_t *out = pc_malloc((size_t)e->usize);
        if (!out) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %llu bytes for '%s'", L->name, (unsigned long long)e->usize, nm);
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        if (inflateInit2(&zs, -15) != Z_OK) {
            pc_free(out);
            return pc_fail(PC_ERR_NO_MEMORY, "%s: zlib initialisation failed", L->name);
        }
        uint64_t in_left = e->csize, out_left = e->usize;
        zs.next_in = (Bytef *)src;
        zs.next_out = out;
        int zr = Z_OK;
        while (zr == Z_OK) {
            if (zs.avail_in == 0) {
                zs.avail_in = (uInt)PC_MIN(in_left, (uint64_t)UINT32_MAX);
                in_left -= zs.avail_in;
            }
            if (zs.avail_out == 0) {
                zs.avail_out = (uInt)PC_MIN(out_left, (uint64_t)UINT32_MAX);
                out_left -= zs.avail_out;
            }
            zr = inflate(&zs, Z_NO_FLUSH);
            if (zr == Z_BUF_ERROR && (zs.avail_in || in_left) && (zs.avail_out || out_left)) zr = Z_OK;
        }
        uint64_t produced = e->usize - out_left - zs.avail_out;
        inflateEnd(&zs);
        if (zr != Z_STREAM_END || produced != e->usize) {
            pc_free(out);
            return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: entry '%s' does not inflate to its declared %llu bytes", L->name,
                           nm, (unsigned long long)e->usize);
        }
        *data = out;
        *owned = out;
        *size = (size_t)e->usize;
    } else {
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: zip entry '%s' uses compression method %u (only stored and deflate are "
                       "supported)", L->name, nm, e->method);
    }
    if (check_crc && pc_crc32(0, *data, *size) != e->crc) {
        pc_free(*owned);
        *owned = NULL;
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: CRC-32 mismatch in '%s'", L->name, nm);
    }
    return PC_OK;
}

typedef struct zip_ctx {
    const zarchive *Z;
    char prefix[256]; /* "archive/" */
} zip_ctx;

/* Size a storage from the zip directory; load it (find its bytes, inflate if needed) when a kept
 * tensor uses it. */
static pc_status zip_resolve(pvm *V, pstorage *s, void *ctx, int load) {
    zip_ctx *C = ctx;
    if (!s->sized) {
        char name[512];
        snprintf(name, sizeof name, "%sdata/%s", C->prefix, s->key);
        const zentry *e = zip_find(C->Z, name);
        if (!e)
            return pc_fail(PC_ERR_FORMAT, "%s: storage '%s' is missing from the archive (no entry %s)", V->L->name, s->key, name);
        s->entry = e;
        s->nbytes = (size_t)PC_MIN(e->usize, (uint64_t)SIZE_MAX);
        s->sized = 1;
    }
    if (load && !s->loaded) {
        const zentry *e = s->entry;
        size_t n = 0;
        pc_status st = zip_read(V->L, C->Z, e, &s->data, &n, &s->owned, 0);
        if (st) return st;
        if (n != s->nbytes) return pc_fail(PC_ERR_INTERNAL, "%s: storage '%s' changed size", V->L->name, s->key);
        s->crc = e->crc; /* checked for all loaded storages at once, in parallel (zip_check_crcs) */
        s->loaded = 1;
    }
    return PC_OK;
}

/* The CRC-32 of every storage that was read (the ones kept tensors use), over threads: at ~3 GB/s
 * per core it is the largest cost of loading a zip .pth after the copy itself. */
static pc_status zip_check_crcs(loader *L, const pvm *V) {
    long n = (long)V->nst, bad = -1;
    size_t total = 0;
    for (long i = 0; i < n; i++) total += V->st[i].loaded ? V->st[i].nbytes : 0;
#pragma omp parallel for schedule(dynamic, 1) if (total > ((size_t)4 << 20))
    for (long i = 0; i < n; i++) {
        const pstorage *s = &V->st[i];
        if (s->loaded && pc_crc32(0, s->data, s->nbytes) != s->crc) {
#pragma omp critical(pc_weights_crc)
            if (bad < 0 || i < bad) bad = i;
        }
    }
    if (bad >= 0)
        return pc_fail(PC_ERR_FORMAT, "%s: corrupt zip: CRC-32 mismatch in storage '%s'", L->name, V->st[bad].key);
    return PC_OK;
}

static pc_status load_pth_zip(loader *L, const uint8_t *buf, size_t len) {
    zarchive Z;
    pvm V;
    memset(&V, 0, sizeof V);
    V.L = L;
    zip_ctx C = {.Z = &Z};
    const uint8_t *pkl = NULL;
    size_t pkl_len = 0;
    uint8_t *pkl_owned = NULL;
    pc_status st = zip_open(L, buf, len, &Z);
    if (st) goto done;
    /* The pickle is "<archive>/data.pkl"; everything else is relative to that folder. */
    const zentry *pe = NULL;
    for (size_t i = 0; i < Z.n && !pe; i++) {
        const zentry *e = &Z.e[i];
        const uint8_t *slash = memchr(e->name, '/', e->name_len);
        if (slash && (size_t)(slash - e->name) + 1 + 8 == e->name_len && memcmp(slash + 1, "data.pkl", 8) == 0 &&
            e->name_len < sizeof C.prefix)
            pe = e;
    }
    if (!pe) {
        st = pc_fail(PC_ERR_FORMAT, "%s: a zip archive without <archive>/data.pkl: not a PyTorch state dict", L->name);
        goto done;
    }
    memcpy(C.prefix, pe->name, pe->name_len - 8);
    C.prefix[pe->name_len - 8] = '\0';
    char name[512];
    snprintf(name, sizeof name, "%sbyteorder", C.prefix);
    const zentry *bo = zip_find(&Z, name);
    if (bo) {
        const uint8_t *d;
        size_t n;
        uint8_t *own;
        if ((st = zip_read(L, &Z, bo, &d, &n, &own, 1))) goto done;
        int little = n == 6 && memcmp(d, "little", 6) == 0;
        char shown[16];
        clean_name(shown, sizeof shown, d, n);
        pc_free(own);
        if (!little) {
            st = pc_fail(PC_ERR_UNSUPPORTED, "%s: tensors saved with byte order '%s' (only little-endian is supported)",
                         L->name, shown);
            goto done;
        }
    }
    snprintf(name, sizeof name, "%sconstants.pkl", C.prefix);
    if (zip_find(&Z, name)) {
        st = pc_fail(PC_ERR_UNSUPPORTED, "%s: a TorchScript archive (torch.jit.save), not a state dict: save "
                     "model.state_dict() with torch.save instead", L->name);
        goto done;
    }
    if ((st = zip_read(L, &Z, pe, &pkl, &pkl_len, &pkl_owned, 1))) goto done;
    V.start = V.p = pkl;
    V.end = pkl + pkl_len;
    pk_obj *top;
    if ((st = pvm_run(&V, "data.pkl", &top))) goto done;
    if ((st = add_state_dict(&V, top, zip_resolve, &C)) == PC_OK && (st = zip_check_crcs(L, &V)) == PC_OK)
        st = loader_finish(L); /* before the storages go */
done:
    pvm_free(&V);
    pc_free(pkl_owned);
    pc_free(Z.e);
    return st;
}

/* =============================================================================================
 * Legacy .pth (torch.save(..., _use_new_zipfile_serialization=False), torch < 1.6)
 *   pickle: magic number 0x1950a86a20f9469cfc6c   pickle: protocol version 1001
 *   pickle: sys_info {'little_endian': True, ...}  pickle: the state dict (persistent ids name storages)
 *   pickle: list of storage keys                   then per key, in that order: int64 numel, raw bytes
 * =========================================================================================== */

static pc_status legacy_resolve(pvm *V, pstorage *s, void *ctx, int load) {
    (void)ctx;
    (void)load;
    return pc_fail(PC_ERR_FORMAT, "%s: storage '%s' is used by a tensor but its data is not in the file", V->L->name, s->key);
}

static pc_status load_pth_legacy(loader *L, const uint8_t *buf, size_t len) {
    static const uint8_t magic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    pvm V;
    memset(&V, 0, sizeof V);
    V.L = L;
    V.legacy = 1;
    V.start = V.p = buf;
    V.end = buf + len;
    pk_obj *o, *top, *keys;
    pc_status st;
    if ((st = pvm_run(&V, "magic number pickle", &o))) goto done;
    if (o->kind != PK_BIGINT || o->u.str.len != 10 || memcmp(o->u.str.s, magic, 10) != 0) {
        st = pc_fail(PC_ERR_FORMAT, "%s: starts with a pickle but not with PyTorch's magic number", L->name);
        goto done;
    }
    if ((st = pvm_run(&V, "protocol version pickle", &o))) goto done;
    if (o->kind != PK_INT || o->u.i != 1001) {
        st = pc_fail(PC_ERR_VERSION, "%s: legacy PyTorch file of protocol version %lld (only 1001 is known)", L->name,
                     o->kind == PK_INT ? (long long)o->u.i : -1LL);
        goto done;
    }
    if ((st = pvm_run(&V, "sys_info pickle", &o))) goto done;
    if (o->kind != PK_DICT) {
        st = pc_fail(PC_ERR_FORMAT, "%s: legacy sys_info is not a dict", L->name);
        goto done;
    }
    for (size_t i = 0; i < o->u.seq.n; i += 2) {
        pk_obj *k = o->u.seq.v[i], *v = o->u.seq.v[i + 1];
        if (k->kind == PK_STR && !strcmp(k->u.str.s, "little_endian") && !(v->kind == PK_BOOL && v->u.i)) {
            st = pc_fail(PC_ERR_UNSUPPORTED, "%s: saved on a big-endian machine (only little-endian is supported)", L->name);
            goto done;
        }
    }
    if ((st = pvm_run(&V, "state-dict pickle", &top))) goto done;
    if ((st = pvm_run(&V, "storage-key pickle", &keys))) goto done;
    if (keys->kind != PK_LIST) {
        st = pc_fail(PC_ERR_FORMAT, "%s: the legacy storage-key list is of type %s", L->name, pk_kind_names[keys->kind]);
        goto done;
    }
    /* Locate every storage: they follow in the order of the key list. */
    size_t pos = (size_t)(V.p - buf);
    for (size_t i = 0; i < keys->u.seq.n; i++) {
        pk_obj *k = keys->u.seq.v[i];
        if (k->kind != PK_STR) {
            st = pc_fail(PC_ERR_FORMAT, "%s: a legacy storage key is of type %s", L->name, pk_kind_names[k->kind]);
            goto done;
        }
        pstorage *s = NULL;
        for (size_t j = 0; j < V.nst && !s; j++)
            if (!strcmp(V.st[j].key, k->u.str.s)) s = &V.st[j];
        if (!s || s->sized) {
            st = pc_fail(PC_ERR_FORMAT, "%s: legacy storage key '%.64s' is %s", L->name, k->u.str.s,
                         s ? "listed twice" : "not used by any tensor");
            goto done;
        }
        if (len - pos < 8) {
            st = pc_fail(PC_ERR_FORMAT, "%s: truncated file: storage '%s' (number %zu of %zu) is missing", L->name, s->key,
                         i + 1, keys->u.seq.n);
            goto done;
        }
        int64_t numel = (int64_t)u64(buf + pos);
        pos += 8;
        size_t nbytes;
        if (numel < 0 || !pc_mul_size((size_t)numel, s->itemsize, &nbytes) || nbytes > len - pos) {
            st = pc_fail(PC_ERR_FORMAT, "%s: storage '%s' declares %lld elements but only %zu bytes remain (truncated "
                         "file?)", L->name, s->key, (long long)numel, len - pos);
            goto done;
        }
        if (numel != s->declared_numel) {
            st = pc_fail(PC_ERR_FORMAT, "%s: storage '%s' has %lld elements in the data but %lld in the pickle", L->name,
                         s->key, (long long)numel, (long long)s->declared_numel);
            goto done;
        }
        s->data = buf + pos;
        s->nbytes = nbytes;
        s->sized = s->loaded = 1;
        pos += nbytes;
    }
    if ((st = add_state_dict(&V, top, legacy_resolve, NULL)) == PC_OK) st = loader_finish(L);
done:
    pvm_free(&V);
    return st;
}
