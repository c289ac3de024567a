/*
 * test_overlay.c - overlays and map writers against independent oracles:
 *  - pc_overlay_render vs tests/ref/gen_overlay.py (numpy/scipy from the documented formulas) on five
 *    geometries (landscape, portrait, crop larger than the image, upscaling, 900x900 at 256/224);
 *  - pc_heat_colormap vs the script's LUT, pc_heat_index at documented points;
 *  - the files pc_image_write_png / pc_map_write_png16 / pc_map_write_tiff write, read back by PIL
 *    (pc_map_encode_png16's buffer equals pc_map_write_png16's file byte for byte)
 *    (tests/ref/pil_read.py run with /usr/bin/python3; skipped when it is absent);
 *  - argument and I/O errors;
 *  - maps that are not crop x crop squares (a tiled prediction's map has the image's size, identity
 *    geometry): overlays, boxes and points back on the image, and pc_regions_from_map (size 0: the
 *    geometry's map size) vs gen_overlay.py's rect_* cases (numpy/scipy, exact), a geometry with map
 *    size 0 x 0 (filled by older code) read as crop x crop, and boxes checked against the map's size.
 */
#include "testutil.h"

#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct ov_case {
    char name[32];
    int w, h, r, s;
    double thr, scale, opacity;
    int outline_w;
    double full_scale;
    int rw, rh, left, top;
} ov_case;

static ov_case cases[16];
static int n_cases;

static int load_manifest(void) {
    if (n_cases) return 0;
    char p[2048];
    FILE *f = fopen(ref_path(p, sizeof p, "overlay/manifest.txt"), "r");
    if (!f) return -1;
    ov_case c;
    while (n_cases < 16 && fscanf(f, "%31s %d %d %d %d %lf %lf %lf %d %lf %d %d %d %d", c.name, &c.w, &c.h, &c.r, &c.s,
                                  &c.thr, &c.scale, &c.opacity, &c.outline_w, &c.full_scale, &c.rw, &c.rh, &c.left,
                                  &c.top) == 14)
        cases[n_cases++] = c;
    fclose(f);
    return n_cases ? 0 : -1;
}

#define NEED_REFS()                                                                                  \
    do {                                                                                             \
        if (load_manifest() != 0) fail_msg("no overlay references: run `make refs` (gen_overlay.py)"); \
    } while (0)

/* The case's image (owned by the npy array) and map. */
static void load_case(const ov_case *c, npy_array *rgb, npy_array *map, pc_image *img) {
    char rel[128];
    snprintf(rel, sizeof rel, "overlay/%s_rgb.npy", c->name);
    assert_int_equal(npy_load(rel, rgb), 0);
    snprintf(rel, sizeof rel, "overlay/%s_map.npy", c->name);
    assert_int_equal(npy_load(rel, map), 0);
    assert_int_equal(rgb->count, (int64_t)c->w * c->h * 3);
    assert_int_equal(map->count, (int64_t)c->s * c->s);
    img->width = c->w, img->height = c->h, img->channels = 3, img->data = rgb->data;
}

static void render_case(const ov_case *c, const pc_image *img, const float *map, pc_image *out) {
    pc_geometry g;
    assert_int_equal(pc_geometry_compute(c->w, c->h, c->r, c->s, &g), PC_OK);
    /* The oracle worked the geometry out from torchvision's rules too. */
    assert_int_equal(g.resized_width, c->rw);
    assert_int_equal(g.resized_height, c->rh);
    assert_int_equal(g.crop_left, c->left);
    assert_int_equal(g.crop_top, c->top);
    pc_overlay_options o;
    pc_overlay_options_init(&o, c->thr, c->scale);
    o.opacity = c->opacity;
    o.outline_width = c->outline_w;
    pc_status st = pc_overlay_render(out, img, map, &g, &o);
    if (st) fail_msg("%s: %s", c->name, pc_last_error());
}

