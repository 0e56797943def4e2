#!/usr/bin/env bash
# UNet training-step benchmark (issue 8): the book's UNet step (batch 16 of 7×64×64, Dice +
# 8·FN, Adam, 2 threads) in the luna-torch worker process vs PyTorch-Python, side by side in
# one run, with system-time shares. Writes bench/results/unet_step.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh
cargo build --release --locked -p luna-torch --bin luna-torch >&2
W="$CARGO_TARGET_DIR/release/luna-torch"
t1=$(mktemp); t2=$(mktemp)
luna=$(/usr/bin/time -f '%U %S' -o "$t1" "$W" bench-unet-step 16 2 20 | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
torch=$(/usr/bin/time -f '%U %S' -o "$t2" "$LUNA_PYTHON" bench/unet_step.py 16 2 20 | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
read -r lu ls < "$t1"; read -r pu ps < "$t2"
{
  echo "# UNet training step (issue 8)"
  echo
  echo "$(date -u +%Y-%m-%d\ %H:%M) UTC, $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), release, load $(cut -d' ' -f1 /proc/loadavg) at the end."
  echo
  echo "| measure | value | target |"
  echo "|---|---|---|"
  echo "| luna-torch UNet step (batch 16, 7×64×64, 2 threads) | $luna s | |"
  echo "| PyTorch-Python, same model and loss | $torch s | |"
  echo "| luna / PyTorch | $(python3 -c "print(f'{$luna/$torch:.2f}')")× | ≤ 1.1× |"
  echo "| system time share luna / PyTorch | $(python3 -c "print(f'{100*$ls/($lu+$ls):.1f}')")% / $(python3 -c "print(f'{100*$ps/($pu+$ps):.1f}')")% | |"
} | tee bench/results/unet_step.md
