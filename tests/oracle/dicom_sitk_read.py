"""Oracle for luna's DICOM series reader (run by tests/it/ct_dicom.rs).

Usage: dicom_sitk_read.py SERIES_DIR OUT_PREFIX

Reads the series in SERIES_DIR with SimpleITK's ImageSeriesReader (the file list from
GetGDCMSeriesFileNames, i.e. GDCM's ordering by position along the normal) and writes
OUT_PREFIX.bin (the voxels, little-endian, (z,y,x) order, in SimpleITK's pixel type) and
OUT_PREFIX.txt: `type int32|float64|...`, `shape z y x`, `origin x y z`, `spacing x y z`,
`direction d00 .. d22` (row-major GetDirection), floats as repr() so they round-trip exactly.
With `time N` as third and fourth arguments it instead reads the series N times (after one
warm-up) and prints `sitk lookup+read: S s (lookup S s, read S s)`, medians of the wall time of
the series lookup (GetGDCMSeriesIDs + GetGDCMSeriesFileNames) and of Execute (the
benchmark's SimpleITK side, bench/dicom_read.sh).
"""
import statistics
import sys
import time

import SimpleITK as sitk


def lookup(d):
    r = sitk.ImageSeriesReader()
    ids = r.GetGDCMSeriesIDs(d)
    if len(ids) != 1:
        sys.exit(f"{d}: expected one series, found {len(ids)}")
    r.SetFileNames(r.GetGDCMSeriesFileNames(d, ids[0]))
    return r


def read(d):
    return lookup(d).Execute()


def bench(d, n):
    read(d)
    looks, reads = [], []
    for _ in range(n):
        t = time.perf_counter()
        r = lookup(d)
        t1 = time.perf_counter()
        r.Execute()
        t2 = time.perf_counter()
        looks.append(t1 - t)
        reads.append(t2 - t1)
    tot = [a + b for a, b in zip(looks, reads)]
    med = statistics.median
    print(f"sitk lookup+read: {med(tot):.4f} s (lookup {med(looks):.4f} s, read {med(reads):.4f} s); "
          f"{sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()} ITK threads")


def main():
    d, out = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3 and sys.argv[3] == "time":
        bench(d, int(sys.argv[4]))
        return
    img = read(d)
    a = sitk.GetArrayFromImage(img)
    with open(out + ".bin", "wb") as f:
        f.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
    rows = [
        ("type", [a.dtype.name]),
        ("shape", list(a.shape)),
        ("origin", [repr(v) for v in img.GetOrigin()]),
        ("spacing", [repr(v) for v in img.GetSpacing()]),
        ("direction", [repr(v) for v in img.GetDirection()]),
    ]
    with open(out + ".txt", "w") as f:
        for k, vs in rows:
            f.write(k + " " + " ".join(str(v) for v in vs) + "\n")


if __name__ == "__main__":
    main()
