# Sourced by the benchmarks that time luna on real-preset synthetic CTs (crops.sh,
# seg_dataset.sh): small helpers, the release binary, and the CT data made once.
# Needs scripts/env.sh sourced first (CARGO_TARGET_DIR, LUNA_PYTHON) and ROOT set.

# Settings shared by those benchmarks (environment overrides), and the run's context.
BENCH_DIR="${LUNA_BENCH_DIR:-$HOME/.cache/luna/bench}"
SERIES="${LUNA_BENCH_SERIES:-10}"
SEED="${LUNA_BENCH_SEED:-0}"
RUNS="${LUNA_BENCH_RUNS:-3}"
PY_RUNS="${LUNA_BENCH_PY_RUNS:-1}"
THREADS="${LUNA_BENCH_THREADS:-$(nproc)}"
DATA="$BENCH_DIR/crops-real-s$SEED-n$SERIES"
RESULTS="$ROOT/bench/results"
PY="$LUNA_PYTHON"
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"
DATE_START="$(date -u '+%Y-%m-%d %H:%M UTC')"

say() { echo "bench: $*" >&2; }
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
minimum() { sort -g | head -1; }

# Sets LUNA: $LUNA_BIN (a prebuilt release binary without the torch feature), or a fresh
# release build of `luna` alone (it never links libtorch).
bench_luna() {
  if [ -n "${LUNA_BIN:-}" ]; then
    LUNA="$LUNA_BIN"
  else
    say "building luna (release, no torch feature) into $CARGO_TARGET_DIR"
    cargo build --release --locked -p luna --bin luna >&2
    LUNA="$CARGO_TARGET_DIR/release/luna"
  fi
  [ -x "$LUNA" ] || { say "no binary at $LUNA"; exit 1; }
  if [[ "$(ldd "$LUNA" 2>/dev/null || true)" == *libtorch* ]]; then
    say "warning: $LUNA links libtorch (another build with the torch feature overwrote it?)"
  fi
}

# bench_real_data DIR SEED SERIES: `luna synth --preset real` into DIR once (kept between runs).
bench_real_data() {
  local dir="$1" seed="$2" series="$3"
  if [ ! -f "$dir/.luna-bench-done" ]; then
    say "generating $series real-preset CTs into $dir"
    rm -rf "$dir" "$dir.tmp"
    mkdir -p "$(dirname "$dir")"
    "$LUNA" synth "$dir.tmp" --preset real --seed "$seed" --series "$series" >&2
    mv "$dir.tmp" "$dir"
    touch "$dir/.luna-bench-done"
  fi
}

# Sets BIN: $LUNA_BIN_DIR (a folder with prebuilt release `luna` and `luna-torch`), or a fresh
# release build of both (the benchmarks whose stages run torch in the luna-torch worker).
bench_luna_torch() {
  if [ -n "${LUNA_BIN_DIR:-}" ]; then
    BIN="$LUNA_BIN_DIR"
  else
    say "building luna + luna-torch (release) into $CARGO_TARGET_DIR"
    cargo build --release --locked -p luna -p luna-torch >&2
    BIN="$CARGO_TARGET_DIR/release"
  fi
  [ -x "$BIN/luna" ] && [ -x "$BIN/luna-torch" ] || { say "no luna + luna-torch in $BIN"; exit 1; }
}

# Sets REAL: the project's read-only real data (shared/real), beside the checkout or beside one
# of its parent folders (as the tests look for it).
bench_real_dir() {
  local a
  REAL=""
  for a in "$ROOT/.." "$ROOT/../.." "$ROOT/../../.."; do
    if [ -f "$a/shared/real/README.md" ]; then REAL="$(cd "$a/shared/real" && pwd)"; return; fi
  done
  say "no real data (shared/real) beside $ROOT or its parents"; exit 1
}
