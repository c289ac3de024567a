/*
 * test_tiles.c - tiling of high-resolution images (src/tile.c, docs/tiles.md).
 *
 *  - layout: strides, tile positions, scaled sizes and the errors, worked out by hand below;
 *  - a tile's input equals pc_preprocess of the same pixels cut out (Resize/CenterCrop of an S x S
 *    image to S are the identity): bit for bit;
 *  - a tiled prediction against tests/ref/gen_tiles.py (PIL, torchvision, numpy, scipy; real ResNet-18
 *    on bottle images reduced to 300 x 260; sampler none so that both sides have the same bank): the
 *    stitched map (mean and max, with scale 0.5 resized back, and a per-call override to scale 1 and
 *    overlap 0) within 1e-4 of the map's maximum per pixel, the score within 1e-4 relative; the model
 *    saved and loaded predicts the same map bit for bit, as container version 3;
 *  - robustness: an unreadable image, a truncated one (readable header) and one smaller than the
 *    tile among the training images are each reported once and the fit goes on; the errors of
 *    settings that cannot go together.
 */
#include "testutil.h"
#include "tile.h"
#include "modelfile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_layout_by_hand(void **state) {
    (void)state;
    /* stride = max(1, floor(S (1 - F) + 0.5)) */
    assert_int_equal(pc_tile_stride(64, 0.25), 48);
    assert_int_equal(pc_tile_stride(224, 0.25), 168);
    assert_int_equal(pc_tile_stride(320, 0.25), 240);
    assert_int_equal(pc_tile_stride(16, 0.9), 2);     /* 1.6 + 0.5 -> 2 */
    assert_int_equal(pc_tile_stride(100, 0.125), 88); /* 87.5 + 0.5 -> 88: halves up */
    assert_int_equal(pc_tile_stride(64, 0.0), 64);
    /* positions: 0, stride, ... while a tile fits, then one flush with the far edge */
    const struct {
        int32_t len, tile, stride, n, pos[8];
    } C[] = {
        {900, 224, 168, 6, {0, 168, 336, 504, 672, 676}},
        {900, 320, 240, 4, {0, 240, 480, 580}},
        {224, 224, 168, 1, {0}},          /* L == S: one tile */
        {225, 224, 168, 2, {0, 1}},       /* one pixel more: a second, flush tile */
        {150, 64, 48, 3, {0, 48, 86}},
        {160, 64, 48, 3, {0, 48, 96}},    /* 96 + 64 = 160: already flush, no duplicate */
        {300, 64, 64, 5, {0, 64, 128, 192, 236}},
        {64, 16, 2, 25, {0, 2, 4, 6, 8, 10, 12, 14}},
    };
    for (size_t c = 0; c < sizeof C / sizeof C[0]; c++) {
        assert_int_equal(pc_tile_count(C[c].len, C[c].tile, C[c].stride), C[c].n);
        for (int32_t i = 0; i < C[c].n && i < 8; i++)
            assert_int_equal(pc_tile_pos(i, C[c].len, C[c].tile, C[c].stride), C[c].pos[i]);
        assert_int_equal(pc_tile_pos(C[c].n - 1, C[c].len, C[c].tile, C[c].stride), C[c].len - C[c].tile);
    }
    assert_int_equal(pc_tile_count(63, 64, 48), 0);
    /* scaled size: floor(L * scale + 0.5) */
    assert_int_equal(pc_tile_scaled_size(300, 0.5), 150);
    assert_int_equal(pc_tile_scaled_size(301, 0.5), 151); /* 150.5 -> 151 */
    assert_int_equal(pc_tile_scaled_size(299, 0.5), 150); /* 149.5 -> 150 */
    assert_int_equal(pc_tile_scaled_size(900, 1.0), 900);
    assert_int_equal(pc_tile_scaled_size(1000, 0.256), 256);
    assert_int_equal(pc_tile_scaled_size(100, 2.5), 250);

    pc_tiling t = {.tile = 64, .overlap = 0.25, .scale = 0.5, .stitch = PC_STITCH_MEAN};
    pc_tile_layout L;
    assert_int_equal(pc_tile_layout_compute(&t, 300, 260, "x.png", &L), PC_OK);
    assert_int_equal(L.sw, 150), assert_int_equal(L.sh, 130);
    assert_int_equal(L.stride, 48), assert_int_equal(L.nx, 3), assert_int_equal(L.ny, 3);
    /* too small: at scale 1 and once scaled, naming both sizes and what to do */
    t = (pc_tiling){.tile = 128, .overlap = 0.25, .scale = 1.0};
    assert_int_equal(pc_tile_layout_compute(&t, 200, 100, "small.png", &L), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "small.png"));
    assert_non_null(strstr(pc_last_error(), "200x100"));
    assert_non_null(strstr(pc_last_error(), "128x128"));
    assert_non_null(strstr(pc_last_error(), "use a smaller --tile or a larger --tile-scale"));
    t = (pc_tiling){.tile = 224, .overlap = 0.25, .scale = 0.2};
    assert_int_equal(pc_tile_layout_compute(&t, 900, 900, "b.png", &L), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "180x180"));
    t = (pc_tiling){.tile = 224, .overlap = 0.25, .scale = 1.0};
    assert_int_equal(pc_tile_layout_compute(&t, 224, 224, NULL, &L), PC_OK);
    assert_int_equal(L.nx * L.ny, 1);
    /* ranges */
    const pc_tiling bad[] = {{15, 0.25, 1, PC_STITCH_MEAN},  {4097, 0.25, 1, PC_STITCH_MEAN},
                             {64, -0.01, 1, PC_STITCH_MEAN}, {64, 0.91, 1, PC_STITCH_MEAN},
                             {64, 0.25, 0, PC_STITCH_MEAN},  {64, 0.25, 16.01, PC_STITCH_MEAN},
                             {64, 0.25, NAN, PC_STITCH_MEAN}, {64, 0.25, 1, (pc_stitch)2}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(pc_tiling_check(&bad[i], "fit"), PC_ERR_INVALID_ARGUMENT);
    const pc_tiling good[] = {{16, 0, 16, PC_STITCH_MAX}, {4096, 0.9, 1e-3, PC_STITCH_MEAN}};
    for (size_t i = 0; i < 2; i++) assert_int_equal(pc_tiling_check(&good[i], "fit"), PC_OK);
}

