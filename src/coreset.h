/*
 * coreset.h - memory-bank subsampling (METHOD.md §4): the approximate greedy coreset of the PatchCore
 * reference, random subsampling and none; plus the documented PRNG that makes them deterministic.
 *
 * PRNG: SplitMix64 (Steele, Lea, Flood 2014), state x += 0x9E3779B97F4A7C15, output mixed with
 * z = (z ^ z>>30) * 0xBF58476D1CE4E5B9; z = (z ^ z>>27) * 0x94D049BB133111EB; z ^= z>>31.
 * Streams: the projection uses seed ^ 0x50524F4A ("PROJ"), the start indices seed ^ 0x53544152
 * ("STAR"), random sampling seed ^ 0x52414E44 ("RAND"), each fed to a fresh SplitMix64.
 *  - uniform float in [-a, a): u = (next() >> 40) * 2^-24 in [0,1), value = (2u - 1) * a (float maths).
 *  - uniform integer in [0, n): Lemire-free plain rejection: draw r = next(), reject while
 *    r >= 2^64 - (2^64 mod n), return r mod n (unbiased).
 */
#ifndef PC_CORESET_H
#define PC_CORESET_H

#include "internal.h"

/* The reference's projection dimension d* and number of start points s. */
#define PC_CORESET_PROJ_DIM 128
#define PC_CORESET_STARTS 10


