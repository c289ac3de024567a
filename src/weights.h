/*
 * weights.h - reading tensor files users already have: PyTorch state dicts (.pth, zip format and the
 * legacy pre-1.6 format) and .safetensors. Internal to the library; the backbone loader builds on it.
 *
 * No pickle is ever executed: the pickle reader understands only the opcodes and globals a state dict
 * needs (collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.*Storage, persistent ids)
 * and rejects anything else with a message naming the file and the offending opcode or global.
 */
#ifndef PC_WEIGHTS_H
#define PC_WEIGHTS_H

#include "internal.h"

/* Element types as stored in the file; data is always converted to float32 on load for the float
 * types. Integer tensors (num_batches_tracked) are kept only as metadata (data == NULL). */
typedef enum pc_dtype {
    PC_DTYPE_F32 = 0,
    PC_DTYPE_F16 = 1,
    PC_DTYPE_BF16 = 2,
    PC_DTYPE_F64 = 3,
    PC_DTYPE_I64 = 4,
    PC_DTYPE_I32 = 5,
    PC_DTYPE_OTHER = 6
} pc_dtype;

#define PC_TENSOR_MAX_DIMS 8

typedef struct pc_tensor {
    char *name;                         /* e.g. "layer2.0.downsample.1.running_var" */
    pc_dtype dtype;                     /* as stored in the file */
    int32_t ndim;
    int64_t shape[PC_TENSOR_MAX_DIMS];
    int64_t numel;
    float *data;                        /* numel float32 values, 64-byte aligned, or NULL for integer and
                                           other non-float tensors. Owned by the dictionary (all tensors
                                           share one allocation): never free it on its own. */
} pc_tensor;

typedef struct pc_tensor_dict {
    pc_tensor *tensors;                 /* in the file's order (the state dict's, or the header's) */
    size_t count;
    char format[32];                    /* "pth-zip", "pth-legacy" or "safetensors" */
    /* private: the one allocation holding every tensor's data (pc_malloc'd, or mapped when large) */
    void *arena;
    void *arena_map;
    size_t arena_map_len;
} pc_tensor_dict;

/* Optional filter: return non-zero to load a tensor's data, 0 to skip it (it is then not in the
 * dictionary at all, and its bytes are never converted). NULL loads everything. */
typedef int (*pc_tensor_filter)(const char *name, void *user);

/* Load every tensor of a .pth (zip or legacy) or .safetensors file; the format is detected from the
 * contents, not the name. Declared sizes and offsets are validated against the file size before use.
 * Errors name the file and what is wrong (truncated zip, unknown dtype, forbidden pickle global ...).
 * On success *out is a new dictionary (free with pc_tensor_dict_free); on failure *out is NULL.
 * The file is mapped, read once, and unmapped before returning. Thread-safe (no shared state); the
 * conversion of large files runs on the OpenMP threads (pc_set_num_threads). docs/weights.md has the
 * formats, the pickle subset and the limits. */
pc_status pc_weights_load(const char *path, pc_tensor_filter filter, void *user, pc_tensor_dict **out);

/* The same from memory (used by the fuzz targets); name is for messages. */
pc_status pc_weights_load_memory(const uint8_t *buf, size_t len, const char *name, pc_tensor_filter filter,
                                 void *user, pc_tensor_dict **out);

/* The tensor with this exact name, or NULL. */
const pc_tensor *pc_tensor_dict_get(const pc_tensor_dict *d, const char *name);

void pc_tensor_dict_free(pc_tensor_dict *d);

/* float16 -> float32, exact for every value (NaN payloads kept): pc_f16_to_f32 converts n values
 * (vectorised where the CPU allows), pc_f16_to_f32_ref is the plain scalar reference. */
void pc_f16_to_f32(float *out, const uint16_t *src, size_t n);
float pc_f16_to_f32_ref(uint16_t h);

/* CRC-32 of the zip format (as zlib's crc32): pc_crc32 uses carry-less multiplication where the CPU
 * has it, pc_crc32_ref is zlib's, kept as the reference. Start with crc = 0; chainable. */
uint32_t pc_crc32(uint32_t crc, const uint8_t *buf, size_t len);
uint32_t pc_crc32_ref(uint32_t crc, const uint8_t *buf, size_t len);

#endif
