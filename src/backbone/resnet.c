/*
 * resnet.c - the torchvision ResNet family (resnet18/34/50/101/152, wide_resnet50_2/101_2,
 * resnext50_32x4d, resnext101_32x8d) as torchvision 0.14 defines them: architecture table, tensor
 * names and validation, architecture inference from tensor shapes, the reference's batch-norm warm-up
 * (METHOD.md §2), batch-norm folding, the workspace plan and the forward pass to the deepest
 * requested layer on our kernels, and the network described for oneDNN (onednn_net.h).
 */
#include "family.h"
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Architectures
 * ------------------------------------------------------------------------------------------- */

typedef struct arch_spec {
    pc_bb_arch base;
    int bottleneck;        /* Bottleneck (1x1, 3x3, 1x1 x4) or BasicBlock (3x3, 3x3) */
    int blocks[4];         /* blocks per stage */
    int groups;            /* of the 3x3 convolution (resnext) */
    int width_per_group;   /* torchvision's base_width */
} arch_spec;

#define F &pc_family_resnet
static const arch_spec ARCHS[] = {
    {{PC_ARCH_RESNET18, "resnet18", F, {"resnet18-f37072fd.pth"}, NULL}, 0, {2, 2, 2, 2}, 1, 64},
    {{PC_ARCH_RESNET34, "resnet34", F, {"resnet34-b627a593.pth"}, NULL}, 0, {3, 4, 6, 3}, 1, 64},
    {{PC_ARCH_RESNET50, "resnet50", F, {"resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth"},
      NULL}, 1, {3, 4, 6, 3}, 1, 64},
    {{PC_ARCH_RESNET101, "resnet101", F, {"resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"}, NULL}, 1,
     {3, 4, 23, 3}, 1, 64},
    {{PC_ARCH_RESNET152, "resnet152", F, {"resnet152-394f9c45.pth", "resnet152-f82ba261.pth"}, NULL}, 1,
     {3, 8, 36, 3}, 1, 64},
    {{PC_ARCH_WIDE_RESNET50_2, "wide_resnet50_2", F, {"wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth"},
      NULL}, 1, {3, 4, 6, 3}, 1, 128},
    {{PC_ARCH_WIDE_RESNET101_2, "wide_resnet101_2", F,
      {"wide_resnet101_2-32ee1156.pth", "wide_resnet101_2-d733dc28.pth"}, NULL}, 1, {3, 4, 23, 3}, 1, 128},
    {{PC_ARCH_RESNEXT50_32X4D, "resnext50_32x4d", F, {"resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth"},
      NULL}, 1, {3, 4, 6, 3}, 32, 4},
    {{PC_ARCH_RESNEXT101_32X8D, "resnext101_32x8d", F,
      {"resnext101_32x8d-8ba56ff5.pth", "resnext101_32x8d-110c445d.pth"}, NULL}, 1, {3, 4, 23, 3}, 32, 8},
};
#undef F
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

static const pc_bb_arch *arch_at(int i) { return i >= 0 && i < N_ARCHS ? &ARCHS[i].base : NULL; }
static const arch_spec *spec(const pc_bb_arch *a) { return (const arch_spec *)a; }

/* torchvision: Bottleneck width = int(planes * (base_width / 64)) * groups; expansion 4 (1 for Basic). */
static int stage_planes(int s) { return 64 << s; }
static int stage_width(const arch_spec *a, int s) {
    return a->bottleneck ? (stage_planes(s) * a->width_per_group / 64) * a->groups : stage_planes(s);
}
static int stage_out(const arch_spec *a, int s) { return stage_planes(s) * (a->bottleneck ? 4 : 1); }

/* ---------------------------------------------------------------------------------------------
 * The network
 * ------------------------------------------------------------------------------------------- */

typedef pc_bb_conv conv;

typedef struct block {
    conv c1, c2, c3; /* c3 only in a Bottleneck */
    conv ds;         /* downsample, when has_ds */
    int has_ds;
} block;

typedef struct resnet {
    conv stem;
    block *blocks[4];
    int nblocks[4];
} resnet;

/* The five activation buffers and the im2col scratch of the builtin workspace (pc_bb_ws parts). */
enum { WS_X, WS_Y, WS_T1, WS_T2, WS_D, WS_COL };

