/*
 * preprocess.c - torchvision's Resize(R) -> CenterCrop(S) -> ToTensor -> Normalize on 8-bit images,
 * with PIL's antialiased bilinear resize reproduced bit for bit (METHOD.md §1, docs/images.md).
 *
 * PIL (Pillow 9.4, libImaging/Resample.c) resizes in two separable passes, horizontal first:
 *  - per output coordinate it computes a triangle filter whose support is widened by the downscale
 *    factor, normalises the weights to sum 1 in double precision, then rounds them to fixed point
 *    with 22 fractional bits (PRECISION_BITS = 32 - 8 - 2);
 *  - each pass accumulates in int32 starting from 1 << 21 (rounding), and clamps to 0..255 after
 *    shifting back, so the intermediate image is 8-bit;
 *  - a pass is skipped when its size does not change; the horizontal pass only processes the input
 *    rows that the vertical pass will read.
 * Output pixels depend only on their own coefficient row, so computing only the pixels inside the
 * centre crop (what pc_preprocess does) gives the same values as resizing everything and cropping.
 */
#include "internal.h"
#include "resize.h"

#include <math.h>
#include <string.h>

#define PIL_PRECISION_BITS (32 - 8 - 2)

typedef pc_resample_axis resample_axis;

static void axis_free(resample_axis *a) {
    pc_free(a->start);
    pc_free(a->len);
    pc_free(a->weight);
    memset(a, 0, sizeof *a);
}

/* Grow *buf to at least n bytes (contents not kept). */
static int grow(void **buf, size_t *cap, size_t n) {
    if (n <= *cap) return 1;
    void *p = pc_malloc(n);
    if (!p) return 0;
    pc_free(*buf);
    *buf = p, *cap = n;
    return 1;
}

void pc_resize_cache_free(pc_resize_cache *c) {
    if (!c) return;
    axis_free(&c->ah);
    axis_free(&c->av);
    pc_free(c->tmp), pc_free(c->win), pc_free(c->part), pc_free(c->acc);
    memset(c, 0, sizeof *c);
}

static double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the box [0, in_size), same operations in
 * the same order so the rounded weights are identical. */
static pc_status axis_init(resample_axis *a, int32_t in_size, int32_t out_size) {
    if (a->weight && a->in_size == in_size && a->out_size == out_size) return PC_OK; /* cached */
    axis_free(a);
    const float in0 = 0.0f, in1 = (float)in_size; /* PIL's box is float */
    double scale = (double)(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; /* bilinear support is 1 */
    int32_t ksize = (int32_t)ceil(support) * 2 + 1;
    size_t nw;
    if (!pc_mul_size((size_t)out_size, (size_t)ksize, &nw))
        return pc_fail(PC_ERR_TOO_LARGE, "resize: coefficient table overflows");
    double *tmp = pc_malloc(sizeof(double) * (size_t)ksize);
    a->start = pc_malloc(sizeof(int32_t) * (size_t)out_size);
    a->len = pc_malloc(sizeof(int32_t) * (size_t)out_size);
    a->weight = pc_calloc(nw, sizeof(int32_t));
    if (!tmp || !a->start || !a->len || !a->weight) {
        pc_free(tmp);
        axis_free(a);
        return pc_fail(PC_ERR_NO_MEMORY, "resize: cannot allocate coefficient tables (%zu weights)", nw);
    }
    a->ksize = ksize;
    a->in_size = in_size, a->out_size = out_size;
    for (int32_t i = 0; i < out_size; i++) {
        double center = in0 + (i + 0.5) * scale;
        double ss = 1.0 / filterscale, ww = 0.0;
        int32_t xmin = (int32_t)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int32_t xmax = (int32_t)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int32_t x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            tmp[x] = w;
            ww += w;
        }
        int32_t *k = a->weight + (size_t)i * (size_t)ksize;
        for (int32_t x = 0; x < xmax; x++) {
            double w = ww != 0.0 ? tmp[x] / ww : tmp[x];
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PIL_PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PIL_PRECISION_BITS));
        }
        a->start[i] = xmin;
        a->len[i] = xmax;
    }
    pc_free(tmp);
    return PC_OK;
}

