"""Reference backbones for tests/test_backbone.c, computed by torchvision 0.14 itself (the oracle).

For every architecture: the torchvision model with a fixed seed and non-trivial batch-norm (random
weight, bias, running_mean and positive running_var), saved as a zip .pth, a legacy .pth
(_use_new_zipfile_serialization=False) and a .safetensors (written by hand from the format's spec:
8-byte little-endian header length, JSON {name: {dtype, shape, data_offsets}}, raw bytes), and its
layer outputs on real preprocessed bottle images. The inputs are saved too (input_S.npy, batch of 2),
so the C test does not depend on the image decoder.

To keep CI time and disk sane the deep archs run on 64x64 inputs and are saved up to layer3 in
float16 (the model computes with the same float16-rounded values), resnet34/50 at 96x96, and
resnet18 and wide_resnet50_2 at 224x224. resnet18's file is complete (layer4 and fc too): it tests
that tensors beyond the requested layer are ignored, and gives the layer4 reference.

Writes OUTDIR/manifest.txt: "arch size max_layer nfiles" per line, and the files
ARCH.pth, ARCH_legacy.pth, ARCH.safetensors, ARCH_layerN.npy, input_S.npy;
r18real_input.npy + r18real_layer{2,3}.npy (the real ResNet-18 of ../shared on bottle images);
bad_*.safetensors for the validation tests.

The reference's batch-norm warm-up (METHOD.md §2), done by torchvision itself in three lines
(model.train(), a forward of torch.ones(1, 3, S, S) up to the deepest requested layer, model.eval()):
for one architecture of each family (BasicBlock, Bottleneck, wide, grouped) at S = 224 and 320, with
the warm-up stopping at layer2 and at layer3, the layer outputs of one bottle image at S:
warm_ARCH_S_lD_layerN.npy (N = 1..D) and warm_input_S.npy, listed in warm_manifest.txt as
"arch S D" lines; and the same for the real ResNet-18 of ../shared (r18real_warm_S_layerN.npy).
"""
import copy
import collections
import os
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torchref import inputs, randomise_bn, save_safetensors  # noqa: E402
from torchref import resnet_layers as layers  # noqa: E402

OUT = common.outdir()
torch.set_num_threads(2)

# arch, input size, deepest layer saved and compared, float16 file
CONFIGS = [
    ("resnet18", 224, 4, False),
    ("resnet34", 96, 3, False),
    ("resnet50", 96, 3, False),
    ("resnet101", 64, 3, True),
    ("resnet152", 64, 3, True),
    ("wide_resnet50_2", 224, 3, False),
    ("wide_resnet101_2", 64, 3, True),
    ("resnext50_32x4d", 96, 3, False),
    ("resnext101_32x8d", 64, 3, True),
]


WARM_ARCHS = ("resnet18", "resnet50", "wide_resnet50_2", "resnext50_32x4d")
WARM_SIZES = (224, 320)


def warmed(model, size, deepest):
    """A copy of model after the reference's warm-up: training mode, ones(1, 3, S, S) to layer `deepest`."""
    m = copy.deepcopy(model).train()
    with torch.no_grad():
        layers(m, torch.ones(1, 3, size, size), deepest)
    return m.eval()


manifest = []
warm_manifest = []
inp = {}
for idx, (arch, size, upto, half) in enumerate(CONFIGS):
    torch.manual_seed(1000 + idx)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    randomise_bn(model, torch.Generator().manual_seed(2000 + idx))
    sd = model.state_dict()
    if arch != "resnet18":
        sd = collections.OrderedDict((k, v) for k, v in sd.items() if not k.startswith(("layer4", "fc")))
    if half:
        sd = collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())
        # the reference computes with exactly the values the file holds
        model.load_state_dict(collections.OrderedDict((k, v.float() if v.is_floating_point() else v)
                                                      for k, v in sd.items()), strict=False)
    torch.save(sd, os.path.join(OUT, arch + ".pth"))
    torch.save(sd, os.path.join(OUT, arch + "_legacy.pth"), _use_new_zipfile_serialization=False)
    save_safetensors(os.path.join(OUT, arch + ".safetensors"), sd)
    if size not in inp:
        inp[size] = inputs(size)
        common.save(OUT, "input_%d.npy" % size, inp[size].numpy())
    for i, y in enumerate(layers(model, inp[size], upto)):
        common.save(OUT, "%s_layer%d.npy" % (arch, i + 1), y.numpy())
    manifest.append("%s %d %d" % (arch, size, upto))
    if arch in WARM_ARCHS:
        for ws in WARM_SIZES:
            if ("w", ws) not in inp:
                inp[("w", ws)] = inputs(ws, n=1)
                common.save(OUT, "warm_input_%d.npy" % ws, inp[("w", ws)].numpy())
            for deepest in (2, 3):
                for i, y in enumerate(layers(warmed(model, ws, deepest), inp[("w", ws)], deepest)):
                    common.save(OUT, "warm_%s_%d_l%d_layer%d.npy" % (arch, ws, deepest, i + 1), y.numpy())
                warm_manifest.append("%s %d %d" % (arch, ws, deepest))

# Files that must be rejected by name: a wrong shape and a missing tensor (resnet18 up to layer2).
torch.manual_seed(7)
r18 = torchvision.models.resnet18(weights=None).eval()
sd = collections.OrderedDict((k, v) for k, v in r18.state_dict().items() if not k.startswith(("layer3", "layer4", "fc")))
bad = collections.OrderedDict(sd)
bad["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 3)
del bad["layer1.1.bn2.running_var"]
save_safetensors(os.path.join(OUT, "bad_shape_missing.safetensors"), bad)
# Not a ResNet at all.
save_safetensors(os.path.join(OUT, "bad_notresnet.safetensors"), collections.OrderedDict(w=torch.zeros(3, 3)))

# The real ResNet-18 of ../shared (conv1..layer3) on bottle images at 224.
w = common.weights_r18("pth")
if w is not None and common.bottle_dir() is not None:
    r18 = torchvision.models.resnet18(weights=None).eval()
    missing, unexpected = r18.load_state_dict(torch.load(w, map_location="cpu"), strict=False)
    assert not unexpected and all(k.startswith(("layer4", "fc")) for k in missing), (missing, unexpected)
    x = inputs(224)
    common.save(OUT, "r18real_input.npy", x.numpy())
    outs = layers(r18, x, 3)
    common.save(OUT, "r18real_layer2.npy", outs[1].numpy())
    common.save(OUT, "r18real_layer3.npy", outs[2].numpy())
    for ws in WARM_SIZES:
        xw = inputs(ws, n=1)
        common.save(OUT, "r18real_warm_input_%d.npy" % ws, xw.numpy())
        for i, y in enumerate(layers(warmed(r18, ws, 3), xw, 3)):
            common.save(OUT, "r18real_warm_%d_layer%d.npy" % (ws, i + 1), y.numpy())

with open(os.path.join(OUT, "warm_manifest.txt"), "w") as f:
    f.write("\n".join(warm_manifest) + "\n")
with open(os.path.join(OUT, "manifest.txt"), "w") as f:
    f.write("\n".join(manifest) + "\n")
