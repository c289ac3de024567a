/*
 * test_weights.c - the tensor-file reader (src/weights.c) against PyTorch itself.
 *
 * tests/ref/gen_weights.py writes small state dicts with torch.save (zip and legacy .pth) and by hand
 * (.safetensors, from the spec), the values torch.load returns for them (float32, torch's own
 * conversion), the same for the real ResNet-18 in ../shared, and a set of malformed files with the
 * status and phrase each must produce. Every float tensor must be bit-identical to torch's values
 * (tolerance: none; float16/bfloat16/float64 conversions are exact or correctly rounded). The malformed
 * files, truncations at many cut points and random corruptions must fail cleanly (run under
 * `make asan-test` too).
 */
#include "weights.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAXT 512

typedef struct manifest_entry {
    char name[128];
    char dtype[8];
    int32_t ndim;
    int64_t shape[PC_TENSOR_MAX_DIMS];
    int64_t offset; /* into the values array, -1 for integer tensors */
} manifest_entry;

typedef struct manifest {
    manifest_entry e[MAXT];
    int n;
    int nfloat;
    npy_array values;
} manifest;

static int load_manifest(const char *stem, manifest *m) {
    char p[2048];
    memset(m, 0, sizeof *m);
    FILE *f = fopen(ref_path(p, sizeof p, "weights/%s_manifest.txt", stem), "r");
    if (!f) return -1;
    char line[1024];
    while (fgets(line, sizeof line, f) && m->n < MAXT) {
        manifest_entry *e = &m->e[m->n];
        char *tok = strtok(line, " \n");
        if (!tok) continue;
        snprintf(e->name, sizeof e->name, "%s", tok);
        snprintf(e->dtype, sizeof e->dtype, "%s", strtok(NULL, " \n"));
        e->ndim = atoi(strtok(NULL, " \n"));
        for (int d = 0; d < e->ndim; d++) e->shape[d] = atoll(strtok(NULL, " \n"));
        e->offset = atoll(strtok(NULL, " \n"));
        if (e->offset >= 0) m->nfloat++;
        m->n++;
    }
    fclose(f);
    if (npy_load(ref_path(p, sizeof p, "weights/%s_values.npy", stem), &m->values) != 0) return -1;
    assert_string_equal(m->values.dtype, "<f4");
    return 0;
}

static pc_dtype dtype_of(const char *s) {
    if (!strcmp(s, "f32")) return PC_DTYPE_F32;
    if (!strcmp(s, "f16")) return PC_DTYPE_F16;
    if (!strcmp(s, "bf16")) return PC_DTYPE_BF16;
    if (!strcmp(s, "f64")) return PC_DTYPE_F64;
    if (!strcmp(s, "i64")) return PC_DTYPE_I64;
    if (!strcmp(s, "i32")) return PC_DTYPE_I32;
    return PC_DTYPE_OTHER;
}

/* Every tensor of the manifest (floats only if floats_only) is in d with the same dtype and shape and
 * bit-identical float32 values; d has nothing else. */
static void check_against(const pc_tensor_dict *d, const manifest *m, int floats_only, const char *what) {
    size_t expected = 0;
    for (int i = 0; i < m->n; i++) {
        const manifest_entry *e = &m->e[i];
        if (floats_only && e->offset < 0) continue;
        expected++;
        const pc_tensor *t = pc_tensor_dict_get(d, e->name);
        if (!t) fail_msg("%s: tensor %s missing", what, e->name);
        assert_int_equal(t->dtype, dtype_of(e->dtype));
        assert_int_equal(t->ndim, e->ndim);
        int64_t numel = 1;
        for (int k = 0; k < e->ndim; k++) {
            assert_int_equal(t->shape[k], e->shape[k]);
            numel *= e->shape[k];
        }
        assert_int_equal(t->numel, numel);
        if (e->offset < 0) {
            assert_null(t->data);
            continue;
        }
        assert_non_null(t->data);
        assert_true(e->offset + numel <= m->values.count);
        const float *ref = (const float *)m->values.data + e->offset;
        if (numel && memcmp(t->data, ref, (size_t)numel * 4) != 0) {
            for (int64_t k = 0; k < numel; k++)
                if (memcmp(&t->data[k], &ref[k], 4) != 0)
                    fail_msg("%s: %s[%lld] = %.9g, torch says %.9g", what, e->name, (long long)k, t->data[k], ref[k]);
        }
    }
    assert_int_equal(d->count, expected);
}

