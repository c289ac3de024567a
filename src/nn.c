/*
 * nn.c - convolution (im2col / direct-to-GEMM with a fused bias + residual + ReLU epilogue) and
 * max-pooling, each with a plain reference implementation beside it (see nn.h).
 *
 * The GEMM is OpenBLAS's cblas_sgemm. OpenBLAS's OpenMP build runs single-threaded when called from
 * inside an OpenMP parallel region, so batches of at least as many images as threads parallelise
 * over images, grouped convolutions over groups, and ungrouped ones on one image let OpenBLAS use
 * the whole pool.
 */
#include "nn.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------------------------------------
 * Convolution
 * ------------------------------------------------------------------------------------------- */

static int is_pointwise(const pc_conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad == 0;
}

/* Images processed at once, one per thread: with a batch at least as large as the thread pool, each
 * thread takes whole images (im2col, single-threaded SGEMM, epilogue) with no synchronisation inside
 * a convolution; otherwise one image at a time with every thread inside it. */
static int32_t image_parallelism(const pc_conv_geom *g) {
#ifdef _OPENMP
    const int32_t t = omp_in_parallel() ? 1 : omp_get_max_threads();
    return (t > 1 && g->n >= t) ? t : 1;
#else
    (void)g;
    return 1;
#endif
}

static size_t col_floats(const pc_conv_geom *g) {
    if (is_pointwise(g)) return 0;
    size_t oh = (size_t)pc_conv_out_dim(g->h, g->kh, g->stride, g->pad);
    size_t ow = (size_t)pc_conv_out_dim(g->w, g->kw, g->stride, g->pad);
    return (size_t)g->cin * (size_t)g->kh * (size_t)g->kw * oh * ow;
}

size_t pc_conv2d_workspace(const pc_conv_geom *g) { return col_floats(g) * (size_t)image_parallelism(g); }

/* col (cin*kh*kw, oh*ow) from one image in (cin, h, w): row (c, ki, kj) holds the input pixel each
 * output position sees through kernel tap (ki, kj), or 0 in the padding. */
static void im2col(float *col, const float *in, int32_t cin, int32_t h, int32_t w, int32_t kh, int32_t kw,
                   int32_t stride, int32_t pad, int32_t oh, int32_t ow) {
    const size_t ohw = (size_t)oh * (size_t)ow;
#pragma omp parallel for schedule(static) if (cin * kh * kw >= 16 && ohw >= 64)
    for (int32_t r = 0; r < cin * kh * kw; r++) {
        const int32_t c = r / (kh * kw), ki = (r / kw) % kh, kj = r % kw;
        const float *in_c = in + (size_t)c * h * w;
        float *row = col + (size_t)r * ohw;
        /* Output columns whose input column ix = ox*stride - pad + kj lies inside [0, w). */
        int32_t ox0 = 0, ox1 = ow; /* [ox0, ox1) */
        while (ox0 < ow && ox0 * stride - pad + kj < 0) ox0++;
        while (ox1 > ox0 && (ox1 - 1) * stride - pad + kj >= w) ox1--;
        for (int32_t oy = 0; oy < oh; oy++) {
            float *dst = row + (size_t)oy * ow;
            const int32_t iy = oy * stride - pad + ki;
            if (iy < 0 || iy >= h) {
                memset(dst, 0, sizeof(float) * (size_t)ow);
                continue;
            }
            const float *src = in_c + (size_t)iy * w;
            for (int32_t ox = 0; ox < ox0; ox++) dst[ox] = 0.0f;
            if (stride == 1) {
                memcpy(dst + ox0, src + ox0 - pad + kj, sizeof(float) * (size_t)(ox1 - ox0));
            } else {
                for (int32_t ox = ox0; ox < ox1; ox++) dst[ox] = src[ox * stride - pad + kj];
            }
            for (int32_t ox = ox1; ox < ow; ox++) dst[ox] = 0.0f;
        }
    }
}

/* out (cout, hw) = act(out + bias + residual), one image. */
static void epilogue(float *out, const float *bias, const float *residual, int relu, int32_t cout, size_t hw) {
#pragma omp parallel for schedule(static) if ((size_t)cout * hw >= 4096)
    for (int32_t c = 0; c < cout; c++) {
        float *o = out + (size_t)c * hw;
        const float b = bias ? bias[c] : 0.0f;
        if (residual) {
            const float *r = residual + (size_t)c * hw;
            if (relu)
                for (size_t i = 0; i < hw; i++) { float v = o[i] + b + r[i]; o[i] = v > 0.0f ? v : 0.0f; }
            else
                for (size_t i = 0; i < hw; i++) o[i] = o[i] + b + r[i];
        } else {
            if (relu)
                for (size_t i = 0; i < hw; i++) { float v = o[i] + b; o[i] = v > 0.0f ? v : 0.0f; }
            else if (bias)
                for (size_t i = 0; i < hw; i++) o[i] += b;
        }
    }
}

