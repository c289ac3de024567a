/*
 * internal.h - helpers shared by the library's sources and never installed: error reporting into the
 * thread-local last-error buffer, overflow-checked size arithmetic, and small utilities.
 */
#ifndef PC_INTERNAL_H
#define PC_INTERNAL_H

#include "patchcore.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PC_ERRMSG_MAX 1024

/* Record a failure: formats the message into this thread's last-error buffer and returns status,
 * so callers can write `return pc_fail(PC_ERR_FORMAT, "%s: bad header", path);`. */
pc_status pc_fail(pc_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
pc_status pc_failv(pc_status status, const char *fmt, va_list ap);

/* Prefix the current last-error message with "prefix: " (to add context such as a file name when an
 * inner call failed) and return status unchanged. */
pc_status pc_fail_context(pc_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clear this thread's last error (called at the start of public entry points). */
void pc_clear_error(void);

/* Copy this thread's last error into an object's own buffer (size PC_ERRMSG_MAX). */
void pc_copy_error(char *dst);

/* Overflow-checked size arithmetic (stb_image's mul2sizes_valid idea): return false on overflow. */
static inline bool pc_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool pc_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}
static inline bool pc_mul3_size(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    return pc_mul_size(a, b, &t) && pc_mul_size(t, c, out);
}

/* CLOCK_MONOTONIC in seconds (src/cancel.c): deadlines, and the time a stage spends talking. */
double pc_monotonic_seconds(void);

/* Allocation helpers: aligned (64 bytes, for SIMD and cache lines), counted, NULL on failure.
 * pc_malloc(0) returns a valid unique pointer. Free with pc_free. The fault-injection hook
 * (PC_FAULT_ALLOC environment variable in test builds) lives behind these. */
void *pc_malloc(size_t size);
void *pc_calloc(size_t n, size_t size);
void pc_free(void *p);

/* Write fault injection for tests (PC_FAULT_WRITE=N, see status.c): true when this write must fail;
 * the caller then fails as if write() had returned ENOSPC. */
int pc_fault_write(void);

/* One write(2) (off < 0) or pwrite(2) at off of at most 1 GiB of buf, through the fault hook above
 * (a failing write returns -1 with errno ENOSPC). Returns what the call returned. */
long pc_write_some(int fd, const void *buf, size_t n, int64_t off);

/* Make the calling thread's OpenMP thread count the one the library uses for it: the thread's own
 * (pc_set_num_threads_local), else the process-wide one (pc_set_num_threads; pc_default_num_threads
 * until that is called). OpenMP keeps the count per thread, so a setting made on one thread does not
 * reach threads created by the caller. Called at the top of every public function that runs parallel
 * work; no effect inside a parallel region. */
void pc_threads_apply(void);

/* The calling thread's own count (pc_set_num_threads_local), 0 if none. */
int32_t pc_threads_local(void);

/* PC_OK, or PC_ERR_CANCELLED (with a message naming stage, e.g. "before the backbone") once the
 * calling thread's deadline (pc_set_deadline_local; src/cancel.c) has passed. Call it on the thread
 * that called the public function, outside parallel regions. */
pc_status pc_deadline_check(const char *stage);
/* The calling thread's deadline (0: none), to hand to parallel loops, and whether it has passed (on any
 * thread: a clock read; false for 0). */
double pc_deadline_get(void);
bool pc_deadline_passed(double deadline);

/* CPU limits from cgroup files (pure parsers, tested on strings; docs/threads.md). From a v1 pair
 * (cpu.cfs_quota_us, cpu.cfs_period_us) or a v2 cpu.max line "QUOTA PERIOD": ceil(quota / period);
 * 0 = no limit ("max", "-1", a non-positive period or anything that is not two whole numbers). */
int32_t pc_cpu_limit_from_quota(const char *quota, const char *period);
int32_t pc_cpu_limit_from_cpu_max(const char *text);

/* The CPU limit of the cgroups listed in self_cgroup (the format of /proc/self/cgroup) under root
 * (/sys/fs/cgroup): the smallest of cgroup v2 cpu.max and v1 cpu.cfs_quota_us / cpu.cfs_period_us
 * (under ROOT/cpu, ROOT/cpu,cpuacct or ROOT/cpuacct,cpu) over the group and its ancestors; 0 = none. */
int32_t pc_cgroup_cpu_limit(const char *self_cgroup, const char *root);

/* Run fn(user, i) for i = 0..n-1 on `jobs` threads (the caller's plus jobs - 1 started here), each
 * with pc_set_num_threads_local(threads_each), taking items in order. On the first failing item f
 * (lowest index), items after f are no longer started and every item before f is still run, so the
 * result is the serial loop's: the status of f with its message on the calling thread (or PC_OK).
 * fn must be thread-safe. jobs <= 1 runs the loop on the caller's thread. */
typedef pc_status (*pc_job_fn)(void *user, size_t i);
pc_status pc_jobs_run(int32_t jobs, int32_t threads_each, size_t n, pc_job_fn fn, void *user);

/* Read a whole file into memory (pc_malloc'd). Errors name the path. */
pc_status pc_read_file(const char *path, uint8_t **data, size_t *size);

#define PC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PC_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif /* PC_INTERNAL_H */
