/*
 * test_bn_stats.c - the batch-norm statistics setting of a model (METHOD.md §2) end to end:
 *  - the patch features of a fitted model (both settings; crop 224 and 320) against the PyTorch pipeline
 *    of tests/ref/patchcore_torch.py with torchvision's three-line warm-up or the plain eval-mode network
 *    (gen_bnstats.py), relative error (max |diff| / max |ref|) within TOL;
 *  - the setting is recorded in the model file and the warm-up repeats identically at load (predictions
 *    bit-identical after a save/load round trip);
 *  - a model file written before the setting existed (no bn_stats key) loads with the trained statistics,
 *    predicts exactly as a trained-statistics model, and `patchcore info` says the file predates it;
 *  - an unknown value is refused with the file's name.
 */
#include "modelfile.h"
#include "model_internal.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Patch features: two float32 computations of the same thing, each about 1.2e-6 .. 1.6e-6 from the exact
 * value (torch's float32 layer outputs are ~1.2e-6 from float64 ones), so their difference may reach
 * twice that whichever kernels either side runs. Measured 1.2e-6 .. 1.6e-6 with our builtin
 * convolutions, 1.1e-6 .. 2.05e-6 with oneDNN's (AVX-512 brgemm; crop 320 with the warm-up is the
 * largest), both settings, both crops. The bound is that sum, 2 x 1.6e-6, rounded up, as test_backbone's
 * TOL_WARM. */
#define TOL 5e-6

static char img_path[1024], train_path[2][1024];

static int have_data(void) {
    char p[1024];
    if (!ref_exists("bnstats/image.txt")) return 0;
    FILE *f = fopen(ref_path(p, sizeof p, "bnstats/image.txt"), "r");
    if (!f || !fgets(img_path, sizeof img_path, f)) {
        if (f) fclose(f);
        return 0;
    }
    fclose(f);
    img_path[strcspn(img_path, "\n")] = 0;
    return shared_path(train_path[0], sizeof train_path[0], "data/mvtec_ad/bottle/train/good/000.png") &&
           shared_path(train_path[1], sizeof train_path[1], "data/mvtec_ad/bottle/train/good/001.png");
}

static pc_model *fit(pc_bn_stats bn, int resize, int crop) {
    char w[1024];
    assert_non_null(shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors"));
    pc_fit_options o;
    pc_fit_options_init(&o);
    o.weights = w;
    o.bn_stats = bn;
    o.resize = resize, o.crop = crop;
    o.coreset_size = 64;
    const char *paths[2] = {train_path[0], train_path[1]};
    pc_model *m = NULL;
    pc_status st = pc_model_fit(&o, paths, 2, &m);
    if (st) print_error("fit: %s\n", pc_last_error());
    assert_int_equal(st, PC_OK);
    return m;
}

static void test_features_both_settings(void **state) {
    (void)state;
    if (!have_data()) TEST_SKIP_MSG("no bnstats references or ../shared (make refs)");
    static const int sizes[2][2] = {{256, 224}, {366, 320}};
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < 2; b++) {
            const pc_bn_stats bn = b ? PC_BN_TRAINED : PC_BN_REFERENCE;
            char p[1024];
            npy_array ref;
            assert_int_equal(npy_load(ref_path(p, sizeof p, "bnstats/feat_%s_%d.npy", pc_bn_stats_name(bn),
                                               sizes[s][1]), &ref), 0);
            pc_model *m = fit(bn, sizes[s][0], sizes[s][1]);
            pc_model_info info;
            assert_int_equal(pc_model_get_info(m, &info), PC_OK);
            assert_int_equal(info.bn_stats, bn);
            assert_int_equal(info.bn_stats_implicit, 0);
            assert_int_equal((int64_t)info.grid_h * info.grid_w * info.dim, ref.count);
            pc_image img;
            assert_int_equal(pc_image_load(img_path, &img), PC_OK);
            float *feat = malloc(sizeof(float) * (size_t)ref.count);
            assert_int_equal(pc_model_patch_outputs(m, &img, feat, NULL), PC_OK);
            const double e = max_rel_err(feat, ref.data, (size_t)ref.count);
            print_message("patch features, bn %-9s crop %d: rel err %.2e\n", pc_bn_stats_name(bn), sizes[s][1], e);
            assert_true(e <= TOL);
            free(feat);
            pc_image_free(&img);
            npy_free(&ref);
            pc_model_free(m);
        }
}

