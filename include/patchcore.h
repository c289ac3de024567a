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
#define PC_VERSION_MINOR 2
#define PC_VERSION_PATCH 0
#define PC_VERSION_STRING "0.2.0"
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
    PC_ERR_CANCELLED = 10,       /* a progress callback asked to stop, or a deadline passed */
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
 * Threads (docs/threads.md). One pool (OpenMP) is shared by libpatchcore and OpenBLAS; these set
 * both, so the library never runs more threads than the count it is given: a job that runs several
 * images at once (pc_eval_run_jobs, `predict --jobs`) splits the count among its images.
 * ------------------------------------------------------------------------------------------- */

/* The thread count the library uses when none is set: OMP_NUM_THREADS when the user set it (its
 * first entry), else the CPUs this process may run on (the sched_getaffinity mask, e.g. under
 * `taskset`), capped by the cgroup CPU quota when there is one (cgroup v2 cpu.max of the process's
 * group and its ancestors, or v1 cpu.cfs_quota_us / cpu.cfs_period_us; ceil(quota / period)), at
 * least 1. Reads the environment and a few small files on each call. Thread-safe. */
PC_API int32_t pc_default_num_threads(void);

/* Set the process-wide thread count; n <= 0 means pc_default_num_threads(). The count holds for
 * library calls made from any thread, including threads started later (each call adopts it). Until
 * the first call, the library uses pc_default_num_threads() (decided on the first library call that
 * runs parallel work). Call it before starting work, not while other threads run calls. */
PC_API void pc_set_num_threads(int32_t n);

/* Set the thread count of library calls made from the calling thread only, overriding the
 * process-wide one (n <= 0 clears it). For applications that run several images at once on their own
 * threads: give each of J threads pc_job_threads(0, J) so that J x that <= the process-wide count
 * (OpenMP and OpenBLAS then never run more threads than that in all). Thread-safe (thread-local). */
PC_API void pc_set_num_threads_local(int32_t n);

/* The thread count library calls from the calling thread use (its own, else the process-wide one). */
PC_API int32_t pc_get_num_threads(void);

/* Each image's threads when `jobs` images are in flight on `threads` threads (threads <= 0: the
 * calling thread's count): threads / jobs, at least 1. */
PC_API int32_t pc_job_threads(int32_t threads, int32_t jobs);

/* Threads per image of the default jobs rule (pc_default_num_jobs). */
#define PC_JOBS_THREADS 2

/* The default number of images in flight for `threads` threads (<= 0: the calling thread's count):
 * threads / PC_JOBS_THREADS, at least 1 (so 1 on up to 3 threads, 2 on 4, 8 on 16). Measurements
 * behind the rule: docs/threads.md. */
PC_API int32_t pc_default_num_jobs(int32_t threads);

/* A deadline for the predictions made on the calling thread (src/cancel.c), for a server bounding
 * each request's time: once `seconds` (from now) have passed, pc_model_predict, pc_model_predict_file
 * and pc_model_patch_outputs stop at their next check and fail with PC_ERR_CANCELLED, the message
 * saying the deadline passed and at which stage. The checks are between stages (before preprocessing,
 * before and after the backbone's forward pass, after the kNN search), inside the forward pass (between
 * oneDNN primitives, ResNet blocks or dense layers of our kernels; pc_backbone_forward on this thread
 * also stops) and inside the kNN search (per cluster of the pruned search, per block of bank rows of
 * the brute force; also for pc_knn calls made by fit and eval on this thread), so a call runs on past
 * the deadline by at most one convolution or block, or one cluster of the search (docs/serve.md gives
 * figures). Results of calls that finish are unchanged by a deadline.
 * seconds <= 0 (or NaN) clears it. Thread-safe (thread-local: set on the thread that calls predict). */
PC_API void pc_set_deadline_local(double seconds);

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

/* Decode a PNG or JPEG file (format from its magic bytes; BMP/TIFF/GIF/WebP give PC_ERR_UNSUPPORTED,
 * see docs/images.md) and convert it to 8-bit RGB exactly as PIL's Image.convert("RGB") does: grey
 * replicated, alpha dropped without compositing, palette expanded, 16-bit samples reduced as PIL does
 * (16-bit grey is clamped to 0..255, other 16-bit samples keep their high byte). Errors:
 * PC_ERR_IO, PC_ERR_FORMAT (empty, truncated, corrupt), PC_ERR_UNSUPPORTED, PC_ERR_TOO_LARGE (more
 * than PC_IMAGE_MAX_PIXELS, checked before allocating), PC_ERR_NO_MEMORY; the message names the file.
 * On failure *out is zeroed. The caller frees out with pc_image_free. Thread-safe. */
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
    int32_t crop_left, crop_top;           /* CenterCrop offsets in the resized image; negative when
                                              the crop is larger and torchvision pads with zeros */
    int32_t crop_size;                     /* S */
    /* The size of the map a prediction writes: crop_size x crop_size, or for a tiled prediction
     * (docs/tiles.md) the original image's width x height. */
    int32_t map_width, map_height;
} pc_geometry;

/* Compute the geometry of Resize(resize) -> CenterCrop(crop) for an image of width x height, as
 * torchvision 0.14 does: short side -> resize, long side -> int(resize * long / short); offsets
 * round((size - crop) / 2) with Python's half-to-even rounding. resize and crop are 1..65536. */
PC_API pc_status pc_geometry_compute(int32_t width, int32_t height, int32_t resize, int32_t crop,
                                     pc_geometry *out);

/* PIL's Image.resize((out_w, out_h), Image.BILINEAR) on 8-bit data, bit for bit (antialiased,
 * two separable passes, rounding and clamping after each). out is out_w*out_h*channels bytes. */
PC_API pc_status pc_resize_bilinear_u8(uint8_t *out, int32_t out_w, int32_t out_h, const uint8_t *in,
                                       int32_t in_w, int32_t in_h, int32_t channels);

/* Resize + CenterCrop + scale + normalise an RGB image (channels == 3) into out, a caller-owned
 * 3 x crop x crop float tensor, as torchvision's Resize(resize), CenterCrop(crop), ToTensor() and
 * Normalize(ImageNet mean, std) on a PIL image; a crop larger than the resized image is padded with
 * zero pixels as torchvision does. geometry may be NULL. Only the cropped pixels are resampled.
 * Thread-safe. */
PC_API pc_status pc_preprocess(float *out, const pc_image *rgb, int32_t resize, int32_t crop,
                               pc_geometry *geometry);

/* Which pixels of a ground-truth mask count as anomalous once the mask has gone through the same
 * Resize (PIL bilinear on the 8-bit mask) and CenterCrop as the images (METHOD.md §1). The resize
 * blurs every defect's edge into a rim of intermediate values; the rule decides the rim. Values are
 * stable (appended only). docs/evaluation.md has the measured difference on MVTec AD bottle. */
typedef enum pc_mask_rule {
    PC_MASK_RULE_FULL = 0, /* resized value == 255: the reference implementation's (ToTensor, i.e.
                              v / 255, then `.astype(int)` in its metrics), with which every published
                              pixel figure was computed; the rim is nominal. The default. */
    PC_MASK_RULE_HALF = 1  /* resized value >= 128, i.e. ToTensor(mask) >= 0.5: at least half of full
                              scale; the inner half of the rim is anomalous. */
} pc_mask_rule;
#define PC_MASK_RULE_DEFAULT PC_MASK_RULE_FULL

/* "full" / "half" for a rule ("unknown" for any other value), and back (-1 for an unknown name or
 * NULL). Thread-safe; the string is static. */
PC_API const char *pc_mask_rule_name(pc_mask_rule rule);
PC_API int pc_mask_rule_from_name(const char *name);

/* The same geometry for an 8-bit grey mask (from pc_image_load_grey): out, caller-owned crop x crop
 * bytes, is 1 where the resized value satisfies `rule` and 0 elsewhere (pixels padded in when the crop
 * is larger than the resized image are 0). Bit for bit PIL's Image.resize(BILINEAR) + CenterCrop
 * followed by `== 255` (PC_MASK_RULE_FULL) or `>= 128` (PC_MASK_RULE_HALF). Fails with
 * PC_ERR_INVALID_ARGUMENT for a NULL pointer, a grey image that is not 1-channel, an unknown rule, or
 * resize/crop out of range as pc_preprocess does. Thread-safe. */
PC_API pc_status pc_preprocess_mask_ex(uint8_t *out, const pc_image *grey, int32_t resize, int32_t crop,
                                       pc_mask_rule rule);

