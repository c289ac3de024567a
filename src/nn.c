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

/* ---------------------------------------------------------------------------------------------
 * Float64, one image: the batch-norm warm-up's pass (backbone.c), where the statistics of nearly
 * constant activations are taken and float32 accumulation would cost digits (docs/backbone.md).
 * ------------------------------------------------------------------------------------------- */

size_t pc_conv2d_f64_workspace(const pc_conv_geom *g) {
    if (is_pointwise(g)) return 0;
    const size_t oh = (size_t)pc_conv_out_dim(g->h, g->kh, g->stride, g->pad);
    const size_t ow = (size_t)pc_conv_out_dim(g->w, g->kw, g->stride, g->pad);
    return (size_t)g->cin * (size_t)g->kh * (size_t)g->kw * oh * ow;
}

void pc_conv2d_f64(double *out, double *col, const double *in, const double *weight, const pc_conv_geom *g) {
    const int32_t oh = pc_conv_out_dim(g->h, g->kh, g->stride, g->pad);
    const int32_t ow = pc_conv_out_dim(g->w, g->kw, g->stride, g->pad);
    const size_t ohw = (size_t)oh * (size_t)ow;
    const int32_t G = g->groups, cin_g = g->cin / G, cout_g = g->cout / G, K = cin_g * g->kh * g->kw;
    /* col (cin*kh*kw, ohw): row (c, ki, kj) holds the pixel each output position sees through that tap;
     * a 1x1/1 convolution reads its input as it lies */
    const int32_t rows = is_pointwise(g) ? 0 : g->cin * g->kh * g->kw;
    const double *B = is_pointwise(g) ? in : col;
#pragma omp parallel for schedule(static) if (rows >= 16 && ohw >= 64)
    for (int32_t r = 0; r < rows; r++) {
        const int32_t c = r / (g->kh * g->kw), ki = (r / g->kw) % g->kh, kj = r % g->kw;
        double *row = col + (size_t)r * ohw;
        for (int32_t oy = 0; oy < oh; oy++)
            for (int32_t ox = 0; ox < ow; ox++) {
                const int32_t iy = oy * g->stride - g->pad + ki, ix = ox * g->stride - g->pad + kj;
                row[(size_t)oy * ow + ox] = iy < 0 || iy >= g->h || ix < 0 || ix >= g->w
                                                ? 0.0
                                                : in[((size_t)c * g->h + iy) * g->w + ix];
            }
    }
    for (int32_t gi = 0; gi < G; gi++) /* out (cout_g, ohw) = weight (cout_g, K) x col (K, ohw) per group */
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cout_g, (int)ohw, K, 1.0,
                    weight + (size_t)gi * cout_g * K, K, B + (size_t)gi * K * ohw, (int)ohw, 0.0,
                    out + (size_t)gi * cout_g * ohw, (int)ohw);
}

