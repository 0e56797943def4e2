"""Oracle for luna's detection chain on a real CT: the book's p2ch14 `nodule_analysis.py`
(segmentCt → threshold → binary_erosion → label → center_of_mass → classifyCandidates), written
independently of luna with PyTorch, SimpleITK and scipy, and run with the book's own checkpoints.

Usage:
  book_chain.py DICOM_DIR SEG.state CLS.state [--threads N] [--annotations CSV] [--out JSON]

- The CT: SimpleITK's ImageSeriesReader over the series folder (what LUNA16's .mhd were made
  from), float32 (index, row, col); origin, spacing, direction as the book's `Ct`.
- Segmentation (`segmentCt`): every slice with 3 context slices on each side (indices clamped
  to the volume), HU clamped to ±1000, batch 4, through the book's UNetWrapper (eval mode;
  its sigmoid output) → the probability volume.
- `output_a > 0.5` → `scipy.ndimage.binary_erosion(iterations=1)` (the 3-D 6-connected cross)
  → `scipy.ndimage.label` → `center_of_mass(hu.clip(-1000, 1000) + 1001, labels, 1..n)` →
  irc2xyz (`groupSegmentationOutput`).
- Classification (`classifyCandidates`): each centre back to irc by xyz2irc (round half to
  even), a 32×48×48 crop of the clipped CT, shifted inside the volume at the borders
  (`getRawCandidate`), through the book's LunaModel; P(nodule) = softmax[:, 1].
- With `--annotations`, each annotated nodule of the series is "found" by the LUNA16 rule
  (a detection within the nodule's radius) and by the book's (distance < 0.7 × diameter),
  among all clusters and among those with P(nodule) > 0.5.

The book's classes come from the other oracles (`nn_unet.UNetWrapper`, `nn_model.LunaModel`,
transcribed from the book's code). Prints (or writes) one JSON object with the clusters in
label order and the seconds of each step.
"""
import argparse
import csv
import json
import time

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from nn_model import LunaModel
from nn_unet import UNetWrapper

CONTEXT = 3
CROP = (32, 48, 48)


def read_ct(folder):
    reader = sitk.ImageSeriesReader()
    uids = reader.GetGDCMSeriesIDs(folder)
    if len(uids) != 1:
        raise SystemExit(f"{folder}: expected one series, found {len(uids)}")
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder, uids[0]))
    img = reader.Execute()
    hu = sitk.GetArrayFromImage(img).astype(np.float32)
    geom = {
        "origin": np.array(img.GetOrigin()),
        "spacing": np.array(img.GetSpacing()),
        "direction": np.array(img.GetDirection()).reshape(3, 3),
    }
    return uids[0], hu, geom


def irc2xyz(irc, g):
    cri = np.array(irc)[::-1]
    return g["direction"] @ (cri * g["spacing"]) + g["origin"]


def xyz2irc(xyz, g):
    cri = np.linalg.inv(g["direction"]) @ (np.array(xyz) - g["origin"]) / g["spacing"]
    cri = np.round(cri)
    return [int(cri[2]), int(cri[1]), int(cri[0])]


def load_state(model, path):
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model_state"], strict=True)
    model.eval()
    return model


def segment(hu, seg):
    n = hu.shape[0]
    out = np.zeros(hu.shape, np.float32)
    with torch.no_grad():
        for start in range(0, n, 4):
            idx = list(range(start, min(start + 4, n)))
            batch = torch.zeros((len(idx), 2 * CONTEXT + 1) + hu.shape[1:])
            for b, s in enumerate(idx):
                for i, c in enumerate(range(s - CONTEXT, s + CONTEXT + 1)):
                    batch[b, i] = torch.from_numpy(hu[min(max(c, 0), n - 1)])
            batch.clamp_(-1000, 1000)
            out[idx] = seg(batch)[:, 0].numpy()
    return out


