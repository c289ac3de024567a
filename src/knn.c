/*
 * knn.c - exact k-NN by blocked SGEMM with a fused running top-k (faiss IndexFlatL2 semantics), and the
 * brute-force reference.
 *
 * For a tile of qb queries x nb bank entries, one cblas_sgemm gives the dot products; then, per query,
 * d = (||q||^2 + ||b||^2) - 2 q.b (faiss's order of operations), clamped at 0, is compared with the
 * query's current k-th best (8 at a time with AVX2: a tile row is usually rejected without a scalar
 * look). Accepted candidates are inserted into the sorted k-list after any equal distances, and the bank
 * is scanned in index order, so ties keep the lowest indices, in order.
 */
#include "knn.h"
#include "onednn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__AVX2__) || defined(__x86_64__)
#include <immintrin.h>
#endif

void pc_knn_norms(float *norms, const float *bank, int64_t n, int32_t dim) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *b = bank + (size_t)i * dim;
        double s = 0;
        for (int32_t c = 0; c < dim; c++) s += (double)b[c] * b[c];
        norms[i] = (float)s;
    }
}

size_t pc_knn_workspace_size(int64_t max_queries) {
    int64_t qb = max_queries < 1 ? 1 : PC_MIN(max_queries, (int64_t)PC_KNN_QUERY_BLOCK);
    return sizeof(float) * ((size_t)qb * PC_KNN_BANK_BLOCK + (size_t)qb + PC_KNN_BANK_BLOCK + 32);
}

/* The canonical distance of a pair: the GEMM form (||q||^2 + ||b||^2) - 2 q.b clamped at 0, with the
 * dot product from this fixed-order kernel (4 x 8 lanes, fixed reduction), so that the value depends on
 * the pair only, never on which BLAS tile or thread computed the candidate. Every result this file
 * returns is a canonical distance. */
static float canon_dot(const float *a, const float *b, int32_t dim) {
    int32_t c = 0;
    float s;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (; c + 32 <= dim; c += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c), _mm256_loadu_ps(b + c), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 8), _mm256_loadu_ps(b + c + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 16), _mm256_loadu_ps(b + c + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + c + 24), _mm256_loadu_ps(b + c + 24), s3);
    }
    s0 = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    float t[8];
    _mm256_storeu_ps(t, s0);
    s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
#else
    float t[4] = {0, 0, 0, 0};
    for (; c + 4 <= dim; c += 4)
        for (int l = 0; l < 4; l++) t[l] += a[c + l] * b[c + l];
    s = (t[0] + t[1]) + (t[2] + t[3]);
#endif
    for (; c < dim; c++) s += a[c] * b[c];
    return s;
}

static inline float canon_dist(const float *q, float qn, const float *b, float bn, int32_t dim) {
    float s = qn + bn, t = 2.0f * canon_dot(q, b, dim);
    float d = s - t;
    return d < 0.f ? 0.f : d;
}

/* (d, i) ranks before (d2, i2): smaller distance, then lower index. Empty slots are (+inf, -1). */
static inline int ranks_before(float d, int64_t i, float d2, int64_t i2) { return d < d2 || (d == d2 && i < i2); }

/* insert (d, i) into the list (dist, idx) of length k kept in ranks_before order; the caller checked
 * that (d, i) ranks before the last entry */
static inline void topk_insert(float *dist, int64_t *idx, int32_t k, float d, int64_t i) {
    int32_t p = k - 1;
    while (p > 0 && ranks_before(d, i, dist[p - 1], idx[p - 1])) {
        dist[p] = dist[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    dist[p] = d;
    idx[p] = i;
}

/* u = 2^-24 (fp32 unit roundoff), gamma_K = K u / (1 - K u): any fp32 evaluation order of a K-term dot
 * product, with or without FMA, is within gamma_K sum |q_i b_i| <= gamma_K ||q|| ||b|| of the exact one. */
static double gamma_k(int32_t dim) {
    const double u = 0x1p-24;
    return dim * u / (1.0 - dim * u);
}

/* The GEMM-form filter threshold. Two fp32 evaluations of the GEMM form of one pair (the BLAS tile's d_g
 * and the canonical d_c) share ||q||^2, ||b||^2 and their sum s, and differ only in the dot product:
 * |2 dot_g - 2 dot_c| <= 4 gamma_K ||q|| ||b|| <= 2 gamma_K (qn + bn) (1 + u)^2 =: Delta, and after the
 * final rounding |d_g - d_c| <= Delta (1 + u) + 2u d_g / (1 - u). So d_g > (D_k + 2.01 gamma_K (qn + bn))
 * (1 + 1e-6) implies d_c > D_k: the pair cannot enter a list whose last distance is D_k (the 1e-6 covers
 * 2u/(1 - u) and the rounding of this bound to float). bn may be any upper bound of the bank norms. */
static inline float filter_threshold(float dk, float qn, float bn_max, double gk) {
    if (isinf(dk)) return INFINITY;
    return (float)(((double)dk + 2.01 * gk * ((double)qn + bn_max)) * (1.0 + 1e-6));
}

/* The filter of one tile row. f32: the row holds q.b, the filter distance is the GEMM form with the
 * canonical norms and the threshold is filter_threshold. bf16: the row holds q~.b~ of the centred,
 * bf16-rounded vectors, the filter distance is the GEMM form with their norms (fqn, fbn) and the
 * threshold is bf16_threshold, which also needs rq >= ||q - c|| and rb >= ||b - c|| for the row's
 * candidates. */
typedef struct row_filter {
    int bf16;
    int32_t dim;
    double gk, rq, rb;
    float fqn;        /* the filter's query norm (bf16: ||q~||^2) */
    const float *fbn; /* the filter's bank norms (bf16: ||b~||^2), one per candidate */
} row_filter;

/* bf16 rounding (round to nearest even; finite inputs) and back */
static inline uint16_t to_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, 4);
    return x;
}

/* ----------------------------------------------------------------------------------------------
 * The bf16 filter's product kernel (AVX512-BF16 vdpbf16ps; docs/method-implementation.md §5). Bank
 * side packed per shell: k-pair j (j < KP = ceil(dim / 2)) of the shell's 32 entries is 32 consecutive
 * 32-bit words (b_e[2j], b_e[2j + 1]) (the low half is the even coordinate), two zmm; entries past the
 * shell's end and the coordinate past an odd dim are zero. Query rows: bf16, stride ldx >= 2 KP, the
 * coordinate past an odd dim zero. vdpbf16ps adds, per output lane, the two exact products of a pair
 * one after the other to its fp32 accumulator (round to nearest even, MXCSR ignored, denormal inputs
 * read as zero and denormal results flushed): a sequential fp32 sum of the exact products, plus the
 * flushing's absolute error bounded in bf16_threshold.
 * -------------------------------------------------------------------------------------------- */

/* pass 1's tiles start every PC_KNN_GEMM_N rows of a cluster: on shell boundaries */
_Static_assert(PC_KNN_GEMM_N % PC_KNN_SHELL == 0 && PC_KNN_SHELL == 32, "tiles are whole shells of 2 zmm");

int32_t pc_knn_bf16_kpairs(int32_t dim) { return (dim + 1) / 2; }

void pc_knn_bf16_pack_shell(uint16_t *dst, const uint16_t *rows, int32_t len, int32_t dim) {
    const int32_t KP = pc_knn_bf16_kpairs(dim);
    memset(dst, 0, sizeof(uint16_t) * (size_t)KP * 2 * PC_KNN_SHELL);
    for (int32_t e = 0; e < len; e++)
        for (int32_t j = 0; j < dim; j++) dst[((size_t)(j >> 1) * PC_KNN_SHELL + e) * 2 + (j & 1)] = rows[(size_t)e * dim + j];
}

#if defined(__x86_64__) && defined(__GNUC__)
#define PC_HAVE_DPBF16 1
#define DPBF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

