/*
 * spill.h - an unlinked temporary file for data that does not fit in a memory budget: fit writes the
 * training features there (one image's rows at a time) and reads the selected rows back. The file lives
 * in $TMPDIR (default /tmp) and is unlinked as soon as it is created, so nothing is left behind when the
 * process ends, however it ends. Internal to the library.
 */
#ifndef PC_SPILL_H
#define PC_SPILL_H

#include "internal.h"

typedef struct pc_spill {
    int fd;          /* -1 when closed */
    char path[1024]; /* the name it had, for messages ("... (deleted)" files are not visible) */
} pc_spill;

/* Create the file and reserve `bytes` of disk for it (fallocate, where the file system supports it,
 * so that a full disk is reported now rather than half-way through). Errors name the file and say
 * how much space was needed; PC_ERR_IO. */
pc_status pc_spill_open(pc_spill *s, uint64_t bytes);

/* Write / read n bytes at offset off (pwrite / pread, retried on EINTR and short counts). Errors name
 * the file; a write that fails with ENOSPC says so and suggests TMPDIR. PC_FAULT_WRITE applies to
 * writes. Thread-safe for disjoint ranges. */
pc_status pc_spill_write(pc_spill *s, uint64_t off, const void *buf, size_t n);
pc_status pc_spill_read(pc_spill *s, uint64_t off, void *buf, size_t n);

/* Close (the space is freed: the file has no name). A closed or zeroed-then-fd=-1 spill is fine. */
void pc_spill_close(pc_spill *s);

#endif
