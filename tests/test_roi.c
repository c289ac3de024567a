/*
 * test_roi.c - regions of interest (docs/roi.md) against tests/ref/gen_roi.py, which computes every
 * rule with PIL/numpy and the repo's independent PyTorch PatchCore (tests/ref/patchcore_torch.py):
 * the real ResNet-18 on 2 bottle training images, sampler none (so the bank is determined), an ROI
 * of another size than the images (450x450 for 900x900: the resize rule is exercised).
 *  - exact: the crop's inspect masks (PIL bilinear is reproduced bit for bit), the inside cells, the
 *    bank's size (2 x the inside cells) and which rows it holds, the map's zeros outside the mask;
 *  - 1e-4 relative (max |diff| / max |ref|, the project's tolerance against torch): the bank rows,
 *    the patch scores, the image scores and the maps, for the model's ROI, a per-call ROI and
 *    ignore_roi;
 *  - Eq. 7 reweighting (b = 3) under the ROI: the argmax among inside patches, 1e-4 relative to the
 *    reference's float64 Eq. 7 (which checks that no choice in it is a near-tie);
 *  - regions (pc_model_regions) at a threshold far from every map value: the areas of scipy's
 *    8-connected components of the reference map (zero outside the ROI), exactly;
 *  - approximate greedy and random fits with the ROI: the bank's size is ratio x the inside patches
 *    and every selected row is an inside patch; a fit streamed under a memory budget selects the
 *    same rows and makes the same bank (exact);
 *  - save/load keeps the ROI (info, predictions bit for bit), the file is container version 3 (1
 *    without an ROI) and a newer version is refused (the check an older reader applies to 3); a
 *    file whose 'roi' key disagrees with its tensor is refused (PC_ERR_FORMAT);
 *  - threads: 4 threads predicting at once on one model, two with the model's ROI and two with a
 *    per-call one, each 3 times, give the serial results bit for bit (the ROI state is per context);
 *  - errors: an all-black mask, a colour mask, an ROI with no inside patch, tiling with an ROI, an
 *    ensemble with an ROI.
 */
#include "model_internal.h"
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-4
#define S 224
#define HW 784 /* 28 x 28 */

typedef struct fixture {
    char *paths[4]; /* 2 training, 2 test */
    char weights[1024];
    pc_image roi, call;
    pc_model *none; /* fitted with the ROI, sampler none (shared by the tests: fits are the slow part) */
} fixture;

static int setup(void **state) {
    static fixture fx;
    char p[2048], line[2048];
    memset(&fx, 0, sizeof fx);
    *state = &fx;
    if (!ref_exists("roi/inputs.txt")) return 0;
    if (!shared_path(fx.weights, sizeof fx.weights, "weights/resnet18_in1k_to_layer3.pth")) return 0;
    FILE *f = fopen(ref_path(p, sizeof p, "roi/inputs.txt"), "r");
    for (int n = 0; f && n < 4 && fgets(line, sizeof line, f);) {
        line[strcspn(line, "\n")] = 0;
        if (*line) fx.paths[n++] = strdup(line);
    }
    if (f) fclose(f);
    if (pc_image_load_grey(ref_path(p, sizeof p, "roi/roi.png"), &fx.roi) ||
        pc_image_load_grey(ref_path(p, sizeof p, "roi/roi_call.png"), &fx.call))
        return -1;
    return 0;
}

static int teardown(void **state) {
    fixture *fx = *state;
    for (int i = 0; i < 4; i++) free(fx->paths[i]);
    pc_image_free(&fx->roi);
    pc_image_free(&fx->call);
    pc_model_free(fx->none);
    return 0;
}

#define NEED_REFS(fx)                                                                                          \
    do {                                                                                                       \
        if (!(fx)->paths[3] || !(fx)->roi.data) TEST_SKIP_MSG("references roi/ not generated (make refs)");    \
    } while (0)

static void fit_opts(pc_fit_options *o, const fixture *fx, pc_sampler sampler, const pc_image *roi) {
    pc_fit_options_init(o);
    o->weights = fx->weights;
    o->sampler = sampler;
    o->roi = roi;
}

