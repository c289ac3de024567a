"""Reference for regions of interest (tests/test_roi.c, tests/test_roi_cli.sh; docs/roi.md), from
tests/ref/patchcore_torch.py and PIL/numpy only (no code shared with the C library).

The rules, as docs/roi.md states them:
  1. the mask is binarised (non-zero -> 255); at another size than the image it is resized to the
     image's size with PIL's bilinear filter and a pixel is inside where the value is >= 128;
  2. that image-size mask goes through the image's Resize(R) -> CenterCrop(C) (PIL bilinear on the
     0/255 mask, torchvision's transforms) and a crop pixel is inside where the value is >= 128;
  3. grid cell (i, j) of an h x w grid is inside when the crop pixel at row (2i+1)*C // (2h),
     column (2j+1)*C // (2w) is inside;
  4. fit: only inside patches are candidates of the memory bank (sampler none: every inside patch,
     images in order, cells in raster order);
  5. predict: inside patches are scored against the bank (k-NN, METHOD.md §5), outside patches score 0;
     the image score is the maximum over inside patches; the map is the usual map of these patch
     scores (bilinear + Gaussian, METHOD.md §6) set to 0 at every crop pixel outside the crop mask.

Case (OUTDIR/): the real ResNet-18 from ../shared, layers 2+3, R=256, C=224, p=3, D=1024, k=1, sampler
none, on 2 bottle training images; the ROI roi.png is 450x450 (the images are 900x900, so rule 1
resizes it): an ellipse plus a rectangle, with an all-black corner. Test images: one good, one
broken_large. Written: roi.png, roi_call.png (a per-call ROI, 900x900: a disc), empty.png (all black),
inputs.txt, inside_train.npy (inside cells of a training image, int64), bank.npy, and for each ROI
setting X in {model, call, none}: inspect_X.npy (C x C u8 crop mask; all ones for none),
patch_X.npy (n_test x h*w), scores_X.npy (n_test), maps_X.npy (n_test x C x C); regions_t.npy (a
low pixel threshold, far from every map value of the defective image under the model's ROI) and
regions_areas.npy (the areas, largest first, of scipy.ndimage.label's 8-connected components of that
map > threshold: regions clipped by the ROI, since the map is 0 outside); eq7.npy: the defective
image's Eq. 7 score with b = 3 under the model's ROI (argmax among inside patches; Euclidean distances
in float64, as METHOD.md and src/scoring.h state it), after checking that no choice in it is a
near-tie (top two inside patch scores, the nearest bank entry, the b-th neighbour of m*).
"""
import os
import sys

import numpy as np
import scipy.ndimage
import torch
from PIL import Image, ImageDraw
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import patchcore_torch as P  # noqa: E402

torch.set_num_threads(2)
R, C = 256, 224


def image_size_mask(mask, size):
    """Rule 1: 0/255 uint8 PIL image at the image's size."""
    b = Image.fromarray(np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8), "L")
    if b.size != size:
        r = np.asarray(b.resize(size, Image.BILINEAR))
        b = Image.fromarray(np.where(r >= 128, 255, 0).astype(np.uint8), "L")
    return b


def crop_mask(mask, size):
    """Rules 1-2: C x C uint8 {0, 1}."""
    m = transforms.CenterCrop(C)(transforms.Resize(R)(image_size_mask(mask, size)))
    return (np.asarray(m, dtype=np.uint8) >= 128).astype(np.uint8)


