"""Oracle for pc_eval_aggregate (src/eval.c): synthetic evaluation sets (types, scores with ties, map-like
fields quantised to make pixel ties, blob masks) and their metrics from sklearn (roc_auc_score,
precision_recall_curve) and the from-the-definition AUPRO over scipy.ndimage.label regions of
gen_metrics.py. Per-type image AUROC: each type's images against all good ones (roc_auc_score).
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


def main():
    d = outdir()
    case(d, "agg_a", 1, 24, 40, 40, 0.05)
    case(d, "agg_b", 2, 13, 33, 29, 0.2)


if __name__ == "__main__":
    main()
