#!/usr/bin/env bash
# Issue 8 benchmark: luna's `seg_dataset` vs the numpy implementation of the same mask + crop
# path (bench/seg_dataset.py, which imports the oracle tests/oracle/seg_mask.py), side by side
# in one run on the same `real`-preset synthetic CTs, same workers. Prints a markdown table
# and writes it to bench/results/seg_dataset.md.
#
#   bench/seg_dataset.sh                          # 10 CTs, 3 timed luna runs, 1 run per numpy row
#   LUNA_BENCH_SERIES=10 LUNA_BENCH_RUNS=5 LUNA_BENCH_PY_RUNS=3 bench/seg_dataset.sh
#   LUNA_BENCH_DIR=/fast/disk LUNA_BENCH_THREADS=8 bench/seg_dataset.sh
#   LUNA_BIN=/path/to/luna bench/seg_dataset.sh   # skip the build, time this binary
#
# Steps: (1) release build of `luna` (no torch); (2) `luna synth --preset real` (512² slices,
# 100-300 per CT; shared with bench/crops.sh, made once under $LUNA_BENCH_DIR); (3) page cache
# warmed, then:
#   luna   — `luna run` of load_annotations → merge_candidates (val_stride 10: 1 validation CT
#            of 10, as the book) → seg_dataset (7×96×96 crops, positive validation slices),
#            fresh --cache-dir per timed run (every partition computed), stat cache warm; the
#            number is seg_dataset's duration_s from runs/<id>/run.json, CPU = the whole run's;
#   numpy  — bench/seg_dataset.py on the same candidates.parquet (same nodules, same split):
#            compute only (mask + samples in memory), and with --write (h5py + hdf5plugin zstd-1,
#            luna's layout: the same output luna writes).
# Workers: both sides at 1 (the target's row: the same thread count) and at LUNA_BENCH_THREADS
# (default nproc; luna threads = Python processes); luna and numpy runs alternate.
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

# ---------------------------------------------------------------------------- 3. runs
# Both sides at one worker (the headline: the same thread count) and at $THREADS workers; luna
# and numpy runs alternate, so both see the same load on a shared machine.
WORKERS="1"
[ "$THREADS" != 1 ] && WORKERS="1 $THREADS"
rm -rf "$WS"; mkdir -p "$WS/pipelines"
for T in $WORKERS; do
  cat >"$WS/pipelines/seg$T.yaml" <<EOF
pipeline: seg$T
stages:
  annotations: { uses: load_annotations, with: { annotations: $DATA/annotations_with_malignancy.csv, candidates: $DATA/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { ct_root: $DATA } }
  seg: { uses: seg_dataset, needs: [candidates], with: { ct_root: $DATA, threads: $T } }
EOF
done
seg_duration() {
  local id; id="$(ls -t "$WS/runs" | head -1)"
  "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))
s = [x for x in r["stages"] if x["stage"] == "seg"][0]
assert s["status"] == "ran", s
print(s["duration_s"])' "$WS/runs/$id/run.json"
}
luna_run() { # luna_run WORKERS CACHE
  rm -rf "$2"
  sync   # the other side's written files are on disk: no run's fsync waits for them
  (cd "$WS" && /usr/bin/time -f '%U %S' -o "$WS/last.time" "$LUNA" run "seg$1" --cache-dir "$2" >/dev/null 2>"$WS/last.log") \
    || { cat "$WS/last.log" >&2; exit 1; }
}
cpu_of() { awk '{print $1 + $2}' "$1"; }   # user + sys seconds from a /usr/bin/time -o file
py_run() { # py_run WORKERS [--write] → "seconds CPU-seconds"
  local t="$1" out n tr v; shift
  rm -rf "$PYOUT"
  sync
  out="$(/usr/bin/time -f '%U %S' -o "$BENCH_DIR/py.time" "$PY" bench/seg_dataset.py "$DATA" "$BENCH_DIR/seg-candidates.parquet" "$PYOUT" "$t" "$@")"
  read -r n tr v <<<"$(echo "$out" | "$PY" -c 'import json,sys; j=json.load(sys.stdin); print(j["cts"], j["train"], j["val"])')"
  [ "$n $tr $v" = "$CTS $TRAIN $VAL" ] || say "warning: numpy made $n CTs / $tr train / $v val, luna $CTS / $TRAIN / $VAL"
  echo "$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])') $(cpu_of "$BENCH_DIR/py.time")"
}
luna_run 1 "$WS/cache-warm"   # fills the stat cache; its candidates table feeds the numpy side
ART="$(cd "$WS" && "$LUNA" path seg1 seg --cache-dir "$WS/cache-warm")"
CAND="$(cd "$WS" && "$LUNA" path seg1 candidates --cache-dir "$WS/cache-warm")/candidates.parquet"
read -r CTS TRAIN VAL <<<"$("$PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["series"], s["train_samples"], s["val_samples"])' "$ART/seg.json")"
H5_BYTES="$(du -sbL "$ART/seg" | cut -f1)"
cp "$CAND" "$BENCH_DIR/seg-candidates.parquet"
declare -A L_S L_MIN L_CPU P_S P_CPU
N="$RUNS"; [ "$PY_RUNS" -gt "$N" ] && N="$PY_RUNS"
PY_BYTES=0
for T in $WORKERS; do
  lt=(); lc=(); pt=(); pc=()
  for i in $(seq "$N"); do
    if [ "$i" -le "$RUNS" ]; then
      luna_run "$T" "$WS/cache-$T-$i"
      lt+=("$(seg_duration)"); lc+=("$(cpu_of "$WS/last.time")")
      rm -rf "$WS/cache-$T-$i"
      say "workers $T, luna run $i: seg_dataset ${lt[-1]} s, CPU ${lc[-1]} s"
    fi
    if [ "$i" -le "$PY_RUNS" ]; then
      read -r s c <<<"$(py_run "$T" --write)"
      pt+=("$s"); pc+=("$c")
      PY_BYTES="$(du -sb "$PYOUT" | cut -f1)"
      say "workers $T, numpy + h5py run $i: $s s, CPU $c s"
    fi
  done
  L_S[$T]="$(printf '%s\n' "${lt[@]}" | median)"
  L_MIN[$T]="$(printf '%s\n' "${lt[@]}" | minimum)"
  L_CPU[$T]="$(printf '%s\n' "${lc[@]}" | median)"
  P_S[$T]="$(printf '%s\n' "${pt[@]}" | median)"
  P_CPU[$T]="$(printf '%s\n' "${pc[@]}" | median)"