static void load_ok(const char *path, const char *format, pc_tensor_dict **d) {
    pc_status st = pc_weights_load(path, NULL, NULL, d);
    if (st != PC_OK) fail_msg("%s: %s (%s)", path, pc_last_error(), pc_status_str(st));
    assert_string_equal((*d)->format, format);
}

static void test_small(const char *file, const char *format, int floats_only) {
    manifest *m = malloc(sizeof *m);
    if (load_manifest("small", m) != 0) {
        free(m);
        TEST_SKIP_MSG("weights references not generated (run make refs)");
        return;
    }
    char p[2048];
    pc_tensor_dict *d;
    load_ok(ref_path(p, sizeof p, "weights/%s", file), format, &d);
    check_against(d, m, floats_only, file);
    /* Order is the file's: the state dict's for .pth, the header's for safetensors (ours keeps it). */
    assert_string_equal(d->tensors[0].name, "conv1.weight");
    pc_tensor_dict_free(d);
    npy_free(&m->values);
    free(m);
}

static void test_small_safetensors(void **state) {
    (void)state;
    test_small("small.safetensors", "safetensors", 0);
}

static void test_small_zip(void **state) {
    (void)state;
    test_small("small.pth", "pth-zip", 0);
}

static void test_small_zip_deflate(void **state) {
    (void)state;
    test_small("small_deflate.pth", "pth-zip", 0);
}

static void test_small_legacy(void **state) {
    (void)state;
    test_small("small_legacy.pth", "pth-legacy", 0);
}

/* The same tensors pickled with protocol 4, as nn.Parameters, and inside a training checkpoint. */
static void test_small_variants(void **state) {
    (void)state;
    test_small("small_p4.pth", "pth-zip", 0);
    test_small("small_param.pth", "pth-zip", 0);
    test_small("small_ckpt.pth", "pth-legacy", 0);
}

/* The same bytes from memory, and a filter that keeps only some tensors (skipped ones are absent). */
static int keep_bn(const char *name, void *user) {
    (*(int *)user)++;
    return strncmp(name, "bn1.", 4) == 0;
}

static void test_filter(void **state) {
    (void)state;
    static const char *files[] = {"small.safetensors", "small.pth", "small_legacy.pth", "small_deflate.pth"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char p[2048];
        uint8_t *buf;
        size_t len;
        if (pc_read_file(ref_path(p, sizeof p, "weights/%s", files[f]), &buf, &len) != PC_OK) {
            TEST_SKIP_MSG("weights references not generated (run make refs)");
            return;
        }
        int calls = 0;
        pc_tensor_dict *d;
        assert_int_equal(pc_weights_load_memory(buf, len, files[f], keep_bn, &calls, &d), PC_OK);
        assert_int_equal(calls, 13);
        assert_int_equal(d->count, 3);
        assert_non_null(pc_tensor_dict_get(d, "bn1.weight"));
        assert_non_null(pc_tensor_dict_get(d, "bn1.running_var"));
        assert_non_null(pc_tensor_dict_get(d, "bn1.num_batches_tracked"));
        assert_null(pc_tensor_dict_get(d, "conv1.weight"));
        pc_tensor_dict_free(d);
        pc_free(buf);
    }
}

/* A skipped tensor's storage is not read at all: the file with a damaged conv1.weight storage loads
 * when only bn1.* is asked for, and fails when everything is. */
static void test_filter_skips_reading(void **state) {
    (void)state;
    char p[2048];
    if (!ref_exists("weights/bad/crc_mismatch.pth")) {
        TEST_SKIP_MSG("weights references not generated (run make refs)");
        return;
    }
    ref_path(p, sizeof p, "weights/bad/crc_mismatch.pth");
    int calls = 0;
    pc_tensor_dict *d = NULL;
    assert_int_equal(pc_weights_load(p, keep_bn, &calls, &d), PC_OK);
    assert_int_equal(d->count, 3);
    pc_tensor_dict_free(d);
    assert_int_equal(pc_weights_load(p, NULL, NULL, &d), PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), "CRC"));
}

static void test_r18(const char *path, const char *format, int floats_only) {
    manifest *m = malloc(sizeof *m);
    if (!path || load_manifest("r18", m) != 0) {
        free(m);
        TEST_SKIP_MSG("../shared weights or their references absent");
        return;
    }
    pc_tensor_dict *d;
    load_ok(path, format, &d);
    check_against(d, m, floats_only, path);
    pc_tensor_dict_free(d);
    npy_free(&m->values);
    free(m);
}

