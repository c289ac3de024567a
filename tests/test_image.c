/*
 * test_image.c - image decoding and preprocessing against PIL + torchvision (tests/ref/gen_images.py):
 *  - decoded RGB and L images equal PIL's convert("RGB") / convert("L") exactly;
 *  - the resized 8-bit image equals torchvision Resize(R) (PIL bilinear): differing pixels are counted
 *    and must be 0;
 *  - the normalised 3xSxS tensor is within 1e-6 (absolute) of torchvision's;
 *  - masks through the mask path equal PIL Resize + CenterCrop followed by `== 255` (rule full, the
 *    reference's ToTensor().astype(int)) and `>= 128` (rule half) exactly, on generated images and on
 *    every bottle ground-truth mask;
 *  - raw pc_resize_bilinear_u8 cases equal PIL's Image.resize(BILINEAR) exactly;
 *  - corrupt, truncated, empty, unsupported and oversized files give the listed status and a message
 *    naming the file;
 *  - the CLI's `preprocess` verb writes the same tensor.
 */
#include "internal.h"
#include "resize.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_LINES 1024

static char *lines[MAX_LINES];
static int nlines;

static int load_manifest(void) {
    if (nlines) return 0;
    char p[2048];
    FILE *f = fopen(ref_path(p, sizeof p, "images/manifest.txt"), "r");
    if (!f) return -1;
    char buf[4096];
    while (nlines < MAX_LINES && fgets(buf, sizeof buf, f)) {
        if (buf[0] == '#' || buf[0] == '\n') continue;
        buf[strcspn(buf, "\n")] = 0;
        lines[nlines++] = strdup(buf);
    }
    fclose(f);
    return 0;
}

#define NEED_REFS()                                                                             \
    do {                                                                                        \
        if (load_manifest() != 0) TEST_SKIP_MSG("no references: run `make refs` (gen_images.py)"); \
    } while (0)

/* The input file of image NAME (manifest paths are absolute or relative to the reference dir). */
static const char *image_path(char *buf, size_t size, const char *name) {
    for (int i = 0; i < nlines; i++) {
        char kind[16], n[256], path[1800];
        if (sscanf(lines[i], "%15s %255s %1799s", kind, n, path) == 3 && !strcmp(kind, "image") && !strcmp(n, name)) {
            if (path[0] == '/') snprintf(buf, size, "%s", path);
            else ref_path(buf, size, "images/%s", path);
            return buf;
        }
    }
    return NULL;
}

