/*
 * model.c - PatchCore fit, save/load and predict (METHOD.md §3-§6), built from the library's parts:
 * images and preprocessing, the backbone, patch features, the coreset, kNN and the anomaly map.
 *
 * Fit: images are decoded and preprocessed in parallel a batch at a time, run through the backbone,
 * turned into patch features straight into one N x D matrix (the only copy of the training features),
 * subsampled, and the selected rows gathered into the memory bank.
 * Predict: each call borrows a context (a backbone view sharing the weights, and every scratch buffer
 * a prediction needs, sized once) from a pool on the model, so predict is thread-safe and allocates
 * nothing per image once the pool is warm (image decoding aside).
 */
#define _GNU_SOURCE
#include "resize.h"
#include "coreset.h"
#include "internal.h"
#include "knn.h"
#include "modelfile.h"
#include "patch_features.h"
#include "scoring.h"
#include "weights.h"
#include "backbone_internal.h"
#include "model_internal.h"
#include "spill.h"
#include "ensemble.h"
#include "model_impl.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define MODEL_FORMAT_NAME "patchcore-model"

/* ----------------------------------------------------------------------------------------------
 * Options
 * -------------------------------------------------------------------------------------------- */

void pc_fit_options_init(pc_fit_options *opt) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->arch = PC_ARCH_UNKNOWN;
    opt->layers[0] = 2;
    opt->layers[1] = 3;
    opt->n_layers = 2;
    opt->resize = 256;
    opt->crop = 224;
    opt->patch = 3;
    opt->pre_dim = 1024;
    opt->dim = 1024;
    opt->k = 1;
    opt->sampler = PC_SAMPLER_APPROX_GREEDY;
    opt->coreset_ratio = 0.1;
    opt->projection_dim = PC_CORESET_PROJ_DIM;
    opt->n_starts = PC_CORESET_STARTS;
    opt->batch_size = 8;
    opt->bn_stats = PC_BN_REFERENCE;
    opt->tiling.overlap = 0.25; /* used once tiling.tile is set (docs/tiles.md) */
    opt->tiling.scale = 1.0;
}

static pc_status check_options(const pc_fit_options *o) {
    if (o->bn_stats != PC_BN_REFERENCE && o->bn_stats != PC_BN_TRAINED)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: unknown batch-norm statistics %d", (int)o->bn_stats);
    if (o->precision != PC_PRECISION_F32 && o->precision != PC_PRECISION_BF16)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: unknown precision %d", (int)o->precision);
    if (o->jobs < 0 || o->jobs > 256)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: jobs must be 0..256 (0 = the default), not %d", (int)o->jobs);
    if (o->n_layers < 1 || o->n_layers > PC_MAX_LAYERS)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: between 1 and %d layers, not %d", PC_MAX_LAYERS, (int)o->n_layers);
    uint32_t seen = 0;
    for (int i = 0; i < o->n_layers; i++) {
        if (o->layers[i] < 1 || o->layers[i] > 4)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: layer%d does not exist (layer1..layer4)", (int)o->layers[i]);
        if (seen & PC_LAYER(o->layers[i]))
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: layer%d named twice", (int)o->layers[i]);
        seen |= PC_LAYER(o->layers[i]);
    }
    if (o->resize < 1 || o->resize > 4096 || o->crop < 16 || o->crop > 4096)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: resize %d / crop %d out of range (crop 16..4096)", (int)o->resize,
                       (int)o->crop);
    if (o->patch < 1 || o->patch > 15 || o->patch % 2 == 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: patch size %d must be odd, 1..15", (int)o->patch);
    if (o->pre_dim < 1 || o->pre_dim > 65536 || o->dim < 1 || o->dim > 65536)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: dimensions must be 1..65536");
    if (o->k < 1 || o->k > 1024) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: k must be 1..1024, not %d", (int)o->k);
    if (o->sampler < PC_SAMPLER_APPROX_GREEDY || o->sampler > PC_SAMPLER_NONE)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: unknown sampler %d", (int)o->sampler);
    if (o->coreset_size < 0 || (o->coreset_size == 0 && !(o->coreset_ratio > 0 && o->coreset_ratio <= 1)))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: coreset ratio must be in (0, 1], not %g", o->coreset_ratio);
    if (o->projection_dim < 1 || o->projection_dim > 4096 || o->n_starts < 1 || o->n_starts > 1000)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: bad coreset projection size or start count");
    if (o->batch_size < 1 || o->batch_size > 256)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: batch size must be 1..256");
    if (o->reweight_b < 0 || o->reweight_b > 1024)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: reweight b must be 0..1024");
    if (o->max_memory < 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: the memory budget must be >= 0 bytes (0 = unlimited), not %lld",
                       (long long)o->max_memory);
    if (o->tiling.tile != 0) { /* docs/tiles.md */
        pc_status st = pc_tiling_check(&o->tiling, "fit");
        if (st) return st;
        if (o->reweight_b > 0)
            return pc_fail(PC_ERR_UNSUPPORTED, "fit: Eq. 7 reweighting (reweight_b) is not available with tiling (the "
                           "tiled image score is the maximum of the stitched map)");
        if (o->roi) return pc_fail(PC_ERR_UNSUPPORTED, "fit: a region of interest with tiling is not available yet");
    }
    return PC_OK;
}

/* bf16 where the CPU cannot multiply it natively is an error, not a float32 fallback: a model runs in
 * the arithmetic it records, or not at all (docs/precision.md). `what` starts the message. */
static pc_status precision_check(pc_precision p, const char *what) {
    char why[256];
    if (pc_precision_supported(p, why, sizeof why)) return PC_OK;
    return pc_fail(PC_ERR_UNSUPPORTED, "%s %s is not available on this CPU: %s; there is no float32 fallback (the results "
                   "would differ from what the model records)", what, pc_precision_name(p), why);
}

/* ----------------------------------------------------------------------------------------------
 * Model structure
 * -------------------------------------------------------------------------------------------- */

static void ctx_free(pctx *c) {
    if (!c) return;
    pc_backbone_free(c->bb);
    pc_free(c->ws);
    pc_resize_cache_free(&c->rc);
    pc_tile_bufs_free(&c->tb);
    pc_roi_cache_free(&c->roi);
    pc_free(c);
}

void pc_model_free(pc_model *m) {
    if (!m) return;
    for (pctx *c = m->free_ctx; c;) {
        pctx *n = c->next;
        ctx_free(c);
        c = n;
    }
    pthread_mutex_destroy(&m->lock);
    for (int32_t i = 0; i < m->n_members; i++) pc_model_free(m->members[i]);
    pc_free(m->members);
    pc_ensemble_free(m->ens);
    pc_free(m->usable_src);
    pc_backbone_free(m->bb);
    pc_features_plan_free(m->plan);
    pc_tensor_dict_free(m->bb_tensors);
    pc_free(m->bb_views);
    pc_free(m->bank_owned);
    pc_free(m->coreset_idx);
    pc_free(m->bank_norms);
    pc_free(m->roi_owned);
    pc_knn_index_free(m->kix);
    pc_modelfile_close(m->mf);
    pc_free(m);
}

const char *pc_model_errmsg(const pc_model *m) { return m ? m->errmsg : ""; }

pc_model *pc_model_new_empty(void) {
    pc_model *m = pc_calloc(1, sizeof *m);
    if (!m) return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->image_threshold = m->pixel_threshold = m->score_scale = m->pixel_scale = NAN;
    m->coverage_radius = NAN;
    return m;
}

/* After the backbone is in place: layer shapes at the crop size, the feature plan, the grid. */
static pc_status model_plan(pc_model *m) {
    for (int i = 0; i < m->n_layers; i++) {
        int32_t h, w;
        pc_status st = pc_backbone_out_size(m->bb, m->layers[i], m->crop, m->crop, &h, &w);
        if (st) return st;
        m->shapes[i].channels = pc_backbone_channels(m->bb, m->layers[i]);
        m->shapes[i].height = h;
        m->shapes[i].width = w;
    }
    pc_status st = pc_features_plan_create(&m->plan, m->shapes, m->n_layers, m->patch, m->pre_dim, m->dim);
    if (st) return st;
    int32_t d;
    pc_features_plan_grid(m->plan, &m->grid_h, &m->grid_w, &d);
    return PC_OK;
}

static uint32_t mask_of(const int32_t *layers, int n) {
    uint32_t mask = 0;
    for (int i = 0; i < n; i++) mask |= PC_LAYER(layers[i]);
    return mask;
}

/* Backbone tensors that the requested layers need (pc_backbone_tensor_needed: a ResNet's stem and
 * layer1..deepest, a DenseNet's stem, dense blocks and the transitions between them, in either
 * spelling); classifiers, deeper stages and norm5 are left out of the model file. */
static int want_backbone_tensor(const char *name, void *user) {
    return pc_backbone_tensor_needed(name, *(const int *)user);
}

static int deepest_layer(const pc_model *m) {
    int d = 0;
    for (int i = 0; i < m->n_layers; i++) d = PC_MAX(d, m->layers[i]);
    return d;
}

/* The pruned exact kNN index over the bank (knn.h), built after fit and at load (it is derived data,
 * not stored in the model file). Its results are identical to the brute-force search; it only pays
 * for banks of PC_KNN_MIN_BANK entries and more and a few neighbours, so smaller banks and k > 16 keep
 * the brute force. */
pc_status pc_model_index_for(const pc_model *m, const float *bank, const float *norms, int64_t n,
                             pc_knn_index **out) {
    *out = NULL;
    if (n < PC_KNN_MIN_BANK || m->k > 16) return PC_OK;
    return pc_knn_index_build(out, bank, norms, n, m->dim, 0);
}

pc_status pc_model_build_index(pc_model *m) {
    return pc_model_index_for(m, m->bank, m->bank_norms, m->bank_n, &m->kix);
}

/* ----------------------------------------------------------------------------------------------
 * Predict contexts
 * -------------------------------------------------------------------------------------------- */

static pc_status ctx_create(pc_model *m, pctx **out) {
    *out = NULL;
    pctx *c = pc_calloc(1, sizeof *c);
    if (!c) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    pc_status st = pc_backbone_view(m->bb, &c->bb);
    if (!st) st = pc_backbone_reserve(c->bb, 1, m->crop, m->crop);
    if (st) {
        ctx_free(c);
        return st;
    }
    size_t hw = (size_t)m->grid_h * m->grid_w, S = (size_t)m->crop, D = (size_t)m->dim, k = (size_t)m->k;
    size_t b = (size_t)m->reweight_b;
    size_t act_sz[4] = {0};
    for (int i = 0; i < m->n_layers; i++)
        act_sz[m->layers[i] - 1] = (size_t)m->shapes[i].channels * m->shapes[i].height * m->shapes[i].width;
    c->kws_size = pc_knn_workspace_size((int64_t)hw);
    if (m->kix) {
        int threads = 1;
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        c->kws_size = PC_MAX(c->kws_size, pc_knn_index_workspace_size(m->kix, (int64_t)hw, m->k, threads));
    }
    /* one block, each piece 64-byte aligned */
    size_t sizes[16], n = 0, total = 0;
    sizes[n++] = 3 * S * S * sizeof(float);
    for (int l = 0; l < 4; l++) sizes[n++] = act_sz[l] * sizeof(float);
    sizes[n++] = hw * D * sizeof(float);
    sizes[n++] = hw * k * sizeof(float);
    sizes[n++] = hw * k * sizeof(int64_t);
    sizes[n++] = hw * sizeof(float);
    sizes[n++] = b * D * sizeof(float);
    sizes[n++] = b * sizeof(float);
    sizes[n++] = b * sizeof(int64_t);
    sizes[n++] = pc_features_workspace_size(m->plan);
    sizes[n++] = c->kws_size;
    sizes[n++] = pc_anomaly_map_workspace_size(m->crop, GAUSSIAN_SIGMA);
    size_t offs[16];
    for (size_t i = 0; i < n; i++) {
        offs[i] = total;
        total += (sizes[i] + 63) & ~(size_t)63;
    }
    c->ws = pc_malloc(total);
    if (!c->ws) {
        ctx_free(c);
        return pc_fail(PC_ERR_NO_MEMORY, "cannot allocate %.1f MB of prediction workspace", (double)total / 1e6);
    }
    uint8_t *base = c->ws;
    size_t i = 0;
    c->input = (float *)(base + offs[i++]);
    for (int l = 0; l < 4; l++, i++) c->acts[l] = act_sz[l] ? (float *)(base + offs[i]) : NULL;
    c->feats = (float *)(base + offs[i++]);
    c->dist = (float *)(base + offs[i++]);
    c->idx = (int64_t *)(base + offs[i++]);
    c->pscores = (float *)(base + offs[i++]);
    c->neigh = (float *)(base + offs[i++]);
    c->nd = (float *)(base + offs[i++]);
    c->ni = (int64_t *)(base + offs[i++]);
    c->fws = base + offs[i++];
    c->kws = base + offs[i++];
    c->mws = base + offs[i++];
    *out = c;
    return PC_OK;
}

