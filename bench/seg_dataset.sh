#!/usr/bin/env bash
# Issue 8 benchmark: luna's `seg_dataset` vs the numpy implementation of the same mask + crop
# path (bench/seg_dataset.py, which imports the oracle tests/oracle/seg_mask.py), side by side
# in one run on the same `real`-preset synthetic CTs, same workers. Prints a markdown table
# and writes it to bench/results/seg_dataset.md.
#
#   bench/seg_dataset.sh                          # 10 CTs, 3 timed luna runs, 1 run per numpy row
#   LUNA_BENCH_SERIES=10 LUNA_BENCH_RUNS=3 LUNA_BENCH_PY_RUNS=1 bench/seg_dataset.sh
#   LUNA_BENCH_DIR=/fast/disk LUNA_BENCH_THREADS=8 bench/seg_dataset.sh
#   LUNA_BIN=/path/to/luna bench/seg_dataset.sh   # skip the build, time this binary
#
# Steps: (1) release build of `luna` (no torch); (2) `luna synth --preset real` (512² slices,
# 100-300 per CT; shared with bench/crops.sh, made once under $LUNA_BENCH_DIR); (3) page cache
# warmed, then:
#   luna   — `luna run` of load_annotations → merge_candidates (val_stride 10: 1 validation CT
#            of 10, as the book) → seg_dataset (7×96×96 crops, positive validation slices),
#            fresh --cache-dir per timed run (every partition computed), stat cache warm; the
#            number is seg_dataset's duration_s from runs/<id>/run.json;
#   numpy  — bench/seg_dataset.py on the same candidates.parquet (same nodules, same split):
#            compute only (mask + samples in memory), and with --write (h5py + hdf5plugin zstd-1,
#            luna's layout: the same output luna writes).
# Workers: luna threads = Python processes = LUNA_BENCH_THREADS (default nproc).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

# shellcheck source=common.sh
source bench/common.sh
WS="$BENCH_DIR/seg-ws"
PYOUT="$BENCH_DIR/seg-numpy-out"
OUT_MD="$RESULTS/seg_dataset.md"

# ---------------------------------------------------------------------------- 1. build
bench_luna

