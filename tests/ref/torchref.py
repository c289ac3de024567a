"""What the backbone reference generators (gen_backbones.py, gen_backbones_bf16.py, gen_densenet.py)
share: a safetensors writer following the format's spec, the bottle images they feed the networks,
random batch-norm statistics for random-initialised networks, and a ResNet's layer outputs. Imported,
never run: gen_refs.sh regenerates every reference when a shared module changes.
"""
import collections
import json
import os
import struct
import sys

import torch
from PIL import Image
from torchvision import transforms

import common

ST_DTYPE = {torch.float32: "F32", torch.float16: "F16", torch.int64: "I64"}


def save_safetensors(path, sd):
    header, blobs, off = collections.OrderedDict(), [], 0
    for k, v in sd.items():
        b = v.contiguous().numpy().tobytes()
        header[k] = {"dtype": ST_DTYPE[v.dtype], "shape": list(v.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def inputs(size, n=2):
    """n bottle images through Resize(size*256/224) + CenterCrop(size) + ToTensor + Normalize."""
    tf = transforms.Compose([transforms.Resize(size * 256 // 224), transforms.CenterCrop(size), transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    bd = common.bottle_dir()
    if bd is None:  # ../shared absent: a fixed random input keeps the architecture tests meaningful
        print("%s: no bottle images, using a random input" % os.path.basename(sys.argv[0]), file=sys.stderr)
        return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(size))
    files = [os.path.join(bd, "test", "broken_large", "000.png"), os.path.join(bd, "train", "good", "000.png")]
    return torch.stack([tf(Image.open(f).convert("RGB")) for f in files[:n]])


def randomise_bn(model, g):
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = torch.rand(c, generator=g) * 0.8 + 0.4
            m.bias.data = torch.randn(c, generator=g) * 0.2
            m.running_mean.data = torch.randn(c, generator=g) * 0.2
            m.running_var.data = torch.rand(c, generator=g) * 1.5 + 0.5


def resnet_layers(model, x, upto):
    """The outputs of a torchvision ResNet's layer1..upto (eval or train mode as the model is)."""
    outs = []
    with torch.no_grad():
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for i in range(upto):
            x = getattr(model, "layer%d" % (i + 1))(x)
            outs.append(x)
    return outs
