"""Reference DenseNets for tests/test_densenet.c, computed by torchvision 0.14 itself (the oracle).

densenet121 (complete file: every block, norm5 and the classifier, which the loader must ignore) and
densenet201 (up to denseblock3: the paper's backbone), randomly initialised with a fixed seed and
non-trivial batch-norm (random weight, bias, running_mean and positive running_var, as
gen_backbones.py does), each saved as
  ARCH.pth            torchvision 0.14's names (features.denseblock1.denselayer1.norm1.weight), zip
  ARCH_old.pth        the old names of torchvision's published files (denselayer1.norm.1.weight, conv.2,
                      ...), no num_batches_tracked, legacy (non-zip) format
  ARCH.safetensors    torchvision's names, as timm's model.safetensors
  ARCH_bare.safetensors  (densenet121) the same without the "features." prefix
and its dense-block outputs:
  ARCH_layerN.npy     eval mode with the file's statistics, on input_224.npy (2 bottle images)
  warm_ARCH_S_lD_layerN.npy  after the reference's warm-up (METHOD.md §2: model.train(), a forward of
                      torch.ones(1, 3, S, S) up to denseblock D, model.eval()), on warm_input_S.npy
                      (1 bottle image at S); listed in warm_manifest.txt as "arch S D"
  bf16_densenet201_layerN.npy  torchvision's densenet201 run entirely in bfloat16 as a PyTorch user
                      runs it on a CPU (model.bfloat16() in channels-last, the input cast), eval mode, on
                      input_224.npy, for the PC_PRECISION_BF16 test (the float32 reference is
                      densenet201_layerN.npy)
manifest.txt lists "arch size deepest" for the eval-mode references; bad_dense.safetensors has a
wrong shape and a missing tensor for the validation test.
"""
import collections
import copy
import os
import re
import sys

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torchref import inputs, randomise_bn, save_safetensors  # noqa: E402

OUT = common.outdir()
torch.set_num_threads(2)

# arch, deepest block saved (the file holds up to it; 4 = the complete file), warm-up (S, deepest) pairs
CONFIGS = [
    ("densenet121", 4, [(224, 2), (224, 3), (320, 3)]),
    ("densenet201", 3, [(224, 3), (320, 3)]),
]


def blocks(model, x, upto):
    """The outputs of denseblock1..upto (the transition after the last one is not run)."""
    f = model.features
    outs = []
    with torch.no_grad():
        x = f.pool0(f.relu0(f.norm0(f.conv0(x))))
        for i in range(1, upto + 1):
            x = getattr(f, "denseblock%d" % i)(x)
            outs.append(x)
            if i < upto:
                x = getattr(f, "transition%d" % i)(x)
    return outs


def warmed(model, size, deepest):
    m = copy.deepcopy(model).train()
    blocks(m, torch.ones(1, 3, size, size), deepest)
    return m.eval()


NEW = re.compile(r"^(.*denselayer\d+\.(?:norm|conv))([12])\.(weight|bias|running_mean|running_var)$")


def old_names(sd):
    out = collections.OrderedDict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        m = NEW.match(k)
        out[m.group(1) + "." + m.group(2) + "." + m.group(3) if m else k] = v
    return out


manifest, warm_manifest, inp = [], [], {}
for idx, (arch, deepest, warms) in enumerate(CONFIGS):
    torch.manual_seed(3000 + idx)
    model = getattr(torchvision.models, arch)(weights=None).eval()
    randomise_bn(model, torch.Generator().manual_seed(4000 + idx))
    sd = model.state_dict()
    if deepest < 4:
        keep = tuple("features.denseblock%d." % i for i in range(1, deepest + 1)) + \
            tuple("features.transition%d." % i for i in range(1, deepest)) + ("features.conv0.", "features.norm0.")
        sd = collections.OrderedDict((k, v) for k, v in sd.items() if k.startswith(keep))
    torch.save(sd, os.path.join(OUT, arch + ".pth"))
    torch.save(old_names(sd), os.path.join(OUT, arch + "_old.pth"), _use_new_zipfile_serialization=False)
    save_safetensors(os.path.join(OUT, arch + ".safetensors"), sd)
    if arch == "densenet121":
        bare = collections.OrderedDict((k[len("features."):] if k.startswith("features.") else k, v)
                                       for k, v in sd.items())
        save_safetensors(os.path.join(OUT, arch + "_bare.safetensors"), bare)
        bad = collections.OrderedDict(sd)
        bad["features.denseblock2.denselayer3.conv1.weight"] = torch.zeros(128, 192, 3, 3)
        del bad["features.denseblock1.denselayer2.norm1.running_var"]
        save_safetensors(os.path.join(OUT, "bad_dense.safetensors"), bad)
    if 224 not in inp:
        inp[224] = inputs(224)
        common.save(OUT, "input_224.npy", inp[224].numpy())
    for i, y in enumerate(blocks(model, inp[224], deepest)):
        common.save(OUT, "%s_layer%d.npy" % (arch, i + 1), y.numpy())
    manifest.append("%s 224 %d" % (arch, deepest))
    if arch == "densenet201":
        mb = copy.deepcopy(model).bfloat16().to(memory_format=torch.channels_last)
        xb = inp[224].bfloat16().contiguous(memory_format=torch.channels_last)
        for i, y in enumerate(blocks(mb, xb, deepest)):
            common.save(OUT, "bf16_%s_layer%d.npy" % (arch, i + 1), y.float().contiguous().numpy())
    for size, d in warms:
        if ("w", size) not in inp:
            inp[("w", size)] = inputs(size, n=1)
            common.save(OUT, "warm_input_%d.npy" % size, inp[("w", size)].numpy())
        for i, y in enumerate(blocks(warmed(model, size, d), inp[("w", size)], d)):
            common.save(OUT, "warm_%s_%d_l%d_layer%d.npy" % (arch, size, d, i + 1), y.numpy())
        warm_manifest.append("%s %d %d" % (arch, size, d))

with open(os.path.join(OUT, "warm_manifest.txt"), "w") as f:
    f.write("\n".join(warm_manifest) + "\n")
with open(os.path.join(OUT, "manifest.txt"), "w") as f:
    f.write("\n".join(manifest) + "\n")