/* pc_preprocess_mask_ex with PC_MASK_RULE_HALF (value >= 128), as this function has always done; kept
 * for existing callers. Note that the evaluation and calibration default is PC_MASK_RULE_FULL: call
 * pc_preprocess_mask_ex to get the masks they use. Thread-safe. */
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
    PC_ARCH_RESNEXT101_32X8D = 9,
    PC_ARCH_DENSENET121 = 10,
    PC_ARCH_DENSENET161 = 11,
    PC_ARCH_DENSENET169 = 12,
    PC_ARCH_DENSENET201 = 13
} pc_arch;

/* torchvision's name of an architecture ("wide_resnet50_2"), or "unknown". */
PC_API const char *pc_arch_name(pc_arch arch);
/* The architecture with that torchvision name, or PC_ARCH_UNKNOWN. */
PC_API pc_arch pc_arch_from_name(const char *name);

/* Layers are numbered 1..4: ResNets' layer1..layer4, DenseNets' dense blocks features.denseblock1..4
 * (the block's output, before the transition that follows it). A layer mask has bit (n-1) set for
 * layer n. */
#define PC_LAYER(n) (1u << ((n)-1))

/* 1 for the DenseNet family (densenet121/161/169/201), 0 otherwise. */
PC_API int pc_arch_is_densenet(pc_arch arch);
/* The number of a layer name: "layerN", "denseblockN" or "features.denseblockN" (N in 1..4), or a
 * bare "N". arch, when not PC_ARCH_UNKNOWN, must be of the family the name belongs to (layerN names
 * ResNet stages, denseblockN DenseNet blocks; a bare number fits both). 0 when the name is not one. */
PC_API int32_t pc_layer_from_name(pc_arch arch, const char *name);
/* The name of layer n (1..4) in arch's family: "layer2", or "denseblock2" for a DenseNet. A static
 * string; "" when n is out of range. */
PC_API const char *pc_layer_name(pc_arch arch, int32_t n);
/* The channels of layer n (1..4) of arch: 64..2048 for ResNets (layer4 of a Bottleneck net: 2048),
 * the dense block's output channels for DenseNets (densenet201: 256, 512, 1792, 1920). 0 when arch
 * is unknown or n is out of range. */
PC_API int32_t pc_arch_channels(pc_arch arch, int32_t n);

typedef struct pc_backbone pc_backbone;

/* Where the batch-norm statistics of a backbone come from (METHOD.md §2). Values are stable. */
typedef enum pc_bn_stats {
    /* The reference implementation's warm-up, the default: before any feature is extracted, the
     * network runs once in training mode on torch.ones(1, 3, S, S) (S = the crop size, the input not
     * normalised) up to the deepest requested layer. Every batch-norm on the way normalises with the
     * statistics of its own input and moves its running statistics with momentum 0.1 (the variance
     * unbiased); features then use the moved statistics. They are a deterministic function of the
     * weights, the requested layers and S, and every published PatchCore figure was made with them. */
    PC_BN_REFERENCE = 0,
    /* The weights' own running statistics, unchanged (torchvision in eval mode, as anomalib runs it). */
    PC_BN_TRAINED = 1
} pc_bn_stats;

/* "reference" or "trained" ("unknown" for any other value), and back (-1 for another name or NULL), as
 * pc_mask_rule_from_name and pc_calib_method_from_name. Thread-safe; the string is static. */
PC_API const char *pc_bn_stats_name(pc_bn_stats stats);
PC_API int pc_bn_stats_from_name(const char *name);

/* The arithmetic of the backbone (docs/precision.md). */
typedef enum pc_precision {
    /* float32 throughout (default): features within about 1e-5 relative of PyTorch's. */
    PC_PRECISION_F32 = 0,
    /* Convolutions in bfloat16 (8-bit significands, float32 accumulation) where the CPU multiplies
     * bf16 natively (AVX512-BF16 or AMX-BF16); the layer outputs are widened to float32 and everything
     * after them (patch features, coreset, kNN, maps) stays float32. Loading a backbone in this
     * precision on a CPU without those instructions fails with PC_ERR_UNSUPPORTED, naming them. */
    PC_PRECISION_BF16 = 1
} pc_precision;

/* "f32" or "bf16" ("unknown" otherwise), and back (-1 for another name or NULL). Static strings. */
PC_API const char *pc_precision_name(pc_precision p);
PC_API int pc_precision_from_name(const char *name);

/* Whether this CPU runs `p` natively (1) or not (0); when not, and why_size > 0, why receives a
 * sentence naming the missing instruction sets. Thread-safe. */
PC_API int pc_precision_supported(pc_precision p, char *why, size_t why_size);

/* The instruction set the compute library (oneDNN) dispatches to on this CPU, as it names it
 * ("avx2", "avx512_core", "avx512_core_bf16", "avx512_core_amx", ...), after any ONEDNN_MAX_CPU_ISA
 * cap. Static string; thread-safe. */
PC_API const char *pc_compute_isa(void);

/* How pc_backbone_load_with builds a backbone. */
typedef struct pc_backbone_options {
    pc_bn_stats bn_stats;   /* default PC_BN_REFERENCE */
    int32_t warmup_size;    /* S of the warm-up input: the crop size features will be computed at
                             * (default 224); ignored for PC_BN_TRAINED */
    pc_precision precision; /* default PC_PRECISION_F32 */
} pc_backbone_options;

/* The defaults above: the reference warm-up at S = 224. */
PC_API void pc_backbone_options_init(pc_backbone_options *opt);

/* Load a backbone from a torchvision state dict (.pth zip or legacy format) or a .safetensors file.
 * arch: PC_ARCH_UNKNOWN infers it from the tensor shapes. layer_mask: the layers that will be asked
 * for; tensors beyond the deepest one may be absent from the file and are not loaded. The batch-norm
 * statistics are settled as opt says (NULL: pc_backbone_options_init's defaults, i.e. the reference
 * warm-up at S = 224, which costs one forward pass of one image at load), then folded into the
 * convolutions. path == NULL looks in $PATCHCORE_WEIGHTS, then torchvision's cache
 * ($TORCH_HOME/hub/checkpoints, default ~/.cache/torch/hub/checkpoints) for the architecture's
 * standard file name, then (DenseNets) the Hugging Face hub cache for timm's densenetNNN.tv_in1k
 * model.safetensors; the error message says where it looked. DenseNet files may use torchvision's
 * old tensor names (denselayerN.norm.1.weight) or drop the "features." prefix. Thread-safe (no
 * shared state). */
PC_API pc_status pc_backbone_load_with(const char *path, pc_arch arch, uint32_t layer_mask,
                                       const pc_backbone_options *opt, pc_backbone **out);

/* pc_backbone_load_with(path, arch, layer_mask, NULL, out): the defaults (reference warm-up, S = 224). */
PC_API pc_status pc_backbone_load(const char *path, pc_arch arch, uint32_t layer_mask, pc_backbone **out);

PC_API void pc_backbone_free(pc_backbone *bb);
PC_API pc_arch pc_backbone_arch(const pc_backbone *bb);
/* The batch-norm statistics the backbone was built with. */
PC_API pc_bn_stats pc_backbone_bn_stats(const pc_backbone *bb);
/* The precision the backbone computes in (pc_backbone_options.precision at load). */
PC_API pc_precision pc_backbone_precision(const pc_backbone *bb);
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

/* ---------------------------------------------------------------------------------------------
 * Metrics (METHOD.md §7; definitions, tie and threshold conventions in docs/metrics.md)
 *
 * Scores are float32 and must be finite (NaN or +-inf gives PC_ERR_INVALID_ARGUMENT). Labels and
 * masks are bytes, non-zero = anomalous. -0.0 and +0.0 are the same score. Results are double.
 * Every function here is thread-safe (no shared state) and allocates only scratch it frees.
 * Scratch memory: 16 bytes per score (one radix sort of (score, payload) pairs and its buffer).
 * ------------------------------------------------------------------------------------------- */

/* Everything one sort of (score, label) gives, computed exactly as sklearn does (docs/metrics.md):
 *  auroc    = sklearn.metrics.roc_auc_score(labels, scores): trapezoid over the ROC curve whose points
 *             are the distinct score values (tied scores form one step, i.e. a tie counts one half);
 *  f1_max   = max over the thresholds t of sklearn.metrics.precision_recall_curve (the distinct
 *             scores, positive when score >= t) of F1 = 2PR/(P+R) = 2TP/(2TP+FP+FN), 0 when TP = 0;
 *  f1_threshold = that t (sklearn's convention, ">="); when several t attain the maximum, the lowest
 *             (what np.argmax over sklearn's increasing thresholds picks);
 *  f1_decision_threshold = the same operating point for this library's decision rule
 *             "anomalous when score > threshold": halfway between f1_threshold and the next lower
 *             distinct score, or the largest double below f1_threshold when there is none. */
