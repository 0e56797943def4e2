"""Writes probability volumes in luna's prob-volume layout (store/prob_volume.rs) with h5py,
independently of luna, for every CT under a root: p = 1 where HU > -300 (nodules and other
dense tissue of the synthetic CTs), else 0. Usage: write_prob_volumes.py <ct_root> <out_dir>."""
import glob
import os
import sys

import h5py
import hdf5plugin
import numpy as np
import SimpleITK as sitk


def main():
    root, out = sys.argv[1], sys.argv[2]
    os.makedirs(os.path.join(out, "probs"), exist_ok=True)
    for mhd in sorted(glob.glob(os.path.join(root, "**", "*.mhd"), recursive=True)):
        uid = os.path.basename(mhd)[:-4]
        img = sitk.ReadImage(mhd)
        hu = sitk.GetArrayFromImage(img)
        prob = np.where(hu > -300, 255, 0).astype(np.uint8)
        with h5py.File(os.path.join(out, "probs", uid + ".h5"), "w") as h:
            d = h.create_dataset("prob", data=prob, chunks=(1,) + prob.shape[1:], **hdf5plugin.Zstd(clevel=1))
            d.attrs["origin_xyz"] = np.array(img.GetOrigin(), dtype=np.float64)
            d.attrs["spacing_xyz"] = np.array(img.GetSpacing(), dtype=np.float64)
            d.attrs["direction"] = np.array(img.GetDirection(), dtype=np.float64)
            d.attrs["series_uid"] = uid
            d.attrs["encoding"] = "uint8: p = value / 255"


if __name__ == "__main__":
    main()
