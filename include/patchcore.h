/*
 * patchcore.h - the one public header of libpatchcore.
 *
 * libpatchcore implements PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly
 * Detection", CVPR 2022) in C: image decoding and torchvision-identical preprocessing, torchvision
 * ResNet-family backbones loaded from .pth / .safetensors weights, locally aware patch features, the
 * greedy coreset memory bank, exact nearest-neighbour scoring and anomaly maps.
 * docs/METHOD.md-level conventions are in ../shared/docs/METHOD.md; docs/ describes this API's use.
 *
 * Conventions (the same for every function below):
 *  - Every call that can fail returns a pc_status. PC_OK is 0. On failure a human-readable message
 *    naming the file and what was wrong is available from pc_last_error() on the calling thread, and,
 *    for calls on an object, also from that object's *_errmsg() function.
 *  - The creator frees. Every *_free() accepts NULL and does nothing then.
 *  - The library never prints and never exits. Long operations report through an optional
 *    pc_progress_fn callback.
 *  - Tensors are float32, row-major, in PyTorch's NCHW order unless said otherwise.
 *  - Thread safety is stated per function. Functions that take no object are thread-safe.
 */
#ifndef PATCHCORE_H
#define PATCHCORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define PC_API
#elif defined(__GNUC__)
#define PC_API __attribute__((visibility("default")))
#else
#define PC_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------- */
#define PC_VERSION_MAJOR 0
#define PC_VERSION_MINOR 1
#define PC_VERSION_PATCH 0
#define PC_VERSION_STRING "0.1.0"
/* MAJOR*1000000 + MINOR*1000 + PATCH, comparable with < and >. */
#define PC_VERSION_NUMBER (PC_VERSION_MAJOR * 1000000 + PC_VERSION_MINOR * 1000 + PC_VERSION_PATCH)

/* The version of the library actually linked (may differ from the header's macros). */
PC_API const char *pc_version(void);
PC_API int32_t pc_version_number(void);

/* ---------------------------------------------------------------------------------------------
 * Status codes. New codes are only ever appended; existing values never change.
 * ------------------------------------------------------------------------------------------- */
typedef enum pc_status {
    PC_OK = 0,
    PC_ERR_INVALID_ARGUMENT = 1, /* a NULL pointer, a size out of range, an unknown name */
    PC_ERR_NO_MEMORY = 2,        /* an allocation failed */
    PC_ERR_IO = 3,               /* a file could not be opened, read or written */
    PC_ERR_FORMAT = 4,           /* a file is malformed, truncated or corrupt */
    PC_ERR_UNSUPPORTED = 5,      /* well-formed, but a kind of file or feature we do not handle */
    PC_ERR_TOO_LARGE = 6,        /* a declared size exceeds a safety limit (decompression bombs) */
    PC_ERR_NOT_FOUND = 7,        /* a file, tensor or layer that is needed is absent */
    PC_ERR_SHAPE = 8,            /* a tensor's shape or dtype does not match what is expected */
    PC_ERR_VERSION = 9,          /* a file written by a newer, unknown format version */
    PC_ERR_CANCELLED = 10,       /* a progress callback asked to stop */
    PC_ERR_INTERNAL = 11         /* a bug: please report it */
} pc_status;

/* A short constant English description of a status code ("invalid argument", ...). Never NULL. */
PC_API const char *pc_status_str(pc_status status);

/* The message of the last failed call made on this thread ("" if none). The pointer stays valid
 * until the next libpatchcore call on the same thread. Thread-safe (thread-local storage). */
PC_API const char *pc_last_error(void);

/* Progress callback for long operations. stage is a short constant name ("features", "coreset", ...),
 * done/total count work units of that stage (total may be 0 when unknown). Return 0 to continue,
 * non-zero to cancel: the operation then stops soon and returns PC_ERR_CANCELLED. */
typedef int (*pc_progress_fn)(void *user, const char *stage, int64_t done, int64_t total);

/* ---------------------------------------------------------------------------------------------
 * Threads. One pool (OpenMP) is shared by libpatchcore and OpenBLAS; this sets both.
 * n <= 0 means "all cores". Not thread-safe: call it before starting work.
 * ------------------------------------------------------------------------------------------- */
PC_API void pc_set_num_threads(int32_t n);
PC_API int32_t pc_get_num_threads(void);

