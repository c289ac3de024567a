"""test_binding.py - the Python binding (python/patchcore) against independent oracles.

Run by tests/test_python.sh with /usr/bin/python3 (numpy, PIL, scipy), twice:
  build      against the build tree's library (PATCHCORE_LIBRARY): everything below;
  installed  against a DESTDIR install (package and library found without PATCHCORE_LIBRARY): the
             layout check, where the package and library come from, and predictions equal to the
             CLI's on the model the build run calibrated.
Usage: test_binding.py build|installed WORKDIR. Environment: PC_SOURCE_DIR, PC_SHARED_DIR, PC_REF_DIR,
PC_CLI, CC (and PC_INSTALL_ROOT in installed mode). Exit 0 ok, 1 failure, 77 when the MVTec bottle
data or the ResNet-18 weights are absent (the data-free checks have then passed).

Oracles and tolerances:
  - struct layout: the C compiler's sizeof/offsetof of every field the header declares (field names
    parsed from include/patchcore.h; a probe generated from them and compiled with $CC): exact;
  - PyTorch reference pipeline (tests/ref/gen_pipeline.py's r18 case, same projection and start
    points) given the same memory bank (PyTorch's features at the coreset indices this fit chose, read
    from the model file; float64 kNN): scores and maps within 1e-4 relative (max |diff| / max |ref|),
    as tests/test_pipeline.c; and PyTorch's own outputs too when the two coresets agree;
  - the CLI (`patchcore predict --json --maps`) on the same model file: score and map bit for bit,
    regions equal, normalised score to the CLI's 6 printed decimals;
  - PIL's decoding: a model fitted from PIL-decoded arrays is byte-identical to the one fitted from
    the paths, and predictions from PIL arrays (RGB, and grey L) equal those from the files bit for bit;
  - calibration by hand (numpy): conformal at 1% on 4 images is their maximum score / map maximum,
    the scale is threshold - median (1e-12 relative); the decision is score > threshold and the
    normalised score 1 / (1 + exp(-ln 9 (s - t) / scale)) (1e-12 absolute);
  - F1 calibration from masks under mask_rule "full" (default) and "half": the pixel threshold equals
    a numpy F1 sweep over the predicted maps with PIL-made masks (== 255 / >= 128), exactly;
  - regions: scipy.ndimage.label (8-connected) of map > pixel threshold, areas and peaks exact, boxes
    mapped back to original pixels by the documented rule (floor/ceil through crop and resize);
  - errors: missing and corrupt files raise PatchcoreError with the right status and the path in the
    message;
  - tiling (docs/tiles.md): fit(tile=64, tile_scale=0.5, sampler none) on tests/ref/gen_tiles.py's two
    training images gives (H, W) maps equal to that PyTorch/PIL/scipy oracle's stitched maps within
    1e-4 of the map's maximum (mean; max through the per-call stitch override; scale 1 and overlap 0
    through tile_scale/tile_overlap), scores within 1e-4 relative; arrays and paths agree bit for bit.
  - regions of interest (docs/roi.md) against tests/ref/gen_roi.py (PIL/numpy + the PyTorch PatchCore):
    fit(roi=2-D array) with sampler none keeps exactly the inside patches (bank size exact), the stored
    mask is the PIL mask binarised (exact), scores and maps within 1e-4 relative for the model's ROI,
    predict(roi=path) and predict(ignore_roi=True); a save/load keeps it; bad masks raise.
"""
import json
import os
import threading
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np

MODE, WORK = sys.argv[1], sys.argv[2]
SRC = os.environ["PC_SOURCE_DIR"]
SHARED = os.environ.get("PC_SHARED_DIR", "")
REF = os.environ.get("PC_REF_DIR", "")
CLI = os.environ.get("PC_CLI", "")
CC = os.environ.get("CC", "")
BOTTLE = os.path.join(SHARED, "data", "mvtec_ad", "bottle")
WEIGHTS = os.path.join(SHARED, "weights", "resnet18_in1k_to_layer3.pth")

import patchcore  # noqa: E402
from patchcore import _lib  # noqa: E402

failures = []