static npy_array load_ref(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static npy_array load_ref(const char *fmt, ...) {
    char rel[1024], full[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    npy_array a;
    ref_path(full, sizeof full, "images/%s", rel);
    if (npy_load(full, &a) != 0) fail_msg("cannot read reference %s", full);
    return a;
}

static size_t count_diff_u8(const uint8_t *a, const uint8_t *b, size_t n, int *maxd) {
    size_t d = 0;
    *maxd = 0;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            d++;
            int e = abs((int)a[i] - (int)b[i]);
            if (e > *maxd) *maxd = e;
        }
    return d;
}

static void test_decode_matches_pil(void **state) {
    (void)state;
    NEED_REFS();
    int n = 0;
    for (int i = 0; i < nlines; i++) {
        char kind[16], name[256], p[2048];
        if (sscanf(lines[i], "%15s %255s", kind, name) != 2 || strcmp(kind, "image")) continue;
        image_path(p, sizeof p, name);
        pc_image im, gr;
        pc_status st = pc_image_load(p, &im);
        if (st) fail_msg("%s: %s", name, pc_last_error());
        npy_array ref = load_ref("%s_rgb.npy", name);
        assert_int_equal(ref.ndim, 3);
        assert_int_equal(im.height, ref.shape[0]);
        assert_int_equal(im.width, ref.shape[1]);
        assert_int_equal(im.channels, 3);
        int maxd;
        size_t d = count_diff_u8(im.data, ref.data, (size_t)ref.count, &maxd);
        if (d) fail_msg("%s: RGB differs from PIL in %zu of %lld samples (max %d)", name, d, (long long)ref.count, maxd);
        npy_free(&ref);
        st = pc_image_load_grey(p, &gr);
        if (st) fail_msg("%s (grey): %s", name, pc_last_error());
        ref = load_ref("%s_l.npy", name);
        assert_int_equal(gr.channels, 1);
        assert_int_equal((int64_t)gr.width * gr.height, ref.count);
        d = count_diff_u8(gr.data, ref.data, (size_t)ref.count, &maxd);
        if (d) fail_msg("%s: L differs from PIL in %zu of %lld pixels (max %d)", name, d, (long long)ref.count, maxd);
        npy_free(&ref);
        pc_image_free(&im);
        pc_image_free(&gr);
        n++;
    }
    print_message("decode: %d images identical to PIL convert(\"RGB\") and convert(\"L\")\n", n);
    assert_true(n >= 30);
}

static void test_preprocess_matches_torchvision(void **state) {
    (void)state;
    NEED_REFS();
    int n = 0;
    size_t total_diff = 0, total_px = 0;
    double worst = 0;
    for (int i = 0; i < nlines; i++) {
        char kind[16], name[256], p[2048];
        int r, s;
        if (sscanf(lines[i], "%15s %255s %d %d", kind, name, &r, &s) != 4 || strcmp(kind, "pre")) continue;
        image_path(p, sizeof p, name);
        pc_image im;
        if (pc_image_load(p, &im)) fail_msg("%s: %s", name, pc_last_error());
        pc_geometry g;
        assert_int_equal(pc_geometry_compute(im.width, im.height, r, s, &g), PC_OK);
        /* the full resized 8-bit image */
        npy_array rs = load_ref("%s_rs%d.npy", name, r);
        assert_int_equal(g.resized_height, rs.shape[0]);
        assert_int_equal(g.resized_width, rs.shape[1]);
        uint8_t *buf = malloc((size_t)rs.count);
        assert_int_equal(pc_resize_bilinear_u8(buf, g.resized_width, g.resized_height, im.data, im.width, im.height, 3),
                         PC_OK);
        int maxd;
        size_t d = count_diff_u8(buf, rs.data, (size_t)rs.count, &maxd);
        total_diff += d;
        total_px += (size_t)rs.count;
        if (d) print_message("%s R=%d: %zu differing samples (max %d)\n", name, r, d, maxd);
        free(buf);
        npy_free(&rs);
        /* the normalised tensor */
        npy_array t = load_ref("%s_r%d_c%d.npy", name, r, s);
        assert_int_equal(t.count, 3 * s * s);
        float *out = malloc(sizeof(float) * (size_t)t.count);
        pc_geometry g2;
        assert_int_equal(pc_preprocess(out, &im, r, s, &g2), PC_OK);
        assert_memory_equal(&g, &g2, sizeof g);
        double e = max_abs_diff(out, t.data, (size_t)t.count);
        if (e > worst) worst = e;
        if (!(e <= 1e-6)) fail_msg("%s R=%d S=%d: tensor max abs diff %g > 1e-6", name, r, s, e);
        free(out);
        npy_free(&t);
        pc_image_free(&im);
        n++;
    }
    print_message("preprocess: %d (image, R, S) cases; resized 8-bit samples differing from PIL: %zu of %zu; "
                  "tensor max abs diff %g (tolerance 1e-6)\n", n, total_diff, total_px, worst);
    assert_int_equal(total_diff, 0);
    assert_true(n >= 40);
}

/* Masks under both rules (pc_preprocess_mask_ex) against PIL Resize + CenterCrop then `>= 128` / `== 255`
 * (the latter checked by the generator to be the reference code's ToTensor().astype(int)), bit for
 * bit: the generated images ("mask") and every real bottle ground-truth mask ("gtmask"). The legacy
 * pc_preprocess_mask must equal the half rule. The rules must disagree on the bottle masks' rims
 * (else the full-rule check would prove nothing beyond the half one). */
static void test_masks_match_torchvision(void **state) {
    (void)state;
    NEED_REFS();
    int n = 0, n_gt = 0;
    size_t px = 0, rim = 0, full_ones = 0;
    for (int i = 0; i < nlines; i++) {
        char kind[16], name[256], path[1800], p[2048];
        int r, s;
        if (sscanf(lines[i], "%15s %255s %d %d", kind, name, &r, &s) == 4 && !strcmp(kind, "mask")) {
            image_path(p, sizeof p, name);
        } else if (sscanf(lines[i], "%15s %255s %1799s %d %d", kind, name, path, &r, &s) == 5 &&
                   !strcmp(kind, "gtmask")) {
            snprintf(p, sizeof p, "%s", path);
            n_gt++;
        } else {
            continue;
        }
        pc_image im;
        if (pc_image_load_grey(p, &im)) fail_msg("%s: %s", name, pc_last_error());
        npy_array half = load_ref("%s_m%d_c%d.npy", name, r, s), full = load_ref("%s_mf%d_c%d.npy", name, r, s);
        assert_int_equal(half.count, (int64_t)s * s);
        assert_int_equal(full.count, (int64_t)s * s);
        uint8_t *out = malloc((size_t)s * s);
        const npy_array *want[2] = {&full, &half};
        const pc_mask_rule rules[2] = {PC_MASK_RULE_FULL, PC_MASK_RULE_HALF};
        for (int k = 0; k < 2; k++) {
            assert_int_equal(pc_preprocess_mask_ex(out, &im, r, s, rules[k]), PC_OK);
            int maxd;
            size_t d = count_diff_u8(out, want[k]->data, (size_t)want[k]->count, &maxd);
            if (d) fail_msg("%s R=%d S=%d rule %s: mask differs in %zu pixels", name, r, s, pc_mask_rule_name(rules[k]), d);
        }
        assert_int_equal(pc_preprocess_mask(out, &im, r, s), PC_OK);
        int maxd;
        if (count_diff_u8(out, half.data, (size_t)half.count, &maxd)) fail_msg("%s: pc_preprocess_mask is not the half rule", name);
        if (!strcmp(kind, "gtmask")) {
            const uint8_t *h = half.data, *f = full.data;
            for (int64_t k = 0; k < half.count; k++) {
                assert_true(h[k] >= f[k]); /* full is a subset of half */
                rim += h[k] != f[k];
                full_ones += f[k];
            }
            px += (size_t)half.count;
        }
        free(out);
        npy_free(&half);
        npy_free(&full);
        pc_image_free(&im);
        n++;
    }
    print_message("masks: %d cases (%d real bottle masks) identical to PIL Resize + CenterCrop under both rules "
                  "(full: == 255, half: >= 128); on the bottle masks %zu anomalous pixels under full, %zu more "
                  "under half, of %zu\n", n, n_gt, full_ones, rim, px);
    assert_true(n >= 30);
    assert_true(n_gt >= 63);
    assert_true(rim > 0 && full_ones > 0);
    /* argument checks */
    {
        uint8_t px1[4] = {255, 255, 0, 128}, out[4];
        pc_image im = {2, 2, 1, px1};
        assert_int_equal(pc_preprocess_mask_ex(out, &im, 2, 2, (pc_mask_rule)2), PC_ERR_INVALID_ARGUMENT);
        assert_non_null(strstr(pc_last_error(), "mask rule"));
        assert_int_equal(pc_preprocess_mask_ex(NULL, &im, 2, 2, PC_MASK_RULE_FULL), PC_ERR_INVALID_ARGUMENT);
        assert_int_equal(pc_preprocess_mask_ex(out, &im, 2, 2, PC_MASK_RULE_FULL), PC_OK);
        assert_true(out[0] == 1 && out[1] == 1 && out[2] == 0 && out[3] == 0);
        assert_int_equal(pc_preprocess_mask_ex(out, &im, 2, 2, PC_MASK_RULE_HALF), PC_OK);
        assert_true(out[0] == 1 && out[1] == 1 && out[2] == 0 && out[3] == 1);
        assert_string_equal(pc_mask_rule_name(PC_MASK_RULE_FULL), "full");
        assert_string_equal(pc_mask_rule_name(PC_MASK_RULE_HALF), "half");
        assert_string_equal(pc_mask_rule_name((pc_mask_rule)7), "unknown");
        assert_int_equal(pc_mask_rule_from_name("full"), PC_MASK_RULE_FULL);
        assert_int_equal(pc_mask_rule_from_name("half"), PC_MASK_RULE_HALF);
        assert_int_equal(pc_mask_rule_from_name("Full"), -1);
        assert_int_equal(pc_mask_rule_from_name(NULL), -1);
        assert_int_equal(PC_MASK_RULE_DEFAULT, PC_MASK_RULE_FULL);
    }
}

static void test_resize_matches_pil(void **state) {
    (void)state;
    NEED_REFS();
    int n = 0;
    for (int i = 0; i < nlines; i++) {
        char kind[16], name[256];
        int iw, ih, ch, ow, oh;
        if (sscanf(lines[i], "%15s %255s %d %d %d %d %d", kind, name, &iw, &ih, &ch, &ow, &oh) != 7 ||
            strcmp(kind, "resize"))
            continue;
        npy_array in = load_ref("%s_in.npy", name), ref = load_ref("%s_out.npy", name);
        assert_int_equal(ref.count, (int64_t)ow * oh * ch);
        uint8_t *out = malloc((size_t)ref.count);
        assert_int_equal(pc_resize_bilinear_u8(out, ow, oh, in.data, iw, ih, ch), PC_OK);
        int maxd;
        size_t d = count_diff_u8(out, ref.data, (size_t)ref.count, &maxd);
        if (d) fail_msg("%s %dx%dx%d -> %dx%d: %zu samples differ from PIL (max %d)", name, iw, ih, ch, ow, oh, d, maxd);
        free(out);
        npy_free(&in);
        npy_free(&ref);
        n++;
    }
    print_message("resize: %d raw cases identical to PIL Image.resize(BILINEAR)\n", n);
    assert_true(n >= 8);
}

static pc_status status_from_name(const char *s) {
    static const struct { const char *name; pc_status st; } t[] = {
        {"FORMAT", PC_ERR_FORMAT}, {"UNSUPPORTED", PC_ERR_UNSUPPORTED}, {"TOO_LARGE", PC_ERR_TOO_LARGE},
        {"IO", PC_ERR_IO}, {"NO_MEMORY", PC_ERR_NO_MEMORY}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(s, t[i].name)) return t[i].st;
    fail_msg("unknown status name %s in the manifest", s);
    return PC_OK;
}

static void test_bad_files(void **state) {
    (void)state;
    NEED_REFS();
    int n = 0;
    for (int i = 0; i < nlines; i++) {
        char kind[16], rel[1024], sname[32], p[2048];
        if (sscanf(lines[i], "%15s %1023s %31s", kind, rel, sname) != 3 || strcmp(kind, "bad")) continue;
        pc_status want = status_from_name(sname);
        ref_path(p, sizeof p, "images/%s", rel);
        for (int grey = 0; grey < 2; grey++) {
            pc_image im;
            memset(&im, 0xAB, sizeof im);
            pc_status st = grey ? pc_image_load_grey(p, &im) : pc_image_load(p, &im);
            if (st != want)
                fail_msg("%s: status %d (%s), expected %s; message: %s", rel, st, pc_status_str(st), sname, pc_last_error());
            if (!strstr(pc_last_error(), p)) fail_msg("%s: message does not name the file: %s", rel, pc_last_error());
            assert_null(im.data);
            assert_int_equal(im.width, 0);
        }
        if (n < 3 || want == PC_ERR_TOO_LARGE) print_message("  %s -> %s\n", rel, pc_last_error());
        n++;
    }
    print_message("bad files: %d rejected with the documented status and the file's name\n", n);
    assert_true(n >= 20);
}

/* The memory entry point names the buffer in its messages, and accepts what the path one does. */
static void test_memory_and_args(void **state) {
    (void)state;
    pc_image im;
    assert_int_equal(pc_image_load_memory("", 0, "buf.png", &im), PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), "buf.png"));
    assert_int_equal(pc_image_load_memory("\x89PNG", 4, NULL, &im), PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), "<memory>"));
    assert_int_equal(pc_image_load_memory(NULL, 10, "x", &im), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_image_load(NULL, &im), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_image_load("x.png", NULL), PC_ERR_INVALID_ARGUMENT);
    pc_image_free(NULL);
    memset(&im, 0, sizeof im);
    pc_image_free(&im);
    uint8_t px[3] = {1, 2, 3}, o[12];
    assert_int_equal(pc_resize_bilinear_u8(o, 0, 2, px, 1, 1, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_resize_bilinear_u8(o, 2, 2, NULL, 1, 1, 3), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_resize_bilinear_u8(o, 2, 2, px, 1, 1, 5), PC_ERR_INVALID_ARGUMENT);
    /* upscaling a single pixel replicates it */
    assert_int_equal(pc_resize_bilinear_u8(o, 2, 2, px, 1, 1, 3), PC_OK);
    for (int i = 0; i < 12; i++) assert_int_equal(o[i], px[i % 3]);
    pc_image grey = {1, 1, 1, px};
    float t[3 * 4];
    assert_int_equal(pc_preprocess(t, &grey, 2, 2, NULL), PC_ERR_INVALID_ARGUMENT); /* 1 channel */
    assert_int_equal(pc_preprocess(t, NULL, 2, 2, NULL), PC_ERR_INVALID_ARGUMENT);

    if (load_manifest() == 0) {
        char p[2048];
        uint8_t *data;
        size_t size;
        if (image_path(p, sizeof p, "jpeg_prog_240x180") && pc_read_file(p, &data, &size) == PC_OK) {
            pc_image a, b;
            assert_int_equal(pc_image_load_memory(data, size, "mem.jpg", &a), PC_OK);
            assert_int_equal(pc_image_load(p, &b), PC_OK);
            assert_memory_equal(a.data, b.data, (size_t)a.width * a.height * 3);
            /* every truncation of a JPEG and a PNG either fails cleanly or (only past the image data) decodes */
            for (size_t cut = 0; cut < size; cut += 97) {
                pc_status st = pc_image_load_memory(data, cut, "cut.jpg", &im);
                if (st) assert_non_null(strstr(pc_last_error(), "cut.jpg"));
                pc_image_free(&im);
            }
            pc_image_free(&a);
            pc_image_free(&b);
            pc_free(data);
        }
        if (image_path(p, sizeof p, "rgb_il_77x51") && pc_read_file(p, &data, &size) == PC_OK) {
            for (size_t cut = 0; cut < size; cut += 7) {
                pc_status st = pc_image_load_memory(data, cut, "cut.png", &im);
                /* Like PIL we stop reading after the last row: a cut in the final IDAT CRC or the
                 * IEND chunk (the last 16 bytes) may decode; any earlier cut loses pixels and fails. */
                if (cut + 16 <= size) {
                    if (st == PC_OK) fail_msg("PNG cut at %zu of %zu bytes decoded", cut, size);
                    assert_non_null(strstr(pc_last_error(), "cut.png"));
                }
                pc_image_free(&im);
            }
            pc_free(data);
        }
    }
}

