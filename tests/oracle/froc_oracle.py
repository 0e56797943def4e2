#!/usr/bin/env python3
"""Independent LUNA16 FROC / CPM oracle (numpy only), written from the rules in
shared/reference/luna-evaluation.md §1.3-§1.4 and the `froc` module doc of luna -- not from luna's
code. It is what `tests/it/froc_oracle.rs` compares luna with, and the Python side of
`bench/froc.sh`.

    froc_oracle.py --annotations A --excluded E --seriesuids S --submission SUB
                   [--max-marks 100] [--bootstrap 1000] [--seed 0] --out result.json

Rules, as written:
- scans = seriesuids.csv (one uid per line, no header); included findings before excluded ones;
- a scan with more than max_marks marks keeps those strictly above the (max_marks+1)-th highest
  probability (max_marks 0: keep all);
- hit: squared distance < (d/2)^2, d < 0 -> 10 mm;
- included nodule: all its hits leave the FP pool; hit -> positive entry at the max probability
  of its hits (other hits are double detections); missed -> positive entry, excluded from the ROC;
- excluded finding: marks still in the pool within R are ignored;
- remaining marks are negative entries;
- ROC as sklearn's roc_curve (drop_intermediate=True), own implementation below; (0,0) first,
  threshold inf; fps = fpr * (n_roc_entries - n_detected) / n_scans, or 0 when there is no
  negative entry; sens = tpr * n_detected / n_nodules (0 when no nodule is detected);
- sensitivities = numpy.interp at the 7 rates; cpm = mean; cpm_nearest = DIAG's getCPM;
- bootstrap round b: scan j = splitmix64 draw k = b*n_scans + j, mod n_scans (draw k = the
  SplitMix64 output for state seed + (k+1)*0x9E3779B97F4A7C15); the drawn scans' entries are
  concatenated (with repeats) and scored with the same scan count; mean and the sorted values at
  floor(0.025 N) and floor(0.975 N); band on the grid 2**(-3 + i/40), i = 0..240.
"""
import argparse
import csv
import json
import math
import sys

import numpy as np

RATES = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0]
MISSED = -1e9
GAMMA = np.uint64(0x9E3779B97F4A7C15)


def read_rows(path):
    with open(path, newline="", encoding="utf-8-sig") as f:
        return [r for r in csv.reader(f) if r and any(x.strip() for x in r)]


def load(args):
    scans = [r[0].strip() for r in read_rows(args.seriesuids)]
    pos = {u: i for i, u in enumerate(scans)}

    def findings(path):
        rows = read_rows(path)
        h = [x.strip() for x in rows[0]]
        out = [[] for _ in scans]
        for r in rows[1:]:
            r = [x.strip() for x in r]
            u = r[h.index("seriesuid")]
            if u in pos:
                out[pos[u]].append(
                    (float(r[h.index("coordX")]), float(r[h.index("coordY")]),
                     float(r[h.index("coordZ")]), float(r[h.index("diameter_mm")])))
        return out

    included = findings(args.annotations)
    excluded = findings(args.excluded)
    rows = read_rows(args.submission)
    h = [x.strip() for x in rows[0]]
    marks = [[] for _ in scans]
    for r in rows[1:]:
        r = [x.strip() for x in r]
        marks[pos[r[h.index("seriesuid")]]].append(
            (float(r[h.index("coordX")]), float(r[h.index("coordY")]),
             float(r[h.index("coordZ")]), float(r[h.index("probability")])))
    return scans, included, excluded, marks


def cap(ms, max_marks):
    if max_marks <= 0 or len(ms) <= max_marks:
        return ms
    cut = sorted((m[3] for m in ms), reverse=True)[max_marks]
    return [m for m in ms if m[3] > cut]


def within(f, m):
    d = f[3] if f[3] >= 0 else 10.0
    return (f[0] - m[0]) ** 2 + (f[1] - m[1]) ** 2 + (f[2] - m[2]) ** 2 < (d / 2.0) ** 2


def match(scans, included, excluded, marks, max_marks):
    """Per scan: list of (gt, prob, excluded) entries, plus the counts."""
    c = dict(tp=0, fp=0, fn=0, ignored_on_excluded=0, double_detections=0,
             scans=len(scans), nodules=0, marks=0, marks_dropped_by_cap=0)
    per_scan = []
    for s in range(len(scans)):
        ms = cap(marks[s], max_marks)
        c["marks"] += len(ms)
        c["marks_dropped_by_cap"] += len(marks[s]) - len(ms)
        alive = [True] * len(ms)
        entries = []
        for f in included[s]:
            c["nodules"] += 1
            hit = [k for k, m in enumerate(ms) if within(f, m)]
            for k in hit:
                alive[k] = False
            if hit:
                c["tp"] += 1
                c["double_detections"] += len(hit) - 1
                entries.append((1.0, max(ms[k][3] for k in hit), False))
            else:
                c["fn"] += 1
                entries.append((1.0, MISSED, True))
        for f in excluded[s]:
            for k, m in enumerate(ms):
                if alive[k] and within(f, m):
                    alive[k] = False
                    c["ignored_on_excluded"] += 1
        for k, m in enumerate(ms):
            if alive[k]:
                c["fp"] += 1
                entries.append((0.0, m[3], False))
        per_scan.append(np.array(entries, dtype=float).reshape(-1, 3))
    return per_scan, c


