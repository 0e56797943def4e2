#!/usr/bin/env bash
# Runs the demo pipeline (pipelines/demo.yaml) end to end on luna's embedded synthetic
# LUNA16-format dataset. Idempotent: installs what it needs, builds luna (release), then
# `luna run demo`; a second run is entirely cached. Extra arguments go to `luna run`.
# LUNA_TIMINGS=1 adds cargo's --timings report of the build.
set -euo pipefail
cd "$(dirname "$0")/.."
t_env=$(date +%s)
source scripts/env.sh
t0=$(date +%s)
echo "luna: environment took $((t0 - t_env)) s" >&2
# One build of the workspace: `luna` (no libtorch, starts in milliseconds) and the
# `luna-torch` worker, with one feature resolution, so nothing compiles twice.
cargo build --release --locked ${LUNA_TIMINGS:+--timings}
t1=$(date +%s)
echo "luna: build took $((t1 - t0)) s" >&2
"$CARGO_TARGET_DIR/release/luna" run demo "$@"
t2=$(date +%s)
echo "luna: demo pipeline took $((t2 - t1)) s" >&2
echo "luna: results: $CARGO_TARGET_DIR/release/luna status demo | luna path demo evaluate_nodule" >&2
