/*
 * coreset.c - approximate greedy coreset (the PatchCore reference's ApproximateGreedyCoresetSampler),
 * random subsampling, and the SplitMix64 streams that make them deterministic.
 *
 * The greedy loop is memory-bound: every iteration reads the whole N x 128 projection once. One fused
 * pass per iteration computes ||proj_i - proj_sel|| (direct differences, 8 points at a time in AVX2),
 * takes the minimum with the running distance, stores it and tracks the running argmax (first index on
 * ties) for the next iteration, so each iteration is a single read of the projection plus one read and
 * write of the distances. Threads split the points into contiguous ranges; their (max, index) pairs are
 * reduced in thread order, which keeps "first index on ties" and makes the result thread-count-free.
 *
 * Distances: the reference computes sqrt(clamp(|a|^2 - 2ab + |b|^2, 0)) with torch.mm; we compute
 * sqrt(sum (a-b)^2) in float32, which is more accurate (no cancellation) - both round to the same
 * choices except on near-ties at the 1e-6 level; see docs/method-implementation.md.
 */
#include "coreset.h"
#include "comm.h"
#include "knn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define PC_CORESET_AVX2 1
#endif

uint64_t pc_rng_below(pc_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n; /* accept r <= limit: (limit+1) % n == 0 */
    uint64_t x;
    do x = pc_rng_next(r);
    while (x > limit);
    return x % n;
}

void pc_coreset_projection(float *proj, uint64_t seed, int32_t dim, int32_t proj_dim) {
    pc_rng r = {seed ^ 0x50524F4Aull};
    const float a = 1.0f / sqrtf((float)dim);
    const size_t n = (size_t)dim * (size_t)proj_dim;
    for (size_t i = 0; i < n; i++) {
        float u = (float)(pc_rng_next(&r) >> 40) * (1.0f / 16777216.0f);
        proj[i] = (2.0f * u - 1.0f) * a;
    }
}

int32_t pc_coreset_starts(int64_t *starts, uint64_t seed, int64_t n_points) {
    pc_rng r = {seed ^ 0x53544152ull};
    int32_t s = (int32_t)PC_MIN((int64_t)PC_CORESET_STARTS, n_points);
    for (int32_t i = 0; i < s;) {
        int64_t v = (int64_t)pc_rng_below(&r, (uint64_t)n_points);
        int dup = 0;
        for (int32_t j = 0; j < i; j++) dup |= starts[j] == v;
        if (!dup) starts[i++] = v;
    }
    return s;
}

int64_t pc_coreset_size(int64_t n_points, double ratio) {
    if (n_points <= 0 || !(ratio > 0)) return 0;
    if (ratio >= 1) return n_points;
    int64_t n = (int64_t)((double)n_points * ratio);
    return n < 1 ? 1 : n;
}

/* ---- the fused distance-and-minimum pass ---- */

/* d2 of one point to sel, scalar (tails and non-multiple-of-8 dimensions). */
static inline float dist2_scalar(const float *a, const float *b, int32_t d) {
    float s = 0.f;
    for (int32_t k = 0; k < d; k++) {
        float t = a[k] - b[k];
        s += t * t;
    }
    return s;
}

#ifdef PC_CORESET_AVX2
static inline __m256 hsum8x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6,
                             __m256 a7) {
    /* lane i of the result = horizontal sum of a_i */
    __m256 b0 = _mm256_hadd_ps(a0, a1), b1 = _mm256_hadd_ps(a2, a3);
    __m256 b2 = _mm256_hadd_ps(a4, a5), b3 = _mm256_hadd_ps(a6, a7);
    __m256 c0 = _mm256_hadd_ps(b0, b1), c1 = _mm256_hadd_ps(b2, b3);
    /* c0 = [s0l s1l s2l s3l | s0h s1h s2h s3h] etc. */
    __m256 lo = _mm256_permute2f128_ps(c0, c1, 0x20), hi = _mm256_permute2f128_ps(c0, c1, 0x31);
    return _mm256_add_ps(lo, hi);
}

