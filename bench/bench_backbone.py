"""torchvision's side of bench/backbone.sh: wide_resnet50_2 (or --arch, a ResNet or a DenseNet) to layer3
(or --layer N: layerN, or denseblockN for a DenseNet, where the transition after it is not run), eval + no_grad, with
torch.set_num_threads(T); prints "torch arch=A precision=P batch=N threads=T size=S median_ms=... min_ms=...".
--precision bf16: the model and input in bfloat16 and channels-last (model.bfloat16() and
.to(memory_format=torch.channels_last)), the fastest bf16 CPU setting of torch 1.13 (oneDNN's bf16
kernels on AVX512-BF16); f32 is the default NCHW float32 model.
--weights FILE: load a state dict (e.g. ../shared's ResNet-18) instead of random weights.
With --save PATH it writes a random-weight state dict of --arch (to --layer, zip .pth) for the C side
and exits. Run with /usr/bin/python3."""
import argparse
import statistics
import time

import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpuinfo  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--size", type=int, default=224)
ap.add_argument("--save")
ap.add_argument("--arch", default="wide_resnet50_2")
ap.add_argument("--weights")
ap.add_argument("--precision", choices=("f32", "bf16"), default="f32")
ap.add_argument("--layer", type=int, default=3, choices=(1, 2, 3, 4))
a = ap.parse_args()

torch.set_num_threads(a.threads)
cpuinfo.platform()  # stderr: CPU, instruction sets, torch's CPU capability, OpenBLAS core
torch.manual_seed(0)
m = getattr(torchvision.models, a.arch)(weights=None).eval()
if a.weights:
    m.load_state_dict(torch.load(a.weights, map_location="cpu"), strict=False)
dense = a.arch.startswith("densenet")
if dense:
    names = ["conv0", "norm0", "relu0", "pool0"]
    for i in range(1, a.layer + 1):
        names += ["denseblock%d" % i] + (["transition%d" % i] if i < a.layer else [])
    keep = tuple("features.%s." % n for n in names)
else:
    names = ["conv1", "bn1", "relu", "maxpool"] + ["layer%d" % i for i in range(1, a.layer + 1)]
    keep = tuple("%s." % n for n in names)
if a.save:
    torch.save({k: v for k, v in m.state_dict().items() if k.startswith(keep)}, a.save)
    raise SystemExit(0)
trunk = torch.nn.Sequential(*[getattr(m.features if dense else m, n) for n in names]).eval()
x = torch.randn(a.batch, 3, a.size, a.size)
if a.precision == "bf16":
    trunk = trunk.bfloat16().to(memory_format=torch.channels_last)
    x = x.bfloat16().contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    trunk(x)  # warm-up
    ts, cs = [], []
    for _ in range(a.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        trunk(x)
        ts.append((time.perf_counter() - t0) * 1e3)
        cs.append((time.process_time() - c0) * 1e3)
print("torch arch=%s layer=%d precision=%s batch=%d threads=%d size=%d median_ms=%.2f min_ms=%.2f cpu_ms=%.2f"
      % (a.arch, a.layer, a.precision, a.batch, a.threads, a.size, statistics.median(ts), min(ts),
         statistics.median(cs)))
