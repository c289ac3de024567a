#!/bin/sh
# test_report.sh - the HTML reports of `eval --report` and `predict --report` (docs/report.md), checked
# in a real headless browser and against independent values (tests/report_check.py):
#  - a small model (real ResNet-18, 300-entry coreset) is fitted on the bottle subset that
#    tests/ref/gen_eval.py lays out (20 train, 13 test images with masks) and evaluated on its test set
#    plus two defective images repeated under test/good (so image AUROC < 1, with tied scores across
#    the classes); eval --report with it
#    uncalibrated (the report's thresholds come from the evaluation) and calibrated (the model's),
#    predict --report with the calibrated model; eval --mask-rule half (and --json of both rules);
#  - the files: self-contained (no external reference), one table row and one PNG data: thumbnail per
#    image, worst first; image AUROC = sklearn's roc_auc_score of the table's own scores and the
#    image ROC = sklearn's roc_curve(drop_intermediate=False) (1e-6); pixel AUROC and every pixel ROC
#    point on sklearn's curve of the maps `predict --maps` writes with masks made by the PyTorch oracle
#    (1e-6) under the rule the report names (full by default, half with --mask-rule half); the JSON
#    names the rule, half changes every pixel metric and leaves the image metrics equal; regions = scipy.ndimage.label counts, normalised scores (1e-5) and decisions by formula;
#  - chromium --headless --dump-dom of each report opened with #selftest: no console message, no
#    uncaught exception (the page records window.onerror into the DOM), its finished-rendering marker
#    set, the sorting self-test passed, the expected rows and <img>s, and the ROC SVGs present.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR, PC_REF_DIR, PC_BUILD_DIR, PC_SOURCE_DIR.
# Exit 77 (skipped) when chromium, the weights, the bottle subset or the Python oracle is absent.
set -eu
cli=${PC_CLI:?}
src=${PC_SOURCE_DIR:-$(dirname "$0")/..}
refs=${PC_REF_DIR:-${PC_BUILD_DIR:?}/ref}
weights=${PC_SHARED_DIR:-../shared}/weights/resnet18_in1k_to_layer3.pth
cat_dir=$refs/eval/bottle_sub
PY=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

chromium=$(command -v chromium || true)
[ -n "$chromium" ] || skip "chromium is absent (sh scripts/setup.sh installs Debian's chromium)"
[ -f "$weights" ] || skip "no ResNet-18 weights at $weights"
[ -d "$cat_dir/test/good" ] || skip "no bottle subset at $cat_dir (make refs, with ../shared present)"
$PY -c "import sklearn, scipy, PIL, numpy, torch, torchvision" 2>/dev/null || skip "$PY lacks sklearn/scipy/PIL/torch"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_report.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
check() { $PY "$src/tests/report_check.py" "$@" || exit 1; }

