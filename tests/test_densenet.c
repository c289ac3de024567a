/*
 * test_densenet.c - the DenseNet family against torchvision (tests/ref/gen_densenet.py).
 *
 *  - densenet121 (complete file) and densenet201 (to denseblock3), random weights with random
 *    batch-norm statistics, from every spelling and format: torchvision 0.14's names (.pth zip,
 *    .safetensors as timm's), the old names of torchvision's published files (denselayerN.norm.1,
 *    legacy .pth) and without the "features." prefix; the architecture inferred from the file; every
 *    dense block's output within TOL (max|diff| / max|ref|) of torchvision's eval-mode forward with the
 *    file's statistics (PC_BN_TRAINED), and all spellings giving identical activations;
 *  - the reference's batch-norm warm-up (METHOD.md §2, the default) against torchvision doing it
 *    (model.train(), a forward of ones(1, 3, S, S) up to denseblock D, model.eval()): densenet121 at
 *    S = 224 (D = 2, 3) and 320 (D = 3), densenet201 at 224 and 320 (D = 3, the paper's backbone);
 *  - wrong shapes and missing tensors reported by name; pc_weights_inspect; sizes and channels; the
 *    default weights lookup (torch hub cache names, then the Hugging Face cache's timm snapshot);
 *  - bf16 against torchvision's densenet201 in bf16; two views forwarding at once = one alone;
 *  - `patchcore features --layer denseblockN` and `info --weights`.
 * Each comparison with torchvision runs on both convolution paths: oneDNN's (src/backbone/onednn_net.c,
 * one image at a time in the blocked layout) and ours ($PATCHCORE_CONV=onednn, then builtin).
 */
#include "internal.h"
#include "backbone_internal.h"
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Measured on the builtin path: 1e-6 .. 3e-6 (eval mode and warm-up alike); the bound leaves room for
 * other kernels' summation orders. */
#define TOL 2e-5

static pc_conv_path want_path = PC_CONV_BUILTIN;

static int setup_onednn(void **state) {
    (void)state;
    setenv("PATCHCORE_CONV", "onednn", 1);
    want_path = PC_CONV_ONEDNN;
    return 0;
}

static int setup_builtin(void **state) {
    (void)state;
    setenv("PATCHCORE_CONV", "builtin", 1);
    want_path = PC_CONV_BUILTIN;
    return 0;
}

static int have_refs(void) {
    if (!ref_exists("densenet/manifest.txt")) {
        print_message("SKIP: no references (run make refs)\n");
        return 0;
    }
    return 1;
}

static pc_status load_opts(const char *rel, pc_arch arch, uint32_t mask, pc_bn_stats bn, int32_t S, pc_backbone **bb) {
    char p[512];
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.bn_stats = bn;
    o.warmup_size = S;
    pc_status st = pc_backbone_load_with(ref_path(p, sizeof p, "densenet/%s", rel), arch, mask, &o, bb);
    if (st != PC_OK) print_message("%s: %s\n", rel, pc_last_error());
    return st;
}

/* Forward input (a .npy of densenet/) and return the outputs of the layers in mask (malloc'd). */
static void run(pc_backbone *bb, const char *input, uint32_t mask, float *outs[4], size_t counts[4]) {
    char p[512];
    npy_array x;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "densenet/%s", input), &x), 0);
    const int32_t n = (int32_t)x.shape[0], h = (int32_t)x.shape[2], w = (int32_t)x.shape[3];
    for (int l = 1; l <= 4; l++) {
        outs[l - 1] = NULL, counts[l - 1] = 0;
        if (!(mask & PC_LAYER(l))) continue;
        int32_t oh, ow;
        assert_int_equal(pc_backbone_out_size(bb, l, h, w, &oh, &ow), PC_OK);
        counts[l - 1] = (size_t)n * (size_t)pc_backbone_channels(bb, l) * (size_t)oh * (size_t)ow;
        outs[l - 1] = calloc(counts[l - 1], sizeof(float));
    }
    assert_int_equal(pc_backbone_conv_path(bb), want_path);
    pc_status st = pc_backbone_forward(bb, x.data, n, h, w, mask, outs);
    if (st != PC_OK) print_message("forward: %s\n", pc_backbone_errmsg(bb));
    assert_int_equal(st, PC_OK);
    npy_free(&x);
}

