/*
 * imagewrite.c - images out: 8-bit PNG (libpng), a map as a 16-bit grey PNG with its scale in a tEXt
 * chunk, and a map as a float32 baseline TIFF written by hand (no libtiff dependency for 11 tags).
 * Every file is encoded in memory, then written to a temporary file beside the target, flushed and
 * renamed over it, so a reader never sees a half-written image.
 */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A growable in-memory output buffer. */
typedef struct membuf {
    uint8_t *data;
    size_t size, cap;
    int failed; /* an allocation failed */
} membuf;

static void membuf_put(membuf *b, const void *src, size_t n) {
    if (b->failed) return;
    if (n > b->cap - b->size) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap - b->size < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = 1;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = pc_malloc(cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        if (b->size) memcpy(p, b->data, b->size);
        pc_free(b->data);
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->size, src, n);
    b->size += n;
}

/* Write data to path atomically: temporary file in the same folder, fsync, rename. */
static pc_status write_atomic(const char *path, const uint8_t *data, size_t size) {
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", path);
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pc_status st = pc_fail(PC_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        return st;
    }
    fchmod(fd, 0644);
    pc_status st = PC_OK;
    for (size_t done = 0; done < size;) {
        ssize_t n = write(fd, data + done, size - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            st = pc_fail(PC_ERR_IO, "%s: write failed: %s", path, n < 0 ? strerror(errno) : "no progress");
            break;
        }
        done += (size_t)n;
    }
    if (!st && fsync(fd) != 0) st = pc_fail(PC_ERR_IO, "%s: cannot flush to disk: %s", path, strerror(errno));
    if (close(fd) != 0 && !st) st = pc_fail(PC_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = pc_fail(PC_ERR_IO, "%s: cannot rename the temporary file into place: %s", path, strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    return st;
}

/* =============================================================================================
 * PNG (libpng into memory)
 * =========================================================================================== */

typedef struct png_wctx {
    membuf buf;
    char msg[256];
} png_wctx;

static void pngw_on_error(png_structp png, png_const_charp msg) {
    png_wctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}
static void pngw_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }
static void pngw_write(png_structp png, png_bytep src, size_t n) {
    png_wctx *c = png_get_io_ptr(png);
    membuf_put(&c->buf, src, n);
    if (c->buf.failed) png_error(png, "out of memory");
}
static void pngw_flush(png_structp png) { (void)png; }

/* Encode rows (h rows of row_bytes, samples big-endian for 16 bit) as a PNG into c->buf.
 * text_key/text (may be NULL) go into one tEXt chunk. Returns 0, or -1 with c->msg set. */
static int png_encode(png_wctx *c, const uint8_t *pixels, uint32_t w, uint32_t h, int depth, int color_type,
                      size_t row_bytes, const char *text_key, const char *text, int level) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, c, pngw_on_error, pngw_on_warning);
    if (!png) {
        snprintf(c->msg, sizeof c->msg, "out of memory");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(c->msg, sizeof c->msg, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, c, pngw_write, pngw_flush);
    /* Speed over size: on a 900x900 bottle overlay, zlib level 6 with libpng's adaptive filter choice
     * takes 220 ms for 537 kB; level 1 with the Paeth filter on every row 40 ms for 658 kB
     * (bench_overlay). Overlays are written once per predicted image, so the 5x matters more. */
    if (level < 0) {
        png_set_compression_level(png, 1);
        png_set_filter(png, 0, PNG_FILTER_PAETH);
    } else {
        /* Asked for a level (pc_image_encode_png): libpng's adaptive per-row filter choice. */
        png_set_compression_level(png, level);
        png_set_filter(png, 0, PNG_ALL_FILTERS);
    }
    png_set_IHDR(png, info, w, h, depth, color_type, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_text txt[2];
    memset(txt, 0, sizeof txt);
    int ntext = 0;
    txt[ntext].compression = PNG_TEXT_COMPRESSION_NONE;
    txt[ntext].key = (png_charp) "Software";
    txt[ntext].text = (png_charp) "patchcore " PC_VERSION_STRING;
    ntext++;
    if (text_key && text) {
        txt[ntext].compression = PNG_TEXT_COMPRESSION_NONE;
        txt[ntext].key = (png_charp)text_key;
        txt[ntext].text = (png_charp)text;
        ntext++;
    }
    png_set_text(png, info, txt, ntext);
    png_write_info(png, info);
    for (uint32_t y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(pixels + (size_t)y * row_bytes));
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* Largest side PNG allows (2^31 - 1); libpng's own default user limit is 1,000,000. */
#define PNG_MAX_SIDE 1000000

pc_status pc_image_write_png(const char *path, const pc_image *img) {
    pc_clear_error();
    if (!path || !img || !img->data)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "write png: path and image are required");
    if (img->channels != 1 && img->channels != 3)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: can write 1 or 3 channels, not %d", path, (int)img->channels);
    if (img->width < 1 || img->height < 1 || img->width > PNG_MAX_SIDE || img->height > PNG_MAX_SIDE)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: cannot write a %dx%d image", path, (int)img->width,
                       (int)img->height);
    png_wctx c;
    memset(&c, 0, sizeof c);
    size_t row_bytes = (size_t)img->width * (size_t)img->channels;
    if (png_encode(&c, img->data, (uint32_t)img->width, (uint32_t)img->height, 8,
                   img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, row_bytes, NULL, NULL, -1) != 0) {
        pc_free(c.buf.data);
        return pc_fail(c.buf.failed ? PC_ERR_NO_MEMORY : PC_ERR_INTERNAL, "%s: PNG encoding failed: %s", path, c.msg);
    }
    pc_status st = write_atomic(path, c.buf.data, c.buf.size);
    pc_free(c.buf.data);
    return st;
}

