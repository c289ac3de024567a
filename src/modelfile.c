/*
 * modelfile.c - writing and validating the .pcm container (see modelfile.h, docs/model-format.md).
 * Writes are atomic (temporary file in the same folder + fsync + rename); reads memory-map the file
 * and check every size and offset before anything is used.
 */
#define _GNU_SOURCE
#include "modelfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

size_t pc_mf_dtype_size(pc_mf_dtype dtype) {
    switch (dtype) {
    case PC_MF_F32: return 4;
    case PC_MF_F16: return 2;
    case PC_MF_I64: return 8;
    case PC_MF_I32: return 4;
    case PC_MF_U8: return 1;
    }
    return 0;
}

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static uint64_t align_up(uint64_t x) { return (x + PC_MF_ALIGN - 1) & ~(uint64_t)(PC_MF_ALIGN - 1); }

/* ----------------------------------------------------------------------------------------------
 * Writing
 * -------------------------------------------------------------------------------------------- */

typedef struct mf_out {
    int fd;
    const char *path;
    uLong crc;
    uint64_t pos;
} mf_out;

static pc_status out_write(mf_out *o, const void *buf, size_t n, int checksum) {
    const uint8_t *p = buf;
    if (checksum) {
        size_t left = n;
        const uint8_t *q = p;
        while (left) { /* zlib's crc32 takes a uInt length */
            uInt chunk = left > (1u << 30) ? (1u << 30) : (uInt)left;
            o->crc = crc32(o->crc, q, chunk);
            q += chunk;
            left -= chunk;
        }
    }
    while (n) {
        long w = pc_write_some(o->fd, p, n, -1);
        if (w < 0) {
            if (errno == EINTR) continue;
            return pc_fail(PC_ERR_IO, "%s: write failed: %s", o->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
        o->pos += (uint64_t)w;
    }
    return PC_OK;
}

static pc_status out_pad(mf_out *o, uint64_t to) {
    static const uint8_t zeros[PC_MF_ALIGN];
    while (o->pos < to) {
        pc_status st = out_write(o, zeros, (size_t)PC_MIN(to - o->pos, (uint64_t)PC_MF_ALIGN), 1);
        if (st) return st;
    }
    return PC_OK;
}

pc_status pc_modelfile_write(const char *path, const char *meta, const pc_mf_tensor *tensors, size_t count) {
    return pc_modelfile_write_version(path, meta, tensors, count, 1);
}

pc_status pc_modelfile_write_version(const char *path, const char *meta, const pc_mf_tensor *tensors, size_t count,
                                     uint32_t version) {
    if (!path || (count && !tensors)) return pc_fail(PC_ERR_INVALID_ARGUMENT, "model file: no path or tensors given");
    if (version < 1 || version > PC_MF_VERSION)
        return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: container version %u is not in 1..%u", path, (unsigned)version,
                       (unsigned)PC_MF_VERSION);
    if (count > PC_MF_MAX_TENSORS) return pc_fail(PC_ERR_TOO_LARGE, "%s: too many tensors (%zu)", path, count);
    if (!meta) meta = "";
    size_t meta_size = strlen(meta);
    if (meta_size > PC_MF_MAX_META) return pc_fail(PC_ERR_TOO_LARGE, "%s: metadata too large", path);

    /* Layout first, so the header can be checksummed before the rest is streamed out. */
    uint64_t meta_off = PC_MF_HEADER_SIZE;
    uint64_t table_off = align_up(meta_off + meta_size);
    uint64_t data_off = align_up(table_off + (uint64_t)count * PC_MF_ENTRY_SIZE);
    uint8_t *table = pc_calloc(count ? count : 1, PC_MF_ENTRY_SIZE);
    if (!table) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", path);
    uint64_t pos = data_off;
    for (size_t i = 0; i < count; i++) {
        const pc_mf_tensor *t = &tensors[i];
        size_t es = pc_mf_dtype_size(t->dtype);
        size_t nlen = t->name ? strlen(t->name) : 0;
        if (!es || nlen == 0 || nlen >= PC_MF_NAME_MAX || t->ndim > PC_MF_MAX_DIMS || (!t->data && t->nbytes)) {
            pc_free(table);
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: bad tensor #%zu (%s)", path, i, t->name ? t->name : "?");
        }
        uint64_t numel = 1;
        for (uint32_t d = 0; d < t->ndim; d++) numel *= t->shape[d];
        if (numel * es != t->nbytes) {
            pc_free(table);
            return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: tensor %s: %llu bytes do not match its shape", path, t->name,
                           (unsigned long long)t->nbytes);
        }
        uint8_t *e = table + i * PC_MF_ENTRY_SIZE;
        memcpy(e, t->name, nlen);
        put_u32(e + 64, (uint32_t)t->dtype);
        put_u32(e + 68, t->ndim);
        for (uint32_t d = 0; d < PC_MF_MAX_DIMS; d++) put_u64(e + 72 + 8 * d, d < t->ndim ? t->shape[d] : 0);
        put_u64(e + 104, pos);
        put_u64(e + 112, t->nbytes);
        pos = align_up(pos + t->nbytes);
    }
    uint64_t file_size = pos;

    uint8_t hdr[PC_MF_HEADER_SIZE] = {0};
    memcpy(hdr, PC_MF_MAGIC, 8);
    put_u32(hdr + 8, version);
    put_u32(hdr + 12, PC_MF_HEADER_SIZE);
    put_u64(hdr + 16, file_size);
    put_u64(hdr + 24, meta_off);
    put_u64(hdr + 32, meta_size);
    put_u64(hdr + 40, table_off);
    put_u32(hdr + 48, (uint32_t)count);
    put_u32(hdr + 52, PC_MF_ENTRY_SIZE);

    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        pc_free(table);
        return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        pc_status st = pc_fail(PC_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(errno));
        free(tmp);
        pc_free(table);
        return st;
    }
    fchmod(fd, 0644);
    mf_out o = {fd, path, crc32(0L, Z_NULL, 0), 0};
    /* The CRC covers the header with its CRC field (bytes 56..59) taken as absent. */
    o.crc = crc32(o.crc, hdr, 56);
    o.crc = crc32(o.crc, hdr + 60, 4);
    pc_status st = out_write(&o, hdr, sizeof hdr, 0);
    if (!st) st = out_write(&o, meta, meta_size, 1);
    if (!st) st = out_pad(&o, table_off);
    if (!st) st = out_write(&o, table, count * PC_MF_ENTRY_SIZE, 1);
    for (size_t i = 0; !st && i < count; i++) {
        st = out_pad(&o, get_u64(table + i * PC_MF_ENTRY_SIZE + 104));
        if (!st) st = out_write(&o, tensors[i].data, tensors[i].nbytes, 1);
    }
    if (!st) st = out_pad(&o, file_size);
    if (!st) {
        put_u32(hdr + 56, (uint32_t)o.crc);
        if (pwrite(fd, hdr + 56, 4, 56) != 4) st = pc_fail(PC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    if (!st && fsync(fd) != 0) st = pc_fail(PC_ERR_IO, "%s: cannot flush to disk: %s", path, strerror(errno));
    if (close(fd) != 0 && !st) st = pc_fail(PC_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0) st = pc_fail(PC_ERR_IO, "%s: cannot rename the temporary file into place: %s", path, strerror(errno));
    if (st) unlink(tmp);
    free(tmp);
    pc_free(table);
    return st;
}

/* ----------------------------------------------------------------------------------------------
 * Reading
 * -------------------------------------------------------------------------------------------- */

typedef struct meta_kv {
    char *key, *value;
} meta_kv;

struct pc_modelfile {
    const uint8_t *base;
    size_t size;
    int mapped;
    uint32_t version;
    char *meta_text;
    char *meta_buf;
    meta_kv *kv;
    size_t n_kv;
    pc_mf_tensor *tensors;
    char (*names)[PC_MF_NAME_MAX];
    size_t count;
};

void pc_modelfile_close(pc_modelfile *mf) {
    if (!mf) return;
    if (mf->mapped && mf->base) munmap((void *)mf->base, mf->size);
    pc_free(mf->meta_text);
    pc_free(mf->meta_buf);
    pc_free(mf->kv);
    pc_free(mf->tensors);
    pc_free(mf->names);
    pc_free(mf);
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) *--e = '\0';
    return s;
}

