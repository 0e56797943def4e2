#!/usr/bin/env python3
"""Deterministic random LUNA16 scoring inputs for the FROC tests and bench/froc.sh:
annotations.csv, annotations_excluded.csv (some diameter -1), seriesuids.csv (no header) and
submission.csv, in DIR.

    froc_data.py DIR --scans 888 --marks 100 [--seed 1] [--spread 10] [--decimals 3]

Per scan: Poisson(1.34) nodules (LUNA16 has 1186 in 888 scans, a third of the scans none),
diameters 3-30 mm; Poisson(1.5) excluded findings; `marks` marks plus up to `spread` more (so
the 100-mark cut is exercised), in this order: 0-3 marks near each nodule (some outside R),
one near some excluded findings, the rest uniform in the volume. Probabilities are rounded to
`decimals` (3: ties within a scan, at the cut and across scans are common; the benchmark uses 6,
closer to a model's output).
"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--scans", type=int, default=200)
    ap.add_argument("--marks", type=int, default=100)
    ap.add_argument("--spread", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--decimals", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.RandomState(a.seed)
    os.makedirs(a.dir, exist_ok=True)
    uids = ["1.3.6.1.4.1.14519.5.2.1.6279.6001.%012d" % (i * 7919 + a.seed) for i in range(a.scans)]
    lo, hi = np.array([-180.0, -180.0, -350.0]), np.array([180.0, 180.0, -20.0])
    ann, exc, sub = [], [], []
    for u in uids:
        nods = []
        for _ in range(rng.poisson(1.34)):
            c = rng.uniform(lo, hi)
            d = float(np.round(rng.uniform(3.0, 30.0), 2))
            nods.append((c, d))
            ann.append((u, *c, d))
        excs = []
        for _ in range(rng.poisson(1.5)):
            c = rng.uniform(lo, hi)
            d = -1.0 if rng.rand() < 0.4 else float(np.round(rng.uniform(1.0, 6.0), 2))
            excs.append((c, d))
            exc.append((u, *c, d))
        n = a.marks + (rng.randint(0, a.spread + 1) if a.spread > 0 else 0)
        marks = []
        for c, d in nods:
            for _ in range(rng.choice(4, p=[0.15, 0.5, 0.25, 0.1])):
                r = (d / 2.0) * rng.uniform(0.0, 1.3)
                v = rng.normal(size=3)
                marks.append((c + r * v / np.linalg.norm(v), rng.beta(5, 2)))
        for c, d in excs:
            if rng.rand() < 0.5:
                rr = 5.0 if d < 0 else d / 2.0
                marks.append((c + rng.uniform(-0.5, 0.5, 3) * rr, rng.beta(2, 3)))
        while len(marks) < n:
            marks.append((rng.uniform(lo, hi), rng.beta(1.2, 6)))
        for c, p in marks[:n]:
            sub.append((u, *c, float(np.round(p, a.decimals))))

    def write(name, header, rows):
        with open(os.path.join(a.dir, name), "w") as f:
            if header:
                f.write(header + "\n")
            for r in rows:
                f.write(",".join(repr(float(x)) if not isinstance(x, str) else x for x in r) + "\n")

    write("annotations.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm", ann)
    write("annotations_excluded.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm", exc)
    write("seriesuids.csv", None, [(u,) for u in uids])
    write("submission.csv", "seriesuid,coordX,coordY,coordZ,probability", sub)
    print("froc_data: %d scans, %d nodules, %d excluded, %d marks in %s"
          % (len(uids), len(ann), len(exc), len(sub), a.dir))


if __name__ == "__main__":
    main()
