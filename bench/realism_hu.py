#!/usr/bin/env python3
"""HU histograms of a real CT vs synthetic CTs, independent of luna's code (issue 27).

Reads the real CT (a DICOM series folder, or a LUNA16 `.mhd`) with SimpleITK and the synthetic
dataset's `.mhd` files the same way, finds each CT's lungs by a standard procedure that knows
nothing of how luna draws them, and compares:

- parenchyma: the HU of the lung-mask voxels over [-1000, -300) in 10-HU bins, values outside
  the range (vessels and nodules above it, padding below) counted in the end bins, each
  histogram normalised; overlap = sum(min(p, q)) (1 = identical, 0 = disjoint). The fraction
  outside the range is reported too.
- nodules: the HU of the voxels within d/2 of each annotated centre (world mm -> voxel through
  the image's own geometry) over [-1000, 400), same bins, clipping and overlap; the real CT's
  nodules are the rows of LUNA16's annotations.csv with its SeriesInstanceUID, the synthetic
  ones the rows of the dataset's annotations.csv.

Lung mask (per CT): air = HU < -400; 3-D components (26-connected) that touch the side borders
of the axial slices are outside air and dropped; components of at least 1 % of the largest
remaining one's volume (at most 3: two lungs, or lungs plus trachea) are kept, which drops bowel
gas and small pockets; holes are filled slice by slice (vessels and nodules inside the lung join
it); the result is eroded in-plane by 2 voxels to keep partial-volume edge voxels out.

Library: `load_ct`, `lung_mask`, `lung_histogram`, `nodule_histogram`, `overlap`,
`compare`. CLI (stable; bench/realism.sh and the synth tuning loop use it):

    realism_hu.py REAL_DICOM_DIR_OR_MHD SYNTH_DIR [--series N] [--real-annotations CSV]
                  [--histograms]

prints one JSON object: `lung_overlap`, `nodule_overlap`, summary statistics of both sides, the
per-series lung overlaps of the synthetic CTs and (with --histograms) the bin edges and both
sides' normalised histograms. `--series N` uses the first N series of SYNTH_DIR's
seriesuids.csv (default all).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

LUNG_RANGE = (-1000.0, -300.0)
NODULE_RANGE = (-1000.0, 400.0)
BIN_HU = 10.0
AIR_HU = -400.0
ERODE_VOXELS = 2


def find_real_data() -> Path:
    """The project's shared/real folder: beside the checkout or beside one of its parents."""
    for a in Path(__file__).resolve().parents[1].parents:
        if (a / "shared/real/README.md").is_file():
            return a / "shared/real"
    return Path(__file__).resolve().parents[2] / "shared/real"


DEFAULT_REAL_ANNOTATIONS = find_real_data() / "luna16-eval/annotations.csv"


def bins(lo_hi: tuple[float, float]) -> np.ndarray:
    """The histogram's bin edges over [lo, hi) in BIN_HU steps."""
    lo, hi = lo_hi
    return np.arange(lo, hi + BIN_HU / 2, BIN_HU)


def load_ct(path: str | Path) -> sitk.Image:
    """A CT as a SimpleITK image: a `.mhd`/other file, or the one DICOM series under a folder."""
    p = Path(path)
    if p.is_file():
        return sitk.ReadImage(str(p))
    if not p.is_dir():
        raise SystemExit(f"realism_hu: {p} is neither a CT file nor a folder")
    dirs = sorted({f.parent for f in p.rglob("*.dcm")})
    if len(dirs) != 1:
        raise SystemExit(f"realism_hu: {p} holds {len(dirs)} DICOM series folders; name one")
    reader = sitk.ImageSeriesReader()
    names = reader.GetGDCMSeriesFileNames(str(dirs[0]))
    reader.SetFileNames(names)
    reader.MetaDataDictionaryArrayUpdateOn()
    img = reader.Execute()
    uid = reader.GetMetaData(0, "0020|000e").strip() if reader.HasMetaDataKey(0, "0020|000e") else ""
    img.SetMetaData("luna_seriesuid", uid)
    return img


def series_uid(img: sitk.Image, path: str | Path) -> str:
    """The CT's SeriesInstanceUID: the DICOM tag, or the `.mhd` file's stem (LUNA16 naming)."""
    if img.HasMetaDataKey("luna_seriesuid") and img.GetMetaData("luna_seriesuid"):
        return img.GetMetaData("luna_seriesuid")
    return Path(path).stem


def hu_array(img: sitk.Image) -> np.ndarray:
    """The voxels as float32 HU, indexed [z, y, x]."""
    return sitk.GetArrayFromImage(img).astype(np.float32)