/* Compare the layers of mask with REF_layerN.npy. */
static void compare(pc_backbone *bb, const char *ref, const char *input, uint32_t mask, const char *what) {
    char p[512];
    float *outs[4];
    size_t counts[4];
    run(bb, input, mask, outs, counts);
    for (int l = 1; l <= 4; l++) {
        if (!outs[l - 1]) continue;
        npy_array r;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "densenet/%s_layer%d.npy", ref, l), &r), 0);
        assert_int_equal((size_t)r.count, counts[l - 1]);
        assert_int_equal(r.shape[1], pc_backbone_channels(bb, l));
        const double err = max_rel_err(outs[l - 1], r.data, counts[l - 1]);
        print_message("%-7s %-34s %s %s: rel err %.2e\n", pc_conv_path_name(want_path), what,
                      pc_layer_name(pc_backbone_arch(bb), l), ref, err);
        assert_true(err <= TOL);
        npy_free(&r);
        free(outs[l - 1]);
    }
}

static void test_eval_all_spellings(void **state) {
    (void)state;
    if (!have_refs()) skip();
    static const struct {
        const char *arch;
        int deepest;
    } cases[2] = {{"densenet121", 4}, {"densenet201", 3}};
    static const char *const suffix[] = {".pth", "_old.pth", ".safetensors", "_bare.safetensors"};
    for (int c = 0; c < 2; c++) {
        const uint32_t mask = (1u << cases[c].deepest) - 1;
        const pc_arch want = pc_arch_from_name(cases[c].arch);
        assert_true(pc_arch_is_densenet(want));
        assert_string_equal(pc_arch_name(want), cases[c].arch);
        float *first[4] = {0};
        size_t counts[4];
        for (int f = 0; f < 4; f++) {
            char rel[128];
            snprintf(rel, sizeof rel, "%s%s", cases[c].arch, suffix[f]);
            char full[160];
            snprintf(full, sizeof full, "densenet/%s", rel);
            if (!ref_exists(full)) continue; /* densenet201 has no bare file */
            pc_backbone *bb = NULL;
            assert_int_equal(load_opts(rel, PC_ARCH_UNKNOWN, mask, PC_BN_TRAINED, 224, &bb), PC_OK);
            assert_int_equal(pc_backbone_arch(bb), want);
            if (f == 0) {
                compare(bb, cases[c].arch, "input_224.npy", mask, rel);
                run(bb, "input_224.npy", mask, first, counts);
            } else { /* the same weights spelled differently: identical activations */
                float *outs[4];
                run(bb, "input_224.npy", mask, outs, counts);
                for (int l = 0; l < 4; l++) {
                    if (!outs[l]) continue;
                    assert_memory_equal(outs[l], first[l], counts[l] * sizeof(float));
                    free(outs[l]);
                }
                print_message("%-7s %-34s = %s%s, bit for bit\n", pc_conv_path_name(want_path), rel, cases[c].arch,
                              suffix[0]);
            }
            pc_backbone_free(bb);
        }
        for (int l = 0; l < 4; l++) free(first[l]);
    }
    /* a named architecture, and a file with more blocks than asked: layer 2 only */
    pc_backbone *bb = NULL;
    assert_int_equal(load_opts("densenet121_old.pth", PC_ARCH_DENSENET121, PC_LAYER(2), PC_BN_TRAINED, 224, &bb), PC_OK);
    compare(bb, "densenet121", "input_224.npy", PC_LAYER(2), "densenet121_old.pth to block2");
    assert_int_equal(pc_backbone_channels(bb, 2), 512);
    assert_int_equal(pc_backbone_channels(bb, 3), 0); /* not loaded */
    pc_backbone_free(bb);
}