pc_status pc_image_encode_png(uint8_t **png, size_t *size, const pc_image *img, int32_t level) {
    pc_clear_error();
    if (png) *png = NULL;
    if (size) *size = 0;
    if (!png || !size || !img || !img->data)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "encode png: output pointers and image are required");
    if (img->channels != 1 && img->channels != 3)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "encode png: can write 1 or 3 channels, not %d", (int)img->channels);
    if (img->width < 1 || img->height < 1 || img->width > PNG_MAX_SIDE || img->height > PNG_MAX_SIDE)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "encode png: cannot write a %dx%d image", (int)img->width,
                       (int)img->height);
    if (level < -1 || level > 9)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "encode png: level must be -1 or 0..9, not %d", (int)level);
    png_wctx c;
    memset(&c, 0, sizeof c);
    size_t row_bytes = (size_t)img->width * (size_t)img->channels;
    if (png_encode(&c, img->data, (uint32_t)img->width, (uint32_t)img->height, 8,
                   img->channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, row_bytes, NULL, NULL, level) != 0) {
        pc_free(c.buf.data);
        return pc_fail(c.buf.failed ? PC_ERR_NO_MEMORY : PC_ERR_INTERNAL, "encode png: %s", c.msg);
    }
    *png = c.buf.data;
    *size = c.buf.size;
    return PC_OK;
}

void pc_buffer_free(void *buf) { pc_free(buf); }

/* The 16-bit PNG of a map in memory (name: in messages), shared by the file and the buffer forms. */
static pc_status png16_encode(uint8_t **out, size_t *out_size, const char *name, const float *map, int32_t h,
                              int32_t w, double full_scale) {
    if (w < 1 || h < 1 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: cannot write a %dx%d map", name, (int)w, (int)h);
    if (!(full_scale > 0.0) || !isfinite(full_scale))
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: full_scale must be finite and > 0, not %g", name, full_scale);
    size_t n = (size_t)w * (size_t)h; /* both <= 1e6: fits */
    size_t nbytes;
    if (!pc_mul_size(n, 2, &nbytes)) return pc_fail(PC_ERR_TOO_LARGE, "%s: map too large", name);
    uint8_t *px = pc_malloc(nbytes);
    if (!px) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory for a %dx%d map", name, (int)w, (int)h);
    for (size_t i = 0; i < n; i++) {
        double g = floor((double)map[i] / full_scale * 65535.0 + 0.5);
        uint16_t v = isnan(g) || g <= 0.0 ? 0 : g >= 65535.0 ? 65535 : (uint16_t)g;
        px[2 * i] = (uint8_t)(v >> 8); /* PNG samples are big-endian */
        px[2 * i + 1] = (uint8_t)(v & 0xff);
    }
    char text[64];
    snprintf(text, sizeof text, "%.17g", full_scale);
    png_wctx c;
    memset(&c, 0, sizeof c);
    int rc = png_encode(&c, px, (uint32_t)w, (uint32_t)h, 16, PNG_COLOR_TYPE_GRAY, (size_t)w * 2,
                        PC_PNG16_SCALE_KEY, text, -1);
    pc_free(px);
    if (rc != 0) {
        pc_free(c.buf.data);
        return pc_fail(c.buf.failed ? PC_ERR_NO_MEMORY : PC_ERR_INTERNAL, "%s: PNG encoding failed: %s", name, c.msg);
    }
    *out = c.buf.data;
    *out_size = c.buf.size;
    return PC_OK;
}

pc_status pc_map_write_png16(const char *path, const float *map, int32_t h, int32_t w, double full_scale) {
    pc_clear_error();
    if (!path || !map) return pc_fail(PC_ERR_INVALID_ARGUMENT, "write png16: path and map are required");
    uint8_t *buf = NULL;
    size_t size = 0;
    pc_status st = png16_encode(&buf, &size, path, map, h, w, full_scale);
    if (st) return st;
    st = write_atomic(path, buf, size);
    pc_free(buf);
    return st;
}

pc_status pc_map_encode_png16(uint8_t **png, size_t *size, const float *map, int32_t h, int32_t w,
                              double full_scale) {
    pc_clear_error();
    if (png) *png = NULL;
    if (size) *size = 0;
    if (!png || !size || !map)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "encode png16: output pointers and map are required");
    return png16_encode(png, size, "encode png16", map, h, w, full_scale);
}