/* Squared distances of 8 consecutive points (rows of p, stride d) to sel; d % 8 == 0. */
static inline __m256 dist2_8(const float *p, const float *sel, int32_t d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    const float *p0 = p, *p1 = p + d, *p2 = p + 2 * d, *p3 = p + 3 * d;
    const float *p4 = p + 4 * d, *p5 = p + 5 * d, *p6 = p + 6 * d, *p7 = p + 7 * d;
    for (int32_t k = 0; k < d; k += 8) {
        __m256 s = _mm256_loadu_ps(sel + k), t;
        t = _mm256_sub_ps(_mm256_loadu_ps(p0 + k), s); a0 = _mm256_fmadd_ps(t, t, a0);
        t = _mm256_sub_ps(_mm256_loadu_ps(p1 + k), s); a1 = _mm256_fmadd_ps(t, t, a1);
        t = _mm256_sub_ps(_mm256_loadu_ps(p2 + k), s); a2 = _mm256_fmadd_ps(t, t, a2);
        t = _mm256_sub_ps(_mm256_loadu_ps(p3 + k), s); a3 = _mm256_fmadd_ps(t, t, a3);
        t = _mm256_sub_ps(_mm256_loadu_ps(p4 + k), s); a4 = _mm256_fmadd_ps(t, t, a4);
        t = _mm256_sub_ps(_mm256_loadu_ps(p5 + k), s); a5 = _mm256_fmadd_ps(t, t, a5);
        t = _mm256_sub_ps(_mm256_loadu_ps(p6 + k), s); a6 = _mm256_fmadd_ps(t, t, a6);
        t = _mm256_sub_ps(_mm256_loadu_ps(p7 + k), s); a7 = _mm256_fmadd_ps(t, t, a7);
    }
    return hsum8x8(a0, a1, a2, a3, a4, a5, a6, a7);
}

/* d2 of one point with the same lane-wise accumulation as dist2_8 (so a point gives the same value
 * whether it falls in a block of 8 or in the tail). */
static inline float dist2_1(const float *p, const float *sel, int32_t d) {
    __m256 a = _mm256_setzero_ps();
    for (int32_t k = 0; k < d; k += 8) {
        __m256 t = _mm256_sub_ps(_mm256_loadu_ps(p + k), _mm256_loadu_ps(sel + k));
        a = _mm256_fmadd_ps(t, t, a);
    }
    __m256 z = _mm256_setzero_ps();
    return _mm256_cvtss_f32(hsum8x8(a, z, z, z, z, z, z, z));
}
#endif

/* The distances of points [lo, hi) to sel (all squared then sqrt'd); mode 0: dist = d (initialise),
 * mode 1: dist += d (accumulate for the start mean), mode 2: dist = min(dist, d) and return the argmax
 * of the new distances in *best / *best_i. */
static void pass_range(float *dist, const float *pj, const float *sel, int32_t d, int64_t lo, int64_t hi,
                       int mode, float *best, int64_t *best_i) {
    float bv = -INFINITY;
    int64_t bi = -1;
    int64_t i = lo;
#ifdef PC_CORESET_AVX2
    if (d % 8 == 0) {
        __m256 vbest = _mm256_set1_ps(-INFINITY);
        for (; i + 8 <= hi; i += 8) {
            __m256 dd = _mm256_sqrt_ps(dist2_8(pj + (size_t)i * d, sel, d));
            if (mode == 0) {
                _mm256_storeu_ps(dist + i, dd);
            } else if (mode == 1) {
                _mm256_storeu_ps(dist + i, _mm256_add_ps(_mm256_loadu_ps(dist + i), dd));
            } else {
                __m256 nd = _mm256_min_ps(_mm256_loadu_ps(dist + i), dd);
                _mm256_storeu_ps(dist + i, nd);
                /* only look for the index when this block beats the running best (rare) */
                if (_mm256_movemask_ps(_mm256_cmp_ps(nd, vbest, _CMP_GT_OQ))) {
                    float tmp[8];
                    _mm256_storeu_ps(tmp, nd);
                    for (int k = 0; k < 8; k++)
                        if (tmp[k] > bv) bv = tmp[k], bi = i + k;
                    vbest = _mm256_set1_ps(bv);
                }
            }
        }
        for (; i < hi; i++) {
            float dd = sqrtf(dist2_1(pj + (size_t)i * d, sel, d));
            if (mode == 0) dist[i] = dd;
            else if (mode == 1) dist[i] += dd;
            else {
                float nd = dist[i] < dd ? dist[i] : dd;
                dist[i] = nd;
                if (nd > bv) bv = nd, bi = i;
            }
        }
    }
#endif
    for (; i < hi; i++) {
        float dd = sqrtf(dist2_scalar(pj + (size_t)i * d, sel, d));
        if (mode == 0) dist[i] = dd;
        else if (mode == 1) dist[i] += dd;
        else {
            float nd = dist[i] < dd ? dist[i] : dd;
            dist[i] = nd;
            if (nd > bv) bv = nd, bi = i;
        }
    }
    if (best) *best = bv, *best_i = bi;
}

