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

#endif /* PC_KNN_H */
