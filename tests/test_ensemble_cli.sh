#!/bin/sh
# test_ensemble_cli.sh - ensembles on the command line (docs/ensemble.md), with the real ResNet-18 on a
# few bottle images:
#  - usage errors (exit 2) for lists of different lengths, a bad layer group, an unknown architecture in
#    a list, an unknown --ensemble-norm;
#  - fit with per-member lists (crop 224 and 320, layers 2,3 and 3) writes one model: fit --json lists
#    both members with their statistics, info describes both;
#  - the same members fitted alone (bit for bit the ensemble's members: the fit is deterministic) give
#    raw scores and maps; from them, in numpy:
#      * the default rule: each ensemble `predict --json` score is the mean of the members' scores
#        z-scored by the statistics fit --json printed (1e-6 relative);
#      * the reference's rule: min-max over the test images, averaged (member 2's maps resized with
#        torch's F.interpolate), then sklearn's roc_auc_score for image and pixel AUROC, with masks made
#        as the reference makes them (PIL bilinear resize, centre crop, == 255): equal to what
#        `eval --ensemble-norm test-minmax --json` reports (1e-6), which also lists both members;
#  - calibrate stores thresholds in the ensemble file and predict then decides;
#  - a three-member ensemble with a DenseNet member (random weights from tests/ref/gen_densenet.py, old
#    tensor spelling): saved and loaded, info names dense blocks, the default rule holds against the
#    members fitted alone, eval runs under both rules, calibrate and predict decide;
#  - the Python binding loads it and says n_members = 2.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR, PC_SOURCE_DIR, PC_BUILD_DIR. Exit 77 when ../shared
# is absent.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
b=$shared/data/mvtec_ad/bottle
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_ensemble.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -f "$w" ] && [ -d "$b" ] || { echo "SKIP: ../shared absent (weights or bottle)"; exit 77; }

# a small training set and a small category: 3 good and 3 broken_large test images with masks
mkdir -p "$tmp/train" "$tmp/cat/test/good" "$tmp/cat/test/broken_large" "$tmp/cat/ground_truth/broken_large"
for i in 000 030 060 090 120; do ln -s "$b/train/good/$i.png" "$tmp/train/$i.png"; done
for i in 000 001 002; do
    ln -s "$b/test/good/$i.png" "$tmp/cat/test/good/$i.png"
    ln -s "$b/test/broken_large/$i.png" "$tmp/cat/test/broken_large/$i.png"
    ln -s "$b/ground_truth/broken_large/${i}_mask.png" "$tmp/cat/ground_truth/broken_large/${i}_mask.png"
done

expect_usage() { # expect_usage PHRASE ARGS...: exit 2 and PHRASE on stderr
    phrase=$1
    shift
    rc=0
    "$cli" "$@" >/dev/null 2>"$tmp/usage.err" || rc=$?
    [ $rc -eq 2 ] && grep -q -- "$phrase" "$tmp/usage.err" || fail "$*: exit $rc, $(cat "$tmp/usage.err")"
}
expect_usage "3 members, but another list names 2" fit --weights "$w,$w" --crop 224,320,256 -o "$tmp/x.pcm" "$tmp/train"
expect_usage "--layers (member 2)" fit --weights "$w,$w" --layers "2,3;9" -o "$tmp/x.pcm" "$tmp/train"
expect_usage "unknown architecture 'resnet19'" fit --backbone resnet18,resnet19 --weights "$w,$w" -o "$tmp/x.pcm" "$tmp/train"
expect_usage "not train-zscore or test-minmax" eval --ensemble-norm mean -m "$tmp/x.pcm" "$tmp/cat"
[ ! -e "$tmp/x.pcm" ] || fail "a usage error left a model file"
"$cli" fit --help | grep -q "comma-separated lists, one item per member" || fail "fit --help does not explain ensembles"
"$cli" eval --help | grep -q -- "--ensemble-norm" || fail "eval --help lacks --ensemble-norm"

# ---- the ensemble and its members alone ----
common="--weights $w --coreset-size 150 --no-progress"
"$cli" fit --weights "$w,$w" --coreset-size 150 --no-progress --resize 256,366 --crop 224,320 --layers "2,3;3" \
    --json -o "$tmp/ens.pcm" "$tmp/train" > "$tmp/fit.json" || fail "ensemble fit"
"$cli" fit $common -q -o "$tmp/m1.pcm" "$tmp/train" || fail "member 1 alone"
"$cli" fit $common -q --resize 366 --crop 320 --layers 3 -o "$tmp/m2.pcm" "$tmp/train" || fail "member 2 alone"
"$cli" info "$tmp/ens.pcm" > "$tmp/info.txt"
grep -q "ensemble:        2 members" "$tmp/info.txt" && grep -q "member 2:" "$tmp/info.txt" &&
    grep -q "resize 366, crop 320" "$tmp/info.txt" || fail "info: $(cat "$tmp/info.txt")"

