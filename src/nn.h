/*
 * nn.h - the CNN kernels the backbones are built from: 2-D convolution with a fused epilogue
 * (bias from folded batch-norm, optional residual add, optional ReLU) and 3x3/2 max-pooling.
 * Internal to the library. Every fast kernel has a plain reference beside it (the *_ref functions),
 * which tests/test_nn.c compares against on odd shapes.
 *
 * Layout: NCHW float32, weights OIHW with I = cin / groups (PyTorch's layout).
 */
#ifndef PC_NN_H
#define PC_NN_H

#include "internal.h"

/* The sizes of one convolution. Output size follows PyTorch: (in + 2*pad - k) / stride + 1. */
typedef struct pc_conv_geom {
    int32_t n;              /* batch */
    int32_t cin, h, w;      /* input channels and spatial size */
    int32_t cout;           /* output channels */
    int32_t kh, kw;         /* kernel size */
    int32_t stride, pad;    /* same in both directions */
    int32_t groups;         /* cin and cout are multiples of it */
} pc_conv_geom;

static inline int32_t pc_conv_out_dim(int32_t in, int32_t k, int32_t stride, int32_t pad) {
    return (in + 2 * pad - k) / stride + 1;
}

/* Floats of scratch pc_conv2d needs for this geometry (0 when the convolution is 1x1/1/0 and reads
 * its input directly): one image's im2col matrix per image processed at once, which is 1, or the
 * thread count when n >= the thread count. It depends on omp_get_max_threads() of the calling
 * thread, so ask again after changing the thread count. */
size_t pc_conv2d_workspace(const pc_conv_geom *g);

/* out = act(conv(in, weight) + bias + residual), where act is ReLU when relu != 0.
 *   out      (n, cout, oh, ow)
 *   work     pc_conv2d_workspace(g) floats (may be NULL when that is 0)
 *   in       (n, cin, h, w)
 *   weight   (cout, cin/groups, kh, kw)
 *   bias     (cout) or NULL
 *   residual (n, cout, oh, ow) or NULL; may not alias out
 * 1x1 stride-1 convolutions go straight to SGEMM; others through im2col + SGEMM. Threads: OpenMP
 * (outer loops) and OpenBLAS, sharing one pool. */
void pc_conv2d(float *out, float *work, const float *in, const float *weight, const float *bias,
               const float *residual, int relu, const pc_conv_geom *g);

/* The same, computed by the definition (six nested loops, double accumulation). Slow; for tests. */
void pc_conv2d_ref(float *out, const float *in, const float *weight, const float *bias,
                   const float *residual, int relu, const pc_conv_geom *g);

/* Float64 convolution of one image (g->n is ignored; 1), no bias or epilogue: im2col + DGEMM.
 *   out (cout, oh, ow);  col pc_conv2d_f64_workspace(g) doubles (0, col unused, for 1x1/1);  in (cin, h, w);
 *   weight (cout, cin/groups, kh, kw)
 * For the batch-norm warm-up (backbone.c); compared with pc_conv2d_ref in tests/test_nn.c. */
size_t pc_conv2d_f64_workspace(const pc_conv_geom *g);
void pc_conv2d_f64(double *out, double *col, const double *in, const double *weight, const pc_conv_geom *g);
/* Max-pooling 3x3/2/1 of c channels of h x w in float64 (out (c, oh, ow)). */
void pc_maxpool3x3s2_f64(double *out, const double *in, int32_t c, int32_t h, int32_t w);

/* Winograd F(2x2, 3x3) for 3x3 / stride 1 / pad 1 convolutions without groups (pc_winograd_applies):
 * 16 multiplies per 2x2 output tile and channel pair instead of 36. Same contract as pc_conv2d, but
 * with the transformed weights u (16, cout, cin) that pc_winograd_weights makes from the OIHW ones
 * (once, at load) and pc_winograd_workspace(g) floats of scratch. Compared with pc_conv2d_ref. */
int pc_winograd_applies(const pc_conv_geom *g);
void pc_winograd_weights(float *u, const float *weight, int32_t cout, int32_t cin);
size_t pc_winograd_workspace(const pc_conv_geom *g);
void pc_conv2d_winograd(float *out, float *work, const float *in, const float *u, const float *bias,
                        const float *residual, int relu, const pc_conv_geom *g);

/* Max-pooling 3x3, stride 2, padding 1 (padding never wins, as PyTorch's -inf padding).
 *   out (n, c, oh, ow) with oh = (h - 1) / 2 + 1;  in (n, c, h, w) */
void pc_maxpool3x3s2(float *out, const float *in, int32_t n, int32_t c, int32_t h, int32_t w);
void pc_maxpool3x3s2_ref(float *out, const float *in, int32_t n, int32_t c, int32_t h, int32_t w);

/* Average-pooling 2x2, stride 2, no padding (PyTorch's AvgPool2d(2, 2): a trailing odd row or column
 * is dropped), of c channels (any batch folded into c).
 *   out (c, h / 2, w / 2);  in (c, h, w) */
void pc_avgpool2x2(float *out, const float *in, int32_t c, int32_t h, int32_t w);
void pc_avgpool2x2_f64(double *out, const double *in, int32_t c, int32_t h, int32_t w);

/* Per-channel affine + ReLU (an eval-mode batch-norm that cannot fold into a convolution, as the
 * pre-activations of DenseNet): out[c][i] = max(0, in[c][i] * scale[c] + shift[c]).
 *   out, in (c, hw) (may be the same);  scale, shift (c) */
void pc_scale_shift_relu(float *out, const float *in, const float *scale, const float *shift, int32_t c, size_t hw);

#endif /* PC_NN_H */