typedef struct pc_binary_metrics {
    double auroc;                 /* NaN when one class is absent */
    double f1_max;                /* 0 when there is no positive */
    float f1_threshold;
    double f1_decision_threshold;
    int64_t n_positive, n_negative;
} pc_binary_metrics;

/* The metrics above over n scores (n x 1, e.g. image scores s*, or all pixels of all maps flattened).
 * Needs n >= 1; a missing class is not an error here: auroc is then NaN and f1_max 0. */
PC_API pc_status pc_metric_binary(pc_binary_metrics *out, const float *scores, const uint8_t *labels,
                                  size_t n);

/* AUROC alone (sklearn.metrics.roc_auc_score). Fails with PC_ERR_INVALID_ARGUMENT, like sklearn,
 * when only one class is present; *auroc is NaN then. */
PC_API pc_status pc_metric_auroc(double *auroc, const float *scores, const uint8_t *labels, size_t n);

/* F1-max and its threshold (sklearn convention, positive when score >= *threshold; see
 * pc_binary_metrics). threshold may be NULL. Fails when there is no positive. */
PC_API pc_status pc_metric_f1_max(double *f1_max, float *threshold, const float *scores,
                                  const uint8_t *labels, size_t n);

/* The ROC curve as sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False) gives it: a
 * first point (0, 0) with threshold +inf (sklearn >= 1.3; max score + 1 before), then one point per
 * distinct score t in decreasing order, FPR = FP/N and TPR = TP/P of "positive when score >= t", the
 * threshold being t; the last point is (1, 1). That is (distinct scores + 1) points. When that is more
 * than max_points (>= 2), a subset of those same points: the first and the last, and between them the
 * points at which FPR + TPR has risen by at least 2 / (max_points - 2) since the previous one kept
 * (spread evenly along the curve; at most max_points in all). fpr, tpr and thresholds (may be
 * NULL) are caller-owned arrays of max_points; *n_points receives how many were written. Needs both
 * classes. Scratch: 16 bytes per score. Thread-safe. */
PC_API pc_status pc_metric_roc_curve(double *fpr, double *tpr, double *thresholds, size_t max_points,
                                     size_t *n_points, const float *scores, const uint8_t *labels, size_t n);

/* AUPRO of n anomaly maps against their ground-truth masks, both n x h x w, as the MVTec AD
 * evaluation code (compute_pro + trapezoid with x_max) defines it: regions are the 8-connected
 * components of each mask; for every threshold t, FPR = share of all nominal pixels (mask 0, all
 * images) above t and PRO = mean over all regions of all images of the share of the region's pixels
 * above t; the curve runs from (0,0) to (1,1) through the distinct map values, and the area under it
 * for FPR in [0, fpr_limit] (trapezoid, the last segment interpolated at fpr_limit) is divided by
 * fpr_limit. The value does not depend on ">" vs ">=" (both give the same set of points).
 * fpr_limit in (0, 1]; METHOD.md's is 0.3 (PC_AUPRO_FPR_LIMIT). Fails when the masks have no
 * anomalous or no nominal pixel. One sort of all pixels, O(P log P) worst case, O(P) typical. */
#define PC_AUPRO_FPR_LIMIT 0.3
PC_API pc_status pc_metric_aupro(double *aupro, const float *maps, const uint8_t *masks, int32_t n,
                                 int32_t h, int32_t w, double fpr_limit);

/* 8-connected component labelling of a mask (h x w, non-zero = foreground) into labels (h x w):
 * 0 for background, 1..*n_components for the components, numbered in raster order of each
 * component's first pixel (scipy.ndimage.label(mask, np.ones((3,3))) gives the same partition).
 * Needs h*w < 2^31. No allocation (labels doubles as the union-find forest). */
PC_API pc_status pc_label_components(int32_t *labels, int32_t *n_components, const uint8_t *mask,
                                     int32_t h, int32_t w);

/* One labelled component. Coordinates are those of the labelled grid (the caller maps them to the
 * original image). The box is half-open like scipy.ndimage.find_objects' slices. */
typedef struct pc_region {
    int32_t label;          /* 1..n_components */
    int32_t x0, y0, x1, y1; /* x0 <= x < x1, y0 <= y < y1 */
    int64_t area;           /* pixels */
    float peak;             /* max of the map over the region (0 when map is NULL) */
    int32_t peak_x, peak_y; /* where; the first in raster order on ties (-1 when map is NULL) */
} pc_region;

/* Describe the components of labels (h x w, from pc_label_components) into regions[0..n_components-1]
 * (regions[i] is label i+1). map (h x w) may be NULL. Labels outside 0..n_components are an error. */
PC_API pc_status pc_regions_describe(pc_region *regions, const int32_t *labels, int32_t n_components,
                                     const float *map, int32_t h, int32_t w);

/* ---------------------------------------------------------------------------------------------
 * Thresholds (calibration from scores; docs/metrics.md). Decision rule everywhere in this library:
 * a score is anomalous when score > threshold (strictly). Thresholds are double. Thread-safe.
 * ------------------------------------------------------------------------------------------- */

/* The q-quantile (0 <= q <= 1) of n >= 1 nominal scores, exactly numpy.quantile(x.astype(float64), q)
 * with numpy's default 'linear' method (index (n-1)q, linear interpolation). */
PC_API pc_status pc_threshold_quantile(double *threshold, const float *scores, size_t n, double q);

/* mean + k * std of n >= 2 nominal scores, std being the sample standard deviation (ddof = 1,
 * numpy.std(x, ddof=1)): the estimate of the population's spread, not the sample's. */
PC_API pc_status pc_threshold_mean_std(double *threshold, const float *scores, size_t n, double k);

/* Target false-alarm rate on the given scores: the smallest threshold t such that the fraction of
 * scores strictly above t is <= rate (0 <= rate < 1). t is always one of the scores: the (k+1)-th
 * largest, k the largest integer with k/n <= rate. */
PC_API pc_status pc_threshold_false_alarm(double *threshold, const float *scores, size_t n, double rate);

/* Split-conformal threshold for a false-alarm rate `rate` on NEW nominal samples: with m the largest
 * integer with m <= rate*(n+1), the m-th largest held-out score, so that a new nominal score
 * exchangeable with the n held-out ones exceeds it with probability <= m/(n+1) <= rate, whatever
 * the distribution. When m = 0 (n too small for the rate: n+1 < 1/rate) it is the largest score and
 * the guarantee is only 1/(n+1). *bound (may be NULL) receives the guaranteed rate m/(n+1) (or
 * 1/(n+1)). 0 < rate < 1. */
PC_API pc_status pc_threshold_conformal(double *threshold, double *bound, const float *scores, size_t n,
                                        double rate);

/* The default calibration: pc_threshold_conformal at PC_THRESHOLD_DEFAULT_RATE (1%). Use it on
 * held-out nominal image scores for the image threshold, and on the per-image maxima of held-out
 * nominal anomaly maps for the pixel threshold (so that a good image shows a region with
 * probability <= the rate). See docs/metrics.md for why. */
#define PC_THRESHOLD_DEFAULT_RATE 0.01
PC_API pc_status pc_threshold_default(double *threshold, double *bound, const float *scores, size_t n);

/* F1-optimal threshold from labelled scores: pc_binary_metrics.f1_decision_threshold (for the rule
 * score > threshold). f1 (may be NULL) receives the F1 reached. Fails when there is no positive. */
PC_API pc_status pc_threshold_f1(double *threshold, double *f1, const float *scores, const uint8_t *labels,
                                 size_t n);

/* The scale of the normalised score: threshold - median(nominal scores) when positive; otherwise the
 * sample std of the nominal scores when positive; otherwise 1. n >= 1. */
PC_API pc_status pc_threshold_scale(double *scale, double threshold, const float *nominal, size_t n);

/* Normalised score in (0,1): 1 / (1 + exp(-ln(9) (score - threshold) / scale)). Strictly increasing
 * in score; 0.5 at the threshold, 0.1 at the nominal median, 0.9 at threshold + (threshold - median),
 * which makes it comparable between models. NaN for a NaN score; scale must be > 0. */
PC_API double pc_threshold_normalize(double score, double threshold, double scale);