static void test_colormap(void **state) {
    (void)state;
    NEED_REFS();
    npy_array lut;
    assert_int_equal(npy_load("overlay/lut.npy", &lut), 0);
    assert_int_equal(lut.count, 256 * 3);
    uint8_t rgb[256 * 3];
    pc_heat_colormap(rgb);
    assert_memory_equal(rgb, lut.data, sizeof rgb); /* exact */
    npy_free(&lut);
    /* Documented anchor points: the threshold is index 128, one scale below 25 (p = 0.1), above 230. */
    assert_int_equal(pc_heat_index(2.0, 2.0, 0.5), 128);
    assert_int_equal(pc_heat_index(1.5, 2.0, 0.5), 25);
    assert_int_equal(pc_heat_index(2.5, 2.0, 0.5), 230);
    assert_int_equal(pc_heat_index(-1e300, 2.0, 0.5), 0);
    assert_int_equal(pc_heat_index(1e300, 2.0, 0.5), 255);
    assert_int_equal(pc_heat_index(NAN, 2.0, 0.5), -1);
    assert_int_equal(pc_heat_index(1.0, 2.0, 0.0), -1);
}

/* Exact agreement is expected (same double operations, no FMA, integer blending); the only possible
 * difference is a value whose p * 256 lies within an ulp of an integer, where exp() of two libms may
 * round differently: allowed on at most 1e-4 of the pixels, by at most 16 levels (one colour step at
 * full opacity). */
static void test_overlay_matches_oracle(void **state) {
    (void)state;
    NEED_REFS();
    for (int k = 0; k < n_cases; k++) {
        const ov_case *c = &cases[k];
        npy_array rgb, map, exp;
        pc_image img, out;
        load_case(c, &rgb, &map, &img);
        char rel[128];
        snprintf(rel, sizeof rel, "overlay/%s_overlay.npy", c->name);
        assert_int_equal(npy_load(rel, &exp), 0);
        assert_int_equal(exp.count, rgb.count);
        render_case(c, &img, map.data, &out);
        assert_int_equal(out.width, c->w);
        assert_int_equal(out.height, c->h);
        assert_int_equal(out.channels, 3);
        const uint8_t *e = exp.data;
        int64_t npix = (int64_t)c->w * c->h, differ = 0, changed = 0, outline = 0;
        int maxd = 0;
        for (int64_t i = 0; i < npix; i++) {
            int d = 0;
            for (int ch = 0; ch < 3; ch++) d = PC_MAX(d, abs((int)out.data[3 * i + ch] - (int)e[3 * i + ch]));
            differ += d > 0;
            maxd = PC_MAX(maxd, d);
            changed += memcmp(e + 3 * i, (uint8_t *)rgb.data + 3 * i, 3) != 0;
            outline += e[3 * i] == 0 && e[3 * i + 1] == 255 && e[3 * i + 2] == 255;
        }
        print_message("%-7s %4dx%-4d R=%d S=%d: %lld of %lld pixels differ (max %d levels); oracle changed %lld, "
                      "outline %lld\n",
                      c->name, c->w, c->h, c->r, c->s, (long long)differ, (long long)npix, maxd, (long long)changed,
                      (long long)outline);
        /* The cases must exercise what they claim: heat drawn, and outlines unless disabled. */
        assert_true(changed > npix / 50);
        if (c->outline_w >= 0) assert_true(outline > 0);
        else assert_int_equal(outline, 0);
        assert_true(differ * 10000 <= npix);
        assert_true(maxd <= 16);
        pc_image_free(&out);
        npy_free(&rgb), npy_free(&map), npy_free(&exp);
    }
}

/* Region boxes and peaks back on the original image vs the oracle's brute force over all pixel
 * centres (exact integers), on every case's geometry (the upscaling one exercises boxes smaller than
 * an original pixel). */
