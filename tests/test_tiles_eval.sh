#!/bin/sh
# test_tiles_eval.sh - a tiled model through every consumer of maps (docs/tiles.md, docs/evaluation.md),
# with the real ResNet-18 on bottle images at full resolution (900 x 900, tile 160 at scale 0.25: four
# tiles per image, maps of 900 x 900), one test image cropped to 900 x 700 (and its mask) so that sizes
# differ:
#  - predict --maps writes (H, W) float32 maps, one per image at the image's size, whose maximum is the
#    score; once calibrated, --overlays writes an image of the original size and the regions lie inside;
#  - eval --json: image AUROC from predict's scores and pixel AUROC from predict's maps against the
#    full-resolution masks (value 255 = anomalous, the default rule), both by sklearn's roc_auc_score on
#    the concatenated pixels, within 1e-6; eval --jobs 2 gives the same metrics within 1e-6 (its images
#    run on one thread each, which may change the maps' last bits);
#  - calibrate with --defective and --masks (F1) runs on the tiled maps and predict then decides.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR. Exit 77 when ../shared is absent.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-}
PY=${PYTHON:-/usr/bin/python3}
w=$shared/weights/resnet18_in1k_to_layer3.safetensors
b=$shared/data/mvtec_ad/bottle
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_tileseval.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
[ -f "$w" ] && [ -d "$b" ] || { echo "SKIP: ../shared absent (weights or bottle)"; exit 77; }
"$PY" -c 'import numpy, sklearn, PIL' 2>/dev/null || { echo "SKIP: $PY lacks numpy/sklearn/PIL"; exit 77; }

c=$tmp/cat
mkdir -p "$c/test/good" "$c/test/broken_large" "$c/ground_truth/broken_large"
for i in 000 001; do
    ln -s "$b/test/good/$i.png" "$c/test/good/$i.png"
    ln -s "$b/test/broken_large/$i.png" "$c/test/broken_large/$i.png"
    ln -s "$b/ground_truth/broken_large/${i}_mask.png" "$c/ground_truth/broken_large/${i}_mask.png"
done
# a 900 x 700 defective image and its mask (the same crop)
"$PY" - "$b" "$c" <<'PYEOF'
import sys
from PIL import Image
b, c = sys.argv[1:3]
Image.open(b + "/test/broken_large/002.png").crop((0, 100, 900, 800)).save(c + "/test/broken_large/002.png")
Image.open(b + "/ground_truth/broken_large/002_mask.png").crop((0, 100, 900, 800)).save(
    c + "/ground_truth/broken_large/002_mask.png")
PYEOF

"$cli" fit --weights "$w" --tile 160 --tile-scale 0.25 --coreset-size 500 --no-progress -o "$tmp/t.pcm" \
    "$b/train/good/000.png" "$b/train/good/050.png" "$b/train/good/100.png" >/dev/null || fail "tiled fit"
"$cli" predict -m "$tmp/t.pcm" --json --maps "$tmp/maps" "$c/test" >"$tmp/pred.jsonl" ||
    fail "predict --maps on a tiled model"
"$cli" eval -m "$tmp/t.pcm" --no-progress --json "$tmp/e1.json" "$c" >/dev/null || fail "eval of a tiled model"
"$cli" eval -m "$tmp/t.pcm" --no-progress --jobs 2 --json "$tmp/e2.json" "$c" >/dev/null || fail "eval --jobs 2"
"$PY" - "$tmp" "$c" <<'PYEOF' || fail "tiled maps and eval against sklearn"
import glob, json, os, sys
import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score
tmp, c = sys.argv[1:3]
preds = [json.loads(l) for l in open(tmp + "/pred.jsonl")]
assert len(preds) == 5, preds
scores, labels, pix, gt = [], [], [], []
for p in preds:
    path = p["path"]
    img = Image.open(path)
    m = np.load(p["map"])
    assert m.dtype == np.float32 and m.shape == (img.height, img.width), (path, m.shape, img.size)
    assert abs(float(m.max()) - p["score"]) <= 1e-5 * abs(p["score"]), (path, m.max(), p["score"])
    defect = "/broken_large/" in path
    scores.append(p["score"]); labels.append(int(defect))
    if defect:
        stem = os.path.splitext(os.path.basename(path))[0]
        mask = np.asarray(Image.open("%s/ground_truth/broken_large/%s_mask.png" % (c, stem)).convert("L"))
        g = (mask == 255)
    else:
        g = np.zeros(m.shape, bool)
    assert g.shape == m.shape
    pix.append(m.ravel()); gt.append(g.ravel())
img_auc = roc_auc_score(labels, scores)
pix_auc = roc_auc_score(np.concatenate(gt), np.concatenate(pix))
e1, e2 = (json.load(open(tmp + f)) for f in ("/e1.json", "/e2.json"))
print("image AUROC %.6f (eval %.6f), pixel AUROC %.6f (eval %.6f)" % (img_auc, e1["image_auroc"], pix_auc, e1["pixel_auroc"]))
assert abs(e1["image_auroc"] - img_auc) <= 1e-6 and abs(e1["pixel_auroc"] - pix_auc) <= 1e-6, (e1, img_auc, pix_auc)
e1.pop("seconds", None); e2.pop("seconds", None)
# two jobs run each image on one thread instead of two: the maps may differ in their last bits
# (OpenBLAS rounds a team's SGEMM unlike one thread's), so the metrics agree to 1e-6, not bit for bit
for k in ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"):
    assert abs(e1[k] - e2[k]) <= 1e-6, (k, e1[k], e2[k])
PYEOF
# F1 calibration on the tiled maps, then decisions and regions inside the image
"$cli" calibrate -m "$tmp/t.pcm" --no-progress --defective "$c/test/broken_large" --masks "$c/ground_truth/broken_large" \
    "$c/test/good" >"$tmp/cal.txt" || fail "calibrate --defective on a tiled model: $(cat "$tmp/cal.txt")"
"$cli" predict -m "$tmp/t.pcm" --json --overlays "$tmp/ov" "$c/test/broken_large/002.png" >"$tmp/p.json"
"$PY" - "$tmp/p.json" <<'PYEOF' || fail "calibrated tiled predict: $(cat "$tmp/p.json")"
import json, sys
from PIL import Image
p = json.loads(open(sys.argv[1]).readline())
assert p["anomalous"] is True and p["regions"], p
assert Image.open(p["overlay"]).size == (900, 700), p
for r in p["regions"]:
    x0, y0, x1, y1 = r["box"]
    assert 0 <= x0 < x1 <= 900 and 0 <= y0 < y1 <= 700, r
PYEOF
echo "PASS"
