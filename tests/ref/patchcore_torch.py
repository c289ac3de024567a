"""PatchCore in PyTorch/numpy/faiss/scipy/sklearn, written straight from ../shared/docs/METHOD.md.

This is the project's independent oracle for the whole pipeline (tests/ref/gen_pipeline.py) and the
PyTorch side of the fit/predict benchmark (bench/). It follows the structure of the authors' reference
implementation: torchvision transforms, a torchvision backbone, nn.Unfold patches, F.interpolate
alignment, adaptive_avg_pool1d projections, a greedy coreset loop of torch operations in the
reference's ||a||^2 - 2ab + ||b||^2 form, faiss IndexFlatL2 search, scipy's gaussian_filter.
It shares no code with the C library. Run with /usr/bin/python3.
"""
import math

import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import transforms

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ---- §1 preprocessing -------------------------------------------------------------------------
def image_transform(resize=256, crop=224):
    return transforms.Compose([
        transforms.Resize(resize),
        transforms.CenterCrop(crop),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


def load_image(path, resize=256, crop=224):
    """3 x S x S float32 tensor, exactly torchvision on a PIL image."""
    with Image.open(path) as im:
        return image_transform(resize, crop)(im.convert("RGB"))


def load_mask(path, resize=256, crop=224, shape_of=None, rule="full"):
    """S x S uint8 {0,1}: the mask through the same Resize + CenterCrop (PIL bilinear, 8-bit), then
    (METHOD.md §1) rule "full", the reference code's: ToTensor (v / 255) and its metrics' .astype(int),
    i.e. anomalous only where the resized value is exactly 255; or rule "half": value >= 128.
    path None -> all zero."""
    if rule not in ("full", "half"):
        raise ValueError("mask rule %r (full, half)" % (rule,))
    if path is None:
        return np.zeros((crop, crop), np.uint8)
    with Image.open(path) as im:
        m = transforms.CenterCrop(crop)(transforms.Resize(resize)(im.convert("L")))
    if rule == "full":
        return transforms.ToTensor()(m)[0].numpy().astype(int).astype(np.uint8)
    return (np.asarray(m, dtype=np.uint8) >= 128).astype(np.uint8)


# ---- §2 backbone ------------------------------------------------------------------------------
def build_backbone(arch, state_dict_or_path, layers, bn="reference", size=224):
    """A torchvision model in eval mode with the given weights; tensors of layers beyond the deepest
    requested one (and fc) may be absent. bn="reference" applies the reference implementation's
    batch-norm warm-up (METHOD.md §2) exactly as torchvision does it in three lines: training mode, a
    forward of torch.ones(1, 3, size, size) up to the deepest requested layer, eval mode.
    bn="trained" keeps the weights' running statistics."""
    model = getattr(torchvision.models, arch)()
    sd = state_dict_or_path
    if isinstance(sd, str):
        sd = torch.load(sd, map_location="cpu")
    deepest = max(int(l[-1]) for l in layers)
    missing, _ = model.load_state_dict(sd, strict=False)
    needed = [m for m in missing if not (m.startswith("fc.") or
              any(m.startswith("layer%d." % i) for i in range(deepest + 1, 5)))]
    if needed:
        raise ValueError("weights lack tensors: %s" % needed[:5])
    if bn == "reference":
        model.train()
        layer_outputs(model, torch.ones(1, 3, size, size), layers)
    elif bn != "trained":
        raise ValueError("bn must be 'reference' or 'trained', not %r" % bn)
    return model.eval()


@torch.no_grad()
def layer_outputs(model, x, layers):
    """Run the trunk only as far as the deepest requested layer; return those layers in order."""
    deepest = max(int(l[-1]) for l in layers)
    out = {}
    h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for i in range(1, deepest + 1):
        h = getattr(model, "layer%d" % i)(h)
        out["layer%d" % i] = h
    return [out[l] for l in layers]


# ---- §3 locally aware patch features (the reference's PatchMaker / MeanMapper / Aggregator) -----
@torch.no_grad()
def patch_features(feats, patchsize=3, pre_dim=1024, dim=1024):
    """feats: list of B x C_l x H_l x W_l tensors, first one sets the grid.
    Returns (B*H*W, dim) float32, rows in (image, y, x) order, and the grid (H, W)."""
    pad = (patchsize - 1) // 2
    unfold = torch.nn.Unfold(kernel_size=patchsize, stride=1, padding=pad, dilation=1)
    patched = []
    shapes = []
    for f in feats:
        u = unfold(f)  # B x C*p*p x L
        B, C = f.shape[0], f.shape[1]
        nh = (f.shape[2] + 2 * pad - (patchsize - 1) - 1) + 1
        nw = (f.shape[3] + 2 * pad - (patchsize - 1) - 1) + 1
        u = u.reshape(B, C, patchsize, patchsize, -1).permute(0, 4, 1, 2, 3)  # B x L x C x p x p
        patched.append(u)
        shapes.append((nh, nw))
    ref_h, ref_w = shapes[0]
    for i in range(1, len(patched)):
        f = patched[i]
        h, w = shapes[i]
        f = f.reshape(f.shape[0], h, w, *f.shape[2:])
        f = f.permute(0, -3, -2, -1, 1, 2)
        perm_base_shape = f.shape
        f = f.reshape(-1, *f.shape[-2:])
        f = F.interpolate(f.unsqueeze(1), size=(ref_h, ref_w), mode="bilinear", align_corners=False)
        f = f.squeeze(1)
        f = f.reshape(*perm_base_shape[:-2], ref_h, ref_w)
        f = f.permute(0, -2, -1, 1, 2, 3)
        f = f.reshape(len(f), -1, *f.shape[-3:])
        patched[i] = f
    per_layer = []
    for f in patched:
        f = f.reshape(-1, *f.shape[-3:])  # N x C x p x p
        f = f.reshape(len(f), 1, -1)
        per_layer.append(F.adaptive_avg_pool1d(f, pre_dim).squeeze(1))
    stacked = torch.stack(per_layer, dim=1)  # N x n_layers x pre_dim
    agg = F.adaptive_avg_pool1d(stacked.reshape(len(stacked), 1, -1), dim)
    return agg.reshape(len(agg), -1), (ref_h, ref_w)


# ---- §4 coreset ---------------------------------------------------------------------------------
def _batchwise_dist(a, b):
    """Euclidean distances between rows of a and rows of b, the reference's way."""
    aa = a.unsqueeze(1).bmm(a.unsqueeze(2)).reshape(-1, 1)
    bb = b.unsqueeze(1).bmm(b.unsqueeze(2)).reshape(1, -1)
    ab = a.mm(b.T)
    return (-2 * ab + aa + bb).clamp(0, None).sqrt()


@torch.no_grad()
def greedy_coreset(features, n, projection, start_points, direct=False):
    """Approximate greedy coreset (METHOD.md §4). features: N x D tensor; projection: 128 x D
    (nn.Linear weight, applied as features @ projection.T); start_points: list of indices.
    direct=True computes ||a-b|| from differences instead of the reference's expansion."""
    proj = features @ projection.T
    if direct:
        dist = lambda a, b: torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
    else:
        dist = _batchwise_dist
    d = dist(proj, proj[start_points]).mean(dim=-1).reshape(-1, 1)
    out = []
    for _ in range(n):
        i = int(torch.argmax(d).item())
        out.append(i)
        d = torch.minimum(d, dist(proj, proj[i:i + 1]))
    return np.array(out, dtype=np.int64)


# ---- §5 scoring ---------------------------------------------------------------------------------
def knn(bank, queries, k=1):
    """Squared L2 distances and indices of the k nearest bank rows (faiss IndexFlatL2, exact)."""
    import faiss
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank, dtype=np.float32))
    d, i = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return d, i


