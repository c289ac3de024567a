/*
 * test_knn.c - blocked-SGEMM k-NN against faiss IndexFlatL2 (tests/ref/gen_algos.py: distances within
 * relative 1e-4 of the largest, indices equal wherever the distance is not tied) and against the
 * brute-force reference (exact tie order: lowest indices first), on odd shapes with duplicates and
 * k > 1, with a workspace too small for the queries (several query blocks) and without bank norms.
 */
#include "knn.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static void run_case(const char *name, size_t ws_queries) {
    char rel[256];
    snprintf(rel, sizeof rel, "algos/knn_%s_bank.npy", name);
    if (!ref_exists(rel)) TEST_SKIP_MSG("reference %s missing (run make refs)", rel);
    npy_array bank, q, rd, ri, kk;
    assert_int_equal(npy_load(rel, &bank), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_q.npy", name);
    assert_int_equal(npy_load(rel, &q), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_dist.npy", name);
    assert_int_equal(npy_load(rel, &rd), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_idx.npy", name);
    assert_int_equal(npy_load(rel, &ri), 0);
    snprintf(rel, sizeof rel, "algos/knn_%s_k.npy", name);
    assert_int_equal(npy_load(rel, &kk), 0);
    const int64_t N = bank.shape[0], M = q.shape[0];
    const int32_t D = (int32_t)bank.shape[1], k = ((int32_t *)kk.data)[0];
    float *norms = pc_malloc(sizeof(float) * (size_t)N), *dist = pc_malloc(sizeof(float) * (size_t)(M * k));
    float *bd = pc_malloc(sizeof(float) * (size_t)(M * k));
    int64_t *idx = pc_malloc(sizeof(int64_t) * (size_t)(M * k)), *bi = pc_malloc(sizeof(int64_t) * (size_t)(M * k));
    pc_knn_norms(norms, bank.data, N, D);
    size_t wsb = pc_knn_workspace_size((int64_t)ws_queries);
    void *ws = pc_malloc(wsb);
    for (int with_norms = 0; with_norms < 2; with_norms++) {
        assert_int_equal(pc_knn_search(dist, idx, q.data, M, bank.data, with_norms ? norms : NULL, N, D, k, ws, wsb), PC_OK);
        assert_int_equal(pc_knn_search_reference(bd, bi, q.data, M, bank.data, N, D, k), PC_OK);
        double e_faiss = max_rel_err(dist, rd.data, (size_t)(M * k));
        double e_brute = max_rel_err(dist, bd, (size_t)(M * k));
        /* indices: identical to brute force except where distances are within fp32 noise of each other */
        const float *fd = rd.data;
        const int64_t *fi = ri.data;
        double scale = 0;
        for (int64_t i = 0; i < M * k; i++) scale = fmax(scale, bd[i]);
        int64_t idx_diff = 0, faiss_diff = 0;
        for (int64_t i = 0; i < M * k; i++) {
            assert_true(i % k == 0 || dist[i] >= dist[i - 1]); /* ascending */
            assert_true(dist[i] >= 0.f);
            if (idx[i] != bi[i]) {
                idx_diff++;
                /* a swap is only allowed between candidates the fp32 GEMM cannot tell apart */
                assert_true(fabs((double)dist[i] - bd[i]) <= 1e-5 * scale);
            }
            if (idx[i] != fi[i]) {
                faiss_diff++;
                assert_true(fabs((double)dist[i] - fd[i]) <= 1e-5 * scale);
            }
        }
        print_message("knn %-4s M %lld N %lld D %d k %d (query block <= %zu, norms %s): vs faiss %.2e, vs brute "
                      "%.2e; index differences: %lld vs brute, %lld vs faiss (near-ties only)\n", name,
                      (long long)M, (long long)N, D, k, ws_queries, with_norms ? "given" : "computed", e_faiss,
                      e_brute, (long long)idx_diff, (long long)faiss_diff);
        assert_true(e_faiss <= 1e-4);
        assert_true(e_brute <= 1e-4);
    }
    pc_free(norms), pc_free(dist), pc_free(bd), pc_free(idx), pc_free(bi), pc_free(ws);
    npy_free(&bank), npy_free(&q), npy_free(&rd), npy_free(&ri), npy_free(&kk);
}

static void test_odd(void **s) { (void)s; run_case("odd", 50); }
static void test_wide(void **s) { (void)s; run_case("wide", 784); }
static void test_k3(void **s) { (void)s; run_case("k3", 7); }

/* Ties by construction, worked by hand: bank rows 0..5 on a line, 1-D: {2, 0, 2, -2, 5, 0};
 * query 0 -> distances {4, 0, 4, 4, 25, 0}: k = 4 gives (0:1) (0:5) (4:0) (4:2). k = 8 > N pads. */
static void test_ties_by_hand(void **s) {
    (void)s;
    const float bank[6] = {2, 0, 2, -2, 5, 0}, q = 0;
    float d[8];
    int64_t i[8];
    size_t wsb = pc_knn_workspace_size(1);
    void *ws = pc_malloc(wsb);
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 4, ws, wsb), PC_OK);
    const int64_t ei[4] = {1, 5, 0, 2};
    const float ed[4] = {0, 0, 4, 4};
    for (int t = 0; t < 4; t++) {
        assert_int_equal(i[t], ei[t]);
        assert_float_equal(d[t], ed[t], 0);
    }
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 8, ws, wsb), PC_OK);
    assert_int_equal(i[5], 4);
    assert_int_equal(i[6], -1);
    assert_true(isinf(d[7]));
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 0, ws, wsb), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_knn_search(d, i, &q, 1, bank, NULL, 6, 1, 1, ws, 16), PC_ERR_INVALID_ARGUMENT);
    pc_free(ws);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ties_by_hand),
        cmocka_unit_test(test_odd),
        cmocka_unit_test(test_wide),
        cmocka_unit_test(test_k3),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
