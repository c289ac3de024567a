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

#endif
