#!/bin/sh
# eval_bottle.sh - acceptance on the whole bottle category: patchcore against the PyTorch reference
# (bench/eval_bottle_torch.py, tests/ref/patchcore_torch.py) with the SAME coreset randomness, for both
# batch-norm settings (METHOD.md §2): the reference's warm-up (the default) and the trained statistics.
# ResNet-18 layers 2+3, k = 1, CORESET (default 0.1). For each setting the torch side draws the
# projection and start points, writes them, and runs; patchcore is then fitted through the Python
# binding with those arrays and `--bn`, saved, and evaluated by `patchcore eval --json`. Both sides use
# the reference's mask rule (value == 255 after resizing). Printed: a table per setting, ours vs torch.
# Acceptance: |diff| <= 1e-4 for image AUROC, pixel AUROC and AUPRO.
# Usage: bench/eval_bottle.sh [BUILD_DIR] (from the repo). ~15 min on 2 cores at CORESET=0.1 (the torch
# greedy loop dominates); CORESET=0.01 takes ~4 min. BN="reference" to run one setting.
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
shared=${PATCHCORE_SHARED:-$repo/../shared}
bottle=$shared/data/mvtec_ad/bottle
w=$shared/weights/resnet18_in1k_to_layer3
coreset=${CORESET:-0.1}
py=/usr/bin/python3
[ -d "$bottle" ] && [ -f "$w.pth" ] || { echo "eval_bottle: $bottle or $w.pth absent; skipped" >&2; exit 0; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
bad=0
for bn in ${BN:-reference trained}; do
    d=$out/$bn
    mkdir -p "$d"
    $py "$here/eval_bottle_torch.py" "$bottle" "$w.pth" --bn "$bn" --coreset "$coreset" --save-init "$d" >"$d/torch.txt"
    PYTHONPATH="$repo/python" PATCHCORE_LIBRARY="$build/libpatchcore.so.0" $py - "$bottle" "$w.safetensors" "$bn" \
        "$coreset" "$d" <<'PY'
import os, sys
import numpy as np
import patchcore
bottle, w, bn, ratio, d = sys.argv[1:]
good = os.path.join(bottle, "train", "good")
paths = [os.path.join(good, f) for f in sorted(os.listdir(good))]
m = patchcore.Model.fit(paths, weights=w, layers="layer2,layer3", bn_stats=bn, coreset_ratio=float(ratio),
                        coreset_projection=np.load(os.path.join(d, "projection.npy")),
                        coreset_starts=np.load(os.path.join(d, "starts.npy")))
m.save(os.path.join(d, "model.pcm"))
PY
    "$build/patchcore" eval -m "$d/model.pcm" --no-progress --json "$d/ours.json" "$bottle" >/dev/null
    $py - "$d/ours.json" "$d/torch.txt" "$bn" <<'PY' || bad=1
import json, sys
ours = json.load(open(sys.argv[1]))
ref = dict(l.split() for l in open(sys.argv[2]))
print("batch-norm %s%s" % (sys.argv[3], "" if "mask_rule" not in ours else ", mask rule " + ours["mask_rule"]))
print("%-14s %10s %10s %10s" % ("metric", "patchcore", "torch", "diff"))
bad = 0
for k in ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"]:
    a, b = float(ours[k]), float(ref[k])
    flag = " FAIL" if k in ("image_auroc", "pixel_auroc", "aupro") and abs(a - b) > 1e-4 else ""
    bad += bool(flag)
    print("%-14s %10.4f %10.4f %+10.6f%s" % (k, a, b, a - b, flag))
sys.exit(1 if bad else 0)
PY
done
exit $bad
