#!/bin/sh
# Our wide_resnet50_2 forward to layer3 at 224x224 against torchvision's (eval, no_grad, same thread
# count), batch 1 and 8, 1 and 2 threads, median of RUNS (default 5) runs each. Prints ours/torch
# ratios (< 1 = we are faster) and our GFLOP/s (2 x 9.19 GMAC per image).
# usage: sh bench/backbone.sh [BUILD_DIR]   (after `make`); RUNS=N to change the run count.
set -eu
build=${1:-build}
runs=${RUNS:-5}
py=/usr/bin/python3
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
w=$(mktemp /tmp/pc_bench_wrn50_XXXXXX.pth)
trap 'rm -f "$w"' EXIT
"$py" "$here/bench_backbone.py" --save "$w"
# The machine may be shared: the load average before and after tells whether the figures are clean.
echo "load before:$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-8s %10s %10s %8s %10s\n' batch threads ours_ms torch_ms ratio GFLOP/s
for b in 1 8; do
  for t in 1 2; do
    o=$(OMP_NUM_THREADS=$t "$build/bench_backbone" "$w" --batch $b --threads $t --runs $runs)
    p=$(OMP_NUM_THREADS=$t "$py" "$here/bench_backbone.py" --batch $b --threads $t --runs $runs)
    om=$(echo "$o" | sed 's/.*median_ms=\([0-9.]*\).*/\1/')
    pm=$(echo "$p" | sed 's/.*median_ms=\([0-9.]*\).*/\1/')
    gf=$(echo "$o" | sed 's/.*gflops=\([0-9.]*\).*/\1/')
    printf '%-6s %-8s %10s %10s %8s %10s\n' $b $t "$om" "$pm" "$(awk "BEGIN{printf \"%.3f\", $om/$pm}")" "$gf"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
