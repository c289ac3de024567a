/*
 * resize.h - internal entry to PIL's bilinear resize (src/preprocess.c) for tests and benchmarks:
 * a window of the result, with the fast or the plain reference kernels.
 */
#ifndef PC_RESIZE_H
#define PC_RESIZE_H

#include "patchcore.h"

/* Resize in (in_h, in_w, channels) to out_w x out_h as pc_resize_bilinear_u8 does, writing only the
 * window [x0, x0+nx) x [y0, y0+ny) into out (ny, nx, channels). use_ref != 0 runs the plain reference
 * kernels instead of the fast ones; both must give identical bytes. */
pc_status pc_resize_window_u8(uint8_t *out, int32_t out_w, int32_t out_h, int32_t x0, int32_t y0, int32_t nx,
                              int32_t ny, const uint8_t *in, int32_t in_w, int32_t in_h, int32_t channels,
                              int use_ref);

/* Coefficients of one resampling direction: for every output coordinate i, the input range
 * [start[i], start[i] + len[i]) and len[i] fixed-point weights at weight[i * ksize]. */
typedef struct pc_resample_axis {
    int32_t in_size, out_size; /* what the table was built for (0, 0: none) */
    int32_t ksize;
    int32_t *start;  /* (out) */
    int32_t *len;    /* (out) */
    int32_t *weight; /* (out, ksize) */
} pc_resample_axis;

/* Scratch kept between calls so that preprocessing images of one size allocates nothing after the
 * first: both axes' coefficient tables (rebuilt only when a size changes) and the intermediate
 * buffers (grown, never shrunk). Zero-initialise; not thread-safe (one per thread or context). */
typedef struct pc_resize_cache {
    pc_resample_axis ah, av;
    uint8_t *tmp, *win, *part;
    int32_t *acc;
    size_t tmp_cap, win_cap, part_cap, acc_cap;
} pc_resize_cache;

void pc_resize_cache_free(pc_resize_cache *c);

/* pc_preprocess with a cache (NULL: a temporary one, freed before returning). */
pc_status pc_preprocess_cached(float *out, const pc_image *rgb, int32_t resize, int32_t crop, pc_geometry *geometry,
                               pc_resize_cache *cache);

/* pc_resize_bilinear_u8 keeping its tables and buffers in cache (tiling; src/tile.c). */
pc_status pc_resize_u8_cached(uint8_t *out, int32_t out_w, int32_t out_h, const uint8_t *in, int32_t in_w,
                              int32_t in_h, int32_t channels, pc_resize_cache *cache);

#endif
