#!/bin/sh
# test_roi_cli.sh - regions of interest from the command line (docs/roi.md) against the references of
# tests/ref/gen_roi.py (PIL/numpy and the PyTorch PatchCore of tests/ref/patchcore_torch.py): `fit
# --roi` with sampler none on the 2 bottle images of the reference, then
#  - info: the mask's size and its inside fraction (numpy on the PNG, to 0.1%), the bank = every inside
#    patch of both images (exact: 2 x the reference's inside cells);
#  - predict (the model's ROI), predict --roi (a per-run ROI) and predict --no-roi: image scores and
#    .npy maps within 1e-4 relative (max |diff| / max |ref|) of the reference, maps exactly 0 outside
#    the reference's crop mask;
#  - errors name the mask file: a missing mask and an all-black mask for fit (exit 2) and predict
#    (exit 1); --roi with --no-roi (exit 2).
# Environment (set by CTest): PC_CLI, PC_REF_DIR, PC_SHARED_DIR. Exit 77 (skipped) without them.
set -eu
cli=${PC_CLI:?}
ref=${PC_REF_DIR:?}/roi
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.pth
[ -f "$w" ] || { echo "SKIP: $shared lacks the ResNet-18 weights"; exit 77; }
[ -f "$ref/inputs.txt" ] || { echo "SKIP: references roi/ not generated (make refs)"; exit 77; }
"$PY" -c 'import numpy, PIL' 2>/dev/null || { echo "SKIP: $PY has no numpy/PIL"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_roicli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

t1=$(sed -n 1p "$ref/inputs.txt"); t2=$(sed -n 2p "$ref/inputs.txt")
q1=$(sed -n 3p "$ref/inputs.txt"); q2=$(sed -n 4p "$ref/inputs.txt")
"$cli" fit --weights "$w" --sampler none --roi "$ref/roi.png" --threads 2 --no-progress -q -o "$tmp/m.pcm" "$t1" "$t2" \
    || fail "fit --roi failed"
"$cli" info "$tmp/m.pcm" >"$tmp/info.txt" || fail "info failed"
n_in=$("$PY" -c "import numpy as np; print(np.load('$ref/inside_train.npy').size)")
grep -q "memory bank:     $((2 * n_in)) of $((2 * n_in)) patches from 2 images" "$tmp/info.txt" \
    || fail "the bank is not the $((2 * n_in)) inside patches: $(cat "$tmp/info.txt")"
frac=$("$PY" -c "
import numpy as np; from PIL import Image
m = np.asarray(Image.open('$ref/roi.png').convert('L')); print('%.1f' % (100.0 * (m > 0).mean()))")
grep -q "roi:             450x450 mask, $frac% of it inside" "$tmp/info.txt" \
    || fail "info does not show the ROI (450x450, $frac%): $(cat "$tmp/info.txt")"

"$cli" predict -m "$tmp/m.pcm" --json --maps "$tmp/model" "$q1" "$q2" >"$tmp/model.jsonl" || fail "predict failed"
"$cli" predict -m "$tmp/m.pcm" --json --maps "$tmp/call" --roi "$ref/roi_call.png" "$q1" "$q2" >"$tmp/call.jsonl" \
    || fail "predict --roi failed"
"$cli" predict -m "$tmp/m.pcm" --json --maps "$tmp/none" --no-roi "$q1" "$q2" >"$tmp/none.jsonl" \
    || fail "predict --no-roi failed"
"$PY" - "$tmp" "$ref" <<'PYEOF' || fail "predictions differ from the reference"
import json, sys, numpy as np
tmp, ref = sys.argv[1:3]
for x in ("model", "call", "none"):
    preds = [json.loads(l) for l in open(f"{tmp}/{x}.jsonl")]
    rs = np.load(f"{ref}/scores_{x}.npy")
    rm = np.load(f"{ref}/maps_{x}.npy")
    ins = np.load(f"{ref}/inspect_{x}.npy")
    assert len(preds) == 2, preds
    for t, p in enumerate(preds):
        e = abs(p["score"] - rs[t]) / abs(rs[t])
        m = np.load(p["map"])
        me = np.abs(m - rm[t]).max() / np.abs(rm[t]).max()
        print(f"{x} image {t}: score {p['score']:.6g} ref {rs[t]:.6g} rel {e:.2g}; map rel {me:.2g}")
        assert e <= 1e-4 and me <= 1e-4
        assert (m[ins == 0] == 0).all(), "map not 0 outside the mask"
PYEOF

# errors name the mask
expect() { # expected-exit phrase command...
    want=$1 phrase=$2; shift 2
    set +e; "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?; set -e
    [ $rc -eq "$want" ] || fail "exit $rc, not $want: $* ($(cat "$tmp/err"))"
    grep -q -- "$phrase" "$tmp/err" || fail "the message does not name '$phrase': $(cat "$tmp/err")"
}
expect 2 "$tmp/nope.png" "$cli" fit --weights "$w" --roi "$tmp/nope.png" -q -o "$tmp/x.pcm" "$t1"
expect 2 "$ref/empty.png" "$cli" fit --weights "$w" --roi "$ref/empty.png" -q -o "$tmp/x.pcm" "$t1"
expect 1 "$tmp/nope.png" "$cli" predict -m "$tmp/m.pcm" --roi "$tmp/nope.png" "$q1"
expect 1 "$ref/empty.png" "$cli" predict -m "$tmp/m.pcm" --roi "$ref/empty.png" "$q1"
expect 2 "contradict" "$cli" predict -m "$tmp/m.pcm" --roi "$ref/roi.png" --no-roi "$q1"
[ ! -e "$tmp/x.pcm" ] || fail "a failed fit left a model file"
echo "roi CLI OK"