/* ---------------------------------------------------------------------------------------------
 * Model: fit a memory bank from good images, save/load it as one file, predict (METHOD.md §3-§6)
 * ------------------------------------------------------------------------------------------- */

/* How the memory bank is subsampled (METHOD.md §4). Values are stable. */
typedef enum pc_sampler {
    PC_SAMPLER_APPROX_GREEDY = 0, /* the reference default: approximate greedy coreset */
    PC_SAMPLER_RANDOM = 1,        /* uniform random subset (baseline) */
    PC_SAMPLER_NONE = 2           /* keep every patch (r = 1) */
} pc_sampler;

#define PC_MAX_LAYERS 4

/* How tile maps are combined where tiles overlap (docs/tiles.md). Values are stable. */
typedef enum pc_stitch {
    PC_STITCH_MEAN = 0, /* the average of the tiles covering a pixel (the default) */
    PC_STITCH_MAX = 1   /* the largest */
} pc_stitch;

/* Tiling of high-resolution images (docs/tiles.md): the image, resized by `scale`, is cut at that
 * resolution into tile x tile squares overlapping by `overlap` of a side; each tile is one backbone
 * input (Normalize only, no Resize or CenterCrop). tile = 0: no tiling. */
typedef struct pc_tiling {
    int32_t tile;      /* side in pixels of the scaled image (0 = off) */
    double overlap;    /* fraction of a side shared by neighbouring tiles, in [0, 0.9] */
    double scale;      /* resize factor applied before tiling (1 = native resolution) */
    pc_stitch stitch;  /* how overlapping tile maps combine */
} pc_tiling;

/* Everything a fit is built with. Fill with pc_fit_options_init, then change what you need. */
typedef struct pc_fit_options {
    const char *weights;          /* backbone weights file; NULL: look where torchvision keeps them */
    pc_arch arch;                 /* PC_ARCH_UNKNOWN: infer from the weights */
    int32_t layers[PC_MAX_LAYERS];/* layer numbers in order (default {2, 3}) */
    int32_t n_layers;             /* default 2 */
    int32_t resize;               /* default 256 */
    int32_t crop;                 /* default 224 */
    int32_t patch;                /* neighbourhood p, odd (default 3) */
    int32_t pre_dim;              /* per-layer projection D_pre (default 1024) */
    int32_t dim;                  /* feature dimension D (default 1024) */
    int32_t k;                    /* nearest neighbours averaged in a patch score (default 1) */
    pc_sampler sampler;           /* default PC_SAMPLER_APPROX_GREEDY */
    double coreset_ratio;         /* r, used when coreset_size == 0 (default 0.1) */
    int64_t coreset_size;         /* an exact bank size instead of a ratio (0 = use the ratio) */
    int32_t projection_dim;       /* d* of the approximate greedy coreset (default 128) */
    int32_t n_starts;             /* start points of the greedy coreset (default 10) */
    uint64_t seed;                /* drives the projection, the start points, random sampling (0) */
    int32_t batch_size;           /* images per backbone call (default 8) */
    int32_t reweight_b;           /* > 0: the paper's Eq. 7 image score with b neighbours (0 = off) */
    /* Advanced, to reproduce a run exactly: a caller-supplied coreset projection (projection_dim x
     * dim, applied as features @ projection^T like nn.Linear) and start indices (n_starts). NULL:
     * drawn from seed. */
    const float *coreset_projection;
    const int64_t *coreset_starts;
    pc_progress_fn progress;      /* may be NULL */
    void *progress_user;
    /* Called once for each input that cannot be used (fit goes on without it); may be NULL. */
    void (*on_image_error)(void *user, const char *path, pc_status status, const char *message);
    void *on_image_error_user;
    /* A memory budget for the fit in bytes (0 = unlimited). When set, the training features are
     * written to an unlinked temporary file in $TMPDIR (default /tmp) instead of being kept in memory,
     * the coreset runs on their 128-d projection, and the selected rows are read back: the model is
     * bit-identical to the one an unlimited fit makes. Sampler none keeps every feature, so there the
     * bank itself must fit. The fit fails with PC_ERR_TOO_LARGE before any image is processed when its
     * planned peak (docs/robustness.md, "Bounded memory") exceeds the budget. */
    int64_t max_memory;
    /* Batch-norm statistics of the backbone (default PC_BN_REFERENCE: the reference's warm-up at
     * S = crop; METHOD.md §2). Stored in the model; predict, eval and load use the same. */
    pc_bn_stats bn_stats;
    /* Arithmetic of the backbone (default PC_PRECISION_F32). Stored in the model; predict, eval and
     * the binding use the same. PC_PRECISION_BF16 on a CPU that cannot multiply bf16 natively
     * (pc_precision_supported) fails with PC_ERR_UNSUPPORTED before anything is loaded: there is no
     * silent float32 fallback, since the model would then claim an arithmetic it was not fitted with. */
    pc_precision precision;
    /* Batches of training images in flight at once during feature extraction (0: pc_default_num_jobs),
     * each on pc_job_threads(0, jobs) threads with its own backbone workspace (docs/threads.md). The
     * memory bank is bit-identical for every value as long as batch_size >= the thread count (true by
     * default up to 8 threads) and unreadable images do not leave a full batch with fewer usable
     * images than threads: with fewer images than threads, jobs = 1 spreads each convolution over
     * all threads, and OpenBLAS does not round a team's SGEMM as a smaller one's. on_image_error and
     * progress still come in image order, from the calling thread. */
    int32_t jobs;
    /* Tiling (docs/tiles.md; tiling.tile = 0, the default, is off). Stored in the model; predict uses
     * it unless pc_predict_options says otherwise. */
    pc_tiling tiling;
    /* A region of interest (docs/roi.md): an 8-bit grey mask (channels 1), non-zero (white) = inspect,
     * in the coordinates of the training images. Patches outside it are left out of the memory bank;
     * the mask is stored in the model and applied by every predict. NULL: the whole image. */
    const pc_image *roi;
} pc_fit_options;

/* Defaults equal to the reference implementation's (listed above). */
PC_API void pc_fit_options_init(pc_fit_options *opt);

typedef struct pc_model pc_model;

/* Fit a model on good images given as file paths. Inputs that cannot be decoded are reported through
 * on_image_error and skipped; fit fails only when no image is usable. Progress stages: "features"
 * (images), "coreset" (iterations). Uses the shared thread pool (pc_set_num_threads). */
PC_API pc_status pc_model_fit(const pc_fit_options *opt, const char *const *paths, size_t n_paths,
                              pc_model **out);

/* The same from decoded 8-bit RGB images (pc_image with channels == 3). */
PC_API pc_status pc_model_fit_images(const pc_fit_options *opt, const pc_image *images, size_t n_images,
                                     pc_model **out);

/* Write the model to one self-contained file (docs/model-format.md), atomically. Thread-safe with
 * concurrent predicts. */
PC_API pc_status pc_model_save(const pc_model *model, const char *path);

/* Load a model file. The backbone runs in the precision the file records (pc_model_info.precision);
 * a bf16 model on a CPU without native bf16 fails with PC_ERR_UNSUPPORTED naming the missing
 * instruction sets. */
PC_API pc_status pc_model_load(const char *path, pc_model **out);

/* Free a model (NULL is fine). No predict may be running on it. */
PC_API void pc_model_free(pc_model *model);

/* The message of the last failure of a call on this model (thread-local pc_last_error() is the
 * per-thread equivalent). */
PC_API const char *pc_model_errmsg(const pc_model *model);

/* What a model was built with. Strings point into the model. */
typedef struct pc_model_info {
    pc_arch arch;
    int32_t layers[PC_MAX_LAYERS], n_layers;
    int32_t resize, crop, patch, pre_dim, dim, k;
    int32_t grid_h, grid_w;        /* patch grid H x W */
    pc_sampler sampler;
    double coreset_ratio;
    int64_t bank_size;             /* entries in the memory bank */
    int64_t n_patches_total;       /* patches before subsampling (those inside the region of interest
                                      when the model has one: the coreset's candidates) */
    int32_t n_train_images;
    uint64_t seed;
    int32_t reweight_b;
    /* Calibrated thresholds (NaN when not calibrated) and the scale of the normalised score. */
    double image_threshold, pixel_threshold, score_scale;
    /* The overlay colour scale's step in map units: the pixel threshold minus the median pixel value
     * of good images' maps (NaN when not calibrated, and in model files that predate it). */
    double pixel_scale;
    /* The backbone's batch-norm statistics (METHOD.md §2). Model files written before this was
     * recorded used the trained statistics: they load as PC_BN_TRAINED with bn_stats_implicit = 1. */
    pc_bn_stats bn_stats;
    int32_t bn_stats_implicit;
    pc_precision precision;        /* PC_PRECISION_F32 for files that predate the setting */
    /* Members of an ensemble (docs/ensemble.md); 1 for a single model. For an ensemble, every field
     * above except the thresholds and scales describes the first member, whose crop sets the map
     * size and whose geometry the predictions report; pc_model_member gives the others. */
    int32_t n_members;
    pc_tiling tiling;              /* tiling.tile = 0: the model does not tile */
    int32_t roi_width, roi_height; /* the stored region of interest's size (0 x 0: none) */
    /* Every training patch lies within this distance of the bank in the coreset's projected space
     * (the greedy coreset's final coverage radius; docs/update.md); NaN when unknown (sampler random,
     * files written before it was recorded). */
    double coverage_radius;
    /* 1 when the bank changed (pc_model_update, pc_model_merge) after the thresholds were calibrated:
     * calibrate again. */
    int32_t thresholds_stale;
} pc_model_info;

