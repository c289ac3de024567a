#!/bin/sh
# Our backbone forward to layer3 at 224x224 against torchvision's (eval, no_grad, same thread count),
# median of RUNS (default 5) runs each, on both of our convolution paths ($PATCHCORE_CONV=onednn and
# builtin, docs/backbone.md) and in both precisions:
#   - wide_resnet50_2 (random weights), f32, batch 1 and 8, 1 and 2 threads: ours (oneDNN, builtin)
#     against torch f32 (NCHW);
#   - wide_resnet50_2, bf16 (where the CPU has AVX512-BF16 or AMX): ours (oneDNN bf16) against torch
#     bf16 channels-last (model.bfloat16() + channels_last);
#   - the real ResNet-18 of ../shared (if present), f32, batch 1, 1 and 2 threads;
#   - the f32 rows of batch 1 again with oneDNN capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2, for both
#     sides: torch 1.13's oneDNN honours it too), as on the AVX2-only Zen 3 machines.
# Prints ours/torch ratios of the median wall time (< 1 = we are faster), the same for the median
# process CPU time of a forward (all threads; with one thread a figure a busy machine inflates much
# less than wall time) and our GFLOP/s (2 x 9.19 GMAC per WRN-50-2 image).
# usage: sh bench/backbone.sh [BUILD_DIR]   (after `make`); RUNS=N to change the run count;
# QUICK=1 for batch 1 only.
set -eu
build=${1:-build}
runs=${RUNS:-5}
py=/usr/bin/python3
here=$(dirname "$0")
shared=${PATCHCORE_SHARED:-$here/../../shared}
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
w=$(mktemp /tmp/pc_bench_wrn50_XXXXXX.pth)
trap 'rm -f "$w"' EXIT
"$py" "$here/bench_backbone.py" --save "$w"
r18=$shared/weights/resnet18_in1k_to_layer3.pth
batches="1 8"
[ "${QUICK:-0}" = 1 ] && batches=1
bf16=0
"$build/bench_backbone" "$w" --runs 1 --size 32 --precision bf16 >/dev/null 2>&1 && bf16=1

ms() { echo "$1" | sed 's/.*median_ms=\([0-9.]*\).*/\1/'; }
cpu() { echo "$1" | sed 's/.*cpu_ms=\([0-9.]*\).*/\1/'; }
# row MODEL BATCH THREADS ISA PRECISION WEIGHTS TORCH_ARGS: one line per path of ours against torch
row() {
  model=$1 b=$2 t=$3 isa=$4 prec=$5 wf=$6 targs=$7
  envisa=
  [ "$isa" = avx2 ] && envisa="ONEDNN_MAX_CPU_ISA=AVX2"
  p=$(env $envisa OMP_NUM_THREADS=$t "$py" "$here/bench_backbone.py" --batch $b --threads $t --runs $runs \
      --precision $prec $targs 2>/dev/null)
  pm=$(ms "$p") pc=$(cpu "$p")
  paths="onednn builtin"
  [ "$prec" = bf16 ] && paths=onednn
  for path in $paths; do
    o=$(env $envisa PATCHCORE_CONV=$path OMP_NUM_THREADS=$t "$build/bench_backbone" "$wf" --batch $b --threads $t \
        --runs $runs --precision $prec 2>/dev/null)
    om=$(ms "$o") oc=$(cpu "$o")
    gf=$(echo "$o" | sed 's/.*gflops=\([0-9.]*\).*/\1/')
    printf '%-16s %-5s %-7s %-6s %-5s %-8s %9s %9s %7s %9s %9s %7s %8s\n' "$model" $b $t $isa $prec $path "$om" "$pm" \
      "$(awk "BEGIN{printf \"%.3f\", $om/$pm}")" "$oc" "$pc" "$(awk "BEGIN{printf \"%.3f\", $oc/$pc}")" "$gf"
  done
}

# The kernels oneDNN picks, once per setting (stderr of bench_backbone).
for isa in native avx2; do
  envisa=
  [ "$isa" = avx2 ] && envisa="ONEDNN_MAX_CPU_ISA=AVX2"
  for prec in f32 bf16; do
    [ $prec = bf16 ] && { [ $bf16 = 1 ] && [ $isa = native ] || continue; }
    echo "== oneDNN kernels, wide_resnet50_2 $prec, isa $isa (batch 1, 2 threads):"
    env $envisa PATCHCORE_CONV=onednn OMP_NUM_THREADS=2 "$build/bench_backbone" "$w" --runs 1 --precision $prec \
      2>&1 >/dev/null | grep -v '^platform'
  done
done

# The machine may be shared: the load average before and after tells whether the figures are clean.
echo "load before:$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-16s %-5s %-7s %-6s %-5s %-8s %9s %9s %7s %9s %9s %7s %8s\n' model batch threads isa prec path ours_ms torch_ms ratio \
  ours_cpu torch_cpu c_ratio GFLOP/s
for b in $batches; do
  for t in 1 2; do
    row wide_resnet50_2 $b $t native f32 "$w" ""
    [ $bf16 = 1 ] && row wide_resnet50_2 $b $t native bf16 "$w" ""
  done
done
if [ -f "$r18" ]; then
  for t in 1 2; do row resnet18 1 $t native f32 "$r18" "--arch resnet18 --weights $r18"; done
fi
for t in 1 2; do
  row wide_resnet50_2 1 $t avx2 f32 "$w" ""
  [ -f "$r18" ] && row resnet18 1 $t avx2 f32 "$r18" "--arch resnet18 --weights $r18"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