/* Split the metadata into key/value pairs; they point into meta_buf, a copy cut up in place. */
static pc_status parse_meta(pc_modelfile *mf, const char *name) {
    size_t len = strlen(mf->meta_text), lines = 1;
    for (const char *p = mf->meta_text; *p; p++) lines += *p == '\n';
    mf->kv = pc_calloc(lines, sizeof(meta_kv));
    mf->meta_buf = pc_malloc(len + 1);
    if (!mf->kv || !mf->meta_buf) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", name);
    memcpy(mf->meta_buf, mf->meta_text, len + 1);
    for (char *line = mf->meta_buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        char *eq = strchr(line, '=');
        if (eq) {
            *eq = '\0';
            mf->kv[mf->n_kv].key = trim(line);
            mf->kv[mf->n_kv].value = trim(eq + 1);
            mf->n_kv++;
        } else if (*trim(line)) {
            return pc_fail(PC_ERR_FORMAT, "%s: metadata line without '=': \"%.40s\"", name, line);
        }
        line = nl ? nl + 1 : NULL;
    }
    return PC_OK;
}

static pc_status validate(pc_modelfile *mf, const char *name) {
    const uint8_t *b = mf->base;
    size_t size = mf->size;
    if (size < PC_MF_HEADER_SIZE || memcmp(b, PC_MF_MAGIC, 8) != 0) {
        if (size >= 4 && memcmp(b, "PK\x03\x04", 4) == 0)
            return pc_fail(PC_ERR_FORMAT, "%s: this is a PyTorch .pth file, not a patchcore model (use --weights for backbone weights)", name);
        return pc_fail(PC_ERR_FORMAT, "%s: not a patchcore model file (bad magic)", name);
    }
    mf->version = get_u32(b + 8);
    if (mf->version > PC_MF_VERSION)
        return pc_fail(PC_ERR_VERSION, "%s: model format version %u is newer than this patchcore understands (%u); upgrade patchcore or re-fit the model",
                       name, mf->version, PC_MF_VERSION);
    if (mf->version == 0) return pc_fail(PC_ERR_FORMAT, "%s: bad model format version 0", name);
    uint64_t file_size = get_u64(b + 16), meta_off = get_u64(b + 24), meta_size = get_u64(b + 32);
    uint64_t table_off = get_u64(b + 40);
    uint32_t count = get_u32(b + 48), entry_size = get_u32(b + 52);
    if (get_u32(b + 12) != PC_MF_HEADER_SIZE || entry_size != PC_MF_ENTRY_SIZE)
        return pc_fail(PC_ERR_FORMAT, "%s: bad header or table entry size", name);
    if (file_size != size)
        return pc_fail(PC_ERR_FORMAT, "%s: file is %zu bytes but its header says %llu (truncated or corrupted)", name, size,
                       (unsigned long long)file_size);
    if (meta_off < PC_MF_HEADER_SIZE || meta_off > size || meta_size > size - meta_off || meta_size > PC_MF_MAX_META)
        return pc_fail(PC_ERR_FORMAT, "%s: metadata lies outside the file", name);
    if (count > PC_MF_MAX_TENSORS || table_off > size || (uint64_t)count * PC_MF_ENTRY_SIZE > size - table_off)
        return pc_fail(PC_ERR_FORMAT, "%s: tensor table lies outside the file", name);
    /* CRC before any content is interpreted. */
    uLong crc = crc32(0L, Z_NULL, 0);
    crc = crc32(crc, b, 56);
    crc = crc32(crc, b + 60, 4);
    for (size_t off = PC_MF_HEADER_SIZE; off < size;) {
        uInt chunk = (uInt)PC_MIN(size - off, (size_t)1 << 30);
        crc = crc32(crc, b + off, chunk);
        off += chunk;
    }
    if ((uint32_t)crc != get_u32(b + 56))
        return pc_fail(PC_ERR_FORMAT, "%s: checksum mismatch (the file is corrupted)", name);

    mf->meta_text = pc_malloc(meta_size + 1);
    if (!mf->meta_text) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", name);
    memcpy(mf->meta_text, b + meta_off, meta_size);
    mf->meta_text[meta_size] = '\0';
    if (strlen(mf->meta_text) != meta_size) return pc_fail(PC_ERR_FORMAT, "%s: metadata contains a NUL byte", name);
    pc_status st = parse_meta(mf, name);
    if (st) return st;

    mf->count = count;
    mf->tensors = pc_calloc(count ? count : 1, sizeof(pc_mf_tensor));
    mf->names = pc_calloc(count ? count : 1, PC_MF_NAME_MAX);
    if (!mf->tensors || !mf->names) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", name);
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = b + table_off + (uint64_t)i * PC_MF_ENTRY_SIZE;
        pc_mf_tensor *t = &mf->tensors[i];
        memcpy(mf->names[i], e, PC_MF_NAME_MAX);
        if (memchr(mf->names[i], '\0', PC_MF_NAME_MAX) == NULL || mf->names[i][0] == '\0')
            return pc_fail(PC_ERR_FORMAT, "%s: tensor #%u has a bad name", name, i);
        t->name = mf->names[i];
        t->dtype = (pc_mf_dtype)get_u32(e + 64);
        t->ndim = get_u32(e + 68);
        size_t es = pc_mf_dtype_size(t->dtype);
        if (!es || t->ndim > PC_MF_MAX_DIMS)
            return pc_fail(PC_ERR_FORMAT, "%s: tensor %s: unknown dtype %u or %u dimensions", name, t->name,
                           (unsigned)t->dtype, t->ndim);
        uint64_t numel = 1;
        for (uint32_t d = 0; d < PC_MF_MAX_DIMS; d++) {
            t->shape[d] = get_u64(e + 72 + 8 * d);
            if (d < t->ndim && __builtin_mul_overflow(numel, t->shape[d], &numel))
                return pc_fail(PC_ERR_FORMAT, "%s: tensor %s: shape overflows", name, t->name);
        }
        uint64_t off = get_u64(e + 104), nbytes = get_u64(e + 112), want;
        if (__builtin_mul_overflow(numel, (uint64_t)es, &want) || want != nbytes)
            return pc_fail(PC_ERR_FORMAT, "%s: tensor %s: byte count does not match its shape", name, t->name);
        if (off % PC_MF_ALIGN || off > size || nbytes > size - off)
            return pc_fail(PC_ERR_FORMAT, "%s: tensor %s lies outside the file or is misaligned", name, t->name);
        t->data = b + off;
        t->nbytes = nbytes;
    }
    return PC_OK;
}

