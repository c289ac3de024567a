"""Reference tensors for the numerical modules (patch features, greedy coreset, kNN, scoring).

Written from METHOD.md §3-6 and the PatchCore reference implementation's way of doing each step:
torch.nn.Unfold / F.interpolate / F.adaptive_avg_pool1d for features (the reference's _embed), the
ApproximateGreedyCoresetSampler loop in torch (mm-based distances, as the reference), faiss IndexFlatL2
for search, F.interpolate + scipy.ndimage.gaussian_filter for maps, numpy for Eq. 7.
Inputs are random with fixed seeds; the projection matrix and start indices are made here (numpy) and
saved, and the C tests pass them in. Run: /usr/bin/python3 tests/ref/gen_algos.py OUTDIR
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import outdir, save  # noqa: E402

torch.set_num_threads(2)
out = outdir()

# ---------------------------------------------------------------- features (reference _embed)
FEATURE_CASES = [
    # name, [(C, H, W)...], patch, pre_dim, dim
    ("r18", [(128, 28, 28), (256, 14, 14)], 3, 1024, 1024),
    ("wrn", [(512, 28, 28), (1024, 14, 14)], 3, 1024, 1024),
    ("odd", [(5, 7, 9), (3, 4, 5), (6, 3, 2)], 3, 100, 37),  # D_pre > C*p*p for every layer
    ("odd5", [(7, 6, 5), (11, 3, 3)], 5, 64, 50),
    ("p1", [(9, 5, 5), (4, 8, 8)], 1, 6, 13),  # D_pre < C, a later layer larger than the first
    ("p2", [(6, 6, 7), (10, 4, 3)], 2, 30, 17),  # even patch: grid shrinks by one
]


def patchify(x, p):
    pad = (p - 1) // 2
    unf = torch.nn.Unfold(kernel_size=p, stride=1, padding=pad, dilation=1)(x)
    sides = [int((s + 2 * pad - (p - 1) - 1) / 1 + 1) for s in x.shape[-2:]]
    unf = unf.reshape(*x.shape[:2], p, p, -1).permute(0, 4, 1, 2, 3)
    return unf, sides


def embed(acts, p, pre_dim, dim):
    feats = [patchify(a, p) for a in acts]
    shapes = [f[1] for f in feats]
    feats = [f[0] for f in feats]
    ref = shapes[0]
    for i in range(1, len(feats)):
        f = feats[i]
        pd = shapes[i]
        f = f.reshape(f.shape[0], pd[0], pd[1], *f.shape[2:])
        f = f.permute(0, -3, -2, -1, 1, 2)
        base = f.shape
        f = f.reshape(-1, *f.shape[-2:])
        f = F.interpolate(f.unsqueeze(1), size=(ref[0], ref[1]), mode="bilinear", align_corners=False)
        f = f.squeeze(1).reshape(*base[:-2], ref[0], ref[1])
        f = f.permute(0, -2, -1, 1, 2, 3)
        f = f.reshape(len(f), -1, *f.shape[-3:])
        feats[i] = f
    feats = [x.reshape(-1, *x.shape[-3:]) for x in feats]
    # MeanMapper per layer, stacked, then the aggregator
    pre = [F.adaptive_avg_pool1d(x.reshape(len(x), 1, -1), pre_dim).squeeze(1) for x in feats]
    f = torch.stack(pre, dim=1).reshape(len(pre[0]), 1, -1)
    return F.adaptive_avg_pool1d(f, dim).reshape(len(pre[0]), -1)


g = torch.Generator().manual_seed(1234)
for name, shapes, p, pre_dim, dim in FEATURE_CASES:
    acts = [torch.randn(1, *s, generator=g) for s in shapes]
    if name in ("r18", "wrn"):  # post-ReLU-like, non-negative as real activations
        acts = [a.clamp(min=0) for a in acts]
    with torch.no_grad():
        f = embed(acts, p, pre_dim, dim)
    for i, a in enumerate(acts):
        save(out, "feat_%s_act%d.npy" % (name, i), a[0].numpy().astype(np.float32))
    save(out, "feat_%s_cfg.npy" % name, np.array([len(shapes), p, pre_dim, dim] + [v for s in shapes for v in s], np.int32))
    save(out, "feat_%s_out.npy" % name, f.numpy().astype(np.float32))

# ---------------------------------------------------------------- greedy coreset (reference sampler)


def batchwise_differences(a, b):  # the reference's _compute_batchwise_differences
    aa = a.unsqueeze(1).bmm(a.unsqueeze(2)).reshape(-1, 1)
    bb = b.unsqueeze(1).bmm(b.unsqueeze(2)).reshape(1, -1)
    ab = a.mm(b.T)
    return (-2 * ab + aa + bb).clamp(0, None).sqrt()


def greedy_torch(feats, proj, starts, n):
    """ApproximateGreedyCoresetSampler._compute_greedy_coreset_indices with a given projection (the
    reference's nn.Linear weight is proj.T) and given start points."""
    with torch.no_grad():
        x = torch.from_numpy(feats).mm(torch.from_numpy(proj))
        dist = torch.mean(batchwise_differences(x, x[list(starts)]), axis=-1).reshape(-1, 1)
        idx = []
        for _ in range(n):
            sel = torch.argmax(dist).item()
            idx.append(sel)
            d = batchwise_differences(x, x[sel:sel + 1])
            dist = torch.min(torch.cat([dist, d], dim=-1), dim=1).values.reshape(-1, 1)
    return np.array(idx, np.int64)


def greedy_torch_direct(feats, proj, starts, n):
    """The same loop in torch fp32 with direct differences ((x - x_sel)^2).sum().sqrt() instead of the
    mm expansion: what the project's end-to-end reference script should use (see the docs)."""
    with torch.no_grad():
        x = torch.from_numpy(feats).mm(torch.from_numpy(proj))
        dist = torch.stack([((x - x[s]) ** 2).sum(1).sqrt() for s in starts], 1).mean(1)
        idx = []
        for _ in range(n):
            sel = int(torch.argmax(dist))
            idx.append(sel)
            dist = torch.minimum(dist, ((x - x[sel]) ** 2).sum(1).sqrt())
    return np.array(idx, np.int64)


def greedy_f64(feats, proj, starts, n):
    """The same selection in float64 with direct differences: the ideal the fp32 versions approximate."""
    x = feats.astype(np.float64) @ proj.astype(np.float64)
    dist = np.mean([np.sqrt(((x - x[s]) ** 2).sum(1)) for s in starts], axis=0)
    idx = []
    for _ in range(n):
        sel = int(np.argmax(dist))
        idx.append(sel)
        dist = np.minimum(dist, np.sqrt(((x - x[sel]) ** 2).sum(1)))
    return np.array(idx, np.int64)


rng = np.random.RandomState(7)
CORESET_CASES = [("gauss", 3000, 96, 300), ("clustered", 4003, 200, 400)]
for name, N, D, n in CORESET_CASES:
    if name == "gauss":
        feats = rng.randn(N, D).astype(np.float32)
    else:  # clusters of different spreads, like patch features of a few textures
        centres = rng.randn(25, D) * 3
        lab = rng.randint(0, 25, N)
        feats = (centres[lab] + rng.randn(N, D) * rng.uniform(0.2, 1.0, 25)[lab, None]).astype(np.float32)
    bound = 1.0 / np.sqrt(D)
    proj = rng.uniform(-bound, bound, size=(D, 128)).astype(np.float32)
    starts = rng.choice(N, min(10, N), replace=False).astype(np.int64)
    idx = greedy_torch(feats, proj, starts, n)
    idx64 = greedy_f64(feats, proj, starts, n)
    idxd = greedy_torch_direct(feats, proj, starts, n)
    agree = int(np.argmax(idx != idx64)) if (idx != idx64).any() else n
    print("coreset %s: torch fp32 (mm form) and float64 agree on the first %d of %d" % (name, agree, n),
          file=sys.stderr)
    save(out, "coreset_%s_feats.npy" % name, feats)
    save(out, "coreset_%s_proj.npy" % name, proj)
    save(out, "coreset_%s_starts.npy" % name, starts)
    save(out, "coreset_%s_idx.npy" % name, idx)
    save(out, "coreset_%s_idx64.npy" % name, idx64)
    save(out, "coreset_%s_idxd.npy" % name, idxd)
    # the fp32 projection greedy_torch_direct ranks (the same expression), for the tie-robust check
    save(out, "coreset_%s_tproj.npy" % name, torch.from_numpy(feats).mm(torch.from_numpy(proj)).numpy())

# ---------------------------------------------------------------- kNN (faiss IndexFlatL2)
import faiss  # noqa: E402

faiss.omp_set_num_threads(2)
KNN_CASES = [("odd", 123, 3001, 37, 5), ("wide", 784, 2500, 512, 1), ("k3", 40, 4100, 64, 3)]
for name, M, N, D, k in KNN_CASES:
    bank = rng.randn(N, D).astype(np.float32)
    q = rng.randn(M, D).astype(np.float32)
    if name == "odd":  # exact duplicates in the bank and queries that equal bank rows: ties, zeros
        bank[100:110] = bank[5]
        q[:7] = bank[5]
        q[7:10] = bank[2047:2050]
    index = faiss.IndexFlatL2(D)
    index.add(bank)
    dist, ind = index.search(q, k)
    save(out, "knn_%s_bank.npy" % name, bank)
    save(out, "knn_%s_q.npy" % name, q)
    save(out, "knn_%s_dist.npy" % name, dist.astype(np.float32))
    save(out, "knn_%s_idx.npy" % name, ind.astype(np.int64))
    save(out, "knn_%s_k.npy" % name, np.array([k], np.int32))

# ---------------------------------------------------------------- maps (F.interpolate + gaussian_filter)
from scipy import ndimage  # noqa: E402

MAP_CASES = [("std", 28, 28, 224, 224, 4.0), ("odd", 5, 7, 13, 11, 4.0), ("small", 3, 4, 9, 20, 2.5),
             ("r18", 28, 28, 320, 320, 4.0)]
for name, h, w, oh, ow, sigma in MAP_CASES:
    scores = (rng.rand(h, w) ** 3 * 50).astype(np.float32)  # patch scores: non-negative, skewed
    with torch.no_grad():
        up = F.interpolate(torch.from_numpy(scores)[None, None], size=(oh, ow), mode="bilinear",
                           align_corners=False)[0, 0].numpy()
    sm = ndimage.gaussian_filter(up, sigma=sigma)  # the reference: float32 in, float32 out
    assert sm.dtype == np.float32
    save(out, "map_%s_in.npy" % name, scores)
    save(out, "map_%s_up.npy" % name, up)
    save(out, "map_%s_out.npy" % name, sm)
    save(out, "map_%s_cfg.npy" % name, np.array([h, w, oh, ow], np.int32))
    save(out, "map_%s_sigma.npy" % name, np.array([sigma], np.float64))

# ---------------------------------------------------------------- scores and Eq. 7 (numpy)
N, D, M, k, b = 500, 48, 60, 3, 7
bank = rng.randn(N, D).astype(np.float32) * 0.3
q = rng.randn(M, D).astype(np.float32) * 0.3
d2 = ((q[:, None, :].astype(np.float64) - bank[None].astype(np.float64)) ** 2).sum(-1)
nn = np.argsort(d2, axis=1, kind="stable")[:, :k]
dk = np.take_along_axis(d2, nn, 1).astype(np.float32)
patch = dk.mean(-1)  # the reference: np.mean(query_distances, axis=-1)
top = int(np.argmax(patch))
s_star = float(patch[top])
m_test = q[top].astype(np.float64)
m_star_i = int(nn[top, 0])
m_star = bank[m_star_i].astype(np.float64)
nb = np.argsort(((bank.astype(np.float64) - m_star) ** 2).sum(-1), kind="stable")[:b]
dist_nb = np.sqrt(((bank[nb].astype(np.float64) - m_test) ** 2).sum(-1))
w = 1 - np.exp(np.linalg.norm(m_test - m_star)) / np.exp(dist_nb).sum()  # Eq. 7 as printed
save(out, "eq7_bank.npy", bank)
save(out, "eq7_q.npy", q)
save(out, "eq7_patch.npy", patch.astype(np.float32))
save(out, "eq7_nb.npy", nb.astype(np.int64))
save(out, "eq7_expect.npy", np.array([s_star, w * s_star, top, m_star_i, k, b], np.float64))