pc_status pc_model_ctx_get(pc_model *m, pctx **out) {
    pthread_mutex_lock(&m->lock);
    pctx *c = m->free_ctx;
    if (c) m->free_ctx = c->next;
    pthread_mutex_unlock(&m->lock);
    if (c) {
        *out = c;
        return PC_OK;
    }
    return ctx_create(m, out);
}

void pc_model_ctx_put(pc_model *m, pctx *c) {
    pthread_mutex_lock(&m->lock);
    c->next = m->free_ctx;
    m->free_ctx = c;
    pthread_mutex_unlock(&m->lock);
}

void pc_model_drop_contexts(pc_model *m) {
    pthread_mutex_lock(&m->lock);
    for (pctx *c = m->free_ctx; c;) {
        pctx *n = c->next;
        ctx_free(c);
        c = n;
    }
    m->free_ctx = NULL;
    pthread_mutex_unlock(&m->lock);
}

/* ----------------------------------------------------------------------------------------------
 * Fit
 * -------------------------------------------------------------------------------------------- */


static const char *source_name(const pc_fit_source *s, size_t i, char *buf, size_t size) {
    if (s->tiles) i = (size_t)s->tiles->item[i].img; /* a tile: its image */
    if (s->paths) return s->paths[i];
    snprintf(buf, size, "image #%zu", i);
    return buf;
}

static int report_progress(const pc_fit_options *o, const char *stage, int64_t done, int64_t total) {
    return o->progress ? o->progress(o->progress_user, stage, done, total) : 0;
}

/* What a fit holds at its peak beyond the program itself (docs/robustness.md, "Bounded memory"), in
 * bytes, as doubles (estimates; no overflow to worry about). Three phases follow each other: features
 * (backbone running, features stored or streamed, projection filled), coreset (greedy loop or random
 * draw) and gather (the bank built). Pages the program touches outside the library's own allocations
 * (code, OpenBLAS's per-thread buffers, image decoding, stacks) are covered by a fixed allowance. */
#define FIT_RUNTIME_ALLOWANCE (96.0 * 1048576.0)

typedef struct fit_memory {
    double fixed;    /* weights twice (folded for running, as loaded for saving) + the allowance */
    double features, coreset, gather;
    double peak;     /* fixed + the largest phase */
} fit_memory;

static fit_memory plan_memory(const pc_model *m, const pc_fit_options *o, double n_img, double hw, bool stream,
                              double fws_bytes, double jobs, const pc_fit_share *share) {
    fit_memory p;
    const double D = m->dim, P = o->projection_dim, f4 = 4, B = o->batch_size, S = m->crop;
    const double N = n_img * hw;                                          /* this process's rows */
    const double N_all = share ? (double)share->total_inputs * hw : N;    /* the whole fit's */
    double n_sel;
    if (o->sampler == PC_SAMPLER_NONE) n_sel = N_all;
    else if (o->coreset_size > 0) n_sel = PC_MIN((double)o->coreset_size, N_all);
    else n_sel = PC_MAX(1.0, floor(N_all * o->coreset_ratio));
    double dict = 0;
    for (size_t i = 0; m->bb_tensors && i < m->bb_tensors->count; i++)
        if (m->bb_tensors->tensors[i].data) dict += (double)m->bb_tensors->tensors[i].numel * f4;
    p.fixed = (double)pc_backbone_weight_bytes(m->bb) + dict + FIT_RUNTIME_ALLOWANCE;
    const bool approx = o->sampler == PC_SAMPLER_APPROX_GREEDY;
    const double all_feats = N * D * f4, idx = n_sel * 8;
    double acts = 0;
    for (int i = 0; i < m->n_layers; i++)
        acts += B * m->shapes[i].channels * m->shapes[i].height * m->shapes[i].width * f4;
    /* each batch in flight (fit --jobs) has its own backbone workspace, input, activations and buffers */
    p.features = jobs * ((double)pc_backbone_workspace_bytes(m->bb) + B * 3 * S * S * f4 + acts + fws_bytes +
                         (stream ? hw * D * f4 : 0)) +
                 (stream ? 0 : all_feats) + (approx ? N * P * f4 + D * P * f4 : 0);
    const double kept = stream ? 0 : all_feats; /* the features, while they are in memory */
    if (approx)
        p.coreset = kept + N * P * f4 + N * 8 /* distances, centres */ + n_sel * (P + 1) * f4 + idx;
    else if (o->sampler == PC_SAMPLER_RANDOM)
        p.coreset = kept + N_all * 8 /* permutation */ + idx;
    else
        p.coreset = all_feats + idx;
    if (share && !share->holds_bank) /* fit_shard.c: its picks' indices, 1,024 rows at a time to process 0 */
        p.gather = kept + 1024 * D * f4 + 3 * idx + (stream ? n_sel * 16 : 0);
    else if (share) /* process 0: the whole bank besides its own share */
        p.gather = kept + n_sel * D * f4 + n_sel * f4 + 3 * idx + 1024 * D * f4 + (stream ? n_sel * 16 : 0);
    else if (o->sampler == PC_SAMPLER_NONE) /* the features become the bank */
        p.gather = all_feats + n_sel * f4 + idx;
    else
        p.gather = kept + n_sel * D * f4 + n_sel * f4 + idx + (stream ? n_sel * 16 : 0);
    p.peak = p.fixed + PC_MAX(p.features, PC_MAX(p.coreset, p.gather));
    return p;
}

#define MIB(x) ((x) / 1048576.0)

/* Selected rows back from the temporary file into the bank, in file order (pairs of row, bank slot). */
typedef struct row_slot {
    int64_t row, slot;
} row_slot;

static int cmp_row_slot(const void *a, const void *b) {
    int64_t x = ((const row_slot *)a)->row, y = ((const row_slot *)b)->row;
    return (x > y) - (x < y);
}

/* The file holds each input image's rows at the image's index (hw rows each); the selection counts
 * only the usable images, img_of[u] being the input index of usable image u (NULL: all were usable). */
static pc_status gather_from_spill(float *bank, const int64_t *sel, int64_t n_sel, size_t D, size_t hw,
                                   const int64_t *img_of, pc_spill *sp) {
    row_slot *order = pc_malloc((size_t)n_sel * sizeof *order);
    if (!order) return pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for reading back %lld rows", (long long)n_sel);
    for (int64_t i = 0; i < n_sel; i++) {
        const int64_t r = sel[i];
        order[i] = (row_slot){img_of ? img_of[r / (int64_t)hw] * (int64_t)hw + r % (int64_t)hw : r, i};
    }
    qsort(order, (size_t)n_sel, sizeof *order, cmp_row_slot);
    pc_status st = PC_OK;
    const size_t row_bytes = D * sizeof(float);
    for (int64_t i = 0; i < n_sel && !st; i++)
        st = pc_spill_read(sp, (uint64_t)order[i].row * row_bytes, bank + (size_t)order[i].slot * D, row_bytes);
    pc_free(order);
    return st;
}

/* Feature extraction, a batch (`batch_size` images) per item of pc_jobs_run, `jobs` batches in flight
 * (fit --jobs), each on its share of the threads. Each image's rows go to the image's own slot (input
 * index x hw) of the features, the projection and the temporary file, so that which job ran it, and
 * when, cannot change a bit of the result; images that could not be used are squeezed out after the
 * loop. The batches run in rounds of `jobs`: between rounds the calling thread reports skipped images
 * and progress in image order. */
typedef struct fit_worker {
    pc_backbone *bb; /* the model's backbone (worker 0) or a view on it (own workspace) */
    float *batch_in; /* B x 3 x S x S */
    float *acts[4];  /* B x layer outputs */
    float *fbuf;     /* hw x D, when streaming */
    void *fws;
    int busy;
    pc_tile_cache tc; /* tiling: the batch's images, decoded and scaled */
} fit_worker;

typedef struct fit_extract {
    pc_model *m;
    const pc_fit_source *src;
    size_t n_in, B, S, D, hw, P;
    bool stream, approx;
    float *feats, *pj;
    const float *proj;
    pc_spill *spill;
    fit_worker *w;
    int32_t n_workers;
    pthread_mutex_t lock;
    size_t round0;      /* first batch of the current round */
    pc_status *errs;    /* (jobs x B) per image of the round */
    char (*msgs)[256];  /* (jobs x B) */
    uint8_t *usable;    /* n_in: 1 when the image's features were computed */
    int32_t *sizes;     /* n_in x 2: each usable image's width and height (for a region of interest) */
} fit_extract;

static void fit_worker_free(fit_worker *w, bool own_bb) {
    if (own_bb) pc_backbone_free(w->bb);
    pc_free(w->batch_in);
    for (int l = 0; l < 4; l++) pc_free(w->acts[l]);
    pc_free(w->fbuf);
    pc_free(w->fws);
    pc_tile_cache_free(&w->tc);
    memset(w, 0, sizeof *w);
}

/* bb: the model's backbone for worker 0, NULL to make a view. */
static pc_status fit_worker_init(fit_worker *w, const fit_extract *x, pc_backbone *bb) {
    const pc_model *m = x->m;
    pc_status st = PC_OK;
    if (bb) w->bb = bb;
    else st = pc_backbone_view(m->bb, &w->bb);
    if (!st && !bb) st = pc_backbone_reserve(w->bb, (int32_t)x->B, m->crop, m->crop);
    if (st) return st;
    w->batch_in = pc_malloc(x->B * 3 * x->S * x->S * sizeof(float));
    w->fws = pc_malloc(pc_features_workspace_size(m->plan));
    bool ok = w->batch_in && w->fws;
    if (x->stream) ok = ok && (w->fbuf = pc_malloc(x->hw * x->D * sizeof(float)));
    for (int i = 0; i < m->n_layers; i++) {
        size_t per = (size_t)m->shapes[i].channels * m->shapes[i].height * m->shapes[i].width;
        if (!(w->acts[m->layers[i] - 1] = pc_malloc(x->B * per * sizeof(float)))) ok = false;
    }
    if (!ok)
        return pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate %.1f MB for a batch of %zu images",
                       (double)(x->B * 3 * x->S * x->S * sizeof(float)) / 1e6, x->B);
    return PC_OK;
}

/* One image's rows of the coreset projection, on one thread. OpenBLAS's SGEMM gives rows that depend
 * in their last bits on how many threads one call runs on (measured: 784 x 1024 x 128 differs between
 * 1 and 2 threads), and near-ties in the greedy coreset then pick differently; one thread always makes
 * the projection, hence the bank, the same for any jobs and threads count. Its cost is small beside the
 * backbone's (a 0.2 GFLOP product per 224 x 224 image). */
static void project_one_thread(float *pj, const float *f, int64_t rows, int32_t dim, const float *proj, int32_t p) {
#ifdef _OPENMP
    const int nt = omp_get_max_threads();
    if (nt != 1) omp_set_num_threads(1);
#endif
    pc_coreset_project(pj, f, rows, dim, proj, p);
#ifdef _OPENMP
    if (nt != 1) omp_set_num_threads(nt);
#endif
}