static void test_r18_safetensors(void **state) {
    (void)state;
    char p[2048];
    test_r18(shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.safetensors"), "safetensors", 1);
}

static void test_r18_zip(void **state) {
    (void)state;
    char p[2048];
    test_r18(shared_path(p, sizeof p, "weights/resnet18_in1k_to_layer3.pth"), "pth-zip", 0);
}

static void test_r18_legacy(void **state) {
    (void)state;
    char p[2048];
    if (!ref_exists("weights/r18_legacy.pth")) {
        TEST_SKIP_MSG("r18_legacy.pth not generated (../shared absent when refs were made?)");
        return;
    }
    test_r18(ref_path(p, sizeof p, "weights/r18_legacy.pth"), "pth-legacy", 0);
}

/* ---- malformed files ---- */

static pc_status status_of(const char *s) {
    static const char *names[] = {"OK", "INVALID_ARGUMENT", "NO_MEMORY", "IO", "FORMAT", "UNSUPPORTED",
                                  "TOO_LARGE", "NOT_FOUND", "SHAPE", "VERSION", "CANCELLED", "INTERNAL"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (!strcmp(s, names[i])) return (pc_status)i;
    fail_msg("unknown status %s in expect.txt", s);
    return PC_ERR_INTERNAL;
}

static void test_bad_files(const char *only_prefix) {
    char p[2048];
    FILE *f = fopen(ref_path(p, sizeof p, "weights/bad/expect.txt"), "r");
    if (!f) {
        TEST_SKIP_MSG("weights references not generated (run make refs)");
        return;
    }
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char file[256], status[64], phrase[512];
        if (sscanf(line, "%255s %63s %511[^\n]", file, status, phrase) != 3) continue;
        if (only_prefix && strncmp(file, only_prefix, strlen(only_prefix)) != 0) continue;
        pc_tensor_dict *d = NULL;
        ref_path(p, sizeof p, "weights/bad/%s", file);
        pc_status st = pc_weights_load(p, NULL, NULL, &d);
        pc_status want = status_of(status);
        if (st != want)
            fail_msg("%s: got %s (%s), want %s", file, pc_status_str(st), pc_last_error(), status);
        if (want == PC_OK) {
            assert_non_null(d);
            pc_tensor_dict_free(d);
        } else {
            assert_null(d);
            const char *msg = pc_last_error();
            if (!strstr(msg, p)) fail_msg("%s: error does not name the file: %s", file, msg);
            if (!strstr(msg, phrase)) fail_msg("%s: error lacks '%s': %s", file, phrase, msg);
            print_message("  %-36s %s\n", file, msg + strlen(p) + 2);
        }
        n++;
    }
    fclose(f);
    assert_true(n > 0);
}

static void test_bad_files_all(void **state) {
    (void)state;
    test_bad_files(NULL);
}

/* Every prefix of a valid file at many cut points: a clean error (or, for cuts that leave a
 * self-consistent file, success), never a crash. Run under ASan. */
static void truncations(const char *file, int must_fail_all) {
    char p[2048];
    uint8_t *buf;
    size_t len;
    if (pc_read_file(ref_path(p, sizeof p, "weights/%s", file), &buf, &len) != PC_OK) {
        TEST_SKIP_MSG("weights references not generated (run make refs)");
        return;
    }
    int failures = 0, cuts = 0;
    for (size_t cut = 0; cut < len; cut += (cut < 64 || len - cut < 256) ? 1 : 1 + len / 97) {
        uint8_t *copy = malloc(cut ? cut : 1); /* exact size, so ASan sees any over-read */
        memcpy(copy, buf, cut);
        pc_tensor_dict *d = NULL;
        pc_status st = pc_weights_load_memory(copy, cut, file, NULL, NULL, &d);
        if (st == PC_OK) {
            assert_non_null(d);
            pc_tensor_dict_free(d);
        } else {
            assert_null(d);
            assert_non_null(strstr(pc_last_error(), file));
            failures++;
        }
        cuts++;
        free(copy);
    }
    if (must_fail_all) assert_int_equal(failures, cuts);
    pc_free(buf);
}

static void test_truncated(void **state) {
    (void)state;
    truncations("small.safetensors", 1);
    truncations("small.pth", 1);
    truncations("small_deflate.pth", 1);
    truncations("small_legacy.pth", 1);
}

/* The zip's central directory and end records damaged one byte at a time (every byte, two values):
 * never a crash; damage to a signature or an offset must fail. */
static void test_zip_central_directory(void **state) {
    (void)state;
    static const char *files[] = {"small.pth", "small_deflate.pth"};
    for (size_t f = 0; f < 2; f++) {
        char p[2048];
        uint8_t *buf;
        size_t len;
        if (pc_read_file(ref_path(p, sizeof p, "weights/%s", files[f]), &buf, &len) != PC_OK) {
            TEST_SKIP_MSG("weights references not generated (run make refs)");
            return;
        }
        /* Find the central directory through the plain end record (both files have one). */
        size_t eocd = len - 22;
        while (eocd > 0 && memcmp(buf + eocd, "PK\x05\x06", 4) != 0) eocd--;
        assert_true(eocd > 0);
        uint32_t cd = buf[eocd + 16] | buf[eocd + 17] << 8 | (uint32_t)buf[eocd + 18] << 16 | (uint32_t)buf[eocd + 19] << 24;
        if (cd == 0xffffffffu) { /* ZIP64 (torch): the 64-bit record has it */
            size_t z64 = eocd;
            while (z64 > 0 && memcmp(buf + z64, "PK\x06\x06", 4) != 0) z64--;
            cd = buf[z64 + 48] | buf[z64 + 49] << 8 | (uint32_t)buf[z64 + 50] << 16 | (uint32_t)buf[z64 + 51] << 24;
        }
        assert_true(cd < eocd && memcmp(buf + cd, "PK\x01\x02", 4) == 0);
        uint8_t *copy = malloc(len);
        int failed = 0, total = 0;
        for (size_t at = cd; at < len; at++)
            for (int v = 0; v < 2; v++) {
                memcpy(copy, buf, len);
                copy[at] = v ? 0xff : (uint8_t)(buf[at] ^ 0x01);
                pc_tensor_dict *d = NULL;
                pc_status st = pc_weights_load_memory(copy, len, files[f], NULL, NULL, &d);
                if (st == PC_OK) {
                    pc_tensor_dict_free(d);
                } else {
                    assert_null(d);
                    assert_non_null(strstr(pc_last_error(), files[f]));
                    failed++;
                }
                total++;
            }
        print_message("  %s: %d of %d single-byte corruptions of the central directory rejected\n", files[f], failed, total);
        /* Specific damage that must be caught. */
        memcpy(copy, buf, len);
        copy[cd] = 'X'; /* first central directory signature */
        pc_tensor_dict *d = NULL;
        assert_int_equal(pc_weights_load_memory(copy, len, files[f], NULL, NULL, &d), PC_ERR_FORMAT);
        assert_non_null(strstr(pc_last_error(), "central directory"));
        memcpy(copy, buf, len);
        memset(copy + cd + 42, 0xfe, 4); /* first entry's local header offset, past the end */
        assert_int_equal(pc_weights_load_memory(copy, len, files[f], NULL, NULL, &d), PC_ERR_FORMAT);
        assert_non_null(strstr(pc_last_error(), "local header"));
        memcpy(copy, buf, len);
        memset(copy + cd + 20, 0x7f, 3); /* first entry's compressed size */
        assert_int_not_equal(pc_weights_load_memory(copy, len, files[f], NULL, NULL, &d), PC_OK);
        free(copy);
        pc_free(buf);
    }
}

/* Random byte corruptions (a small fuzz run with a fixed seed): any status, never a crash. */
static void corruptions(const char *file, int iterations) {
    char p[2048];
    uint8_t *buf;
    size_t len;
    if (pc_read_file(ref_path(p, sizeof p, "weights/%s", file), &buf, &len) != PC_OK) {
        TEST_SKIP_MSG("weights references not generated (run make refs)");
        return;
    }
    uint8_t *copy = malloc(len);
    uint32_t rng = 12345;
    for (int it = 0; it < iterations; it++) {
        memcpy(copy, buf, len);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            rng = rng * 1664525u + 1013904223u;
            size_t at = (rng >> 8) % len;
            rng = rng * 1664525u + 1013904223u;
            copy[at] = (it & 1) ? (uint8_t)(rng >> 24) : (uint8_t)(copy[at] ^ (1u << (rng >> 29)));
        }
        pc_tensor_dict *d = NULL;
        pc_status st = pc_weights_load_memory(copy, len, file, NULL, NULL, &d);
        if (st == PC_OK) pc_tensor_dict_free(d);
        else assert_null(d);
    }
    free(copy);
    pc_free(buf);
}