static void test_back_to_original(void **state) {
    (void)state;
    NEED_REFS();
    for (int k = 0; k < n_cases; k++) {
        const ov_case *c = &cases[k];
        pc_geometry g;
        assert_int_equal(pc_geometry_compute(c->w, c->h, c->r, c->s, &g), PC_OK);
        npy_array b, bo, p, po;
        char rel[128];
        snprintf(rel, sizeof rel, "overlay/%s_boxes.npy", c->name);
        assert_int_equal(npy_load(rel, &b), 0);
        snprintf(rel, sizeof rel, "overlay/%s_boxes_orig.npy", c->name);
        assert_int_equal(npy_load(rel, &bo), 0);
        snprintf(rel, sizeof rel, "overlay/%s_points.npy", c->name);
        assert_int_equal(npy_load(rel, &p), 0);
        snprintf(rel, sizeof rel, "overlay/%s_points_orig.npy", c->name);
        assert_int_equal(npy_load(rel, &po), 0);
        assert_string_equal(b.dtype, "<i4");
        assert_int_equal(b.count, bo.count);
        const int32_t *bi = b.data, *be = bo.data, *pi = p.data, *pe = po.data;
        for (int64_t i = 0; i < b.count / 4; i++) {
            int32_t got[4];
            assert_int_equal(pc_overlay_box_to_original(got, &g, bi + 4 * i), PC_OK);
            if (memcmp(got, be + 4 * i, sizeof got))
                fail_msg("%s box [%d,%d)x[%d,%d): got [%d,%d)x[%d,%d), oracle [%d,%d)x[%d,%d)", c->name, bi[4 * i],
                         bi[4 * i + 2], bi[4 * i + 1], bi[4 * i + 3], got[0], got[2], got[1], got[3], be[4 * i],
                         be[4 * i + 2], be[4 * i + 1], be[4 * i + 3]);
        }
        for (int64_t i = 0; i < p.count / 2; i++) {
            int32_t got[2];
            assert_int_equal(pc_overlay_point_to_original(got, &g, pi[2 * i], pi[2 * i + 1]), PC_OK);
            assert_int_equal(got[0], pe[2 * i]);
            assert_int_equal(got[1], pe[2 * i + 1]);
        }
        print_message("%-7s %lld boxes, %lld points: identical to the oracle\n", c->name, (long long)(b.count / 4),
                      (long long)(p.count / 2));
        npy_free(&b), npy_free(&bo), npy_free(&p), npy_free(&po);
    }
    pc_geometry g;
    assert_int_equal(pc_geometry_compute(100, 50, 64, 56, &g), PC_OK);
    int32_t out[4], bad[4] = {5, 5, 5, 9}, off[4] = {56, 0, 60, 4};
    assert_int_equal(pc_overlay_box_to_original(out, &g, bad), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_overlay_box_to_original(out, &g, off), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_overlay_box_to_original(out, NULL, bad), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_overlay_point_to_original(NULL, &g, 0, 0), PC_ERR_INVALID_ARGUMENT);
}

/* Run PIL over files; 0 when it ran, 1 when python3 is absent (skip), -1 when it failed. */
static int pil_read(char *const files[], int n) {
    if (access("/usr/bin/python3", X_OK) != 0) return 1;
    const char *src = getenv("PC_SOURCE_DIR");
    char cmd[8192];
    int len = snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/ref/pil_read.py'", src ? src : ".");
    for (int i = 0; i < n; i++) len += snprintf(cmd + len, sizeof cmd - len, " '%s'", files[i]);
    return system(cmd) == 0 ? 0 : -1;
}

/* PIL's decoding of the PNG at stem (stem.npy, written by pil_read) equals img's bytes. */
static void expect_npy_bytes(const char *stem, const pc_image *img) {
    char p[1300];
    npy_array a;
    snprintf(p, sizeof p, "%s.npy", stem);
    assert_int_equal(npy_load(p, &a), 0);
    assert_int_equal(a.count, (int64_t)img->width * img->height * img->channels);
    assert_memory_equal(a.data, img->data, (size_t)a.count);
    npy_free(&a);
}

static void out_dir(char *buf, size_t size) {
    const char *b = getenv("PC_BUILD_DIR");
    snprintf(buf, size, "%s/test_overlay_out", b ? b : ".");
    mkdir(buf, 0755);
}

/* Our files as PIL decodes them: the RGB PNG equals the rendered overlay, the 16-bit PNG the oracle's
 * samples and carries the scale, the TIFF the map bit for bit (all exact). */
