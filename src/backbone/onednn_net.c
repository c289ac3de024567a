/*
 * onednn_net.c - the folded ResNet trunk as oneDNN primitives (see onednn_net.h and
 * docs/backbone.md, "oneDNN").
 *
 * A plan is made in three passes over the operations: (1) primitive descriptors with format_tag_any
 * for source, weights and destination, so oneDNN picks its own layouts (nChw16c on AVX-512, nChw8c
 * on AVX2, ...); a convolution whose source arrives in another layout gets a reorder in front of it,
 * and a convolution with a residual writes in place into the residual's memory (the sum post-op),
 * which therefore fixes its destination layout; (2) buffers: every value gets a slot, slots are
 * reused once their value is dead (liveness over the operation list) and sized for the largest value
 * they hold, the scratchpad is the largest any primitive asks for (user-managed scratchpad mode, so
 * nothing is allocated while running); (3) memory objects over those buffers, the primitives, and
 * the list of steps forward executes. Weights are reordered into the layout a descriptor asks for
 * once per net (under its lock) and shared by every plan that asks for the same layout.
 */
#include "onednn_net.h"
#include "onednn.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define BN_EPS 1e-5f

/* ---------------------------------------------------------------------------------------------
 * The net: description and reordered weights
 * ------------------------------------------------------------------------------------------- */

typedef struct wentry {
    dnnl_memory_desc_t md; /* the layout a convolution asked for */
    void *data;
    size_t bytes;
    struct wentry *next;
} wentry;

struct pc_dnn_net {
    pc_dnn_conv *convs;
    pc_dnn_op *ops;
    int nconv, nops, bf16;
    pthread_mutex_t lock; /* guards w and wbytes */
    wentry **w;           /* per convolution, every layout made so far */
    size_t wbytes;
    int per_image;        /* the net has buffers (PC_DNN_BUFFER): plans run one image at a time */
    int32_t *vch;         /* channels of each value (nops + 1) */
    float **bnp;          /* per PC_DNN_BNRELU operation: the batch-norm's scale, shift, mean 0, variance 1 */
};

pc_status pc_dnn_net_create(const pc_dnn_conv *convs, int nconv, const pc_dnn_op *ops, int nops, int bf16,
                            pc_dnn_net **out) {
    *out = NULL;
    if (!pc_dnnl_engine()) return pc_fail(PC_ERR_UNSUPPORTED, "oneDNN could not create a CPU engine");
    if (nconv < 1 || nops < 1) return pc_fail(PC_ERR_INTERNAL, "pc_dnn_net_create: empty network");
    int per_image = 0;
    for (int i = 0; i < nops; i++) {
        const pc_dnn_op *o = &ops[i];
        const int buffer_into = o->into > 0 && o->into <= i && ops[o->into - 1].kind == PC_DNN_BUFFER;
        if (o->src < 0 || o->src > i || o->res < 0 || o->res > i || o->tap < 0 || o->tap > 4 ||
            (o->kind == PC_DNN_CONV && (o->conv < 0 || o->conv >= nconv)) || o->kind < PC_DNN_CONV ||
            o->kind > PC_DNN_AVGPOOL || (o->into && (!buffer_into || o->off < 0 || o->res)) || o->src_ch < 0 ||
            (o->src_ch && o->src == 0) || (o->kind == PC_DNN_BUFFER && (o->ch < 1 || o->into || o->tap)) ||
            (o->kind == PC_DNN_BNRELU && (!o->scale || !o->shift)) ||
            (o->src > 0 && ops[o->src - 1].into)) /* slices are read through their buffer */
            return pc_fail(PC_ERR_INTERNAL, "pc_dnn_net_create: bad operation %d", i);
        per_image |= o->kind == PC_DNN_BUFFER;
    }
    pc_dnn_net *net = pc_calloc(1, sizeof *net);
    if (!net) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    net->convs = pc_malloc((size_t)nconv * sizeof *convs);
    net->ops = pc_malloc((size_t)nops * sizeof *ops);
    net->w = pc_calloc((size_t)nconv, sizeof *net->w);
    net->vch = pc_calloc((size_t)nops + 1, sizeof *net->vch);
    net->bnp = pc_calloc((size_t)nops, sizeof *net->bnp);
    net->nconv = nconv, net->nops = nops, net->bf16 = bf16 != 0, net->per_image = per_image;
    pthread_mutex_init(&net->lock, NULL);
    if (!net->convs || !net->ops || !net->w || !net->vch || !net->bnp) {
        pc_dnn_net_free(net);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    memcpy(net->convs, convs, (size_t)nconv * sizeof *convs);
    memcpy(net->ops, ops, (size_t)nops * sizeof *ops);
    /* channels of every value; the batch-norms' parameters as oneDNN's batch-norm takes them: it
     * computes (x - mean) / sqrt(var + eps) * gamma + beta, so mean 0, var 1 and gamma = scale *
     * sqrt(1 + eps) give x * scale + shift */
    net->vch[0] = 3;
    for (int i = 0; i < nops; i++) {
        const pc_dnn_op *o = &ops[i];
        const int32_t sc = o->src_ch ? o->src_ch : net->vch[o->src];
        net->vch[i + 1] = o->kind == PC_DNN_CONV ? convs[o->conv].cout : o->kind == PC_DNN_BUFFER ? o->ch : sc;
        if (o->kind != PC_DNN_BNRELU) continue;
        float *b = net->bnp[i] = pc_malloc(4 * (size_t)sc * sizeof(float));
        if (!b) {
            pc_dnn_net_free(net);
            return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        }
        for (int32_t c = 0; c < sc; c++) {
            b[c] = (float)((double)o->scale[c] * (double)sqrtf(1.0f + BN_EPS));
            b[sc + c] = o->shift[c];
            b[2 * sc + c] = 0.0f;
            b[3 * sc + c] = 1.0f;
        }
    }
    *out = net;
    return PC_OK;
}

void pc_dnn_net_free(pc_dnn_net *net) {
    if (!net) return;
    for (int i = 0; net->w && i < net->nconv; i++)
        for (wentry *e = net->w[i], *next; e; e = next) {
            next = e->next;
            pc_free(e->data);
            pc_free(e);
        }
    pthread_mutex_destroy(&net->lock);
    for (int i = 0; net->bnp && i < net->nops; i++) pc_free(net->bnp[i]);
    pc_free(net->bnp), pc_free(net->vch);
    pc_free(net->w), pc_free(net->convs), pc_free(net->ops), pc_free(net);
}

size_t pc_dnn_net_weight_bytes(pc_dnn_net *net) {
    if (!net) return 0;
    /* before the first plan: what one layout of every convolution will take (oneDNN pads blocked
     * layouts a little beyond it for channel counts that are not multiples of the block) */
    size_t nominal = 0;
    for (int i = 0; i < net->nconv; i++) {
        const pc_dnn_conv *c = &net->convs[i];
        nominal += (size_t)c->cout * (size_t)(c->cin / c->groups) * (size_t)c->k * (size_t)c->k *
                   (net->bf16 ? 2 : sizeof(float));
    }
    pthread_mutex_lock(&net->lock);
    size_t b = net->wbytes;
    pthread_mutex_unlock(&net->lock);
    return PC_MAX(b, nominal);
}

/* Run one reorder from src (md, data) to dst (md, data) now, on a stream of its own. */
static dnnl_status_t reorder_now(const dnnl_memory_desc_t *smd, void *sdata, const dnnl_memory_desc_t *dmd,
                                 void *ddata) {
    dnnl_engine_t eng = pc_dnnl_engine();
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_t prim = NULL;
    dnnl_memory_t sm = NULL, dm = NULL;
    dnnl_stream_t stream = NULL;
    dnnl_status_t s = dnnl_reorder_primitive_desc_create(&pd, smd, eng, dmd, eng, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&prim, pd);
    if (s == dnnl_success) s = dnnl_memory_create(&sm, smd, eng, sdata);
    if (s == dnnl_success) s = dnnl_memory_create(&dm, dmd, eng, ddata);
    if (s == dnnl_success) s = dnnl_stream_create(&stream, eng, dnnl_stream_default_flags);
    if (s == dnnl_success) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, sm}, {DNNL_ARG_TO, dm}};
        s = dnnl_primitive_execute(prim, stream, 2, args);
        if (s == dnnl_success) s = dnnl_stream_wait(stream);
    }
    if (stream) dnnl_stream_destroy(stream);
    if (sm) dnnl_memory_destroy(sm);
    if (dm) dnnl_memory_destroy(dm);
    if (prim) dnnl_primitive_destroy(prim);
    if (pd) dnnl_primitive_desc_destroy(pd);
    return s;
}

