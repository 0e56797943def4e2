"""Whole-CT segmentation in PyTorch-Python, the same work as luna's `segment` stage per CT:
read the .mhd (SimpleITK), clip HU to +-1000, every slice with 3 context slices on each side
(clamped at the ends) through the book's UNetWrapper (tests/oracle/nn_unet.py) with luna's
weights (model.safetensors), eval mode, no_grad, BATCH slices per forward, probabilities
quantised to uint8 (round(p * 255)), written as HDF5 `prob` (chunks one slice, zstd level 1
via hdf5plugin, the CT geometry as attributes) -- luna's prob-volume layout.

Usage: segment.py MODEL.safetensors OUT_DIR THREADS BATCH CT.mhd...
Prints one JSON line per CT: uid, slices, seconds (read + UNet + write) and the three parts.
"""
import json
import os
import sys
import time

import h5py
import hdf5plugin
import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "oracle"))
import nn_st  # noqa: E402
from nn_unet import UNetWrapper  # noqa: E402


def main():
    weights, out_dir, threads, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    m = UNetWrapper()
    m.load_state_dict({k: torch.from_numpy(v) for k, v in nn_st.load(weights).items()}, strict=True)
    m.eval()
    os.makedirs(out_dir, exist_ok=True)
    for mhd in sys.argv[5:]:
        uid = os.path.basename(mhd)[:-4]
        t0 = time.perf_counter()
        img = sitk.ReadImage(mhd)
        hu = np.clip(sitk.GetArrayFromImage(img), -1000, 1000).astype(np.float32)
        n, r, c = hu.shape
        assert r % 4 == 0 and c % 4 == 0, "real-preset slices are 512x512"
        t1 = time.perf_counter()
        out = np.empty((n, r, c), dtype=np.uint8)
        with torch.no_grad():
            for start in range(0, n, batch):
                k = min(batch, n - start)
                idx = np.clip(np.arange(start, start + k)[:, None] + np.arange(-3, 4)[None, :], 0, n - 1)
                p = m(torch.from_numpy(hu[idx]))[:, 0].numpy()
                out[start:start + k] = np.round(np.clip(p, 0, 1) * 255).astype(np.uint8)
        t2 = time.perf_counter()
        with h5py.File(os.path.join(out_dir, uid + ".h5"), "w") as h:
            ds = h.create_dataset("prob", data=out, chunks=(1, r, c), **hdf5plugin.Zstd(clevel=1))
            ds.attrs["origin_xyz"] = np.array(img.GetOrigin(), dtype=np.float64)
            ds.attrs["spacing_xyz"] = np.array(img.GetSpacing(), dtype=np.float64)
            ds.attrs["direction"] = np.array(img.GetDirection(), dtype=np.float64)
            ds.attrs["series_uid"] = uid
            ds.attrs["encoding"] = "uint8: p = value / 255"
        t3 = time.perf_counter()
        print(json.dumps({"uid": uid, "slices": n, "seconds": t3 - t0, "read": t1 - t0,
                          "unet": t2 - t1, "write": t3 - t2}), flush=True)


if __name__ == "__main__":
    main()
