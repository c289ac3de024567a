"""Checks of the HTML reports for tests/test_report.sh, against independent values.

usage: report_check.py static REPORT.html KIND N            the file as written (KIND eval|predict)
       report_check.py dom DUMP.html N                       chromium's DOM after the page ran (#selftest)
       report_check.py pixel REPORT.html CATEGORY MAPS.json [RULE]
                                                             the pixel ROC and AUROC against sklearn on the
                                                             maps `predict --json --maps DIR` wrote (its
                                                             JSON lines in MAPS.json) for the same model,
                                                             masks under RULE (full, the default, or half;
                                                             the report's #mask-rule must name it)
       report_check.py says REPORT.html ID PHRASE            element #ID's text contains PHRASE
       report_check.py regions REPORT.html MAPS.json         regions, normalised scores and decisions of a
                                                             calibrated predict report, from the maps
Exits 1 with a message on the first failure. Tolerances: 1e-6 on AUROC and ROC points (they are
printed with 9 or 17 significant digits), 1e-5 on normalised scores (printed with 6 decimals).
"""
import base64
import io
import math
import os
import re
import sys
from html.parser import HTMLParser

import numpy as np
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve

TOL = 1e-6


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class Page(HTMLParser):
    """The parts of a report the checks need: root attributes, elements by id, the image table's rows
    (cells with their data-v and text), imgs, scripts, polylines."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.root, self.ids, self.heads, self.rows = {}, {}, [], []
        self.imgs, self.polylines, self.tags, self.texts = [], {}, [], {}
        self._table = self._cell = None
        self._text_id = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "html":
            self.root = a
        if "id" in a:
            self.ids[a["id"]] = a
            self._text_id = a["id"]
            self.texts[a["id"]] = ""
        if tag == "table" and a.get("id") == "images":
            self._table = "head"
        elif self._table and tag == "tbody":
            self._table = "body"
        elif self._table == "head" and tag == "th":
            self.heads.append(a.get("data-key"))
        elif self._table == "body" and tag == "tr":
            self.rows.append([])
        elif self._table == "body" and tag == "td":
            self._cell = {"v": a.get("data-v"), "text": ""}
            self.rows[-1].append(self._cell)
        if tag == "img":
            self.imgs.append(a)
        if tag == "polyline":
            self.polylines[a.get("data-curve")] = a

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        if tag == "td":
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._text_id is not None:
            self.texts[self._text_id] += data

    def table(self):
        """Rows as dicts: column key -> (data-v, text)."""
        return [{k: (c["v"], c["text"].strip()) for k, c in zip(self.heads, r)} for r in self.rows]


def load(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def curve(page, name):
    pl = page.polylines.get(name)
    if pl is None:
        fail(f"no ROC polyline {name}")
    pts = np.array([[float(v) for v in p.split(",")] for p in pl["points"].split()])
    # Thresholds are float32 scores printed with %.9g: exact once parsed back as float32.
    thr = np.array([float(t) for t in pl["data-thresholds"].split()], np.float32)
    return pts[:, 0], pts[:, 1], thr


def check_static(path, kind, n):
    text = load(path)
    page = Page(text)
    if page.root.get("data-report") != kind:
        fail(f"{path}: data-report is {page.root.get('data-report')}, not {kind}")
    # Self-contained: no external reference of any kind (the SVG namespace URI is a name, not a load).
    for tag, a in page.tags:
        for k, v in a.items():
            if k in ("src", "href", "srcset", "poster", "data") and v and not v.startswith("data:"):
                fail(f"{path}: <{tag} {k}={v[:60]}> refers outside the file")
    if re.search(r"https?://(?!www\.w3\.org/2000/svg)", text):
        fail(f"{path}: an http(s) URL other than the SVG namespace")
    if re.search(r"<link|@import|url\(", text, re.I):
        fail(f"{path}: <link>, @import or url() found")
    rows = page.table()
    if len(rows) != n:
        fail(f"{path}: {len(rows)} table rows, expected {n}")
    if len(page.imgs) != n:
        fail(f"{path}: {len(page.imgs)} <img>, expected {n}")
    for im in page.imgs:
        src = im["src"]
        if not src.startswith("data:image/png;base64,"):
            fail(f"{path}: an img is not a PNG data URI")
        png = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        png.load()
        if png.size != (int(im["width"]), int(im["height"])) or max(png.size) > 160 or png.mode != "RGB":
            fail(f"{path}: thumbnail {png.size} {png.mode} vs width/height {im['width']}x{im['height']}")
    scores = [float(r["score"][0]) for r in rows]
    if any(a < b for a, b in zip(scores, scores[1:])):
        fail(f"{path}: the table is not worst first")
    if [int(r["rank"][0]) for r in rows] != list(range(1, n + 1)):
        fail(f"{path}: ranks are not 1..{n}")
    if "histogram" not in page.ids:
        fail(f"{path}: no histogram SVG")
    if kind == "eval":
        for sid in ("roc-image", "roc-pixel"):
            if sid not in page.ids:
                fail(f"{path}: no SVG #{sid}")
        labels = np.array([r["label"][1] == "defective" for r in rows], np.uint8)
        s32 = np.array(scores, np.float32)  # printed with %.9g: the float32 scores exactly
        auroc = float(page.ids["image-auroc"]["data-v"])
        ref = roc_auc_score(labels, s32)
        if abs(auroc - ref) > TOL:
            fail(f"{path}: image AUROC {auroc} vs sklearn {ref} on the table's scores")
        fpr, tpr, thr = curve(page, "roc-image")
        rf, rt, rthr = roc_curve(labels, s32, drop_intermediate=False)
        if len(fpr) != len(rf):
            fail(f"{path}: image ROC has {len(fpr)} points, sklearn {len(rf)}")
        if np.max(np.abs(fpr - rf)) > TOL or np.max(np.abs(tpr - rt)) > TOL:
            fail(f"{path}: image ROC points differ from sklearn's by {max(np.max(np.abs(fpr - rf)), np.max(np.abs(tpr - rt)))}")
        # Thresholds after the first (+inf here; max + 1 before sklearn 1.3) are the distinct scores.
        if not math.isinf(thr[0]) or rthr.dtype != np.float32 or np.any(thr[1:] != rthr[1:]):
            fail(f"{path}: image ROC thresholds differ from sklearn's")
        print(f"{path}: {n} rows, image AUROC {auroc:.6f} = sklearn {ref:.6f}, image ROC {len(fpr)} points = sklearn's")
    else:
        print(f"{path}: {n} rows, {len(page.imgs)} thumbnails")
    if "threshold-line" not in page.ids and page.ids.get("image-threshold-source") is None:
        fail(f"{path}: no threshold statement")


def check_dom(path, n):
    page = Page(load(path))
    if page.root.get("data-rendered") != "1":
        fail(f"{path}: the page's script did not finish (no data-rendered marker)")
    if "data-js-errors" in page.root or page.texts.get("js-errors", "").strip():
        fail(f"{path}: script errors recorded: {page.texts.get('js-errors')}")
    if page.root.get("data-selftest") != "pass":
        fail(f"{path}: sorting self-test: {page.root.get('data-selftest')}")
    rows = page.table()
    if len(rows) != n or len(page.imgs) != n:
        fail(f"{path}: DOM has {len(rows)} rows and {len(page.imgs)} imgs, expected {n}")
    scores = [float(r["score"][0]) for r in rows]
    if any(a < b for a, b in zip(scores, scores[1:])):
        fail(f"{path}: after the self-test the rows are not by score, descending")
    print(f"{path}: rendered, no script errors, self-test pass, {n} rows and imgs")


def map_files(maps_json):
    """image path -> its .npy map, from `predict --json --maps DIR` output (one JSON object a line)."""
    import json

    with open(maps_json, encoding="utf-8") as f:
        return {os.path.normpath(o["path"]): o["map"] for o in map(json.loads, f) if "map" in o}


def check_pixel(path, category, maps_json, rule="full"):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
    import patchcore_torch as P  # the oracle's masks: PIL Resize + CenterCrop, then == 255 or >= 128

    page = Page(load(path))
    said = page.ids.get("mask-rule", {}).get("data-rule")
    if said != rule:
        fail(f"{path}: the report names mask rule {said!r}, expected {rule!r}")
    rows = page.table()
    files = map_files(maps_json)
    maps, masks = [], []
    for r in rows:
        p = r["path"][1]
        maps.append(np.load(files[os.path.normpath(p)]))
        t = r["type"][1]
        m = None if t == "good" else os.path.join(category, "ground_truth", t, os.path.basename(p)[:-4] + "_mask.png")
        masks.append(P.load_mask(m, rule=rule))
    maps, masks = np.stack(maps).ravel(), np.stack(masks).ravel()
    auroc = float(page.ids["pixel-auroc"]["data-v"])
    ref = roc_auc_score(masks, maps)
    if abs(auroc - ref) > TOL:
        fail(f"{path}: pixel AUROC {auroc} vs sklearn {ref}")
    fpr, tpr, thr = curve(page, "roc-pixel")
    rf, rt, rthr = roc_curve(masks, maps, drop_intermediate=False)
    if not (100 <= len(fpr) <= 400):
        fail(f"{path}: pixel ROC has {len(fpr)} points (sklearn {len(rf)}), expected 100..400")
    if (fpr[0], tpr[0], fpr[-1], tpr[-1]) != (0, 0, 1, 1):
        fail(f"{path}: the pixel ROC does not run from (0,0) to (1,1)")
    # Every point is one of sklearn's: find it by its threshold (a float32 score, exact).
    idx = np.searchsorted(-rthr[1:], -thr[1:]) + 1
    if np.any(idx >= len(rthr)) or np.any(rthr[np.minimum(idx, len(rthr) - 1)] != thr[1:]):
        fail(f"{path}: a pixel ROC threshold is not one of sklearn's")
    d = max(np.max(np.abs(rf[idx] - fpr[1:])), np.max(np.abs(rt[idx] - tpr[1:])))
    if d > TOL:
        fail(f"{path}: pixel ROC points differ from sklearn's by {d}")
    if np.any(np.diff(idx) <= 0):
        fail(f"{path}: pixel ROC points out of order")
    print(f"{path}: mask rule {rule}: pixel AUROC {auroc:.6f} = sklearn {ref:.6f}; {len(fpr)} ROC points, all on sklearn's "
          f"{len(rf)}-point curve (max diff {d:.2g})")


def check_regions(path, maps_json):
    import scipy.ndimage

    page = Page(load(path))
    text = load(path)
    files = map_files(maps_json)
    vals = dict(re.findall(r"<tr><th>([a-z ]+)</th><td class=\"num\" data-v=\"([^\"]+)\"", text))
    t_img, t_pix, scale = (float(vals[k]) for k in ("calibrated image threshold", "calibrated pixel threshold", "score scale"))
    for r in page.table():
        p, s = r["path"][1], float(r["score"][0])
        m = np.load(files[os.path.normpath(p)])
        _, nreg = scipy.ndimage.label(m > t_pix, structure=np.ones((3, 3)))
        if int(r["regions"][0]) != nreg:
            fail(f"{path}: {p}: {r['regions'][0]} regions, scipy finds {nreg} above {t_pix}")
        norm = 1 / (1 + math.exp(-math.log(9) * (s - t_img) / scale))
        if abs(float(r["normalized"][0]) - norm) > 1e-5:
            fail(f"{path}: {p}: normalised {r['normalized'][0]} vs {norm}")
        if (r["decision"][1] == "anomalous") != (s > t_img):
            fail(f"{path}: {p}: decision {r['decision'][1]} at score {s}, threshold {t_img}")
    print(f"{path}: regions (scipy.ndimage.label), normalised scores and decisions agree")


def main():
    a = sys.argv[1:]
    if a[0] == "static":
        check_static(a[1], a[2], int(a[3]))
    elif a[0] == "dom":
        check_dom(a[1], int(a[2]))
    elif a[0] == "pixel":
        check_pixel(a[1], a[2], a[3], *a[4:5])
    elif a[0] == "says":
        text = Page(load(a[1])).texts.get(a[2], "")
        if a[3] not in text:
            fail(f"{a[1]}: #{a[2]} does not say '{a[3]}': {text}")
    elif a[0] == "regions":
        check_regions(a[1], a[2])
    else:
        fail("unknown check " + a[0])


if __name__ == "__main__":
    main()