PC_API pc_status pc_model_get_info(const pc_model *model, pc_model_info *info);

/* The model's stored region of interest (docs/roi.md) as a view: roi->data points into the model
 * (0 = outside, 255 = inside; do not free or change it; valid while the model lives). A model without
 * one gives PC_OK and a zeroed *roi. Thread-safe. */
PC_API pc_status pc_model_roi(const pc_model *model, pc_image *roi);

/* ---------------------------------------------------------------------------------------------
 * Ensembles (docs/ensemble.md): several single models (members: backbone, layers, settings, bank)
 * in one model, run one after the other on each image (decoded once, preprocessed once per
 * resolution), their image scores and maps normalised per member and averaged. Every model call
 * (predict, calibrate, eval, regions, save, load) works on an ensemble as on a single model.
 * ------------------------------------------------------------------------------------------- */

/* How members' outputs are normalised before they are averaged. Values are stable. */
typedef enum pc_ensemble_norm {
    /* The default, usable one image at a time: member i's image score s becomes
     * (s - mean_i) / sd_i and each map pixel v becomes (v - pmean_i) / psd_i, with the statistics of
     * leave-one-out predictions of up to PC_ENSEMBLE_NORM_IMAGES training images (each scored
     * against the member's bank without the entries taken from that image), computed at fit time
     * and stored in the model. */
    PC_ENSEMBLE_TRAIN_ZSCORE = 0,
    /* The reference implementation's rule, for evaluation only (it needs the whole test set): each
     * member's image scores, and separately its maps, min-max normalised over all test images, then
     * averaged. pc_eval_run_norm applies it. */
    PC_ENSEMBLE_TEST_MINMAX = 1
} pc_ensemble_norm;

/* Training images whose leave-one-out predictions give PC_ENSEMBLE_TRAIN_ZSCORE's statistics
 * (evenly spaced over the usable ones when there are more). */
#define PC_ENSEMBLE_NORM_IMAGES 64

/* "train-zscore" / "test-minmax"; the value of a name, or -1. */
PC_API const char *pc_ensemble_norm_name(pc_ensemble_norm norm);
PC_API int pc_ensemble_norm_from_name(const char *name);

/* Fit an ensemble: member i is fitted with members[i] (as pc_model_fit would; progress stages are
 * prefixed "member i/n: "), on the same images, then its normalisation statistics are computed
 * (progress stage "normalise"). n_members = 1 is pc_model_fit. Members may differ in every setting
 * (backbone, weights, layers, resize, crop, ...); members[i].reweight_b must be 0. The progress
 * and error callbacks of members[0] are used for all. */
PC_API pc_status pc_model_fit_ensemble(const pc_fit_options *members, int32_t n_members, const char *const *paths,
                                       size_t n_paths, pc_model **out);

/* Members of a model: 1 for a single model (pc_model_member(m, 0) is m itself). A member is a
 * single model owned by the ensemble: use it with pc_model_get_info or pc_model_predict (its raw,
 * unnormalised outputs), never free or save it. NULL when i is out of range. */
PC_API int32_t pc_model_member_count(const pc_model *model);
PC_API pc_model *pc_model_member(pc_model *model, int32_t i);

/* Member i's PC_ENSEMBLE_TRAIN_ZSCORE statistics: image score mean and standard deviation, map
 * pixel mean and standard deviation (stats[4]). PC_ERR_INVALID_ARGUMENT for a single model. */
PC_API pc_status pc_model_member_norm(const pc_model *model, int32_t i, double stats[4]);

/* ---------------------------------------------------------------------------------------------
 * Growing a model without refitting (docs/update.md): new good images join the bank, their
 * features computed with the model's own backbone and settings; the old features are not needed.
 * ------------------------------------------------------------------------------------------- */

/* How many of the new patches join the bank. Values are stable. */
typedef enum pc_update_rule {
    /* PC_UPDATE_RADIUS when the model knows its coverage radius (approximate greedy coreset),
     * PC_UPDATE_ALL for sampler none, PC_UPDATE_RATIO otherwise */
    PC_UPDATE_AUTO = 0,
    /* floor(new patches x the model's ratio) entries, as a fit on the new images would keep: the
     * greedy coreset continued from the bank (the new patches' distances to the bank as its starting
     * state), or a random draw for sampler random */
    PC_UPDATE_RATIO = 1,
    /* the greedy coreset continued from the bank until no new patch is farther from the bank than the
     * model's coverage radius (with a relative allowance of PC_UPDATE_RADIUS_SLACK for the float error
     * of recomputed projections): images like those already fitted add nothing */
    PC_UPDATE_RADIUS = 2,
    /* every new patch (sampler none's rule) */
    PC_UPDATE_ALL = 3
} pc_update_rule;

#define PC_UPDATE_RADIUS_SLACK 1e-4

/* "auto", "ratio", "radius", "all"; the value of a name, or -1. */
PC_API const char *pc_update_rule_name(pc_update_rule rule);
PC_API int pc_update_rule_from_name(const char *name);

typedef struct pc_update_options {
    pc_update_rule rule;      /* default PC_UPDATE_AUTO */
    int64_t max_add;          /* at most this many new entries (0 = no limit) */
    int32_t batch_size;       /* images per backbone call (default 8) */
    int32_t jobs;             /* batches in flight (0 = default), as pc_fit_options.jobs */
    int64_t max_memory;       /* as pc_fit_options.max_memory (0 = unlimited) */
    pc_progress_fn progress;  /* stages "features", "coreset"; may be NULL */
    void *progress_user;
    void (*on_image_error)(void *user, const char *path, pc_status status, const char *message);
    void *on_image_error_user;
} pc_update_options;

PC_API void pc_update_options_init(pc_update_options *opt);

/* What an update or a merge did. */
typedef struct pc_update_report {
    pc_update_rule rule;      /* the rule applied (never PC_UPDATE_AUTO) */
    int32_t n_images;         /* usable new images */
    int64_t n_patches;        /* their patches */
    int64_t n_added;          /* entries added to the bank */
    int64_t bank_size;        /* entries after */
    double radius_before;     /* the model's coverage radius before (NaN: unknown) */
    double radius_new;        /* the largest distance from a new patch to the grown bank (NaN: not measured) */
    double radius_after;      /* the model's coverage radius after (NaN: unknown) */
} pc_update_report;

/* Add good images to a single model's bank (docs/update.md). Inputs that cannot be used are reported
 * and skipped; fails when none is usable. On success the model has the grown bank and, if it had
 * thresholds and entries were added, thresholds_stale = 1 (calibrate again); on failure it is
 * unchanged. report may be NULL. Ensembles: PC_ERR_UNSUPPORTED. No predict may run on the model
 * meanwhile; save it afterwards (pc_model_save writes atomically). */
PC_API pc_status pc_model_update(pc_model *model, const pc_update_options *opt, const char *const *paths,
                                 size_t n_paths, pc_update_report *report);
PC_API pc_status pc_model_update_images(pc_model *model, const pc_update_options *opt, const pc_image *images,
                                        size_t n_images, pc_update_report *report);

/* Merge other's bank into model's: the bank becomes model's entries followed by other's (every entry
 * of both, so a patch's distance to the merged bank is the smaller of its distances to the two). Both
 * must be single models with the same backbone (architecture and every weight, bit for bit) and the
 * same feature settings (layers, resize, crop, patch, dimensions, k, batch-norm statistics, precision,
 * reweighting); PC_ERR_INVALID_ARGUMENT names the first difference. model keeps its own coreset settings
 * and thresholds (flagged stale). Same concurrency rule as pc_model_update. report may be NULL. */
