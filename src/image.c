/*
 * image.c - decode PNG (libpng) and JPEG (libjpeg-turbo) files into 8-bit RGB or grey, converting
 * exactly as Pillow 9.4's Image.open(f).convert("RGB") / convert("L") do (see docs/images.md):
 *
 *   PNG grey 1/2/4/8-bit   -> value scaled to 8 bits (x255, x85, x17), replicated
 *   PNG grey 16-bit        -> PIL opens it as mode "I"; I->RGB/L CLAMPS to 0..255 (not >> 8!)
 *   PNG grey+alpha 8/16    -> grey (high byte for 16-bit), alpha dropped without compositing
 *   PNG RGB/RGBA 16-bit    -> high byte of every sample, alpha dropped
 *   PNG palette (+tRNS)    -> palette expanded, transparency ignored; indices beyond the PLTE get
 *                             PIL's default palette entry (i, i, i)
 *   JPEG grey / colour     -> libjpeg's own output (PIL uses the same library and settings)
 *   JPEG CMYK/YCCK         -> Adobe-inverted CMYK, then PIL's cmyk2rgb
 *   RGB -> L               -> PIL's L24: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16
 *
 * The format is found from magic bytes, never from the file name. Both libraries report errors
 * through handlers installed here that longjmp back to the decoder (they never print or exit).
 * All decoder state lives in a context struct reached through a pointer, so nothing the setjmp
 * function keeps in registers is needed after a longjmp.
 */
#include "internal.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

/* PIL's RGB -> L conversion (Convert.c's L24 macro), 16-bit fixed point with rounding. */
static inline uint8_t rgb_to_l(uint8_t r, uint8_t g, uint8_t b) {
    return (uint8_t)(((uint32_t)r * 19595u + (uint32_t)g * 38470u + (uint32_t)b * 7471u + 0x8000u) >> 16);
}

static const char *display_name(const char *name) { return name && *name ? name : "<memory>"; }

/* Check the declared size against the decompression-bomb limit before anything is allocated. */
static pc_status check_dims(const char *name, const char *fmt, uint32_t w, uint32_t h) {
    if (w == 0 || h == 0)
        return pc_fail(PC_ERR_FORMAT, "%s: %s declares an empty image (%ux%u)", name, fmt, w, h);
    if ((uint64_t)w * h > (uint64_t)PC_IMAGE_MAX_PIXELS || w > INT32_MAX || h > INT32_MAX)
        return pc_fail(PC_ERR_TOO_LARGE,
                       "%s: %s is %ux%u = %llu pixels, more than the limit of %lld (decompression bomb?)",
                       name, fmt, w, h, (unsigned long long)w * h, (long long)PC_IMAGE_MAX_PIXELS);
    return PC_OK;
}

static pc_status alloc_image(pc_image *out, const char *name, uint32_t w, uint32_t h, int channels) {
    size_t n;
    if (!pc_mul3_size(w, h, (size_t)channels, &n))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: image size overflows", name);
    out->data = pc_malloc(n);
    if (!out->data) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes for the pixels", name, n);
    out->width = (int32_t)w;
    out->height = (int32_t)h;
    out->channels = channels;
    return PC_OK;
}

/* =============================================================================================
 * PNG
 * =========================================================================================== */

typedef struct png_ctx {
    const char *name;
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];      /* libpng's error message */
    png_structp png;
    png_infop info;
    uint8_t *raw;       /* decoded rows before conversion (one row, or all rows if interlaced) */
    pc_image *out;
    int channels_out;   /* 3 or 1 */
    pc_status status;   /* set before a png_error we raise ourselves */
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "unknown libpng error");
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

static void png_read_mem(png_structp png, png_bytep dst, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (n > c->len - c->pos) {
        c->status = PC_ERR_FORMAT;
        png_error(png, "file is truncated");
    }
    memcpy(dst, c->buf + c->pos, n);
    c->pos += n;
}

/* The kinds of decoded PNG rows (after libpng's 1/2/4 -> 8 bit grey expansion and unpacking). */
enum png_kind { PK_G8, PK_G16, PK_GA8, PK_GA16, PK_RGB8, PK_RGB16, PK_RGBA8, PK_RGBA16, PK_PAL };

/* Convert one decoded row to RGB (ch_out 3) or L (ch_out 1), following PIL's mode choice
 * (PngImagePlugin._MODES) and its convert() for that mode. pal is 256 RGB entries. */
