/*
 * testutil.h - what every C test shares: where reference tensors and ../shared live, a .npy reader
 * for the arrays the Python oracle scripts (tests/ref/gen_*.py) write, and error measures.
 */
#ifndef PC_TESTUTIL_H
#define PC_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

/* A .npy array as read: dtype is the numpy descr ("<f4", "|u1", "<i8", "<i4", "<f8"). */
typedef struct npy_array {
    char dtype[8];
    int ndim;
    int64_t shape[8];
    int64_t count;   /* product of shape */
    void *data;      /* count elements of dtype, malloc'd */
} npy_array;

/* Read PATH (absolute or relative to the reference directory). Returns 0 on success. */
int npy_load(const char *path, npy_array *out);
void npy_free(npy_array *a);

/* $PC_REF_DIR/<rel> into buf; returns buf. */
const char *ref_path(char *buf, size_t size, const char *fmt, ...);
/* $PC_SHARED_DIR/<rel> into buf; returns NULL (and prints why) when ../shared is absent. */
const char *shared_path(char *buf, size_t size, const char *rel);
/* True when the reference directory has this file (generators ran). */
int ref_exists(const char *rel);

/* max |a-b| / max |b| over n floats (the "relative error" of the project's tolerances). */
double max_rel_err(const float *a, const float *b, size_t n);
double max_abs_diff(const float *a, const float *b, size_t n);

/* Skip the current cmocka test with a message (prints "SKIP: why"). */
#define TEST_SKIP_MSG(...) do { print_message("SKIP: " __VA_ARGS__); print_message("\n"); skip(); } while (0)

#endif
