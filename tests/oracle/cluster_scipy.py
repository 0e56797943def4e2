"""Oracle for luna's `cluster`: scipy.ndimage's binary_erosion, label and center_of_mass
(the book's groupSegmentationOutput), independent of luna's code.

Usage:
  cluster_scipy.py cases <cases.json>    raw volumes written by the test (prob u8, hu i16)
  cluster_scipy.py stage <probs_dir> <ct_root> <threshold>   luna's prob-volume files + CTs
Prints JSON: {name: [{"voxels": n, "irc": [i, r, c], "xyz": [x, y, z]}, ...]} per series/case,
components in label order.
"""
import glob
import json
import os
import sys

import numpy as np
from scipy import ndimage


def clusters(prob_u8, hu, threshold, origin, spacing, direction, erosion="3d"):
    mask = prob_u8.astype(np.float64) / 255.0 > threshold
    if erosion == "3d":
        mask = ndimage.binary_erosion(mask, iterations=1)
    elif erosion == "2d":
        # the in-plane cross: a 3x3x3 structure whose only non-zero plane is the 2-D cross
        s = np.zeros((3, 3, 3), bool)
        s[1] = ndimage.generate_binary_structure(2, 1)
        mask = ndimage.binary_erosion(mask, structure=s, iterations=1)
    elif erosion != "none":
        raise ValueError(erosion)
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    w = np.clip(hu.astype(np.float64), -1000, 1000) + 1001
    idx = np.arange(1, n + 1)
    coms = ndimage.center_of_mass(w, labels=labels, index=idx)
    counts = ndimage.sum(np.ones_like(w), labels=labels, index=idx)
    d = np.array(direction, dtype=np.float64).reshape(3, 3)
    out = []
    for com, cnt in zip(coms, counts):
        cri = np.array(com)[::-1] * np.array(spacing)
        xyz = d @ cri + np.array(origin)
        out.append({"voxels": int(cnt), "irc": [float(v) for v in com], "xyz": [float(v) for v in xyz]})
    return out


def cases(path):
    with open(path) as fh:
        spec = json.load(fh)
    res = {}
    for c in spec["cases"]:
        shape = c["shape"]
        prob = np.fromfile(c["prob"], dtype=np.uint8).reshape(shape)
        hu = np.fromfile(c["hu"], dtype="<i2").reshape(shape)
        res[c["name"]] = clusters(prob, hu, c["threshold"], c["origin"], c["spacing"], c["direction"],
                                  c.get("erosion", "3d"))
    return res


def stage(probs_dir, ct_root, threshold):
    import h5py
    import hdf5plugin  # noqa: F401  (zstd filter 32015)
    import SimpleITK as sitk

    res = {}
    for f in sorted(glob.glob(os.path.join(probs_dir, "*.h5"))):
        uid = os.path.basename(f)[:-3]
        mhd = glob.glob(os.path.join(ct_root, "**", uid + ".mhd"), recursive=True)[0]
        img = sitk.ReadImage(mhd)
        hu = sitk.GetArrayFromImage(img)
        with h5py.File(f, "r") as h:
            prob = h["prob"][...]
        res[uid] = clusters(prob, hu, threshold, img.GetOrigin(), img.GetSpacing(), img.GetDirection())
    return res


def main():
    if sys.argv[1] == "cases":
        print(json.dumps(cases(sys.argv[2])))
    else:
        print(json.dumps(stage(sys.argv[2], sys.argv[3], float(sys.argv[4]))))


if __name__ == "__main__":
    main()