/* d2 of one point, bit-identical to the value pass_range computes for it */
static inline float dist2_point(const float *p, const float *sel, int32_t d) {
#ifdef PC_CORESET_AVX2
    if (d % 8 == 0) return dist2_1(p, sel, d);
#endif
    return dist2_scalar(p, sel, d);
}

/* The pruned min-update of points [lo, hi) for the new centre number `it`. assign[i] is the centre that
 * set dist[i] (-1: still the initial mean distance); cd[c] = ||centre c - sel||. By the triangle
 * inequality ||p_i - sel|| >= cd[a] - dist[i], so cd[a] >= 2 dist[i] means the new centre cannot lower
 * dist[i]; the 1e-4 margin (vs ~1e-6 float error of the distances) makes that hold for the computed
 * float distance too, so skipping never changes a value: the result is identical to the dense pass. */
static void pruned_range(float *dist, int32_t *assign, const float *cd, const float *pj, const float *sel, int32_t d,
                         int64_t lo, int64_t hi, int32_t it, float *best, int64_t *best_i) {
    float bv = -INFINITY;
    int64_t bi = -1;
    for (int64_t i = lo; i < hi; i++) {
        const int32_t a = assign[i];
        float cur = dist[i];
        if (a < 0 || !(cd[a] >= 2.0f * cur * 1.0001f)) {
            float dd = sqrtf(dist2_point(pj + (size_t)i * d, sel, d));
            if (dd < cur) {
                cur = dd;
                dist[i] = dd;
                assign[i] = it;
            }
        }
        if (cur > bv) bv = cur, bi = i;
    }
    *best = bv, *best_i = bi;
}

void pc_coreset_centre_distances(float *cd, const float *cent, int64_t n, const float *sel, int32_t proj_dim) {
#pragma omp for schedule(static)
    for (int64_t c = 0; c < n; c++) cd[c] = sqrtf(dist2_point(cent + (size_t)c * proj_dim, sel, proj_dim));
}

/* argmax, first index on ties (NaN never wins) */
static int64_t argmax_first(const float *v, int64_t n) {
    int64_t bi = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[bi]) bi = i;
    return bi;
}

static pc_status check_args(const int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                            const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts, int64_t n) {
    if (!out_idx || !feats || !proj || !starts || n_points < 1 || dim < 1 || proj_dim < 1 || n_starts < 1 ||
        n_starts > n_points || n < 0 || n > n_points)
        return pc_fail(PC_ERR_INVALID_ARGUMENT,
                       "coreset: bad arguments (N %lld, dim %d, proj %d, starts %d, n %lld)", (long long)n_points,
                       dim, proj_dim, n_starts, (long long)n);
    for (int32_t s = 0; s < n_starts; s++)
        if (starts[s] < 0 || starts[s] >= n_points)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: start index %lld out of range", (long long)starts[s]);
    return PC_OK;
}

void pc_coreset_project(float *pj, const float *feats, int64_t n_rows, int32_t dim, const float *proj, int32_t proj_dim) {
    if (n_rows < 1) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n_rows, proj_dim, dim, 1.0f, feats, dim, proj,
                proj_dim, 0.0f, pj, proj_dim);
}

/* A loop over points spread over processes (pc_coreset_greedy_shard): this process holds the global
 * points [offsets[rank], offsets[rank + 1]); seconds accumulates the time spent talking. */
typedef struct shard {
    const pc_comm *comm;
    const int64_t *offsets;
    double seconds;
} shard;

/* The global pick from this process's candidate (local index bi, -1: none, with distance bv): *next and
 * *cur_max the winner's global index and distance, row its projected row, on every process. */
