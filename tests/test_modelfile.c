/*
 * test_modelfile.c - the .pcm container: round trip, atomic replacement, and rejection of truncated,
 * corrupted, future-version and hostile files with clear errors.
 */
#include "modelfile.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int setup(void **state) {
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/pc_test_modelfile_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    return system(cmd);
}
static int teardown(void **state) {
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

static float f32[3 * 5];
static int64_t i64[4] = {1, -2, 3, 1LL << 40};

static pc_status write_sample(const char *path, const char *meta) {
    for (int i = 0; i < 15; i++) f32[i] = (float)i * 0.5f - 3.0f;
    pc_mf_tensor t[2] = {
        {.name = "bank", .dtype = PC_MF_F32, .ndim = 2, .shape = {3, 5}, .data = f32, .nbytes = sizeof f32},
        {.name = "index", .dtype = PC_MF_I64, .ndim = 1, .shape = {4}, .data = i64, .nbytes = sizeof i64},
    };
    return pc_modelfile_write(path, meta, t, 2);
}

static void path_of(char *buf, const char *name) { snprintf(buf, 512, "%s/%s", dir, name); }

static void test_roundtrip(void **state) {
    (void)state;
    char p[512];
    path_of(p, "a.pcm");
    assert_int_equal(write_sample(p, "backbone = resnet18\nk=1\n  crop =  224 \n"), PC_OK);
    pc_modelfile *mf;
    assert_int_equal(pc_modelfile_open(p, &mf), PC_OK);
    assert_int_equal(pc_modelfile_version(mf), 1); /* single models are written as version 1 */
    assert_string_equal(pc_modelfile_meta(mf, "backbone"), "resnet18");
    assert_string_equal(pc_modelfile_meta(mf, "k"), "1");
    assert_string_equal(pc_modelfile_meta(mf, "crop"), "224");
    assert_null(pc_modelfile_meta(mf, "missing"));
    assert_int_equal(pc_modelfile_tensor_count(mf), 2);
    const pc_mf_tensor *b = pc_modelfile_tensor(mf, "bank");
    assert_non_null(b);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[0], 3);
    assert_int_equal(b->shape[1], 5);
    assert_int_equal((uintptr_t)b->data % PC_MF_ALIGN, 0);
    assert_memory_equal(b->data, f32, sizeof f32);
    const pc_mf_tensor *ix = pc_modelfile_tensor(mf, "index");
    assert_memory_equal(ix->data, i64, sizeof i64);
    assert_null(pc_modelfile_tensor(mf, "nope"));
    pc_modelfile_close(mf);
    pc_modelfile_close(NULL);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

static void copy_prefix(const char *src, const char *dst, long n, long flip_at) {
    FILE *f = fopen(src, "rb");
    unsigned char *buf = malloc((size_t)n);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (flip_at >= 0) buf[flip_at] ^= 0x40;
    f = fopen(dst, "wb");
    fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    free(buf);
}

static void test_truncated_and_corrupt(void **state) {
    (void)state;
    char p[512], q[512];
    path_of(p, "b.pcm");
    path_of(q, "bad.pcm");
    assert_int_equal(write_sample(p, "x = 1\n"), PC_OK);
    long n = file_size(p);
    pc_modelfile *mf = (pc_modelfile *)1;
    for (long cut = 0; cut < n; cut += (cut < 80 ? 7 : 61)) {
        copy_prefix(p, q, cut, -1);
        assert_int_equal(pc_modelfile_open(q, &mf), PC_ERR_FORMAT);
        assert_null(mf);
        assert_non_null(strstr(pc_last_error(), "bad.pcm"));
    }
    /* Any flipped byte past the magic/version is caught (by a size check or the checksum). */
    for (long at = 12; at < n; at += 13) {
        copy_prefix(p, q, n, at);
        pc_status st = pc_modelfile_open(q, &mf);
        assert_true(st == PC_ERR_FORMAT || st == PC_ERR_VERSION);
    }
    copy_prefix(p, q, n, 70); /* inside the metadata: only the checksum can tell */
    assert_int_equal(pc_modelfile_open(q, &mf), PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), "checksum"));
}

static void test_future_version_and_foreign(void **state) {
    (void)state;
    char p[512], q[512];
    path_of(p, "c.pcm");
    path_of(q, "future.pcm");
    assert_int_equal(write_sample(p, ""), PC_OK);
    long n = file_size(p);
    copy_prefix(p, q, n, -1);
    FILE *f = fopen(q, "r+b");
    fseek(f, 8, SEEK_SET);
    unsigned char v[4] = {PC_MF_VERSION + 1, 0, 0, 0};
    fwrite(v, 1, 4, f);
    fclose(f);
    pc_modelfile *mf;
    assert_int_equal(pc_modelfile_open(q, &mf), PC_ERR_VERSION);
    assert_non_null(strstr(pc_last_error(), "newer"));
    f = fopen(q, "wb");
    fputs("PK\x03\x04 this is a zip of some sort, long enough to pass the size check ...........", f);
    fclose(f);
    assert_int_equal(pc_modelfile_open(q, &mf), PC_ERR_FORMAT);
    assert_non_null(strstr(pc_last_error(), ".pth"));
    assert_int_equal(pc_modelfile_open("/nonexistent/m.pcm", &mf), PC_ERR_IO);
}

static int count_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* A write that fails part-way leaves the previous model intact and no temporary file behind. */
static void test_atomic_on_write_failure(void **state) {
    (void)state;
    char p[512];
    path_of(p, "atomic.pcm");
    assert_int_equal(write_sample(p, "generation = 1\n"), PC_OK);
    int before = count_files();
    for (int at = 1; at <= 6; at++) {
        char v[8];
        snprintf(v, sizeof v, "%d", at);
        setenv("PC_FAULT_WRITE", v, 1);
        pc_status st = write_sample(p, "generation = 2\n");
        unsetenv("PC_FAULT_WRITE");
        assert_int_equal(st, PC_ERR_IO);
        assert_non_null(strstr(pc_last_error(), "atomic.pcm"));
        assert_int_equal(count_files(), before);
        pc_modelfile *mf;
        assert_int_equal(pc_modelfile_open(p, &mf), PC_OK);
        assert_string_equal(pc_modelfile_meta(mf, "generation"), "1");
        pc_modelfile_close(mf);
    }
    char bad[512];
    path_of(bad, "no/such/dir/m.pcm");
    assert_int_equal(write_sample(bad, ""), PC_ERR_IO);
}

static void test_bad_arguments(void **state) {
    (void)state;
    char p[512];
    path_of(p, "args.pcm");
    pc_mf_tensor t = {.name = "x", .dtype = PC_MF_F32, .ndim = 1, .shape = {4}, .data = f32, .nbytes = 12};
    assert_int_equal(pc_modelfile_write(p, "", &t, 1), PC_ERR_INVALID_ARGUMENT); /* 12 != 4*4 */
    t.nbytes = 16;
    t.name = "";
    assert_int_equal(pc_modelfile_write(p, "", &t, 1), PC_ERR_INVALID_ARGUMENT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_truncated_and_corrupt),
        cmocka_unit_test(test_future_version_and_foreign),
        cmocka_unit_test(test_atomic_on_write_failure),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
