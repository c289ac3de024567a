/*
 * scoring.h - patch and image anomaly scores, the paper's Eq. 7 reweighting, and anomaly maps
 * (METHOD.md §5-6): bilinear resize of the patch-score grid and scipy.ndimage.gaussian_filter.
 */
#ifndef PC_SCORING_H
#define PC_SCORING_H

#include "internal.h"

/* Patch scores: scores[i] = mean of the k squared distances dists[i*k .. i*k+k) (the reference's
 * np.mean(query_distances, axis=-1), accumulated in order in float). scores: (m). dists: (m, k). */
void pc_patch_scores(float *scores, const float *dists, int64_t m, int32_t k);

/* Image score: the maximum patch score (first index on ties, into *argmax if not NULL). m >= 1. */
float pc_image_score(const float *scores, int64_t m, int64_t *argmax);

/* Eq. 7 of the paper (not in the reference code): the image score s_star reweighted by
 *   w = 1 - exp(||m_test - m*||) / sum_{m in N_b(m*)} exp(||m_test - m||)
 * in the stable form exp(d* - M) / sum exp(d_j - M), M = the largest of the distances involved.
 * m_test: (dim) the patch feature attaining s_star. m_star: (dim) its nearest bank entry.
 * neighbours: (b, dim) rows = N_b(m*), the b nearest bank entries of m* (which, found by an exact kNN
 * of m* against the bank, include m* itself at distance 0, as anomalib's implementation does).
 * Distances are Euclidean (not squared), accumulated in double. Returns w * s_star.
 * b == 0 gives s_star unchanged. */
float pc_score_reweight(float s_star, const float *m_test, const float *m_star, const float *neighbours,
                        int32_t b, int32_t dim);

/* Bilinear resize of one float map (PyTorch F.interpolate(mode="bilinear", align_corners=False), no
 * antialias). out: (out_h, out_w). in: (in_h, in_w). workspace: 2*(out_h+out_w) int32 + as many floats
 * (pc_resize_workspace_size bytes), 16-byte aligned. */
size_t pc_resize_workspace_size(int32_t out_h, int32_t out_w);
void pc_resize_bilinear_f32(float *out, int32_t out_h, int32_t out_w, const float *in, int32_t in_h, int32_t in_w,
                            void *workspace);

/* Gaussian kernel radius of scipy.ndimage.gaussian_filter: int(truncate * sigma + 0.5). */
int32_t pc_gaussian_radius(double sigma, double truncate);

/* scipy.ndimage.gaussian_filter(in, sigma, mode="reflect", truncate) of a float32 (h, w) image:
 * weights exp(-x^2 / (2 sigma^2)) normalised in double; axis 0 (down columns) first, then axis 1; each
 * 1-D pass computed in double and rounded to float32 between the passes, as scipy does for float32
 * input (centre tap first, then symmetric pairs from the outside in, as scipy's symmetric-kernel path);
 * boundary 'reflect' (d c b a | a b c d | d c b a), repeated for images smaller than the radius.
 * out may equal in. workspace: pc_gaussian_workspace_size(h, w, sigma, truncate) bytes, 8-byte aligned.
 * sigma <= 0 copies. Single-threaded (about 2 MFLOP at 224 x 224); thread-safe with distinct workspaces. */
size_t pc_gaussian_workspace_size(int32_t h, int32_t w, double sigma, double truncate);
void pc_gaussian_filter_f32(float *out, const float *in, int32_t h, int32_t w, double sigma, double truncate,
                            void *workspace);

/* The anomaly map of METHOD.md §6: patch scores (grid_h, grid_w) -> bilinear (size, size) -> Gaussian
 * (sigma, truncate 4). out: (size, size). workspace: pc_anomaly_map_workspace_size bytes. */
size_t pc_anomaly_map_workspace_size(int32_t size, double sigma);
void pc_anomaly_map(float *out, const float *patch_scores, int32_t grid_h, int32_t grid_w, int32_t size,
                    double sigma, void *workspace);

#endif /* PC_SCORING_H */
