"""Acceptance oracle for evaluation (tests/test_eval.c) on a bottle subset, from tests/ref/patchcore_torch.py.

Builds OUTDIR/bottle_sub, an MVTec layout of symbolic links into ../shared's bottle: train/good = 20
training images (every 10th in sorted order), test = the first 4 good and the first 3 of every defect
type with their ground_truth masks. Fits the PyTorch reference (real ResNet-18, layers 2+3, S=224, p=3,
D_pre=D=1024, 10% coreset by direct-difference greedy from the projection/starts saved here, k=1),
predicts the test images and writes: projection.npy, starts.npy, scores.npy (test images in the C
walker's order: types sorted, files sorted), expect.npy = [image AUROC, pixel AUROC, AUPRO@0.3,
image F1-max, pixel F1-max] (sklearn roc_auc_score / precision_recall_curve, P.aupro), and
pertype.npy (image AUROC of each defect type vs all good, types sorted, NaN for good).
Masks: P.load_mask under the reference rule "full" (resized value == 255) for expect.npy.

Both mask rules on identical maps (the reference's float32 maps, saved): maps.npy (n, 224, 224) float32,
masks_full.npy / masks_half.npy (n, 224, 224) uint8 0/1 made by PIL Resize + CenterCrop then == 255 /
>= 128, and rules.npy (2, 6) float64, row 0 full, row 1 half: [image AUROC, pixel AUROC (sklearn
roc_auc_score), AUPRO@0.3 (P.aupro), image F1-max, pixel F1-max (sklearn precision_recall_curve), pixel
F1 decision threshold (sklearn's F1-max threshold t, midway to the next lower distinct map value, as
docs/metrics.md defines for the `score > t` rule)]. The rules must give different pixel metrics.
"""
import os
import sys

import numpy as np
import torch
from sklearn.metrics import precision_recall_curve, roc_auc_score

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import patchcore_torch as P  # noqa: E402

torch.set_num_threads(2)
LAYERS = ["layer2", "layer3"]


def f1_max(y, s):
    p, r, _ = precision_recall_curve(y, s)
    p, r = p[:-1], r[:-1]
    den = p + r
    return float(np.max(np.where(den > 0, 2 * p * r / np.where(den > 0, den, 1), 0)))


def f1_decision_threshold(y, s):
    """sklearn's F1-max threshold t (the lowest on ties, thresholds[argmax]) moved halfway down to the
    next lower distinct score: the same operating point for `score > t`."""
    p, r, t = precision_recall_curve(y, s)
    p, r = p[:-1], r[:-1]
    den = p + r
    f1 = np.where(den > 0, 2 * p * r / np.where(den > 0, den, 1), 0)
    best = t[int(np.argmax(f1))]
    lower = np.unique(s)
    lower = lower[lower < best]
    return float(0.5 * (lower[-1] + best)) if len(lower) else float(np.nextafter(best, -np.inf))


def link(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    if not os.path.lexists(dst):
        os.symlink(src, dst)


def main():
    out = common.outdir()
    bottle = common.bottle_dir()
    w = common.weights_r18("pth")
    if bottle is None or w is None:
        print("gen_eval: ../shared data or weights absent; skipping", file=sys.stderr)
        return
    sub = os.path.join(out, "bottle_sub")
    ls = lambda *p: sorted(os.listdir(os.path.join(bottle, *p)))  # noqa: E731
    train = [os.path.join(bottle, "train", "good", f) for f in ls("train", "good")[::10][:20]]
    for p in train:
        link(p, os.path.join(sub, "train", "good", os.path.basename(p)))
    test, types, masks = [], [], []
    for ti, t in enumerate(ls("test")):
        for f in ls("test", t)[: 4 if t == "good" else 3]:
            link(os.path.join(bottle, "test", t, f), os.path.join(sub, "test", t, f))
            test.append(os.path.join(bottle, "test", t, f))
            types.append(t)
            m = None
            if t != "good":
                m = os.path.join(bottle, "ground_truth", t, f[:-4] + "_mask.png")
                link(m, os.path.join(sub, "ground_truth", t, f[:-4] + "_mask.png"))
            masks.append((P.load_mask(m), P.load_mask(m, rule="half")))
    model = P.build_backbone("resnet18", w, LAYERS)
    feats, grid = [], None
    for p in train:
        f, grid = P.patch_features(P.layer_outputs(model, P.load_image(p).unsqueeze(0), LAYERS))
        feats.append(f)
    feats = torch.cat(feats)
    n_total, dim = feats.shape
    rng = np.random.default_rng(5)
    bound = 1.0 / np.sqrt(dim)
    projection = rng.uniform(-bound, bound, size=(128, dim)).astype(np.float32)
    starts = rng.choice(n_total, size=10, replace=False).astype(np.int64)
    idx = P.greedy_coreset(feats, int(n_total * 0.1), torch.from_numpy(projection), starts.tolist(), direct=True)
    bank = feats[idx].numpy()
    qs = []
    for p in test:
        f, _ = P.patch_features(P.layer_outputs(model, P.load_image(p).unsqueeze(0), LAYERS))
        qs.append(f.numpy())
    ps = P.patch_scores(bank, np.concatenate(qs), 1).astype(np.float32)
    scores = ps.reshape(len(test), -1).max(axis=1)
    maps = P.anomaly_maps(ps, grid, 224)
    maps = maps.astype(np.float32)
    masks_full = np.stack([m[0] for m in masks])
    masks_half = np.stack([m[1] for m in masks])
    y = np.array([t != "good" for t in types], int)
    rules = []
    for mk in (masks_full, masks_half):
        yp, sp = mk.ravel(), maps.ravel().astype(np.float64)
        rules.append([roc_auc_score(y, scores.astype(np.float64)), roc_auc_score(yp, sp), P.aupro(maps, mk, 0.3),
                      f1_max(y, scores.astype(np.float64)), f1_max(yp, sp), f1_decision_threshold(yp, sp)])
    rules = np.array(rules, np.float64)
    assert np.all(masks_full <= masks_half) and masks_half.sum() > masks_full.sum() > 0
    assert np.all(np.abs(rules[0, 1:3] - rules[1, 1:3]) > 1e-4), "the rules give the same pixel metrics"
    expect = list(rules[0, :5])
    per = []
    for t in sorted(set(types)):
        sel = np.array([u in (t, "good") for u in types])
        per.append(np.nan if t == "good" else
                   roc_auc_score(np.array(types)[sel] == t, scores[sel].astype(np.float64)))
    common.save(out, "projection.npy", projection)
    common.save(out, "starts.npy", starts)
    common.save(out, "scores.npy", scores)
    common.save(out, "expect.npy", np.array(expect, np.float64))
    common.save(out, "pertype.npy", np.array(per, np.float64))
    common.save(out, "maps.npy", maps)
    common.save(out, "masks_full.npy", masks_full)
    common.save(out, "masks_half.npy", masks_half)
    common.save(out, "rules.npy", rules)
    print("gen_eval: full rule pixel AUROC %.6f AUPRO %.6f F1 %.6f; half rule %.6f %.6f %.6f"
          % (rules[0, 1], rules[0, 2], rules[0, 4], rules[1, 1], rules[1, 2], rules[1, 4]), file=sys.stderr)


if __name__ == "__main__":
    main()