def check(cond, what):
    print("  %s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def raises(exc_type, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except exc_type as e:
        return e
    except Exception as e:  # noqa: BLE001
        return AssertionError("raised %r instead of %s" % (e, exc_type.__name__))
    return None


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------------------------
# Struct layout: header field names -> probe compiled by $CC -> offsets vs ctypes
# ---------------------------------------------------------------------------------------------

def header_fields(text, struct):
    """Field names, in order, of `typedef struct struct { ... } struct;` in the header text."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    m = re.search(r"typedef\s+struct\s+%s\s*\{(.*?)\}\s*%s\s*;" % (struct, struct), text, flags=re.S)
    assert m, "struct %s not found in the header" % struct
    names = []
    for decl in m.group(1).split(";"):
        decl = decl.strip()
        if not decl:
            continue
        fp = re.search(r"\(\s*\*\s*(\w+)\s*\)", decl)
        if fp:  # function pointer
            names.append(fp.group(1))
            continue
        decl = re.sub(r"\[[^\]]*\]", "", decl)
        parts = decl.split(",")
        names.append(re.findall(r"\w+", parts[0])[-1])
        names += [re.findall(r"\w+", p)[-1] for p in parts[1:]]
    return names


def check_layout():
    print("struct layout against the C compiler")
    if not CC or shutil.which(CC) is None:
        print("  SKIP: no C compiler ($CC=%r)" % CC)
        return
    header = open(os.path.join(SRC, "include", "patchcore.h")).read()
    fields = {s: header_fields(header, s) for s in _lib.STRUCTS}
    lines = ["#include <patchcore.h>", "#include <stdalign.h>", "#include <stddef.h>", "#include <stdio.h>",
             "int main(void) {"]
    for s, names in fields.items():
        lines.append('printf("%s - %%zu %%zu\\n", sizeof(%s), alignof(%s));' % (s, s, s))
        for f in names:
            lines.append('printf("%s %s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (s, f, s, f, s, f))
    lines += ["return 0;", "}"]
    probe = os.path.join(WORK, "layout_probe.c")
    with open(probe, "w") as f:
        f.write("\n".join(lines) + "\n")
    exe = os.path.join(WORK, "layout_probe")
    subprocess.run([CC, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(SRC, "include"), probe, "-o", exe],
                   check=True)
    got = {}
    for line in subprocess.run([exe], check=True, capture_output=True, text=True).stdout.splitlines():
        s, f, a, b = line.split()
        got[(s, f)] = (int(a), int(b))
    n = 0
    for s, cls in _lib.STRUCTS.items():
        import ctypes
        py_names = [f for f, _ in cls._fields_]
        check(py_names == fields[s], "%s: ctypes fields %s == header's" % (s, "in order" if py_names == fields[s]
                                                                           else "%s vs %s" % (py_names, fields[s])))
        size, align = got[(s, "-")]
        check(ctypes.sizeof(cls) == size and ctypes.alignment(cls) == align,
              "%s: sizeof %d alignof %d (C: %d %d)" % (s, ctypes.sizeof(cls), ctypes.alignment(cls), size, align))
        for f in fields[s]:
            off, sz = got[(s, f)]
            d = getattr(cls, f)
            if (d.offset, d.size) != (off, sz):
                check(False, "%s.%s: ctypes offset %d size %d, C %d %d" % (s, f, d.offset, d.size, off, sz))
            n += 1
    check(True, "%d fields of %d structs at the C compiler's offsets and sizes" % (n, len(_lib.STRUCTS)))


# ---------------------------------------------------------------------------------------------
# Checks that need no data
# ---------------------------------------------------------------------------------------------

def check_basics():
    print("version, threads, argument checking, errors without data")
    check(patchcore.library_version() == patchcore.__version__,
          "library %s == package %s" % (patchcore.library_version(), patchcore.__version__))
    patchcore.set_num_threads(1)
    check(patchcore.get_num_threads() == 1, "set_num_threads(1) -> get_num_threads() == 1")
    patchcore.set_num_threads(2)
    check(patchcore.get_num_threads() == 2, "set_num_threads(2) -> 2")
    env = os.environ.get("OMP_NUM_THREADS")
    d = patchcore.default_num_threads()
    if env:
        check(d == int(env.split(",")[0]), "default_num_threads() %d = OMP_NUM_THREADS %s" % (d, env))
    else:
        check(1 <= d <= len(os.sched_getaffinity(0)), "default_num_threads() %d within the affinity mask" % d)
    seen = {}
    def local(n):
        patchcore.set_num_threads_local(n)
        seen[n] = patchcore.get_num_threads()
    t = threading.Thread(target=local, args=(1,))
    t.start()
    t.join()
    check(seen.get(1) == 1 and patchcore.get_num_threads() == 2,
          "set_num_threads_local(1) on another thread -> 1 there, 2 here")

    missing = os.path.join(WORK, "no such dir", "model.pcm")
    e = raises(patchcore.PatchcoreError, patchcore.Model.load, missing)
    check(isinstance(e, patchcore.PatchcoreError) and e.status_name == "PC_ERR_IO" and missing in e.message,
          "Model.load(missing) -> PatchcoreError PC_ERR_IO naming the path: %s" % e)
    notmodel = os.path.join(WORK, "not_a_model.pcm")
    with open(notmodel, "wb") as f:
        f.write(b"this is not a model file, just some text that is long enough to have a header" * 4)
    e = raises(patchcore.PatchcoreError, patchcore.Model.load, notmodel)
    check(isinstance(e, patchcore.PatchcoreError) and e.status_name == "PC_ERR_FORMAT" and notmodel in e.message,
          "Model.load(text file) -> PC_ERR_FORMAT naming the path: %s" % e)
    check(str(e).startswith("PC_ERR_FORMAT: ") and e.status == 4, "str(error) = 'STATUS_NAME: message', .status 4")

    e = raises(TypeError, patchcore.Model.fit, ["a.png"], coreset=0.1)
    check(isinstance(e, TypeError), "unknown fit option -> TypeError")
    e = raises(TypeError, patchcore.Model.fit, "a.png")
    check(isinstance(e, TypeError), "fit(one path) -> TypeError (a list is wanted)")
    e = raises(TypeError, patchcore.Model.fit, [np.zeros((4, 4, 3), np.float32)])
    check(isinstance(e, TypeError), "fit(float array) -> TypeError")
    e = raises(ValueError, patchcore.Model.fit, [np.zeros((4, 4, 5), np.uint8)])
    check(isinstance(e, ValueError), "fit(H x W x 5 array) -> ValueError")
    e = raises(ValueError, patchcore.Model.fit, ["a.png"], coreset_projection=np.zeros((3, 3), np.float32))
    check(isinstance(e, ValueError), "coreset_projection of the wrong shape -> ValueError (before C reads it)")
    e = raises(ValueError, patchcore.Model.fit, ["a.png"], resize=2 ** 31)
    check(isinstance(e, ValueError), "resize beyond int32 -> ValueError (no silent truncation)")
    # invalid option values are the library's to refuse: its status and message come through
    e = raises(patchcore.PatchcoreError, patchcore.Model.fit, ["a.png"], layers=[2, 2])
    check(isinstance(e, patchcore.PatchcoreError) and e.status_name == "PC_ERR_INVALID_ARGUMENT"
          and "layer2 named twice" in e.message, "layers=[2, 2] -> PC_ERR_INVALID_ARGUMENT: %s" % e)


# ---------------------------------------------------------------------------------------------
# With the bottle data and the ResNet-18 weights
# ---------------------------------------------------------------------------------------------

def listdir(d):
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".png"))


def cli_predict(model, paths, maps_dir):
    out = subprocess.run([CLI, "predict", "-m", model, "--json", "--maps", maps_dir, "--threads", "2"] + paths,
                         check=True, capture_output=True, text=True).stdout
    return {r["path"]: r for r in map(json.loads, out.splitlines())}


def same_as_cli(r, c, what):
    """Result r against the CLI's JSON line c (maps from its .npy)."""
    ok = np.float32(r.score) == np.float32(c["score"])
    cm = np.load(c["map"])
    ok_map = cm.dtype == np.float32 and cm.shape == r.map.shape and np.array_equal(cm, r.map)
    ok_cal = True
    if "anomalous" in c:
        ok_cal = r.anomalous == c["anomalous"] and abs(r.normalized - c["normalized"]) <= 5e-7
        ok_cal = ok_cal and r.regions is not None and len(r.regions) == c["n_regions"]
        for a, b in zip(r.regions, c["regions"]):
            ok_cal = ok_cal and a["box"] == b["box"] and a["area"] == b["area"] and \
                np.float32(a["peak"]) == np.float32(b["peak"])
    else:
        ok_cal = r.anomalous is None and r.normalized is None and r.regions is None
    check(ok and ok_map and ok_cal, "%s: score %.9g, map, decision%s equal the CLI's" %
          (what, r.score, " and %d regions" % len(r.regions) if r.regions else ""))


def model_tensor(path, name):
    """One tensor of a .pcm model file, read by docs/model-format.md's layout (header, 128-byte table)."""
    import struct
    with open(path, "rb") as f:
        buf = f.read()
    assert buf[:8] == b"PCMODEL\x1a", "not a model file"
    table, count, esize = struct.unpack_from("<Q", buf, 40)[0], *struct.unpack_from("<II", buf, 48)
    dtypes = {0: np.float32, 1: np.float16, 2: np.int64, 3: np.int32, 4: np.uint8}
    for e in range(count):
        off = table + e * esize
        if buf[off:off + 64].rstrip(b"\0").decode() != name:
            continue
        dt, nd = struct.unpack_from("<II", buf, off + 64)
        shape = struct.unpack_from("<4Q", buf, off + 72)[:nd]
        data, size = struct.unpack_from("<QQ", buf, off + 104)
        return np.frombuffer(buf[data:data + size], dtype=dtypes[dt]).reshape(shape)
    raise KeyError(name)


def check_same_bank(case, model_path, results, k, grid):
    """Scores and maps against the PyTorch pipeline *given the same bank*: PyTorch's training features at
    the coreset indices this fit chose (read from the model file), PyTorch's test features, exact kNN in
    float64, its bilinear + scipy Gaussian map (tests/ref/patchcore_torch.py). Comparing with PyTorch's
    own bank instead would depend on which of two near-equal candidates each side's greedy coreset picks,
    which differs between CPUs (docs/robustness.md); that comparison is made only when the selections
    agree. Tolerance 1e-4 relative (max |diff| / max |ref|), as tests/test_pipeline.c."""
    sys.path.insert(0, os.path.join(SRC, "tests", "ref"))
    import patchcore_torch as P
    idx = model_tensor(model_path, "coreset_indices")
    ft = np.load(os.path.join(case, "features_train.npy")).astype(np.float64)
    fq = np.load(os.path.join(case, "features_test.npy")).astype(np.float64)
    bank = ft[idx]
    d2 = (fq ** 2).sum(1)[:, None] + (bank ** 2).sum(1)[None, :] - 2 * fq @ bank.T  # float64: ~1e-13 error
    ps = np.sort(d2, axis=1)[:, :k].mean(1)
    n = len(results)
    scores = ps.reshape(n, -1).max(1)
    maps = P.anomaly_maps(ps.astype(np.float32), grid, results[0].map.shape[0])
    es = max(abs(r.score - s) / abs(s) for r, s in zip(results, scores))
    em = rel_err(np.stack([r.map for r in results]), maps)
    check(es <= 1e-4, "scores vs the PyTorch pipeline on the same bank: max relative error %.2e (tolerance 1e-4)" % es)
    check(em <= 1e-4, "maps vs the PyTorch pipeline on the same bank: relative error %.2e (tolerance 1e-4)" % em)
    core = np.load(os.path.join(case, "coreset.npy"))
    if np.array_equal(idx, core):
        es = max(abs(r.score - s) / abs(s) for r, s in zip(results, np.load(os.path.join(case, "scores.npy"))))
        em = rel_err(np.stack([r.map for r in results]), np.load(os.path.join(case, "maps.npy")))
        check(es <= 1e-4 and em <= 1e-4, "same coreset as PyTorch's: its own scores and maps within 1e-4 "
              "(%.2e, %.2e)" % (es, em))
    else:
        first = int(np.argmax(idx != core))
        print("  coreset parts from PyTorch's at pick %d (a near-tie: test_pipeline proves it); PyTorch's own "
              "scores not compared" % first)


def check_with_data():
    from PIL import Image
    import scipy.ndimage

    train = listdir(os.path.join(BOTTLE, "train", "good"))
    tgood = listdir(os.path.join(BOTTLE, "test", "good"))
    tbad = listdir(os.path.join(BOTTLE, "test", "broken_large"))
    test = tgood[:2] + tbad[:2]
    case = os.path.join(REF, "pipeline", "r18")
    have_ref = os.path.exists(os.path.join(case, "features_test.npy"))
    opts = dict(weights=WEIGHTS, arch="resnet18", layers="layer2,layer3")
    if have_ref:
        inputs = open(os.path.join(case, "inputs.txt")).read().split()
        cfg = dict(l.split("=", 1) for l in open(os.path.join(case, "config.txt")).read().split())
        assert inputs[:6] == train[:6] and inputs[6:] == test, "the reference case's inputs moved"
        opts.update(coreset_size=int(cfg["coreset"]), k=int(cfg["k"]),
                    coreset_projection=np.load(os.path.join(case, "projection.npy")),
                    coreset_starts=np.load(os.path.join(case, "starts.npy")))
    else:
        opts.update(coreset_ratio=0.1, seed=7)

    print("fit from paths (6 bottle training images), predict 4 test images")
    stages = set()
    model = patchcore.Model.fit(train[:6], progress=lambda s, d, t: stages.add(s), **opts)
    info = model.info
    check(info.arch == "resnet18" and info.layers == (2, 3) and info.crop == 224 and info.grid == (28, 28)
          and info.n_train_images == 6 and info.n_patches_total == 6 * 28 * 28 and info.image_threshold is None
          and info.bn_stats == "reference" and info.precision == "f32", "info: %s" % (info,))
    check(model.image_errors == [] and stages == {"features", "coreset"}, "no image errors; progress stages %s"
          % sorted(stages))
    results = [model.predict(p) for p in test]
    model_path = os.path.join(WORK, "model.pcm")
    model.save(model_path)
    if have_ref:
        check_same_bank(case, model_path, results, int(cfg["k"]), info.grid)
    else:
        print("  SKIP: %s absent (make refs): no comparison with the PyTorch pipeline" % case)

    print("fit from PIL-decoded arrays == fit from paths")
    pil = [np.asarray(Image.open(p).convert("RGB")) for p in train[:6]]
    with patchcore.Model.fit(pil, **opts) as m2:
        p2 = os.path.join(WORK, "model_arrays.pcm")
        m2.save(p2)
    check(open(p2, "rb").read() == open(model_path, "rb").read(), "the two model files are byte-identical")
    with patchcore.Model.fit(train[:6], max_memory=1 << 30, **opts) as m3:  # streamed through a temp file
        p3 = os.path.join(WORK, "model_budget.pcm")
        m3.save(p3)
    check(open(p3, "rb").read() == open(model_path, "rb").read(), "fit with max_memory=1 GiB: byte-identical model")
    with patchcore.Model.fit(train[:6], jobs=2, batch_size=2, **opts) as m3j:  # 3 batches, 2 in flight
        p3j = os.path.join(WORK, "model_jobs.pcm")
        m3j.save(p3j)
    with patchcore.Model.fit(train[:6], jobs=1, batch_size=2, **opts) as m3s:
        p3s = os.path.join(WORK, "model_jobs1.pcm")
        m3s.save(p3s)
    check(open(p3j, "rb").read() == open(p3s, "rb").read(), "fit with jobs=2 and jobs=1 (batch 2): byte-identical model")
    check(isinstance(raises(ValueError, patchcore.Model.fit, train[:1], bn_stats="eval", **opts), ValueError),
          "bn_stats='eval' -> ValueError")
    check(isinstance(raises(ValueError, patchcore.Model.fit, train[:1], precision="fp8", **opts), ValueError),
          "precision='fp8' -> ValueError")
    try:
        with patchcore.Model.fit(train[:6], precision="bf16", **opts) as mb:
            check(mb.info.precision == "bf16", "precision='bf16': recorded (%s)" % mb.info.precision)
    except patchcore.PatchcoreError as e:  # a CPU without native bf16: the library refuses, naming why
        check("AVX512-BF16" in str(e), "precision='bf16' refused on this CPU, naming the instruction sets: %s" % e)
    with patchcore.Model.fit(train[:6], bn_stats="trained", **opts) as m4:
        check(m4.info.bn_stats == "trained" and m4.predict(test[2]).score != results[2].score,
              "bn_stats='trained': recorded, and a different score (%.6f vs %.6f)"
              % (m4.predict(test[2]).score, results[2].score))
    check(m2.closed and isinstance(raises(ValueError, m2.predict, test[0]), ValueError),
          "after `with`: closed, predict raises ValueError")

    print("predict against the CLI on the saved model; arrays and grey images against files")
    loaded = patchcore.Model.load(model_path)
    grey_png = os.path.join(WORK, "grey.png")
    Image.open(tbad[0]).convert("L").save(grey_png)
    cli = cli_predict(model_path, test + [grey_png], os.path.join(WORK, "maps"))
    for p, r0 in zip(test, results):
        r = loaded.predict(p)
        same_as_cli(r, cli[p], os.path.relpath(p, BOTTLE))
        if not (r.score == r0.score and np.array_equal(r.map, r0.map)):
            check(False, "%s: the loaded model predicts as the fitted one" % p)
    rg = loaded.predict(grey_png)
    same_as_cli(rg, cli[grey_png], "grey PNG")
    ra = loaded.predict(np.asarray(Image.open(tbad[0]).convert("RGB")))
    rl = loaded.predict(np.asarray(Image.open(grey_png)))  # H x W uint8, mode L
    rp = loaded.predict(Image.open(tbad[0]))  # a PIL image
    check(ra.score == results[2].score and np.array_equal(ra.map, results[2].map) and
          rp.score == ra.score and np.array_equal(rp.map, ra.map),
          "PIL RGB array and PIL image predict as the file, bit for bit")
    check(rl.score == rg.score and np.array_equal(rl.map, rg.map), "H x W grey array predicts as the grey PNG")
    g = ra.geometry
    check(ra.map.shape == (g["map_height"], g["map_width"]) == (g["crop_size"], g["crop_size"]),
          "the map's shape is the geometry's (map_height, map_width), crop x crop untiled")
    try:
        loaded.predict(os.path.join(WORK, "no-such-image.png"))
        check(False, "a missing image raises")
    except patchcore.PatchcoreError as e:
        check("no-such-image.png" in str(e), "a missing image's error names it")
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(2) as ex:
        par = list(ex.map(loaded.predict, test * 2))
    check(all(a.score == b.score and np.array_equal(a.map, b.map) for a, b in zip(par, results * 2)),
          "two Python threads predicting on one model give the serial results")
    g = results[2].geometry
    check(g == {"orig_width": 900, "orig_height": 900, "resized_width": 256, "resized_height": 256,
                "crop_left": 16, "crop_top": 16, "crop_size": 224, "map_width": 224, "map_height": 224}, "geometry of a 900x900 image at 256/224: %s" % g)

    print("calibrate (conformal, 4 held-out good images) and regions")
    held = tgood[2:6]
    hr = [loaded.predict(p) for p in held]
    c = loaded.calibrate(held)
    sc = np.array([r.score for r in hr], np.float32)
    t_img = float(sc.max())  # 1% conformal on 4 images: m = floor(0.01 * 5) = 0 -> the maximum
    t_pix = float(max(r.map.max() for r in hr))
    scale = t_img - float(np.quantile(sc.astype(np.float64), 0.5))
    check(c.n_good == 4 and c.n_defective == 0 and c.image_threshold == t_img and c.pixel_threshold == t_pix,
          "thresholds %.9g / %.9g == max good score / max good map value" % (c.image_threshold, c.pixel_threshold))
    check(abs(c.score_scale - scale) <= 1e-12 * scale, "scale %.9g == threshold - median (numpy)" % c.score_scale)
    pscale = t_pix - float(np.median(np.concatenate([r.map.ravel()[::7] for r in hr]).astype(np.float64)))
    check(abs(c.pixel_scale - pscale) <= 1e-6 * pscale,
          "pixel scale %.9g == pixel threshold - median of every 7th good pixel (numpy)" % c.pixel_scale)
    i2 = loaded.info
    check(i2.pixel_scale == c.pixel_scale, "info shows the pixel scale")
    check((i2.image_threshold, i2.pixel_threshold, i2.score_scale) == (c.image_threshold, c.pixel_threshold,
                                                                       c.score_scale), "info shows them")
    cal_path = os.path.join(WORK, "model_cal.pcm")
    loaded.save(cal_path)
    cli = cli_predict(cal_path, test, os.path.join(WORK, "maps_cal"))
    n_regions = 0
    for p in test:
        r = loaded.predict(p)
        same_as_cli(r, cli[p], os.path.relpath(p, BOTTLE) + " (calibrated)")
        norm = 1.0 / (1.0 + np.exp(-np.log(9.0) * (r.score - c.image_threshold) / c.score_scale))
        check(r.anomalous == (r.score > c.image_threshold) and abs(r.normalized - norm) <= 1e-12,
              "  decision %s, normalised %.6f by hand" % (r.decision, r.normalized))
        # regions by scipy: 8-connected components of map > t_pix, boxes mapped back by floor/ceil
        lab, n = scipy.ndimage.label(r.map > t_pix, structure=np.ones((3, 3)))
        g = r.geometry
        sx = g["orig_width"] / g["resized_width"]
        sy = g["orig_height"] / g["resized_height"]
        want = []
        for k, sl in enumerate(scipy.ndimage.find_objects(lab), start=1):
            ys, xs = sl
            box = [max(0, int(np.floor((xs.start + g["crop_left"]) * sx))),
                   max(0, int(np.floor((ys.start + g["crop_top"]) * sy))),
                   min(g["orig_width"], int(np.ceil((xs.stop + g["crop_left"]) * sx))),
                   min(g["orig_height"], int(np.ceil((ys.stop + g["crop_top"]) * sy)))]
            want.append({"box": box, "area": int((lab == k).sum()), "peak": float(r.map[lab == k].max())})
        want.sort(key=lambda d: -d["peak"])
        check(r.regions == want, "  %d regions == scipy's components (boxes in original pixels)%s"
              % (len(r.regions), "" if r.regions == want else ": %s vs %s" % (r.regions, want)))
        n_regions += len(r.regions)
        # an override of the pixel threshold below every map value: one region covering the map
        lo = loaded.predict(p, pixel_threshold=float(r.map.min()) - 1)
        check(len(lo.regions) == 1 and lo.regions[0]["area"] == 224 * 224 and lo.regions[0]["box"] ==
              [56, 56, 844, 844],  # floor(16 * 900 / 256), ceil((16 + 224) * 900 / 256)
              "  pixel_threshold below the map: one region, the whole crop, box %s" % lo.regions[0]["box"])
    check(n_regions > 0, "the defective images show regions (%d in all)" % n_regions)
    print("calibrate with defective images and masks (F1) under both mask rules")
    # Oracle: the maps predict gives, masks by PIL (Resize 256 bilinear + CenterCrop 224 of the 900 x 900
    # mask, then == 255 / >= 128) and an F1 sweep in numpy (sklearn's `>= t` thresholds, the lowest at
    # the maximum, moved halfway to the next lower value: docs/metrics.md). Exact (same floats).
    def f1_threshold(s, y):
        s, y = s.ravel().astype(np.float64), y.ravel().astype(bool)
        order = np.argsort(-s, kind="stable")
        s, y = s[order], y[order]
        last = np.r_[s[1:] != s[:-1], True]
        tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
        f1 = 2 * tp / (2 * tp + fp + (y.sum() - tp))
        v = s[last]
        b = np.flatnonzero(f1 == f1.max())[-1]
        return 0.5 * (v[b + 1] + v[b]) if b + 1 < len(v) else float(np.nextafter(v[b], -np.inf))

    fgood, fbad = tgood[2:5], tbad[:2]
    fmasks = [os.path.join(BOTTLE, "ground_truth", "broken_large", os.path.basename(p)[:-4] + "_mask.png")
              for p in fbad]
    fmaps = np.stack([loaded.predict(p).map for p in fgood + fbad])
    got = {}
    with patchcore.Model.load(model_path) as mf:
        for rule in ("full", "half", None):
            kw = {} if rule is None else {"mask_rule": rule}
            cr = mf.calibrate(fgood, defective=fbad, masks=fmasks, **kw)
            rule = rule or "default"
            want_rule = "full" if rule == "default" else rule
            gm = []
            for i in range(len(fgood + fbad)):
                if i < len(fgood):
                    gm.append(np.zeros((224, 224), bool))
                    continue
                with Image.open(fmasks[i - len(fgood)]) as im:
                    v = np.asarray(im.convert("L").resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240)))
                gm.append(v == 255 if want_rule == "full" else v >= 128)
            want = f1_threshold(fmaps, np.stack(gm))
            got[rule] = cr.pixel_threshold
            check(cr.n_defective == 2 and cr.pixel_threshold == want,
                  "mask_rule %s: F1 pixel threshold %.9g == numpy's %.9g" % (rule, cr.pixel_threshold, want))
        check(got["full"] != got["half"] and got["default"] == got["full"],
              "the rules give different thresholds; the default is full")
        e = raises(ValueError, mf.calibrate, fgood, defective=fbad, masks=fmasks, mask_rule="quarter")
        check(isinstance(e, ValueError) and "mask_rule" in str(e), "mask_rule='quarter' raises ValueError: %s" % e)

    loaded.set_thresholds(None, None)
    i3 = loaded.info
    check(i3.image_threshold is None and i3.pixel_threshold is None and loaded.predict(test[0]).regions is None,
          "set_thresholds(None, None) clears them; regions None again")
    loaded.close()

    print("fit and predict errors")
    missing = os.path.join(WORK, "missing.png")
    corrupt = os.path.join(WORK, "corrupt.png")
    with open(train[0], "rb") as f:
        data = f.read()
    with open(corrupt, "wb") as f:
        f.write(data[:200])
    with patchcore.Model.load(model_path) as m:
        for path, status in ((missing, "PC_ERR_IO"), (corrupt, "PC_ERR_FORMAT")):
            e = raises(patchcore.PatchcoreError, m.predict, path)
            check(isinstance(e, patchcore.PatchcoreError) and e.status_name == status and path in e.message,
                  "predict(%s) -> %s naming the path: %s" % (os.path.basename(path), status, e))
    e = raises(patchcore.PatchcoreError, patchcore.Model.fit, [missing, corrupt], **opts)
    check(isinstance(e, patchcore.PatchcoreError) and [x.path for x in e.image_errors] == [missing, corrupt]
          and all(x.path in x.message for x in e.image_errors),
          "fit with no usable image raises, image_errors name both files: %s" % e)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = patchcore.Model.fit([train[0], corrupt], weights=WEIGHTS, coreset_ratio=0.01)
    check([x.path for x in m.image_errors] == [corrupt] and m.info.n_train_images == 1 and
          any(issubclass(x.category, patchcore.PatchcoreWarning) and corrupt in str(x.message) for x in w),
          "fit with one bad image: fitted on 1, image_errors and a PatchcoreWarning name it")
    m.close()
    m.close()  # twice is fine
    e = raises(patchcore.PatchcoreError, patchcore.Model.fit, [train[0]], weights=WEIGHTS,
               progress=lambda s, d, t: True)
    check(isinstance(e, patchcore.PatchcoreError) and e.status_name == "PC_ERR_CANCELLED",
          "progress returning True cancels: %s" % e)

    def boom(s, d, t):
        raise KeyError("from the progress callback")
    e = raises(KeyError, patchcore.Model.fit, [train[0]], weights=WEIGHTS, progress=boom)
    check(isinstance(e, KeyError), "an exception in the progress callback cancels the fit and is raised")


