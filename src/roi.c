/*
 * roi.c - regions of interest (docs/roi.md): the mask brought to an image's size, to the square a
 * backbone input covers, to the patch grid; the inside rows of a fit; zeroing outside. The rules are
 * in roi.h and docs/roi.md; model.c calls these from fit and predict.
 */
#include "roi.h"
#include "resize.h"

#include <string.h>

pc_status pc_roi_check(const pc_image *roi, const char *what) {
    if (!roi || !roi->data || roi->width < 1 || roi->height < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: the mask is NULL or empty", what);
    if (roi->channels != 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: the mask has %d channels, expected 1 (8-bit grey: decode it "
                       "with pc_image_load_grey)", what, (int)roi->channels);
    if ((int64_t)roi->width * roi->height > PC_IMAGE_MAX_PIXELS)
        return pc_fail(PC_ERR_TOO_LARGE, "%s: the mask is %dx%d, more than %lld pixels", what, (int)roi->width,
                       (int)roi->height, (long long)PC_IMAGE_MAX_PIXELS);
    const size_t n = (size_t)roi->width * (size_t)roi->height;
    for (size_t i = 0; i < n; i++)
        if (roi->data[i]) return PC_OK;
    return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: the mask (%dx%d) is all black: nothing would be inspected", what,
                   (int)roi->width, (int)roi->height);
}

pc_status pc_roi_to_size(uint8_t *out, const pc_image *roi, int32_t width, int32_t height) {
    const size_t n_in = (size_t)roi->width * (size_t)roi->height;
    if (roi->width == width && roi->height == height) {
        for (size_t i = 0; i < n_in; i++) out[i] = roi->data[i] ? 255 : 0;
        return PC_OK;
    }
    uint8_t *bin = pc_malloc(n_in);
    if (!bin) return pc_fail(PC_ERR_NO_MEMORY, "region of interest: out of memory for a %dx%d mask", (int)roi->width,
                             (int)roi->height);
    for (size_t i = 0; i < n_in; i++) bin[i] = roi->data[i] ? 255 : 0;
    pc_status st = pc_resize_bilinear_u8(out, width, height, bin, roi->width, roi->height, 1);
    pc_free(bin);
    if (st) return st;
    const size_t n = (size_t)width * (size_t)height;
    for (size_t i = 0; i < n; i++) out[i] = out[i] >= 128 ? 255 : 0;
    return PC_OK;
}

pc_status pc_roi_window(uint8_t *out, const uint8_t *mask, int32_t width, int32_t height, int32_t scaled_w,
                        int32_t scaled_h, int32_t x0, int32_t y0, int32_t side) {
    /* the part of the square inside the scaled image */
    const int32_t ax = PC_MAX(x0, 0), ay = PC_MAX(y0, 0);
    const int32_t bx = PC_MIN(x0 + side, scaled_w), by = PC_MIN(y0 + side, scaled_h);
    const size_t n = (size_t)side * (size_t)side;
    memset(out, 0, n);
    if (bx <= ax || by <= ay) return PC_OK;
    const int32_t nx = bx - ax, ny = by - ay;
    uint8_t *part = pc_malloc((size_t)nx * (size_t)ny);
    if (!part) return pc_fail(PC_ERR_NO_MEMORY, "region of interest: out of memory");
    pc_status st = pc_resize_window_u8(part, scaled_w, scaled_h, ax, ay, nx, ny, mask, width, height, 1, 0);
    if (!st)
        for (int32_t y = 0; y < ny; y++)
            for (int32_t x = 0; x < nx; x++)
                out[(size_t)(y + ay - y0) * (size_t)side + (size_t)(x + ax - x0)] = part[(size_t)y * nx + x] >= 128;
    pc_free(part);
    return st;
}

int64_t pc_roi_cells(int64_t *cells, const uint8_t *inspect, int32_t side, int32_t grid_h, int32_t grid_w) {
    int64_t n = 0;
    for (int32_t i = 0; i < grid_h; i++) {
        const int64_t py = (int64_t)(2 * i + 1) * side / (2 * (int64_t)grid_h);
        for (int32_t j = 0; j < grid_w; j++) {
            const int64_t px = (int64_t)(2 * j + 1) * side / (2 * (int64_t)grid_w);
            if (inspect[py * side + px]) cells[n++] = (int64_t)i * grid_w + j;
        }
    }
    return n;
}

void pc_roi_scatter(float *pscores, const int64_t *cells, int64_t n_in, int64_t hw) {
    /* from the last inside cell down: cells[j] >= j, so every slot written lies at or above the one
     * read, and the scores still to be read (below j) are untouched */
    int64_t end = hw; /* first slot already written */
    for (int64_t j = n_in - 1; j >= 0; j--) {
        const float v = pscores[j];
        for (int64_t q = cells[j] + 1; q < end; q++) pscores[q] = 0.0f;
        pscores[cells[j]] = v;
        end = cells[j];
    }
    for (int64_t q = 0; q < end; q++) pscores[q] = 0.0f;
}

void pc_roi_apply_map(float *map, const uint8_t *inspect, int32_t side) {
    const size_t n = (size_t)side * (size_t)side;
    for (size_t i = 0; i < n; i++)
        if (!inspect[i]) map[i] = 0.0f;
}

pc_status pc_roi_cache_update(pc_roi_cache *c, const pc_image *roi, int from_model, const char *what, int32_t width,
                              int32_t height, int32_t resize, int32_t crop, int32_t grid_h, int32_t grid_w) {
    if (from_model && c->from_model && c->width == width && c->height == height) return PC_OK;
    c->width = c->height = 0;
    c->from_model = 0;
    size_t n;
    if (!pc_mul_size((size_t)width, (size_t)height, &n))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: image size %dx%d overflows", what, (int)width, (int)height);
    if (!c->inspect) c->inspect = pc_malloc((size_t)crop * (size_t)crop);
    if (!c->cells) c->cells = pc_malloc((size_t)grid_h * (size_t)grid_w * sizeof *c->cells);
    if (n > c->full_cap) {
        pc_free(c->full);
        c->full = pc_malloc(n);
        c->full_cap = c->full ? n : 0;
    }
    if (!c->inspect || !c->cells || !c->full)
        return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory for a %dx%d image", what, (int)width, (int)height);
    pc_geometry g;
    pc_status st = pc_geometry_compute(width, height, resize, crop, &g);
    if (!st) st = pc_roi_to_size(c->full, roi, width, height);
    if (!st)
        st = pc_roi_window(c->inspect, c->full, width, height, g.resized_width, g.resized_height, g.crop_left,
                           g.crop_top, crop);
    if (st) return pc_fail_context(st, "%s", what);
    c->n_cells = pc_roi_cells(c->cells, c->inspect, crop, grid_h, grid_w);
    if (c->n_cells == 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s (%dx%d) has no patch inside it for a %dx%d image: at resize %d, "
                       "crop %d no patch centre of the %dx%d grid falls on the mask", what, (int)roi->width,
                       (int)roi->height, (int)width, (int)height, (int)resize, (int)crop, (int)grid_h, (int)grid_w);
    c->width = width, c->height = height;
    c->from_model = from_model;
    return PC_OK;
}

void pc_roi_cache_free(pc_roi_cache *c) {
    pc_free(c->full);
    pc_free(c->inspect);
    pc_free(c->cells);
    memset(c, 0, sizeof *c);
}

pc_status pc_roi_fit_rows(int64_t **rows, int64_t *n_rows, const pc_image *roi, const int32_t *sizes,
                          const int64_t *img_of, size_t n_used, int32_t resize, int32_t crop, int32_t grid_h,
                          int32_t grid_w) {
    *rows = NULL, *n_rows = 0;
    const int64_t hw = (int64_t)grid_h * grid_w;
    int64_t *out = pc_malloc(n_used * (size_t)hw * sizeof *out);
    if (!out) return pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for the rows inside the region of interest");
    pc_roi_cache c = {0};
    pc_status st = PC_OK;
    int64_t n = 0;
    for (size_t u = 0; u < n_used && !st; u++) {
        const int64_t i = img_of ? img_of[u] : (int64_t)u;
        const int32_t w = sizes[2 * i], h = sizes[2 * i + 1];
        if (!(c.width == w && c.height == h)) {
            st = pc_roi_cache_update(&c, roi, 1, "fit: the region of interest", w, h, resize, crop, grid_h, grid_w);
            if (st == PC_ERR_INVALID_ARGUMENT && c.inspect && c.cells) {
                /* no inside cell for this size: the image adds nothing (an error only when no image adds) */
                st = PC_OK;
                c.n_cells = 0, c.width = w, c.height = h, c.from_model = 1;
            }
        }
        for (int64_t j = 0; j < c.n_cells && !st; j++) out[n++] = (int64_t)u * hw + c.cells[j];
    }
    pc_roi_cache_free(&c);
    if (!st && n == 0)
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: the region of interest (%dx%d) has no patch inside it in any "
                     "training image (resize %d, crop %d, a %dx%d grid)", (int)roi->width, (int)roi->height,
                     (int)resize, (int)crop, (int)grid_h, (int)grid_w);
    if (st) {
        pc_free(out);
        return st;
    }
    pc_clear_error();
    *rows = out, *n_rows = n;
    return PC_OK;
}