/* The weights of conv ci in layout md: found among those made before, or reordered now. */
static pc_status weights_for(pc_dnn_net *net, int ci, const dnnl_memory_desc_t *md, void **data) {
    pc_status st = PC_OK;
    pthread_mutex_lock(&net->lock);
    wentry *e = net->w[ci];
    while (e && !dnnl_memory_desc_equal(&e->md, md)) e = e->next;
    if (!e) {
        const pc_dnn_conv *c = &net->convs[ci];
        dnnl_memory_desc_t umd;
        dnnl_status_t s;
        if (c->groups > 1) {
            const dnnl_dims_t d = {c->groups, c->cout / c->groups, c->cin / c->groups, c->k, c->k};
            s = dnnl_memory_desc_init_by_tag(&umd, 5, d, dnnl_f32, dnnl_goihw);
        } else {
            const dnnl_dims_t d = {c->cout, c->cin, c->k, c->k};
            s = dnnl_memory_desc_init_by_tag(&umd, 4, d, dnnl_f32, dnnl_oihw);
        }
        const size_t bytes = dnnl_memory_desc_get_size(md);
        e = pc_calloc(1, sizeof *e);
        void *buf = e ? pc_malloc(bytes) : NULL;
        if (!e || !buf) {
            pc_free(e), pc_free(buf);
            e = NULL;
            st = pc_fail(PC_ERR_NO_MEMORY, "out of memory for the backbone's reordered weights");
        } else if (s != dnnl_success ||
                   (s = reorder_now(&umd, (void *)c->weight, md, buf)) != dnnl_success) {
            pc_free(e), pc_free(buf);
            e = NULL;
            st = pc_dnnl_fail(s, "reordering the backbone's weights");
        } else {
            e->md = *md, e->data = buf, e->bytes = bytes, e->next = net->w[ci];
            net->w[ci] = e;
            net->wbytes += bytes;
        }
    }
    if (e) *data = e->data;
    pthread_mutex_unlock(&net->lock);
    return st;
}

/* ---------------------------------------------------------------------------------------------
 * Plans
 * ------------------------------------------------------------------------------------------- */

#define MAX_ARGS 8

typedef struct step {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
    int op;  /* the operation it belongs to (steps past the deepest requested tap are skipped) */
    int tap; /* a tap's output reorder: layer number, run only when requested; else 0 */
} step;

