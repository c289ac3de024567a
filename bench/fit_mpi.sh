#!/bin/sh
# The distributed fit (docs/mpi.md) on this machine: N (default 2000) training images made from the 209
# bottle training images by flips and shifts (build/bench_augment), ResNet-18 layers 2+3 (784 patches x
# 1024 dims per image), fitted at each coreset ratio of RATIOS by
#   - the plain build, one process (PLAIN=1; the model every other run is compared with, by cmp), and
#   - `mpirun -np P build-mpi/patchcore fit --mpi` for each P of NPS, with THREADS / P threads each,
# printing for each run the time per phase (features: the slowest process; coreset: the distributed
# greedy loop, and of it the time inside the per-pick reductions; gather: the bank's rows to process 0),
# the picks, time and bytes per pick, and process 0's total communication, from fit's --json summary.
# Every model file is compared with cmp against the first run of its ratio.
# usage: sh bench/fit_mpi.sh [BUILD_DIR [MPI_BUILD_DIR]]   (after `make` and `make mpi`)
#   N=2000 RATIOS="0.01 0.1" NPS="1 2" THREADS=2 PLAIN=1 DATA=DIR (reuse / keep the generated images)
set -eu
build=${1:-build}
mbuild=${2:-build-mpi}
n=${N:-2000}
ratios=${RATIOS:-0.01 0.1}
nps=${NPS:-1 2}
threads=${THREADS:-2}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
train=$shared/data/mvtec_ad/bottle/train/good
weights=$shared/weights/resnet18_in1k_to_layer3.pth
for f in "$train" "$weights" "$build/patchcore" "$build/bench_augment" "$mbuild/patchcore"; do
  test -e "$f" || { echo "fit_mpi.sh: $f not found (make; make mpi)" >&2; exit 1; }
done
command -v mpirun >/dev/null || { echo "fit_mpi.sh: mpirun not found (scripts/setup.sh mpi)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_bench_mpi_XXXXXX")
trap 'rm -rf "$tmp"' EXIT
data=${DATA:-$tmp/data}
echo "mpi: $(mpirun --version 2>&1 | head -1); threads in all: $threads"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$data"
have=$(ls "$data" | grep -c '\.png$' || true)
if [ "$have" -lt "$n" ]; then
  "$build/bench_augment" "$train" "$data" "$n"
fi
mkdir -p "$tmp/in"
ls "$data"/*.png | head -n "$n" | while read -r f; do ln -s "$f" "$tmp/in/"; done

elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# one line per run from fit's --json summary
summary() { # summary LABEL JSON_FILE WALL_SECONDS
  /usr/bin/python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
label, path, wall = sys.argv[1], sys.argv[2], float(sys.argv[3])
j = json.load(open(path))
ranks = j.get("ranks", 1)
picks = j.get("coreset_picks", j["bank_size"])
line = (f"{label}: wall {wall:.1f} s; features {j['features_seconds']:.1f} s; coreset {j['coreset_seconds']:.1f} s "
        f"({1e3 * j['coreset_seconds'] / max(picks, 1):.3f} ms per pick)")
if "ranks" in j:
    line += (f", of which {j['coreset_comm_seconds']:.1f} s in {picks} reductions "
             f"({1e6 * j['coreset_comm_seconds'] / max(picks, 1):.1f} us per pick, "
             f"{16 + 4 * 128} bytes each); gather {j['gather_seconds']:.2f} s; "
             f"process 0 talked {j['comm_seconds']:.1f} s, {j['comm_bytes'] / 1e6:.1f} MB; "
             f"features per process {j['features_min_seconds']:.1f}-{j['features_seconds']:.1f} s")
print(line + f"; bank {j['bank_size']} of {j['n_patches']} patches")
EOF
}

for r in $ratios; do
  first=
  if [ "${PLAIN:-1}" = 1 ]; then
    t0=$(date +%s.%N)
    OMP_NUM_THREADS=$threads "$build/patchcore" fit --weights "$weights" --coreset "$r" --threads "$threads" \
      --json --no-progress -o "$tmp/plain-$r.pcm" "$tmp/in" > "$tmp/plain-$r.json"
    summary "ratio $r, plain build, 1 process x $threads threads" "$tmp/plain-$r.json" \
      "$(elapsed "$t0")"
    first=$tmp/plain-$r.pcm
  fi
  for p in $nps; do
    t=$(( threads / p )); [ "$t" -ge 1 ] || t=1
    t0=$(date +%s.%N)
    mpirun --oversubscribe --bind-to none -np "$p" -x OMP_NUM_THREADS="$t" "$mbuild/patchcore" fit --mpi \
      --weights "$weights" --coreset "$r" --threads "$t" --json --no-progress -o "$tmp/np$p-$r.pcm" "$tmp/in" \
      > "$tmp/np$p-$r.json"
    summary "ratio $r, mpirun -np $p x $t thread(s)" "$tmp/np$p-$r.json" "$(elapsed "$t0")"
    if [ -z "$first" ]; then first=$tmp/np$p-$r.pcm
    elif cmp -s "$first" "$tmp/np$p-$r.pcm"; then echo "  model file byte-identical to $(basename "$first")"
    else echo "  MODEL FILE DIFFERS from $(basename "$first")"; exit 1; fi
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