static void png_convert_row(uint8_t *dst, const uint8_t *src, uint32_t w, enum png_kind kind, int ch_out,
                            const uint8_t *pal) {
    for (uint32_t x = 0; x < w; x++) {
        uint8_t r, g, b;
        switch (kind) {
        case PK_G8: r = g = b = src[x]; break;
        case PK_G16: { /* mode "I": I->RGB and I->L clamp to 0..255 */
            unsigned v = ((unsigned)src[2 * x] << 8) | src[2 * x + 1];
            r = g = b = (uint8_t)(v > 255 ? 255 : v);
            break;
        }
        case PK_GA8: r = g = b = src[2 * x]; break;
        case PK_GA16: r = g = b = src[4 * x]; break; /* LA;16B keeps the high byte */
        case PK_RGB8: r = src[3 * x], g = src[3 * x + 1], b = src[3 * x + 2]; break;
        case PK_RGB16: r = src[6 * x], g = src[6 * x + 2], b = src[6 * x + 4]; break;
        case PK_RGBA8: r = src[4 * x], g = src[4 * x + 1], b = src[4 * x + 2]; break;
        case PK_RGBA16: r = src[8 * x], g = src[8 * x + 2], b = src[8 * x + 4]; break;
        case PK_PAL:
        default: {
            const uint8_t *p = pal + 3 * src[x];
            r = p[0], g = p[1], b = p[2];
            break;
        }
        }
        if (ch_out == 3) {
            dst[3 * x] = r, dst[3 * x + 1] = g, dst[3 * x + 2] = b;
        } else {
            /* grey sources keep their value (L24 of (v,v,v) is v); colour goes through L24 */
            dst[x] = rgb_to_l(r, g, b);
        }
    }
}

/* Runs under setjmp; everything it allocates is recorded in *c and released by the caller. */
static pc_status png_decode(png_ctx *c) {
    if (setjmp(png_jmpbuf(c->png))) {
        if (c->status == PC_OK) c->status = PC_ERR_FORMAT;
        if (c->status == PC_ERR_NO_MEMORY)
            return pc_fail(PC_ERR_NO_MEMORY, "%s: PNG: out of memory", c->name);
        return pc_fail(c->status, "%s: PNG: %s", c->name, c->msg);
    }
    png_set_read_fn(c->png, c, png_read_mem);
    /* Let the pixel limit below decide (libpng's default limit is 1e6 x 1e6 per side). */
    png_set_user_limits(c->png, 0x7fffffff, 0x7fffffff);
    png_read_info(c->png, c->info);

    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    pc_status st = check_dims(c->name, "PNG", w, h);
    if (st) return st;

    enum png_kind kind;
    int bytes_pp;
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY:
        if (depth < 8) png_set_expand_gray_1_2_4_to_8(c->png); /* x255, x85, x17 like PIL's unpackers */
        kind = depth == 16 ? PK_G16 : PK_G8;
        bytes_pp = depth == 16 ? 2 : 1;
        break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: kind = depth == 16 ? PK_GA16 : PK_GA8; bytes_pp = depth == 16 ? 4 : 2; break;
    case PNG_COLOR_TYPE_RGB: kind = depth == 16 ? PK_RGB16 : PK_RGB8; bytes_pp = depth == 16 ? 6 : 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: kind = depth == 16 ? PK_RGBA16 : PK_RGBA8; bytes_pp = depth == 16 ? 8 : 4; break;
    case PNG_COLOR_TYPE_PALETTE:
        if (depth < 8) png_set_packing(c->png); /* one index per byte, not scaled */
        kind = PK_PAL;
        bytes_pp = 1;
        break;
    default: return pc_fail(PC_ERR_UNSUPPORTED, "%s: PNG colour type %d is not supported", c->name, ctype);
    }

    /* PIL's palette starts as the grey ramp (i,i,i) and the PLTE overwrites its first entries. */
    uint8_t pal[256 * 3];
    for (int i = 0; i < 256; i++) pal[3 * i] = pal[3 * i + 1] = pal[3 * i + 2] = (uint8_t)i;
    if (kind == PK_PAL) {
        png_colorp plte = NULL;
        int n = 0;
        if (!png_get_PLTE(c->png, c->info, &plte, &n) || !plte)
            return pc_fail(PC_ERR_FORMAT, "%s: PNG: palette image without a PLTE chunk", c->name);
        for (int i = 0; i < n && i < 256; i++) {
            pal[3 * i] = plte[i].red, pal[3 * i + 1] = plte[i].green, pal[3 * i + 2] = plte[i].blue;
        }
    }

    int passes = png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (rowbytes != (size_t)w * (size_t)bytes_pp)
        return pc_fail(PC_ERR_INTERNAL, "%s: PNG: unexpected row size %zu for width %u", c->name, rowbytes, w);

    st = alloc_image(c->out, c->name, w, h, c->channels_out);
    if (st) return st;
    /* An interlaced image needs all its rows at once (every pass refines them); otherwise one row. */
    size_t raw_rows = passes > 1 ? h : 1, raw_size;
    if (!pc_mul_size(raw_rows, rowbytes, &raw_size))
        return pc_fail(PC_ERR_TOO_LARGE, "%s: PNG: image size overflows", c->name);
    c->raw = pc_malloc(raw_size);
    if (!c->raw) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes to decode the PNG", c->name, raw_size);

    size_t out_stride = (size_t)w * (size_t)c->channels_out;
    if (passes > 1) {
        for (int p = 0; p < passes; p++)
            for (png_uint_32 y = 0; y < h; y++) png_read_row(c->png, c->raw + (size_t)y * rowbytes, NULL);
        for (png_uint_32 y = 0; y < h; y++)
            png_convert_row(c->out->data + y * out_stride, c->raw + (size_t)y * rowbytes, w, kind, c->channels_out, pal);
    } else {
        for (png_uint_32 y = 0; y < h; y++) {
            png_read_row(c->png, c->raw, NULL);
            png_convert_row(c->out->data + y * out_stride, c->raw, w, kind, c->channels_out, pal);
        }
    }
    /* Like PIL, we do not insist on what follows the image data (IEND, trailing chunks). */
    return PC_OK;
}