struct pc_dnn_plan {
    pc_dnn_net *net;
    int32_t n, h, w, nthr;
    dnnl_stream_t stream;
    step *steps;
    int nsteps;
    dnnl_memory_t *mems; /* every memory object, destroyed with the plan */
    int nmems, cap_mems;
    dnnl_memory_t user_in, user_out[4];
    int tap_op[4];  /* the operation whose output is layerN, -1 */
    size_t tap_elems[4]; /* floats of one image's layerN */
    void *block;    /* one allocation: every slot, then the scratchpad */
    size_t bytes;
    int reorders;   /* layout reorders between operations (not counting input and taps) */
    char desc[1536];
};

/* What pass 1 records for one operation. */
typedef struct oprec {
    dnnl_primitive_desc_t pd;     /* the operation */
    dnnl_primitive_desc_t src_rd; /* reorder of its source into the layout it wants, or NULL */
    dnnl_primitive_desc_t res_rd; /* reorder of its residual into its destination layout, or NULL */
    dnnl_primitive_desc_t tap_rd; /* reorder of its output to NCHW float32, or NULL */
    int src_slot;                 /* slot of the reordered source */
    dnnl_memory_desc_t tap_md;    /* NCHW float32 of the tap */
} oprec;

typedef struct slot {
    size_t size, off;
    int busy_until; /* the last operation that reads what the slot holds */
} slot;

/* A slot free at operation `op` for `size` bytes, held until operation `until`: the smallest free one
 * that is big enough, else the biggest free one (grown), else a new one. */
static int take_slot(slot *slots, int *nslots, size_t size, int op, int until) {
    int best = -1;
    for (int i = 0; i < *nslots; i++) {
        if (slots[i].busy_until >= op) continue;
        if (best < 0) best = i;
        else if (slots[i].size >= size ? (slots[best].size < size || slots[i].size < slots[best].size)
                                       : slots[best].size < size && slots[i].size > slots[best].size)
            best = i;
    }
    if (best < 0) best = (*nslots)++, slots[best].size = 0;
    if (slots[best].size < size) slots[best].size = size;
    slots[best].busy_until = until;
    return best;
}

static int mem_new(pc_dnn_plan *p, const dnnl_memory_desc_t *md, void *data, dnnl_memory_t *out,
                   dnnl_status_t *s) {
    if (p->nmems == p->cap_mems) return 0; /* sized in advance; never happens */
    *s = dnnl_memory_create(out, md, pc_dnnl_engine(), data);
    if (*s != dnnl_success) return 0;
    p->mems[p->nmems++] = *out;
    return 1;
}

static dnnl_status_t attr_make(dnnl_primitive_attr_t *attr, int sum, int relu) {
    dnnl_status_t s = dnnl_primitive_attr_create(attr);
    if (s != dnnl_success) return s;
    s = dnnl_primitive_attr_set_scratchpad_mode(*attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && (sum || relu)) {
        dnnl_post_ops_t po = NULL;
        s = dnnl_post_ops_create(&po);
        if (s == dnnl_success && sum) s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success && relu) s = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(*attr, po);
        if (po) dnnl_post_ops_destroy(po);
    }
    if (s != dnnl_success) {
        dnnl_primitive_attr_destroy(*attr);
        *attr = NULL;
    }
    return s;
}

static dnnl_status_t reorder_pd(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *from,
                                const dnnl_memory_desc_t *to) {
    dnnl_primitive_attr_t attr = NULL;
    dnnl_status_t s = attr_make(&attr, 0, 0);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(pd, from, pc_dnnl_engine(), to, pc_dnnl_engine(), attr);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Convolution c on (n, cin, h, w) -> (n, cout, oh, ow); dst NULL lets oneDNN choose its layout. */
static dnnl_status_t conv_pd(dnnl_primitive_desc_t *pd, const pc_dnn_conv *c, dnnl_data_type_t dt, int32_t n,
                             int32_t h, int32_t w, int32_t oh, int32_t ow, const dnnl_memory_desc_t *dst, int sum,
                             int relu) {
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    const dnnl_dims_t sd = {n, c->cin, h, w}, dd = {n, c->cout, oh, ow}, bd = {c->cout};
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&smd, 4, sd, dt, dnnl_format_tag_any);
    if (s == dnnl_success) {
        if (c->groups > 1) {
            const dnnl_dims_t wd = {c->groups, c->cout / c->groups, c->cin / c->groups, c->k, c->k};
            s = dnnl_memory_desc_init_by_tag(&wmd, 5, wd, dt, dnnl_format_tag_any);
        } else {
            const dnnl_dims_t wd = {c->cout, c->cin, c->k, c->k};
            s = dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dt, dnnl_format_tag_any);
        }
    }
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a);
    if (s == dnnl_success) {
        if (dst) dmd = *dst;
        else s = dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dt, dnnl_format_tag_any);
    }
    dnnl_convolution_desc_t cd;
    const dnnl_dims_t strides = {c->stride, c->stride}, pad = {c->pad, c->pad};
    if (s == dnnl_success)
        s = dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd,
                                               &bmd, &dmd, strides, pad, pad);
    dnnl_primitive_attr_t attr = NULL;
    if (s == dnnl_success) s = attr_make(&attr, sum, relu);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &cd, attr, pc_dnnl_engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Pooling of src (explicit layout) into (n, c, oh, ow), layout left to oneDNN when dst is NULL:
 * max 3x3/2 pad 1 (max != 0) or average 2x2/2. oneDNN's max-pooling takes the maximum over the
 * window's elements inside the image only, as PyTorch does with its -inf padding. */