/* ---------------------------------------------------------------------------------------------
 * Images
 * ------------------------------------------------------------------------------------------- */

/* A decoded image: 8-bit, interleaved, row-major, `channels` samples per pixel (3 = RGB, 1 = grey).
 * The struct is plain data; data is owned by whoever filled it and released with pc_image_free. */
typedef struct pc_image {
    int32_t width;
    int32_t height;
    int32_t channels;
    uint8_t *data; /* width*height*channels bytes */
} pc_image;

/* Largest number of pixels a decoder accepts (decompression-bomb limit); same as PIL's default
 * MAX_IMAGE_PIXELS * 2 (178,956,970), beyond which PIL refuses to open a file too. */
#define PC_IMAGE_MAX_PIXELS 178956970LL

/* Decode a PNG or JPEG file (also BMP where supported, see docs/images.md) and convert it to 8-bit
 * RGB exactly as PIL's Image.convert("RGB") does: grey replicated, alpha dropped without compositing,
 * palette expanded, 16-bit samples reduced as PIL does. On failure *out is zeroed. */
PC_API pc_status pc_image_load(const char *path, pc_image *out);

/* The same from a buffer in memory; `name` is used in error messages only (may be NULL). */
PC_API pc_status pc_image_load_memory(const void *buf, size_t len, const char *name, pc_image *out);

/* Decode a ground-truth mask to 8-bit grey ("L" in PIL terms: convert("L") of whatever the file holds). */
PC_API pc_status pc_image_load_grey(const char *path, pc_image *out);

/* Release an image's pixels and zero the struct. NULL and an empty image are fine. */
PC_API void pc_image_free(pc_image *img);

/* ---------------------------------------------------------------------------------------------
 * Preprocessing (torchvision Resize(R) -> CenterCrop(S) -> ToTensor -> Normalize, METHOD.md §1)
 * ------------------------------------------------------------------------------------------- */

/* Where a crop lies in the resized image and how the resized image relates to the original;
 * used to undo the crop and resize (e.g. to draw a map on the original image). */
typedef struct pc_geometry {
    int32_t orig_width, orig_height;       /* the decoded image */
    int32_t resized_width, resized_height; /* after Resize(R) */
    int32_t crop_left, crop_top;           /* CenterCrop offsets in the resized image */
    int32_t crop_size;                     /* S */
} pc_geometry;

/* Compute the geometry of Resize(resize) -> CenterCrop(crop) for an image of width x height. */
PC_API pc_status pc_geometry_compute(int32_t width, int32_t height, int32_t resize, int32_t crop,
                                     pc_geometry *out);

/* PIL's Image.resize((out_w, out_h), Image.BILINEAR) on 8-bit data, bit for bit (antialiased,
 * two separable passes, rounding and clamping after each). out is out_w*out_h*channels bytes. */
PC_API pc_status pc_resize_bilinear_u8(uint8_t *out, int32_t out_w, int32_t out_h, const uint8_t *in,
                                       int32_t in_w, int32_t in_h, int32_t channels);

/* Resize + CenterCrop + scale + normalise an RGB image into out, a 3 x crop x crop float tensor.
 * Default mean/std are ImageNet's. geometry may be NULL. */
PC_API pc_status pc_preprocess(float *out, const pc_image *rgb, int32_t resize, int32_t crop,
                               pc_geometry *geometry);

/* The same geometry for an 8-bit grey mask: out (crop x crop bytes) is 1 where the resized value is
 * at least 128 (half of full scale) and 0 elsewhere; see METHOD.md §1. */
PC_API pc_status pc_preprocess_mask(uint8_t *out, const pc_image *grey, int32_t resize, int32_t crop);

/* ---------------------------------------------------------------------------------------------
 * Weights and backbones (METHOD.md §2)
 * ------------------------------------------------------------------------------------------- */

/* The torchvision architectures we implement. Values are stable (appended only). */
typedef enum pc_arch {
    PC_ARCH_UNKNOWN = 0,
    PC_ARCH_RESNET18 = 1,
    PC_ARCH_RESNET34 = 2,
    PC_ARCH_RESNET50 = 3,
    PC_ARCH_RESNET101 = 4,
    PC_ARCH_RESNET152 = 5,
    PC_ARCH_WIDE_RESNET50_2 = 6,
    PC_ARCH_WIDE_RESNET101_2 = 7,
    PC_ARCH_RESNEXT50_32X4D = 8,
    PC_ARCH_RESNEXT101_32X8D = 9
} pc_arch;

