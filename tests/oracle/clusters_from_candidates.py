"""Writes a clusters.parquet (luna's schema, schemas/clusters.schema.json) whose clusters are the
candidates of a candidates.parquet, with pyarrow — so classify_candidates can be compared with
evaluate_classifier on the same centres — and the seriesuids.csv a clusters artifact holds (every
series searched: here every series of the table). Usage:
clusters_from_candidates.py <candidates.parquet> <out_dir>
"""
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main():
    t = pq.read_table(sys.argv[1]).to_pylist()
    rows = sorted(t, key=lambda r: (r["series_uid"], r["candidate_id"]))
    n = len(rows)
    ids, k, prev = [], 0, None
    for r in rows:
        k = k + 1 if r["series_uid"] == prev else 1
        prev = r["series_uid"]
        ids.append(k)
    zi = pa.array([0] * n, pa.int64())
    zf = pa.array([0.0] * n, pa.float64())
    cols = {
        "series_uid": pa.array([r["series_uid"] for r in rows], pa.string()),
        "cluster_id": pa.array(ids, pa.int64()),
        "coord_x": pa.array([r["coord_x"] for r in rows], pa.float64()),
        "coord_y": pa.array([r["coord_y"] for r in rows], pa.float64()),
        "coord_z": pa.array([r["coord_z"] for r in rows], pa.float64()),
        "center_i": zf, "center_r": zf, "center_c": zf,
        "voxels": pa.array([1] * n, pa.int64()),
        "prob_max": zf, "prob_mean": zf,
        "bbox_i0": zi, "bbox_i1": zi, "bbox_r0": zi, "bbox_r1": zi, "bbox_c0": zi, "bbox_c1": zi,
    }
    pq.write_table(pa.table(cols), os.path.join(sys.argv[2], "clusters.parquet"), compression="zstd")
    with open(os.path.join(sys.argv[2], "seriesuids.csv"), "w") as f:
        f.writelines(u + "\n" for u in sorted({r["series_uid"] for r in rows}))


if __name__ == "__main__":
    main()
