"""Reference values for tests/test_metrics.c (src/metrics.c, src/calibrate.c).

- AUROC: sklearn.metrics.roc_auc_score; ROC curves: sklearn.metrics.roc_curve; F1-max and its threshold: sklearn.metrics.precision_recall_curve.
- AUPRO: a slow, obvious implementation written from the definition (METHOD.md §7): regions from
  scipy.ndimage.label with an 8-connected structure, then for EVERY distinct threshold the FPR and the
  PRO are recomputed from scratch, and the (0,0)..(1,1) curve is integrated by the trapezoid rule up to
  the FPR limit, the crossing segment interpolated.
- Components: scipy.ndimage.label / find_objects.
- Thresholds: numpy.quantile, numpy.std(ddof=1), and the false-alarm / conformal rules by brute force.

Random cases use integer-quantised scores on purpose (many ties), plus degenerate ones. "Map-like"
cases are smoothed random fields with blob masks, standing in for real anomaly maps until predict
exists. Run as: /usr/bin/python3 gen_metrics.py OUTDIR.
"""
import os
import sys

import numpy as np
from scipy import ndimage
from scipy.special import expit
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import outdir, save  # noqa: E402

rng = np.random.default_rng(20261128)
STRUCT8 = np.ones((3, 3), dtype=int)


# ---------------------------------------------------------------------------------------------
# Binary metrics
# ---------------------------------------------------------------------------------------------
def binary_expect(scores, labels):
    """[auroc (nan if one class), f1_max, f1_threshold, f1_decision_threshold (nan if no positive)]."""
    s = scores.astype(np.float64)
    y = labels.astype(np.int64)
    npos = int(y.sum())
    auroc = roc_auc_score(y, s) if 0 < npos < len(y) else np.nan
    if npos == 0:
        return np.array([auroc, 0.0, np.nan, np.nan])
    p, r, t = precision_recall_curve(y, s)  # t ascending; p[-1] = 1, r[-1] = 0 have no threshold
    p, r = p[:-1], r[:-1]
    den = p + r
    f1 = np.where(den > 0, 2 * p * r / np.where(den > 0, den, 1), 0.0)
    best = f1.max()
    idx = int(np.nonzero(f1 >= best - 1e-12)[0][0])  # the lowest threshold attaining the maximum
    thr = t[idx]
    u = np.unique(s)
    j = int(np.searchsorted(u, thr))
    assert u[j] == thr
    dec = np.nextafter(thr, -np.inf) if j == 0 else 0.5 * (u[j - 1] + thr)
    return np.array([auroc, best, thr, dec])


def binary_cases():
    cases = []
    n = 1000
    y = (rng.random(n) < 0.3).astype(np.uint8)
    cases.append((rng.normal(size=n).astype(np.float32) + y, y))                      # continuous
    y = (rng.random(500) < 0.4).astype(np.uint8)
    cases.append((rng.integers(0, 10, 500).astype(np.float32) + 2 * y * (rng.random(500) < 0.5), y))  # ties
    y = (rng.random(300) < 0.5).astype(np.uint8)
    cases.append((np.full(300, 3.25, np.float32), y))                                 # all tied
    y = np.zeros(200, np.uint8); y[17] = 1
    cases.append((rng.integers(0, 20, 200).astype(np.float32), y))                    # one positive
    y = np.ones(200, np.uint8); y[5] = 0
    cases.append((rng.integers(0, 20, 200).astype(np.float32), y))                    # one negative
    y = np.r_[np.zeros(50), np.ones(30)].astype(np.uint8)
    cases.append((np.r_[rng.random(50), 2 + rng.random(30)].astype(np.float32), y))    # separable
    cases.append((np.r_[2 + rng.random(50), rng.random(30)].astype(np.float32), y))    # inverted
    s = rng.integers(-3, 4, 400).astype(np.float32)
    s[s == 0] = np.where(rng.random(int((s == 0).sum())) < 0.5, -0.0, 0.0)            # signed zeros
    y = (rng.random(400) < (s + 4) / 8).astype(np.uint8)
    cases.append((s, y))
    n = 200000                                                                        # pixel-like
    y = (rng.random(n) < 0.05).astype(np.uint8)
    s = np.round((rng.random(n) + 0.6 * y * rng.random(n)) * 256) / 256
    cases.append((s.astype(np.float32), y))
    cases.append((np.array([0.5, 0.25], np.float32), np.array([1, 0], np.uint8)))    # two
    cases.append((rng.integers(0, 5, 50).astype(np.float32), np.zeros(50, np.uint8)))  # no positive
    cases.append((rng.integers(0, 5, 50).astype(np.float32), np.ones(50, np.uint8)))   # no negative
    cases.append((np.array([4, 3, 2, 1], np.float32), np.array([1, 0, 0, 1], np.uint8)))  # F1 tie: 2/3 twice
    y = (rng.random(1000) < 0.5).astype(np.uint8)                                     # tiny ulp gaps
    s = (1.0 + rng.integers(0, 40, 1000) * np.float32(2 ** -23)).astype(np.float32)
    cases.append((s, y))
    return cases