PC_API pc_status pc_model_merge(pc_model *model, const pc_model *other, pc_update_report *report);

/* The result of one prediction. map, when non-NULL, is caller-owned crop x crop floats (the
 * geometry's map_width x map_height: pc_model_map_size). */
typedef struct pc_prediction {
    float score;                   /* image score s* (or Eq. 7's s with reweighting) */
    double normalized;             /* in (0,1), 0.5 at the image threshold; NaN when uncalibrated */
    int32_t anomalous;             /* score > image threshold (0 when uncalibrated) */
} pc_prediction;

/* Predict one decoded RGB image: the image score and, when map != NULL, the anomaly map (METHOD.md §6):
 * crop x crop, or the image's width x height for a tiled model (pc_model_map_size; docs/tiles.md). Thread-safe: several threads may predict on one model at once (each call takes a
 * scratch workspace from a pool on the model; no allocation once the pool is warm). geometry (may be
 * NULL) receives how the map relates to the original image. */
PC_API pc_status pc_model_predict(pc_model *model, const pc_image *rgb, pc_prediction *out, float *map,
                                  pc_geometry *geometry);

/* The same from a file path. */
PC_API pc_status pc_model_predict_file(pc_model *model, const char *path, pc_prediction *out, float *map,
                                       pc_geometry *geometry);

/* Per-call prediction settings (pc_predict_options_init: all defaults). */
typedef struct pc_predict_options {
    const pc_tiling *tiling; /* NULL: the model's own (no tiling for a model fitted without) */
    const pc_image *roi;     /* NULL: the model's region of interest, if it has one (docs/roi.md) */
    int32_t ignore_roi;      /* 1: inspect the whole image even when the model has a region of interest */
} pc_predict_options;

PC_API void pc_predict_options_init(pc_predict_options *opt);

/* pc_model_predict with per-call settings (opt may be NULL: pc_model_predict). map must hold the
 * map size pc_model_map_size gives for this image and these settings. With a region of interest (the
 * model's, or opt->roi; docs/roi.md) only the patches inside it are scored, the image score is the
 * largest inside patch score and the map is 0 outside it. Fails with PC_ERR_INVALID_ARGUMENT for an
 * ROI that is not a non-empty 1-channel mask or that has no patch inside it for this image, and with
 * PC_ERR_UNSUPPORTED for an ROI with tiling or on an ensemble. Thread-safe like pc_model_predict. */
PC_API pc_status pc_model_predict_ex(pc_model *model, const pc_image *rgb, const pc_predict_options *opt,
                                     pc_prediction *out, float *map, pc_geometry *geometry);

/* The size of the map a prediction of a width x height image writes with these settings (opt may be
 * NULL): crop x crop, or width x height when tiling. */
PC_API pc_status pc_model_map_size(const pc_model *model, int32_t width, int32_t height,
                                   const pc_predict_options *opt, int32_t *map_width, int32_t *map_height);

/* Set the thresholds stored in the model (NaN clears one) and the normalised score's scale (> 0).
 * Not thread-safe with concurrent predicts. */
PC_API pc_status pc_model_set_thresholds(pc_model *model, double image_threshold, double pixel_threshold,
                                         double score_scale);

/* Set the overlay colour scale's step (pc_model_info.pixel_scale; > 0, or NaN to clear). Not
 * thread-safe with concurrent predicts. */
PC_API pc_status pc_model_set_pixel_scale(pc_model *model, double pixel_scale);

/* ---------------------------------------------------------------------------------------------
 * Evaluation on the MVTec AD layout and predict reporting (METHOD.md §7; docs/evaluation.md)
 * ------------------------------------------------------------------------------------------- */

/* One test image of a category: its path, its mask's path (NULL for `good`) and its defect type
 * (an index into pc_dataset.type_names). */
typedef struct pc_eval_item {
    char *path;
    char *mask_path;
    int32_t type;
} pc_eval_item;

/* A category directory walked: CATEGORY/train/good/<images>, CATEGORY/test/<type>/<images>,
 * CATEGORY/ground_truth/<type>/<stem>_mask.png. Everything is in byte-wise sorted (strcmp) order:
 * types by name, images by file name. Images are files ending in .png/.jpg/.jpeg/.bmp (any case). */
typedef struct pc_dataset {
    char *root;
    char **train_paths;     /* n_train */
    size_t n_train;
    pc_eval_item *test;     /* n_test, grouped by type in type order */
    size_t n_test;
    char **type_names;      /* n_types, sorted */
    int32_t n_types;
    int32_t good_type;      /* index of "good" in type_names, -1 when there is no test/good */
} pc_dataset;

/* Walk a category directory. Fails with PC_ERR_NOT_FOUND naming the path when train/good or test is
 * missing or empty, or when a defective test image has no <stem>_mask.png; train/good may be absent
 * when need_train is 0. Thread-safe. */
PC_API pc_status pc_dataset_open(const char *category_dir, int need_train, pc_dataset **out);
PC_API void pc_dataset_free(pc_dataset *ds);

/* Image AUROC of one defect type: that type's images against all good images. */
typedef struct pc_eval_type_result {
    const char *name;       /* points into the names given to pc_eval_aggregate */
    int32_t n;              /* images of this type */
    double image_auroc;     /* NaN for the good type itself */
} pc_eval_type_result;

/* The metrics of an evaluation (docs/metrics.md for each convention). */
typedef struct pc_eval_result {
    double image_auroc, pixel_auroc, aupro;   /* AUPRO at PC_AUPRO_FPR_LIMIT */
    double image_f1_max, pixel_f1_max;
    double image_f1_threshold, pixel_f1_threshold; /* decision thresholds (score > t) reaching them */
    int64_t n_good, n_defective;
    double mean_predict_ms;                    /* 0 from pc_eval_aggregate alone */
    int32_t n_types;
    pc_eval_type_result *per_type;             /* n_types, owned: pc_eval_result_free */
} pc_eval_result;

/* The metrics from given per-image scores (n), maps (n x h x w) and masks (n x h x w, non-zero =
 * anomalous) and types (n, indices into type_names; image label = type != good_type). Needs both
 * good and defective images, and anomalous and nominal pixels. Thread-safe. Scratch: 16 bytes per
 * pixel of all maps (the metrics' sort). */
PC_API pc_status pc_eval_aggregate(pc_eval_result *out, const float *scores, const float *maps,
                                   const uint8_t *masks, const int32_t *types,
                                   const char *const *type_names, int32_t n_types, int32_t good_type,
                                   int32_t n, int32_t h, int32_t w);

/* Predict every test image of ds with model (one map each, kept in memory: n_test x S x S floats
 * and bytes, i.e. 5 bytes per pixel; ~21 MB for 83 images at 224; limited to 2^31 pixels in all),
 * load masks with pc_image_load_grey + pc_preprocess_mask_ex under PC_MASK_RULE_DEFAULT (the
 * reference rule, value == 255; versions before the rule existed used >= 128), and compute
 * pc_eval_aggregate plus the mean predict time. Progress stage "eval" (images). Uses the model's
 * thread-safe predict one image at a time, so other threads may predict with the same model
 * meanwhile; ds is only read. The caller frees out with pc_eval_result_free (safe after a failure too). */
PC_API pc_status pc_eval_run(pc_eval_result *out, pc_model *model, const pc_dataset *ds,
                             pc_progress_fn progress, void *progress_user);

/* What pc_eval_run_detail also returns per test image, into caller-owned arrays (each may be NULL):
 * predictions[i] and geometries[i] for ds->test[i] (n_test each), maps and masks one image after the
 * other: test image i's map_width x map_height anomaly map (pc_eval_map_sizes; n_test x crop x crop
 * in all, image i at i * crop * crop, for a model that does not tile) and its mask, 0/1, all 0 for
 * good images. Given maps/masks are used in place of pc_eval_run's own, so they cost no extra memory;
 * each must hold the total pc_eval_map_sizes gives. */
typedef struct pc_eval_detail {
    pc_prediction *predictions;
    pc_geometry *geometries;
    float *maps;
    uint8_t *masks;
} pc_eval_detail;

/* pc_eval_run, filling detail's arrays as well (detail may be NULL: then it is pc_eval_run). For
 * reports that need per-image results without predicting twice. Masks under PC_MASK_RULE_DEFAULT. */
PC_API pc_status pc_eval_run_detail(pc_eval_result *out, pc_model *model, const pc_dataset *ds,
                                    pc_progress_fn progress, void *progress_user, const pc_eval_detail *detail);

