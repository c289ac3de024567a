/*
 * backbone_internal.h - backbone entry points the model needs beyond the public API: building from
 * tensors already in memory (a model file's), and views that share one backbone's weights with
 * their own scratch memory (one per predicting thread).
 */
#ifndef PC_BACKBONE_INTERNAL_H
#define PC_BACKBONE_INTERNAL_H

#include "weights.h"

/* Build a backbone from torchvision-named tensors in memory (not copied: BN is folded into new
 * buffers). name is used in messages. Same validation and options as pc_backbone_load_with. */
pc_status pc_backbone_load_dict(const pc_tensor_dict *dict, const char *name, pc_arch arch, uint32_t layer_mask,
                                const pc_backbone_options *opt, pc_backbone **out);

/* 1 when a backbone loaded up to layer `deepest` (1..4) reads the tensor `name`, in any family and
 * spelling (the stem, layer1..deepest or denseblock1..deepest and the transitions between); 0 for the
 * classifier, norm5, deeper layers, num_batches_tracked and names no family knows. For a model file
 * that keeps only the tensors its backbone needs. */
int pc_backbone_tensor_needed(const char *name, int32_t deepest);

/* A backbone sharing src's weights, with its own (initially empty) workspace, so that two threads can
 * run forward at once. Free it with pc_backbone_free before src. */
pc_status pc_backbone_view(const pc_backbone *src, pc_backbone **out);

/* Bytes of the (batch-norm-folded, Winograd-transformed) weights a backbone holds (0 for a view), and
 * of its current workspace (what pc_backbone_reserve allocated). For fit's memory plan. */
size_t pc_backbone_weight_bytes(const pc_backbone *bb);
size_t pc_backbone_workspace_bytes(const pc_backbone *bb);

/* Free the workspace (the next forward or reserve allocates it again); fit drops it once the features
 * are computed, so the coreset runs without it. */
void pc_backbone_release_workspace(pc_backbone *bb);

/* Which convolutions a backbone runs: our own (src/nn.c: im2col + OpenBLAS SGEMM, Winograd F(2,3);
 * NCHW float32) or oneDNN's (src/backbone/onednn_net.c; blocked layouts, float32 or bfloat16). Chosen
 * at load: $PATCHCORE_CONV=builtin|onednn, else the measured default (docs/backbone.md, "Which
 * convolutions"); bf16 always runs on oneDNN. */
typedef enum pc_conv_path { PC_CONV_BUILTIN = 0, PC_CONV_ONEDNN = 1 } pc_conv_path;
pc_conv_path pc_backbone_conv_path(const pc_backbone *bb);
const char *pc_conv_path_name(pc_conv_path p);

/* The oneDNN kernels of the plan for (n, h, w) (made if needed), one line per distinct convolution
 * shape; "" on the builtin path. For benchmarks and diagnostics. */
pc_status pc_backbone_describe_kernels(pc_backbone *bb, int32_t n, int32_t h, int32_t w, char *buf, size_t size);

#endif
