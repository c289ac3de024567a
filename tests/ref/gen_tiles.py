"""Reference for tiled prediction (tests/test_tiles.c, docs/tiles.md), from PIL, torchvision, numpy and
scipy through tests/ref/patchcore_torch.py, written independently of src/tile.c.

Inputs written here (PNG): train0.png, train1.png (bottle train/good 000 and 001) and test.png (bottle
test/broken_large/000), each resized with PIL BILINEAR to 300 x 260. The C side fits a tiled model on
the two training images with tile 64, overlap 0.25, scale 0.5, sampler none (the bank is every patch of
every tile), real ResNet-18 layers 2+3 (bn reference, warm-up at 64), p = 3, D = 1024, k = 1.

Cases (each a stitched map of the original 300 x 260 and its maximum, the image score):
  a_mean - the model's tiling: scaled to 150 x 130 (floor(x * 0.5 + 0.5)), stride floor(64 * 0.75 + 0.5)
           = 48, tiles at x 0, 48, 86 and y 0, 48, 66; maps averaged where tiles overlap; the 150 x 130
           map resized back to 300 x 260 with F.interpolate(bilinear, align_corners=False)
  a_max  - the same, the largest tile value where tiles overlap
  b_max  - per-call override: scale 1, overlap 0 (stride 64), tiles at x 0, 64, 128, 192, 236 and
           y 0, 64, 128, 192, 196; max; no resize back
Files: <case>_map.npy (260 x 300 float32), <case>_score.npy, <case>_tiles.npy (tile top-left x, y).
"""
import os
import sys

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import patchcore_torch as P  # noqa: E402

torch.set_num_threads(2)
W, H, TILE = 300, 260, 64
LAYERS = ["layer2", "layer3"]


def positions(length, tile, stride):
    p = list(range(0, length - tile + 1, stride))
    if p[-1] != length - tile:
        p.append(length - tile)
    return p


def tiles_of(img, scale, overlap):
    """The scaled PIL image and the tiles' (x, y) positions."""
    sw, sh = int(np.floor(img.width * scale + 0.5)), int(np.floor(img.height * scale + 0.5))
    scaled = img if (sw, sh) == img.size else img.resize((sw, sh), Image.BILINEAR)
    stride = max(1, int(np.floor(TILE * (1 - overlap) + 0.5)))
    return scaled, [(x, y) for y in positions(sh, TILE, stride) for x in positions(sw, TILE, stride)]


def tile_tensor(scaled, x, y):
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(P.MEAN, P.STD)])
    return t(scaled.crop((x, y, x + TILE, y + TILE)))


def features(model, scaled, tl):
    x = torch.stack([tile_tensor(scaled, a, b) for a, b in tl])
    f, grid = P.patch_features(P.layer_outputs(model, x, LAYERS))
    return f.numpy(), grid


def main():
    out = common.outdir()
    bottle, w = common.bottle_dir(), common.weights_r18()
    if not bottle or not w:
        print("gen_tiles: bottle data or ResNet-18 weights absent; nothing written")
        return
    srcs = {"train0": "train/good/000.png", "train1": "train/good/001.png", "test": "test/broken_large/000.png"}
    imgs = {}
    for k, rel in srcs.items():
        im = Image.open(os.path.join(bottle, rel)).convert("RGB").resize((W, H), Image.BILINEAR)
        im.save(os.path.join(out, k + ".png"))
        imgs[k] = Image.open(os.path.join(out, k + ".png")).convert("RGB")
    model = P.build_backbone("resnet18", w, LAYERS, bn="reference", size=TILE)
    bank = []
    for k in ("train0", "train1"):
        scaled, tl = tiles_of(imgs[k], 0.5, 0.25)
        f, grid = features(model, scaled, tl)
        bank.append(f)
    bank = np.concatenate(bank).astype(np.float64)
    common.save(out, "bank_rows.npy", np.array([bank.shape[0]], np.int64))
    for case, scale, overlap, rule in (("a_mean", 0.5, 0.25, "mean"), ("a_max", 0.5, 0.25, "max"),
                                       ("b_max", 1.0, 0.0, "max")):
        scaled, tl = tiles_of(imgs["test"], scale, overlap)
        f, grid = features(model, scaled, tl)
        q = f.astype(np.float64)
        # exact nearest squared distance, in float64 from the float32 features
        d2 = (q * q).sum(1)[:, None] - 2 * q @ bank.T + (bank * bank).sum(1)[None, :]
        best = bank[np.argmin(d2, axis=1)]
        s = ((q - best) ** 2).sum(1).astype(np.float32)  # recomputed by differences: no cancellation
        hw = grid[0] * grid[1]
        maps = P.anomaly_maps(s, grid, TILE)  # (n_tiles, 64, 64): bilinear + Gaussian sigma 4
        acc = np.zeros((scaled.height, scaled.width), np.float64)
        cnt = np.zeros_like(acc)
        if rule == "max":
            acc[:] = -np.inf
        for (x, y), m in zip(tl, maps):
            if rule == "mean":
                acc[y:y + TILE, x:x + TILE] += m
                cnt[y:y + TILE, x:x + TILE] += 1
            else:
                acc[y:y + TILE, x:x + TILE] = np.maximum(acc[y:y + TILE, x:x + TILE], m)
        stitched = (acc / cnt if rule == "mean" else acc).astype(np.float32)
        assert len(maps) * hw == len(s)
        if stitched.shape != (H, W):
            t = torch.from_numpy(stitched)[None, None]
            stitched = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()
        common.save(out, case + "_map.npy", stitched.astype(np.float32))
        common.save(out, case + "_score.npy", np.array([stitched.max()], np.float32))
        common.save(out, case + "_tiles.npy", np.array(tl, np.int32))
        print("gen_tiles: %s: %d tiles, score %.6g" % (case, len(tl), stitched.max()))


if __name__ == "__main__":
    main()
