/*
 * backbone.c - the torchvision ResNet family (resnet18/34/50/101/152, wide_resnet50_2/101_2,
 * resnext50_32x4d, resnext101_32x8d) as torchvision 0.14 defines them: architecture table, loading
 * and validating state dicts (names and shapes, missing and mismatched tensors reported by name),
 * architecture inference from tensor shapes, the reference's batch-norm warm-up (METHOD.md §2),
 * batch-norm folding, the default weights lookup, the workspace plan and the forward pass to the
 * deepest requested layer.
 */
#include "nn.h"
#include "weights.h"
#include "backbone_internal.h"
#include "backbone_onednn.h"
#include "onednn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define BN_EPS 1e-5

/* ---------------------------------------------------------------------------------------------
 * Architectures
 * ------------------------------------------------------------------------------------------- */

typedef struct arch_spec {
    pc_arch arch;
    const char *name;
    int bottleneck;        /* Bottleneck (1x1, 3x3, 1x1 x4) or BasicBlock (3x3, 3x3) */
    int blocks[4];         /* blocks per stage */
    int groups;            /* of the 3x3 convolution (resnext) */
    int width_per_group;   /* torchvision's base_width */
    const char *files[3];  /* torchvision's cache file names, preferred first */
} arch_spec;

static const arch_spec ARCHS[] = {
    {PC_ARCH_RESNET18, "resnet18", 0, {2, 2, 2, 2}, 1, 64, {"resnet18-f37072fd.pth"}},
    {PC_ARCH_RESNET34, "resnet34", 0, {3, 4, 6, 3}, 1, 64, {"resnet34-b627a593.pth"}},
    {PC_ARCH_RESNET50, "resnet50", 1, {3, 4, 6, 3}, 1, 64,
     {"resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth", "resnet50-19c8e357.pth"}},
    {PC_ARCH_RESNET101, "resnet101", 1, {3, 4, 23, 3}, 1, 64, {"resnet101-63fe2227.pth", "resnet101-cd907fc2.pth"}},
    {PC_ARCH_RESNET152, "resnet152", 1, {3, 8, 36, 3}, 1, 64, {"resnet152-394f9c45.pth", "resnet152-f82ba261.pth"}},
    {PC_ARCH_WIDE_RESNET50_2, "wide_resnet50_2", 1, {3, 4, 6, 3}, 1, 128,
     {"wide_resnet50_2-95faca4d.pth", "wide_resnet50_2-9ba9bcbe.pth"}},
    {PC_ARCH_WIDE_RESNET101_2, "wide_resnet101_2", 1, {3, 4, 23, 3}, 1, 128,
     {"wide_resnet101_2-32ee1156.pth", "wide_resnet101_2-d733dc28.pth"}},
    {PC_ARCH_RESNEXT50_32X4D, "resnext50_32x4d", 1, {3, 4, 6, 3}, 32, 4,
     {"resnext50_32x4d-7cdf4587.pth", "resnext50_32x4d-1a0047aa.pth"}},
    {PC_ARCH_RESNEXT101_32X8D, "resnext101_32x8d", 1, {3, 4, 23, 3}, 32, 8,
     {"resnext101_32x8d-8ba56ff5.pth", "resnext101_32x8d-110c445d.pth"}},
};
#define N_ARCHS ((int)(sizeof ARCHS / sizeof ARCHS[0]))

static const arch_spec *spec_of(pc_arch a) {
    for (int i = 0; i < N_ARCHS; i++)
        if (ARCHS[i].arch == a) return &ARCHS[i];
    return NULL;
}

const char *pc_arch_name(pc_arch arch) {
    const arch_spec *s = spec_of(arch);
    return s ? s->name : "unknown";
}