static dnnl_status_t pool_pd(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *src, dnnl_data_type_t dt,
                             int32_t n, int32_t c, int32_t oh, int32_t ow, int max, const dnnl_memory_desc_t *dst) {
    dnnl_memory_desc_t dmd;
    const dnnl_dims_t dd = {n, c, oh, ow}, dil = {0, 0};
    const dnnl_dims_t strides = {2, 2}, kernel = {max ? 3 : 2, max ? 3 : 2}, pad = {max, max};
    dnnl_status_t s = dnnl_success;
    if (dst) dmd = *dst;
    else s = dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dt, dnnl_format_tag_any);
    dnnl_pooling_v2_desc_t d;
    if (s == dnnl_success)
        s = dnnl_pooling_v2_forward_desc_init(&d, dnnl_forward_inference,
                                              max ? dnnl_pooling_max : dnnl_pooling_avg_exclude_padding, src, &dmd,
                                              strides, kernel, dil, pad, pad);
    dnnl_primitive_attr_t attr = NULL;
    if (s == dnnl_success) s = attr_make(&attr, 0, 0);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &d, attr, pc_dnnl_engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

/* Batch-norm with given statistics, scale and shift, then ReLU, on data (its layout for source and
 * destination). */
static dnnl_status_t bnrelu_pd(dnnl_primitive_desc_t *pd, const dnnl_memory_desc_t *data) {
    dnnl_batch_normalization_desc_t d;
    dnnl_status_t s = dnnl_batch_normalization_forward_desc_init(
        &d, dnnl_forward_inference, data, BN_EPS,
        dnnl_use_global_stats | dnnl_use_scale | dnnl_use_shift | dnnl_fuse_norm_relu);
    dnnl_primitive_attr_t attr = NULL;
    if (s == dnnl_success) s = attr_make(&attr, 0, 0);
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &d, attr, pc_dnnl_engine(), NULL);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

static const dnnl_memory_desc_t *pd_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q, int i) {
    return dnnl_primitive_desc_query_md(pd, q, i);
}

/* "nChw16c", "nhwc", "nchw" or "blocked": what a 4-D activation layout is, for the description. */
static void layout_name(const dnnl_memory_desc_t *md, char *buf, size_t size) {
    const dnnl_blocking_desc_t *b = &md->format_desc.blocking;
    if (md->format_kind != dnnl_blocked || md->ndims != 4) {
        snprintf(buf, size, "other");
    } else if (b->inner_nblks == 1 && b->inner_idxs[0] == 1) {
        snprintf(buf, size, "nChw%dc", (int)b->inner_blks[0]);
    } else if (b->inner_nblks == 0) {
        snprintf(buf, size, "%s", b->strides[1] == 1 ? "nhwc" : b->strides[3] == 1 ? "nchw" : "strided");
    } else {
        snprintf(buf, size, "blocked");
    }
}

static size_t scratch_of(const_dnnl_primitive_desc_t pd) {
    const dnnl_memory_desc_t *m = pd ? pd_md(pd, dnnl_query_scratchpad_md, 0) : NULL;
    return m ? dnnl_memory_desc_get_size(m) : 0;
}

void pc_dnn_plan_free(pc_dnn_plan *p) {
    if (!p) return;
    for (int i = 0; i < p->nsteps; i++)
        if (p->steps[i].prim) dnnl_primitive_destroy(p->steps[i].prim);
    for (int i = 0; i < p->nmems; i++) dnnl_memory_destroy(p->mems[i]);
    if (p->stream) dnnl_stream_destroy(p->stream);
    pc_free(p->steps), pc_free(p->mems), pc_free(p->block), pc_free(p);
}

int pc_dnn_plan_fits(const pc_dnn_plan *p, int32_t n, int32_t h, int32_t w) {
    return p && p->n == n && p->h == h && p->w == w && p->nthr == omp_get_max_threads();
}

size_t pc_dnn_plan_bytes(const pc_dnn_plan *p) { return p ? p->bytes : 0; }

static void add_step(pc_dnn_plan *p, dnnl_primitive_t prim, int op, int tap, int nargs, const dnnl_exec_arg_t *args) {
    step *s = &p->steps[p->nsteps++];
    s->prim = prim, s->op = op, s->tap = tap, s->nargs = nargs;
    memcpy(s->args, args, (size_t)nargs * sizeof *args);
}

#define ALIGN_UP(x) (((x) + 63) & ~(size_t)63)