typedef int32_t pc_i32u __attribute__((may_alias, aligned(2)));

/* R query rows x one shell: 2 R accumulators of 16 lanes */
#define DPBF16_BLOCK(R)                                                                                           \
    do {                                                                                                          \
        __m512 acc[2 * (R)];                                                                                      \
        const pc_i32u *xr[R];                                                                                     \
        for (int r = 0; r < (R); r++) {                                                                           \
            acc[2 * r] = acc[2 * r + 1] = _mm512_setzero_ps();                                                    \
            xr[r] = (const pc_i32u *)(x + (size_t)(i + r) * ldx);                                                 \
        }                                                                                                         \
        for (int32_t j = 0; j < KP; j++) {                                                                        \
            const __m512bh b0 = (__m512bh)_mm512_loadu_si512(B + (size_t)j * 64);                                 \
            const __m512bh b1 = (__m512bh)_mm512_loadu_si512(B + (size_t)j * 64 + 32);                            \
            for (int r = 0; r < (R); r++) {                                                                       \
                const __m512bh a = (__m512bh)_mm512_set1_epi32(xr[r][j]);                                         \
                acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], a, b0);                                                 \
                acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], a, b1);                                         \
            }                                                                                                     \
        }                                                                                                         \
        for (int r = 0; r < (R); r++) {                                                                           \
            float *o = out + (size_t)(i + r) * ldo + (size_t)s * PC_KNN_SHELL;                                    \
            _mm512_mask_storeu_ps(o, m0, acc[2 * r]);                                                             \
            _mm512_mask_storeu_ps(o + 16, m1, acc[2 * r + 1]);                                                    \
        }                                                                                                         \
    } while (0)

DPBF16_TARGET static void tile_dpbf16(float *out, int64_t ldo, const uint16_t *x, int32_t rows, int64_t ldx,
                                      const uint16_t *pk, int32_t ns, int32_t last, int32_t dim) {
    const int32_t KP = pc_knn_bf16_kpairs(dim);
    for (int32_t s = 0; s < ns; s++) {
        const uint16_t *B = pk + (size_t)s * KP * 2 * PC_KNN_SHELL;
        const int32_t len = s == ns - 1 ? last : PC_KNN_SHELL;
        const __mmask16 m0 = (__mmask16)(len >= 16 ? 0xffffu : (1u << len) - 1);
        const __mmask16 m1 = (__mmask16)(len >= 32 ? 0xffffu : len <= 16 ? 0u : (1u << (len - 16)) - 1);
        int32_t i = 0;
        for (; i + 8 <= rows; i += 8) DPBF16_BLOCK(8);
        for (; i + 4 <= rows; i += 4) DPBF16_BLOCK(4);
        for (; i < rows; i++) DPBF16_BLOCK(1);
    }
}
#undef DPBF16_BLOCK
#endif

int pc_knn_bf16_native(void) {
#ifdef PC_HAVE_DPBF16
    static int cached = -1; /* racing first calls compute the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        /* the CPU's flag, and oneDNN's view of it (ONEDNN_MAX_CPU_ISA below avx512_core_bf16 turns it off) */
        v = __builtin_cpu_supports("avx512bf16") && pc_dnnl_bf16_native();
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return 0;
#endif
}

int pc_knn_bf16_tile(float *out, int64_t ldo, const uint16_t *x, int32_t rows, int64_t ldx, const uint16_t *packed,
                     int32_t n_shells, int32_t last_len, int32_t dim) {
#ifdef PC_HAVE_DPBF16
    if (!pc_knn_bf16_native()) return 0;
    tile_dpbf16(out, ldo, x, rows, ldx, packed, n_shells, last_len, dim);
    return 1;
#else
    (void)out, (void)ldo, (void)x, (void)rows, (void)ldx, (void)packed, (void)n_shells, (void)last_len, (void)dim;
    return 0;
#endif
}

/* eps: |bf16(fl(a - c)) - (a - c)| <= eps |a - c| per coordinate (2^-8 for the bf16 rounding, u for the
 * fp32 subtraction, and their product), so ||x~ - x|| <= eps ||x|| for x = a - c */
#define BF16_EPS (0x1p-8 + 0x1p-23)

/* The bf16 filter threshold (the derivation is in docs/method-implementation.md §5): a candidate whose
 * canonical distance d_c is <= dk has true distance t <= T = sqrt(dk (1 + 2.1u) + 1.01 (gamma_K + 4u)
 * (qn + bn)), its rounded centred vectors are at distance t~ <= T + eps (rq + rb), and the filter's
 * fp32 GEMM form of ||x~ - y~||^2 (exact bf16 products, fp32 sums) is at most
 * t~^2 (1 + u) + (gamma_K + 2.01u)(1 + u)(1 + eps)^2 (rq^2 + rb^2) + F; 1e-6 relative covers the rounding
 * of the norms' double sums and of this bound to float, and the absolute 1e-30 (1 + T) subnormal fp32
 * arithmetic in the GEMM form. F bounds what vdpbf16ps's denormal handling adds to the dot product,
 * doubled for the GEMM form's 2 x.y and again as a safety factor (propagation through the later
 * roundings, (1 + u)^K - 1 < 1e-4, and the GEMM form's evaluation of it): per product a denormal input
 * read as zero moves it by < 2^-126 |other factor| (sum <= 2^-126 sqrt(K)(1 + eps)(rq + rb)), a product
 * below 2^-126 is not exact or is lost (< 2^-126), and a denormal sum flushed to zero moves it by
 * < 2^-126: F = 4 (K' 2^-125 + 2^-126 sqrt(K') (1 + eps)(rq + rb)), K' = K + 1 covering an odd dim's
 * zero pad (its step adds 0 exactly). The emulation (exact products, IEEE sums with gradual
 * underflow) is inside the same bound. A filter value above it means d_c > dk. */
static inline float bf16_threshold(float dk, float qn, float bn_max, double gk, double rq, double rb, int32_t dim) {
    if (isinf(dk)) return INFINITY;
    const double u = 0x1p-24, e1 = 1 + BF16_EPS, K1 = (double)dim + 1;
    double T = sqrt((double)dk * (1 + 2.1 * u) + 1.01 * (gk + 4 * u) * ((double)qn + bn_max));
    double a = T + BF16_EPS * (rq + rb);
    double v = a * a * (1 + u) + (gk + 2.01 * u) * (1 + u) * e1 * e1 * (rq * rq + rb * rb);
    double F = 4 * (K1 * 0x1p-125 + 0x1p-126 * sqrt(K1) * e1 * (rq + rb));
    return (float)(v * (1 + 1e-6) + 1e-30 * (1 + T) + F);
}

static inline float row_threshold(const row_filter *f, float dk, float qn, float bn_max) {
    return f->bf16 ? bf16_threshold(dk, qn, bn_max, f->gk, f->rq, f->rb, f->dim) : filter_threshold(dk, qn, bn_max, f->gk);
}

/* one tile row: the filter distance for nb candidates (bank indices from ids, or base + j when ids is
 * NULL); candidates passing the filter get their canonical distance (from q, qn, rows, bn) and enter the
 * list. Returns canonical evaluations. */
