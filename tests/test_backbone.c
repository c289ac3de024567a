/*
 * test_backbone.c - the ResNet family against torchvision (tests/ref/gen_backbones.py).
 *
 *  - every architecture, from all three file formats (zip .pth, legacy .pth, .safetensors), with the
 *    architecture inferred from the file: the inferred name is checked and every layer output matches
 *    torchvision within relative error 1e-4 (max|diff| / max|ref|);
 *  - resnet18's complete file (layer4 + fc) loaded to layer3 ignores the extra tensors, and its layer4
 *    matches too; the real ResNet-18 of ../shared matches on bottle images (layer2, layer3);
 *  - wrong shapes, missing tensors and surplus blocks are reported by name; pc_weights_inspect;
 *  - the reference's batch-norm warm-up (METHOD.md §2, the default) against torchvision doing it in three
 *    lines: one architecture per family at S = 224 and 320, the warm-up stopping at layer2 and at layer3,
 *    every layer output within TOL_WARM (5e-6); the real ResNet-18 likewise; `features` with and without
 *    --bn.
 * The tests of the file formats and architectures use the trained statistics (PC_BN_TRAINED), as their
 * torchvision references are plain eval-mode models.
 *
 * Every comparison with torchvision runs twice: on the oneDNN convolutions and on our own
 * ($PATCHCORE_CONV=onednn, then builtin; src/backbone_onednn.c, src/nn.c), with the same tolerances.
 * bf16 (PC_PRECISION_BF16, tests/ref/gen_backbones_bf16.py) against torch run in bf16; two views
 * forwarding at once give what one gives alone, bit for bit; and a child process with oneDNN capped at
 * AVX2 (ONEDNN_MAX_CPU_ISA=AVX2) checks that bf16 is refused there with PC_ERR_UNSUPPORTED and that the
 * oneDNN float32 path still matches torchvision with AVX2 kernels.
 */
#include "internal.h"
#include "backbone_internal.h"
#include "testutil.h"

#include <pthread.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL 1e-4
/* The warm-up references: the same measure (max |diff| / max |ref|) over every layer output; measured
 * 1.4e-6 to 2.6e-6 on the real ResNet-18 (as the trained statistics give, 1.6e-6) and 3e-7 to 2.4e-6 on
 * the random networks; torch's own float32 forward is ~1.2e-6 from float64. */
#define TOL_WARM 5e-6

/* The convolution path the current test runs ($PATCHCORE_CONV, set by the group's setup). */
static pc_conv_path want_path = PC_CONV_ONEDNN;
static const char *self_exe = "test_backbone";

static int setup_onednn(void **state) {
    (void)state;
    setenv("PATCHCORE_CONV", "onednn", 1);
    want_path = PC_CONV_ONEDNN;
    return 0;
}

/* The default choice (no $PATCHCORE_CONV): what the CLI tests run. */
static int setup_default(void **state) {
    (void)state;
    unsetenv("PATCHCORE_CONV");
    return 0;
}

static int setup_builtin(void **state) {
    (void)state;
    setenv("PATCHCORE_CONV", "builtin", 1);
    want_path = PC_CONV_BUILTIN;
    return 0;
}

/* pc_backbone_load with the weights' own (trained) batch-norm statistics. */
static pc_status load_trained(const char *path, pc_arch arch, uint32_t mask, pc_backbone **bb) {
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.bn_stats = PC_BN_TRAINED;
    return pc_backbone_load_with(path, arch, mask, &o, bb);
}

static int have_refs(void) {
    if (!ref_exists("backbones/manifest.txt")) {
        print_message("SKIP: no references (run make refs)\n");
        return 0;
    }
    return 1;
}

/* Run bb on input_S.npy and compare layers 1..upto (those in mask) with ARCH_layerN.npy. */
static void compare_layers_tol(pc_backbone *bb, const char *refname, const char *input, uint32_t mask,
                               const char *what, double tol) {
    char p[512];
    npy_array x;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/%s", input), &x), 0);
    const int32_t n = (int32_t)x.shape[0], h = (int32_t)x.shape[2], w = (int32_t)x.shape[3];
    float *outs[4] = {0};
    npy_array ref[4];
    for (int l = 1; l <= 4; l++) {
        if (!(mask & PC_LAYER(l))) continue;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/%s_layer%d.npy", refname, l), &ref[l - 1]), 0);
        int32_t oh, ow;
        assert_int_equal(pc_backbone_out_size(bb, l, h, w, &oh, &ow), PC_OK);
        assert_int_equal(ref[l - 1].shape[1], pc_backbone_channels(bb, l));
        assert_int_equal(ref[l - 1].shape[2], oh);
        assert_int_equal(ref[l - 1].shape[3], ow);
        outs[l - 1] = calloc((size_t)ref[l - 1].count, sizeof(float));
    }
    assert_int_equal(pc_backbone_conv_path(bb), want_path);
    pc_status st = pc_backbone_forward(bb, x.data, n, h, w, mask, outs);
    if (st != PC_OK) print_message("forward: %s\n", pc_backbone_errmsg(bb));
    assert_int_equal(st, PC_OK);
    for (int l = 1; l <= 4; l++) {
        if (!outs[l - 1]) continue;
        double err = max_rel_err(outs[l - 1], ref[l - 1].data, (size_t)ref[l - 1].count);
        print_message("%-7s %-40s layer%d %s: rel err %.2e\n", pc_conv_path_name(want_path), what, l, refname, err);
        assert_true(err <= tol);
        free(outs[l - 1]);
        npy_free(&ref[l - 1]);
    }
    npy_free(&x);
}