static pc_status fit_extract_batch(void *user, size_t item) {
    fit_extract *x = user;
    pc_threads_apply(); /* this job's share (pc_jobs_run set it) reaches OpenMP and OpenBLAS */
    const pc_model *m = x->m;
    const size_t b0 = (x->round0 + item) * x->B, nb = PC_MIN(x->B, x->n_in - b0);
    const size_t S = x->S, D = x->D, hw = x->hw, P = x->P;
    pc_status *errs = x->errs + item * x->B;
    char (*msgs)[256] = x->msgs + item * x->B;
    fit_worker *w = NULL;
    pthread_mutex_lock(&x->lock);
    for (int32_t i = 0; i < x->n_workers && !w; i++)
        if (!x->w[i].busy) w = &x->w[i], w->busy = 1;
    pthread_mutex_unlock(&x->lock);
    if (!w) return pc_fail(PC_ERR_INTERNAL, "fit: more batches in flight than workers");

    /* tiling: the batch's images decoded and scaled once (in parallel), then each tile's input */
    const pc_tile_items *ti = x->src->tiles;
    if (ti) {
        pc_status s = pc_tile_cache_prepare(&w->tc, ti, x->src->paths, x->src->images, b0, nb);
        if (s) { /* out of memory: the fit fails (an image that cannot be decoded is in its entry) */
            pthread_mutex_lock(&x->lock);
            w->busy = 0;
            pthread_mutex_unlock(&x->lock);
            return s;
        }
        for (size_t j = 0; j < nb; j++) {
            const pc_tile_item *t = &ti->item[b0 + j];
            const pc_tile_cache_entry *e = pc_tile_cache_find(&w->tc, t->img);
            errs[j] = !e ? pc_fail(PC_ERR_INTERNAL, "fit: tile of image %d not prepared", (int)t->img) : e->st;
            if (errs[j]) snprintf(msgs[j], sizeof msgs[j], "%s", e ? e->msg : pc_last_error());
            else pc_tile_input(w->batch_in + j * 3 * S * S, e->scaled.data, e->scaled.width, t->x, t->y, m->crop);
        }
    }
    /* decoding and preprocessing run in parallel over the batch */
    const size_t n_dec = ti ? 0 : nb;
#pragma omp parallel for schedule(dynamic, 1)
    for (size_t j = 0; j < n_dec; j++) {
        pc_image tmp = {0};
        const pc_image *img;
        pc_status s = PC_OK;
        if (x->src->paths) {
            s = pc_image_load(x->src->paths[b0 + j], &tmp);
            img = &tmp;
        } else {
            img = &x->src->images[b0 + j];
        }
        if (!s) s = pc_preprocess(w->batch_in + j * 3 * S * S, img, m->resize, m->crop, NULL);
        if (!s) x->sizes[2 * (b0 + j)] = img->width, x->sizes[2 * (b0 + j) + 1] = img->height;
        errs[j] = s;
        if (s) snprintf(msgs[j], sizeof msgs[j], "%s", pc_last_error());
        pc_image_free(&tmp);
    }
    /* the usable ones to the front of the batch */
    size_t good = 0, orig[256];
    for (size_t j = 0; j < nb; j++) {
        if (errs[j]) continue;
        if (good != j) memmove(w->batch_in + good * 3 * S * S, w->batch_in + j * 3 * S * S, 3 * S * S * sizeof(float));
        orig[good++] = b0 + j;
    }
    pc_status st = PC_OK;
    if (good) st = pc_backbone_forward(w->bb, w->batch_in, (int32_t)good, m->crop, m->crop, m->layer_mask, w->acts);
    for (size_t j = 0; j < good && !st; j++) {
        const float *per_img[PC_MAX_LAYERS];
        for (int i = 0; i < m->n_layers; i++) {
            size_t per = (size_t)m->shapes[i].channels * m->shapes[i].height * m->shapes[i].width;
            per_img[i] = w->acts[m->layers[i] - 1] + j * per;
        }
        const size_t r0 = orig[j] * hw; /* the image's slot */
        float *f = x->stream ? w->fbuf : x->feats + r0 * D;
        pc_features_compute(f, per_img, m->plan, w->fws);
        if (x->approx) project_one_thread(x->pj + r0 * P, f, (int64_t)hw, (int32_t)D, x->proj, (int32_t)P);
        if (x->stream) st = pc_spill_write(x->spill, (uint64_t)r0 * D * sizeof(float), f, hw * D * sizeof(float));
        x->usable[orig[j]] = 1;
    }
    pthread_mutex_lock(&x->lock);
    w->busy = 0;
    pthread_mutex_unlock(&x->lock);
    return st;
}

/* Feature extraction: the patch features of n_in inputs with the model's backbone and settings (m->bb,
 * m->plan and the grid in place), into ff: in memory or in a temporary file (opt->max_memory), with the
 * coreset projection of each image's rows when the sampler is the approximate greedy one; the usable
 * inputs' rows to the front. Reports unusable inputs and progress through opt. Fit and update share it. */
pc_status pc_model_extract(pc_model *m, const pc_fit_options *opt, const pc_fit_source *src, size_t n_in,
                           pc_fit_feats *ff) {
    return pc_model_extract_part(m, opt, src, n_in, NULL, ff);
}

pc_status pc_model_extract_part(pc_model *m, const pc_fit_options *opt, const pc_fit_source *src, size_t n_in,
                                const pc_fit_share *share, pc_fit_feats *ff) {
    const bool allow_none = share != NULL;
    memset(ff, 0, sizeof *ff);
    ff->spill.fd = -1;
    float *feats = NULL, *pj = NULL, *proj = NULL;
    int64_t *img_of = NULL;
    char namebuf[64];
    pc_status st = PC_OK;
    fit_extract x = {.m = m, .src = src, .n_in = n_in};
    pthread_mutex_init(&x.lock, NULL);
    const size_t B = (size_t)opt->batch_size, D = (size_t)m->dim;
    const size_t hw = (size_t)m->grid_h * m->grid_w;
    const bool approx = m->sampler == PC_SAMPLER_APPROX_GREEDY;
    const size_t P = (size_t)opt->projection_dim;
    /* With a budget, the features go to a temporary file (sampler none excepted: there the features are
     * the bank, so they have to be in memory anyway). */
    const bool stream = opt->max_memory > 0 && m->sampler != PC_SAMPLER_NONE;
    /* batches in flight: never more than there are batches */
    const size_t n_batches = (n_in + B - 1) / B;
    int32_t jobs = opt->jobs > 0 ? opt->jobs : pc_default_num_jobs(0);
    if ((size_t)jobs > n_batches) jobs = (int32_t)n_batches;
    size_t rows, bytes, pj_floats;
    if (!pc_mul_size(n_in, hw, &rows) || !pc_mul3_size(rows, D, sizeof(float), &bytes) ||
        !pc_mul_size(rows, P, &pj_floats)) {
        st = pc_fail(PC_ERR_TOO_LARGE, "fit: %zu images x %zu patches x %zu dims overflows", n_in, hw, D);
        goto done;
    }
    st = pc_backbone_reserve(m->bb, (int32_t)B, m->crop, m->crop);
    if (st) goto done;
    if (opt->max_memory > 0) {
        fit_memory p = plan_memory(m, opt, (double)n_in, (double)hw, stream, (double)pc_features_workspace_size(m->plan),
                                   (double)jobs, share);
        if (p.peak > (double)opt->max_memory) {
            st = pc_fail(PC_ERR_TOO_LARGE,
                         "fit: the memory budget of %.0f MiB is too small: %zu %s need about %.0f MiB (weights and "
                         "program %.0f, then the largest of: features %.0f with batch %zu x %d jobs, coreset %.0f, "
                         "memory bank %.0f); a budget of at least %.0f MiB, fewer images, fewer jobs or a smaller "
                         "coreset would do",
                         MIB((double)opt->max_memory), n_in, src->tiles ? "tiles" : "images", ceil(MIB(p.peak)),
                         MIB(p.fixed), MIB(p.features), B,
                         (int)jobs, MIB(p.coreset), MIB(p.gather), ceil(MIB(p.peak)));
            goto done;
        }
    }
    if (stream) {
        st = pc_spill_open(&ff->spill, (uint64_t)bytes);
        if (st) goto done;
    } else {
        feats = pc_malloc(bytes);
        if (!feats) {
            st = pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate %.1f MB for the training features", (double)bytes / 1e6);
            goto done;
        }
    }
    if (approx) {
        /* the projection, so that each image's rows are projected as they are made (the same chunks in
         * memory and streaming: identical results, see pc_coreset_project) */
        pj = pc_malloc(pj_floats * sizeof(float));
        proj = pc_malloc(D * P * sizeof(float));
        if (!pj || !proj) {
            st = pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate %.1f MB for the coreset projection",
                         (double)pj_floats * 4 / 1e6);
            goto done;
        }
        if (opt->coreset_projection) { /* (P x D) nn.Linear weight -> (D x P) */
            for (size_t r = 0; r < P; r++)
                for (size_t c = 0; c < D; c++) proj[c * P + r] = opt->coreset_projection[r * D + c];
        } else {
            pc_coreset_projection(proj, m->seed, (int32_t)D, (int32_t)P);
        }
    }

    /* Features: rounds of `jobs` batches, each batch's images decoded and preprocessed in parallel, run
     * through the backbone together and turned into patch features in their slots. */
    x.B = B, x.S = (size_t)m->crop, x.D = D, x.hw = hw, x.P = P;
    x.stream = stream, x.approx = approx;
    x.feats = feats, x.pj = pj, x.proj = proj, x.spill = &ff->spill;
    x.w = pc_calloc((size_t)jobs, sizeof *x.w);
    x.errs = pc_calloc((size_t)jobs * B, sizeof *x.errs);
    x.msgs = pc_calloc((size_t)jobs * B, sizeof *x.msgs);
    x.usable = pc_calloc(n_in, 1);
    x.sizes = pc_calloc(n_in * 2, sizeof *x.sizes);
    if (!x.w || !x.errs || !x.msgs || !x.usable || !x.sizes) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int32_t i = 0; i < jobs && !st; i++, x.n_workers++) st = fit_worker_init(&x.w[i], &x, i ? NULL : m->bb);
    if (st) goto done;
    const int32_t threads_each = pc_job_threads(0, jobs);
    /* A last, partial batch runs in a round of its own, on every thread, as jobs = 1 runs it: a batch
     * with fewer images than threads spreads each convolution over the threads (nn.c), whose SGEMMs
     * may then differ in the last bit from a smaller team's. Full batches of at least as many images
     * as threads run each image on one thread in every case. */
    const size_t n_full = n_in / B;
    for (size_t r0 = 0, nr; r0 < n_batches; r0 += nr) {
        nr = r0 < n_full ? PC_MIN((size_t)jobs, n_full - r0) : 1;
        x.round0 = r0;
        st = pc_jobs_run(nr > 1 ? jobs : 1, threads_each, nr, fit_extract_batch, &x);
        pc_threads_apply(); /* this thread's own count again (it ran a job on its share) */
        if (st) goto done;
        /* in image order, from this thread: the images that could not be used, then progress */
        for (size_t c = 0; c < nr; c++) {
            const size_t b0 = (r0 + c) * B, nb = PC_MIN(B, n_in - b0);
            for (size_t j = 0; j < nb; j++) {
                if (x.errs[c * B + j] && src->tiles) { /* a tiled image: once, not once per tile */
                    uint8_t *rep = &src->tiles->reported[src->tiles->item[b0 + j].img];
                    if (*rep) continue;
                    *rep = 1;
                }
                if (x.errs[c * B + j] && opt->on_image_error)
                    opt->on_image_error(opt->on_image_error_user, source_name(src, b0 + j, namebuf, sizeof namebuf),
                                        x.errs[c * B + j], x.msgs[c * B + j]);
            }
        }
        if (report_progress(opt, "features", (int64_t)PC_MIN(n_in, (r0 + nr) * B), (int64_t)n_in)) {
            st = pc_fail(PC_ERR_CANCELLED, "fit: cancelled");
            goto done;
        }
    }
    size_t used = 0;
    for (size_t i = 0; i < n_in; i++) used += x.usable[i];
    if (used == 0 && !allow_none) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: none of the %zu training images could be used", n_in);
        goto done;
    }
    if (used < n_in && used > 0) {
        /* the usable images' rows to the front, in order (each moves down or stays) */
        img_of = pc_malloc(used * sizeof *img_of);
        if (!img_of) {
            st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
            goto done;
        }
        for (size_t i = 0, u = 0; i < n_in; i++) {
            if (!x.usable[i]) continue;
            img_of[u] = (int64_t)i;
            if (u != i && feats) memmove(feats + u * hw * D, feats + i * hw * D, hw * D * sizeof(float));
            if (u != i && pj) memmove(pj + u * hw * P, pj + i * hw * P, hw * P * sizeof(float));
            u++;
        }
    }
    /* what only the features needed */
    for (int32_t i = 0; i < x.n_workers; i++) fit_worker_free(&x.w[i], i > 0);
    x.n_workers = 0;
    pc_free(proj), proj = NULL;
    pc_backbone_release_workspace(m->bb);
    ff->feats = feats, ff->pj = pj, ff->img_of = img_of, ff->sizes = x.sizes;
    feats = pj = NULL, img_of = NULL, x.sizes = NULL;
    ff->used = used, ff->hw = hw, ff->D = D, ff->P = P;
    ff->stream = stream, ff->approx = approx;

