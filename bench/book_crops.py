"""The book's crop-caching path (dlwpt-code p2ch14 `getCt` + `getCtRawCandidate` + prepcache),
re-written for the benchmark in bench/crops.sh. No code is copied from the book; the steps are:

  for each CT (series sorted by uid, as prepcache does so `lru_cache(1)` on getCt works):
      sitk.ReadImage(mhd) -> GetArrayFromImage -> float32 -> np.clip(-1000, 1000) in place
      for each candidate of that CT:
          xyz2irc (book's util: ((xyz - origin) @ inv(D)) / spacing, np.round, int)
          window: start = int(round(c - w/2)), end = start + w, shifted inside at the edges
          FanoutCache(...).set(key, (crop, irc))      # what raw_cache.memoize stores

Candidates follow the final book rule (p2ch14 getCandidateInfoList): every row of
annotations_with_malignancy.csv plus the class-0 rows of candidates.csv, for series on disk.
The cache mirrors util/disk.py: FanoutCache(shards=64, timeout=1, size_limit=3e11); the book's
GzipDisk only compresses `bytes` values, and memoized tuples are pickled, so the default Disk
stores the same uncompressed pickles.

Usage: book_crops.py LUNA_ROOT CACHE_DIR [WORKERS]
WORKERS processes split the CTs (the book's prepcache uses a DataLoader with workers); default
os.cpu_count(). Prints one JSON line: {"cts", "crops", "seconds", "workers", "bytes_read"}.
"""
import csv
import glob
import json
import os
import sys
import time
from multiprocessing import Pool

import numpy as np
import SimpleITK as sitk
from diskcache import FanoutCache

WIDTH_IRC = (32, 48, 48)


def candidate_info(root):
    on_disk = {os.path.basename(p)[:-4]: p for p in glob.glob(os.path.join(root, "subset*", "*.mhd"))}
    by_series = {}
    with open(os.path.join(root, "annotations_with_malignancy.csv")) as fh:
        for row in list(csv.reader(fh))[1:]:
            by_series.setdefault(row[0], []).append(tuple(float(v) for v in row[1:4]))
    with open(os.path.join(root, "candidates.csv")) as fh:
        for row in list(csv.reader(fh))[1:]:
            if row[0] in on_disk and not bool(int(row[4])):
                by_series.setdefault(row[0], []).append(tuple(float(v) for v in row[1:4]))
    return [(uid, on_disk[uid], by_series[uid]) for uid in sorted(by_series) if uid in on_disk]


def xyz2irc(xyz, origin, spacing, direction):
    cri = ((np.array(xyz) - origin) @ np.linalg.inv(direction)) / spacing
    cri = np.round(cri)
    return int(cri[2]), int(cri[1]), int(cri[0])


def crop(hu, center, width):
    slices = []
    for a, c in enumerate(center):
        assert 0 <= c < hu.shape[a], (center, hu.shape)
        s = int(round(c - width[a] / 2))
        e = s + width[a]
        if s < 0:
            s, e = 0, width[a]
        if e > hu.shape[a]:
            s, e = hu.shape[a] - width[a], hu.shape[a]
        slices.append(slice(s, e))
    return hu[tuple(slices)]


def process(job):
    cache_dir, items = job
    cache = FanoutCache(cache_dir, shards=64, timeout=1, size_limit=3e11)
    n = 0
    for uid, mhd, centers in items:
        img = sitk.ReadImage(mhd)
        hu = np.array(sitk.GetArrayFromImage(img), dtype=np.float32)
        hu.clip(-1000, 1000, hu)
        origin = np.array(img.GetOrigin())
        spacing = np.array(img.GetSpacing())
        direction = np.array(img.GetDirection()).reshape(3, 3)
        for xyz in centers:
            irc = xyz2irc(xyz, origin, spacing, direction)
            chunk = crop(hu, irc, WIDTH_IRC)
            cache.set(("getCtRawCandidate", uid, xyz, WIDTH_IRC), (chunk, irc))
            n += 1
    cache.close()
    return n


def main():
    root, cache_dir = sys.argv[1], sys.argv[2]
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 1)
    info = candidate_info(root)
    jobs = [(cache_dir, info[i::workers]) for i in range(workers)]
    t0 = time.perf_counter()
    if workers == 1:
        crops = process(jobs[0])
    else:
        with Pool(workers) as pool:
            crops = sum(pool.map(process, jobs))
    dt = time.perf_counter() - t0
    read = sum(os.path.getsize(p[:-4] + ".raw") for _, p, _ in info)
    print(json.dumps({"cts": len(info), "crops": crops, "seconds": dt, "workers": workers, "bytes_read": read}))


if __name__ == "__main__":
    main()
