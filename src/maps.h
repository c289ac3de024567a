/*
 * maps.h - the size of a prediction's map and what it needs from the inputs, for every consumer of
 * maps (overlay, regions, evaluation, calibration): the map size a geometry describes, the
 * ground-truth mask of a map, and an image file's size without decoding its pixels.
 */
#ifndef PC_MAPS_H
#define PC_MAPS_H

#include "internal.h"

/* The map size a geometry describes: map_width x map_height, or crop_size x crop_size when both are
 * 0 (geometries filled by hand by code older than the map size). The map covers the resized image's
 * pixels [crop_left, crop_left + map_width) x [crop_top, crop_top + map_height), one map pixel per
 * resized pixel: the crop for an ordinary prediction, the whole image for a tiled one (identity
 * geometry). */
static inline void pc_geometry_map_dims(const pc_geometry *g, int32_t *w, int32_t *h) {
    if (g->map_width == 0 && g->map_height == 0) *w = *h = g->crop_size;
    else *w = g->map_width, *h = g->map_height;
}

/* The ground-truth mask of a map of mw x mh from an 8-bit grey mask (pc_image_load_grey), into out
 * (mw x mh bytes, 0/1). A tiled model's map has the original image's size: the mask is used at full
 * resolution, pixel for pixel (it must be mw x mh), with the rule's threshold (full: value == 255,
 * half: value >= 128). Otherwise the map is the crop: pc_preprocess_mask_ex(out, grey, resize, crop,
 * rule), which needs mw == mh == crop. info is the model's (its tiling, resize and crop). */
pc_status pc_mask_for_map(uint8_t *out, const pc_image *grey, const pc_model_info *info, int32_t mw, int32_t mh,
                          pc_mask_rule rule);

/* The width and height of an image file: read from a PNG's IHDR when the file is a PNG, else by
 * decoding it (pc_image_load). Sizes are validated as pc_image_load validates them. */
pc_status pc_image_file_size(const char *path, int32_t *width, int32_t *height);

/* AUPRO (pc_metric_aupro) of n maps and masks of different sizes, laid out one after the other:
 * image k is hs[k] x ws[k] pixels. pc_metric_aupro is this with every size h x w. */
pc_status pc_metric_aupro_sizes(double *aupro, const float *maps, const uint8_t *masks, int32_t n,
                                const int32_t *hs, const int32_t *ws, double fpr_limit);

/* pc_eval_aggregate over maps and masks of different sizes, laid out one after the other (image i is
 * hs[i] x ws[i]); the pixel metrics pool every pixel of every image as pc_eval_aggregate pools them. */
pc_status pc_eval_aggregate_sizes(pc_eval_result *out, const float *scores, const float *maps, const uint8_t *masks,
                                  const int32_t *types, const char *const *type_names, int32_t n_types,
                                  int32_t good_type, int32_t n, const int32_t *hs, const int32_t *ws);

#endif /* PC_MAPS_H */