# ---------------------------------------------------------------------------------------------
# AUPRO, from the definition
# ---------------------------------------------------------------------------------------------
def aupro_slow(maps, masks, limit):
    regions = []
    for m, k in zip(maps, masks):
        lab, nc = ndimage.label(k != 0, structure=STRUCT8)
        for c in range(1, nc + 1):
            regions.append(m[lab == c].astype(np.float64))
    nominal = maps[masks == 0].astype(np.float64)
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps.astype(np.float64))[::-1]:  # every distinct value, decreasing; ">= t"
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


def aupro_fast(maps, masks, limit):
    """The same definition vectorised (one argsort and cumulative sums, as MVTec's compute_pro): a
    second, independent oracle for maps too large for aupro_slow. Checked against it on every small case."""
    weight_pro = np.zeros(maps.shape, np.float64)
    nominal = np.zeros(maps.shape, np.float64)
    nreg = 0
    for k in range(len(maps)):
        lab, nc = ndimage.label(masks[k] != 0, structure=STRUCT8)
        nreg += nc
        areas = np.bincount(lab.ravel(), minlength=nc + 1)
        weight_pro[k] = np.where(lab > 0, 1.0 / areas[lab], 0.0)
        nominal[k] = lab == 0
    v = maps.astype(np.float64).ravel()
    order = np.argsort(-v, kind="stable")
    v = v[order]
    fpr = np.cumsum(nominal.ravel()[order]) / nominal.sum()
    pro = np.minimum(np.cumsum(weight_pro.ravel()[order]) / nreg, 1.0)
    last = np.r_[v[1:] != v[:-1], True]  # the last pixel of each group of tied values
    xs = np.r_[0.0, fpr[last], 1.0]
    ys = np.r_[0.0, pro[last], 1.0]
    i = int(np.searchsorted(xs, limit, side="right"))  # xs[:i] <= limit < xs[i]
    area = np.sum(0.5 * (ys[1:i] + ys[:i - 1]) * np.diff(xs[:i]))
    if i < len(xs):
        yl = ys[i - 1] + (ys[i] - ys[i - 1]) * (limit - xs[i - 1]) / (xs[i] - xs[i - 1])
        area += 0.5 * (ys[i - 1] + yl) * (limit - xs[i - 1])
    return area / limit


def maplike(n, h, w, sigma, strength):
    """Smoothed random fields; blob masks on all but the first quarter ("good") raise the field."""
    masks = np.zeros((n, h, w), np.uint8)
    maps = np.zeros((n, h, w), np.float32)
    for k in range(n):
        if k >= n // 4:
            masks[k] = blob_mask(h, w, 1 + k % 3)
        f = ndimage.gaussian_filter(rng.normal(size=(h, w)), sigma)
        f += strength * ndimage.gaussian_filter(masks[k].astype(float), sigma / 2)
        maps[k] = f
    return maps, masks


def blob_mask(h, w, nblobs):
    m = np.zeros((h, w), bool)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(nblobs):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1.5, h / 6), rng.uniform(1.5, w / 6)
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    return m


