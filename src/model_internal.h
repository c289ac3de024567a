/*
 * model_internal.h - views into a model for tests and tools: the pipeline's intermediate results and
 * the coreset's choice. Not part of the public API.
 */
#ifndef PC_MODEL_INTERNAL_H
#define PC_MODEL_INTERNAL_H

#include "internal.h"

/* The patch features (HW x D) and patch scores (HW) of one image; either output may be NULL.
 * Thread-safe like pc_model_predict. */
pc_status pc_model_patch_outputs(pc_model *m, const pc_image *rgb, float *features, float *patch_scores);

/* The patch scores (HW, 0 outside the region of interest) and the crop x crop inspect mask (0/1; all
 * 1 without a region of interest) of one image under the region of interest opt selects (NULL: the
 * model's; docs/roi.md). Either output may be NULL. Single models only. Thread-safe. */
pc_status pc_model_roi_outputs(pc_model *m, const pc_image *rgb, const pc_predict_options *opt, float *patch_scores,
                               uint8_t *inspect);

/* The selected training-patch indices in selection order (*n entries), or NULL for a loaded model. */
const int64_t *pc_model_coreset_indices(const pc_model *m, int64_t *n);

/* The memory bank (*n x *dim floats). */
const float *pc_model_bank(const pc_model *m, int64_t *n, int32_t *dim);

/* One single model's raw prediction (no thresholds): the image score (Eq. 7 included) and, when map
 * is not NULL, its crop x crop map. input: the image already preprocessed at this model's resize and
 * crop (NULL: preprocess rgb, filling geometry); keep, when not NULL and input is NULL, receives the
 * preprocessed tensor (3 x crop x crop) for another model with the same preprocessing. Thread-safe
 * like pc_model_predict. */
pc_status pc_model_predict_raw(pc_model *m, const pc_image *rgb, const float *input, float *keep, float *score,
                               float *map, pc_geometry *geometry);

/* For each training image in the bank (in bank order), its index among the inputs of the fit
 * (*n = n_train_images), or NULL for a loaded model: row r of the training features, and so bank
 * entry i with coreset index r, came from input usable[r / (grid_h * grid_w)]. */
const int64_t *pc_model_usable_sources(const pc_model *m, int32_t *n);

#endif
