#!/usr/bin/env bash
# Runs the demo pipeline end to end on luna's embedded synthetic LUNA dataset.
# Idempotent: installs what it needs, builds luna (release), then `luna run demo`;
# a second run is entirely cached.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
t0=$(date +%s)
cargo build --release --locked --bin luna
t1=$(date +%s)
echo "luna: build took $((t1 - t0)) s" >&2
"$CARGO_TARGET_DIR/release/luna" run demo "$@"
t2=$(date +%s)
echo "luna: demo pipeline took $((t2 - t1)) s" >&2