/* PIL's clip8: the accumulator back to 0..255. */
static inline uint8_t clip8(int32_t acc) {
    if (acc >= (1 << PIL_PRECISION_BITS << 8)) return 255;
    if (acc <= 0) return 0;
    return (uint8_t)(acc >> PIL_PRECISION_BITS);
}

/* Reference kernels: the plain loops, one output sample at a time.
 * One horizontal pass: out (rows, out_cols[x0..x0+nx), ch) from in (rows, in_w, ch), rows given by
 * in_row0 .. in_row0 + nrows. */
static void pass_horizontal_ref(uint8_t *out, const uint8_t *in, int32_t in_w, int32_t in_row0, int32_t nrows,
                            const resample_axis *ax, int32_t x0, int32_t nx, int32_t ch) {
    for (int32_t y = 0; y < nrows; y++) {
        const uint8_t *src = in + ((size_t)(in_row0 + y) * (size_t)in_w) * (size_t)ch;
        uint8_t *dst = out + (size_t)y * (size_t)nx * (size_t)ch;
        for (int32_t i = 0; i < nx; i++) {
            int32_t xx = x0 + i;
            const int32_t *k = ax->weight + (size_t)xx * (size_t)ax->ksize;
            const uint8_t *s = src + (size_t)ax->start[xx] * (size_t)ch;
            int32_t n = ax->len[xx];
            for (int32_t c = 0; c < ch; c++) {
                int32_t acc = 1 << (PIL_PRECISION_BITS - 1);
                for (int32_t x = 0; x < n; x++) acc += s[(size_t)x * (size_t)ch + (size_t)c] * k[x];
                dst[(size_t)i * (size_t)ch + (size_t)c] = clip8(acc);
            }
        }
    }
}

/* One vertical pass: out rows y0..y0+ny of the resized image, from in (in_h_rows, w, ch) whose first
 * row is input row in_row0 (the horizontal pass only kept the rows needed). */
static void pass_vertical_ref(uint8_t *out, const uint8_t *in, int32_t w, int32_t in_row0, const resample_axis *ax,
                          int32_t y0, int32_t ny, int32_t ch) {
    size_t stride = (size_t)w * (size_t)ch;
    for (int32_t j = 0; j < ny; j++) {
        int32_t yy = y0 + j;
        const int32_t *k = ax->weight + (size_t)yy * (size_t)ax->ksize;
        const uint8_t *src = in + (size_t)(ax->start[yy] - in_row0) * stride;
        int32_t n = ax->len[yy];
        uint8_t *dst = out + (size_t)j * stride;
        for (size_t xc = 0; xc < stride; xc++) {
            int32_t acc = 1 << (PIL_PRECISION_BITS - 1);
            for (int32_t y = 0; y < n; y++) acc += src[(size_t)y * stride + xc] * k[y];
            dst[xc] = clip8(acc);
        }
    }
}

/* Fast kernels, identical results (integer sums do not depend on their order): the horizontal pass
 * keeps one accumulator per channel for 1 and 3 channels; the vertical pass accumulates whole rows
 * (acc, w*ch int32) so the inner loop runs along memory and vectorises. */
static void pass_horizontal(uint8_t *out, const uint8_t *in, int32_t in_w, int32_t in_row0, int32_t nrows,
                            const resample_axis *ax, int32_t x0, int32_t nx, int32_t ch) {
    if (ch != 1 && ch != 3) {
        pass_horizontal_ref(out, in, in_w, in_row0, nrows, ax, x0, nx, ch);
        return;
    }
    for (int32_t y = 0; y < nrows; y++) {
        const uint8_t *src = in + ((size_t)(in_row0 + y) * (size_t)in_w) * (size_t)ch;
        uint8_t *dst = out + (size_t)y * (size_t)nx * (size_t)ch;
        for (int32_t i = 0; i < nx; i++) {
            int32_t xx = x0 + i;
            const int32_t *k = ax->weight + (size_t)xx * (size_t)ax->ksize;
            int32_t n = ax->len[xx];
            if (ch == 3) {
                const uint8_t *s = src + (size_t)ax->start[xx] * 3;
                int32_t a0 = 1 << (PIL_PRECISION_BITS - 1), a1 = a0, a2 = a0;
                for (int32_t x = 0; x < n; x++) {
                    a0 += s[3 * x] * k[x];
                    a1 += s[3 * x + 1] * k[x];
                    a2 += s[3 * x + 2] * k[x];
                }
                dst[3 * i] = clip8(a0), dst[3 * i + 1] = clip8(a1), dst[3 * i + 2] = clip8(a2);
            } else {
                const uint8_t *s = src + ax->start[xx];
                int32_t a0 = 1 << (PIL_PRECISION_BITS - 1);
                for (int32_t x = 0; x < n; x++) a0 += s[x] * k[x];
                dst[i] = clip8(a0);
            }
        }
    }
}

