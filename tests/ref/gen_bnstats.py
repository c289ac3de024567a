"""References for tests/test_bn_stats.c: the patch features of the model pipeline under both batch-norm
settings (METHOD.md §2), from tests/ref/patchcore_torch.py (torchvision's three-line warm-up for
"reference", the plain eval-mode network for "trained"), with the shared real ResNet-18 on one bottle
test image, layers 2+3, at two preprocessing sizes: Resize 256 / CenterCrop 224, and the paper's
ensemble size Resize 366 / CenterCrop 320.

Writes OUTDIR/feat_{reference,trained}_{224,320}.npy (H*W x 1024 float32) and image.txt (the image path).
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import patchcore_torch as P  # noqa: E402

torch.set_num_threads(2)
LAYERS = ["layer2", "layer3"]


def main():
    out = common.outdir()
    bottle, w = common.bottle_dir(), common.weights_r18("pth")
    if bottle is None or w is None:
        print("gen_bnstats: ../shared data or weights absent; skipping", file=sys.stderr)
        return
    img = os.path.join(bottle, "test", "broken_large", "000.png")
    for resize, crop in ((256, 224), (366, 320)):
        x = P.load_image(img, resize, crop).unsqueeze(0)
        for bn in ("reference", "trained"):
            model = P.build_backbone("resnet18", w, LAYERS, bn=bn, size=crop)
            f, _ = P.patch_features(P.layer_outputs(model, x, LAYERS))
            common.save(out, "feat_%s_%d.npy" % (bn, crop), f.numpy())
    with open(os.path.join(out, "image.txt"), "w") as f:
        f.write(img + "\n")


if __name__ == "__main__":
    main()
