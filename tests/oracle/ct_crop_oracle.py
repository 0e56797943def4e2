"""Oracle for luna's crops (run by tests/it/ct_crop_oracle.rs).

Usage: ct_crop_oracle.py OUTDIR

Writes volumes with SimpleITK (MET_SHORT uncompressed as in LUNA16, MET_SHORT compressed, and
MET_FLOAT), then for centres near every edge computes the book's window independently of luna
(start = int(np.round(center - width/2)), end = start + width, shifted inside the volume) and dumps
np.clip(arr, -1000, 1000)[window].astype(np.int16) as raw little-endian bytes. Records go to
OUTDIR/crops.txt: `crop VOLUME i r c wi wr wc s0 s1 s2 FILE`.
"""
import os
import sys

import numpy as np
import SimpleITK as sitk

SHAPE = (20, 30, 40)


def window(center, width, shape):
    out = []
    for a in range(3):
        s = int(np.round(center[a] - width[a] / 2))
        e = s + width[a]
        if s < 0:
            s, e = 0, width[a]
        if e > shape[a]:
            s, e = shape[a] - width[a], shape[a]
        out.append((s, e))
    return out


def main(out):
    rng = np.random.default_rng(99)
    vols = {
        "short_r": (rng.integers(-3000, 3000, SHAPE).astype(np.int16), False),
        "short_z": (rng.integers(-3000, 3000, SHAPE).astype(np.int16), True),
        "float_r": ((rng.standard_normal(SHAPE) * 1200).astype(np.float32), False),
    }
    centres = [(10, 15, 20), (0, 0, 0), (19, 29, 39), (1, 28, 2), (18, 1, 38), (0, 15, 39),
               (19, 0, 20), (3, 4, 5), (10, 29, 0), (17, 26, 36)]
    widths = [(6, 8, 10), (5, 7, 9), (20, 1, 40)]
    lines = []
    for vname, (arr, compress) in vols.items():
        img = sitk.GetImageFromArray(arr)
        img.SetOrigin((-198.1, -195.0, -335.2))
        img.SetSpacing((0.76, 0.76, 2.5))
        sitk.WriteImage(img, os.path.join(out, vname + ".mhd"), useCompression=compress)
        back = sitk.GetArrayFromImage(sitk.ReadImage(os.path.join(out, vname + ".mhd")))
        clipped = np.clip(back, -1000, 1000).astype(np.int16)
        for n, c in enumerate(centres):
            for m, w in enumerate(widths):
                (s0, e0), (s1, e1), (s2, e2) = window(c, w, SHAPE)
                f = f"{vname}_{n}_{m}.bin"
                clipped[s0:e0, s1:e1, s2:e2].astype("<i2").tofile(os.path.join(out, f))
                lines.append(f"crop {vname} {c[0]} {c[1]} {c[2]} {w[0]} {w[1]} {w[2]} {s0} {s1} {s2} {f}")
    with open(os.path.join(out, "crops.txt"), "w") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
