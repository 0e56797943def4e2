#!/usr/bin/env bash
# Issue 3 benchmark: luna's `build_crops` vs the book's Python crop-caching path vs just reading
# the CT bytes, side by side in one run on the same `real`-preset synthetic data. Prints a
# markdown table and writes it to bench/results/crops.md.
#
#   bench/crops.sh                              # 10 CTs, 3 timed luna runs, 1 Python run
#   LUNA_BENCH_SERIES=10 LUNA_BENCH_RUNS=3 LUNA_BENCH_PY_RUNS=1 bench/crops.sh
#   LUNA_BENCH_DIR=/fast/disk LUNA_BENCH_THREADS=8 bench/crops.sh
#   LUNA_BIN=/path/to/luna bench/crops.sh       # skip the build, time this binary
#
# Steps: (1) release build of `luna` WITHOUT the torch feature; (2) `luna synth --preset real`
# (512² slices, 100-300 per CT, ≥ 300 candidates per CT; made once, cached under
# $LUNA_BENCH_DIR); (3) page cache warmed by reading every file once, then:
#   raw read  — `dd bs=1M` of every .raw to /dev/null (best of RUNS) and np.fromfile, the floor
#               for any crop builder (compressed CTs count their compressed bytes);
#   luna      — `luna run` of load_annotations → merge_candidates → build_crops over the data
#               as an external `ct_root`, each timed run with a fresh --cache-dir (so every CT
#               partition is computed) and the stat cache warm (CT files are not re-hashed);
#               the number is build_crops' `duration_s` from runs/<id>/run.json. One extra run
#               with --no-stat-cache shows what first-time hashing of the CT files adds;
#   python    — bench/book_crops.py (SimpleITK → float32 → clip → xyz2irc → slice →
#               diskcache FanoutCache.set per candidate), fresh cache dir per run.
# luna and Python use the same number of workers (threads / processes) = LUNA_BENCH_THREADS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

# shellcheck source=common.sh
source bench/common.sh
WS="$BENCH_DIR/crops-ws"
PYCACHE="$BENCH_DIR/crops-diskcache"
OUT_MD="$RESULTS/crops.md"

"$PY" -c 'import diskcache, SimpleITK, numpy' 2>/dev/null \
  || { say "installing diskcache into $LUNA_VENV"; "$PY" -m pip install -q diskcache; }

# ---------------------------------------------------------------------------- 1. build
bench_luna

# ---------------------------------------------------------------------------- 2. data
bench_real_data "$DATA" "$SEED" "$SERIES"
read -r CTS CANDS CMIN CMAX RAW_BYTES COMPRESSED <<<"$("$PY" - "$DATA" <<'EOF'
import csv, glob, os, sys
root = sys.argv[1]
mhd = {os.path.basename(p)[:-4]: p for p in glob.glob(os.path.join(root, "subset*", "*.mhd"))}
n = {u: 0 for u in mhd}
for row in list(csv.reader(open(os.path.join(root, "annotations_with_malignancy.csv"))))[1:]:
    n[row[0]] = n.get(row[0], 0) + 1
for row in list(csv.reader(open(os.path.join(root, "candidates.csv"))))[1:]:
    if row[4] == "0":
        n[row[0]] = n.get(row[0], 0) + 1
raw = sum(os.path.getsize(p[:-4] + ".raw") for p in mhd.values())
comp = sum("CompressedData = True" in open(p).read() for p in mhd.values())
print(len(mhd), sum(n.values()), min(n.values()), max(n.values()), raw, comp)
EOF
)"
say "$CTS CTs, $CANDS candidates ($CMIN-$CMAX per CT), $RAW_BYTES bytes of .raw ($COMPRESSED zlib-compressed CTs)"

# ---------------------------------------------------------------------------- 3. timings
cat "$DATA"/subset*/* >/dev/null   # page cache warm for everyone

# (c) raw read
# `dd bs=1M`: read(2) into a user buffer, like any reader must. (Not `cat >/dev/null`: GNU cat
# may splice/copy_file_range to /dev/null without copying a byte, which measures nothing.)
raw_times=()
for _ in $(seq "$RUNS"); do
  t0=$(now); for f in "$DATA"/subset*/*.raw; do dd if="$f" of=/dev/null bs=1M status=none; done; t1=$(now)
  raw_times+=("$(echo "$t1 - $t0" | bc -l)")
