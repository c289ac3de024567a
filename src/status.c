/*
 * status.c - version, status strings, the thread-local last-error message, allocation wrappers,
 * whole-file reading and the shared thread count.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

const char *pc_version(void) { return PC_VERSION_STRING; }
int32_t pc_version_number(void) { return PC_VERSION_NUMBER; }

const char *pc_status_str(pc_status status) {
    switch (status) {
    case PC_OK: return "ok";
    case PC_ERR_INVALID_ARGUMENT: return "invalid argument";
    case PC_ERR_NO_MEMORY: return "out of memory";
    case PC_ERR_IO: return "input/output error";
    case PC_ERR_FORMAT: return "malformed file";
    case PC_ERR_UNSUPPORTED: return "unsupported";
    case PC_ERR_TOO_LARGE: return "too large";
    case PC_ERR_NOT_FOUND: return "not found";
    case PC_ERR_SHAPE: return "shape mismatch";
    case PC_ERR_VERSION: return "unsupported format version";
    case PC_ERR_CANCELLED: return "cancelled";
    case PC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

static _Thread_local char tl_error[PC_ERRMSG_MAX];

const char *pc_last_error(void) { return tl_error; }

void pc_clear_error(void) { tl_error[0] = '\0'; }

void pc_copy_error(char *dst) {
    memcpy(dst, tl_error, PC_ERRMSG_MAX);
    dst[PC_ERRMSG_MAX - 1] = '\0';
}

pc_status pc_failv(pc_status status, const char *fmt, va_list ap) {
    vsnprintf(tl_error, sizeof tl_error, fmt, ap);
    return status;
}

pc_status pc_fail(pc_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    pc_failv(status, fmt, ap);
    va_end(ap);
    return status;
}

pc_status pc_fail_context(pc_status status, const char *fmt, ...) {
    char prefix[PC_ERRMSG_MAX / 2], old[PC_ERRMSG_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", tl_error);
    if (old[0])
        snprintf(tl_error, sizeof tl_error, "%s: %s", prefix, old);
    else
        snprintf(tl_error, sizeof tl_error, "%s: %s", prefix, pc_status_str(status));
    return status;
}

/* Allocation fault injection for tests: PC_FAULT_ALLOC=N makes the N-th allocation (1-based) and
 * every later one fail. Read once; costs one branch per allocation otherwise. */
static long fault_alloc_at = -2;
static long alloc_count;

static int alloc_should_fail(void) {
    if (fault_alloc_at == -2) {
        const char *e = getenv("PC_FAULT_ALLOC");
        fault_alloc_at = e ? atol(e) : -1;
    }
    if (fault_alloc_at < 0) return 0;
    long n = __atomic_add_fetch(&alloc_count, 1, __ATOMIC_RELAXED);
    return n >= fault_alloc_at;
}

void *pc_malloc(size_t size) {
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    size_t rounded;
    if (!pc_add_size(size, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    if (rounded == 0) rounded = 64;
    if (posix_memalign(&p, 64, rounded) != 0) return NULL;
    return p;
}

void *pc_calloc(size_t n, size_t size) {
    size_t total;
    if (!pc_mul_size(n, size, &total)) return NULL;
    void *p = pc_malloc(total);
    if (p) memset(p, 0, total);
    return p;
}

void pc_free(void *p) { free(p); }

/* I/O fault injection for tests: PC_FAULT_WRITE=N makes the N-th write (1-based, counted over every
 * file the library writes: model files and fit's temporary feature file) and every later one fail. */
static long write_count;

int pc_fault_write(void) {
    const char *e = getenv("PC_FAULT_WRITE");
    if (!e) return 0;
    long at = atol(e);
    return at > 0 && __atomic_add_fetch(&write_count, 1, __ATOMIC_RELAXED) >= at;
}

long pc_write_some(int fd, const void *buf, size_t n, int64_t off) {
    if (pc_fault_write()) {
        errno = ENOSPC;
        return -1;
    }
    size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
    return off < 0 ? (long)write(fd, buf, chunk) : (long)pwrite(fd, buf, chunk, (off_t)off);
}

pc_status pc_read_file(const char *path, uint8_t **data, size_t *size) {
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return pc_fail(PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return pc_fail(PC_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = pc_malloc(n + 1);
    if (!buf) {
        fclose(f);
        return pc_fail(PC_ERR_NO_MEMORY, "%s: cannot allocate %zu bytes to read it", path, n);
    }
    size_t got = n ? fread(buf, 1, n, f) : 0;
    int err = ferror(f);
    fclose(f);
    if (got != n || err) {
        pc_free(buf);
        return pc_fail(PC_ERR_IO, "%s: read error (got %zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *data = buf;
    *size = n;
    return PC_OK;
}

/* OpenBLAS (the OpenMP build) shares our OpenMP pool; its setter is declared here to avoid
 * depending on which cblas.h is first on the include path. */
extern void openblas_set_num_threads(int num_threads);

static int32_t g_threads; /* 0: never set (OpenMP's own defaults, e.g. OMP_NUM_THREADS) */

void pc_set_num_threads(int32_t n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#else
    if (n <= 0) n = 1;
#endif
    __atomic_store_n(&g_threads, n, __ATOMIC_RELAXED);
    openblas_set_num_threads(n);
}

void pc_threads_apply(void) {
#ifdef _OPENMP
    int32_t n = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    if (n > 0 && !omp_in_parallel() && omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

int32_t pc_get_num_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