static pc_status load_png(const uint8_t *buf, size_t len, const char *name, int channels_out, pc_image *out) {
    png_ctx c;
    memset(&c, 0, sizeof c);
    c.name = name, c.buf = buf, c.len = len, c.out = out, c.channels_out = channels_out;
    c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, png_on_error, png_on_warning);
    if (!c.png) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot create a PNG decoder", name);
    c.info = png_create_info_struct(c.png);
    pc_status st;
    if (!c.info) st = pc_fail(PC_ERR_NO_MEMORY, "%s: cannot create a PNG decoder", name);
    else st = png_decode(&c);
    png_destroy_read_struct(&c.png, c.info ? &c.info : NULL, NULL);
    pc_free(c.raw);
    if (st) pc_image_free(out);
    return st;
}

/* =============================================================================================
 * JPEG
 * =========================================================================================== */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr err; /* first, so that the error manager's address is the context's */
    jmp_buf jmp;
    const char *name;
    char msg[JMSG_LENGTH_MAX];
    struct jpeg_decompress_struct cinfo;
    int created;
    uint8_t *row;               /* CMYK / colour-for-grey scanline */
    pc_image *out;
    int channels_out;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, c->msg);
    longjmp(c->jmp, 1);
}

/* Warnings are ignored as PIL ignores them, except a premature end of data: PIL reports such a
 * file as truncated, while libjpeg would silently pad the image with grey. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_on_error(cinfo);
}

static void jpeg_on_output(j_common_ptr cinfo) { (void)cinfo; }

static pc_status jpeg_decode(jpeg_ctx *c, const uint8_t *buf, size_t len) {
    if (setjmp(c->jmp)) {
        if (c->err.msg_code == JERR_OUT_OF_MEMORY)
            return pc_fail(PC_ERR_NO_MEMORY, "%s: JPEG: %s", c->name, c->msg);
        return pc_fail(PC_ERR_FORMAT, "%s: JPEG: %s", c->name, c->msg);
    }
    jpeg_create_decompress(&c->cinfo);
    c->created = 1;
    jpeg_mem_src(&c->cinfo, buf, (unsigned long)len);
    jpeg_read_header(&c->cinfo, TRUE);
    pc_status st = check_dims(c->name, "JPEG", c->cinfo.image_width, c->cinfo.image_height);
    if (st) return st;

    /* Like PIL: choose the output from the number of components; libjpeg's defaults otherwise
     * (islow IDCT, fancy upsampling), which PIL keeps too. */
    int cmyk = 0, src_grey = 0;
    switch (c->cinfo.num_components) {
    case 1: c->cinfo.out_color_space = JCS_GRAYSCALE; src_grey = 1; break;
    case 3: c->cinfo.out_color_space = JCS_RGB; break;
    case 4: c->cinfo.out_color_space = JCS_CMYK; cmyk = 1; break;
    default:
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: JPEG with %d colour components is not supported", c->name,
                       c->cinfo.num_components);
    }
    jpeg_start_decompress(&c->cinfo);
    uint32_t w = c->cinfo.output_width, h = c->cinfo.output_height;
    st = alloc_image(c->out, c->name, w, h, c->channels_out);
    if (st) return st;
    int direct = (src_grey && c->channels_out == 1) || (!src_grey && !cmyk && c->channels_out == 3);
    if (!direct) {
        c->row = pc_malloc((size_t)w * (size_t)c->cinfo.output_components);
        if (!c->row) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate a JPEG row", c->name);
    }
    size_t stride = (size_t)w * (size_t)c->channels_out;
    while (c->cinfo.output_scanline < h) {
        uint8_t *dst = c->out->data + (size_t)c->cinfo.output_scanline * stride;
        JSAMPROW rows[1] = {direct ? dst : c->row};
        if (jpeg_read_scanlines(&c->cinfo, rows, 1) != 1)
            return pc_fail(PC_ERR_FORMAT, "%s: JPEG: cannot read row %u", c->name, c->cinfo.output_scanline);
        if (direct) continue;
        const uint8_t *s = c->row;
        for (uint32_t x = 0; x < w; x++) {
            uint8_t r, g, b;
            if (src_grey) {
                r = g = b = s[x];
            } else if (cmyk) {
                /* PIL reads CMYK JPEGs as "CMYK;I" (Adobe's inverted samples), then cmyk2rgb:
                 * out = nk - nk*c/255 with PIL's MULDIV255 rounding, nk = 255 - k. */
                int k[4];
                for (int i = 0; i < 4; i++) k[i] = 255 - s[4 * x + i];
                int nk = 255 - k[3], t;
                t = k[0] * nk + 128, r = (uint8_t)(nk - (((t >> 8) + t) >> 8));
                t = k[1] * nk + 128, g = (uint8_t)(nk - (((t >> 8) + t) >> 8));
                t = k[2] * nk + 128, b = (uint8_t)(nk - (((t >> 8) + t) >> 8));
            } else {
                r = s[3 * x], g = s[3 * x + 1], b = s[3 * x + 2];
            }
            if (c->channels_out == 3) dst[3 * x] = r, dst[3 * x + 1] = g, dst[3 * x + 2] = b;
            else dst[x] = rgb_to_l(r, g, b);
        }
    }
    /* Not jpeg_finish_decompress: PIL does not require the data after the last scan either. */
    return PC_OK;
}

