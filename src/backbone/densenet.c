/*
 * densenet.c - the torchvision DenseNet family (densenet121/161/169/201) as torchvision 0.14 defines
 * it: architecture table, tensor names in both spellings (denselayerN.norm1 and torchvision's
 * published files' old denselayerN.norm.1; with or without the "features." prefix, as timm's
 * safetensors), architecture inference from tensor shapes, the reference's batch-norm warm-up
 * (METHOD.md §2), folding, and the forward pass to the deepest requested dense block on our kernels.
 *
 * features: conv0 7x7/2 → norm0 → relu0 → pool0 (max 3x3/2 pad 1) → denseblock1 → transition1 →
 * denseblock2 → ... A dense layer: norm1 → relu1 → conv1 1x1 (→ bn_size·growth) → norm2 → relu2 →
 * conv2 3x3 pad 1 (→ growth), its output appended to its input's channels. A transition: norm →
 * relu → conv 1x1 (C → C/2) → avgpool 2x2/2. Layer n is the output of denseblock n (before the
 * transition after it). norm0 folds into conv0, norm2 into conv1; norm1 and the transition's norm act
 * on the concatenated input before a ReLU, so they stay per-channel scale and shift + ReLU. The
 * transition's average pool runs before its 1x1 convolution (they commute; 4x fewer products).
 */
#include "family.h"
#include "nn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BN_SIZE 4

typedef struct arch_spec {
    pc_bb_arch base;
    int growth;     /* channels each dense layer adds */
    int init;       /* conv0's output channels */
    int blocks[4];  /* dense layers per block */
} arch_spec;

#define F &pc_family_densenet
static const arch_spec ARCHS[] = {
    {{PC_ARCH_DENSENET121, "densenet121", F, {"densenet121-a639ec97.pth"}, "models--timm--densenet121.tv_in1k"},
     32, 64, {6, 12, 24, 16}},
    {{PC_ARCH_DENSENET161, "densenet161", F, {"densenet161-8d451a50.pth"}, "models--timm--densenet161.tv_in1k"},
     48, 96, {6, 12, 36, 24}},
    {{PC_ARCH_DENSENET169, "densenet169", F, {"densenet169-b2777c0a.pth"}, "models--timm--densenet169.tv_in1k"},
     32, 64, {6, 12, 32, 32}},
    {{PC_ARCH_DENSENET201, "densenet201", F, {"densenet201-c1103571.pth"}, "models--timm--densenet201.tv_in1k"},
     32, 64, {6, 12, 48, 32}},
};
#undef F
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

static const pc_bb_arch *arch_at(int i) { return i >= 0 && i < N_ARCHS ? &ARCHS[i].base : NULL; }
static const arch_spec *spec(const pc_bb_arch *a) { return (const arch_spec *)a; }

/* Channels into and out of dense block s (0-based): the transition halves them. */
static int32_t block_in(const arch_spec *a, int s) {
    int32_t c = a->init;
    for (int i = 0; i < s; i++) c = (c + a->blocks[i] * a->growth) / 2;
    return c;
}
static int32_t block_out(const arch_spec *a, int s) { return block_in(a, s) + a->blocks[s] * a->growth; }

/* ---------------------------------------------------------------------------------------------
 * The network
 * ------------------------------------------------------------------------------------------- */

typedef struct dense_layer {
    pc_bb_bn norm1; /* on the concatenated input, then ReLU */
    pc_bb_conv c1;  /* conv1 1x1 with norm2 folded, then ReLU */
    pc_bb_conv c2;  /* conv2 3x3, no batch-norm */
} dense_layer;

typedef struct transition {
    pc_bb_bn norm;
    pc_bb_conv conv; /* 1x1, no batch-norm */
} transition;

typedef struct densenet {
    pc_bb_conv stem; /* conv0 + norm0 */
    dense_layer *layers[4];
    int nlayers[4];
    transition trans[3]; /* trans[s] follows block s; built for s < max_layer - 1 */
    int ntrans;
} densenet;

/* Builtin workspace parts: the current and the next block's full output, the normalised input of a
 * layer (or the stem's convolution output), the bottleneck (or the pooled transition input), im2col. */