for m in ens m1 m2; do
    "$cli" predict -m "$tmp/$m.pcm" --json --maps "$tmp/maps_$m" "$tmp/cat/test" > "$tmp/pred_$m.json" ||
        fail "predict $m"
done
"$cli" eval -m "$tmp/ens.pcm" --ensemble-norm test-minmax --no-progress --json "$tmp/mm.json" "$tmp/cat" > /dev/null ||
    fail "eval test-minmax"

$PY - "$tmp" <<'PYEOF' || fail "numpy/sklearn oracle"
import glob, json, os, sys
import numpy as np
import torch, torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_auc_score
t = sys.argv[1]
fit = json.load(open(t + "/fit.json"))
assert len(fit["members"]) == 2, fit
z = [m["norm"] for m in fit["members"]]
def preds(name):
    return {os.path.relpath(r["path"], t + "/cat/test"): r for r in map(json.loads, open(t + "/pred_%s.json" % name))}
ens, m1, m2 = preds("ens"), preds("m1"), preds("m2")
keys = sorted(ens)
assert len(keys) == 6 and sorted(m1) == keys and sorted(m2) == keys
# the default rule, from the members' raw scores
for k in keys:
    want = ((m1[k]["score"] - z[0][0]) / z[0][1] + (m2[k]["score"] - z[1][0]) / z[1][1]) / 2
    got = ens[k]["score"]
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (k, got, want)
# the reference's rule on the members' raw outputs
def maps(name, k):
    return np.load({"m1": m1, "m2": m2}[name][k]["map"])  # predict --json names each map file
s1 = np.array([m1[k]["score"] for k in keys], np.float32)
s2 = np.array([m2[k]["score"] for k in keys], np.float32)
g1 = np.stack([maps("m1", k) for k in keys]).astype(np.float32)
g2 = np.stack([maps("m2", k) for k in keys]).astype(np.float32)
assert g1.shape == (6, 224, 224) and g2.shape == (6, 320, 320), (g1.shape, g2.shape)
norm = lambda x: (x - x.min()) / (x.max() - x.min())
scores = np.mean(np.stack([norm(s1), norm(s2)]), axis=0)
g2r = F.interpolate(torch.from_numpy(norm(g2))[:, None], size=(224, 224), mode="bilinear", align_corners=False)[:, 0].numpy()
segs = np.mean(np.stack([norm(g1), g2r]), axis=0)
labels = np.array([0 if k.startswith("good/") else 1 for k in keys])
def mask(k):
    if k.startswith("good/"):
        return np.zeros((224, 224), bool)
    m = Image.open(t + "/cat/ground_truth/" + k.replace(".png", "_mask.png")).convert("L")
    w, h = m.size
    s = 256 / min(w, h)
    m = m.resize((int(round(w * s)), int(round(h * s))) if w != h else (256, 256), Image.BILINEAR)
    W, H = m.size
    l, tp = int(round((W - 224) / 2.0)), int(round((H - 224) / 2.0))
    return np.asarray(m.crop((l, tp, l + 224, tp + 224))) == 255
masks = np.stack([mask(k) for k in keys])
img_auroc = roc_auc_score(labels, scores)
pix_auroc = roc_auc_score(masks.ravel().astype(int), segs.ravel())
mm = json.load(open(t + "/mm.json"))
assert mm["ensemble_norm"] == "test-minmax" and len(mm["members"]) == 2, mm
assert abs(mm["image_auroc"] - img_auroc) <= 1e-6, (mm["image_auroc"], img_auroc)
assert abs(mm["pixel_auroc"] - pix_auroc) <= 1e-6, (mm["pixel_auroc"], pix_auroc)
print("oracle: image AUROC %.6f, pixel AUROC %.6f" % (img_auroc, pix_auroc))
PYEOF

# ---- calibrate and decide ----
"$cli" calibrate -m "$tmp/ens.pcm" --no-progress "$b/train/good/200.png" "$b/train/good/201.png" "$b/train/good/202.png" \
    > /dev/null || fail "calibrate"
"$cli" info "$tmp/ens.pcm" | grep -q "thresholds:      image" || fail "no thresholds after calibrate"
"$cli" predict -m "$tmp/ens.pcm" --json "$tmp/cat/test/broken_large/000.png" | grep -q '"anomalous"' ||
    fail "predict after calibrate does not decide"