static void compare_layers(pc_backbone *bb, const char *refname, const char *input, uint32_t mask, const char *what) {
    compare_layers_tol(bb, refname, input, mask, what, TOL);
}

static void test_all_archs_all_formats(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512], line[128];
    FILE *f = fopen(ref_path(p, sizeof p, "backbones/manifest.txt"), "r");
    assert_non_null(f);
    int archs = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        int size, upto;
        if (sscanf(line, "%63s %d %d", name, &size, &upto) != 3) continue;
        const pc_arch want = pc_arch_from_name(name);
        assert_int_not_equal(want, PC_ARCH_UNKNOWN);
        assert_string_equal(pc_arch_name(want), name);
        char input[32];
        snprintf(input, sizeof input, "input_%d.npy", size);
        static const char *const suffix[3] = {".pth", "_legacy.pth", ".safetensors"};
        for (int fmt = 0; fmt < 3; fmt++) {
            char file[256];
            snprintf(file, sizeof file, "backbones/%s%s", name, suffix[fmt]);
            ref_path(p, sizeof p, "%s", file);
            /* Inferred architecture, to layer3 (resnet18's file has layer4 + fc: they are ignored). */
            uint32_t mask = PC_LAYER(1) | PC_LAYER(2) | PC_LAYER(3);
            pc_backbone *bb = NULL;
            pc_status st = load_trained(p, PC_ARCH_UNKNOWN, mask, &bb);
            if (st != PC_OK) print_message("%s: %s\n", file, pc_last_error());
            assert_int_equal(st, PC_OK);
            assert_string_equal(pc_arch_name(pc_backbone_arch(bb)), name);
            assert_int_equal(pc_backbone_max_layer(bb), 3);
            compare_layers(bb, name, input, mask, file);
            pc_backbone_free(bb);
            if (upto == 4) { /* named architecture, every layer */
                mask |= PC_LAYER(4);
                assert_int_equal(load_trained(p, want, mask, &bb), PC_OK);
                compare_layers(bb, name, input, PC_LAYER(2) | PC_LAYER(4), file);
                pc_backbone_free(bb);
            }
        }
        archs++;
    }
    fclose(f);
    assert_int_equal(archs, 9);
}

/* Inference sees every stage's block count through the filter, even of stages it does not load:
 * resnet152 loaded to layer1 only is still named resnet152 (not resnet50, identical up to there). */
static void test_infer_from_unloaded_layers(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_backbone *bb = NULL;
    static const char *const files[] = {"resnet152.pth", "resnet152_legacy.pth", "wide_resnet101_2_legacy.pth"};
    static const pc_arch want[] = {PC_ARCH_RESNET152, PC_ARCH_RESNET152, PC_ARCH_WIDE_RESNET101_2};
    for (int i = 0; i < 3; i++) { /* wide_resnet101_2 and _50_2 differ only in layer3 */
        assert_int_equal(pc_backbone_load(ref_path(p, sizeof p, "backbones/%s", files[i]), PC_ARCH_UNKNOWN,
                                          PC_LAYER(1), &bb), PC_OK);
        assert_int_equal(pc_backbone_arch(bb), want[i]);
        pc_backbone_free(bb);
    }
    assert_int_equal(load_trained(ref_path(p, sizeof p, "backbones/resnet152.safetensors"), PC_ARCH_UNKNOWN,
                                  PC_LAYER(1), &bb), PC_OK);
    assert_int_equal(pc_backbone_arch(bb), PC_ARCH_RESNET152);
    compare_layers(bb, "resnet152", "input_64.npy", PC_LAYER(1), "resnet152 to layer1");
    /* asking for more than it was loaded for is refused */
    float *outs[4] = {0};
    float dummy[1];
    outs[1] = dummy;
    assert_int_equal(pc_backbone_forward(bb, dummy, 1, 64, 64, PC_LAYER(2), outs), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_backbone_errmsg(bb), "loaded up to layer1"));
    outs[0] = NULL; /* a requested layer without a buffer */
    assert_int_equal(pc_backbone_forward(bb, dummy, 1, 64, 64, PC_LAYER(1), outs), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_backbone_errmsg(bb), "outs[0]"));
    assert_int_equal(pc_backbone_forward(bb, dummy, 0, 64, 64, PC_LAYER(1), outs), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_backbone_channels(bb, 1), 256);
    assert_int_equal(pc_backbone_channels(bb, 2), 0); /* not loaded */
    int32_t oh, ow;
    assert_int_equal(pc_backbone_out_size(bb, 1, 225, 97, &oh, &ow), PC_OK); /* 225 -> 113 -> 57; 97 -> 49 -> 25 */
    assert_int_equal(oh, 57);
    assert_int_equal(ow, 25);
    pc_backbone_free(bb);
}

