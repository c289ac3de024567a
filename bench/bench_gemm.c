/*
 * bench_gemm.c - OpenBLAS SGEMM against oneDNN matmul (f32, and bf16 with fp32 accumulation) at the
 * shapes of the kNN and coreset products (docs/method-implementation.md §5, "Which GEMM"): the brute-force
 * tile, the index build's and the search's query-centre products, the pruned search's gathered products
 * (single-threaded: they run inside the search's OpenMP region) and the coreset's per-image projection.
 * oneDNN primitives are created once per shape (fixed dims: its brgemm kernels where it has them) and,
 * for the gathered products whose rows vary per call, also with runtime M and N (what one primitive per
 * index can use). Median of R timed calls after a warm-up; ms per call and GFLOP/s.
 * Usage: bench_gemm [--runs R]   (ONEDNN_MAX_CPU_ISA=AVX2 for the AVX2-only view)
 */
#include "benchutil.h"
#include "cpuinfo.h"
#include "onednn.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int runs = 15;

/* C (M x N) = A (M x K, row-major) . B, B given as N x K rows (trans_b) or K x N (the projection) */
typedef struct shape {
    const char *what;
    long M, N, K;
    int trans_b, single;
} shape;

static double median_of(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return t[n / 2];
}

static double time_blas(const shape *s, const float *A, const float *B, float *C) {
    double t[64];
    for (int r = -2; r < runs; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, s->trans_b ? CblasTrans : CblasNoTrans, (int)s->M, (int)s->N,
                    (int)s->K, 1.0f, A, (int)s->K, B, s->trans_b ? (int)s->K : (int)s->N, 0.0f, C, (int)s->N);
        if (r >= 0) t[r] = now() - t0;
    }
    return median_of(t, runs);
}

/* runtime: M and N given at execution (one primitive for every shape) */
static double time_dnnl(const shape *s, dnnl_data_type_t dt, int runtime, const void *A, const void *B, float *C,
                        char *impl, size_t impl_size) {
    dnnl_engine_t e = pc_dnnl_engine();
    dnnl_stream_t st = pc_dnnl_stream();
    const dnnl_dim_t RT = DNNL_RUNTIME_DIM_VAL, M = runtime ? RT : s->M, N = runtime ? RT : s->N, K = s->K;
    dnnl_memory_desc_t a, b, c, a1, b1, c1;
    dnnl_dims_t ad = {M, K}, as = {K, 1}, bd = {K, N}, bs_t = {1, K}, bs_n = {s->N, 1}, cd = {M, N}, cs = {s->N, 1};
    dnnl_dims_t ad1 = {s->M, K}, bd1 = {K, s->N}, cd1 = {s->M, s->N};
    dnnl_memory_desc_init_by_strides(&a, 2, ad, dt, as);
    dnnl_memory_desc_init_by_strides(&b, 2, bd, dt, s->trans_b ? bs_t : bs_n);
    dnnl_memory_desc_init_by_strides(&c, 2, cd, dnnl_f32, cs);
    dnnl_memory_desc_init_by_strides(&a1, 2, ad1, dt, as);
    dnnl_memory_desc_init_by_strides(&b1, 2, bd1, dt, s->trans_b ? bs_t : bs_n);
    dnnl_memory_desc_init_by_strides(&c1, 2, cd1, dnnl_f32, cs);
    dnnl_matmul_desc_t md;
    dnnl_primitive_desc_t pd;
    dnnl_primitive_t p;
    snprintf(impl, impl_size, "n/a");
    if (dnnl_matmul_desc_init(&md, &a, &b, NULL, &c) || dnnl_primitive_desc_create(&pd, &md, NULL, e, NULL)) return -1;
    snprintf(impl, impl_size, "%s", pc_dnnl_impl(pd));
    if (dnnl_primitive_create(&p, pd)) return -1;
    dnnl_memory_t ma, mb, mc;
    dnnl_memory_create(&ma, &a1, e, (void *)A);
    dnnl_memory_create(&mb, &b1, e, (void *)B);
    dnnl_memory_create(&mc, &c1, e, C);
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, ma}, {DNNL_ARG_WEIGHTS, mb}, {DNNL_ARG_DST, mc}};
    double t[64];
    for (int r = -2; r < runs; r++) {
        double t0 = now();
        dnnl_primitive_execute(p, st, 3, args);
        dnnl_stream_wait(st);
        if (r >= 0) t[r] = now() - t0;
    }
    dnnl_memory_destroy(ma), dnnl_memory_destroy(mb), dnnl_memory_destroy(mc);
    dnnl_primitive_destroy(p), dnnl_primitive_desc_destroy(pd);
    return median_of(t, runs);
}