/* =============================================================================================
 * TIFF: "II", 42, IFD at 8; 11 entries in tag order; pixel data at offset 160 (16-aligned).
 * =========================================================================================== */

enum { TIFF_SHORT = 3, TIFF_LONG = 4 };

static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v & 0xffff), put16(p + 2, v >> 16); }

pc_status pc_map_write_tiff(const char *path, const float *map, int32_t h, int32_t w) {
    pc_clear_error();
    if (!path || !map) return pc_fail(PC_ERR_INVALID_ARGUMENT, "write tiff: path and map are required");
    if (w < 1 || h < 1) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: cannot write a %dx%d map", path, (int)w, (int)h);
    enum { N_TAGS = 11, DATA_OFF = 160 };
    size_t n, data_bytes, total;
    if (!pc_mul3_size((size_t)w, (size_t)h, 4, &data_bytes) || data_bytes > 0xffffffffu - DATA_OFF ||
        !pc_add_size(data_bytes, DATA_OFF, &total))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: a %dx%d float map exceeds TIFF's 4 GiB", path, (int)w, (int)h);
    n = data_bytes / 4;
    uint8_t *file = pc_calloc(total, 1);
    if (!file) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory for a %dx%d map", path, (int)w, (int)h);
    file[0] = 'I', file[1] = 'I';
    put16(file + 2, 42);
    put32(file + 4, 8);
    const uint32_t tags[N_TAGS][3] = {
        /* tag, type, value (count is 1 for every entry) */
        {256, TIFF_LONG, (uint32_t)w},          /* ImageWidth */
        {257, TIFF_LONG, (uint32_t)h},          /* ImageLength */
        {258, TIFF_SHORT, 32},                  /* BitsPerSample */
        {259, TIFF_SHORT, 1},                   /* Compression: none */
        {262, TIFF_SHORT, 1},                   /* PhotometricInterpretation: BlackIsZero */
        {273, TIFF_LONG, DATA_OFF},             /* StripOffsets */
        {277, TIFF_SHORT, 1},                   /* SamplesPerPixel */
        {278, TIFF_LONG, (uint32_t)h},          /* RowsPerStrip: one strip */
        {279, TIFF_LONG, (uint32_t)data_bytes}, /* StripByteCounts */
        {284, TIFF_SHORT, 1},                   /* PlanarConfiguration: chunky */
        {339, TIFF_SHORT, 3},                   /* SampleFormat: IEEE floating point */
    };
    uint8_t *ifd = file + 8;
    put16(ifd, N_TAGS);
    for (int i = 0; i < N_TAGS; i++) {
        uint8_t *e = ifd + 2 + 12 * i;
        put16(e, tags[i][0]);
        put16(e + 2, tags[i][1]);
        put32(e + 4, 1);
        if (tags[i][1] == TIFF_SHORT) put16(e + 8, tags[i][2]); /* left-justified in the 4-byte field */
        else put32(e + 8, tags[i][2]);
    }
    put32(ifd + 2 + 12 * N_TAGS, 0); /* no next IFD */
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &map[i], 4);
        put32(file + DATA_OFF + 4 * i, bits); /* little-endian whatever the host */
    }
    pc_status st = write_atomic(path, file, total);
    pc_free(file);
    return st;
}