/* pc_eval_run_detail with the ground-truth masks made under mask_rule (PC_MASK_RULE_FULL, the default
 * of the two functions above, or PC_MASK_RULE_HALF): every pixel metric (pixel AUROC, pixel F1-max and
 * its threshold, AUPRO) and detail->masks follow it; the image metrics do not depend on it. An unknown
 * rule fails with PC_ERR_INVALID_ARGUMENT before anything is predicted. Ownership and thread-safety
 * as pc_eval_run; detail may be NULL. */
PC_API pc_status pc_eval_run_ex(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                                pc_progress_fn progress, void *progress_user, const pc_eval_detail *detail);

/* pc_eval_run_ex with `jobs` test images in flight at once (jobs <= 0: pc_default_num_jobs), each
 * predicted on pc_job_threads(0, jobs) threads, so that jobs x threads stays within the calling
 * thread's count (docs/threads.md). Every output is identical, bit for bit, to jobs = 1 run with
 * that per-image thread count (the image score's last bit may depend on the per-image thread count,
 * docs/robustness.md "Concurrency"); mean_predict_ms is then the mean latency of one image. progress
 * is called from the job threads, one call at a time, with an increasing count; cancelling stops new
 * images from starting. A failure is the one the serial loop would meet first (the lowest failing
 * test image), with its message. Ownership and thread-safety as pc_eval_run. */
PC_API pc_status pc_eval_run_jobs(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                                  int32_t jobs, pc_progress_fn progress, void *progress_user,
                                  const pc_eval_detail *detail);

/* pc_eval_run_jobs with an ensemble's members combined under norm. PC_ENSEMBLE_TRAIN_ZSCORE is
 * pc_eval_run_jobs (the model's own predictions). PC_ENSEMBLE_TEST_MINMAX runs each member over the
 * whole test set, min-max normalises its scores and its maps over all test images, averages them
 * (maps of members with another crop are resized bilinearly to the first member's) and aggregates
 * that: the reference implementation's rule (for a single model it changes the scores' scale, not
 * the metrics). member_results, when not NULL, receives each member's own metrics on its raw
 * outputs (pc_model_member_count entries, each to be freed with pc_eval_result_free; test-minmax
 * only, zeroed otherwise). detail's predictions then hold the combined scores. */
PC_API pc_status pc_eval_run_norm(pc_eval_result *out, pc_model *model, const pc_dataset *ds, pc_mask_rule mask_rule,
                                  int32_t jobs, pc_ensemble_norm norm, pc_progress_fn progress, void *progress_user,
                                  const pc_eval_detail *detail, pc_eval_result *member_results);

PC_API void pc_eval_result_free(pc_eval_result *r);

/* The map size of every test image of ds under model (widths, heights: n_test entries each, or NULL)
 * and their total in pixels (the size of pc_eval_detail's maps and masks; maps image i starts at the
 * sum of the sizes before it). crop x crop for every image of a model that does not tile (nothing is
 * read); for a tiled model, each image's own size (read from a PNG's header, else decoded) through
 * pc_model_map_size. Thread-safe. */
PC_API pc_status pc_eval_map_sizes(const pc_model *model, const pc_dataset *ds, int32_t *widths, int32_t *heights,
                                   size_t *total);

/* Map a half-open box of the map grid (x0 <= x < x1, y0 <= y < y1; crop x crop, or the image's size
 * for a tiled prediction, whose geometry is the identity) back to the original image: undo the crop
 * (add crop_left/crop_top) then the resize (scale by orig/resized), rounding outwards (floor of the
 * start, ceil of the end) and clamping to the image. */
PC_API pc_status pc_geometry_box_to_original(const pc_geometry *g, int32_t x0, int32_t y0, int32_t x1,
                                             int32_t y1, int32_t *ox0, int32_t *oy0, int32_t *ox1,
                                             int32_t *oy1);

/* Anomalous regions of a map (size x size; size = 0: g's map_width x map_height, g required, which is
 * how a tiled prediction's map, the image's size, is given; a g with map size 0 x 0, filled by hand by
 * older code, means crop_size x crop_size): 8-connected components of {map > threshold}, described
 * as pc_regions_describe does (box, area in map pixels, peak), sorted by decreasing peak, with the
 * box then mapped to original image coordinates when g != NULL (peak_x/peak_y stay in map
 * coordinates). At most max are written;
 * *n_total receives how many there are. Allocates h*w int32 scratch. Thread-safe. */
PC_API pc_status pc_regions_from_map(pc_region *regions, int32_t max, int32_t *n_total, const float *map,
                                     int32_t size, double threshold, const pc_geometry *g);

/* Calibration methods for pc_threshold_by_method / pc_model_calibrate (values stable). */
typedef enum pc_calib_method {
    PC_CALIB_CONFORMAL = 0,   /* param = false-alarm rate (default PC_THRESHOLD_DEFAULT_RATE): the default */
    PC_CALIB_QUANTILE = 1,    /* param = q (e.g. 0.99) */
    PC_CALIB_MEAN_STD = 2,    /* param = k (e.g. 3) */
    PC_CALIB_FALSE_ALARM = 3, /* param = rate on the given scores */
    PC_CALIB_F1 = 4           /* labelled scores; param unused */
} pc_calib_method;

/* "conformal", "quantile", "mean-std", "false-alarm", "f1" <-> method; -1 for an unknown name. */
PC_API int pc_calib_method_from_name(const char *name);
PC_API const char *pc_calib_method_name(pc_calib_method m);

/* A threshold from n scores by a method (labels needed, and only used, for PC_CALIB_F1). */
PC_API pc_status pc_threshold_by_method(double *threshold, pc_calib_method method, double param,
                                        const float *scores, const uint8_t *labels, size_t n);

/* What pc_model_calibrate found. */
typedef struct pc_calibration {
    double image_threshold, pixel_threshold, score_scale;
    size_t n_good, n_defective;
    double pixel_scale; /* pixel threshold - median pixel value of the good maps (pc_threshold_scale) */
} pc_calibration;

/* Calibrate a model's thresholds and set them (pc_model_set_thresholds; save the model afterwards).
 * Without defective images (n_defective == 0): predict the good images; the image threshold is
 * method(param) of their scores, the pixel threshold method(param) of their maps' maxima (so that a
 * good image shows a region at the chosen rate); method must not be PC_CALIB_F1. With defective
 * images and their ground-truth masks (masks[i] for defective[i], MVTec PNG masks), method must be
 * PC_CALIB_F1: the F1-optimal image threshold over good + defective scores and the F1-optimal pixel
 * threshold over all their map pixels (n x S x S floats and bytes held in memory). The scale of the
 * normalised score is pc_threshold_scale over the good scores in both cases, and the overlay's pixel
 * scale (pc_model_set_pixel_scale) pc_threshold_scale of the pixel threshold over every 7th pixel
 * (in raster order) of every good image's map. Ground-truth masks are made under
 * PC_MASK_RULE_DEFAULT (value == 255; pc_model_calibrate_ex chooses). Progress stage
 * "calibrate". report may be NULL. The paths are only read. Not thread-safe with other calls on the
 * same model (it sets the model's thresholds). */
PC_API pc_status pc_model_calibrate(pc_model *model, pc_calib_method method, double param,
                                    const char *const *good, size_t n_good, const char *const *defective,
                                    const char *const *masks, size_t n_defective, pc_progress_fn progress,
                                    void *progress_user, pc_calibration *report);

/* pc_model_calibrate with the defective images' masks made under mask_rule (only the F1 pixel
 * threshold, and so the pixel scale, depend on it; without defective images the rule is checked and
 * otherwise unused). An unknown rule fails with PC_ERR_INVALID_ARGUMENT before anything is predicted.
 * Same ownership and thread-safety as pc_model_calibrate. */
PC_API pc_status pc_model_calibrate_ex(pc_model *model, pc_calib_method method, double param,
                                       const char *const *good, size_t n_good, const char *const *defective,
                                       const char *const *masks, size_t n_defective, pc_mask_rule mask_rule,
                                       pc_progress_fn progress, void *progress_user, pc_calibration *report);

/* pc_regions_from_map at the model's calibrated pixel threshold, or at pixel_threshold when it is not
 * NaN (an override). map is the model's map from pc_model_predict(_ex), g its geometry, whose map size
 * (map_width x map_height; 0 x 0: crop x crop) is the map's. g NULL: a crop x crop map with boxes in
 * map coordinates (not for a tiled model, whose maps vary). Fails with PC_ERR_INVALID_ARGUMENT when
 * neither threshold is set. Thread-safe. */
