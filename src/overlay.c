/*
 * overlay.c - anomaly maps drawn on the original image: the fixed, threshold-anchored colour scale
 * (pc_heat_index, pc_heat_colormap), the mapping of original pixels back into the map, bilinear
 * sampling, alpha blending and region outlines (pc_overlay_render). The map is map_width x map_height
 * (crop x crop, or the image's size for a tiled prediction): one map pixel per resized-image pixel
 * from (crop_left, crop_top), whatever its shape. Formulas in patchcore.h and
 * docs/visualisation.md; tests/ref/gen_overlay.py re-implements them in numpy/scipy as the oracle.
 */
#include "internal.h"
#include "maps.h"

#include <math.h>
#include <string.h>

/* ln(9): p = 0.1 one scale below the threshold and 0.9 one scale above, as pc_threshold_normalize. */
#define PC_LN9 2.1972245773362196

/* Control points of the colour scale (index, R, G, B): inferno's colours at 0, 1/4, 1/2, 3/4, 1. */
static const int lut_points[5][4] = {
    {0, 0, 0, 4}, {64, 87, 16, 110}, {128, 188, 55, 84}, {192, 249, 142, 9}, {255, 252, 255, 164},
};

void pc_heat_colormap(uint8_t *rgb) {
    for (int i = 0; i < 256; i++) {
        int k = 0;
        while (k < 3 && i > lut_points[k + 1][0]) k++;
        int i0 = lut_points[k][0], i1 = lut_points[k + 1][0];
        for (int c = 0; c < 3; c++) {
            int c0 = lut_points[k][c + 1], c1 = lut_points[k + 1][c + 1];
            rgb[3 * i + c] = (uint8_t)((c0 * (i1 - i) + c1 * (i - i0) + (i1 - i0) / 2) / (i1 - i0));
        }
    }
}

/* No FMA contraction: the oracle (numpy) rounds every product and sum, and so must we to agree on
 * which side of the threshold / of a colour step a value falls. */
__attribute__((optimize("fp-contract=off"))) int32_t pc_heat_index(double value, double threshold, double scale) {
    if (isnan(value) || !(scale > 0.0)) return -1;
    double t = (value - threshold) / scale;
    double p = 1.0 / (1.0 + exp(-PC_LN9 * t));
    double f = floor(p * 256.0);
    return f >= 255.0 ? 255 : (f <= 0.0 ? 0 : (int32_t)f);
}

void pc_overlay_options_init(pc_overlay_options *opt, double threshold, double scale) {
    if (!opt) return;
    memset(opt, 0, sizeof *opt);
    opt->threshold = threshold;
    opt->scale = scale;
    opt->opacity = 0.6;
    opt->outline_width = 0;
    opt->outline_rgb[0] = 0;
    opt->outline_rgb[1] = 255;
    opt->outline_rgb[2] = 255;
}

/* Where original column x (or row) lands in the map: the bilinear taps j0, j1 and weight of j1, or
 * inside = 0 when its centre falls outside the map (`extent`: the map's width for columns, its
 * height for rows). Computed once per column and per row. */
typedef struct tap {
    int32_t j0, j1;
    double w;
    int32_t inside;
} tap;

__attribute__((optimize("fp-contract=off"))) static void make_taps(tap *taps, int32_t n_orig, int32_t n_resized,
                                                                 int32_t crop_off, int32_t extent) {
    for (int32_t x = 0; x < n_orig; x++) {
        double s = (x + 0.5) * n_resized / n_orig - crop_off;
        tap t = {0, 0, 0.0, s >= 0.0 && s < extent};
        if (t.inside) {
            double f = s - 0.5;
            if (f < 0.0) f = 0.0;
            if (f > extent - 1) f = extent - 1;
            t.j0 = (int32_t)floor(f);
            t.j1 = t.j0 + 1 < extent ? t.j0 + 1 : extent - 1;
            t.w = f - t.j0;
        }
        taps[x] = t;
    }
}

/* The sampled map value at every original pixel (NaN outside the map). vals is h x w; map's rows are
 * mw floats. */
__attribute__((optimize("fp-contract=off"))) static void sample_map(double *vals, const float *map, int32_t mw,
                                                                  const tap *tx, const tap *ty, int32_t h, int32_t w) {
#pragma omp parallel for schedule(static) if ((int64_t)h * w > 65536)
    for (int32_t y = 0; y < h; y++) {
        double *row = vals + (size_t)y * w;
        const tap a = ty[y];
        const float *r0 = map + (size_t)a.j0 * mw, *r1 = map + (size_t)a.j1 * mw;
        for (int32_t x = 0; x < w; x++) {
            const tap b = tx[x];
            if (!a.inside || !b.inside) {
                row[x] = NAN;
                continue;
            }
            double top = (1.0 - b.w) * (double)r0[b.j0] + b.w * (double)r0[b.j1];
            double bot = (1.0 - b.w) * (double)r1[b.j0] + b.w * (double)r1[b.j1];
            row[x] = (1.0 - a.w) * top + a.w * bot;
        }
    }
}