/* The fast resize kernels and the window path give the same bytes as the plain reference kernels
 * resizing the whole image, on odd shapes, every channel count, up/down/one-axis/identity. */
static void test_resize_fast_vs_ref(void **state) {
    (void)state;
    static const int cases[][4] = {{17, 9, 5, 31}, {900, 900, 256, 256}, {64, 3, 64, 7}, {3, 64, 7, 64},
                                   {1, 1, 3, 2}, {50, 40, 50, 40}, {333, 97, 101, 250}, {7, 300, 300, 7}};
    uint64_t rnd = 12345;
    int n = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int ch = 1; ch <= 4; ch++) {
            int iw = cases[c][0], ih = cases[c][1], ow = cases[c][2], oh = cases[c][3];
            uint8_t *in = malloc((size_t)iw * ih * ch), *ref = malloc((size_t)ow * oh * ch),
                    *fast = malloc((size_t)ow * oh * ch);
            for (size_t i = 0; i < (size_t)iw * ih * ch; i++) {
                rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
                in[i] = (uint8_t)((i % 7 == 0) ? 255 : (rnd >> 56)); /* noise and saturated samples */
            }
            assert_int_equal(pc_resize_window_u8(ref, ow, oh, 0, 0, ow, oh, in, iw, ih, ch, 1), PC_OK);
            assert_int_equal(pc_resize_window_u8(fast, ow, oh, 0, 0, ow, oh, in, iw, ih, ch, 0), PC_OK);
            assert_memory_equal(ref, fast, (size_t)ow * oh * ch);
            for (int w = 0; w < 3; w++) { /* windows, including a single pixel and the full width */
                int nx = w == 0 ? 1 : w == 1 ? ow : (ow + 1) / 2, ny = w == 0 ? 1 : (oh + 2) / 3;
                int x0 = (ow - nx) / 2, y0 = oh - ny;
                assert_int_equal(pc_resize_window_u8(fast, ow, oh, x0, y0, nx, ny, in, iw, ih, ch, 0), PC_OK);
                for (int y = 0; y < ny; y++)
                    assert_memory_equal(fast + (size_t)y * nx * ch, ref + ((size_t)(y0 + y) * ow + x0) * ch,
                                        (size_t)nx * ch);
            }
            free(in), free(ref), free(fast);
            n++;
        }
    uint8_t px[4] = {0};
    assert_int_equal(pc_resize_window_u8(px, 4, 4, 3, 0, 2, 1, px, 1, 1, 1, 0), PC_ERR_INVALID_ARGUMENT);
    print_message("resize: fast kernels and windows identical to the reference kernels on %d shapes\n", n);
}