static pc_status load_jpeg(const uint8_t *buf, size_t len, const char *name, int channels_out, pc_image *out) {
    jpeg_ctx *c = pc_calloc(1, sizeof *c);
    if (!c) return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot create a JPEG decoder", name);
    c->name = name, c->out = out, c->channels_out = channels_out;
    c->cinfo.err = jpeg_std_error(&c->err);
    c->err.error_exit = jpeg_on_error;
    c->err.emit_message = jpeg_on_message;
    c->err.output_message = jpeg_on_output;
    pc_status st = jpeg_decode(c, buf, len);
    if (c->created) jpeg_destroy_decompress(&c->cinfo);
    pc_free(c->row);
    pc_free(c);
    if (st) pc_image_free(out);
    return st;
}

/* =============================================================================================
 * Entry points
 * =========================================================================================== */

static pc_status load_any(const void *buf_, size_t len, const char *name_, int channels_out, pc_image *out) {
    const uint8_t *buf = buf_;
    const char *name = display_name(name_);
    if (len == 0) return pc_fail(PC_ERR_FORMAT, "%s: empty file", name);
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a};
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0) return load_png(buf, len, name, channels_out, out);
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff) return load_jpeg(buf, len, name, channels_out, out);
    const char *other = NULL;
    if (len >= 2 && buf[0] == 'B' && buf[1] == 'M') other = "BMP";
    else if (len >= 4 && (memcmp(buf, "II*\0", 4) == 0 || memcmp(buf, "MM\0*", 4) == 0)) other = "TIFF";
    else if (len >= 4 && memcmp(buf, "GIF8", 4) == 0) other = "GIF";
    else if (len >= 12 && memcmp(buf, "RIFF", 4) == 0 && memcmp(buf + 8, "WEBP", 4) == 0) other = "WebP";
    if (other)
        return pc_fail(PC_ERR_UNSUPPORTED, "%s: %s images are not supported (only PNG and JPEG)", name, other);
    if (len < 8 && memcmp(buf, png_sig, len) == 0)
        return pc_fail(PC_ERR_FORMAT, "%s: truncated PNG signature", name);
    return pc_fail(PC_ERR_FORMAT, "%s: not a PNG or JPEG file (unknown signature)", name);
}