static int64_t scan_row(float *dl, int64_t *il, int32_t k, const float *row, const row_filter *f, const float *bn,
                        int64_t nb, float qn, float bn_max, const float *q, const float *rows, int32_t dim,
                        const int64_t *ids, int64_t base) {
    int64_t evals = 0;
    const float *fbn = f->fbn, fqn = f->fqn;
    float thr = row_threshold(f, dl[k - 1], qn, bn_max);
    int64_t j = 0;
#if defined(__AVX2__)
    const __m256 vq = _mm256_set1_ps(fqn), vm2 = _mm256_set1_ps(-2.0f), zero = _mm256_setzero_ps();
    for (; j + 8 <= nb; j += 8) {
        __m256 d = _mm256_add_ps(_mm256_add_ps(vq, _mm256_loadu_ps(fbn + j)), _mm256_mul_ps(vm2, _mm256_loadu_ps(row + j)));
        d = _mm256_max_ps(d, zero);
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(d, _mm256_set1_ps(thr), _CMP_LE_OQ));
        if (!mask) continue;
        for (int t = 0; t < 8; t++) {
            if (!(mask >> t & 1)) continue;
            int64_t jj = j + t, id = ids ? ids[jj] : base + jj;
            float dc = canon_dist(q, qn, rows + (size_t)jj * dim, bn[jj], dim);
            evals++;
            if (ranks_before(dc, id, dl[k - 1], il[k - 1])) {
                topk_insert(dl, il, k, dc, id);
                thr = row_threshold(f, dl[k - 1], qn, bn_max);
            }
        }
    }
#endif
    for (; j < nb; j++) {
        float d = (fqn + fbn[j]) - 2.0f * row[j];
        if (d < 0.f) d = 0.f;
        if (!(d <= thr)) continue;
        int64_t id = ids ? ids[j] : base + j;
        float dc = canon_dist(q, qn, rows + (size_t)j * dim, bn[j], dim);
        evals++;
        if (ranks_before(dc, id, dl[k - 1], il[k - 1])) {
            topk_insert(dl, il, k, dc, id);
            thr = row_threshold(f, dl[k - 1], qn, bn_max);
        }
    }
    return evals;
}

pc_status pc_knn_search(float *out_dist, int64_t *out_idx, const float *queries, int64_t m, const float *bank,
                        const float *bank_norms, int64_t n, int32_t dim, int32_t k, void *workspace,
                        size_t ws_bytes) {
    if (!out_dist || !out_idx || (m > 0 && !queries) || (n > 0 && !bank) || m < 0 || n < 0 || dim < 1 || k < 1 ||
        !workspace)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn: bad arguments (m %lld, n %lld, dim %d, k %d)", (long long)m,
                       (long long)n, dim, k);
    /* query block from the workspace size: qb*NB + qb + NB + 32 floats */
    size_t floats = ws_bytes / sizeof(float);
    if (floats < (size_t)PC_KNN_BANK_BLOCK * 2 + 33)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn: workspace of %zu bytes too small", ws_bytes);
    int64_t qb = (int64_t)((floats - PC_KNN_BANK_BLOCK - 32) / (PC_KNN_BANK_BLOCK + 1));
    qb = PC_MIN(qb, (int64_t)PC_KNN_QUERY_BLOCK);
    float *tile = workspace;                                   /* (qb, NB) */
    float *qnorm = tile + (size_t)qb * PC_KNN_BANK_BLOCK;      /* (qb) */
    float *bnorm_blk = qnorm + qb;                             /* (NB) when bank_norms is NULL */

    for (int64_t i = 0; i < m * k; i++) out_dist[i] = INFINITY, out_idx[i] = -1;
    const double gk = gamma_k(dim);

    const double deadline = pc_deadline_get(); /* pc_set_deadline_local: checked per bank block */
    for (int64_t q0 = 0; q0 < m; q0 += qb) {
        const int64_t nq = PC_MIN(qb, m - q0);
        pc_knn_norms(qnorm, queries + (size_t)q0 * dim, nq, dim);
        for (int64_t b0 = 0; b0 < n; b0 += PC_KNN_BANK_BLOCK) {
            if (pc_deadline_passed(deadline)) return pc_deadline_check("during the kNN search");
            const int64_t nb = PC_MIN((int64_t)PC_KNN_BANK_BLOCK, n - b0);
            const float *bn = bank_norms ? bank_norms + b0 : bnorm_blk;
            if (!bank_norms) pc_knn_norms(bnorm_blk, bank + (size_t)b0 * dim, nb, dim);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nb, dim, 1.0f,
                        queries + (size_t)q0 * dim, dim, bank + (size_t)b0 * dim, dim, 0.0f, tile,
                        PC_KNN_BANK_BLOCK);
            float bn_max = 0.f;
            for (int64_t j = 0; j < nb; j++) bn_max = PC_MAX(bn_max, bn[j]);
#pragma omp parallel for schedule(static)
            for (int64_t q = 0; q < nq; q++) {
                row_filter f = {0, 0, gk, 0, 0, qnorm[q], bn};
                scan_row(out_dist + (size_t)(q0 + q) * k, out_idx + (size_t)(q0 + q) * k, k,
                         tile + (size_t)q * PC_KNN_BANK_BLOCK, &f, bn, nb, qnorm[q], bn_max,
                         queries + (size_t)(q0 + q) * dim, bank + (size_t)b0 * dim, dim, NULL, b0);
            }
        }
    }
    return PC_OK;
}

