#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and oracle tests against SimpleITK, scipy,
# h5py, pyarrow and torch), plus format and lint checks. Idempotent; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests run the workspace's binaries (`luna`, `luna-torch`): build them first.
cargo build --workspace --locked
cargo test --workspace --locked -- --test-threads 2
