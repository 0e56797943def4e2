#!/usr/bin/env bash
# Serving benchmark (issue #13): throughput and p50/p99 latency of `luna serve`'s
# /v1/classify, one 32x48x48 crop per request, from 1, 8 and 64 concurrent loopback clients
# (closed loop: each client sends its next request when the last is answered), with batching
# on (--max-batch 64, --max-wait-ms 10 = the default, and 25) vs off (--max-batch 1), side by
# side with the book's approach (bench/serve_book.py: Flask around the same weights in
# PyTorch, one crop per forward, both models as luna computes both). Writes
# bench/results/serve.md. Before the servers: the model's own cost per crop by batch size
# (luna's eval pass, `luna-torch bench-infer`, and PyTorch's in both memory layouts,
# bench/serve_model.py), which bounds what batching can gain on this machine.
# Client: bench/loadgen (a bundled std-only Rust client, built here; see its doc for why not
# wrk or Python). Each cell runs LUNA_BENCH_SECONDS (default 30) seconds; percentiles are given
# over every request and over the steady state (requests started after LUNA_BENCH_WARMUP,
# default 5 s: the burst of all clients starting at once is left out).
# The p99 target (#13: within 2 x max_wait + one batch time) is read three ways in the summary:
# per request (each latency minus the time of its own batch, from the server's x-batch-ms
# header: p99 <= 2 x max_wait), and p99 latency against 2 x max_wait + the p99 and the mean
# batch time. On a shared 2-core VM the batch time itself varies by 10-30% within a cell (the
# model's compute, not the server), which the mean-based reading charges to the batching.
# Release binaries by default (LUNA_BENCH_DEBUG=1: the dev build). The machine's load shows in
# the numbers: the client, the server and its worker share the CPUs; run it on an idle machine
# (`nice -n -20` helps where other work cannot be stopped).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
PY="${LUNA_PYTHON:-$HOME/.cache/luna/venv/bin/python}"
SECONDS_MAX="${LUNA_BENCH_SECONDS:-30}"
WARMUP="${LUNA_BENCH_WARMUP:-5}"
THREADS="${LUNA_BENCH_THREADS:-2}"
WS="${LUNA_BENCH_DIR:-$HOME/.cache/luna/bench}/serve-ws"
OUT_MD="bench/results/serve.md"
say() { echo "bench: $*" >&2; }
if [ "${LUNA_BENCH_DEBUG:-0}" = 1 ]; then prof=(); dir=debug; else prof=(--release); dir=release; fi
cargo build "${prof[@]}" --locked -p luna -p luna-torch >&2
cargo build --release --locked --manifest-path bench/loadgen/Cargo.toml >&2
LUNA="$CARGO_TARGET_DIR/$dir/luna"
LOADGEN="$CARGO_TARGET_DIR/release/luna-loadgen"

mkdir -p "$WS/pipelines" bench/results
cp bench/serve-pipeline.yaml "$WS/pipelines/serve-bench.yaml"
(cd "$WS" && "$LUNA" run serve-bench >&2)
nodule_dir="$(cd "$WS" && "$LUNA" path serve-bench nodule)"
mal_dir="$(cd "$WS" && "$LUNA" path serve-bench mal)"
crop="$WS/crop.i16"
"$PY" -c "import numpy as np; np.random.default_rng(0).integers(-1000, 1000, (32, 48, 48), dtype=np.int16).tofile('$crop')"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# start_server NAME CMD...: starts it, waits for its "listening on http://ADDR" line, sets ADDR
start_server() {
  local name="$1"; shift
  local out="$WS/$name.out"
  : > "$out"
  (cd "$WS" && exec "$@" > "$out" 2> "$WS/$name.log") &
  pids+=($!)
  for _ in $(seq 600); do
    ADDR="$(sed -n 's|^listening on http://||p' "$out")"
    [ -n "$ADDR" ] && return 0
    sleep 0.1
  done
  say "$name did not start: $(tail -5 "$WS/$name.log")"; exit 1
}
stop_server() { kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; }

