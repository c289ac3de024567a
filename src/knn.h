/*
 * knn.h - exact k-nearest-neighbour search under squared Euclidean distance (METHOD.md §5), the
 * equivalent of faiss IndexFlatL2.search: blocked SGEMM (||q||^2 + ||b||^2 - 2 q.b, clamped at 0) with a
 * fused running top-k per query; the M x N distance matrix never exists (one query-block x bank-block
 * tile at a time, in a caller-provided workspace).
 *
 * Results per query: k squared distances ascending with their bank indices; equal distances are
 * ordered by ascending index (the lowest indices win ties). When k > N the tail is +inf / -1.
 */
#ifndef PC_KNN_H
#define PC_KNN_H

#include "internal.h"

#define PC_KNN_BANK_BLOCK 2048  /* bank entries per tile */
#define PC_KNN_QUERY_BLOCK 1024 /* largest query block per tile */

/* ||b_i||^2 for every bank row (float accumulation in double, rounded), to be computed once per bank.
 * norms: (n). bank: (n, dim). */
void pc_knn_norms(float *norms, const float *bank, int64_t n, int32_t dim);

/* Bytes of workspace pc_knn_search needs for up to max_queries queries per call (a larger workspace
 * is fine; a smaller one than pc_knn_workspace_size(1) is an error). */
size_t pc_knn_workspace_size(int64_t max_queries);

/* Exact k-NN of m queries against a bank of n entries.
 * out_dist: (m, k) squared distances, ascending. out_idx: (m, k) bank indices.
 * queries: (m, dim). bank: (n, dim). bank_norms: (n) from pc_knn_norms (NULL: computed on the fly in
 * the workspace-free way, slower). workspace: ws_bytes bytes, 64-byte aligned.
 * Threads: OpenBLAS + OpenMP inside; thread-safe when every calling thread has its own workspace
 * (calls from inside an OpenMP parallel region then run single-threaded). */
pc_status pc_knn_search(float *out_dist, int64_t *out_idx, const float *queries, int64_t m, const float *bank,
                        const float *bank_norms, int64_t n, int32_t dim, int32_t k, void *workspace,
                        size_t ws_bytes);

/* Plain brute-force reference: direct differences accumulated in double, same ordering rules; for
 * tests. Same shapes as above. */
pc_status pc_knn_search_reference(float *out_dist, int64_t *out_idx, const float *queries, int64_t m,
                                  const float *bank, int64_t n, int32_t dim, int32_t k);

/* ----------------------------------------------------------------------------------------------
 * Exact pruned search (docs/method-implementation.md §5): the bank partitioned into clusters around
 * its first n_clusters entries (for a greedy coreset bank, the first and most spread picks), each
 * cluster cut into shells of PC_KNN_SHELL members by distance to its centre; a query skips every shell
 * the triangle inequality proves cannot hold a neighbour better than its current k-th. The results are
 * identical to pc_knn_search's (same distances, same indices, same tie order).
 * -------------------------------------------------------------------------------------------- */

#define PC_KNN_SHELL 32     /* bank entries per shell (the pruning unit) */
#define PC_KNN_GEMM_N 256   /* largest run of bank entries per SGEMM call */
#define PC_KNN_MIN_BANK 4096 /* below this the model keeps the brute-force search */

typedef struct pc_knn_index pc_knn_index;

/* The candidate filter of the pruned search (docs/method-implementation.md §5): which products pick the
 * candidates that get a canonical fp32 re-evaluation. Results are identical whichever is used.
 * AUTO: the environment's PATCHCORE_KNN_FILTER (auto|f32|bf16|bf16-emulated); auto is BF16 where
 * pc_knn_bf16_native(), else F32.
 * F32: fp32 products of the vectors (OpenBLAS SGEMM).
 * BF16: products of bf16-rounded centred vectors (bank side bf16(b - c) per cluster, stored in the
 * index packed per shell; queries gathered as bf16(q - c)) by our AVX512-BF16 kernel (vdpbf16ps, fp32
 * accumulation, no allocation) where the CPU has it, else emulated. BF16_EMULATED: the same values widened to fp32 through SGEMM (the same
 * bound holds: bf16 x bf16 products are exact in fp32), forced, for tests. */
