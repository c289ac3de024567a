"""Full-category PyTorch reference for bench/eval_bottle.sh (tests/ref/patchcore_torch.py): fit on all of
bottle/train/good (ResNet-18 layers 2+3, k=1), evaluate every test image, print image AUROC, pixel
AUROC, AUPRO@0.3, image and pixel F1-max as `name value` lines.

The coreset's randomness (the 128 x 1024 projection, uniform in +-1/sqrt(D) as the reference's
nn.Linear, and the start points) is drawn here with numpy from --seed and written to --save-init DIR
(projection.npy, starts.npy), so that patchcore can be fitted with exactly the same coreset draw.
--bn reference|trained: the reference's batch-norm warm-up (default) or the trained statistics
(METHOD.md §2). Masks follow the reference rule (value == 255 after resizing) unless --mask-rule half.

Usage: /usr/bin/python3 bench/eval_bottle_torch.py BOTTLE_DIR WEIGHTS.pth [--bn B] [--coreset R]
       [--seed S] [--save-init DIR] [--mask-rule full|half]   (minutes on 2 cores)
"""
import argparse
import os
import sys

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve, roc_auc_score

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import patchcore_torch as P  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpuinfo  # noqa: E402

L = ["layer2", "layer3"]
torch.set_num_threads(2)


def f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    p, r = p[:-1], r[:-1]
    d = p + r
    return float(np.max(np.where(d > 0, 2 * p * r / np.where(d > 0, d, 1), 0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bottle")
    ap.add_argument("weights")
    ap.add_argument("--bn", default="reference", choices=("reference", "trained"))
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-init")
    ap.add_argument("--mask-rule", default="full", choices=("full", "half"))
    a = ap.parse_args()
    bottle = a.bottle
    cpuinfo.platform()  # stderr: CPU, instruction sets, torch's CPU capability, OpenBLAS core
    ls = lambda *p: sorted(os.listdir(os.path.join(bottle, *p)))  # noqa: E731
    model = P.build_backbone("resnet18", a.weights, L, bn=a.bn)
    feats, grid = [], None
    with torch.no_grad():
        for f in ls("train", "good"):
            x, grid = P.patch_features(P.layer_outputs(model, P.load_image(os.path.join(bottle, "train", "good", f)).unsqueeze(0), L))
            feats.append(x)
    feats = torch.cat(feats)
    n, dim = feats.shape
    rng = np.random.default_rng(a.seed)
    proj = rng.uniform(-1 / np.sqrt(dim), 1 / np.sqrt(dim), size=(128, dim)).astype(np.float32)
    starts = rng.choice(n, size=10, replace=False).astype(np.int64)
    if a.save_init:
        os.makedirs(a.save_init, exist_ok=True)
        np.save(os.path.join(a.save_init, "projection.npy"), proj)
        np.save(os.path.join(a.save_init, "starts.npy"), starts)
    idx = P.greedy_coreset(feats, int(n * a.coreset), torch.from_numpy(proj), starts.tolist(), direct=True)
    if a.save_init:
        np.save(os.path.join(a.save_init, "coreset_torch.npy"), np.asarray(idx, np.int64))
    bank = feats[idx].numpy()
    scores, maps, masks, y = [], [], [], []
    for t in ls("test"):
        for f in ls("test", t):
            with torch.no_grad():
                q, _ = P.patch_features(P.layer_outputs(model, P.load_image(os.path.join(bottle, "test", t, f)).unsqueeze(0), L))
            ps = P.patch_scores(bank, q.numpy(), 1).astype(np.float32)
            scores.append(ps.max())
            maps.append(P.anomaly_maps(ps, grid, 224)[0])
            masks.append(P.load_mask(None if t == "good" else os.path.join(bottle, "ground_truth", t, f[:-4] + "_mask.png"),
                                     rule=a.mask_rule))
            y.append(int(t != "good"))
    s, m, k = np.array(scores, np.float64), np.stack(maps), np.stack(masks)
    print("image_auroc %.6f" % roc_auc_score(y, s))
    print("pixel_auroc %.6f" % roc_auc_score(k.ravel(), m.ravel().astype(np.float64)))
    print("aupro %.6f" % P.aupro(m, k, 0.3))
    print("image_f1_max %.6f" % f1_max(y, s))
    print("pixel_f1_max %.6f" % f1_max(k.ravel(), m.ravel().astype(np.float64)))


if __name__ == "__main__":
    main()