static pc_model *fit_n(const fixture *fx, pc_sampler sampler, const pc_image *roi, size_t n_images) {
    pc_fit_options o;
    fit_opts(&o, fx, sampler, roi);
    pc_model *m = NULL;
    pc_status st = pc_model_fit(&o, (const char *const *)fx->paths, n_images, &m);
    if (st) fail_msg("fit: %s", pc_last_error());
    return m;
}

static pc_model *fit(const fixture *fx, pc_sampler sampler, const pc_image *roi) {
    return fit_n(fx, sampler, roi, 2);
}

static pc_model *shared_model(fixture *fx) {
    if (!fx->none) fx->none = fit(fx, PC_SAMPLER_NONE, &fx->roi);
    return fx->none;
}

static void load_ref(npy_array *a, const char *name) {
    char p[2048];
    if (npy_load(ref_path(p, sizeof p, "roi/%s", name), a) != 0) fail_msg("roi/%s missing (make refs)", name);
}

static void check_rel(const char *what, const float *got, const float *ref, size_t n) {
    double e = max_rel_err(got, ref, n);
    print_message("  %-36s rel err %.3g\n", what, e);
    if (!(e <= TOL)) fail_msg("%s: relative error %.3g > %g", what, e, TOL);
}

/* One ROI setting (X = model, call, none) against the reference on both test images. */
static void check_setting(pc_model *m, const fixture *fx, const char *x, const pc_predict_options *opt) {
    npy_array ins, patch, scores, maps;
    char name[64];
    snprintf(name, sizeof name, "inspect_%s.npy", x), load_ref(&ins, name);
    snprintf(name, sizeof name, "patch_%s.npy", x), load_ref(&patch, name);
    snprintf(name, sizeof name, "scores_%s.npy", x), load_ref(&scores, name);
    snprintf(name, sizeof name, "maps_%s.npy", x), load_ref(&maps, name);
    assert_int_equal(ins.count, S * S);
    float ps[HW], *map = malloc(sizeof(float) * S * S);
    uint8_t inspect[S * S];
    for (int t = 0; t < 2; t++) {
        pc_image img = {0};
        assert_int_equal(pc_image_load(fx->paths[2 + t], &img), PC_OK);
        pc_status st = pc_model_roi_outputs(m, &img, opt, ps, inspect);
        if (st) fail_msg("roi outputs: %s", pc_last_error());
        assert_memory_equal(inspect, ins.data, S * S); /* exact: PIL's bilinear is reproduced bit for bit */
        const float *rp = (const float *)patch.data + (size_t)t * HW;
        for (int i = 0; i < HW; i++)
            if (rp[i] == 0.0f) assert_true(ps[i] == 0.0f); /* outside patches: exactly 0 (and the same set) */
        char what[96];
        snprintf(what, sizeof what, "%s: patch scores, image %d", x, t);
        check_rel(what, ps, rp, HW);
        pc_prediction pr;
        pc_geometry g;
        st = opt ? pc_model_predict_ex(m, &img, opt, &pr, map, &g) : pc_model_predict(m, &img, &pr, map, &g);
        if (st) fail_msg("predict: %s", pc_last_error());
        const float rs = ((const float *)scores.data)[t];
        print_message("  %s: image score %.6g, reference %.6g\n", x, pr.score, rs);
        assert_true(fabs(pr.score - rs) <= TOL * rs);
        snprintf(what, sizeof what, "%s: map, image %d", x, t);
        check_rel(what, map, (const float *)maps.data + (size_t)t * S * S, S * S);
        for (int i = 0; i < S * S; i++)
            if (!inspect[i]) assert_true(map[i] == 0.0f);
        pc_image_free(&img);
    }
    free(map);
    npy_free(&ins), npy_free(&patch), npy_free(&scores), npy_free(&maps);
}

