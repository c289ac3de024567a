/*
 * status.c - version, status strings, the thread-local last-error message, allocation wrappers,
 * whole-file reading and the shared thread count.
 */
#define _GNU_SOURCE /* sched_getaffinity, CPU_COUNT */
#include "internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sched.h>

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

/* ---------------------------------------------------------------------------------------------
 * Thread counts (docs/threads.md). Three levels: the process-wide count (pc_set_num_threads, or the
 * default: the CPUs this process may use), a per-thread count (pc_set_num_threads_local, what a job
 * running several images at once gives each of its threads) and OpenMP's per-thread ICV, which
 * pc_threads_apply makes equal to the first of those that is set on every public call.
 * ------------------------------------------------------------------------------------------- */

/* OpenBLAS (the OpenMP build) shares our OpenMP pool; its setter is declared here to avoid
 * depending on which cblas.h is first on the include path. */
extern void openblas_set_num_threads(int num_threads);

static int32_t g_threads;                /* 0: not set yet (pc_default_num_threads on first use) */
static _Thread_local int32_t tl_threads; /* 0: none (g_threads applies) */

/* A positive integer at the start of s (after blanks), else 0. */
static long leading_long(const char *s, const char **end) {
    while (*s == ' ' || *s == '\t') s++;
    if (*s < '0' || *s > '9') return 0;
    char *e;
    errno = 0;
    long v = strtol(s, &e, 10);
    if (errno) return 0;
    if (end) *end = e;
    return v;
}

int32_t pc_cpu_limit_from_quota(const char *quota, const char *period) {
    if (!quota || !period) return 0;
    const char *qe = quota, *pe = period;
    long q = leading_long(quota, &qe), p = leading_long(period, &pe);
    /* only a whole number followed by blanks/newline counts ("max", "-1" or garbage: no limit) */
    while (*qe == ' ' || *qe == '\t' || *qe == '\n') qe++;
    while (*pe == ' ' || *pe == '\t' || *pe == '\n') pe++;
    if (q <= 0 || p <= 0 || *qe || *pe) return 0;
    long n = q / p + (q % p != 0); /* ceil: 150000/100000 may use 1.5 CPUs, so 2 threads keep it busy */
    return (int32_t)PC_MIN(n, 1L << 20);
}

int32_t pc_cpu_limit_from_cpu_max(const char *text) {
    if (!text) return 0;
    char q[32], p[32];
    /* "QUOTA PERIOD" or "max PERIOD" (cgroup v2 cpu.max) */
    if (sscanf(text, "%31s %31s", q, p) != 2) return 0;
    return pc_cpu_limit_from_quota(q, p);
}

/* The first line of a small file into buf; 0 on success. */
static int read_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char *r = fgets(buf, (int)size, f);
    fclose(f);
    return r ? 0 : -1;
}

/* The smallest positive of a and b (0 = none). */
static int32_t min_limit(int32_t a, int32_t b) { return a <= 0 ? b : b <= 0 ? a : PC_MIN(a, b); }

/* Whether the comma-separated list has the entry `name` ("cpu,cpuacct" has "cpu", "cpuset" has not). */
static bool has_entry(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, name, n) == 0 && (p[n] == ',' || p[n] == '\0')) return true;
    return false;
}