PC_API pc_status pc_model_regions(const pc_model *model, const float *map, const pc_geometry *g,
                                  double pixel_threshold, pc_region *regions, int32_t max, int32_t *n_total);

/* ---------------------------------------------------------------------------------------------
 * Visualisation: anomaly maps drawn on the original image, and maps written as images
 * (docs/visualisation.md has the colour scale, the geometry and the file formats in full).
 * ------------------------------------------------------------------------------------------- */

/* The fixed colour scale. A map value v is placed on the scale by its distance from the pixel
 * threshold in units of `scale`:
 *     t = (v - threshold) / scale,   p = 1 / (1 + exp(-ln(9) t)),   index = min(255, floor(256 p))
 * so index 128 is the threshold (p = 0.5), index 25 is one scale below it (p = 0.1; with
 * scale = threshold - median of nominal values, the nominal median) and index 230 one scale above
 * (p = 0.9). The same value has the same colour on every image: nothing is scaled per image.
 * The colour of an index is PC_HEAT_LUT's piecewise-linear ramp (inferno-like, dark purple -> red ->
 * orange -> pale yellow); its opacity is 0 below index PC_HEAT_ALPHA_LO, rises linearly to the
 * overlay's opacity at PC_HEAT_ALPHA_HI (the threshold) and stays there above. */
#define PC_HEAT_ALPHA_LO 26
#define PC_HEAT_ALPHA_HI 128

/* The colour scale index (0..255) of a value, as above; -1 for a NaN value or a scale that is not > 0.
 * Thread-safe. */
PC_API int32_t pc_heat_index(double value, double threshold, double scale);

/* The 256 colours of the scale, RGB, into rgb (256 x 3 bytes), e.g. to draw a legend. Control points
 * (index: R,G,B) 0: 0,0,4; 64: 87,16,110; 128: 188,55,84; 192: 249,142,9; 255: 252,255,164; between
 * two points i0 < i < i1, each channel is (c0 (i1 - i) + c1 (i - i0) + (i1 - i0) / 2) / (i1 - i0)
 * in integer arithmetic (division truncating). Thread-safe. */
PC_API void pc_heat_colormap(uint8_t *rgb);

/* How an overlay is drawn. Fill with pc_overlay_options_init, then change what you need. */
typedef struct pc_overlay_options {
    double threshold;       /* the pixel threshold: the middle of the colour scale and the level the
                               region outlines are drawn at (required, finite) */
    double scale;           /* > 0: map units per step of the scale (see above); a good choice is
                               pc_threshold_scale(pixel threshold, pixel values of good maps), i.e.
                               the threshold minus their median (docs/visualisation.md) */
    double opacity;         /* heat opacity at and above the threshold, 0..1 (default 0.6) */
    int32_t outline_width;  /* outline thickness in original-image pixels; 0: automatic,
                               max(1, (min(width, height) + 150) / 300); < 0: no outlines */
    uint8_t outline_rgb[3]; /* default 0, 255, 255 (cyan, absent from the colour scale) */
} pc_overlay_options;

/* threshold and scale as given; the defaults above for the rest. */
PC_API void pc_overlay_options_init(pc_overlay_options *opt, double threshold, double scale);

/* Draw an anomaly map on the original image it was computed from. rgb is the decoded image
 * (channels == 3, width x height equal to geometry's orig_width x orig_height); map is mw x mh floats
 * (mw x mh = geometry's map_width x map_height: crop x crop, or the image's size for a tiled
 * prediction; 0 x 0 means crop_size x crop_size), e.g. from pc_model_predict with the geometry it
 * returned. Every original pixel (x, y) is mapped to the map through the resize and the crop:
 *     sx = (x + 0.5) * resized_width / orig_width - crop_left      (sy likewise)
 * pixels with sx outside [0, mw) or sy outside [0, mh) get no heat; the others sample the map
 * bilinearly at (sx - 0.5, sy - 0.5), pixel centres at integers, coordinates clamped to [0, mw - 1]
 * and [0, mh - 1] (like
 * torch's interpolate with align_corners=False). The value gets its colour and opacity a (0..255,
 * a_max = round(255 opacity)) from the scale and is blended as
 *     out = (orig (255 - a) + colour a + 127) / 255   (integers, per channel).
 * Outlines: a pixel is inside an anomalous region when its sampled value is > threshold (the
 * library's decision rule); a region pixel within outline_width pixels (Chebyshev distance) of a
 * pixel that is not inside or of the outside of the image (so the outline is outline_width pixels
 * thick, drawn inside the region) is painted outline_rgb.
 * out receives a new width x height RGB image (free with pc_image_free); zeroed on failure.
 * Thread-safe. */
PC_API pc_status pc_overlay_render(pc_image *out, const pc_image *rgb, const float *map,
                                   const pc_geometry *geometry, const pc_overlay_options *opt);

/* Back from the map grid (mw x mh as in pc_overlay_render) to the original image, with the mapping
 * pc_overlay_render uses: original column x lands at sx(x) = (x + 0.5) * resized_width / orig_width -
 * crop_left (rows likewise).
 * Box: box = {x0, y0, x1, y1}, half-open on the map grid (as pc_region's); out_box receives the
 * half-open box of the original pixels whose centres land inside it, i.e. x0 <= sx(x) < x1 (likewise
 * y), clipped to the image. When no original centre lands inside (a box smaller than one original
 * pixel, when the image is smaller than the crop), the one original pixel under the box's centre.
 * The box must overlap [0, mw) x [0, mh) and satisfy x0 < x1, y0 < y1. Thread-safe. */
PC_API pc_status pc_overlay_box_to_original(int32_t out_box[4], const pc_geometry *geometry,
                                             const int32_t box[4]);

/* The original pixel under the centre of map pixel (x, y) (e.g. a region's peak):
 * floor((x + 0.5 + crop_left) * orig_width / resized_width), likewise y, clamped to the image.
 * Thread-safe. */
PC_API pc_status pc_overlay_point_to_original(int32_t out_xy[2], const pc_geometry *geometry, int32_t x,
                                               int32_t y);

/* Write an 8-bit image (channels 1 = grey or 3 = RGB) as a PNG, atomically (a temporary file beside
 * path, flushed, then renamed over it). Errors name the path. Thread-safe. */
PC_API pc_status pc_image_write_png(const char *path, const pc_image *img);

/* Encode an 8-bit image (channels 1 or 3) as a PNG in memory: *png receives a new buffer of *size
 * bytes, to be released with pc_buffer_free. level: -1 for pc_image_write_png's fast setting (zlib
 * level 1, Paeth filter on every row), or a zlib level 0..9 with libpng choosing each row's filter
 * (9: smallest, e.g. for images embedded in a report). Thread-safe. */
PC_API pc_status pc_image_encode_png(uint8_t **png, size_t *size, const pc_image *img, int32_t level);

/* Release a buffer the library allocated for the caller (pc_image_encode_png, pc_map_encode_png16).
 * NULL is fine. */
PC_API void pc_buffer_free(void *buf);

/* Write a map (h x w floats) as a 16-bit grey PNG, atomically. Each sample is
 *     g = clamp(floor(v / full_scale * 65535 + 0.5), 0, 65535)   (in double; NaN gives 0)
 * and the file carries tEXt "patchcore:full_scale" (full_scale printed with %.17g) so that
 * v ~= g / 65535 * full_scale can be recovered. full_scale > 0 and finite, e.g. twice the pixel
 * threshold. Thread-safe. */
#define PC_PNG16_SCALE_KEY "patchcore:full_scale"
PC_API pc_status pc_map_write_png16(const char *path, const float *map, int32_t h, int32_t w,
                                    double full_scale);

/* The same 16-bit PNG (samples and tEXt) in memory: *png receives a new buffer of *size bytes, to be
 * released with pc_buffer_free. Thread-safe. */
PC_API pc_status pc_map_encode_png16(uint8_t **png, size_t *size, const float *map, int32_t h, int32_t w,
                                     double full_scale);

/* Write a map (h x w floats) as an uncompressed baseline TIFF of 32-bit IEEE floats (one strip,
 * little-endian, SampleFormat = 3, BlackIsZero), atomically: the values exactly. PIL opens it as
 * mode "F", tifffile and GDAL as float32. Fails with PC_ERR_TOO_LARGE beyond 4 GiB. Thread-safe. */
PC_API pc_status pc_map_write_tiff(const char *path, const float *map, int32_t h, int32_t w);

#ifdef __cplusplus
}
#endif
#endif /* PATCHCORE_H */