def roc(gt, prob):
    """sklearn.metrics.roc_curve(gt, prob) semantics (drop_intermediate=True), unnormalised:
    cumulative fp and tp counts and thresholds, (0, 0, inf) first."""
    order = np.argsort(-prob, kind="stable")
    p = prob[order]
    g = gt[order]
    ends = np.r_[np.nonzero(np.diff(p))[0], len(p) - 1] if len(p) else np.array([], dtype=int)
    tps = np.cumsum(g)[ends] if len(p) else np.array([])
    fps = (ends + 1) - tps
    thr = p[ends] if len(p) else np.array([])
    if len(tps) > 2:
        keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
        tps, fps, thr = tps[keep], fps[keep], thr[keep]
    return np.r_[0.0, fps], np.r_[0.0, tps], np.r_[np.inf, thr]


def froc(entries, n_scans):
    gt, prob, excl = entries[:, 0], entries[:, 1], entries[:, 2].astype(bool)
    keep = ~excl
    fp_c, tp_c, thr = roc(gt[keep], prob[keep])
    n_detected = gt[keep].sum()
    n_nodules = gt.sum()
    n_roc = keep.sum()
    if gt.sum() == len(gt):  # no negative entry at all
        fps = np.zeros(len(fp_c))
    else:
        fpr = fp_c / fp_c[-1]
        fps = fpr * (n_roc - n_detected) / n_scans
    if n_detected == 0 or n_nodules == 0:
        sens = np.zeros(len(tp_c))
    else:
        tpr = tp_c / tp_c[-1]
        sens = tpr * n_detected / n_nodules
    return fps, sens, thr


def nearest(fps, sens):
    out = []
    for r in RATES:
        best, prior = 0.0, max(fps)
        for f, s in zip(fps, sens):
            d = abs(f - r)
            if d < prior:
                best, prior = s, d
        out.append(float(best))
    return float(np.mean(out)), out


def splitmix(seed, k):
    with np.errstate(over="ignore"):
        z = np.uint64(seed) + (k + np.uint64(1)) * GAMMA
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def ci(values, confidence):
    v = np.sort(np.asarray(values, dtype=float))
    pz = (1.0 - confidence) / 2.0
    n = len(v)
    return dict(mean=float(np.mean(v)), low=float(v[min(math.floor(pz * n), n - 1)]),
                high=float(v[min(math.floor((1.0 - pz) * n), n - 1)]))


def bootstrap(per_scan, n_scans, rounds, seed, confidence=0.95):
    grid = np.array([2.0 ** (-3.0 + i / 40.0) for i in range(241)])
    ks = np.arange(rounds * n_scans, dtype=np.uint64)
    idx = (splitmix(seed, ks) % np.uint64(n_scans)).astype(np.int64).reshape(rounds, n_scans)
    sens7 = np.zeros((rounds, 7))
    band = np.zeros((rounds, len(grid)))
    for b in range(rounds):
        e = np.concatenate([per_scan[i] for i in idx[b]] + [np.zeros((0, 3))])
        fps, sens, _ = froc(e, n_scans)
        sens7[b] = np.interp(RATES, fps, sens)
        band[b] = np.interp(grid, fps, sens)
    cpms = [float(np.mean(list(row))) for row in sens7]
    bands = [ci(band[:, g], confidence) for g in range(len(grid))]
    return dict(
        cpm=ci(cpms, confidence),
        sensitivities=[ci(sens7[:, i], confidence) for i in range(7)],
        band=dict(fps=grid.tolist(), mean=[x["mean"] for x in bands],
                  lower=[x["low"] for x in bands], upper=[x["high"] for x in bands]),
    )


def score(args):
    scans, included, excluded, marks = load(args)
    per_scan, counts = match(scans, included, excluded, marks, args.max_marks)
    entries = np.concatenate(per_scan + [np.zeros((0, 3))])
    fps, sens, thr = froc(entries, len(scans))
    sens7 = [float(x) for x in np.interp(RATES, fps, sens)]
    cpm_n, sens_n = nearest(fps, sens)
    out = dict(
        curve=dict(fps=fps.tolist(), sensitivity=sens.tolist(),
                   threshold=[None if math.isinf(t) else float(t) for t in thr]),
        sensitivities=sens7, cpm=float(np.mean(sens7)), cpm_nearest=cpm_n,
        sensitivities_nearest=sens_n, counts=counts,
    )
    if args.bootstrap > 0:
        out["bootstrap"] = bootstrap(per_scan, len(scans), args.bootstrap, args.seed)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for a in ("annotations", "excluded", "seriesuids", "submission", "out"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--max-marks", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = score(args)
    with open(args.out, "w") as f:
        json.dump(out, f)
    print("oracle: cpm %.6f, %d curve points" % (out["cpm"], len(out["curve"]["fps"])),
          file=sys.stderr)


if __name__ == "__main__":
    main()