# ---------------------------------------------------------------------------- 2. data
bench_real_data "$DATA" "$SEED" "$SERIES"
cat "$DATA"/subset*/* >/dev/null   # page cache warm for everyone

# ---------------------------------------------------------------------------- 3. luna
rm -rf "$WS"; mkdir -p "$WS/pipelines"
cat >"$WS/pipelines/seg.yaml" <<EOF
pipeline: seg
stages:
  annotations: { uses: load_annotations, with: { annotations: $DATA/annotations_with_malignancy.csv, candidates: $DATA/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { ct_root: $DATA } }
  seg: { uses: seg_dataset, needs: [candidates], with: { ct_root: $DATA, threads: $THREADS } }
EOF
seg_duration() {
  local id; id="$(ls -t "$WS/runs" | head -1)"
  "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))
s = [x for x in r["stages"] if x["stage"] == "seg"][0]
assert s["status"] == "ran", s
print(s["duration_s"])' "$WS/runs/$id/run.json"
}
luna_run() {
  local c="$1"; shift
  rm -rf "$c"
  (cd "$WS" && /usr/bin/time -f '%U %S' -o "$WS/last.time" "$LUNA" run seg --cache-dir "$c" "$@" >/dev/null 2>"$WS/last.log") \
    || { cat "$WS/last.log" >&2; exit 1; }
}
luna_run "$WS/cache-warm"   # fills the stat cache
cpu_of() { awk '{print $1 + $2}' "$1"; }   # user + sys seconds from a /usr/bin/time -o file
luna_times=()
luna_cpu=()
for i in $(seq "$RUNS"); do
  luna_run "$WS/cache-$i"
  luna_times+=("$(seg_duration)")
  luna_cpu+=("$(cpu_of "$WS/last.time")")
  say "luna run $i: seg_dataset ${luna_times[-1]} s"
done
LUNA_S="$(printf '%s\n' "${luna_times[@]}" | median)"
LUNA_MIN="$(printf '%s\n' "${luna_times[@]}" | minimum)"
LUNA_CPU="$(printf '%s\n' "${luna_cpu[@]}" | median)"
ART="$(cd "$WS" && "$LUNA" path seg seg --cache-dir "$WS/cache-$RUNS")"
CAND="$(cd "$WS" && "$LUNA" path seg candidates --cache-dir "$WS/cache-$RUNS")/candidates.parquet"
read -r CTS TRAIN VAL <<<"$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["series"], s["train_samples"], s["val_samples"])' "$ART/seg.json")"
H5_BYTES="$(du -sbL "$ART/seg" | cut -f1)"
cp "$CAND" "$BENCH_DIR/seg-candidates.parquet"
rm -rf "$WS"/cache-*

# ---------------------------------------------------------------------------- 4. numpy
py_row() { # py_row [--write] → "median seconds, median CPU seconds" over PY_RUNS
  local times=() cpus=() out
  for _ in $(seq "$PY_RUNS"); do
    rm -rf "$PYOUT"
    out="$(/usr/bin/time -f '%U %S' -o "$BENCH_DIR/py.time" "$PY" bench/seg_dataset.py "$DATA" "$BENCH_DIR/seg-candidates.parquet" "$PYOUT" "$THREADS" "$@")"
    cpus+=("$(cpu_of "$BENCH_DIR/py.time")")
    read -r n t v <<<"$(echo "$out" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); print(j["cts"], j["train"], j["val"])')"
    [ "$n $t $v" = "$CTS $TRAIN $VAL" ] || say "warning: numpy made $n CTs / $t train / $v val, luna $CTS / $TRAIN / $VAL"
    times+=("$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  done
  echo "$(printf '%s\n' "${times[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)"
}
read -r PY_COMPUTE_S PY_COMPUTE_CPU <<<"$(py_row)"
say "numpy compute only: $PY_COMPUTE_S s"
read -r PY_WRITE_S PY_WRITE_CPU <<<"$(py_row --write)"
PY_BYTES="$(du -sb "$PYOUT" | cut -f1)"
say "numpy + h5py write: $PY_WRITE_S s"
rm -rf "$PYOUT"

# ---------------------------------------------------------------------------- 5. report
fmt() { printf '%.3f' "$1"; }
per_ct() { printf '%.3f' "$(echo "$1 / $CTS" | bc -l)"; }
ratio() { printf '%.1f' "$(echo "$1 / $LUNA_S" | bc -l)"; }
SPEEDUP="$(ratio "$PY_WRITE_S")"
CPU_RATIO="$(printf '%.1f' "$(echo "$PY_WRITE_CPU / $LUNA_CPU" | bc -l)")"
ok() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
mkdir -p "$RESULTS"
NOTES=""
[ -f "$OUT_MD" ] && NOTES="$(sed -n '/^## Notes/,$p' "$OUT_MD")"
{
  echo "# seg_dataset benchmark (issue 8)"
  echo
  echo "Run $DATE_START on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load before: $LOAD_START, after: $(cut -d' ' -f1-3 /proc/loadavg); luna $(git rev-parse --short HEAD)."
  echo "Data: \`luna synth --preset real --seed $SEED --series $SERIES\`: $CTS CTs (512² slices, 100–300 each), $TRAIN training samples (7×96×96, one per nodule of the 9 training CTs), $VAL validation samples (7×512×512, the positive slices of the validation CT; merge_candidates val_stride 10). Page cache warm. Workers: $THREADS (luna threads = Python processes)."
  echo
  echo "| path | seconds | per CT | vs luna | CPU s (user+sys) | output |"
  echo "|---|---:|---:|---:|---:|---|"
  echo "| **luna seg_dataset** (release; median of $RUNS, min $(fmt "$LUNA_MIN")) | **$(fmt "$LUNA_S")** | $(per_ct "$LUNA_S") | 1× | $(fmt "$LUNA_CPU") (whole \`luna run\`) | HDF5, i16 zstd-1+shuffle / u8 zstd-1, $(printf '%.0f' "$(echo "$H5_BYTES / 1000000" | bc -l)") MB |"
  echo "| numpy + h5py, same output (bench/seg_dataset.py --write; median of $PY_RUNS) | $(fmt "$PY_WRITE_S") | $(per_ct "$PY_WRITE_S") | $(ratio "$PY_WRITE_S")× | $(fmt "$PY_WRITE_CPU") | HDF5 via hdf5plugin.Zstd(1), $(printf '%.0f' "$(echo "$PY_BYTES / 1000000" | bc -l)") MB |"
  echo "| numpy, mask + samples in memory only (no write; median of $PY_RUNS) | $(fmt "$PY_COMPUTE_S") | $(per_ct "$PY_COMPUTE_S") | $(ratio "$PY_COMPUTE_S")× | $(fmt "$PY_COMPUTE_CPU") | — |"
  echo
  echo "Target: luna ≥ 5× faster than the numpy implementation of the same path (same output): ${SPEEDUP}× wall time — $(ok "$SPEEDUP >= 5"); CPU time (user+sys) ratio ${CPU_RATIO}×."
  if [ -n "$NOTES" ]; then echo; echo "$NOTES"; fi
} | tee "$OUT_MD"
say "wrote $OUT_MD"