pc_status pc_knn_search_reference(float *out_dist, int64_t *out_idx, const float *queries, int64_t m,
                                  const float *bank, int64_t n, int32_t dim, int32_t k) {
    if (!out_dist || !out_idx || m < 0 || n < 0 || dim < 1 || k < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn reference: bad arguments");
    for (int64_t q = 0; q < m; q++) {
        float *dl = out_dist + (size_t)q * k;
        int64_t *il = out_idx + (size_t)q * k;
        for (int32_t t = 0; t < k; t++) dl[t] = INFINITY, il[t] = -1;
        for (int64_t i = 0; i < n; i++) {
            double s = 0;
            for (int32_t c = 0; c < dim; c++) {
                double t = (double)queries[(size_t)q * dim + c] - bank[(size_t)i * dim + c];
                s += t * t;
            }
            float d = (float)s;
            if (d < dl[k - 1]) topk_insert(dl, il, k, d, i);
        }
    }
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Exact pruned search
 * -------------------------------------------------------------------------------------------- */

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* One oneDNN matmul C (rows x nr, row stride ldc, fp32) = A (rows x K, row-major) . B^T (B: nr x K rows),
 * of type dt, rows given per call and nr too unless fixed: one primitive serves every call. */
typedef struct pc_knn_mm {
    dnnl_primitive_t p;
    dnnl_data_type_t dt;
    int64_t K, ldc;
    size_t scratch;   /* scratchpad bytes (the caller's, in the workspace) */
    const char *impl; /* oneDNN's implementation name, or "openblas sgemm" */
} pc_knn_mm;

struct pc_knn_index {
    int64_t n;
    int32_t dim, n_clusters, n_shells, max_cluster_shells;
    float *bank;        /* n x dim, cluster order (clusters in turn, each by distance to its centre, descending) */
    float *norms;       /* n, the caller's norms in the same order */
    int64_t *perm;      /* n: original bank index of each row */
    float *cent;        /* n_clusters x dim: bank rows 0 .. n_clusters-1 */
    float *cnorm;       /* n_clusters */
    float *cl_bnmax;    /* n_clusters: largest member norm */
    int32_t *cl_shell;  /* n_clusters + 1: first shell of each cluster */
    int64_t *sh_start;  /* n_shells + 1: first row of each shell */
    double *sh_rmax, *sh_rmin; /* n_shells: bounds of the members' true distances to the centre */
    float *sh_bnmax;    /* n_shells: largest member norm */
    /* the bf16 filter (filter BF16 or BF16_EMULATED) */
    pc_knn_filter filter;
    uint16_t *bbf;      /* emulated: n x dim: bf16(fl(b - c)), each row centred on its cluster's centre c */
    uint16_t *bpk;      /* native: the same values packed for vdpbf16ps, n_shells x KP x 32 pairs */
    float *bbn;         /* n: ||bf16(b - c)||^2 (double sum, rounded) */
    /* the build's assignment product: oneDNN f32 where it runs AVX-512 (NULL primitive: OpenBLAS); the
     * search runs no oneDNN primitive (they allocate per call) */
    pc_knn_mm cm;
};

void pc_knn_index_free(pc_knn_index *ix) {
    if (!ix) return;
    pc_free(ix->bank), pc_free(ix->norms), pc_free(ix->perm), pc_free(ix->cent), pc_free(ix->cnorm);
    pc_free(ix->cl_bnmax), pc_free(ix->cl_shell), pc_free(ix->sh_start), pc_free(ix->sh_rmax);
    pc_free(ix->sh_rmin), pc_free(ix->sh_bnmax);
    pc_free(ix->bbf), pc_free(ix->bpk), pc_free(ix->bbn);
    if (ix->cm.p) dnnl_primitive_destroy(ix->cm.p);
    pc_free(ix);
}

int32_t pc_knn_index_clusters(const pc_knn_index *ix) { return ix ? ix->n_clusters : 0; }

pc_knn_filter pc_knn_index_filter(const pc_knn_index *ix) { return ix ? ix->filter : PC_KNN_FILTER_AUTO; }

const char *pc_knn_filter_name(pc_knn_filter f) {
    switch (f) {
    case PC_KNN_FILTER_AUTO: return "auto";
    case PC_KNN_FILTER_F32: return "f32";
    case PC_KNN_FILTER_BF16: return "bf16";
    case PC_KNN_FILTER_BF16_EMULATED: return "bf16-emulated";
    default: return "?";
    }
}

const char *pc_knn_index_kernel(const pc_knn_index *ix) {
    if (!ix) return "?";
    return ix->filter == PC_KNN_FILTER_BF16 ? "avx512bf16 vdpbf16ps" : "openblas sgemm";
}

const char *pc_knn_index_centre_kernel(const pc_knn_index *ix) { return ix ? "openblas sgemm" : "?"; }
const char *pc_knn_index_build_kernel(const pc_knn_index *ix) { return ix ? ix->cm.impl : "?"; }

/* AUTO resolved from PATCHCORE_KNN_FILTER and the CPU; -1 for an unknown value */
static int resolve_filter(pc_knn_filter f) {
    if (f == PC_KNN_FILTER_AUTO) {
        const char *e = getenv("PATCHCORE_KNN_FILTER");
        /* auto: the bf16 filter where its own kernel runs (AVX512-BF16), else f32 (the emulation is slower
         * than the f32 filter: docs/method-implementation.md §5) */
        if (!e || !*e || !strcmp(e, "auto")) return pc_knn_bf16_native() ? PC_KNN_FILTER_BF16 : PC_KNN_FILTER_F32;
        if (!strcmp(e, "f32")) return PC_KNN_FILTER_F32;
        if (!strcmp(e, "bf16")) return PC_KNN_FILTER_BF16;
        if (!strcmp(e, "bf16-emulated")) return PC_KNN_FILTER_BF16_EMULATED;
        return -1;
    }
    return f >= PC_KNN_FILTER_F32 && f <= PC_KNN_FILTER_BF16_EMULATED ? (int)f : -1;
}

/* Creates mm (see pc_knn_mm): nr fixed when n_fixed > 0, else given per call. Returns 0 (mm->p NULL,
 * impl "openblas sgemm") when oneDNN has no implementation. */
static int make_matmul(pc_knn_mm *mm, dnnl_data_type_t dt, int64_t K, int64_t n_fixed, int64_t ldc) {
    mm->p = NULL, mm->dt = dt, mm->K = K, mm->ldc = ldc, mm->scratch = 0, mm->impl = "openblas sgemm";
    if (!pc_dnnl_engine()) return 0;
    const dnnl_dim_t RT = DNNL_RUNTIME_DIM_VAL, N = n_fixed > 0 ? n_fixed : RT;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {RT, K}, as = {K, 1}, bd = {K, N}, bs = {1, K}, cd = {RT, N}, cs = {ldc, 1};
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&a, 2, ad, dt, as) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&b, 2, bd, dt, bs) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs) == dnnl_success &&
             dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) == dnnl_success &&
             dnnl_primitive_attr_create(&attr) == dnnl_success &&
             dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success &&
             dnnl_primitive_desc_create(&pd, &md, attr, pc_dnnl_engine(), NULL) == dnnl_success;
    if (ok) {
        const char *impl = pc_dnnl_impl(pd);
        /* the name lives in the descriptor: keep one of the known names */
        static const char *known[] = {"gemm:jit", "brg:avx512_core", "brg:avx512_core_bf16", "brg:avx512_core_amx",
                                      "gemm:ref", "ref:any"};
        mm->impl = "onednn (other)";
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            if (!strcmp(impl, known[i])) mm->impl = known[i];
        mm->scratch = dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0));
        ok = dnnl_primitive_create(&mm->p, pd) == dnnl_success;
        if (!ok) mm->p = NULL, mm->impl = "openblas sgemm", mm->scratch = 0;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return ok;
}

/* Runs mm on A (rows x K) and B (nr x K rows) into C (ldc); 0 when oneDNN failed (the caller then uses
 * OpenBLAS: the kNN results do not depend on which). The memory objects are oneDNN's handles of the
 * caller's buffers (small objects, no data copied). */
static int run_matmul(const pc_knn_mm *mm, float *C, const void *A, int64_t rows, const void *B, int64_t nr,
                      void *scratch) {
    dnnl_stream_t st = pc_dnnl_stream();
    dnnl_engine_t e = pc_dnnl_engine();
    if (!mm->p || !st || !e || (mm->scratch && !scratch)) return 0;
    const dnnl_dim_t K = mm->K;
    dnnl_memory_desc_t a, b, c;
    dnnl_dims_t ad = {rows, K}, as = {K, 1}, bd = {K, nr}, bs = {1, K}, cd = {rows, nr}, cs = {mm->ldc, 1};
    dnnl_memory_t ma = NULL, mb = NULL, mc = NULL, ms = NULL;
    const_dnnl_primitive_desc_t pd = NULL;
    int ok = dnnl_memory_desc_init_by_strides(&a, 2, ad, mm->dt, as) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&b, 2, bd, mm->dt, bs) == dnnl_success &&
             dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs) == dnnl_success &&
             dnnl_memory_create(&ma, &a, e, (void *)A) == dnnl_success &&
             dnnl_memory_create(&mb, &b, e, (void *)B) == dnnl_success &&
             dnnl_memory_create(&mc, &c, e, C) == dnnl_success &&
             dnnl_primitive_get_primitive_desc(mm->p, &pd) == dnnl_success &&
             dnnl_memory_create(&ms, dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0), e,
                                mm->scratch ? scratch : NULL) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc},
                                   {DNNL_ARG_SCRATCHPAD, ms}};
        ok = dnnl_primitive_execute(mm->p, st, 4, args) == dnnl_success && dnnl_stream_wait(st) == dnnl_success;
    }
    if (ma) dnnl_memory_destroy(ma);
    if (mb) dnnl_memory_destroy(mb);
    if (mc) dnnl_memory_destroy(mc);
    if (ms) dnnl_memory_destroy(ms);
    return ok;
}

typedef struct member {
    double r;
    int64_t i;
} member;

static int member_cmp(const void *a, const void *b) {
    const member *x = a, *y = b;
    if (x->r != y->r) return x->r > y->r ? -1 : 1; /* farthest first */
    return x->i < y->i ? -1 : x->i > y->i;
}

pc_status pc_knn_index_build(pc_knn_index **out, const float *bank, const float *bank_norms, int64_t n, int32_t dim,
                             int32_t n_clusters) {
    return pc_knn_index_build_filter(out, bank, bank_norms, n, dim, n_clusters, PC_KNN_FILTER_AUTO);
}