done:
    for (int32_t i = 0; i < x.n_workers; i++) fit_worker_free(&x.w[i], i > 0);
    pc_free(x.w);
    pc_free(x.errs);
    pc_free(x.msgs);
    pc_free(x.usable);
    pc_free(x.sizes);
    pthread_mutex_destroy(&x.lock);
    pc_free(feats);
    pc_free(pj);
    pc_free(proj);
    pc_free(img_of);
    if (st) pc_fit_feats_free(ff);
    return st;
}

void pc_fit_feats_free(pc_fit_feats *ff) {
    pc_spill_close(&ff->spill);
    pc_free(ff->feats);
    pc_free(ff->pj);
    pc_free(ff->img_of);
    pc_free(ff->sizes);
    memset(ff, 0, sizeof *ff);
    ff->spill.fd = -1;
}

pc_status pc_fit_feats_gather(pc_fit_feats *ff, const int64_t *sel, int64_t n_sel, float *out) {
    if (ff->stream) return gather_from_spill(out, sel, n_sel, ff->D, ff->hw, ff->img_of, &ff->spill);
    if (!ff->feats) return pc_fail(PC_ERR_INTERNAL, "gather: no features");
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n_sel; i++)
        memcpy(out + (size_t)i * ff->D, ff->feats + (size_t)sel[i] * ff->D, ff->D * sizeof(float));
    return PC_OK;
}

void pc_model_backbone_tensors(const pc_model *m, const pc_tensor **t, size_t *n) {
    *t = m->bb_tensors ? m->bb_tensors->tensors : m->bb_views;
    *n = m->bb_tensors ? m->bb_tensors->count : m->n_bb_views;
}

pc_status pc_fit_starts(const pc_fit_options *opt, uint64_t seed, int64_t N, int64_t **out, int32_t *n_out) {
    /* start points: the caller's (to reproduce a reference run exactly) or drawn from the seed */
    int32_t ns = (int32_t)PC_MIN((int64_t)opt->n_starts, N);
    int64_t *starts = pc_malloc((size_t)(ns > 0 ? ns : 1) * sizeof(int64_t));
    *out = NULL, *n_out = 0;
    if (!starts) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    if (opt->coreset_starts) {
        for (int32_t i = 0; i < ns; i++) {
            if (opt->coreset_starts[i] < 0 || opt->coreset_starts[i] >= N) {
                pc_free(starts);
                return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: coreset start index %lld out of range",
                               (long long)opt->coreset_starts[i]);
            }
            starts[i] = opt->coreset_starts[i];
        }
    } else if (opt->n_starts != PC_CORESET_STARTS) {
        /* pc_coreset_starts draws PC_CORESET_STARTS; a different count takes the first ones (as before) */
        int64_t drawn[PC_CORESET_STARTS];
        int32_t nd = pc_coreset_starts(drawn, seed, N);
        ns = PC_MIN(ns, nd);
        memcpy(starts, drawn, (size_t)ns * sizeof(int64_t));
    } else {
        ns = pc_coreset_starts(starts, seed, N);
    }
    *out = starts, *n_out = ns;
    return PC_OK;
}

int64_t pc_fit_bank_size(const pc_model *m, const pc_fit_options *opt, int64_t N) {
    if (m->sampler == PC_SAMPLER_NONE) return N;
    if (opt->coreset_size > 0) return PC_MIN(opt->coreset_size, N);
    return pc_coreset_size(N, opt->coreset_ratio);
}

pc_status pc_model_finish_bank(pc_model *m) {
    m->bank = m->bank_owned;
    if (!m->bank_norms && !(m->bank_norms = pc_malloc((size_t)(m->bank_n > 0 ? m->bank_n : 1) * sizeof(float))))
        return pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate the memory bank");
    if (m->sampler == PC_SAMPLER_NONE) m->coverage_radius = 0; /* every patch is in the bank */
    pc_knn_norms(m->bank_norms, m->bank, m->bank_n, (int32_t)m->dim);
    return pc_model_build_index(m);
}

/* The memory bank from extracted features (METHOD.md §4): the subsampling, the selected rows gathered,
 * their norms and the kNN index. Takes what it needs from ff (the features become the bank for
 * sampler none). */
static pc_status fit_bank(pc_model *m, const pc_fit_options *opt, pc_fit_feats *ff) {
    const size_t D = ff->D, hw = ff->hw, P = ff->P;
    const bool approx = ff->approx, stream = ff->stream;
    int64_t *starts = NULL;
    pc_status st = PC_OK;

    /* Memory bank. With a region of interest only the rows inside it are candidates (docs/roi.md):
     * `rows` lists them (full row indices, increasing), the projection is compacted to them, the
     * samplers choose among them and their choice is translated back to full rows. */
    int64_t *rows = NULL, N = (int64_t)(ff->used * hw);
    if (m->roi.data) {
        st = pc_roi_fit_rows(&rows, &N, &m->roi, ff->sizes, ff->img_of, ff->used, m->resize, m->crop, m->grid_h,
                             m->grid_w);
        if (st) goto done;
        for (int64_t i = 0; ff->pj && i < N; i++) /* rows[i] >= i: each row moves down or stays */
            memmove(ff->pj + (size_t)i * P, ff->pj + (size_t)rows[i] * P, P * sizeof(float));
    }
    const int64_t n_sel = pc_fit_bank_size(m, opt, N);
    m->n_train_images = (int32_t)ff->used;
    m->n_patches_total = N;
    m->usable_src = pc_malloc(ff->used * sizeof *m->usable_src);
    if (!m->usable_src) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (size_t u = 0; u < ff->used; u++) m->usable_src[u] = ff->img_of ? ff->img_of[u] : (int64_t)u;
    m->coreset_idx = pc_malloc((size_t)n_sel * sizeof(int64_t));
    if (!m->coreset_idx) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    if (approx) {
        int32_t ns;
        if ((st = pc_fit_starts(opt, m->seed, N, &starts, &ns))) goto done;
        float radius = NAN;
        st = pc_coreset_greedy_projected_radius(m->coreset_idx, ff->pj, N, (int32_t)P, starts, ns, n_sel, opt->progress,
                                                opt->progress_user, &radius);
        /* a caller-supplied projection is not recorded: its radius could not be compared later */
        m->coverage_radius = opt->coreset_projection ? NAN : radius;
        pc_free(ff->pj), ff->pj = NULL;
    } else {
        st = pc_coreset_select(m->coreset_idx, m->sampler, ff->feats, N, (int32_t)D, n_sel, m->seed, opt->progress,
                               opt->progress_user);
    }
    if (st) goto done;
    for (int64_t i = 0; rows && i < n_sel; i++) m->coreset_idx[i] = rows[m->coreset_idx[i]];
    m->bank_norms = pc_malloc((size_t)n_sel * sizeof(float));
    if (m->sampler == PC_SAMPLER_NONE && !rows) {
        m->bank_owned = ff->feats; /* every row, in order: the features are the bank */
        ff->feats = NULL;
    } else {
        m->bank_owned = pc_malloc((size_t)n_sel * D * sizeof(float));
    }
    if (!m->bank_owned || !m->bank_norms) {
        st = pc_fail(PC_ERR_NO_MEMORY, "fit: cannot allocate the memory bank");
        goto done;
    }
    if (stream) {
        st = gather_from_spill(m->bank_owned, m->coreset_idx, n_sel, D, hw, ff->img_of, &ff->spill);
        if (st) goto done;
    } else if (ff->feats) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n_sel; i++)
            memcpy(m->bank_owned + (size_t)i * D, ff->feats + (size_t)m->coreset_idx[i] * D, D * sizeof(float));
    }
    m->bank_n = n_sel;
    st = pc_model_finish_bank(m);

done:
    pc_free(starts);
    pc_free(rows);
    return st;
}