static void test_warmup(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512], line[128];
    FILE *f = fopen(ref_path(p, sizeof p, "densenet/warm_manifest.txt"), "r");
    assert_non_null(f);
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        char arch[64];
        int S, D;
        if (sscanf(line, "%63s %d %d", arch, &S, &D) != 3) continue;
        char rel[96], ref[96], in[64];
        snprintf(rel, sizeof rel, "%s.safetensors", arch);
        snprintf(ref, sizeof ref, "warm_%s_%d_l%d", arch, S, D);
        snprintf(in, sizeof in, "warm_input_%d.npy", S);
        pc_backbone *bb = NULL;
        const uint32_t mask = (1u << D) - 1;
        assert_int_equal(load_opts(rel, PC_ARCH_UNKNOWN, mask, PC_BN_REFERENCE, S, &bb), PC_OK);
        assert_int_equal(pc_backbone_bn_stats(bb), PC_BN_REFERENCE);
        compare(bb, ref, in, mask, rel);
        pc_backbone_free(bb);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 5);
}

static void expect_fail(const char *rel, pc_arch arch, uint32_t mask, pc_status want, const char *const phrases[]) {
    tu_expect_load_fail("densenet", rel, arch, mask, want, phrases);
}

static void test_mismatches_named(void **state) {
    (void)state;
    if (!have_refs()) skip();
    const uint32_t b12 = PC_LAYER(1) | PC_LAYER(2);
    expect_fail("bad_dense.safetensors", PC_ARCH_UNKNOWN, b12, PC_ERR_SHAPE,
                (const char *const[]){"densenet121", "up to denseblock2",
                                      "features.denseblock2.denselayer3.conv1.weight has shape [128, 192, 3, 3], "
                                      "expected [128, 192, 1, 1]",
                                      "missing features.denseblock1.denselayer2.norm1.running_var [96]", NULL});
    /* only block 1 asked: the bad conv of block 2 is not read */
    expect_fail("bad_dense.safetensors", PC_ARCH_UNKNOWN, PC_LAYER(1), PC_ERR_NOT_FOUND,
                (const char *const[]){"missing features.denseblock1.denselayer2.norm1.running_var", NULL});
    /* densenet201 named densenet121: block 3 has 48 layers, not 24 */
    expect_fail("densenet201.pth", PC_ARCH_DENSENET121, PC_LAYER(3), PC_ERR_SHAPE,
                (const char *const[]){"denseblock3 has 48 layers, densenet121 has 24",
                                      "unexpected features.denseblock3.denselayer25.norm1.weight", NULL});
    /* named densenet161: growth 48, 96 initial features */
    expect_fail("densenet121.safetensors", PC_ARCH_DENSENET161, PC_LAYER(1), PC_ERR_SHAPE,
                (const char *const[]){"features.conv0.weight has shape [64, 3, 7, 7], expected [96, 3, 7, 7]", NULL});
    /* a DenseNet named a ResNet, and the other way round */
    expect_fail("densenet121.pth", PC_ARCH_RESNET18, PC_LAYER(1), PC_ERR_SHAPE,
                (const char *const[]){"missing conv1.weight [64, 3, 7, 7]", NULL});
    /* block 4 of a file that stops at block 3 */
    expect_fail("densenet201_old.pth", PC_ARCH_UNKNOWN, PC_LAYER(4), PC_ERR_NOT_FOUND,
                (const char *const[]){"missing features.transition3.norm.weight", NULL});
}