static pc_status shard_pick(shard *sh, const float *pj, int32_t d, int64_t bi, float bv, int64_t *next, float *cur_max,
                            float *row) {
    const int64_t off = sh->offsets[sh->comm->rank];
    int64_t g = bi >= 0 ? off + bi : -1;
    float v = bi >= 0 ? bv : -INFINITY;
    if (bi >= 0) memcpy(row, pj + (size_t)bi * d, sizeof(float) * (size_t)d);
    else memset(row, 0, sizeof(float) * (size_t)d);
    const double t0 = pc_monotonic_seconds();
    pc_status st = sh->comm->argmax(sh->comm->user, &v, &g, row, d);
    sh->seconds += pc_monotonic_seconds() - t0;
    if (st) return st;
    if (g < 0) return pc_fail(PC_ERR_INTERNAL, "coreset: no process has a point with a finite distance");
    *next = g, *cur_max = v;
    return PC_OK;
}

/* The projected row of global point g (a start point), sent by the process that holds it. */
static pc_status shard_row(shard *sh, const float *pj, int32_t d, int64_t g, float *row) {
    const pc_comm *c = sh->comm;
    int32_t owner = 0;
    while (owner + 1 < c->size && g >= sh->offsets[owner + 1]) owner++;
    if (owner == c->rank) memcpy(row, pj + (size_t)(g - sh->offsets[owner]) * d, sizeof(float) * (size_t)d);
    const double t0 = pc_monotonic_seconds();
    pc_status st = c->bcast(c->user, row, sizeof(float) * (size_t)d, owner);
    sh->seconds += pc_monotonic_seconds() - t0;
    return st;
}

/* The greedy loop on a given N x proj_dim projection (prune: see pruned_range). */
/* sh: when not NULL, the points are this process's share of a loop spread over processes: n_points
 * (possibly 0) local ones, starts and out_idx global indices, and each pick is agreed with the other
 * processes (one reduction that carries the winner's row); every process computes the distances of
 * its own points exactly as one process computes them, so the picks are those of one process.
 * init_dist: when not NULL, the initial distances (a continuation, pc_coreset_greedy_continue) instead of
 * the mean distance to the start points. stop_radius >= 0: stop before a pick once the largest distance
 * is <= stop_radius. *n_done: the number picked. radius (may be NULL; pruned loop only): the largest
 * distance from a point to the nearest pick (or, for a continuation, to the nearest pick or initial
 * point) after the last pick. */
static pc_status greedy_loop(int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                             const int64_t *starts, int32_t n_starts, int64_t n, pc_progress_fn progress, void *user,
                             bool prune, const float *init_dist, float stop_radius, int64_t *n_done, float *radius,
                             shard *sh) {
    pc_status st = PC_OK;
    float *dist = pc_malloc(sizeof(float) * (size_t)(n_points > 0 ? n_points : 1));
    float *sel = pc_malloc(sizeof(float) * (size_t)proj_dim * 2);
    /* pruning state: the centre of every point, the chosen centres' projections, centre distances */
    if (n > INT32_MAX) prune = false;
    int32_t *assign = prune ? pc_malloc(sizeof(int32_t) * (size_t)(n_points > 0 ? n_points : 1)) : NULL;
    float *cent = prune ? pc_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1) * proj_dim) : NULL;
    float *cd = prune ? pc_malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)) : NULL;
    if (!dist || !sel || (prune && (!assign || !cent || !cd))) {
        pc_free(dist), pc_free(sel), pc_free(assign), pc_free(cent), pc_free(cd);
        st = pc_fail(PC_ERR_NO_MEMORY, "coreset: out of memory for the distances of %lld points", (long long)n_points);
        return sh ? pc_comm_agree(sh->comm, st) : st;
    }
    if (sh && (st = pc_comm_agree(sh->comm, PC_OK))) {
        pc_free(dist), pc_free(sel), pc_free(assign), pc_free(cent), pc_free(cd);
        return st;
    }
    float *nextrow = sel + proj_dim; /* sh: the row of the next pick, as the reduction brought it */
    if (prune)
        for (int64_t i = 0; i < n_points; i++) assign[i] = -1;

    int nth = 1;
#ifdef _OPENMP
    nth = omp_get_max_threads();