pc_status pc_overlay_render(pc_image *out, const pc_image *rgb, const float *map, const pc_geometry *g,
                            const pc_overlay_options *opt) {
    pc_threads_apply();
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: out is NULL");
    memset(out, 0, sizeof *out);
    if (!rgb || !rgb->data || !map || !g || !opt)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: image, map, geometry and options are required");
    if (rgb->channels != 3)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: the image must be RGB (3 channels), not %d", (int)rgb->channels);
    if (rgb->width != g->orig_width || rgb->height != g->orig_height || rgb->width < 1 || rgb->height < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: the image is %dx%d but the geometry is for %dx%d",
                       (int)rgb->width, (int)rgb->height, (int)g->orig_width, (int)g->orig_height);
    int32_t mw, mh;
    pc_geometry_map_dims(g, &mw, &mh);
    if (g->crop_size < 1 || g->resized_width < 1 || g->resized_height < 1 || mw < 1 || mh < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: invalid geometry (crop %d, map %dx%d)", (int)g->crop_size,
                       (int)mw, (int)mh);
    if (!isfinite(opt->threshold) || !(opt->scale > 0.0) || !isfinite(opt->scale))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: the threshold must be finite and the scale > 0 "
                                                "(threshold %g, scale %g)", opt->threshold, opt->scale);
    if (!(opt->opacity >= 0.0 && opt->opacity <= 1.0))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "overlay: opacity must be in [0, 1], not %g", opt->opacity);

    const int32_t w = rgb->width, h = rgb->height;
    size_t npix, nbytes, nvals;
    if (!pc_mul_size((size_t)w, (size_t)h, &npix) || !pc_mul_size(npix, 3, &nbytes) ||
        !pc_mul_size(npix, sizeof(double), &nvals))
        return pc_fail(PC_ERR_TOO_LARGE, "overlay: image too large");
    double *vals = pc_malloc(nvals);
    uint8_t *inside = pc_malloc(npix);
    tap *tx = pc_malloc(sizeof(tap) * (size_t)w), *ty = pc_malloc(sizeof(tap) * (size_t)h);
    uint8_t *dst = pc_malloc(nbytes);
    if (!vals || !inside || !tx || !ty || !dst) {
        pc_free(vals), pc_free(inside), pc_free(tx), pc_free(ty), pc_free(dst);
        return pc_fail(PC_ERR_NO_MEMORY, "overlay: out of memory for a %dx%d image", (int)w, (int)h);
    }
    make_taps(tx, w, g->resized_width, g->crop_left, mw);
    make_taps(ty, h, g->resized_height, g->crop_top, mh);
    sample_map(vals, map, mw, tx, ty, h, w);

    uint8_t lut[256 * 3];
    pc_heat_colormap(lut);
    const int amax = (int)lround(opt->opacity * 255.0);
    uint8_t alpha[256];
    for (int i = 0; i < 256; i++)
        alpha[i] = (uint8_t)(i < PC_HEAT_ALPHA_LO   ? 0
                             : i >= PC_HEAT_ALPHA_HI ? amax
                                                     : amax * (i - PC_HEAT_ALPHA_LO) / (PC_HEAT_ALPHA_HI - PC_HEAT_ALPHA_LO));

#pragma omp parallel for schedule(static) if (npix > 65536)
    for (int32_t y = 0; y < h; y++) {
        for (int32_t x = 0; x < w; x++) {
            size_t k = (size_t)y * w + x;
            const uint8_t *src = rgb->data + 3 * k;
            uint8_t *o = dst + 3 * k;
            double v = vals[k];
            int32_t i = pc_heat_index(v, opt->threshold, opt->scale);
            inside[k] = v > opt->threshold; /* false for NaN (outside the map) */
            if (i < 0 || alpha[i] == 0) {
                o[0] = src[0], o[1] = src[1], o[2] = src[2];
                continue;
            }
            int a = alpha[i];
            for (int c = 0; c < 3; c++) o[c] = (uint8_t)((src[c] * (255 - a) + lut[3 * i + c] * a + 127) / 255);
        }
    }

    int32_t ow = opt->outline_width;
    if (ow == 0) ow = PC_MAX(1, (PC_MIN(w, h) + 150) / 300);
    if (ow > 0) {
        /* Outline = inside minus its erosion by a (2 ow + 1)^2 square, outside the image counting as
         * not inside. Separable: a pixel survives the erosion when every pixel in its row window and
         * then every row in its column window is inside. row_ok reuses the vals buffer as bytes. */
        const int32_t r = ow;
        uint8_t *row_ok = (uint8_t *)vals;
#pragma omp parallel for schedule(static) if (npix > 65536)
        for (int32_t y = 0; y < h; y++) {
            const uint8_t *in = inside + (size_t)y * w;
            uint8_t *ok = row_ok + (size_t)y * w;
            for (int32_t x = 0; x < w; x++) {
                int all = x - r >= 0 && x + r < w;
                for (int32_t d = -r; all && d <= r; d++) all = in[x + d];
                ok[x] = (uint8_t)all;
            }
        }
#pragma omp parallel for schedule(static) if (npix > 65536)
        for (int32_t y = 0; y < h; y++) {
            for (int32_t x = 0; x < w; x++) {
                size_t k = (size_t)y * w + x;
                if (!inside[k]) continue;
                int eroded = y - r >= 0 && y + r < h;
                for (int32_t d = -r; eroded && d <= r; d++) eroded = row_ok[k + (ptrdiff_t)d * w];
                if (!eroded) memcpy(dst + 3 * k, opt->outline_rgb, 3);
            }
        }
    }
    pc_free(vals), pc_free(inside), pc_free(tx), pc_free(ty);
    out->width = w;
    out->height = h;
    out->channels = 3;
    out->data = dst;
    return PC_OK;
}

