#!/bin/sh
# test_update_cli.sh - `patchcore update` and `patchcore merge` (docs/update.md) with the real ResNet-18 on
# a few bottle images:
#  - usage errors (exit 2): no model, no images, an unknown rule, merge with one model or without -o;
#  - sampler none: fit(A) then update(B) predicts exactly as fit(A + B) (the same bank: scores equal as
#    printed to 9 digits by predict --json);
#  - the default rule (radius) adds nothing for the fitted images, something for new ones; --json is valid
#    JSON with the numbers info prints;
#  - an unreadable image among the inputs: exit 3, the others added; none usable: exit 1 and the model
#    file byte for byte as before; in-place rewrites leave no temporary file;
#  - thresholds: stale after an update of a calibrated model (info says so), recalibrated by --calibrate;
#  - merge: bank sizes add up; incompatible models (other layers) exit 1 naming the difference, nothing
#    written.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR. Exit 77 when ../shared is absent.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
b=$shared/data/mvtec_ad/bottle
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_update.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -f "$w" ] && [ -d "$b" ] || { echo "SKIP: ../shared absent (weights or bottle)"; exit 77; }
g=$b/train/good
t1=$b/test/broken_large/000.png
t2=$b/test/good/003.png

expect_rc() { # expect_rc RC PHRASE ARGS...: exit RC and PHRASE on stderr
    want=$1 phrase=$2
    shift 2
    rc=0
    "$cli" "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ $rc -eq "$want" ] && grep -q -- "$phrase" "$tmp/err" || fail "$*: exit $rc (want $want), $(cat "$tmp/err")"
}
expect_rc 2 "needs -m MODEL" update "$g/000.png"
expect_rc 2 "needs -m MODEL and good images" update -m "$tmp/x.pcm"
expect_rc 2 "unknown 'most'" update -m "$tmp/x.pcm" --rule most "$g/000.png"
expect_rc 2 "needs two models" merge "$tmp/x.pcm" -o "$tmp/y.pcm"
expect_rc 2 "needs two models and -o" merge "$tmp/x.pcm" "$tmp/y.pcm"
"$cli" update --help | grep -q -- "--rule R" || fail "update --help lacks --rule"
"$cli" merge --help | grep -q "bit for bit" || fail "merge --help does not say what must match"
"$cli" --help | grep -q "update " || fail "patchcore --help does not list update"

common="--weights $w --no-progress"
# ---- sampler none: update == fit of all (batches of 1: every image's features alike) ----
"$cli" fit $common --sampler none --batch 1 -o "$tmp/all.pcm" "$g/000.png" "$g/040.png" "$g/080.png" >/dev/null
"$cli" fit $common --sampler none --batch 1 -o "$tmp/none.pcm" "$g/000.png" "$g/040.png" >/dev/null
"$cli" update -m "$tmp/none.pcm" --batch 1 --no-progress "$g/080.png" >"$tmp/out" || fail "update none: $(cat "$tmp/out")"
grep -q "added 784 of 784 patches from 1 images (rule all)" "$tmp/out" || fail "update none said: $(cat "$tmp/out")"
"$cli" predict --json -m "$tmp/all.pcm" "$t1" "$t2" | sed 's/"path": "[^"]*"//; s/"ms": [0-9.]*//' >"$tmp/p_all"
"$cli" predict --json -m "$tmp/none.pcm" "$t1" "$t2" | sed 's/"path": "[^"]*"//; s/"ms": [0-9.]*//' >"$tmp/p_upd"
cmp -s "$tmp/p_all" "$tmp/p_upd" || fail "fit + update predicts unlike fit of all: $(cat "$tmp/p_all" "$tmp/p_upd")"
ls "$tmp" | grep -q -v -E '^(all|none)\.pcm$|^(out|err|p_all|p_upd)$' && fail "temporary files left: $(ls "$tmp")"