done
ct=(); cc=()
for _ in $(seq "$PY_RUNS"); do
  read -r s c <<<"$(py_run 1)"; ct+=("$s"); cc+=("$c")
done
PY_COMPUTE_S="$(printf '%s\n' "${ct[@]}" | median)"
PY_COMPUTE_CPU="$(printf '%s\n' "${cc[@]}" | median)"
say "numpy compute only, 1 worker: $PY_COMPUTE_S s"
rm -rf "$PYOUT" "$WS"/cache-*

# ---------------------------------------------------------------------------- 4. report
fmt() { printf '%.3f' "$1"; }
per_ct() { printf '%.3f' "$(echo "$1 / $CTS" | bc -l)"; }
div() { printf '%.1f' "$(echo "$1 / $2" | bc -l)"; }
ok() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
mb() { printf '%.0f' "$(echo "$1 / 1000000" | bc -l)"; }
mkdir -p "$RESULTS"
NOTES=""
[ -f "$OUT_MD" ] && NOTES="$(sed -n '/^## Notes/,$p' "$OUT_MD")"
W1="$(div "${P_S[1]}" "${L_S[1]}")"
{
  echo "# seg_dataset benchmark (issue 8)"
  echo
  echo "Run $DATE_START on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load before: $LOAD_START, after: $(cut -d' ' -f1-3 /proc/loadavg); luna $(git rev-parse --short HEAD)."
  echo "Data: \`luna synth --preset real --seed $SEED --series $SERIES\`: $CTS CTs (512² slices, 100–300 each), $TRAIN training samples (7×96×96, one per nodule of the training CTs), $VAL validation samples (7×512×512, the positive slices of the validation CT; merge_candidates val_stride 10). Page cache warm. luna and numpy runs alternate (both see the same load); luna: median of $RUNS runs, numpy: median of $PY_RUNS."
  echo
  echo "| path | workers | seconds | per CT | vs luna (same workers) | CPU s (user+sys) | output |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for T in $WORKERS; do
    echo "| **luna seg_dataset** (release; min $(fmt "${L_MIN[$T]}")) | $T | **$(fmt "${L_S[$T]}")** | $(per_ct "${L_S[$T]}") | 1× | $(fmt "${L_CPU[$T]}") (whole \`luna run\`) | HDF5, i16 zstd-1+shuffle / u8 zstd-1, $(mb "$H5_BYTES") MB |"
    echo "| numpy + h5py, same output (bench/seg_dataset.py --write) | $T | $(fmt "${P_S[$T]}") | $(per_ct "${P_S[$T]}") | $(div "${P_S[$T]}" "${L_S[$T]}")× | $(fmt "${P_CPU[$T]}") (whole process) | HDF5 via hdf5plugin.Zstd(1), $(mb "$PY_BYTES") MB |"
  done
  echo "| numpy, mask + samples in memory only (no write) | 1 | $(fmt "$PY_COMPUTE_S") | $(per_ct "$PY_COMPUTE_S") | $(div "$PY_COMPUTE_S" "${L_S[1]}")× | $(fmt "$PY_COMPUTE_CPU") | — |"
  echo
  echo -n "Target: luna ≥ 5× faster than the numpy implementation of the same path (same output), one worker each: ${W1}× wall time — $(ok "$W1 >= 5"); CPU time ratio $(div "${P_CPU[1]}" "${L_CPU[1]}")×"
  if [ "$THREADS" != 1 ]; then
    echo "; at $THREADS workers each: $(div "${P_S[$THREADS]}" "${L_S[$THREADS]}")× wall, $(div "${P_CPU[$THREADS]}" "${L_CPU[$THREADS]}")× CPU."
  else
    echo "."
  fi
  if [ -n "$NOTES" ]; then echo; echo "$NOTES"; fi
} | tee "$OUT_MD"
say "wrote $OUT_MD"