done
RAW_S="$(printf '%s\n' "${raw_times[@]}" | minimum)"
NPREAD_S="$("$PY" -c 'import glob, sys, time, numpy as np
t = time.perf_counter()
for f in sorted(glob.glob(sys.argv[1] + "/subset*/*.raw")): np.fromfile(f, dtype=np.uint8)
print(time.perf_counter() - t)' "$DATA")"

# (a) luna
rm -rf "$WS"; mkdir -p "$WS/pipelines"
cat >"$WS/pipelines/crops.yaml" <<EOF
pipeline: crops
stages:
  annotations: { uses: load_annotations, with: { annotations: $DATA/annotations_with_malignancy.csv, candidates: $DATA/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { ct_root: $DATA } }
  crops: { uses: build_crops, needs: [candidates], with: { ct_root: $DATA, threads: $THREADS } }
EOF
crops_duration() { # the crops stage's duration_s and the run's wall time from the latest run.json
  local id; id="$(ls -t "$WS/runs" | head -1)"
  "$PY" -c 'import json,sys
r = json.load(open(sys.argv[1]))
s = [x for x in r["stages"] if x["stage"] == "crops"][0]
assert s["status"] == "ran", s
print(s["duration_s"])' "$WS/runs/$id/run.json"
}
luna_run() { # luna_run CACHE_DIR [extra args]
  local c="$1"; shift
  rm -rf "$c"
  (cd "$WS" && /usr/bin/time -f '%U %S' -o "$WS/last.time" "$LUNA" run crops --cache-dir "$c" "$@" >/dev/null 2>"$WS/last.log") \
    || { cat "$WS/last.log" >&2; exit 1; }
}
cpu_of() { awk '{print $1 + $2}' "$1"; }   # user + sys seconds from a /usr/bin/time -o file
say "luna: first run with --no-stat-cache (hashes every CT file)"
luna_run "$WS/cache-hash" --no-stat-cache
HASH_S="$(crops_duration)"
luna_run "$WS/cache-warm"   # fills the stat cache
luna_times=()
luna_cpu=()
for i in $(seq "$RUNS"); do
  luna_run "$WS/cache-$i"
  luna_times+=("$(crops_duration)")
  luna_cpu+=("$(cpu_of "$WS/last.time")")
  say "luna run $i: build_crops ${luna_times[-1]} s"
done
LUNA_S="$(printf '%s\n' "${luna_times[@]}" | median)"
LUNA_MIN="$(printf '%s\n' "${luna_times[@]}" | minimum)"
LUNA_CPU="$(printf '%s\n' "${luna_cpu[@]}" | median)"
ART="$(cd "$WS" && "$LUNA" path crops crops --cache-dir "$WS/cache-$RUNS" 2>/dev/null || true)"
LUNA_CROPS="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["crops"])' "$ART/crops.json")"
H5_BYTES="$(du -sbL "$ART/crops" | cut -f1)"
PART_S="$("$PY" - "$WS/cache-$RUNS" <<'EOF'
import glob, json, sys
d = [json.load(open(m))["duration_s"] for m in glob.glob(sys.argv[1] + "/objects/*/*/manifest.json")
     if json.load(open(m))["kind"] == "build_crops/partition"]
print(f"{sum(d):.3f} {max(d):.3f}")
EOF
)"
rm -rf "$WS"/cache-*

# (b) the book's Python path
py_times=()
py_cpu=()
for i in $(seq "$PY_RUNS"); do
  rm -rf "$PYCACHE"
  out="$(/usr/bin/time -f '%U %S' -o "$BENCH_DIR/py.time" "$PY" bench/book_crops.py "$DATA" "$PYCACHE" "$THREADS")"
  py_cpu+=("$(cpu_of "$BENCH_DIR/py.time")")
  py_times+=("$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')")
  PY_CROPS="$(echo "$out" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["crops"])')"
  say "python run $i: ${py_times[-1]} s ($PY_CROPS crops)"
