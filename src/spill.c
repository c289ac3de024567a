/*
 * spill.c - the unlinked temporary file behind bounded-memory fits (see spill.h).
 */
#define _GNU_SOURCE
#include "spill.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GB(x) ((double)(x) / 1e9)

pc_status pc_spill_open(pc_spill *s, uint64_t bytes) {
    s->fd = -1;
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    int len = snprintf(s->path, sizeof s->path, "%s%spatchcore-fit-XXXXXX", dir,
                       dir[strlen(dir) - 1] == '/' ? "" : "/");
    if (len < 0 || (size_t)len >= sizeof s->path)
        return pc_fail(PC_ERR_IO, "fit: temporary folder name too long: %s (TMPDIR)", dir);
    int fd = mkostemp(s->path, O_CLOEXEC);
    if (fd < 0)
        return pc_fail(PC_ERR_IO, "fit: cannot create a temporary file for the training features in %s (TMPDIR): %s",
                       dir, strerror(errno));
    unlink(s->path); /* from now on the file only lives as long as fd */
    if (bytes > 0 && fallocate(fd, 0, 0, (off_t)bytes) != 0 && errno != EOPNOTSUPP && errno != ENOSYS) {
        int e = errno;
        close(fd);
        return pc_fail(PC_ERR_IO,
                       "fit: cannot reserve %.2f GB for the training features in the temporary file %s: %s "
                       "(set TMPDIR to a folder with more free space)",
                       GB(bytes), s->path, strerror(e));
    }
    s->fd = fd;
    return PC_OK;
}

pc_status pc_spill_write(pc_spill *s, uint64_t off, const void *buf, size_t n) {
    const uint8_t *p = buf;
    while (n) {
        long w = pc_write_some(s->fd, p, n, (int64_t)off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : EIO;
            return pc_fail(PC_ERR_IO, "fit: writing the training features to the temporary file %s failed after %.1f MB: "
                           "%s%s", s->path, (double)off / 1e6, strerror(e),
                           e == ENOSPC || e == EDQUOT ? " (set TMPDIR to a folder with more free space)" : "");
        }
        p += w, off += (uint64_t)w, n -= (size_t)w;
    }
    return PC_OK;
}

pc_status pc_spill_read(pc_spill *s, uint64_t off, void *buf, size_t n) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(s->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return pc_fail(PC_ERR_IO, "fit: reading the training features back from the temporary file %s failed at "
                           "byte %llu: %s", s->path, (unsigned long long)off, r < 0 ? strerror(errno) : "unexpected end of file");
        p += r, off += (uint64_t)r, n -= (size_t)r;
    }
    return PC_OK;
}

void pc_spill_close(pc_spill *s) {
    if (s && s->fd >= 0) close(s->fd);
    if (s) s->fd = -1;
}
