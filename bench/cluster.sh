#!/usr/bin/env bash
# cluster benchmark (issue 9): luna's clustering of real-preset probability volumes vs
# scipy.ndimage's three calls (binary_erosion, label, center_of_mass) on the same arrays, side
# by side in one run, one thread each; the compute only (both sides read their files first).
# Volumes: p = 1 where HU > -300 on `luna synth --preset real` CTs (tests/oracle/write_prob_volumes.py).
# Writes bench/results/cluster.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
N="${LUNA_BENCH_SERIES:-3}"
cargo build --release --locked -p luna --bin luna >&2
LUNA="$CARGO_TARGET_DIR/release/luna"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
"$LUNA" synth "$W/ct" --preset real --seed 0 --series "$N" >&2
"$LUNA_PYTHON" tests/oracle/write_prob_volumes.py "$W/ct" "$W/seg"
mkdir -p "$W/ws/pipelines"
cat > "$W/ws/pipelines/c.yaml" <<YAML
pipeline: c
stages:
  seg:
    uses: command
    with: { run: 'cp -r $W/seg/. "\$LUNA_OUT"/', inputs: [$W/seg], provides: [probabilities] }
  clusters:
    uses: cluster
    needs: [seg]
    with: { ct_root: $W/ct, threads: 1 }
YAML
(cd "$W/ws" && "$LUNA" run c -v 2>&1) | sed -n 's/.*series \([0-9.]*\): \([0-9]*\) clusters; clustering took \([0-9.]*\) s.*/\1 \2 \3/p' > "$W/luna.txt"
"$LUNA_PYTHON" bench/cluster_scipy.py "$W/seg/probs" "$W/ct" 3 > "$W/scipy.txt"
mkdir -p bench/results
{
  echo "# cluster benchmark (issue 9)"
  echo
  echo "$(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), release luna, 1 thread each, load $(cut -d' ' -f1 /proc/loadavg) at the end."
  echo
  echo "| series (shape) | clusters luna / scipy | luna s | scipy s | scipy / luna |"
  echo "|---|---|---|---|---|"
  while read -r uid shape clusters s; do
    read -r _ lc lt < <(grep "^$uid " "$W/luna.txt")
    echo "| ${uid: -8} $shape | $lc / $clusters | $lt | $s | $(python3 -c "print(f'{$s/$lt:.1f}x')") |"
  done < "$W/scipy.txt"
  echo
  echo "Target: luna ≥ 4× faster than scipy.ndimage's three calls."
} | tee bench/results/cluster.md