def lung_mask(hu: np.ndarray) -> np.ndarray:
    """The lungs of a [z, y, x] HU volume (see the module doc for the procedure)."""
    air = hu < AIR_HU
    labels, n = ndimage.label(air, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros_like(air)
    border = np.unique(
        np.concatenate(
            [labels[:, 0, :].ravel(), labels[:, -1, :].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]
        )
    )
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    sizes[border] = 0
    order = np.argsort(sizes)[::-1]
    if sizes[order[0]] == 0:
        return np.zeros_like(air)
    keep = [i for i in order[:3] if sizes[i] >= 0.01 * sizes[order[0]]]
    mask = np.isin(labels, keep)
    for z in range(mask.shape[0]):
        mask[z] = ndimage.binary_fill_holes(mask[z])
    if ERODE_VOXELS:
        plane = np.zeros((3, 3, 3), bool)
        plane[1] = ndimage.generate_binary_structure(2, 1)
        mask = ndimage.binary_erosion(mask, structure=plane, iterations=ERODE_VOXELS)
    return mask


def histogram(values: np.ndarray, lo_hi: tuple[float, float]) -> tuple[np.ndarray, int]:
    """Voxel counts per bin over lo_hi, values outside it counted in the end bins (so a side
    whose voxels mostly fall outside cannot look like the other), and how many fell outside."""
    lo, hi = lo_hi
    counts, _ = np.histogram(np.clip(values, lo, hi - BIN_HU / 2), bins=bins(lo_hi))
    outside = int(((values < lo) | (values >= hi)).sum())
    return counts.astype(np.float64), outside


def normalise(counts: np.ndarray) -> np.ndarray:
    """Counts as a distribution (all zeros stay zeros)."""
    s = counts.sum()
    return counts / s if s > 0 else counts


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    """Histogram intersection of two normalised histograms: sum(min(p, q))."""
    return float(np.minimum(normalise(p), normalise(q)).sum())


def nodule_voxels(img: sitk.Image, hu: np.ndarray, nodules: list[tuple[float, float, float, float]]) -> np.ndarray:
    """HU of the voxels within d/2 of each (x, y, z, d) world-mm nodule (each voxel once)."""
    mask = np.zeros(hu.shape, bool)
    size = np.array(img.GetSize())  # x, y, z
    for x, y, z, d in nodules:
        r = d / 2.0
        lo = np.array(img.TransformPhysicalPointToContinuousIndex((x - r, y - r, z - r)))
        hi = np.array(img.TransformPhysicalPointToContinuousIndex((x + r, y + r, z + r)))
        a = np.clip(np.floor(np.minimum(lo, hi)).astype(int), 0, size - 1)
        b = np.clip(np.ceil(np.maximum(lo, hi)).astype(int), 0, size - 1)
        ix, iy, iz = (np.arange(a[k], b[k] + 1) for k in range(3))
        gz, gy, gx = np.meshgrid(iz, iy, ix, indexing="ij")
        pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1).astype(float)
        world = np.array(img.GetOrigin()) + (pts * np.array(img.GetSpacing())) @ np.array(
            img.GetDirection()
        ).reshape(3, 3).T
        inside = np.linalg.norm(world - np.array([x, y, z]), axis=1) <= r
        mask[gz.ravel()[inside], gy.ravel()[inside], gx.ravel()[inside]] = True
    return hu[mask]


