/*
 * ensemble.h - an ensemble's combination of its members' outputs (docs/ensemble.md): the
 * per-member normalisation statistics computed at fit (leave-one-out predictions of training
 * images), the combined prediction, and the reference's test-set min-max rule used by evaluation.
 * Internal to the library; model.c owns the members and the calibration.
 */
#ifndef PC_ENSEMBLE_H
#define PC_ENSEMBLE_H

#include "internal.h"

#define PC_ENSEMBLE_MAX_MEMBERS 16

typedef struct pc_ensemble pc_ensemble;

/* An ensemble over members[0..n) (not owned; they must outlive it) with stats[i] = member i's image
 * mean, sd, pixel mean, sd. */
pc_status pc_ensemble_create(pc_ensemble **out, pc_model **members, int32_t n, const double (*stats)[4]);
void pc_ensemble_free(pc_ensemble *e);
void pc_ensemble_member_stats(const pc_ensemble *e, int32_t i, double stats[4]);

/* Fit time: the statistics of every member from leave-one-out predictions of up to
 * PC_ENSEMBLE_NORM_IMAGES of the training images (paths as given to the fit; the members must have
 * been fitted on them, so that their coreset indices and usable sources are known), then
 * pc_ensemble_create. Progress stage "normalise". */
pc_status pc_ensemble_fit_stats(pc_ensemble **out, pc_model **members, int32_t n, const char *const *paths,
                                pc_progress_fn progress, void *progress_user);

/* The combined raw score and (map != NULL) the combined map at the first member's crop: the mean
 * over members of (s - mean) / sd and of (v - pmean) / psd, members' maps of another crop resized
 * bilinearly to the first member's first. Each decoded image is preprocessed once per distinct
 * (resize, crop). geometry: the first member's. Thread-safe; allocates nothing once its pool is warm. */
pc_status pc_ensemble_predict(pc_ensemble *e, const pc_image *rgb, float *score, float *map, pc_geometry *geometry);

/* The reference's test-set rule, one member at a time: adds to acc_scores (n) the member's scores
 * min-max normalised over the n images ((x - min) / (max - min) in float32, as numpy computes it
 * on float32 arrays), and to acc_maps (n x s0 x s0) its maps (n x s x s) min-max normalised over
 * all their pixels and, when s != s0, resized bilinearly to s0 x s0 (normalised first). Start from zeroed
 * accumulators; pc_minmax_finish divides by the member count (numpy's mean over axis 0: sums in
 * member order, then the division, all float32). A constant member (max == min) contributes NaN,
 * as numpy's 0/0 does. ws: pc_minmax_workspace_size(s0, s) bytes. */
size_t pc_minmax_workspace_size(int32_t s0, int32_t s);
void pc_minmax_accumulate(float *acc_scores, float *acc_maps, int64_t n, int32_t s0, const float *scores,
                          const float *maps, int32_t s, void *ws);
void pc_minmax_finish(float *acc_scores, float *acc_maps, int64_t n, int32_t s0, int32_t n_members);

#endif /* PC_ENSEMBLE_H */