static void test_tile_input(void **state) {
    (void)state;
    const int32_t W = 97, H = 61, S = 32, x0 = 40, y0 = 17;
    uint8_t *px = malloc((size_t)W * H * 3), *sub = malloc((size_t)S * S * 3);
    for (size_t i = 0; i < (size_t)W * H * 3; i++) px[i] = (uint8_t)((i * 2654435761u) >> 13);
    for (int32_t y = 0; y < S; y++) memcpy(sub + (size_t)y * S * 3, px + ((size_t)(y0 + y) * W + x0) * 3, (size_t)S * 3);
    float *a = malloc(sizeof(float) * 3 * S * S), *b = malloc(sizeof(float) * 3 * S * S);
    pc_tile_input(a, px, W, x0, y0, S);
    pc_image im = {.data = sub, .width = S, .height = S, .channels = 3};
    assert_int_equal(pc_preprocess(b, &im, S, S, NULL), PC_OK);
    assert_memory_equal(a, b, sizeof(float) * 3 * S * S);
    free(px), free(sub), free(a), free(b);
}

/* ---- against tests/ref/gen_tiles.py ----------------------------------------------------------- */

typedef struct errs {
    int n;
    char paths[8][1024], msgs[8][1024];
} errs;

static void on_err(void *user, const char *path, pc_status st, const char *msg) {
    (void)st;
    errs *e = user;
    if (e->n < 8) {
        snprintf(e->paths[e->n], sizeof e->paths[0], "%s", path);
        snprintf(e->msgs[e->n], sizeof e->msgs[0], "%s", msg);
    }
    e->n++;
}

static int have_refs(char *w, size_t wn) {
    shared_path(w, wn, "weights/resnet18_in1k_to_layer3.pth");
    FILE *f = fopen(w, "rb");
    if (!f) return 0;
    fclose(f);
    return ref_exists("tiles/a_mean_map.npy");
}

static pc_fit_options tiled_options(const char *weights) {
    pc_fit_options o;
    pc_fit_options_init(&o);
    o.weights = weights;
    o.sampler = PC_SAMPLER_NONE;
    o.tiling = (pc_tiling){.tile = 64, .overlap = 0.25, .scale = 0.5, .stitch = PC_STITCH_MEAN};
    return o;
}