/* =============================================================================================
 * Back from the map grid to the original image (region boxes and peaks)
 * =========================================================================================== */

/* Where original pixel x's centre lands on the map grid: the same expression as make_taps. */
__attribute__((optimize("fp-contract=off"))) static double crop_pos(int32_t x, int32_t n_orig, int32_t n_resized,
                                                                  int32_t crop_off) {
    return (x + 0.5) * n_resized / n_orig - crop_off;
}

/* The smallest original x in [0, n_orig] with crop_pos(x) >= c (n_orig when none): an estimate from
 * the inverse, corrected by the exact test (crop_pos is non-decreasing in x). */
static int32_t first_at_or_after(double c, int32_t n_orig, int32_t n_resized, int32_t crop_off) {
    double e = ceil((c + crop_off) * n_orig / n_resized - 0.5);
    int32_t x = e < 0 ? 0 : e > n_orig ? n_orig : (int32_t)e;
    while (x > 0 && crop_pos(x - 1, n_orig, n_resized, crop_off) >= c) x--;
    while (x < n_orig && crop_pos(x, n_orig, n_resized, crop_off) < c) x++;
    return x;
}

/* The original pixel under map coordinate c (a continuous position on the map grid). */
static int32_t pixel_under(double c, int32_t n_orig, int32_t n_resized, int32_t crop_off) {
    double v = floor((c + crop_off) * n_orig / n_resized);
    return v < 0 ? 0 : v > n_orig - 1 ? n_orig - 1 : (int32_t)v;
}

static pc_status check_geometry(const pc_geometry *g) {
    if (!g) return pc_fail(PC_ERR_INVALID_ARGUMENT, "geometry is NULL");
    int32_t mw, mh;
    pc_geometry_map_dims(g, &mw, &mh);
    if (g->orig_width < 1 || g->orig_height < 1 || g->resized_width < 1 || g->resized_height < 1 ||
        g->crop_size < 1 || mw < 1 || mh < 1)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "invalid geometry (%dx%d -> %dx%d, crop %d, map %dx%d)",
                       (int)g->orig_width, (int)g->orig_height, (int)g->resized_width, (int)g->resized_height,
                       (int)g->crop_size, (int)mw, (int)mh);
    return PC_OK;
}

pc_status pc_overlay_box_to_original(int32_t out_box[4], const pc_geometry *g, const int32_t box[4]) {
    pc_clear_error();
    if (!out_box || !box) return pc_fail(PC_ERR_INVALID_ARGUMENT, "box_to_original: NULL box");
    pc_status st = check_geometry(g);
    if (st) return st;
    int32_t mw, mh;
    pc_geometry_map_dims(g, &mw, &mh);
    if (!(box[0] < box[2] && box[1] < box[3]) || box[2] <= 0 || box[3] <= 0 || box[0] >= mw || box[1] >= mh)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "box_to_original: box [%d, %d) x [%d, %d) is empty or off the %dx%d map",
                       (int)box[0], (int)box[2], (int)box[1], (int)box[3], (int)mw, (int)mh);
    const int32_t n[2] = {g->orig_width, g->orig_height}, r[2] = {g->resized_width, g->resized_height},
                  off[2] = {g->crop_left, g->crop_top};
    for (int a = 0; a < 2; a++) {
        int32_t lo = first_at_or_after(box[a], n[a], r[a], off[a]);
        int32_t hi = first_at_or_after(box[a + 2], n[a], r[a], off[a]);
        if (hi <= lo) {
            lo = pixel_under(0.5 * ((double)box[a] + box[a + 2]), n[a], r[a], off[a]);
            hi = lo + 1;
        }
        out_box[a] = lo;
        out_box[a + 2] = hi;
    }
    return PC_OK;
}

pc_status pc_overlay_point_to_original(int32_t out_xy[2], const pc_geometry *g, int32_t x, int32_t y) {
    pc_clear_error();
    if (!out_xy) return pc_fail(PC_ERR_INVALID_ARGUMENT, "point_to_original: out is NULL");
    pc_status st = check_geometry(g);
    if (st) return st;
    out_xy[0] = pixel_under(x + 0.5, g->orig_width, g->resized_width, g->crop_left);
    out_xy[1] = pixel_under(y + 0.5, g->orig_height, g->resized_height, g->crop_top);
    return PC_OK;
}