static void expect_fail(const char *rel, pc_arch arch, uint32_t mask, pc_status want, const char *const phrases[]) {
    tu_expect_load_fail("backbones", rel, arch, mask, want, phrases);
}

static void test_mismatches_named(void **state) {
    (void)state;
    if (!have_refs()) skip();
    const uint32_t l12 = PC_LAYER(1) | PC_LAYER(2), l123 = l12 | PC_LAYER(3);
    expect_fail("bad_shape_missing.safetensors", PC_ARCH_UNKNOWN, l12, PC_ERR_SHAPE,
                (const char *const[]){"resnet18", "layer2.0.conv1.weight has shape [128, 64, 5, 3], expected [128, 64, 3, 3]",
                                      "missing layer1.1.bn2.running_var [64]", NULL});
    expect_fail("bad_shape_missing.safetensors", PC_ARCH_RESNET18, PC_LAYER(1), PC_ERR_NOT_FOUND,
                (const char *const[]){"missing layer1.1.bn2.running_var", NULL});
    expect_fail("bad_notresnet.safetensors", PC_ARCH_UNKNOWN, l12, PC_ERR_NOT_FOUND,
                (const char *const[]){"cannot infer the architecture", NULL});
    /* resnet18 named resnet34: the third block of layer1 is missing */
    expect_fail("resnet18.safetensors", PC_ARCH_RESNET34, l12, PC_ERR_NOT_FOUND,
                (const char *const[]){"missing layer1.2.conv1.weight [64, 64, 3, 3]", NULL});
    /* resnet101 named resnet50: layer3 has 23 blocks, not 6 */
    expect_fail("resnet101.pth", PC_ARCH_RESNET50, l123, PC_ERR_SHAPE,
                (const char *const[]){"layer3 has 23 blocks, resnet50 has 6", "unexpected layer3.6.conv1.weight", NULL});
    /* wide named plain: every layer1 width is wrong */
    expect_fail("wide_resnet50_2.safetensors", PC_ARCH_RESNET50, PC_LAYER(1), PC_ERR_SHAPE,
                (const char *const[]){"layer1.0.conv1.weight has shape [128, 64, 1, 1], expected [64, 64, 1, 1]", NULL});
    /* layer4 asked of a file that stops at layer3 */
    expect_fail("wide_resnet50_2_legacy.pth", PC_ARCH_UNKNOWN, PC_LAYER(4), PC_ERR_NOT_FOUND,
                (const char *const[]){"missing layer4.0.conv1.weight", NULL});
    pc_backbone *bb = (pc_backbone *)1;
    assert_int_equal(pc_backbone_load("/nonexistent/w.pth", PC_ARCH_UNKNOWN, 1, &bb), PC_ERR_NOT_FOUND);
    assert_null(bb);
    assert_int_equal(pc_backbone_load("/nonexistent/w.pth", PC_ARCH_UNKNOWN, 0, &bb), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_backbone_load("/nonexistent/w.pth", PC_ARCH_UNKNOWN, 0x10, &bb), PC_ERR_INVALID_ARGUMENT);
}

static void test_default_lookup(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_backbone *bb = NULL;
    /* $PATCHCORE_WEIGHTS wins */
    setenv("PATCHCORE_WEIGHTS", ref_path(p, sizeof p, "backbones/resnet18.safetensors"), 1);
    assert_int_equal(pc_backbone_load(NULL, PC_ARCH_UNKNOWN, PC_LAYER(1), &bb), PC_OK);
    assert_string_equal(pc_backbone_path(bb), p);
    assert_int_equal(pc_backbone_arch(bb), PC_ARCH_RESNET18);
    pc_backbone_free(bb);
    /* then $TORCH_HOME/hub/checkpoints; the error says where it looked and how to get the file */
    unsetenv("PATCHCORE_WEIGHTS");
    setenv("TORCH_HOME", "/nonexistent/torchhome", 1);
    assert_int_equal(pc_backbone_load(NULL, PC_ARCH_RESNEXT50_32X4D, PC_LAYER(1), &bb), PC_ERR_NOT_FOUND);
    print_message("%s\n", pc_last_error());
    assert_non_null(strstr(pc_last_error(), "/nonexistent/torchhome/hub/checkpoints"));
    assert_non_null(strstr(pc_last_error(), "resnext50_32x4d-7cdf4587.pth"));
    assert_non_null(strstr(pc_last_error(), "https://download.pytorch.org/models/"));
    unsetenv("TORCH_HOME");
}