# ---- the greedy coreset continued ----
"$cli" fit $common -o "$tmp/a.pcm" "$g/000.png" "$g/040.png" >/dev/null
"$cli" info "$tmp/a.pcm" | grep -q "coverage: *every training patch within" || fail "info lacks the coverage radius"
"$cli" update -m "$tmp/a.pcm" -o "$tmp/same.pcm" --json --no-progress "$g/000.png" "$g/040.png" >"$tmp/same.json"
"$cli" update -m "$tmp/a.pcm" -o "$tmp/new.pcm" --json --no-progress "$g/120.png" "$g/160.png" >"$tmp/new.json"
"$PY" - "$tmp/same.json" "$tmp/new.json" <<'PYEOF' || fail "update --json"
import json, sys
same, new = (json.load(open(p)) for p in sys.argv[1:3])
assert same["rule"] == "radius" and same["added"] == 0 and same["images"] == 2 and same["patches"] == 2 * 784, same
assert same["radius_new"] <= same["radius_before"] * (1 + 1e-4), same
assert new["added"] > 0 and new["bank_size"] == same["bank_size"] + new["added"], (same, new)
assert new["radius_new"] <= new["radius_before"] * (1 + 1e-4) and new["thresholds_stale"] is False, new
PYEOF
"$cli" info "$tmp/new.pcm" | grep -q "from 4 images" || fail "info after update: $("$cli" info "$tmp/new.pcm")"

# ---- bad inputs ----
head -c 2000 "$g/200.png" >"$tmp/bad.png"
cp "$tmp/a.pcm" "$tmp/a_copy.pcm"
rc=0
"$cli" update -m "$tmp/a_copy.pcm" --rule ratio --no-progress "$tmp/bad.png" "$g/200.png" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -eq 3 ] && grep -q "skipped .*bad.png" "$tmp/err" && grep -q "added 78 of 784 patches from 1 images (rule ratio)" "$tmp/out" ||
    fail "one bad image: exit $rc, $(cat "$tmp/out" "$tmp/err")"
cp "$tmp/a.pcm" "$tmp/a_copy.pcm"
rc=0
"$cli" update -m "$tmp/a_copy.pcm" --no-progress "$tmp/bad.png" >"$tmp/out" 2>"$tmp/err" || rc=$?
[ $rc -eq 1 ] && grep -q "none of the 1 training images could be used" "$tmp/err" || fail "no usable image: exit $rc, $(cat "$tmp/err")"
cmp -s "$tmp/a.pcm" "$tmp/a_copy.pcm" || fail "a failed update changed the model file"
[ -z "$(find "$tmp" -name '*.tmp*')" ] || fail "temporary files left: $(ls "$tmp")"

# ---- thresholds ----
"$cli" calibrate -m "$tmp/a_copy.pcm" --no-progress "$g/100.png" "$g/110.png" "$g/130.png" >/dev/null
"$cli" update -m "$tmp/a_copy.pcm" --rule ratio --no-progress "$g/180.png" >/dev/null
"$cli" info "$tmp/a_copy.pcm" | grep -q "STALE" || fail "info does not flag stale thresholds"
"$cli" update -m "$tmp/a_copy.pcm" --rule ratio --no-progress --calibrate "$g/100.png" --calibrate "$g/110.png" \
    "$g/190.png" >"$tmp/out"
grep -q "recalibrated on 2 good images" "$tmp/out" || fail "update --calibrate: $(cat "$tmp/out")"
"$cli" info "$tmp/a_copy.pcm" | grep -q "STALE" && fail "recalibrated thresholds still flagged stale"

# ---- merge ----
"$cli" fit $common -o "$tmp/b.pcm" "$g/120.png" >/dev/null
"$cli" merge "$tmp/a.pcm" "$tmp/b.pcm" -o "$tmp/m.pcm" --json >"$tmp/m.json"
na=$("$cli" info "$tmp/a.pcm" | sed -n 's/.*memory bank: *\([0-9]*\) of.*/\1/p')
nb=$("$cli" info "$tmp/b.pcm" | sed -n 's/.*memory bank: *\([0-9]*\) of.*/\1/p')
"$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['bank_size']==$na+$nb and j['n_train_images']==3, j" \
    "$tmp/m.json" || fail "merge --json: $(cat "$tmp/m.json")"
"$cli" fit $common --layers 3 -o "$tmp/l3.pcm" "$g/120.png" >/dev/null
expect_rc 1 "number of layers differs" merge "$tmp/a.pcm" "$tmp/l3.pcm" -o "$tmp/bad_merge.pcm"
[ ! -e "$tmp/bad_merge.pcm" ] || fail "a refused merge wrote its output"
echo "PASS"