/* What a model file keeps of the weights (pc_backbone_tensor_needed), both families and spellings. */
static void test_tensor_needed(void **state) {
    (void)state;
    assert_true(pc_backbone_tensor_needed("features.conv0.weight", 1));
    assert_true(pc_backbone_tensor_needed("conv0.weight", 1));
    assert_true(pc_backbone_tensor_needed("features.denseblock2.denselayer3.norm.1.weight", 2));
    assert_true(pc_backbone_tensor_needed("features.transition1.conv.weight", 2));
    assert_false(pc_backbone_tensor_needed("features.transition2.conv.weight", 2)); /* after the last block */
    assert_false(pc_backbone_tensor_needed("features.denseblock3.denselayer1.conv1.weight", 2));
    assert_false(pc_backbone_tensor_needed("features.norm5.weight", 4));
    assert_false(pc_backbone_tensor_needed("classifier.weight", 4));
    assert_false(pc_backbone_tensor_needed("features.norm0.num_batches_tracked", 4));
    assert_true(pc_backbone_tensor_needed("layer3.0.downsample.1.running_var", 3));
    assert_true(pc_backbone_tensor_needed("bn1.bias", 1));
    assert_false(pc_backbone_tensor_needed("layer3.0.conv1.weight", 2));
    assert_false(pc_backbone_tensor_needed("fc.weight", 4));
    assert_false(pc_backbone_tensor_needed("something.else", 4));
}

static void test_inspect_and_sizes(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_weights_info info;
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "densenet/densenet121_old.pth"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_DENSENET121);
    assert_int_equal(info.layer_mask, 0xF);
    assert_string_equal(info.format, "pth-legacy");
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "densenet/densenet201.safetensors"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_DENSENET201);
    assert_int_equal(info.layer_mask, 0x7);
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "densenet/bad_dense.safetensors"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_DENSENET121);
    assert_int_equal(info.layer_mask, 0);
    /* block outputs: 256/512/1024/1024 (121), 256/512/1792 (201); sizes /4, /8, /16, /32 */
    pc_backbone *bb = NULL;
    assert_int_equal(load_opts("densenet201.pth", PC_ARCH_UNKNOWN, 0x7, PC_BN_TRAINED, 224, &bb), PC_OK);
    static const int32_t ch[3] = {256, 512, 1792};
    for (int l = 1; l <= 3; l++) assert_int_equal(pc_backbone_channels(bb, l), ch[l - 1]);
    int32_t oh, ow;
    assert_int_equal(pc_backbone_out_size(bb, 3, 320, 225, &oh, &ow), PC_OK); /* 320 -> 160 -> 80 -> 40 -> 20 */
    assert_int_equal(oh, 20);
    assert_int_equal(ow, 14); /* 225 -> 113 -> 57 -> 28 -> 14 */
    float dummy[1], *outs[4] = {0};
    outs[3] = dummy;
    assert_int_equal(pc_backbone_forward(bb, dummy, 1, 64, 64, PC_LAYER(4), outs), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_backbone_errmsg(bb), "denseblock4 requested but the backbone was loaded up to denseblock3"));
    assert_int_equal(pc_backbone_out_size(bb, 3, 8, 8, &oh, &ow), PC_ERR_SHAPE);
    pc_backbone_free(bb);
    /* the warm-up needs two positions per channel in the last block */
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.warmup_size = 16; /* 16 -> 8 -> 4 -> 2 -> 1: block 3 is 1x1 */
    bb = (pc_backbone *)1;
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "densenet/densenet201.pth"), PC_ARCH_UNKNOWN, 0x4, &o,
                                           &bb), PC_ERR_SHAPE);
    assert_null(bb);
    assert_non_null(strstr(pc_last_error(), "denseblock3 with 1x1 positions"));
}

