/*
 * test_nn.c - the fast convolution and max-pool kernels against their plain references (nn.h) on
 * odd shapes: groups, stride 2, 1x1/3x3/7x7, odd sizes, padding wider than usual, batch > 1, with
 * and without bias, residual and ReLU. Tolerance: relative error (max|diff| / max|ref|) <= 1e-5 for
 * the convolution, direct and Winograd F(2x2,3x3) (float32 against a double-accumulated reference);
 * max-pool is exact. The float64 convolution and max-pool of the batch-norm warm-up (pc_conv2d_f64,
 * one image, no epilogue) against the same references: within 1e-7 (the reference rounds its double
 * sums to float32, so only that rounding can differ), and max-pool exactly.
 */
#include "nn.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

static void check_conv(pc_conv_geom g, int use_bias, int use_res, int relu) {
    unsigned seed = (unsigned)(g.cin * 131 + g.cout * 7 + g.kh + g.stride * 17 + g.groups * 3 + use_res);
    const int32_t oh = pc_conv_out_dim(g.h, g.kh, g.stride, g.pad), ow = pc_conv_out_dim(g.w, g.kw, g.stride, g.pad);
    const size_t nin = (size_t)g.n * g.cin * g.h * g.w, nw = (size_t)g.cout * (g.cin / g.groups) * g.kh * g.kw;
    const size_t nout = (size_t)g.n * g.cout * oh * ow;
    float *in = malloc(nin * 4), *w = malloc(nw * 4), *b = malloc((size_t)g.cout * 4), *res = malloc(nout * 4);
    float *out = malloc(nout * 4), *ref = malloc(nout * 4);
    size_t nwork = pc_conv2d_workspace(&g);
    float *work = nwork ? malloc(nwork * 4) : NULL;
    for (size_t i = 0; i < nin; i++) in[i] = frand(&seed);
    for (size_t i = 0; i < nw; i++) w[i] = frand(&seed);
    for (int i = 0; i < g.cout; i++) b[i] = frand(&seed);
    for (size_t i = 0; i < nout; i++) res[i] = frand(&seed);
    memset(out, 0xFF, nout * 4); /* NaN: every element must be written */
    pc_conv2d(out, work, in, w, use_bias ? b : NULL, use_res ? res : NULL, relu, &g);
    pc_conv2d_ref(ref, in, w, use_bias ? b : NULL, use_res ? res : NULL, relu, &g);
    double err = max_rel_err(out, ref, nout);
    print_message("conv n%d %dx%dx%d -> %d k%dx%d s%d p%d g%d bias%d res%d relu%d: rel err %.2e\n", g.n, g.cin, g.h,
                  g.w, g.cout, g.kh, g.kw, g.stride, g.pad, g.groups, use_bias, use_res, relu, err);
    assert_true(err <= 1e-5);
    if (pc_winograd_applies(&g)) {
        float *u = malloc((size_t)16 * g.cout * g.cin * 4), *wk = malloc(pc_winograd_workspace(&g) * 4);
        pc_winograd_weights(u, w, g.cout, g.cin);
        memset(out, 0xFF, nout * 4);
        pc_conv2d_winograd(out, wk, in, u, use_bias ? b : NULL, use_res ? res : NULL, relu, &g);
        err = max_rel_err(out, ref, nout);
        print_message("  winograd F(2x2,3x3): rel err %.2e\n", err);
        assert_true(err <= 1e-5);
        free(u), free(wk);
    }
    /* float64, first image, no epilogue */
    {
        pc_conv_geom g1 = g;
        g1.n = 1;
        const size_t nin1 = (size_t)g.cin * g.h * g.w, nout1 = (size_t)g.cout * oh * ow;
        double *ind = malloc(nin1 * 8), *wd = malloc(nw * 8), *outd = malloc(nout1 * 8);
        double *col = malloc((pc_conv2d_f64_workspace(&g1) + 1) * 8);
        float *outf = malloc(nout1 * 4);
        for (size_t i = 0; i < nin1; i++) ind[i] = in[i];
        for (size_t i = 0; i < nw; i++) wd[i] = w[i];
        pc_conv2d_ref(ref, in, w, NULL, NULL, 0, &g1);
        pc_conv2d_f64(outd, col, ind, wd, &g1);
        for (size_t i = 0; i < nout1; i++) outf[i] = (float)outd[i];
        err = max_rel_err(outf, ref, nout1);
        print_message("  float64: rel err %.2e\n", err);
        assert_true(err <= 1e-7);
        free(ind), free(wd), free(outd), free(col), free(outf);
    }
    free(in), free(w), free(b), free(res), free(out), free(ref), free(work);
}

