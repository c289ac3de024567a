/*
 * model_impl.h - the model's structure and the helpers that the files building on it share (model.c
 * fits, saves, loads and predicts; update.c adds to a bank, merges banks). Not part of the public API.
 */
#ifndef PC_MODEL_IMPL_H
#define PC_MODEL_IMPL_H

#include "internal.h"
#include "backbone_internal.h"
#include "ensemble.h"
#include "knn.h"
#include "modelfile.h"
#include "patch_features.h"
#include "resize.h"
#include "weights.h"
#include "spill.h"
#include "tile.h"
#include "roi.h"

#include <stdbool.h>

#include <pthread.h>

#define GAUSSIAN_SIGMA 4.0

/* One prediction's scratch memory. */
typedef struct pctx {
    struct pctx *next;
    pc_backbone *bb;      /* a view on the model's backbone: shared weights, own workspace */
    void *ws;             /* features, kNN and map workspaces and every buffer below, one block */
    float *input;         /* 3 x S x S */
    float *acts[4];       /* layerN outputs, C x H x W */
    float *feats;         /* HW x D */
    float *dist;          /* HW x k */
    int64_t *idx;         /* HW x k */
    float *pscores;       /* HW */
    float *neigh;         /* b x D (Eq. 7) */
    float *nd;            /* b */
    int64_t *ni;          /* b */
    void *fws, *kws, *mws;
    size_t kws_size;
    pc_resize_cache rc;   /* preprocessing tables and buffers, kept between predicts */
    pc_tile_bufs tb;      /* a tiled prediction's scaled image and stitching (grown, never shrunk) */
    pc_roi_cache roi;     /* the region of interest at the last image size (roi.c) */
} pctx;

struct pc_model {
    /* settings */
    pc_arch arch;
    int32_t layers[PC_MAX_LAYERS], n_layers;
    uint32_t layer_mask;
    int32_t resize, crop, patch, pre_dim, dim, k, projection_dim, n_starts, reweight_b;
    pc_sampler sampler;
    double coreset_ratio;
    int64_t coreset_size_requested;
    uint64_t seed;
    int32_t n_train_images;
    int64_t n_patches_total;
    double image_threshold, pixel_threshold, score_scale, pixel_scale;
    char weights_source[1024];
    pc_bn_stats bn_stats;
    int bn_stats_implicit; /* loaded from a file written before bn_stats was recorded */
    pc_precision precision; /* the backbone's arithmetic (f32 for files written before it was recorded) */
    pc_tiling tiling;     /* tile = 0: the model does not tile (docs/tiles.md); else crop = resize = tile */
    /* derived */
    int32_t grid_h, grid_w;
    pc_layer_shape shapes[PC_MAX_LAYERS];
    pc_backbone *bb;
    pc_features_plan *plan;
    /* backbone tensors in torchvision form, for saving (owned dict after fit, or views into mf) */
    pc_tensor_dict *bb_tensors;
    pc_tensor *bb_views;
    size_t n_bb_views;
    /* the memory bank: owned after fit, or pointing into the mapped file after load */
    const float *bank;
    float *bank_owned;
    int64_t *coreset_idx; /* selected indices (fit only; NULL after load when absent) */
    int64_t bank_n;
    float *bank_norms;
    pc_knn_index *kix;    /* the pruned kNN index (NULL: brute force; see build_knn_index) */
    pc_modelfile *mf;
    int64_t *usable_src;  /* fit only: the input index of each training image whose patches are in the bank */
    /* An ensemble (docs/ensemble.md): n_members >= 2 whole single models, run one after the other on
     * each image; this model holds the calibration, the members' normalisation and the combination
     * (ensemble.c). A member's mf is NULL: the ensemble owns the mapping. 0 for a single model. */
    int32_t n_members;
    pc_model **members;
    pc_ensemble *ens;
    /* Coverage radius of the greedy coreset (NaN when unknown) and whether the bank changed after the
     * thresholds were calibrated (update.c). */
    double coverage_radius;
    int thresholds_stale;
    /* The region of interest (docs/roi.md): 0/255, roi.width x roi.height (roi.data NULL: none);
     * roi.data is roi_owned after fit, or points into the mapped file after load. */
    pc_image roi;
    uint8_t *roi_owned;
    /* predict contexts */
    pthread_mutex_t lock;
    pctx *free_ctx;
    char errmsg[PC_ERRMSG_MAX];
};