def crop(hu_clipped, center_irc):
    sl = []
    for axis, (c, w) in enumerate(zip(center_irc, CROP)):
        assert 0 <= c < hu_clipped.shape[axis], (center_irc, hu_clipped.shape)
        start = int(round(c - w / 2))
        end = start + w
        if start < 0:
            start, end = 0, w
        if end > hu_clipped.shape[axis]:
            end = hu_clipped.shape[axis]
            start = end - w
        sl.append(slice(start, end))
    return hu_clipped[tuple(sl)]


def match(annotations, uid, clusters):
    """Per annotated nodule of `uid`: segmented / found by each rule; and the accepted clusters
    (P > 0.5) that match no nodule by each rule (false positives)."""
    found = []
    hit = {"luna16": set(), "book": set()}
    for row in annotations:
        if row["seriesuid"] != uid:
            continue
        t = np.array([float(row[k]) for k in ("coordX", "coordY", "coordZ")])
        d = float(row["diameter_mm"])
        dist = [float(np.linalg.norm(t - np.array(c["xyz"]))) for c in clusters]
        accepted = [x for x, c in zip(dist, clusters) if c["prob_nodule"] > 0.5]
        nearest = min(dist) if dist else None
        for i, (x, c) in enumerate(zip(dist, clusters)):
            if x <= d / 2:
                hit["luna16"].add(i)
            if x < 0.7 * d:
                hit["book"].add(i)
        found.append({
            "xyz": t.tolist(), "diameter_mm": d, "nearest_mm": nearest,
            "segmented_luna16": any(x <= d / 2 for x in dist),
            "segmented_book": any(x < 0.7 * d for x in dist),
            "found_luna16": any(x <= d / 2 for x in accepted),
            "found_book": any(x < 0.7 * d for x in accepted),
        })
    accepted = [i for i, c in enumerate(clusters) if c["prob_nodule"] > 0.5]
    fp = {rule: sum(i not in hit[rule] for i in accepted) for rule in hit}
    return found, fp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dicom")
    ap.add_argument("seg")
    ap.add_argument("cls")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--annotations")
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t = {}
    t0 = time.perf_counter()
    uid, hu, g = read_ct(a.dicom)
    seg = load_state(UNetWrapper(), a.seg)
    cls = load_state(LunaModel(), a.cls)
    t["read"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    prob = segment(hu, seg)
    t["segment"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clean = ndimage.binary_erosion(prob > 0.5, iterations=1)
    labels, n = ndimage.label(clean)
    idx = np.arange(1, n + 1)
    hu_clipped = hu.clip(-1000, 1000)
    coms = ndimage.center_of_mass(hu_clipped + 1001, labels=labels, index=idx) if n else []
    voxels = ndimage.sum(np.ones(hu.shape), labels=labels, index=idx) if n else []
    t["cluster"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    clusters = []
    for com, cnt in zip(coms, voxels):
        xyz = irc2xyz(com, g)
        clusters.append({
            "voxels": int(cnt), "irc": [float(v) for v in com], "xyz": xyz.tolist(),
            "crop_center_irc": xyz2irc(xyz, g),
        })
    with torch.no_grad():
        # the book's DataLoader batch (`--batch-size 4`)
        for start in range(0, len(clusters), 4):
            part = clusters[start:start + 4]
            x = torch.from_numpy(np.stack([crop(hu_clipped, c["crop_center_irc"]) for c in part]))
            _, probs = cls(x[:, None])
            for c, p in zip(part, probs[:, 1].tolist()):
                c["prob_nodule"] = p
    t["classify"] = time.perf_counter() - t0

    doc = {
        "series_uid": uid, "shape": list(hu.shape), "threads": a.threads,
        "mask_voxels": int((prob > 0.5).sum()), "eroded_voxels": int(clean.sum()),
        "clusters": clusters,
        "accepted": sum(c["prob_nodule"] > 0.5 for c in clusters),
        "seconds": t,
    }
    if a.annotations:
        with open(a.annotations) as fh:
            doc["nodules"], doc["false_positives"] = match(list(csv.DictReader(fh)), uid, clusters)
    text = json.dumps(doc, indent=1)
    if a.out:
        with open(a.out, "w") as fh:
            fh.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
