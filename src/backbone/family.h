/*
 * family.h - what a backbone family (ResNet, DenseNet, ...) gives backbone.c, and what they share.
 *
 * backbone.c owns the public pc_backbone_* API: options, the choice of convolution path, the default
 * weights lookup, reading the file through one load filter, views, the workspace and dispatch. A
 * family owns its architectures (a table of pc_bb_arch, each the first member of the family's own
 * description), the names of its tensors, its network (bb->net), the batch-norm warm-up, folding, the
 * builtin forward pass and its description for oneDNN. A new family is one new file defining a
 * pc_bb_family, listed in backbone.c's FAMILIES.
 *
 * units.c holds the layers families share: a convolution with its batch-norm folded in, a lone
 * batch-norm + ReLU, their float64 training-mode twins for the warm-up, and the collection of
 * problems found while loading.
 */
#ifndef PC_BACKBONE_FAMILY_H
#define PC_BACKBONE_FAMILY_H

#include "internal.h"
#include "weights.h"
#include "backbone_internal.h"
#include "onednn_net.h"

#define PC_BN_EPS 1e-5
#define PC_BN_MOMENTUM 0.1
#define PC_BB_FAMILY_SLOTS 4 /* families that can record evidence (pc_bb_evidence.seen) */
#define PC_BB_WS_PARTS 8     /* buffers a family may carve its workspace into */

typedef struct pc_bb_family pc_bb_family;

/* One architecture. A family's table holds its own struct with this as the first member. */
typedef struct pc_bb_arch {
    pc_arch arch;
    const char *name;            /* torchvision's */
    const pc_bb_family *family;
    const char *files[3];        /* torch hub cache file names, preferred first */
    const char *hf_repo;         /* Hugging Face hub cache folder ("models--timm--densenet201.tv_in1k"), or NULL */
} pc_bb_arch;

/* What the load filter saw of every tensor name in the file (loaded or not). */
typedef struct pc_bb_evidence {
    int32_t max_layer;                    /* load what layer1..max_layer need only */
    int32_t load_all;                     /* pc_weights_inspect: load every tensor */
    int64_t names;                        /* tensors seen */
    int32_t seen[PC_BB_FAMILY_SLOTS][8];  /* per family (its slot), what it wants to count */
} pc_bb_evidence;

/* Problems found while taking tensors; reported together. */
typedef struct pc_bb_problems {
    char text[PC_ERRMSG_MAX - 200];
    size_t len;
    int missing, mismatched, unexpected, dropped;
} pc_bb_problems;

typedef struct pc_bb_loadctx {
    const pc_tensor_dict *dict;
    unsigned char *used; /* one flag per tensor of dict */
    pc_bb_problems *prob;
} pc_bb_loadctx;

