"""Oracle for pc_eval_aggregate (src/eval.c): synthetic evaluation sets (types, scores with ties, map-like
fields quantised to make pixel ties, blob masks) and their metrics from sklearn (roc_auc_score,
precision_recall_curve) and the from-the-definition AUPRO over scipy.ndimage.label regions of
gen_metrics.py. Per-type image AUROC: each type's images against all good ones (roc_auc_score). agg_sizes: maps of a
different size per image (a tiled model's), the pixel metrics on the concatenated pixels.
"""
import os
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import outdir, save  # noqa: E402
import gen_metrics as gm  # noqa: E402

TYPES = ["broken_large", "broken_small", "contamination", "good"]  # sorted, as the walker orders them
GOOD = 3


def case(d, name, seed, n, h, w, quant):
    gm.rng = np.random.default_rng(seed)
    rng = gm.rng
    maps, masks = gm.maplike(n, h, w, 2.0, 0.6)
    maps = (np.round(maps / quant) * quant).astype(np.float32)
    types = np.empty(n, np.int32)
    types[: n // 4] = GOOD
    types[n // 4:] = rng.integers(0, 3, size=n - n // 4)
    scores = np.round(maps.reshape(n, -1).max(1) + rng.normal(0, 0.4, n), 1).astype(np.float32)
    lab = (types != GOOD).astype(np.uint8)
    img = gm.binary_expect(scores, lab)
    pix = gm.binary_expect(maps.ravel(), masks.ravel())
    aupro = gm.aupro_slow(maps, masks, 0.3)
    per = []
    for t in range(len(TYPES)):
        sel = (types == t) | (types == GOOD)
        per.append(np.nan if t == GOOD or not (types == t).any() else
                   roc_auc_score((types[sel] == t).astype(int), scores[sel].astype(np.float64)))
    save(d, name + "_scores.npy", scores)
    save(d, name + "_maps.npy", maps)
    save(d, name + "_masks.npy", masks.astype(np.uint8))
    save(d, name + "_types.npy", types)
    save(d, name + "_expect.npy", np.array([img[0], pix[0], aupro, img[1], pix[1], img[3], pix[3]]))
    save(d, name + "_pertype.npy", np.array(per, np.float64))


def aupro_sizes(maps, masks, limit):
    """gen_metrics.aupro_slow's definition over maps of different sizes (lists of 2-D arrays): regions
    are each mask's own 8-connected components, the FPR pools the nominal pixels of every map, the
    thresholds are every distinct value of every map."""
    regions = []
    for m, k in zip(maps, masks):
        lab, nc = gm.ndimage.label(k != 0, structure=gm.STRUCT8)
        for c in range(1, nc + 1):
            regions.append(m[lab == c].astype(np.float64))
    nominal = np.concatenate([m[k == 0] for m, k in zip(maps, masks)]).astype(np.float64)
    allv = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    xs, ys = [0.0], [0.0]
    for t in np.unique(allv)[::-1]:
        xs.append(np.mean(nominal >= t))
        ys.append(np.mean([np.mean(r >= t) for r in regions]))
    xs.append(1.0)
    ys.append(1.0)
    area = 0.0
    for i in range(1, len(xs)):
        x0, y0, x1, y1 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if x1 > limit:
            yl = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            area += 0.5 * (y0 + yl) * (limit - x0)
            break
        area += 0.5 * (y0 + y1) * (x1 - x0)
    return area / limit


def case_sizes(d, name, seed, sizes, quant):
    """Maps of a different size per image (as a tiled model's, which have each image's size), laid out
    one after the other: pixel AUROC and F1 from sklearn on the concatenated pixels, AUPRO over each
    mask's own regions (aupro_sizes)."""
    gm.rng = np.random.default_rng(seed)
    rng = gm.rng
    n = len(sizes)
    maps, masks = [], []
    for k, (h, w) in enumerate(sizes):
        mk = gm.blob_mask(h, w, 1 + k % 3) if k >= n // 4 else np.zeros((h, w), bool)
        f = gm.ndimage.gaussian_filter(rng.normal(size=(h, w)), 2.0)
        f += 0.6 * gm.ndimage.gaussian_filter(mk.astype(float), 1.0)
        maps.append((np.round(f / quant) * quant).astype(np.float32))
        masks.append(mk.astype(np.uint8))
    types = np.empty(n, np.int32)
    types[: n // 4] = GOOD
    types[n // 4:] = rng.integers(0, 3, size=n - n // 4)
    scores = np.round(np.array([m.max() for m in maps]) + 2.0 + rng.normal(0, 0.4, n), 1).astype(np.float32)
    lab = (types != GOOD).astype(np.uint8)
    flat_maps = np.concatenate([m.ravel() for m in maps])
    flat_masks = np.concatenate([k.ravel() for k in masks])
    img = gm.binary_expect(scores, lab)
    pix = gm.binary_expect(flat_maps, flat_masks)  # roc_auc_score / precision_recall_curve on all pixels
    aupro = aupro_sizes(maps, masks, 0.3)
    per = []
    for t in range(len(TYPES)):
        sel = (types == t) | (types == GOOD)
        per.append(np.nan if t == GOOD or not (types == t).any() else
                   roc_auc_score((types[sel] == t).astype(int), scores[sel].astype(np.float64)))
    save(d, name + "_scores.npy", scores)
    save(d, name + "_maps.npy", flat_maps)
    save(d, name + "_masks.npy", flat_masks)
    save(d, name + "_sizes.npy", np.array(sizes, np.int32))  # (n, 2): height, width
    save(d, name + "_types.npy", types)
    save(d, name + "_expect.npy", np.array([img[0], pix[0], aupro, img[1], pix[1], img[3], pix[3]]))
    save(d, name + "_pertype.npy", np.array(per, np.float64))


def main():
    d = outdir()
    case(d, "agg_a", 1, 24, 40, 40, 0.05)
    case(d, "agg_b", 2, 13, 33, 29, 0.2)
    # Per-image sizes: different heights and widths, some square, one good image a single row.
    case_sizes(d, "agg_sizes", 3, [(23, 37), (40, 40), (1, 60), (12, 50), (29, 29), (37, 23), (45, 33), (20, 26),
                                    (33, 45), (31, 17), (26, 20), (17, 31), (50, 12), (40, 41), (22, 22), (35, 28)], 0.05)


if __name__ == "__main__":
    main()