#endif
    /* chunk boundaries are multiples of 8 so that each point is always handled by the same code path */
    float bestv[256];
    int64_t besti[256];
    if (nth > 256) nth = 256;
    const int64_t chunk = ((n_points + nth - 1) / nth + 7) / 8 * 8;

    /* initial distance: mean distance to the start points, or the caller's */
    if (init_dist) memcpy(dist, init_dist, sizeof(float) * (size_t)n_points);
    for (int32_t s = 0; !init_dist && s < n_starts; s++) {
        if (sh) {
            if ((st = shard_row(sh, pj, proj_dim, starts[s], sel))) goto out;
        } else {
            memcpy(sel, pj + (size_t)starts[s] * proj_dim, sizeof(float) * (size_t)proj_dim);
        }
#pragma omp parallel for num_threads(nth) schedule(static, 1)
        for (int t = 0; t < nth; t++) {
            int64_t lo = (int64_t)t * chunk, hi = PC_MIN(n_points, lo + chunk);
            if (lo < hi) pass_range(dist, pj, sel, proj_dim, lo, hi, s == 0 ? 0 : 1, NULL, NULL);
        }
    }
    if (!init_dist)
        for (int64_t i = 0; i < n_points; i++) dist[i] /= (float)n_starts;
    int64_t next;
    float cur_max;
    if (sh) {
        const int64_t bi = n_points > 0 ? argmax_first(dist, n_points) : -1;
        if ((st = shard_pick(sh, pj, proj_dim, bi, bi >= 0 ? dist[bi] : -INFINITY, &next, &cur_max, nextrow))) goto out;
    } else {
        next = argmax_first(dist, n_points);
        cur_max = dist[next];
    }
    int64_t done = 0;

    const int64_t every = n / 100 > 0 ? n / 100 : 1;
    for (int64_t it = 0; it < n; it++) {
        if (stop_radius >= 0 && !(cur_max > stop_radius)) break;
        out_idx[it] = next;
        done = it + 1;
        memcpy(sel, sh ? nextrow : pj + (size_t)next * proj_dim, sizeof(float) * (size_t)proj_dim);
        if (prune) {
            const int32_t t_it = (int32_t)it;
            memcpy(cent + (size_t)it * proj_dim, sel, sizeof(float) * (size_t)proj_dim);
#pragma omp parallel num_threads(nth)
            {
                pc_coreset_centre_distances(cd, cent, t_it, sel, proj_dim); /* shared by the team */
#pragma omp for schedule(static, 1)
                for (int t = 0; t < nth; t++) {
                    int64_t lo = (int64_t)t * chunk, hi = PC_MIN(n_points, lo + chunk);
                    bestv[t] = -INFINITY;
                    besti[t] = -1;
                    if (lo < hi) pruned_range(dist, assign, cd, pj, sel, proj_dim, lo, hi, t_it, &bestv[t], &besti[t]);
                }
            }
        } else {
#pragma omp parallel for num_threads(nth) schedule(static, 1)
            for (int t = 0; t < nth; t++) {
                int64_t lo = (int64_t)t * chunk, hi = PC_MIN(n_points, lo + chunk);
                bestv[t] = -INFINITY;
                besti[t] = -1;
                if (lo < hi) pass_range(dist, pj, sel, proj_dim, lo, hi, 2, &bestv[t], &besti[t]);
            }
        }
        float bv = -INFINITY;
        next = -1;
        for (int t = 0; t < nth; t++)
            if (besti[t] >= 0 && (next < 0 || bestv[t] > bv)) bv = bestv[t], next = besti[t];
        if (sh) {
            if (it + 1 < n)
                if ((st = shard_pick(sh, pj, proj_dim, next, bv, &next, &cur_max, nextrow))) break;
            /* progress only: every process goes on to the end together (no cancelling one of them) */
            if (progress && ((it + 1) % every == 0 || it + 1 == n)) progress(user, "coreset", it + 1, n);
            continue;
        }
        if (next < 0) next = 0; /* all distances NaN: cannot happen with finite features */
        cur_max = bv;
        if (progress && ((it + 1) % every == 0 || it + 1 == n) && progress(user, "coreset", it + 1, n)) {
            st = pc_fail(PC_ERR_CANCELLED, "coreset: cancelled after %lld of %lld", (long long)(it + 1), (long long)n);
            break;
        }
    }
    if (n_done) *n_done = done;
    if (radius && !st) {
        /* A point still at its initial value (assign -1) holds the mean distance to the start points,
         * which may be below its distance to the picks: measure that directly (rarely any). A
         * continuation's initial value is already a distance to a kept point. */
        float r = 0.f;
        for (int64_t i = 0; i < n_points; i++) {
            float d = dist[i];
            if (prune && !init_dist && assign[i] < 0) {
                d = INFINITY;
                for (int64_t c = 0; c < done; c++)
                    d = PC_MIN(d, sqrtf(dist2_point(pj + (size_t)i * proj_dim, cent + (size_t)c * proj_dim, proj_dim)));
            }
            if (d > r) r = d;
        }
        if (sh) {
            const double t0 = pc_monotonic_seconds();
            st = sh->comm->max(sh->comm->user, &r);
            sh->seconds += pc_monotonic_seconds() - t0;
        }
        *radius = r;
    }
