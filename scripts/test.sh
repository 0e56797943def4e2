#!/usr/bin/env bash
# Runs the whole test suite (unit, integration and oracle tests against SimpleITK, scipy,
# h5py, pyarrow and torch), plus format and lint checks. Idempotent; installs what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
LUNA_ENV=test source scripts/env.sh
# The HTML report's browser test needs headless Chromium (Debian's package; no download at
# test time). Installed once here when missing.
if ! command -v chromium >/dev/null 2>&1; then
  as_root=""
  [ "$(id -u)" = 0 ] || { sudo -n true 2>/dev/null && as_root="sudo -n"; }
  if { [ "$(id -u)" = 0 ] || [ -n "$as_root" ]; } && command -v apt-get >/dev/null 2>&1; then
    echo "luna: installing chromium for the report's browser test (one time)" >&2
    ($as_root apt-get update -qq && $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >&2
  else
    echo "luna: the report's browser test needs chromium: run \`sudo apt-get install chromium\`" >&2
    exit 2
  fi
fi
# The Slurm executor's tests run on a real single-node cluster on loopback (munged, slurmctld,
# slurmd; slurm-wlm and munge installed once when missing). Exit 3: this machine cannot run
# Slurm. Tests whose infrastructure (Slurm, the S3 server, root) is missing fail when CI is
# set and otherwise print a `SKIPPED` line (tests/it/harness.rs).
slurm_rc=0
scripts/slurm-local.sh start >/dev/null || slurm_rc=$?
case "$slurm_rc" in
  0) ;;
  3) case "${CI:-}" in
       ""|0|false) echo "luna: Slurm cannot run here (reason above): the Slurm tests will print SKIPPED" >&2 ;;
       *) echo "luna: Slurm cannot run here (reason above): CI is set, so the Slurm tests will fail" >&2 ;;
     esac ;;
  *) echo "luna: scripts/slurm-local.sh start failed (exit $slurm_rc)" >&2; exit 2 ;;
esac
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The integration tests run the workspace's binaries (`luna`, `luna-torch`): build them first.
cargo build --workspace --locked
cargo test --workspace --locked -- --test-threads 2
