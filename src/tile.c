/*
 * tile.c - tiling of high-resolution images (docs/tiles.md).
 *
 * Layout: the image (W x H) is scaled to W' = floor(W * scale + 0.5) x H' likewise (PIL BILINEAR;
 * no resize when that is W x H), then cut into tile x tile squares at x = 0, stride, 2 stride, ...
 * while a tile fits, plus one flush with the right edge (W' - tile) when the last does not end there;
 * the same down. stride = max(1, floor(tile * (1 - overlap) + 0.5)).
 * Fit: every tile of every image is one input of the feature extraction (model.c).
 * Predict: each tile runs the single-input pipeline (backbone, features, kNN, patch scores, the tile's
 * tile x tile map); the tile maps are stitched into a W' x H' map (mean: the average of the tiles
 * covering a pixel; max: their largest), resized back to W x H (bilinear, F.interpolate
 * align_corners=False) when scale changed the size; the image score is that map's maximum.
 */
#include "tile.h"
#include "model_impl.h"
#include "scoring.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pc_status pc_tiling_check(const pc_tiling *t, const char *what) {
    if (t->tile < PC_TILE_MIN || t->tile > PC_TILE_MAX)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: tile must be %d..%d pixels, not %d", what, PC_TILE_MIN,
                       PC_TILE_MAX, (int)t->tile);
    if (!(t->overlap >= 0 && t->overlap <= PC_TILE_OVERLAP_MAX))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: tile overlap must be in [0, %g], not %g", what,
                       PC_TILE_OVERLAP_MAX, t->overlap);
    if (!(t->scale > 0 && t->scale <= PC_TILE_SCALE_MAX))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: tile scale must be in (0, %g], not %g", what, PC_TILE_SCALE_MAX,
                       t->scale);
    if (t->stitch != PC_STITCH_MEAN && t->stitch != PC_STITCH_MAX)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: unknown stitch rule %d (mean or max)", what, (int)t->stitch);
    return PC_OK;
}

int32_t pc_tile_stride(int32_t tile, double overlap) {
    const int32_t s = (int32_t)floor((double)tile * (1.0 - overlap) + 0.5);
    return s < 1 ? 1 : s;
}

int32_t pc_tile_scaled_size(int32_t len, double scale) {
    if (scale == 1.0) return len;
    const double v = floor((double)len * scale + 0.5);
    return v < 1 ? 1 : v > (double)INT32_MAX ? INT32_MAX : (int32_t)v;
}

int32_t pc_tile_count(int32_t len, int32_t tile, int32_t stride) {
    if (len < tile) return 0;
    const int32_t d = len - tile;
    return d / stride + 1 + (d % stride != 0);
}

pc_status pc_tile_layout_compute(const pc_tiling *t, int32_t width, int32_t height, const char *name,
                                 pc_tile_layout *out) {
    memset(out, 0, sizeof *out);
    if (width < 1 || height < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: image size %dx%d is not positive", name ? name : "tiling",
                       (int)width, (int)height);
    out->width = width, out->height = height;
    out->sw = pc_tile_scaled_size(width, t->scale);
    out->sh = pc_tile_scaled_size(height, t->scale);
    out->tile = t->tile;
    out->stride = pc_tile_stride(t->tile, t->overlap);
    if ((int64_t)out->sw * out->sh > PC_IMAGE_MAX_PIXELS)
        return pc_fail(PC_ERR_TOO_LARGE, "%s: the %dx%d image scaled by %g is %dx%d, beyond the pixel limit",
                       name ? name : "tiling", (int)width, (int)height, t->scale, (int)out->sw, (int)out->sh);
    if (out->sw < t->tile || out->sh < t->tile) {
        if (t->scale == 1.0)
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: the image is %dx%d, smaller than a %dx%d tile; use a "
                           "smaller --tile or a larger --tile-scale", name ? name : "tiling", (int)width, (int)height,
                           (int)t->tile, (int)t->tile);
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: the image is %dx%d, %dx%d once scaled by %g, smaller than a "
                       "%dx%d tile; use a smaller --tile or a larger --tile-scale", name ? name : "tiling", (int)width,
                       (int)height, (int)out->sw, (int)out->sh, t->scale, (int)t->tile, (int)t->tile);
    }
    out->nx = pc_tile_count(out->sw, t->tile, out->stride);
    out->ny = pc_tile_count(out->sh, t->tile, out->stride);
    return PC_OK;
}

