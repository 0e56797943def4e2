#!/usr/bin/env bash
# Serving benchmark (issue #13): throughput and p50/p99 latency of `luna serve`'s
# /v1/classify, one 32x48x48 crop per request, from 1, 8 and 64 concurrent loopback clients,
# with batching on (--max-batch 64 --max-wait-ms 10) vs off (--max-batch 1), side by side with
# the book's approach (bench/serve_book.py: Flask around the same weights in PyTorch, one crop
# per forward, both models as luna computes both). Writes bench/results/serve.md.
# Bounded: each cell stops after LUNA_BENCH_REQUESTS requests (default 600) or
# LUNA_BENCH_SECONDS seconds (default 20), whichever first. Client: bench/serve_load.py.
# Release binaries by default (LUNA_BENCH_DEBUG=1: the dev build). The machine's load shows in
# the numbers: the client, the server and its worker share the CPUs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
PY="${LUNA_PYTHON:-$HOME/.cache/luna/venv/bin/python}"
REQUESTS="${LUNA_BENCH_REQUESTS:-600}"
SECONDS_MAX="${LUNA_BENCH_SECONDS:-20}"
THREADS="${LUNA_BENCH_THREADS:-2}"
WS="${LUNA_BENCH_DIR:-$HOME/.cache/luna/bench}/serve-ws"
OUT_MD="bench/results/serve.md"
say() { echo "bench: $*" >&2; }
if [ "${LUNA_BENCH_DEBUG:-0}" = 1 ]; then prof=(); dir=debug; else prof=(--release); dir=release; fi
cargo build "${prof[@]}" --locked -p luna -p luna-torch >&2
LUNA="$CARGO_TARGET_DIR/$dir/luna"

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
  "$PY" bench/serve_load.py "$ADDR" 4 40 30 "$crop" > /dev/null   # warm-up
  for c in 1 8 64; do
    # the 64-client cell's own batches: /metrics before and after it
    if [[ "$name" == luna* && "$c" == 64 ]]; then scrape "$WS/$name.pre64"; fi
    R[$name,$c]="$("$PY" bench/serve_load.py "$ADDR" "$c" "$REQUESTS" "$SECONDS_MAX" "$crop")"
    say "$name, $c clients: ${R[$name,$c]}"
  done
  if [[ "$name" == luna* ]]; then scrape "$WS/$name.metrics"; fi
  stop_server
}
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
run_config luna-batch "$LUNA" serve --pipeline serve-bench --addr 127.0.0.1:0 --device cpu --threads "$THREADS" --max-batch 64 --max-wait-ms 10 --queue 4096
run_config luna-nobatch "$LUNA" serve --pipeline serve-bench --addr 127.0.0.1:0 --device cpu --threads "$THREADS" --max-batch 1 --queue 4096
port="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
run_config book-flask "$PY" "$ROOT/bench/serve_book.py" "$nodule_dir" "$mal_dir" "$port" "$THREADS"

field() { "$PY" -c "import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print(v if v is not None else '-')" "$1" "$2"; }
# metric NAME SERIES: its growth over the 64-client cell
metric() { awk -v n="$2" 'FNR==NR && $1==n {a=$2} FNR!=NR && $1==n {b=$2} END {print b-a}' "$WS/$1.pre64" "$WS/$1.metrics"; }
{
  echo "# Serving benchmark (luna serve, /v1/classify)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $dir build, torch threads $THREADS, load average $LOAD_START at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
  echo "One 32×48×48 i16 crop per request (raw body + X-Shape), keep-alive connections, each cell bounded by $REQUESTS requests or $SECONDS_MAX s. Client: bench/serve_load.py (threads) on the same machine."
  echo
  echo "| server | clients | throughput (req/s) | p50 (ms) | p99 (ms) | errors |"
  echo "|---|---|---|---|---|---|"
  for name in luna-batch luna-nobatch book-flask; do
    for c in 1 8 64; do
      r="${R[$name,$c]}"
      echo "| $name | $c | $(field "$r" throughput) | $(field "$r" p50_ms) | $(field "$r" p99_ms) | $(field "$r" errors) |"
    done
  done
  echo
  b64="$(field "${R[luna-batch,64]}" throughput)"; n64="$(field "${R[luna-nobatch,64]}" throughput)"; f64="$(field "${R[book-flask,64]}" throughput)"
  bc="$(metric luna-batch luna_serve_batch_size_count)"; bs="$(metric luna-batch luna_serve_batch_size_sum)"
  tc="$(metric luna-batch luna_serve_batch_seconds_count)"; ts="$(metric luna-batch luna_serve_batch_seconds_sum)"
  "$PY" - "$b64" "$n64" "$f64" "$bc" "$bs" "$tc" "$ts" "$(field "${R[luna-batch,64]}" p99_ms)" <<'PY'
import sys
b, n, f, bc, bs, tc, ts, p99 = (float(x) for x in sys.argv[1:])
mean_batch, batch_ms = bs / bc, 1000 * ts / tc
bound = 2 * 10 + batch_ms
print(f"- 64 clients: batching on / `--max-batch 1` = **{b / n:.2f}×** (target ≥ 4×); batching on / book Flask = {b / f:.2f}×.")
print(f"- batching on, 64 clients: {bc:.0f} batches, mean {mean_batch:.1f} crops per batch, mean batch time {batch_ms:.1f} ms.")
print(f"- p99 at 64 clients with batching {p99:.1f} ms vs the target 2 × max_wait (10 ms) + one batch ({batch_ms:.1f} ms) = {bound:.1f} ms: {'met' if p99 <= bound else 'not met'}.")
PY
} > "$OUT_MD"
cat "$OUT_MD"
