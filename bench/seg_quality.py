"""Segmentation quality on synthetic data (issue 8's acceptance): the share of planted nodules
of the segmented series that have a voxel with probability > 0.5 within the nodule radius.

Usage: seg_quality.py <synth artifact dir> <segment artifact dir>
Reads synth_truth.json (planted nodules: irc, diameter) and probs/<uid>.h5 (uint8, p = v/255).
"""
import glob
import json
import os
import sys

import h5py
import hdf5plugin  # noqa: F401
import numpy as np


def main():
    truth = json.load(open(os.path.join(sys.argv[1], "synth_truth.json")))
    by_uid = {s["uid"]: s for s in truth["series"]}
    found = total = 0
    for f in sorted(glob.glob(os.path.join(sys.argv[2], "probs", "*.h5"))):
        uid = os.path.basename(f)[:-3]
        s = by_uid[uid]
        sx, sy, sz = s["geometry"]["spacing_xyz"]
        with h5py.File(f, "r") as h:
            p = h["prob"][...]
        hit = p >= 128  # p > 0.5
        for n in s["nodules"]:
            i, r, c = n["irc"]
            rad = n["diameter_mm"] / 2
            ri, rr, rc = (int(np.ceil(rad / v)) for v in (sz, sy, sx))
            sl = hit[max(i - ri, 0):i + ri + 1, max(r - rr, 0):r + rr + 1, max(c - rc, 0):c + rc + 1]
            ii, rrr, cc = np.nonzero(sl)
            ii = ii + max(i - ri, 0); rrr = rrr + max(r - rr, 0); cc = cc + max(c - rc, 0)
            d2 = ((ii - i) * sz) ** 2 + ((rrr - r) * sy) ** 2 + ((cc - c) * sx) ** 2
            total += 1
            found += int(np.any(d2 <= rad * rad))
    print(json.dumps({"nodules": total, "covered": found, "coverage": found / max(total, 1)}))


if __name__ == "__main__":
    main()
