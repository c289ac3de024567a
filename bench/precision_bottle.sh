#!/bin/sh
# The effect of --precision bf16 on MVTec AD bottle: fit an f32 and a bf16 model (shared ResNet-18,
# layers 2+3, 10% coreset, seed 0), evaluate both on the whole test set, and compare image AUROC,
# pixel AUROC, AUPRO, pixel F1-max, the largest image-score change (absolute and relative to the f32
# score) over the 83 test images, and speed: fit's feature images/s and eval's predict images/s.
# Speed figures on a shared machine: compare the two columns of one run only.
# usage: sh bench/precision_bottle.sh [BUILD_DIR]   (needs ../shared and a CPU with AVX512-BF16 or AMX)
set -eu
build=${1:-build}
threads=${THREADS:-2}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
weights=$shared/weights/resnet18_in1k_to_layer3.safetensors
for f in "$bottle/train/good" "$bottle/test" "$weights" "$build/patchcore"; do
  test -e "$f" || { echo "precision_bottle.sh: $f not found" >&2; exit 1; }
done
"$build/patchcore" version | grep -q 'bf16 native' || { echo "precision_bottle.sh: this CPU has no native bf16" >&2; exit 1; }
tmp=$(mktemp -d /tmp/pc_bench_prec_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "threads $threads; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for p in f32 bf16; do
  "$build/patchcore" fit --precision $p --weights "$weights" --threads "$threads" --json --no-progress \
    -o "$tmp/$p.pcm" "$bottle/train/good" > "$tmp/fit_$p.json"
  "$build/patchcore" eval -m "$tmp/$p.pcm" --threads "$threads" --no-progress --json "$tmp/eval_$p.json" \
    "$bottle" > /dev/null
  "$build/patchcore" predict -m "$tmp/$p.pcm" --threads "$threads" --json "$bottle/test" > "$tmp/pred_$p.jsonl" \
    2>/dev/null
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
fit = {p: json.load(open(f"{d}/fit_{p}.json")) for p in ("f32", "bf16")}
ev = {p: json.load(open(f"{d}/eval_{p}.json")) for p in ("f32", "bf16")}
pr = {p: {j["path"]: j["score"] for j in map(json.loads, open(f"{d}/pred_{p}.jsonl"))} for p in ("f32", "bf16")}
print(f"{'':28s} {'f32':>10s} {'bf16':>10s}")
for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_f1_max", "image_f1_max"):
    print(f"{k:28s} {ev['f32'][k]:10.4f} {ev['bf16'][k]:10.4f}")
for k in ("features_images_per_s",):
    print(f"{'fit ' + k:28s} {fit['f32'][k]:10.2f} {fit['bf16'][k]:10.2f}")
for k in ("images_per_s",):
    if k in ev["f32"]:
        print(f"{'eval ' + k:28s} {ev['f32'][k]:10.2f} {ev['bf16'][k]:10.2f}")
paths = sorted(pr["f32"])
da = max(abs(pr["bf16"][p] - pr["f32"][p]) for p in paths)
dr = max(abs(pr["bf16"][p] - pr["f32"][p]) / abs(pr["f32"][p]) for p in paths)
print(f"largest image-score change over {len(paths)} test images: {da:.4g} absolute, {dr:.3%} relative")
PY
