#!/usr/bin/env bash
# DICOM read benchmark (issue 23): luna's reader (`select_series` + `CtSource::open`, release,
# tests/it/ct_dicom_bench.rs) vs SimpleITK's ImageSeriesReader (GetGDCMSeriesIDs +
# GetGDCMSeriesFileNames + Execute, tests/oracle/dicom_sitk_read.py) on the same series, side
# by side in one run, alternating rounds; each side's median over LUNA_BENCH_REPS (7) reads
# after a warm-up (page cache warm for both). Default series: the real 140-slice LIDC-IDRI-0003
# of shared/real (LUNA_BENCH_DICOM=DIR for another). Writes bench/results/dicom_read.md.
# Target: luna ≤ 1.0× SimpleITK. Both sides use all cores (rayon / ITK's threads).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
LUNA_ENV=test source scripts/env.sh
PY="${LUNA_PYTHON:-$HOME/.cache/luna/venv/bin/python}"
REPS="${LUNA_BENCH_REPS:-7}"
ROUNDS="${LUNA_BENCH_ROUNDS:-3}"
if [ -z "${LUNA_BENCH_DICOM:-}" ]; then
  real=""
  for a in "$ROOT" "$ROOT/.." "$ROOT/../.."; do
    [ -f "$a/shared/real/README.md" ] && real="$a/shared/real" && break
    [ -f "$a/../shared/real/README.md" ] && real="$a/../shared/real" && break
  done
  [ -n "$real" ] || { echo "no shared/real beside the checkout: set LUNA_BENCH_DICOM" >&2; exit 2; }
  LUNA_BENCH_DICOM="$(ls -d "$real"/lidc/LIDC-IDRI-0003/*/*/)"
fi
export LUNA_BENCH_DICOM LUNA_BENCH_REPS="$REPS"
cargo test --release --locked -p luna-tests --test it --no-run >&2
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
for r in $(seq "$ROUNDS"); do
  cargo test --release --locked -p luna-tests --test it ct_dicom_bench -- --ignored --nocapture 2>/dev/null \
    | grep '^luna scan+read' >> "$W/luna.txt"
  "$PY" tests/oracle/dicom_sitk_read.py "$LUNA_BENCH_DICOM" "$W/x" time "$REPS" >> "$W/sitk.txt"
  echo "round $r: $(tail -1 "$W/luna.txt") | $(tail -1 "$W/sitk.txt")" >&2
done
# luna.txt: "luna scan+read: T s (scan S s, read R s); ..."; sitk.txt: "sitk lookup+read: T s (lookup L s, read R s); ..."
nums() { sed -n 's/^[a-z]* [a-z+]*: \([0-9.]*\) s ([a-z]* \([0-9.]*\) s, read \([0-9.]*\) s).*/\1 \2 \3/p' "$1"; }
nums "$W/luna.txt" > "$W/l"
nums "$W/sitk.txt" > "$W/s"
mkdir -p bench/results
{
  echo "# DICOM series read benchmark (issue 23)"
  echo
  echo "$(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), release luna, SimpleITK $("$PY" -c 'import SimpleITK; print(SimpleITK.Version.VersionString())'), load $(cut -d' ' -f1 /proc/loadavg) at the end."
  echo "Series: $(ls "$LUNA_BENCH_DICOM" | grep -c .) files (slices and any others, e.g. LIDC's reader XML) in \`${LUNA_BENCH_DICOM#"$ROOT"/}\`; each cell the median of $REPS reads after a warm-up; rounds alternate luna and SimpleITK."
  echo
  echo "| round | luna scan+read s | SimpleITK lookup+read s | luna / SimpleITK | luna read s | SimpleITK Execute s | read ratio |"
  echo "|---|---|---|---|---|---|---|"
  paste -d' ' "$W/l" "$W/s" | awk '{printf "| %d | %.3f | %.3f | %.2f× | %.3f | %.3f | %.2f× |\n", NR, $1, $4, $1/$4, $3, $6, $3/$6}'
  echo
  echo "Scan = \`select_series\` (header-only read of every file, grouping); lookup = SimpleITK's"
  echo "GetGDCMSeriesIDs + GetGDCMSeriesFileNames; read = \`CtSource::open\` / \`Execute\`."
  echo "Target: luna ≤ 1.0× SimpleITK (the whole: scan+read vs lookup+read)."
} | tee bench/results/dicom_read.md
