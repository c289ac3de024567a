"""Oracle for the reference implementation's ensemble rule (src/ensemble.c, pc_minmax_*): the
aggregation its run script applies to the members' outputs, re-implemented in numpy: each member's
image scores, and separately its maps, min-max normalised over the whole test set, then the mean over
members (numpy float32 arithmetic throughout, as the reference computes on float32 arrays). Members
whose maps have another size than the first member's are resized to it with torch's
F.interpolate(mode="bilinear", align_corners=False) after normalisation (the reference has no such
case: its members share one image size; this is our extension and its definition).
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import outdir, save  # noqa: E402


def reference_aggregate(scores, segmentations):
    """The reference's lines, for members of one map size: scores (M, N), segmentations (M, N, H, W)."""
    scores = np.array(scores)
    min_scores = scores.min(axis=-1).reshape(-1, 1)
    max_scores = scores.max(axis=-1).reshape(-1, 1)
    scores = (scores - min_scores) / (max_scores - min_scores)
    scores = np.mean(scores, axis=0)
    segmentations = np.array(segmentations)
    min_s = segmentations.reshape(len(segmentations), -1).min(axis=-1).reshape(-1, 1, 1, 1)
    max_s = segmentations.reshape(len(segmentations), -1).max(axis=-1).reshape(-1, 1, 1, 1)
    segmentations = (segmentations - min_s) / (max_s - min_s)
    segmentations = np.mean(segmentations, axis=0)
    return scores, segmentations


def mixed_aggregate(scores, maps, s0):
    """Members of different map sizes: each normalised as above, resized to s0, then averaged."""
    normed = []
    for m in maps:
        lo, hi = m.min(), m.max()
        x = ((m - lo) / (hi - lo)).astype(np.float32)
        if x.shape[-1] != s0:
            x = F.interpolate(torch.from_numpy(x)[:, None], size=(s0, s0), mode="bilinear",
                              align_corners=False)[:, 0].numpy()
        normed.append(x)
    sc = np.stack([(s - s.min()) / (s.max() - s.min()) for s in scores]).astype(np.float32)
    return np.mean(sc, axis=0), np.mean(np.stack(normed), axis=0)


def main():
    d = outdir()
    rng = np.random.default_rng(13)
    n, s0 = 9, 24
    # case "same": three members of one map size, different scales and offsets (as members' raw
    # distances are); maps non-negative like squared distances
    scores = [(rng.gamma(2.0, 1.0 + 3 * i, n) + 5 * i).astype(np.float32) for i in range(3)]
    maps = [(rng.gamma(1.5, 2.0 + i, (n, s0, s0)) + i).astype(np.float32) for i in range(3)]
    es, em = reference_aggregate(scores, maps)
    assert es.dtype == np.float32 and em.dtype == np.float32
    for i in range(3):
        save(d, "same_scores%d.npy" % i, scores[i])
        save(d, "same_maps%d.npy" % i, maps[i])
    save(d, "same_expect_scores.npy", es)
    save(d, "same_expect_maps.npy", em)
    # case "mixed": a second member at another map size (e.g. crop 320 next to 224)
    s1 = 35
    scores2 = [scores[0], (rng.gamma(2.0, 2.0, n) + 1).astype(np.float32)]
    maps2 = [maps[0], (rng.gamma(1.5, 3.0, (n, s1, s1))).astype(np.float32)]
    es2, em2 = mixed_aggregate(scores2, maps2, s0)
    save(d, "mixed_scores1.npy", scores2[1])
    save(d, "mixed_maps1.npy", maps2[1])
    save(d, "mixed_expect_scores.npy", es2.astype(np.float32))
    save(d, "mixed_expect_maps.npy", em2.astype(np.float32))


if __name__ == "__main__":
    main()
