#!/bin/sh
# run.sh - every benchmark against the PyTorch reference, one after the other (what `make bench` runs):
#   backbone.sh     wide_resnet50_2 forward, ours vs torchvision          (~3 min)
#   fit_predict.sh  fit + predict on bottle, ours vs the reference code   (~10 min; needs ../shared)
#   eval_bottle.sh  metrics on bottle, ours vs the reference             (~8 min; needs ../shared)
#   fit_large.sh    a 2,000-image fit under --max-memory, peak RSS        (when present)
# usage: sh bench/run.sh [BUILD_DIR]; ONLY="backbone fit_predict" to choose. Run on a quiet machine:
# every script reports medians and ours/torch ratios measured in the same run.
set -eu
build=${1:-build}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
only=${ONLY:-backbone fit_predict eval_bottle fit_large}
for b in $only; do
    [ -f "$here/$b.sh" ] || { echo "bench: $b.sh not found, skipped" >&2; continue; }
    echo "=== bench/$b.sh ($(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg))"
    sh "$here/$b.sh" "$build"
done
