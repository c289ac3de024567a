#!/bin/sh
# Updating instead of refitting, on MVTec AD bottle (docs/update.md): the shared ResNet-18, layers 2+3,
# coreset 0.1. A model fitted on the first OLD (default 180) training images is updated with the other
# ones (29 of 209) under rule radius and rule ratio, and compared with a refit on all 209: wall time
# (median of RUNS, default 3, for the update and for the refit), bank size, and image / pixel AUROC of
# `patchcore eval` on the bottle test set for the three models.
# usage: sh bench/update_bottle.sh [BUILD_DIR]   (needs ../shared)
set -eu
build=${1:-build}
threads=${THREADS:-2}
runs=${RUNS:-3}
old=${OLD:-180}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
for f in "$bottle/train/good" "$bottle/test" "$w" "$build/patchcore"; do
  test -e "$f" || { echo "update_bottle.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pc_bench_upd_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pc=$build/patchcore
ls "$bottle"/train/good/*.png | sort >"$tmp/all"
head -n "$old" "$tmp/all" >"$tmp/old"
tail -n +"$((old + 1))" "$tmp/all" >"$tmp/new"
echo "threads $threads, $old old + $(wc -l <"$tmp/new") new images, $runs runs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
now() { date +%s.%N; }
# shellcheck disable=SC2046
"$pc" fit --weights "$w" --threads "$threads" --no-progress -o "$tmp/old.pcm" $(cat "$tmp/old") >/dev/null
for rule in radius ratio; do
  : >"$tmp/t_$rule"
  for r in $(seq "$runs"); do
    t0=$(now)
    # shellcheck disable=SC2046
    "$pc" update -m "$tmp/old.pcm" -o "$tmp/$rule.pcm" --rule $rule --threads "$threads" --no-progress --json \
      $(cat "$tmp/new") >"$tmp/$rule.json"
    echo "$(now) - $t0" | bc >>"$tmp/t_$rule"
  done
done
: >"$tmp/t_refit"
for r in $(seq "$runs"); do
  t0=$(now)
  "$pc" fit --weights "$w" --threads "$threads" --no-progress -o "$tmp/refit.pcm" "$bottle/train/good" >/dev/null
  echo "$(now) - $t0" | bc >>"$tmp/t_refit"
done
printf "%-16s %10s %8s %12s %12s\n" model seconds bank image_AUROC pixel_AUROC
for m in old radius ratio refit; do
  t=-
  [ -s "$tmp/t_$m" ] && t=$(median <"$tmp/t_$m")
  bank=$("$pc" info "$tmp/$m.pcm" | sed -n 's/.*memory bank: *\([0-9]*\) of.*/\1/p')
  "$pc" eval -m "$tmp/$m.pcm" --threads "$threads" --no-progress --json "$tmp/$m.eval.json" "$bottle" >/dev/null
  auc=$(/usr/bin/python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print('%.4f %.4f' % (j['image_auroc'], j['pixel_auroc']))" "$tmp/$m.eval.json")
  printf "%-16s %10s %8s %12s %12s\n" "$m" "$t" "$bank" $auc
done
for rule in radius ratio; do echo "update --rule $rule: $(cat "$tmp/$rule.json")"; done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
