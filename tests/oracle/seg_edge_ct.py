"""Writes two small CTs whose nodules touch the volume's edges, for the seg_dataset tests
(tests/it/seg_dataset.rs), and adds their nodules to a LUNA-format dataset's CSVs.

Usage: seg_edge_ct.py DATASET_DIR SLICES

DATASET_DIR holds (or gets) annotations_with_malignancy.csv and candidates.csv; the CTs go to
DATASET_DIR/subset9/<uid>.mhd + .raw (int16, written by SimpleITK, uncompressed). The uids sort
before luna's synthetic ones ("1.2.0.edge.a" < "1.2.0.edge.b" < "1.3..."), so with
merge_candidates' val_stride 2 the first is a validation series and the second a training one.

Each CT is SLICES × 56 rows × 60 cols (rows != cols on purpose), background -1000 HU with
noise, and holds three bright objects (HU 20..200 with a few dark holes below -700):
- a ball centred on the first slice near row 0 and the last column (growth leaves the volume
  on the index and row axes at the low end and on the col axis at the high end);
- a ball centred on the last slice near the last row and column 1;
- a bar through every slice (growth along the index axis reaches both ends).
Annotation centres are the objects' voxel centres in world mm (identity direction for CT a,
an x/y flip for CT b). Deterministic (fixed seeds).
"""
import csv
import os
import sys

import numpy as np
import SimpleITK as sitk

ROWS, COLS = 56, 60


def make_ct(uid, slices, seed, flip):
    rng = np.random.default_rng(seed)
    a = rng.integers(-1100, -900, size=(slices, ROWS, COLS)).astype(np.int16)
    ii, rr, cc = np.meshgrid(np.arange(slices), np.arange(ROWS), np.arange(COLS), indexing="ij")
    objects = [(0, 2, COLS - 3, 4.5), (slices - 1, ROWS - 2, 1, 3.5)]
    for (i0, r0, c0, rad) in objects:
        ball = (ii - i0) ** 2 + ((rr - r0) / 1.0) ** 2 + ((cc - c0) / 1.0) ** 2 <= rad ** 2
        a[ball] = rng.integers(20, 200, size=int(ball.sum()))
    bar = (np.abs(rr - ROWS // 2) <= 2) & (np.abs(cc - COLS // 2) <= 3)
    a[bar] = rng.integers(20, 200, size=int(bar.sum()))
    holes = rng.random(a.shape) < 0.02
    a[holes & (a > -700)] = -750
    # Keep the annotated centre voxels themselves bright.
    centres = [(o[0], o[1], o[2]) for o in objects] + [(slices // 2, ROWS // 2, COLS // 2)]
    for (i, r, c) in centres:
        a[i, r, c] = 100
    img = sitk.GetImageFromArray(a)
    spacing = (0.75, 0.8, 2.0)
    origin = (-22.5, -20.0, -150.0)
    direction = (-1, 0, 0, 0, -1, 0, 0, 0, 1) if flip else (1, 0, 0, 0, 1, 0, 0, 0, 1)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    xyz = [img.TransformIndexToPhysicalPoint((int(c), int(r), int(i))) for (i, r, c) in centres]
    return img, xyz


def main():
    root, slices = sys.argv[1], int(sys.argv[2])
    sub = os.path.join(root, "subset9")
    os.makedirs(sub, exist_ok=True)
    ann = os.path.join(root, "annotations_with_malignancy.csv")
    cand = os.path.join(root, "candidates.csv")
    new_ann = not os.path.exists(ann)
    new_cand = not os.path.exists(cand)
    header = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm", "mal_bool"]
    if not new_ann:
        with open(ann) as fh:
            header = next(csv.reader(fh))
    with open(ann, "a", newline="") as fa, open(cand, "a", newline="") as fc:
        wa, wc = csv.writer(fa), csv.writer(fc)
        if new_ann:
            wa.writerow(header)
        if new_cand:
            wc.writerow(["seriesuid", "coordX", "coordY", "coordZ", "class"])
        for k, (uid, flip) in enumerate([("1.2.0.edge.a", False), ("1.2.0.edge.b", True)]):
            img, xyz = make_ct(uid, slices, 100 + k, flip)
            sitk.WriteImage(img, os.path.join(sub, f"{uid}.mhd"), useCompression=False)
            for n, p in enumerate(xyz):
                d = 6.0 + n
                v = {"seriesuid": uid, "coordX": repr(p[0]), "coordY": repr(p[1]),
                     "coordZ": repr(p[2]), "diameter_mm": d, "mal_bool": "True" if n % 2 else "False",
                     "mal_details": "[3]", "len_mal_details": 1}
                for ax, name in enumerate("XYZ"):
                    v[f"bboxLow{name}"] = repr(p[ax] - d / 2)
                    v[f"bboxHigh{name}"] = repr(p[ax] + d / 2)
                wa.writerow([v[h] for h in header])
                wc.writerow([uid, repr(p[0]), repr(p[1]), repr(p[2]), 1])
            # One negative candidate so the series also has a class-0 row.
            wc.writerow([uid, repr(xyz[0][0]), repr(xyz[0][1] + 5.0), repr(xyz[0][2]), 0])
    print(f"wrote 2 edge CTs with {slices} slices to {sub}")


if __name__ == "__main__":
    main()