static void pass_vertical(uint8_t *out, const uint8_t *in, int32_t w, int32_t in_row0, const resample_axis *ax,
                          int32_t y0, int32_t ny, int32_t ch, int32_t *acc) {
    size_t stride = (size_t)w * (size_t)ch;
    for (int32_t j = 0; j < ny; j++) {
        int32_t yy = y0 + j;
        const int32_t *k = ax->weight + (size_t)yy * (size_t)ax->ksize;
        const uint8_t *src = in + (size_t)(ax->start[yy] - in_row0) * stride;
        int32_t n = ax->len[yy];
        uint8_t *dst = out + (size_t)j * stride;
        for (size_t xc = 0; xc < stride; xc++) acc[xc] = 1 << (PIL_PRECISION_BITS - 1);
        for (int32_t y = 0; y < n; y++) {
            const uint8_t *row = src + (size_t)y * stride;
            int32_t ky = k[y];
            for (size_t xc = 0; xc < stride; xc++) acc[xc] += row[xc] * ky;
        }
        for (size_t xc = 0; xc < stride; xc++) dst[xc] = clip8(acc[xc]);
    }
}

/* Resize in (in_w x in_h x ch) to out_w x out_h, but write only the window [x0, x0+nx) x [y0, y0+ny)
 * of the result into out (ny, nx, ch). The window must lie inside the resized image. use_ref picks
 * the plain reference kernels. */
