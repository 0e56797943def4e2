#!/usr/bin/env bash
# Training benchmark (issue: train_classifier). Prints a markdown table and writes it to
# bench/results/train.md:
#   1. samples/s the input pipeline delivers alone (crops decoded in memory, batches of 24
#      assembled on 2 threads, no model) vs samples/s training runs at on the same data
#      (target: input ≥ 5× training, so the model never waits);
#   2. one LunaModel training step (batch 24, 2 threads, CPU) in luna vs PyTorch-Python
#      (bench/train_step.py; target: luna ≤ 1.1× PyTorch).
# Uses the debug-profile test binary with opt-level from the dev profile for deps; the model
# time is libtorch's either way. Run on an otherwise idle machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
PY="${LUNA_PYTHON:-$HOME/.cache/luna/venv/bin/python}"
OUT_MD="bench/results/train.md"
mkdir -p bench/results

pipe=$(cargo test -j 1 --release --test it bench_train_input_pipeline -- --ignored --nocapture 2>/dev/null)
input=$(sed -n 's/^input pipeline alone: \([0-9.]*\).*/\1/p' <<<"$pipe")
train=$(sed -n 's/^training: \([0-9.]*\).*/\1/p' <<<"$pipe")
wait=$(sed -n 's/.*data wait \([0-9.]*\)%.*/\1/p' <<<"$pipe")
luna=$(cargo test -j 1 --release --test it bench_luna_train_step -- --ignored --nocapture 2>/dev/null | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
torch=$("$PY" bench/train_step.py 24 2 10 cpu | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
ratio_in=$(python3 -c "print(f'{$input/$train:.1f}')")
ratio_step=$(python3 -c "print(f'{$luna/$torch:.2f}')")
{
  echo "# Training benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), release build."
  echo
  echo "| measure | value | target |"
  echo "|---|---|---|"
  echo "| input pipeline alone (32×48×48 crops in memory, batch 24, 2 threads) | $input samples/s | |"
  echo "| training on that pipeline (batch 24, 2 torch threads, SGD) | $train samples/s (data wait $wait%) | |"
  echo "| input / training | ${ratio_in}× | ≥ 5× |"
  echo "| luna train step (batch 24, 2 threads) | $luna s | |"
  echo "| PyTorch train step (bench/train_step.py, same) | $torch s | |"
  echo "| luna / PyTorch | ${ratio_step}× | ≤ 1.1× |"
} | tee "$OUT_MD"