# The category evaluated: the subset's test set plus two of its defective images again under test/good
# (same image, both labels: tied scores across the classes), so that image AUROC is below 1 and the
# ROC has a diagonal step - a perfect separation would make the AUROC and curve checks weak.
cat=$tmp/cat
mkdir -p "$cat/test"
ln -s "$(cd "$cat_dir" && pwd)/ground_truth" "$cat/ground_truth"
for d in "$cat_dir"/test/*/; do
    t=$(basename "$d")
    mkdir "$cat/test/$t"
    for f in "$d"*.png; do ln -s "$(cd "$d" && pwd)/$(basename "$f")" "$cat/test/$t/"; done
done
dup_type=$(ls "$cat_dir/test" | grep -vx good | head -n 1)
for f in $(ls "$cat_dir/test/$dup_type" | head -n 2); do
    ln -s "$(cd "$cat_dir/test/$dup_type" && pwd)/$f" "$cat/test/good/zz_dup_$f"
done
n=$(find "$cat/test" -name '*.png' | wc -l)
[ "$n" -ge 6 ] || fail "only $n test images in $cat"

# --- the reports -------------------------------------------------------------------------------
"$cli" fit --weights "$weights" --coreset-size 300 --threads 2 --no-progress -o "$tmp/m.pcm" "$cat_dir/train/good" \
    >"$tmp/fit.log" 2>&1 || { cat "$tmp/fit.log" >&2; fail "fit failed"; }
"$cli" eval -m "$tmp/m.pcm" --report "$tmp/eval.html" --json "$tmp/eval.json" --no-progress "$cat" >"$tmp/eval.log" 2>&1 ||
    { cat "$tmp/eval.log" >&2; fail "eval --report failed"; }
"$cli" eval -m "$tmp/m.pcm" --mask-rule half --report "$tmp/eval_half.html" --json "$tmp/eval_half.json" --no-progress \
    "$cat" >"$tmp/eval_half.log" 2>&1 || { cat "$tmp/eval_half.log" >&2; fail "eval --mask-rule half failed"; }
"$cli" calibrate -m "$tmp/m.pcm" --out "$tmp/mc.pcm" --no-progress "$cat_dir/train/good" >"$tmp/cal.log" 2>&1 ||
    { cat "$tmp/cal.log" >&2; fail "calibrate failed"; }
"$cli" eval -m "$tmp/mc.pcm" --report "$tmp/eval_cal.html" --no-progress "$cat" >"$tmp/eval_cal.log" 2>&1 ||
    { cat "$tmp/eval_cal.log" >&2; fail "eval --report (calibrated) failed"; }
mkdir "$tmp/maps"
"$cli" predict -m "$tmp/mc.pcm" --report "$tmp/pred.html" --json --maps "$tmp/maps" "$cat/test" \
    >"$tmp/pred.jsonl" 2>"$tmp/pred.log" || { cat "$tmp/pred.log" >&2; fail "predict --report failed"; }
ls "$tmp"/*.tmp-* >/dev/null 2>&1 && fail "a temporary file was left beside a report"

# The mask rule: named in the JSON, the table and the report; half changes every pixel metric and no
# image metric (same model, same maps); the pixel AUROC of each is checked against sklearn below.
$PY - "$tmp/eval.json" "$tmp/eval_half.json" <<'EOF' || fail "mask rule: JSON check failed"
import json, sys
full, half = (json.load(open(p)) for p in sys.argv[1:3])
assert full["mask_rule"] == "full" and half["mask_rule"] == "half", (full["mask_rule"], half["mask_rule"])
for k in ("image_auroc", "image_f1_max", "image_f1_threshold", "n_good", "n_defective", "per_type"):
    assert full[k] == half[k], (k, full[k], half[k])
# (the F1-optimal pixel threshold is one of the map values and may be the same one under both rules)
for k in ("pixel_auroc", "aupro", "pixel_f1_max"):
    assert full[k] != half[k], (k, full[k])
print("mask rule: pixel AUROC %.6f (full) vs %.6f (half), AUPRO %.6f vs %.6f; image AUROC %.6f both"
      % (full["pixel_auroc"], half["pixel_auroc"], full["aupro"], half["aupro"], full["image_auroc"]))
EOF
grep -q "^  mask rule      full (" "$tmp/eval.log" || fail "eval's table does not name the full rule: $(cat "$tmp/eval.log")"
grep -q "^  mask rule      half (" "$tmp/eval_half.log" || fail "eval's table does not name the half rule"
check says "$tmp/eval.html" mask-rule "full (resized mask value == 255"
check says "$tmp/eval_half.html" mask-rule "half (resized mask value >= 128)"
check says "$tmp/eval.html" bn-stats "reference (the reference code"
grep -q "^  batch-norm     reference (" "$tmp/eval.log" || fail "eval's table does not name the batch-norm statistics"
check says "$tmp/eval.html" precision "f32 (float32 throughout)"
grep -q "^  precision      f32" "$tmp/eval.log" || fail "eval's table does not name the precision"
rc=0; "$cli" eval -m "$tmp/m.pcm" --mask-rule 0.5 "$cat" >/dev/null 2>"$tmp/badrule.err" || rc=$?
[ $rc = 2 ] && grep -q "full, half" "$tmp/badrule.err" || fail "eval --mask-rule 0.5: exit $rc, $(cat "$tmp/badrule.err")"

# Which thresholds each report says it used.
check says "$tmp/eval.html" image-threshold-source "evaluation's own F1-optimal image threshold"
check says "$tmp/eval.html" overlay-source "evaluation's own F1-optimal pixel threshold"
check says "$tmp/eval_cal.html" image-threshold-source "the model's calibrated threshold"
check says "$tmp/eval_cal.html" overlay-source "the model's calibrated pixel threshold"
check says "$tmp/pred.html" overlay-source "the model's calibrated pixel threshold"

# --- content against independent values --------------------------------------------------------
check static "$tmp/eval.html" eval "$n"
check static "$tmp/eval_cal.html" eval "$n"
check static "$tmp/pred.html" predict "$n"
check pixel "$tmp/eval.html" "$cat" "$tmp/pred.jsonl"
check pixel "$tmp/eval_cal.html" "$cat" "$tmp/pred.jsonl"
check pixel "$tmp/eval_half.html" "$cat" "$tmp/pred.jsonl" half
check regions "$tmp/pred.html" "$tmp/pred.jsonl"

# --- in the browser ----------------------------------------------------------------------------
for r in eval eval_cal pred; do
    timeout 180 "$chromium" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$tmp/profile" \
        --enable-logging=stderr --v=0 --dump-dom "file://$tmp/$r.html#selftest" >"$tmp/$r.dom" 2>"$tmp/$r.chromium.log" ||
        { tail -n 20 "$tmp/$r.chromium.log" >&2; fail "chromium failed on $r.html"; }
    if grep -E ':CONSOLE|Uncaught' "$tmp/$r.chromium.log" >&2; then fail "$r.html: console messages (above)"; fi
    check dom "$tmp/$r.dom" "$n"
    case $r in eval*)
        for id in roc-image roc-pixel histogram; do
            grep -q "<svg id=\"$id\"" "$tmp/$r.dom" || fail "$r.html: no SVG #$id in the rendered DOM"
        done ;;
    esac
done
size=$(wc -c <"$tmp/eval.html")
echo "report OK: $n images; eval.html $size bytes; browser, sorting, AUROC and ROC checks pass"