static void test_files_read_by_pil(void **state) {
    (void)state;
    NEED_REFS();
    char dir[1024];
    out_dir(dir, sizeof dir);
    const char *names[] = {"land", "bottle", "pad"};
    for (int t = 0; t < 3; t++) {
        const ov_case *c = NULL;
        for (int k = 0; k < n_cases; k++)
            if (!strcmp(cases[k].name, names[t])) c = &cases[k];
        assert_non_null(c);
        npy_array rgb, map, g16;
        pc_image img, out;
        load_case(c, &rgb, &map, &img);
        char rel[128];
        snprintf(rel, sizeof rel, "overlay/%s_png16.npy", c->name);
        assert_int_equal(npy_load(rel, &g16), 0);
        render_case(c, &img, map.data, &out);
        char f8[1200], f16[1200], ftif[1200], fgrey[1200], fmem[1200], fmemg[1200];
        snprintf(f8, sizeof f8, "%s/%s_overlay.png", dir, c->name);
        snprintf(f16, sizeof f16, "%s/%s_map16.png", dir, c->name);
        snprintf(ftif, sizeof ftif, "%s/%s_map.tiff", dir, c->name);
        snprintf(fgrey, sizeof fgrey, "%s/%s_grey.png", dir, c->name);
        snprintf(fmem, sizeof fmem, "%s/%s_mem9.png", dir, c->name);
        snprintf(fmemg, sizeof fmemg, "%s/%s_mem0_grey.png", dir, c->name);
        assert_int_equal(pc_image_write_png(f8, &out), PC_OK);
        assert_int_equal(pc_map_write_png16(f16, map.data, c->s, c->s, c->full_scale), PC_OK);
        assert_int_equal(pc_map_write_tiff(ftif, map.data, c->s, c->s), PC_OK);
        /* A grey PNG: the overlay's green channel. */
        pc_image grey = {c->w, c->h, 1, malloc((size_t)c->w * c->h)};
        for (int64_t i = 0; i < (int64_t)c->w * c->h; i++) grey.data[i] = out.data[3 * i + 1];
        assert_int_equal(pc_image_write_png(fgrey, &grey), PC_OK);
        /* In-memory PNGs (pc_image_encode_png) at the smallest and at no compression, saved as is. */
        const pc_image *mem_img[2] = {&out, &grey};
        const char *mem_file[2] = {fmem, fmemg};
        for (int k = 0; k < 2; k++) {
            uint8_t *png;
            size_t size;
            assert_int_equal(pc_image_encode_png(&png, &size, mem_img[k], k ? 0 : 9), PC_OK);
            FILE *mf = fopen(mem_file[k], "wb");
            assert_non_null(mf);
            assert_int_equal(fwrite(png, 1, size, mf), size);
            assert_int_equal(fclose(mf), 0);
            pc_buffer_free(png);
        }

        char *files[] = {f8, f16, ftif, fgrey, fmem, fmemg};
        int rc = pil_read(files, 6);
        if (rc == 1) {
            pc_image_free(&out), free(grey.data), npy_free(&rgb), npy_free(&map), npy_free(&g16);
            TEST_SKIP_MSG("/usr/bin/python3 is absent: cannot read our files back with PIL");
        }
        assert_int_equal(rc, 0);
        /* the 8-bit PNGs (file and in-memory, RGB and grey) as PIL decoded them */
        const char *png8[4] = {f8, fgrey, fmem, fmemg};
        const pc_image *want8[4] = {&out, &grey, &out, &grey};
        for (int k = 0; k < 4; k++) expect_npy_bytes(png8[k], want8[k]);
        char p[1300];
        npy_array a;
        snprintf(p, sizeof p, "%s.npy", f16);
        assert_int_equal(npy_load(p, &a), 0);
        assert_string_equal(a.dtype, "<u2");
        assert_int_equal(a.count, g16.count);
        assert_memory_equal(a.data, g16.data, (size_t)a.count * 2);
        npy_free(&a);
        snprintf(p, sizeof p, "%s.npy", ftif);
        assert_int_equal(npy_load(p, &a), 0);
        assert_string_equal(a.dtype, "<f4");
        assert_int_equal(a.ndim, 2);
        assert_int_equal(a.shape[0], c->s);
        assert_int_equal(a.count, map.count);
        assert_memory_equal(a.data, map.data, (size_t)a.count * 4);
        npy_free(&a);
        /* Modes and the scale's text chunk. */
        char line[256], want[128];
        snprintf(p, sizeof p, "%s.txt", ftif);
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, "mode F TIFF\n");
        fclose(f);
        snprintf(p, sizeof p, "%s.txt", f16);
        f = fopen(p, "r");
        assert_non_null(f);
        assert_non_null(fgets(line, sizeof line, f));
        assert_true(!strcmp(line, "mode I PNG\n") || !strcmp(line, "mode I;16 PNG\n")); /* Pillow's choice */
        int found = 0;
        snprintf(want, sizeof want, "text %s %.17g\n", PC_PNG16_SCALE_KEY, c->full_scale);
        while (fgets(line, sizeof line, f)) found |= !strcmp(line, want);
        fclose(f);
        assert_true(found);
        pc_image_free(&out), free(grey.data), npy_free(&rgb), npy_free(&map), npy_free(&g16);
    }
}