static pc_status load_checked(const void *buf, size_t len, const char *name, int channels_out, pc_image *out) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: output image is NULL", display_name(name));
    memset(out, 0, sizeof *out);
    if (!buf && len) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: buffer is NULL", display_name(name));
    return load_any(buf, len, name, channels_out, out);
}

static pc_status load_path(const char *path, int channels_out, pc_image *out) {
    if (!out) return pc_fail(PC_ERR_INVALID_ARGUMENT, "image output is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "image path is NULL");
    pc_clear_error();
    uint8_t *data;
    size_t size;
    pc_status st = pc_read_file(path, &data, &size);
    if (st) return st;
    st = load_any(data, size, path, channels_out, out);
    pc_free(data);
    return st;
}

pc_status pc_image_load(const char *path, pc_image *out) { return load_path(path, 3, out); }

pc_status pc_image_load_grey(const char *path, pc_image *out) { return load_path(path, 1, out); }

pc_status pc_image_load_memory(const void *buf, size_t len, const char *name, pc_image *out) {
    pc_clear_error();
    return load_checked(buf, len, name, 3, out);
}

void pc_image_free(pc_image *img) {
    if (!img) return;
    pc_free(img->data);
    memset(img, 0, sizeof *img);
}

/* =============================================================================================
 * Header probe: the size of a PNG or JPEG without decoding its pixels (tiling plans its tiles
 * before decoding). Reads the PNG IHDR, or walks the JPEG markers to the first SOFn. Anything
 * else, or a header that does not parse, is PC_ERR_FORMAT: callers fall back to a full decode.
 * ============================================================================================= */

static int read_u8(FILE *f, uint8_t *b) { return fread(b, 1, 1, f) == 1; }

pc_status pc_image_probe(const char *path, int32_t *width, int32_t *height) {
    *width = *height = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pc_fail(PC_ERR_IO, "%s: cannot open", path);
    uint8_t h[24];
    pc_status st = PC_ERR_FORMAT;
    uint32_t w = 0, hh = 0;
    if (fread(h, 1, 2, f) == 2) {
        if (h[0] == 0x89 && h[1] == 'P') {
            if (fread(h + 2, 1, 22, f) == 22 && memcmp(h, "\x89PNG\r\n\x1a\n", 8) == 0 && memcmp(h + 12, "IHDR", 4) == 0) {
                w = (uint32_t)h[16] << 24 | (uint32_t)h[17] << 16 | (uint32_t)h[18] << 8 | h[19];
                hh = (uint32_t)h[20] << 24 | (uint32_t)h[21] << 16 | (uint32_t)h[22] << 8 | h[23];
                st = PC_OK;
            }
        } else if (h[0] == 0xFF && h[1] == 0xD8) {
            for (int guard = 0; guard < 4096 && st; guard++) {
                uint8_t b = 0, mk = 0;
                if (!read_u8(f, &b) || b != 0xFF) break;
                do {
                    if (!read_u8(f, &mk)) break;
                } while (mk == 0xFF);
                if (mk == 0xD8 || (mk >= 0xD0 && mk <= 0xD7) || mk == 0x01) continue; /* no length */
                uint8_t l[2];
                if (fread(l, 1, 2, f) != 2) break;
                const long len = (long)l[0] << 8 | l[1];
                if (len < 2) break;
                if (mk >= 0xC0 && mk <= 0xCF && mk != 0xC4 && mk != 0xC8 && mk != 0xCC) {
                    uint8_t s[5];
                    if (len < 7 || fread(s, 1, 5, f) != 5) break;
                    hh = (uint32_t)s[1] << 8 | s[2];
                    w = (uint32_t)s[3] << 8 | s[4];
                    st = PC_OK;
                } else if (fseek(f, len - 2, SEEK_CUR) != 0) {
                    break;
                }
            }
        }
    }
    fclose(f);
    if (st) return pc_fail(PC_ERR_FORMAT, "%s: not a PNG or JPEG header that can be probed", path);
    st = check_dims(path, "the image", w, hh);
    if (st) return st;
    *width = (int32_t)w, *height = (int32_t)hh;
    return PC_OK;
}