static void test_corrupt(void **state) {
    (void)state;
    corruptions("small.safetensors", 400);
    corruptions("small.pth", 400);
    corruptions("small_deflate.pth", 400);
    corruptions("small_legacy.pth", 400);
}

/* The fast CRC-32 against zlib's (the reference): every length 0..1100 at 5 alignments, chained. */
static void test_crc32(void **state) {
    (void)state;
    size_t n = 1200;
    uint8_t *b = malloc(n);
    uint32_t rng = 7;
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)((rng = rng * 1664525u + 1013904223u) >> 24);
    for (size_t len = 0; len <= 1100; len++)
        for (size_t off = 0; off < 5; off++) {
            uint32_t seed = (uint32_t)(len * 2654435761u);
            assert_int_equal(pc_crc32(seed, b + off, len), pc_crc32_ref(seed, b + off, len));
        }
    assert_int_equal(pc_crc32(pc_crc32(0, b, 100), b + 100, 1000), pc_crc32_ref(0, b, 1100));
    assert_int_equal(pc_crc32(0, (const uint8_t *)"123456789", 9), 0xcbf43926u); /* the standard check value */
    free(b);
}

/* Every float16 bit pattern: the vectorised conversion equals the scalar reference bit for bit, and
 * the reference agrees with values worked out by hand. */