void pc_bb_problem(pc_bb_problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The tensor `name`, marked used, or NULL (nothing recorded). */
const pc_tensor *pc_bb_find(pc_bb_loadctx *L, const char *name);
/* The float tensor t (found under `name`, NULL: missing) if it has exactly this shape; else records the
 * problem under `name` and returns NULL. */
const float *pc_bb_check(pc_bb_loadctx *L, const pc_tensor *t, const char *name, int ndim, const int64_t *shape);

/* A convolution and the batch-norm after it (none for bn_g == NULL after make), folded. */
typedef struct pc_bb_conv {
    int32_t cin, cout, k, stride, pad, groups;
    float *weight; /* (cout, cin/groups, k, k), batch-norm folded in */
    float *bias;   /* (cout) */
    float *wino;   /* (16, cout, cin) Winograd-transformed weight (builtin path); weight is then NULL */
    /* While the backbone is being built only: the file's tensors (pointers into the weights dict) and
     * the running statistics the warm-up computes (2 x cout, owned), folded into weight/bias at the end. */
    const float *raw_w, *bn_g, *bn_b, *bn_mean, *bn_var;
    float *stats;
} pc_bb_conv;

/* A batch-norm on its own (y = x * scale + shift per channel), then ReLU: DenseNet's pre-activations. */
typedef struct pc_bb_bn {
    int32_t c;
    float *scale, *shift; /* (c) each, one allocation at scale */
    const float *g, *b, *mean, *var; /* while building */
    float *stats;
} pc_bb_bn;

/* Describe conv c; take "<wname>.weight" and, when bnname is not NULL, the batch-norm
 * "<bnname>.{weight,bias,running_mean,running_var}" through lookup (which maps a torchvision name to
 * the tensor, trying the family's other spellings; NULL: plain pc_bb_find). */
typedef const pc_tensor *(*pc_bb_lookup)(pc_bb_loadctx *L, const char *name);
void pc_bb_conv_make(pc_bb_conv *c, pc_bb_loadctx *L, pc_bb_lookup lookup, const char *wname, const char *bnname,
                     int32_t cin, int32_t cout, int32_t k, int32_t stride, int32_t pad, int32_t groups);
void pc_bb_bn_make(pc_bb_bn *n, pc_bb_loadctx *L, pc_bb_lookup lookup, const char *bnname, int32_t c);
/* Fold the batch-norm with the settled statistics (the warm-up's in ->stats, else the file's) into the
 * weights (Winograd-transformed when winograd and it applies); forget the file's tensors. */
pc_status pc_bb_conv_fold(pc_bb_conv *c, int winograd);
pc_status pc_bb_bn_fold(pc_bb_bn *n);
void pc_bb_conv_free(pc_bb_conv *c);
void pc_bb_bn_free(pc_bb_bn *n);
size_t pc_bb_conv_bytes(const pc_bb_conv *c);
int pc_bb_winograd(const pc_bb_conv *c);

/* The builtin path: plan (exec 0: raise *col_max to the scratch it needs) or run conv c on n images of
 * h x w: out = act(conv(in) + bias + res). */
void pc_bb_conv_step(const pc_bb_conv *c, int exec, float *out, float *col, const float *in, const float *res,
                     int relu, int32_t n, int32_t h, int32_t w, size_t *col_max);

/* The warm-up (METHOD.md §2), float64, one image. pc_bb_conv_train: conv c of in (cin, *h, *w) into a
 * new buffer *out (cout, oh, ow), its batch-norm in training mode (when it has one), residual res, ReLU;
 * running statistics into c->stats (allocated here). *h, *w become oh, ow; *out NULL when out of memory.
 * pc_bb_bn_train: the same for a lone batch-norm over z (c, hw) in place. */
void pc_bb_conv_train(pc_bb_conv *c, const double *in, int32_t *h, int32_t *w, const double *res, int relu,
                      double **out);
int pc_bb_bn_train(pc_bb_bn *n, double *z, size_t hw, int relu);

/* The backbone (opaque to the API). */
struct pc_backbone {
    const pc_bb_arch *spec;
    int32_t max_layer;
    void *net; /* the family's network (shared by views) */
    char path[4096];
    char errmsg[PC_ERRMSG_MAX];
    /* Builtin path workspace: one allocation carved into the family's parts of ws_cap[i] floats each,
     * grown (never shrunk) to the largest shapes reserved. */
    float *ws;
    size_t ws_cap[PC_BB_WS_PARTS];
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

/* Part i of the builtin workspace. */
float *pc_bb_ws(const pc_backbone *bb, int i);

struct pc_bb_family {
    const char *name; /* "ResNet", in messages */
    int slot;         /* its row of pc_bb_evidence.seen */
    int narchs;
    const pc_bb_arch *(*arch)(int i);
    /* Every tensor name of a file goes through here: 1 load it, 0 skip it (a part this load does not
     * need), -1 not a name of this family. Records what it sees in E->seen[slot]. */
    int (*filter)(const char *name, pc_bb_evidence *E);
    /* Non-zero when d looks like this family's state dict (for inference). */
    int (*recognise)(const pc_tensor_dict *d);
    /* The architecture d's shapes and E's counts show; messages name path. */
    pc_status (*infer)(const pc_tensor_dict *d, const pc_bb_evidence *E, const char *path, const pc_bb_arch **out);
    /* Describe bb->spec up to bb->max_layer into a new bb->net, taking (and checking) the tensors;
     * surplus blocks seen in E are problems. Returns an error only when out of memory. */
    pc_status (*build)(pc_backbone *bb, pc_bb_loadctx *L, const pc_bb_evidence *E);
    void (*release)(pc_backbone *bb);
    /* Settle the batch-norm statistics (warm-up when bb->bn_stats is PC_BN_REFERENCE), fold, and on
     * the oneDNN path describe the net into bb->dnet. */
    pc_status (*finalise)(pc_backbone *bb);
    /* Spatial size of layer's output for an input of *h x *w (in place); 0 when it collapses below 1. */
    int (*out_size)(const pc_bb_arch *a, int32_t layer, int32_t *h, int32_t *w);
    int32_t (*channels)(const pc_bb_arch *a, int32_t layer);
    /* Builtin path: the floats of each workspace part for n images of h x w (0 when too small). */
    int (*plan)(const pc_backbone *bb, int32_t n, int32_t h, int32_t w, size_t need[PC_BB_WS_PARTS]);
    void (*forward)(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w, uint32_t layer_mask,
                    float *const outs[4]);
    size_t (*weight_bytes)(const pc_backbone *bb);
    int has_onednn;       /* 0: the builtin path only */
    int onednn_below_avx512; /* oneDNN is the default also where it runs AVX2 only (measured: docs/backbone.md) */
};

extern const pc_bb_family pc_family_resnet, pc_family_densenet;

#endif /* PC_BACKBONE_FAMILY_H */