/* The inputs of a fit or an update: file paths or decoded images. */
typedef struct pc_fit_source {
    const char *const *paths;
    const pc_image *images;
    const pc_tile_items *tiles; /* tiling: the inputs are these tiles of the images (src/tile.c) */
} pc_fit_source;

/* Extracted training features (pc_model_extract): used x hw rows of D floats in memory (feats) or in
 * a temporary file (stream: spill, each input's rows at its input index); with the approximate greedy
 * sampler their projections pj (used x hw rows of P floats); img_of[u] the input index of usable input
 * u (NULL when all were usable). */
typedef struct pc_fit_feats {
    float *feats, *pj;
    pc_spill spill;
    int64_t *img_of;
    int32_t *sizes; /* 2 per input (input index): the decoded image's width and height */
    size_t used, hw, D, P;
    bool stream, approx;
} pc_fit_feats;

pc_status pc_model_extract(pc_model *m, const pc_fit_options *opt, const pc_fit_source *src, size_t n_in,
                           pc_fit_feats *ff);
/* One process's share of a fit spread over processes (fit_shard.c): the whole fit's number of inputs
 * (the bank's size follows from it) and whether this process gathers the bank, for the memory plan. */
typedef struct pc_fit_share {
    size_t total_inputs;
    bool holds_bank;
} pc_fit_share;
/* The same for share != NULL: the inputs are one process's share, none usable is not an error
 * (ff->used = 0), and --max-memory's plan counts what this process holds of the whole fit. */
pc_status pc_model_extract_part(pc_model *m, const pc_fit_options *opt, const pc_fit_source *src, size_t n_in,
                                const pc_fit_share *share, pc_fit_feats *ff);

/* A new model with opt's settings, its backbone loaded and its feature plan made (no bank yet): the
 * first step of a fit (model.c, fit_shard.c). */
pc_status pc_model_fit_setup(const pc_fit_options *opt, pc_model **out);
/* The greedy coreset's start points for N candidates (opt->coreset_starts, or drawn from seed):
 * *starts (allocated) and their number. */
pc_status pc_fit_starts(const pc_fit_options *opt, uint64_t seed, int64_t N, int64_t **starts, int32_t *n_starts);
/* The bank size a fit keeps of N candidates (sampler none: all; --coreset-size; the ratio). */
int64_t pc_fit_bank_size(const pc_model *m, const pc_fit_options *opt, int64_t N);
/* After m->bank_owned and m->bank_n are set: m->bank, the norms and the kNN index. */
pc_status pc_model_finish_bank(pc_model *m);
void pc_fit_feats_free(pc_fit_feats *ff);

/* Rows sel[0..n_sel) of the extracted features into out (n_sel x D), from memory or the temporary file. */
pc_status pc_fit_feats_gather(pc_fit_feats *ff, const int64_t *sel, int64_t n_sel, float *out);

/* The backbone's tensors as they are saved (torchvision names). */
void pc_model_backbone_tensors(const pc_model *m, const pc_tensor **t, size_t *n);

/* A zeroed model with its lock initialised and thresholds NaN. */
pc_model *pc_model_new_empty(void);

/* The pruned kNN index over m->bank (NULL kept for small banks and large k). */
pc_status pc_model_build_index(pc_model *m);
/* The same index (NULL where the brute force is kept) for another bank of m's dimension (update.c). */
pc_status pc_model_index_for(const pc_model *m, const float *bank, const float *norms, int64_t n,
                             pc_knn_index **out);

/* Borrow and return a prediction context from the model's pool. */
pc_status pc_model_ctx_get(pc_model *m, pctx **out);
void pc_model_ctx_put(pc_model *m, pctx *c);

/* The single-input pipeline up to patch scores in context c (c->feats, c->dist/idx, c->pscores):
 * from rgb (preprocessed) or from a ready input tensor. */
pc_status pc_model_predict_core(pc_model *m, pctx *c, const pc_image *rgb, const float *input, pc_geometry *geometry);

/* A tiled prediction (src/tile.c): the image score and, when map != NULL, the width x height map. */
pc_status pc_tile_predict(pc_model *m, pctx *c, const pc_image *rgb, const pc_tiling *t, float *score, float *map,
                          pc_geometry *geometry);

/* Free the pooled contexts (after the bank or settings change; no predict may be running). */
void pc_model_drop_contexts(pc_model *m);

#endif