static void compare_case(pc_model *m, const pc_image *img, const pc_tiling *t, const char *name) {
    char p[1024];
    npy_array ref = {0}, score = {0};
    assert_int_equal(npy_load(ref_path(p, sizeof p, "tiles/%s_map.npy", name), &ref), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "tiles/%s_score.npy", name), &score), 0);
    assert_int_equal(ref.shape[0], img->height), assert_int_equal(ref.shape[1], img->width);
    pc_predict_options po;
    pc_predict_options_init(&po);
    po.tiling = t;
    int32_t mw, mh;
    assert_int_equal(pc_model_map_size(m, img->width, img->height, &po, &mw, &mh), PC_OK);
    assert_int_equal(mw, img->width), assert_int_equal(mh, img->height);
    float *map = malloc(sizeof(float) * (size_t)mw * mh);
    pc_prediction pr;
    pc_geometry g;
    assert_int_equal(pc_model_predict_ex(m, img, &po, &pr, map, &g), PC_OK);
    const float *r = ref.data, rs = ((float *)score.data)[0];
    double mx = 0;
    for (int64_t i = 0; i < ref.count; i++) mx = fmax(mx, fabs(r[i]));
    const double err = max_abs_diff(map, r, (size_t)ref.count) / mx;
    const double serr = fabs((double)pr.score - rs) / fabs(rs);
    print_message("tiles %s: map max |diff| / max %.3g, score %.6g vs %.6g (rel %.3g)\n", name, err, (double)pr.score,
                  (double)rs, serr);
    assert_true(err <= 1e-4);  /* per pixel, relative to the map's maximum */
    assert_true(serr <= 1e-4); /* relative */
    /* the score is the returned map's maximum, exactly */
    float m2 = map[0];
    for (size_t i = 1; i < (size_t)mw * mh; i++) m2 = fmaxf(m2, map[i]);
    assert_true(m2 == pr.score);
    /* geometry: an identity onto the original image */
    assert_int_equal(g.orig_width, img->width), assert_int_equal(g.orig_height, img->height);
    assert_int_equal(g.resized_width, img->width), assert_int_equal(g.resized_height, img->height);
    assert_int_equal(g.crop_left, 0), assert_int_equal(g.crop_top, 0), assert_int_equal(g.crop_size, 64);
    assert_int_equal(g.map_width, img->width), assert_int_equal(g.map_height, img->height);
    free(map);
    npy_free(&ref), npy_free(&score);
}