void pc_conv2d(float *out, float *work, const float *in, const float *weight, const float *bias,
               const float *residual, int relu, const pc_conv_geom *g) {
    const int32_t oh = pc_conv_out_dim(g->h, g->kh, g->stride, g->pad);
    const int32_t ow = pc_conv_out_dim(g->w, g->kw, g->stride, g->pad);
    const size_t ohw = (size_t)oh * (size_t)ow, ihw = (size_t)g->h * (size_t)g->w;
    const int32_t G = g->groups, cin_g = g->cin / G, cout_g = g->cout / G;
    const int32_t K = cin_g * g->kh * g->kw; /* GEMM inner dimension per group */
    const int pointwise = is_pointwise(g);

    const int32_t P = image_parallelism(g);
    const size_t ncol = col_floats(g);
    /* Inside, every omp pragma is inactive when P > 1 (nested parallelism is off) and OpenBLAS runs
     * single-threaded in a parallel region. */
#pragma omp parallel for num_threads(P) schedule(static) if (P > 1)
    for (int32_t b = 0; b < g->n; b++) {
        const float *in_b = in + (size_t)b * g->cin * ihw;
        float *out_b = out + (size_t)b * g->cout * ohw;
        const float *col = in_b; /* (cin*kh*kw, ohw); group gi's rows are [gi*K, (gi+1)*K) */
        if (!pointwise) {
#ifdef _OPENMP
            float *mine = work + (P > 1 ? (size_t)omp_get_thread_num() * ncol : 0);
#else
            float *mine = work;
#endif
            im2col(mine, in_b, g->cin, g->h, g->w, g->kh, g->kw, g->stride, g->pad, oh, ow);
            col = mine;
        }
        if (G == 1) {
            /* out_b (cout, ohw) = weight (cout, K) x col (K, ohw) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)ohw, K, 1.0f, weight, K, col,
                        (int)ohw, 0.0f, out_b, (int)ohw);
        } else {
#pragma omp parallel for schedule(dynamic)
            for (int32_t gi = 0; gi < G; gi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, (int)ohw, K, 1.0f,
                            weight + (size_t)gi * cout_g * K, K, col + (size_t)gi * K * ohw, (int)ohw, 0.0f,
                            out_b + (size_t)gi * cout_g * ohw, (int)ohw);
        }
        epilogue(out_b, bias, residual ? residual + (size_t)b * g->cout * ohw : NULL, relu, g->cout, ohw);
    }
}

void pc_conv2d_ref(float *out, const float *in, const float *weight, const float *bias,
                   const float *residual, int relu, const pc_conv_geom *g) {
    const int32_t oh = pc_conv_out_dim(g->h, g->kh, g->stride, g->pad);
    const int32_t ow = pc_conv_out_dim(g->w, g->kw, g->stride, g->pad);
    const int32_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;
    for (int32_t b = 0; b < g->n; b++)
        for (int32_t co = 0; co < g->cout; co++) {
            const int32_t gi = co / cout_g;
            for (int32_t oy = 0; oy < oh; oy++)
                for (int32_t ox = 0; ox < ow; ox++) {
                    double acc = bias ? bias[co] : 0.0;
                    for (int32_t ci = 0; ci < cin_g; ci++)
                        for (int32_t ki = 0; ki < g->kh; ki++)
                            for (int32_t kj = 0; kj < g->kw; kj++) {
                                const int32_t iy = oy * g->stride - g->pad + ki, ix = ox * g->stride - g->pad + kj;
                                if (iy < 0 || iy >= g->h || ix < 0 || ix >= g->w) continue;
                                const int32_t c = gi * cin_g + ci;
                                acc += (double)in[(((size_t)b * g->cin + c) * g->h + iy) * g->w + ix] *
                                       weight[(((size_t)co * cin_g + ci) * g->kh + ki) * g->kw + kj];
                            }
                    const size_t o = (((size_t)b * g->cout + co) * oh + oy) * ow + ox;
                    if (residual) acc += residual[o];
                    if (relu && acc < 0.0) acc = 0.0;
                    out[o] = (float)acc;
                }
        }
}

/* ---------------------------------------------------------------------------------------------
 * Max-pooling 3x3 / 2, padding 1
 * ------------------------------------------------------------------------------------------- */

void pc_maxpool3x3s2(float *out, const float *in, int32_t n, int32_t c, int32_t h, int32_t w) {
    const int32_t oh = pc_conv_out_dim(h, 3, 2, 1), ow = pc_conv_out_dim(w, 3, 2, 1);
#pragma omp parallel for schedule(static)
    for (int64_t p = 0; p < (int64_t)n * c; p++) {
        const float *src = in + (size_t)p * h * w;
        float *dst = out + (size_t)p * oh * ow;
        for (int32_t oy = 0; oy < oh; oy++) {
            const int32_t y0 = PC_MAX(2 * oy - 1, 0), y1 = PC_MIN(2 * oy + 1, h - 1);
            for (int32_t ox = 0; ox < ow; ox++) {
                const int32_t x0 = PC_MAX(2 * ox - 1, 0), x1 = PC_MIN(2 * ox + 1, w - 1);
                float m = -FLT_MAX;
                for (int32_t y = y0; y <= y1; y++)
                    for (int32_t x = x0; x <= x1; x++) {
                        const float v = src[(size_t)y * w + x];
                        m = v > m ? v : m;
                    }
                dst[(size_t)oy * ow + ox] = m;
            }
        }
    }
}

void pc_maxpool3x3s2_ref(float *out, const float *in, int32_t n, int32_t c, int32_t h, int32_t w) {
    const int32_t oh = pc_conv_out_dim(h, 3, 2, 1), ow = pc_conv_out_dim(w, 3, 2, 1);
    for (int32_t b = 0; b < n * c; b++)
        for (int32_t oy = 0; oy < oh; oy++)
            for (int32_t ox = 0; ox < ow; ox++) {
                float m = -INFINITY;
                for (int32_t ki = 0; ki < 3; ki++)
                    for (int32_t kj = 0; kj < 3; kj++) {
                        const int32_t y = 2 * oy - 1 + ki, x = 2 * ox - 1 + kj;
                        if (y < 0 || y >= h || x < 0 || x >= w) continue;
                        const float v = in[((size_t)b * h + y) * w + x];
                        if (v > m) m = v;
                    }
                out[((size_t)b * oh + oy) * ow + ox] = m;
            }
}
