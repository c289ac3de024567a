"""Reference weight files for tests/test_weights.c, written by PyTorch itself (the oracle).

Writes into OUTDIR:
  small.pth, small_legacy.pth, small.safetensors, small_deflate.pth
      one small state dict (fixed seed) in every format: float32/float16/float64/bfloat16 tensors with
      edge values, an int64 num_batches_tracked, an int32 tensor, two views sharing one storage at
      non-zero offsets, a transposed (non-contiguous) view, a 0-dim tensor and an empty tensor.
      The safetensors file is written by hand from the format's spec (no safetensors package here);
      small_deflate.pth is small.pth re-zipped with deflate (torch itself stores entries).
  small_values.npy + small_manifest.txt
      what torch.load returns for it: each float tensor's values as float32 (torch's own conversion),
      concatenated; the manifest has one line per tensor: name dtype ndim dims... offset (-1 for ints).
  r18_values.npy + r18_manifest.txt + r18_legacy.pth
      the same for the real ../shared ResNet-18 (torch.load of its .pth), and that state dict re-saved
      by torch in the legacy format (when ../shared is present).
  bad/*.{pth,safetensors} + bad/expect.txt
      malformed files, each with the status code the reader must return and a phrase its error must
      contain: "FILE STATUS PHRASE..." per line.
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

OUT = common.outdir()

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.float64: "F64", torch.bfloat16: "BF16",
            torch.int64: "I64", torch.int32: "I32"}
C_DTYPE = {torch.float32: "f32", torch.float16: "f16", torch.float64: "f64", torch.bfloat16: "bf16",
           torch.int64: "i64", torch.int32: "i32"}


def small_state_dict():
    g = torch.Generator().manual_seed(1234)
    sd = collections.OrderedDict()
    sd["conv1.weight"] = torch.randn(4, 3, 3, 3, generator=g)
    half = torch.randn(5, 7, generator=g).half()
    # Edge values of float16: infinities, NaN, signed zero, the largest value, subnormals.
    edge = [float("inf"), float("-inf"), float("nan"), -0.0, 65504.0, 2.0 ** -24, -(2.0 ** -24) * 37,
            2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 1.0 / 3.0]
    half.view(-1)[:len(edge)] = torch.tensor(edge).half()
    sd["half.weight"] = half
    dbl = torch.randn(3, 4, generator=g, dtype=torch.float64)
    dbl.view(-1)[:4] = torch.tensor([1e300, -1e-300, 1.0 + 2.0 ** -30, 3.4028235677973366e38], dtype=torch.float64)
    sd["double.weight"] = dbl
    sd["bf16.weight"] = torch.randn(6, generator=g).bfloat16()
    sd["bn1.weight"] = torch.rand(8, generator=g) + 0.5
    sd["bn1.running_var"] = torch.rand(8, generator=g) + 0.1
    sd["bn1.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd["counts"] = torch.arange(6, dtype=torch.int32).reshape(2, 3)
    base = torch.randn(30, generator=g)
    sd["shared.a"] = base[4:10]                     # storage offset 4
    sd["shared.b"] = base[10:30].view(4, 5)         # same storage, offset 10
    sd["transposed"] = torch.randn(3, 4, generator=g).t()   # strides (1, 4)
    sd["scalar"] = torch.tensor(3.5)
    sd["empty"] = torch.zeros(0, 3)
    return sd


def write_values(sd, stem):
    """stem_values.npy (float32 of every float tensor, concatenated) + stem_manifest.txt."""
    vals, off, lines = [], 0, []
    for name, t in sd.items():
        dims = " ".join(str(s) for s in t.shape)
        if t.dtype.is_floating_point:
            v = t.float().contiguous().numpy().reshape(-1)   # torch's own conversion to float32
            lines.append("%s %s %d %s %d" % (name, C_DTYPE[t.dtype], t.dim(), dims, off))
            vals.append(v)
            off += v.size
        else:
            lines.append("%s %s %d %s -1" % (name, C_DTYPE[t.dtype], t.dim(), dims))
    common.save(OUT, stem + "_values.npy", np.concatenate(vals) if vals else np.zeros(0, np.float32))
    with open(os.path.join(OUT, stem + "_manifest.txt"), "w") as f:
        f.write("\n".join(" ".join(l.split()) for l in lines) + "\n")


def safetensors_bytes(sd, metadata=None, header_override=None, pad=True):
    """The safetensors format from its spec: u64 LE header size, JSON header, raw little-endian data."""
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, t in sd.items():
        t = t.contiguous()
        raw = t.view(torch.int16).numpy().tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {"dtype": ST_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = header_override if header_override is not None else json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


# --- hand-made .pth files (for the malformed cases): our own pickler emitting what torch.save emits ---

class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride, fn=None):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        self.fn = fn or torch._utils._rebuild_tensor_v2

    def __reduce__(self):
        return (self.fn, self.args)


class Call:
    """Pickles as a call of any global: what a hostile file does."""
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def pickle_bytes(obj):
    b = io.BytesIO()
    Pickler(b, protocol=2).dump(obj)
    return b.getvalue()


def zip_pth(pkl, storages, prefix="archive", deflate=False, extra=None):
    b = io.BytesIO()
    mode = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(b, "w", mode) as z:
        z.writestr(prefix + "/data.pkl", pkl)
        for k, v in storages.items():
            z.writestr(prefix + "/data/" + k, v)
        z.writestr(prefix + "/version", "3\n")
        for k, v in (extra or {}).items():
            z.writestr(prefix + "/" + k, v)
    return b.getvalue()


def rezip(src, dst, deflate):
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED) as zo:
        for info in zi.infolist():
            zo.writestr(info.filename, zi.read(info.filename))


def main():
    sd = small_state_dict()
    torch.save(sd, os.path.join(OUT, "small.pth"))
    torch.save(sd, os.path.join(OUT, "small_legacy.pth"), _use_new_zipfile_serialization=False)
    rezip(os.path.join(OUT, "small.pth"), os.path.join(OUT, "small_deflate.pth"), deflate=True)
    # Variants of the same tensors: pickle protocol 4 (FRAME, STACK_GLOBAL, MEMOIZE), nn.Parameter
    # values (_rebuild_parameter), and a training checkpoint holding the state dict under "state_dict".
    torch.save(sd, os.path.join(OUT, "small_p4.pth"), pickle_protocol=4)
    params = collections.OrderedDict((k, torch.nn.Parameter(v, requires_grad=False) if v.is_floating_point() else v)
                                     for k, v in sd.items())
    torch.save(params, os.path.join(OUT, "small_param.pth"))
    torch.save({"epoch": 3, "lr": 0.1, "state_dict": sd}, os.path.join(OUT, "small_ckpt.pth"),
               _use_new_zipfile_serialization=False)
    st_sd = collections.OrderedDict((k, v) for k, v in sd.items())
    with open(os.path.join(OUT, "small.safetensors"), "wb") as f:
        f.write(safetensors_bytes(st_sd, metadata={"format": "pt", "note": "caf\u00e9 \"quoted\"\n"}))
    # What torch itself reads back is the oracle (so the files' own encoding is checked too).
    for fn in ("small.pth", "small_legacy.pth", "small_deflate.pth", "small_p4.pth", "small_param.pth"):
        back = torch.load(os.path.join(OUT, fn))
        assert list(back) == list(sd) and all(torch.equal(back[k], sd[k]) or k == "half.weight" for k in sd)
    write_values(sd, "small")

    r18 = common.weights_r18("pth")
    if r18:
        w = torch.load(r18, map_location="cpu")
        write_values(w, "r18")
        torch.save(w, os.path.join(OUT, "r18_legacy.pth"), _use_new_zipfile_serialization=False)
    write_bad()


def write_bad():
    d = os.path.join(OUT, "bad")
    os.makedirs(d, exist_ok=True)
    expect = []

    def put(name, data, status, phrase):
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        expect.append("%s %s %s" % (name, status, phrase))

    f4 = struct.pack("<4f", 1, 2, 3, 4)
    ok_storage = Storage(torch.FloatStorage, "0", 4)

    def sd_of(**tensors):
        return collections.OrderedDict(tensors)

    # A valid hand-made file first, so that the crafting itself is known to be right.
    put("ok_handmade.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [2, 2], [2, 1]))), {"0": f4}), "OK", "-")
    back = torch.load(os.path.join(d, "ok_handmade.pth"))
    assert back["w"].tolist() == [[1, 2], [3, 4]]

    # Hostile pickles.
    put("global_system.pth", zip_pth(pickle_bytes(sd_of(w=Call(os.system, "echo pwned"))), {}),
        "UNSUPPORTED", "posix.system")
    put("global_eval.pth", zip_pth(pickle_bytes(Call(eval, "1+1")), {}), "UNSUPPORTED", "__builtin__.eval")
    put("global_load_from_bytes.pth",
        zip_pth(pickle_bytes(sd_of(w=Call(torch.storage._load_from_bytes, b"x"))), {}),
        "UNSUPPORTED", "torch.storage._load_from_bytes")
    # GLOBAL 'os\nsystem' spelled by hand, as the brief's example.
    put("global_os_system.pth", zip_pth(b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.", {}),
        "UNSUPPORTED", "os.system")
    good = pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [4], [1])))
    put("opcode_unknown.pth", zip_pth(good[:2] + b"\xff" + good[2:], {"0": f4}), "UNSUPPORTED", "opcode 0xff")
    put("opcode_inst.pth", zip_pth(good[:2] + b"(ios\nsystem\n" + good[2:], {"0": f4}), "UNSUPPORTED", "INST")
    put("pickle_truncated.pth", zip_pth(good[:len(good) // 2], {"0": f4}), "FORMAT", "truncated")
    put("pickle_no_stop.pth", zip_pth(good[:-1], {"0": f4}), "FORMAT", "truncated")
    put("pickle_memo.pth", zip_pth(b"\x80\x02}r\xff\xff\xff\x7f.", {}), "FORMAT", "memo")
    put("pickle_get_missing.pth", zip_pth(b"\x80\x02h\x05.", {}), "FORMAT", "memo")
    put("pickle_stack_underflow.pth", zip_pth(b"\x80\x02s.", {}), "FORMAT", "stack")
    put("pickle_not_dict.pth", zip_pth(pickle_bytes([1, 2]), {}), "FORMAT", "dictionary")
    put("pickle_bad_key.pth", zip_pth(pickle_bytes({5: Tensor(ok_storage, 0, [4], [1])}), {"0": f4}),
        "FORMAT", "key")
    # Storages and tensors out of range.
    put("storage_type.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(Storage(torch.ComplexFloatStorage, "0", 2), 0, [2], [1]))),
                                    {"0": f4}), "UNSUPPORTED", "ComplexFloatStorage")
    put("storage_missing.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(Storage(torch.FloatStorage, "7", 4), 0, [4], [1]))),
                                       {"0": f4}), "FORMAT", "data/7")
    put("size_exceeds.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [5], [1]))), {"0": f4}),
        "FORMAT", "storage")
    put("size_exceeds_2d.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 1, [2, 2], [2, 1]))), {"0": f4}),
        "FORMAT", "storage")
    put("size_huge.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [2 ** 62, 2 ** 62], [1, 1]))), {"0": f4}),
        "TOO_LARGE", "overflow")
    put("size_huge_long.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [2 ** 70], [1]))), {"0": f4}),
        "FORMAT", "integer")
    put("size_negative.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [-4], [1]))), {"0": f4}),
        "FORMAT", "negative")
    put("offset_past_end.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 2 ** 40, [1], [1]))), {"0": f4}),
        "FORMAT", "storage")
    put("offset_huge.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 2 ** 62, [4], [2 ** 61]))), {"0": f4}),
        "FORMAT", "storage")
    put("stride_negative.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 3, [4], [-1]))), {"0": f4}),
        "FORMAT", "stride")
    put("dims_too_many.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [1] * 9, [1] * 9))), {"0": f4}),
        "UNSUPPORTED", "dimensions")
    put("dims_mismatch.pth", zip_pth(pickle_bytes(sd_of(w=Tensor(ok_storage, 0, [2, 2], [1]))), {"0": f4}),
        "FORMAT", "stride")
    put("byteorder_big.pth", zip_pth(good, {"0": f4}, extra={"byteorder": "big"}), "UNSUPPORTED", "big")
    put("no_data_pkl.pth", zip_pth(good, {"0": f4})[0:0] + zip_entries({"archive/version": b"3\n"}), "FORMAT", "data.pkl")

    # Safetensors.
    st = safetensors_bytes(collections.OrderedDict(a=torch.arange(4.0), b=torch.arange(2.0)))
    hlen = struct.unpack("<Q", st[:8])[0]
    put("st_header_too_long.safetensors", struct.pack("<Q", len(st) + 10) + st[8:], "FORMAT", "exceeds the file size")
    put("st_truncated_data.safetensors", st[:-4], "FORMAT", "outside")
    put("st_bad_json.safetensors", safetensors_bytes({}, header_override=b'{"a": {"dtype": "F32", "shape": [1], '
                                                     b'"data_offsets": [0, 4]}') + b"\0" * 4, "FORMAT", "JSON")
    put("st_trailing_comma.safetensors", safetensors_bytes({}, header_override=b'{"a": {"dtype": "F32", "shape": [1],'
                                                           b' "data_offsets": [0, 4],}}') + b"\0" * 4, "FORMAT", "JSON")
    put("st_bad_escape.safetensors", safetensors_bytes({}, header_override=b'{"a\\q": {"dtype": "F32", "shape": [1],'
                                                       b' "data_offsets": [0, 4]}}') + b"\0" * 4, "FORMAT", "escape")
    put("st_not_object.safetensors", safetensors_bytes({}, header_override=b'{"a": [1]}'), "FORMAT", "JSON")

    def st_with(entries, data_len):
        return safetensors_bytes({}, header_override=json.dumps(entries).encode()) + b"\0" * data_len

    put("st_overlap.safetensors", st_with({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, 12),
        "FORMAT", "overlap")
    put("st_out_of_range.safetensors", st_with({"a": {"dtype": "F32", "shape": [250], "data_offsets": [0, 1000]}}, 8),
        "FORMAT", "outside")
    put("st_reversed.safetensors", st_with({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}, 8),
        "FORMAT", "outside")
    put("st_size_mismatch.safetensors", st_with({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, 8),
        "FORMAT", "needs 12")
    put("st_unknown_dtype.safetensors", st_with({"a": {"dtype": "Q4_K", "shape": [2], "data_offsets": [0, 8]}}, 8),
        "UNSUPPORTED", "Q4_K")
    put("st_huge_shape.safetensors", st_with({"a": {"dtype": "F32", "shape": [2 ** 40, 2 ** 40],
                                                    "data_offsets": [0, 8]}}, 8), "TOO_LARGE", "overflow")
    put("st_huge_offsets.safetensors", st_with({"a": {"dtype": "F32", "shape": [2],
                                                      "data_offsets": [2 ** 63 - 8, 2 ** 63]}}, 8), "FORMAT", "integer")
    put("st_negative_shape.safetensors", st_with({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, 8),
        "FORMAT", "JSON")
    put("st_missing_dtype.safetensors", st_with({"a": {"shape": [2], "data_offsets": [0, 8]}}, 8), "FORMAT", "dtype")
    put("st_metadata_nonstring.safetensors", st_with({"__metadata__": {"x": 1}}, 0), "FORMAT", "__metadata__")
    put("st_duplicate.safetensors", safetensors_bytes({}, header_override=b'{"a": {"dtype": "F32", "shape": [1], '
                                                      b'"data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], '
                                                      b'"data_offsets": [4, 8]}}') + b"\0" * 8, "FORMAT", "twice")
    put("st_too_short.safetensors", b"\x05\x00\x00\x00", "FORMAT", "not a recognised")
    put("not_weights.bin", b"hello world, this is not a weights file\n", "FORMAT", "not a recognised")
    put("empty.pth", b"", "FORMAT", "empty")

    # Legacy files: the valid one cut, and with a bad magic number or sys_info.
    b = io.BytesIO()
    torch.save(collections.OrderedDict(w=torch.arange(4.0)), b, _use_new_zipfile_serialization=False)
    leg = b.getvalue()
    put("legacy_cut_data.pth", leg[:-3], "FORMAT", "truncated")
    put("legacy_cut_pickle.pth", leg[:200], "FORMAT", "truncated")
    put("legacy_bad_magic.pth", leg.replace(b"\x6c\xfc\x9c\x46", b"\x6c\xfc\x9c\x47", 1), "FORMAT", "magic")
    put("legacy_big_endian.pth", leg.replace(b"\x88", b"\x89", 1), "UNSUPPORTED", "big-endian")
    numel_at = len(leg) - 16 - 8
    put("legacy_numel_huge.pth", leg[:numel_at] + struct.pack("<q", 2 ** 62) + leg[numel_at + 8:], "FORMAT", "storage")

    # A flipped bit inside a storage's data: only the CRC-32 can tell.
    small = open(os.path.join(OUT, "small.pth"), "rb").read()
    with zipfile.ZipFile(io.BytesIO(small)) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    lh = info.header_offset
    at = lh + 30 + struct.unpack("<H", small[lh + 26:lh + 28])[0] + struct.unpack("<H", small[lh + 28:lh + 30])[0] + 5
    put("crc_mismatch.pth", small[:at] + bytes([small[at] ^ 0x10]) + small[at + 1:], "FORMAT", "CRC-32 mismatch in storage")

    with open(os.path.join(d, "expect.txt"), "w") as f:
        f.write("\n".join(expect) + "\n")


def zip_entries(entries):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        for k, v in entries.items():
            z.writestr(k, v)
    return b.getvalue()


main()
