#!/bin/sh
# Issue 4's benchmark: our `patchcore fit` and `patchcore predict` against the PyTorch reference
# pipeline (bench/patchcore_reference.py: torch features, the greedy coreset as a loop of torch
# operations in the reference's expansion form, faiss IndexFlatL2, scipy maps) on MVTec AD bottle
# (209 training, 83 test images), shared ResNet-18, layers 2+3, 10% coreset, THREADS (default 2)
# threads each. Fit: total, features and coreset seconds. Predict: ms per image (decode, preprocess,
# backbone, features, search, map; model loading and process start excluded), mean and median over
# the 83 images. Peak RSS of every process (/usr/bin/time -v; getrusage on the Python side).
# Ours runs RUNS times (default 3; medians reported); the torch side once (its coreset alone takes
# about 6 minutes). Prints ours/torch ratios (< 1 = we are faster / smaller).
# usage: sh bench/fit_predict.sh [BUILD_DIR]   (after `make`); RUNS=N THREADS=N to change;
# BOTTLE=DIR (with train/good and test) for a smaller trial.
set -eu
build=${1:-build}
runs=${RUNS:-3}
threads=${THREADS:-2}
py=/usr/bin/python3
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
weights=$shared/weights/resnet18_in1k_to_layer3.safetensors
weights_pth=$shared/weights/resnet18_in1k_to_layer3.pth
for f in "$bottle/train/good" "$bottle/test" "$weights" "$weights_pth" "$build/patchcore" /usr/bin/time; do
  test -e "$f" || { echo "fit_predict.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pc_bench_fp_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
res=$tmp/results.jsonl
rss() { sed -n 's/.*Maximum resident set size (kbytes): *\([0-9]*\).*/\1/p' "$1"; }

echo "threads $threads; runs $runs (ours), 1 (torch)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$runs"); do
  /usr/bin/time -v -o "$tmp/time" "$build/patchcore" fit --weights "$weights" --threads "$threads" --json \
    --no-progress -o "$tmp/ours.pcm" "$bottle/train/good" > "$tmp/fit.json"
  echo "{\"side\": \"ours\", \"stage\": \"fit\", \"run\": $r, \"peak_rss_kb\": $(rss "$tmp/time"), \"out\": $(cat "$tmp/fit.json")}" >> "$res"
  echo "  ours fit run $r: $(cat "$tmp/fit.json")"
done
for r in $(seq "$runs"); do
  /usr/bin/time -v -o "$tmp/time" "$build/patchcore" predict -m "$tmp/ours.pcm" --threads "$threads" --json \
    --maps "$tmp/maps" "$bottle/test" > "$tmp/predict.jsonl"
  ms=$(sed -n 's/.*"ms": \([0-9.]*\)}.*/\1/p' "$tmp/predict.jsonl" | tr '\n' ',' | sed 's/,$//')
  echo "{\"side\": \"ours\", \"stage\": \"predict\", \"run\": $r, \"peak_rss_kb\": $(rss "$tmp/time"), \"ms\": [$ms]}" >> "$res"
  echo "  ours predict run $r done"
done
"$py" "$here/patchcore_reference.py" fit --weights "$weights_pth" --threads "$threads" --out "$tmp/bank.npy" \
  "$bottle/train/good" > "$tmp/t.json"
cat "$tmp/t.json" >> "$res"; echo "  torch $(cat "$tmp/t.json")"
"$py" "$here/patchcore_reference.py" predict --weights "$weights_pth" --threads "$threads" --bank "$tmp/bank.npy" \
  "$bottle/test" > "$tmp/t.json"
cat "$tmp/t.json" >> "$res"; echo "  torch $(cat "$tmp/t.json")"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" "$here/patchcore_reference.py" summary "$res"