pc_status pc_model_fit_setup(const pc_fit_options *opt, pc_model **out) {
    *out = NULL;
    pc_status st = check_options(opt);
    if (st) return st;
    st = precision_check(opt->precision, "fit: precision");
    if (st) return st;
    if (opt->roi && opt->tiling.tile > 0)
        return pc_fail(PC_ERR_UNSUPPORTED, "fit: a region of interest with tiling is not available yet");
    if (opt->roi && (st = pc_roi_check(opt->roi, "fit: the region of interest"))) return st;

    pc_model *m = pc_model_new_empty();
    if (!m) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    m->arch = opt->arch;
    memcpy(m->layers, opt->layers, sizeof m->layers);
    m->n_layers = opt->n_layers;
    m->layer_mask = mask_of(m->layers, m->n_layers);
    m->resize = opt->resize, m->crop = opt->crop, m->patch = opt->patch;
    m->pre_dim = opt->pre_dim, m->dim = opt->dim, m->k = opt->k;
    m->projection_dim = opt->projection_dim, m->n_starts = opt->n_starts, m->reweight_b = opt->reweight_b;
    m->sampler = opt->sampler, m->coreset_ratio = opt->coreset_ratio;
    m->coreset_size_requested = opt->coreset_size, m->seed = opt->seed;
    m->bn_stats = opt->bn_stats;
    m->precision = opt->precision;
    if (opt->tiling.tile) { /* docs/tiles.md: a tile is one backbone input, no Resize or CenterCrop */
        m->tiling = opt->tiling;
        m->resize = m->crop = opt->tiling.tile;
    }
    if (opt->roi) { /* kept as 0/255 at its own size */
        const size_t n = (size_t)opt->roi->width * (size_t)opt->roi->height;
        if (!(m->roi_owned = pc_malloc(n))) {
            pc_model_free(m);
            return pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for the region of interest");
        }
        for (size_t i = 0; i < n; i++) m->roi_owned[i] = opt->roi->data[i] ? 255 : 0;
        m->roi = (pc_image){opt->roi->width, opt->roi->height, 1, m->roi_owned};
    }
    pc_backbone_options bo = {.bn_stats = m->bn_stats, .warmup_size = m->crop, .precision = m->precision};
    st = pc_backbone_load_with(opt->weights, opt->arch, m->layer_mask, &bo, &m->bb);
    if (st) goto done;
    m->arch = pc_backbone_arch(m->bb);
    snprintf(m->weights_source, sizeof m->weights_source, "%s", pc_backbone_path(m->bb));
    {
        int deepest = deepest_layer(m);
        st = pc_weights_load(pc_backbone_path(m->bb), want_backbone_tensor, &deepest, &m->bb_tensors);
        if (st) goto done;
    }
    st = model_plan(m);
done:
    if (st) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

static pc_status fit_common(const pc_fit_options *opt, const pc_fit_source *src, size_t n_in, pc_model **out) {
    pc_threads_apply();
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: out is NULL");
    *out = NULL;
    if (!opt) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: options are NULL");
    if (n_in == 0) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: no training images given");
    if (n_in > (size_t)INT32_MAX) return pc_fail(PC_ERR_TOO_LARGE, "fit: too many images");
    pc_model *m = NULL;
    pc_status st = pc_model_fit_setup(opt, &m);
    if (st) return st;

    pc_fit_feats ff = {.spill = {.fd = -1}};
    pc_tile_items ti = {0};
    pc_fit_source tsrc;
    if (m->tiling.tile) { /* every tile of every image is one input */
        st = pc_tile_items_build(opt, src->paths, src->images, n_in, &ti);
        if (st) goto done;
        tsrc = *src;
        tsrc.tiles = &ti;
        src = &tsrc;
        n_in = ti.n;
    }
    st = pc_model_extract(m, opt, src, n_in, &ff);
    if (!st) st = fit_bank(m, opt, &ff);
    if (!st && m->tiling.tile) {
        /* training images, not tiles: the images with a tile in the features (tiles are image-major) */
        int32_t n_img = 0;
        for (int32_t u = 0; u < m->n_train_images; u++) {
            const int64_t img = ti.item[m->usable_src[u]].img;
            if (n_img == 0 || m->usable_src[n_img - 1] != img) m->usable_src[n_img++] = img;
        }
        m->n_train_images = n_img;
    }

done:
    pc_tile_items_free(&ti);
    pc_fit_feats_free(&ff);
    if (st) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

pc_status pc_model_fit(const pc_fit_options *opt, const char *const *paths, size_t n_paths, pc_model **out) {
    if (!paths && n_paths) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: paths is NULL");
    pc_fit_source s = {.paths = paths};
    return fit_common(opt, &s, n_paths, out);
}

pc_status pc_model_fit_images(const pc_fit_options *opt, const pc_image *images, size_t n_images, pc_model **out) {
    if (!images && n_images) return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: images is NULL");
    pc_fit_source s = {.images = images};
    return fit_common(opt, &s, n_images, out);
}

/* Member i's progress, its stages prefixed "member i/n: ". */
typedef struct member_progress {
    pc_progress_fn fn;
    void *user;
    int32_t i, n;
} member_progress;

static int member_progress_fn(void *user, const char *stage, int64_t done, int64_t total) {
    const member_progress *p = user;
    char buf[96];
    snprintf(buf, sizeof buf, "member %d/%d: %s", (int)p->i + 1, (int)p->n, stage);
    return p->fn(p->user, buf, done, total);
}

pc_status pc_model_fit_ensemble(const pc_fit_options *members, int32_t n_members, const char *const *paths,
                                size_t n_paths, pc_model **out) {
    pc_threads_apply();
    pc_clear_error();
    if (!out || !members || (!paths && n_paths))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: NULL members, paths or out");
    *out = NULL;
    if (n_members == 1) return pc_model_fit(&members[0], paths, n_paths, out);
    if (n_members < 2 || n_members > PC_ENSEMBLE_MAX_MEMBERS)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: an ensemble has 2..%d members, not %d", PC_ENSEMBLE_MAX_MEMBERS,
                       (int)n_members);
    for (int32_t i = 0; i < n_members; i++) {
        if (members[i].roi)
            return pc_fail(PC_ERR_UNSUPPORTED, "fit: member %d: a region of interest is not available in an ensemble "
                           "(fit a single model with it)", (int)i + 1);
        if (members[i].reweight_b > 0)
            return pc_fail(PC_ERR_UNSUPPORTED, "fit: member %d: Eq. 7 reweighting (reweight_b) is not available in an "
                           "ensemble", (int)i + 1);
        pc_status st = check_options(&members[i]);
        if (st) return pc_fail_context(st, "member %d", (int)i + 1);
        if (members[i].tiling.tile)
            return pc_fail(PC_ERR_UNSUPPORTED, "fit: member %d: tiling is not available in an ensemble", (int)i + 1);
    }
    pc_model *m = pc_model_new_empty();
    if (!m || !(m->members = pc_calloc((size_t)n_members, sizeof *m->members))) {
        pc_model_free(m);
        return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    }
    pc_status st = PC_OK;
    for (int32_t i = 0; i < n_members && !st; i++) {
        pc_fit_options o = members[i];
        member_progress mp = {members[0].progress, members[0].progress_user, i, n_members};
        o.progress = mp.fn ? member_progress_fn : NULL;
        o.progress_user = &mp;
        o.on_image_error = members[0].on_image_error;
        o.on_image_error_user = members[0].on_image_error_user;
        /* an image that cannot be used is reported once, by the first member */
        if (i > 0) o.on_image_error = NULL;
        st = pc_model_fit(&o, paths, n_paths, &m->members[i]);
        if (st) pc_fail_context(st, "member %d (%s)", (int)i + 1, pc_arch_name(members[i].arch));
        else m->n_members = i + 1;
    }
    if (!st) st = pc_ensemble_fit_stats(&m->ens, m->members, n_members, paths, members[0].progress,
                                        members[0].progress_user);
    if (st) {
        pc_model_free(m);
        return st;
    }
    *out = m;
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Predict
 * -------------------------------------------------------------------------------------------- */

/* A prediction's region of interest: the mask (NULL: the whole image), whether it is the model's own
 * (its inspect mask is then cached per image size in the context) and its name for messages. */
typedef struct roi_sel {
    const pc_image *roi;
    int from_model;
    const char *what;
} roi_sel;

/* The prediction pipeline up to patch scores, in context c: c->feats (HW x D), c->dist/idx (HW x k),
 * c->pscores (HW). With a region of interest (r and r->roi not NULL) only the *n_scored patches inside
 * it are scored: their rows are compacted to the front of c->feats (in the order of c->roi.cells) and
 * c->dist, c->idx, c->pscores hold their results in that order; otherwise *n_scored = HW. */
static pc_status predict_core(pc_model *m, pctx *c, const pc_image *rgb, const float *input, pc_geometry *geometry,
                              const roi_sel *r, int64_t *n_scored) {
    int64_t hw = (int64_t)m->grid_h * m->grid_w;
    if (n_scored) *n_scored = hw;
    /* deadline checks (pc_set_deadline_local) between the stages: the forward pass and the kNN search
     * are the long ones */
    pc_status st = pc_deadline_check("before preprocessing");
    if (!st && !input) {
        st = pc_preprocess_cached(c->input, rgb, m->resize, m->crop, geometry, &c->rc);
        input = c->input;
    }
    if (!st) st = pc_deadline_check("before the backbone");
    if (!st) st = pc_backbone_forward(c->bb, input, 1, m->crop, m->crop, m->layer_mask, c->acts);
    if (!st) st = pc_deadline_check("after the backbone");
    if (st) return st;
    const float *per_img[PC_MAX_LAYERS];
    for (int i = 0; i < m->n_layers; i++) per_img[i] = c->acts[m->layers[i] - 1];
    pc_features_compute(c->feats, per_img, m->plan, c->fws);
    if (r && r->roi) {
        if (!rgb) return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: a region of interest needs the image");
        st = pc_roi_cache_update(&c->roi, r->roi, r->from_model, r->what, rgb->width, rgb->height, m->resize, m->crop,
                                 m->grid_h, m->grid_w);
        if (st) return st;
        const size_t D = (size_t)m->dim;
        for (int64_t i = 0; i < c->roi.n_cells; i++) /* cells[i] >= i: each row moves down or stays */
            if (c->roi.cells[i] != i)
                memcpy(c->feats + (size_t)i * D, c->feats + (size_t)c->roi.cells[i] * D, D * sizeof(float));
        hw = c->roi.n_cells;
        *n_scored = hw;
    }
    if (m->kix)
        st = pc_knn_index_search(m->kix, c->dist, c->idx, c->feats, hw, m->k, c->kws, c->kws_size, NULL);
    else
        st = pc_knn_search(c->dist, c->idx, c->feats, hw, m->bank, m->bank_norms, m->bank_n, m->dim, m->k, c->kws,
                           c->kws_size);
    if (!st) st = pc_deadline_check("after the kNN search");
    if (!st) pc_patch_scores(c->pscores, c->dist, hw, m->k);
    return st;
}

pc_status pc_model_predict_core(pc_model *m, pctx *c, const pc_image *rgb, const float *input, pc_geometry *geometry) {
    return predict_core(m, c, rgb, input, geometry, NULL, NULL);
}

/* A tiled prediction with tiling t in a pooled context. */
static pc_status predict_tiled(pc_model *m, const pc_image *rgb, const pc_tiling *t, float *score, float *map,
                               pc_geometry *geometry) {
    pctx *c;
    pc_status st = pc_model_ctx_get(m, &c);
    if (st) return st;
    st = pc_tile_predict(m, c, rgb, t, score, map, geometry);
    pc_model_ctx_put(m, c);
    return st;
}

/* The model's own region of interest for a prediction (none when it has none). */
static roi_sel model_roi(const pc_model *m) {
    return (roi_sel){m->roi.data ? &m->roi : NULL, 1, "predict: the model's region of interest"};
}

/* pc_model_predict_raw with region of interest r. With one, the image score and Eq. 7 take the inside
 * patches only, the outside patches score 0 and the map is 0 outside the crop's inspect mask. */
static pc_status predict_raw_roi(pc_model *m, const pc_image *rgb, const float *input, float *keep, const roi_sel *r,
                                 float *score, float *map, pc_geometry *geometry) {
    if (m->tiling.tile && !input && !keep) return predict_tiled(m, rgb, &m->tiling, score, map, geometry);
    pctx *c;
    pc_status st = pc_model_ctx_get(m, &c);
    if (st) return st;
    const int64_t hw = (int64_t)m->grid_h * m->grid_w;
    const int32_t D = m->dim;
    int64_t n = hw; /* patches scored */
    st = predict_core(m, c, rgb, input, geometry, r, &n);
    if (!st && keep && !input) memcpy(keep, c->input, 3 * (size_t)m->crop * (size_t)m->crop * sizeof(float));
    if (!st) {
        int64_t arg;
        float s = pc_image_score(c->pscores, n, &arg);
        if (m->reweight_b > 0) {
            /* Eq. 7: N_b(m*) are the b nearest bank entries of m*, the nearest bank entry of the
             * patch attaining the maximum. */
            const float *m_test = c->feats + (size_t)arg * D;
            const float *m_star = m->bank + (size_t)c->idx[(size_t)arg * m->k] * D;
            int32_t b = (int32_t)PC_MIN((int64_t)m->reweight_b, m->bank_n);
            st = pc_knn_search(c->nd, c->ni, m_star, 1, m->bank, m->bank_norms, m->bank_n, D, b, c->kws, c->kws_size);
            if (!st) {
                for (int32_t j = 0; j < b; j++)
                    memcpy(c->neigh + (size_t)j * D, m->bank + (size_t)c->ni[j] * D, (size_t)D * sizeof(float));
                s = pc_score_reweight(s, m_test, m_star, c->neigh, b, D);
            }
        }
        *score = s;
        if (n < hw) pc_roi_scatter(c->pscores, c->roi.cells, n, hw);
        if (map && !st) pc_anomaly_map(map, c->pscores, m->grid_h, m->grid_w, m->crop, GAUSSIAN_SIGMA, c->mws);
        if (map && !st && r && r->roi) pc_roi_apply_map(map, c->roi.inspect, m->crop);
    }
    pc_model_ctx_put(m, c);
    return st;
}

pc_status pc_model_predict_raw(pc_model *m, const pc_image *rgb, const float *input, float *keep, float *score,
                               float *map, pc_geometry *geometry) {
    const roi_sel r = model_roi(m);
    return predict_raw_roi(m, rgb, input, keep, &r, score, map, geometry);
}

/* A prediction with region of interest r (NULL: the model's own) and tiling (NULL: the model's own),
 * thresholds applied. */
static pc_status predict_with(pc_model *m, const pc_image *rgb, const roi_sel *r, const pc_tiling *tiling,
                              pc_prediction *out, float *map, pc_geometry *geometry) {
    float s = 0;
    const roi_sel own = model_roi(m);
    pc_status st = m->n_members ? pc_ensemble_predict(m->ens, rgb, &s, map, geometry)
                   : tiling     ? predict_tiled(m, rgb, tiling, &s, map, geometry)
                                : predict_raw_roi(m, rgb, NULL, NULL, r ? r : &own, &s, map, geometry);
    if (st) {
        pc_copy_error(m->errmsg);
        return st;
    }
    out->score = s;
    if (!isnan(m->image_threshold)) {
        out->anomalous = (double)s > m->image_threshold;
        out->normalized = pc_threshold_normalize(s, m->image_threshold, m->score_scale > 0 ? m->score_scale : 1.0);
    } else {
        out->anomalous = 0;
        out->normalized = NAN;
    }
    return PC_OK;
}

pc_status pc_model_predict(pc_model *m, const pc_image *rgb, pc_prediction *out, float *map, pc_geometry *geometry) {
    pc_threads_apply();
    pc_clear_error();
    if (!m || !rgb || !out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: NULL argument");
    return predict_with(m, rgb, NULL, NULL, out, map, geometry);
}

/* The region of interest a call with opt uses (r->roi NULL: none); fails for a mask that is not one. */
static pc_status roi_of_call(const pc_model *m, const pc_predict_options *opt, roi_sel *r) {
    *r = model_roi(m);
    if (opt && opt->ignore_roi) r->roi = NULL;
    else if (opt && opt->roi) *r = (roi_sel){opt->roi, 0, "predict: the region of interest"};
    const pc_model *m0 = m->n_members ? m->members[0] : m;
    if (r->roi && (m0->tiling.tile || (opt && opt->tiling && opt->tiling->tile > 0)))
        return pc_fail(PC_ERR_UNSUPPORTED, "predict: a region of interest with tiling is not available yet");
    if (r->roi && !r->from_model) {
        pc_status st = pc_roi_check(r->roi, r->what);
        if (st) return st;
    }
    if (m->n_members && r->roi)
        return pc_fail(PC_ERR_UNSUPPORTED, "predict: a region of interest is not available for an ensemble");
    return PC_OK;
}

pc_status pc_model_roi_outputs(pc_model *m, const pc_image *rgb, const pc_predict_options *opt, float *patch_scores,
                               uint8_t *inspect) {
    pc_threads_apply();
    pc_clear_error();
    if (!m || !rgb || m->n_members) return pc_fail(PC_ERR_INVALID_ARGUMENT, "roi outputs: NULL or an ensemble");
    roi_sel r;
    pc_status st = roi_of_call(m, opt, &r);
    if (st) return st;
    pctx *c;
    if ((st = pc_model_ctx_get(m, &c))) return st;
    const int64_t hw = (int64_t)m->grid_h * m->grid_w;
    int64_t n = hw;
    st = predict_core(m, c, rgb, NULL, NULL, &r, &n);
    if (!st && n < hw) pc_roi_scatter(c->pscores, c->roi.cells, n, hw);
    if (!st && patch_scores) memcpy(patch_scores, c->pscores, (size_t)hw * sizeof(float));
    if (!st && inspect) {
        const size_t n2 = (size_t)m->crop * (size_t)m->crop;
        if (r.roi) memcpy(inspect, c->roi.inspect, n2);
        else memset(inspect, 1, n2);
    }
    pc_model_ctx_put(m, c);
    return st;
}

/* The tiling a prediction with these options uses (*t; t->tile = 0: none). A per-call tiling may change
 * the overlap, scale and stitch rule of a tiled model, not its tile (the bank is made of tiles of that
 * size); a model fitted without tiling cannot be predicted tiled. */
static pc_status effective_tiling(const pc_model *m, const pc_predict_options *opt, pc_tiling *t) {
    const pc_model *m0 = m->n_members ? m->members[0] : m;
    *t = m0->tiling;
    if (!opt || !opt->tiling) return PC_OK;
    if (m->n_members) return pc_fail(PC_ERR_UNSUPPORTED, "predict: tiling is not available with an ensemble");
    if (!m->tiling.tile)
        return pc_fail(PC_ERR_UNSUPPORTED, "predict: the model was fitted without tiling and cannot predict tiles; fit "
                       "it with --tile (docs/tiles.md)");
    if (opt->tiling->tile != m->tiling.tile)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: the model was fitted with %d-pixel tiles; a prediction "
                       "cannot use %d (only the overlap, scale and stitch rule can change)", (int)m->tiling.tile,
                       (int)opt->tiling->tile);
    pc_status st = pc_tiling_check(opt->tiling, "predict");
    if (st) return st;
    *t = *opt->tiling;
    return PC_OK;
}

void pc_predict_options_init(pc_predict_options *opt) {
    if (opt) memset(opt, 0, sizeof *opt);
}

pc_status pc_model_map_size(const pc_model *m, int32_t width, int32_t height, const pc_predict_options *opt,
                            int32_t *map_width, int32_t *map_height) {
    if (!m || !map_width || !map_height) return pc_fail(PC_ERR_INVALID_ARGUMENT, "map size: NULL argument");
    if (width < 1 || height < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "map size: image size %dx%d is not positive", (int)width, (int)height);
    const pc_model *m0 = m->n_members ? m->members[0] : m;
    pc_tiling t;
    pc_status st = effective_tiling(m, opt, &t);
    if (st) return st;
    if (t.tile) *map_width = width, *map_height = height; /* tiled: the original size (docs/tiles.md) */
    else *map_width = *map_height = m0->crop;
    return PC_OK;
}

pc_status pc_model_predict_ex(pc_model *m, const pc_image *rgb, const pc_predict_options *opt, pc_prediction *out,
                              float *map, pc_geometry *geometry) {
    if (!opt) return pc_model_predict(m, rgb, out, map, geometry);
    pc_threads_apply();
    pc_clear_error();
    if (!m || !rgb || !out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: NULL argument");
    roi_sel r;
    pc_tiling t;
    pc_status st = roi_of_call(m, opt, &r);
    if (!st) st = effective_tiling(m, opt, &t);
    if (st) {
        pc_copy_error(m->errmsg);
        return st;
    }
    return predict_with(m, rgb, &r, t.tile && !m->n_members ? &t : NULL, out, map, geometry);
}

pc_status pc_model_patch_outputs(pc_model *m, const pc_image *rgb, float *features, float *patch_scores) {
    pc_threads_apply();
    if (m->n_members) return pc_fail(PC_ERR_INVALID_ARGUMENT, "patch outputs: an ensemble has them per member");
    pctx *c;
    pc_status st = pc_model_ctx_get(m, &c);
    if (st) return st;
    st = predict_core(m, c, rgb, NULL, NULL, NULL, NULL);
    const size_t hw = (size_t)m->grid_h * m->grid_w;
    if (!st && features) memcpy(features, c->feats, hw * (size_t)m->dim * sizeof(float));
    if (!st && patch_scores) memcpy(patch_scores, c->pscores, hw * sizeof(float));
    pc_model_ctx_put(m, c);
    return st;
}

const int64_t *pc_model_coreset_indices(const pc_model *m, int64_t *n) {
    *n = m->coreset_idx ? m->bank_n : 0;
    return m->coreset_idx;
}

const float *pc_model_bank(const pc_model *m, int64_t *n, int32_t *dim) {
    *n = m->bank_n;
    *dim = m->dim;
    return m->bank;
}

pc_status pc_model_predict_file(pc_model *m, const char *path, pc_prediction *out, float *map, pc_geometry *geometry) {
    pc_threads_apply();
    pc_clear_error();
    if (!m || !path || !out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: NULL argument");
    pc_image img = {0};
    pc_status st = pc_image_load(path, &img);
    if (!st) {
        st = pc_model_predict(m, &img, out, map, geometry);
        if (st) pc_fail_context(st, "%s", path);
    }
    pc_image_free(&img);
    if (st) pc_copy_error(m->errmsg);
    return st;
}

/* ----------------------------------------------------------------------------------------------
 * Info and thresholds
 * -------------------------------------------------------------------------------------------- */

pc_status pc_model_roi(const pc_model *model, pc_image *roi) {
    if (!model || !roi) return pc_fail(PC_ERR_INVALID_ARGUMENT, "roi: NULL argument");
    *roi = model->roi;
    return PC_OK;
}

pc_status pc_model_get_info(const pc_model *model, pc_model_info *info) {
    if (!model || !info) return pc_fail(PC_ERR_INVALID_ARGUMENT, "info: NULL argument");
    memset(info, 0, sizeof *info);
    const pc_model *m = model->n_members ? model->members[0] : model; /* an ensemble: its first member's */
    info->arch = m->arch;
    memcpy(info->layers, m->layers, sizeof info->layers);
    info->n_layers = m->n_layers;
    info->resize = m->resize, info->crop = m->crop, info->patch = m->patch;
    info->pre_dim = m->pre_dim, info->dim = m->dim, info->k = m->k;
    info->grid_h = m->grid_h, info->grid_w = m->grid_w;
    info->sampler = m->sampler;
    info->coreset_ratio = m->coreset_ratio;
    info->bank_size = m->bank_n;
    info->n_patches_total = m->n_patches_total;
    info->n_train_images = m->n_train_images;
    info->seed = m->seed;
    info->reweight_b = m->reweight_b;
    info->image_threshold = model->image_threshold;
    info->pixel_threshold = model->pixel_threshold;
    info->score_scale = model->score_scale;
    info->pixel_scale = model->pixel_scale;
    info->n_members = PC_MAX(model->n_members, 1);
    info->bn_stats = m->bn_stats;
    info->bn_stats_implicit = m->bn_stats_implicit;
    info->precision = m->precision;
    info->coverage_radius = m->coverage_radius;
    info->roi_width = m->roi.width, info->roi_height = m->roi.height;
    info->thresholds_stale = model->thresholds_stale;
    info->tiling = m->tiling;
    return PC_OK;
}

int32_t pc_model_member_count(const pc_model *m) { return m ? PC_MAX(m->n_members, 1) : 0; }

pc_model *pc_model_member(pc_model *m, int32_t i) {
    if (!m) return NULL;
    if (!m->n_members) return i == 0 ? m : NULL;
    return i >= 0 && i < m->n_members ? m->members[i] : NULL;
}

pc_status pc_model_member_norm(const pc_model *m, int32_t i, double stats[4]) {
    if (!m || !stats || !m->n_members || i < 0 || i >= m->n_members)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "member_norm: not an ensemble, or member %d out of range", (int)i);
    pc_ensemble_member_stats(m->ens, i, stats);
    return PC_OK;
}

const int64_t *pc_model_usable_sources(const pc_model *m, int32_t *n) {
    *n = m->usable_src ? m->n_train_images : 0;
    return m->usable_src;
}

pc_status pc_model_set_thresholds(pc_model *m, double image_threshold, double pixel_threshold, double score_scale) {
    if (!m) return pc_fail(PC_ERR_INVALID_ARGUMENT, "set_thresholds: model is NULL");
    if (isinf(image_threshold) || isinf(pixel_threshold) || !(isnan(score_scale) || score_scale > 0))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "set_thresholds: thresholds must be finite or NaN, scale > 0");
    m->image_threshold = image_threshold;
    m->pixel_threshold = pixel_threshold;
    m->score_scale = score_scale;
    m->thresholds_stale = 0;
    return PC_OK;
}

pc_status pc_model_set_pixel_scale(pc_model *m, double pixel_scale) {
    if (!m) return pc_fail(PC_ERR_INVALID_ARGUMENT, "set_pixel_scale: model is NULL");
    if (!(isnan(pixel_scale) || (pixel_scale > 0 && isfinite(pixel_scale))))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "set_pixel_scale: the scale must be > 0 and finite, or NaN");
    m->pixel_scale = pixel_scale;
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Save and load
 * -------------------------------------------------------------------------------------------- */

static const char *sampler_name(pc_sampler s) {
    switch (s) {
    case PC_SAMPLER_APPROX_GREEDY: return "approx";
    case PC_SAMPLER_RANDOM: return "random";
    case PC_SAMPLER_NONE: return "none";
    }
    return "?";
}

static int sampler_parse(const char *s, pc_sampler *out) {
    if (!strcmp(s, "approx")) *out = PC_SAMPLER_APPROX_GREEDY;
    else if (!strcmp(s, "random")) *out = PC_SAMPLER_RANDOM;
    else if (!strcmp(s, "none")) *out = PC_SAMPLER_NONE;
    else return 0;
    return 1;
}

/* One single model's metadata lines, each key prefixed with kp ("" for a single model, "m0." for an
 * ensemble's first member), appended at buf + *at. */
static void single_meta(const pc_model *m, const char *kp, char *buf, size_t size, size_t *at) {
    char layers[32] = "";
    for (int i = 0; i < m->n_layers; i++)
        snprintf(layers + strlen(layers), sizeof layers - strlen(layers), "%s%d", i ? "," : "", (int)m->layers[i]);
#define KV(fmt, ...)                                                                                           \
    do {                                                                                                       \
        if (*at < size) *at += (size_t)snprintf(buf + *at, size - *at, "%s" fmt "\n", kp, __VA_ARGS__);        \
    } while (0)
    KV("arch = %s", pc_arch_name(m->arch));
    KV("layers = %s", layers);
    KV("resize = %d", (int)m->resize);
    KV("crop = %d", (int)m->crop);
    KV("patch = %d", (int)m->patch);
    KV("pre_dim = %d", (int)m->pre_dim);
    KV("dim = %d", (int)m->dim);
    KV("k = %d", (int)m->k);
    KV("sampler = %s", sampler_name(m->sampler));
    KV("coreset_ratio = %.17g", m->coreset_ratio);
    KV("coreset_size_requested = %lld", (long long)m->coreset_size_requested);
    KV("projection_dim = %d", (int)m->projection_dim);
    KV("n_starts = %d", (int)m->n_starts);
    KV("seed = %llu", (unsigned long long)m->seed);
    KV("reweight_b = %d", (int)m->reweight_b);
    KV("grid = %dx%d", (int)m->grid_h, (int)m->grid_w);
    KV("n_train_images = %d", (int)m->n_train_images);
    KV("n_patches_total = %lld", (long long)m->n_patches_total);
    KV("bank_size = %lld", (long long)m->bank_n);
    KV("bn_stats = %s", pc_bn_stats_name(m->bn_stats));
    KV("precision = %s", pc_precision_name(m->precision));
    KV("weights_source = %s", m->weights_source);
    if (!isnan(m->coverage_radius)) KV("coverage_radius = %.9g", m->coverage_radius);
    if (m->tiling.tile) { /* docs/tiles.md; only a tiled model has them (container version 3) */
        KV("tile = %d", (int)m->tiling.tile);
        KV("tile_overlap = %.17g", m->tiling.overlap);
        KV("tile_scale = %.17g", m->tiling.scale);
        KV("stitch = %s", m->tiling.stitch == PC_STITCH_MAX ? "max" : "mean");
    }
#undef KV
}

/* One single model's tensors into t[*n..] (names in names[*n..]): the bank and coreset indices named
 * tp + "bank", tp + "coreset_indices", the backbone's tensors bp + their torchvision names. */
static pc_status single_tensors(const pc_model *m, const char *tp, const char *bp, pc_mf_tensor *t,
                                char (*names)[PC_MF_NAME_MAX], size_t *n) {
    snprintf(names[*n], PC_MF_NAME_MAX, "%sbank", tp);
    t[(*n)] = (pc_mf_tensor){.name = names[*n], .dtype = PC_MF_F32, .ndim = 2,
                             .shape = {(uint64_t)m->bank_n, (uint64_t)m->dim}, .data = m->bank,
                             .nbytes = (uint64_t)m->bank_n * m->dim * sizeof(float)};
    (*n)++;
    if (m->coreset_idx) {
        snprintf(names[*n], PC_MF_NAME_MAX, "%scoreset_indices", tp);
        t[*n] = (pc_mf_tensor){.name = names[*n], .dtype = PC_MF_I64, .ndim = 1, .shape = {(uint64_t)m->bank_n},
                               .data = m->coreset_idx, .nbytes = (uint64_t)m->bank_n * sizeof(int64_t)};
        (*n)++;
    }
    const pc_tensor *bt = m->bb_tensors ? m->bb_tensors->tensors : m->bb_views;
    size_t nbt = m->bb_tensors ? m->bb_tensors->count : m->n_bb_views;
    for (size_t i = 0; i < nbt; i++) {
        if (!bt[i].data) continue; /* integer bookkeeping tensors (num_batches_tracked) */
        int len = snprintf(names[*n], PC_MF_NAME_MAX, "%s%s", bp, bt[i].name);
        if (len >= (int)PC_MF_NAME_MAX || bt[i].ndim > PC_MF_MAX_DIMS)
            return pc_fail(PC_ERR_UNSUPPORTED, "save: backbone tensor %s cannot be stored (name longer than %d bytes "
                           "with its prefix %s, or more than %d dimensions)", bt[i].name, PC_MF_NAME_MAX - 1, bp,
                           PC_MF_MAX_DIMS);
        pc_mf_tensor *x = &t[*n];
        x->name = names[*n];
        x->dtype = PC_MF_F32;
        x->ndim = (uint32_t)bt[i].ndim;
        for (int d = 0; d < bt[i].ndim; d++) x->shape[d] = (uint64_t)bt[i].shape[d];
        x->data = bt[i].data;
        x->nbytes = (uint64_t)bt[i].numel * sizeof(float);
        (*n)++;
    }
    return PC_OK;
}

static size_t single_tensor_count(const pc_model *m) {
    return 2 + (m->bb_tensors ? m->bb_tensors->count : m->n_bb_views);
}

pc_status pc_model_save(const pc_model *m, const char *path) {
    pc_clear_error();
    if (!m || !path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "save: NULL argument");
    const size_t meta_cap = 4096 + 2048 * (size_t)PC_MAX(m->n_members, 1);
    char *meta = pc_malloc(meta_cap);
    size_t at = 0, cap = 0, n = 0;
    const int32_t nm = m->n_members;
    for (int32_t i = 0; i < PC_MAX(nm, 1); i++) cap += single_tensor_count(nm ? m->members[i] : m);
    cap += 1; /* the region of interest */
    pc_mf_tensor *t = pc_calloc(cap, sizeof *t);
    char (*names)[PC_MF_NAME_MAX] = pc_calloc(cap, PC_MF_NAME_MAX);
    if (!t || !names || !meta) {
        pc_free(t), pc_free(names), pc_free(meta);
        return pc_fail(PC_ERR_NO_MEMORY, "save: out of memory");
    }
    at += (size_t)snprintf(meta + at, meta_cap - at, "format = %s\nwritten_by = patchcore %s\n", MODEL_FORMAT_NAME,
                           pc_version());
    pc_status st = PC_OK;
    if (nm) {
        at += (size_t)snprintf(meta + at, meta_cap - at, "members = %d\nensemble_norm = %s\n", (int)nm,
                               pc_ensemble_norm_name(PC_ENSEMBLE_TRAIN_ZSCORE));
        for (int32_t i = 0; i < nm && !st; i++) {
            char kp[16], tp[16], bp[16];
            snprintf(kp, sizeof kp, "m%d.", (int)i);
            snprintf(tp, sizeof tp, "m%d/", (int)i);
            snprintf(bp, sizeof bp, "m%d/bb/", (int)i);
            single_meta(m->members[i], kp, meta, meta_cap, &at);
            double z[4];
            pc_ensemble_member_stats(m->ens, i, z);
            if (at < meta_cap)
                at += (size_t)snprintf(meta + at, meta_cap - at, "%snorm = %.17g %.17g %.17g %.17g\n", kp, z[0], z[1],
                                       z[2], z[3]);
            st = single_tensors(m->members[i], tp, bp, t, names, &n);
        }
    } else {
        single_meta(m, "", meta, meta_cap, &at);
        st = single_tensors(m, "", "backbone/", t, names, &n);
        if (!st && m->roi.data) { /* docs/roi.md; version 3, so that an older patchcore refuses the file */
            if (at < meta_cap)
                at += (size_t)snprintf(meta + at, meta_cap - at, "roi = %dx%d\n", (int)m->roi.width, (int)m->roi.height);
            snprintf(names[n], PC_MF_NAME_MAX, "roi");
            t[n] = (pc_mf_tensor){.name = names[n], .dtype = PC_MF_U8, .ndim = 2,
                                  .shape = {(uint64_t)m->roi.height, (uint64_t)m->roi.width}, .data = m->roi.data,
                                  .nbytes = (uint64_t)m->roi.height * (uint64_t)m->roi.width};
            n++;
        }
    }
    if (at < meta_cap)
        at += (size_t)snprintf(meta + at, meta_cap - at,
                               "image_threshold = %.17g\npixel_threshold = %.17g\nscore_scale = %.17g\n"
                               "pixel_scale = %.17g\nthresholds_stale = %d\n",
                               m->image_threshold, m->pixel_threshold, m->score_scale, m->pixel_scale,
                               m->thresholds_stale);
    if (!st && at >= meta_cap) st = pc_fail(PC_ERR_INTERNAL, "save: metadata does not fit %zu bytes", meta_cap);
    if (!st) st = pc_modelfile_write_version(path, meta, t, n, nm ? 2 : (m->tiling.tile || m->roi.data) ? 3 : 1);
    pc_free(t);
    pc_free(names);
    pc_free(meta);
    return st;
}

static pc_status meta_int(const pc_modelfile *mf, const char *path, const char *key, long long lo, long long hi,
                          long long *out) {
    const char *v = pc_modelfile_meta(mf, key);
    char *end;
    if (!v) return pc_fail(PC_ERR_FORMAT, "%s: metadata lacks '%s'", path, key);
    long long x = strtoll(v, &end, 10);
    if (end == v || *end || x < lo || x > hi)
        return pc_fail(PC_ERR_FORMAT, "%s: metadata '%s = %s' is out of range", path, key, v);
    *out = x;
    return PC_OK;
}

static pc_status meta_double(const pc_modelfile *mf, const char *path, const char *key, double *out) {
    const char *v = pc_modelfile_meta(mf, key);
    char *end;
    if (!v) return pc_fail(PC_ERR_FORMAT, "%s: metadata lacks '%s'", path, key);
    double x = strtod(v, &end);
    if (end == v || *end) return pc_fail(PC_ERR_FORMAT, "%s: metadata '%s = %s' is not a number", path, key, v);
    *out = x;
    return PC_OK;
}

/* Load a single model (or an ensemble's member) from mf: metadata keys prefixed kp, the bank tp +
 * "bank", the backbone's tensors bp + their names. The calibration keys are the caller's. */
static pc_status load_single(pc_model *m, const pc_modelfile *mf, const char *path, const char *kp, const char *tp,
                             const char *bp) {
    pc_status st = PC_OK;
    char kbuf[96];
#define K(key) (snprintf(kbuf, sizeof kbuf, "%s%s", kp, key), kbuf)
    long long v = 0;
#define GET_INT(key, lo, hi, dst)                                  \
    do {                                                           \
        if ((st = meta_int(mf, path, K(key), lo, hi, &v))) goto fail; \
        dst = v;                                                   \
    } while (0)
    GET_INT("resize", 1, 4096, m->resize);
    GET_INT("crop", 16, 4096, m->crop);
    GET_INT("patch", 1, 15, m->patch);
    GET_INT("pre_dim", 1, 65536, m->pre_dim);
    GET_INT("dim", 1, 65536, m->dim);
    GET_INT("k", 1, 1024, m->k);
    GET_INT("projection_dim", 1, 4096, m->projection_dim);
    GET_INT("n_starts", 1, 1000, m->n_starts);
    GET_INT("reweight_b", 0, 1024, m->reweight_b);
    GET_INT("n_train_images", 0, INT32_MAX, m->n_train_images);
    GET_INT("n_patches_total", 0, INT64_MAX, m->n_patches_total);
    GET_INT("coreset_size_requested", 0, INT64_MAX, m->coreset_size_requested);
#define GET_INT2(key, lo, hi, dst)                                 \
    do {                                                           \
        if ((st = meta_int(mf, path, K(key), lo, hi, &v))) goto fail; \
        dst = (int32_t)v;                                          \
    } while (0)
#undef GET_INT
    {
        const char *sv = pc_modelfile_meta(mf, K("seed"));
        m->seed = sv ? strtoull(sv, NULL, 10) : 0;
        const char *a = pc_modelfile_meta(mf, K("arch"));
        m->arch = a ? pc_arch_from_name(a) : PC_ARCH_UNKNOWN;
        if (m->arch == PC_ARCH_UNKNOWN) {
            st = pc_fail(PC_ERR_FORMAT, "%s: unknown backbone architecture '%s'", path, a ? a : "");
            goto fail;
        }
        const char *s = pc_modelfile_meta(mf, K("sampler"));
        if (!s || !sampler_parse(s, &m->sampler)) {
            st = pc_fail(PC_ERR_FORMAT, "%s: unknown sampler '%s'", path, s ? s : "");
            goto fail;
        }
        const char *ls = pc_modelfile_meta(mf, K("layers"));
        m->n_layers = 0;
        for (const char *p = ls; p && *p && m->n_layers < PC_MAX_LAYERS;) {
            if (*p < '1' || *p > '4') break;
            m->layers[m->n_layers++] = *p - '0';
            p++;
            if (*p == ',') p++;
            else if (*p) break;
        }
        if (m->n_layers == 0) {
            st = pc_fail(PC_ERR_FORMAT, "%s: bad 'layers' in metadata", path);
            goto fail;
        }
        m->layer_mask = mask_of(m->layers, m->n_layers);
        if ((st = meta_double(mf, path, K("coreset_ratio"), &m->coreset_ratio))) goto fail;
        /* optional: the coverage radius (files written before it was recorded: unknown) */
        if (pc_modelfile_meta(mf, K("coverage_radius"))) {
            if ((st = meta_double(mf, path, K("coverage_radius"), &m->coverage_radius))) goto fail;
            if (!(m->coverage_radius >= 0)) {
                st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'coverage_radius' must be >= 0", path);
                goto fail;
            }
        }
        const char *ws = pc_modelfile_meta(mf, K("weights_source"));
        snprintf(m->weights_source, sizeof m->weights_source, "%s", ws ? ws : "");
        /* optional: files written before it was recorded used the trained statistics */
        const char *bs = pc_modelfile_meta(mf, K("bn_stats"));
        const int bn = bs ? pc_bn_stats_from_name(bs) : PC_BN_TRAINED;
        m->bn_stats = bn >= 0 ? (pc_bn_stats)bn : PC_BN_TRAINED;
        m->bn_stats_implicit = !bs;
        if (bn < 0) {
            st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'bn_stats' is '%s', not 'reference' or 'trained' (a newer "
                         "patchcore may know it)", path, bs);
            goto fail;
        }
        /* optional: files written before it was recorded ran the backbone in float32 */
        const char *ps = pc_modelfile_meta(mf, K("precision"));
        const int pr = ps ? pc_precision_from_name(ps) : PC_PRECISION_F32;
        if (pr < 0) {
            st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'precision' is '%s', not 'f32' or 'bf16' (a newer patchcore may "
                         "know it)", path, ps);
            goto fail;
        }
        m->precision = (pc_precision)pr;
        /* optional: tiling (docs/tiles.md) */
        if (pc_modelfile_meta(mf, K("tile"))) {
            GET_INT2("tile", PC_TILE_MIN, PC_TILE_MAX, m->tiling.tile);
            if ((st = meta_double(mf, path, K("tile_overlap"), &m->tiling.overlap)) ||
                (st = meta_double(mf, path, K("tile_scale"), &m->tiling.scale)))
                goto fail;
            const char *sn = pc_modelfile_meta(mf, K("stitch"));
            if (!sn || (strcmp(sn, "mean") != 0 && strcmp(sn, "max") != 0)) {
                st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'stitch' is '%s', not 'mean' or 'max'", path,
                             sn ? sn : "(none)");
                goto fail;
            }
            m->tiling.stitch = strcmp(sn, "max") == 0 ? PC_STITCH_MAX : PC_STITCH_MEAN;
            if (pc_tiling_check(&m->tiling, path)) {
                char why[PC_ERRMSG_MAX];
                snprintf(why, sizeof why, "%s", pc_last_error());
                st = pc_fail(PC_ERR_FORMAT, "%s", why);
                goto fail;
            }
            if (m->crop != m->tiling.tile || m->resize != m->tiling.tile) {
                st = pc_fail(PC_ERR_FORMAT, "%s: a tiled model's crop and resize must equal its tile %d (crop %d, "
                             "resize %d)", path, (int)m->tiling.tile, (int)m->crop, (int)m->resize);
                goto fail;
            }
        }
        char what[1100];
        snprintf(what, sizeof what, "%s: the model's precision", path);
        if ((st = precision_check(m->precision, what))) goto fail;
    }
    /* the backbone, from the tensors stored under backbone/ (views into the mapping) */
    size_t nt = pc_modelfile_tensor_count(mf), nb = 0;
    m->bb_views = pc_calloc(nt ? nt : 1, sizeof(pc_tensor));
    if (!m->bb_views) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < nt; i++) {
        const pc_mf_tensor *t = pc_modelfile_tensor_at(mf, i);
        if (strncmp(t->name, bp, strlen(bp)) != 0) continue;
        if (t->dtype != PC_MF_F32) {
            st = pc_fail(PC_ERR_FORMAT, "%s: tensor %s is not float32", path, t->name);
            goto fail;
        }
        pc_tensor *x = &m->bb_views[nb++];
        x->name = (char *)t->name + strlen(bp);
        x->dtype = PC_DTYPE_F32;
        x->ndim = (int32_t)t->ndim;
        x->numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) {
            x->shape[d] = (int64_t)t->shape[d];
            x->numel *= x->shape[d];
        }
        x->data = (float *)t->data;
    }
    m->n_bb_views = nb;
    {
        pc_tensor_dict view = {.tensors = m->bb_views, .count = nb};
        snprintf(view.format, sizeof view.format, "patchcore-model");
        pc_backbone_options bo = {.bn_stats = m->bn_stats, .warmup_size = m->crop, .precision = m->precision};
        st = pc_backbone_load_dict(&view, path, m->arch, m->layer_mask, &bo, &m->bb);
        if (st) goto fail;
    }
    if ((st = model_plan(m))) goto fail;
    {
        char grid[32];
        snprintf(grid, sizeof grid, "%dx%d", (int)m->grid_h, (int)m->grid_w);
        const char *g = pc_modelfile_meta(mf, K("grid"));
        if (!g || strcmp(g, grid) != 0) {
            st = pc_fail(PC_ERR_FORMAT, "%s: stored patch grid %s does not match the backbone's %s", path,
                         g ? g : "(none)", grid);
            goto fail;
        }
    }
    snprintf(kbuf, sizeof kbuf, "%sbank", tp);
    const pc_mf_tensor *bank = pc_modelfile_tensor(mf, kbuf);
    if (!bank || bank->dtype != PC_MF_F32 || bank->ndim != 2 || bank->shape[1] != (uint64_t)m->dim ||
        bank->shape[0] < 1) {
        st = pc_fail(PC_ERR_FORMAT, "%s: memory bank missing or not (n x %d) float32", path, (int)m->dim);
        goto fail;
    }
    m->bank = bank->data;
    m->bank_n = (int64_t)bank->shape[0];
    m->bank_norms = pc_malloc((size_t)m->bank_n * sizeof(float));
    if (!m->bank_norms) {
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    pc_knn_norms(m->bank_norms, m->bank, m->bank_n, m->dim);
    if ((st = pc_model_build_index(m))) goto fail;
fail:
#undef K
#undef GET_INT2
    return st;
}

