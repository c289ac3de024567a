#!/bin/sh
# test_tiles_cli.sh - tiling from the command line (docs/tiles.md), on tests/ref/gen_tiles.py's images
# (bottle images reduced to 300 x 260) with the real ResNet-18:
#  - `fit --tile 64 --tile-scale 0.5 --sampler none` writes a tiled model: `info` names the tiling,
#    `fit --json` counts 2 images and 2 x 9 tiles x 64 patches;
#  - `predict` scores equal the PyTorch oracle's (gen_tiles.py a_mean; a_max with --stitch max; b_max
#    with --tile-scale 1 --tile-overlap 0) within 1e-4 relative (the CLI prints 6 significant digits,
#    so the comparison is at the printed precision: |diff| <= 1e-4 * |ref| + half a unit of the 6th digit);
#  - errors, each a clear message and the documented exit code: --tile-overlap without --tile (2), a
#    tile other than the model's (1), tiling a model fitted without it (1), a tiny image (3: it fails,
#    the others are scored), fit with every image smaller than the tile (1).
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR, PC_REF_DIR. Exit 77 without the weights or refs.
set -eu
cli=${PC_CLI:?}
ref=${PC_REF_DIR:?}/tiles
w=${PC_SHARED_DIR:-}/weights/resnet18_in1k_to_layer3.pth
PY=${PYTHON:-/usr/bin/python3}
[ -f "$w" ] && [ -f "$ref/a_mean_map.npy" ] || { echo "SKIP: the ResNet-18 weights or $ref absent"; exit 77; }
"$PY" -c 'import numpy' 2>/dev/null || { echo "SKIP: $PY has no numpy"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_tilescli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

"$cli" fit --help | grep -q -- "--tile-overlap" || fail "fit --help lacks --tile-overlap"
"$cli" predict --help | grep -q -- "--stitch" || fail "predict --help lacks --stitch"
set +e
"$cli" fit --weights "$w" --tile-overlap 0.5 -o "$tmp/x.pcm" "$ref/train0.png" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "need --tile" "$tmp/err" || fail "--tile-overlap without --tile: exit $rc, $(cat "$tmp/err")"

"$cli" fit --weights "$w" --tile 64 --tile-scale 0.5 --sampler none --no-progress --json -o "$tmp/t.pcm" \
    "$ref/train0.png" "$ref/train1.png" >"$tmp/fit.json" || fail "tiled fit failed"
"$PY" - "$tmp/fit.json" <<'PY' || fail "fit --json counts"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["n_images"] == 2 and j["n_skipped"] == 0 and j["n_patches"] == 2 * 9 * 64 and j["grid"] == [8, 8], j
PY
"$cli" info "$tmp/t.pcm" >"$tmp/info.txt"
grep -q "tiling: *64x64 tiles, overlap 0.25, scale 0.5, stitch mean" "$tmp/info.txt" || fail "info: $(cat "$tmp/info.txt")"
grep -q "1152 of 1152 patches from 2 images" "$tmp/info.txt" || fail "info counts: $(cat "$tmp/info.txt")"

score() { "$cli" predict -m "$tmp/t.pcm" "$@" --json "$ref/test.png" | "$PY" -c 'import json,sys; print(json.loads(sys.stdin.readline())["score"])'; }
check() { # case, ours
    "$PY" - "$ref/$1_score.npy" "$2" "$1" <<'PY' || fail "score of $1"
import sys, numpy as np
r = float(np.load(sys.argv[1])[0]); s = float(sys.argv[2])
tol = 1e-4 * abs(r) + 0.5 * 10 ** (np.floor(np.log10(abs(r))) - 5)
print("tiles cli %s: %.9g vs %.9g" % (sys.argv[3], s, r))
assert abs(s - r) <= tol, (s, r)
PY
}
check a_mean "$(score)"
check a_max "$(score --stitch max)"
check b_max "$(score --stitch max --tile-scale 1 --tile-overlap 0)"

set +e
"$cli" predict -m "$tmp/t.pcm" --tile 96 "$ref/test.png" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "64-pixel tiles" "$tmp/err" || fail "--tile 96: exit $rc, $(cat "$tmp/err")"

"$PY" -c 'from PIL import Image; Image.new("RGB", (40, 30)).save("'"$tmp"'/tiny.png")'
set +e
"$cli" predict -m "$tmp/t.pcm" "$tmp/tiny.png" "$ref/test.png" >"$tmp/out" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] && grep -q "smaller than a 64x64 tile" "$tmp/err" && grep -q "test.png" "$tmp/out" ||
    fail "tiny image: exit $rc, $(cat "$tmp/err")"
set +e
"$cli" fit --weights "$w" --tile 64 --no-progress -o "$tmp/y.pcm" "$tmp/tiny.png" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "40x30" "$tmp/err" || fail "fit on a tiny image: exit $rc, $(cat "$tmp/err")"

"$cli" fit --weights "$w" --resize 64 --crop 64 --sampler none --no-progress -o "$tmp/u.pcm" "$ref/train0.png" ||
    fail "untiled fit"
set +e
"$cli" predict -m "$tmp/u.pcm" --tile 64 "$ref/test.png" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "fitted without tiling" "$tmp/err" || fail "tiling an untiled model: exit $rc, $(cat "$tmp/err")"
echo "test_tiles_cli: ok"