pc_status pc_knn_index_build_filter(pc_knn_index **out, const float *bank, const float *bank_norms, int64_t n,
                                    int32_t dim, int32_t n_clusters, pc_knn_filter filter) {
    if (!out || !bank || !bank_norms || n < 1 || dim < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn index: bad arguments (n %lld, dim %d)", (long long)n, dim);
    *out = NULL;
    const int fsel = resolve_filter(filter);
    if (fsel < 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn index: unknown filter (PATCHCORE_KNN_FILTER=%s; auto, f32, bf16 "
                       "or bf16-emulated)", getenv("PATCHCORE_KNN_FILTER") ? getenv("PATCHCORE_KNN_FILTER") : "");
    int64_t C = n_clusters > 0 ? n_clusters : (int64_t)llround(2.0 * sqrt((double)n));
    C = PC_MAX((int64_t)1, PC_MIN(C, n));
    const int64_t chunk = 2048;
    pc_knn_index *ix = pc_calloc(1, sizeof *ix);
    int32_t *asg = pc_malloc(sizeof(int32_t) * (size_t)n);
    member *mem = pc_malloc(sizeof(member) * (size_t)n);
    float *tile = pc_malloc(sizeof(float) * (size_t)(chunk * C));
    int64_t *cstart = pc_calloc((size_t)C + 1, sizeof(int64_t)), *fill = pc_calloc((size_t)C + 1, sizeof(int64_t));
    pc_status st = PC_OK;
    if (!ix || !asg || !mem || !tile || !cstart || !fill) goto nomem;
    ix->n = n, ix->dim = dim, ix->n_clusters = (int32_t)C;
    ix->bank = pc_malloc(sizeof(float) * (size_t)n * dim);
    ix->norms = pc_malloc(sizeof(float) * (size_t)n);
    ix->perm = pc_malloc(sizeof(int64_t) * (size_t)n);
    ix->cent = pc_malloc(sizeof(float) * (size_t)(C * dim));
    ix->cnorm = pc_malloc(sizeof(float) * (size_t)C);
    ix->cl_bnmax = pc_calloc((size_t)C, sizeof(float));
    ix->cl_shell = pc_malloc(sizeof(int32_t) * (size_t)(C + 1));
    if (!ix->bank || !ix->norms || !ix->perm || !ix->cent || !ix->cnorm || !ix->cl_bnmax || !ix->cl_shell) goto nomem;
    memcpy(ix->cent, bank, sizeof(float) * (size_t)(C * dim));
    memcpy(ix->cnorm, bank_norms, sizeof(float) * (size_t)C);

    /* oneDNN's f32 product for the build's assignment where it runs AVX-512 (about 2x OpenBLAS's Haswell
     * kernels at this shape here; capped at AVX2 no faster, so OpenBLAS keeps it: bench_gemm). Not in the
     * search: oneDNN's runtime-shape matmul allocates per call. */
    ix->cm.impl = "openblas sgemm";
    if (pc_dnnl_avx512()) make_matmul(&ix->cm, dnnl_f32, dim, C, C);

    /* nearest centre by the GEMM form (any assignment is correct: the shells record true distances) */
    for (int64_t i0 = 0; i0 < n; i0 += chunk) {
        const int64_t nr = PC_MIN(chunk, n - i0);
        if (!run_matmul(&ix->cm, tile, bank + (size_t)i0 * dim, nr, ix->cent, C, NULL))
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nr, (blasint)C, dim, 1.0f,
                        bank + (size_t)i0 * dim, dim, ix->cent, dim, 0.0f, tile, (blasint)C);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nr; i++) {
            const float *row = tile + (size_t)i * C;
            int32_t best = 0;
            float bd = INFINITY;
            for (int64_t c = 0; c < C; c++) {
                float d = ix->cnorm[c] - 2.0f * row[c];
                if (d < bd) bd = d, best = (int32_t)c;
            }
            asg[i0 + i] = i0 + i < C ? (int32_t)(i0 + i) : best;
        }
    }
    /* true distances to the centres, by direct differences in double */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float *b = bank + (size_t)i * dim, *c = ix->cent + (size_t)asg[i] * dim;
        double s = 0;
        for (int32_t j = 0; j < dim; j++) {
            double t = (double)b[j] - c[j];
            s += t * t;
        }
        mem[i].r = sqrt(s);
        mem[i].i = i;
    }
    for (int64_t i = 0; i < n; i++) cstart[asg[i] + 1]++;
    for (int64_t c = 0; c < C; c++) cstart[c + 1] += cstart[c];
    {
        member *sorted = pc_malloc(sizeof(member) * (size_t)n);
        if (!sorted) goto nomem;
        for (int64_t i = 0; i < n; i++) sorted[cstart[asg[i]] + fill[asg[i]]++] = mem[i];
        memcpy(mem, sorted, sizeof(member) * (size_t)n);
        pc_free(sorted);
    }
    int64_t n_shells = 0;
    int32_t max_cs = 0;
    for (int64_t c = 0; c < C; c++) {
        int64_t size = cstart[c + 1] - cstart[c];
        qsort(mem + cstart[c], (size_t)size, sizeof(member), member_cmp);
        int64_t s = (size + PC_KNN_SHELL - 1) / PC_KNN_SHELL;
        ix->cl_shell[c] = (int32_t)n_shells;
        n_shells += s;
        max_cs = (int32_t)PC_MAX((int64_t)max_cs, s);
    }
    ix->cl_shell[C] = (int32_t)n_shells;
    ix->n_shells = (int32_t)n_shells, ix->max_cluster_shells = max_cs;
    ix->sh_start = pc_malloc(sizeof(int64_t) * (size_t)(n_shells + 1));
    ix->sh_rmax = pc_malloc(sizeof(double) * (size_t)n_shells);
    ix->sh_rmin = pc_malloc(sizeof(double) * (size_t)n_shells);
    ix->sh_bnmax = pc_calloc((size_t)n_shells, sizeof(float));
    if (!ix->sh_start || !ix->sh_rmax || !ix->sh_rmin || !ix->sh_bnmax) goto nomem;
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < n; p++) {
        int64_t i = mem[p].i;
        memcpy(ix->bank + (size_t)p * dim, bank + (size_t)i * dim, sizeof(float) * (size_t)dim);
        ix->norms[p] = bank_norms[i];
        ix->perm[p] = i;
    }
    for (int64_t c = 0; c < C; c++) {
        for (int64_t s = ix->cl_shell[c]; s < ix->cl_shell[c + 1]; s++) {
            int64_t p0 = cstart[c] + (s - ix->cl_shell[c]) * PC_KNN_SHELL, p1 = PC_MIN(p0 + PC_KNN_SHELL, cstart[c + 1]);
            ix->sh_start[s] = p0;
            /* widened by a relative 1e-12, far above the double rounding of the sums */
            ix->sh_rmax[s] = mem[p0].r * (1 + 1e-12);
            ix->sh_rmin[s] = mem[p1 - 1].r * (1 - 1e-12);
            for (int64_t p = p0; p < p1; p++) ix->sh_bnmax[s] = PC_MAX(ix->sh_bnmax[s], ix->norms[p]);
            ix->cl_bnmax[c] = PC_MAX(ix->cl_bnmax[c], ix->sh_bnmax[s]);
        }
    }
    ix->sh_start[n_shells] = n;
    ix->filter = (pc_knn_filter)fsel;
    if (fsel == PC_KNN_FILTER_BF16 && !pc_knn_bf16_native()) ix->filter = PC_KNN_FILTER_BF16_EMULATED;
    if (fsel != PC_KNN_FILTER_F32) {
        ix->bbf = pc_malloc(sizeof(uint16_t) * (size_t)n * dim);
        ix->bbn = pc_malloc(sizeof(float) * (size_t)n);
        if (!ix->bbf || !ix->bbn) goto nomem;
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t c = 0; c < C; c++) {
            const float *cc = ix->cent + (size_t)c * dim;
            for (int64_t p = cstart[c]; p < cstart[c + 1]; p++) {
                const float *b = ix->bank + (size_t)p * dim;
                uint16_t *y = ix->bbf + (size_t)p * dim;
                double s2 = 0;
                for (int32_t j = 0; j < dim; j++) {
                    y[j] = to_bf16(b[j] - cc[j]);
                    double v = from_bf16(y[j]);
                    s2 += v * v;
                }
                ix->bbn[p] = (float)s2;
            }
        }
        if (ix->filter == PC_KNN_FILTER_BF16) {
            /* native: pack each shell for vdpbf16ps; the row-major copy is the emulation's only */
            const size_t sh = (size_t)pc_knn_bf16_kpairs(dim) * 2 * PC_KNN_SHELL;
            ix->bpk = pc_malloc(sizeof(uint16_t) * sh * (size_t)n_shells);
            if (!ix->bpk) goto nomem;
#pragma omp parallel for schedule(static)
            for (int64_t s = 0; s < n_shells; s++)
                pc_knn_bf16_pack_shell(ix->bpk + sh * (size_t)s, ix->bbf + (size_t)ix->sh_start[s] * dim,
                                       (int32_t)(ix->sh_start[s + 1] - ix->sh_start[s]), dim);
            pc_free(ix->bbf);
            ix->bbf = NULL;
        }
    }
    goto done;
