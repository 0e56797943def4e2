"""scipy.ndimage side of bench/cluster.sh: times the book's three calls (binary_erosion, label,
center_of_mass with HU weights) plus the threshold on each probability volume, median of N.
Usage: cluster_scipy.py <probs_dir> <ct_root> <runs>"""
import glob
import os
import statistics
import sys
import time

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import SimpleITK as sitk
from scipy import ndimage


def main():
    probs, root, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for f in sorted(glob.glob(os.path.join(probs, "*.h5"))):
        uid = os.path.basename(f)[:-3]
        mhd = glob.glob(os.path.join(root, "**", uid + ".mhd"), recursive=True)[0]
        hu = sitk.GetArrayFromImage(sitk.ReadImage(mhd))
        with h5py.File(f, "r") as h:
            p = h["prob"][...]
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            mask = p.astype(np.float64) / 255.0 > 0.5
            mask = ndimage.binary_erosion(mask, iterations=1)
            labels, n = ndimage.label(mask)
            ndimage.center_of_mass(np.clip(hu, -1000, 1000) + 1001, labels=labels, index=np.arange(1, n + 1))
            times.append(time.perf_counter() - t0)
        shape = "x".join(str(v) for v in hu.shape)
        print(f"{uid} {shape} {n} {statistics.median(times):.4f}")


if __name__ == "__main__":
    main()
