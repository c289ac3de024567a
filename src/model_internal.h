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

/* The selected training-patch indices in selection order (*n entries), or NULL for a loaded model. */
const int64_t *pc_model_coreset_indices(const pc_model *m, int64_t *n);

/* The memory bank (*n x *dim floats). */
const float *pc_model_bank(const pc_model *m, int64_t *n, int32_t *dim);

#endif
