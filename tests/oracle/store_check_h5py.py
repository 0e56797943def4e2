"""Oracle: h5py + hdf5plugin read a crop store written by luna and compare every row.

usage: store_check_h5py.py STORE.h5 EXPECTED.raw N W0 W1 W2 LEVEL
EXPECTED.raw holds the N crops as little-endian int16, row-major.
Exits 1 with a message on the first mismatch; prints "OK ..." on success.
"""
import sys

import h5py
import hdf5plugin  # noqa: F401  registers filter 32015 (zstd)
import numpy as np


def fail(msg):
    print(f"MISMATCH: {msg}")
    sys.exit(1)


def main():
    path, raw = sys.argv[1], sys.argv[2]
    n, w0, w1, w2, level = (int(a) for a in sys.argv[3:8])
    expected = np.fromfile(raw, dtype="<i2").reshape(n, w0, w1, w2)
    with h5py.File(path, "r") as f:
        ds = f["crops"]
        plist = ds.id.get_create_plist()
        filters = [plist.get_filter(i) for i in range(plist.get_nfilters())]
        codes = [flt[0] for flt in filters]
        if 32015 not in codes:
            fail(f"filters {filters} lack 32015")
        zstd = filters[codes.index(32015)]
        if list(zstd[2]) != [level]:
            fail(f"zstd cd_values {list(zstd[2])} != [{level}]")
        if ds.chunks != (1, w0, w1, w2):
            fail(f"chunks {ds.chunks} != {(1, w0, w1, w2)}")
        if ds.dtype != np.dtype("int16"):
            fail(f"dtype {ds.dtype} != int16")
        if ds.shape != (n, w0, w1, w2):
            fail(f"shape {ds.shape} != {(n, w0, w1, w2)}")
        if ds.maxshape[0] is not None:
            fail(f"first axis not unlimited: maxshape {ds.maxshape}")
        for row in range(n):
            got = ds[row]
            if not np.array_equal(got, expected[row]):
                bad = np.argwhere(got != expected[row])[0]
                fail(f"row {row} differs at {tuple(bad)}: {got[tuple(bad)]} != {expected[row][tuple(bad)]}")
        if not np.array_equal(ds[...], expected):
            fail("whole-array read differs")
        width = list(ds.attrs["width_irc"])
        if width != [w0, w1, w2]:
            fail(f"width_irc attr {width}")
        centers = f["center_irc"]
        if centers.shape != (n, 3) or centers.dtype != np.dtype("int32"):
            fail(f"center_irc {centers.shape} {centers.dtype}")
        version = ds.attrs["luna_version"]
        print(f"OK rows={n} filters={codes} chunks={ds.chunks} luna_version={version}")


main()
