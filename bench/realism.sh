#!/usr/bin/env bash
# How real the synthetic CTs look to the book's real-data models (issue 27): the book's two 2020
# checkpoints (trained by its authors on the real LUNA16) run on synthetic CTs through
# pipelines/realism.yaml, beside the same chain on the real LIDC-IDRI-0003 (pipelines/
# book-models.yaml) and an HU-histogram comparison that knows nothing of luna
# (bench/realism_hu.py). Both luna runs pinned to the same 2 cores (taskset; torch uses 2
# threads). Writes bench/results/realism.md.
#
#   bench/realism.sh                                     # 24 realistic CTs, every 3rd for validation
#   LUNA_BENCH_PRESET=real LUNA_BENCH_SERIES=8 bench/realism.sh   # the older preset, quicker
#   LUNA_BIN_DIR=/path/to/release bench/realism.sh       # a prebuilt luna + luna-torch
#
# Settings (environment): LUNA_BENCH_SERIES (24), LUNA_BENCH_VAL_STRIDE (3: every 3rd series is
# a validation CT), LUNA_BENCH_SEED (0), LUNA_BENCH_PRESET (realistic), LUNA_BENCH_HU_SERIES (the
# first N synthetic series in the HU comparison; default 4), LUNA_BENCH_CORES (0,1).
#
# What it measures, each beside its target (issue 27):
#   classifier  — evaluate_classifier with the imported nodule model over every candidate of the
#                 validation CTs: exact ROC AUC (target 0.90–0.99: separable, not trivially so),
#                 with the positive/negative counts. (Its diameter baseline is a malignancy-task
#                 number: it does not apply to the nodule model.)
#   chain       — UNet → book clusters (p > 0.5, 3-D erosion) → classifier on the validation
#                 CTs: clusters per CT and clusters with P(nodule) > 0.5 per CT (mean, min–max),
#                 next to the same on the real CT (targets: clusters/CT within 0.5–2× the real
#                 CT's; 3–30 with P > 0.5); planted nodules found by the LUNA16 rule (a cluster
#                 centre within the nodule's radius), among all clusters and among P > 0.5
#                 (target 70–100 %; the real CT's 3 LUNA16 nodules for reference).
#   HU          — realism_hu.py: parenchyma histogram overlap (target ≥ 0.7) and nodule overlap.
#   speed       — the synth stage's duration from run.json: CTs per second on the 2 cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
# shellcheck source=common.sh
source bench/common.sh
SERIES="${LUNA_BENCH_SERIES:-24}"
VAL_STRIDE="${LUNA_BENCH_VAL_STRIDE:-3}"
PRESET="${LUNA_BENCH_PRESET:-realistic}"
HU_SERIES="${LUNA_BENCH_HU_SERIES:-4}"
CORES="${LUNA_BENCH_CORES:-0,1}"
bench_real_dir
WS="$BENCH_DIR/realism-ws"
OUT_MD="$RESULTS/realism.md"

bench_luna_torch
LUNA="$BIN/luna"

rm -rf "$WS"; mkdir -p "$WS/pipelines"
cp pipelines/realism.yaml pipelines/book-models.yaml "$WS/pipelines/"
lrun() { (cd "$WS" && taskset -c "$CORES" "$LUNA" run "$@" --cache-dir "$WS/cache" --set device=cpu 2>&1); }
last_run() { ls -t "$WS/runs" | grep -- "-$1-" | head -1; }

say "realism pipeline: $SERIES $PRESET CTs, seed $SEED, one in ${VAL_STRIDE} for validation"
t0="$(now)"
lrun realism --set "models=$REAL/book-models" --set "preset=$PRESET" --set "seed=$SEED" \
  --set "series=$SERIES" --set "val_stride=$VAL_STRIDE" >"$WS/realism.log" \
  || { cat "$WS/realism.log" >&2; exit 1; }
t1="$(now)"
say "book-models on the real CT"
lrun book-models --set "models=$REAL/book-models" --set "ct_root=$REAL/lidc" --until detections \
  >"$WS/book.log" || { cat "$WS/book.log" >&2; exit 1; }
t2="$(now)"
SYN_RUN="$WS/runs/$(last_run realism)/run.json"
REAL_RUN="$WS/runs/$(last_run book-models)/run.json"
DATA_DIR="$("$PY" -c 'import json,sys
k = {s["stage"]: s["key"] for s in json.load(open(sys.argv[1]))["stages"]}["data"]
print(f"{sys.argv[2]}/objects/{k[:2]}/{k}")' "$SYN_RUN" "$WS/cache")"

say "HU histograms (realism_hu.py, first $HU_SERIES synthetic series)"
t3="$(now)"
taskset -c "$CORES" "$PY" bench/realism_hu.py "$REAL/lidc/LIDC-IDRI-0003" "$DATA_DIR" \
  --series "$HU_SERIES" --real-annotations "$REAL/luna16-eval/annotations.csv" >"$WS/hu.json"
t4="$(now)"

"$PY" bench/realism_table.py --synth-run "$SYN_RUN" --real-run "$REAL_RUN" --cache "$WS/cache" \
  --hu "$WS/hu.json" --real-annotations "$REAL/luna16-eval/annotations.csv" \
  --preset "$PRESET" >"$WS/table.md"

el() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", b - a }'; }
{
  echo "# realism: the synthetic CTs through the book's real-data models"
  echo
  echo "$DATE_START; load at start $LOAD_START; cores $CORES (taskset, torch 2 threads);"
  echo "luna $(git rev-parse --short HEAD), $(basename "$BIN") build; preset \`$PRESET\`, seed $SEED,"
  echo "$SERIES series, one in ${VAL_STRIDE} a validation CT (val_stride ${VAL_STRIDE}); real reference LIDC-IDRI-0003 (140 × 512 × 512, DICOM);"
  echo "the book's 2020 checkpoints (nodule classifier + UNet), imported, no retraining."
  echo "Wall time: realism pipeline $(el "$t0" "$t1") s, book-models on the real CT $(el "$t1" "$t2") s,"
  echo "HU comparison $(el "$t3" "$t4") s; bench total $(el "$t0" "$(now)") s (build excluded)."
  echo
  cat "$WS/table.md"
} >"$OUT_MD"
cat "$OUT_MD"