pc_status pc_dnn_plan_create(pc_dnn_net *net, int32_t n, int32_t h, int32_t w, pc_dnn_plan **out) {
    *out = NULL;
    const int nops = net->nops, nv = nops + 1;
    const dnnl_data_type_t dt = net->bf16 ? dnnl_bf16 : dnnl_f32;
    pc_status st = PC_OK;
    dnnl_status_t s = dnnl_success;
    const char *what = "planning the backbone";
    pc_dnn_plan *p = pc_calloc(1, sizeof *p);
    oprec *R = pc_calloc((size_t)nops, sizeof *R);
    dnnl_memory_desc_t *vmd = pc_calloc((size_t)nv, sizeof *vmd);
    int32_t *vc = pc_malloc(3 * (size_t)nv * sizeof *vc); /* channels, height, width of each value */
    int *vslot = pc_malloc((size_t)nv * sizeof *vslot), *last = pc_malloc((size_t)nv * sizeof *last);
    slot *slots = pc_calloc(3 * (size_t)nv, sizeof *slots);
    void **vptr = pc_calloc((size_t)nv, sizeof *vptr);
    dnnl_memory_desc_t *smd = pc_calloc((size_t)nops, sizeof *smd); /* each operation's source as it reads it */
    /* A net with buffers runs one image at a time, in the blocked layout where one image's channel
     * slices are contiguous. */
    const int32_t nb = net->per_image ? 1 : n;
    const int avx512 = ((unsigned)pc_dnnl_isa() & (unsigned)dnnl_cpu_isa_avx512_core) == (unsigned)dnnl_cpu_isa_avx512_core;
    const dnnl_format_tag_t btag = avx512 || net->bf16 ? dnnl_nChw16c : dnnl_nChw8c;
    const int32_t bblk = btag == dnnl_nChw16c ? 16 : 8;
    const size_t elt = net->bf16 ? 2 : sizeof(float);
    if (!p || !R || !vmd || !vc || !vslot || !last || !slots || !vptr || !smd) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory for the backbone's oneDNN plan");
        goto done;
    }
    p->net = net, p->n = n, p->h = h, p->w = w, p->nthr = omp_get_max_threads();
    for (int l = 0; l < 4; l++) p->tap_op[l] = -1;

    /* Shapes, liveness (the last operation reading each value). */
    vc[0] = 3, vc[1] = h, vc[2] = w;
    for (int v = 0; v < nv; v++) last[v] = v - 1;
    for (int i = 0; i < nops; i++) {
        const pc_dnn_op *o = &net->ops[i];
        const int32_t ih = vc[3 * o->src + 1], iw = vc[3 * o->src + 2];
        const int32_t sc = o->src_ch ? o->src_ch : vc[3 * o->src];
        int32_t *oc = &vc[3 * (i + 1)];
        if (o->kind == PC_DNN_BUFFER) {
            oc[0] = o->ch, oc[1] = oc[2] = -1; /* set by the first operation writing into it */
            if (o->ch % bblk) {
                st = pc_fail(PC_ERR_INTERNAL, "backbone plan: a buffer of %d channels in blocks of %d", (int)o->ch,
                             (int)bblk);
                goto done;
            }
            continue;
        }
        if (sc > vc[3 * o->src] || (o->src_ch && o->src_ch % bblk)) {
            st = pc_fail(PC_ERR_INTERNAL, "backbone plan: operation %d reads %d channels of %d", i, (int)sc,
                         (int)vc[3 * o->src]);
            goto done;
        }
        if (o->kind == PC_DNN_CONV) {
            const pc_dnn_conv *c = &net->convs[o->conv];
            if (sc != c->cin) {
                st = pc_fail(PC_ERR_INTERNAL, "backbone plan: operation %d reads %d channels, expects %d", i,
                             (int)sc, (int)c->cin);
                goto done;
            }
            oc[0] = c->cout;
            oc[1] = (ih + 2 * c->pad - c->k) / c->stride + 1, oc[2] = (iw + 2 * c->pad - c->k) / c->stride + 1;
        } else if (o->kind == PC_DNN_MAXPOOL) {
            oc[0] = sc, oc[1] = (ih - 1) / 2 + 1, oc[2] = (iw - 1) / 2 + 1;
        } else if (o->kind == PC_DNN_AVGPOOL) {
            oc[0] = sc, oc[1] = ih / 2, oc[2] = iw / 2;
        } else { /* PC_DNN_BNRELU */
            oc[0] = sc, oc[1] = ih, oc[2] = iw;
        }
        if (oc[1] < 1 || oc[2] < 1 || ih < 1 || iw < 1) {
            st = pc_fail(PC_ERR_SHAPE, "input %dx%d is too small for the backbone", (int)h, (int)w);
            goto done;
        }
        if (o->into) {
            int32_t *bc = &vc[3 * o->into];
            if (bc[1] < 0) bc[1] = oc[1], bc[2] = oc[2];
            if (bc[1] != oc[1] || bc[2] != oc[2] || o->off % bblk || o->off + oc[0] > bc[0]) {
                st = pc_fail(PC_ERR_INTERNAL, "backbone plan: operation %d does not fit its buffer", i);
                goto done;
            }
            last[o->into] = PC_MAX(last[o->into], i);
        }
        last[o->src] = PC_MAX(last[o->src], i);
        if (o->res) last[o->res] = PC_MAX(last[o->res], i);
        if (o->tap) {
            const int32_t *tc = &vc[3 * (o->into ? o->into : i + 1)];
            p->tap_op[o->tap - 1] = i;
            p->tap_elems[o->tap - 1] = (size_t)tc[0] * (size_t)tc[1] * (size_t)tc[2];
        }
    }
    for (int i = 0; i < nops; i++)
        if (net->ops[i].res && last[net->ops[i].res] != i) {
            st = pc_fail(PC_ERR_INTERNAL, "backbone plan: residual of operation %d is read later", i);
            goto done;
        }

    /* Pass 1: descriptors and slots. Value 0 is the caller's NCHW float32 input (no slot). */
    {
        const dnnl_dims_t d0 = {nb, 3, h, w};
        if ((s = dnnl_memory_desc_init_by_tag(&vmd[0], 4, d0, dnnl_f32, dnnl_nchw)) != dnnl_success) goto dnnl_err;
    }
    int nslots = 0;
    vslot[0] = -1;
    for (int i = 0; i < nops; i++) {
        const pc_dnn_op *o = &net->ops[i];
        oprec *r = &R[i];
        const int v = i + 1;
        const int32_t *ic = &vc[3 * o->src], *oc = &vc[3 * v];
        if (o->kind == PC_DNN_BUFFER) { /* memory only */
            const dnnl_dims_t bd = {nb, oc[0], oc[1], oc[2]};
            if ((s = dnnl_memory_desc_init_by_tag(&vmd[v], 4, bd, dt, btag)) != dnnl_success) goto dnnl_err;
            vslot[v] = take_slot(slots, &nslots, dnnl_memory_desc_get_size(&vmd[v]), i, PC_MAX(last[v], i));
            continue;
        }
        /* the source as read: the value, or a prefix of its channels (contiguous in one image's
         * blocked layout) */
        smd[i] = vmd[o->src];
        if (o->src_ch) {
            const dnnl_dims_t sd = {nb, o->src_ch, ic[1], ic[2]};
            if ((s = dnnl_memory_desc_init_by_tag(&smd[i], 4, sd, dt, btag)) != dnnl_success) goto dnnl_err;
        }
        /* the destination when it is a slice of a buffer */
        dnnl_memory_desc_t slice;
        if (o->into) {
            const dnnl_dims_t dd = {nb, oc[0], oc[1], oc[2]};
            if ((s = dnnl_memory_desc_init_by_tag(&slice, 4, dd, dt, btag)) != dnnl_success) goto dnnl_err;
        }
        if (o->kind == PC_DNN_CONV) {
            const pc_dnn_conv *c = &net->convs[o->conv];
            what = "creating a convolution";
            s = conv_pd(&r->pd, c, dt, nb, ic[1], ic[2], oc[1], oc[2],
                        o->into ? &slice : o->res ? &vmd[o->res] : NULL, o->res > 0, o->relu);
            if (s == dnnl_unimplemented && o->res) { /* no kernel writes the residual's layout: reorder it */
                s = conv_pd(&r->pd, c, dt, nb, ic[1], ic[2], oc[1], oc[2], NULL, 1, o->relu);
                if (s == dnnl_success && !dnnl_memory_desc_equal(pd_md(r->pd, dnnl_query_dst_md, 0), &vmd[o->res])) {
                    what = "creating a reorder";
                    s = reorder_pd(&r->res_rd, &vmd[o->res], pd_md(r->pd, dnnl_query_dst_md, 0));
                    p->reorders++;
                }
            }
        } else if (o->kind == PC_DNN_BNRELU) {
            what = "creating a batch-norm";
            s = bnrelu_pd(&r->pd, &smd[i]);
        } else {
            what = o->kind == PC_DNN_MAXPOOL ? "creating the max-pool" : "creating an average pool";
            s = pool_pd(&r->pd, &smd[i], dt, nb, oc[0], oc[1], oc[2], o->kind == PC_DNN_MAXPOOL,
                        o->into ? &slice : NULL);
        }
        if (s != dnnl_success) goto dnnl_err;
        const dnnl_memory_desc_t *want_src = pd_md(r->pd, dnnl_query_src_md, 0);
        if (!dnnl_memory_desc_equal(want_src, &smd[i])) {
            what = "creating a reorder";
            if ((s = reorder_pd(&r->src_rd, &smd[i], want_src)) != dnnl_success) goto dnnl_err;
            r->src_slot = take_slot(slots, &nslots, dnnl_memory_desc_get_size(want_src), i, i);
            if (o->src) p->reorders++;
        }
        vmd[v] = *pd_md(r->pd, dnnl_query_dst_md, 0);
        if (o->into) { /* a slice of the buffer: no memory of its own */
            vslot[v] = -1;
        } else if (o->res && !r->res_rd) { /* in place: the residual's slot */
            vslot[v] = vslot[o->res];
            slots[vslot[v]].busy_until = last[v];
            if (slots[vslot[v]].size < dnnl_memory_desc_get_size(&vmd[v]))
                slots[vslot[v]].size = dnnl_memory_desc_get_size(&vmd[v]);
        } else {
            vslot[v] = take_slot(slots, &nslots, dnnl_memory_desc_get_size(&vmd[v]), i, PC_MAX(last[v], i));
        }
        if (o->tap) { /* the value, or the whole buffer it is a slice of */
            const int tv = o->into ? o->into : v;
            const dnnl_dims_t td = {nb, vc[3 * tv], vc[3 * tv + 1], vc[3 * tv + 2]};
            what = "creating an output reorder";
            if ((s = dnnl_memory_desc_init_by_tag(&r->tap_md, 4, td, dnnl_f32, dnnl_nchw)) != dnnl_success ||
                (s = reorder_pd(&r->tap_rd, &vmd[tv], &r->tap_md)) != dnnl_success)
                goto dnnl_err;
        }
    }

    /* Pass 2: one block for the slots and the scratchpad. */
    size_t scratch = 0, total = 0;
    for (int i = 0; i < nops; i++) {
        scratch = PC_MAX(scratch, scratch_of(R[i].pd));
        scratch = PC_MAX(scratch, scratch_of(R[i].src_rd));
        scratch = PC_MAX(scratch, scratch_of(R[i].res_rd));
        scratch = PC_MAX(scratch, scratch_of(R[i].tap_rd));
    }
    for (int i = 0; i < nslots; i++) {
        slots[i].off = total;
        if (!pc_add_size(total, ALIGN_UP(slots[i].size), &total)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "the backbone's activations for %d x %d x %d overflow", (int)n, (int)h,
                         (int)w);
            goto done;
        }
    }
    const size_t scratch_off = total;
    if (!pc_add_size(total, ALIGN_UP(scratch) + 64, &total)) {
        st = pc_fail(PC_ERR_TOO_LARGE, "the backbone's scratchpad overflows");
        goto done;
    }
    p->block = pc_malloc(total);
    p->cap_mems = 2 + 12 * nops;
    p->mems = pc_calloc((size_t)p->cap_mems, sizeof *p->mems);
    p->steps = pc_calloc(4 * (size_t)nops + 1, sizeof *p->steps);
    if (!p->block || !p->mems || !p->steps) {
        st = pc_fail(PC_ERR_NO_MEMORY, "cannot allocate %.1f MB for the backbone's activations (%d images of %dx%d)",
                     (double)total / 1e6, (int)n, (int)h, (int)w);
        goto done;
    }
    p->bytes = total;
    char *base = p->block, *scratch_ptr = base + scratch_off;

    /* Pass 3: memories, primitives, steps. */
    what = "creating the backbone's memories";
    if (!mem_new(p, &vmd[0], NULL, &p->user_in, &s)) goto dnnl_err;
    vptr[0] = NULL;
    for (int i = 0; i < nops; i++) {
        const pc_dnn_op *o = &net->ops[i];
        oprec *r = &R[i];
        const int v = i + 1;
        dnnl_memory_t src_m, dst_m, tmp;
        dnnl_exec_arg_t a[MAX_ARGS];
        dnnl_primitive_t prim = NULL;
        if (o->into) /* channels [off, ...) of one image of a blocked buffer: off * h * w elements in */
            vptr[v] = (char *)vptr[o->into] + (size_t)o->off * (size_t)vc[3 * v + 1] * (size_t)vc[3 * v + 2] * elt;
        else
            vptr[v] = base + slots[vslot[v]].off;
        if (o->kind == PC_DNN_BUFFER) continue;
        /* the source as the value lies (value 0: the caller's input, its handle set by forward) */
        dnnl_memory_t vsrc = p->user_in;
        if (o->src && !mem_new(p, &smd[i], vptr[o->src], &vsrc, &s)) goto dnnl_err;
        src_m = vsrc;
        if (r->src_rd) {
            what = "creating a reorder";
            if (!mem_new(p, pd_md(r->pd, dnnl_query_src_md, 0), base + slots[r->src_slot].off, &src_m, &s) ||
                !mem_new(p, pd_md(r->src_rd, dnnl_query_scratchpad_md, 0), scratch_ptr, &tmp, &s) ||
                (s = dnnl_primitive_create(&prim, r->src_rd)) != dnnl_success)
                goto dnnl_err;
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, vsrc};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, src_m};
            a[2] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, tmp};
            add_step(p, prim, i, 0, 3, a);
        }
        if (!mem_new(p, &vmd[v], vptr[v], &dst_m, &s)) goto dnnl_err;
        if (r->res_rd) {
            dnnl_memory_t rm;
            what = "creating a reorder";
            if (!mem_new(p, &vmd[o->res], vptr[o->res], &rm, &s) ||
                !mem_new(p, pd_md(r->res_rd, dnnl_query_scratchpad_md, 0), scratch_ptr, &tmp, &s) ||
                (s = dnnl_primitive_create(&prim, r->res_rd)) != dnnl_success)
                goto dnnl_err;
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, rm};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, dst_m};
            a[2] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, tmp};
            add_step(p, prim, i, 0, 3, a);
        }
        int na = 0;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SRC, src_m};
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_DST, dst_m};
        if (o->kind == PC_DNN_CONV) {
            const pc_dnn_conv *c = &net->convs[o->conv];
            const dnnl_memory_desc_t *wmd = pd_md(r->pd, dnnl_query_weights_md, 0);
            const dnnl_memory_desc_t *bmd = pd_md(r->pd, dnnl_query_weights_md, 1);
            void *wdata = NULL;
            dnnl_memory_t wm, bm;
            if (!bmd || dnnl_memory_desc_get_size(bmd) != (size_t)c->cout * sizeof(float)) {
                st = pc_fail(PC_ERR_INTERNAL, "backbone plan: unexpected bias layout");
                goto done;
            }
            if ((st = weights_for(net, o->conv, wmd, &wdata)) != PC_OK) goto done;
            what = "creating a convolution";
            if (!mem_new(p, wmd, wdata, &wm, &s) || !mem_new(p, bmd, (void *)c->bias, &bm, &s)) goto dnnl_err;
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_WEIGHTS, wm};
            a[na++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, bm};
        } else if (o->kind == PC_DNN_BNRELU) {
            const int32_t c = vc[3 * v];
            const dnnl_dims_t pd1 = {c};
            dnnl_memory_desc_t pmd;
            dnnl_memory_t pm[4];
            static const int args[4] = {DNNL_ARG_SCALE, DNNL_ARG_SHIFT, DNNL_ARG_MEAN, DNNL_ARG_VARIANCE};
            what = "creating a batch-norm";
            if ((s = dnnl_memory_desc_init_by_tag(&pmd, 1, pd1, dnnl_f32, dnnl_a)) != dnnl_success) goto dnnl_err;
            for (int k = 0; k < 4; k++) {
                if (!mem_new(p, &pmd, net->bnp[i] + (size_t)k * c, &pm[k], &s)) goto dnnl_err;
                a[na++] = (dnnl_exec_arg_t){args[k], pm[k]};
            }
        }
        what = o->kind == PC_DNN_CONV ? "creating a convolution" : "creating a pooling or batch-norm";
        if (!mem_new(p, pd_md(r->pd, dnnl_query_scratchpad_md, 0), scratch_ptr, &tmp, &s) ||
            (s = dnnl_primitive_create(&prim, r->pd)) != dnnl_success)
            goto dnnl_err;
        a[na++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, tmp};
        add_step(p, prim, i, 0, na, a);
        if (r->tap_rd) {
            what = "creating an output reorder";
            if (!mem_new(p, &r->tap_md, NULL, &p->user_out[o->tap - 1], &s) ||
                !mem_new(p, pd_md(r->tap_rd, dnnl_query_scratchpad_md, 0), scratch_ptr, &tmp, &s) ||
                (s = dnnl_primitive_create(&prim, r->tap_rd)) != dnnl_success)
                goto dnnl_err;
            dnnl_memory_t from = dst_m;
            if (o->into && !mem_new(p, &vmd[o->into], vptr[o->into], &from, &s)) goto dnnl_err;
            a[0] = (dnnl_exec_arg_t){DNNL_ARG_FROM, from};
            a[1] = (dnnl_exec_arg_t){DNNL_ARG_TO, p->user_out[o->tap - 1]};
            a[2] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, tmp};
            add_step(p, prim, i, o->tap, 3, a);
        }
    }
    what = "creating a stream";
    if ((s = dnnl_stream_create(&p->stream, pc_dnnl_engine(), dnnl_stream_default_flags)) != dnnl_success)
        goto dnnl_err;

    /* The kernels chosen, one line per distinct convolution shape, and the activations' layout. */
    {
        char lay[64];
        layout_name(&vmd[nv - 1], lay, sizeof lay);
        size_t at = (size_t)snprintf(p->desc, sizeof p->desc, "activations: %s %s\n", lay, net->bf16 ? "bf16" : "f32");
        for (int i = 0; i < nops && at < sizeof p->desc; i++) {
            if (net->ops[i].kind != PC_DNN_CONV) continue;
            const pc_dnn_conv *c = &net->convs[net->ops[i].conv];
            char line[160];
            snprintf(line, sizeof line, "%dx%d/%d %d->%d%s%s: %s\n", (int)c->k, (int)c->k, (int)c->stride,
                     (int)c->cin, (int)c->cout, c->groups > 1 ? " grouped" : "", net->ops[i].res ? " +sum" : "",
                     pc_dnnl_impl(R[i].pd));
            if (!strstr(p->desc, line)) at += (size_t)snprintf(p->desc + at, sizeof p->desc - at, "%s", line);
        }
        if (at < sizeof p->desc)
            snprintf(p->desc + at, sizeof p->desc - at, "layout reorders between operations: %d", p->reorders);
    }
    goto done;