def inside_cells(inspect, grid):
    """Rule 3: raster-order indices of the inside cells."""
    h, w = grid
    out = []
    for i in range(h):
        for j in range(w):
            if inspect[(2 * i + 1) * C // (2 * h), (2 * j + 1) * C // (2 * w)]:
                out.append(i * w + j)
    return np.array(out, np.int64)


def main():
    out = common.outdir()
    bottle = common.bottle_dir()
    w = common.weights_r18("pth")
    if bottle is None or w is None:
        print("gen_roi: ../shared data or weights absent; skipping", file=sys.stderr)
        return
    good = sorted(os.path.join(bottle, "train", "good", f) for f in os.listdir(os.path.join(bottle, "train", "good")))
    tgood = sorted(os.path.join(bottle, "test", "good", f) for f in os.listdir(os.path.join(bottle, "test", "good")))
    tbad = sorted(os.path.join(bottle, "test", "broken_large", f)
                  for f in os.listdir(os.path.join(bottle, "test", "broken_large")))
    train, test = good[:2], [tgood[0], tbad[0]]

    roi = Image.new("L", (450, 450), 0)
    d = ImageDraw.Draw(roi)
    d.ellipse((60, 70, 390, 380), fill=200)        # grey counts as inside (non-zero)
    d.rectangle((300, 20, 440, 120), fill=255)
    roi.save(os.path.join(out, "roi.png"))
    call = Image.new("L", (900, 900), 0)
    ImageDraw.Draw(call).ellipse((250, 250, 650, 650), fill=255)
    call.save(os.path.join(out, "roi_call.png"))
    Image.new("L", (300, 300), 0).save(os.path.join(out, "empty.png"))

    layers = ["layer2", "layer3"]
    model = P.build_backbone("resnet18", w, layers)

    def feats_of(path):
        x = P.load_image(path).unsqueeze(0)
        f, grid = P.patch_features(P.layer_outputs(model, x, layers))
        return f.numpy(), grid, Image.open(path).size

    bank_rows = []
    inside_train = None
    for p in train:
        f, grid, size = feats_of(p)
        cells = inside_cells(crop_mask(roi, size), grid)
        inside_train = cells
        bank_rows.append(f[cells])
    bank = np.concatenate(bank_rows).astype(np.float32)
    common.save(out, "inside_train.npy", inside_train)
    common.save(out, "bank.npy", bank)

    tests = [feats_of(p) for p in test]
    for name, mask in (("model", roi), ("call", call), ("none", None)):
        patches, scores, maps, inspects = [], [], [], []
        for f, grid, size in tests:
            inspect = crop_mask(mask, size) if mask is not None else np.ones((C, C), np.uint8)
            cells = inside_cells(inspect, grid)
            ps = np.zeros(grid[0] * grid[1], np.float32)
            ps[cells] = P.patch_scores(bank, f[cells], 1).astype(np.float32)
            m = P.anomaly_maps(ps, grid, C)[0]
            m[inspect == 0] = 0
            patches.append(ps)
            scores.append(ps[cells].max())
            maps.append(m)
            inspects.append(inspect)
        common.save(out, "inspect_%s.npy" % name, np.stack(inspects)[0])
        common.save(out, "patch_%s.npy" % name, np.stack(patches))
        common.save(out, "scores_%s.npy" % name, np.array(scores, np.float32))
        common.save(out, "maps_%s.npy" % name, np.stack(maps).astype(np.float32))
        if name == "model":
            m = maps[1]
            # a threshold no map value is within 2e-5 x max of (the C map is within 1e-5 x max: no
            # region may hinge on rounding)
            for frac in np.arange(0.10, 0.30, 0.001):
                t = float(frac * m.max())
                if np.abs(m - t).min() > 2e-5 * m.max():
                    break
            else:
                raise SystemExit("gen_roi: no clear threshold")
            lab, n = scipy.ndimage.label(m > t, structure=np.ones((3, 3)))
            areas = np.sort(np.bincount(lab.ravel())[1:])[::-1].astype(np.int64)
            common.save(out, "regions_t.npy", np.array([t], np.float64))
            common.save(out, "regions_areas.npy", areas)
    # Eq. 7 under the model's ROI, on the defective image
    f, grid, size = tests[1]
    cells = inside_cells(crop_mask(roi, size), grid)
    q = f[cells].astype(np.float64)
    bk = bank.astype(np.float64)
    d2 = ((q[:, None, :] - bk[None, :, :]) ** 2).sum(-1)  # inside patches x bank, squared
    ps = d2.min(1)
    order = np.argsort(ps)[::-1]
    print("eq7 gaps: top %.3g" % ((ps[order[0]] - ps[order[1]]) / ps[order[0]]), file=sys.stderr)
    assert ps[order[0]] - ps[order[1]] > 1e-4 * ps[order[0]], "near-tie for the top inside patch"
    a = order[0]
    near = np.sort(d2[a])
    assert near[1] - near[0] > 1e-3 * near[1], "near-tie for m*"
    m_star = bk[np.argmin(d2[a])]
    dm = ((bk - m_star) ** 2).sum(-1)
    nb = np.argsort(dm)
    b = 3
    sd = np.sort(dm)
    assert sd[b] - sd[b - 1] > 1e-3 * sd[b], "near-tie for the b-th neighbour of m*"
    dist = np.sqrt(((bk[nb[:b]] - q[a]) ** 2).sum(-1))
    dstar = np.sqrt(((m_star - q[a]) ** 2).sum())
    mx = max(dist.max(), dstar)
    w = 1.0 - np.exp(dstar - mx) / np.exp(dist - mx).sum()
    common.save(out, "eq7.npy", np.array([w * ps[a], ps[a]], np.float64))

    with open(os.path.join(out, "inputs.txt"), "w") as fh:
        fh.write("\n".join(train + test) + "\n")


if __name__ == "__main__":
    main()