/* Special values in the 16-bit PNG: clamping at both ends, NaN -> 0, rounding half up; and an
 * atomic overwrite leaves no temporary file. Worked out by hand from the documented formula. */
static void test_png16_by_hand(void **state) {
    (void)state;
    char dir[1024], f16[1200];
    out_dir(dir, sizeof dir);
    snprintf(f16, sizeof f16, "%s/hand16.png", dir);
    /* full_scale 2: g = floor(v * 32767.5 + 0.5) */
    const float m[6] = {-1.0f, 0.0f, 1.0f, 2.0f, 5.0f, NAN};
    const uint16_t want[6] = {0, 0, 32768, 65535, 65535, 0};
    assert_int_equal(pc_map_write_png16(f16, m, 2, 3, 2.0), PC_OK);
    assert_int_equal(pc_map_write_png16(f16, m, 2, 3, 2.0), PC_OK); /* overwrite */
    /* pc_map_encode_png16 (what `serve` returns for ?map=png16): the file's bytes, in memory */
    uint8_t *enc = NULL;
    size_t enc_size = 0;
    assert_int_equal(pc_map_encode_png16(&enc, &enc_size, m, 2, 3, 2.0), PC_OK);
    FILE *ff = fopen(f16, "rb");
    assert_non_null(ff);
    uint8_t filebuf[4096];
    size_t fn = fread(filebuf, 1, sizeof filebuf, ff);
    fclose(ff);
    assert_int_equal(fn, enc_size);
    assert_memory_equal(filebuf, enc, enc_size);
    pc_buffer_free(enc);
    assert_int_equal(pc_map_encode_png16(&enc, &enc_size, m, 2, 3, 0.0), PC_ERR_INVALID_ARGUMENT);
    assert_null(enc);
    assert_int_equal(enc_size, 0);
    assert_int_equal(pc_map_encode_png16(&enc, &enc_size, NULL, 2, 3, 1.0), PC_ERR_INVALID_ARGUMENT);
    char *files[] = {f16};
    int rc = pil_read(files, 1);
    if (rc == 1) TEST_SKIP_MSG("/usr/bin/python3 is absent");
    assert_int_equal(rc, 0);
    char p[1300];
    npy_array a;
    snprintf(p, sizeof p, "%s.npy", f16);
    assert_int_equal(npy_load(p, &a), 0);
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_memory_equal(a.data, want, sizeof want);
    npy_free(&a);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp-", dir);
    assert_int_not_equal(system(cmd), 0);
}

static void test_errors(void **state) {
    (void)state;
    uint8_t px[12] = {0};
    float map[4] = {0};
    pc_image img = {2, 2, 3, px}, out;
    pc_geometry g;
    assert_int_equal(pc_geometry_compute(2, 2, 2, 2, &g), PC_OK);
    /* pc_image_encode_png: bad arguments and levels leave the outputs empty. */
    uint8_t *png = (uint8_t *)1;
    size_t png_size = 1;
    assert_int_equal(pc_image_encode_png(&png, &png_size, &img, 10), PC_ERR_INVALID_ARGUMENT);
    assert_null(png);
    assert_int_equal(png_size, 0);
    assert_int_equal(pc_image_encode_png(&png, &png_size, &img, -2), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_image_encode_png(NULL, &png_size, &img, 9), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_image_encode_png(&png, &png_size, NULL, 9), PC_ERR_INVALID_ARGUMENT);
    pc_image two = {2, 2, 2, px};
    assert_int_equal(pc_image_encode_png(&png, &png_size, &two, 9), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "channels"));
    assert_int_equal(pc_image_encode_png(&png, &png_size, &img, -1), PC_OK);
    assert_true(png_size > 8 && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    pc_buffer_free(png);
    pc_buffer_free(NULL);
    pc_overlay_options o;
    pc_overlay_options_init(&o, 1.0, 0.5);
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_OK);
    pc_image_free(&out);
    assert_int_equal(pc_overlay_render(NULL, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_overlay_render(&out, NULL, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    assert_null(out.data);
    assert_int_equal(pc_overlay_render(&out, &img, NULL, &g, &o), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_overlay_render(&out, &img, map, NULL, &o), PC_ERR_INVALID_ARGUMENT);
    o.scale = 0;
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    o.scale = 1, o.threshold = NAN;
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    o.threshold = 1, o.opacity = 1.5;
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    o.opacity = 0.5;
    g.orig_width = 3; /* geometry of another image */
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "2x2"));
    g.orig_width = 2;
    img.channels = 1;
    assert_int_equal(pc_overlay_render(&out, &img, map, &g, &o), PC_ERR_INVALID_ARGUMENT);
    img.channels = 3;

    const char *bad = "/nonexistent-dir-pc/x.png";
    assert_int_equal(pc_image_write_png(bad, &img), PC_ERR_IO);
    assert_non_null(strstr(pc_last_error(), bad));
    assert_int_equal(pc_map_write_png16(bad, map, 2, 2, 1.0), PC_ERR_IO);
    assert_non_null(strstr(pc_last_error(), bad));
    assert_int_equal(pc_map_write_tiff(bad, map, 2, 2), PC_ERR_IO);
    assert_non_null(strstr(pc_last_error(), bad));
    assert_int_equal(pc_map_write_png16("x.png", map, 2, 2, 0.0), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_map_write_png16("x.png", map, 0, 2, 1.0), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_map_write_tiff("x.tiff", NULL, 2, 2), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_map_write_tiff("x.tiff", map, 65536, 65536), PC_ERR_TOO_LARGE);
    img.channels = 4;
    assert_int_equal(pc_image_write_png("x.png", &img), PC_ERR_INVALID_ARGUMENT);
}