dnnl_err:
    st = pc_dnnl_fail(s, what);
done:
    if (R)
        for (int i = 0; i < nops; i++) {
            if (R[i].pd) dnnl_primitive_desc_destroy(R[i].pd);
            if (R[i].src_rd) dnnl_primitive_desc_destroy(R[i].src_rd);
            if (R[i].res_rd) dnnl_primitive_desc_destroy(R[i].res_rd);
            if (R[i].tap_rd) dnnl_primitive_desc_destroy(R[i].tap_rd);
        }
    pc_free(R), pc_free(vmd), pc_free(vc), pc_free(vslot), pc_free(last), pc_free(slots), pc_free(vptr), pc_free(smd);
    if (st != PC_OK) pc_dnn_plan_free(p);
    else *out = p;
    return st;
}

pc_status pc_dnn_plan_forward(pc_dnn_plan *p, const float *in, uint32_t layer_mask, float *const outs[4]) {
    int last_op = -1;
    for (int l = 0; l < 4; l++) {
        if (!(layer_mask & (1u << l))) continue;
        if (p->tap_op[l] < 0 || !p->user_out[l])
            return pc_fail(PC_ERR_INTERNAL, "backbone plan: layer%d is not an output of the plan", l + 1);
        last_op = PC_MAX(last_op, p->tap_op[l]);
    }
    /* a net with buffers: the plan is for one image, run once per image */
    const int32_t reps = p->net->per_image ? p->n : 1;
    const double deadline = pc_deadline_get();
    const size_t in_elems = 3 * (size_t)p->h * (size_t)p->w;
    dnnl_status_t s = dnnl_success;
    for (int32_t r = 0; r < reps && s == dnnl_success; r++) {
        s = dnnl_memory_set_data_handle(p->user_in, (void *)(in + (size_t)r * in_elems));
        for (int l = 0; l < 4 && s == dnnl_success; l++)
            if (layer_mask & (1u << l))
                s = dnnl_memory_set_data_handle(p->user_out[l], outs[l] + (size_t)r * p->tap_elems[l]);
        for (int i = 0; i < p->nsteps && s == dnnl_success; i++) {
            const step *t = &p->steps[i];
            if (t->op > last_op) break;
            /* a server's request deadline (src/cancel.c), between primitives */
            if (pc_deadline_passed(deadline)) {
                dnnl_stream_wait(p->stream);
                return pc_deadline_check("in the backbone");
            }
            if (t->tap && !(layer_mask & (1u << (t->tap - 1)))) continue;
            s = dnnl_primitive_execute(t->prim, p->stream, t->nargs, t->args);
        }
        if (s == dnnl_success) s = dnnl_stream_wait(p->stream);
    }
    return s == dnnl_success ? PC_OK : pc_dnnl_fail(s, "running the backbone");
}

void pc_dnn_plan_describe(const pc_dnn_plan *p, char *buf, size_t size) {
    if (size) snprintf(buf, size, "%s", p ? p->desc : "");
}
