"""Reference for the whole PatchCore pipeline (tests/test_pipeline.c), from tests/ref/patchcore_torch.py.

Two cases, each written to OUTDIR/<case>/:
  r18   - the real ImageNet ResNet-18 from ../shared on real bottle images: 6 training images,
          4 test images (2 good, 2 defective), layers 2+3, S=224, p=3, D_pre=D=1024, 10% coreset, k=1.
  wrn50 - a random-initialised wide_resnet50_2 with non-trivial batch-norm (weights written here as
          .pth, layer1..layer3 only) on 2 training and 2 test images, 25% coreset, k=3.
Each case gets: inputs.txt (train then test paths), config.txt, projection.npy (128 x D, the
nn.Linear weight the coreset uses), starts.npy, features_train0.npy (the first training image's
patch features), coreset.npy (selected indices), bank.npy, scores.npy (per test image), patch.npy
(patch scores of the test images), maps.npy (test maps S x S); and, for the tie-robust checks of
test_pipeline.c, features_train.npy (all training patch features), features_test.npy (the test images'
patch features, rows in image order) and proj_train.npy (torch's fp32 projection of the training
features, features @ projection.T, the values its greedy loop ranks).
The projection and start points are drawn here with numpy and handed to the C side, so both run the
same coreset (METHOD.md §4 leaves them random).
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import patchcore_torch as P  # noqa: E402

torch.set_num_threads(2)


def run_case(out, arch, weights, train, test, layers, ratio, k, seed):
    os.makedirs(out, exist_ok=True)
    model = P.build_backbone(arch, weights, layers)
    feats_train = []
    grid = None
    for p in train:
        x = P.load_image(p).unsqueeze(0)
        f, grid = P.patch_features(P.layer_outputs(model, x, layers))
        feats_train.append(f)
    feats = torch.cat(feats_train)
    n_total = feats.shape[0]
    n_sel = int(n_total * ratio)
    rng = np.random.default_rng(seed)
    dim = feats.shape[1]
    bound = 1.0 / np.sqrt(dim)
    projection = rng.uniform(-bound, bound, size=(128, dim)).astype(np.float32)
    starts = rng.choice(n_total, size=min(10, n_total), replace=False).astype(np.int64)
    # Distances from direct differences: the reference's ||a||^2 - 2ab + ||b||^2 form loses digits to
    # cancellation and can flip near-ties (see docs/method-implementation.md); both forms are saved.
    idx = P.greedy_coreset(feats, n_sel, torch.from_numpy(projection), starts.tolist(), direct=True)
    idx_expansion = P.greedy_coreset(feats, n_sel, torch.from_numpy(projection), starts.tolist())
    # the same expression P.greedy_coreset projects with: the fp32 values torch's loop ranked
    proj_train = (feats @ torch.from_numpy(projection).T).numpy()
    common.save(out, "coreset_expansion.npy", idx_expansion)
    bank = feats[idx].numpy()
    qs = []
    for p in test:
        x = P.load_image(p).unsqueeze(0)
        f, _ = P.patch_features(P.layer_outputs(model, x, layers))
        qs.append(f.numpy())
    q = np.concatenate(qs)
    ps = P.patch_scores(bank, q, k).astype(np.float32)
    per_img = ps.reshape(len(test), -1)
    maps = P.anomaly_maps(ps, grid, 224)
    common.save(out, "projection.npy", projection)
    common.save(out, "starts.npy", starts)
    common.save(out, "features_train0.npy", feats_train[0].numpy())
    common.save(out, "features_train.npy", feats.numpy())
    common.save(out, "features_test.npy", q.astype(np.float32))
    common.save(out, "proj_train.npy", proj_train.astype(np.float32))
    common.save(out, "coreset.npy", idx)
    common.save(out, "bank.npy", bank)
    common.save(out, "patch.npy", per_img)
    common.save(out, "scores.npy", per_img.max(axis=1))
    common.save(out, "maps.npy", maps)
    with open(os.path.join(out, "inputs.txt"), "w") as f:
        f.write("\n".join(train + test) + "\n")
    with open(os.path.join(out, "config.txt"), "w") as f:
        f.write("arch=%s\nweights=%s\nlayers=%s\nn_train=%d\nn_test=%d\ncoreset=%d\nk=%d\n"
                % (arch, os.path.abspath(weights), ",".join(layers), len(train), len(test), n_sel, k))


def wrn50_weights(path):
    torch.manual_seed(1234)
    import torchvision
    model = torchvision.models.wide_resnet50_2()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith(("layer4.", "fc."))}
    torch.save(sd, path)
    return path


def main():
    out = common.outdir()
    bottle = common.bottle_dir()
    w = common.weights_r18("pth")
    if bottle is None or w is None:
        print("gen_pipeline: ../shared data or weights absent; skipping", file=sys.stderr)
        return
    good = sorted(os.path.join(bottle, "train", "good", f) for f in os.listdir(os.path.join(bottle, "train", "good")))
    tgood = sorted(os.path.join(bottle, "test", "good", f) for f in os.listdir(os.path.join(bottle, "test", "good")))
    tbad = sorted(os.path.join(bottle, "test", "broken_large", f) for f in os.listdir(os.path.join(bottle, "test", "broken_large")))
    run_case(os.path.join(out, "r18"), "resnet18", w, good[:6], tgood[:2] + tbad[:2],
             ["layer2", "layer3"], 0.1, 1, 7)
    wp = wrn50_weights(os.path.join(out, "wrn50_random.pth"))
    run_case(os.path.join(out, "wrn50"), "wide_resnet50_2", wp, good[6:8], tgood[2:3] + tbad[2:3],
             ["layer2", "layer3"], 0.25, 3, 11)


if __name__ == "__main__":
    main()