static void release(pc_backbone *bb) {
    resnet *R = bb->net;
    if (!R) return;
    pc_bb_conv_free(&R->stem);
    for (int s = 0; s < 4; s++) {
        for (int b = 0; b < R->nblocks[s] && R->blocks[s]; b++) {
            pc_bb_conv_free(&R->blocks[s][b].c1);
            pc_bb_conv_free(&R->blocks[s][b].c2);
            pc_bb_conv_free(&R->blocks[s][b].c3);
            pc_bb_conv_free(&R->blocks[s][b].ds);
        }
        pc_free(R->blocks[s]);
    }
    pc_free(R);
    bb->net = NULL;
}

/* The surplus blocks the file has in loaded stages. */
static void check_blocks(const arch_spec *a, const pc_bb_evidence *E, int max_layer, pc_bb_problems *P) {
    const int32_t *blocks = E->seen[pc_family_resnet.slot];
    for (int s = 0; s < max_layer; s++)
        if (blocks[s] > a->blocks[s]) {
            P->unexpected++;
            pc_bb_problem(P, "layer%d has %d blocks, %s has %d", s + 1, blocks[s], a->base.name, a->blocks[s]);
        }
}

static pc_status build(pc_backbone *bb, pc_bb_loadctx *L, const pc_bb_evidence *E) {
    const arch_spec *a = spec(bb->spec);
    resnet *R = pc_calloc(1, sizeof *R);
    if (!R) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    bb->net = R;
    check_blocks(a, E, bb->max_layer, L->prob);
    pc_bb_conv_make(&R->stem, L, NULL, "conv1", "bn1", 3, 64, 7, 2, 3, 1);
    int32_t inplanes = 64;
    for (int s = 0; s < bb->max_layer; s++) {
        const int nb = a->blocks[s], width = stage_width(a, s), out = stage_out(a, s);
        R->blocks[s] = pc_calloc((size_t)nb, sizeof(block));
        if (!R->blocks[s]) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        R->nblocks[s] = nb;
        for (int b = 0; b < nb; b++) {
            block *B = &R->blocks[s][b];
            const int stride = (b == 0 && s > 0) ? 2 : 1;
            char p[64], w[96], n[96];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
#define CONV(dst, wn, bnn, ci, co, k, str, pad, g)                                                             \
    do {                                                                                                       \
        snprintf(w, sizeof w, "%s.%s", p, wn);                                                                 \
        snprintf(n, sizeof n, "%s.%s", p, bnn);                                                                \
        pc_bb_conv_make(dst, L, NULL, w, n, ci, co, k, str, pad, g);                                           \
    } while (0)
            if (a->bottleneck) {
                CONV(&B->c1, "conv1", "bn1", inplanes, width, 1, 1, 0, 1);
                CONV(&B->c2, "conv2", "bn2", width, width, 3, stride, 1, a->groups);
                CONV(&B->c3, "conv3", "bn3", width, out, 1, 1, 0, 1);
            } else {
                CONV(&B->c1, "conv1", "bn1", inplanes, out, 3, stride, 1, 1);
                CONV(&B->c2, "conv2", "bn2", out, out, 3, 1, 1, 1);
            }
            if (stride != 1 || inplanes != out) {
                B->has_ds = 1;
                CONV(&B->ds, "downsample.0", "downsample.1", inplanes, out, 1, stride, 0, 1);
            }
#undef CONV
            inplanes = out;
        }
    }
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * What the file holds, seen through the load filter; the architecture it shows
 * ------------------------------------------------------------------------------------------- */

static int parse_layer(const char *name, int *layer, int *blk) {
    int l, b, n = 0;
    if (sscanf(name, "layer%d.%d.%n", &l, &b, &n) == 2 && n > 0 && l >= 1 && l <= 4 && b >= 0 && b < 1000) {
        *layer = l, *blk = b;
        return 1;
    }
    return 0;
}

/* E->seen[slot][s]: 1 + the highest block index seen in stage s (0: stage absent). */
static int filter(const char *name, pc_bb_evidence *E) {
    int32_t *blocks = E->seen[pc_family_resnet.slot];
    int l = 0, b = 0;
    const int in_layer = parse_layer(name, &l, &b);
    if (in_layer && b + 1 > blocks[l - 1]) blocks[l - 1] = b + 1;
    if (strncmp(name, "fc.", 3) == 0) return 0;
    if (in_layer && l > E->max_layer) return 0;
    if (!in_layer && strncmp(name, "layer", 5) == 0) {
        int ll = 0;
        if (sscanf(name, "layer%d", &ll) == 1 && ll > E->max_layer) return 0;
        return 1;
    }
    return in_layer || strncmp(name, "conv1.", 6) == 0 || strncmp(name, "bn1.", 4) == 0 ? 1 : -1;
}

static int recognise(const pc_tensor_dict *d) { return pc_tensor_dict_get(d, "conv1.weight") != NULL; }

/* Infer the architecture from block counts (all stages the file has, loaded or not), block type
 * (conv3 present) and layer1's widths and groups. Layers absent from the file cannot tell apart
 * architectures that differ only there; the first match is then returned, and it computes the
 * present layers identically. */
static pc_status infer(const pc_tensor_dict *d, const pc_bb_evidence *E, const char *path, const pc_bb_arch **out) {
    *out = NULL;
    const int32_t *blocks = E->seen[pc_family_resnet.slot];
    const pc_tensor *c1 = pc_tensor_dict_get(d, "conv1.weight");
    const pc_tensor *l1c1 = pc_tensor_dict_get(d, "layer1.0.conv1.weight");
    const pc_tensor *l1c2 = pc_tensor_dict_get(d, "layer1.0.conv2.weight");
    if (!c1 || !l1c1 || !l1c2 || l1c1->ndim != 4 || l1c2->ndim != 4)
        return pc_fail(PC_ERR_NOT_FOUND,
                       "%s: cannot infer the architecture: this is not a torchvision ResNet state dict "
                       "(conv1.weight, layer1.0.conv1.weight or layer1.0.conv2.weight is missing)", path);
    const int bottleneck = pc_tensor_dict_get(d, "layer1.0.conv3.weight") != NULL;
    const int64_t width = l1c2->shape[0], per_group = l1c2->shape[1];
    for (int i = 0; i < N_ARCHS; i++) {
        const arch_spec *a = &ARCHS[i];
        if (a->bottleneck != bottleneck) continue;
        int ok = 1;
        for (int s = 0; s < 4 && ok; s++)
            if (blocks[s] && blocks[s] != a->blocks[s]) ok = 0;
        if (ok && bottleneck)
            ok = width == stage_width(a, 0) && per_group == stage_width(a, 0) / a->groups;
        if (ok) {
            *out = &a->base;
            return PC_OK;
        }
    }
    return pc_fail(PC_ERR_UNSUPPORTED,
                   "%s: no known architecture fits: %s blocks, blocks per stage %d/%d/%d/%d (0 = absent), "
                   "layer1 3x3 conv %lld channels in groups of %lld",
                   path, bottleneck ? "Bottleneck" : "BasicBlock", blocks[0], blocks[1], blocks[2], blocks[3],
                   (long long)width, (long long)per_group);
}

/* ---------------------------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------------------------- */

static int out_size(const pc_bb_arch *a, int32_t layer, int32_t *h, int32_t *w) {
    (void)a;
    const int32_t in_h = *h, in_w = *w;
    *h = pc_conv_out_dim(*h, 7, 2, 3), *w = pc_conv_out_dim(*w, 7, 2, 3);
    *h = pc_conv_out_dim(*h, 3, 2, 1), *w = pc_conv_out_dim(*w, 3, 2, 1);
    for (int s = 1; s < layer; s++) *h = pc_conv_out_dim(*h, 3, 2, 1), *w = pc_conv_out_dim(*w, 3, 2, 1);
    return in_h >= 1 && in_w >= 1 && *h >= 1 && *w >= 1;
}

static int32_t channels(const pc_bb_arch *a, int32_t layer) { return stage_out(spec(a), layer - 1); }

/* ---------------------------------------------------------------------------------------------
 * Forward on our kernels, and the plan of its workspace (the same walk, without computing)
 * ------------------------------------------------------------------------------------------- */

typedef struct walk {
    int32_t n, h, w;         /* current activation's batch and size */
    size_t act_max, col_max; /* plan: the largest activation (floats) and im2col matrix seen */
    float *col;
} walk;

/* Account for (plan) or run (exec) convolution c on the current size. */
static void step_conv(walk *W, const conv *c, float *out, const float *in, const float *res, int relu, int exec) {
    const int32_t oh = pc_conv_out_dim(W->h, c->k, c->stride, c->pad), ow = pc_conv_out_dim(W->w, c->k, c->stride, c->pad);
    pc_bb_conv_step(c, exec, out, W->col, in, res, relu, W->n, W->h, W->w, &W->col_max);
    if (!exec) W->act_max = PC_MAX(W->act_max, (size_t)W->n * (size_t)c->cout * (size_t)oh * (size_t)ow);
}

/* Shapes only (exec = 0) or the real thing. Buffers: X current, Y next, T1/T2 inside a block,
 * D downsampled identity. Returns non-zero if a size collapses below 1 (input too small). */
static int run(const pc_backbone *bb, walk *W, const float *in, uint32_t layer_mask, float *const outs[4], int exec) {
    const resnet *R = bb->net;
    const arch_spec *a = spec(bb->spec);
    float *X = NULL, *Y = NULL, *T1 = NULL, *T2 = NULL, *D = NULL;
    if (exec) {
        X = pc_bb_ws(bb, WS_X), Y = pc_bb_ws(bb, WS_Y), T1 = pc_bb_ws(bb, WS_T1), T2 = pc_bb_ws(bb, WS_T2);
        D = pc_bb_ws(bb, WS_D), W->col = pc_bb_ws(bb, WS_COL);
    }
    if (W->h < 1 || W->w < 1) return 1;
    /* stem: conv 7x7/2 + ReLU into T1, max-pool into X */
    step_conv(W, &R->stem, T1, in, NULL, 1, exec);
    W->h = pc_conv_out_dim(W->h, 7, 2, 3), W->w = pc_conv_out_dim(W->w, 7, 2, 3);
    if (W->h < 1 || W->w < 1) return 1;
    int32_t c = 64;
    if (exec) pc_maxpool3x3s2(X, T1, W->n, c, W->h, W->w);
    W->h = pc_conv_out_dim(W->h, 3, 2, 1), W->w = pc_conv_out_dim(W->w, 3, 2, 1);
    if (!exec) W->act_max = PC_MAX(W->act_max, (size_t)W->n * 64 * (size_t)W->h * (size_t)W->w);
    const double deadline = exec ? pc_deadline_get() : 0; /* a server's request deadline (src/cancel.c) */
    for (int s = 0; s < bb->max_layer; s++) {
        for (int b = 0; b < R->nblocks[s]; b++) {
            /* past it, stop between blocks: pc_backbone_forward reports PC_ERR_CANCELLED */
            if (pc_deadline_passed(deadline)) return 0;
            const block *B = &R->blocks[s][b];
            const int32_t h0 = W->h, w0 = W->w;
            const int32_t h1 = pc_conv_out_dim(h0, 3, B->c1.stride == 2 || B->c2.stride == 2 ? 2 : 1, 1);
            const int32_t w1 = pc_conv_out_dim(w0, 3, B->c1.stride == 2 || B->c2.stride == 2 ? 2 : 1, 1);
            if (h1 < 1 || w1 < 1) return 1;
            const float *identity = X;
            if (B->has_ds) {
                step_conv(W, &B->ds, D, X, NULL, 0, exec);
                identity = D;
            }
            step_conv(W, &B->c1, T1, X, NULL, 1, exec);
            if (a->bottleneck) {
                /* Bottleneck: 1x1 (size kept), 3x3 with the stride, 1x1 + identity */
                W->h = h0, W->w = w0;
                step_conv(W, &B->c2, T2, T1, NULL, 1, exec);
                W->h = h1, W->w = w1;
                step_conv(W, &B->c3, Y, T2, identity, 1, exec);
            } else {
                /* Basic: 3x3 with the stride, 3x3 + identity */
                W->h = h1, W->w = w1;
                step_conv(W, &B->c2, Y, T1, identity, 1, exec);
            }
            W->h = h1, W->w = w1;
            float *t = X;
            X = Y, Y = t;
        }
        c = stage_out(a, s);
        if (exec && (layer_mask & PC_LAYER(s + 1)) && outs[s])
            memcpy(outs[s], X, sizeof(float) * (size_t)W->n * (size_t)c * (size_t)W->h * (size_t)W->w);
    }
    return 0;
}

static int plan(const pc_backbone *bb, int32_t n, int32_t h, int32_t w, size_t need[PC_BB_WS_PARTS]) {
    walk W = {.n = n, .h = h, .w = w};
    if (run(bb, &W, NULL, 0, NULL, 0)) return 0;
    for (int i = WS_X; i <= WS_D; i++) need[i] = W.act_max;
    need[WS_COL] = W.col_max;
    return 1;
}

static void forward(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w, uint32_t layer_mask,
                    float *const outs[4]) {
    walk W = {.n = n, .h = h, .w = w};
    run(bb, &W, in, layer_mask, outs, 1);
}

/* ---------------------------------------------------------------------------------------------
 * The reference's batch-norm warm-up (METHOD.md §2)
 *
 * Before extracting any feature, the reference runs the network once on torch.ones(1, 3, S, S) while
 * it is still in training mode, up to the deepest requested layer. Every batch-norm on the way
 * normalises with the statistics of its own input and moves its running statistics by momentum 0.1
 * (the variance unbiased); features are then computed in eval mode with the moved statistics. We run
 * that pass here with the file's weights, unfolded, in float64 (units.c), then fold the moved
 * statistics into the convs.
 * ------------------------------------------------------------------------------------------- */

static pc_status warmup(pc_backbone *bb) {
    resnet *R = bb->net;
    const int32_t S = bb->warmup_size;
    /* torch requires more than one value per channel in training mode, so does the variance update */
    int32_t oh = S, ow = S;
    if (!out_size(bb->spec, bb->max_layer, &oh, &ow) || (int64_t)oh * ow < 2)
        return pc_fail(PC_ERR_SHAPE, "%s: the batch-norm warm-up at crop size %d leaves layer%d with %dx%d positions; "
                       "training-mode batch-norm needs more than one value per channel (use a larger crop, or "
                       "--bn trained)", bb->path, (int)S, (int)bb->max_layer, (int)oh, (int)ow);
    int32_t h = S, w = S;
    double *x = pc_malloc(3 * (size_t)S * (size_t)S * sizeof(double)), *y = NULL;
    if (!x) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the batch-norm warm-up");
    for (size_t i = 0; i < 3 * (size_t)S * (size_t)S; i++) x[i] = 1.0;
    pc_bb_conv_train(&R->stem, x, &h, &w, NULL, 1, &y);
    pc_free(x);
    x = NULL;
    if (y) {
        const int32_t ph = pc_conv_out_dim(h, 3, 2, 1), pw = pc_conv_out_dim(w, 3, 2, 1);
        x = pc_malloc((size_t)64 * (size_t)ph * (size_t)pw * sizeof(double));
        if (x) pc_maxpool3x3s2_f64(x, y, 64, h, w);
        h = ph, w = pw;
        pc_free(y);
    }
    const int bottleneck = spec(bb->spec)->bottleneck;
    for (int s = 0; s < bb->max_layer && x; s++)
        for (int b = 0; b < R->nblocks[s] && x; b++) {
            block *B = &R->blocks[s][b];
            double *d = NULL, *t1 = NULL, *t2 = NULL, *out = NULL;
            int32_t dh = h, dw = w, h1 = h, w1 = w;
            if (B->has_ds) pc_bb_conv_train(&B->ds, x, &dh, &dw, NULL, 0, &d);
            const double *identity = B->has_ds ? d : x;
            if (identity) pc_bb_conv_train(&B->c1, x, &h1, &w1, NULL, 1, &t1);
            if (t1 && bottleneck) {
                pc_bb_conv_train(&B->c2, t1, &h1, &w1, NULL, 1, &t2);
                if (t2) pc_bb_conv_train(&B->c3, t2, &h1, &w1, identity, 1, &out);
            } else if (t1) {
                pc_bb_conv_train(&B->c2, t1, &h1, &w1, identity, 1, &out);
            }
            pc_free(d), pc_free(t1), pc_free(t2), pc_free(x);
            x = out, h = h1, w = w1;
        }
    if (!x) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the batch-norm warm-up");
    pc_free(x);
    return PC_OK;
}

/* Every convolution of the built part of the network (at most 1 + 4 per block). */
static int all_convs(resnet *R, int bottleneck, conv **list, int cap) {
    int n = 0;
    if (n < cap) list[n++] = &R->stem;
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < R->nblocks[s] && R->blocks[s]; b++) {
            block *B = &R->blocks[s][b];
            conv *cs[4] = {&B->c1, &B->c2, bottleneck ? &B->c3 : NULL, B->has_ds ? &B->ds : NULL};
            for (int i = 0; i < 4; i++)
                if (cs[i] && n < cap) list[n++] = cs[i];
        }
    return n;
}