def check_update():
    """Model.update and Model.merge (docs/update.md); the C tests (test_update) hold the oracles of the
    rules, this checks the binding's plumbing against the library's own invariants."""
    from PIL import Image
    train = listdir(os.path.join(BOTTLE, "train", "good"))
    print("update and merge")
    # sampler none: fit(A) + update(B) has the bank of fit(A + B) (batches of 1: the same extraction)
    base = dict(weights=WEIGHTS, sampler="none", batch_size=1)
    both = patchcore.Model.fit(train[:2], **base)
    m = patchcore.Model.fit(train[:1], **base)
    arr = np.asarray(Image.open(train[1]).convert("RGB"))
    rep = m.update([arr], batch_size=1)
    check(rep.rule == "all" and rep.n_images == 1 and rep.n_added == 28 * 28 and rep.bank_size == 2 * 28 * 28,
          "update from an array, sampler none: %s" % (rep,))
    pa, pb = os.path.join(WORK, "both.pcm"), os.path.join(WORK, "updated.pcm")
    both.save(pa)
    m.save(pb)
    check(np.array_equal(model_tensor(pa, "bank"), model_tensor(pb, "bank")),
          "fit(A) + update(B) has the bank of fit(A + B), bit for bit")
    both.close()
    m.close()
    # approximate greedy: the fitted images again add nothing under the default rule (radius)
    g = patchcore.Model.fit(train[:2], weights=WEIGHTS, coreset_ratio=0.1)
    info = g.info
    check(info.coverage_radius is not None and info.coverage_radius > 0 and not info.thresholds_stale,
          "info: coverage radius %s, thresholds not stale" % info.coverage_radius)
    rep = g.update(train[:2])
    check(rep.rule == "radius" and rep.n_added == 0 and rep.radius_new <= rep.radius_before * (1 + 1e-4),
          "update with the fitted images adds nothing: %s" % (rep,))
    g.set_thresholds(1.0, 2.0)
    rep = g.update(train[2], rule="ratio")
    check(rep.n_added == int(28 * 28 * 0.1) and g.info.thresholds_stale and g.info.n_train_images == 5,
          "rule ratio adds floor(0.1 x 784), flags the thresholds stale; every image given counts: %s" % (rep,))
    e = raises(ValueError, g.update, train[2], rule="most")
    check(isinstance(e, ValueError), "an unknown rule raises ValueError")
    # merge
    h = patchcore.Model.fit(train[3:5], weights=WEIGHTS, coreset_ratio=0.1)
    nb = h.info.bank_size
    before = g.info.bank_size
    rep = g.merge(h)
    check(rep.n_added == nb and g.info.bank_size == before + nb, "merge appends the other bank: %s" % (rep,))
    other = patchcore.Model.fit(train[3:4], weights=WEIGHTS, layers=[3], coreset_ratio=0.1)
    e = raises(patchcore.PatchcoreError, g.merge, other)
    check(isinstance(e, patchcore.PatchcoreError) and "layers" in e.message, "incompatible merge refused: %s" % e)
    for x in (g, h, other):
        x.close()