static pc_status resize_window(uint8_t *out, int32_t out_w, int32_t out_h, int32_t x0, int32_t y0, int32_t nx,
                               int32_t ny, const uint8_t *in, int32_t in_w, int32_t in_h, int32_t ch, int use_ref,
                               pc_resize_cache *cache) {
    int need_h = out_w != in_w, need_v = out_h != in_h;
    pc_resize_cache local = {0};
    pc_resize_cache *c = cache ? cache : &local;
    resample_axis *ah = &c->ah, *av = &c->av;
    uint8_t *tmp = NULL;
    int32_t *acc = NULL;
    pc_status st = PC_OK;
    if (need_h && (st = axis_init(ah, in_w, out_w))) goto done;
    if (need_v && (st = axis_init(av, in_h, out_h))) goto done;
    if (need_v && !use_ref) {
        if (!grow((void **)&c->acc, &c->acc_cap, sizeof(int32_t) * (size_t)nx * (size_t)ch)) {
            st = pc_fail(PC_ERR_NO_MEMORY, "resize: cannot allocate a row of %d pixels", nx);
            goto done;
        }
        acc = c->acc;
    }

    /* input rows the window's output rows read */
    int32_t r0 = y0, r1 = y0 + ny;
    if (need_v) {
        r0 = av->start[y0];
        r1 = av->start[y0 + ny - 1] + av->len[y0 + ny - 1];
        for (int32_t j = y0; j < y0 + ny; j++) { /* starts are monotone, but be safe */
            r0 = PC_MIN(r0, av->start[j]);
            r1 = PC_MAX(r1, av->start[j] + av->len[j]);
        }
    }
    if (need_h && need_v) {
        size_t n;
        if (!pc_mul3_size((size_t)(r1 - r0), (size_t)nx, (size_t)ch, &n)) {
            st = pc_fail(PC_ERR_TOO_LARGE, "resize: intermediate image overflows");
            goto done;
        }
        if (!grow((void **)&c->tmp, &c->tmp_cap, n)) {
            st = pc_fail(PC_ERR_NO_MEMORY, "resize: cannot allocate %zu bytes", n);
            goto done;
        }
        tmp = c->tmp;
        if (use_ref) {
            pass_horizontal_ref(tmp, in, in_w, r0, r1 - r0, ah, x0, nx, ch);
            pass_vertical_ref(out, tmp, nx, r0, av, y0, ny, ch);
        } else {
            pass_horizontal(tmp, in, in_w, r0, r1 - r0, ah, x0, nx, ch);
            pass_vertical(out, tmp, nx, r0, av, y0, ny, ch, acc);
        }
    } else if (need_h) {
        if (use_ref) pass_horizontal_ref(out, in, in_w, y0, ny, ah, x0, nx, ch);
        else pass_horizontal(out, in, in_w, y0, ny, ah, x0, nx, ch);
    } else if (need_v) {
        /* the vertical pass reads whole input rows; give it the window's columns only */
        size_t n;
        if (!pc_mul3_size((size_t)(r1 - r0), (size_t)nx, (size_t)ch, &n) || !grow((void **)&c->tmp, &c->tmp_cap, n)) {
            st = pc_fail(PC_ERR_NO_MEMORY, "resize: cannot allocate the intermediate image");
            goto done;
        }
        tmp = c->tmp;
        for (int32_t y = r0; y < r1; y++)
            memcpy(tmp + (size_t)(y - r0) * (size_t)nx * (size_t)ch,
                   in + ((size_t)y * (size_t)in_w + (size_t)x0) * (size_t)ch, (size_t)nx * (size_t)ch);
        if (use_ref) pass_vertical_ref(out, tmp, nx, r0, av, y0, ny, ch);
        else pass_vertical(out, tmp, nx, r0, av, y0, ny, ch, acc);
    } else {
        for (int32_t y = 0; y < ny; y++)
            memcpy(out + (size_t)y * (size_t)nx * (size_t)ch,
                   in + ((size_t)(y0 + y) * (size_t)in_w + (size_t)x0) * (size_t)ch, (size_t)nx * (size_t)ch);
    }
done:
    pc_resize_cache_free(&local);
    return st;
}

static pc_status check_resize_args(int32_t out_w, int32_t out_h, const void *in, int32_t in_w, int32_t in_h,
                                   int32_t channels) {
    if (!in) return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: input is NULL");
    if (in_w <= 0 || in_h <= 0 || out_w <= 0 || out_h <= 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: sizes must be positive (%dx%d -> %dx%d)", in_w, in_h,
                       out_w, out_h);
    if (channels < 1 || channels > 4)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: %d channels (1 to 4 supported)", channels);
    if ((int64_t)out_w * out_h > PC_IMAGE_MAX_PIXELS)
        return pc_fail(PC_ERR_TOO_LARGE, "resize: %dx%d is beyond the pixel limit", out_w, out_h);
    return PC_OK;
}

pc_status pc_resize_bilinear_u8(uint8_t *out, int32_t out_w, int32_t out_h, const uint8_t *in, int32_t in_w,
                                int32_t in_h, int32_t channels) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: output is NULL");
    pc_status st = check_resize_args(out_w, out_h, in, in_w, in_h, channels);
    if (st) return st;
    return resize_window(out, out_w, out_h, 0, 0, out_w, out_h, in, in_w, in_h, channels, 0, NULL);
}

pc_status pc_resize_window_u8(uint8_t *out, int32_t out_w, int32_t out_h, int32_t x0, int32_t y0, int32_t nx,
                              int32_t ny, const uint8_t *in, int32_t in_w, int32_t in_h, int32_t channels,
                              int use_ref) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: output is NULL");
    pc_status st = check_resize_args(out_w, out_h, in, in_w, in_h, channels);
    if (st) return st;
    if (x0 < 0 || y0 < 0 || nx <= 0 || ny <= 0 || x0 > out_w - nx || y0 > out_h - ny)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: window outside the %dx%d result", out_w, out_h);
    return resize_window(out, out_w, out_h, x0, y0, nx, ny, in, in_w, in_h, channels, use_ref, NULL);
}

