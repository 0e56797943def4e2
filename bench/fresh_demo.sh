#!/usr/bin/env bash
# The README's first command on a fresh machine: `./scripts/demo.sh` in a fresh clone of this
# checkout's HEAD with an empty LUNA_HOME (no venv, no target dir), an empty cargo registry
# cache (a fresh CARGO_HOME) and no pip cache, timed by part (environment, release build,
# pipeline), with cargo's --timings report of the build. Writes bench/results/fresh_demo.md
# (the parts, the venv size, the ten slowest build units, the slowest pipeline stages).
# Run it with nothing else on the machine: it is the number a newcomer waits.
#
#   bench/fresh_demo.sh                  # scratch under /tmp/luna-fresh (removed first)
#   LUNA_FRESH_DIR=/big/disk bench/fresh_demo.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${LUNA_FRESH_DIR:-/tmp/luna-fresh}"
rm -rf "$DIR"
mkdir -p "$DIR/cargo-home"
git clone -q "$ROOT" "$DIR/clone"
rev="$(git -C "$DIR/clone" rev-parse --short HEAD)"
log="$DIR/demo.log"
t0=$(date +%s)
set +e
(cd "$DIR/clone" && env LUNA_HOME="$DIR/home" CARGO_HOME="$DIR/cargo-home" PIP_NO_CACHE_DIR=1 \
  LUNA_TIMINGS=1 PATH="$HOME/.cargo/bin:$PATH" ./scripts/demo.sh) >"$log" 2>&1
rc=$?
set -e
total=$(( $(date +%s) - t0 ))
part() { sed -n "s/^luna: $1 took \([0-9]*\) s$/\1/p" "$log" | tail -1; }
mmss() { [ -n "$1" ] && printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )) || echo "—"; }
venv_size="$(du -sh "$DIR/home/venv" 2>/dev/null | cut -f1)"
timing="$(ls -t "$DIR"/home/target/cargo-timings/cargo-timing-2*.html 2>/dev/null | head -1)"
out="$ROOT/bench/results/fresh_demo.md"
{
  echo "# Fresh-machine demo: \`./scripts/demo.sh\` at $rev"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; empty LUNA_HOME, CARGO_HOME and pip cache; exit $rc."
  echo
  echo "| part | time |"
  echo "|---|---|"
  echo "| environment (venv: $venv_size) | $(mmss "$(part environment)") |"
  echo "| release build | $(mmss "$(part build)") |"
  echo "| demo pipeline | $(mmss "$(part 'demo pipeline')") |"
  echo "| **total** | **$(mmss "$total")** |"
  echo
  if [ -n "$timing" ]; then
    echo "Ten slowest build units (cargo --timings; build scripts' own C/C++ compiles included):"
    echo
    echo '| unit | seconds |'
    echo '|---|---|'
    python3 - "$timing" <<'PY'
import json, re, sys
s = open(sys.argv[1]).read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", s, re.S).group(1))
units.sort(key=lambda u: -u["duration"])
for u in units[:10]:
    t = (" " + u["target"].strip()) if u.get("target", "").strip() else ""
    print(f"| {u['name']} {u['version']}{t} | {u['duration']:.1f} |")
print(f"\n{len(units)} units, {sum(u['duration'] for u in units):.0f} unit-seconds in all.")
PY
  fi
  echo
  echo "Stages of the pipeline (from \`luna run\`'s output):"
  echo
  echo '```'
  grep -E '^ +(RAN|CACHED|FAILED|SKIPPED) \[|Finished \[|^  (CPM|F1|nodules|per-patient)' "$log" | tail -30 || true
  echo '```'
} >"$out"
cat "$out"
exit "$rc"
