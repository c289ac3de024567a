"""The PyTorch side of bench/fit_predict.sh: PatchCore fit and predict done the way the authors'
reference implementation does them, with the repo's reference pipeline (tests/ref/patchcore_torch.py):
torchvision transforms and backbone, nn.Unfold patch features, the approximate greedy coreset as a
loop of torch operations in the reference's ||a||^2 - 2ab + ||b||^2 form, faiss IndexFlatL2 search,
scipy's gaussian_filter for the maps.

  fit     --weights W --out BANK.npy [--threads 2] [--batch 8] [--coreset 0.1] TRAIN_DIR
  predict --weights W --bank BANK.npy [--threads 2] TEST_DIR
  summary RESULTS.jsonl   (the table bench/fit_predict.sh prints)

Each prints one JSON object: stage seconds (fit) or per-image milliseconds (predict; decode,
preprocessing, backbone, patch features, search and map, timed per image as `patchcore predict`
does), and the process's peak RSS (getrusage ru_maxrss, which includes the torch import). Run with
/usr/bin/python3; set OMP_NUM_THREADS to the thread count too (faiss and numpy read it).
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "ref"))
import patchcore_torch as pt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpuinfo  # noqa: E402

LAYERS = ["layer2", "layer3"]
EXTS = (".png", ".jpg", ".jpeg")


def image_files(root):
    """Image files under root, walked recursively in sorted order (as the CLI walks directories)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(EXTS)]
    return sorted(out)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def fit(args):
    paths = image_files(args.train)
    t0 = time.perf_counter()
    model = pt.build_backbone("resnet18", args.weights, LAYERS)
    feats = []
    with torch.no_grad():
        for b0 in range(0, len(paths), args.batch):
            x = torch.stack([pt.load_image(p) for p in paths[b0:b0 + args.batch]])
            f, grid = pt.patch_features(pt.layer_outputs(model, x, LAYERS))
            feats.append(f)
    features = torch.cat(feats)
    del feats
    t1 = time.perf_counter()
    n = int(len(features) * args.coreset)
    # The reference: a bias-free nn.Linear to 128 dimensions (default init) and 10 random start points.
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    projection = torch.nn.Linear(features.shape[1], 128, bias=False).weight.detach()
    starts = np.random.choice(len(features), 10, replace=False).tolist()
    idx = pt.greedy_coreset(features, n, projection, starts, direct=False)
    bank = features[torch.from_numpy(idx)].numpy()
    t2 = time.perf_counter()
    np.save(args.out, bank)
    print(json.dumps({"side": "torch", "stage": "fit", "n_images": len(paths), "n_patches": len(features),
                      "bank_size": len(bank), "seconds": round(t2 - t0, 3), "features_seconds": round(t1 - t0, 3),
                      "coreset_seconds": round(t2 - t1, 3), "peak_rss_mb": round(peak_rss_mb(), 1)}))


def predict(args):
    import faiss
    faiss.omp_set_num_threads(args.threads)
    paths = image_files(args.test)
    model = pt.build_backbone("resnet18", args.weights, LAYERS)
    bank = np.load(args.bank)
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank, dtype=np.float32))
    del bank
    ms = []
    scores = []
    with torch.no_grad():
        for p in paths:
            t0 = time.perf_counter()
            x = pt.load_image(p).unsqueeze(0)
            f, grid = pt.patch_features(pt.layer_outputs(model, x, LAYERS))
            d, _ = index.search(np.ascontiguousarray(f.numpy()), 1)
            s = d.mean(axis=1)
            amap = pt.anomaly_maps(s, grid, 224)
            scores.append(float(s.max()))
            ms.append((time.perf_counter() - t0) * 1e3)
            del amap
    print(json.dumps({"side": "torch", "stage": "predict", "n_images": len(paths),
                      "ms_mean": round(sum(ms) / len(ms), 2), "ms_median": round(statistics.median(ms), 2),
                      "ms_first": round(ms[0], 2), "peak_rss_mb": round(peak_rss_mb(), 1),
                      "score_sum": sum(scores)}))


def summary(args):
    """The table of bench/fit_predict.sh from its JSON lines: medians of our runs, ratios ours/torch."""
    rows = [json.loads(line) for line in open(args.results) if line.strip()]
    med = statistics.median
    of = lambda side, stage: [r for r in rows if r["side"] == side and r["stage"] == stage]
    ofit, opred = of("ours", "fit"), of("ours", "predict")
    tfit, tpred = of("torch", "fit")[0], of("torch", "predict")[0]
    ours = {
        "fit s": med(r["out"]["seconds"] for r in ofit),
        "features s": med(r["out"]["features_seconds"] for r in ofit),
        "coreset s": med(r["out"]["coreset_seconds"] for r in ofit),
        "fit peak RSS MB": med(r["peak_rss_kb"] / 1024.0 for r in ofit),
        "predict ms/image (mean)": med(sum(r["ms"]) / len(r["ms"]) for r in opred),
        "predict ms/image (median)": med(med(r["ms"]) for r in opred),
        "predict peak RSS MB": med(r["peak_rss_kb"] / 1024.0 for r in opred),
    }
    torch_ = {
        "fit s": tfit["seconds"], "features s": tfit["features_seconds"], "coreset s": tfit["coreset_seconds"],
        "fit peak RSS MB": tfit["peak_rss_mb"], "predict ms/image (mean)": tpred["ms_mean"],
        "predict ms/image (median)": tpred["ms_median"], "predict peak RSS MB": tpred["peak_rss_mb"],
    }
    print("%-28s %12s %12s %10s %10s" % ("", "ours", "torch", "ours/torch", "speed-up"))
    for k in ours:
        o, t = ours[k], torch_[k]
        print("%-28s %12.2f %12.2f %10.4f %9.1fx" % (k, o, t, o / t, t / o))
    print("ours: median of %d runs (fit spread %.2f-%.2f s, predict mean spread %.1f-%.1f ms); torch: 1 run"
          % (len(ofit), min(r["out"]["seconds"] for r in ofit), max(r["out"]["seconds"] for r in ofit),
             min(sum(r["ms"]) / len(r["ms"]) for r in opred), max(sum(r["ms"]) / len(r["ms"]) for r in opred)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--weights", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--threads", type=int, default=2)
    f.add_argument("--batch", type=int, default=8)
    f.add_argument("--coreset", type=float, default=0.1)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("train")
    p = sub.add_parser("predict")
    p.add_argument("--weights", required=True)
    p.add_argument("--bank", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("test")
    s = sub.add_parser("summary")
    s.add_argument("results")
    args = ap.parse_args()
    if args.cmd == "summary":
        return summary(args)
    torch.set_num_threads(args.threads)
    cpuinfo.platform()  # stderr: CPU, instruction sets, torch's CPU capability, OpenBLAS core
    fit(args) if args.cmd == "fit" else predict(args)


if __name__ == "__main__":
    main()
