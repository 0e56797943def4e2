#!/usr/bin/env bash
# The book's chain on a real CT (issue 25): luna's segment → cluster → classify_candidates with
# the book's two imported 2020 checkpoints (pipelines/book-models.yaml) vs the same steps in
# PyTorch + SimpleITK + scipy (tests/oracle/book_chain.py, the real-CT test's oracle), on the
# LIDC-IDRI-0003 series of ../shared/real/, side by side in one run, both pinned to the same
# 2 cores (taskset; torch then uses 2 threads on both sides). Writes bench/results/book_chain.md.
#
#   bench/book_chain.sh                          # 3 alternating rounds
#   LUNA_BENCH_RUNS=5 LUNA_BIN_DIR=/path/to/release bench/book_chain.sh
#
# What each side times:
#   luna    — `luna run book-models --until detections` with the imports already cached (a
#             fresh copy of a cache that holds only the two import_model artifacts): the
#             segment, clusters and detections stages, each reading the DICOM series, worker
#             starts, fingerprints and commits included (wall clock), plus each stage's
#             duration from run.json.
#   PyTorch — book_chain.py's own step timings: read (DICOM + both checkpoints), segment,
#             cluster (threshold, erosion, label, centres), classify; total = their sum
#             (the interpreter's start and imports excluded, which favours PyTorch).
# Target (issue 25): luna ≤ 0.5× the oracle's time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
# shellcheck source=common.sh
source bench/common.sh
RUNS="${LUNA_BENCH_RUNS:-3}"
CORES="${LUNA_BENCH_CORES:-0,1}"
bench_real_dir
WS="$BENCH_DIR/book-chain-ws"
OUT_MD="$RESULTS/book_chain.md"
SEG="$REAL/book-models/seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state"
CLS="$REAL/book-models/cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state"
SERIES_DIR="$(find "$REAL/lidc/LIDC-IDRI-0003" -name '*.dcm' -printf '%h\n' | sort -u | head -1)"

bench_luna_torch
LUNA="$BIN/luna"

rm -rf "$WS"; mkdir -p "$WS/pipelines"
cp pipelines/book-models.yaml "$WS/pipelines/"
SETS=(--set "models=$REAL/book-models" --set "ct_root=$REAL/lidc" --set device=cpu)
lrun() { (cd "$WS" && taskset -c "$CORES" "$LUNA" run book-models "${SETS[@]}" "$@" 2>&1); }
for m in seg_model nodule_model; do
  lrun --until "$m" --cache-dir "$WS/cache-base" >"$WS/import.log" || { cat "$WS/import.log" >&2; exit 1; }
done
cat "$SERIES_DIR"/*.dcm >/dev/null   # page cache warm for both sides

: >"$WS/luna.txt"; : >"$WS/torch.txt"
for i in $(seq "$RUNS"); do
  rm -rf "$WS/cache-$i"; cp -a "$WS/cache-base" "$WS/cache-$i"
  t0="$(now)"
  lrun --until detections --cache-dir "$WS/cache-$i" >"$WS/run-$i.log" || { cat "$WS/run-$i.log" >&2; exit 1; }
  t1="$(now)"
  id="$(ls -t "$WS/runs" | grep -v tensorboard | head -1)"
  "$PY" -c 'import json,sys
r = {s["stage"]: s.get("duration_s") or 0 for s in json.load(open(sys.argv[1]))["stages"]}
print(sys.argv[2], r.get("segment", 0), r.get("clusters", 0), r.get("detections", 0))' \
    "$WS/runs/$id/run.json" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" >>"$WS/luna.txt"
  (cd tests/oracle && taskset -c "$CORES" "$PY" book_chain.py "$SERIES_DIR" "$SEG" "$CLS" \
     --threads 2 --out "$WS/oracle-$i.json")
  "$PY" -c 'import json,sys
t = json.load(open(sys.argv[1]))["seconds"]
print(sum(t.values()), t["read"], t["segment"], t["cluster"], t["classify"])' "$WS/oracle-$i.json" >>"$WS/torch.txt"
  rm -rf "$WS/cache-$i"
  say "round $i done"
done

"$PY" - "$WS/luna.txt" "$WS/torch.txt" "$WS/oracle-1.json" >"$WS/table.md" <<'PY'
import json, statistics as st, sys
luna = [[float(x) for x in l.split()] for l in open(sys.argv[1])]
torch = [[float(x) for x in l.split()] for l in open(sys.argv[2])]
m = lambda rows, k: st.median(r[k] for r in rows)
lt, tt = m(luna, 0), m(torch, 0)
print("| side | total s | steps (median of rounds) |")
print("|---|---|---|")
print(f"| luna (run --until detections) | {lt:.2f} | segment {m(luna, 1):.2f}, clusters {m(luna, 2):.2f}, detections {m(luna, 3):.2f} (stage durations) |")
print(f"| PyTorch + scipy (book_chain.py) | {tt:.2f} | read {m(torch, 1):.2f}, segment {m(torch, 2):.2f}, cluster {m(torch, 3):.2f}, classify {m(torch, 4):.2f} |")
print(f"\n**luna / PyTorch = {lt / tt:.2f}×** (target ≤ 0.5×). Rounds: {len(luna)}.")
o = json.load(open(sys.argv[3]))
print(f"\nThe oracle found {len(o['clusters'])} clusters, {o['accepted']} with P(nodule) > 0.5.")
PY

{
  echo "# book_chain: the book's models on a real CT, luna vs PyTorch + scipy"
  echo
  echo "$DATE_START; load at start $LOAD_START; cores $CORES (taskset, 2 torch threads on both sides);"
  echo "CT LIDC-IDRI-0003 (140 × 512 × 512, DICOM); luna $(git rev-parse --short HEAD), $(basename "$BIN") build."
  echo
  cat "$WS/table.md"
} >"$OUT_MD"
cat "$OUT_MD"
