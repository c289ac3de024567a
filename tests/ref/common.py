"""Shared helpers for the reference generators (run with /usr/bin/python3, Debian's oracle packages).

Every generator is called as `gen_NAME.py OUTDIR` and writes .npy files (and any inputs it makes)
into OUTDIR only. The C tests read them through tests/testutil.c.
"""
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def shared_dir():
    """../shared beside the checkout, or $PATCHCORE_SHARED."""
    d = os.environ.get("PATCHCORE_SHARED") or os.path.join(REPO, "..", "shared")
    return os.path.abspath(d)


def bottle_dir():
    d = os.path.join(shared_dir(), "data", "mvtec_ad", "bottle")
    return d if os.path.isdir(d) else None


def weights_r18(ext="pth"):
    p = os.path.join(shared_dir(), "weights", "resnet18_in1k_to_layer3." + ext)
    return p if os.path.exists(p) else None


def outdir():
    if len(sys.argv) != 2:
        sys.exit("usage: %s OUTDIR" % sys.argv[0])
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    return d


def save(d, name, arr):
    np.save(os.path.join(d, name), np.ascontiguousarray(arr))