static void test_against_oracle(void **state) {
    (void)state;
    char w[1024], p0[1024], p1[1024], pt[1024], tmp[1100];
    if (!have_refs(w, sizeof w)) TEST_SKIP_MSG("tiles/ refs or the ResNet-18 weights absent");
    const char *paths[2] = {ref_path(p0, sizeof p0, "tiles/train0.png"), ref_path(p1, sizeof p1, "tiles/train1.png")};
    pc_fit_options o = tiled_options(w);
    pc_model *m = NULL;
    assert_int_equal(pc_model_fit(&o, paths, 2, &m), PC_OK);
    pc_model_info in;
    assert_int_equal(pc_model_get_info(m, &in), PC_OK);
    assert_int_equal(in.tiling.tile, 64), assert_int_equal(in.crop, 64), assert_int_equal(in.resize, 64);
    assert_int_equal(in.n_train_images, 2);
    assert_int_equal(in.grid_h, 8), assert_int_equal(in.grid_w, 8);
    assert_int_equal(in.n_patches_total, 2 * 9 * 64); /* 2 images x 3 x 3 tiles x 8 x 8 patches */
    assert_int_equal(in.bank_size, 2 * 9 * 64);
    npy_array rows = {0};
    assert_int_equal(npy_load(ref_path(pt, sizeof pt, "tiles/bank_rows.npy"), &rows), 0);
    assert_int_equal(((int64_t *)rows.data)[0], in.bank_size);
    npy_free(&rows);

    pc_image img = {0};
    assert_int_equal(pc_image_load(ref_path(pt, sizeof pt, "tiles/test.png"), &img), PC_OK);
    compare_case(m, &img, NULL, "a_mean");
    pc_tiling t = in.tiling;
    t.stitch = PC_STITCH_MAX;
    compare_case(m, &img, &t, "a_max");
    t = (pc_tiling){.tile = 64, .overlap = 0.0, .scale = 1.0, .stitch = PC_STITCH_MAX};
    compare_case(m, &img, &t, "b_max");

    /* pc_model_predict (no options) is the model's tiling; saved and loaded: the same, version 3 */
    float *a = malloc(sizeof(float) * 300 * 260), *b = malloc(sizeof(float) * 300 * 260);
    pc_prediction pa, pb;
    assert_int_equal(pc_model_predict(m, &img, &pa, a, NULL), PC_OK);
    snprintf(tmp, sizeof tmp, "%s/tiles_test.model", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_int_equal(pc_model_save(m, tmp), PC_OK);
    pc_model *l = NULL;
    assert_int_equal(pc_model_load(tmp, &l), PC_OK);
    pc_modelfile *mf = NULL;
    assert_int_equal(pc_modelfile_open(tmp, &mf), PC_OK);
    assert_int_equal(pc_modelfile_version(mf), 3);
    assert_string_equal(pc_modelfile_meta(mf, "tile"), "64");
    assert_string_equal(pc_modelfile_meta(mf, "stitch"), "mean");
    pc_modelfile_close(mf);
    pc_model_info li;
    pc_model_get_info(l, &li);
    assert_int_equal(li.tiling.tile, 64);
    assert_true(li.tiling.overlap == 0.25 && li.tiling.scale == 0.5 && li.tiling.stitch == PC_STITCH_MEAN);
    assert_int_equal(pc_model_predict(l, &img, &pb, b, NULL), PC_OK);
    assert_true(pa.score == pb.score);
    assert_memory_equal(a, b, sizeof(float) * 300 * 260);
    /* the same image twice in a row: the warm context gives the same map */
    assert_int_equal(pc_model_predict(l, &img, &pb, b, NULL), PC_OK);
    assert_memory_equal(a, b, sizeof(float) * 300 * 260);
    /* the keys are validated on load */
    char bad[1200];
    snprintf(bad, sizeof bad, "%s.bad", tmp);
    const char *kv[][2] = {{"stitch", "median"}, {"tile_overlap", "2"}, {"tile_scale", "0"}, {"tile", "8"},
                           {"tile", "96"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++) {
        tu_rewrite_meta_key(tmp, bad, kv[i][0], kv[i][1]);
        pc_model *x = NULL;
        assert_int_equal(pc_model_load(bad, &x), PC_ERR_FORMAT);
        assert_null(x);
    }
    remove(bad);
    remove(tmp);

    /* what cannot go together */
    pc_predict_options po;
    pc_predict_options_init(&po);
    t = in.tiling;
    t.tile = 96;
    po.tiling = &t;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pa, a, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "64-pixel tiles"));
    t = in.tiling;
    t.overlap = 0.95;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pa, a, NULL), PC_ERR_INVALID_ARGUMENT);
    pc_predict_options_init(&po);
    po.roi = &img;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pa, a, NULL), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_last_error(), "region of interest with tiling"));
    /* an image smaller than a tile at predict */
    pc_image small = {.data = img.data, .width = 100, .height = 100, .channels = 3};
    assert_int_equal(pc_model_predict(m, &small, &pa, a, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "smaller than a 64x64 tile"));
    free(a), free(b);
    pc_image_free(&img);
    pc_model_free(l);
    pc_model_free(m);
}

