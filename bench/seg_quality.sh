#!/usr/bin/env bash
# Segmentation quality benchmark (issue 8): on the small synthetic preset (defaults: 40 series,
# every 10th for validation), train the UNet for EPOCHS × SAMPLES (default 6 × 1600, validation
# every epoch) with the release binaries, then segment + cluster the validation series.
# Reports per epoch: cumulative training seconds (train phase only, from metrics.parquet),
# validation pixel recall / precision / F1, and the coverage of the planted nodules by the kept
# model's probabilities (bench/seg_quality.py: a voxel p > 0.5 within the nodule radius).
# Writes bench/results/seg_quality.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
EPOCHS="${LUNA_BENCH_EPOCHS:-6}"
SAMPLES="${LUNA_BENCH_SAMPLES:-1600}"
SERIES="${LUNA_BENCH_SERIES:-40}"
BEST="${LUNA_BENCH_BEST_BY:-f1}"
cargo build --release --locked >&2
LUNA="$CARGO_TARGET_DIR/release/luna"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/pipelines"
cat > "$W/pipelines/q.yaml" <<YAML
pipeline: q
stages:
  data: { uses: synth, with: { preset: small, seed: 0, series: $SERIES } }
  annotations: { uses: load_annotations, needs: [data] }
  candidates: { uses: merge_candidates, needs: [annotations], with: { val_stride: 10 } }
  segdata: { uses: seg_dataset, needs: [candidates, data] }
  unet:
    uses: train_segmentation
    needs: [segdata]
    with: { epochs: $EPOCHS, epoch_samples: $SAMPLES, validate_every: 1, best_by: $BEST, seed: 1, device: cpu }
  segment: { uses: segment, needs: [unet, candidates, data], with: { device: cpu } }
  clusters: { uses: cluster, needs: [segment, data] }
YAML
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s.%N)
(cd "$W" && "$LUNA" run q >&2)
t1=$(date +%s.%N)
path() { (cd "$W" && "$LUNA" path q "$1"); }
COVER="$("$LUNA_PYTHON" bench/seg_quality.py "$(path data)" "$(path segment)")"
"$LUNA_PYTHON" - "$(path unet)/metrics.parquet" "$COVER" "$EPOCHS" "$SAMPLES" "$SERIES" "$BEST" \
  "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" "$(echo "$t1 - $t0" | bc)" > bench/results/seg_quality.md <<'PY'
import json, sys
import pyarrow.parquet as pq
rows = pq.read_table(sys.argv[1]).to_pylist()
cover = json.loads(sys.argv[2])
epochs, samples, series, best, load0, load1, wall = sys.argv[3:10]
print("# Segmentation quality on the small synthetic preset (issue 8)\n")
print(f"`bench/seg_quality.sh`: {series} series (every 10th validation), {epochs} epochs x {samples} samples, "
      f"validation every epoch, best by {best}, release binaries, CPU ({load0} load before, {load1} after). "
      f"Whole pipeline (synth → clusters): {float(wall):.0f} s.\n")
print("| epoch | training s (cumulative) | val recall | val precision | val F1 |")
print("|---:|---:|---:|---:|---:|")
t = 0.0
for r in rows:
    if r["phase"] == "trn":
        t += samples and int(samples) / r["samples_per_sec"]
    else:
        print(f"| {r['epoch']} | {t:.0f} | {r['recall']:.3f} | {r['precision']:.3f} | {r['f1']:.3f} |")
print(f"\nPlanted nodules of the validation series covered by the kept model (p > 0.5 within the radius): "
      f"**{cover['covered']} / {cover['nodules']} ({100 * cover['coverage']:.1f}%)**.")
PY
cat bench/results/seg_quality.md
