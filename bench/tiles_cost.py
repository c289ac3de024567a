"""tiles_cost.py - predict cost of tiling on bottle at 900 x 900 (docs/tiles.md, "Figures"): wall and
process CPU time of Model.predict on the first 5 broken_large test images (decoded arrays, after one
warm-up), median, per image and per megapixel. Configs: "default" (Resize 256, CenterCrop 224, 10
training images, coreset_ratio 0.1 or, as "default2000", coreset_size 2000) and tile sizes ("224",
"320": 3 training images, a 2,000-entry random bank). ResNet-18 layers 2+3.
Usage: PYTHONPATH=python PATCHCORE_LIBRARY=build/libpatchcore.so.0 /usr/bin/python3 bench/tiles_cost.py \
           ../shared/data/mvtec_ad/bottle ../shared/weights/resnet18_in1k_to_layer3.pth "default default2000 224 320"
"""
import os, sys, time, resource
import numpy as np
from PIL import Image
import patchcore
bottle, w = sys.argv[1:3]
good = os.path.join(bottle, "train", "good")
allp = [os.path.join(good, f) for f in sorted(os.listdir(good))]
train = [allp[int(i * len(allp) / 10)] for i in range(10)]
tb = os.path.join(bottle, "test", "broken_large")
imgs = [np.asarray(Image.open(os.path.join(tb, f)).convert("RGB")) for f in sorted(os.listdir(tb))[:5]]
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
for cfg in sys.argv[3].split():
    opts = dict(weights=w, layers="layer2,layer3")
    if cfg == "default":
        opts.update(coreset_ratio=0.1)
    elif cfg == "default2000":
        opts.update(coreset_size=2000)
    else:
        opts.update(tile=int(cfg), coreset_size=2000, sampler="random")
    m = patchcore.Model.fit(train[:10] if cfg.startswith("default") else train[:3], **opts)
    m.predict(imgs[0])
    wall, cp = [], []
    for a in imgs:
        t0, c0 = time.perf_counter(), cpu()
        m.predict(a)
        wall.append((time.perf_counter() - t0) * 1e3); cp.append((cpu() - c0) * 1e3)
    print("%-8s bank %5d  wall median %8.1f ms  cpu median %8.1f ms (%.1f ms/MP wall, %.1f cpu-ms/MP)  load %.1f" % (
        cfg, m.info.bank_size, np.median(wall), np.median(cp), np.median(wall) / 0.81, np.median(cp) / 0.81, os.getloadavg()[0]))
    sys.stdout.flush()