nomem:
    st = pc_fail(PC_ERR_NO_MEMORY, "knn index: out of memory for a bank of %lld x %d", (long long)n, dim);
    pc_knn_index_free(ix);
    ix = NULL;
done:
    pc_free(asg), pc_free(mem), pc_free(tile), pc_free(cstart), pc_free(fill);
    *out = ix;
    return st;
}

/* workspace: shared pieces, then one set per thread */
typedef struct ix_ws {
    float *qn, *ctile;
    int32_t *near, *qorder, *bstart;
    struct {
        float *g, *gqn, *tile, *ld;
        int64_t *li;
        int32_t *gid, *gkey, *gsorted, *cnt;
        /* bf16 filter: gathered centred queries (native: bf16; emulated: widened into g), their norms
         * ||q~||^2 and bounds of ||q - c||, the widened bank tile (emulation); native rows: stride 2 KP,
         * an odd dim's last pair padded with zero */
        uint16_t *gb;
        float *gfq, *bw;
        double *grq;
    } t[64];
} ix_ws;

#define IX_MAX_THREADS 64
#define IX_MAX_QUERIES 1024

static size_t ix_layout(const pc_knn_index *ix, int64_t mq, int32_t k, int T, ix_ws *w, void *base) {
    size_t off = 0;
#define IX_PIECE(ptr, type, count)                                                                                \
    do {                                                                                                          \
        if (base) ptr = (type *)((uint8_t *)base + off);                                                          \
        off += ((size_t)(count) * sizeof(type) + 63) & ~(size_t)63;                                               \
    } while (0)
    ix_ws dummy;
    if (!w) w = &dummy;
    const size_t C = (size_t)ix->n_clusters, D = (size_t)ix->dim, m = (size_t)mq;
    IX_PIECE(w->qn, float, m);
    IX_PIECE(w->ctile, float, m * C);
    IX_PIECE(w->near, int32_t, m);
    IX_PIECE(w->qorder, int32_t, m);
    IX_PIECE(w->bstart, int32_t, C + 1);

    for (int t = 0; t < T; t++) {
        IX_PIECE(w->t[t].g, float, m * D);
        IX_PIECE(w->t[t].gqn, float, m);
        IX_PIECE(w->t[t].tile, float, m * PC_KNN_GEMM_N);
        IX_PIECE(w->t[t].ld, float, m * (size_t)k);
        IX_PIECE(w->t[t].li, int64_t, m * (size_t)k);
        IX_PIECE(w->t[t].gid, int32_t, m);
        IX_PIECE(w->t[t].gkey, int32_t, m);
        IX_PIECE(w->t[t].gsorted, int32_t, m);
        IX_PIECE(w->t[t].cnt, int32_t, (size_t)ix->max_cluster_shells + 2);
        w->t[t].gb = NULL, w->t[t].gfq = w->t[t].bw = NULL, w->t[t].grq = NULL;
        if (ix->filter != PC_KNN_FILTER_F32) {
            IX_PIECE(w->t[t].gfq, float, m);
            IX_PIECE(w->t[t].grq, double, m);
        }
        if (ix->filter == PC_KNN_FILTER_BF16_EMULATED) IX_PIECE(w->t[t].bw, float, (size_t)PC_KNN_GEMM_N * D);
        if (ix->filter == PC_KNN_FILTER_BF16) IX_PIECE(w->t[t].gb, uint16_t, m * (size_t)(2 * pc_knn_bf16_kpairs(ix->dim)));
    }
#undef IX_PIECE
    return off + 64;
}

size_t pc_knn_index_workspace_size(const pc_knn_index *ix, int64_t max_queries, int32_t k, int threads) {
    if (!ix) return 0;
    int64_t mq = PC_MAX((int64_t)1, PC_MIN(max_queries, (int64_t)IX_MAX_QUERIES));
    threads = PC_MAX(1, PC_MIN(threads, IX_MAX_THREADS));
    return ix_layout(ix, mq, PC_MAX(k, 1), threads, NULL, NULL);
}

/* the unit roundoff and the absolute error of one fp32 GEMM-form evaluation against the exact squared
 * distance: |d - ||q - b||^2| <= 1.01 (gamma_K + 4u)(qn + bn) + 2.1 u d (norms rounded once from double,
 * their sum rounded, the dot within gamma_K ||q|| ||b|| <= gamma_K (qn + bn) / 2 per product, doubled, and
 * the final subtraction rounded) */
#define IX_U 0x1p-24

/* shells of cluster c that query (qn, centre distance dqc) may need, given the k-th distance dk of its
 * list: the first and one past the last, or s0 == s1 when none. Every member b of a shell lies at true
 * distance r in [rmin, rmax] from the centre, so ||q - b|| >= max(rho_lo - rmax, rmin - rho_hi, 0) =: L
 * with rho in [rho_lo, rho_hi] the centre distance's range; its canonical distance is then at least
 * L^2 - 1.01 (gamma_K + 4u)(qn + bn) - 2.1 u d, and the shell is skipped when that exceeds dk. */
static void needed_shells(const pc_knn_index *ix, int32_t c, float qn, float dqc, float dk, double gk, int32_t *s0,
                          int32_t *s1) {
    const int32_t a = ix->cl_shell[c], b = ix->cl_shell[c + 1];
    if (isinf(dk)) {
        *s0 = a, *s1 = b;
        return;
    }
    const double e1 = 1.01 * (gk + 4 * IX_U) * ((double)qn + ix->cnorm[c]) + 2.1 * IX_U * dqc;
    const double rlo = sqrt(PC_MAX(0.0, (double)dqc - e1)), rhi = sqrt((double)dqc + e1);
    int32_t first = b, last = a - 1;
    for (int32_t s = a; s < b; s++) {
        double L = PC_MAX(0.0, PC_MAX(rlo - ix->sh_rmax[s], ix->sh_rmin[s] - rhi));
        double lim = ((double)dk + 1.01 * (gk + 4 * IX_U) * ((double)qn + ix->sh_bnmax[s])) * (1 + 1e-6);
        if (L * L * (1 - 3 * IX_U) <= lim) {
            if (first == b) first = s;
            last = s;
        }
    }
    *s0 = first, *s1 = first == b ? first : last + 1;
}

/* row i of the gathered queries for the bf16 filter: x~ = bf16(fl(q - c)) (native: into gb; emulated:
 * widened into g), its norm ||x~||^2, and rq = sqrt(||x~||^2 (1 + 3u)) / (1 - eps) >= ||q - c||, since
 * ||x~ - x|| <= eps ||x|| */