/* The network for oneDNN (onednn_net.h): the convolutions in list's order and the operations
 * of the forward pass of run() above, as values: stem conv, max-pool, then per block the downsample,
 * the convolutions and the last one's residual sum + ReLU; the last block of stage s is layer s+1. */
static pc_status dnn_describe(pc_backbone *bb, conv **list, int n) {
    const resnet *R = bb->net;
    const int bottleneck = spec(bb->spec)->bottleneck;
    pc_dnn_conv *convs = pc_calloc((size_t)n, sizeof *convs);
    pc_dnn_op *ops = pc_calloc((size_t)n + 1, sizeof *ops);
    if (!convs || !ops) {
        pc_free(convs), pc_free(ops);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        const conv *c = list[i];
        convs[i] = (pc_dnn_conv){c->cin, c->cout, c->k, c->stride, c->pad, c->groups, c->weight, c->bias};
    }
    int nops = 0;
#define OP(kind_, conv_, src_, res_, relu_) \
    (ops[nops] = (pc_dnn_op){.kind = kind_, .conv = conv_, .src = src_, .res = res_, .relu = relu_}, ++nops)
    int ci = 0;
    OP(PC_DNN_CONV, ci++, 0, 0, 1);
    int x = OP(PC_DNN_MAXPOOL, 0, 1, 0, 0);
    for (int s = 0; s < bb->max_layer; s++) {
        for (int b = 0; b < R->nblocks[s]; b++) {
            const block *B = &R->blocks[s][b];
            /* list order (all_convs): c1, c2, c3 (Bottleneck), ds */
            const int i1 = ci, i2 = ci + 1, i3 = bottleneck ? ci + 2 : -1;
            const int ids = B->has_ds ? ci + (bottleneck ? 3 : 2) : -1;
            ci += 2 + (bottleneck ? 1 : 0) + (B->has_ds ? 1 : 0);
            const int identity = B->has_ds ? OP(PC_DNN_CONV, ids, x, 0, 0) : x;
            const int t1 = OP(PC_DNN_CONV, i1, x, 0, 1);
            if (i3 >= 0) {
                const int t2 = OP(PC_DNN_CONV, i2, t1, 0, 1);
                x = OP(PC_DNN_CONV, i3, t2, identity, 1);
            } else {
                x = OP(PC_DNN_CONV, i2, t1, identity, 1);
            }
        }
        ops[x - 1].tap = s + 1;
    }
#undef OP
    pc_status st = ci == n ? pc_dnn_net_create(convs, n, ops, nops, bb->precision == PC_PRECISION_BF16, &bb->dnet)
                           : pc_fail(PC_ERR_INTERNAL, "backbone: %d convolutions described, %d built", ci, n);
    pc_free(convs), pc_free(ops);
    return st;
}