out:
    pc_free(dist), pc_free(sel), pc_free(assign), pc_free(cent), pc_free(cd);
    return st;
}

static pc_status check_loop_args(const int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                                 const int64_t *starts, int32_t n_starts, int64_t n) {
    if (!out_idx || !pj || !starts || n_points < 1 || proj_dim < 1 || n_starts < 1 || n_starts > n_points || n < 0 ||
        n > n_points)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: bad arguments (N %lld, proj %d, starts %d, n %lld)",
                       (long long)n_points, proj_dim, n_starts, (long long)n);
    for (int32_t s = 0; s < n_starts; s++)
        if (starts[s] < 0 || starts[s] >= n_points)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: start index %lld out of range", (long long)starts[s]);
    return PC_OK;
}

pc_status pc_coreset_greedy_projected(int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                                      const int64_t *starts, int32_t n_starts, int64_t n, pc_progress_fn progress,
                                      void *user) {
    pc_status st = check_loop_args(out_idx, pj, n_points, proj_dim, starts, n_starts, n);
    if (st != PC_OK) return st;
    return greedy_loop(out_idx, pj, n_points, proj_dim, starts, n_starts, n, progress, user, true, NULL, -1.f, NULL,
                       NULL, NULL);
}

pc_status pc_coreset_greedy_projected_radius(int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                                             const int64_t *starts, int32_t n_starts, int64_t n,
                                             pc_progress_fn progress, void *user, float *radius) {
    pc_status st = check_loop_args(out_idx, pj, n_points, proj_dim, starts, n_starts, n);
    if (st != PC_OK) return st;
    return greedy_loop(out_idx, pj, n_points, proj_dim, starts, n_starts, n, progress, user, true, NULL, -1.f, NULL,
                       radius, NULL);
}

pc_status pc_coreset_min_distances(float *dist, const float *pj, int64_t n_points, const float *fixed,
                                   int64_t n_fixed, int32_t proj_dim) {
    if (!dist || !pj || !fixed || n_points < 0 || n_fixed < 1 || proj_dim < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: bad arguments for the distances to %lld kept points",
                       (long long)n_fixed);
    if (n_points == 0) return PC_OK;
    const int64_t block = 4096;
    const size_t ws_size = pc_knn_workspace_size(block);
    float *norms = pc_malloc(sizeof(float) * (size_t)n_fixed);
    float *d2 = pc_malloc(sizeof(float) * (size_t)block);
    int64_t *idx = pc_malloc(sizeof(int64_t) * (size_t)block);
    void *ws = pc_malloc(ws_size);
    pc_status st = PC_OK;
    if (!norms || !d2 || !idx || !ws) st = pc_fail(PC_ERR_NO_MEMORY, "coreset: out of memory for a nearest-point search");
    if (!st) pc_knn_norms(norms, fixed, n_fixed, proj_dim);
    for (int64_t b0 = 0; b0 < n_points && !st; b0 += block) {
        const int64_t nb = PC_MIN(block, n_points - b0);
        st = pc_knn_search(d2, idx, pj + (size_t)b0 * proj_dim, nb, fixed, norms, n_fixed, proj_dim, 1, ws, ws_size);
        if (st) break;
        /* the nearest point's distance by direct differences, as the greedy loop measures */
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < nb; i++)
            dist[b0 + i] = sqrtf(dist2_point(pj + (size_t)(b0 + i) * proj_dim, fixed + (size_t)idx[i] * proj_dim, proj_dim));
    }
    pc_free(norms), pc_free(d2), pc_free(idx), pc_free(ws);
    return st;
}