static void test_against_oracle(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    npy_array inside, bank;
    load_ref(&inside, "inside_train.npy");
    load_ref(&bank, "bank.npy");
    const int64_t n_in = inside.count;
    pc_model *m = shared_model(fx);
    pc_model_info info;
    assert_int_equal(pc_model_get_info(m, &info), PC_OK);
    print_message("  inside cells %lld of %d; bank %lld\n", (long long)n_in, HW, (long long)info.bank_size);
    assert_int_equal(info.bank_size, 2 * n_in); /* exactly the inside patches of both images */
    assert_int_equal(info.n_patches_total, 2 * n_in);
    assert_int_equal(info.roi_width, 450);
    assert_int_equal(info.roi_height, 450);
    int64_t n;
    const int64_t *idx = pc_model_coreset_indices(m, &n);
    assert_int_equal(n, 2 * n_in);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(idx[i], (i / n_in) * HW + ((const int64_t *)inside.data)[i % n_in]);
    int32_t dim;
    const float *b = pc_model_bank(m, &n, &dim);
    assert_int_equal(n * dim, bank.count);
    check_rel("bank rows (inside patches)", b, bank.data, (size_t)bank.count);

    check_setting(m, fx, "model", NULL);
    {
        npy_array rt, ra;
        load_ref(&rt, "regions_t.npy");
        load_ref(&ra, "regions_areas.npy");
        pc_image img = {0};
        assert_int_equal(pc_image_load(fx->paths[3], &img), PC_OK);
        float *map = malloc(sizeof(float) * S * S);
        pc_prediction pr;
        pc_geometry g;
        assert_int_equal(pc_model_predict(m, &img, &pr, map, &g), PC_OK);
        pc_region reg[64];
        int32_t nr = 0;
        assert_int_equal(pc_model_regions(m, map, &g, ((const double *)rt.data)[0], reg, 64, &nr), PC_OK);
        print_message("  regions at %.6g: %d (reference %lld)\n", ((const double *)rt.data)[0], (int)nr,
                      (long long)ra.count);
        assert_int_equal(nr, ra.count);
        int64_t areas[64];
        for (int32_t i = 0; i < nr; i++) areas[i] = reg[i].area;
        for (int32_t i = 0; i < nr; i++) /* largest first, as the reference lists them */
            for (int32_t j = i + 1; j < nr; j++)
                if (areas[j] > areas[i]) {
                    int64_t t = areas[i];
                    areas[i] = areas[j], areas[j] = t;
                }
        for (int32_t i = 0; i < nr; i++) assert_int_equal(areas[i], ((const int64_t *)ra.data)[i]);
        free(map);
        pc_image_free(&img);
        npy_free(&rt), npy_free(&ra);
    }
    pc_predict_options po;
    pc_predict_options_init(&po);
    check_setting(m, fx, "model", &po); /* defaults: the model's ROI */
    po.roi = &fx->call;
    check_setting(m, fx, "call", &po);
    pc_predict_options_init(&po);
    po.ignore_roi = 1;
    check_setting(m, fx, "none", &po);
    po.roi = &fx->call; /* ignore_roi wins over a per-call ROI */
    check_setting(m, fx, "none", &po);
    npy_free(&inside), npy_free(&bank);
}