static pc_status open_common(pc_modelfile *mf, const char *name, pc_modelfile **out) {
    pc_status st = validate(mf, name);
    if (st) {
        pc_modelfile_close(mf);
        return st;
    }
    *out = mf;
    return PC_OK;
}

pc_status pc_modelfile_open(const char *path, pc_modelfile **out) {
    if (!out || !path) return pc_fail(PC_ERR_INVALID_ARGUMENT, "model file: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pc_fail(PC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pc_fail(PC_ERR_IO, "%s: not a regular file", path);
    }
    if (st.st_size < (off_t)PC_MF_HEADER_SIZE) {
        close(fd);
        return pc_fail(PC_ERR_FORMAT, "%s: too short to be a patchcore model (%lld bytes)", path, (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return pc_fail(PC_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    pc_modelfile *mf = pc_calloc(1, sizeof *mf);
    if (!mf) {
        munmap(map, (size_t)st.st_size);
        return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", path);
    }
    mf->base = map;
    mf->size = (size_t)st.st_size;
    mf->mapped = 1;
    return open_common(mf, path, out);
}

pc_status pc_modelfile_open_memory(const void *buf, size_t len, const char *name, pc_modelfile **out) {
    if (!out || (!buf && len)) return pc_fail(PC_ERR_INVALID_ARGUMENT, "model file: NULL argument");
    *out = NULL;
    if (!name) name = "<memory>";
    if ((uintptr_t)buf % PC_MF_ALIGN) return pc_fail(PC_ERR_INVALID_ARGUMENT, "%s: buffer must be 64-byte aligned", name);
    pc_modelfile *mf = pc_calloc(1, sizeof *mf);
    if (!mf) return pc_fail(PC_ERR_NO_MEMORY, "%s: out of memory", name);
    mf->base = buf;
    mf->size = len;
    return open_common(mf, name, out);
}

uint32_t pc_modelfile_version(const pc_modelfile *mf) { return mf->version; }
const char *pc_modelfile_meta_text(const pc_modelfile *mf) { return mf->meta_text; }

const char *pc_modelfile_meta(const pc_modelfile *mf, const char *key) {
    for (size_t i = mf->n_kv; i-- > 0;) /* the last assignment wins */
        if (strcmp(mf->kv[i].key, key) == 0) return mf->kv[i].value;
    return NULL;
}

size_t pc_modelfile_tensor_count(const pc_modelfile *mf) { return mf->count; }
const pc_mf_tensor *pc_modelfile_tensor_at(const pc_modelfile *mf, size_t i) {
    return i < mf->count ? &mf->tensors[i] : NULL;
}
const pc_mf_tensor *pc_modelfile_tensor(const pc_modelfile *mf, const char *name) {
    for (size_t i = 0; i < mf->count; i++)
        if (strcmp(mf->tensors[i].name, name) == 0) return &mf->tensors[i];
    return NULL;
}