static void test_f16_all(void **state) {
    (void)state;
    uint16_t *h = malloc(65536 * sizeof *h + 2);
    float *out = malloc(65537 * sizeof *out);
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    pc_f16_to_f32(out, h, 65536);
    for (uint32_t i = 0; i < 65536; i++) {
        float r = pc_f16_to_f32_ref((uint16_t)i);
        if (memcmp(&r, &out[i], 4) != 0) fail_msg("f16 0x%04x: fast %a, reference %a", i, out[i], r);
    }
    /* odd start and length (the scalar tail) */
    pc_f16_to_f32(out, h + 1, 13);
    for (int i = 0; i < 13; i++) assert_memory_equal(&out[i], &(float){pc_f16_to_f32_ref(h[i + 1])}, 4);
    assert_true(pc_f16_to_f32_ref(0x3c00) == 1.0f);
    assert_true(pc_f16_to_f32_ref(0xc000) == -2.0f);
    assert_true(pc_f16_to_f32_ref(0x7bff) == 65504.0f);
    assert_true(pc_f16_to_f32_ref(0x0001) == 0x1p-24f);     /* smallest subnormal */
    assert_true(pc_f16_to_f32_ref(0x03ff) == 1023 * 0x1p-24f); /* largest subnormal */
    assert_true(pc_f16_to_f32_ref(0x0400) == 0x1p-14f);     /* smallest normal */
    assert_true(pc_f16_to_f32_ref(0x7c00) == __builtin_inff());
    float nz = pc_f16_to_f32_ref(0x8000);
    uint32_t bits, nanbits;
    memcpy(&bits, &nz, 4);
    assert_int_equal(bits, 0x80000000u);
    float sn = pc_f16_to_f32_ref(0x7c01); /* signalling NaN: payload kept, not quietened */
    memcpy(&nanbits, &sn, 4);
    assert_int_equal(nanbits, 0x7f802000u);
    free(h);
    free(out);
}

static void test_args(void **state) {
    (void)state;
    pc_tensor_dict *d = (pc_tensor_dict *)1;
    assert_int_equal(pc_weights_load("/nonexistent/w.pth", NULL, NULL, &d), PC_ERR_NOT_FOUND);
    assert_null(d);
    assert_non_null(strstr(pc_last_error(), "/nonexistent/w.pth"));
    assert_int_equal(pc_weights_load(NULL, NULL, NULL, &d), PC_ERR_INVALID_ARGUMENT);
    assert_int_equal(pc_weights_load("x", NULL, NULL, NULL), PC_ERR_INVALID_ARGUMENT);
    assert_null(pc_tensor_dict_get(NULL, "x"));
    pc_tensor_dict_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_f16_all),
        cmocka_unit_test(test_small_safetensors),
        cmocka_unit_test(test_small_zip),
        cmocka_unit_test(test_small_zip_deflate),
        cmocka_unit_test(test_small_legacy),
        cmocka_unit_test(test_small_variants),
        cmocka_unit_test(test_filter),
        cmocka_unit_test(test_filter_skips_reading),
        cmocka_unit_test(test_r18_safetensors),
        cmocka_unit_test(test_r18_zip),
        cmocka_unit_test(test_r18_legacy),
        cmocka_unit_test(test_bad_files_all),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_zip_central_directory),
        cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
