"""Read images our writers made with PIL, the independent decoder for tests/test_overlay.c.

Run as: /usr/bin/python3 tests/ref/pil_read.py FILE...  For each FILE writes FILE.npy (np.asarray of the
PIL image: uint8 for L/RGB, uint16 for a 16-bit grey PNG (mode I or I;16), float32 for F) and FILE.txt ("mode M" then one
"text KEY VALUE" line per PNG text chunk). Exits non-zero (with a message) if PIL cannot read a file.
"""
import sys

import numpy as np
from PIL import Image

for path in sys.argv[1:]:
    with Image.open(path) as im:
        im.load()
        a = np.asarray(im)
        if im.mode in ("I", "I;16", "I;16B") and im.format == "PNG":
            # Pillow opens 16-bit grey PNGs as mode I (int32): back to the file's 16-bit samples.
            if a.min() < 0 or a.max() > 65535:
                sys.exit("%s: mode %s values outside 0..65535" % (path, im.mode))
            a = a.astype(np.uint16)
        np.save(path + ".npy", np.ascontiguousarray(a))
        with open(path + ".txt", "w") as f:
            f.write("mode %s %s\n" % (im.mode, im.format))
            for k, v in getattr(im, "text", {}).items():
                f.write("text %s %s\n" % (k, v))
