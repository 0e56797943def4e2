#!/usr/bin/env bash
# Issue 26 benchmark: how `luna status` scales with per-CT partitions. A pipeline over an
# explicit `ct_root` of 888 tiny synthetic CTs (LUNA16's count; `luna synth --preset tiny`):
# load_annotations, merge_candidates, and 5 per-CT partitioned stages (3 × build_crops,
# 2 × seg_dataset with other parameters), i.e. 888 × 5 = 4440 partition objects. After one
# full run, `luna status` is timed (all fresh: the common case) and again after a README and a
# new subset9 CT were added beside the data (still all fresh: stages are keyed by the series
# their tables name). Reports wall time (median of N) and peak RSS (/usr/bin/time -v).
#
#   bench/status_scale.sh                      # debug build of this tree (cargo build -p luna)
#   LUNA_BIN=/path/to/luna bench/status_scale.sh
#   LUNA_BENCH_SERIES=100 LUNA_BENCH_RUNS=5 bench/status_scale.sh
#
# What status does per stage (none of it touches a partition): fingerprint plain inputs
# (stat cache), read the narrowing table (candidates.parquet), list ct_root and read each
# series' .mhd header, stat-check each CT file (stat cache), read the stage's manifest.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
set +e +o pipefail
set -u

SERIES="${LUNA_BENCH_SERIES:-888}"
RUNS="${LUNA_BENCH_RUNS:-5}"
BENCH_DIR="${LUNA_BENCH_DIR:-$HOME/.cache/luna/bench}/status-scale-n$SERIES"
OUT_MD="$ROOT/bench/results/status_scale.md"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
say() { echo "bench: $*" >&2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

if [ -n "${LUNA_BIN:-}" ]; then
  LUNA="$LUNA_BIN"; BUILD="given binary"
else
  cargo build -p luna --bin luna >&2 || exit 1
  LUNA="$CARGO_TARGET_DIR/debug/luna"; BUILD="debug (unoptimised)"
fi
mkdir -p "$BENCH_DIR"
# a private copy: a rebuild of the target dir must not change the binary mid-benchmark
if [ "$LUNA" != "$BENCH_DIR/luna" ]; then
  cp "$LUNA" "$BENCH_DIR/luna"; LUNA="$BENCH_DIR/luna"
fi

WS="$BENCH_DIR/ws"
if [ ! -f "$BENCH_DIR/.data-done" ]; then
  say "generating $SERIES tiny CTs"
  rm -rf "$WS"; mkdir -p "$WS"
  (cd "$WS" && "$LUNA" synth ext --preset tiny --series "$SERIES" --seed 1 >&2) || exit 1
  touch "$BENCH_DIR/.data-done"
fi
mkdir -p "$WS/pipelines"
cat > "$WS/pipelines/scale.yaml" <<'YAML'
pipeline: scale
stages:
  annotations: { uses: load_annotations, with: { annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { ct_root: ext } }
  crops_a: { uses: build_crops, needs: [candidates], with: { ct_root: ext } }
  crops_b: { uses: build_crops, needs: [candidates], with: { ct_root: ext, width_irc: [16, 24, 24] } }
  crops_c: { uses: build_crops, needs: [candidates], with: { ct_root: ext, width_irc: [8, 16, 16] } }
  seg_a: { uses: seg_dataset, needs: [candidates], with: { ct_root: ext, crop: 32 } }
  seg_b: { uses: seg_dataset, needs: [candidates], with: { ct_root: ext, crop: 16 } }
YAML
cd "$WS"
if [ ! -f "$BENCH_DIR/.run-done" ]; then
  say "running the pipeline once (all stages, $SERIES CTs)"
  t0=$(date +%s.%N)
  "$LUNA" run scale >&2 || exit 1
  RUN_S=$(printf "%.1f" "$(echo "$(date +%s.%N) - $t0" | bc)")
  echo "$RUN_S" > "$BENCH_DIR/.run-done"
fi
RUN_S="$(cat "$BENCH_DIR/.run-done")"
PARTS=$(find cache/objects -name manifest.json -exec grep -l '/partition"' {} + | wc -l)
OBJS=$(find cache/objects -mindepth 2 -maxdepth 2 -type d | wc -l)

# time_status LABEL: RUNS timed `luna status scale`, each under /usr/bin/time -v
time_status() {
  local label="$1" walls=() rss=() out
  "$LUNA" status scale > "$BENCH_DIR/status.txt" 2>&1   # warm-up (page cache, stat cache)
  for _ in $(seq "$RUNS"); do
    out=$( { /usr/bin/time -v "$LUNA" status scale > /dev/null; } 2>&1 )
    walls+=("$(echo "$out" | awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}')")
    rss+=("$(echo "$out" | awk -F': ' '/Maximum resident set size/ {print $2}')")
  done
  local w r
  w=$(printf '%s\n' "${walls[@]}" | median)
  r=$(printf '%s\n' "${rss[@]}" | median)
  local fresh
  fresh=$(grep -cE '^  [^ ]+ +up to date$' "$BENCH_DIR/status.txt")
  echo "| $label | $w | $(printf '%s\n' "${walls[@]}" | sort -g | head -1) | $(echo "scale=1; $r/1024" | bc) | $fresh of 7 | $(tail -1 "$BENCH_DIR/status.txt") |"
}

rm -rf ext/subset9 ext/README.txt   # a rerun starts from the data as generated
ROWS=$(time_status "all fresh")
# a README and a new subset9 CT (a series no table names) beside the data
if [ ! -d ext/subset9 ]; then
  mkdir -p ext/subset9 other && (cd other && "$LUNA" synth x --preset tiny --series 2 --seed 99 >/dev/null 2>&1)
  m=$(find other/x -name '*.mhd' | sort | head -1)
  cp "$m" "${m%.mhd}.raw" ext/subset9/ && rm -rf other
  echo "LUNA16 download notes" > ext/README.txt
fi
ROWS="$ROWS
$(time_status "after adding README.txt + subset9/ CT")"

cat > "$OUT_MD" <<MD
# \`luna status\` at LUNA16 scale (issue 26)

| | |
|---|---|
| date | $DATE_START |
| luna | $BUILD, built from ${LUNA_BENCH_REV:-$(git -C "$ROOT" rev-parse --short HEAD)} |
| machine | $(nproc) cores, load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end (shared machine) |
| data | $SERIES tiny synthetic CTs (\`luna synth --preset tiny\`), $(du -sh ext | cut -f1), explicit \`ct_root\` |
| pipeline | load_annotations, merge_candidates, 3 × build_crops, 2 × seg_dataset (7 stages, 5 per-CT) |
| cache | $OBJS objects, $PARTS of them per-CT partitions |
| first full run (\`luna run scale\`, all 7 stages) | ${RUN_S} s |

\`luna status scale\`: median of $RUNS runs (after one warm-up), min, and peak RSS (median of the runs,
\`/usr/bin/time -v\`).

| case | wall s (median) | wall s (min) | peak RSS MiB | stages fresh | summary line |
|---|---|---|---|---|---|
$ROWS

Status reads no partition: its cost is per stage × per CT (reading the candidates table that
names the series, listing \`ct_root\`, reading each .mhd header, a stat-cache check of each
CT file) plus each stage's manifest, so it grows linearly with the CTs and the stages, not
with the partitions' size.
MD
cat "$OUT_MD"
