"""bfloat16 references for tests/test_backbone.c (the PC_PRECISION_BF16 backbone, issue 12).

torchvision's network run entirely in bfloat16 the way a PyTorch user runs it on a CPU:
model.bfloat16() in channels-last, the input cast to bfloat16 (every convolution, batch-norm, ReLU
and residual add rounds to bf16), eval mode with the weights' own (trained) batch-norm statistics.
Next to it, the same network in float32, so the test can measure how far torch's own bf16 is from
float32 and hold ours to a multiple of that.

Inputs and weights:
  - the real ResNet-18 of ../shared on two bottle images at 224 (the same inputs as
    backbones/r18real_input.npy, recomputed here);
  - the random wide_resnet50_2 that gen_backbones.py wrote (read from ../backbones/wide_resnet50_2.pth,
    which tools/gen_refs.sh makes first) on its input_224.npy; skipped if that is absent.
Writes r18_input.npy, r18_f32_layerN.npy, r18_bf16_layerN.npy (N = 2, 3) and the same with the
prefix wrn (N = 1..3).
"""
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torchref import resnet_layers  # noqa: E402

OUT = common.outdir()
torch.set_num_threads(2)


def layers(model, x, upto):
    return [y.float().contiguous() for y in resnet_layers(model, x, upto)]


def both(prefix, model, x, keep):
    for i, y in enumerate(layers(model, x, max(keep))):
        if i + 1 in keep:
            common.save(OUT, "%s_f32_layer%d.npy" % (prefix, i + 1), y.numpy())
    mb = model.bfloat16().to(memory_format=torch.channels_last)
    xb = x.bfloat16().contiguous(memory_format=torch.channels_last)
    for i, y in enumerate(layers(mb, xb, max(keep))):
        if i + 1 in keep:
            common.save(OUT, "%s_bf16_layer%d.npy" % (prefix, i + 1), y.numpy())


w = common.weights_r18("pth")
bd = common.bottle_dir()
if w is not None and bd is not None:
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    files = [os.path.join(bd, "test", "broken_large", "000.png"), os.path.join(bd, "train", "good", "000.png")]
    x = torch.stack([tf(Image.open(f).convert("RGB")) for f in files])
    common.save(OUT, "r18_input.npy", x.numpy())
    r18 = torchvision.models.resnet18(weights=None).eval()
    r18.load_state_dict(torch.load(w, map_location="cpu"), strict=False)
    both("r18", r18, x, (2, 3))

sib = os.path.join(os.path.dirname(os.path.abspath(OUT)), "backbones")
if os.path.exists(os.path.join(sib, "wide_resnet50_2.pth")):
    wrn = torchvision.models.wide_resnet50_2(weights=None).eval()
    wrn.load_state_dict(torch.load(os.path.join(sib, "wide_resnet50_2.pth"), map_location="cpu"), strict=False)
    x = torch.from_numpy(np.load(os.path.join(sib, "input_224.npy")))
    common.save(OUT, "wrn_input.npy", x.numpy())
    both("wrn", wrn, x, (1, 2, 3))