static void test_fit_robustness(void **state) {
    (void)state;
    char w[1024], p0[1024], p1[1024], dir[1024], bad[1100], trunc[1100], small[1100];
    if (!have_refs(w, sizeof w)) TEST_SKIP_MSG("tiles/ refs or the ResNet-18 weights absent");
    snprintf(dir, sizeof dir, "%s/pc_tiles_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(bad, sizeof bad, "%s/garbage.png", dir);
    snprintf(trunc, sizeof trunc, "%s/truncated.png", dir);
    snprintf(small, sizeof small, "%s/small.png", dir);
    FILE *f = fopen(bad, "wb");
    fputs("not an image at all", f);
    fclose(f);
    /* a PNG cut after its header: the probe reads 300x260, the decode fails (once, not per tile) */
    ref_path(p0, sizeof p0, "tiles/train0.png");
    f = fopen(p0, "rb");
    unsigned char buf[200];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(trunc, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
    uint8_t px[40 * 30 * 3] = {0};
    pc_image sm = {.data = px, .width = 40, .height = 30, .channels = 3};
    assert_int_equal(pc_image_write_png(small, &sm), PC_OK);
    ref_path(p1, sizeof p1, "tiles/train1.png");
    const char *paths[5] = {p0, bad, trunc, small, p1};
    pc_fit_options o = tiled_options(w);
    o.batch_size = 4; /* the truncated image's 9 tiles span batches */
    errs e = {0};
    o.on_image_error = on_err;
    o.on_image_error_user = &e;
    pc_model *m = NULL;
    assert_int_equal(pc_model_fit(&o, paths, 5, &m), PC_OK);
    assert_int_equal(e.n, 3);
    int seen_bad = 0, seen_trunc = 0, seen_small = 0;
    for (int i = 0; i < 3; i++) {
        seen_bad += !strcmp(e.paths[i], bad);
        seen_trunc += !strcmp(e.paths[i], trunc);
        if (!strcmp(e.paths[i], small)) {
            seen_small++;
            assert_non_null(strstr(e.msgs[i], "40x30"));
            assert_non_null(strstr(e.msgs[i], "smaller than a 64x64 tile"));
        }
    }
    assert_int_equal(seen_bad + seen_trunc + seen_small, 3);
    pc_model_info in;
    pc_model_get_info(m, &in);
    assert_int_equal(in.n_train_images, 2);
    assert_int_equal(in.n_patches_total, 2 * 9 * 64);
    pc_model_free(m);

    /* from decoded images too: the small one is reported, the other used */
    pc_image good = {0};
    assert_int_equal(pc_image_load(p1, &good), PC_OK);
    pc_image imgs[2] = {sm, good};
    e.n = 0;
    assert_int_equal(pc_model_fit_images(&o, imgs, 2, &m), PC_OK);
    assert_int_equal(e.n, 1);
    assert_string_equal(e.paths[0], "image #0");
    pc_model_free(m);
    /* none usable */
    e.n = 0;
    assert_int_equal(pc_model_fit_images(&o, imgs, 1, &m), PC_ERR_INVALID_ARGUMENT);
    assert_null(m);

    /* settings that do not go together */
    pc_fit_options r = o;
    r.reweight_b = 3;
    assert_int_equal(pc_model_fit_images(&r, &good, 1, &m), PC_ERR_UNSUPPORTED);
    r = o;
    r.roi = &good;
    assert_int_equal(pc_model_fit_images(&r, &good, 1, &m), PC_ERR_UNSUPPORTED);
    r = o;
    r.tiling.overlap = 0.95;
    assert_int_equal(pc_model_fit_images(&r, &good, 1, &m), PC_ERR_INVALID_ARGUMENT);
    pc_fit_options ens[2] = {o, o};
    ens[1].tiling.tile = 0;
    const char *two[1] = {p1};
    assert_int_equal(pc_model_fit_ensemble(ens, 2, two, 1, &m), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_last_error(), "tiling is not available in an ensemble"));

    /* a model fitted without tiling cannot be predicted tiled */
    pc_fit_options u;
    pc_fit_options_init(&u);
    u.weights = w;
    u.resize = u.crop = 64;
    u.sampler = PC_SAMPLER_NONE;
    assert_int_equal(pc_model_fit_images(&u, &good, 1, &m), PC_OK);
    pc_tiling t = {.tile = 64, .overlap = 0.25, .scale = 1, .stitch = PC_STITCH_MEAN};
    pc_predict_options po;
    pc_predict_options_init(&po);
    po.tiling = &t;
    pc_prediction pr;
    int32_t mw, mh;
    assert_int_equal(pc_model_map_size(m, 300, 260, &po, &mw, &mh), PC_ERR_UNSUPPORTED);
    assert_int_equal(pc_model_map_size(m, 300, 260, NULL, &mw, &mh), PC_OK);
    assert_int_equal(mw, 64), assert_int_equal(mh, 64);
    float map[64 * 64];
    assert_int_equal(pc_model_predict_ex(m, &good, &po, &pr, map, NULL), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_last_error(), "fitted without tiling"));
    pc_model_free(m);
    pc_image_free(&good);
    remove(bad), remove(trunc), remove(small), rmdir(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_by_hand),
        cmocka_unit_test(test_tile_input),
        cmocka_unit_test(test_against_oracle),
        cmocka_unit_test(test_fit_robustness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
