/*
 * patch_features.h - locally aware patch features (METHOD.md §3) from backbone layer activations.
 *
 * For one image, given the activations of n_layers backbone layers (layer l is C_l x H_l x W_l,
 * float32, channel-major), produce H*W patch features of dimension D (row-major, position-major:
 * out[(y*W + x)*D + j]), where H x W is the first layer's patch grid. The result equals
 *   unfold(p x p, zero padding (p-1)/2, stride 1) -> bilinear resize of every unfolded component map
 *   to the first layer's grid (align_corners=False) -> per-layer adaptive_avg_pool1d(C_l*p*p -> D_pre)
 *   -> concatenation in layer order -> adaptive_avg_pool1d(n_layers*D_pre -> D)
 * to float rounding. The fast path never materialises the unfolded tensor: the whole chain of
 * poolings is precomputed once per configuration as a sparse weight list per output dimension, applied
 * on each layer's own grid, and only the D-dimensional pooled maps are interpolated (interpolation and
 * channel pooling commute). See docs/method-implementation.md.
 *
 * Usage: pc_features_plan_create once per configuration (shapes, p, D_pre, D); the plan is immutable
 * and may be shared by threads. Each thread owns a workspace of pc_features_workspace_size(plan)
 * bytes (pc_malloc'd or any 64-byte-aligned buffer). pc_features_compute does no allocation.
 */
#ifndef PC_PATCH_FEATURES_H
#define PC_PATCH_FEATURES_H

#include "internal.h"

#define PC_FEATURES_MAX_LAYERS 4

/* The shape of one layer's activation map for one image. */
typedef struct pc_layer_shape {
    int32_t channels; /* C_l */
    int32_t height;   /* H_l */
    int32_t width;    /* W_l */
} pc_layer_shape;

typedef struct pc_features_plan pc_features_plan;

/* Build the plan for n_layers (1..PC_FEATURES_MAX_LAYERS) layers of the given shapes (in layer order:
 * the first sets the patch grid), patch size p (>= 1; grid side = H_1 + 2*((p-1)/2) - p + 1, i.e. H_1
 * for odd p, as torch.nn.Unfold), pre_dim D_pre >= 1 and dim D >= 1. *out is NULL on failure. */
pc_status pc_features_plan_create(pc_features_plan **out, const pc_layer_shape *layers, int32_t n_layers,
                                  int32_t patch, int32_t pre_dim, int32_t dim);
void pc_features_plan_free(pc_features_plan *plan);

/* The patch grid (H x W) and feature dimension D of a plan. */
void pc_features_plan_grid(const pc_features_plan *plan, int32_t *grid_h, int32_t *grid_w, int32_t *dim);

/* Bytes of workspace one pc_features_compute call needs (64-byte-aligned buffer). */
size_t pc_features_workspace_size(const pc_features_plan *plan);

/* Compute the patch features of one image.
 * out: (H*W, D) row-major. acts[l]: (C_l, H_l, W_l) as given to the plan. workspace: see above.
 * Threads: parallel (OpenMP) inside; thread-safe across threads with distinct workspaces. */
void pc_features_compute(float *out, const float *const *acts, const pc_features_plan *plan, void *workspace);

/* Plain reference of the same (explicit unfold -> interpolate -> pool -> concatenate -> pool), slow and
 * allocating; for tests. out as above. Returns PC_ERR_NO_MEMORY or PC_ERR_INVALID_ARGUMENT on failure. */
pc_status pc_features_reference(float *out, const float *const *acts, const pc_layer_shape *layers,
                                int32_t n_layers, int32_t patch, int32_t pre_dim, int32_t dim);

/* adaptive_avg_pool1d bin i of n bins over an input of length len: [start, end) with start =
 * floor(i*len/n), end = ceil((i+1)*len/n) (PyTorch's start_index/end_index, exact integer maths). */
static inline void pc_adaptive_bin(int64_t i, int64_t n, int64_t len, int64_t *start, int64_t *end) {
    *start = (i * len) / n;
    *end = ((i + 1) * len + n - 1) / n;
}

/* One axis of PyTorch's bilinear resize (align_corners=False, no antialias, scale = in/out, computed in
 * float as torch's CPU kernel does): output index o reads inputs i0[o], i1[o] with weights w0[o], w1[o]. */
void pc_bilinear_axis(int32_t *i0, int32_t *i1, float *w0, float *w1, int32_t in_size, int32_t out_size);

#endif /* PC_PATCH_FEATURES_H */
