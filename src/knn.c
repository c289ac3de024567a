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

#include <cblas.h>
#include <math.h>
#include <string.h>

#if defined(__AVX2__)
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

/* insert (d, i) into the ascending list (dist, idx) of length k, after equal distances; d < dist[k-1] */
static inline void topk_insert(float *dist, int64_t *idx, int32_t k, float d, int64_t i) {
    int32_t p = k - 1;
    while (p > 0 && dist[p - 1] > d) {
        dist[p] = dist[p - 1];
        idx[p] = idx[p - 1];
        p--;
    }
    dist[p] = d;
    idx[p] = i;
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

    for (int64_t q0 = 0; q0 < m; q0 += qb) {
        const int64_t nq = PC_MIN(qb, m - q0);
        pc_knn_norms(qnorm, queries + (size_t)q0 * dim, nq, dim);
        for (int64_t b0 = 0; b0 < n; b0 += PC_KNN_BANK_BLOCK) {
            const int64_t nb = PC_MIN((int64_t)PC_KNN_BANK_BLOCK, n - b0);
            const float *bn = bank_norms ? bank_norms + b0 : bnorm_blk;
            if (!bank_norms) pc_knn_norms(bnorm_blk, bank + (size_t)b0 * dim, nb, dim);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)nq, (blasint)nb, dim, 1.0f,
                        queries + (size_t)q0 * dim, dim, bank + (size_t)b0 * dim, dim, 0.0f, tile,
                        PC_KNN_BANK_BLOCK);
#pragma omp parallel for schedule(static)
            for (int64_t q = 0; q < nq; q++) {
                float *dl = out_dist + (size_t)(q0 + q) * k;
                int64_t *il = out_idx + (size_t)(q0 + q) * k;
                const float *row = tile + (size_t)q * PC_KNN_BANK_BLOCK;
                const float qn = qnorm[q];
                float worst = dl[k - 1];
                int64_t j = 0;
#if defined(__AVX2__)
                const __m256 vq = _mm256_set1_ps(qn), vm2 = _mm256_set1_ps(-2.0f), zero = _mm256_setzero_ps();
                for (; j + 8 <= nb; j += 8) {
                    __m256 d = _mm256_add_ps(_mm256_add_ps(vq, _mm256_loadu_ps(bn + j)),
                                             _mm256_mul_ps(vm2, _mm256_loadu_ps(row + j)));
                    d = _mm256_max_ps(d, zero);
                    int mask = _mm256_movemask_ps(_mm256_cmp_ps(d, _mm256_set1_ps(worst), _CMP_LT_OQ));
                    if (!mask) continue;
                    float tmp[8];
                    _mm256_storeu_ps(tmp, d);
                    for (int t = 0; t < 8; t++)
                        if (tmp[t] < worst) {
                            topk_insert(dl, il, k, tmp[t], b0 + j + t);
                            worst = dl[k - 1];
                        }
                }
#endif
                for (; j < nb; j++) {
                    float d = (qn + bn[j]) - 2.0f * row[j];
                    if (d < 0.f) d = 0.f;
                    if (d < worst) {
                        topk_insert(dl, il, k, d, b0 + j);
                        worst = dl[k - 1];
                    }
                }
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