static void test_inspect(void **state) {
    (void)state;
    if (!have_refs()) skip();
    char p[512];
    pc_weights_info info;
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "backbones/resnet18_legacy.pth"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_RESNET18);
    assert_int_equal(info.layer_mask, 0xF);
    assert_int_equal(info.tensor_count, 122);      /* len(torchvision resnet18 state_dict()) */
    assert_int_equal(info.param_count, 11699112);  /* its float values */
    assert_string_equal(info.format, "pth-legacy");
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "backbones/resnext101_32x8d.safetensors"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_RESNEXT101_32X8D);
    assert_int_equal(info.layer_mask, 0x7);
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "backbones/bad_shape_missing.safetensors"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_RESNET18);
    assert_int_equal(info.layer_mask, 0);
    assert_int_equal(pc_weights_inspect(ref_path(p, sizeof p, "backbones/bad_notresnet.safetensors"), &info), PC_OK);
    assert_int_equal(info.arch, PC_ARCH_UNKNOWN);
}

static void test_real_resnet18(void **state) {
    (void)state;
    char p[512];
    if (!ref_exists("backbones/r18real_input.npy") || !shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth")) {
        TEST_SKIP_MSG("no ../shared ResNet-18 or bottle images");
    }
    static const char *const files[2] = {"weights/resnet18_in1k_to_layer3.pth", "weights/resnet18_in1k_to_layer3.safetensors"};
    for (int i = 0; i < 2; i++) {
        pc_backbone *bb = NULL;
        const uint32_t mask = PC_LAYER(2) | PC_LAYER(3);
        assert_int_equal(load_trained(shared_path(p, sizeof p, files[i]), PC_ARCH_UNKNOWN, mask, &bb), PC_OK);
        assert_int_equal(pc_backbone_arch(bb), PC_ARCH_RESNET18);
        assert_int_equal(pc_backbone_bn_stats(bb), PC_BN_TRAINED);
        compare_layers(bb, "r18real", "r18real_input.npy", mask, files[i]);
        /* a second call reuses the workspace and gives the same answer */
        compare_layers(bb, "r18real", "r18real_input.npy", mask, files[i]);
        pc_backbone_free(bb);
    }
    /* the default: the reference's warm-up, at the crop size S */
    static const int sizes[2] = {224, 320};
    for (int i = 0; i < 2; i++) {
        pc_backbone *bb = NULL;
        pc_backbone_options o;
        pc_backbone_options_init(&o);
        o.warmup_size = sizes[i];
        const uint32_t mask = PC_LAYER(1) | PC_LAYER(2) | PC_LAYER(3);
        if (sizes[i] == 224) assert_int_equal(pc_backbone_load(shared_path(p, sizeof p, files[i]), PC_ARCH_UNKNOWN,
                                                               mask, &bb), PC_OK); /* NULL options = S 224 */
        else assert_int_equal(pc_backbone_load_with(shared_path(p, sizeof p, files[i]), PC_ARCH_UNKNOWN, mask, &o, &bb),
                              PC_OK);
        assert_int_equal(pc_backbone_bn_stats(bb), PC_BN_REFERENCE);
        char ref[64], in[64];
        snprintf(ref, sizeof ref, "r18real_warm_%d", sizes[i]);
        snprintf(in, sizeof in, "r18real_warm_input_%d.npy", sizes[i]);
        compare_layers_tol(bb, ref, in, mask, files[i], TOL_WARM);
        pc_backbone_free(bb);
    }
}

/* A server's request deadline (pc_set_deadline_local) stops the forward pass between blocks (our
 * kernels) or primitives (oneDNN) with PC_ERR_CANCELLED; a deadline not reached changes nothing. */
