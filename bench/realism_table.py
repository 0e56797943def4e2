#!/usr/bin/env python3
"""The results table of bench/realism.sh (issue 27), from luna's artifacts and realism_hu.py.

Reads the two runs' run.json (the realism pipeline on synthetic CTs, book-models on the real CT),
each stage's artifact folder under the cache (`objects/<key[:2]>/<key>`: metrics.json of
evaluate_classifier, clusters.parquet + seriesuids.csv of cluster, detections.parquet of
classify_candidates, the synth dataset's annotations.csv), the real CT's LUNA16 annotations and
realism_hu.py's JSON; prints a markdown table: each number, its target, met / MISSED.

"Found" is the LUNA16 rule: a cluster centre (world mm) within the nodule's radius of its centre.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq


def artifacts(run_json: str, cache: str) -> dict[str, Path]:
    """Stage name -> artifact folder of a run."""
    stages = json.load(open(run_json))["stages"]
    return {s["stage"]: Path(cache) / "objects" / s["key"][:2] / s["key"] for s in stages}


def durations(run_json: str) -> dict[str, float]:
    """Stage name -> duration in seconds (0 when cached)."""
    return {s["stage"]: s.get("duration_s") or 0.0 for s in json.load(open(run_json))["stages"]}


def nodules(csv_path: Path | str, uids: set[str]) -> list[tuple[str, np.ndarray, float]]:
    """annotations.csv rows of the given series: (uid, xyz, diameter)."""
    out = []
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            if r["seriesuid"] in uids:
                xyz = np.array([float(r[k]) for k in ("coordX", "coordY", "coordZ")])
                out.append((r["seriesuid"], xyz, float(r["diameter_mm"])))
    return out


def chain(art: dict[str, Path], truth_csv: Path | str) -> dict:
    """Clusters per CT, P > 0.5 per CT and nodules found, over the CTs the cluster stage saw."""
    uids = [l.strip() for l in (art["clusters"] / "seriesuids.csv").read_text().splitlines() if l.strip()]
    t = pq.read_table(art["detections"] / "detections.parquet").to_pydict()
    uid = np.array(t["series_uid"], dtype=object)
    xyz = np.stack([np.asarray(t[k], float) for k in ("coord_x", "coord_y", "coord_z")], axis=1) if t["series_uid"] else np.zeros((0, 3))
    pos = np.asarray(t["prob_nodule"], float) > 0.5
    per_ct = [int((uid == u).sum()) for u in uids]
    per_ct_pos = [int(((uid == u) & pos).sum()) for u in uids]
    truth = nodules(truth_csv, set(uids))
    hits = [(np.linalg.norm(xyz - c, axis=1) <= d / 2) & (uid == u) for u, c, d in truth]
    return {"cts": len(uids), "per_ct": per_ct, "per_ct_pos": per_ct_pos, "nodules": len(truth),
            "found_all": sum(int(h.any()) for h in hits),
            "found_pos": sum(int((h & pos).any()) for h in hits)}


def status(ok: bool) -> str:
    """The table's verdict cell."""
    return "met" if ok else "**MISSED**"


def spread(v: list[int]) -> str:
    """mean (min–max)."""
    return f"{np.mean(v):.1f} ({min(v)}–{max(v)})" if v else "n/a"


def pct(a: int, n: int) -> str:
    """a/n as a percentage with the counts."""
    return f"{100 * a / n:.0f} % ({a}/{n})" if n else "n/a (no nodules)"