/* ---- maps that are not crop x crop squares ---- */

typedef struct rect_case {
    char name[32];
    int w, h, rw, rh, left, top, crop, mw, mh;
    double thr, scale, opacity;
    int outline_w;
} rect_case;

static void test_rect_maps(void **state) {
    (void)state;
    char p[2048];
    FILE *f = fopen(ref_path(p, sizeof p, "overlay/manifest_rect.txt"), "r");
    if (!f) fail_msg("no overlay references for rectangular maps: run `make refs` (gen_overlay.py)");
    rect_case c;
    int n_done = 0;
    while (fscanf(f, "%31s %d %d %d %d %d %d %d %d %d %lf %lf %lf %d", c.name, &c.w, &c.h, &c.rw, &c.rh, &c.left,
                  &c.top, &c.crop, &c.mw, &c.mh, &c.thr, &c.scale, &c.opacity, &c.outline_w) == 14) {
        npy_array rgb, map, exp, b, bo, pt, po, rg, pk;
        char rel[160];
#define LOAD(arr, suffix)                                                    \
    do {                                                                     \
        snprintf(rel, sizeof rel, "overlay/rect_%s_%s.npy", c.name, suffix); \
        assert_int_equal(npy_load(rel, &arr), 0);                            \
    } while (0)
        LOAD(rgb, "rgb");
        LOAD(map, "map");
        LOAD(exp, "overlay");
        LOAD(b, "boxes");
        LOAD(bo, "boxes_orig");
        LOAD(pt, "points");
        LOAD(po, "points_orig");
        LOAD(rg, "regions");
        LOAD(pk, "peaks");
#undef LOAD
        assert_int_equal(map.shape[0], c.mh); /* (MH, MW): rows of MW floats */
        assert_int_equal(map.shape[1], c.mw);
        pc_image img = {c.w, c.h, 3, rgb.data}, out;
        pc_geometry g = {c.w, c.h, c.rw, c.rh, c.left, c.top, c.crop, c.mw, c.mh};
        /* The square case also as code older than the map size fills it: 0 x 0 means crop x crop. */
        const bool square = c.mw == c.mh && c.mw == c.crop;
        for (int variant = 0; variant < (square ? 2 : 1); variant++) {
            if (variant == 1) g.map_width = g.map_height = 0;
            pc_overlay_options o;
            pc_overlay_options_init(&o, c.thr, c.scale);
            o.opacity = c.opacity;
            o.outline_width = c.outline_w;
            if (pc_overlay_render(&out, &img, map.data, &g, &o)) fail_msg("%s: %s", c.name, pc_last_error());
            assert_int_equal(out.width, c.w), assert_int_equal(out.height, c.h);
            const uint8_t *e = exp.data;
            int64_t npix = (int64_t)c.w * c.h, differ = 0, changed = 0;
            int maxd = 0;
            for (int64_t i = 0; i < npix; i++) {
                int d = 0;
                for (int ch = 0; ch < 3; ch++) d = PC_MAX(d, abs((int)out.data[3 * i + ch] - (int)e[3 * i + ch]));
                differ += d > 0, maxd = PC_MAX(maxd, d);
                changed += memcmp(e + 3 * i, (uint8_t *)rgb.data + 3 * i, 3) != 0;
            }
            /* As test_overlay_matches_oracle: at most 1e-4 of the pixels (here: none) by at most 16 levels. */
            assert_true(changed > npix / 50);
            assert_true(differ * 10000 <= npix);
            assert_true(maxd <= 16);
            pc_image_free(&out);
            const int32_t *bi = b.data, *be = bo.data, *pi = pt.data, *pe = po.data;
            for (int64_t i = 0; i < b.count / 4; i++) {
                int32_t got[4];
                assert_int_equal(pc_overlay_box_to_original(got, &g, bi + 4 * i), PC_OK);
                if (memcmp(got, be + 4 * i, sizeof got))
                    fail_msg("%s box [%d,%d)x[%d,%d): got [%d,%d)x[%d,%d), oracle [%d,%d)x[%d,%d)", c.name, bi[4 * i],
                             bi[4 * i + 2], bi[4 * i + 1], bi[4 * i + 3], got[0], got[2], got[1], got[3], be[4 * i],
                             be[4 * i + 2], be[4 * i + 1], be[4 * i + 3]);
            }
            for (int64_t i = 0; i < pt.count / 2; i++) {
                int32_t got[2];
                assert_int_equal(pc_overlay_point_to_original(got, &g, pi[2 * i], pi[2 * i + 1]), PC_OK);
                assert_int_equal(got[0], pe[2 * i]), assert_int_equal(got[1], pe[2 * i + 1]);
            }
            /* Regions: size 0 takes the geometry's map size (and, square, size = crop does the same). */
            pc_region r[64];
            int32_t n = -1;
            const int64_t k = rg.count / 8;
            assert_int_equal(pc_regions_from_map(r, 64, &n, map.data, 0, c.thr, &g), PC_OK);
            assert_int_equal(n, k);
            const int32_t *re = rg.data;
            for (int64_t i = 0; i < k; i++) {
                const int32_t *x = re + 8 * i;
                assert_int_equal(r[i].x0, x[0]), assert_int_equal(r[i].y0, x[1]);
                assert_int_equal(r[i].x1, x[2]), assert_int_equal(r[i].y1, x[3]);
                assert_int_equal(r[i].area, x[4]);
                assert_int_equal(r[i].peak_x, x[5]), assert_int_equal(r[i].peak_y, x[6]);
                assert_true(r[i].peak == ((const float *)pk.data)[i]); /* the map's own value */
            }
            if (square) {
                pc_region r2[64];
                int32_t n2 = -1;
                assert_int_equal(pc_regions_from_map(r2, 64, &n2, map.data, c.crop, c.thr, &g), PC_OK);
                assert_int_equal(n2, n);
                assert_memory_equal(r2, r, (size_t)n * sizeof *r);
            }
        }
        /* Boxes are checked against the map's size, not the crop's. */
        if (!square) {
            int32_t got[4], last[4] = {c.mw - 1, c.mh - 1, c.mw, c.mh}, offx[4] = {c.mw, 0, c.mw + 1, 1},
                            offy[4] = {0, c.mh, 1, c.mh + 1};
            assert_int_equal(pc_overlay_box_to_original(got, &g, last), PC_OK);
            assert_int_equal(pc_overlay_box_to_original(got, &g, offx), PC_ERR_INVALID_ARGUMENT);
            assert_non_null(strstr(pc_last_error(), "map"));
            assert_int_equal(pc_overlay_box_to_original(got, &g, offy), PC_ERR_INVALID_ARGUMENT);
        }
        print_message("rect %-11s %3dx%-3d map %3dx%-3d crop %2d: overlay, %lld boxes, %lld points, %lld regions "
                      "as the oracle\n", c.name, c.w, c.h, c.mw, c.mh, c.crop, (long long)(b.count / 4),
                      (long long)(pt.count / 2), (long long)(rg.count / 8));
        npy_free(&rgb), npy_free(&map), npy_free(&exp), npy_free(&b), npy_free(&bo);
        npy_free(&pt), npy_free(&po), npy_free(&rg), npy_free(&pk);
        n_done++;
    }
    fclose(f);
    assert_int_equal(n_done, 4);
    /* size 0 needs a geometry; a geometry whose map size is not positive is refused. */
    float m1[4] = {0};
    int32_t n;
    assert_int_equal(pc_regions_from_map(NULL, 0, &n, m1, 0, 0.5, NULL), PC_ERR_INVALID_ARGUMENT);
    pc_geometry bad = {2, 2, 2, 2, 0, 0, 2, -1, 2};
    assert_int_equal(pc_regions_from_map(NULL, 0, &n, m1, 0, 0.5, &bad), PC_ERR_INVALID_ARGUMENT);
    pc_image one = {2, 2, 3, (uint8_t[12]){0}}, out;
    pc_overlay_options o;
    pc_overlay_options_init(&o, 1, 1);
    assert_int_equal(pc_overlay_render(&out, &one, m1, &bad, &o), PC_ERR_INVALID_ARGUMENT);
}