static void test_default_lookup(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_backbone *bb = NULL;
    unsetenv("PATCHCORE_WEIGHTS");
    setenv("TORCH_HOME", "/nonexistent/torchhome", 1);
    setenv("HF_HOME", "/nonexistent/hfhome", 1);
    assert_int_equal(pc_backbone_load(NULL, PC_ARCH_DENSENET201, PC_LAYER(1), &bb), PC_ERR_NOT_FOUND);
    print_message("%s\n", pc_last_error());
    assert_non_null(strstr(pc_last_error(), "densenet201-c1103571.pth"));
    assert_non_null(strstr(pc_last_error(), "/nonexistent/hfhome/hub/models--timm--densenet201.tv_in1k/snapshots"));
    /* a Hugging Face cache snapshot holding model.safetensors is found */
    char dir[600], cmd[1400];
    snprintf(dir, sizeof dir, "/tmp/pc_hf_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "mkdir -p %s/hub/models--timm--densenet121.tv_in1k/snapshots/abc && ln -s %s "
             "%s/hub/models--timm--densenet121.tv_in1k/snapshots/abc/model.safetensors", dir,
             ref_path(p, sizeof p, "densenet/densenet121.safetensors"), dir);
    assert_int_equal(system(cmd), 0);
    setenv("HF_HOME", dir, 1);
    assert_int_equal(pc_backbone_load(NULL, PC_ARCH_DENSENET121, PC_LAYER(1), &bb), PC_OK);
    assert_non_null(strstr(pc_backbone_path(bb), "snapshots/abc/model.safetensors"));
    assert_int_equal(pc_backbone_arch(bb), PC_ARCH_DENSENET121);
    pc_backbone_free(bb);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    unsetenv("HF_HOME");
    unsetenv("TORCH_HOME");
}

/* Two views of one DenseNet (shared weights and oneDNN net, each its own workspace or plan) forwarding
 * on two threads at once give bit for bit what the parent gives alone. */
static void test_views_concurrent(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_backbone *bb = NULL;
    assert_int_equal(load_opts("densenet121.safetensors", PC_ARCH_UNKNOWN, 0x3, PC_BN_REFERENCE, 224, &bb), PC_OK);
    npy_array x;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "densenet/input_224.npy"), &x), 0);
    tu_check_views_concurrent(bb, x.data, 224, 224, 2, pc_conv_path_name(pc_backbone_conv_path(bb)));
    npy_free(&x);
    pc_backbone_free(bb);
}

/* bf16 (PC_PRECISION_BF16, oneDNN only): ours against torchvision's densenet201 in bf16, with
 * test_backbone.c's measure: max|ours - torch_bf16| / max|torch_f32| and max|ours - f32| / max|torch_f32|
 * per block, each bounded by BF16_FACTOR times torch's own bf16 error max|torch_bf16 - torch_f32| /
 * max|torch_f32| plus one bf16 unit (BF16_FLOOR). */
#define BF16_FACTOR 2.0
#define BF16_FLOOR (1.0 / 256.0)

