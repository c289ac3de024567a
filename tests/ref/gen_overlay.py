"""Oracle for tests/test_overlay.c: overlays computed with numpy/scipy from the formulas documented in
include/patchcore.h ("Visualisation") and docs/visualisation.md, written from the documentation and
not from src/overlay.c.

Run as: /usr/bin/python3 tests/ref/gen_overlay.py OUTDIR. Writes into OUTDIR only:
  NAME_rgb.npy       the original image (H, W, 3) uint8
  NAME_map.npy       an anomaly map on the crop (S, S) float32
  NAME_overlay.npy   the expected overlay (H, W, 3) uint8
  NAME_png16.npy     the expected 16-bit samples of pc_map_write_png16(map, full_scale) (S, S) uint16
  NAME_boxes.npy     boxes on the crop grid (K, 4) int32 x0 y0 x1 y1 (half-open) and
  NAME_boxes_orig.npy  the original pixels whose centres land in each (K, 4) int32
  NAME_points.npy    crop pixels (K, 2) int32 and NAME_points_orig.npy the original pixel under each
  lut.npy            the colour scale (256, 3) uint8
  manifest.txt       one line per case:
                     NAME W H R S THRESHOLD SCALE OPACITY OUTLINE_W FULL_SCALE RW RH LEFT TOP
                     (RW..TOP: torchvision's Resize/CenterCrop geometry, worked out here)
Maps that are not crop x crop squares (a tiled prediction's map has the image's size, with an
identity geometry), cases written after the ones above with their own random generator so that those
stay as they were:
  rect_NAME_{rgb,map,overlay,boxes,boxes_orig,points,points_orig}.npy   as above, the map (MH, MW)
  rect_NAME_regions.npy  the map's regions above THRESHOLD (K, 8) int32: x0 y0 x1 y1 (in original
                     pixels: (x + LEFT) * W / RW, floor of the start and ceil of the end, clamped), area,
                     peak_x, peak_y (map coordinates), label order; sorted by decreasing peak, ties by
                     the first pixel in raster order; rect_NAME_peaks.npy their peaks (K,) float32
  manifest_rect.txt  NAME W H RW RH LEFT TOP CROP MW MH THRESHOLD SCALE OPACITY OUTLINE_W
                     (the geometry given as such: map MW x MH covering resized pixels [LEFT, LEFT + MW)
                     x [TOP, TOP + MH), one map pixel per resized pixel)
"""
import math
import os
import sys

import numpy as np
from scipy import ndimage

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = common.outdir()
rng = np.random.default_rng(6)
LN9 = 2.1972245773362196
assert LN9 == math.log(9.0)

