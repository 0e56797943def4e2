#!/usr/bin/env bash
# Issue 9 benchmark: official LUNA16 FROC/CPM scoring with 1,000 bootstraps on 888 synthetic
# scans x 100 marks (LUNA16's scan count, the official 100-mark cap): `luna froc` vs the same
# computation in Python (tests/oracle/froc_oracle.py: numpy + its own sklearn-equivalent ROC,
# the script's concatenate-per-round bootstrap), side by side in one run, on the same files.
# Prints a markdown table and writes it to bench/results/froc.md. Target: >= 50x.
#
#   bench/froc.sh
#   LUNA_BENCH_RUNS=5 bench/froc.sh          # luna runs per measurement (median; default 3)
#   LUNA_BIN=/path/to/luna bench/froc.sh     # skip the build, benchmark that binary
#
# Steps: (1) release build of `luna` (no torch); (2) froc_data.py writes annotations.csv
# (Poisson 1.34 nodules per scan), annotations_excluded.csv, seriesuids.csv and a submission of
# exactly 100 marks per scan (probabilities with 6 decimals); (3) times luna with
# and without the bootstrap (median of LUNA_BENCH_RUNS) and the oracle once each; (4) checks that
# both give the same CPM, sensitivities and bootstrap CI (<= 1e-9); (5) writes the table.
# Wall times include reading the CSVs; luna's also include writing its six files (PNG too).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

RUNS="${LUNA_BENCH_RUNS:-3}"
BENCH_DIR="${LUNA_BENCH_DIR:-$HOME/.cache/luna/bench}/froc"
DATA="$BENCH_DIR/data"
OUT_MD="$ROOT/bench/results/froc.md"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"
say() { echo "bench: $*" >&2; }

if [ -n "${LUNA_BIN:-}" ]; then
  LUNA="$LUNA_BIN"
  say "using $LUNA (LUNA_BIN; not rebuilt)"
else
  say "building luna (release) into $CARGO_TARGET_DIR"
  cargo build --release --locked -p luna --bin luna >&2
  LUNA="$CARGO_TARGET_DIR/release/luna"
fi

rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"
"$LUNA_PYTHON" tests/oracle/froc_data.py "$DATA" --scans 888 --marks 100 --spread 0 --seed 1 --decimals 6 >&2
ARGS=(--annotations "$DATA/annotations.csv" --excluded "$DATA/annotations_excluded.csv"
      --seriesuids "$DATA/seriesuids.csv")

now() { date +%s.%N; }
# median wall seconds of RUNS runs of "$@"
median_of() {
  local ts=()
  for _ in $(seq "$RUNS"); do
    local t0; t0="$(now)"; "$@" >/dev/null 2>&1; ts+=("$(echo "$(now) - $t0" | "$LUNA_PYTHON" -c 'print(eval(input()))')")
  done
  printf '%s\n' "${ts[@]}" | "$LUNA_PYTHON" -c 'import sys,statistics; print("%.3f" % statistics.median(float(x) for x in sys.stdin))'
}
once() {
  local t0; t0="$(now)"; "$@" >/dev/null 2>&1
  echo "$(now) - $t0" | "$LUNA_PYTHON" -c 'print("%.3f" % eval(input()))'
}

say "luna froc, 1000 bootstraps ($RUNS runs)"
"$LUNA" froc "$DATA/submission.csv" "${ARGS[@]}" --out "$BENCH_DIR/luna" --bootstrap 1000 --seed 0 >&2
T_LUNA="$(median_of "$LUNA" froc "$DATA/submission.csv" "${ARGS[@]}" --out "$BENCH_DIR/luna" --bootstrap 1000 --seed 0)"
T_LUNA0="$(median_of "$LUNA" froc "$DATA/submission.csv" "${ARGS[@]}" --out "$BENCH_DIR/luna0" --bootstrap 0)"
say "python oracle, 1000 bootstraps (once)"
T_PY="$(once "$LUNA_PYTHON" tests/oracle/froc_oracle.py "${ARGS[@]}" --submission "$DATA/submission.csv" --bootstrap 1000 --seed 0 --out "$BENCH_DIR/oracle.json")"
T_PY0="$(once "$LUNA_PYTHON" tests/oracle/froc_oracle.py "${ARGS[@]}" --submission "$DATA/submission.csv" --bootstrap 0 --out "$BENCH_DIR/oracle0.json")"

