#!/bin/sh
# Regenerate the small seed corpora under fuzz/corpus/<target>/ from tiny synthetic inputs
# (a few hundred bytes to a few KB each; never the bottle images or the shared weights).
#   sh fuzz/make_corpus.sh        (needs /usr/bin/python3 with PIL + torch, and cc)
set -eu
cd "$(dirname "$0")/.."
C=fuzz/corpus
mkdir -p $C/image $C/weights $C/modelfile
/usr/bin/python3 - <<'PY'
import io, json, struct, zipfile
import numpy as np
from PIL import Image
import torch
C = "fuzz/corpus"
rng = np.random.default_rng(7)
def img(name, mode, size, fmt, **kw):
    a = rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8)
    im = Image.fromarray(a, "RGBA").convert(mode)
    im.save(f"{C}/image/{name}", fmt, **kw)
img("rgb.png", "RGB", (7, 5), "PNG")
img("rgba.png", "RGBA", (4, 9), "PNG")
img("grey.png", "L", (6, 6), "PNG")
img("pal.png", "P", (5, 3), "PNG")
img("interlaced.png", "RGB", (9, 9), "PNG", optimize=False)
Image.fromarray((rng.integers(0, 65536, (4, 4))).astype(np.uint16)).save(f"{C}/image/grey16.png")
img("rgb.jpg", "RGB", (16, 8), "JPEG", quality=80)
img("grey.jpg", "L", (8, 8), "JPEG")
img("progressive.jpg", "RGB", (12, 12), "JPEG", progressive=True)
img("cmyk.jpg", "CMYK", (8, 8), "JPEG")
# weights: zip-format .pth, legacy .pth, safetensors
sd = {"conv1.weight": torch.randn(2, 3, 1, 1), "bn1.running_mean": torch.zeros(2, dtype=torch.float64),
      "fc.bias": torch.randn(3).half(), "layer1.0.num_batches_tracked": torch.tensor(5)}
torch.save(sd, f"{C}/weights/small_zip.pth")
torch.save(sd, f"{C}/weights/small_legacy.pth", _use_new_zipfile_serialization=False)
torch.save({"state_dict": {"a": torch.arange(6.).reshape(2, 3).t()}}, f"{C}/weights/nested_strided.pth")
def safetensors(path, tensors):
    hdr, blob = {"__metadata__": {"format": "pt"}}, b""
    for k, (dt, arr) in tensors.items():
        b = arr.tobytes()
        hdr[k] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + blob)
safetensors(f"{C}/weights/small.safetensors",
            {"conv1.weight": ("F32", rng.standard_normal((2, 3, 1, 1)).astype(np.float32)),
             "bn1.bias": ("F16", rng.standard_normal(2).astype(np.float16)),
             "x.y": ("BF16", np.array([0x3f80, 0xc000], dtype=np.uint16)),
             "n": ("I64", np.array([3], dtype=np.int64))})
PY
# model files: written by our own writer (the fuzzer mutates them; their content is not an oracle)
tmp=$(mktemp -d)
cat > "$tmp/gen.c" <<'CEOF'
#include "modelfile.h"
int main(int argc, char **argv) {
    (void)argc;
    float a[6] = {1, 2, 3, 4, 5, 6}; unsigned char b[3] = {7, 8, 9};
    pc_mf_tensor t[2] = {{.name = "memory_bank", .dtype = PC_MF_F32, .ndim = 2, .shape = {2, 3}, .data = a, .nbytes = sizeof a},
                         {.name = "u8", .dtype = PC_MF_U8, .ndim = 1, .shape = {3}, .data = b, .nbytes = 3}};
    if (pc_modelfile_write(argv[1], "backbone = resnet18\nlayers = layer2,layer3\n", t, 2)) return 1;
    if (pc_modelfile_write(argv[2], NULL, t, 1)) return 1;
    return pc_modelfile_write(argv[3], "k = v\n", NULL, 0) != 0;
}
CEOF
cc -std=gnu11 -Isrc -Iinclude "$tmp/gen.c" src/modelfile.c src/status.c -lz -L/usr/lib/x86_64-linux-gnu/openblas-openmp -lopenblas -lm -o "$tmp/gen"
"$tmp/gen" $C/modelfile/two_tensors.pcm $C/modelfile/no_meta.pcm $C/modelfile/empty.pcm
rm -rf "$tmp"
ls -l $C/*/ | awk '{s+=$5} END {print "corpus bytes:", s}'
# command lines for fuzz_cli: first byte odd = fit, even = predict; arguments separated by NUL
mkdir -p $C/cli
printf '\001-o\000m.pcm\000--backbone\000resnet18\000--layers=layer2,layer3\000--coreset\0000.1\000good/' > $C/cli/fit1
printf '\001--resize=256\000--crop\000224\000--k\0003\000--seed=0\000--threads\0002\000-o\000x\000a.png\000b.png' > $C/cli/fit2
printf '\000-m\000m.pcm\000--maps\000out\000--json\000--threshold\0001.5\000test/' > $C/cli/predict1
printf '\000--model=m.pcm\000--fail-on-anomaly\000--threads=0\000a.png' > $C/cli/predict2