void pc_tile_input(float *out, const uint8_t *rgb, int32_t img_w, int32_t x0, int32_t y0, int32_t tile) {
    /* ToTensor (float32 v / 255) then Normalize ((x - mean) / std), in float32 as torch does */
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    const size_t S = (size_t)tile, plane = S * S;
    for (size_t y = 0; y < S; y++) {
        const uint8_t *row = rgb + (((size_t)y0 + y) * (size_t)img_w + (size_t)x0) * 3;
        for (int ch = 0; ch < 3; ch++) {
            float *o = out + (size_t)ch * plane + y * S;
            for (size_t x = 0; x < S; x++) o[x] = ((float)row[3 * x + (size_t)ch] / 255.0f - mean[ch]) / std[ch];
        }
    }
}

static bool grow(void **p, size_t *cap, size_t need) {
    if (need <= *cap && *p) return true;
    void *q = pc_malloc(need);
    if (!q) return false;
    pc_free(*p);
    *p = q;
    *cap = need;
    return true;
}

pc_status pc_tile_scale(const pc_image *rgb, const pc_tile_layout *L, uint8_t **buf, size_t *cap,
                        pc_resize_cache *rc, pc_image *scaled) {
    if (L->sw == rgb->width && L->sh == rgb->height) {
        *scaled = *rgb;
        return PC_OK;
    }
    const size_t n = (size_t)L->sw * (size_t)L->sh * 3;
    if (!grow((void **)buf, cap, n))
        return pc_fail(PC_ERR_NO_MEMORY, "tiling: cannot allocate %zu bytes for the scaled image", n);
    pc_status st = pc_resize_u8_cached(*buf, L->sw, L->sh, rgb->data, rgb->width, rgb->height, 3, rc);
    if (st) return st;
    *scaled = (pc_image){.data = *buf, .width = L->sw, .height = L->sh, .channels = 3};
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Fit
 * -------------------------------------------------------------------------------------------- */

void pc_tile_items_free(pc_tile_items *it) {
    pc_free(it->item);
    pc_free(it->layout);
    pc_free(it->reported);
    memset(it, 0, sizeof *it);
}

pc_status pc_tile_items_build(const pc_fit_options *opt, const char *const *paths, const pc_image *images,
                              size_t n_in, pc_tile_items *out) {
    memset(out, 0, sizeof *out);
    out->tiling = opt->tiling;
    out->n_img = (int32_t)n_in;
    out->layout = pc_calloc(n_in, sizeof *out->layout);
    out->reported = pc_calloc(n_in, 1);
    pc_status *sts = pc_calloc(n_in, sizeof *sts);
    char(*msgs)[512] = pc_calloc(n_in, sizeof *msgs);
    if (!out->layout || !out->reported || !sts || !msgs) {
        pc_free(sts), pc_free(msgs);
        pc_tile_items_free(out);
        return pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory");
    }
    /* sizes, in parallel: a header probe, or a whole decode for what the probe cannot read */
#pragma omp parallel for schedule(dynamic, 4)
    for (size_t i = 0; i < n_in; i++) {
        int32_t w = 0, h = 0;
        pc_status s = PC_OK;
        char name[64];
        const char *nm = paths ? paths[i] : (snprintf(name, sizeof name, "image #%zu", i), name);
        if (paths) {
            if (pc_image_probe(paths[i], &w, &h)) {
                pc_image tmp = {0};
                s = pc_image_load(paths[i], &tmp);
                w = tmp.width, h = tmp.height;
                pc_image_free(&tmp);
            }
        } else if (!images[i].data || images[i].channels != 3) {
            s = pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: not an 8-bit RGB image (channels %d)", nm,
                        (int)images[i].channels);
        } else {
            w = images[i].width, h = images[i].height;
        }
        if (!s) s = pc_tile_layout_compute(&opt->tiling, w, h, nm, &out->layout[i]);
        if (s) {
            memset(&out->layout[i], 0, sizeof out->layout[i]);
            snprintf(msgs[i], sizeof msgs[i], "%s", pc_last_error());
        }
        sts[i] = s;
    }
    size_t n = 0;
    for (size_t i = 0; i < n_in; i++) n += (size_t)out->layout[i].nx * (size_t)out->layout[i].ny;
    pc_status st = PC_OK;
    for (size_t i = 0; i < n_in; i++)
        if (sts[i]) {
            out->reported[i] = 1;
            if (opt->on_image_error) {
                char name[64];
                snprintf(name, sizeof name, "image #%zu", i);
                opt->on_image_error(opt->on_image_error_user, paths ? paths[i] : name, sts[i], msgs[i]);
            }
        }
    if (n == 0) {
        st = pc_fail(PC_ERR_INVALID_ARGUMENT, "fit: none of the %zu training images could be tiled%s%s", n_in,
                     n_in ? ": " : "", n_in ? msgs[0] : "");
    } else if (!(out->item = pc_malloc(n * sizeof *out->item))) {
        st = pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory for %zu tiles", n);
    } else {
        size_t k = 0;
        for (size_t i = 0; i < n_in; i++) {
            const pc_tile_layout *L = &out->layout[i];
            for (int32_t ty = 0; ty < L->ny; ty++)
                for (int32_t tx = 0; tx < L->nx; tx++)
                    out->item[k++] = (pc_tile_item){(int32_t)i, pc_tile_pos(tx, L->sw, L->tile, L->stride),
                                                    pc_tile_pos(ty, L->sh, L->tile, L->stride)};
        }
        out->n = n;
    }
    pc_free(sts), pc_free(msgs);
    if (st) pc_tile_items_free(out);
    return st;
}

