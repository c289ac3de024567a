/*
 * test_pipeline.c - the whole PatchCore pipeline (fit, coreset, predict, maps, save/load) against the
 * repo's PyTorch/faiss/scipy reference (tests/ref/patchcore_torch.py via gen_pipeline.py):
 *   r18   real ImageNet ResNet-18 from ../shared on real bottle images, 10% coreset, k = 1
 *   wrn50 random-initialised wide_resnet50_2 with non-trivial batch-norm, 25% coreset, k = 3
 * Both sides run the same coreset projection and start points (drawn by the script).
 * Tolerances: relative error (max |diff| / max |ref|) 1e-4 for features, patch scores, image scores and
 * maps; a saved and reloaded model predicts bit-identically. Coreset: given the reference's own
 * training features, C selects identical indices (both cases). From its own features (equal to the
 * reference's to ~1e-6) the greedy choice is identical on the real r18 data; on the random WRN-50
 * features a near-tie late in the selection can go the other way (the features are not bit-identical),
 * so there the end-to-end check is on the scores and maps it produces.
 */
#include "coreset.h"
#include "model_internal.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-4

typedef struct pcase {
    const char *name;
    char *paths[64];
    int n_train, n_test, k;
    long coreset;
    char arch[64], weights[1024], layers[32];
} pcase;

static int read_case(pcase *c, const char *name) {
    memset(c, 0, sizeof *c);
    c->name = name;
    char p[2048], line[2048];
    FILE *f = fopen(ref_path(p, sizeof p, "pipeline/%s/config.txt", name), "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        char *eq = strchr(line, '=');
        if (!eq) continue;
        *eq = 0;
        const char *v = eq + 1;
        if (!strcmp(line, "arch")) snprintf(c->arch, sizeof c->arch, "%s", v);
        else if (!strcmp(line, "weights")) snprintf(c->weights, sizeof c->weights, "%s", v);
        else if (!strcmp(line, "layers")) snprintf(c->layers, sizeof c->layers, "%s", v);
        else if (!strcmp(line, "n_train")) c->n_train = atoi(v);
        else if (!strcmp(line, "n_test")) c->n_test = atoi(v);
        else if (!strcmp(line, "coreset")) c->coreset = atol(v);
        else if (!strcmp(line, "k")) c->k = atoi(v);
    }
    fclose(f);
    f = fopen(ref_path(p, sizeof p, "pipeline/%s/inputs.txt", name), "r");
    if (!f) return -1;
    int n = 0;
    while (n < 64 && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (*line) c->paths[n++] = strdup(line);
    }
    fclose(f);
    return n == c->n_train + c->n_test ? 0 : -1;
}

static void free_case(pcase *c) {
    for (int i = 0; i < 64; i++) free(c->paths[i]);
}

static void check_rel(const char *what, const float *got, const float *ref, size_t n) {
    double e = max_rel_err(got, ref, n);
    print_message("  %-28s rel err %.3g (n=%zu)\n", what, e, n);
    assert_true(e <= TOL);
}

