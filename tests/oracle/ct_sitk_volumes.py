"""Oracle for luna's MetaImage reader and geometry (run by tests/it/ct_oracle.rs).

Usage: ct_sitk_volumes.py OUTDIR

Writes, with SimpleITK, one small volume per scalar pixel type, compressed and not, with a
non-trivial origin/spacing and a rotated direction matrix; for each volume it dumps the array as
read back by SimpleITK (raw little-endian bytes, (z,y,x) order) and, for a list of world points,
SimpleITK's TransformPhysicalPointToContinuousIndex. Everything is described in OUTDIR/manifest.txt,
one record per line, floats written with repr() so they round-trip exactly.
"""
import math
import os
import sys

import numpy as np
import SimpleITK as sitk

TYPES = [
    ("sitkInt8", np.int8), ("sitkUInt8", np.uint8), ("sitkInt16", np.int16),
    ("sitkUInt16", np.uint16), ("sitkInt32", np.int32), ("sitkUInt32", np.uint32),
    ("sitkInt64", np.int64), ("sitkUInt64", np.uint64), ("sitkFloat32", np.float32),
    ("sitkFloat64", np.float64),
]
SHAPE_ZYX = (5, 6, 7)


def rot(axis, deg):
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


# Geometry A: 30 deg about z then 10 deg about x. Geometry B: A combined with a flip of x (det -1).
DIRS = [rot("z", 30) @ rot("x", 10), rot("z", 30) @ rot("x", 10) @ np.diag([-1.0, 1.0, 1.0])]
ORIGIN = (-12.5, 33.25, -101.0)
SPACING = (0.7, 0.8, 2.5)


def values(dtype, rng):
    n = int(np.prod(SHAPE_ZYX))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max, size=n, dtype=dtype, endpoint=True)
        special = [info.min, info.max, 0, -1000, 1000, -1001, 1001, 999, -3000, 3000]
        special = [v for v in special if info.min <= v <= info.max]
    else:
        a = (rng.standard_normal(n) * 1500).astype(dtype)
        special = [-3.7, 3.7, 999.9, -999.9, 1000.5, -1000.5, 0.5, -0.5, 1e30, -1e30]
    a[: len(special)] = np.array(special, dtype=dtype)
    return a.reshape(SHAPE_ZYX)


def main(out):
    rng = np.random.default_rng(1234)
    lines = []
    points = [tuple(rng.uniform(-60, 60, 3) + np.array(ORIGIN) + np.array([2.0, 2.4, 5.0]))
              for _ in range(25)]
    for k, (tname, dtype) in enumerate(TYPES):
        for compress in (False, True):
            name = f"{tname}_{'z' if compress else 'r'}"
            d = DIRS[(k + int(compress)) % 2]
            img = sitk.GetImageFromArray(values(dtype, rng))
            assert img.GetPixelID() == getattr(sitk, tname), (tname, img.GetPixelIDTypeAsString())
            img.SetOrigin(ORIGIN)
            img.SetSpacing(SPACING)
            img.SetDirection(tuple(d.ravel()))
            mhd = os.path.join(out, name + ".mhd")
            sitk.WriteImage(img, mhd, useCompression=compress)
            back = sitk.ReadImage(mhd)
            arr = sitk.GetArrayFromImage(back)
            arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(out, name + ".bin"))
            with open(mhd) as fh:
                met = [l.split("=")[1].strip() for l in fh if l.startswith("ElementType")][0]
            lines.append(f"image {name} {int(compress)} {met}")
            lines.append("shape " + " ".join(str(v) for v in arr.shape))
            lines.append("spacing " + " ".join(repr(v) for v in back.GetSpacing()))
            lines.append("origin " + " ".join(repr(v) for v in back.GetOrigin()))
            lines.append("direction " + " ".join(repr(v) for v in back.GetDirection()))
            for p in points:
                ci = back.TransformPhysicalPointToContinuousIndex(p)  # (x,y,z) = (col,row,index)
                lines.append("point " + " ".join(repr(float(v)) for v in (*p, *ci)))
    with open(os.path.join(out, "manifest.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