def patch_scores(bank, queries, k=1):
    d, _ = knn(bank, queries, k)
    return d.mean(axis=1)


# ---- §6 anomaly map -----------------------------------------------------------------------------
def anomaly_maps(scores, grid, size, sigma=4.0):
    """scores: (B*H*W,) -> B x size x size float32 maps: bilinear (align_corners=False), then
    scipy.ndimage.gaussian_filter(sigma) per image."""
    h, w = grid
    s = torch.from_numpy(np.asarray(scores, np.float32)).reshape(-1, 1, h, w)
    up = F.interpolate(s, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.stack([scipy.ndimage.gaussian_filter(m, sigma=sigma) for m in up]).astype(np.float32)


# ---- §7 metrics ---------------------------------------------------------------------------------
def aupro(maps, masks, fpr_limit=0.3):
    """PRO integrated over FPR in [0, fpr_limit] / fpr_limit (METHOD.md §7). Regions are the
    8-connected components of each mask (scipy.ndimage.label); a pixel counts as detected at
    threshold t when its value is >= t; every distinct map value is a threshold; the curve starts at
    (0, 0), is integrated with the trapezoid rule and interpolated linearly at fpr_limit."""
    maps = np.asarray(maps, np.float64)
    masks = np.asarray(masks).astype(bool)
    structure = np.ones((3, 3), dtype=int)
    weight = np.zeros(maps.shape, np.float64)   # per-pixel share of PRO it adds when detected
    n_regions = 0
    sizes = []
    labels = np.zeros(maps.shape, np.int64)
    for i, m in enumerate(masks):
        lab, n = scipy.ndimage.label(m, structure=structure)
        labels[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += n
    if n_regions == 0:
        raise ValueError("no ground-truth regions")
    counts = np.bincount(labels.ravel(), minlength=n_regions + 1)
    region = labels > 0
    weight[region] = 1.0 / (counts[labels[region]] * n_regions)
    nominal = (~masks).astype(np.float64)
    n_nominal = nominal.sum()
    order = np.argsort(-maps.ravel(), kind="stable")
    v = maps.ravel()[order]
    fpr = np.cumsum(nominal.ravel()[order]) / n_nominal
    pro = np.cumsum(weight.ravel()[order])
    last_of_group = np.r_[v[1:] != v[:-1], True]
    fpr = np.r_[0.0, fpr[last_of_group]]
    pro = np.r_[0.0, pro[last_of_group]]
    k = np.searchsorted(fpr, fpr_limit, side="right")  # first point past the limit
    if k < len(fpr):
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        y = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0) if x1 > x0 else y1
        fpr = np.r_[fpr[:k], fpr_limit]
        pro = np.r_[pro[:k], y]
    return float(np.trapz(pro, fpr) / fpr_limit)