def aupro_cases():
    cases = []
    # Small random maps; masks with several regions, some touching only diagonally.
    n, h, w = 5, 24, 32
    masks = np.zeros((n, h, w), np.uint8)
    for k in range(1, n):
        masks[k] = blob_mask(h, w, 3)
    masks[1, 2:5, 2:5] = 1
    masks[1, 5:8, 5:8] = 1   # diagonal touch: one region with 8-connectivity, two with 4
    masks[2, 10, 10] = 1
    masks[2, 11, 11] = 1
    masks[2, 12, 9] = 0
    masks[3, 0, :] = 1       # a region along the border
    maps = rng.random((n, h, w)).astype(np.float32) + 0.5 * masks
    cases.append((maps, masks, 0.3))
    # Integer-quantised: heavy ties.
    mq = np.floor(maps * 8).astype(np.float32)
    cases.append((mq, masks, 0.3))
    cases.append((mq, masks, 1.0))
    cases.append((maps, masks, 0.05))
    # Map-like: smoothed random fields with blob masks raising the map.
    n, h, w = 4, 48, 48
    masks = np.zeros((n, h, w), np.uint8)
    maps = np.zeros((n, h, w), np.float32)
    for k in range(n):
        if k > 0:
            masks[k] = blob_mask(h, w, 1 + k)
        f = ndimage.gaussian_filter(rng.normal(size=(h, w)), 3)
        f += 0.02 * ndimage.gaussian_filter(masks[k].astype(float), 2) * 4
        maps[k] = f
    cases.append((maps, masks, 0.3))
    # Quantised map-like (ties as 8-bit maps would have).
    cases.append((np.round(maps * 512).astype(np.float32) / 512, masks, 0.3))
    return cases


# ---------------------------------------------------------------------------------------------
# Connected components
# ---------------------------------------------------------------------------------------------
def label_cases():
    cases = []
    for h, w, p in [(37, 53, 0.3), (37, 53, 0.55), (1, 40, 0.5), (40, 1, 0.5), (64, 64, 0.45), (5, 5, 0.0),
                    (6, 7, 1.0)]:
        cases.append((rng.random((h, w)) < p).astype(np.uint8))
    cb = (np.indices((9, 11)).sum(0) % 2).astype(np.uint8)  # checkerboard: one 8-connected region
    cases.append(cb)
    sp = np.zeros((20, 20), np.uint8)                        # a spiral-ish U: labels must merge late
    sp[2:18, 2] = 1; sp[17, 2:18] = 1; sp[2:18, 17] = 1; sp[2, 10:18] = 1; sp[3, 9] = 1
    cases.append(sp)
    return cases