/* SplitMix64 as described above. */
typedef struct pc_rng { uint64_t state; } pc_rng;
static inline uint64_t pc_rng_next(pc_rng *r) {
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [0, n), n >= 1, unbiased (rejection). */
uint64_t pc_rng_below(pc_rng *r, uint64_t n);

/* The projection matrix (dim x proj_dim, row-major: proj[i*proj_dim + k]), uniform in
 * +-1/sqrt(dim) like nn.Linear(dim, proj_dim, bias=False)'s default init (transposed: the reference
 * computes features @ weight.T; this is weight.T). Entries are drawn in row-major order. */
void pc_coreset_projection(float *proj, uint64_t seed, int32_t dim, int32_t proj_dim);

/* s = min(PC_CORESET_STARTS, n_points) distinct start indices into starts (room for PC_CORESET_STARTS),
 * drawn in order with rejection of repeats. Returns s. */
int32_t pc_coreset_starts(int64_t *starts, uint64_t seed, int64_t n_points);

/* Approximate greedy coreset with an explicit projection and start points (so that an external
 * reference can be given the same ones).
 * out_idx: (n) selected indices, in selection order. feats: (n_points, dim), not copied (the only large
 * allocation is the n_points x proj_dim projection). proj: (dim, proj_dim). starts: (n_starts) distinct
 * indices, 1 <= n_starts <= n_points. 0 <= n <= n_points.
 * Distances are Euclidean in the projected space, computed from direct differences in float32
 * (AVX2, 8 lanes), stored as sqrt like the reference; argmax takes the first index on ties.
 * Exact triangle-inequality pruning skips points whose distance provably cannot drop (see coreset.c):
 * the indices are identical to pc_coreset_greedy_dense's. Extra memory: n x proj_dim + N int32.
 * progress (may be NULL) is called with stage "coreset" about every 1% and may cancel
 * (PC_ERR_CANCELLED; out_idx then holds the first ones chosen). Threads: OpenMP inside (and OpenBLAS
 * for the projection); thread-safe. */
pc_status pc_coreset_greedy(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                            const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts,
                            int64_t n, pc_progress_fn progress, void *user);

/* The projection step alone: pj (n_rows, proj_dim) = feats (n_rows, dim) @ proj (dim, proj_dim), one
 * OpenBLAS SGEMM. The values of a row can depend on how many rows one call is given (OpenBLAS picks
 * kernels and thread splits by shape), so callers that must agree bit for bit (fit in memory and fit
 * with a memory budget) project in the same chunks: fit projects one image (grid_h x grid_w rows) per
 * call in both cases. */
void pc_coreset_project(float *pj, const float *feats, int64_t n_rows, int32_t dim, const float *proj,
                        int32_t proj_dim);

/* The greedy loop alone, on a projection computed beforehand (pj: n_points x proj_dim, e.g. by
 * pc_coreset_project), so that the D-dimensional features need not be in memory while it runs; the
 * rest as pc_coreset_greedy (which is pc_coreset_project in 65536-row blocks followed by this). Extra
 * memory: N floats + N int32 + n x (proj_dim + 1) floats. */
pc_status pc_coreset_greedy_projected(int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                                      const int64_t *starts, int32_t n_starts, int64_t n, pc_progress_fn progress,
                                      void *user);

/* pc_coreset_greedy_projected, also giving the coverage radius: the largest distance (projected space,
 * as the loop measures it) from any of the n_points points to its nearest pick. */
pc_status pc_coreset_greedy_projected_radius(int64_t *out_idx, const float *pj, int64_t n_points, int32_t proj_dim,
                                             const int64_t *starts, int32_t n_starts, int64_t n,
                                             pc_progress_fn progress, void *user, float *radius);

/* dist[i] = the distance from point i (pj: n_points x proj_dim) to its nearest of n_fixed kept points
 * (fixed: n_fixed x proj_dim): the nearest found by the exact kNN search (knn.h), its distance then
 * measured by direct differences as the greedy loop measures. */
pc_status pc_coreset_min_distances(float *dist, const float *pj, int64_t n_points, const float *fixed,
                                   int64_t n_fixed, int32_t proj_dim);

/* The greedy loop continued from points already kept (docs/update.md): init_dist[i] is point i's distance
 * to the nearest kept point (pc_coreset_min_distances); each iteration picks the point farthest from
 * everything kept so far (first index on ties) and lowers the others' distances, exactly as
 * pc_coreset_greedy_projected's loop after its start. Stops after n_max picks or, when stop_radius >= 0,
 * before a pick once no point is farther than stop_radius. *n_out: the picks made (out_idx: room for
 * n_max). radius (may be NULL): the largest remaining distance after the last pick. */
pc_status pc_coreset_greedy_continue(int64_t *out_idx, int64_t *n_out, float *radius, const float *pj, int64_t n_points,
                                     int32_t proj_dim, const float *init_dist, int64_t n_max, float stop_radius,
                                     pc_progress_fn progress, void *user);

/* The greedy loop over points spread over processes (docs/mpi.md), called by every process of comm:
 * this one holds the projections pj of the global points [offsets[rank], offsets[rank + 1]) (n_local
 * rows, possibly none; offsets has comm->size + 1 entries, offsets[size] = N). starts: global indices,
 * the same on every process. Each iteration every process lowers its own points' distances exactly as
 * pc_coreset_greedy_projected does, and one reduction (comm->argmax) picks the farthest point of all,
 * lowest global index on ties, and brings its row; so out_idx (global indices, on every process) and
 * radius (may be NULL) are those of pc_coreset_greedy_projected_radius on all N rows. progress cannot
 * cancel here. comm_seconds (may be NULL): the time this process spent talking. */
struct pc_comm;
pc_status pc_coreset_greedy_shard(int64_t *out_idx, float *radius, const float *pj, int64_t n_local, int32_t proj_dim,
                                  const struct pc_comm *comm, const int64_t *offsets, const int64_t *starts,
                                  int32_t n_starts, int64_t n, pc_progress_fn progress, void *user,
                                  double *comm_seconds);

/* The pruned loop's bookkeeping for each pick: cd[c] = the distance from each of the n earlier picks
 * (cent: n x proj_dim) to the new one (sel), as the loop measures distances. Its work is n x proj_dim
 * per pick, the same on every process of a sharded loop (docs/mpi.md, cost model). An orphaned OpenMP
 * worksharing loop: called by every thread of a parallel region, they share it; outside one, serial. */
void pc_coreset_centre_distances(float *cd, const float *cent, int64_t n, const float *sel, int32_t proj_dim);

/* The same without pruning: every iteration is one fused, vectorised, threaded distance-and-minimum
 * pass over all N x proj_dim projections. Identical results; kept for tests and benchmarks. */
pc_status pc_coreset_greedy_dense(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                                  const float *proj, int32_t proj_dim, const int64_t *starts, int32_t n_starts,
                                  int64_t n, pc_progress_fn progress, void *user);

/* Plain reference of the same loop (scalar, one thread, double accumulation of squared differences,
 * rounded to float before the sqrt); for tests. Same arguments, no progress. */
pc_status pc_coreset_greedy_reference(int64_t *out_idx, const float *feats, int64_t n_points, int32_t dim,
                                      const float *proj, int32_t proj_dim, const int64_t *starts,
                                      int32_t n_starts, int64_t n);

/* Select n of n_points indices with the given sampler and seed (the projection and starts are
 * generated by pc_coreset_projection / pc_coreset_starts from the seed). For PC_SAMPLER_NONE, n must be
 * n_points and the result is 0..n_points-1. PC_SAMPLER_RANDOM: partial Fisher-Yates over 0..N-1 with
 * pc_rng_below, indices in draw order. Deterministic for a seed (and independent of thread count). */
pc_status pc_coreset_select(int64_t *out_idx, pc_sampler sampler, const float *feats, int64_t n_points,
                            int32_t dim, int64_t n, uint64_t seed, pc_progress_fn progress, void *user);

/* n = floor(n_points * ratio), computed as the reference does (int(N * r) in double); at least 1 when
 * n_points >= 1 and ratio > 0. */
int64_t pc_coreset_size(int64_t n_points, double ratio);

#endif /* PC_CORESET_H */