def check_roi():
    from PIL import Image
    ref = os.path.join(REF, "roi")
    if not os.path.exists(os.path.join(ref, "inputs.txt")):
        print("  SKIP: %s absent (make refs): no region-of-interest checks" % ref)
        return
    print("regions of interest: fit(roi=array), predict(roi=path), predict(ignore_roi=True)")
    inputs = open(os.path.join(ref, "inputs.txt")).read().split()
    mask = np.asarray(Image.open(os.path.join(ref, "roi.png")).convert("L"))
    n_in = np.load(os.path.join(ref, "inside_train.npy")).size
    m = patchcore.Model.fit(inputs[:2], weights=WEIGHTS, sampler="none", roi=mask)
    i = m.info
    check(i.roi == (450, 450) and i.bank_size == 2 * n_in and i.n_patches_total == 2 * n_in,
          "info: roi %s, bank %d (expect %d inside patches)" % (i.roi, i.bank_size, 2 * n_in))
    check(np.array_equal(m.roi, np.where(mask > 0, 255, 0).astype(np.uint8)), "the stored mask is the binarised PIL mask")
    for x, kw in (("model", {}), ("call", {"roi": os.path.join(ref, "roi_call.png")}), ("none", {"ignore_roi": True})):
        rs = np.load(os.path.join(ref, "scores_%s.npy" % x))
        rm = np.load(os.path.join(ref, "maps_%s.npy" % x))
        ins = np.load(os.path.join(ref, "inspect_%s.npy" % x))
        for t, p in enumerate(inputs[2:4]):
            r = m.predict(p, **kw)
            e, me = abs(r.score - rs[t]) / rs[t], rel_err(r.map, rm[t])
            check(e <= 1e-4 and me <= 1e-4 and (r.map[ins == 0] == 0).all(),
                  "roi %s, image %d: score rel err %.2g, map %.2g (<= 1e-4), zero outside" % (x, t, e, me))
    path = os.path.join(WORK, "roi.pcm")
    m.save(path)
    with patchcore.Model.load(path) as m2:
        r1, r2 = m.predict(inputs[3]), m2.predict(inputs[3])
        check(m2.info.roi == (450, 450) and r1.score == r2.score and np.array_equal(r1.map, r2.map),
              "save/load keeps the ROI: same predictions bit for bit")
    e = raises(TypeError, m.predict, inputs[3], roi=np.zeros((4, 4, 3), np.uint8))
    check(isinstance(e, TypeError), "a 3-D ROI array raises TypeError")
    e = raises(patchcore.PatchcoreError, m.predict, inputs[3], roi=os.path.join(ref, "empty.png"))
    check(isinstance(e, patchcore.PatchcoreError) and e.status_name == "PC_ERR_INVALID_ARGUMENT"
          and "all black" in e.message, "an all-black ROI raises: %s" % e)
    missing = os.path.join(WORK, "no_such_mask.png")
    e = raises(patchcore.PatchcoreError, m.predict, inputs[3], roi=missing)
    check(isinstance(e, patchcore.PatchcoreError) and missing in e.message, "a missing mask file is named: %s" % e)
    m.close()