static void to_bf16(uint16_t *o, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        o[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
}

int main(int argc, char **argv) {
    bench_platform(stderr, 0);
    for (int a = 1; a + 1 < argc; a += 2)
        if (!strcmp(argv[a], "--runs")) runs = atoi(argv[a + 1]);
    if (runs < 1 || runs > 64) runs = 15;
    static const shape shapes[] = {
        {"brute tile (knn.c)", 784, 2048, 1024, 1, 0},
        {"index build: rows x centres", 2048, 256, 1024, 1, 0},
        {"search: queries x centres", 784, 256, 1024, 1, 0},
        {"pruned gathered, 4 rows", 4, 256, 1024, 1, 1},
        {"pruned gathered, 32 rows", 32, 256, 1024, 1, 1},
        {"pruned gathered, 128 rows", 128, 256, 1024, 1, 1},
        {"pruned gathered, 128 x 64", 128, 64, 1024, 1, 1},
        {"coreset projection / image", 784, 128, 1024, 0, 0},
    };
    int T = 1;
#ifdef _OPENMP
    T = omp_get_max_threads();
#endif
    printf("oneDNN isa %s, %d threads, median of %d calls; ms per call (GFLOP/s)\n", pc_dnnl_isa_name(pc_dnnl_isa()),
           T, runs);
    printf("%-34s %16s %32s %32s %32s\n", "shape M x N x K", "openblas", "onednn f32", "onednn f32 runtime M,N",
           "onednn bf16 runtime M,N");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const shape *s = &shapes[i];
        size_t na = (size_t)(s->M * s->K), nb = (size_t)(s->N * s->K);
        float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc((size_t)(s->M * s->N) * 4);
        uint16_t *Ab = malloc(na * 2), *Bb = malloc(nb * 2);
        for (size_t j = 0; j < na; j++) A[j] = (float)((j * 2654435761u) % 1000) * 1e-3f;
        for (size_t j = 0; j < nb; j++) B[j] = (float)((j * 40503u) % 1000) * 1e-3f;
        to_bf16(Ab, A, na), to_bf16(Bb, B, nb);
#ifdef _OPENMP
        if (s->single) omp_set_num_threads(1);
#endif
        const double fl = 2.0 * s->M * s->N * s->K * 1e-9;
        char ii[3][64];
        double tb = time_blas(s, A, B, C);
        double t1 = time_dnnl(s, dnnl_f32, 0, A, B, C, ii[0], sizeof ii[0]);
        double t2 = time_dnnl(s, dnnl_f32, 1, A, B, C, ii[1], sizeof ii[1]);
        double t3 = time_dnnl(s, dnnl_bf16, 1, Ab, Bb, C, ii[2], sizeof ii[2]);
#ifdef _OPENMP
        omp_set_num_threads(T);
#endif
        char l[64];
        snprintf(l, sizeof l, "%s%s", s->what, s->single ? " (1 thr)" : "");
        printf("%-34s %7.3f (%5.0f)", l, tb * 1e3, fl / tb);
        double tt[3] = {t1, t2, t3};
        for (int k = 0; k < 3; k++) {
            if (tt[k] < 0) printf(" %32s", "unavailable");
            else printf(" %7.3f (%5.0f) %-16s", tt[k] * 1e3, fl / tt[k], ii[k]);
        }
        printf("   [%ld x %ld x %ld]\n", s->M, s->N, s->K);
        free(A), free(B), free(C), free(Ab), free(Bb);
    }
    return 0;
}
