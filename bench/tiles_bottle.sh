#!/bin/sh
# tiles_bottle.sh - tiling (docs/tiles.md) on the bottle category at its native 900 x 900: the resized
# default (Resize 256, CenterCrop 224) against tiles of 224 and of 320 (overlap OVERLAP, default 0.25)
# at scale 1, with the CLI. ResNet-18 layers 2+3, k = 1.
# To keep a run to minutes on 2 cores, every config is fitted on the same N_TRAIN (default 10)
# training images, evenly spread over the sorted list; the default with --coreset 0.1 (the reference's
# ratio), the tiled ones with a memory bank of BANK (default 2000) entries (a tiled fit has 36 or 16
# times more patches per image, and the greedy coreset costs patches x bank).
# Printed per config: fit wall time, predict time per image (the median of `predict --json`'s "ms" over
# the 83 test images: decode, tiles, stitching), cost per megapixel of the original image (that median
# / 0.81 MP), and `eval --json`'s image AUROC, pixel AUROC and AUPRO: for the default on the standard
# protocol (masks through Resize 256 + CenterCrop 224, anomalous = 255), for tiled models on the full
# 900 x 900 masks (anomalous = 255), every pixel (docs/evaluation.md).
# Usage: sh bench/tiles_bottle.sh [BUILD_DIR]   (needs ../shared)
set -eu
build=${1:-build}
threads=${THREADS:-2}
n_train=${N_TRAIN:-10}
bank=${BANK:-2000}
overlap=${OVERLAP:-0.25}
here=$(dirname "$0")
. "$here/cpuinfo.sh"
bench_platform "$build"
shared=${PATCHCORE_SHARED:-$here/../../shared}
bottle=${BOTTLE:-$shared/data/mvtec_ad/bottle}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
for f in "$bottle/train/good" "$bottle/test" "$w" "$build/patchcore"; do
  test -e "$f" || { echo "tiles_bottle.sh: $f not found" >&2; exit 1; }
done
tmp=$(mktemp -d /tmp/pc_bench_tiles_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pc=$build/patchcore
ls "$bottle"/train/good/*.png | sort >"$tmp/all"
n_all=$(wc -l <"$tmp/all")
awk -v n="$n_train" -v t="$n_all" 'BEGIN { for (i = 0; i < n; i++) k[int(i * t / n) + 1] = 1 } (NR in k)' "$tmp/all" >"$tmp/train"
echo "threads $threads, $n_train training images, tiled bank $bank, overlap $overlap; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "%-10s %8s %7s %10s %9s %8s %8s %7s\n" config fit_s bank ms/image ms/MP img_AUROC pix_AUROC AUPRO
for cfg in default 224 320; do
  if [ "$cfg" = default ]; then
    opts="--coreset 0.1"
  else
    opts="--tile $cfg --tile-overlap $overlap --coreset-size $bank"
  fi
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046,SC2086
  "$pc" fit --weights "$w" --threads "$threads" --no-progress $opts -o "$tmp/$cfg.pcm" $(cat "$tmp/train") >/dev/null
  t_fit=$(echo "$(date +%s.%N) - $t0" | bc)
  b=$("$pc" info "$tmp/$cfg.pcm" | sed -n 's/.*memory bank: *\([0-9]*\) of.*/\1/p')
  "$pc" predict -m "$tmp/$cfg.pcm" --threads "$threads" --json "$bottle/test" >"$tmp/$cfg.jsonl" 2>/dev/null
  "$pc" eval -m "$tmp/$cfg.pcm" --threads "$threads" --no-progress --json "$tmp/$cfg.eval.json" "$bottle" >/dev/null
  /usr/bin/python3 - "$cfg" "$t_fit" "$b" "$tmp/$cfg.jsonl" "$tmp/$cfg.eval.json" <<'PYEOF'
import json, statistics, sys
cfg, t_fit, bank, pred, ev = sys.argv[1:6]
ms = statistics.median(json.loads(l)["ms"] for l in open(pred))
e = json.load(open(ev))
print("%-10s %8.1f %7s %10.1f %9.1f %8.4f %8.4f %7.4f" % (cfg, float(t_fit), bank, ms, ms / 0.81, e["image_auroc"],
      e["pixel_auroc"], e["aupro"]))
PYEOF
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
