#!/usr/bin/env bash
# Issue 26 benchmark: `merge_candidates` at the real LUNA16 size — a synthetic file shaped like
# candidates_V2.csv (754,975 rows, 1,557 of class 1, over 888 series uids) against 1,186
# annotations (with the book's malignancy column), synthetic values. Times and peak RSS
# (/usr/bin/time -v) of the luna process that runs the merge stage alone (load_annotations, the
# CSV parse, runs and is cached first, and is measured the same way for context), for
# `rule: official` (the LUNA16 template's) and `rule: final` (the book's).
#
#   bench/merge_scale.sh                      # the debug binary of $CARGO_TARGET_DIR
#   LUNA_BIN=/path/to/release/luna bench/merge_scale.sh
#
# Writes bench/results/merge_scale.md (which binary, debug or release, is in the table).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

LUNA="${LUNA_BIN:-$CARGO_TARGET_DIR/debug/luna}"
[ -x "$LUNA" ] || { echo "bench: no luna binary at $LUNA (cargo build -p luna)" >&2; exit 1; }
case "$LUNA" in
  */release/*) PROFILE=release ;;
  */debug/*) PROFILE=debug ;;
  *) PROFILE="unknown ($LUNA)" ;;
esac
WORK="$(mktemp -d "${TMPDIR:-/tmp}/luna-merge-scale.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
OUT_MD="$ROOT/bench/results/merge_scale.md"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"

# Data: 888 uids; 1,186 nodules over 601 series; 1,557 class-1 candidates within d/2 of a
# nodule (1-3 per nodule, some nodules none); the other 753,418 rows class 0, uniform in a
# 300 mm box per series. Fixed seed.
"$LUNA_PYTHON" - "$WORK" <<'EOF'
import sys, numpy as np
out = sys.argv[1]
rng = np.random.default_rng(26)
uids = ["1.3.6.1.4.1.14519.5.2.1.6279.6001." + "".join(map(str, rng.integers(1, 10, 30))) for _ in range(888)]
pos_series = rng.choice(888, 601, replace=False)
nod_series = np.concatenate([pos_series, rng.choice(pos_series, 1186 - 601)])
nod_xyz = rng.uniform(-150, 150, (1186, 3))
nod_d = rng.uniform(3.2, 30, 1186)
with open(f"{out}/annotations_with_malignancy.csv", "w") as f:
    f.write("seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details\n")
    for s, (x, y, z), d in zip(nod_series, nod_xyz, nod_d):
        mal = "True" if d > 10 else "False"
        f.write(f"{uids[s]},{x},{y},{z},{d},{mal},\"[3, 4, 4]\",{x-d/2},{y-d/2},{z-d/2},{x+d/2},{y+d/2},{z+d/2},3\n")
rows = []
owner = rng.choice(1186, 1557)
for k in owner:
    v = rng.normal(size=3); v /= np.linalg.norm(v)
    p = nod_xyz[k] + v * rng.uniform(0.3, 0.8) * nod_d[k] / 2
    rows.append((nod_series[k], p, 1))
neg_series = rng.integers(0, 888, 754975 - 1557)
neg_xyz = rng.uniform(-150, 150, (len(neg_series), 3))
order = rng.permutation(754975)
allrows = rows + [(s, p, 0) for s, p in zip(neg_series, neg_xyz)]
with open(f"{out}/candidates_V2.csv", "w") as f:
    f.write("seriesuid,coordX,coordY,coordZ,class\n")
    for i in order:
        s, (x, y, z), c = allrows[i]
        f.write(f"{uids[s]},{x:.6f},{y:.6f},{z:.6f},{c}\n")
EOF
ROWS=$(($(wc -l < "$WORK/candidates_V2.csv") - 1))
POS=$(awk -F, 'NR > 1 && $5 == 1' "$WORK/candidates_V2.csv" | wc -l)
NANN=$(($(wc -l < "$WORK/annotations_with_malignancy.csv") - 1))
NUID=$(cut -d, -f1 "$WORK/candidates_V2.csv" | tail -n +2 | sort -u | wc -l)
echo "bench: $ROWS candidates ($POS class 1) over $NUID uids, $NANN annotations" >&2

# measure DIR STAGE_ARGS...: wall seconds and peak RSS (MiB) of `luna run ...`.
measure() {
  local dir="$1"; shift
  (cd "$dir" && /usr/bin/time -v "$LUNA" run "$@" >/dev/null 2>"$WORK/time.txt") ||
    { cat "$WORK/time.txt" >&2; exit 1; }
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s}' "$WORK/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$WORK/time.txt")
  echo "$wall $rss"
}

ROWS_MD=""
for RULE in official final; do
  D="$WORK/ws-$RULE"
  mkdir -p "$D/pipelines"
  cat > "$D/pipelines/m.yaml" <<EOF
pipeline: m
stages:
  annotations:
    uses: load_annotations
    with: { annotations: $WORK/annotations_with_malignancy.csv, candidates: $WORK/candidates_V2.csv }
  cands:
    uses: merge_candidates
    needs: [annotations]
    with: { rule: $RULE, require_on_disk: false, val_stride: 10 }
EOF
  read -r LW LR < <(measure "$D" m --until annotations)
  read -r MW MR < <(measure "$D" m)
  echo "bench: rule $RULE: load_annotations ${LW}s ${LR} MiB, merge_candidates ${MW}s ${MR} MiB" >&2
  ROWS_MD+="| \`rule: $RULE\` | $LW | $LR | $MW | $MR |"$'\n'
done

{
  echo "# merge_candidates at LUNA16 scale (issue 26)"
  echo
  echo "Synthetic candidates_V2.csv shape: $ROWS rows ($POS class 1) over $NUID series uids, $NANN"
  echo "annotations (book malignancy columns); synthetic values (\`bench/merge_scale.sh\`)."
  echo "Each row: one \`luna run\` process, \`/usr/bin/time -v\` wall time and maximum RSS; the"
  echo "merge column is a run in which load_annotations is already cached, so it is the merge"
  echo "stage alone (read two Parquet tables, merge, split, write candidates.parquet)."
  echo
  echo "Binary: **$PROFILE** ($LUNA). Machine: $(nproc) cores, shared; load at start $LOAD_START;"
  echo "$DATE_START."
  echo
  echo "| rule | load_annotations s | its peak RSS MiB | merge_candidates s | its peak RSS MiB |"
  echo "|---|---|---|---|---|"
  printf '%s' "$ROWS_MD"
} > "$OUT_MD"
cat "$OUT_MD"