/* Randomly damaged PNG and JPEG files (1 to 4 bytes changed) never crash, leak or report success
 * without pixels; run under `make asan-test` this is a small deterministic fuzz test. */
static void test_mutated_files(void **state) {
    (void)state;
    NEED_REFS();
    const char *names[] = {"rgb_il_77x51", "pal_trns_90x70", "grey16_61x50", "jpeg_prog_240x180", "jpeg_grey_123x77",
                           "jpeg_cmyk_64x48"};
    uint64_t rnd = 0x9E3779B97F4A7C15ull;
    int ok = 0, failed = 0;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
        char p[2048];
        uint8_t *data;
        size_t size;
        if (!image_path(p, sizeof p, names[f]) || pc_read_file(p, &data, &size) != PC_OK) fail_msg("%s", names[f]);
        uint8_t *copy = malloc(size);
        for (int iter = 0; iter < 150; iter++) {
            memcpy(copy, data, size);
            int nflip = 1 + iter % 4;
            for (int k = 0; k < nflip; k++) {
                rnd = rnd * 6364136223846793005ull + 1442695040888963407ull;
                copy[(rnd >> 33) % size] ^= (uint8_t)(1u << ((rnd >> 20) & 7));
            }
            pc_image im;
            pc_status st = pc_image_load_memory(copy, size, "fuzz.img", &im);
            if (st == PC_OK) {
                assert_non_null(im.data);
                assert_true(im.width > 0 && im.height > 0);
                ok++;
            } else {
                assert_null(im.data);
                assert_non_null(strstr(pc_last_error(), "fuzz.img"));
                failed++;
            }
            pc_image_free(&im);
        }
        free(copy);
        pc_free(data);
    }
    print_message("mutated files: %d decoded, %d rejected cleanly\n", ok, failed);
}