static void gather_bf16(const pc_knn_index *ix, ix_ws *w, int t, int32_t i, const float *q, int32_t c) {
    const int32_t dim = ix->dim;
    const float *cc = ix->cent + (size_t)c * dim;
    const size_t ldx = (size_t)(2 * pc_knn_bf16_kpairs(dim));
    uint16_t *xb = w->t[t].gb ? w->t[t].gb + (size_t)i * ldx : NULL;
    if (xb && (dim & 1)) xb[dim] = 0;
    float *xw = w->t[t].gb ? NULL : w->t[t].g + (size_t)i * dim;
    double s2 = 0;
    int32_t j = 0;
#if defined(__AVX2__) && defined(__FMA__)
    /* the same rounding 16 at a time; the squares (exact in double) summed in 4 double lanes x 2 */
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), hi = _mm256_set1_epi32((int)0xffff0000u);
    __m256d s0 = _mm256_setzero_pd(), s1 = s0;
    for (; j + 16 <= dim; j += 16) {
        __m256i r[2];
        for (int h = 0; h < 2; h++) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(q + j + 8 * h), _mm256_loadu_ps(cc + j + 8 * h));
            __m256i u = _mm256_castps_si256(d);
            u = _mm256_add_epi32(u, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one)));
            __m256 x = _mm256_castsi256_ps(_mm256_and_si256(u, hi));
            s0 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_cvtps_pd(_mm256_castps256_ps128(x)), s0);
            s1 = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), s1);
            if (xw) _mm256_storeu_ps(xw + j + 8 * h, x);
            r[h] = _mm256_srli_epi32(u, 16);
        }
        if (xb)
            _mm256_storeu_si256((__m256i *)(xb + j), _mm256_permute4x64_epi64(_mm256_packus_epi32(r[0], r[1]), 0xd8));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
    s2 = (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]);
#endif
    for (; j < dim; j++) {
        uint16_t h = to_bf16(q[j] - cc[j]);
        double v = from_bf16(h);
        if (xb) xb[j] = h;
        else xw[j] = (float)v;
        s2 += v * v;
    }
    w->t[t].gfq[i] = (float)s2;
    w->t[t].grq[i] = sqrt((double)w->t[t].gfq[i] * (1 + 3 * IX_U)) / (1 - BF16_EPS) * (1 + 1e-12);
}

/* the filter's products of `rows` gathered queries and bank rows r0 .. r0 + nr (cluster order; whole
 * shells from shell s0) into the thread's tile: f32: the vectors through SGEMM; bf16: our vdpbf16ps
 * kernel on the packed shells; emulated: the same bf16 values widened to fp32 through SGEMM (exact
 * products either way) */
static void tile_products(const pc_knn_index *ix, ix_ws *w, int t, int32_t rows, int64_t r0, int64_t nr, int32_t s0) {
    const int32_t dim = ix->dim;
    float *G = w->t[t].g, *tile = w->t[t].tile;
    const float *B = ix->bank + (size_t)r0 * dim;
    if (ix->filter == PC_KNN_FILTER_BF16) {
        const int32_t KP = pc_knn_bf16_kpairs(dim), ns = (int32_t)((nr + PC_KNN_SHELL - 1) / PC_KNN_SHELL);
        pc_knn_bf16_tile(tile, PC_KNN_GEMM_N, w->t[t].gb, rows, 2 * KP, ix->bpk + (size_t)s0 * KP * 2 * PC_KNN_SHELL,
                         ns, (int32_t)(nr - (int64_t)(ns - 1) * PC_KNN_SHELL), dim);
        return;
    }
    if (ix->filter != PC_KNN_FILTER_F32) {
        const uint16_t *bb = ix->bbf + (size_t)r0 * dim;
        for (size_t i = 0; i < (size_t)nr * dim; i++) w->t[t].bw[i] = from_bf16(bb[i]);
        B = w->t[t].bw;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, (blasint)nr, dim, 1.0f, G, dim, B, dim, 0.0f, tile,
                PC_KNN_GEMM_N);
}

/* the filter of gathered row i against bank rows from r0 whose distances to the centre are <= rb */
static inline row_filter make_filter(const pc_knn_index *ix, const ix_ws *w, int t, int32_t i, int64_t r0,
                                     double gk, double rb, float qn) {
    if (ix->filter == PC_KNN_FILTER_F32) return (row_filter){0, ix->dim, gk, 0, 0, qn, ix->norms + r0};
    return (row_filter){1, ix->dim, gk, w->t[t].grq[i], rb, w->t[t].gfq[i], ix->bbn + r0};
}

/* Returns 1 when it stopped early because deadline (pc_deadline_get; 0: none) passed: checked before
 * each cluster of both passes, so the results are then incomplete and must not be used. */
static int search_chunk(const pc_knn_index *ix, float *out_dist, int64_t *out_idx, const float *Q, int64_t nq, int32_t k,
                        ix_ws *w, int T, pc_knn_stats *stats, double deadline) {
    int stop = 0; /* set by any thread once the deadline has passed; read with atomics */
    const int32_t C = ix->n_clusters, dim = ix->dim;
    const double gk = gamma_k(dim);
    int64_t pairs = nq * (int64_t)C, evals = 0;
    pc_knn_norms(w->qn, Q, nq, dim);
    for (int64_t i = 0; i < nq * k; i++) out_dist[i] = INFINITY, out_idx[i] = -1;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, C, dim, 1.0f, Q, dim, ix->cent, dim, 0.0f,
                    w->ctile, C);
#pragma omp parallel for schedule(static)
    for (int64_t q = 0; q < nq; q++) {
        float *row = w->ctile + (size_t)q * C, best = INFINITY;
        int32_t bi = 0;
        for (int32_t c = 0; c < C; c++) {
            float d = (w->qn[q] + ix->cnorm[c]) - 2.0f * row[c];
            d = d < 0.f ? 0.f : d;
            row[c] = d;
            if (d < best) best = d, bi = c;
        }
        w->near[q] = bi;
    }
    for (int32_t c = 0; c <= C; c++) w->bstart[c] = 0;
    for (int64_t q = 0; q < nq; q++) w->bstart[w->near[q] + 1]++;
    for (int32_t c = 0; c < C; c++) w->bstart[c + 1] += w->bstart[c];
    for (int64_t q = 0; q < nq; q++) w->qorder[w->bstart[w->near[q]]++] = (int32_t)q;
    for (int32_t c = C; c > 0; c--) w->bstart[c] = w->bstart[c - 1];
    w->bstart[0] = 0;

    int team = 1;
#pragma omp parallel num_threads(T) reduction(+ : pairs, evals)
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#pragma omp single
        team = omp_get_num_threads();
#endif
        float *G = w->t[t].g, *gqn = w->t[t].gqn, *tile = w->t[t].tile;
        const int bf = ix->filter != PC_KNN_FILTER_F32;
        /* pass 1: every query against its nearest cluster, whole (each query in one cluster: one writer) */
