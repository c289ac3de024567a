"""Reference images and tensors for tests/test_image.c, made by PIL (Pillow) + torchvision.

Run as: /usr/bin/python3 tests/ref/gen_images.py OUTDIR. Writes into OUTDIR only:
  in/NAME.png|jpg        generated inputs (bottle images are read in place from ../shared, not copied)
  NAME_rgb.npy           PIL Image.open(f).convert("RGB")          (H, W, 3) uint8
  NAME_l.npy             PIL Image.open(f).convert("L")            (H, W) uint8
  NAME_rs{R}.npy         torchvision Resize(R) of the RGB image     (H', W', 3) uint8 (PIL bilinear)
  NAME_r{R}_c{S}.npy     Resize(R), CenterCrop(S), ToTensor, Normalize(ImageNet)  (3, S, S) float32
  NAME_m{R}_c{S}.npy     mask path, rule half: convert("L"), Resize(R), CenterCrop(S), then value >= 128
                         (= ToTensor >= 0.5)  (S, S) uint8 0/1
  NAME_mf{R}_c{S}.npy    mask path, rule full (the reference's): the same crop, then value == 255, checked here
                         to equal the reference code's ToTensor(mask).numpy().astype(int)  (S, S) uint8 0/1
  rz_NAME_in.npy/_out.npy  raw PIL Image.resize((w, h), BILINEAR) cases on random-ish arrays
  bad/*                  corrupt, truncated, empty, unsupported and oversized files
  manifest.txt           what test_image.c iterates, one record per line (format in the header lines)
"""
import os
import struct
import sys
import warnings
import zlib