void pc_maxpool3x3s2_f64(double *out, const double *in, int32_t c, int32_t h, int32_t w) {
    const int32_t oh = pc_conv_out_dim(h, 3, 2, 1), ow = pc_conv_out_dim(w, 3, 2, 1);
    for (int32_t b = 0; b < c; b++)
        for (int32_t oy = 0; oy < oh; oy++)
            for (int32_t ox = 0; ox < ow; ox++) {
                double m = -INFINITY;
                for (int32_t ki = 0; ki < 3; ki++)
                    for (int32_t kj = 0; kj < 3; kj++) {
                        const int32_t y = 2 * oy - 1 + ki, x = 2 * ox - 1 + kj;
                        if (y >= 0 && y < h && x >= 0 && x < w && in[((size_t)b * h + y) * w + x] > m)
                            m = in[((size_t)b * h + y) * w + x];
                    }
                out[((size_t)b * oh + oy) * ow + ox] = m;
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

/* ---------------------------------------------------------------------------------------------
 * Winograd F(2x2, 3x3) for 3x3 / stride 1 / pad 1 ungrouped convolutions (Lavin & Gray 2016):
 * each 2x2 output tile costs 16 multiplies per (cin, cout) pair instead of 36, as 16 GEMMs
 * M[xi] (cout, T) = U[xi] (cout, cin) x V[xi] (cin, T) over the T tiles of an image.
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]   G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]
 *   A^T = [1 1 1 0; 0 1 -1 -1]
 * ------------------------------------------------------------------------------------------- */

int pc_winograd_applies(const pc_conv_geom *g) {
    return g->kh == 3 && g->kw == 3 && g->stride == 1 && g->pad == 1 && g->groups == 1;
}

void pc_winograd_weights(float *u, const float *weight, int32_t cout, int32_t cin) {
    for (int32_t o = 0; o < cout; o++)
        for (int32_t c = 0; c < cin; c++) {
            const float *k = weight + ((size_t)o * cin + c) * 9;
            double t[4][3]; /* G k */
            for (int j = 0; j < 3; j++) {
                t[0][j] = k[0 * 3 + j];
                t[1][j] = 0.5 * (k[0 * 3 + j] + k[1 * 3 + j] + k[2 * 3 + j]);
                t[2][j] = 0.5 * (k[0 * 3 + j] - k[1 * 3 + j] + k[2 * 3 + j]);
                t[3][j] = k[2 * 3 + j];
            }
            for (int i = 0; i < 4; i++) { /* (G k) G^T */
                const double r[4] = {t[i][0], 0.5 * (t[i][0] + t[i][1] + t[i][2]), 0.5 * (t[i][0] - t[i][1] + t[i][2]),
                                     t[i][2]};
                for (int j = 0; j < 4; j++) u[((size_t)(i * 4 + j) * cout + o) * cin + c] = (float)r[j];
            }
        }
}

static size_t wino_tiles(const pc_conv_geom *g) { return (size_t)((g->h + 1) / 2) * (size_t)((g->w + 1) / 2); }

/* Distance between two of the 16 planes of V (c = cin) or M (c = cout). The transforms stream through
 * all 16 planes at once; planes a multiple of 4 KiB apart would all map to the same cache sets, so
 * the stride is padded by one cache line (measured: 2-3x faster transforms at 56x56). */
static size_t wino_plane(size_t c, size_t T) { return c * T + 16; }

static size_t wino_floats(const pc_conv_geom *g) {
    const size_t T = wino_tiles(g);
    return 16 * (wino_plane((size_t)g->cin, T) + wino_plane((size_t)g->cout, T));
}

size_t pc_winograd_workspace(const pc_conv_geom *g) { return wino_floats(g) * (size_t)image_parallelism(g); }

/* v (16, cin, T) from one image in (cin, h, w). */
static void wino_input(float *v, const float *in, int32_t cin, int32_t h, int32_t w) {
    const int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t T = (size_t)th * tw, plane = wino_plane((size_t)cin, T);
#pragma omp parallel for schedule(static) if (cin >= 8)
    for (int32_t c = 0; c < cin; c++) {
        const float *src = in + (size_t)c * h * w;
        for (int32_t ty = 0; ty < th; ty++)
            for (int32_t tx = 0; tx < tw; tx++) {
                float d[4][4];
                const int32_t y0 = 2 * ty - 1, x0 = 2 * tx - 1;
                if (y0 >= 0 && x0 >= 0 && y0 + 3 < h && x0 + 3 < w) {
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) d[i][j] = src[(size_t)(y0 + i) * w + x0 + j];
                } else {
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            const int32_t y = y0 + i, x = x0 + j;
                            d[i][j] = (y >= 0 && y < h && x >= 0 && x < w) ? src[(size_t)y * w + x] : 0.0f;
                        }
                }
                float t[4][4]; /* B^T d */
                for (int j = 0; j < 4; j++) {
                    t[0][j] = d[0][j] - d[2][j];
                    t[1][j] = d[1][j] + d[2][j];
                    t[2][j] = d[2][j] - d[1][j];
                    t[3][j] = d[1][j] - d[3][j];
                }
                float *dst = v + (size_t)c * T + (size_t)ty * tw + tx;
                for (int i = 0; i < 4; i++) { /* (B^T d) B */
                    dst[(size_t)(i * 4 + 0) * plane] = t[i][0] - t[i][2];
                    dst[(size_t)(i * 4 + 1) * plane] = t[i][1] + t[i][2];
                    dst[(size_t)(i * 4 + 2) * plane] = t[i][2] - t[i][1];
                    dst[(size_t)(i * 4 + 3) * plane] = t[i][1] - t[i][3];
                }
            }
    }
}