done
PY_S="$(printf '%s\n' "${py_times[@]}" | median)"
PY_CPU="$(printf '%s\n' "${py_cpu[@]}" | median)"
PY_BYTES="$(du -sb "$PYCACHE" | cut -f1)"
rm -rf "$PYCACHE"
[ "$PY_CROPS" = "$LUNA_CROPS" ] || say "warning: python made $PY_CROPS crops, luna $LUNA_CROPS"

# ---------------------------------------------------------------------------- 4. report
fmt() { printf '%.3f' "$1"; }
rate() { printf '%.0f' "$(echo "$1 / $2" | bc -l)"; }
SPEEDUP="$(printf '%.1f' "$(echo "$PY_S / $LUNA_S" | bc -l)")"
VS_RAW="$(printf '%.2f' "$(echo "$LUNA_S / $RAW_S" | bc -l)")"
ok() { if [ "$(echo "$1" | bc -l)" = 1 ]; then echo "met"; else echo "**missed**"; fi; }
mkdir -p "$RESULTS"
# Keep the hand-written profile notes (from the "## Where" heading on) across re-runs.
NOTES=""
[ -f "$OUT_MD" ] && NOTES="$(sed -n '/^## Where/,$p' "$OUT_MD")"
{
  echo "# build_crops benchmark (issue 3)"
  echo
  echo "Run $DATE_START on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), load before: $LOAD_START, after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Data: \`luna synth --preset real --seed $SEED --series $SERIES\`: $CTS CTs (512² slices, $COMPRESSED zlib-compressed), $CANDS crops of 32×48×48 ($CMIN–$CMAX per CT, final book rule), $(printf '%.2f' "$(echo "$RAW_BYTES / 1000000000" | bc -l)") GB of .raw. Page cache warm for every row. Workers: $THREADS (luna threads = Python processes)."
  echo
  echo "| path | seconds | crops/s | vs luna | CPU s (user+sys) | output |"
  echo "|---|---:|---:|---:|---:|---|"
  echo "| raw read: \`dd bs=1M\` of every .raw to /dev/null (best of $RUNS) | $(fmt "$RAW_S") | — | $(printf '%.2f' "$(echo "$RAW_S / $LUNA_S" | bc -l)")× | — | — |"
  echo "| raw read: \`np.fromfile\` of every .raw (1 thread) | $(fmt "$NPREAD_S") | — | $(printf '%.2f' "$(echo "$NPREAD_S / $LUNA_S" | bc -l)")× | — | — |"
  echo "| **luna build_crops** (release, no torch; median of $RUNS, min $(fmt "$LUNA_MIN")) | **$(fmt "$LUNA_S")** | $(rate "$LUNA_CROPS" "$LUNA_S") | 1× | $(fmt "$LUNA_CPU") (whole \`luna run\`) | HDF5 i16 zstd-1+shuffle, $(printf '%.0f' "$(echo "$H5_BYTES / 1000000" | bc -l)") MB |"
  echo "| luna build_crops, first run with --no-stat-cache (+ blake3 of every CT file) | $(fmt "$HASH_S") | $(rate "$LUNA_CROPS" "$HASH_S") | $(printf '%.2f' "$(echo "$HASH_S / $LUNA_S" | bc -l)")× | — | same |"
  echo "| book path, bench/book_crops.py (SimpleITK + diskcache; median of $PY_RUNS) | $(fmt "$PY_S") | $(rate "$PY_CROPS" "$PY_S") | $(printf '%.1f' "$(echo "$PY_S / $LUNA_S" | bc -l)")× | $(fmt "$PY_CPU") | pickled f32 in diskcache, $(printf '%.0f' "$(echo "$PY_BYTES / 1000000" | bc -l)") MB |"
  echo
  echo "Targets: luna ≥ 10× the Python path: ${SPEEDUP}× — $(ok "$SPEEDUP >= 10"); luna ≤ 2× the raw read time: ${VS_RAW}× — $(ok "$VS_RAW <= 2")."
  echo "Per-CT partitions of the last timed luna run: $(echo "$PART_S" | cut -d' ' -f1) s summed over CTs (max $(echo "$PART_S" | cut -d' ' -f2) s for one CT)."
  if [ -n "$NOTES" ]; then echo; echo "$NOTES"; fi
} | tee "$OUT_MD"
say "wrote $OUT_MD"