import numpy as np
from PIL import Image
import torch
import torchvision.transforms as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = common.outdir()
IN = os.path.join(OUT, "in")
BAD = os.path.join(OUT, "bad")
os.makedirs(IN, exist_ok=True)
os.makedirs(BAD, exist_ok=True)
rng = np.random.default_rng(20240611)
manifest = [
    "# image NAME PATH            (PATH absolute or relative to OUTDIR)",
    "# pre NAME R S               NAME_r{R}_c{S}.npy and NAME_rs{R}.npy exist",
    "# mask NAME R S              NAME_m{R}_c{S}.npy (half) and NAME_mf{R}_c{S}.npy (full) exist",
    "# gtmask NAME PATH R S       a real ground-truth mask (not decoded as an image); the same two files",
    "# resize NAME IN_W IN_H CH OUT_W OUT_H",
    "# bad PATH STATUS            STATUS is a pc_status name without PC_ERR_",
]
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def content(h, w, ch, lo=0, hi=255):
    """Smooth structure + noise + hard edges: exercises every weight of the resize filter."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(ch):
        f = 0.5 + 0.35 * np.sin(x / (3.0 + 2 * c) + y / 7.0) * np.cos(y / (5.0 + c))
        f += 0.15 * rng.standard_normal((h, w))
        f[(x // 9 + y // 13) % 5 == 0] = (c * 0.37) % 1.0  # hard-edged blocks
        planes.append(np.clip(lo + f * (hi - lo), lo, hi))
    a = np.stack(planes, -1)
    return np.rint(a).astype(np.uint16 if hi > 255 else np.uint8)


# ---- a minimal PNG writer for what PIL cannot write (16-bit colour, 2/4-bit grey, interlacing) ----
def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_rows(a, depth):
    """a (h, w, ch) integer samples -> list of raw row bytes."""
    h, w = a.shape[:2]
    if depth == 16:
        return [a[y].astype(">u2").tobytes() for y in range(h)]
    if depth == 8:
        return [a[y].astype(np.uint8).tobytes() for y in range(h)]
    per = 8 // depth
    rows = []
    for y in range(h):
        v = a[y].reshape(-1).astype(np.uint8)
        pad = (-len(v)) % per
        v = np.concatenate([v, np.zeros(pad, np.uint8)]).reshape(-1, per)
        b = np.zeros(len(v), np.uint8)
        for i in range(per):
            b |= v[:, i] << (8 - depth * (i + 1))
        rows.append(b.tobytes())
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, a, depth, ctype, interlace=False, plte=None, trns=None):
    if a.ndim == 2:
        a = a[:, :, None]
    h, w = a.shape[:2]
    raw = b""
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += b"".join(b"\0" + r for r in pack_rows(sub, depth))
    else:
        raw = b"".join(b"\0" + r for r in pack_rows(a, depth))
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, int(interlace)))
    if plte is not None:
        data += png_chunk(b"PLTE", bytes(plte))
    if trns is not None:
        data += png_chunk(b"tRNS", bytes(trns))
    data += png_chunk(b"IDAT", zlib.compress(raw, 6)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# ---- inputs ----
images = {}  # NAME -> path


def add(name, path):
    images[name] = path


def save_pil(name, im, ext="png", **kw):
    p = os.path.join(IN, name + "." + ext)
    im.save(p, **kw)
    add(name, p)


def gen_inputs():
    save_pil("grey_100x37", Image.fromarray(content(37, 100, 1)[:, :, 0], "L"))
    save_pil("la_64x48", Image.fromarray(content(48, 64, 2), "LA"))
    save_pil("rgba_37x100", Image.fromarray(content(100, 37, 4), "RGBA"))
    rgb = Image.fromarray(content(70, 90, 3), "RGB")
    save_pil("pal_90x70", rgb.quantize(200))
    save_pil("pal_trns_90x70", rgb.quantize(64), transparency=3)
    p4 = rgb.quantize(16)
    save_pil("pal4bit_90x70", p4, bits=4)
    pt = rgb.quantize(32)
    pt.info["transparency"] = bytes(range(0, 256, 8))
    save_pil("pal_trns_bytes_90x70", pt, transparency=bytes(range(0, 256, 8)))
    save_pil("bilevel_33x21", Image.fromarray(content(21, 33, 1)[:, :, 0] > 128))
    # 16-bit grey: PIL opens it as mode "I" and clamps to 0..255 when converting; keep many values low.
    g16 = content(50, 61, 1, 0, 700)[:, :, 0]
    save_pil("grey16_61x50", Image.fromarray(g16.astype(np.uint16), "I;16"))
    write_png(os.path.join(IN, "grey16_il_45x40.png"), content(40, 45, 1, 0, 65535), 16, 0, interlace=True)
    add("grey16_il_45x40", os.path.join(IN, "grey16_il_45x40.png"))
    for name, a, depth, ctype, il in [
        ("rgb16_59x41", content(41, 59, 3, 0, 65535), 16, 2, False),
        ("rgba16_41x59", content(59, 41, 4, 0, 65535), 16, 6, False),
        ("la16_30x20", content(20, 30, 2, 0, 65535), 16, 4, False),
        ("grey2bit_23x17", content(17, 23, 1, 0, 3), 2, 0, False),
        ("grey4bit_23x17", content(17, 23, 1, 0, 15), 4, 0, False),
        ("rgb_il_77x51", content(51, 77, 3), 8, 2, True),
        ("rgba_il_9x7", content(7, 9, 4), 8, 6, True),
    ]:
        p = os.path.join(IN, name + ".png")
        write_png(p, a, depth, ctype, interlace=il)
        add(name, p)
    # palette with 10 entries but indices up to 15: PIL fills entries beyond the PLTE with (i, i, i)
    idx = (content(19, 25, 1, 0, 15)[:, :, 0]).astype(np.uint8)
    write_png(os.path.join(IN, "pal_short_25x19.png"), idx, 8, 3, plte=rng.integers(0, 256, 30, dtype=np.uint8),
              trns=[0, 128])
    add("pal_short_25x19", os.path.join(IN, "pal_short_25x19.png"))
    write_png(os.path.join(IN, "grey_trns_20x20.png"), content(20, 20, 1), 8, 0, trns=[0, 7])
    add("grey_trns_20x20", os.path.join(IN, "grey_trns_20x20.png"))
    # sizes where Resize/CenterCrop rounding is delicate, tiny ones and upscaling
    for w, h in [(257, 256), (256, 257), (255, 256), (259, 300), (300, 259), (5, 300), (300, 5), (1, 1), (3, 2),
                 (200, 199), (128, 97), (250, 250), (512, 512), (301, 483), (256, 256), (225, 224), (480, 270)]:
        save_pil("rgb_%dx%d" % (w, h), Image.fromarray(content(h, w, 3), "RGB"))
    col = Image.fromarray(content(180, 240, 3), "RGB")
    save_pil("jpeg_420_240x180", col, "jpg", quality=90)
    save_pil("jpeg_444_240x180", col, "jpg", quality=95, subsampling=0)
    save_pil("jpeg_prog_240x180", col, "jpg", quality=85, progressive=True)
    save_pil("jpeg_grey_123x77", Image.fromarray(content(77, 123, 1)[:, :, 0], "L"), "jpg", quality=90)
    save_pil("jpeg_grey_prog_77x123", Image.fromarray(content(123, 77, 1)[:, :, 0], "L"), "jpg", progressive=True)
    save_pil("jpeg_cmyk_64x48", Image.fromarray(content(48, 64, 4), "CMYK"), "jpg", quality=90)
    save_pil("jpeg_odd_301x17", Image.fromarray(content(17, 301, 3), "RGB"), "jpg", quality=75)
    bd = common.bottle_dir()
    if bd:
        for rel in ["train/good/000.png", "train/good/001.png", "test/broken_large/000.png"]:
            p = os.path.join(bd, rel)
            if os.path.exists(p):
                add("bottle_" + rel.replace("/", "_")[:-4], p)
    else:
        print("gen_images: ../shared absent, no bottle images", file=sys.stderr)


PAIRS = [(256, 224), (320, 320), (280, 224)]
PAD_PAIR = (224, 256)  # CenterCrop larger than the resized image: torchvision pads with 0


def tv_tensor(im, r, s):
    t = T.Compose([T.Resize(r), T.CenterCrop(s), T.ToTensor(), T.Normalize(MEAN, STD)])
    return t(im).numpy().astype(np.float32)


def tv_masks(im, r, s):
    """(half, full) 0/1 masks of a grey PIL image: PIL bilinear Resize + CenterCrop (torchvision on PIL),
    then value >= 128 and value == 255. The full rule is asserted to be what the reference code computes:
    ToTensor (v / 255 in float32) and .astype(int), which is 1 only at 1.0."""
    crop = np.asarray(T.CenterCrop(s)(T.Resize(r)(im)), dtype=np.uint8)
    half = (crop >= 128).astype(np.uint8)
    full = (crop == 255).astype(np.uint8)
    ref = T.ToTensor()(T.CenterCrop(s)(T.Resize(r)(im)))[0].numpy().astype(int)
    assert np.array_equal(ref, full), "ToTensor().astype(int) differs from value == 255"
    assert np.array_equal((T.ToTensor()(T.CenterCrop(s)(T.Resize(r)(im)))[0] >= 0.5).numpy(), half == 1)
    return half, full


def save_masks(name, im, r, s):
    half, full = tv_masks(im, r, s)
    common.save(OUT, "%s_m%d_c%d.npy" % (name, r, s), half)
    common.save(OUT, "%s_mf%d_c%d.npy" % (name, r, s), full)
    return half, full


def gen_refs():
    for name, path in sorted(images.items()):
        rel = os.path.relpath(path, OUT) if path.startswith(OUT) else path
        manifest.append("image %s %s" % (name, rel))
        with Image.open(path) as im0:
            rgb = im0.convert("RGB")
        with Image.open(path) as im0:
            grey = im0.convert("L")
        common.save(OUT, name + "_rgb.npy", np.asarray(rgb))
        common.save(OUT, name + "_l.npy", np.asarray(grey))
        big = name.startswith("bottle")
        # long thin images resize to huge arrays: only the default pair for them
        pairs = PAIRS + [PAD_PAIR] if (big or name in ("rgb_257x256", "rgb_259x300", "rgb_1x1")) else [PAIRS[0], PAD_PAIR]
        if name in ("rgb_5x300", "rgb_300x5", "jpeg_odd_301x17"):
            pairs = [PAIRS[0]]
        done_r = set()
        for r, s in pairs:
            if r not in done_r:
                common.save(OUT, "%s_rs%d.npy" % (name, r), np.asarray(T.Resize(r)(rgb)))
                done_r.add(r)
            common.save(OUT, "%s_r%d_c%d.npy" % (name, r, s), tv_tensor(rgb, r, s))
            manifest.append("pre %s %d %d" % (name, r, s))
        r, s = PAIRS[0]
        save_masks(name, grey, r, s)
        manifest.append("mask %s %d %d" % (name, r, s))
    bd = common.bottle_dir()
    gt = os.path.join(bd, "ground_truth/broken_large/000_mask.png") if bd else None
    if gt and os.path.exists(gt):
        manifest.append("image bottle_mask_bl000 %s" % gt)
        with Image.open(gt) as m:
            common.save(OUT, "bottle_mask_bl000_rgb.npy", np.asarray(m.convert("RGB")))
            common.save(OUT, "bottle_mask_bl000_l.npy", np.asarray(m.convert("L")))
            for r, s in PAIRS:
                save_masks("bottle_mask_bl000", m.convert("L"), r, s)
                manifest.append("mask bottle_mask_bl000 %d %d" % (r, s))
    # Every bottle ground-truth mask at the default geometry (and a padded one for two of them): the
    # two rules differ on each defect's anti-aliased rim.
    if bd:
        rim = 0
        gtd = os.path.join(bd, "ground_truth")
        for t in sorted(os.listdir(gtd)):
            for f in sorted(os.listdir(os.path.join(gtd, t))):
                path = os.path.join(gtd, t, f)
                name = "gt_%s_%s" % (t, f[:-len("_mask.png")])
                pairs = [PAIRS[0]] + ([PAD_PAIR, PAIRS[2]] if f.startswith("000") else [])
                with Image.open(path) as m:
                    grey = m.convert("L")
                for r, s in pairs:
                    half, full = save_masks(name, grey, r, s)
                    rim += int(half.sum()) - int(full.sum())
                    manifest.append("gtmask %s %s %d %d" % (name, path, r, s))
        assert rim > 0, "the two rules agree on every bottle mask: the test would be vacuous"


def gen_resize_cases():
    cases = [(37, 100, 3, 256, 691), (300, 256, 3, 280, 256), (256, 300, 1, 256, 280), (1, 1, 3, 7, 5),
             (5, 300, 1, 4, 301), (900, 900, 3, 256, 256), (13, 11, 1, 13, 11), (640, 480, 3, 333, 250),
             (33, 47, 4, 1, 1), (100, 37, 3, 1000, 13)]
    for i, (iw, ih, ch, ow, oh) in enumerate(cases):
        name = "rz%d" % i
        a = content(ih, iw, ch)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[ch]
        im = Image.fromarray(a[:, :, 0] if ch == 1 else a, mode)
        # RGBA is resized premultiplied by PIL; use RGBX semantics instead: resize each band as L
        if ch == 4:
            out = np.stack([np.asarray(Image.fromarray(a[:, :, c], "L").resize((ow, oh), Image.BILINEAR))
                            for c in range(4)], -1)
        else:
            out = np.asarray(im.resize((ow, oh), Image.BILINEAR))
        common.save(OUT, name + "_in.npy", a)
        common.save(OUT, name + "_out.npy", out.reshape(oh, ow, ch))
        manifest.append("resize %s %d %d %d %d %d" % (name, iw, ih, ch, ow, oh))


def gen_bad():
    def put(name, data, status):
        p = os.path.join(BAD, name)
        with open(p, "wb") as f:
            f.write(data)
        manifest.append("bad %s %s" % (os.path.relpath(p, OUT), status))

    png = open(images["rgb_128x97"], "rb").read()
    for off in [4, 8, 20, 33, 45, len(png) // 2, len(png) - 20]:
        put("trunc_%d.png" % off, png[:off], "FORMAT")
    b = bytearray(png)
    b[29] ^= 0xFF  # IHDR CRC
    put("bad_ihdr_crc.png", bytes(b), "FORMAT")
    b = bytearray(png)
    b[60] ^= 0x55  # inside the compressed image data (zlib or IDAT CRC complains)
    put("bad_idat.png", bytes(b), "FORMAT")
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0))
    put("bomb_100000x100000.png", bomb + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""),
        "TOO_LARGE")
    put("zero_width.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 10, 8, 2, 0, 0, 0)),
        "FORMAT")
    put("bad_depth.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 10, 10, 7, 2, 0, 0, 0)),
        "FORMAT")
    jpg = open(images["jpeg_420_240x180"], "rb").read()
    for off in [2, 3, 100, len(jpg) // 2, len(jpg) - 100]:
        put("trunc_%d.jpg" % off, jpg[:off], "FORMAT")
    # a 65000x65000 JPEG header: patch the SOF0 frame size
    j = bytearray(jpg)
    k = j.find(b"\xff\xc0")
    j[k + 5:k + 9] = struct.pack(">HH", 65000, 65000)
    put("bomb_65000.jpg", bytes(j), "TOO_LARGE")
    put("empty.png", b"", "FORMAT")
    put("random.bin", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "FORMAT")
    put("text.png", b"this is not an image\n" * 10, "FORMAT")
    bmp = os.path.join(BAD, "small.bmp")
    Image.fromarray(content(8, 8, 3), "RGB").save(bmp)
    manifest.append("bad bad/small.bmp UNSUPPORTED")
    gif = os.path.join(BAD, "small.gif")
    Image.fromarray(content(8, 8, 3), "RGB").convert("P").save(gif)
    manifest.append("bad bad/small.gif UNSUPPORTED")
    manifest.append("bad bad/does_not_exist.png IO")


if __name__ == "__main__":
    torch.set_num_threads(1)
    # PIL warns that P images with per-entry alpha should become RGBA; we want exactly convert("RGB")
    warnings.filterwarnings("ignore", message="Palette images with Transparency")
    gen_inputs()
    gen_refs()
    gen_resize_cases()
    gen_bad()
    with open(os.path.join(OUT, "manifest.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print("gen_images: %d images, %d manifest lines" % (len(images), len(manifest)), file=sys.stderr)