static void test_samplers(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    npy_array inside;
    load_ref(&inside, "inside_train.npy");
    const int64_t n_in = inside.count;
    uint8_t is_in[HW] = {0};
    for (int64_t i = 0; i < n_in; i++) is_in[((const int64_t *)inside.data)[i]] = 1;
    const pc_sampler samplers[2] = {PC_SAMPLER_APPROX_GREEDY, PC_SAMPLER_RANDOM};
    for (int s = 0; s < 2; s++) {
        pc_model *m = fit(fx, samplers[s], &fx->roi);
        pc_model_info info;
        pc_model_get_info(m, &info);
        /* ratio 0.1 of the inside patches: floor(0.1 x 940) = 94 */
        assert_int_equal(info.n_patches_total, 2 * n_in);
        assert_int_equal(info.bank_size, (int64_t)floor(0.1 * (double)(2 * n_in)));
        int64_t n;
        const int64_t *idx = pc_model_coreset_indices(m, &n);
        assert_int_equal(n, info.bank_size);
        for (int64_t i = 0; i < n; i++) {
            assert_true(idx[i] >= 0 && idx[i] < 2 * HW);
            assert_true(is_in[idx[i] % HW]);
            for (int64_t j = 0; j < i; j++) assert_true(idx[j] != idx[i]);
        }
        print_message("  sampler %d: bank %lld, every row inside\n", s, (long long)n);
        if (samplers[s] == PC_SAMPLER_APPROX_GREEDY) { /* streamed to a temporary file: the same bank */
            pc_fit_options o;
            fit_opts(&o, fx, samplers[s], &fx->roi);
            o.max_memory = (int64_t)4 << 30;
            pc_model *ms = NULL;
            assert_int_equal(pc_model_fit(&o, (const char *const *)fx->paths, 2, &ms), PC_OK);
            int64_t n2;
            const int64_t *idx2 = pc_model_coreset_indices(ms, &n2);
            assert_int_equal(n2, n);
            assert_memory_equal(idx2, idx, (size_t)n * sizeof *idx);
            int32_t d1, d2;
            const float *b1 = pc_model_bank(m, &n, &d1), *b2 = pc_model_bank(ms, &n2, &d2);
            assert_memory_equal(b1, b2, (size_t)n * (size_t)d1 * sizeof(float));
            print_message("  streamed under a memory budget: the same %lld rows and bank\n", (long long)n);
            pc_model_free(ms);
        }
        pc_model_free(m);
    }
    npy_free(&inside);
}

static void test_eq7(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    npy_array e;
    load_ref(&e, "eq7.npy");
    pc_fit_options o;
    fit_opts(&o, fx, PC_SAMPLER_NONE, &fx->roi);
    o.reweight_b = 3;
    pc_model *m = NULL;
    assert_int_equal(pc_model_fit(&o, (const char *const *)fx->paths, 2, &m), PC_OK);
    pc_image img = {0};
    assert_int_equal(pc_image_load(fx->paths[3], &img), PC_OK);
    pc_prediction pr;
    assert_int_equal(pc_model_predict(m, &img, &pr, NULL, NULL), PC_OK);
    const double ref = ((const double *)e.data)[0];
    print_message("  Eq. 7 under the ROI: %.6g, reference %.6g (s* %.6g)\n", pr.score, ref, ((const double *)e.data)[1]);
    assert_true(fabs(pr.score - ref) <= TOL * ref);
    pc_image_free(&img);
    pc_model_free(m);
    npy_free(&e);
}

typedef struct th_arg {
    pc_model *m;
    const pc_image *img;
    const pc_predict_options *po;
    float score[3];
    pc_status st;
} th_arg;

static void *th_run(void *p) {
    th_arg *a = p;
    for (int r = 0; r < 3 && !a->st; r++) {
        pc_prediction pr;
        a->st = pc_model_predict_ex(a->m, a->img, a->po, &pr, NULL, NULL);
        a->score[r] = pr.score;
    }
    return NULL;
}

static void test_threads(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    pc_model *m = shared_model(fx);
    pc_image img = {0};
    assert_int_equal(pc_image_load(fx->paths[3], &img), PC_OK);
    pc_predict_options own, call;
    pc_predict_options_init(&own);
    pc_predict_options_init(&call);
    call.roi = &fx->call;
    pc_prediction p_own, p_call;
    assert_int_equal(pc_model_predict_ex(m, &img, &own, &p_own, NULL, NULL), PC_OK);
    assert_int_equal(pc_model_predict_ex(m, &img, &call, &p_call, NULL, NULL), PC_OK);
    assert_true(p_own.score != p_call.score);
    pthread_t t[4];
    th_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (th_arg){.m = m, .img = &img, .po = i % 2 ? &call : &own};
        assert_int_equal(pthread_create(&t[i], NULL, th_run, &a[i]), 0);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(a[i].st, PC_OK);
        for (int r = 0; r < 3; r++) assert_true(a[i].score[r] == (i % 2 ? p_call.score : p_own.score));
    }
    print_message("  4 threads x 3 predictions (model's ROI and a per-call ROI mixed): the serial scores\n");
    pc_image_free(&img);
}