static void test_deadline(void **state) {
    (void)state;
    char p[512];
    if (!ref_exists("backbones/r18real_input.npy") || !shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth"))
        TEST_SKIP_MSG("no ../shared ResNet-18 or reference tensors");
    pc_backbone *bb = NULL;
    const uint32_t mask = PC_LAYER(2) | PC_LAYER(3);
    assert_int_equal(load_trained(p, PC_ARCH_UNKNOWN, mask, &bb), PC_OK);
    float *l2 = malloc(sizeof(float) * 128 * 28 * 28), *l3 = malloc(sizeof(float) * 256 * 14 * 14);
    float *in = calloc(3 * 224 * 224, sizeof(float));
    float *const outs[4] = {NULL, l2, l3, NULL};
    pc_set_deadline_local(1e-9);
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    assert_int_equal(pc_backbone_forward(bb, in, 1, 224, 224, mask, outs), PC_ERR_CANCELLED);
    assert_non_null(strstr(pc_last_error(), "in the backbone"));
    pc_set_deadline_local(1000.0); /* far away: the layers equal torchvision's as without one */
    compare_layers(bb, "r18real", "r18real_input.npy", mask, "deadline not reached");
    pc_set_deadline_local(0);
    free(l2), free(l3), free(in);
    pc_backbone_free(bb);
}

/* The warm-up of every family (BasicBlock, Bottleneck, wide, grouped) at S = 224 and 320, stopping at
 * layer2 and at layer3, against torchvision's model.train(); forward(ones); model.eval(). */
static void test_warmup_families(void **state) {
    (void)state;
    char p[512], line[128];
    if (!ref_exists("backbones/warm_manifest.txt")) TEST_SKIP_MSG("no warm-up references (run make refs)");
    FILE *f = fopen(ref_path(p, sizeof p, "backbones/warm_manifest.txt"), "r");
    assert_non_null(f);
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        char name[64];
        int size, deepest;
        if (sscanf(line, "%63s %d %d", name, &size, &deepest) != 3) continue;
        uint32_t mask = 0;
        for (int l = 1; l <= deepest; l++) mask |= PC_LAYER(l);
        pc_backbone_options o;
        pc_backbone_options_init(&o);
        o.warmup_size = size;
        pc_backbone *bb = NULL;
        pc_status st = pc_backbone_load_with(ref_path(p, sizeof p, "backbones/%s.safetensors", name), PC_ARCH_UNKNOWN,
                                             mask, &o, &bb);
        if (st) print_message("%s: %s\n", name, pc_last_error());
        assert_int_equal(st, PC_OK);
        char ref[96], in[64], what[96];
        snprintf(ref, sizeof ref, "warm_%s_%d_l%d", name, size, deepest);
        snprintf(in, sizeof in, "warm_input_%d.npy", size);
        snprintf(what, sizeof what, "%s warm-up S=%d to layer%d", name, size, deepest);
        compare_layers_tol(bb, ref, in, mask, what, TOL_WARM);
        /* the trained statistics are really different here (the option is not a no-op) */
        pc_backbone *bt = NULL;
        assert_int_equal(load_trained(ref_path(p, sizeof p, "backbones/%s.safetensors", name), PC_ARCH_UNKNOWN, mask,
                                      &bt), PC_OK);
        npy_array x, r;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/%s", in), &x), 0);
        assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/%s_layer%d.npy", ref, deepest), &r), 0);
        float *outs[4] = {0};
        outs[deepest - 1] = calloc((size_t)r.count, sizeof(float));
        assert_int_equal(pc_backbone_forward(bt, x.data, 1, size, size, PC_LAYER(deepest), outs), PC_OK);
        const double diff = max_rel_err(outs[deepest - 1], r.data, (size_t)r.count);
        print_message("%-40s trained statistics differ by %.2e\n", what, diff);
        assert_true(diff > 1e4 * TOL_WARM); /* measured 0.1 .. 1.3 */
        free(outs[deepest - 1]);
        npy_free(&x), npy_free(&r);
        pc_backbone_free(bt);
        pc_backbone_free(bb);
        cases++;
    }
    fclose(f);
    assert_int_equal(cases, 16);
    /* a crop too small for the warm-up: layer3 of a 24 x 24 input is 2 x 2 (fine); of 16 x 16 it is 1 x 1 */
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.warmup_size = 16;
    pc_backbone *bb = NULL;
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "backbones/resnet18.safetensors"), PC_ARCH_UNKNOWN,
                                           PC_LAYER(3), &o, &bb), PC_ERR_SHAPE);
    assert_null(bb);
    assert_non_null(strstr(pc_last_error(), "more than one value per channel"));
    o.warmup_size = 24;
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "backbones/resnet18.safetensors"), PC_ARCH_UNKNOWN,
                                           PC_LAYER(3), &o, &bb), PC_OK);
    pc_backbone_free(bb);
    o.bn_stats = (pc_bn_stats)7;
    assert_int_equal(pc_backbone_load_with(ref_path(p, sizeof p, "backbones/resnet18.safetensors"), PC_ARCH_UNKNOWN,
                                           PC_LAYER(3), &o, &bb), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_bn_stats_from_name("trained"), PC_BN_TRAINED);
    assert_int_equal(pc_bn_stats_from_name("reference"), PC_BN_REFERENCE);
    assert_int_equal(pc_bn_stats_from_name("eval"), -1);
    assert_int_equal(pc_bn_stats_from_name(NULL), -1);
    assert_string_equal(pc_bn_stats_name(PC_BN_REFERENCE), "reference");
}

/* `patchcore features` end to end (decoder + preprocessing + backbone) on the first bottle image,
 * against torchvision (same tolerance), and `patchcore info`. */
