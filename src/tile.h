/*
 * tile.h - tiling of high-resolution images (docs/tiles.md): the layout of the tiles over an image
 * scaled by pc_tiling.scale, a tile's backbone input, the expansion of a fit's images into tiles, and
 * the stitching of tile maps into one map of the original size. Not part of the public API.
 */
#ifndef PC_TILE_H
#define PC_TILE_H

#include "internal.h"
#include "resize.h"

#include <stdbool.h>

#define PC_TILE_MIN 16
#define PC_TILE_MAX 4096
#define PC_TILE_OVERLAP_MAX 0.9
#define PC_TILE_SCALE_MAX 16.0
#define PC_TILE_DEFAULT_OVERLAP 0.25

/* The tiles of one image. Tile (i, j) covers [x_i, x_i + tile) x [y_j, y_j + tile) of the scaled
 * image, x_i = pc_tile_pos(i, sw, tile, stride). */
typedef struct pc_tile_layout {
    int32_t width, height; /* the original image */
    int32_t sw, sh;        /* scaled: floor(width * scale + 0.5), floor(height * scale + 0.5) */
    int32_t tile, stride;  /* stride = max(1, floor(tile * (1 - overlap) + 0.5)) */
    int32_t nx, ny;        /* tiles across, down */
} pc_tile_layout;

/* Ranges: tile 16..4096, overlap [0, 0.9], scale (0, 16], stitch mean or max. `what` starts the
 * message ("fit", "predict"). */
pc_status pc_tiling_check(const pc_tiling *t, const char *what);

int32_t pc_tile_stride(int32_t tile, double overlap);
int32_t pc_tile_scaled_size(int32_t len, double scale);
/* Tiles along an axis of length len >= tile: 0, stride, 2 stride, ... while the tile fits, then one
 * flush with the far edge (len - tile) unless the last already is. */
int32_t pc_tile_count(int32_t len, int32_t tile, int32_t stride);
static inline int32_t pc_tile_pos(int32_t i, int32_t len, int32_t tile, int32_t stride) {
    const int64_t p = (int64_t)i * stride;
    return p < len - tile ? (int32_t)p : len - tile;
}

/* The layout of a width x height image named `name` (a path, or NULL). An image whose scaled size is
 * smaller than the tile fails with PC_ERR_INVALID_ARGUMENT naming both sizes. */
pc_status pc_tile_layout_compute(const pc_tiling *t, int32_t width, int32_t height, const char *name,
                                 pc_tile_layout *out);

/* A tile's backbone input (3 x tile x tile): ToTensor and ImageNet Normalize of the pixels
 * [x0, x0 + tile) x [y0, y0 + tile) of an 8-bit RGB image img_w pixels wide (as src/preprocess.c). */
void pc_tile_input(float *out, const uint8_t *rgb, int32_t img_w, int32_t x0, int32_t y0, int32_t tile);

/* The image scaled to the layout's size (PIL BILINEAR, pc_resize_bilinear_u8) into *buf (grown), or,
 * at the original size, a view of rgb. */
pc_status pc_tile_scale(const pc_image *rgb, const pc_tile_layout *L, uint8_t **buf, size_t *cap,
                        pc_resize_cache *rc, pc_image *scaled);

/* The size of a PNG or JPEG from its header, without decoding (src/image.c); PC_ERR_FORMAT for
 * anything it cannot read that way (decode the file instead). */
pc_status pc_image_probe(const char *path, int32_t *width, int32_t *height);

/* ---- fit: every tile of every image is one input of the extraction ---- */

typedef struct pc_tile_item {
    int32_t img, x, y; /* the training image (input index) and the tile's top-left in its scaled image */
} pc_tile_item;

typedef struct pc_tile_items {
    pc_tiling tiling;
    pc_tile_item *item; /* image-major, tiles row by row (y, then x) */
    size_t n;
    int32_t n_img;
    pc_tile_layout *layout; /* per image (nx = 0: unusable, already reported) */
    uint8_t *reported;      /* per image: an error was reported */
} pc_tile_items;

/* The tiles of n_in training images (paths: sizes from a header probe, falling back to a decode;
 * or decoded images). Images that cannot be used (unreadable, smaller than a tile) are reported once
 * through opt->on_image_error and left out. */
pc_status pc_tile_items_build(const pc_fit_options *opt, const char *const *paths, const pc_image *images,
                              size_t n_in, pc_tile_items *out);
void pc_tile_items_free(pc_tile_items *it);

/* A worker's decoded and scaled images, so that each image is decoded once, not once per tile. */
typedef struct pc_tile_cache_entry {
    int32_t img;
    pc_image scaled;
    bool owned;
    pc_status st;
    char msg[256];
} pc_tile_cache_entry;

typedef struct pc_tile_cache {
    pc_tile_cache_entry *e;
    int32_t n, cap;
} pc_tile_cache;

/* Make the images of items [i0, i0 + n) ready in c (keeping those already there, decoding the others
 * in parallel). A decoding failure is kept in its entry (st, msg), not returned. */
pc_status pc_tile_cache_prepare(pc_tile_cache *c, const pc_tile_items *it, const char *const *paths,
                                const pc_image *images, size_t i0, size_t n);
const pc_tile_cache_entry *pc_tile_cache_find(const pc_tile_cache *c, int32_t img);
void pc_tile_cache_free(pc_tile_cache *c);

/* ---- predict: the scratch of a tiled prediction, grown only when a larger image arrives ---- */

typedef struct pc_tile_bufs {
    uint8_t *img;        /* the scaled image */
    float *acc;          /* sw x sh: the stitched map */
    float *tmap;         /* tile x tile: one tile's map */
    float *out;          /* width x height: the map resized back, when the caller passes none */
    int32_t *cnt;        /* sw + sh: tiles covering each column, each row */
    void *rws;           /* the float resize's workspace */
    size_t img_cap, acc_cap, tmap_cap, out_cap, cnt_cap, rws_cap;
    pc_resize_cache rc;
} pc_tile_bufs;

void pc_tile_bufs_free(pc_tile_bufs *b);

#endif