/* pc_resize_bilinear_u8 with a cache (tiling's scaled image: no allocation once warm). */
pc_status pc_resize_u8_cached(uint8_t *out, int32_t out_w, int32_t out_h, const uint8_t *in, int32_t in_w,
                              int32_t in_h, int32_t channels, pc_resize_cache *cache) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "resize: output is NULL");
    pc_status st = check_resize_args(out_w, out_h, in, in_w, in_h, channels);
    if (st) return st;
    return resize_window(out, out_w, out_h, 0, 0, out_w, out_h, in, in_w, in_h, channels, 0, cache);
}

/* Python's round() of d/2 for an integer d >= 0: halves go to the even neighbour. */
static int32_t half_round_even(int32_t d) {
    int32_t q = d / 2;
    if (d % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1;
}

pc_status pc_geometry_compute(int32_t width, int32_t height, int32_t resize, int32_t crop, pc_geometry *out) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "geometry: output is NULL");
    memset(out, 0, sizeof *out);
    if (width <= 0 || height <= 0)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "geometry: image size %dx%d is not positive", width, height);
    if (resize <= 0 || crop <= 0 || resize > 65536 || crop > 65536)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "geometry: resize %d and crop %d must be in 1..65536", resize, crop);
    /* torchvision 0.14 _compute_resized_output_size: short side -> R, long -> int(R * long / short)
     * (a double division, truncated). */
    int32_t shortside = PC_MIN(width, height), longside = PC_MAX(width, height);
    double l = (double)resize * (double)longside / (double)shortside;
    if (l > (double)INT32_MAX || (int64_t)l * resize > PC_IMAGE_MAX_PIXELS)
        return pc_fail(PC_ERR_TOO_LARGE, "geometry: resizing %dx%d to short side %d exceeds the pixel limit",
                       width, height, resize);
    int32_t newlong = (int32_t)l;
    if (newlong < 1) newlong = 1; /* unreachable for resize >= 1, kept for safety */
    out->orig_width = width, out->orig_height = height;
    out->map_width = out->map_height = crop;
    if (width <= height) out->resized_width = resize, out->resized_height = newlong;
    else out->resized_width = newlong, out->resized_height = resize;
    out->crop_size = crop;
    /* torchvision 0.14 center_crop: pad with zeros where the crop is larger (left/top get the
     * smaller half), then top/left = int(round((H - S) / 2.0)) with Python's half-to-even round. */
    int32_t rw = out->resized_width, rh = out->resized_height;
    out->crop_left = crop > rw ? -((crop - rw) / 2) : half_round_even(rw - crop);
    out->crop_top = crop > rh ? -((crop - rh) / 2) : half_round_even(rh - crop);
    return PC_OK;
}

/* Resize + crop into a crop x crop x ch window (zero where the crop lies outside the resized image,
 * torchvision's padding): *win_out points into the cache c (c->win). */
static pc_status resize_crop(uint8_t **win_out, const pc_image *img, int32_t ch_expected, int32_t resize,
                             int32_t crop, pc_geometry *g, pc_resize_cache *c) {
    *win_out = NULL;
    if (!img || !img->data) return pc_fail(PC_ERR_INVALID_ARGUMENT, "preprocess: image is NULL or empty");
    if (img->channels != ch_expected)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "preprocess: image has %d channels, expected %d", img->channels,
                       ch_expected);
    pc_status st = pc_geometry_compute(img->width, img->height, resize, crop, g);
    if (st) return st;
    size_t n;
    if (!pc_mul3_size((size_t)crop, (size_t)crop, (size_t)ch_expected, &n))
        return pc_fail(PC_ERR_TOO_LARGE, "preprocess: crop too large");
    if (!grow((void **)&c->win, &c->win_cap, n))
        return pc_fail(PC_ERR_NO_MEMORY, "preprocess: cannot allocate %zu bytes", n);
    uint8_t *win = c->win;
    /* the part of the crop window inside the resized image */
    int32_t x0 = PC_MAX(g->crop_left, 0), y0 = PC_MAX(g->crop_top, 0);
    int32_t x1 = PC_MIN(g->crop_left + crop, g->resized_width), y1 = PC_MIN(g->crop_top + crop, g->resized_height);
    int32_t nx = x1 - x0, ny = y1 - y0;
    int32_t dx = x0 - g->crop_left, dy = y0 - g->crop_top;
    uint8_t *part = win;
    int full = nx == crop && ny == crop;
    if (!full) {
        memset(win, 0, n);
        if (!grow((void **)&c->part, &c->part_cap, (size_t)nx * (size_t)ny * (size_t)ch_expected))
            return pc_fail(PC_ERR_NO_MEMORY, "preprocess: cannot allocate the resized window");
        part = c->part;
    }
    st = resize_window(part, g->resized_width, g->resized_height, x0, y0, nx, ny, img->data, img->width,
                       img->height, ch_expected, 0, c);
    if (st) return st;
    if (!full)
        for (int32_t y = 0; y < ny; y++)
            memcpy(win + ((size_t)(y + dy) * (size_t)crop + (size_t)dx) * (size_t)ch_expected,
                   part + (size_t)y * (size_t)nx * (size_t)ch_expected, (size_t)nx * (size_t)ch_expected);
    *win_out = win;
    return PC_OK;
}