static void entry_clear(pc_tile_cache_entry *e) {
    if (e->owned) pc_free(e->scaled.data);
    memset(e, 0, sizeof *e);
}

void pc_tile_cache_free(pc_tile_cache *c) {
    for (int32_t i = 0; i < c->n; i++) entry_clear(&c->e[i]);
    pc_free(c->e);
    memset(c, 0, sizeof *c);
}

const pc_tile_cache_entry *pc_tile_cache_find(const pc_tile_cache *c, int32_t img) {
    for (int32_t i = 0; i < c->n; i++)
        if (c->e[i].img == img) return &c->e[i];
    return NULL;
}

/* One training image decoded and scaled into e (e->img set). */
static void cache_load(pc_tile_cache_entry *e, const pc_tile_items *it, const char *const *paths,
                       const pc_image *images) {
    const pc_tile_layout *L = &it->layout[e->img];
    pc_image src = {0}, dec = {0};
    pc_status s = PC_OK;
    if (paths) {
        s = pc_image_load(paths[e->img], &dec);
        src = dec;
        if (!s && (dec.width != L->width || dec.height != L->height))
            s = pc_fail(PC_ERR_FORMAT, "%s: decoded as %dx%d, its header said %dx%d", paths[e->img], (int)dec.width,
                        (int)dec.height, (int)L->width, (int)L->height);
    } else {
        src = images[e->img];
    }
    if (!s) {
        if (L->sw == src.width && L->sh == src.height) {
            e->scaled = src;
            e->owned = paths != NULL;
            dec.data = NULL; /* now the entry's */
        } else {
            uint8_t *buf = NULL;
            size_t cap = 0;
            s = pc_tile_scale(&src, L, &buf, &cap, NULL, &e->scaled);
            if (!s) e->owned = true;
            else pc_free(buf);
        }
    }
    pc_image_free(&dec);
    e->st = s;
    if (s) snprintf(e->msg, sizeof e->msg, "%s", pc_last_error());
}

pc_status pc_tile_cache_prepare(pc_tile_cache *c, const pc_tile_items *it, const char *const *paths,
                                const pc_image *images, size_t i0, size_t n) {
    /* items are image-major: the batch's images are a contiguous range */
    const int32_t first = it->item[i0].img, last = it->item[i0 + n - 1].img;
    const int32_t need = last - first + 1;
    /* drop what the batch does not use (keeping, say, the previous batch's last image) */
    int32_t k = 0;
    for (int32_t i = 0; i < c->n; i++) {
        if (c->e[i].img >= first && c->e[i].img <= last) c->e[k++] = c->e[i];
        else entry_clear(&c->e[i]);
    }
    c->n = k;
    if (need > c->cap) {
        pc_tile_cache_entry *e = pc_calloc((size_t)need, sizeof *e);
        if (!e) return pc_fail(PC_ERR_NO_MEMORY, "fit: out of memory");
        if (c->n) memcpy(e, c->e, (size_t)c->n * sizeof *e);
        pc_free(c->e);
        c->e = e, c->cap = need;
    }
    const int32_t have = c->n;
    for (int32_t img = first; img <= last; img++) {
        if (pc_tile_cache_find(c, img)) continue;
        const pc_tile_layout *L = &it->layout[img];
        if (L->nx == 0) continue; /* no tiles (cannot happen inside a range of items, but be safe) */
        memset(&c->e[c->n], 0, sizeof c->e[c->n]);
        c->e[c->n++].img = img;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int32_t i = have; i < c->n; i++) cache_load(&c->e[i], it, paths, images);
    return PC_OK;
}

/* ----------------------------------------------------------------------------------------------
 * Predict
 * -------------------------------------------------------------------------------------------- */

void pc_tile_bufs_free(pc_tile_bufs *b) {
    pc_free(b->img);
    pc_free(b->acc);
    pc_free(b->tmap);
    pc_free(b->out);
    pc_free(b->cnt);
    pc_free(b->rws);
    pc_resize_cache_free(&b->rc);
    memset(b, 0, sizeof *b);
}

