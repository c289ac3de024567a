#!/bin/sh
# tiles_bottle.sh - tiling (docs/tiles.md) on the bottle category at its native 900 x 900: the resized
# default (Resize 256, CenterCrop 224) against tiles of 224 and of 320 (overlap OVERLAP, default 0.25)
# at scale 1. ResNet-18 layers 2+3, k = 1, through the Python binding (python/patchcore).
# To keep a run to minutes on 2 cores, every config is fitted on the same N_TRAIN (default 10)
# training images, evenly spread over the sorted list; the default with --coreset 0.1 (the reference's
# ratio), the tiled ones with a memory bank of BANK (default 2000) entries (a tiled fit has 36 or 16
# times more patches per image, and the greedy coreset costs patches x bank).
# Printed per config: fit time, predict time per image (median over the test images, decoding
# excluded), cost per megapixel of the original image (median ms / 0.81 MP), image AUROC over the 83
# test images (sklearn), pixel AUROC (sklearn): for the default on the standard protocol (masks through
# Resize 256 + CenterCrop 224 with PIL bilinear, anomalous = 255); for tiled models on the 900 x 900
# masks (anomalous = value > 127) subsampled every 4th pixel both ways (225 x 225 per image).
# Usage: bench/tiles_bottle.sh [BUILD_DIR] (from the repo); 45 min on 2 heavily shared cores (4 Dec 2026).
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$repo/../shared}
bottle=$shared/data/mvtec_ad/bottle
w=$shared/weights/resnet18_in1k_to_layer3.pth
[ -d "$bottle" ] && [ -f "$w" ] || { echo "tiles_bottle: $bottle or $w absent; skipped" >&2; exit 0; }
PYTHONPATH="$repo/python" PATCHCORE_LIBRARY="$build/libpatchcore.so.0" /usr/bin/python3 - "$bottle" "$w" \
    "${N_TRAIN:-10}" "${BANK:-2000}" "${OVERLAP:-0.25}" "${CONFIGS:-default 224 320}" <<'PY'
import os, sys, time
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
import patchcore
bottle, w, n_train, bank, overlap, configs = sys.argv[1:]
n_train, bank, overlap = int(n_train), int(bank), float(overlap)
good = os.path.join(bottle, "train", "good")
allp = [os.path.join(good, f) for f in sorted(os.listdir(good))]
train = [allp[int(i * len(allp) / n_train)] for i in range(n_train)]
tests = []
for t in sorted(os.listdir(os.path.join(bottle, "test"))):
    for f in sorted(os.listdir(os.path.join(bottle, "test", t))):
        mp = None if t == "good" else os.path.join(bottle, "ground_truth", t, f[:-4] + "_mask.png")
        tests.append((os.path.join(bottle, "test", t, f), mp))
imgs = [np.asarray(Image.open(p).convert("RGB")) for p, _ in tests]
print("tiles_bottle: %d training images (of %d), %d test images %dx%d, overlap %g" %
      (n_train, len(allp), len(tests), imgs[0].shape[1], imgs[0].shape[0], overlap))
print("%-10s %7s %9s %9s %11s %9s %9s %8s" % ("config", "tiles", "fit s", "bank", "predict ms", "ms/MP",
                                              "img AUROC", "px AUROC"))
for cfg in configs.split():
    opts = dict(weights=w, layers="layer2,layer3")
    if cfg == "default":
        opts.update(coreset_ratio=0.1)
    else:
        opts.update(tile=int(cfg), tile_overlap=overlap, coreset_size=bank)
    t0 = time.time()
    m = patchcore.Model.fit(train, **opts)
    fit_s = time.time() - t0
    scores, ms, px_s, px_y = [], [], [], []
    for (p, mp), a in zip(tests, imgs):
        t0 = time.perf_counter()
        r = m.predict(a)
        ms.append((time.perf_counter() - t0) * 1e3)
        scores.append(r.score)
        if mp is None:
            mask = np.zeros(a.shape[:2], np.uint8)
        else:
            mask = np.asarray(Image.open(mp).convert("L"))
        if cfg == "default":
            mk = Image.fromarray(mask).resize((256, 256), Image.BILINEAR)
            mk = np.asarray(mk)[16:240, 16:240]
            px_y.append((mk == 255).reshape(-1)); px_s.append(r.map.reshape(-1))
        else:
            px_y.append((mask[::4, ::4] > 127).reshape(-1)); px_s.append(r.map[::4, ::4].reshape(-1))
    y = np.array([mp is not None for _, mp in tests])
    img_auc = roc_auc_score(y, np.array(scores))
    px_auc = roc_auc_score(np.concatenate(px_y), np.concatenate(px_s))
    med = float(np.median(ms))
    mpx = imgs[0].shape[0] * imgs[0].shape[1] / 1e6
    ntiles = "-" if cfg == "default" else str(m.info.n_patches_total // (m.info.grid[0] * m.info.grid[1]) // n_train)
    print("%-10s %7s %9.1f %9d %11.1f %9.1f %9.4f %8.4f" % (cfg if cfg == "default" else "tile %s" % cfg, ntiles,
          fit_s, m.info.bank_size, med, med / mpx, img_auc, px_auc))
    sys.stdout.flush()
    m.close()
PY
