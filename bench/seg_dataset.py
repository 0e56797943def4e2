"""The numpy side of bench/seg_dataset.sh: the book's mask + crop path (p2ch13 Ct +
buildAnnotationMask + getCtRawCandidate / getitem_fullSlice) for every series, with the exact
rule of luna's seg_dataset, so both produce the same arrays.

Per series (sorted by uid; WORKERS processes split the series, like luna's threads):
    sitk.ReadImage -> GetArrayFromImage (raw HU) -> the annotation mask (tests/oracle/seg_mask.py:
    per-axis box growth, union, & raw > -700 on the whole volume) -> np.clip(-1000, 1000) of
    the whole volume -> training crops (7x96x96 per nodule) or validation context slices
    (7xRxC per positive slice) -> with --write, an HDF5 file with h5py + hdf5plugin.Zstd(1)
    in luna's layout (one sample / slice per chunk).

The mask and sample code is imported from tests/oracle/seg_mask.py (the oracle the tests
check luna against), so the benchmark times exactly what the oracle computes.

Usage: seg_dataset.py CT_ROOT CANDIDATES_PARQUET OUT_DIR WORKERS [--write]
Prints one JSON line: {"cts", "train", "val", "seconds", "workers", "write"}.
"""
import glob
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
import pyarrow.parquet as pq
import SimpleITK as sitk

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "oracle"))
import seg_mask  # noqa: E402

K, CROP, THR = 3, 96, -700.0


def write_h5(path, s):
    import h5py
    import hdf5plugin

    z = hdf5plugin.Zstd(clevel=1)
    with h5py.File(path, "w") as f:
        m = s["mask"]
        f.create_dataset("mask", data=m, chunks=(1,) + m.shape[1:], **z)
        for name in ["train_input", "train_label", "val_input", "val_label"]:
            a = s[name]
            f.create_dataset(name, data=a, chunks=(1,) + a.shape[1:], maxshape=(None,) + a.shape[1:], **z)
        for name in ["train_center_irc", "val_slice"]:
            a = s[name]
            f.create_dataset(name, data=a, chunks=(4096,) + a.shape[1:], maxshape=(None,) + a.shape[1:], **z)


def process(job):
    out_dir, write, items = job
    train = val = 0
    for uid, mhd, split, nodules in items:
        img = sitk.ReadImage(mhd)
        s = seg_mask.series_samples(img, nodules, split, K, CROP, THR, "positive")
        train += len(s["train_input"])
        val += len(s["val_input"])
        if write:
            write_h5(os.path.join(out_dir, f"{uid}.h5"), s)
    return train, val


def main():
    root, cand, out_dir, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    write = "--write" in sys.argv[5:]
    os.makedirs(out_dir, exist_ok=True)
    on_disk = {os.path.basename(p)[:-4]: p for p in glob.glob(os.path.join(root, "**", "*.mhd"), recursive=True)}
    series = {}
    for r in pq.read_table(cand).to_pylist():
        s = series.setdefault(r["series_uid"], (r["split"], []))
        if r["is_nodule"]:
            s[1].append((r["coord_x"], r["coord_y"], r["coord_z"]))
    info = [(u, on_disk[u], series[u][0], series[u][1]) for u in sorted(series)]
    jobs = [(out_dir, write, info[i::workers]) for i in range(workers)]
    t0 = time.perf_counter()
    if workers == 1:
        res = [process(jobs[0])]
    else:
        with Pool(workers) as pool:
            res = pool.map(process, jobs)
    dt = time.perf_counter() - t0
    print(json.dumps({"cts": len(info), "train": sum(r[0] for r in res), "val": sum(r[1] for r in res),
                      "seconds": dt, "workers": workers, "write": write}))


if __name__ == "__main__":
    main()