typedef enum pc_knn_filter {
    PC_KNN_FILTER_AUTO = 0,
    PC_KNN_FILTER_F32 = 1,
    PC_KNN_FILTER_BF16 = 2,
    PC_KNN_FILTER_BF16_EMULATED = 3
} pc_knn_filter;

/* Counters of one search, for benchmarks: query-bank pairs whose distance the SGEMMs computed
 * (including the query-centre pairs) and canonical re-evaluations. */
typedef struct pc_knn_stats {
    int64_t pairs, evals;
} pc_knn_stats;

/* Clusters the bank (n x dim, its norms from pc_knn_norms, both read only now: the index keeps a
 * cluster-ordered copy). n_clusters <= 0 picks 2 sqrt(n). Costs one n x n_clusters x dim SGEMM. */
pc_status pc_knn_index_build(pc_knn_index **out, const float *bank, const float *bank_norms, int64_t n, int32_t dim,
                             int32_t n_clusters);
/* The same with the filter chosen by the caller (AUTO: as pc_knn_index_build). A BF16 filter the CPU or
 * oneDNN cannot run natively becomes BF16_EMULATED. Fails on an unknown PATCHCORE_KNN_FILTER value. */
pc_status pc_knn_index_build_filter(pc_knn_index **out, const float *bank, const float *bank_norms, int64_t n,
                                    int32_t dim, int32_t n_clusters, pc_knn_filter filter);
void pc_knn_index_free(pc_knn_index *ix);
int32_t pc_knn_index_clusters(const pc_knn_index *ix);
/* The filter the index runs (F32, BF16 or BF16_EMULATED), and its name ("f32", "bf16", "bf16-emulated"). */
pc_knn_filter pc_knn_index_filter(const pc_knn_index *ix);
const char *pc_knn_filter_name(pc_knn_filter f);
/* The product kernel of the filter: "avx512bf16 vdpbf16ps" for BF16, else "openblas sgemm". */
const char *pc_knn_index_kernel(const pc_knn_index *ix);
/* The kernels of the search's query-centre product (OpenBLAS) and of the build's assignment product
 * (oneDNN f32 where it runs AVX-512, else "openblas sgemm"). */
const char *pc_knn_index_centre_kernel(const pc_knn_index *ix);
const char *pc_knn_index_build_kernel(const pc_knn_index *ix);

/* Bytes of workspace for up to max_queries queries per call, k neighbours and up to `threads` OpenMP
 * threads (more threads than that are not used). */
size_t pc_knn_index_workspace_size(const pc_knn_index *ix, int64_t max_queries, int32_t k, int threads);

/* Exact k-NN of m queries, as pc_knn_search (results in original bank indices). stats may be NULL.
 * Thread-safe on one index when every calling thread has its own workspace. */
pc_status pc_knn_index_search(const pc_knn_index *ix, float *out_dist, int64_t *out_idx, const float *queries,
                              int64_t m, int32_t k, void *workspace, size_t ws_bytes, pc_knn_stats *stats);

/* The bf16 filter's product kernel (exposed for tests). Bank side packed per shell of PC_KNN_SHELL
 * entries: k-pair j < pc_knn_bf16_kpairs(dim) of the shell is PC_KNN_SHELL consecutive pairs
 * (b_e[2j], b_e[2j + 1]), the pad (entries past len, the coordinate past an odd dim) zero.
 * pc_knn_bf16_pack_shell packs len <= PC_KNN_SHELL row-major bf16 rows (stride dim) into dst
 * (kpairs x 2 x PC_KNN_SHELL values). pc_knn_bf16_native: the CPU runs AVX512-BF16 (and oneDNN is not
 * capped below it). pc_knn_bf16_tile: out[i ldo + e] (i < rows, e < 32 (n_shells - 1) + last_len) =
 * x_i . b_e in fp32 by vdpbf16ps, x rows of stride ldx >= 2 kpairs with an odd dim's pad zero; columns
 * past last_len are not written. Returns 0 (nothing done) without the native kernel. */
int32_t pc_knn_bf16_kpairs(int32_t dim);
void pc_knn_bf16_pack_shell(uint16_t *dst, const uint16_t *rows, int32_t len, int32_t dim);
int pc_knn_bf16_native(void);
int pc_knn_bf16_tile(float *out, int64_t ldo, const uint16_t *x, int32_t rows, int64_t ldx, const uint16_t *packed,
                     int32_t n_shells, int32_t last_len, int32_t dim);

#endif /* PC_KNN_H */
