/*
 * onednn_net.h - a backbone's network compiled into oneDNN primitives (issue 12). backbone.c
 * describes the folded network as a list of operations on values (convolutions with bias, residual
 * sum and ReLU; the 3x3/2 max-pool) and builds, per input shape, a plan: one primitive per operation
 * in the layouts oneDNN prefers (blocked, e.g. nChw16c, end to end), a reorder of the NCHW float32
 * input into them and of each layer tap back to NCHW float32, every buffer and the scratchpad
 * allocated when the plan is made. Internal to the library.
 *
 * Two objects: the net (one per loaded backbone) holds the description and the convolution weights
 * reordered into the layouts plans ask for, shared by every plan and view; a plan (one per backbone
 * or view and input shape) holds primitives, stream, activations and scratchpad, and is used by one
 * thread at a time. Plans of one net may run concurrently on different threads.
 */
#ifndef PC_BACKBONE_ONEDNN_H
#define PC_BACKBONE_ONEDNN_H

#include "internal.h"

/* One convolution, batch-norm folded. weight (cout, cin/groups, k, k) and bias (cout) are float32 and
 * owned by the caller; they must outlive the net. */
typedef struct pc_dnn_conv {
    int32_t cin, cout, k, stride, pad, groups;
    const float *weight, *bias;
} pc_dnn_conv;

enum { PC_DNN_CONV = 0, PC_DNN_MAXPOOL = 1, PC_DNN_BUFFER = 2, PC_DNN_BNRELU = 3, PC_DNN_AVGPOOL = 4 };

/* One operation. Values are numbered: 0 is the network input (n, 3, h, w), operation i makes value
 * i + 1. A convolution reads value src, adds value res (when res > 0; res must not be read after this
 * operation, its memory is reused in place) and applies ReLU when relu; the max-pool is 3x3, stride 2,
 * padding 1 with PyTorch's semantics (padding never wins); the average pool 2x2, stride 2, no padding.
 * tap = N (1..4) marks layerN's output.
 *
 * DenseNet's concatenation without copies: a PC_DNN_BUFFER makes a value of ch channels (its height
 * and width those of the first operation writing into it; src is ignored) and computes nothing; an
 * operation with into > 0 writes its output into channels [off, off + its channels) of buffer value
 * `into` (its own value is that slice), and a tap on it outputs the whole buffer; src_ch > 0 reads
 * only the first src_ch channels of src. PC_DNN_BNRELU is y = max(0, x * scale[c] + shift[c]) per
 * channel. A net with buffers runs one image at a time (a channel slice of one image's blocked
 * activations is contiguous); offsets and src_ch must be multiples of the layout's channel block
 * (16 with AVX-512, 8 otherwise). */
typedef struct pc_dnn_op {
    int kind, conv, src, res, relu, tap;
    int into, off, src_ch, ch;
    const float *scale, *shift; /* PC_DNN_BNRELU: one per channel read (copied into the net) */
} pc_dnn_op;

typedef struct pc_dnn_net pc_dnn_net;
typedef struct pc_dnn_plan pc_dnn_plan;

/* Copy the description (not the weights) into a new net; bf16 != 0 runs the convolutions and the
 * activations in bfloat16 (float32 bias and accumulation). Needs the oneDNN engine. */
pc_status pc_dnn_net_create(const pc_dnn_conv *convs, int nconv, const pc_dnn_op *ops, int nops, int bf16,
                            pc_dnn_net **out);
void pc_dnn_net_free(pc_dnn_net *net);
/* Bytes of reordered weights the net holds (grows when a plan needs a layout not seen before); before
 * the first plan, what one layout of every convolution will take. */
size_t pc_dnn_net_weight_bytes(pc_dnn_net *net);

/* A plan for batches of exactly n images of h x w, at the calling thread's OpenMP thread count.
 * Thread-safe with respect to other plans of the same net. */
pc_status pc_dnn_plan_create(pc_dnn_net *net, int32_t n, int32_t h, int32_t w, pc_dnn_plan **out);
void pc_dnn_plan_free(pc_dnn_plan *p);
/* 1 when p was made for this shape and the calling thread's thread count. */
int pc_dnn_plan_fits(const pc_dnn_plan *p, int32_t n, int32_t h, int32_t w);
/* Bytes the plan allocated (activations, input/reorder buffers, scratchpad). */
size_t pc_dnn_plan_bytes(const pc_dnn_plan *p);
/* Run the plan on in (n, 3, h, w) and write every layer of layer_mask into outs[N-1] (NCHW float32);
 * operations past the deepest requested layer are skipped. Allocates nothing. */
pc_status pc_dnn_plan_forward(pc_dnn_plan *p, const float *in, uint32_t layer_mask, float *const outs[4]);
/* One line per distinct convolution shape and the kernel oneDNN chose for it ("7x7/2 3->64: brg:avx512_core"),
 * then the number of layout reorders between operations; for benchmarks and diagnostics. */
void pc_dnn_plan_describe(const pc_dnn_plan *p, char *buf, size_t size);

#endif /* PC_BACKBONE_ONEDNN_H */