enum { WS_BLK0, WS_BLK1, WS_NORM, WS_BOT, WS_COL };

static void release(pc_backbone *bb) {
    densenet *D = bb->net;
    if (!D) return;
    pc_bb_conv_free(&D->stem);
    for (int s = 0; s < 4; s++) {
        for (int l = 0; l < D->nlayers[s] && D->layers[s]; l++) {
            pc_bb_bn_free(&D->layers[s][l].norm1);
            pc_bb_conv_free(&D->layers[s][l].c1);
            pc_bb_conv_free(&D->layers[s][l].c2);
        }
        pc_free(D->layers[s]);
    }
    for (int t = 0; t < 3; t++) {
        pc_bb_bn_free(&D->trans[t].norm);
        pc_bb_conv_free(&D->trans[t].conv);
    }
    pc_free(D);
    bb->net = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Tensor names. The canonical one is torchvision 0.14's module name ("features.denseblock1.
 * denselayer1.norm1.weight"); files may drop "features." (a bare features module) and torchvision's
 * own published weights use the old "denselayer1.norm.1.weight" (torchvision rewrites those when it
 * loads them; we accept both).
 * ------------------------------------------------------------------------------------------- */

/* name in the old spelling ("...denselayerN.norm.1...") into buf; 0 when name has nothing to respell. */
static int old_spelling(const char *name, char *buf, size_t size) {
    const char *p = strstr(name, ".denselayer");
    if (!p) return 0;
    p = strchr(p + 1, '.');
    if (!p) return 0;
    p++;
    if ((strncmp(p, "norm", 4) && strncmp(p, "conv", 4)) || (p[4] != '1' && p[4] != '2') || p[5] != '.') return 0;
    snprintf(buf, size, "%.*s.%s", (int)(p + 4 - name), name, p + 4);
    return 1;
}

/* The tensor of canonical name `name` in d under any accepted spelling. */
static const pc_tensor *get(const pc_tensor_dict *d, const char *name) {
    char alt[224];
    const pc_tensor *t = pc_tensor_dict_get(d, name);
    const char *bare = strncmp(name, "features.", 9) == 0 ? name + 9 : name;
    if (!t) t = pc_tensor_dict_get(d, bare);
    if (!t && old_spelling(name, alt, sizeof alt)) t = pc_tensor_dict_get(d, alt);
    if (!t && old_spelling(bare, alt, sizeof alt)) t = pc_tensor_dict_get(d, alt);
    return t;
}

static const pc_tensor *lookup(pc_bb_loadctx *L, const char *name) {
    const pc_tensor *t = get(L->dict, name);
    if (t) L->used[t - L->dict->tensors] = 1;
    return t;
}

/* E->seen[slot][s]: the highest denselayer number seen in block s+1 (0: block absent). */
static int filter(const char *name, pc_bb_evidence *E) {
    int32_t *layers = E->seen[pc_family_densenet.slot];
    const char *n = strncmp(name, "features.", 9) == 0 ? name + 9 : name;
    int b = 0, l = 0, at = 0;
    if (strncmp(name, "classifier.", 11) == 0 || strncmp(n, "norm5.", 6) == 0) return 0;
    if (strncmp(n, "conv0.", 6) == 0 || strncmp(n, "norm0.", 6) == 0) return 1;
    if (sscanf(n, "denseblock%d%n", &b, &at) == 1 && at > 0) {
        if (b < 1 || b > 4) return 1; /* loaded, to be reported as unexpected */
        if (sscanf(n + at, ".denselayer%d.", &l) == 1 && l > layers[b - 1] && l < 100000) layers[b - 1] = l;
        return b <= E->max_layer;
    }
    if (sscanf(n, "transition%d", &b) == 1) return b < E->max_layer || b < 1 || b > 3;
    return n != name ? 1 : -1;
}

static int recognise(const pc_tensor_dict *d) { return get(d, "features.conv0.weight") != NULL; }

/* Infer the architecture from conv0's output channels (init), the first dense layer's conv2 output
 * channels (growth) and the dense layers per block (every block the file has, loaded or not). Blocks
 * absent from the file cannot tell apart architectures that differ only there; the first match is
 * then returned, and it computes the present blocks identically. */
static pc_status infer(const pc_tensor_dict *d, const pc_bb_evidence *E, const char *path, const pc_bb_arch **out) {
    *out = NULL;
    const int32_t *layers = E->seen[pc_family_densenet.slot];
    const pc_tensor *c0 = get(d, "features.conv0.weight");
    const pc_tensor *c2 = get(d, "features.denseblock1.denselayer1.conv2.weight");
    if (!c0 || !c2 || c0->ndim != 4 || c2->ndim != 4)
        return pc_fail(PC_ERR_NOT_FOUND,
                       "%s: cannot infer the architecture: this is not a torchvision DenseNet state dict "
                       "(features.conv0.weight or features.denseblock1.denselayer1.conv2.weight is missing)", path);
    const int64_t init = c0->shape[0], growth = c2->shape[0];
    for (int i = 0; i < N_ARCHS; i++) {
        const arch_spec *a = &ARCHS[i];
        int ok = a->init == init && a->growth == growth;
        for (int s = 0; s < 4 && ok; s++)
            if (layers[s] && layers[s] != a->blocks[s]) ok = 0;
        if (ok) {
            *out = &a->base;
            return PC_OK;
        }
    }
    return pc_fail(PC_ERR_UNSUPPORTED,
                   "%s: no known DenseNet fits: %lld initial features, growth rate %lld, dense layers per block "
                   "%d/%d/%d/%d (0 = absent)",
                   path, (long long)init, (long long)growth, layers[0], layers[1], layers[2], layers[3]);
}

static pc_status build(pc_backbone *bb, pc_bb_loadctx *L, const pc_bb_evidence *E) {
    const arch_spec *a = spec(bb->spec);
    const int32_t *seen = E->seen[pc_family_densenet.slot];
    densenet *D = pc_calloc(1, sizeof *D);
    if (!D) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    bb->net = D;
    for (int s = 0; s < bb->max_layer; s++)
        if (seen[s] > a->blocks[s]) {
            L->prob->unexpected++;
            pc_bb_problem(L->prob, "denseblock%d has %d layers, %s has %d", s + 1, seen[s], a->base.name, a->blocks[s]);
        }
    pc_bb_conv_make(&D->stem, L, lookup, "features.conv0", "features.norm0", 3, a->init, 7, 2, 3, 1);
    const int32_t g = a->growth;
    char w[128], n[128];
    for (int s = 0; s < bb->max_layer; s++) {
        const int nl = a->blocks[s];
        int32_t c = block_in(a, s);
        D->layers[s] = pc_calloc((size_t)nl, sizeof(dense_layer));
        if (!D->layers[s]) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        D->nlayers[s] = nl;
        for (int l = 0; l < nl; l++, c += g) {
            dense_layer *Ly = &D->layers[s][l];
            char p[96];
            snprintf(p, sizeof p, "features.denseblock%d.denselayer%d", s + 1, l + 1);
            snprintf(n, sizeof n, "%s.norm1", p);
            pc_bb_bn_make(&Ly->norm1, L, lookup, n, c);
            snprintf(w, sizeof w, "%s.conv1", p);
            snprintf(n, sizeof n, "%s.norm2", p);
            pc_bb_conv_make(&Ly->c1, L, lookup, w, n, c, BN_SIZE * g, 1, 1, 0, 1);
            snprintf(w, sizeof w, "%s.conv2", p);
            pc_bb_conv_make(&Ly->c2, L, lookup, w, NULL, BN_SIZE * g, g, 3, 1, 1, 1);
        }
        if (s + 1 < bb->max_layer) {
            transition *T = &D->trans[s];
            snprintf(n, sizeof n, "features.transition%d.norm", s + 1);
            pc_bb_bn_make(&T->norm, L, lookup, n, c);
            snprintf(w, sizeof w, "features.transition%d.conv", s + 1);
            pc_bb_conv_make(&T->conv, L, lookup, w, NULL, c, c / 2, 1, 1, 0, 1);
            D->ntrans = s + 1;
        }
    }
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Sizes
 * ------------------------------------------------------------------------------------------- */

static int out_size(const pc_bb_arch *a, int32_t layer, int32_t *h, int32_t *w) {
    (void)a;
    const int32_t in_h = *h, in_w = *w;
    *h = pc_conv_out_dim(*h, 7, 2, 3), *w = pc_conv_out_dim(*w, 7, 2, 3);
    if (*h < 1 || *w < 1) return 0;
    *h = pc_conv_out_dim(*h, 3, 2, 1), *w = pc_conv_out_dim(*w, 3, 2, 1);
    for (int s = 1; s < layer; s++) *h /= 2, *w /= 2;
    return in_h >= 1 && in_w >= 1 && *h >= 1 && *w >= 1;
}

static int32_t channels(const pc_bb_arch *a, int32_t layer) { return block_out(spec(a), layer - 1); }

/* ---------------------------------------------------------------------------------------------
 * Forward on our kernels, one image at a time: each dense layer writes its growth channels into its
 * slice of the block's preallocated output (NCHW: one image's channels are contiguous), so the
 * concatenation copies nothing.
 * ------------------------------------------------------------------------------------------- */

/* Shapes only (exec 0: fills need) or one image (exec 1). Returns 0 if a size collapses below 1. */
static int run(const pc_backbone *bb, int exec, const float *in, int32_t h, int32_t w, uint32_t layer_mask,
               float *const outs[4], size_t image, size_t need[PC_BB_WS_PARTS]) {
    const densenet *D = bb->net;
    const arch_spec *a = spec(bb->spec);
    const int32_t g = a->growth;
    float *blk = NULL, *next = NULL, *norm = NULL, *bot = NULL, *col = NULL;
    size_t col_max = 0;
    const double deadline = exec ? pc_deadline_get() : 0;
    if (exec) {
        blk = pc_bb_ws(bb, WS_BLK0), next = pc_bb_ws(bb, WS_BLK1), norm = pc_bb_ws(bb, WS_NORM);
        bot = pc_bb_ws(bb, WS_BOT), col = pc_bb_ws(bb, WS_COL);
    }
    int32_t oh = h, ow = w;
    if (!out_size(bb->spec, bb->max_layer, &oh, &ow)) return 0;
    /* stem: conv0 + norm0 + ReLU into norm, max-pool into the first channels of block 1 */
    pc_bb_conv_step(&D->stem, exec, norm, col, in, NULL, 1, 1, h, w, &col_max);
    h = pc_conv_out_dim(h, 7, 2, 3), w = pc_conv_out_dim(w, 7, 2, 3);
    if (!exec) need[WS_NORM] = PC_MAX(need[WS_NORM], (size_t)a->init * (size_t)h * (size_t)w);
    if (exec) pc_maxpool3x3s2(blk, norm, 1, a->init, h, w);
    h = pc_conv_out_dim(h, 3, 2, 1), w = pc_conv_out_dim(w, 3, 2, 1);
    for (int s = 0; s < bb->max_layer; s++) {
        const size_t hw = (size_t)h * (size_t)w;
        const int32_t cout = block_out(a, s);
        int32_t c = block_in(a, s);
        if (!exec) {
            need[WS_BLK0] = need[WS_BLK1] = PC_MAX(need[WS_BLK0], (size_t)cout * hw);
            need[WS_NORM] = PC_MAX(need[WS_NORM], (size_t)cout * hw);
            need[WS_BOT] = PC_MAX(need[WS_BOT], (size_t)BN_SIZE * g * hw);
        }
        for (int l = 0; l < D->nlayers[s]; l++, c += g) {
            const dense_layer *Ly = &D->layers[s][l];
            /* a server's request deadline (src/cancel.c): stop between dense layers; pc_backbone_forward
             * reports PC_ERR_CANCELLED */
            if (exec && pc_deadline_passed(deadline)) return 1;
            if (exec) pc_scale_shift_relu(norm, blk, Ly->norm1.scale, Ly->norm1.shift, c, hw);
            pc_bb_conv_step(&Ly->c1, exec, bot, col, norm, NULL, 1, 1, h, w, &col_max);
            pc_bb_conv_step(&Ly->c2, exec, blk + (size_t)c * hw, col, bot, NULL, 0, 1, h, w, &col_max);
        }
        if (exec && (layer_mask & PC_LAYER(s + 1)))
            memcpy(outs[s] + image * (size_t)cout * hw, blk, (size_t)cout * hw * sizeof(float));
        if (s + 1 < bb->max_layer) {
            /* transition: norm + ReLU, avgpool 2x2/2, conv 1x1 into the first channels of the next block */
            const transition *T = &D->trans[s];
            const int32_t ph = h / 2, pw = w / 2;
            if (exec) {
                pc_scale_shift_relu(norm, blk, T->norm.scale, T->norm.shift, cout, hw);
                pc_avgpool2x2(bot, norm, cout, h, w);
            } else {
                need[WS_BOT] = PC_MAX(need[WS_BOT], (size_t)cout * (size_t)ph * (size_t)pw);
            }
            pc_bb_conv_step(&T->conv, exec, next, col, bot, NULL, 0, 1, ph, pw, &col_max);
            float *t = blk;
            blk = next, next = t;
            h = ph, w = pw;
        }
    }
    if (!exec) need[WS_COL] = col_max;
    return 1;
}

static int plan(const pc_backbone *bb, int32_t n, int32_t h, int32_t w, size_t need[PC_BB_WS_PARTS]) {
    (void)n; /* one image at a time */
    return run(bb, 0, NULL, h, w, 0, NULL, 0, need);
}

static void forward(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w, uint32_t layer_mask,
                    float *const outs[4]) {
    for (int32_t i = 0; i < n; i++)
        run(bb, 1, in + (size_t)i * 3 * (size_t)h * (size_t)w, h, w, layer_mask, outs, (size_t)i, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * The reference's batch-norm warm-up (METHOD.md §2): torchvision's training-mode forward of
 * ones(1, 3, S, S) up to the last requested dense block, in float64 (units.c). Every batch-norm on
 * the way normalises with its own input's statistics and moves its running statistics: norm0, each
 * layer's norm1 (on the concatenation as it stands at that layer) and norm2, and the transitions'
 * norm between the blocks run.
 * ------------------------------------------------------------------------------------------- */

static pc_status warmup(pc_backbone *bb) {
    densenet *D = bb->net;
    const arch_spec *a = spec(bb->spec);
    const int32_t S = bb->warmup_size, g = a->growth;
    int32_t oh = S, ow = S;
    if (!out_size(bb->spec, bb->max_layer, &oh, &ow) || (int64_t)oh * ow < 2)
        return pc_fail(PC_ERR_SHAPE, "%s: the batch-norm warm-up at crop size %d leaves denseblock%d with %dx%d "
                       "positions; training-mode batch-norm needs more than one value per channel (use a larger "
                       "crop, or --bn trained)", bb->path, (int)S, (int)bb->max_layer, (int)oh, (int)ow);
    int32_t h = S, w = S;
    double *x = pc_malloc(3 * (size_t)S * (size_t)S * sizeof(double)), *y = NULL, *blk = NULL, *tmp = NULL;
    pc_status st = PC_ERR_NO_MEMORY;
    if (!x) goto done;
    for (size_t i = 0; i < 3 * (size_t)S * (size_t)S; i++) x[i] = 1.0;
    pc_bb_conv_train(&D->stem, x, &h, &w, NULL, 1, &y);
    if (!y) goto done;
    {
        const int32_t ph = pc_conv_out_dim(h, 3, 2, 1), pw = pc_conv_out_dim(w, 3, 2, 1);
        blk = pc_malloc((size_t)block_out(a, 0) * (size_t)ph * (size_t)pw * sizeof(double));
        if (!blk) goto done;
        pc_maxpool3x3s2_f64(blk, y, a->init, h, w);
        h = ph, w = pw;
    }
    for (int s = 0; s < bb->max_layer; s++) {
        const size_t hw = (size_t)h * (size_t)w;
        const int32_t cout = block_out(a, s);
        int32_t c = block_in(a, s);
        pc_free(tmp);
        if (!(tmp = pc_malloc((size_t)cout * hw * sizeof(double)))) goto done;
        for (int l = 0; l < D->nlayers[s]; l++, c += g) {
            dense_layer *Ly = &D->layers[s][l];
            double *t1 = NULL, *t2 = NULL;
            int32_t h1 = h, w1 = w;
            memcpy(tmp, blk, (size_t)c * hw * sizeof(double));
            if (!pc_bb_bn_train(&Ly->norm1, tmp, hw, 1)) goto done;
            pc_bb_conv_train(&Ly->c1, tmp, &h1, &w1, NULL, 1, &t1);
            if (t1) pc_bb_conv_train(&Ly->c2, t1, &h1, &w1, NULL, 0, &t2);
            if (t2) memcpy(blk + (size_t)c * hw, t2, (size_t)g * hw * sizeof(double));
            pc_free(t1), pc_free(t2);
            if (!t2) goto done;
        }
        if (s + 1 < bb->max_layer) {
            transition *T = &D->trans[s];
            const int32_t ph = h / 2, pw = w / 2;
            double *pooled = NULL, *t = NULL;
            memcpy(tmp, blk, (size_t)cout * hw * sizeof(double));
            if (!pc_bb_bn_train(&T->norm, tmp, hw, 1)) goto done;
            if (!(pooled = pc_malloc((size_t)cout * (size_t)ph * (size_t)pw * sizeof(double)))) goto done;
            pc_avgpool2x2_f64(pooled, tmp, cout, h, w);
            h = ph, w = pw;
            int32_t h1 = h, w1 = w;
            pc_bb_conv_train(&T->conv, pooled, &h1, &w1, NULL, 0, &t);
            pc_free(pooled);
            if (!t) goto done;
            pc_free(blk);
            blk = pc_malloc((size_t)block_out(a, s + 1) * (size_t)h * (size_t)w * sizeof(double));
            if (blk) memcpy(blk, t, (size_t)(cout / 2) * (size_t)h * (size_t)w * sizeof(double));
            pc_free(t);
            if (!blk) goto done;
        }
    }
    st = PC_OK;
done:
    pc_free(x), pc_free(y), pc_free(blk), pc_free(tmp);
    return st == PC_OK ? PC_OK : pc_fail(st, "out of memory for the batch-norm warm-up");
}

/* ---------------------------------------------------------------------------------------------
 * The network for oneDNN (onednn_net.h): each block's output is a buffer value that the max-pool
 * (block 1) or the transition's convolution fills first and each layer's conv2 then writes its
 * growth channels into; a layer's norm1 reads the buffer's channels so far. Convolutions in order:
 * conv0, per layer conv1 and conv2, per transition its conv.
 * ------------------------------------------------------------------------------------------- */

static pc_status dnn_describe(pc_backbone *bb) {
    const densenet *D = bb->net;
    const arch_spec *a = spec(bb->spec);
    int nconv = 1 + D->ntrans, nops = 3 + 4 * D->ntrans;
    for (int s = 0; s < bb->max_layer; s++) nconv += 2 * D->nlayers[s], nops += 3 * D->nlayers[s];
    pc_dnn_conv *convs = pc_calloc((size_t)nconv, sizeof *convs);
    pc_dnn_op *ops = pc_calloc((size_t)nops, sizeof *ops);
    if (!convs || !ops) {
        pc_free(convs), pc_free(ops);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    int ci = 0, no = 0;
#define CONV(c_) (convs[ci] = (pc_dnn_conv){(c_)->cin, (c_)->cout, (c_)->k, (c_)->stride, (c_)->pad, (c_)->groups, \
                                            (c_)->weight, (c_)->bias}, ci++)
#define OP(...) (ops[no] = (pc_dnn_op){__VA_ARGS__}, ++no)
    const int stem = OP(.kind = PC_DNN_CONV, .conv = CONV(&D->stem), .src = 0, .relu = 1);
    int buf = OP(.kind = PC_DNN_BUFFER, .ch = block_out(a, 0));
    OP(.kind = PC_DNN_MAXPOOL, .src = stem, .into = buf, .off = 0);
    for (int s = 0; s < bb->max_layer; s++) {
        int32_t c = block_in(a, s);
        for (int l = 0; l < D->nlayers[s]; l++, c += a->growth) {
            const dense_layer *Ly = &D->layers[s][l];
            const int x = OP(.kind = PC_DNN_BNRELU, .src = buf, .src_ch = c, .scale = Ly->norm1.scale,
                             .shift = Ly->norm1.shift);
            const int t = OP(.kind = PC_DNN_CONV, .conv = CONV(&Ly->c1), .src = x, .relu = 1);
            OP(.kind = PC_DNN_CONV, .conv = CONV(&Ly->c2), .src = t, .into = buf, .off = c,
               .tap = l + 1 == D->nlayers[s] ? s + 1 : 0);
        }
        if (s + 1 < bb->max_layer) {
            const transition *T = &D->trans[s];
            const int x = OP(.kind = PC_DNN_BNRELU, .src = buf, .scale = T->norm.scale, .shift = T->norm.shift);
            const int pooled = OP(.kind = PC_DNN_AVGPOOL, .src = x);
            const int next = OP(.kind = PC_DNN_BUFFER, .ch = block_out(a, s + 1));
            OP(.kind = PC_DNN_CONV, .conv = CONV(&T->conv), .src = pooled, .into = next, .off = 0);
            buf = next;
        }
    }
#undef OP
#undef CONV
    pc_status st = ci == nconv && no == nops
                       ? pc_dnn_net_create(convs, nconv, ops, nops, bb->precision == PC_PRECISION_BF16, &bb->dnet)
                       : pc_fail(PC_ERR_INTERNAL, "densenet: %d/%d convolutions, %d/%d operations described", ci,
                                 nconv, no, nops);
    pc_free(convs), pc_free(ops);
    return st;
}

static pc_status finalise(pc_backbone *bb) {
    densenet *D = bb->net;
    pc_status st = bb->bn_stats == PC_BN_REFERENCE ? warmup(bb) : PC_OK;
    const int wino = bb->conv_path == PC_CONV_BUILTIN;
#define FOLD(expr)                                                                                             \
    do {                                                                                                       \
        pc_status f_ = (expr);                                                                                 \
        if (st == PC_OK) st = f_;                                                                              \
    } while (0)
    if (st == PC_OK) FOLD(pc_bb_conv_fold(&D->stem, wino));
    for (int s = 0; s < 4 && st == PC_OK; s++)
        for (int l = 0; l < D->nlayers[s] && st == PC_OK; l++) {
            FOLD(pc_bb_bn_fold(&D->layers[s][l].norm1));
            if (st == PC_OK) FOLD(pc_bb_conv_fold(&D->layers[s][l].c1, wino));
            if (st == PC_OK) FOLD(pc_bb_conv_fold(&D->layers[s][l].c2, wino));
        }
    for (int t = 0; t < D->ntrans && st == PC_OK; t++) {
        FOLD(pc_bb_bn_fold(&D->trans[t].norm));
        if (st == PC_OK) FOLD(pc_bb_conv_fold(&D->trans[t].conv, wino));
    }
#undef FOLD
    if (st == PC_OK && bb->conv_path == PC_CONV_ONEDNN) st = dnn_describe(bb);
    return st;
}

static size_t weight_bytes(const pc_backbone *bb) {
    const densenet *D = bb->net;
    size_t n = pc_bb_conv_bytes(&D->stem);
    for (int s = 0; s < 4; s++)
        for (int l = 0; l < D->nlayers[s] && D->layers[s]; l++) {
            const dense_layer *Ly = &D->layers[s][l];
            n += 2 * (size_t)Ly->norm1.c * sizeof(float) + pc_bb_conv_bytes(&Ly->c1) + pc_bb_conv_bytes(&Ly->c2);
        }
    for (int t = 0; t < D->ntrans; t++)
        n += 2 * (size_t)D->trans[t].norm.c * sizeof(float) + pc_bb_conv_bytes(&D->trans[t].conv);
    return n;
}

const pc_bb_family pc_family_densenet = {
    .name = "DenseNet",
    .slot = 1,
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
    .onednn_below_avx512 = 1,
};