pc_status pc_coreset_greedy_continue(int64_t *out_idx, int64_t *n_out, float *radius, const float *pj, int64_t n_points,
                                     int32_t proj_dim, const float *init_dist, int64_t n_max, float stop_radius,
                                     pc_progress_fn progress, void *user) {
    if (!out_idx || !n_out || !pj || !init_dist || n_points < 1 || proj_dim < 1 || n_max < 0 || n_max > n_points)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: bad arguments to continue (N %lld, proj %d, n %lld)",
                       (long long)n_points, proj_dim, (long long)n_max);
    return greedy_loop(out_idx, pj, n_points, proj_dim, NULL, 0, n_max, progress, user, true, init_dist, stop_radius,
                       n_out, radius, NULL);
}

pc_status pc_coreset_greedy_shard(int64_t *out_idx, float *radius, const float *pj, int64_t n_local, int32_t proj_dim,
                                  const pc_comm *comm, const int64_t *offsets, const int64_t *starts, int32_t n_starts,
                                  int64_t n, pc_progress_fn progress, void *user, double *comm_seconds) {
    const int64_t n_points = offsets[comm->size];
    pc_status st = PC_OK;
    if (!out_idx || (!pj && n_local) || n_local != offsets[comm->rank + 1] - offsets[comm->rank] || proj_dim < 1 ||
        n_starts < 1 || n_starts > n_points || n < 0 || n > n_points)
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: bad arguments (N %lld of %lld, proj %d, starts %d, n %lld)",
                     (long long)n_local, (long long)n_points, proj_dim, n_starts, (long long)n);
    for (int32_t s = 0; !st && s < n_starts; s++)
        if (starts[s] < 0 || starts[s] >= n_points)
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: start index %lld out of range", (long long)starts[s]);
    if ((st = pc_comm_agree(comm, st))) return st;
    shard sh = {comm, offsets, 0.0};
    st = greedy_loop(out_idx, pj, n_local, proj_dim, starts, n_starts, n, progress, user, true, NULL, -1.f, NULL, radius,
                     &sh);
    if (comm_seconds) *comm_seconds = sh.seconds;
    return st;
}

static pc_status greedy_impl(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                             const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts,
                             int64_t n, pc_progress_fn progress, void *user, bool prune) {
    pc_status st = check_args(out_idx, feats, n_points, dim, proj, proj_dim, starts, n_starts, n);
    if (st != PC_OK) return st;
    size_t pj_floats;
    if (!pc_mul_size((size_t)n_points, (size_t)proj_dim, &pj_floats))
        return pc_fail(PC_ERR_TOO_LARGE, "coreset: %lld points too many", (long long)n_points);
    float *pj = pc_malloc(sizeof(float) * pj_floats);
    if (!pj)
        return pc_fail(PC_ERR_NO_MEMORY, "coreset: out of memory for a %lld x %d projection", (long long)n_points,
                       proj_dim);
    /* projection: (N, dim) x (dim, proj_dim); blocked over rows */
    const int64_t rows_blk = 65536;
    for (int64_t r0 = 0; r0 < n_points; r0 += rows_blk)
        pc_coreset_project(pj + (size_t)r0 * proj_dim, feats + (size_t)r0 * dim, PC_MIN(rows_blk, n_points - r0), dim,
                           proj, proj_dim);
    st = greedy_loop(out_idx, pj, n_points, proj_dim, starts, n_starts, n, progress, user, prune, NULL, -1.f, NULL, NULL,
                     NULL);
    pc_free(pj);
    return st;
}

pc_status pc_coreset_greedy(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                            const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts,
                            int64_t n, pc_progress_fn progress, void *user) {
    return greedy_impl(out_idx, feats, n_points, dim, proj, proj_dim, starts, n_starts, n, progress, user, true);
}

pc_status pc_coreset_greedy_dense(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                                  const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts,
                                  int64_t n, pc_progress_fn progress, void *user) {
    return greedy_impl(out_idx, feats, n_points, dim, proj, proj_dim, starts, n_starts, n, progress, user, false);
}