static uint32_t file_version(const char *path) {
    unsigned char h[12] = {0};
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fread(h, 1, 12, f), 12);
    fclose(f);
    return h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16 | (uint32_t)h[11] << 24;
}

static void test_save_load(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    pc_model *m = shared_model(fx);
    char path[256], path4[256];
    snprintf(path, sizeof path, "/tmp/pc_test_roi_%d.pcm", (int)getpid());
    snprintf(path4, sizeof path4, "/tmp/pc_test_roi_%d_v4.pcm", (int)getpid());
    assert_int_equal(pc_model_save(m, path), PC_OK);
    assert_int_equal(file_version(path), 3);
    pc_model *m2 = NULL;
    pc_status st = pc_model_load(path, &m2);
    if (st) fail_msg("load: %s", pc_last_error());
    pc_model_info info;
    pc_model_get_info(m2, &info);
    assert_int_equal(info.roi_width, 450);
    assert_int_equal(info.roi_height, 450);
    float *a = malloc(sizeof(float) * S * S), *b = malloc(sizeof(float) * S * S);
    pc_image img = {0};
    assert_int_equal(pc_image_load(fx->paths[3], &img), PC_OK);
    pc_prediction p1, p2;
    assert_int_equal(pc_model_predict(m, &img, &p1, a, NULL), PC_OK);
    assert_int_equal(pc_model_predict(m2, &img, &p2, b, NULL), PC_OK);
    assert_true(p1.score == p2.score);
    assert_memory_equal(a, b, sizeof(float) * S * S);
    /* saved again from the loaded model (the mask points into the mapping): same ROI */
    assert_int_equal(pc_model_save(m2, path4), PC_OK);
    pc_model_free(m2);
    assert_int_equal(pc_model_load(path4, &m2), PC_OK);
    assert_int_equal(pc_model_predict(m2, &img, &p2, b, NULL), PC_OK);
    assert_true(p1.score == p2.score);
    pc_model_free(m2);
    /* the key and the tensor must agree */
    tu_rewrite_meta_key(path, path4, "roi", "449x450");
    st = pc_model_load(path4, &m2);
    print_message("  %s\n", pc_last_error());
    assert_int_equal(st, PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), "'roi'"));
    tu_rewrite_meta_key(path, path4, "roi", "450x450junk");
    assert_int_equal(pc_model_load(path4, &m2), PC_ERR_FORMAT);
    tu_rewrite_meta_key(path, path4, "roi", NULL); /* a tensor without its key */
    assert_int_equal(pc_model_load(path4, &m2), PC_ERR_FORMAT);
    tu_rewrite_meta_key(path, path4, "roi", "450x450"); /* unchanged: loads */
    assert_int_equal(pc_model_load(path4, &m2), PC_OK);
    pc_model_free(m2);
    /* a newer container version is refused before anything else is read: the check by which a reader
     * of version 2 refuses this version-3 file */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    fseek(f, 8, SEEK_SET);
    const unsigned char v4[4] = {4, 0, 0, 0};
    fwrite(v4, 1, 4, f);
    fclose(f);
    st = pc_model_load(path, &m2);
    assert_int_equal(st, PC_ERR_VERSION);
    assert_non_null(strstr(pc_last_error(), "newer"));
    /* without an ROI: version 1 as before */
    pc_model *m0 = fit_n(fx, PC_SAMPLER_RANDOM, NULL, 1);
    assert_int_equal(pc_model_save(m0, path), PC_OK);
    assert_int_equal(file_version(path), 1);
    pc_model_get_info(m0, &info);
    assert_int_equal(info.roi_width, 0);
    pc_model_free(m0);
    unlink(path), unlink(path4);
    pc_image_free(&img);
    free(a), free(b);
}

