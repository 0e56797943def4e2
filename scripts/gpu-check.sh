#!/usr/bin/env bash
# GPU check: does luna train on CUDA, how fast, and does the input pipeline keep up?
#
#   scripts/gpu-check.sh                 # on a machine with an NVIDIA GPU
#   EPOCHS=5 SAMPLES=50000 scripts/gpu-check.sh
#   LUNA_BIN_DIR=dir scripts/gpu-check.sh  # prebuilt `luna` + `luna-torch` in dir (no Rust there)
#
# Steps: release build of `luna` + `luna-torch`; `luna-torch doctor` (is CUDA usable, and why
# not); `luna run gpu-check` (pipelines/gpu-check.yaml): synthetic small dataset → candidates →
# crops (cached after the first run) → nodule training with `device: cuda` for EPOCHS epochs of
# SAMPLES samples. A new SEED (default: the current time) forces the training stage to re-run.
# It then prints, per epoch, training samples/s and the fraction of time the model waited for
# data (from the stage log), and the GPU memory in use while training (nvidia-smi, sampled
# every second; the peak is reported). Exit code 1 when CUDA is not usable.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -n "${LUNA_BIN_DIR:-}" ]; then
  # Prebuilt release binaries (built elsewhere and copied here, e.g. to a GPU machine without
  # Rust): use this machine's PyTorch 2.11 libraries instead of luna's venv.
  BIN="$(cd "$LUNA_BIN_DIR" && pwd)"
  TORCH_LIB="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  # shellcheck source=env.sh
  source scripts/env.sh
  cargo build --release
  BIN="$CARGO_TARGET_DIR/release"
fi
EPOCHS="${EPOCHS:-3}"
SAMPLES="${SAMPLES:-20000}"
SEED="${SEED:-$(date +%s)}"
LOADERS="${LOADERS:-6}"

echo "== luna-torch doctor"
"$BIN/luna-torch" doctor
if ! "$BIN/luna-torch" doctor | grep -q '^cuda        yes'; then
  echo "gpu-check: CUDA is not usable here (see the doctor line above)" >&2
  exit 1
fi

echo "== data chain (cached after the first run)"
"$BIN/luna" run gpu-check --until crops

mem_log="$(mktemp)"
sampler=""
if command -v nvidia-smi >/dev/null; then
  ( while true; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >>"$mem_log" 2>/dev/null || true; sleep 1; done ) &
  sampler=$!
fi
t0=$(date +%s)
echo "== training: $EPOCHS epochs x $SAMPLES samples on cuda (seed $SEED)"
"$BIN/luna" run gpu-check --set "epochs=$EPOCHS" --set "samples=$SAMPLES" --set "seed=$SEED" --set "loader_threads=$LOADERS"
t1=$(date +%s)
[ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true

log="$(ls -td runs/*/ | head -1)logs/train_gpu.log"
echo "== results (stage log: $log)"
grep -E 'device:|data:' "$log" | sed 's/^[0-9:.]* //'
echo "epoch phase samples/s data-wait"
grep -E '^[0-9:.]+ +[0-9]+ (trn|val) ' "$log" | awk '{print $2, $3, $(NF-1), $NF}'
echo "training stage wall time: $((t1 - t0)) s"
if [ -s "$mem_log" ]; then
  echo "GPU memory used (nvidia-smi, MiB): peak $(sort -n "$mem_log" | tail -1), samples $(wc -l <"$mem_log")"
else
  echo "GPU memory: nvidia-smi not available"
fi
rm -f "$mem_log"
