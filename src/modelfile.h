/*
 * modelfile.h - the container behind .pcm model files: a fixed header, UTF-8 "key = value" metadata,
 * a tensor table and 64-byte-aligned tensor data, protected by a CRC-32. Memory-mapped on open.
 * The byte layout is documented in docs/model-format.md; what the keys and tensors mean is model.c's
 * business. Internal to the library.
 */
#ifndef PC_MODELFILE_H
#define PC_MODELFILE_H

#include "internal.h"

#define PC_MF_MAGIC "PCMODEL\x1a"
/* The newest container version this code reads. Version 1 holds one model; version 2 (an ensemble,
 * model-format.md) is written only for ensembles, so that single models stay readable by older
 * readers and older readers refuse an ensemble as "newer"; version 3 (a model with a region of
 * interest, docs/roi.md) likewise only when the model has one. */
#define PC_MF_VERSION 3u
#define PC_MF_HEADER_SIZE 64u
#define PC_MF_ENTRY_SIZE 128u
#define PC_MF_NAME_MAX 64u /* including the terminating NUL */
#define PC_MF_MAX_DIMS 4
#define PC_MF_ALIGN 64u
#define PC_MF_MAX_TENSORS 100000u
#define PC_MF_MAX_META (16u << 20)

typedef enum pc_mf_dtype {
    PC_MF_F32 = 0,
    PC_MF_F16 = 1,
    PC_MF_I64 = 2,
    PC_MF_I32 = 3,
    PC_MF_U8 = 4
} pc_mf_dtype;

typedef struct pc_mf_tensor {
    const char *name;   /* at most PC_MF_NAME_MAX-1 bytes */
    pc_mf_dtype dtype;
    uint32_t ndim;      /* 0..PC_MF_MAX_DIMS */
    uint64_t shape[PC_MF_MAX_DIMS];
    const void *data;   /* for reading: points into the mapping, 64-byte aligned */
    uint64_t nbytes;
} pc_mf_tensor;

/* Size in bytes of one element of dtype (0 for an unknown dtype). */
size_t pc_mf_dtype_size(pc_mf_dtype dtype);

/* Write a model file atomically: the bytes go to a temporary file in the same folder, are flushed
 * to disk, and only then renamed over path, so a failure leaves any previous file at path intact and
 * no half-written file behind. meta is "key = value\n" lines (may be NULL). */
pc_status pc_modelfile_write(const char *path, const char *meta, const pc_mf_tensor *tensors, size_t count);
/* The same with an explicit container version (1 .. PC_MF_VERSION); pc_modelfile_write writes 1. */
pc_status pc_modelfile_write_version(const char *path, const char *meta, const pc_mf_tensor *tensors, size_t count,
                                     uint32_t version);

typedef struct pc_modelfile pc_modelfile;

/* Open (memory-map) and validate a model file: magic, version (a newer version gives
 * PC_ERR_VERSION), declared sizes against the file size, every table entry and offset, and the CRC.
 * Nothing is trusted before it is checked. */
pc_status pc_modelfile_open(const char *path, pc_modelfile **out);
/* The same on a buffer the caller keeps alive while the handle is open (fuzzing, tests). */
pc_status pc_modelfile_open_memory(const void *buf, size_t len, const char *name, pc_modelfile **out);
void pc_modelfile_close(pc_modelfile *mf);

uint32_t pc_modelfile_version(const pc_modelfile *mf);
/* The whole metadata text (NUL-terminated copy owned by mf). */
const char *pc_modelfile_meta_text(const pc_modelfile *mf);
/* The value of key (NUL-terminated, owned by mf) or NULL when absent. */
const char *pc_modelfile_meta(const pc_modelfile *mf, const char *key);
size_t pc_modelfile_tensor_count(const pc_modelfile *mf);
const pc_mf_tensor *pc_modelfile_tensor_at(const pc_modelfile *mf, size_t i);
/* The tensor with that name, or NULL. */
const pc_mf_tensor *pc_modelfile_tensor(const pc_modelfile *mf, const char *name);

#endif