pc_arch pc_arch_from_name(const char *name) {
    if (!name) return PC_ARCH_UNKNOWN;
    for (int i = 0; i < N_ARCHS; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return ARCHS[i].arch;
    return PC_ARCH_UNKNOWN;
}

/* torchvision: Bottleneck width = int(planes * (base_width / 64)) * groups; expansion 4 (1 for Basic). */
static int stage_planes(int s) { return 64 << s; }
static int stage_width(const arch_spec *a, int s) {
    return a->bottleneck ? (stage_planes(s) * a->width_per_group / 64) * a->groups : stage_planes(s);
}
static int stage_out(const arch_spec *a, int s) { return stage_planes(s) * (a->bottleneck ? 4 : 1); }

/* ---------------------------------------------------------------------------------------------
 * The network
 * ------------------------------------------------------------------------------------------- */

typedef struct conv {
    int32_t cin, cout, k, stride, pad, groups;
    float *weight; /* (cout, cin/groups, k, k), batch-norm folded in */
    float *bias;   /* (cout) */
    float *wino;   /* (16, cout, cin) Winograd-transformed weight when use_winograd(); weight is then NULL */
    /* While the backbone is being built only: the file's tensors (pointers into the weights dict) and
     * the running statistics the warm-up computes (2 x cout, owned), folded into weight/bias at the end. */
    const float *raw_w, *bn_g, *bn_b, *bn_mean, *bn_var;
    float *stats;
} conv;

/* Winograd F(2x2,3x3) for every 3x3/1 ungrouped convolution: measured on AVX2 with OpenBLAS, single
 * thread, 1.4x (64 channels at 56x56) to 1.9x (128 at 56x56) faster than im2col + SGEMM. Grouped
 * (resnext) and strided ones keep im2col. */
static int use_winograd(const conv *c) {
    return c->k == 3 && c->stride == 1 && c->pad == 1 && c->groups == 1;
}

typedef struct block {
    conv c1, c2, c3; /* c3 only in a Bottleneck */
    conv ds;         /* downsample, when has_ds */
    int has_ds;
} block;

struct pc_backbone {
    const arch_spec *spec;
    int32_t max_layer;
    conv stem;
    block *blocks[4];
    int nblocks[4];
    char path[4096];
    char errmsg[PC_ERRMSG_MAX];
    /* Workspace: five activation buffers of act_cap floats and one im2col buffer of col_cap floats,
     * in one allocation, planned for batches up to ws_n of ws_h x ws_w (see plan()). */
    float *ws;
    size_t act_cap, col_cap;
    int is_view; /* a view (pc_backbone_view) shares another backbone's weights and owns only ws */
    pc_bn_stats bn_stats;
    int32_t warmup_size;
    pc_precision precision;
    pc_conv_path conv_path;
    /* The oneDNN path: the net (description + reordered weights) is the parent's, shared by its
     * views; each backbone or view keeps its own plans for the last two input shapes it ran, most
     * recent first. */
    pc_dnn_net *dnet;
    pc_dnn_plan *plans[2];
};

static void conv_free(conv *c) {
    pc_free(c->weight);
    pc_free(c->bias);
    pc_free(c->wino);
    pc_free(c->stats);
}

/* Free the weights and workspace a backbone holds, not the struct itself. */
static void release_plans(pc_backbone *bb) {
    for (int i = 0; i < 2; i++) {
        pc_dnn_plan_free(bb->plans[i]);
        bb->plans[i] = NULL;
    }
}

static void backbone_release(pc_backbone *bb) {
    release_plans(bb);
    pc_dnn_net_free(bb->dnet);
    bb->dnet = NULL;
    conv_free(&bb->stem);
    for (int s = 0; s < 4; s++) {
        for (int b = 0; b < bb->nblocks[s] && bb->blocks[s]; b++) {
            conv_free(&bb->blocks[s][b].c1);
            conv_free(&bb->blocks[s][b].c2);
            conv_free(&bb->blocks[s][b].c3);
            conv_free(&bb->blocks[s][b].ds);
        }
        pc_free(bb->blocks[s]);
    }
    pc_free(bb->ws);
}

void pc_backbone_free(pc_backbone *bb) {
    if (!bb) return;
    if (bb->is_view) {
        pc_free(bb->ws);
        release_plans(bb);
    } else {
        backbone_release(bb);
    }
    pc_free(bb);
}

pc_status pc_backbone_view(const pc_backbone *src, pc_backbone **out) {
    *out = NULL;
    pc_backbone *v = pc_malloc(sizeof *v);
    if (!v) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    memcpy(v, src, sizeof *v);
    v->ws = NULL;
    v->act_cap = v->col_cap = 0;
    v->plans[0] = v->plans[1] = NULL;
    v->is_view = 1;
    v->errmsg[0] = '\0';
    *out = v;
    return PC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Loading: problems are collected, then reported together
 * ------------------------------------------------------------------------------------------- */

typedef struct problems {
    char text[PC_ERRMSG_MAX - 200];
    size_t len;
    int missing, mismatched, unexpected, dropped;
} problems;

static void problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(problems *p, const char *fmt, ...) {
    char one[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(one, sizeof one, fmt, ap);
    va_end(ap);
    size_t n = strlen(one);
    if (p->len + n + 3 < sizeof p->text - 24) {
        p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "%s%s", p->len ? "; " : "", one);
    } else {
        p->dropped++;
    }
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int d = 0; d < ndim && at < size; d++)
        at += (size_t)snprintf(buf + at, size - at, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (at < size) snprintf(buf + at, size - at, "]");
}

typedef struct loadctx {
    const pc_tensor_dict *dict;
    unsigned char *used; /* one flag per tensor of dict */
    problems *prob;
} loadctx;

/* The float tensor `name` if present with exactly this shape; else records the problem. */
static const float *take(loadctx *L, const char *name, int ndim, const int64_t *shape) {
    const pc_tensor *t = pc_tensor_dict_get(L->dict, name);
    char want[96], got[96];
    shape_str(want, sizeof want, ndim, shape);
    if (!t) {
        L->prob->missing++;
        problem(L->prob, "missing %s %s", name, want);
        return NULL;
    }
    L->used[t - L->dict->tensors] = 1;
    int ok = t->ndim == ndim && t->data != NULL;
    for (int d = 0; ok && d < ndim; d++) ok = t->shape[d] == shape[d];
    if (!ok) {
        shape_str(got, sizeof got, t->ndim, t->shape);
        L->prob->mismatched++;
        if (!t->data)
            problem(L->prob, "%s is an integer tensor, expected float %s", name, want);
        else
            problem(L->prob, "%s has shape %s, expected %s", name, got, want);
        return NULL;
    }
    return t->data;
}

/* Describe conv `c` and take its tensors "<wname>.weight" and batch-norm
 * "<bnname>.{weight,bias,running_mean,running_var}" from the dict (checked, not copied yet: fold()
 * makes the weights the forward pass uses, once the statistics are settled). */
static pc_status make_conv(conv *c, loadctx *L, const char *wname, const char *bnname, int32_t cin, int32_t cout,
                           int32_t k, int32_t stride, int32_t pad, int32_t groups) {
    c->cin = cin, c->cout = cout, c->k = k, c->stride = stride, c->pad = pad, c->groups = groups;
    char name[160];
    const int64_t wshape[4] = {cout, cin / groups, k, k}, vshape[1] = {cout};
    snprintf(name, sizeof name, "%s.weight", wname);
    c->raw_w = take(L, name, 4, wshape);
    const float **bn[4] = {&c->bn_g, &c->bn_b, &c->bn_mean, &c->bn_var};
    static const char *const fields[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", bnname, fields[i]);
        *bn[i] = take(L, name, 1, vshape);
    }
    return PC_OK;
}

/* Fold batch-norm with running statistics (mean, var) into the convolution:
 * w' = w * g / sqrt(v + eps), b' = beta - m * g / sqrt(v + eps); then the Winograd transform. */
static pc_status fold(conv *c, const float *mean, const float *var, int winograd) {
    const int32_t cout = c->cout;
    const size_t per = (size_t)(c->cin / c->groups) * (size_t)c->k * (size_t)c->k;
    c->weight = pc_malloc((size_t)cout * per * sizeof(float));
    c->bias = pc_malloc((size_t)cout * sizeof(float));
    if (!c->weight || !c->bias) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the backbone's weights");
    for (int32_t o = 0; o < cout; o++) {
        const double scale = (double)c->bn_g[o] / sqrt((double)var[o] + BN_EPS);
        for (size_t i = 0; i < per; i++)
            c->weight[(size_t)o * per + i] = (float)(c->raw_w[(size_t)o * per + i] * scale);
        c->bias[o] = (float)((double)c->bn_b[o] - (double)mean[o] * scale);
    }
    if (winograd && use_winograd(c)) {
        c->wino = pc_malloc((size_t)16 * (size_t)cout * (size_t)c->cin * sizeof(float));
        if (!c->wino) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the backbone's weights");
        pc_winograd_weights(c->wino, c->weight, cout, c->cin);
        pc_free(c->weight);
        c->weight = NULL;
    }
    return PC_OK;
}

static pc_status build(pc_backbone *bb, loadctx *L) {
    const arch_spec *a = bb->spec;
    pc_status st = make_conv(&bb->stem, L, "conv1", "bn1", 3, 64, 7, 2, 3, 1);
    if (st) return st;
    int32_t inplanes = 64;
    for (int s = 0; s < bb->max_layer; s++) {
        const int nb = a->blocks[s], width = stage_width(a, s), out = stage_out(a, s);
        bb->blocks[s] = pc_calloc((size_t)nb, sizeof(block));
        if (!bb->blocks[s]) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        bb->nblocks[s] = nb;
        for (int b = 0; b < nb; b++) {
            block *B = &bb->blocks[s][b];
            const int stride = (b == 0 && s > 0) ? 2 : 1;
            char p[64], w[96], n[96];
            snprintf(p, sizeof p, "layer%d.%d", s + 1, b);
#define CONV(dst, wn, bnn, ci, co, k, str, pad, g)                                                             \
    do {                                                                                                       \
        snprintf(w, sizeof w, "%s.%s", p, wn);                                                                 \
        snprintf(n, sizeof n, "%s.%s", p, bnn);                                                                \
        if ((st = make_conv(dst, L, w, n, ci, co, k, str, pad, g)) != PC_OK) return st;                        \
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
 * What the file holds, seen through the load filter (every name passes through it, loaded or not)
 * ------------------------------------------------------------------------------------------- */

typedef struct evidence {
    int32_t max_layer;      /* load tensors of layer1..max_layer (and the stem) only */
    int32_t load_all;       /* pc_weights_inspect: load every tensor */
    int blocks[4];          /* 1 + the highest block index seen per stage (0: stage absent) */
    int64_t names;          /* tensors seen */
} evidence;

static int parse_layer(const char *name, int *layer, int *blk) {
    int l, b, n = 0;
    if (sscanf(name, "layer%d.%d.%n", &l, &b, &n) == 2 && n > 0 && l >= 1 && l <= 4 && b >= 0 && b < 1000) {
        *layer = l, *blk = b;
        return 1;
    }
    return 0;
}

static int load_filter(const char *name, void *user) {
    evidence *E = user;
    int l = 0, b = 0;
    E->names++;
    int in_layer = parse_layer(name, &l, &b);
    if (in_layer && b + 1 > E->blocks[l - 1]) E->blocks[l - 1] = b + 1;
    if (E->load_all) return 1;
    size_t n = strlen(name), suf = strlen(".num_batches_tracked");
    if (n >= suf && strcmp(name + n - suf, ".num_batches_tracked") == 0) return 0;
    if (strncmp(name, "fc.", 3) == 0) return 0;
    if (in_layer && l > E->max_layer) return 0;
    if (!in_layer && strncmp(name, "layer", 5) == 0) {
        int ll = 0;
        if (sscanf(name, "layer%d", &ll) == 1 && ll > E->max_layer) return 0;
    }
    return 1;
}

/* Infer the architecture from block counts (all stages the file has, loaded or not), block type
 * (conv3 present) and layer1's widths and groups. Layers absent from the file cannot tell apart
 * architectures that differ only there; the first match is then returned, and it computes the
 * present layers identically. */
static pc_status infer_arch(const pc_tensor_dict *d, const evidence *E, const char *path, const arch_spec **out) {
    *out = NULL;
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
            if (E->blocks[s] && E->blocks[s] != a->blocks[s]) ok = 0;
        if (ok && bottleneck)
            ok = width == stage_width(a, 0) && per_group == stage_width(a, 0) / a->groups;
        if (ok) {
            *out = a;
            return PC_OK;
        }
    }
    return pc_fail(PC_ERR_UNSUPPORTED,
                   "%s: no known architecture fits: %s blocks, blocks per stage %d/%d/%d/%d (0 = absent), "
                   "layer1 3x3 conv %lld channels in groups of %lld",
                   path, bottleneck ? "Bottleneck" : "BasicBlock", E->blocks[0], E->blocks[1], E->blocks[2],
                   E->blocks[3], (long long)width, (long long)per_group);
}

/* Check the file's stage block counts against arch a for the stages that are loaded. */
static void check_blocks(const arch_spec *a, const evidence *E, int max_layer, problems *P) {
    for (int s = 0; s < max_layer; s++)
        if (E->blocks[s] > a->blocks[s]) {
            P->unexpected++;
            problem(P, "layer%d has %d blocks, %s has %d", s + 1, E->blocks[s], a->name, a->blocks[s]);
        }
}

static pc_status report(const problems *P, const char *path, const arch_spec *a, int max_layer) {
    if (!P->missing && !P->mismatched && !P->unexpected) return PC_OK;
    pc_status st = P->mismatched || P->unexpected ? PC_ERR_SHAPE : PC_ERR_NOT_FOUND;
    return pc_fail(st, "%s: does not match %s up to layer%d (%d missing, %d mismatched, %d unexpected): %s%s", path,
                   a->name, max_layer, P->missing, P->mismatched, P->unexpected, P->text,
                   P->dropped ? "; ..." : "");
}

/* ---------------------------------------------------------------------------------------------
 * Where the weights are when no path is given
 * ------------------------------------------------------------------------------------------- */

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static pc_status find_default(const arch_spec *a, char *out, size_t size) {
    const char *env = getenv("PATCHCORE_WEIGHTS");
    if (env && *env) {
        if (!file_exists(env))
            return pc_fail(PC_ERR_NOT_FOUND, "$PATCHCORE_WEIGHTS names %s, which does not exist", env);
        snprintf(out, size, "%s", env);
        return PC_OK;
    }
    char dir[2048];
    const char *th = getenv("TORCH_HOME"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (th && *th)
        snprintf(dir, sizeof dir, "%s/hub/checkpoints", th);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/torch/hub/checkpoints", xdg);
    else
        snprintf(dir, sizeof dir, "%s/.cache/torch/hub/checkpoints", home ? home : "");
    char tried[1024] = "";
    size_t at = 0;
    for (int i = 0; i < 3 && a->files[i]; i++) {
        snprintf(out, size, "%s/%s", dir, a->files[i]);
        if (file_exists(out)) return PC_OK;
        at += (size_t)snprintf(tried + at, sizeof tried - at, "%s%s", i ? ", " : "", a->files[i]);
        if (at >= sizeof tried) at = sizeof tried - 1;
    }
    out[0] = '\0';
    return pc_fail(PC_ERR_NOT_FOUND,
                   "no weights file given and none found for %s: $PATCHCORE_WEIGHTS is not set and %s holds none of "
                   "%s. Name a file with --weights (or $PATCHCORE_WEIGHTS), or download torchvision's: "
                   "curl -L --create-dirs -o %s/%s https://download.pytorch.org/models/%s",
                   a->name, dir, tried, dir, a->files[0], a->files[0]);
}

/* ---------------------------------------------------------------------------------------------
 * Public: load, inspect, accessors
 * ------------------------------------------------------------------------------------------- */

static int max_layer_of(uint32_t mask) {
    int m = 0;
    for (int l = 1; l <= 4; l++)
        if (mask & PC_LAYER(l)) m = l;
    return m;
}

static pc_status build_from_dict(pc_backbone *bb, const pc_tensor_dict *d, const evidence *E, const arch_spec *a);
static pc_status finalise(pc_backbone *bb);

const char *pc_bn_stats_name(pc_bn_stats s) {
    switch (s) {
    case PC_BN_REFERENCE: return "reference";
    case PC_BN_TRAINED: return "trained";
    }
    return "unknown";
}

int pc_bn_stats_from_name(const char *name) {
    if (name && strcmp(name, "reference") == 0) return PC_BN_REFERENCE;
    if (name && strcmp(name, "trained") == 0) return PC_BN_TRAINED;
    return -1;
}

void pc_backbone_options_init(pc_backbone_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->bn_stats = PC_BN_REFERENCE;
    opt->warmup_size = 224;
}

/* Our kernels or oneDNN's, by measurement (docs/backbone.md, "Which convolutions"; the switch
 * $PATCHCORE_CONV=builtin|onednn overrides it; bf16 has only the oneDNN path). Where oneDNN runs
 * AVX-512 its brgemm kernels beat ours on every architecture measured (ResNet-18, WRN-50-2: 0.6x
 * our time); capped at AVX2 (the Zen 3 machines) its jit:avx2 kernels lose to our Winograd +
 * OpenBLAS Haswell by 5-10%, so the builtin path stays the default there. */
static pc_conv_path default_conv_path(const pc_backbone *bb) {
    (void)bb;
    const unsigned avx512 = (unsigned)dnnl_cpu_isa_avx512_core;
    return pc_dnnl_engine() && ((unsigned)pc_dnnl_isa() & avx512) == avx512 ? PC_CONV_ONEDNN : PC_CONV_BUILTIN;
}

static pc_status choose_conv_path(pc_backbone *bb, const char *fn) {
    const char *env = getenv("PATCHCORE_CONV");
    if (env && *env && strcmp(env, "builtin") != 0 && strcmp(env, "onednn") != 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: $PATCHCORE_CONV is '%s'; it may be 'builtin' or 'onednn'", fn,
                       env);
    if (bb->precision == PC_PRECISION_BF16) {
        if (env && !strcmp(env, "builtin"))
            return pc_fail(PC_ERR_UNSUPPORTED, "%s: precision bf16 runs on oneDNN only, and $PATCHCORE_CONV=builtin",
                           fn);
        bb->conv_path = PC_CONV_ONEDNN;
    } else if (env && *env) {
        bb->conv_path = strcmp(env, "onednn") ? PC_CONV_BUILTIN : PC_CONV_ONEDNN;
    } else {
        bb->conv_path = -1; /* decided once the architecture is known (build_from_dict) */
    }
    if (bb->conv_path == PC_CONV_ONEDNN && !pc_dnnl_engine())
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: oneDNN could not create a CPU engine", fn);
    return PC_OK;
}

/* Options checked and copied into bb (NULL: the defaults). */
static pc_status apply_options(pc_backbone *bb, const pc_backbone_options *opt, const char *fn) {
    pc_backbone_options d;
    pc_backbone_options_init(&d);
    if (!opt) opt = &d;
    if (opt->bn_stats != PC_BN_REFERENCE && opt->bn_stats != PC_BN_TRAINED)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: unknown batch-norm statistics %d", fn, (int)opt->bn_stats);
    if (opt->bn_stats == PC_BN_REFERENCE && (opt->warmup_size < 1 || opt->warmup_size > 65536))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: warm-up size %d is not in 1..65536", fn, (int)opt->warmup_size);
    if (opt->precision != PC_PRECISION_F32 && opt->precision != PC_PRECISION_BF16)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: unknown precision %d", fn, (int)opt->precision);
    char why[256];
    if (!pc_precision_supported(opt->precision, why, sizeof why))
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: precision %s is not available on this CPU: %s", fn,
                       pc_precision_name(opt->precision), why);
    bb->bn_stats = opt->bn_stats;
    bb->warmup_size = opt->warmup_size;
    bb->precision = opt->precision;
    return choose_conv_path(bb, fn);
}

pc_status pc_backbone_load(const char *path, pc_arch arch, uint32_t layer_mask, pc_backbone **out) {
    return pc_backbone_load_with(path, arch, layer_mask, NULL, out);
}

pc_status pc_backbone_load_with(const char *path, pc_arch arch, uint32_t layer_mask, const pc_backbone_options *opt,
                                pc_backbone **out) {
    pc_threads_apply();
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: out is NULL");
    *out = NULL;
    if (layer_mask == 0 || (layer_mask & ~0xFu))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: layer mask 0x%x must name some of layer1..layer4",
                       (unsigned)layer_mask);
    const arch_spec *a = NULL;
    if (arch != PC_ARCH_UNKNOWN && !(a = spec_of(arch)))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load: unknown architecture %d", (int)arch);
    pc_backbone *bb = pc_calloc(1, sizeof *bb);
    if (!bb) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    bb->max_layer = max_layer_of(layer_mask);
    pc_status st = apply_options(bb, opt, "pc_backbone_load");
    if (st) {
        pc_free(bb);
        return st;
    }
    if (path) {
        snprintf(bb->path, sizeof bb->path, "%s", path);
    } else if ((st = find_default(a ? a : spec_of(PC_ARCH_WIDE_RESNET50_2), bb->path, sizeof bb->path)) != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    evidence E = {.max_layer = bb->max_layer};
    pc_tensor_dict *d = NULL;
    st = pc_weights_load(bb->path, load_filter, &E, &d);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    st = build_from_dict(bb, d, &E, a);
    pc_tensor_dict_free(d);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    *out = bb;
    return PC_OK;
}

/* Infer (when a is NULL), build and validate bb from the tensors of d; E is what the load filter saw. */
static pc_status build_from_dict(pc_backbone *bb, const pc_tensor_dict *d, const evidence *E, const arch_spec *a) {
    pc_status st;
    if (!a && (st = infer_arch(d, E, bb->path, &a)) != PC_OK) return st;
    bb->spec = a;
    if ((int)bb->conv_path < 0) bb->conv_path = default_conv_path(bb);
    problems P = {0};
    loadctx L = {.dict = d, .used = pc_calloc(d->count ? d->count : 1, 1), .prob = &P};
    if (!L.used) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    check_blocks(a, E, bb->max_layer, &P);
    st = build(bb, &L);
    if (st == PC_OK) {
        for (size_t i = 0; i < d->count; i++)
            if (!L.used[i]) {
                P.unexpected++;
                problem(&P, "unexpected %s", d->tensors[i].name);
            }
        st = report(&P, bb->path, a, bb->max_layer);
    }
    if (st == PC_OK) st = finalise(bb);
    pc_free(L.used);
    return st;
}

pc_status pc_backbone_load_dict(const pc_tensor_dict *dict, const char *name, pc_arch arch, uint32_t layer_mask,
                                const pc_backbone_options *opt, pc_backbone **out) {
    pc_clear_error();
    if (!out || !dict) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: NULL argument");
    *out = NULL;
    if (layer_mask == 0 || (layer_mask & ~0xFu))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: bad layer mask 0x%x", (unsigned)layer_mask);
    const arch_spec *a = NULL;
    if (arch != PC_ARCH_UNKNOWN && !(a = spec_of(arch)))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_load_dict: unknown architecture %d", (int)arch);
    pc_backbone *bb = pc_calloc(1, sizeof *bb);
    pc_tensor_dict sub = {0};
    sub.tensors = pc_calloc(dict->count ? dict->count : 1, sizeof(pc_tensor));
    if (!bb || !sub.tensors) {
        pc_free(bb), pc_free(sub.tensors);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    bb->max_layer = max_layer_of(layer_mask);
    snprintf(bb->path, sizeof bb->path, "%s", name ? name : "<tensors>");
    pc_status st = apply_options(bb, opt, "pc_backbone_load_dict");
    if (st) {
        pc_free(bb), pc_free(sub.tensors);
        return st;
    }
    /* what the file path would have seen: every name goes through the filter, kept ones are used */
    evidence E = {.max_layer = bb->max_layer};
    for (size_t i = 0; i < dict->count; i++)
        if (load_filter(dict->tensors[i].name, &E)) sub.tensors[sub.count++] = dict->tensors[i];
    st = build_from_dict(bb, &sub, &E, a);
    pc_free(sub.tensors);
    if (st != PC_OK) {
        pc_backbone_free(bb);
        return st;
    }
    *out = bb;
    return PC_OK;
}

pc_status pc_weights_inspect(const char *path, pc_weights_info *out) {
    pc_clear_error();
    if (!out || !path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_weights_inspect: NULL argument");
    memset(out, 0, sizeof *out);
    evidence E = {.max_layer = 4, .load_all = 1};
    pc_tensor_dict *d = NULL;
    pc_status st = pc_weights_load(path, load_filter, &E, &d);
    if (st != PC_OK) return st;
    out->tensor_count = (int64_t)d->count;
    for (size_t i = 0; i < d->count; i++)
        if (d->tensors[i].data) out->param_count += d->tensors[i].numel;
    snprintf(out->format, sizeof out->format, "%s", d->format);
    const arch_spec *a = NULL;
    if (infer_arch(d, &E, path, &a) != PC_OK) { /* not an error here; pc_last_error says why */
        pc_tensor_dict_free(d);
        return PC_OK;
    }
    out->arch = a->arch;
    /* A layer is available when it and everything before it builds without a problem. */
    for (int l = 1; l <= 4; l++) {
        pc_backbone tmp;
        memset(&tmp, 0, sizeof tmp);
        tmp.spec = a;
        tmp.max_layer = l;
        problems P = {0};
        loadctx L = {.dict = d, .used = pc_calloc(d->count ? d->count : 1, 1), .prob = &P};
        if (!L.used) {
            pc_tensor_dict_free(d);
            return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        }
        check_blocks(a, &E, l, &P);
        st = build(&tmp, &L);
        pc_free(L.used);
        backbone_release(&tmp);
        if (st != PC_OK) {
            pc_tensor_dict_free(d);
            return st;
        }
        if (P.missing || P.mismatched || P.unexpected) break;
        out->layer_mask |= PC_LAYER(l);
    }
    pc_tensor_dict_free(d);
    pc_clear_error();
    return PC_OK;
}

pc_arch pc_backbone_arch(const pc_backbone *bb) { return bb ? bb->spec->arch : PC_ARCH_UNKNOWN; }
pc_bn_stats pc_backbone_bn_stats(const pc_backbone *bb) { return bb ? bb->bn_stats : PC_BN_TRAINED; }
pc_precision pc_backbone_precision(const pc_backbone *bb) { return bb ? bb->precision : PC_PRECISION_F32; }
pc_conv_path pc_backbone_conv_path(const pc_backbone *bb) { return bb ? bb->conv_path : PC_CONV_BUILTIN; }
const char *pc_conv_path_name(pc_conv_path p) { return p == PC_CONV_ONEDNN ? "onednn" : "builtin"; }

pc_status pc_backbone_describe_kernels(pc_backbone *bb, int32_t n, int32_t h, int32_t w, char *buf, size_t size) {
    if (size) buf[0] = '\0';
    if (!bb || bb->conv_path != PC_CONV_ONEDNN) return PC_OK;
    pc_status st = pc_backbone_reserve(bb, n, h, w);
    if (st == PC_OK) pc_dnn_plan_describe(bb->plans[0], buf, size);
    return st;
}
int32_t pc_backbone_max_layer(const pc_backbone *bb) { return bb ? bb->max_layer : 0; }
const char *pc_backbone_errmsg(const pc_backbone *bb) { return bb ? bb->errmsg : ""; }
const char *pc_backbone_path(const pc_backbone *bb) { return bb ? bb->path : ""; }

int32_t pc_backbone_channels(const pc_backbone *bb, int32_t layer) {
    if (!bb || layer < 1 || layer > bb->max_layer) return 0;
    return stage_out(bb->spec, layer - 1);
}

/* ---------------------------------------------------------------------------------------------
 * Forward, and the plan of its workspace (the same walk, without computing)
 * ------------------------------------------------------------------------------------------- */

static pc_conv_geom geom(const conv *c, int32_t n, int32_t h, int32_t w) {
    return (pc_conv_geom){.n = n, .cin = c->cin, .h = h, .w = w, .cout = c->cout, .kh = c->k, .kw = c->k,
                          .stride = c->stride, .pad = c->pad, .groups = c->groups};
}

typedef struct walk {
    int32_t n, h, w;         /* current activation's batch and size */
    size_t act_max, col_max; /* plan: the largest activation (floats) and im2col matrix seen */
} walk;

/* Account for (plan) or run (exec) convolution c on the current size; updates h, w. */
static void step_conv(pc_backbone *bb, walk *W, const conv *c, float *out, const float *in, const float *res,
                      int relu, int exec) {
    pc_conv_geom g = geom(c, W->n, W->h, W->w);
    int32_t oh = pc_conv_out_dim(W->h, c->k, c->stride, c->pad), ow = pc_conv_out_dim(W->w, c->k, c->stride, c->pad);
    if (exec) {
        if (c->wino)
            pc_conv2d_winograd(out, bb->ws + 5 * bb->act_cap, in, c->wino, c->bias, res, relu, &g);
        else
            pc_conv2d(out, bb->ws + 5 * bb->act_cap, in, c->weight, c->bias, res, relu, &g);
    } else {
        W->col_max = PC_MAX(W->col_max, c->wino ? pc_winograd_workspace(&g) : pc_conv2d_workspace(&g));
        W->act_max = PC_MAX(W->act_max, (size_t)W->n * (size_t)c->cout * (size_t)oh * (size_t)ow);
    }
}

/* Shapes only (exec = 0) or the real thing. Buffers: X current, Y next, T1/T2 inside a block,
 * D downsampled identity. Returns non-zero if a size collapses below 1 (input too small). */
static int run(pc_backbone *bb, walk *W, const float *in, uint32_t layer_mask, float *const outs[4], int exec) {
    float *X = NULL, *Y = NULL, *T1 = NULL, *T2 = NULL, *D = NULL;
    if (exec) {
        X = bb->ws, Y = X + bb->act_cap, T1 = Y + bb->act_cap, T2 = T1 + bb->act_cap, D = T2 + bb->act_cap;
    }
    if (W->h < 1 || W->w < 1) return 1;
    /* stem: conv 7x7/2 + ReLU into T1, max-pool into X */
    step_conv(bb, W, &bb->stem, T1, in, NULL, 1, exec);
    W->h = pc_conv_out_dim(W->h, 7, 2, 3), W->w = pc_conv_out_dim(W->w, 7, 2, 3);
    if (W->h < 1 || W->w < 1) return 1;
    int32_t c = 64;
    if (exec) pc_maxpool3x3s2(X, T1, W->n, c, W->h, W->w);
    W->h = pc_conv_out_dim(W->h, 3, 2, 1), W->w = pc_conv_out_dim(W->w, 3, 2, 1);
    if (!exec) W->act_max = PC_MAX(W->act_max, (size_t)W->n * 64 * (size_t)W->h * (size_t)W->w);
    for (int s = 0; s < bb->max_layer; s++) {
        for (int b = 0; b < bb->nblocks[s]; b++) {
            const block *B = &bb->blocks[s][b];
            const int32_t h0 = W->h, w0 = W->w;
            const int32_t h1 = pc_conv_out_dim(h0, 3, B->c1.stride == 2 || B->c2.stride == 2 ? 2 : 1, 1);
            const int32_t w1 = pc_conv_out_dim(w0, 3, B->c1.stride == 2 || B->c2.stride == 2 ? 2 : 1, 1);
            if (h1 < 1 || w1 < 1) return 1;
            const float *identity = X;
            if (B->has_ds) {
                step_conv(bb, W, &B->ds, D, X, NULL, 0, exec);
                identity = D;
            }
            step_conv(bb, W, &B->c1, T1, X, NULL, 1, exec);
            if (bb->spec->bottleneck) {
                /* Bottleneck: 1x1 (size kept), 3x3 with the stride, 1x1 + identity */
                W->h = h0, W->w = w0;
                step_conv(bb, W, &B->c2, T2, T1, NULL, 1, exec);
                W->h = h1, W->w = w1;
                step_conv(bb, W, &B->c3, Y, T2, identity, 1, exec);
            } else {
                /* Basic: 3x3 with the stride, 3x3 + identity */
                W->h = h1, W->w = w1;
                step_conv(bb, W, &B->c2, Y, T1, identity, 1, exec);
            }
            W->h = h1, W->w = w1;
            float *t = X;
            X = Y, Y = t;
        }
        c = stage_out(bb->spec, s);
        if (exec && (layer_mask & PC_LAYER(s + 1)) && outs[s])
            memcpy(outs[s], X, sizeof(float) * (size_t)W->n * (size_t)c * (size_t)W->h * (size_t)W->w);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The reference's batch-norm warm-up (METHOD.md §2)
 *
 * Before extracting any feature, the reference runs the network once on torch.ones(1, 3, S, S) while
 * it is still in training mode, up to the deepest requested layer. Every batch-norm on the way
 * normalises with the statistics of its own input and moves its running statistics by momentum 0.1
 * (the variance unbiased); features are then computed in eval mode with the moved statistics. We run
 * that pass here with the file's weights, unfolded, then fold the moved statistics into the convs.
 * ------------------------------------------------------------------------------------------- */

#define BN_MOMENTUM 0.1

/* Training-mode batch-norm of one image's conv output z (cout, hw) in place, then the block's
 * residual and ReLU, and the running-statistics update into c->stats (means, then variances):
 * mean and biased variance (two passes) over the hw positions normalise; the unbiased one moves. */
static void bn_train(const conv *c, double *z, const double *res, int relu, size_t hw) {
    const int32_t cout = c->cout;
    for (int32_t o = 0; o < cout; o++) {
        double *zo = z + (size_t)o * hw, sum = 0.0, ss = 0.0;
        for (size_t i = 0; i < hw; i++) sum += zo[i];
        const double mean = sum / (double)hw;
        for (size_t i = 0; i < hw; i++) ss += (zo[i] - mean) * (zo[i] - mean);
        const double var = ss / (double)hw, inv = 1.0 / sqrt(var + BN_EPS);
        const double *ro = res ? res + (size_t)o * hw : NULL;
        for (size_t i = 0; i < hw; i++) {
            double y = (zo[i] - mean) * inv * (double)c->bn_g[o] + (double)c->bn_b[o];
            if (ro) y += ro[i];
            zo[i] = relu && !(y > 0.0) ? 0.0 : y;
        }
        c->stats[o] = (float)((1.0 - BN_MOMENTUM) * (double)c->bn_mean[o] + BN_MOMENTUM * mean);
        c->stats[cout + o] =
            (float)((1.0 - BN_MOMENTUM) * (double)c->bn_var[o] + BN_MOMENTUM * var * (double)hw / (double)(hw - 1));
    }
}

/* One training-mode convolution + batch-norm (+ residual, ReLU) of in (cin, *h, *w) into a new
 * buffer *out (cout, oh, ow); *h, *w become oh, ow. NULL *out when out of memory. */
static void warm_conv(const conv *c, const double *in, int32_t *h, int32_t *w, const double *res, int relu,
                      double **out) {
    const pc_conv_geom g = geom(c, 1, *h, *w);
    const int32_t oh = pc_conv_out_dim(*h, c->k, c->stride, c->pad), ow = pc_conv_out_dim(*w, c->k, c->stride, c->pad);
    const size_t nw = (size_t)c->cout * (size_t)(c->cin / c->groups) * (size_t)c->k * (size_t)c->k;
    double *y = pc_malloc((size_t)c->cout * (size_t)oh * (size_t)ow * sizeof(double));
    double *wd = pc_malloc(nw * sizeof(double));
    const size_t ncol = pc_conv2d_f64_workspace(&g);
    double *col = ncol ? pc_malloc(ncol * sizeof(double)) : NULL;
    if (y && wd && (col || !ncol)) {
        for (size_t i = 0; i < nw; i++) wd[i] = c->raw_w[i];
        pc_conv2d_f64(y, col, in, wd, &g);
        bn_train(c, y, res, relu, (size_t)oh * (size_t)ow);
    } else {
        pc_free(y);
        y = NULL;
    }
    pc_free(wd), pc_free(col);
    *out = y, *h = oh, *w = ow;
}

/* The warm-up pass on ones(1, 3, S, S), in float64, up to max_layer: fills every conv's stats. float64
 * because the pass takes the statistics of nearly constant activations (a constant image, zero
 * padding), where float32 accumulation in the convolutions loses digits that the normalisation then
 * magnifies; float64 keeps our statistics as close to exact as torch's float32 pass is. */
static pc_status warmup(pc_backbone *bb, conv **list, int n) {
    const int32_t S = bb->warmup_size;
    for (int i = 0; i < n; i++) {
        list[i]->stats = pc_malloc(2 * (size_t)list[i]->cout * sizeof(float));
        if (!list[i]->stats) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the batch-norm warm-up");
    }
    /* torch requires more than one value per channel in training mode, so does the variance update */
    int32_t oh = 0, ow = 0;
    if (pc_backbone_out_size(bb, bb->max_layer, S, S, &oh, &ow) != PC_OK || (int64_t)oh * ow < 2)
        return pc_fail(PC_ERR_SHAPE, "%s: the batch-norm warm-up at crop size %d leaves layer%d with %dx%d positions; "
                       "training-mode batch-norm needs more than one value per channel (use a larger crop, or "
                       "--bn trained)", bb->path, (int)S, (int)bb->max_layer, (int)oh, (int)ow);
    int32_t h = S, w = S;
    double *x = pc_malloc(3 * (size_t)S * (size_t)S * sizeof(double)), *y = NULL;
    if (!x) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the batch-norm warm-up");
    for (size_t i = 0; i < 3 * (size_t)S * (size_t)S; i++) x[i] = 1.0;
    warm_conv(&bb->stem, x, &h, &w, NULL, 1, &y);
    pc_free(x);
    x = NULL;
    if (y) {
        const int32_t ph = pc_conv_out_dim(h, 3, 2, 1), pw = pc_conv_out_dim(w, 3, 2, 1);
        x = pc_malloc((size_t)64 * (size_t)ph * (size_t)pw * sizeof(double));
        if (x) pc_maxpool3x3s2_f64(x, y, 64, h, w);
        h = ph, w = pw;
        pc_free(y);
    }
    for (int s = 0; s < bb->max_layer && x; s++)
        for (int b = 0; b < bb->nblocks[s] && x; b++) {
            const block *B = &bb->blocks[s][b];
            double *d = NULL, *t1 = NULL, *t2 = NULL, *out = NULL;
            int32_t dh = h, dw = w, h1 = h, w1 = w;
            if (B->has_ds) warm_conv(&B->ds, x, &dh, &dw, NULL, 0, &d);
            const double *identity = B->has_ds ? d : x;
            if (identity) warm_conv(&B->c1, x, &h1, &w1, NULL, 1, &t1);
            if (t1 && bb->spec->bottleneck) {
                warm_conv(&B->c2, t1, &h1, &w1, NULL, 1, &t2);
                if (t2) warm_conv(&B->c3, t2, &h1, &w1, identity, 1, &out);
            } else if (t1) {
                warm_conv(&B->c2, t1, &h1, &w1, identity, 1, &out);
            }
            pc_free(d), pc_free(t1), pc_free(t2), pc_free(x);
            x = out, h = h1, w = w1;
        }
    if (!x) return pc_fail(PC_ERR_NO_MEMORY, "out of memory for the batch-norm warm-up");
    pc_free(x);
    return PC_OK;
}

/* Every convolution of the built part of the network (at most 1 + 4 per block). */
static int all_convs(pc_backbone *bb, conv **list, int cap) {
    int n = 0;
    if (n < cap) list[n++] = &bb->stem;
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < bb->nblocks[s] && bb->blocks[s]; b++) {
            block *B = &bb->blocks[s][b];
            conv *cs[4] = {&B->c1, &B->c2, bb->spec->bottleneck ? &B->c3 : NULL, B->has_ds ? &B->ds : NULL};
            for (int i = 0; i < 4; i++)
                if (cs[i] && n < cap) list[n++] = cs[i];
        }
    return n;
}

/* The network for oneDNN (backbone_onednn.h): the convolutions in list's order and the operations
 * of the forward pass of run() below, as values: stem conv, max-pool, then per block the downsample,
 * the convolutions and the last one's residual sum + ReLU; the last block of stage s is layer s+1. */
static pc_status dnn_describe(pc_backbone *bb, conv **list, int n) {
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
    (ops[nops] = (pc_dnn_op){kind_, conv_, src_, res_, relu_, 0}, ++nops)
    int ci = 0;
    OP(PC_DNN_CONV, ci++, 0, 0, 1);
    int x = OP(PC_DNN_MAXPOOL, 0, 1, 0, 0);
    for (int s = 0; s < bb->max_layer; s++) {
        for (int b = 0; b < bb->nblocks[s]; b++) {
            const block *B = &bb->blocks[s][b];
            /* list order (all_convs): c1, c2, c3 (Bottleneck), ds */
            const int i1 = ci, i2 = ci + 1, i3 = bb->spec->bottleneck ? ci + 2 : -1;
            const int ids = B->has_ds ? ci + (bb->spec->bottleneck ? 3 : 2) : -1;
            ci += 2 + (bb->spec->bottleneck ? 1 : 0) + (B->has_ds ? 1 : 0);
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
    const int n = all_convs(bb, list, (int)(sizeof list / sizeof list[0]));
    pc_status st = bb->bn_stats == PC_BN_REFERENCE ? warmup(bb, list, n) : PC_OK;
    for (int i = 0; i < n && st == PC_OK; i++) {
        conv *c = list[i];
        const int wino = bb->conv_path == PC_CONV_BUILTIN;
        st = c->stats ? fold(c, c->stats, c->stats + c->cout, wino) : fold(c, c->bn_mean, c->bn_var, wino);
    }
    for (int i = 0; i < n; i++) {
        pc_free(list[i]->stats);
        list[i]->stats = NULL;
        list[i]->raw_w = list[i]->bn_g = list[i]->bn_b = list[i]->bn_mean = list[i]->bn_var = NULL;
    }
    if (st == PC_OK && bb->conv_path == PC_CONV_ONEDNN) st = dnn_describe(bb, list, n);
    return st;
}

pc_status pc_backbone_out_size(const pc_backbone *bb, int32_t layer, int32_t in_h, int32_t in_w, int32_t *out_h,
                               int32_t *out_w) {
    if (!bb || !out_h || !out_w || layer < 1 || layer > bb->max_layer)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_out_size: bad argument (layer %d of 1..%d)", (int)layer,
                       bb ? (int)bb->max_layer : 0);
    int32_t h = in_h, w = in_w;
    h = pc_conv_out_dim(h, 7, 2, 3), w = pc_conv_out_dim(w, 7, 2, 3);
    h = pc_conv_out_dim(h, 3, 2, 1), w = pc_conv_out_dim(w, 3, 2, 1);
    for (int s = 1; s < layer; s++) h = pc_conv_out_dim(h, 3, 2, 1), w = pc_conv_out_dim(w, 3, 2, 1);
    if (in_h < 1 || in_w < 1 || h < 1 || w < 1)
        return pc_fail(PC_ERR_SHAPE, "input %dx%d is too small for layer%d", (int)in_h, (int)in_w, (int)layer);
    *out_h = h, *out_w = w;
    return PC_OK;
}

/* The oneDNN plan for (n, h, w) at the calling thread's thread count: the cached one, or a new one
 * (which replaces the older of the two cached). */
static pc_status get_plan(pc_backbone *bb, int32_t n, int32_t h, int32_t w, pc_dnn_plan **out) {
    if (!pc_dnn_plan_fits(bb->plans[0], n, h, w) && pc_dnn_plan_fits(bb->plans[1], n, h, w)) {
        pc_dnn_plan *t = bb->plans[0];
        bb->plans[0] = bb->plans[1], bb->plans[1] = t;
    }
    if (!pc_dnn_plan_fits(bb->plans[0], n, h, w)) {
        pc_dnn_plan *p = NULL;
        pc_status st = pc_dnn_plan_create(bb->dnet, n, h, w, &p);
        if (st != PC_OK) return st;
        pc_dnn_plan_free(bb->plans[1]);
        bb->plans[1] = bb->plans[0], bb->plans[0] = p;
    }
    *out = bb->plans[0];
    return PC_OK;
}

pc_status pc_backbone_reserve(pc_backbone *bb, int32_t n, int32_t h, int32_t w) {
    pc_threads_apply();
    pc_clear_error();
    if (!bb || n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_reserve: bad size %d x %d x %d", (int)n, (int)h, (int)w);
    walk W = {.n = n, .h = h, .w = w};
    if (run(bb, &W, NULL, 0, NULL, 0))
        return pc_fail(PC_ERR_SHAPE, "input %dx%d is too small for %s up to layer%d", (int)h, (int)w, bb->spec->name,
                       (int)bb->max_layer);
    if (bb->conv_path == PC_CONV_ONEDNN) {
        pc_dnn_plan *p;
        return get_plan(bb, n, h, w, &p);
    }
    if (W.act_max <= bb->act_cap && W.col_max <= bb->col_cap) return PC_OK;
    size_t act = PC_MAX(W.act_max, bb->act_cap), col = PC_MAX(W.col_max, bb->col_cap), total;
    if (!pc_mul_size(act, 5, &total) || !pc_add_size(total, col, &total) || !pc_mul_size(total, sizeof(float), &total))
        return pc_fail(PC_ERR_TOO_LARGE, "workspace for %d x %d x %d overflows", (int)n, (int)h, (int)w);
    float *ws = pc_malloc(total);
    if (!ws)
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate a %.1f MB workspace for %d images of %dx%d",
                       (double)total / 1e6, (int)n, (int)h, (int)w);
    pc_free(bb->ws);
    bb->ws = ws, bb->act_cap = act, bb->col_cap = col;
    return PC_OK;
}

static size_t conv_bytes(const conv *c) {
    size_t n = (size_t)c->cout; /* bias */
    if (c->wino) n += (size_t)16 * c->cout * c->cin;
    else if (c->weight) n += (size_t)c->cout * (size_t)(c->cin / c->groups) * c->k * c->k;
    return n * sizeof(float);
}

size_t pc_backbone_weight_bytes(const pc_backbone *bb) {
    if (!bb || bb->is_view) return 0;
    size_t n = conv_bytes(&bb->stem) + pc_dnn_net_weight_bytes(bb->dnet);
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < bb->nblocks[s] && bb->blocks[s]; b++) {
            const block *B = &bb->blocks[s][b];
            n += conv_bytes(&B->c1) + conv_bytes(&B->c2) + conv_bytes(&B->c3) + (B->has_ds ? conv_bytes(&B->ds) : 0);
        }
    return n;
}

size_t pc_backbone_workspace_bytes(const pc_backbone *bb) {
    if (!bb) return 0;
    return (bb->ws ? (5 * bb->act_cap + bb->col_cap) * sizeof(float) : 0) + pc_dnn_plan_bytes(bb->plans[0]) +
           pc_dnn_plan_bytes(bb->plans[1]);
}

void pc_backbone_release_workspace(pc_backbone *bb) {
    if (!bb) return;
    release_plans(bb);
    pc_free(bb->ws);
    bb->ws = NULL;
    bb->act_cap = bb->col_cap = 0;
}

pc_status pc_backbone_forward(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w, uint32_t layer_mask,
                              float *const outs[4]) {
    pc_threads_apply();
    pc_clear_error();
    pc_status st = PC_OK;
    if (!bb) return pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: backbone is NULL");
    bb->errmsg[0] = '\0';
    if (!in || !outs || layer_mask == 0 || (layer_mask & ~0xFu)) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: NULL input/outputs or bad layer mask 0x%x",
                     (unsigned)layer_mask);
    } else if (max_layer_of(layer_mask) > bb->max_layer) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: layer%d requested but the backbone was loaded "
                     "up to layer%d", max_layer_of(layer_mask), (int)bb->max_layer);
    } else {
        for (int l = 1; l <= 4 && !st; l++)
            if ((layer_mask & PC_LAYER(l)) && !outs[l - 1])
                st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: outs[%d] (layer%d) is NULL", l - 1, l);
        if (!st && bb->conv_path == PC_CONV_BUILTIN) st = pc_backbone_reserve(bb, n, h, w);
        else if (!st && (n < 1 || h < 1 || w < 1 || n > 65536 || h > 65536 || w > 65536))
            st = pc_fail(PC_ERR_INVALID_ARGUMENT, "pc_backbone_forward: bad size %d x %d x %d", (int)n, (int)h, (int)w);
        else if (!st) {
            int32_t oh, ow;
            st = pc_backbone_out_size(bb, bb->max_layer, h, w, &oh, &ow);
        }
    }
    if (!st && bb->conv_path == PC_CONV_ONEDNN) {
        pc_dnn_plan *p = NULL;
        st = get_plan(bb, n, h, w, &p);
        if (!st) st = pc_dnn_plan_forward(p, in, layer_mask, outs);
    } else if (!st) {
        walk W = {.n = n, .h = h, .w = w};
        run(bb, &W, in, layer_mask, outs, 1);
    }
    if (st) pc_copy_error(bb->errmsg);
    return st;
}
