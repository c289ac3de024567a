#!/bin/sh
# eval_bottle.sh - acceptance on the whole bottle category (issue 5): our `patchcore benchmark` (fit on
# train/good, evaluate on test; ResNet-18 layers 2+3, 10% coreset) and the PyTorch reference
# (bench/eval_bottle_torch.py) side by side, with the differences. Acceptance: |diff| <= 0.005 for image
# AUROC, pixel AUROC and AUPRO. The two coresets are drawn from different random projections/starts
# (same method), so small differences are expected. Usage: bench/eval_bottle.sh [BUILD_DIR] (from the repo).
set -eu
build=${1:-build}
. "$(dirname "$0")/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
shared=${PATCHCORE_SHARED:-$(cd "$(dirname "$0")/../.." && pwd)/shared}
bottle=$shared/data/mvtec_ad/bottle
w=$shared/weights/resnet18_in1k_to_layer3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$build/patchcore" benchmark --weights "$w.safetensors" --no-progress --out "$out" "$bottle" >/dev/null
/usr/bin/python3 "$(dirname "$0")/eval_bottle_torch.py" "$bottle" "$w.pth" >"$out/torch.txt"
/usr/bin/python3 - "$out/results.csv" "$out/torch.txt" <<'PY'
import csv, sys
row = next(csv.DictReader(open(sys.argv[1])))
ref = dict(l.split() for l in open(sys.argv[2]))
bad = 0
print("%-14s %10s %10s %10s" % ("metric", "patchcore", "torch", "diff"))
for k in ["image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"]:
    a, b = float(row[k]), float(ref[k])
    flag = " FAIL" if k in ("image_auroc", "pixel_auroc", "aupro") and abs(a - b) > 0.005 else ""
    bad += bool(flag)
    print("%-14s %10.4f %10.4f %+10.4f%s" % (k, a, b, a - b, flag))
sys.exit(1 if bad else 0)
PY