/* out (cout, h, w) = act(A^T m A + bias + residual) from m (16, cout, T). */
static void wino_output(float *out, const float *m, const float *bias, const float *residual, int relu, int32_t cout,
                        int32_t h, int32_t w) {
    const int32_t th = (h + 1) / 2, tw = (w + 1) / 2;
    const size_t T = (size_t)th * tw, plane = wino_plane((size_t)cout, T);
#pragma omp parallel for schedule(static) if (cout >= 8)
    for (int32_t o = 0; o < cout; o++) {
        const float b = bias ? bias[o] : 0.0f;
        float *dst = out + (size_t)o * h * w;
        const float *res = residual ? residual + (size_t)o * h * w : NULL;
        for (int32_t ty = 0; ty < th; ty++)
            for (int32_t tx = 0; tx < tw; tx++) {
                const float *src = m + (size_t)o * T + (size_t)ty * tw + tx;
                float q[4][4];
                for (int xi = 0; xi < 16; xi++) q[xi / 4][xi % 4] = src[(size_t)xi * plane];
                float t[2][4]; /* A^T q */
                for (int j = 0; j < 4; j++) {
                    t[0][j] = q[0][j] + q[1][j] + q[2][j];
                    t[1][j] = q[1][j] - q[2][j] - q[3][j];
                }
                for (int i = 0; i < 2; i++) {
                    const int32_t y = 2 * ty + i;
                    if (y >= h) break;
                    const float r2[2] = {t[i][0] + t[i][1] + t[i][2], t[i][1] - t[i][2] - t[i][3]};
                    for (int j = 0; j < 2; j++) {
                        const int32_t x = 2 * tx + j;
                        if (x >= w) break;
                        float v = r2[j] + b;
                        if (res) v += res[(size_t)y * w + x];
                        if (relu && v < 0.0f) v = 0.0f;
                        dst[(size_t)y * w + x] = v;
                    }
                }
            }
    }
}

void pc_conv2d_winograd(float *out, float *work, const float *in, const float *u, const float *bias,
                        const float *residual, int relu, const pc_conv_geom *g) {
    const size_t hw = (size_t)g->h * g->w, T = wino_tiles(g), per = wino_floats(g);
    const int32_t P = image_parallelism(g);
#pragma omp parallel for num_threads(P) schedule(static) if (P > 1)
    for (int32_t b = 0; b < g->n; b++) {
#ifdef _OPENMP
        float *v = work + (P > 1 ? (size_t)omp_get_thread_num() * per : 0);
#else
        float *v = work;
#endif
        const size_t vp = wino_plane((size_t)g->cin, T), mp = wino_plane((size_t)g->cout, T);
        float *m = v + 16 * vp;
        wino_input(v, in + (size_t)b * g->cin * hw, g->cin, g->h, g->w);
        /* 16 independent GEMMs: spread over the threads (single-threaded OpenBLAS inside). */
#pragma omp parallel for schedule(static)
        for (int xi = 0; xi < 16; xi++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->cout, (int)T, g->cin, 1.0f,
                        u + (size_t)xi * g->cout * g->cin, g->cin, v + (size_t)xi * vp, (int)T, 0.0f,
                        m + (size_t)xi * mp, (int)T);
        wino_output(out + (size_t)b * g->cout * hw, m, bias, residual ? residual + (size_t)b * g->cout * hw : NULL,
                    relu, g->cout, g->h, g->w);
    }
}

/* ---------------------------------------------------------------------------------------------
 * DenseNet's pieces: 2x2 average-pooling and the batch-norm + ReLU that does not fold
 * ------------------------------------------------------------------------------------------- */

void pc_avgpool2x2(float *out, const float *in, int32_t c, int32_t h, int32_t w) {
    const int32_t oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static)
    for (int32_t b = 0; b < c; b++)
        for (int32_t oy = 0; oy < oh; oy++) {
            const float *r0 = in + ((size_t)b * h + 2 * oy) * w, *r1 = r0 + w;
            float *o = out + ((size_t)b * oh + oy) * ow;
            for (int32_t ox = 0; ox < ow; ox++)
                o[ox] = ((r0[2 * ox] + r0[2 * ox + 1]) + (r1[2 * ox] + r1[2 * ox + 1])) * 0.25f;
        }
}

void pc_avgpool2x2_f64(double *out, const double *in, int32_t c, int32_t h, int32_t w) {
    const int32_t oh = h / 2, ow = w / 2;
    for (int32_t b = 0; b < c; b++)
        for (int32_t oy = 0; oy < oh; oy++) {
            const double *r0 = in + ((size_t)b * h + 2 * oy) * w, *r1 = r0 + w;
            double *o = out + ((size_t)b * oh + oy) * ow;
            for (int32_t ox = 0; ox < ow; ox++) o[ox] = (r0[2 * ox] + r0[2 * ox + 1] + r1[2 * ox] + r1[2 * ox + 1]) * 0.25;
        }
}

void pc_scale_shift_relu(float *out, const float *in, const float *scale, const float *shift, int32_t c, size_t hw) {
#pragma omp parallel for schedule(static)
    for (int32_t ch = 0; ch < c; ch++) {
        const float s = scale[ch], t = shift[ch];
        const float *x = in + (size_t)ch * hw;
        float *y = out + (size_t)ch * hw;
        for (size_t i = 0; i < hw; i++) {
            const float v = x[i] * s + t;
            y[i] = v > 0.0f ? v : 0.0f;
        }
    }
}