static void test_conv_shapes(void **state) {
    (void)state;
    /* n, cin, h, w, cout, kh, kw, stride, pad, groups */
    check_conv((pc_conv_geom){1, 5, 7, 9, 6, 1, 1, 1, 0, 1}, 1, 0, 0);      /* pointwise, straight to GEMM */
    check_conv((pc_conv_geom){3, 8, 9, 7, 12, 1, 1, 1, 0, 1}, 1, 1, 1);     /* pointwise + residual + ReLU, batch */
    check_conv((pc_conv_geom){2, 6, 11, 10, 10, 1, 1, 2, 0, 1}, 1, 0, 0);   /* downsample 1x1/2, odd size */
    check_conv((pc_conv_geom){2, 7, 13, 11, 9, 3, 3, 1, 1, 1}, 1, 1, 1);    /* 3x3 */
    check_conv((pc_conv_geom){2, 6, 13, 12, 8, 3, 3, 2, 1, 1}, 0, 0, 1);    /* 3x3/2 odd and even */
    check_conv((pc_conv_geom){2, 3, 23, 19, 8, 7, 7, 2, 3, 1}, 1, 0, 1);    /* stem 7x7/2 pad 3 */
    check_conv((pc_conv_geom){2, 32, 9, 9, 64, 3, 3, 1, 1, 8}, 1, 0, 1);    /* grouped (resnext) */
    check_conv((pc_conv_geom){3, 12, 10, 7, 12, 3, 3, 2, 1, 4}, 1, 1, 0);   /* grouped, stride 2, residual */
    check_conv((pc_conv_geom){1, 4, 5, 5, 4, 3, 3, 1, 2, 2}, 1, 0, 0);      /* padding wider than the kernel's half */
    check_conv((pc_conv_geom){1, 2, 3, 3, 3, 3, 3, 2, 1, 1}, 1, 1, 1);      /* tiny: 2x2 output */
    check_conv((pc_conv_geom){1, 4, 1, 1, 5, 3, 3, 1, 1, 1}, 1, 0, 0);      /* 1x1 image, all padding but the centre */
    check_conv((pc_conv_geom){3, 16, 14, 14, 24, 3, 3, 1, 1, 1}, 1, 1, 1);  /* even size, batch 3 (Winograd too) */
    check_conv((pc_conv_geom){1, 64, 28, 27, 32, 3, 3, 1, 1, 1}, 1, 0, 1);  /* deep input, odd width */
    check_conv((pc_conv_geom){2, 3, 2, 5, 4, 3, 3, 1, 1, 1}, 0, 1, 0);      /* 2-row image */
}

static void test_maxpool(void **state) {
    (void)state;
    const int32_t sizes[][4] = {{1, 1, 1, 1}, {2, 3, 7, 9}, {1, 4, 8, 8}, {2, 2, 112, 111}, {1, 1, 2, 3}};
    for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
        const int32_t n = sizes[t][0], c = sizes[t][1], h = sizes[t][2], w = sizes[t][3];
        const int32_t oh = (h - 1) / 2 + 1, ow = (w - 1) / 2 + 1;
        unsigned seed = (unsigned)t + 1;
        float *in = malloc((size_t)n * c * h * w * 4), *a = malloc((size_t)n * c * oh * ow * 4);
        float *b = malloc((size_t)n * c * oh * ow * 4);
        for (size_t i = 0; i < (size_t)n * c * h * w; i++) in[i] = frand(&seed) - 2.0f; /* all negative: padding must not win */
        pc_maxpool3x3s2(a, in, n, c, h, w);
        pc_maxpool3x3s2_ref(b, in, n, c, h, w);
        assert_memory_equal(a, b, (size_t)n * c * oh * ow * 4);
        double *ind = malloc((size_t)n * c * h * w * 8), *od = malloc((size_t)n * c * oh * ow * 8);
        for (size_t i = 0; i < (size_t)n * c * h * w; i++) ind[i] = in[i];
        pc_maxpool3x3s2_f64(od, ind, n * c, h, w); /* n images of c channels = n * c channels */
        for (size_t i = 0; i < (size_t)n * c * oh * ow; i++) assert_true(od[i] == (double)b[i]);
        free(ind), free(od);
        for (size_t i = 0; i < (size_t)n * c * oh * ow; i++) assert_true(a[i] < -1.0f + 1e-6f);
        free(in), free(a), free(b);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_shapes),
        cmocka_unit_test(test_maxpool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