static void run_case(const char *name, int strict_coreset) {
    char p[2048];
    if (!ref_exists("pipeline")) TEST_SKIP_MSG("reference pipeline/ not generated");
    pcase c;
    if (read_case(&c, name) != 0) TEST_SKIP_MSG("pipeline/%s absent (../shared missing when refs were made?)", name);
    npy_array proj, starts, f0, core, bank, patch, scores, maps;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/projection.npy", name), &proj), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/starts.npy", name), &starts), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/features_train0.npy", name), &f0), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/coreset.npy", name), &core), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/bank.npy", name), &bank), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/patch.npy", name), &patch), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/scores.npy", name), &scores), 0);
    assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/maps.npy", name), &maps), 0);

    pc_fit_options opt;
    pc_fit_options_init(&opt);
    opt.weights = c.weights;
    opt.arch = pc_arch_from_name(c.arch);
    opt.k = c.k;
    opt.coreset_size = c.coreset;
    opt.coreset_projection = proj.data;
    opt.coreset_starts = starts.data;
    opt.n_starts = (int32_t)starts.count;
    assert_string_equal(c.layers, "layer2,layer3");
    pc_model *m = NULL;
    pc_status st = pc_model_fit(&opt, (const char *const *)c.paths, (size_t)c.n_train, &m);
    if (st) print_error("fit: %s\n", pc_last_error());
    assert_int_equal(st, PC_OK);
    pc_model_info info;
    assert_int_equal(pc_model_get_info(m, &info), PC_OK);
    assert_int_equal(info.grid_h * info.grid_w * info.dim, f0.count);

    /* patch features of the first training image */
    pc_image img;
    assert_int_equal(pc_image_load(c.paths[0], &img), PC_OK);
    float *feat = malloc(sizeof(float) * (size_t)f0.count);
    assert_int_equal(pc_model_patch_outputs(m, &img, feat, NULL), PC_OK);
    pc_image_free(&img);
    print_message("[%s]\n", name);
    check_rel("features (train image 0)", feat, f0.data, (size_t)f0.count);
    free(feat);

    /* coreset on the reference's own features: identical indices */
    {
        npy_array ft;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "pipeline/%s/features_train.npy", name), &ft), 0);
        const int32_t D = (int32_t)ft.shape[1], P = (int32_t)proj.shape[0];
        float *pt = malloc(sizeof(float) * (size_t)D * P); /* (P x D) nn.Linear weight -> (D x P) */
        for (int32_t r = 0; r < P; r++)
            for (int32_t q = 0; q < D; q++) pt[(size_t)q * P + r] = ((float *)proj.data)[(size_t)r * D + q];
        int64_t *sel = malloc(sizeof(int64_t) * (size_t)core.count);
        assert_int_equal(pc_coreset_greedy(sel, ft.data, ft.shape[0], D, pt, P, starts.data, (int32_t)starts.count,
                                           core.count, NULL, NULL), PC_OK);
        assert_memory_equal(sel, core.data, sizeof(int64_t) * (size_t)core.count);
        print_message("  coreset on ref features    %lld indices identical\n", (long long)core.count);
        free(sel), free(pt);
        npy_free(&ft);
    }
    /* coreset from our own features */
    int64_t n_idx;
    const int64_t *idx = pc_model_coreset_indices(m, &n_idx);
    assert_int_equal(n_idx, core.count);
    int64_t first_diff = -1;
    for (int64_t i = 0; i < n_idx && first_diff < 0; i++)
        if (idx[i] != ((int64_t *)core.data)[i]) first_diff = i;
    print_message("  coreset indices            %lld selected, first difference at %lld\n", (long long)n_idx,
                  (long long)first_diff);
    if (strict_coreset) {
        assert_int_equal(first_diff, -1);
        int64_t bn;
        int32_t bd;
        const float *b = pc_model_bank(m, &bn, &bd);
        check_rel("memory bank", b, bank.data, (size_t)bank.count);
    }

    /* predictions, then the same after a save/load round trip */
    const int S = info.crop, hw = info.grid_h * info.grid_w;
    float *map = malloc(sizeof(float) * (size_t)S * S * c.n_test), *ps = malloc(sizeof(float) * (size_t)hw * c.n_test);
    float *sc = malloc(sizeof(float) * c.n_test);
    for (int t = 0; t < c.n_test; t++) {
        pc_prediction pr;
        const char *path = c.paths[c.n_train + t];
        assert_int_equal(pc_model_predict_file(m, path, &pr, map + (size_t)t * S * S, NULL), PC_OK);
        sc[t] = pr.score;
        assert_int_equal(pc_image_load(path, &img), PC_OK);
        assert_int_equal(pc_model_patch_outputs(m, &img, NULL, ps + (size_t)t * hw), PC_OK);
        pc_image_free(&img);
    }
    check_rel("patch scores", ps, patch.data, (size_t)patch.count);
    for (int t = 0; t < c.n_test; t++)
        print_message("  image score %d              %.6f vs %.6f\n", t, sc[t], ((float *)scores.data)[t]);
    for (int t = 0; t < c.n_test; t++) {
        double e = fabs(sc[t] - ((float *)scores.data)[t]) / fabs(((float *)scores.data)[t]);
        assert_true(e <= TOL);
    }
    check_rel("anomaly maps", map, maps.data, (size_t)maps.count);

    char model_path[256];
    snprintf(model_path, sizeof model_path, "/tmp/pc_test_pipeline_%s_%d.pcm", name, (int)getpid());
    assert_int_equal(pc_model_save(m, model_path), PC_OK);
    pc_model *m2 = NULL;
    st = pc_model_load(model_path, &m2);
    if (st) print_error("load: %s\n", pc_last_error());
    assert_int_equal(st, PC_OK);
    float *map2 = malloc(sizeof(float) * (size_t)S * S);
    for (int t = 0; t < c.n_test; t++) {
        pc_prediction pr;
        assert_int_equal(pc_model_predict_file(m2, c.paths[c.n_train + t], &pr, map2, NULL), PC_OK);
        assert_true(pr.score == sc[t]);
        assert_memory_equal(map2, map + (size_t)t * S * S, sizeof(float) * (size_t)S * S);
    }
    pc_model_info info2;
    pc_model_get_info(m2, &info2);
    assert_int_equal(info2.bank_size, info.bank_size);
    assert_int_equal(info2.n_train_images, c.n_train);
    assert_int_equal(info2.k, c.k);
    unlink(model_path);
    pc_model_free(m2);
    pc_model_free(m);
    free(map), free(map2), free(ps), free(sc);
    npy_free(&proj), npy_free(&starts), npy_free(&f0), npy_free(&core), npy_free(&bank);
    npy_free(&patch), npy_free(&scores), npy_free(&maps);
    free_case(&c);
}

static void test_resnet18_real(void **state) {
    (void)state;
    run_case("r18", 1);
}

static void test_wrn50_random(void **state) {
    (void)state;
    run_case("wrn50", 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resnet18_real),
        cmocka_unit_test(test_wrn50_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