pc_status pc_preprocess_cached(float *out, const pc_image *rgb, int32_t resize, int32_t crop, pc_geometry *geometry,
                               pc_resize_cache *cache) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "preprocess: output is NULL");
    pc_resize_cache local = {0};
    pc_resize_cache *c = cache ? cache : &local;
    pc_geometry g;
    uint8_t *win;
    pc_status st = resize_crop(&win, rgb, 3, resize, crop, &g, c);
    if (st) {
        pc_resize_cache_free(&local);
        return st;
    }
    /* ToTensor (float32 v / 255) then Normalize ((x - mean) / std), in float32 as torch does. */
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    size_t plane = (size_t)crop * (size_t)crop;
    for (int ch = 0; ch < 3; ch++) {
        float *o = out + (size_t)ch * plane; /* out is (3, crop, crop) */
        for (size_t i = 0; i < plane; i++) {
            float x = (float)win[3 * i + (size_t)ch] / 255.0f;
            o[i] = (x - mean[ch]) / std[ch];
        }
    }
    pc_resize_cache_free(&local);
    if (geometry) *geometry = g;
    return PC_OK;
}

pc_status pc_preprocess(float *out, const pc_image *rgb, int32_t resize, int32_t crop, pc_geometry *geometry) {
    pc_clear_error();
    return pc_preprocess_cached(out, rgb, resize, crop, geometry, NULL);
}

static const char *const mask_rule_names[] = {"full", "half"};

const char *pc_mask_rule_name(pc_mask_rule rule) {
    return (unsigned)rule < 2 ? mask_rule_names[rule] : "unknown";
}

int pc_mask_rule_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < 2; i++)
        if (strcmp(name, mask_rule_names[i]) == 0) return i;
    return -1;
}

pc_status pc_preprocess_mask_ex(uint8_t *out, const pc_image *grey, int32_t resize, int32_t crop, pc_mask_rule rule) {
    pc_clear_error();
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "preprocess mask: output is NULL");
    if (rule != PC_MASK_RULE_FULL && rule != PC_MASK_RULE_HALF)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "preprocess mask: unknown mask rule %d (0 full, 1 half)", (int)rule);
    pc_geometry g;
    uint8_t *win;
    pc_resize_cache c = {0};
    pc_status st = resize_crop(&win, grey, 1, resize, crop, &g, &c);
    if (!st) {
        /* FULL: the reference's ToTensor (v / 255) then .astype(int) is 1 only for v == 255 exactly;
         * HALF: ToTensor(mask) >= 0.5, i.e. v >= 128. Padding (crop > resized) is 0 under both. */
        size_t n = (size_t)crop * (size_t)crop;
        const uint8_t lo = rule == PC_MASK_RULE_FULL ? 255 : 128;
        for (size_t i = 0; i < n; i++) out[i] = win[i] >= lo; /* out is (crop, crop) */
    }
    pc_resize_cache_free(&c);
    return st;
}

pc_status pc_preprocess_mask(uint8_t *out, const pc_image *grey, int32_t resize, int32_t crop) {
    return pc_preprocess_mask_ex(out, grey, resize, crop, PC_MASK_RULE_HALF);
}