def check_installed():
    root = os.path.realpath(os.environ["PC_INSTALL_ROOT"])
    pkg = os.path.realpath(patchcore.__file__)
    lib = os.path.realpath(patchcore.library_path())
    print("installed tree")
    check(pkg.startswith(root + os.sep), "package imported from the install: %s" % pkg)
    check(lib.startswith(root + os.sep) and "PATCHCORE_LIBRARY" not in os.environ,
          "library found next to the package, without PATCHCORE_LIBRARY: %s" % lib)
    check(os.path.exists(os.path.join(os.path.dirname(pkg), "_paths.py")), "_paths.py written at install time")


def check_installed_predict():
    print("installed package: predictions equal the CLI's on the calibrated model")
    cal_path = os.path.join(WORK, "model_cal.pcm")
    tbad = listdir(os.path.join(BOTTLE, "test", "broken_large"))[:2]
    cli = cli_predict(cal_path, tbad, os.path.join(WORK, "maps_installed"))
    with patchcore.Model.load(cal_path) as m:
        for p in tbad:
            same_as_cli(m.predict(p), cli[p], os.path.relpath(p, BOTTLE))


def check_tiles():
    case = os.path.join(REF, "tiles")
    if not os.path.exists(os.path.join(case, "a_mean_map.npy")):
        print("note: %s absent: the tiling checks did not run" % case)
        return
    from PIL import Image
    train = [os.path.join(case, "train0.png"), os.path.join(case, "train1.png")]
    test = os.path.join(case, "test.png")
    m = patchcore.Model.fit(train, weights=WEIGHTS, sampler="none", tile=64, tile_overlap=0.25, tile_scale=0.5)
    check(m.info.tiling == dict(tile=64, overlap=0.25, scale=0.5, stitch="mean"), "tiles: info.tiling %r"
          % (m.info.tiling,))
    check(m.info.crop == 64 and m.info.n_train_images == 2, "tiles: crop %d, %d images"
          % (m.info.crop, m.info.n_train_images))
    arr = np.asarray(Image.open(test).convert("RGB"))
    for name, kw in (("a_mean", {}), ("a_max", dict(stitch="max")),
                     ("b_max", dict(stitch="max", tile_scale=1.0, tile_overlap=0.0))):
        ref = np.load(os.path.join(case, name + "_map.npy"))
        rs = float(np.load(os.path.join(case, name + "_score.npy"))[0])
        r = m.predict(test, **kw)
        ra = m.predict(arr, **kw)
        check(r.map.shape == (260, 300), "tiles %s: map shape %r" % (name, r.map.shape))
        err = float(np.abs(r.map - ref).max() / np.abs(ref).max())
        check(err <= 1e-4, "tiles %s: map error %.3g" % (name, err))
        check(abs(r.score - rs) <= 1e-4 * abs(rs), "tiles %s: score %r vs %r" % (name, r.score, rs))
        check(np.array_equal(r.map, ra.map) and r.score == ra.score, "tiles %s: array and path agree" % name)
        check(r.geometry["map_width"] == 300 and r.geometry["map_height"] == 260, "tiles %s: geometry %r"
              % (name, r.geometry))
    check(isinstance(raises(ValueError, m.predict, test, stitch="median"), ValueError), "tiles: stitch median")
    e = raises(patchcore.PatchcoreError, m.predict, np.zeros((50, 50, 3), np.uint8))
    check(isinstance(e, patchcore.PatchcoreError) and "smaller than a 64x64 tile" in str(e), "tiles: small image message %s" % e)
    m.close()


def main():
    print("patchcore %s from %s, library %s" % (patchcore.__version__, patchcore.__file__, patchcore.library_path()))
    check_layout()
    have_data = os.path.isdir(BOTTLE) and os.path.isfile(WEIGHTS)
    if MODE == "installed":
        check_installed()
        if have_data and os.path.exists(os.path.join(WORK, "model_cal.pcm")):
            check_installed_predict()
    else:
        check_basics()
        if have_data:
            check_with_data()
            check_update()
            check_tiles()
            check_roi()
    if failures:
        print("FAILED %d check(s):\n  %s" % (len(failures), "\n  ".join(failures)))
        return 1
    if not have_data:
        print("SKIP: %s or %s absent: the checks against the CLI, PIL and PyTorch did not run" % (BOTTLE, WEIGHTS))
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