# ---- the colour scale, from the documented control points and integer interpolation ----
POINTS = [(0, (0, 0, 4)), (64, (87, 16, 110)), (128, (188, 55, 84)), (192, (249, 142, 9)), (255, (252, 255, 164))]
LUT = np.zeros((256, 3), np.uint8)
for (i0, c0), (i1, c1) in zip(POINTS[:-1], POINTS[1:]):
    for i in range(i0, i1 + 1):
        for c in range(3):
            LUT[i, c] = (c0[c] * (i1 - i) + c1[c] * (i - i0) + (i1 - i0) // 2) // (i1 - i0)
ALPHA_LO, ALPHA_HI = 26, 128


def geometry(w, h, r, s):
    """torchvision 0.14 Resize(r) (short side -> r, long -> int(r * long / short)) + CenterCrop(s)."""
    if w <= h:
        rw, rh = r, int(r * h / w)
    else:
        rw, rh = int(r * w / h), r
    left = int(round((rw - s) / 2.0))
    top = int(round((rh - s) / 2.0))
    return rw, rh, left, top


def taps(n, nr, off, s):
    x = np.arange(n, dtype=np.float64)
    pos = (x + 0.5) * nr / n - off
    inside = (pos >= 0) & (pos < s)
    f = np.clip(pos - 0.5, 0, s - 1)
    j0 = np.floor(f).astype(np.int64)
    j1 = np.minimum(j0 + 1, s - 1)
    return j0, j1, f - j0, inside


def overlay_rect(img, m, rw, rh, left, top, thr, scale, opacity, ow, outline=(0, 255, 255)):
    """overlay() with the map's own extent per axis: columns sample [0, MW), rows [0, MH)."""
    h, w = img.shape[:2]
    mh, mw = m.shape
    x0, x1, wx, inx = taps(w, rw, left, mw)
    y0, y1, wy, iny = taps(h, rh, top, mh)
    md = m.astype(np.float64)
    WX, WY = wx[None, :], wy[:, None]
    topv = (1.0 - WX) * md[y0][:, x0] + WX * md[y0][:, x1]
    botv = (1.0 - WX) * md[y1][:, x0] + WX * md[y1][:, x1]
    v = (1.0 - WY) * topv + WY * botv
    inside_map = iny[:, None] & inx[None, :]
    t = (v - thr) / scale
    p = 1.0 / (1.0 + np.exp(-LN9 * t))
    idx = np.clip(np.floor(p * 256.0), 0, 255).astype(np.int64)
    amax = int(math.floor(opacity * 255.0 + 0.5))
    alpha_tab = np.array([0 if i < ALPHA_LO else amax if i >= ALPHA_HI else amax * (i - ALPHA_LO) // (ALPHA_HI - ALPHA_LO)
                          for i in range(256)], np.int64)
    a = np.where(inside_map, alpha_tab[idx], 0)[..., None]
    col = LUT[idx].astype(np.int64)
    out = ((img.astype(np.int64) * (255 - a) + col * a + 127) // 255).astype(np.uint8)
    if ow == 0:
        ow = max(1, (min(w, h) + 150) // 300)
    if ow > 0:
        region = inside_map & (v > thr)
        eroded = ndimage.binary_erosion(region, structure=np.ones((2 * ow + 1, 2 * ow + 1), bool), border_value=0)
        out[region & ~eroded] = outline
    return out


def overlay(img, m, r, s, thr, scale, opacity, ow, outline=(0, 255, 255)):
    h, w = img.shape[:2]
    rw, rh, left, top = geometry(w, h, r, s)
    return overlay_rect(img, m, rw, rh, left, top, thr, scale, opacity, ow, outline), (rw, rh, left, top)


def make_image(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = [np.clip(128 + 90 * np.sin(x / (7.0 + 3 * c)) * np.cos(y / (11.0 - c)) + 20 * rng.standard_normal((h, w)), 0, 255)
              for c in range(3)]
    return np.rint(np.stack(planes, -1)).astype(np.uint8)


def make_map(s, thr, scale):
    """Smooth nominal background around thr - scale, blobs well above thr, one plateau exactly at thr."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float64)
    m = (thr - scale) + 0.6 * scale * np.sin(x / (s / 7.0)) * np.cos(y / (s / 5.0))
    for _ in range(3):
        cy, cx = rng.uniform(0, s, 2)
        rad = rng.uniform(s / 20, s / 6)
        m += rng.uniform(1.5, 4.0) * scale * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rad ** 2))
    m[: s // 8, : s // 8] = thr  # exactly at the threshold: not inside a region (strict >)
    m[-1, :] += 5 * scale        # a region touching the crop's edge
    return m.astype(np.float32)


def boxes_to_original(boxes, w, h, rw, rh, left, top):
    """Original pixels x with x0 <= (x + 0.5) * rw / w - left < x1 (searchsorted over all centres);
    when none, the pixel under the box centre."""
    out = np.zeros_like(boxes)
    for axis, (n, nr, off) in enumerate([(w, rw, left), (h, rh, top)]):
        centres = (np.arange(n, dtype=np.float64) + 0.5) * nr / n - off
        for k, b in enumerate(boxes):
            lo = np.searchsorted(centres, b[axis], "left")
            hi = np.searchsorted(centres, b[axis + 2], "left")
            if hi <= lo:
                c = 0.5 * (float(b[axis]) + float(b[axis + 2]))
                lo = min(max(int(np.floor((c + off) * n / nr)), 0), n - 1)
                hi = lo + 1
            out[k, axis], out[k, axis + 2] = lo, hi
    return out


def points_to_original(pts, w, h, rw, rh, left, top):
    x = np.clip(np.floor((pts[:, 0] + 0.5 + left) * w / rw), 0, w - 1)
    y = np.clip(np.floor((pts[:, 1] + 0.5 + top) * h / rh), 0, h - 1)
    return np.stack([x, y], 1).astype(np.int32)


def make_boxes(s):
    fixed = [[0, 0, s, s], [0, 0, 1, 1], [s - 1, s - 1, s, s], [s // 2, s // 3, s // 2 + 1, s // 3 + 1]]
    rand = []
    for _ in range(60):
        x0, x1 = sorted(rng.choice(s + 1, 2, replace=False))
        y0, y1 = sorted(rng.choice(s + 1, 2, replace=False))
        rand.append([x0, y0, x1, y1])
    for _ in range(20):  # single crop pixels: smaller than an original pixel when upscaling
        x, y = rng.integers(0, s, 2)
        rand.append([x, y, x + 1, y + 1])
    return np.array(fixed + rand, np.int32)


# NAME, W, H, R, S, threshold, scale, opacity, outline width
CASES = [
    ("land", 150, 100, 64, 56, 2.0, 0.5, 0.6, 0),
    ("port", 77, 131, 40, 32, 0.75, 0.125, 1.0, 2),
    ("pad", 60, 50, 30, 40, 3.5, 1.0, 0.35, 1),
    ("up", 40, 30, 128, 112, 1.0, 0.3, 0.6, -1),
    ("bottle", 900, 900, 256, 224, 2.4, 0.8, 0.6, 0),
]
lines = []
for name, w, h, r, s, thr, scale, op, ow in CASES:
    img = make_image(h, w)
    m = make_map(s, thr, scale)
    exp, (rw, rh, left, top) = overlay(img, m, r, s, thr, scale, op, ow)
    fs = 2.0 * thr
    g = np.clip(np.floor(m.astype(np.float64) / fs * 65535.0 + 0.5), 0, 65535).astype(np.uint16)
    common.save(OUT, name + "_rgb.npy", img)
    common.save(OUT, name + "_map.npy", m)
    common.save(OUT, name + "_overlay.npy", exp)
    common.save(OUT, name + "_png16.npy", g)
    boxes = make_boxes(s)
    common.save(OUT, name + "_boxes.npy", boxes)
    common.save(OUT, name + "_boxes_orig.npy", boxes_to_original(boxes, w, h, rw, rh, left, top).astype(np.int32))
    pts = np.concatenate([np.array([[0, 0], [s - 1, s - 1], [0, s - 1]]), rng.integers(0, s, (40, 2))]).astype(np.int32)
    common.save(OUT, name + "_points.npy", pts)
    common.save(OUT, name + "_points_orig.npy", points_to_original(pts, w, h, rw, rh, left, top))
    lines.append("%s %d %d %d %d %.17g %.17g %.17g %d %.17g %d %d %d %d" % (name, w, h, r, s, thr, scale, op, ow, fs,
                                                                           rw, rh, left, top))
common.save(OUT, "lut.npy", LUT)
with open(os.path.join(OUT, "manifest.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")


# ---- maps that are not crop x crop squares -------------------------------------------------------
rng2 = np.random.default_rng(15)


def make_map_rect(mh, mw, thr, scale):
    y, x = np.mgrid[0:mh, 0:mw].astype(np.float64)
    m = (thr - scale) + 0.6 * scale * np.sin(x / (mw / 7.0)) * np.cos(y / (mh / 5.0))
    for _ in range(3):
        cy, cx = rng2.uniform(0, mh), rng2.uniform(0, mw)
        rad = rng2.uniform(min(mh, mw) / 12, min(mh, mw) / 5)
        m += rng2.uniform(1.5, 4.0) * scale * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rad ** 2))
    m[: mh // 8, : mw // 8] = thr  # exactly at the threshold: not in a region
    m[-1, :] += 5 * scale          # a region along the bottom edge
    return m.astype(np.float32)


def make_boxes_rect(mw, mh):
    fixed = [[0, 0, mw, mh], [0, 0, 1, 1], [mw - 1, mh - 1, mw, mh], [mw // 2, mh // 3, mw // 2 + 1, mh // 3 + 1]]
    rand = []
    for _ in range(40):
        x0, x1 = sorted(rng2.choice(mw + 1, 2, replace=False))
        y0, y1 = sorted(rng2.choice(mh + 1, 2, replace=False))
        rand.append([x0, y0, x1, y1])
    return np.array(fixed + rand, np.int32)


def regions_rect(m, thr, w, h, rw, rh, left, top):
    """8-connected components of m > thr (scipy), described and sorted as the header documents."""
    lab, nc = ndimage.label(m.astype(np.float64) > thr, structure=np.ones((3, 3), bool))
    rows, peaks = [], []
    for c in range(1, nc + 1):
        ys, xs = np.nonzero(lab == c)          # raster order
        vals = m[ys, xs]
        k = int(np.argmax(vals))               # the first maximum in raster order
        bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        ox0 = min(max(math.floor((bx0 + left) * w / rw), 0), w)
        ox1 = min(max(math.ceil((bx1 + left) * w / rw), 0), w)
        oy0 = min(max(math.floor((by0 + top) * h / rh), 0), h)
        oy1 = min(max(math.ceil((by1 + top) * h / rh), 0), h)
        rows.append([ox0, oy0, ox1, oy1, len(xs), xs[k], ys[k], c])
        peaks.append(vals[k])
    order = sorted(range(nc), key=lambda i: (-float(peaks[i]), rows[i][7]))
    return (np.array([rows[i] for i in order], np.int32).reshape(-1, 8),
            np.array([peaks[i] for i in order], np.float32))


# NAME, W, H, RW, RH, LEFT, TOP, CROP, MW, MH, threshold, scale, opacity, outline width
RECT_CASES = [
    ("tile37x23", 37, 23, 37, 23, 0, 0, 16, 37, 23, 1.5, 0.4, 0.6, 1),   # identity: a tiled map
    ("tile301x190", 301, 190, 301, 190, 0, 0, 64, 301, 190, 2.0, 0.5, 0.6, 0),
    ("half80x60", 80, 60, 40, 30, 0, 0, 16, 40, 30, 1.0, 0.25, 0.8, 2),  # a map of the image at half scale
    ("square", 90, 70, 61, 48, 10, 4, 40, 40, 40, 2.0, 0.5, 0.6, 1),     # an ordinary crop, non-identity
]
rect_lines = []
for name, w, h, rw, rh, left, top, crop, mw, mh, thr, scale, op, ow in RECT_CASES:
    img = make_image(h, w)
    m = make_map_rect(mh, mw, thr, scale)
    exp = overlay_rect(img, m, rw, rh, left, top, thr, scale, op, ow)
    nm = "rect_" + name
    common.save(OUT, nm + "_rgb.npy", img)
    common.save(OUT, nm + "_map.npy", m)
    common.save(OUT, nm + "_overlay.npy", exp)
    boxes = make_boxes_rect(mw, mh)
    common.save(OUT, nm + "_boxes.npy", boxes)
    common.save(OUT, nm + "_boxes_orig.npy", boxes_to_original(boxes, w, h, rw, rh, left, top).astype(np.int32))
    pts = np.concatenate([np.array([[0, 0], [mw - 1, mh - 1], [0, mh - 1], [mw - 1, 0]]),
                          np.stack([rng2.integers(0, mw, 30), rng2.integers(0, mh, 30)], 1)]).astype(np.int32)
    common.save(OUT, nm + "_points.npy", pts)
    common.save(OUT, nm + "_points_orig.npy", points_to_original(pts, w, h, rw, rh, left, top))
    regs, peaks = regions_rect(m, thr, w, h, rw, rh, left, top)
    assert len(regs) >= 1, name
    common.save(OUT, nm + "_regions.npy", regs)
    common.save(OUT, nm + "_peaks.npy", peaks)
    rect_lines.append("%s %d %d %d %d %d %d %d %d %d %.17g %.17g %.17g %d" % (name, w, h, rw, rh, left, top, crop, mw,
                                                                             mh, thr, scale, op, ow))
with open(os.path.join(OUT, "manifest_rect.txt"), "w") as f:
    f.write("\n".join(rect_lines) + "\n")
