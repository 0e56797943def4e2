#!/usr/bin/env python3
"""Quick calibration probe of a synthetic dataset against the book's real-data models (issue 27).

Usage:
  realism_probe.py SYNTH_DIR [--series N] [--threads 2] [--no-unet] [--models DIR]
                   [--real DICOM_DIR] [--hu PATH/realism_hu.py]

For the first N series of SYNTH_DIR (seriesuids.csv order), with the book's checkpoints
(default classifier and UNet in shared/real/book-models) and the book chain of
tests/oracle/book_chain.py (imported, not copied):

- classifier: P(nodule) of every row of candidates.csv (32×48×48 crop at native voxels, HU
  clipped ±1000) → ROC AUC over all of them (target 0.90–0.99);
- UNet chain (threshold 0.5, 3-D erosion, label, centre of mass, classify): clusters per CT
  (target 300–1200; the real CT has 604), clusters with P > 0.5 per CT (target 3–30), share of
  planted nodules with a cluster within the nodule radius (target 70–100 %);
- lung HU overlap with the real CT (target ≥ 0.7) through realism_hu.py's CLI when that file is
  found (bench/ beside this one, or --hu).

Prints one JSON object (per-series numbers and the totals). A quick probe for tuning the
generator; the official numbers come from luna's own bench.
"""
import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/oracle"))
import book_chain  # noqa: E402
from nn_model import LunaModel  # noqa: E402
from nn_unet import UNetWrapper  # noqa: E402


def real_dir():
    for a in ROOT.parents:
        if (a / "shared/real/README.md").is_file():
            return a / "shared/real"
    raise SystemExit("realism_probe: shared/real not found beside the checkout")


def read_mhd(path):
    img = sitk.ReadImage(str(path))
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    g = {
        "origin": np.array(img.GetOrigin()),
        "spacing": np.array(img.GetSpacing()),
        "direction": np.array(img.GetDirection()).reshape(3, 3),
    }
    return hu, g


def auc(scores, labels):
    s = np.asarray(scores)
    y = np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # average ranks of ties
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    rp = ranks[: len(pos)].sum()
    return float((rp - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def classify(cls, hu_clipped, g, xyzs):
    probs = []
    with torch.no_grad():
        for start in range(0, len(xyzs), 16):
            part = xyzs[start:start + 16]
            x = np.stack([book_chain.crop(hu_clipped, book_chain.xyz2irc(p, g)) for p in part])
            _, p = cls(torch.from_numpy(x)[:, None])
            probs += p[:, 1].tolist()
    return probs


def clusters(seg, cls, hu, hu_clipped, g):
    prob = book_chain.segment(hu, seg)
    clean = ndimage.binary_erosion(prob > 0.5, iterations=1)
    labels, n = ndimage.label(clean)
    coms = ndimage.center_of_mass(hu_clipped + 1001, labels, np.arange(1, n + 1)) if n else []
    xyzs = [book_chain.irc2xyz(c, g) for c in coms]
    return xyzs, classify(cls, hu_clipped, g, xyzs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("synth")
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-unet", action="store_true")
    ap.add_argument("--models")
    ap.add_argument("--real")
    ap.add_argument("--hu")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    real = real_dir()
    models = Path(a.models) if a.models else real / "book-models"
    cls = book_chain.load_state(LunaModel(), models / "cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state")
    seg = book_chain.load_state(UNetWrapper(), models / "seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state")
    synth = Path(a.synth)
    with open(synth / "seriesuids.csv") as fh:
        uids = [r[0] for r in csv.reader(fh) if r and r[0] != "seriesuid"][: a.series]
    with open(synth / "candidates.csv") as fh:
        cands = list(csv.DictReader(fh))
    with open(synth / "annotations.csv") as fh:
        anns = list(csv.DictReader(fh))
    all_p, all_y, per = [], [], []
    for uid in uids:
        t0 = time.perf_counter()
        hu, g = read_mhd(next(synth.glob(f"subset*/{uid}.mhd")))
        hu_c = hu.clip(-1000, 1000)
        rows = [r for r in cands if r["seriesuid"] == uid]
        xyz = [np.array([float(r[k]) for k in ("coordX", "coordY", "coordZ")]) for r in rows]
        p = classify(cls, hu_c, g, xyz)
        y = [int(r["class"]) for r in rows]
        all_p += p
        all_y += y
        s = {"uid": uid[-8:], "shape": list(hu.shape), "spacing": g["spacing"].round(3).tolist(),
             "candidates": len(rows), "cls_auc": auc(p, y)}
        if not a.no_unet:
            cxyz, cp = clusters(seg, cls, hu, hu_c, g)
            nod = [r for r in anns if r["seriesuid"] == uid]
            found = 0
            for r in nod:
                t = np.array([float(r[k]) for k in ("coordX", "coordY", "coordZ")])
                d = float(r["diameter_mm"])
                found += any(np.linalg.norm(t - c) <= d / 2 for c in cxyz)
            s.update({"clusters": len(cxyz), "accepted": int(sum(q > 0.5 for q in cp)),
                      "nodules": len(nod), "found": found})
        s["seconds"] = round(time.perf_counter() - t0, 1)
        per.append(s)
        print(json.dumps(s), file=sys.stderr)
    out = {"series": per, "cls_auc": auc(all_p, all_y),
           "cls_mean_p_pos": float(np.mean([q for q, l in zip(all_p, all_y) if l])) if any(all_y) else None,
           "cls_mean_p_neg": float(np.mean([q for q, l in zip(all_p, all_y) if not l]))}
    if not a.no_unet:
        out["clusters_per_ct"] = float(np.mean([s["clusters"] for s in per]))
        out["accepted_per_ct"] = float(np.mean([s["accepted"] for s in per]))
        n = sum(s["nodules"] for s in per)
        out["found_fraction"] = sum(s["found"] for s in per) / n if n else None
    hu_py = Path(a.hu) if a.hu else ROOT / "bench/realism_hu.py"
    if hu_py.is_file():
        real_ct = a.real or str(real / "lidc/LIDC-IDRI-0003")
        r = subprocess.run([sys.executable, str(hu_py), real_ct, str(synth), "--series", str(a.series)],
                           capture_output=True, text=True)
        if r.returncode == 0:
            hu_doc = json.loads(r.stdout)
            out["lung_overlap"] = hu_doc.get("lung_overlap")
            out["nodule_overlap"] = hu_doc.get("nodule_overlap")
        else:
            out["lung_overlap_error"] = r.stderr[-500:]
    else:
        out["lung_overlap"] = f"skipped: {hu_py} not found (pass --hu)"
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