static void test_bf16(void **state) {
    (void)state;
    char p[512], why[256];
    if (!pc_precision_supported(PC_PRECISION_BF16, why, sizeof why)) TEST_SKIP_MSG("bf16: %s", why);
    if (!ref_exists("densenet/bf16_densenet201_layer3.npy")) TEST_SKIP_MSG("no bf16 references (run make refs)");
    const uint32_t mask = 0x7;
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.bn_stats = PC_BN_TRAINED;
    o.precision = PC_PRECISION_BF16;
    pc_backbone *bb = NULL;
    unsetenv("PATCHCORE_CONV");
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "densenet/densenet201.safetensors"), PC_ARCH_UNKNOWN,
                                           mask, &o, &bb), PC_OK);
    assert_int_equal(pc_backbone_conv_path(bb), PC_CONV_ONEDNN);
    want_path = PC_CONV_ONEDNN;
    float *outs[4];
    size_t counts[4];
    run(bb, "input_224.npy", mask, outs, counts);
    for (int l = 1; l <= 3; l++) {
        npy_array f32, b16;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "densenet/densenet201_layer%d.npy", l), &f32), 0);
        assert_int_equal(npy_load(ref_path(p, sizeof p, "densenet/bf16_densenet201_layer%d.npy", l), &b16), 0);
        const size_t cnt = counts[l - 1];
        assert_int_equal((size_t)f32.count, cnt);
        const float *ref = f32.data, *tb = b16.data;
        double amax = 0.0;
        for (size_t i = 0; i < cnt; i++) amax = PC_MAX(amax, (double)(ref[i] < 0 ? -ref[i] : ref[i]));
        const double ours_torch = max_abs_diff(outs[l - 1], tb, cnt) / amax;
        const double ours_f32 = max_abs_diff(outs[l - 1], ref, cnt) / amax;
        const double torch_f32 = max_abs_diff(tb, ref, cnt) / amax;
        const double bound = BF16_FACTOR * torch_f32 + BF16_FLOOR;
        print_message("bf16 densenet201 denseblock%d: ours vs torch bf16 %.2e, ours vs f32 %.2e, torch bf16 vs f32 "
                      "%.2e (bound %.2e)\n", l, ours_torch, ours_f32, torch_f32, bound);
        assert_true(ours_torch <= bound);
        assert_true(ours_f32 <= bound);
        npy_free(&f32), npy_free(&b16);
        free(outs[l - 1]);
    }
    pc_backbone_free(bb);
    /* bf16 has only the oneDNN path */
    setenv("PATCHCORE_CONV", "builtin", 1);
    bb = (pc_backbone *)1;
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "densenet/densenet201.safetensors"), PC_ARCH_UNKNOWN,
                                           mask, &o, &bb), PC_ERR_UNSUPPORTED);
    assert_null(bb);
}

/* The CLI: `features` writes PREFIX.denseblockN.npy, refuses a ResNet layer name for a DenseNet;
 * `info --weights` names the dense blocks. */
static void test_cli(void **state) {
    (void)state;
    char w[512], img[512], cmd[2048], out[600];
    const char *cli = getenv("PC_CLI");
    if (!have_refs() || !cli || !shared_path(img, sizeof img, "data/mvtec_ad/bottle/test/broken_large/000.png"))
        TEST_SKIP_MSG("no CLI, references or ../shared");
    ref_path(w, sizeof w, "densenet/densenet121_old.pth");
    snprintf(out, sizeof out, "/tmp/pc_dn_cli_%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "%s features --weights %s --layer denseblock2 --threads 2 %s -o %s >/dev/null", cli, w,
             img, out);
    assert_int_equal(system(cmd), 0);
    char npy[700];
    snprintf(npy, sizeof npy, "%s.denseblock2.npy", out);
    npy_array a;
    assert_int_equal(npy_load(npy, &a), 0);
    assert_int_equal(a.ndim, 3);
    assert_int_equal(a.shape[0], 512);
    assert_int_equal(a.shape[1], 28);
    npy_free(&a);
    unlink(npy);
    snprintf(cmd, sizeof cmd, "%s features --weights %s --layer layer2 %s -o %s 2>/dev/null", cli, w, img, out);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    snprintf(cmd, sizeof cmd, "%s info --weights %s | grep -q 'denseblock4 (1024 channels)'", cli, w);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_eval_all_spellings, setup_onednn),
        cmocka_unit_test_setup(test_eval_all_spellings, setup_builtin),
        cmocka_unit_test_setup(test_warmup, setup_onednn),
        cmocka_unit_test_setup(test_warmup, setup_builtin),
        cmocka_unit_test_setup(test_mismatches_named, setup_builtin),
        cmocka_unit_test_setup(test_inspect_and_sizes, setup_builtin),
        cmocka_unit_test(test_tensor_needed),
        cmocka_unit_test_setup(test_default_lookup, setup_builtin),
        cmocka_unit_test_setup(test_views_concurrent, setup_onednn),
        cmocka_unit_test_setup(test_views_concurrent, setup_builtin),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