def read_annotations(csv_path: str | Path) -> dict[str, list[tuple[float, float, float, float]]]:
    """LUNA16 annotations.csv rows grouped by seriesuid as (x, y, z, d) in mm."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["seriesuid"], []).append(
                tuple(float(row[k]) for k in ("coordX", "coordY", "coordZ", "diameter_mm"))
            )
    return out


class Side:
    """Pooled histograms and statistics of one side (the real CT, or the synthetic CTs)."""

    def __init__(self) -> None:
        self.lung = np.zeros(len(bins(LUNG_RANGE)) - 1)
        self.nodule = np.zeros(len(bins(NODULE_RANGE)) - 1)
        self.lung_outside = self.nodule_outside = 0
        self.lung_voxels = self.total_voxels = self.nodules = 0
        self.lung_values: list[np.ndarray] = []
        self.nodule_values: list[np.ndarray] = []

    def add(self, img: sitk.Image, nodules: list) -> np.ndarray:
        """Add one CT; returns its own lung histogram (counts)."""
        hu = hu_array(img)
        vals = hu[lung_mask(hu)]
        counts, outside = histogram(vals, LUNG_RANGE)
        self.lung += counts
        self.lung_outside += outside
        self.lung_voxels += vals.size
        self.total_voxels += hu.size
        self.lung_values.append(vals[::97])  # a subsample for the quantiles
        nv = nodule_voxels(img, hu, nodules)
        c, o = histogram(nv, NODULE_RANGE)
        self.nodule += c
        self.nodule_outside += o
        self.nodules += len(nodules)
        self.nodule_values.append(nv)
        return counts

    def summary(self) -> dict:
        """Statistics for the JSON report."""
        lv = np.concatenate(self.lung_values) if self.lung_values else np.zeros(0)
        nv = np.concatenate(self.nodule_values) if self.nodule_values else np.zeros(0)
        q = lambda v: {f"p{p}": float(np.percentile(v, p)) for p in (5, 25, 50, 75, 95)} if v.size else {}
        return {
            "lung_voxels": self.lung_voxels,
            "lung_fraction_of_volume": self.lung_voxels / max(self.total_voxels, 1),
            "lung_outside_range_fraction": self.lung_outside / max(self.lung_voxels, 1),
            "lung_hu_mean": float(lv.mean()) if lv.size else None,
            "lung_hu_quantiles": q(lv),
            "nodules": self.nodules,
            "nodule_voxels": int(nv.size),
            "nodule_outside_range_fraction": self.nodule_outside / max(int(nv.size), 1),
            "nodule_hu_mean": float(nv.mean()) if nv.size else None,
            "nodule_hu_quantiles": q(nv),
        }


def synth_series(synth_dir: Path, limit: int | None) -> list[Path]:
    """The synthetic dataset's .mhd files in seriesuids.csv order (the first `limit`)."""
    uids = [l.strip() for l in (synth_dir / "seriesuids.csv").read_text().splitlines() if l.strip()]
    files = {p.stem: p for p in synth_dir.rglob("*.mhd")}
    missing = [u for u in uids if u not in files]
    if missing:
        raise SystemExit(f"realism_hu: {synth_dir} lists {len(missing)} series without a .mhd, e.g. {missing[0]}")
    return [files[u] for u in (uids[:limit] if limit else uids)]


def compare(real: str | Path, synth_dir: str | Path, series: int | None = None,
            real_annotations: str | Path = DEFAULT_REAL_ANNOTATIONS, histograms: bool = False) -> dict:
    """The full comparison as a JSON-ready dict (see the module doc)."""
    synth_dir = Path(synth_dir)
    real_img = load_ct(real)
    uid = series_uid(real_img, real)
    real_side = Side()
    real_side.add(real_img, read_annotations(real_annotations).get(uid, []))
    syn_ann = read_annotations(synth_dir / "annotations.csv")
    syn_side = Side()
    per_series = {}
    for mhd in synth_series(synth_dir, series):
        counts = syn_side.add(sitk.ReadImage(str(mhd)), syn_ann.get(mhd.stem, []))
        per_series[mhd.stem] = round(overlap(counts, real_side.lung), 4)
    out = {
        "lung_overlap": overlap(syn_side.lung, real_side.lung),
        "nodule_overlap": overlap(syn_side.nodule, real_side.nodule),
        "real_uid": uid,
        "synth_series": len(per_series),
        "lung_overlap_per_series": per_series,
        "real": real_side.summary(),
        "synth": syn_side.summary(),
    }
    if histograms:
        out["lung_bins"] = bins(LUNG_RANGE).tolist()
        out["nodule_bins"] = bins(NODULE_RANGE).tolist()
        out["real"]["lung_hist"] = normalise(real_side.lung).round(6).tolist()
        out["synth"]["lung_hist"] = normalise(syn_side.lung).round(6).tolist()
        out["real"]["nodule_hist"] = normalise(real_side.nodule).round(6).tolist()
        out["synth"]["nodule_hist"] = normalise(syn_side.nodule).round(6).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("real", help="the real CT: a DICOM series folder (or a folder above one) or an .mhd")
    ap.add_argument("synth_dir", help="a `luna synth` output folder (seriesuids.csv, annotations.csv, *.mhd)")
    ap.add_argument("--series", type=int, default=None, help="use the first N synthetic series (default all)")
    ap.add_argument("--real-annotations", default=str(DEFAULT_REAL_ANNOTATIONS),
                    help="LUNA16 annotations.csv holding the real CT's nodules")
    ap.add_argument("--histograms", action="store_true", help="include the bin edges and both histograms")
    a = ap.parse_args(argv)
    if not Path(a.real_annotations).is_file():
        raise SystemExit(f"realism_hu: no annotations at {a.real_annotations} (--real-annotations)")
    res = compare(a.real, a.synth_dir, a.series, a.real_annotations, a.histograms)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