int32_t pc_cgroup_cpu_limit(const char *self_cgroup, const char *root) {
    char line[4096], path[8400], a[64], b[64];
    int32_t lim = 0;
    FILE *f = fopen(self_cgroup, "r");
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        /* "ID:CONTROLLERS:PATH"; cgroup v2 is "0::PATH" */
        char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/') continue;
        *c1 = *c2 = '\0'; /* line is now the ID, ctrl the controllers */
        const char *ctrl = c1 + 1;
        /* the group, then each ancestor up to the mount's root: a parent's quota binds its children,
         * and in a container without a cgroup namespace the path names the host's hierarchy while the
         * container's own group is mounted at the root */
        char g[4096];
        snprintf(g, sizeof g, "%s", c2 + 1);
        const bool v2 = strcmp(line, "0") == 0 && ctrl[0] == '\0';
        if (!v2 && !has_entry(ctrl, "cpu")) continue;
        for (;;) {
            const char *gs = strcmp(g, "/") == 0 ? "" : g;
            if (v2) {
                snprintf(path, sizeof path, "%s%s/cpu.max", root, gs);
                if (read_line(path, a, sizeof a) == 0) lim = min_limit(lim, pc_cpu_limit_from_cpu_max(a));
            } else { /* v1: the cpu controller's mount, by its usual names */
                static const char *const mounts[] = {"cpu", "cpu,cpuacct", "cpuacct,cpu"};
                for (int m = 0; m < 3; m++) {
                    snprintf(path, sizeof path, "%s/%s%s/cpu.cfs_quota_us", root, mounts[m], gs);
                    if (read_line(path, a, sizeof a) != 0) continue;
                    snprintf(path, sizeof path, "%s/%s%s/cpu.cfs_period_us", root, mounts[m], gs);
                    if (read_line(path, b, sizeof b) == 0) lim = min_limit(lim, pc_cpu_limit_from_quota(a, b));
                    break;
                }
            }
            char *slash = strrchr(g, '/');
            if (!slash || strcmp(g, "/") == 0) break;
            if (slash == g) g[1] = '\0'; /* "/a" -> "/" */
            else *slash = '\0';
        }
    }
    if (f) fclose(f);
    return lim;
}

int32_t pc_default_num_threads(void) {
    /* OMP_NUM_THREADS as the user set it wins (its first entry, as OpenMP reads "4,2") */
    const char *e = getenv("OMP_NUM_THREADS");
    long env = e ? leading_long(e, NULL) : 0;
    if (env > 0) return (int32_t)PC_MIN(env, 4096L);
    int32_t n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int32_t)PC_MIN(c, 4096L) : 1;
    }
    return min_limit(n, pc_cgroup_cpu_limit("/proc/self/cgroup", "/sys/fs/cgroup"));
}

void pc_set_num_threads(int32_t n) {
    if (n <= 0) n = pc_default_num_threads();
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    n = 1;
#endif
    __atomic_store_n(&g_threads, n, __ATOMIC_RELAXED);
    openblas_set_num_threads(n);
}

void pc_set_num_threads_local(int32_t n) { tl_threads = n > 0 ? n : 0; }

int32_t pc_threads_local(void) { return tl_threads; }

/* The count calls from this thread use: its own, else the process-wide one (set to the default on
 * first use). */
static int32_t effective_threads(void) {
    if (tl_threads > 0) return tl_threads;
    int32_t n = __atomic_load_n(&g_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
#ifdef _OPENMP
    n = pc_default_num_threads();
#else
    n = 1;
#endif
    int32_t expected = 0;
    if (__atomic_compare_exchange_n(&g_threads, &expected, n, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        openblas_set_num_threads(n);
    else
        n = expected; /* another thread got there first */
    return n;
}

void pc_threads_apply(void) {
#ifdef _OPENMP
    if (omp_in_parallel()) return;
    int32_t n = effective_threads();
    if (omp_get_max_threads() != n) omp_set_num_threads(n);
#endif
}

int32_t pc_get_num_threads(void) {
#ifdef _OPENMP
    return effective_threads();
#else
    return 1;
#endif
}

int32_t pc_default_num_jobs(int32_t threads) {
    if (threads <= 0) threads = pc_get_num_threads();
    /* PC_JOBS_THREADS threads per image: see docs/threads.md for the measurements behind it */
    return PC_MAX(1, threads / PC_JOBS_THREADS);
}

int32_t pc_job_threads(int32_t threads, int32_t jobs) {
    if (threads <= 0) threads = pc_get_num_threads();
    if (jobs <= 0) jobs = 1;
    return PC_MAX(1, threads / jobs);
}