pc_status pc_tile_predict(pc_model *m, pctx *c, const pc_image *rgb, const pc_tiling *t, float *score, float *map,
                          pc_geometry *geometry) {
    if (!rgb || !rgb->data || rgb->channels != 3)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "predict: not an 8-bit RGB image");
    pc_tile_layout L;
    pc_status st = pc_tile_layout_compute(t, rgb->width, rgb->height, "predict", &L);
    if (st) return st;
    pc_tile_bufs *b = &c->tb;
    const int32_t S = L.tile, W = L.width, H = L.height;
    const size_t SS = (size_t)S * S, nacc = (size_t)L.sw * L.sh, nout = (size_t)W * H;
    const bool back = L.sw != W || L.sh != H;
    if (!grow((void **)&b->acc, &b->acc_cap, nacc * sizeof(float)) ||
        !grow((void **)&b->tmap, &b->tmap_cap, SS * sizeof(float)) ||
        !grow((void **)&b->cnt, &b->cnt_cap, ((size_t)L.sw + L.sh) * sizeof(int32_t)) ||
        (back && !map && !grow((void **)&b->out, &b->out_cap, nout * sizeof(float))) ||
        (back && !grow(&b->rws, &b->rws_cap, pc_resize_workspace_size(H, W))))
        return pc_fail(PC_ERR_NO_MEMORY, "predict: cannot allocate the stitching buffers for a %dx%d image", (int)W,
                       (int)H);
    pc_image scaled;
    st = pc_tile_scale(rgb, &L, &b->img, &b->img_cap, &b->rc, &scaled);
    if (st) return st;
    const bool mean = t->stitch == PC_STITCH_MEAN;
    float *acc = b->acc;
    for (size_t i = 0; i < nacc; i++) acc[i] = mean ? 0.0f : -INFINITY;
    for (int32_t ty = 0; ty < L.ny && !st; ty++) {
        const int32_t y0 = pc_tile_pos(ty, L.sh, S, L.stride);
        for (int32_t tx = 0; tx < L.nx && !st; tx++) {
            const int32_t x0 = pc_tile_pos(tx, L.sw, S, L.stride);
            pc_tile_input(c->input, scaled.data, scaled.width, x0, y0, S);
            st = pc_model_predict_core(m, c, NULL, c->input, NULL);
            if (st) break;
            pc_anomaly_map(b->tmap, c->pscores, m->grid_h, m->grid_w, S, GAUSSIAN_SIGMA, c->mws);
            for (int32_t y = 0; y < S; y++) {
                float *a = acc + (size_t)(y0 + y) * L.sw + x0;
                const float *v = b->tmap + (size_t)y * S;
                if (mean)
                    for (int32_t x = 0; x < S; x++) a[x] += v[x];
                else
                    for (int32_t x = 0; x < S; x++) a[x] = v[x] > a[x] ? v[x] : a[x];
            }
        }
    }
    if (st) return st;
    if (mean) {
        /* the tiles covering pixel (x, y): those across covering x times those down covering y */
        int32_t *cx = b->cnt, *cy = b->cnt + L.sw;
        memset(b->cnt, 0, ((size_t)L.sw + L.sh) * sizeof(int32_t));
        for (int32_t i = 0; i < L.nx; i++)
            for (int32_t x = pc_tile_pos(i, L.sw, S, L.stride), e = x + S; x < e; x++) cx[x]++;
        for (int32_t j = 0; j < L.ny; j++)
            for (int32_t y = pc_tile_pos(j, L.sh, S, L.stride), e = y + S; y < e; y++) cy[y]++;
        for (int32_t y = 0; y < L.sh; y++)
            for (int32_t x = 0; x < L.sw; x++) acc[(size_t)y * L.sw + x] /= (float)(cx[x] * cy[y]);
    }
    const float *final = acc;
    if (back) {
        float *dst = map ? map : b->out;
        pc_resize_bilinear_f32(dst, H, W, acc, L.sh, L.sw, b->rws);
        final = dst;
    } else if (map) {
        memcpy(map, acc, nacc * sizeof(float));
    }
    float s = final[0];
    for (size_t i = 1; i < nout; i++) s = final[i] > s ? final[i] : s;
    *score = s;
    if (geometry)
        *geometry = (pc_geometry){.orig_width = W, .orig_height = H, .resized_width = W, .resized_height = H,
                                  .crop_left = 0, .crop_top = 0, .crop_size = S, .map_width = W, .map_height = H};
    return PC_OK;
}
