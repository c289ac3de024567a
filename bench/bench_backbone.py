"""torchvision's side of bench/backbone.sh: wide_resnet50_2 to layer3, eval + no_grad, with
torch.set_num_threads(T); prints "torch batch=N threads=T size=S median_ms=... min_ms=...".
With --save PATH it writes a random-weight wide_resnet50_2 state dict (to layer3, zip .pth) for the
C side and exits. Run with /usr/bin/python3."""
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
a = ap.parse_args()

torch.set_num_threads(a.threads)
cpuinfo.platform()  # stderr: CPU, instruction sets, torch's CPU capability, OpenBLAS core
torch.manual_seed(0)
m = torchvision.models.wide_resnet50_2(weights=None).eval()
if a.save:
    torch.save({k: v for k, v in m.state_dict().items() if not k.startswith(("layer4", "fc"))}, a.save)
    raise SystemExit(0)
trunk = torch.nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3).eval()
x = torch.randn(a.batch, 3, a.size, a.size)
with torch.no_grad():
    trunk(x)  # warm-up
    ts = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        trunk(x)
        ts.append((time.perf_counter() - t0) * 1e3)
print("torch batch=%d threads=%d size=%d median_ms=%.2f min_ms=%.2f" % (a.batch, a.threads, a.size,
                                                                        statistics.median(ts), min(ts)))
