#!/bin/sh
# An ensemble on MVTec AD bottle (docs/ensemble.md): two members of the shared ResNet-18, layers 2+3,
# one at resize 256 / crop 224 and one at 366 / 320 (the paper's ensemble size), coreset CORESET
# (default 0.01, the paper's ensemble recipe), seed 0. Prints the fit summary (with each member's
# normalisation statistics), then the ensemble's metrics under the default rule (train-zscore) and the
# reference's (test-minmax, which also prints each member's own metrics).
# usage: sh bench/ensemble_bottle.sh [BUILD_DIR]   (needs ../shared)
set -eu
build=${1:-build}
threads=${THREADS:-2}
coreset=${CORESET:-0.01}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
for f in "$bottle/train/good" "$bottle/test" "$w" "$build/patchcore"; do
  test -e "$f" || { echo "ensemble_bottle.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pc_bench_ens_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
echo "threads $threads, coreset $coreset; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$build/patchcore" fit --weights "$w,$w" --resize 256,366 --crop 224,320 --coreset "$coreset" --threads "$threads" \
  --no-progress -o "$tmp/ens.pcm" "$bottle/train/good"
for rule in train-zscore test-minmax; do
  echo "== eval --ensemble-norm $rule"
  "$build/patchcore" eval -m "$tmp/ens.pcm" --ensemble-norm $rule --threads "$threads" --no-progress "$bottle"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