/* The region of interest of a single model (docs/roi.md): metadata 'roi = WxH' and a u8 tensor 'roi'
 * (H, W) of 0/255, in a version-3 file; both or neither. */
static pc_status load_roi(pc_model *m, const pc_modelfile *mf, const char *path) {
    const pc_mf_tensor *t = pc_modelfile_tensor(mf, "roi");
    const char *v = pc_modelfile_meta(mf, "roi");
    if (!t && !v) return PC_OK;
    long w = 0, h = 0;
    char *end = NULL;
    if (v) w = strtol(v, &end, 10);
    if (end && *end == 'x') h = strtol(end + 1, &end, 10);
    if (!t || !v || !end || *end || w < 1 || h < 1 || w > 65536 * 16 || h > 65536 * 16)
        return pc_fail(PC_ERR_FORMAT, "%s: the region of interest needs metadata 'roi = WxH' and a tensor 'roi' (got "
                       "'%s' and %s)", path, v ? v : "(none)", t ? "a tensor" : "no tensor");
    if (pc_modelfile_version(mf) < 3)
        return pc_fail(PC_ERR_FORMAT, "%s: a region of interest in a version %u file (it needs version 3)", path,
                       (unsigned)pc_modelfile_version(mf));
    if (t->dtype != PC_MF_U8 || t->ndim != 2 || t->shape[0] != (uint64_t)h || t->shape[1] != (uint64_t)w ||
        (int64_t)w * h > PC_IMAGE_MAX_PIXELS)
        return pc_fail(PC_ERR_FORMAT, "%s: tensor 'roi' is not a %ldx%ld uint8 mask (rows x columns %ld x %ld, at most "
                       "%lld pixels)", path, w, h, h, w, (long long)PC_IMAGE_MAX_PIXELS);
    m->roi = (pc_image){(int32_t)w, (int32_t)h, 1, (uint8_t *)t->data};
    char what[1100];
    snprintf(what, sizeof what, "%s: the region of interest", path);
    pc_status st = pc_roi_check(&m->roi, what);
    if (st) {
        m->roi = (pc_image){0};
        char msg[PC_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", pc_last_error());
        return st == PC_ERR_INVALID_ARGUMENT ? pc_fail(PC_ERR_FORMAT, "%s", msg) : st;
    }
    return PC_OK;
}

pc_status pc_model_load(const char *path, pc_model **out) {
    pc_threads_apply();
    pc_clear_error();
    if (!path || !out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "load: NULL argument");
    *out = NULL;
    pc_model *m = pc_model_new_empty();
    if (!m) return pc_fail(PC_ERR_NO_MEMORY, "out of memory");
    pc_status st = pc_modelfile_open(path, &m->mf);
    if (st) goto fail;
    const pc_modelfile *mf = m->mf;
    const char *fmt = pc_modelfile_meta(mf, "format");
    if (!fmt || strcmp(fmt, MODEL_FORMAT_NAME) != 0) {
        st = pc_fail(PC_ERR_FORMAT, "%s: not a patchcore model (format key missing)", path);
        goto fail;
    }
    if ((st = meta_double(mf, path, "image_threshold", &m->image_threshold)) ||
        (st = meta_double(mf, path, "pixel_threshold", &m->pixel_threshold)) ||
        (st = meta_double(mf, path, "score_scale", &m->score_scale)))
        goto fail;
    /* optional: files written before the overlay scale existed lack it */
    if (pc_modelfile_meta(mf, "pixel_scale") && (st = meta_double(mf, path, "pixel_scale", &m->pixel_scale)))
        goto fail;
    if (!(isnan(m->pixel_scale) || (m->pixel_scale > 0 && isfinite(m->pixel_scale)))) {
        st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'pixel_scale' must be > 0 or nan", path);
        goto fail;
    }
    /* optional: 1 when the bank changed after calibration (update, merge) */
    if (pc_modelfile_meta(mf, "thresholds_stale")) {
        long long stale = 0;
        if ((st = meta_int(mf, path, "thresholds_stale", 0, 1, &stale))) goto fail;
        m->thresholds_stale = (int)stale;
    }
    if (!pc_modelfile_meta(mf, "members")) {
        st = load_single(m, mf, path, "", "", "backbone/");
        if (!st) st = load_roi(m, mf, path);
        if (st) goto fail;
        *out = m;
        return PC_OK;
    }
    /* an ensemble */
    long long nm = 0;
    if ((st = meta_int(mf, path, "members", 2, PC_ENSEMBLE_MAX_MEMBERS, &nm))) goto fail;
    const char *en = pc_modelfile_meta(mf, "ensemble_norm");
    if (!en || pc_ensemble_norm_from_name(en) != PC_ENSEMBLE_TRAIN_ZSCORE) {
        st = pc_fail(PC_ERR_FORMAT, "%s: metadata 'ensemble_norm' is '%s', not 'train-zscore' (a newer patchcore may "
                     "know it)", path, en ? en : "(none)");
        goto fail;
    }
    m->members = pc_calloc((size_t)nm, sizeof *m->members);
    double (*z)[4] = pc_calloc((size_t)nm, sizeof *z);
    if (!m->members || !z) {
        pc_free(z);
        st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
        goto fail;
    }
    for (int32_t i = 0; i < (int32_t)nm && !st; i++) {
        char kp[16], tp[16], bp[16], key[32];
        snprintf(kp, sizeof kp, "m%d.", (int)i);
        snprintf(tp, sizeof tp, "m%d/", (int)i);
        snprintf(bp, sizeof bp, "m%d/bb/", (int)i);
        if (!(m->members[i] = pc_model_new_empty())) {
            st = pc_fail(PC_ERR_NO_MEMORY, "out of memory");
            break;
        }
        m->n_members = i + 1;
        if ((st = load_single(m->members[i], mf, path, kp, tp, bp))) {
            pc_fail_context(st, "%s: member %d", path, (int)i);
            break;
        }
        snprintf(key, sizeof key, "m%d.norm", (int)i);
        const char *zv = pc_modelfile_meta(mf, key);
        char *end = NULL;
        if (zv) {
            z[i][0] = strtod(zv, &end);
            for (int j = 1; j < 4 && end; j++) z[i][j] = strtod(end, &end);
        }
        if (!zv || !end || *end || !(isfinite(z[i][0]) && z[i][1] > 0 && isfinite(z[i][1]) && isfinite(z[i][2]) &&
                                     z[i][3] > 0 && isfinite(z[i][3])))
            st = pc_fail(PC_ERR_FORMAT, "%s: metadata '%s' must be four numbers: image mean, sd > 0, pixel mean, sd > 0",
                         path, key);
    }
    if (!st) st = pc_ensemble_create(&m->ens, m->members, m->n_members, (const double(*)[4])z);
    pc_free(z);
    if (st) goto fail;
    *out = m;
    return PC_OK;
fail:
    pc_model_free(m);
    return st;
}