def region_stats(mask, mp):
    lab, nc = ndimage.label(mask != 0, structure=STRUCT8)
    rows = []
    for c, sl in enumerate(ndimage.find_objects(lab), start=1):
        area = int((lab == c).sum())
        vals = np.where(lab == c, mp, -np.inf).ravel()
        pk = int(np.argmax(vals))  # first maximum in raster order
        rows.append([c, sl[1].start, sl[0].start, sl[1].stop, sl[0].stop, area, pk % mask.shape[1],
                     pk // mask.shape[1]])
    return lab.astype(np.int32), nc, np.array(rows, np.int64).reshape(-1, 8)


# ---------------------------------------------------------------------------------------------
# Thresholds
# ---------------------------------------------------------------------------------------------
QS = np.array([0.0, 0.1, 0.25, 0.333, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0])
KS = np.array([0.0, 1.0, 3.0, -0.5])
FARS = np.array([0.0, 0.001, 0.01, 0.05, 0.1, 0.5, 0.99])
CONF = np.array([0.001, 0.01, 0.05, 0.1, 0.5, 0.9])


def far_threshold(s, rate):
    """Smallest t with mean(s > t) <= rate: scan candidate thresholds (the scores) upwards."""
    for t in np.unique(s):
        if np.count_nonzero(s > t) / len(s) <= rate:
            return t
    raise AssertionError


def conformal(s, rate):
    n = len(s)
    m = max(m for m in range(n + 1) if m <= rate * (n + 1))
    d = np.sort(s)[::-1]
    return (d[0], 1 / (n + 1)) if m == 0 else (d[m - 1], m / (n + 1))


def threshold_cases():
    return [rng.gamma(3.0, 1.0, 37).astype(np.float32),
            rng.integers(0, 30, 200).astype(np.float32),
            rng.normal(size=150).astype(np.float32),
            np.array([2.5], np.float32),
            np.array([4.0, 4.0], np.float32),
            (rng.random(1000) * 5).astype(np.float32)]


def main():
    d = outdir()
    bc = binary_cases()
    for i, (s, y) in enumerate(bc):
        save(d, "bin_%02d_scores.npy" % i, s.astype(np.float32))
        save(d, "bin_%02d_labels.npy" % i, y.astype(np.uint8))
        save(d, "bin_%02d_expect.npy" % i, binary_expect(s, y))

    ac = aupro_cases()
    expect = []
    for maps, masks, limit in ac:
        slow = aupro_slow(maps, masks, limit)
        assert abs(slow - aupro_fast(maps, masks, limit)) < 1e-9  # the two oracles agree
        expect.append(slow)
    # Larger map-like sets (the sizes of a small test split), against the vectorised oracle only;
    # their pixel AUROC / F1 against sklearn go with the binary cases.
    for n, h, w, sigma, strength, limit in [(24, 112, 112, 4.0, 0.15, 0.3), (12, 224, 224, 8.0, 0.05, 0.3)]:
        maps, masks = maplike(n, h, w, sigma, strength)
        ac.append((maps, masks, limit))
        expect.append(aupro_fast(maps, masks, limit))
        s = maps.ravel()
        y = masks.ravel()
        save(d, "bin_%02d_scores.npy" % len(bc), s)
        save(d, "bin_%02d_labels.npy" % len(bc), y)
        save(d, "bin_%02d_expect.npy" % len(bc), binary_expect(s, y))
        bc.append((s, y))
    save(d, "bin_count.npy", np.array([len(bc)], np.int32))
    # ROC curves (pc_metric_roc_curve): sklearn's every-distinct-score curve, rows fpr, tpr, threshold;
    # the first threshold written as +inf (sklearn >= 1.3; 1.2 says max + 1). Cases with both classes.
    for i, (s, y) in enumerate(bc):
        if 0 < int(y.sum()) < len(y):
            fpr, tpr, thr = roc_curve(y, s.astype(np.float32), drop_intermediate=False)
            thr = thr.astype(np.float64)
            thr[0] = np.inf
            save(d, "bin_%02d_roc.npy" % i, np.stack([fpr, tpr, thr]))
    save(d, "pro_count.npy", np.array([len(ac)], np.int32))
    for i, (maps, masks, limit) in enumerate(ac):
        save(d, "pro_%02d_maps.npy" % i, maps.astype(np.float32))
        save(d, "pro_%02d_masks.npy" % i, masks.astype(np.uint8))
        save(d, "pro_%02d_expect.npy" % i, np.array([limit, expect[i]]))

    lc = label_cases()
    save(d, "lab_count.npy", np.array([len(lc)], np.int32))
    for i, m in enumerate(lc):
        mp = np.floor(rng.random(m.shape) * 4).astype(np.float32)  # ties: peak must be the first
        lab, nc, stats = region_stats(m, mp)
        save(d, "lab_%02d_mask.npy" % i, m)
        save(d, "lab_%02d_map.npy" % i, mp)
        save(d, "lab_%02d_labels.npy" % i, lab)
        save(d, "lab_%02d_stats.npy" % i, stats)  # per scipy label: label,x0,y0,x1,y1,area,peak_x,peak_y

    tc = threshold_cases()
    save(d, "thr_count.npy", np.array([len(tc)], np.int32))
    save(d, "thr_qs.npy", QS)
    save(d, "thr_ks.npy", KS)
    save(d, "thr_fars.npy", FARS)
    save(d, "thr_conf.npy", CONF)
    for i, s in enumerate(tc):
        x = s.astype(np.float64)
        save(d, "thr_%02d_scores.npy" % i, s)
        save(d, "thr_%02d_quantile.npy" % i, np.array([np.quantile(x, q) for q in QS]))
        sd = np.std(x, ddof=1) if len(x) > 1 else np.nan
        save(d, "thr_%02d_meanstd.npy" % i, np.array([np.mean(x) + k * sd for k in KS]))
        save(d, "thr_%02d_far.npy" % i, np.array([far_threshold(x, r) for r in FARS]))
        save(d, "thr_%02d_conformal.npy" % i, np.array([conformal(x, r) for r in CONF]))
        # Normalised scores with the default threshold and the scale rule of docs/metrics.md.
        thr = conformal(x, 0.01)[0]
        scale = thr - np.median(x)
        if not scale > 0:
            scale = np.std(x, ddof=1) if len(x) > 1 and np.std(x, ddof=1) > 0 else 1.0
        probe = np.r_[x, thr, np.median(x), thr + scale, -1e6, 1e6]
        save(d, "thr_%02d_norm.npy" % i, np.r_[thr, scale, probe, expit(np.log(9.0) * (probe - thr) / scale)])
    # F1-optimal decision thresholds come from the binary cases (bin_*_expect[3]).


if __name__ == "__main__":
    main()
