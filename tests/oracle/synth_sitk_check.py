"""Oracle for luna::synth: SimpleITK must read every synthetic series exactly as intended.

Usage: synth_sitk_check.py expected.json
Checks per series: voxel bytes identical to the generator's render, spacing/origin/direction
within 1e-9, pixel type int16; every annotation centre (annotations.csv, world mm) maps with
TransformPhysicalPointToIndex to a voxel inside the volume with HU > -300; every candidate is
inside the volume; every class-0 candidate is at least one diameter from every nodule centre.
Exits 1 with a message per failure.
"""
import csv
import json
import math
import sys

try:
    import numpy as np
    import SimpleITK as sitk
except ImportError as e:  # fail loudly, never skip
    print(f"missing python module: {e}; install numpy and SimpleITK in the luna venv", file=sys.stderr)
    sys.exit(2)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))[1:]


def main():
    spec = json.load(open(sys.argv[1]))
    root = spec["root"]
    errors = []
    images = {}
    for s in spec["series"]:
        img = sitk.ReadImage(s["mhd"])
        images[s["uid"]] = img
        if img.GetPixelID() != sitk.sitkInt16:
            errors.append(f"{s['uid']}: pixel type {img.GetPixelIDTypeAsString()}")
        arr = sitk.GetArrayFromImage(img)
        exp = np.fromfile(s["expected"], dtype="<i2")
        nx, ny, nz = s["dims_xyz"]
        if arr.shape != (nz, ny, nx):
            errors.append(f"{s['uid']}: shape {arr.shape} != {(nz, ny, nx)}")
        elif arr.astype("<i2").tobytes() != exp.tobytes():
            errors.append(f"{s['uid']}: voxel data differs ({int((arr.ravel() != exp).sum())} voxels)")
        direction = [v for row in s["direction"] for v in row]
        for name, got, want in [("spacing", img.GetSpacing(), s["spacing"]),
                                ("origin", img.GetOrigin(), s["origin"]),
                                ("direction", img.GetDirection(), direction)]:
            if max(abs(a - b) for a, b in zip(got, want)) > 1e-9:
                errors.append(f"{s['uid']}: {name} {got} != {want}")
        if s["compressed"] and "CompressedData = True" not in open(s["mhd"]).read():
            errors.append(f"{s['uid']}: expected a compressed header")
    nodules = {}
    n_ann = 0
    for uid, x, y, z, d in rows(f"{root}/annotations.csv"):
        img = images[uid]
        p = (float(x), float(y), float(z))
        nodules.setdefault(uid, []).append((p, float(d)))
        idx = img.TransformPhysicalPointToIndex(p)
        if not all(0 <= idx[k] < img.GetSize()[k] for k in range(3)):
            errors.append(f"annotation {uid} {p} maps outside: {idx}")
            continue
        hu = int(img[idx])
        if hu <= -300:
            errors.append(f"annotation {uid} {p} idx {idx}: HU {hu} is not nodule-like")
        n_ann += 1
    n_neg = 0
    for uid, x, y, z, cls in rows(f"{root}/candidates.csv"):
        img = images[uid]
        p = (float(x), float(y), float(z))
        ci = img.TransformPhysicalPointToContinuousIndex(p)
        if not all(-0.5 <= ci[k] < img.GetSize()[k] - 0.5 for k in range(3)):
            errors.append(f"candidate {uid} {p} outside volume: {ci}")
        if cls == "0":
            n_neg += 1
            for c, d in nodules.get(uid, []):
                if math.dist(c, p) < d:
                    errors.append(f"negative {uid} {p} within {math.dist(c, p):.2f} mm of nodule {c} (d={d})")
    for e in errors:
        print("FAIL", e)
    print(f"{'FAILED' if errors else 'OK'} series={len(images)} annotations={n_ann} negatives={n_neg}")
    sys.exit(1 if errors else 0)


main()
