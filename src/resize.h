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

#endif