/* Out of memory: in a child process with PC_FAULT_ALLOC=N (the N-th and later allocations fail), every
 * call returns PC_OK or PC_ERR_NO_MEMORY with "out of memory" in its message, never crashes, and
 * leaks nothing (checked at the child's exit in the sanitizer build). */
static int fault_child(const char *dir) {
    enum { W = 40, H = 30, S = 16 };
    static uint8_t px[W * H * 3];
    static float map[S * S];
    for (int i = 0; i < W * H * 3; i++) px[i] = (uint8_t)(i * 7);
    for (int i = 0; i < S * S; i++) map[i] = (float)(i % 13) / 4.0f;
    pc_image img = {W, H, 3, px}, out = {0};
    pc_geometry g;
    if (pc_geometry_compute(W, H, 20, S, &g) != PC_OK) return 30;
    pc_overlay_options o;
    pc_overlay_options_init(&o, 2.0, 0.5);
    char f8[1200], f16[1200], ft[1200];
    snprintf(f8, sizeof f8, "%s/fault.png", dir);
    snprintf(f16, sizeof f16, "%s/fault16.png", dir);
    snprintf(ft, sizeof ft, "%s/fault.tiff", dir);
    int n_nomem = 0;
    pc_status st[4];
    st[0] = pc_overlay_render(&out, &img, map, &g, &o);
    if (!st[0] && out.data == NULL) return 31;
    st[1] = pc_image_write_png(f8, st[0] ? &img : &out);
    pc_image_free(&out);
    st[2] = pc_map_write_png16(f16, map, S, S, 4.0);
    st[3] = pc_map_write_tiff(ft, map, S, S);
    for (int i = 0; i < 4; i++) {
        if (st[i] != PC_OK && st[i] != PC_ERR_NO_MEMORY) return 10 + i;
        if (st[i] == PC_ERR_NO_MEMORY && !strstr(pc_last_error(), "out of memory")) return 20 + i;
        n_nomem += st[i] == PC_ERR_NO_MEMORY;
    }
    return n_nomem > 0 ? 0 : 1; /* 1: no allocation failed (N beyond the last allocation) */
}

static void test_alloc_faults(void **state) {
    (void)state;
    char self[4096], dir[1024];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) TEST_SKIP_MSG("cannot find /proc/self/exe");
    self[len] = 0;
    out_dir(dir, sizeof dir);
    int last = 0, n;
    for (n = 1; n <= 64; n++) {
        char cmd[6000];
        snprintf(cmd, sizeof cmd, "PC_FAULT_ALLOC=%d '%s' --fault-child '%s'", n, self, dir);
        int rc = system(cmd);
        assert_true(WIFEXITED(rc));
        last = WEXITSTATUS(rc);
        if (last == 1) break;
        if (last != 0) fail_msg("PC_FAULT_ALLOC=%d: child exit %d", n, last);
    }
    assert_int_equal(last, 1); /* reached N with no failing allocation: every earlier N was covered */
    print_message("allocation faults: %d injection points, all clean\n", n - 1);
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--fault-child") == 0) return fault_child(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_colormap),
        cmocka_unit_test(test_overlay_matches_oracle),
        cmocka_unit_test(test_back_to_original),
        cmocka_unit_test(test_rect_maps),
        cmocka_unit_test(test_files_read_by_pil),
        cmocka_unit_test(test_png16_by_hand),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