static void test_cli(void **state) {
    (void)state;
    char w[512], img[512], cmd[2048], p[512];
    const char *cli = getenv("PC_CLI");
    if (!cli || !ref_exists("backbones/r18real_layer2.npy") ||
        !shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(img, sizeof img, "data/mvtec_ad/bottle/test/broken_large/000.png"))
        TEST_SKIP_MSG("no CLI, references or ../shared");
    char prefix[] = "/tmp/pc_test_features_XXXXXX";
    int fd = mkstemp(prefix);
    assert_true(fd >= 0);
    close(fd);
    /* default (the reference's warm-up), then --bn trained */
    for (int mode = 0; mode < 2; mode++) {
        snprintf(cmd, sizeof cmd, "%s features --weights %s --layer layer3 --layer layer2 %s %s -o %s >/dev/null", cli,
                 w, mode ? "--bn trained" : "", img, prefix);
        assert_int_equal(system(cmd), 0);
        for (int l = 2; l <= 3; l++) {
            npy_array got, ref;
            snprintf(p, sizeof p, "%s.layer%d.npy", prefix, l);
            assert_int_equal(npy_load(p, &got), 0);
            unlink(p);
            if (mode) assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/r18real_layer%d.npy", l), &ref), 0);
            else assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/r18real_warm_224_layer%d.npy", l), &ref), 0);
            assert_int_equal(got.ndim, 3);
            assert_true(got.count <= ref.count); /* the trained reference holds two images; ours is the first */
            double err = max_rel_err(got.data, ref.data, (size_t)got.count);
            print_message("patchcore features%s layer%d: rel err %.2e\n", mode ? " --bn trained" : "", l, err);
            assert_true(err <= (mode ? TOL : TOL_WARM));
            npy_free(&got), npy_free(&ref);
        }
    }
    snprintf(cmd, sizeof cmd, "%s features --weights %s --bn eval %s -o %s 2>/dev/null", cli, w, img, prefix);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    unlink(prefix);
    snprintf(cmd, sizeof cmd, "%s info --weights %s | grep -q 'architecture:  resnet18'", cli, w);
    assert_int_equal(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s features --layer layer9 x.png -o y 2>/dev/null", cli);
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
}

/* Allocation failures anywhere in loading and running (weights reader, BN folding, Winograd weights,
 * workspace) end in a clean error, never a crash: `patchcore features` with the N-th allocation
 * failing (PC_FAULT_ALLOC) exits 1 with "out of memory" or, once N is past every allocation, 0. */
static void test_alloc_faults(void **state) {
    (void)state;
    char w[512], img[512], cmd[2048];
    const char *cli = getenv("PC_CLI");
    if (!cli || !shared_path(w, sizeof w, "weights/resnet18_in1k_to_layer3.safetensors") ||
        !shared_path(img, sizeof img, "data/mvtec_ad/bottle/test/broken_large/000.png"))
        TEST_SKIP_MSG("no CLI or ../shared");
    int failed = 0, passed = 0;
    for (int n = 1; n <= 600; n += 13) {
        snprintf(cmd, sizeof cmd,
                 "PC_FAULT_ALLOC=%d %s features --weights %s --layer layer3 %s -o /tmp/pc_fault_%d >/dev/null 2>&1; "
                 "rc=$?; rm -f /tmp/pc_fault_%d.layer3.npy; exit $rc", n, cli, w, img, (int)getpid(), (int)getpid());
        int st = system(cmd);
        assert_true(WIFEXITED(st));
        int rc = WEXITSTATUS(st);
        if (rc != 0 && rc != 1) print_message("PC_FAULT_ALLOC=%d: exit %d\n", n, rc);
        assert_true(rc == 0 || rc == 1);
        rc ? failed++ : passed++;
    }
    print_message("allocation faults: %d clean failures, %d runs past the last allocation\n", failed, passed);
    assert_true(failed > 30); /* the scan did hit the loader */
}

/* ---- bf16 ---------------------------------------------------------------------------------------
 * Ours in bf16 against torch in bf16 (model.bfloat16(), channels-last): both round every activation
 * to 8 significant bits, at different places (we fold batch-norm into the weights before rounding
 * them, torch rounds the convolution output and then the batch-norm's; our residual sum and ReLU run
 * in float32 inside the convolution), so the two differ by about as much as either differs from
 * float32. The measure is max|ours - torch_bf16| / max|torch_f32| per layer, and the bound is
 * BF16_FACTOR times torch's own bf16 error max|torch_bf16 - torch_f32| / max|torch_f32| of that layer
 * (plus BF16_FLOOR, one bf16 unit at the layer's maximum, for a layer where torch's error happens to
 * be tiny). Measured on AVX512-BF16 (Zen 5), ResNet-18 real weights layer2/3 and the random
 * wide_resnet50_2 layer1..3: ours vs torch bf16 1.2e-2 .. 1.8e-2, torch bf16 vs f32 1.1e-2 .. 3.1e-2,
 * ours vs f32 6.6e-3 .. 2.3e-2. */
#define BF16_FACTOR 2.0
#define BF16_FLOOR (1.0 / 256.0)

static pc_status load_prec(const char *path, pc_precision prec, pc_backbone **bb) {
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.bn_stats = PC_BN_TRAINED;
    o.precision = prec;
    return pc_backbone_load_with(path, PC_ARCH_UNKNOWN, PC_LAYER(1) | PC_LAYER(2) | PC_LAYER(3), &o, bb);
}

static void bf16_case(const char *weights, const char *prefix, uint32_t mask) {
    char p[512];
    pc_backbone *bb = NULL;
    pc_status st = load_prec(weights, PC_PRECISION_BF16, &bb);
    if (st) print_message("%s: %s\n", weights, pc_last_error());
    assert_int_equal(st, PC_OK);
    assert_int_equal(pc_backbone_precision(bb), PC_PRECISION_BF16);
    assert_int_equal(pc_backbone_conv_path(bb), PC_CONV_ONEDNN);
    npy_array x;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones_bf16/%s_input.npy", prefix), &x), 0);
    const int32_t n = (int32_t)x.shape[0], h = (int32_t)x.shape[2], w = (int32_t)x.shape[3];
    float *outs[4] = {0};
    npy_array f32[4], b16[4];
    for (int l = 1; l <= 4; l++) {
        if (!(mask & PC_LAYER(l))) continue;
        assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones_bf16/%s_f32_layer%d.npy", prefix, l), &f32[l - 1]), 0);
        assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones_bf16/%s_bf16_layer%d.npy", prefix, l), &b16[l - 1]), 0);
        outs[l - 1] = calloc((size_t)f32[l - 1].count, sizeof(float));
    }
    st = pc_backbone_forward(bb, x.data, n, h, w, mask, outs);
    if (st) print_message("forward: %s\n", pc_backbone_errmsg(bb));
    assert_int_equal(st, PC_OK);
    for (int l = 1; l <= 4; l++) {
        if (!outs[l - 1]) continue;
        const size_t cnt = (size_t)f32[l - 1].count;
        const float *ref = f32[l - 1].data, *tb = b16[l - 1].data;
        double amax = 0.0;
        for (size_t i = 0; i < cnt; i++) amax = PC_MAX(amax, (double)(ref[i] < 0 ? -ref[i] : ref[i]));
        const double ours_torch = max_abs_diff(outs[l - 1], tb, cnt) / amax;
        const double ours_f32 = max_abs_diff(outs[l - 1], ref, cnt) / amax;
        const double torch_f32 = max_abs_diff(tb, ref, cnt) / amax;
        const double bound = BF16_FACTOR * torch_f32 + BF16_FLOOR;
        print_message("bf16 %s layer%d: ours vs torch bf16 %.2e, ours vs f32 %.2e, torch bf16 vs f32 %.2e "
                      "(bound %.2e)\n", prefix, l, ours_torch, ours_f32, torch_f32, bound);
        assert_true(ours_torch <= bound);
        assert_true(ours_f32 <= bound);
        free(outs[l - 1]);
        npy_free(&f32[l - 1]), npy_free(&b16[l - 1]);
    }
    npy_free(&x);
    pc_backbone_free(bb);
}

static void test_bf16(void **state) {
    (void)state;
    char p[512], why[256];
    if (!pc_precision_supported(PC_PRECISION_BF16, why, sizeof why)) TEST_SKIP_MSG("bf16: %s", why);
    if (!ref_exists("backbones_bf16/r18_input.npy") || !shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth"))
        TEST_SKIP_MSG("no bf16 references or ../shared ResNet-18 (run make refs)");
    bf16_case(p, "r18", PC_LAYER(2) | PC_LAYER(3));
    if (ref_exists("backbones_bf16/wrn_input.npy"))
        bf16_case(ref_path(p, sizeof p, "backbones/wide_resnet50_2.safetensors"), "wrn",
                  PC_LAYER(1) | PC_LAYER(2) | PC_LAYER(3));
    /* bf16 has only the oneDNN path; an unknown switch value is refused */
    pc_backbone *bb = (pc_backbone *)1;
    shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth");
    setenv("PATCHCORE_CONV", "builtin", 1);
    assert_int_equal(load_prec(p, PC_PRECISION_BF16, &bb), PC_ERR_UNSUPPORTED);
    assert_null(bb);
    assert_non_null(strstr(pc_last_error(), "PATCHCORE_CONV"));
    setenv("PATCHCORE_CONV", "mkl", 1);
    assert_int_equal(load_prec(p, PC_PRECISION_F32, &bb), PC_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(pc_last_error(), "'builtin' or 'onednn'"));
    setenv("PATCHCORE_CONV", "onednn", 1);
    pc_backbone_options o;
    pc_backbone_options_init(&o);
    o.precision = (pc_precision)9;
    assert_int_equal(pc_backbone_load_with(p, PC_ARCH_UNKNOWN, PC_LAYER(2), &o, &bb), PC_ERR_INVALID_ARGUMENT);
}

/* ---- views at once ---------------------------------------------------------------------------------
 * Two views of one backbone (shared weights, each its own oneDNN plan) forwarding on two threads at
 * once give bit for bit what one view gives alone. */
static void views_case(const char *weights, pc_precision prec) {
    char p[512], what[64];
    pc_backbone *bb = NULL;
    assert_int_equal(load_prec(weights, prec, &bb), PC_OK);
    npy_array x;
    assert_int_equal(npy_load(ref_path(p, sizeof p, "backbones/r18real_input.npy"), &x), 0);
    snprintf(what, sizeof what, "%s %s", pc_conv_path_name(pc_backbone_conv_path(bb)), pc_precision_name(prec));
    tu_check_views_concurrent(bb, x.data, (int32_t)x.shape[2], (int32_t)x.shape[3], 3, what);
    npy_free(&x);
    pc_backbone_free(bb);
}

static void test_views_concurrent(void **state) {
    (void)state;
    char p[512];
    if (!ref_exists("backbones/r18real_input.npy") || !shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth"))
        TEST_SKIP_MSG("no ../shared ResNet-18 or references");
    views_case(p, PC_PRECISION_F32);
    if (want_path == PC_CONV_ONEDNN && pc_precision_supported(PC_PRECISION_BF16, NULL, 0))
        views_case(p, PC_PRECISION_BF16);
}

/* ---- oneDNN capped at AVX2, in a child process (oneDNN reads the cap once per process) ------------ */
static int avx2_child(void) {
    char p[512], why[256];
    int bad = 0;
    if (pc_precision_supported(PC_PRECISION_BF16, why, sizeof why)) {
        fprintf(stderr, "avx2 child: bf16 reported as supported under ONEDNN_MAX_CPU_ISA=AVX2 (isa %s)\n",
                pc_compute_isa());
        return 1;
    }
    if (!shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth")) return 0;
    pc_backbone *bb = (pc_backbone *)1;
    pc_status st = load_prec(p, PC_PRECISION_BF16, &bb);
    fprintf(stderr, "avx2 child: bf16 load: %s\n", pc_last_error());
    if (st != PC_ERR_UNSUPPORTED || bb || !strstr(pc_last_error(), "AVX512-BF16") ||
        !strstr(pc_last_error(), "ONEDNN_MAX_CPU_ISA"))
        bad = 1;
    /* float32 on oneDNN's AVX2 kernels still matches torchvision */
    setenv("PATCHCORE_CONV", "onednn", 1);
    npy_array x, ref[2];
    if (!ref_exists("backbones/r18real_input.npy")) return bad;
    if (load_prec(p, PC_PRECISION_F32, &bb) != PC_OK || npy_load(ref_path(p, sizeof p, "backbones/r18real_input.npy"), &x) ||
        npy_load(ref_path(p, sizeof p, "backbones/r18real_layer2.npy"), &ref[0]) ||
        npy_load(ref_path(p, sizeof p, "backbones/r18real_layer3.npy"), &ref[1])) {
        fprintf(stderr, "avx2 child: %s\n", pc_last_error());
        return 1;
    }
    float *outs[4] = {0};
    outs[1] = calloc((size_t)ref[0].count, sizeof(float)), outs[2] = calloc((size_t)ref[1].count, sizeof(float));
    char kernels[2048];
    const int32_t n = (int32_t)x.shape[0], h = (int32_t)x.shape[2], w = (int32_t)x.shape[3];
    if (pc_backbone_describe_kernels(bb, n, h, w, kernels, sizeof kernels) != PC_OK ||
        pc_backbone_forward(bb, x.data, n, h, w, PC_LAYER(2) | PC_LAYER(3), outs) != PC_OK) {
        fprintf(stderr, "avx2 child: %s\n", pc_last_error());
        return 1;
    }
    fprintf(stderr, "avx2 child: isa %s, kernels:\n%s\n", pc_compute_isa(), kernels);
    for (int l = 0; l < 2; l++) {
        const double err = max_rel_err(outs[l + 1], ref[l].data, (size_t)ref[l].count);
        fprintf(stderr, "avx2 child: onednn layer%d rel err %.2e\n", l + 2, err);
        if (!(err <= TOL)) bad = 1;
        free(outs[l + 1]);
        npy_free(&ref[l]);
    }
    npy_free(&x);
    pc_backbone_free(bb);
    return bad;
}

static void test_onednn_avx2(void **state) {
    (void)state;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ONEDNN_MAX_CPU_ISA=AVX2 '%s' --avx2-child", self_exe);
    const int st = system(cmd);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

int main(int argc, char **argv) {
    self_exe = argv[0];
    if (argc > 1 && !strcmp(argv[1], "--avx2-child")) return avx2_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_all_archs_all_formats, setup_onednn),
        cmocka_unit_test_setup(test_all_archs_all_formats, setup_builtin),
        cmocka_unit_test_setup(test_infer_from_unloaded_layers, setup_onednn),
        cmocka_unit_test_setup(test_infer_from_unloaded_layers, setup_builtin),
        cmocka_unit_test(test_mismatches_named),
        cmocka_unit_test(test_default_lookup),
        cmocka_unit_test(test_inspect),
        cmocka_unit_test_setup(test_real_resnet18, setup_onednn),
        cmocka_unit_test_setup(test_real_resnet18, setup_builtin),
        cmocka_unit_test_setup(test_deadline, setup_onednn),
        cmocka_unit_test_setup(test_deadline, setup_builtin),
        cmocka_unit_test_setup(test_warmup_families, setup_onednn),
        cmocka_unit_test_setup(test_warmup_families, setup_builtin),
        cmocka_unit_test_setup(test_views_concurrent, setup_onednn),
        cmocka_unit_test_setup(test_views_concurrent, setup_builtin),
        cmocka_unit_test_setup(test_bf16, setup_onednn),
        cmocka_unit_test_setup(test_onednn_avx2, setup_default),
        cmocka_unit_test_setup(test_cli, setup_default),
        cmocka_unit_test_setup(test_alloc_faults, setup_default),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
