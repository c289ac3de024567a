/*
 * roi.h - regions of interest (docs/roi.md): a grey mask, non-zero = inspect, in the coordinates of
 * the images, brought to a backbone input's crop x crop window and to its patch grid; the patches
 * outside are not scored and the map is zero there. Internal to the library.
 *
 * The steps are separate so that a tiled prediction can apply an ROI per tile: pc_roi_to_size brings
 * the mask to the (scaled) image's size, pc_roi_window cuts the square a backbone input covers out of
 * it, pc_roi_cells lists the grid cells inside, pc_roi_apply zeroes patch scores and a map outside.
 */
#ifndef PC_ROI_H
#define PC_ROI_H

#include "internal.h"

/* Check a mask given as an ROI: non-NULL, 8-bit grey (channels 1), a positive size, and at least one
 * non-zero pixel. `what` names it in the message ("fit: the region of interest", or a file name). */
pc_status pc_roi_check(const pc_image *roi, const char *what);

/* The mask at width x height as 0/255 bytes (out is width*height): non-zero pixels -> 255; when the
 * mask has another size, it is resized to width x height with PIL's bilinear filter (on the 0/255
 * mask) and a pixel is inside when the resized value is >= 128. */
pc_status pc_roi_to_size(uint8_t *out, const pc_image *roi, int32_t width, int32_t height);

/* The side x side inspect mask (0/1) of a backbone input that covers the square [x0, x0+side) x
 * [y0, y0+side) of the image resized to scaled_w x scaled_h, from mask (0/255, the image's width x
 * height, from pc_roi_to_size): the mask resized like the image (PIL bilinear) and a pixel inside when
 * the value is >= 128; pixels of the square outside the scaled image (padding) are outside. An
 * untiled input is the CenterCrop: the square at (crop_left, crop_top) of side crop in the
 * resized_width x resized_height image (pc_geometry). */
pc_status pc_roi_window(uint8_t *out, const uint8_t *mask, int32_t width, int32_t height, int32_t scaled_w,
                        int32_t scaled_h, int32_t x0, int32_t y0, int32_t side);

/* The grid cells inside a side x side inspect mask (0/1) for a grid_h x grid_w patch grid: cell
 * (i, j) is inside when the mask pixel at its centre, row floor((2i+1) side / (2 grid_h)) and column
 * floor((2j+1) side / (2 grid_w)), is set. cells receives the inside cells' indices i * grid_w + j in
 * increasing order (up to grid_h * grid_w entries); returns their count. */
int64_t pc_roi_cells(int64_t *cells, const uint8_t *inspect, int32_t side, int32_t grid_h, int32_t grid_w);

/* Scatter n_in scores of the inside cells (pscores[0..n_in), in cells' order) to their cells of the
 * hw-cell grid, in place; the cells outside get 0. */
void pc_roi_scatter(float *pscores, const int64_t *cells, int64_t n_in, int64_t hw);

/* Zero a side x side map outside the inspect mask (0/1). */
void pc_roi_apply_map(float *map, const uint8_t *inspect, int32_t side);

/* One context's ROI state, kept between predicts: the inspect mask and inside cells of the last image
 * size for the model's own ROI (a per-call ROI is recomputed at every call). Zero-initialise. */
typedef struct pc_roi_cache {
    int32_t width, height; /* the image size `inspect` and `cells` are for (0: nothing cached) */
    int from_model;        /* 1: computed from the model's ROI (reusable for the same size) */
    uint8_t *full;         /* width x height (0/255) */
    uint8_t *inspect;      /* crop x crop (0/1) */
    int64_t *cells;        /* grid_h * grid_w */
    int64_t n_cells;
    size_t full_cap;
} pc_roi_cache;

/* Fill the cache for an image of width x height under the model geometry (resize, crop, grid) from
 * roi; from_model = 1 reuses what was computed for the same size. Fails with PC_ERR_INVALID_ARGUMENT
 * when no cell is inside (the message names `what`). */
pc_status pc_roi_cache_update(pc_roi_cache *c, const pc_image *roi, int from_model, const char *what, int32_t width,
                              int32_t height, int32_t resize, int32_t crop, int32_t grid_h, int32_t grid_w);
void pc_roi_cache_free(pc_roi_cache *c);

/* The training rows inside the ROI (fit): for usable image u (input index img_of[u], or u when img_of
 * is NULL) of size sizes[2 * input], sizes[2 * input + 1], the rows u * hw + cell of its inside cells,
 * in increasing order, into *rows (allocated, n_used * hw at most); *n_rows their count. Fails when no
 * row is inside for any image. */
pc_status pc_roi_fit_rows(int64_t **rows, int64_t *n_rows, const pc_image *roi, const int32_t *sizes,
                          const int64_t *img_of, size_t n_used, int32_t resize, int32_t crop, int32_t grid_h,
                          int32_t grid_w);

#endif
