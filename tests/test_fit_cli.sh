#!/bin/sh
# test_fit_cli.sh - `patchcore fit --holdout F` and `--calibrate DIR`: fit on 8 bottle training images
# with the real ResNet-18, holding 2 out (k = round(0.25 * 8) = 2; by the documented rule image i is
# held out when floor((i+1)k/n) > floor(ik/n), i.e. sorted images 3 and 7), then check against values
# worked out here from `predict` on the held-out images (numpy):
#  - the bank is built from the other 6 (info: "from 6 images");
#  - split-conformal at 1% with n = 2 (n + 1 < 1/R) is the maximum: image threshold = the larger
#    held-out score, pixel threshold = the larger of the two maps' maxima (exact: same floats);
#  - pixel scale = pixel threshold - median of every 7th pixel of both maps (relative 1e-6);
#  - `--calibrate DIR` with the same 2 images and the other 6 for training gives the same thresholds;
#  - `benchmark` with and without --mask-rule half: the CSV and Markdown name the rule, half changes the
#    pixel metrics and not image AUROC, and the rows equal `eval --json --mask-rule` on the saved model;
#  - the batch-norm setting is named everywhere: fit --json, info, eval --json, benchmark CSV/Markdown
#    (reference by default; `--bn trained` gives trained and different scores; a bad value is exit 2).
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR. Exit 77 (skipped) when ../shared is absent.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.pth
train=$shared/data/mvtec_ad/bottle/train/good
[ -f "$w" ] && [ -d "$train" ] || { echo "SKIP: $shared lacks the ResNet-18 weights or the bottle data"; exit 77; }
"$PY" -c 'import numpy' 2>/dev/null || { echo "SKIP: $PY has no numpy"; exit 77; }
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_fitcli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

mkdir "$tmp/all" "$tmp/six" "$tmp/two"
i=0
for f in $(ls "$train" | LC_ALL=C sort | head -n 8); do
    ln -s "$train/$f" "$tmp/all/$f"
    if [ $i -eq 3 ] || [ $i -eq 7 ]; then ln -s "$train/$f" "$tmp/two/$f"; else ln -s "$train/$f" "$tmp/six/$f"; fi
    i=$((i + 1))
done
common="--weights $w --coreset 0.05 --threads 2 --no-progress --json"

"$cli" fit $common --holdout 0.25 -o "$tmp/h.pcm" "$tmp/all" >"$tmp/h.json" || fail "fit --holdout failed"
"$cli" fit $common --calibrate "$tmp/two" -o "$tmp/c.pcm" "$tmp/six" >"$tmp/c.json" || fail "fit --calibrate failed"
"$cli" info "$tmp/h.pcm" | grep -q "from 6 images" || fail "the bank is not from the 6 kept images: $("$cli" info "$tmp/h.pcm")"
"$cli" predict -m "$tmp/h.pcm" --json --maps "$tmp/maps" "$tmp/two" >"$tmp/p.jsonl" || fail "predict failed"

"$PY" - "$tmp" <<'PYEOF' || fail "thresholds differ from the held-out images' values"
import json, sys, numpy as np
tmp = sys.argv[1]
h = json.load(open(f"{tmp}/h.json"))
c = json.load(open(f"{tmp}/c.json"))
preds = [json.loads(l) for l in open(f"{tmp}/p.jsonl")]
assert h["n_images"] == 6 and h["n_calibration"] == 2, h
assert len(preds) == 2
scores = np.array([p["score"] for p in preds], np.float32)
maps = [np.load(p["map"]) for p in preds]
ti = float(scores.max())
tp = float(max(m.max() for m in maps))
sample = np.concatenate([m.ravel()[::7] for m in maps]).astype(np.float64)
ps = tp - float(np.median(sample))
print("image threshold", h["image_threshold"], "expect", ti)
print("pixel threshold", h["pixel_threshold"], "expect", tp)
print("pixel scale", h["pixel_scale"], "expect", ps)
assert np.float32(h["image_threshold"]) == np.float32(ti)
assert np.float32(h["pixel_threshold"]) == np.float32(tp)
assert abs(h["pixel_scale"] - ps) <= 1e-6 * abs(ps)
for key in ("image_threshold", "pixel_threshold", "score_scale", "pixel_scale"):
    assert c[key] == h[key], (key, c[key], h[key])
PYEOF

# bad values are refused before any work
for bad in "--holdout 0" "--holdout 1" "--holdout x"; do
    set +e
    "$cli" fit $common $bad -o "$tmp/x.pcm" "$tmp/all" >/dev/null 2>"$tmp/err"
    rc=$?
    set -e
    [ $rc -eq 2 ] || fail "fit $bad: exit $rc, expected 2"
    grep -q -- "--holdout" "$tmp/err" || fail "fit $bad: the error does not name --holdout: $(cat "$tmp/err")"
done
[ ! -e "$tmp/x.pcm" ] || fail "a model was written after a bad command line"

# progress: on a terminal (script(1) gives the fit one) a line per stage with the rate and ETA;
# none with --no-progress or -q, and none when stderr is not a terminal (every run above)
if command -v script >/dev/null 2>&1; then
    prog="$cli fit --weights $w --coreset 0.05 --threads 2 -o $tmp/t.pcm $tmp/six"
    script -qec "$prog" /dev/null >"$tmp/tty.txt" 2>&1 || fail "fit under script(1) failed: $(cat "$tmp/tty.txt")"
    grep -q "features *6/6 .*/s  ETA" "$tmp/tty.txt" || fail "no features progress on a terminal: $(cat "$tmp/tty.txt")"
    grep -q "coreset .*/s  ETA" "$tmp/tty.txt" || fail "no coreset progress on a terminal"
    script -qec "$prog --no-progress" /dev/null >"$tmp/tty2.txt" 2>&1 || fail "fit --no-progress failed"
    ! grep -q "ETA" "$tmp/tty2.txt" || fail "progress shown despite --no-progress"
    script -qec "$prog -q" /dev/null >"$tmp/tty3.txt" 2>&1 || fail "fit -q failed"
    [ ! -s "$tmp/tty3.txt" ] || fail "fit -q printed: $(cat "$tmp/tty3.txt")"
