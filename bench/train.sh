#!/usr/bin/env bash
# Training benchmark (issue: train_classifier). Prints a markdown table and writes it to
# bench/results/train.md:
#   1. samples/s the input pipeline delivers alone (crops decoded in memory, batches of 24
#      assembled on 2 threads, no model) vs samples/s training runs at on the same data
#      (target: input ≥ 5× training, so the model never waits);
#   2. one LunaModel training step (batch 24, 2 threads, CPU) in luna vs PyTorch-Python
#      (bench/train_step.py; target: luna ≤ 1.1× PyTorch).
# Release test binary by default (LUNA_BENCH_DEBUG=1: the dev profile, faster to build; the
# model time is libtorch's either way, only the input pipeline is slower). Run on an otherwise
# idle machine: on a shared one both step times grow with the load.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
PY="${LUNA_PYTHON:-$HOME/.cache/luna/venv/bin/python}"
OUT_MD="bench/results/train.md"
mkdir -p bench/results
if [ "${LUNA_BENCH_DEBUG:-0}" = 1 ]; then prof=(); label="dev"; else prof=(--release); label="release"; fi

pipe=$(cargo test -j 1 "${prof[@]}" -p luna-tests --test it bench_train_input_pipeline -- --ignored --nocapture 2>/dev/null)
input=$(sed -n 's/^input pipeline alone: \([0-9.]*\).*/\1/p' <<<"$pipe")
train=$(sed -n 's/^training: \([0-9.]*\).*/\1/p' <<<"$pipe")
wait=$(sed -n 's/.*data wait \([0-9.]*\)%.*/\1/p' <<<"$pipe")
luna=$(cargo test -j 1 "${prof[@]}" -p luna-tests --test it bench_luna_train_step -- --ignored --nocapture 2>/dev/null | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
torch=$("$PY" bench/train_step.py 24 2 10 cpu | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
# The worker process itself (its allocator settings included), with user and system CPU time.
cargo build -j 1 "${prof[@]}" --locked -p luna-torch --bin luna-torch 2>/dev/null
dir=$([ "$label" = dev ] && echo debug || echo release)
wt=$(mktemp)
worker=$(/usr/bin/time -f '%U %S' -o "$wt" "$CARGO_TARGET_DIR/$dir/luna-torch" bench-step 24 2 10 | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
read -r wuser wsys < "$wt"
sysfrac=$(python3 -c "print(f'{100*$wsys/($wuser+$wsys):.1f}')")
ratio_worker=$(python3 -c "print(f'{$worker/$torch:.2f}')")
pt=$(mktemp)
/usr/bin/time -f '%U %S' -o "$pt" "$PY" bench/train_step.py 24 2 10 cpu >/dev/null
read -r puser psys < "$pt"
psysfrac=$(python3 -c "print(f'{100*$psys/($puser+$psys):.1f}')")
ratio_in=$(python3 -c "print(f'{$input/$train:.1f}')")
ratio_step=$(python3 -c "print(f'{$luna/$torch:.2f}')")
{
  echo "# Training benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $label build, load average $(cut -d' ' -f1 /proc/loadavg) at the end."
  echo
  echo "| measure | value | target |"
  echo "|---|---|---|"
  echo "| input pipeline alone (32×48×48 crops in memory, batch 24, 2 threads) | $input samples/s | |"
  echo "| training on that pipeline (batch 24, 2 torch threads, SGD) | $train samples/s (data wait $wait%) | |"
  echo "| input / training | ${ratio_in}× | ≥ 5× |"
  echo "| luna train step (batch 24, 2 threads) | $luna s | |"
  echo "| PyTorch train step (bench/train_step.py, same) | $torch s | |"
  echo "| luna / PyTorch | ${ratio_step}× | ≤ 1.1× |"
  echo "| luna-torch worker train step (\`luna-torch bench-step\`, allocator tuned) | $worker s | |"
  echo "| worker / PyTorch | ${ratio_worker}× | ≤ 1.0× |"
  echo "| worker system time / CPU time | ${sysfrac}% | < 15% |"
  echo "| PyTorch system time / CPU time | ${psysfrac}% | |"
} | tee "$OUT_MD"