static void predict2(pc_model *m, float *score, float *map) {
    pc_prediction p;
    assert_int_equal(pc_model_predict_file(m, img_path, &p, map, NULL), PC_OK);
    *score = p.score;
}

static void test_model_file(void **state) {
    (void)state;
    if (!have_data()) TEST_SKIP_MSG("no bnstats references or ../shared (make refs)");
    char dir[64], a[128], b[128], c[128], cmd[1024];
    snprintf(dir, sizeof dir, "/tmp/pc_test_bn_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    assert_int_equal(system(cmd), 0);
    snprintf(a, sizeof a, "%s/reference.pcm", dir);
    snprintf(b, sizeof b, "%s/trained.pcm", dir);
    snprintf(c, sizeof c, "%s/old.pcm", dir);
    const size_t S = 224 * 224;
    float *m1 = malloc(S * sizeof(float)), *m2 = malloc(S * sizeof(float));
    float s1, s2;
    for (int k = 0; k < 2; k++) {
        const pc_bn_stats bn = k ? PC_BN_TRAINED : PC_BN_REFERENCE;
        pc_model *m = fit(bn, 256, 224), *l = NULL;
        assert_int_equal(pc_model_save(m, k ? b : a), PC_OK);
        assert_int_equal(pc_model_load(k ? b : a, &l), PC_OK);
        pc_model_info info;
        pc_model_get_info(l, &info);
        assert_int_equal(info.bn_stats, bn);
        assert_int_equal(info.bn_stats_implicit, 0);
        predict2(m, &s1, m1);
        predict2(l, &s2, m2);
        assert_true(s1 == s2); /* the warm-up at load repeats the fit's exactly */
        assert_memory_equal(m1, m2, S * sizeof(float));
        pc_model_free(m), pc_model_free(l);
    }
    /* a file without the key: the trained statistics, said so */
    tu_rewrite_meta_key(b, c, "bn_stats", NULL);
    pc_model *t = NULL, *o = NULL;
    assert_int_equal(pc_model_load(b, &t), PC_OK);
    assert_int_equal(pc_model_load(c, &o), PC_OK);
    pc_model_info info;
    pc_model_get_info(o, &info);
    assert_int_equal(info.bn_stats, PC_BN_TRAINED);
    assert_int_equal(info.bn_stats_implicit, 1);
    predict2(t, &s1, m1);
    predict2(o, &s2, m2);
    assert_true(s1 == s2);
    assert_memory_equal(m1, m2, S * sizeof(float));
    pc_model_free(t), pc_model_free(o);
    const char *cli = getenv("PC_CLI");
    if (cli) {
        snprintf(cmd, sizeof cmd, "%s info %s | grep -q '^batch-norm: *trained.*predates'", cli, c);
        assert_int_equal(system(cmd), 0);
        snprintf(cmd, sizeof cmd, "%s info %s | grep -q '^batch-norm: *reference'", cli, a);
        assert_int_equal(system(cmd), 0);
    }
    /* an unknown value */
    tu_rewrite_meta_key(b, c, "bn_stats", "running");
    assert_int_equal(pc_model_load(c, &o), PC_ERR_FORMAT);
    print_message("%s\n", pc_last_error());
    assert_non_null(strstr(pc_last_error(), c));
    assert_non_null(strstr(pc_last_error(), "bn_stats"));
    free(m1), free(m2);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_features_both_settings),
        cmocka_unit_test(test_model_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