pc_status pc_coreset_greedy_reference(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                                      const float *proj, int32_t proj_dim, const int64_t *starts,
                                      int32_t n_starts, int64_t n) {
    pc_status st = check_args(out_idx, feats, n_points, dim, proj, proj_dim, starts, n_starts, n);
    if (st != PC_OK) return st;
    float *pj = pc_malloc(sizeof(float) * (size_t)n_points * proj_dim);
    float *dist = pc_malloc(sizeof(float) * (size_t)n_points);
    if (!pj || !dist) {
        pc_free(pj), pc_free(dist);
        return pc_fail(PC_ERR_NO_MEMORY, "coreset reference: out of memory");
    }
    for (int64_t i = 0; i < n_points; i++)
        for (int32_t k = 0; k < proj_dim; k++) {
            double s = 0;
            for (int32_t c = 0; c < dim; c++) s += (double)feats[(size_t)i * dim + c] * proj[(size_t)c * proj_dim + k];
            pj[(size_t)i * proj_dim + k] = (float)s;
        }
    for (int64_t i = 0; i < n_points; i++) {
        double m = 0;
        for (int32_t s = 0; s < n_starts; s++) {
            double d2 = 0;
            for (int32_t k = 0; k < proj_dim; k++) {
                double t = (double)pj[(size_t)i * proj_dim + k] - pj[(size_t)starts[s] * proj_dim + k];
                d2 += t * t;
            }
            m += sqrtf((float)d2);
        }
        dist[i] = (float)(m / n_starts);
    }
    for (int64_t it = 0; it < n; it++) {
        int64_t sel = argmax_first(dist, n_points);
        out_idx[it] = sel;
        for (int64_t i = 0; i < n_points; i++) {
            double d2 = 0;
            for (int32_t k = 0; k < proj_dim; k++) {
                double t = (double)pj[(size_t)i * proj_dim + k] - pj[(size_t)sel * proj_dim + k];
                d2 += t * t;
            }
            float d = sqrtf((float)d2);
            if (d < dist[i]) dist[i] = d;
        }
    }
    pc_free(pj), pc_free(dist);
    return PC_OK;
}

pc_status pc_coreset_select(int64_t *out_idx, pc_sampler sampler, const float *feats, int64_t n_points,
                            int32_t dim, int64_t n, uint64_t seed, pc_progress_fn progress, void *user) {
    if (!out_idx || n_points < 1 || n < 0 || n > n_points)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: cannot select %lld of %lld", (long long)n,
                       (long long)n_points);
    switch (sampler) {
    case PC_SAMPLER_NONE:
        if (n != n_points)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: sampler 'none' keeps all %lld points, not %lld",
                           (long long)n_points, (long long)n);
        for (int64_t i = 0; i < n; i++) out_idx[i] = i;
        return PC_OK;
    case PC_SAMPLER_RANDOM: {
        int64_t *perm = pc_malloc(sizeof(int64_t) * (size_t)n_points);
        if (!perm) return pc_fail(PC_ERR_NO_MEMORY, "coreset: out of memory");
        for (int64_t i = 0; i < n_points; i++) perm[i] = i;
        pc_rng r = {seed ^ 0x52414E44ull};
        for (int64_t i = 0; i < n; i++) {
            int64_t j = i + (int64_t)pc_rng_below(&r, (uint64_t)(n_points - i));
            int64_t t = perm[i];
            perm[i] = perm[j], perm[j] = t;
            out_idx[i] = perm[i];
        }
        pc_free(perm);
        if (progress && progress(user, "coreset", n, n)) return pc_fail(PC_ERR_CANCELLED, "coreset: cancelled");
        return PC_OK;
    }
    case PC_SAMPLER_APPROX_GREEDY: {
        if (!feats || dim < 1) return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: no features");
        float *proj = pc_malloc(sizeof(float) * (size_t)dim * PC_CORESET_PROJ_DIM);
        if (!proj) return pc_fail(PC_ERR_NO_MEMORY, "coreset: out of memory");
        pc_coreset_projection(proj, seed, dim, PC_CORESET_PROJ_DIM);
        int64_t starts[PC_CORESET_STARTS];
        int32_t s = pc_coreset_starts(starts, seed, n_points);
        pc_status st = pc_coreset_greedy(out_idx, feats, n_points, dim, proj, PC_CORESET_PROJ_DIM, starts, s, n,
                                         progress, user);
        pc_free(proj);
        return st;
    }
    }
    return pc_fail(PC_ERR_INVALID_ARGUMENT, "coreset: unknown sampler %d", (int)sampler);
}