/* Geometry worked out by hand from torchvision 0.14's code (Python's round() is half-to-even). */
static void test_geometry(void **state) {
    (void)state;
    pc_geometry g;
    assert_int_equal(pc_geometry_compute(900, 900, 256, 224, &g), PC_OK);
    assert_int_equal(g.resized_width, 256);
    assert_int_equal(g.crop_left, 16);
    assert_int_equal(g.crop_top, 16);
    assert_int_equal(pc_geometry_compute(257, 256, 256, 224, &g), PC_OK);
    assert_int_equal(g.resized_width, 257); /* int(256 * 257 / 256) */
    assert_int_equal(g.crop_left, 16);      /* round(16.5) = 16 */
    assert_int_equal(pc_geometry_compute(259, 256, 256, 224, &g), PC_OK);
    assert_int_equal(g.crop_left, 18);      /* round(17.5) = 18 */
    assert_int_equal(pc_geometry_compute(100, 37, 256, 224, &g), PC_OK);
    assert_int_equal(g.resized_width, 691); /* int(256 * 100 / 37) = int(691.89) */
    assert_int_equal(g.resized_height, 256);
    assert_int_equal(g.crop_left, 234);     /* round(233.5) = 234 */
    assert_int_equal(pc_geometry_compute(300, 259, 256, 224, &g), PC_OK);
    assert_int_equal(g.resized_width, 296); /* int(296.52) */
    assert_int_equal(g.crop_left, 36);
    assert_int_equal(pc_geometry_compute(900, 900, 224, 256, &g), PC_OK);
    assert_int_equal(g.crop_left, -16);     /* torchvision pads 16 zero columns on the left */
    assert_int_equal(g.crop_top, -16);
    assert_int_equal(pc_geometry_compute(1000, 900, 224, 250, &g), PC_OK);
    assert_int_equal(g.resized_width, 248);
    assert_int_equal(g.crop_left, -1);      /* (250 - 248) // 2 */
    assert_int_equal(g.crop_top, -13);      /* (250 - 224) // 2 */
    assert_int_equal(pc_geometry_compute(0, 10, 256, 224, &g), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_geometry_compute(10, 10, 0, 224, &g), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_geometry_compute(1, 100000, 65536, 224, &g), PC_ERR_TOO_LARGE);
}