CHECK="$("$LUNA_PYTHON" - "$BENCH_DIR/luna/froc.json" "$BENCH_DIR/oracle.json" <<'EOF'
import json, sys
l, o = (json.load(open(p)) for p in sys.argv[1:3])
d = [abs(l["cpm"] - o["cpm"]), abs(l["cpm_nearest"] - o["cpm_nearest"])]
d += [abs(a - b) for a, b in zip(l["sensitivities"], o["sensitivities"])]
lb, ob = l["bootstrap"], o["bootstrap"]
d += [abs(lb["cpm"][k] - ob["cpm"][k]) for k in ("mean", "low", "high")]
d += [abs(s[k] - t[k]) for s, t in zip(lb["sensitivities"], ob["sensitivities"]) for k in ("mean", "low", "high")]
c = l["counts"]
print("%.6f|%.6f|%.6f|%.6f|%.1e|%d|%d|%d|%d|%d|%d" % (l["cpm"], l["cpm_nearest"], lb["cpm"]["low"], lb["cpm"]["high"],
      max(d), c["scans"], c["nodules"], c["marks"], c["tp"], c["fp"], l["curve_points"]))
EOF
)"
IFS='|' read -r CPM CPMN LO HI MAXDIFF SCANS NODULES MARKS TP FP POINTS <<<"$CHECK"
RATIO="$("$LUNA_PYTHON" -c "print('%.0f' % ($T_PY / $T_LUNA))")"
RATIO0="$("$LUNA_PYTHON" -c "print('%.0f' % ($T_PY0 / $T_LUNA0))")"
MET="$("$LUNA_PYTHON" -c "print('met' if $T_PY / $T_LUNA >= 50 else 'missed')")"
REV="$(git rev-parse --short HEAD)$(git diff --quiet || echo '+dirty')"

mkdir -p "$(dirname "$OUT_MD")"
cat >"$OUT_MD" <<EOF
# luna FROC/CPM benchmark (issue 9)

| machine | |
|---|---|
| date | $DATE_START |
| luna rev | $REV (release) |
| CPU | $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc $(nproc) |
| load average (1/5/15 min) at start | $LOAD_START |
| load average at end | $(cut -d' ' -f1-3 /proc/loadavg) |
| input | $SCANS scans, $NODULES nodules, $MARKS marks (100 per scan), \`tests/oracle/froc_data.py --scans 888 --marks 100 --spread 0 --seed 1 --decimals 6\` |

| what | command | wall s | Python / luna |
|---|---|---|---|
| **luna, 1000 bootstraps** | \`luna froc SUB --bootstrap 1000\` (median of $RUNS) | $T_LUNA | |
| Python oracle, 1000 bootstraps | \`froc_oracle.py --bootstrap 1000\` | $T_PY | **${RATIO}x** |
| luna, no bootstrap | \`luna froc SUB --bootstrap 0\` (median of $RUNS) | $T_LUNA0 | |
| Python oracle, no bootstrap | \`froc_oracle.py --bootstrap 0\` | $T_PY0 | ${RATIO0}x |

Target >= 50x with 1000 bootstraps: **$MET** (${RATIO}x).

Same result: CPM $CPM (95% CI $LO-$HI), nearest-point CPM $CPMN, TP $TP, FP $FP, $POINTS curve
points; largest difference luna vs oracle over CPM, nearest CPM, the 7 sensitivities and the
bootstrap mean/CI of each: $MAXDIFF.

luna's time includes writing submission.csv, seriesuids.csv, froc.csv, froc.json,
froc_bootstrap.csv and froc.png; the oracle writes one JSON file. The bootstrap rounds run in
parallel (rayon) on $(nproc) cores.
EOF
cat "$OUT_MD"