#pragma omp for schedule(dynamic, 1)
        for (int32_t c = 0; c < C; c++) {
            const int32_t q0 = w->bstart[c], nqc = w->bstart[c + 1] - q0;
            if (!nqc) continue;
            if (deadline > 0 && (__atomic_load_n(&stop, __ATOMIC_RELAXED) || pc_deadline_passed(deadline))) {
                __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
                continue;
            }
            for (int32_t i = 0; i < nqc; i++) {
                int32_t q = w->qorder[q0 + i];
                if (bf) gather_bf16(ix, w, t, i, Q + (size_t)q * dim, c);
                else memcpy(G + (size_t)i * dim, Q + (size_t)q * dim, sizeof(float) * (size_t)dim);
                gqn[i] = w->qn[q];
            }
            const int64_t p0 = ix->sh_start[ix->cl_shell[c]], p1 = ix->sh_start[ix->cl_shell[c + 1]];
            for (int64_t r0 = p0; r0 < p1; r0 += PC_KNN_GEMM_N) {
                const int64_t nr = PC_MIN((int64_t)PC_KNN_GEMM_N, p1 - r0);
                tile_products(ix, w, t, nqc, r0, nr, ix->cl_shell[c] + (int32_t)((r0 - p0) / PC_KNN_SHELL));
                pairs += (int64_t)nqc * nr;
                /* shells are farthest first: the tile's first shell bounds every member's centre distance */
                const double rb = ix->sh_rmax[ix->cl_shell[c] + (r0 - p0) / PC_KNN_SHELL];
                for (int32_t i = 0; i < nqc; i++) {
                    int32_t q = w->qorder[q0 + i];
                    row_filter f = make_filter(ix, w, t, i, r0, gk, rb, gqn[i]);
                    evals += scan_row(out_dist + (size_t)q * k, out_idx + (size_t)q * k, k, tile + (size_t)i * PC_KNN_GEMM_N,
                                      &f, ix->norms + r0, nr, gqn[i], ix->cl_bnmax[c], Q + (size_t)q * dim,
                                      ix->bank + (size_t)r0 * dim, dim, ix->perm + r0, 0);
                }
            }
        }
        /* pass 2: the other clusters, shell by shell, each thread on its own copy of the lists */
        float *ld = out_dist;
        int64_t *li = out_idx;
        if (t > 0) {
            ld = w->t[t].ld, li = w->t[t].li;
            memcpy(ld, out_dist, sizeof(float) * (size_t)(nq * k));
            memcpy(li, out_idx, sizeof(int64_t) * (size_t)(nq * k));
        }
#pragma omp barrier
        int32_t *gid = w->t[t].gid, *gkey = w->t[t].gkey, *gs = w->t[t].gsorted, *cnt = w->t[t].cnt;
#pragma omp for schedule(dynamic, 1)
        for (int32_t c = 0; c < C; c++) {
            const int32_t a = ix->cl_shell[c], ns = ix->cl_shell[c + 1] - a;
            int32_t ng = 0;
            if (deadline > 0 && (__atomic_load_n(&stop, __ATOMIC_RELAXED) || pc_deadline_passed(deadline))) {
                __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
                continue;
            }
            for (int32_t j = 0; j <= ns + 1; j++) cnt[j] = 0;
            for (int64_t q = 0; q < nq; q++) {
                if (w->near[q] == c) continue;
                int32_t s0, s1;
                needed_shells(ix, c, w->qn[q], w->ctile[(size_t)q * C + c], ld[(size_t)q * k + k - 1], gk, &s0, &s1);
                if (s0 == s1) continue;
                gid[ng] = (int32_t)q, gkey[ng] = s1 - a; /* shells [0, gkey) of the cluster */
                cnt[s1 - a]++;
                ng++;
            }
            if (!ng) continue;
            /* order by key, descending: the queries needing shell j are then a prefix */
            int32_t pos = 0;
            for (int32_t j = ns; j >= 1; j--) {
                int32_t n_j = cnt[j];
                cnt[j] = pos;
                pos += n_j;
            }
            for (int32_t i = 0; i < ng; i++) gs[cnt[gkey[i]]++] = gid[i];
            /* after the scatter cnt[j] = number of queries with key >= j */
            for (int32_t i = 0; i < ng; i++) {
                if (bf) gather_bf16(ix, w, t, i, Q + (size_t)gs[i] * dim, c);
                else memcpy(G + (size_t)i * dim, Q + (size_t)gs[i] * dim, sizeof(float) * (size_t)dim);
                gqn[i] = w->qn[gs[i]];
            }
            int32_t j = 0;
            while (j < ns) {
                const int32_t rows = cnt[j + 1]; /* queries with key > j */
                if (!rows) break;
                int32_t j2 = j + 1;
                while (j2 < ns && cnt[j2 + 1] * 4 >= rows * 3 &&
                       ix->sh_start[a + j2 + 1] - ix->sh_start[a + j] <= PC_KNN_GEMM_N)
                    j2++;
                const int64_t r0 = ix->sh_start[a + j], nr = ix->sh_start[a + j2] - r0;
                float bnm = 0.f;
                for (int32_t s = a + j; s < a + j2; s++) bnm = PC_MAX(bnm, ix->sh_bnmax[s]);
                tile_products(ix, w, t, rows, r0, nr, a + j);
                pairs += (int64_t)rows * nr;
                const double rb = ix->sh_rmax[a + j];
                for (int32_t i = 0; i < rows; i++) {
                    int32_t q = gs[i];
                    row_filter f = make_filter(ix, w, t, i, r0, gk, rb, gqn[i]);
                    evals += scan_row(ld + (size_t)q * k, li + (size_t)q * k, k, tile + (size_t)i * PC_KNN_GEMM_N,
                                      &f, ix->norms + r0, nr, gqn[i], bnm, Q + (size_t)q * dim,
                                      ix->bank + (size_t)r0 * dim, dim, ix->perm + r0, 0);
                }
                j = j2;
            }
        }
    }
    /* merge the threads' lists into out (the pass-1 entries are in every list: skip repeats) */
    for (int t = 1; t < team; t++) {
        for (int64_t q = 0; q < nq; q++) {
            float *od = out_dist + (size_t)q * k, *td = w->t[t].ld + (size_t)q * k;
            int64_t *oi = out_idx + (size_t)q * k, *ti = w->t[t].li + (size_t)q * k;
            for (int32_t e = 0; e < k && ti[e] >= 0; e++) {
                int dup = 0;
                for (int32_t f = 0; f < k && !dup; f++) dup = oi[f] == ti[e];
                if (!dup && ranks_before(td[e], ti[e], od[k - 1], oi[k - 1])) topk_insert(od, oi, k, td[e], ti[e]);
            }
        }
    }
    if (stats) stats->pairs += pairs, stats->evals += evals;
    return stop;
}

pc_status pc_knn_index_search(const pc_knn_index *ix, float *out_dist, int64_t *out_idx, const float *queries,
                              int64_t m, int32_t k, void *workspace, size_t ws_bytes, pc_knn_stats *stats) {
    if (!ix || !out_dist || !out_idx || (m > 0 && !queries) || m < 0 || k < 1 || !workspace)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn index search: bad arguments (m %lld, k %d)", (long long)m, k);
    if (stats) stats->pairs = 0, stats->evals = 0;
    if (!m) return PC_OK;
    int T = 1;
#ifdef _OPENMP
    T = omp_in_parallel() ? 1 : PC_MIN(omp_get_max_threads(), IX_MAX_THREADS);
#endif
    int64_t mq = PC_MIN(m, (int64_t)IX_MAX_QUERIES);
    while (T > 1 && ix_layout(ix, mq, k, T, NULL, NULL) > ws_bytes) T--;
    while (mq > 1 && ix_layout(ix, mq, k, T, NULL, NULL) > ws_bytes) mq = mq * 3 / 4;
    if (ix_layout(ix, mq, k, T, NULL, NULL) > ws_bytes)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "knn index search: workspace of %zu bytes too small", ws_bytes);
    ix_ws w;
    void *base = (void *)(((uintptr_t)workspace + 63) & ~(uintptr_t)63);
    ix_layout(ix, mq, k, T, &w, base);
    const double deadline = pc_deadline_get(); /* the caller's (pc_set_deadline_local), for the threads */
    for (int64_t q0 = 0; q0 < m; q0 += mq) {
        const int64_t nq = PC_MIN(mq, m - q0);
        if (search_chunk(ix, out_dist + (size_t)q0 * k, out_idx + (size_t)q0 * k, queries + (size_t)q0 * ix->dim, nq, k,
                         &w, T, stats, deadline))
            return pc_deadline_check("during the kNN search");
    }
    return PC_OK;
}