static void expect_fit_fail(const fixture *fx, const pc_image *roi, pc_status want, const char *phrase,
                            const pc_tiling *tiling) {
    pc_fit_options o;
    fit_opts(&o, fx, PC_SAMPLER_RANDOM, roi);
    if (tiling) o.tiling = *tiling;
    pc_model *m = NULL;
    pc_status st = pc_model_fit(&o, (const char *const *)fx->paths, 2, &m);
    print_message("  fit: %s\n", pc_last_error());
    assert_int_equal(st, want);
    assert_null(m);
    assert_non_null(strstr(pc_last_error(), phrase));
}

static void test_errors(void **state) {
    fixture *fx = *state;
    NEED_REFS(fx);
    char p[2048];
    pc_image empty = {0}, colour = {0};
    assert_int_equal(pc_image_load_grey(ref_path(p, sizeof p, "roi/empty.png"), &empty), PC_OK);
    assert_int_equal(pc_image_load(ref_path(p, sizeof p, "roi/roi.png"), &colour), PC_OK); /* 3 channels */
    expect_fit_fail(fx, &empty, PC_ERR_INVALID_ARGUMENT, "all black", NULL);
    expect_fit_fail(fx, &colour, PC_ERR_INVALID_ARGUMENT, "3 channels", NULL);
    /* one white pixel in a corner the CenterCrop cuts off: no patch inside */
    uint8_t dot[100 * 100] = {0};
    dot[0] = 255;
    pc_image corner = {100, 100, 1, dot};
    expect_fit_fail(fx, &corner, PC_ERR_INVALID_ARGUMENT, "no patch inside", NULL);
    pc_tiling tl = {.tile = 224, .overlap = 0.25, .scale = 1.0};
    expect_fit_fail(fx, &fx->roi, PC_ERR_UNSUPPORTED, "a region of interest with tiling is not available yet", &tl);

    pc_fit_options mem[2];
    fit_opts(&mem[0], fx, PC_SAMPLER_RANDOM, &fx->roi);
    fit_opts(&mem[1], fx, PC_SAMPLER_RANDOM, &fx->roi);
    pc_model *e = NULL;
    assert_int_equal(pc_model_fit_ensemble(mem, 2, (const char *const *)fx->paths, 2, &e), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_last_error(), "ensemble"));

    /* per call (overriding the model's ROI) */
    pc_model *m = shared_model(fx);
    pc_image img = {0};
    assert_int_equal(pc_image_load(fx->paths[3], &img), PC_OK);
    pc_predict_options po;
    pc_predict_options_init(&po);
    pc_prediction pr;
    float *map = malloc(sizeof(float) * S * S);
    po.roi = &empty;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pr, map, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_model_errmsg(m), "all black"));
    po.roi = &corner;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pr, map, NULL), PC_ERR_INVALID_ARGUMENT);
    print_message("  predict: %s\n", pc_model_errmsg(m));
    assert_non_null(strstr(pc_model_errmsg(m), "no patch inside"));
    po.roi = &colour;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pr, map, NULL), PC_ERR_INVALID_ARGUMENT);
    po.roi = &fx->call;
    po.tiling = &tl;
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &pr, map, NULL), PC_ERR_UNSUPPORTED);
    assert_non_null(strstr(pc_model_errmsg(m), "a region of interest with tiling is not available yet"));
    /* after the failures the model predicts as before, and after a per-call ROI its own again (the
     * context's cached inspect mask is the model's, not the call's) */
    pc_predict_options_init(&po);
    po.roi = &fx->call;
    pc_prediction p1, p2, p3;
    assert_int_equal(pc_model_predict(m, &img, &p1, map, NULL), PC_OK);
    assert_int_equal(pc_model_predict_ex(m, &img, &po, &p2, map, NULL), PC_OK);
    assert_int_equal(pc_model_predict(m, &img, &p3, map, NULL), PC_OK);
    assert_true(p1.score == p3.score);
    assert_true(p2.score != p1.score);
    free(map);
    pc_image_free(&img);
    pc_image_free(&empty);
    pc_image_free(&colour);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_oracle),
        cmocka_unit_test(test_samplers),
        cmocka_unit_test(test_eq7),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_save_load),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