/* `patchcore preprocess` writes the same tensor as torchvision. */
static void test_cli_preprocess(void **state) {
    (void)state;
    NEED_REFS();
    const char *cli = getenv("PC_CLI");
    if (!cli) TEST_SKIP_MSG("PC_CLI not set");
    char p[2048], out[2048], cmd[8192];
    if (!image_path(p, sizeof p, "rgb_257x256")) TEST_SKIP_MSG("rgb_257x256 not generated");
    snprintf(out, sizeof out, "%s/test_image_cli_%d.npy", getenv("PC_BUILD_DIR") ? getenv("PC_BUILD_DIR") : "/tmp",
             (int)getpid());
    snprintf(cmd, sizeof cmd, "'%s' preprocess --resize 320 --crop=320 '%s' -o '%s'", cli, p, out);
    assert_int_equal(system(cmd), 0);
    npy_array got, ref = load_ref("rgb_257x256_r320_c320.npy");
    assert_int_equal(npy_load(out, &got), 0);
    assert_int_equal(got.ndim, 3);
    assert_int_equal(got.shape[0], 3);
    assert_int_equal(got.shape[1], 320);
    assert_true(max_abs_diff(got.data, ref.data, (size_t)ref.count) <= 1e-6);
    npy_free(&got);
    npy_free(&ref);
    unlink(out);
    /* a bad file: exit code 1 and no output */
    snprintf(cmd, sizeof cmd, "'%s' preprocess '%s/images/bad/empty.png' -o '%s' 2>/dev/null", cli,
             getenv("PC_REF_DIR"), out);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    assert_int_not_equal(access(out, F_OK), 0);
    snprintf(cmd, sizeof cmd, "'%s' preprocess --crop 0 x.png -o '%s' 2>/dev/null", cli, out);
    rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry),
        cmocka_unit_test(test_memory_and_args),
        cmocka_unit_test(test_decode_matches_pil),
        cmocka_unit_test(test_resize_matches_pil),
        cmocka_unit_test(test_resize_fast_vs_ref),
        cmocka_unit_test(test_preprocess_matches_torchvision),
        cmocka_unit_test(test_masks_match_torchvision),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_mutated_files),
        cmocka_unit_test(test_cli_preprocess),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    for (int i = 0; i < nlines; i++) free(lines[i]);
    return rc;
}
