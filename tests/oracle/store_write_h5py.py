"""Oracle: h5py writes a crop store that luna's CropReader must read identically.

usage: store_write_h5py.py OUT.h5 EXPECTED.raw N W0 W1 W2 MODE
MODE: zstd    - hdf5plugin.Zstd(clevel=5), one sample per chunk (luna's direct path)
      shufzstd - shuffle + hdf5plugin.Zstd(clevel=5) (luna's default pipeline)
      gzip    - shuffle + gzip (not zstd: luna falls back to HDF5's own decoding)
      corrupt - zstd, then chunk of row 1 overwritten with garbage via write_direct_chunk
      partial - zstd, shape N but only even rows written (odd rows are unallocated chunks)
The values (seeded numpy, CT-like) are also written to EXPECTED.raw as little-endian int16.
"""
import sys

import h5py
import hdf5plugin
import numpy as np


def main():
    out, raw = sys.argv[1], sys.argv[2]
    n, w0, w1, w2 = (int(a) for a in sys.argv[3:7])
    mode = sys.argv[7]
    rng = np.random.default_rng(1234)
    base = rng.uniform(-900, -700, size=(n, 1, 1, 1))
    grad = np.linspace(0, 50, w1).reshape(1, 1, w1, 1)
    data = base + grad + rng.normal(0, 25, size=(n, w0, w1, w2))
    data = np.clip(np.round(data), -1000, 1000).astype("<i2")
    opts = {
        "gzip": dict(compression="gzip", compression_opts=4, shuffle=True),
        "shufzstd": dict(shuffle=True, **hdf5plugin.Zstd(clevel=5)),
    }.get(mode, hdf5plugin.Zstd(clevel=5))
    with h5py.File(out, "w") as f:
        ds = f.create_dataset(
            "crops", shape=(n, w0, w1, w2), maxshape=(None, w0, w1, w2),
            chunks=(1, w0, w1, w2), dtype="<i2", **opts,
        )
        plist = ds.id.get_create_plist()
        codes = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
        want = {"gzip": [2, 1], "shufzstd": [2, 32015]}.get(mode, [32015])
        assert codes == want, f"h5py pipeline {codes} != {want}"
        if mode == "partial":
            for row in range(0, n, 2):
                ds[row] = data[row]
            data[1::2] = 0
        else:
            ds[...] = data
        if mode == "corrupt":
            ds.id.write_direct_chunk((1, 0, 0, 0), b"\x28\xb5\x2f\xfd garbage, not zstd")
    data.tofile(raw)
    print(f"OK wrote {n} rows mode={mode}")


main()
