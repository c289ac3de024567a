#!/bin/sh
# test_predict_cli.sh - `patchcore predict` end to end with the real ResNet-18 on MVTec bottle: a tiny
# model (4 train images, coreset 0.05) calibrated on 3 good test images, then predict on a good and a
# broken_large image with --json, --maps (npy, png16, tiff) and --overlays. Checked with numpy and PIL
# (/usr/bin/python3) as the independent readers:
#  - the three map files agree: npy == TIFF (PIL mode F) bit for bit; the 16-bit PNG (PIL) carries the
#    full scale 2 x pixel threshold in tEXt and |g / 65535 * F - v| <= F / 131070 (its rounding step);
#  - the overlay PNG has the original's size; where the map, upsampled with the mapping of
#    docs/visualisation.md, is far below the threshold (< T - 1.2 scale, colour index <= 21 < 26) and
#    outside the crop, pixels equal the original exactly; far above it (> T + 0.2 scale) they are heat
#    (red channel at least the blend of the original with the scale's lowest red at the threshold, 188)
#    or the cyan outline; cyan lies only where the map is > T; cyan on the defective image, none on the
#    good one when it has no region;
#  - regions in --json: broken_large has some, boxes inside 900 x 900, the first peak is the map's
#    maximum, areas add up to the number of map pixels > T; the good image has regions iff its max > T;
#  - --pixel-threshold overrides regions, overlay and png16 scale; an uncalibrated model refuses
#    --overlays with a message, and with --pixel-threshold uses scale T/2; --overlay-opacity 0 leaves
#    only outlines;
#  - a file that cannot be written (a directory in its place) fails that image (exit 3, the path named)
#    while the other is written; a DIR that cannot be created is exit 1; png16 maps and overlays in one
#    directory are refused (exit 2);
#  - calibrate --defective --masks under both mask rules: F1 thresholds equal a numpy sweep over the
#    predicted maps with PIL-made masks (== 255 / >= 128), the rules differ, the output names the rule;
#    --mask-rule without masks, or with a bad value, is exit 2.
# Environment (set by CTest): PC_CLI, PC_SHARED_DIR. Exit 77 (skip) without the data, weights or python.
set -eu
cli=${PC_CLI:?}
shared=${PC_SHARED_DIR:-/work/shared}
data=$shared/data/mvtec_ad/bottle
weights=$shared/weights/resnet18_in1k_to_layer3.pth
py=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -d "$data/train/good" ] && [ -f "$weights" ] || { echo "SKIP: no bottle data or ResNet-18 weights in $shared"; exit 77; }
[ -x "$py" ] && "$py" -c "import numpy, PIL" 2>/dev/null || { echo "SKIP: $py with numpy and PIL absent"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pc_predict.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT INT TERM
cd "$tmp"
good=$data/test/good/003.png
bad=$data/test/broken_large/000.png

"$cli" fit --weights "$weights" --coreset 0.05 --no-progress -o raw.pcm \
    "$data/train/good/000.png" "$data/train/good/001.png" "$data/train/good/002.png" "$data/train/good/003.png" \
    >fit.log 2>&1 || { cat fit.log >&2; fail "fit failed"; }
"$cli" calibrate -m raw.pcm --out cal.pcm --no-progress \
    "$data/test/good/000.png" "$data/test/good/001.png" "$data/test/good/002.png" >cal.log 2>&1 ||
    { cat cal.log >&2; fail "calibrate failed"; }
"$cli" info cal.pcm >info.txt || fail "info failed"
# "thresholds:      image A, pixel T, scale B, pixel scale P" (%.6g)
T6=$(sed -n 's/^thresholds: .* pixel \([^,]*\), .*/\1/p' info.txt)
P6=$(sed -n 's/^thresholds: .* pixel scale \(.*\)$/\1/p' info.txt)
[ -n "$T6" ] && [ -n "$P6" ] || fail "no pixel threshold / pixel scale in: $(cat info.txt)"

run() { # run NAME ARGS...: predict, stdout to NAME.out, stderr to NAME.err, exit code to NAME.rc
    name=$1
    shift
    rc=0
    "$cli" predict "$@" >"$name.out" 2>"$name.err" || rc=$?
    echo "$rc" >"$name.rc"
}
expect_rc() { # expect_rc NAME CODE
    [ "$(cat "$1.rc")" = "$2" ] || { cat "$1.err" >&2; fail "$1: exit $(cat "$1.rc"), expected $2"; }
}

run npy -m cal.pcm --json --maps maps_npy --overlays ov "$good" "$bad"
expect_rc npy 0
run png16 -m cal.pcm --json --maps maps_png --map-format png16 "$good" "$bad"
expect_rc png16 0
run tiff -m cal.pcm --json --maps maps_tif --map-format=tiff "$good" "$bad"
expect_rc tiff 0
run table -m cal.pcm "$good" "$bad"
expect_rc table 0
grep -q "^    regions: [1-9]" table.out || fail "the table shows no regions line for broken_large: $(cat table.out)"
# --pixel-threshold far above every value: no region, overlay = original, png16 full scale 2e6.
run high -m cal.pcm --json --pixel-threshold 1e6 --overlays ov_high --maps maps_high --map-format png16 "$good" "$bad"
expect_rc high 0
# Uncalibrated model: --overlays refused up front; with --pixel-threshold, scale T/2.
run uncal -m raw.pcm --overlays ov_uncal "$bad"
expect_rc uncal 1
grep -q "calibrate" uncal.err && grep -q -- "--pixel-threshold" uncal.err || fail "uncalibrated: unclear message: $(cat uncal.err)"
[ ! -s uncal.out ] || fail "uncalibrated --overlays printed results"
run uncalT -m raw.pcm --json --pixel-threshold 20 --overlays ov_uncalT --maps maps_uncalT "$bad"
expect_rc uncalT 0
run opa0 -m cal.pcm --json --overlay-opacity 0 --overlays ov_opa0 --maps maps_opa0 "$bad"
expect_rc opa0 0

"$py" - "$T6" "$P6" <<'PY' || fail "output checks (above)"
import json, sys
import numpy as np
from PIL import Image

T6, P6 = float(sys.argv[1]), float(sys.argv[2])
RESIZE, CROP = 256, 224  # fit's defaults
errors = []
def check(cond, msg):
    if not cond:
        errors.append(msg)

def lines(name):
    with open(name + ".out") as f:
        return [json.loads(l) for l in f if l.strip()]

def png16(path):
    with Image.open(path) as im:
        im.load()
        return np.asarray(im).astype(np.float64), float(im.text["patchcore:full_scale"])

def upsample(m, w, h):
    """docs/visualisation.md: original pixel centre -> crop coordinates (torchvision's Resize(256) +
    CenterCrop(224) geometry), bilinear with pixel centres at integers, clamped; NaN outside the crop."""
    s = m.shape[0]
    short = min(w, h)
    rw, rh = (RESIZE, int(RESIZE * h / w)) if w <= h else (int(RESIZE * w / h), RESIZE)
    cl, ct = round((rw - CROP) / 2), round((rh - CROP) / 2)
    sx = (np.arange(w) + 0.5) * rw / w - cl
    sy = (np.arange(h) + 0.5) * rh / h - ct
    def axis(c):
        inside = (c >= 0) & (c < s)
        u = np.clip(c - 0.5, 0, s - 1)
        i0 = np.minimum(np.floor(u).astype(int), s - 1)
        i1 = np.minimum(i0 + 1, s - 1)
        return inside, i0, i1, u - i0
    inx, x0, x1, fx = axis(sx)
    iny, y0, y1, fy = axis(sy)
    m = m.astype(np.float64)
    top = m[y0][:, x0] * (1 - fx) + m[y0][:, x1] * fx
    bot = m[y1][:, x0] * (1 - fx) + m[y1][:, x1] * fx
    v = top * (1 - fy[:, None]) + bot * fy[:, None]
    v[~(iny[:, None] & inx[None, :])] = np.nan
    return v

CYAN = np.array([0, 255, 255], np.uint8)

def check_overlay(tag, ov_path, img_path, m, T, scale, opacity, expect_cyan):
    orig = np.asarray(Image.open(img_path).convert("RGB"))
    ov = np.asarray(Image.open(ov_path))
    check(ov.shape == orig.shape, "%s: overlay %s has shape %s, the image %s" % (tag, ov_path, ov.shape, orig.shape))
    if ov.shape != orig.shape:
        return
    h, w = orig.shape[:2]
    v = upsample(m, w, h)
    same = np.all(ov == orig, axis=2)
    outside = np.isnan(v)
    check(same[outside].all(), "%s: %d pixels outside the crop differ from the original" % (tag, (~same[outside]).sum()))
    cold = ~outside & (v < T - 1.2 * scale)
    check(cold.sum() > 1000 or T > 1e5, "%s: only %d pixels far below the threshold" % (tag, cold.sum()))
    check(same[cold].all(), "%s: %d pixels far below the threshold differ from the original" % (tag, (~same[cold]).sum()))
    cyan = np.all(ov == CYAN, axis=2) & ~np.all(orig == CYAN, axis=2)
    check(np.all(v[cyan] > T - 1e-6 * abs(T)), "%s: cyan outside the region (min value %g, T %g)" % (tag, np.nanmin(v[cyan]) if cyan.any() else 0, T))
    if expect_cyan is not None:
        check(bool(cyan.any()) == expect_cyan, "%s: cyan outline %s, expected %s" % (tag, cyan.any(), expect_cyan))
    hot = ~outside & (v > T + 0.2 * scale) & ~cyan
    if opacity > 0:
        a = round(255 * opacity)
        # every colour at index >= 128 (the threshold) has red >= 188; the blend is integer, -1 for rounding
        low = (orig[..., 0].astype(np.int64) * (255 - a) + 188 * a) // 255 - 1
        check(np.all(ov[..., 0][hot] >= low[hot]), "%s: %d hot pixels not heat-coloured" % (tag, (ov[..., 0][hot] < low[hot]).sum()))
        check(not hot.any() or (~same[hot]).mean() > 0.99, "%s: hot pixels left unchanged" % tag)
    else:
        check(same[~cyan].all(), "%s: opacity 0 changed %d non-outline pixels" % (tag, (~same[~cyan]).sum()))
    return hot.sum(), cyan.sum()

npy, p16, tif = lines("npy"), lines("png16"), lines("tiff")
check(len(npy) == 2 and len(p16) == 2 and len(tif) == 2, "expected 2 JSON lines per run")
# The full scale (%.17g) gives the exact threshold; info printed it with 6 digits.
T = None
for a, b, c in zip(npy, p16, tif):
    check(a["score"] == b["score"] == c["score"], "%s: scores differ between runs" % a["path"])
    check(a["map"].startswith("maps_npy/") and a["map"].endswith(".npy"), "map path %s" % a["map"])
    check(b["map"].startswith("maps_png/") and b["map"].endswith(".png"), "map path %s" % b["map"])
    check(c["map"].startswith("maps_tif/") and c["map"].endswith(".tiff"), "map path %s" % c["map"])
    m = np.load(a["map"])
    check(m.dtype == np.float32 and m.shape == (CROP, CROP), "npy %s: %s %s" % (a["map"], m.dtype, m.shape))
    with Image.open(c["map"]) as im:
        im.load()
        check(im.mode == "F", "tiff mode %s" % im.mode)
        t = np.asarray(im)
    check(t.dtype == np.float32 and np.array_equal(t, m), "%s differs from %s" % (c["map"], a["map"]))
    g, F = png16(b["map"])
    T = F / 2
    check(abs(T - T6) <= 1e-5 * abs(T6), "png16 full scale %r is not 2 x the pixel threshold %g" % (F, T6))
    exp = np.clip(m.astype(np.float64), 0, F)
    err = np.abs(g / 65535 * F - exp).max()
    check(g.max() <= 65535 and err <= F / 131070 * (1 + 1e-9), "%s: error %g > step/2 %g" % (b["map"], err, F / 131070))
    print("%s: max %.4g, T %.4g, png16 max error %.3g (bound %.3g)" % (a["path"].split("/test/")[1], m.max(), T, err, F / 131070))

scale = P6
for a in npy:
    m = np.load(a["map"])
    is_bad = "broken_large" in a["path"]
    regions = a["regions"]
    check(a["n_regions"] == len(regions), "n_regions %d != %d listed" % (a["n_regions"], len(regions)))
    check((len(regions) > 0) == bool(m.max() > T), "%s: %d regions, map max %g, T %g" % (a["path"], len(regions), m.max(), T))
    if is_bad:
        check(len(regions) >= 1 and a["anomalous"] is True, "broken_large: no region / not anomalous: %s" % a)
    for r in regions:
        x0, y0, x1, y1 = r["box"]
        check(0 <= x0 < x1 <= 900 and 0 <= y0 < y1 <= 900, "box %s outside 900x900" % r["box"])
        check(r["peak"] > T and 0 < r["area"] <= CROP * CROP, "region %s" % r)
    if regions and a["n_regions"] <= 16:
        check(np.float32(regions[0]["peak"]) == m.max(), "first peak %r != map max %r" % (regions[0]["peak"], m.max()))
        check(sum(r["area"] for r in regions) == int((m > T).sum()), "region areas %d != %d pixels > T" % (sum(r["area"] for r in regions), (m > T).sum()))
    hot, cyan = check_overlay("overlay " + a["path"], a["overlay"], a["path"], m, T, scale, 0.6, True if is_bad else (False if not regions else None))
    print("%s: %d regions, %d hot pixels, %d cyan" % (a["overlay"], len(regions), hot, cyan))

for a in lines("high"):
    check(a["n_regions"] == 0, "--pixel-threshold 1e6 still gives regions")
    ov, orig = np.asarray(Image.open(a["overlay"])), np.asarray(Image.open(a["path"]).convert("RGB"))
    check(np.array_equal(ov, orig), "--pixel-threshold 1e6: the overlay is not the original")
    g, F = png16(a["map"])
    check(F == 2e6, "--pixel-threshold 1e6: png16 full scale %r" % F)

(a,) = lines("uncalT")
check("normalized" not in a and a["n_regions"] >= 1, "uncalibrated + --pixel-threshold 20: %s" % a)
m = np.load(a["map"])
check(sum(r["area"] for r in a["regions"]) == int((m > 20).sum()) or a["n_regions"] > 16, "regions not at --pixel-threshold 20")
check_overlay("uncalibrated, T 20, scale T/2", a["overlay"], a["path"], m, 20.0, 10.0, 0.6, True)
(a,) = lines("opa0")
check_overlay("opacity 0", a["overlay"], a["path"], np.load(a["map"]), T, scale, 0.0, True)

for e in errors:
    print("FAIL:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY

# A file that cannot be written: a directory where the good image's overlay goes. That image fails
# (exit 3, its path named), the defective one is still written and reported.
gname=$(sed -n '1s/.*"overlay": "ov\/\([^"]*\)".*/\1/p' npy.out)
[ -n "$gname" ] || fail "cannot read the overlay name from npy.out"
mkdir -p "blocked/$gname"
run blocked -m cal.pcm --json --overlays blocked "$good" "$bad"
expect_rc blocked 3
grep -q "blocked/$gname" blocked.err || fail "the write error does not name blocked/$gname: $(cat blocked.err)"
[ "$(wc -l <blocked.out)" -eq 1 ] && grep -q broken_large blocked.out || fail "the other image was not reported: $(cat blocked.out)"
[ -s "blocked/$(sed -n 's/.*"overlay": "blocked\/\([^"]*\)".*/\1/p' blocked.out)" ] || fail "the other overlay was not written"
if [ "$(id -u)" != 0 ]; then # root writes anywhere
    mkdir ro && chmod 555 ro
    run ro -m cal.pcm --json --overlays ro --maps ro "$good" "$bad"
    expect_rc ro 3
    grep -q "ro/" ro.err || fail "the read-only directory's error names no path: $(cat ro.err)"
fi
# A DIR that cannot be created: exit 1 up front, naming it.
: >afile
run nodir -m cal.pcm --overlays afile/sub "$good"
expect_rc nodir 1
grep -q "afile" nodir.err || fail "the mkdir error does not name the path: $(cat nodir.err)"
# png16 maps and overlays would share names in one directory.
run clash -m cal.pcm --maps same --map-format png16 --overlays same/. "$good"
expect_rc clash 2
# Flags that need another.
run orphan -m cal.pcm --map-format tiff "$good"
expect_rc orphan 2
run orphan2 -m cal.pcm --overlay-opacity 0.5 "$good"
expect_rc orphan2 2
run badfmt -m cal.pcm --maps x --map-format jpg "$good"
expect_rc badfmt 2
# calibrate from masks under both rules: F1-optimal thresholds over 3 good + 2 defective images. Oracle:
# the maps `predict --maps` writes for the same images with the same model, masks made by PIL (Resize 256
# bilinear + CenterCrop 224, then == 255 for full, >= 128 for half) and the F1 sweep written out here in
# numpy (docs/metrics.md: sklearn's thresholds `>= t`, the lowest reaching the maximum, moved halfway to
# the next lower map value for the `> t` rule); 1e-7 relative (printed with 9 digits).
mkdir defect gtm
ln -s "$bad" defect/bl000.png
ln -s "$data/ground_truth/broken_large/000_mask.png" gtm/bl000_mask.png
ln -s "$data/test/contamination/000.png" defect/co000.png
ln -s "$data/ground_truth/contamination/000_mask.png" gtm/co000_mask.png
cgood="$data/test/good/000.png $data/test/good/001.png $data/test/good/002.png"
"$cli" calibrate -m raw.pcm --out f1_full.pcm --no-progress --defective defect --masks gtm $cgood >f1_full.log 2>&1 ||
    { cat f1_full.log >&2; fail "calibrate --masks failed"; }
"$cli" calibrate -m raw.pcm --out f1_half.pcm --no-progress --defective defect --masks gtm --mask-rule half $cgood \
    >f1_half.log 2>&1 || { cat f1_half.log >&2; fail "calibrate --masks --mask-rule half failed"; }
grep -q "^mask rule full (" f1_full.log || fail "calibrate does not name the full rule: $(cat f1_full.log)"
grep -q "^mask rule half (" f1_half.log || fail "calibrate does not name the half rule: $(cat f1_half.log)"
"$cli" predict -m raw.pcm --json --maps maps_f1 $cgood defect/bl000.png defect/co000.png >f1_pred.out 2>f1_pred.err ||
    { cat f1_pred.err >&2; fail "predict for the F1 oracle failed"; }
"$py" - "$data" <<'PY' || fail "F1 calibration under the mask rules (above)"
import json, sys
import numpy as np
from PIL import Image

data = sys.argv[1]
def printed(log, key):
    for l in open(log):
        if l.startswith(key + " "):
            return float(l.split()[-1])
    raise SystemExit("no %r in %s" % (key, log))

preds = [json.loads(l) for l in open("f1_pred.out") if l.strip()]
maps = np.stack([np.load(p["map"]) for p in preds]).astype(np.float64)
scores = np.array([p["score"] for p in preds], np.float64)
gt = {"bl000": "broken_large/000_mask.png", "co000": "contamination/000_mask.png"}

def mask(p, rule):
    stem = p["path"].rsplit("/", 1)[-1][:-4]
    if stem not in gt:
        return np.zeros((224, 224), np.uint8)
    with Image.open("%s/ground_truth/%s" % (data, gt[stem])) as im:
        m = im.convert("L")
        assert m.size == (900, 900)
        v = np.asarray(m.resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240)))
    return (v == 255) if rule == "full" else (v >= 128)

def f1_threshold(s, y):
    s, y = s.ravel(), y.ravel().astype(bool)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[s[1:] != s[:-1], True]          # the end of each group of tied values
    tp = np.cumsum(y)[last]
    fp = np.cumsum(~y)[last]
    f1 = 2 * tp / (2 * tp + fp + (y.sum() - tp))
    vals = s[last]                               # decreasing
    best = np.flatnonzero(f1 == f1.max())[-1]    # the lowest threshold reaching the maximum
    return 0.5 * (vals[best + 1] + vals[best]) if best + 1 < len(vals) else np.nextafter(vals[best], -np.inf)

labels = np.array([p["path"].rsplit("/", 1)[-1][:-4] in gt for p in preds])
ti = f1_threshold(scores, labels)
got = {}
for rule in ("full", "half"):
    masks = np.stack([mask(p, rule) for p in preds])
    tp = f1_threshold(maps, masks)
    got[rule] = printed("f1_%s.log" % rule, "pixel threshold")
    print("F1 calibration, rule %s: pixel threshold %.9g, numpy %.9g (%d anomalous pixels)" % (rule, got[rule], tp, masks.sum()))
    assert abs(got[rule] - tp) <= 1e-7 * abs(tp), (rule, got[rule], tp)
    assert abs(printed("f1_%s.log" % rule, "image threshold") - ti) <= 1e-7 * abs(ti)
assert got["full"] != got["half"], "the rule did not change the pixel threshold"
PY
rc=0; "$cli" calibrate -m raw.pcm --out x.pcm --mask-rule half $cgood >/dev/null 2>rule_nomask.err || rc=$?
[ $rc = 2 ] && grep -q "only with --defective" rule_nomask.err || fail "calibrate --mask-rule without masks: exit $rc"
rc=0; "$cli" calibrate -m raw.pcm --out x.pcm --defective defect --masks gtm --mask-rule 255 $cgood >/dev/null 2>rule_bad.err || rc=$?
[ $rc = 2 ] && grep -q "full, half" rule_bad.err || fail "calibrate --mask-rule 255: exit $rc"
[ ! -e x.pcm ] || fail "a model was written after a bad command line"
echo "predict CLI OK"