/* Settle the batch-norm statistics (the warm-up's, or the file's) and fold them into the convs; the
 * file's tensors are not referenced afterwards. */
static pc_status finalise(pc_backbone *bb) {
    conv *list[1 + 4 * 64]; /* the stem and up to 64 blocks (resnet152 has 50) */
    const int n = all_convs(bb->net, spec(bb->spec)->bottleneck, list, (int)(sizeof list / sizeof list[0]));
    pc_status st = bb->bn_stats == PC_BN_REFERENCE ? warmup(bb) : PC_OK;
    for (int i = 0; i < n; i++) {
        pc_status f = st == PC_OK ? pc_bb_conv_fold(list[i], bb->conv_path == PC_CONV_BUILTIN) : PC_OK;
        if (st == PC_OK) st = f;
        pc_free(list[i]->stats);
        list[i]->stats = NULL;
    }
    if (st == PC_OK && bb->conv_path == PC_CONV_ONEDNN) st = dnn_describe(bb, list, n);
    return st;
}

static size_t weight_bytes(const pc_backbone *bb) {
    const resnet *R = bb->net;
    size_t n = pc_bb_conv_bytes(&R->stem);
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < R->nblocks[s] && R->blocks[s]; b++) {
            const block *B = &R->blocks[s][b];
            n += pc_bb_conv_bytes(&B->c1) + pc_bb_conv_bytes(&B->c2) + pc_bb_conv_bytes(&B->c3) +
                 (B->has_ds ? pc_bb_conv_bytes(&B->ds) : 0);
        }
    return n;
}

const pc_bb_family pc_family_resnet = {
    .name = "ResNet",
    .slot = 0,
    .narchs = N_ARCHS,
    .arch = arch_at,
    .filter = filter,
    .recognise = recognise,
    .infer = infer,
    .build = build,
    .release = release,
    .finalise = finalise,
    .out_size = out_size,
    .channels = channels,
    .plan = plan,
    .forward = forward,
    .weight_bytes = weight_bytes,
    .has_onednn = 1,
};
