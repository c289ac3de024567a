#!/bin/sh
# Issue 7's demonstration: a fit far larger than its memory budget. Makes N (default 2000) training
# images from the 209 bottle training images with flips and small shifts (build/bench_augment, our own
# decoder and PNG writer), then runs
#   /usr/bin/time -v patchcore fit --max-memory BUDGET --coreset CORESET ...
# with the shared ResNet-18 (layers 2+3, 224 crop: 784 patches x 1024 dims = 3.2 MB of features per
# image, 6.4 GB for 2,000) and reports the measured peak RSS against the budget, the plan the library
# made (from a run with a 1 MiB budget, which stops before the first image and says what it needs),
# the wall time and the fit's stage times.
# COMPARE=1 also fits without a budget (peak RSS of the in-memory fit) and checks that the two model
# files are byte-identical.
# usage: sh bench/fit_large.sh [BUILD_DIR]   (after `make`)
#   N=2000 BUDGET=1500M CORESET=0.01 THREADS=2 COMPARE=0 DATA=DIR (reuse / keep the generated images)
#   TMPDIR=DIR (where the feature file goes; needs N x 3.2 MB free)
set -eu
build=${1:-build}
n=${N:-2000}
budget=${BUDGET:-1500M}
coreset=${CORESET:-0.01}
threads=${THREADS:-2}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"   # CPU, instruction sets, OpenBLAS core, torch capability
shared=${PATCHCORE_SHARED:-$here/../../shared}
train=$shared/data/mvtec_ad/bottle/train/good
weights=$shared/weights/resnet18_in1k_to_layer3.pth
for f in "$train" "$weights" "$build/patchcore" "$build/bench_augment" /usr/bin/time; do
  test -e "$f" || { echo "fit_large.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_bench_large_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
data=${DATA:-$tmp/data}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
rss() { sed -n 's/.*Maximum resident set size (kbytes): *\([0-9]*\).*/\1/p' "$1"; }
wall() { sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): *//p' "$1"; }
kib() { # a --max-memory SIZE in KiB
  echo "$1" | awk '{ v = $0 + 0; u = toupper(substr($0, match($0, /[KMGTkmgt]/), 1));
    m = u == "K" ? 1 : u == "M" ? 1024 : u == "G" ? 1048576 : u == "T" ? 1073741824 : 1 / 1024;
    printf "%.0f\n", v * m }'
}

echo "threads $threads"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$data"
have=$(ls "$data" | grep -c '\.png$' || true)
if [ "$have" -lt "$n" ]; then
  t0=$(date +%s)
  "$build/bench_augment" "$train" "$data" "$n"
  echo "made $n images in $data ($(du -sh "$data" | cut -f1)) in $(( $(date +%s) - t0 )) s"
fi
ls "$data"/*.png | head -n "$n" > "$tmp/list"
mkdir -p "$tmp/in" && while read -r f; do ln -s "$f" "$tmp/in/"; done < "$tmp/list"

# The plan: a 1 MiB budget stops before the first image with the figure it needs.
"$build/patchcore" fit --weights "$weights" --coreset "$coreset" --max-memory 1M -q -o "$tmp/none.pcm" "$tmp/in" \
  2> "$tmp/plan" || true
echo "plan: $(sed 's/.*too small: //' "$tmp/plan")"

cmd="$build/patchcore fit --weights $weights --coreset $coreset --threads $threads --max-memory $budget --json --no-progress -o $tmp/budget.pcm $tmp/in"
echo "command: $cmd"
/usr/bin/time -v -o "$tmp/time" $cmd > "$tmp/fit.json"
peak=$(rss "$tmp/time")
lim=$(kib "$budget")
echo "fit: $(cat "$tmp/fit.json")"
echo "peak RSS $peak KiB ($(( peak / 1024 )) MiB) against a budget of $budget ($(( lim / 1024 )) MiB): $(
  [ "$peak" -le "$lim" ] && echo "within, $(( (lim - peak) / 1024 )) MiB to spare" || echo "EXCEEDED")"
echo "wall $(wall "$tmp/time"); feature file $(awk -v n="$n" 'BEGIN { printf "%.2f GB", n * 784 * 1024 * 4 / 1e9 }') in ${TMPDIR:-/tmp}"

if [ "${COMPARE:-0}" = 1 ]; then
  cmd2="$build/patchcore fit --weights $weights --coreset $coreset --threads $threads --json --no-progress -o $tmp/mem.pcm $tmp/in"
  /usr/bin/time -v -o "$tmp/time2" $cmd2 > "$tmp/fit2.json"
  echo "unlimited fit: $(cat "$tmp/fit2.json")"
  echo "unlimited fit: peak RSS $(( $(rss "$tmp/time2") / 1024 )) MiB, wall $(wall "$tmp/time2")"
  cmp "$tmp/budget.pcm" "$tmp/mem.pcm" && echo "model files byte-identical"
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$peak" -le "$lim" ]