# ---- three members, one a DenseNet (random-initialised densenet121 from tests/ref/gen_densenet.py, in
# the old `norm.1` spelling), as the paper's ensemble has: ResNet-18 at 224, the DenseNet at 224 (it
# reuses the first member's preprocessed input), ResNet-18 at 320. Its tensors survive the model file,
# info names dense blocks, the combination holds against the three members fitted alone, and the
# one file evaluates under both rules and calibrates ----
dn=${PC_REF_DIR:-}/densenet/densenet121_old.pth
if [ -f "$dn" ]; then
    "$cli" fit --backbone resnet18,densenet121,resnet18 --weights "$w,$dn,$w" \
        --layers "layer2,layer3;denseblock2,denseblock3;layer2,layer3" --resize 256,256,366 --crop 224,224,320 \
        --coreset-size 100 --no-progress --json -o "$tmp/mix.pcm" "$tmp/train" > "$tmp/mix.json" || fail "fit 3 members"
    "$cli" fit --weights "$w" --coreset-size 100 -q -o "$tmp/r18.pcm" "$tmp/train" || fail "fit resnet18 alone"
    "$cli" fit --backbone densenet121 --weights "$dn" --layers denseblock2,denseblock3 --coreset-size 100 -q \
        -o "$tmp/dn.pcm" "$tmp/train" || fail "fit densenet121 alone"
    "$cli" fit --weights "$w" --coreset-size 100 --resize 366 --crop 320 -q -o "$tmp/r18b.pcm" "$tmp/train" ||
        fail "fit resnet18 at 320 alone"
    "$cli" info "$tmp/mix.pcm" > "$tmp/mix_info.txt"
    grep -q "ensemble:        3 members" "$tmp/mix_info.txt" &&
        grep -q "layers:          denseblock2 denseblock3" "$tmp/mix_info.txt" || fail "info: $(cat "$tmp/mix_info.txt")"
    for m in mix r18 dn r18b; do
        "$cli" predict -m "$tmp/$m.pcm" --json "$tmp/cat/test" > "$tmp/pm_$m.json" 2>/dev/null || fail "predict $m"
    done
    $PY - "$tmp" <<'PYEOF' || fail "three members: combination"
import json, sys
t = sys.argv[1]
z = [m["norm"] for m in json.load(open(t + "/mix.json"))["members"]]
assert len(z) == 3
load = lambda n: {r["path"]: r["score"] for r in map(json.loads, open(t + "/pm_%s.json" % n))}
mix, alone = load("mix"), [load("r18"), load("dn"), load("r18b")]
assert len(mix) == 6
for k, got in mix.items():
    want = sum((a[k] - zi[0]) / zi[1] for a, zi in zip(alone, z)) / 3
    assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (k, got, want)
print("three members: ok")
PYEOF
    for rule in train-zscore test-minmax; do
        "$cli" eval -m "$tmp/mix.pcm" --ensemble-norm $rule --no-progress --json "$tmp/mix_$rule.json" "$tmp/cat" \
            > /dev/null || fail "eval 3 members, $rule"
    done
    $PY -c "import json,sys; r=json.load(open(sys.argv[1])); assert len(r['members']) == 3 and 0 <= r['pixel_auroc'] <= 1, r" \
        "$tmp/mix_test-minmax.json" || fail "eval 3 members: members' metrics"
    "$cli" calibrate -m "$tmp/mix.pcm" --no-progress "$b/train/good/200.png" "$b/train/good/201.png" \
        "$b/train/good/202.png" > /dev/null || fail "calibrate 3 members"
    "$cli" predict -m "$tmp/mix.pcm" --json "$tmp/cat/test/good/000.png" | grep -q '"anomalous"' ||
        fail "3 members: predict after calibrate does not decide"
else
    echo "note: $dn absent (make refs): the three-member ensemble with a DenseNet is not checked"
fi

# ---- the Python binding ----
# (a sanitizer build's library needs the sanitizer runtimes preloaded into the interpreter)
lib=$(ls "${PC_BUILD_DIR:?}"/libpatchcore.so.0 2>/dev/null || true)
pre=
if grep -q '^PC_SANITIZE:BOOL=ON' "$PC_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
    pre="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
fi
if [ -n "$lib" ]; then
    LD_PRELOAD=$pre ASAN_OPTIONS=detect_leaks=0 PATCHCORE_LIBRARY=$lib PYTHONPATH="${PC_SOURCE_DIR:?}/python" $PY -c "
import sys, patchcore
m = patchcore.Model.load(sys.argv[1])
assert m.info.n_members == 2 and m.info.crop == 224, m.info
r = m.predict(sys.argv[2])
assert r.map.shape == (224, 224)
print('binding: n_members', m.info.n_members, 'score', r.score)
" "$tmp/ens.pcm" "$b/test/broken_large/000.png" || fail "Python binding"
fi
echo "test_ensemble_cli: ok"