/* torchvision's name of an architecture ("wide_resnet50_2"), or "unknown". */
PC_API const char *pc_arch_name(pc_arch arch);
/* The architecture with that torchvision name, or PC_ARCH_UNKNOWN. */
PC_API pc_arch pc_arch_from_name(const char *name);

/* Layers are named layer1 .. layer4; a layer mask has bit (n-1) set for layerN. */
#define PC_LAYER(n) (1u << ((n)-1))

typedef struct pc_backbone pc_backbone;

/* Load a backbone from a torchvision state dict (.pth zip or legacy format) or a .safetensors file.
 * arch: PC_ARCH_UNKNOWN infers it from the tensor shapes. layer_mask: the layers that will be asked
 * for; tensors beyond the deepest one may be absent from the file and are not loaded. Batch-norm is
 * folded into the convolutions. path == NULL looks in $PATCHCORE_WEIGHTS, then torchvision's cache
 * ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints) for the architecture's
 * standard file name; the error message says where it looked. */
PC_API pc_status pc_backbone_load(const char *path, pc_arch arch, uint32_t layer_mask, pc_backbone **out);

PC_API void pc_backbone_free(pc_backbone *bb);
PC_API pc_arch pc_backbone_arch(const pc_backbone *bb);
/* The deepest layer loaded (1..4) and the number of output channels of layerN (0 if not loaded). */
PC_API int32_t pc_backbone_max_layer(const pc_backbone *bb);
PC_API int32_t pc_backbone_channels(const pc_backbone *bb, int32_t layer);
/* The spatial size of layerN's output for an input of in_h x in_w. */
PC_API pc_status pc_backbone_out_size(const pc_backbone *bb, int32_t layer, int32_t in_h, int32_t in_w,
                                      int32_t *out_h, int32_t *out_w);

/* Run the backbone on a batch of n preprocessed images (n x 3 x h x w) and write layerN's output to
 * outs[N-1] (n x C_N x H_N x W_N, caller-owned) for every layer in layer_mask; other entries are not
 * touched and may be NULL. Scratch memory is held by the backbone and reused between calls, so
 * forward is NOT thread-safe on one backbone: use one backbone per thread, or the model API, whose
 * predict is thread-safe. */
PC_API pc_status pc_backbone_forward(pc_backbone *bb, const float *in, int32_t n, int32_t h, int32_t w,
                                     uint32_t layer_mask, float *const outs[4]);

/* Reserve the backbone's scratch memory for batches of up to n images of h x w, so that forward
 * allocates nothing later (forward otherwise grows it when a bigger input first arrives). */
PC_API pc_status pc_backbone_reserve(pc_backbone *bb, int32_t n, int32_t h, int32_t w);

/* The message of the last failed call on this backbone ("" if none). Valid until the next call on it. */
PC_API const char *pc_backbone_errmsg(const pc_backbone *bb);

/* The file the backbone was loaded from (useful when pc_backbone_load was given path == NULL). */
PC_API const char *pc_backbone_path(const pc_backbone *bb);

/* What a weights file holds, without building a backbone (for `patchcore info`). */
typedef struct pc_weights_info {
    pc_arch arch;           /* inferred from the tensor shapes (PC_ARCH_UNKNOWN if none fits) */
    uint32_t layer_mask;    /* layers whose every tensor is present with the right shape (bit N-1 = layerN) */
    int64_t tensor_count;   /* tensors in the file, integer ones (num_batches_tracked) included */
    int64_t param_count;    /* float values in the file */
    char format[32];        /* "pth-zip", "pth-legacy" or "safetensors" */
} pc_weights_info;

/* Read a weights file and describe it. The architecture must be recognised for layer_mask to be
 * non-zero; an unrecognised one is not an error (arch is then PC_ARCH_UNKNOWN, and pc_last_error()
 * says why). Thread-safe. */
PC_API pc_status pc_weights_inspect(const char *path, pc_weights_info *out);

#ifdef __cplusplus
}
#endif
#endif /* PATCHCORE_H */