def table(a: argparse.Namespace) -> list[str]:
    """The markdown lines."""
    syn, real = artifacts(a.synth_run, a.cache), artifacts(a.real_run, a.cache)
    m = json.load(open(syn["evaluate_nodule"] / "metrics.json"))
    s = chain(syn, syn["data"] / "annotations.csv")
    r = chain(real, a.real_annotations)
    hu = json.load(open(a.hu))
    dur = durations(a.synth_run)
    n_series = json.load(open(syn["candidates"] / "merge_report.json"))["series"]
    auc = m["roc_auc"]
    real_mean = np.mean(r["per_ct"]) if r["per_ct"] else 0.0
    syn_mean = np.mean(s["per_ct"]) if s["per_ct"] else 0.0
    ratio = syn_mean / real_mean if real_mean else float("inf")
    pos_mean = np.mean(s["per_ct_pos"]) if s["per_ct_pos"] else 0.0
    frac = lambda k: s[k] / s["nodules"] if s["nodules"] else 0.0
    rows = [
        ("book classifier ROC AUC, validation candidates", f"{auc:.4f}",
         f"{m['positives']} positives, {m['negatives']} negatives; F1 at 0.5: {m['f1']:.3f}",
         "0.90–0.99", status(0.90 <= auc <= 0.99)),
        ("clusters per CT (UNet → book clusters)", spread(s["per_ct"]), spread(r["per_ct"]),
         "0.5–2× the real CT's", f"{status(0.5 <= ratio <= 2.0)} ({ratio:.2f}×)"),
        ("clusters with P(nodule) > 0.5 per CT", spread(s["per_ct_pos"]), spread(r["per_ct_pos"]),
         "3–30", status(3 <= pos_mean <= 30)),
        ("planted nodules found, any cluster", pct(s["found_all"], s["nodules"]),
         pct(r["found_all"], r["nodules"]), "70–100 %", status(frac("found_all") >= 0.7)),
        ("planted nodules found, P(nodule) > 0.5", pct(s["found_pos"], s["nodules"]),
         pct(r["found_pos"], r["nodules"]), "70–100 %", status(frac("found_pos") >= 0.7)),
        ("parenchyma HU overlap (realism_hu.py)", f"{hu['lung_overlap']:.3f}",
         f"median lung HU: synth {hu['synth']['lung_hu_quantiles'].get('p50')}, real {hu['real']['lung_hu_quantiles'].get('p50')}",
         "≥ 0.7", status(hu["lung_overlap"] >= 0.7)),
        ("nodule HU overlap (realism_hu.py)", f"{hu['nodule_overlap']:.3f}",
         f"median nodule HU: synth {hu['synth']['nodule_hu_quantiles'].get('p50')}, real {hu['real']['nodule_hu_quantiles'].get('p50')}; "
         f"outside [-1000, 400): synth {100 * hu['synth']['nodule_outside_range_fraction']:.0f} %, real {100 * hu['real']['nodule_outside_range_fraction']:.0f} %",
         "report", "—"),
        ("generation speed (synth stage)", f"{n_series / dur['data']:.3f} CTs/s" if dur["data"] else "cached",
         f"synth stage {dur['data']:.1f} s for {n_series} CTs", "report", "—"),
    ]
    out = [
        f"| measure | synthetic (`{a.preset}`, {s['cts']} validation CTs) | real CT / detail | target | status |",
        "|---|---|---|---|---|",
    ]
    out += [f"| {' | '.join(row)} |" for row in rows]
    out.append("")
    out.append(
        f"Stage times of the realism run (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in dur.items())
        + f". HU comparison over the first {hu['synth_series']} synthetic series "
        f"({hu['synth']['nodules']} nodules) vs the real CT's {hu['real']['nodules']} LUNA16 nodules."
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--synth-run", required=True, help="run.json of the realism pipeline")
    ap.add_argument("--real-run", required=True, help="run.json of book-models on the real CT")
    ap.add_argument("--cache", required=True, help="the cache dir both runs used")
    ap.add_argument("--hu", required=True, help="realism_hu.py's JSON output")
    ap.add_argument("--real-annotations", required=True, help="LUNA16 annotations.csv")
    ap.add_argument("--preset", required=True, help="the synth preset, for the header")
    print("\n".join(table(ap.parse_args())))


if __name__ == "__main__":
    main()