else
    echo "note: script(1) absent, terminal progress not checked"
fi
# benchmark under both mask rules on a tiny category (the six as train/good, 2 good + 2 broken_large
# test images with their masks): results.csv has a mask_rule column (rows and the mean row) and
# results.md names the rule; the half rule changes the pixel metrics, not image AUROC; each row equals
# `eval --json --mask-rule` on the saved model (printed to 6 decimals).
b=$shared/data/mvtec_ad/bottle
mkdir -p "$tmp/cat/train" "$tmp/cat/test/good" "$tmp/cat/test/broken_large" "$tmp/cat/ground_truth/broken_large"
ln -s "$tmp/six" "$tmp/cat/train/good"
for f in 000 001; do
    ln -s "$b/test/good/$f.png" "$tmp/cat/test/good/$f.png"
    ln -s "$b/test/broken_large/$f.png" "$tmp/cat/test/broken_large/$f.png"
    ln -s "$b/ground_truth/broken_large/${f}_mask.png" "$tmp/cat/ground_truth/broken_large/${f}_mask.png"
done
for rule in full half; do
    mkdir "$tmp/bench_$rule"
    set -- --mask-rule "$rule"
    [ $rule = full ] && set -- # the default
    "$cli" benchmark --weights "$w" --coreset 0.05 --threads 2 --no-progress --save-models "$@" \
        --out "$tmp/bench_$rule" "$tmp/cat" >"$tmp/bench_$rule.log" 2>&1 || { cat "$tmp/bench_$rule.log" >&2; fail "benchmark ($rule) failed"; }
    "$cli" eval -m "$tmp/bench_$rule/cat.pcm" --mask-rule $rule --json "$tmp/eval_$rule.json" --no-progress "$tmp/cat" \
        >/dev/null || fail "eval ($rule) failed"
    grep -q "Pixel metrics with mask rule $rule (" "$tmp/bench_$rule/results.md" ||
        fail "results.md does not name the $rule rule: $(cat "$tmp/bench_$rule/results.md")"
done
"$PY" - "$tmp" <<'PYEOF' || fail "benchmark mask rule checks"
import csv, json, sys
tmp = sys.argv[1]
rows = {}
for rule in ("full", "half"):
    r = list(csv.DictReader(open(f"{tmp}/bench_{rule}/results.csv")))
    assert [x["category"] for x in r] == ["cat", "mean"], r
    assert r[0]["mask_rule"] == rule and r[1]["mask_rule"] == rule, r
    e = json.load(open(f"{tmp}/eval_{rule}.json"))
    assert e["mask_rule"] == rule
    assert r[0]["bn_stats"] == "reference" and r[1]["bn_stats"] == "reference" and e["bn_stats"] == "reference", (r, e)
    assert r[0]["precision"] == "f32" and r[1]["precision"] == "f32" and e["precision"] == "f32", (r, e)
    for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_f1_max"):
        assert abs(float(r[0][k]) - e[k]) <= 5e-7, (rule, k, r[0][k], e[k])
    rows[rule] = r[0]
    print(rule, {k: rows[rule][k] for k in ("image_auroc", "pixel_auroc", "aupro", "pixel_f1_max")})
assert rows["full"]["image_auroc"] == rows["half"]["image_auroc"]
for k in ("pixel_auroc", "aupro", "pixel_f1_max"):
    assert rows["full"][k] != rows["half"][k], k
PYEOF
grep -q "backbone resnet18 (batch-norm reference, precision f32)" "$tmp/bench_full/results.md" ||
    fail "results.md does not name the batch-norm and the precision"
# --bn trained: named in fit --json, info and eval --json; the default fit said reference
"$cli" fit $common --bn trained -o "$tmp/t.pcm" "$tmp/six" >"$tmp/t.json" || fail "fit --bn trained failed"
"$cli" info "$tmp/t.pcm" | grep -q "^batch-norm: *trained" || fail "info does not say trained: $("$cli" info "$tmp/t.pcm")"
"$cli" info "$tmp/c.pcm" | grep -q "^batch-norm: *reference" || fail "info does not say reference"
"$cli" eval -m "$tmp/t.pcm" --json "$tmp/eval_t.json" --no-progress "$tmp/cat" >/dev/null || fail "eval (trained) failed"
"$PY" - "$tmp" <<'PYEOF' || fail "batch-norm setting not named"
import json, sys
tmp = sys.argv[1]
assert json.load(open(f"{tmp}/c.json"))["bn_stats"] == "reference"
assert json.load(open(f"{tmp}/c.json"))["precision"] == "f32"
assert json.load(open(f"{tmp}/t.json"))["bn_stats"] == "trained"
t, f = json.load(open(f"{tmp}/eval_t.json")), json.load(open(f"{tmp}/eval_full.json"))
assert t["bn_stats"] == "trained" and f["bn_stats"] == "reference"
PYEOF
set +e
"$cli" fit $common --bn eval -o "$tmp/x.pcm" "$tmp/six" >/dev/null 2>"$tmp/x.err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "not reference or trained" "$tmp/x.err" || fail "--bn eval: exit $rc, $(cat "$tmp/x.err")"
echo "ok: fit --holdout and --calibrate, progress, benchmark mask rules, batch-norm setting named"