declare -A R
scrape() { "$PY" -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://$ADDR/metrics').read().decode())" > "$1"; }
run_config() {
  local name="$1"; shift
  start_server "$name" "$@"
  say "$name on $ADDR"
  "$LOADGEN" "$ADDR" 4 3 0 "$crop" > /dev/null   # warm-up
  for c in 1 8 64; do
    # the 64-client cell's own batches: /metrics before and after it
    if [[ "$name" == luna* && "$c" == 64 ]]; then scrape "$WS/$name.pre64"; fi
    R[$name,$c]="$("$LOADGEN" "$ADDR" "$c" "$SECONDS_MAX" "$WARMUP" "$crop")"
    say "$name, $c clients: ${R[$name,$c]}"
  done
  if [[ "$name" == luna* ]]; then scrape "$WS/$name.metrics"; fi
  stop_server
}
field() { "$PY" -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(v if v is not None else '-')" "$1" "$2"; }
# metric CONFIG NAME: its growth over CONFIG's 64-client cell
metric() { awk -v n="$2" 'FNR==NR && $1==n {a=$2} FNR!=NR && $1==n {b=$2} END {print b-a}' "$WS/$1.pre64" "$WS/$1.metrics"; }

LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A MODEL_LUNA MODEL_PT
for b in 1 8 32 64; do
  steps=$(( b == 1 ? 40 : (b == 8 ? 8 : 3) ))
  MODEL_LUNA[$b]="$("$CARGO_TARGET_DIR/$dir/luna-torch" bench-infer "$b" "$THREADS" "$steps" | sed -n 's/.*: \([0-9.]*\) ms\/crop.*/\1/p')"
  MODEL_PT[$b]="$("$PY" bench/serve_model.py "$THREADS" "$steps" "$b")"
  say "model, batch $b: luna ${MODEL_LUNA[$b]} ms/crop; pytorch ${MODEL_PT[$b]}"
done
serve=("$LUNA" serve --pipeline serve-bench --addr 127.0.0.1:0 --device cpu --threads "$THREADS" --queue 4096)
run_config luna-batch "${serve[@]}" --max-batch 64 --max-wait-ms 10
run_config luna-batch-w25 "${serve[@]}" --max-batch 64 --max-wait-ms 25
run_config luna-nobatch "${serve[@]}" --max-batch 1
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run_config book-flask "$PY" "$ROOT/bench/serve_book.py" "$nodule_dir" "$mal_dir" "$port" "$THREADS"

{
  echo "# Serving benchmark (luna serve, /v1/classify)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $dir build, torch threads $THREADS, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "One 32×48×48 i16 crop per request (raw body + X-Shape), keep-alive connections, closed loop, each cell $SECONDS_MAX s; steady state = requests started after ${WARMUP} s. Client: bench/loadgen (one thread and connection per client) on the same machine."
  echo
  echo "Model cost per crop (one model; a request runs two: nodule and malignancy), eval pass, $THREADS threads:"
  echo
  echo "| batch | luna (ms/crop) | PyTorch NCDHW (ms/crop) | PyTorch channels_last_3d (ms/crop) |"
  echo "|---|---|---|---|"
  for b in 1 8 32 64; do
    echo "| $b | ${MODEL_LUNA[$b]} | $(field "${MODEL_PT[$b]}" ncdhw_ms) | $(field "${MODEL_PT[$b]}" channels_last_ms) |"
  done
  echo
  echo "| server | clients | throughput (req/s) | p50 (ms) | p99 (ms) | steady throughput | steady p50 | steady p99 | steady p99 beyond own batch | steady batch time p50 / p99 | errors |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  for name in luna-batch luna-batch-w25 luna-nobatch book-flask; do
    for c in 1 8 64; do
      r="${R[$name,$c]}"
      echo "| $name | $c | $(field "$r" throughput) | $(field "$r" p50_ms) | $(field "$r" p99_ms) | $(field "$r" steady_throughput) | $(field "$r" steady_p50_ms) | $(field "$r" steady_p99_ms) | $(field "$r" steady_p99_beyond_batch_ms) | $(field "$r" steady_p50_batch_ms) / $(field "$r" steady_p99_batch_ms) | $(field "$r" errors) |"
    done
  done
  echo
  echo "\"Beyond own batch\": a request's latency minus the time of the batch it ran in (the server's \`x-batch-ms\` header): its wait for company, transfer, parsing and the client's own turnaround."
  echo
  n64="$(field "${R[luna-nobatch,64]}" throughput)"; f64="$(field "${R[book-flask,64]}" throughput)"
  for name in luna-batch luna-batch-w25; do
    wait_ms=$([ "$name" = luna-batch ] && echo 10 || echo 25)
    "$PY" - "$name" "$wait_ms" "$(field "${R[$name,64]}" throughput)" "$n64" "$f64" \
      "$(metric "$name" luna_serve_batch_size_count)" "$(metric "$name" luna_serve_batch_size_sum)" \
      "$(metric "$name" luna_serve_batch_seconds_count)" "$(metric "$name" luna_serve_batch_seconds_sum)" \
      "$(field "${R[$name,64]}" p99_ms)" "$(field "${R[$name,64]}" steady_p99_ms)" \
      "$(field "${R[$name,64]}" p99_beyond_batch_ms)" "$(field "${R[$name,64]}" steady_p99_beyond_batch_ms)" \
      "$(field "${R[$name,64]}" steady_p50_batch_ms)" "$(field "${R[$name,64]}" steady_p99_batch_ms)" <<'PY'
import sys
name, w = sys.argv[1], float(sys.argv[2])
b, n, f, bc, bs, tc, ts, p99, sp99, bey, sbey, sb50, sb99 = (float(x) for x in sys.argv[3:])
mean_batch, batch_ms = bs / bc, 1000 * ts / tc
met = lambda v, bound: f"{v:.1f} ms ≤ {bound:.1f}: met" if v <= bound else f"{v:.1f} ms > {bound:.1f}: not met"  # noqa: E731
print(f"- {name} (max_wait {w:g} ms), 64 clients: {b / n:.2f}× the throughput of `--max-batch 1` (target ≥ 4×: {'met' if b / n >= 4 else 'not met'}), {b / f:.2f}× the book's Flask server; "
      f"{bc:.0f} batches, mean {mean_batch:.1f} crops, mean batch time {batch_ms:.1f} ms (steady p50 {sb50:.1f}, p99 {sb99:.1f}). "
      f"p99 within 2 × max_wait + one batch time, read per request (latency beyond the request's own batch ≤ 2 × max_wait = {2 * w:g} ms): "
      f"steady {met(sbey, 2 * w)}, every request {met(bey, 2 * w)}; "
      f"read against the p99 batch time: steady {met(sp99, 2 * w + sb99)}; "
      f"read against the mean batch time: steady {met(sp99, 2 * w + batch_ms)}, every request {met(p99, 2 * w + batch_ms)}.")
PY
  done
} > "$OUT_MD"
cat "$OUT_MD"
