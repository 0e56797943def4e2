#!/usr/bin/env bash
# Issue 11 benchmark: `luna cache push` / `pull` of crop artifacts vs `dvc push` / `dvc pull`
# of the same files vs a plain recursive copy (AWS CLI and rclone), side by side in one run,
# each against a fresh moto S3 server on loopback (the server the tests use), plus a no-op push
# of a 100-stage pipeline; then the same against s3s-fs, a fast S3 server in Rust, where the
# clients' own costs show (LUNA_BENCH_SERVERS="moto" for moto only). Prints markdown tables
# and writes them to bench/results/remote.md.
#
#   bench/remote.sh                          # 10 real-preset CTs, 3 crop sizes (≈ 2.3 GB)
#   LUNA_BIN=/path/to/luna bench/remote.sh   # skip the build, time this binary
#
# Steps: (1) release build of `luna`; dvc[s3] and awscli into $LUNA_HOME/bench-venv (not the
# test venv), rclone from Debian; (2) `luna synth --preset real` (made once, shared with
# bench/crops.sh), then `luna run` of a pipeline with three build_crops stages (32×48×48,
# 32×96×96, 48×64×64) over it: the artifacts; (3) per tool, a fresh moto server with an
# empty bucket: upload the files, then download them into an empty place, each timed (wall
# clock, page cache warm). DVC, the AWS CLI and rclone move the stage objects' crops/*.h5
# files (hard links to the partitions' files, so the same bytes luna sends once); luna
# moves the pipeline's objects (stages, partitions, tables) with `cache push` / `cache pull`
# (blake3 verified on the way in). DVC's `dvc add` (hashing, filling its cache) is not timed.
# Every tool runs with its default concurrency and part sizes (luna 4 files, one PUT per file
# up to 200 MiB, else 4 parts of 16 MiB in flight; dvc 4×cores; AWS CLI 10 requests of 8 MiB
# parts; rclone 4 transfers, one PUT per file up to 200 MiB). Everything but the CT data is
# deleted afterwards.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
# shellcheck source=common.sh
source bench/common.sh
OUT_MD="$RESULTS/remote.md"
WORK="$BENCH_DIR/remote"
BVENV="$LUNA_HOME/bench-venv"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1

# ---------------------------------------------------------------------------- 1. tools
bench_luna
if [ ! -x "$BVENV/bin/dvc" ] || [ ! -x "$BVENV/bin/aws" ]; then
  say "installing dvc[s3] and awscli into $BVENV"
  [ -x "$BVENV/bin/python" ] || python3 -m venv "$BVENV"
  "$BVENV/bin/pip" install -q "dvc[s3]" awscli
fi
if ! command -v rclone >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    say "installing rclone (Debian)"
    apt-get install -y -q rclone >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q rclone >/dev/null; }
  fi
fi
# s3s-fs (crates.io): an S3 server in Rust over a local folder, far faster than moto, so the
# clients' own costs show; pinned to the last release that builds with our toolchain
S3S="$LUNA_HOME/s3s/bin/s3s-fs"
if [ ! -x "$S3S" ]; then
  say "installing s3s-fs 0.14.1 into $LUNA_HOME/s3s"
  cargo install -q s3s-fs@0.14.1 --features binary --locked --root "$LUNA_HOME/s3s" >&2 || say "s3s-fs did not build; moto only"
fi
SERVERS="${LUNA_BENCH_SERVERS:-moto s3s-fs}"
[ -x "$S3S" ] || SERVERS="moto"
DVC="$BVENV/bin/dvc"
AWS="$BVENV/bin/aws"
DVC_V="$("$DVC" --version)"
AWS_V="$("$AWS" --version 2>&1 | cut -d' ' -f1)"
RCLONE_V="$(command -v rclone >/dev/null && rclone version | head -1 || echo none)"
MOTO_V="$("$PY" -c 'import moto; print(moto.__version__)')"

PORT=""
MOTO_PID=""
SERVER=moto
# a fresh server (moto, or s3s-fs over an empty folder) with an empty bucket `bench`
moto_start() {
  moto_stop
  sync   # what the previous tool wrote is flushed before the next one is timed
  PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  if [ "$SERVER" = moto ]; then
    "$PY" -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  else
    rm -rf "$WORK/s3s-root"; mkdir -p "$WORK/s3s-root"
    "$S3S" --host 127.0.0.1 --port "$PORT" --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3s-root" >"$WORK/moto.log" 2>&1 &
  fi
  MOTO_PID=$!
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
  "$AWS" --endpoint-url "http://127.0.0.1:$PORT" s3 mb s3://bench >/dev/null
}
moto_stop() {
  if [ -n "$MOTO_PID" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=""; fi
  rm -rf "$WORK/s3s-root"
}
trap moto_stop EXIT
timed() { local t0 t1; t0=$(now); "$@" >"$WORK/last.log" 2>&1 || { cat "$WORK/last.log" >&2; exit 1; }; t1=$(now); echo "$t1 - $t0" | bc -l; }

# ---------------------------------------------------------------------------- 2. data
bench_real_data "$DATA" "$SEED" "$SERIES"
rm -rf "$WORK"; mkdir -p "$WORK/ws/pipelines"
WS="$WORK/ws"
cat >"$WS/pipelines/crops.yaml" <<EOF
pipeline: crops
stages:
  annotations: { uses: load_annotations, with: { annotations: $DATA/annotations_with_malignancy.csv, candidates: $DATA/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { ct_root: $DATA } }
  crops: { uses: build_crops, needs: [candidates], with: { ct_root: $DATA } }
  crops_wide: { uses: build_crops, needs: [candidates], with: { ct_root: $DATA, width_irc: [32, 96, 96] } }
  crops_deep: { uses: build_crops, needs: [candidates], with: { ct_root: $DATA, width_irc: [48, 64, 64] } }
EOF
say "building the crop artifacts"
(cd "$WS" && "$LUNA" run crops >/dev/null 2>"$WORK/run.log") || { cat "$WORK/run.log" >&2; exit 1; }
# the files DVC and the copy tools move: every stage object's crops/*.h5 (links, no copy)
FILES="$WORK/files"
for s in crops crops_wide crops_deep; do
  mkdir -p "$FILES/$s"
  ln "$(cd "$WS" && "$LUNA" path crops "$s")"/crops/*.h5 "$FILES/$s/"
done
BYTES="$(du -sbL "$FILES" | cut -f1)"
NFILES="$(find "$FILES" -type f | wc -l)"
LUNA_BYTES="$(du -sb "$WS/cache/objects" | cut -f1)"   # du counts hard-linked files once
GB="$(echo "$BYTES / 1000000000" | bc -l)"
say "$NFILES files, $(printf %.2f "$GB") GB; luna's objects: $LUNA_BYTES bytes"
cat "$FILES"/*/* >/dev/null 2>&1 || true
# the artifacts were just written: flush them now, or their writeback slows whichever tool runs first
sync

# ---------------------------------------------------------------------------- 3. timings
remote_toml() { printf '[remotes.bench]\nurl = "s3://bench/luna"\nendpoint = "http://127.0.0.1:%s"\n' "$PORT" >"$1/luna.toml"; }
declare -A T
# time_tools: every tool against $SERVER; seconds into T[$SERVER,tool-direction]
time_tools() {
  # luna
  moto_start; remote_toml "$WS"
  LUNA_PUSH="$(cd "$WS" && timed "$LUNA" cache push crops)"
  LUNA_PUSH_LINE="$(head -1 "$WORK/last.log")"
  LUNA_NOOP="$(cd "$WS" && timed "$LUNA" cache push crops)"
  LUNA_PULL="$(cd "$WS" && timed "$LUNA" cache pull crops --cache-dir "$WORK/pulled")"
  (cd "$WS" && "$LUNA" cache verify --cache-dir "$WORK/pulled" >"$WORK/verify.log") || { cat "$WORK/verify.log" >&2; exit 1; }
  (cd "$WS" && "$LUNA" status crops --cache-dir "$WORK/pulled" | grep -q "everything is up to date") || { say "pulled cache is not complete"; exit 1; }
  rm -rf "$WORK/pulled"
  say "luna push $LUNA_PUSH s, no-op $LUNA_NOOP s, pull $LUNA_PULL s"

  # dvc (not against s3s-fs: it answers DVC's probes of a folder's key with 500 "Is a directory")
  DVC_PUSH=""; DVC_PULL=""
  if [ "$SERVER" = moto ]; then
    moto_start
    DV="$WORK/dvc"; mkdir -p "$DV"; cp -r "$FILES" "$DV/data" && sync   # a real copy: dvc must not touch the cache's inodes
    (cd "$DV" && "$DVC" init -q --no-scm && "$DVC" config core.analytics false && "$DVC" remote add -q -d m s3://bench/dvc \
      && "$DVC" remote modify m endpointurl "http://127.0.0.1:$PORT" && "$DVC" add -q data) >"$WORK/dvc.log" 2>&1 || { cat "$WORK/dvc.log" >&2; exit 1; }
    DVC_PUSH="$(cd "$DV" && timed "$DVC" push -q)"
    rm -rf "$DV/.dvc/cache" "$DV/data"
    DVC_PULL="$(cd "$DV" && timed "$DVC" pull -q)"
    [ "$(du -sbL "$DV/data" | cut -f1)" = "$BYTES" ] || { say "dvc pull is incomplete"; exit 1; }
    rm -rf "$DV"
    say "dvc push $DVC_PUSH s, pull $DVC_PULL s"
  fi

  # AWS CLI
  moto_start
  EP=(--endpoint-url "http://127.0.0.1:$PORT")
  AWS_PUSH="$(timed "$AWS" "${EP[@]}" s3 cp --recursive --only-show-errors "$FILES" s3://bench/plain)"
  AWS_PULL="$(timed "$AWS" "${EP[@]}" s3 cp --recursive --only-show-errors s3://bench/plain "$WORK/aws")"
  [ "$(du -sb "$WORK/aws" | cut -f1)" = "$BYTES" ] || { say "aws download is incomplete"; exit 1; }
  rm -rf "$WORK/aws"
  say "aws push $AWS_PUSH s, pull $AWS_PULL s"

  # rclone
  RC_PUSH=""; RC_PULL=""
  if command -v rclone >/dev/null; then
    moto_start
    export RCLONE_CONFIG_M_TYPE=s3 RCLONE_CONFIG_M_PROVIDER=Other RCLONE_CONFIG_M_ENDPOINT="http://127.0.0.1:$PORT" \
      RCLONE_CONFIG_M_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_M_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"
    # Debian's rclone cannot use AWS_CA_BUNDLE (set on some machines) with its HTTP transport;
    # the loopback server is plain http, so no CA is needed
    RC_PUSH="$(timed env -u AWS_CA_BUNDLE rclone copy "$FILES" m:bench/rclone)"
    RC_PULL="$(timed env -u AWS_CA_BUNDLE rclone copy m:bench/rclone "$WORK/rclone")"
    [ "$(du -sb "$WORK/rclone" | cut -f1)" = "$BYTES" ] || { say "rclone download is incomplete"; exit 1; }
    rm -rf "$WORK/rclone"
    say "rclone push $RC_PUSH s, pull $RC_PULL s"
  fi

  T[$SERVER,luna-push]=$LUNA_PUSH; T[$SERVER,luna-pull]=$LUNA_PULL; T[$SERVER,luna-noop]=$LUNA_NOOP; T[$SERVER,luna-line]=$LUNA_PUSH_LINE
  T[$SERVER,dvc-push]=$DVC_PUSH; T[$SERVER,dvc-pull]=$DVC_PULL; T[$SERVER,aws-push]=$AWS_PUSH; T[$SERVER,aws-pull]=$AWS_PULL
  T[$SERVER,rclone-push]=$RC_PUSH; T[$SERVER,rclone-pull]=$RC_PULL
}
for SERVER in $SERVERS; do say "server: $SERVER"; time_tools; done
SERVER=moto

# no-op push of a 100-stage pipeline
moto_start
W100="$WORK/ws100"; mkdir -p "$W100/pipelines"
{ echo "pipeline: hundred"; echo "stages:"; for i in $(seq 100); do printf '  s%03d: { uses: command, with: { run: "echo %d > $LUNA_OUT/out.txt" } }\n' "$i" "$i"; done; } >"$W100/pipelines/hundred.yaml"
(cd "$W100" && "$LUNA" run hundred >/dev/null 2>&1 && remote_toml "$W100" && "$LUNA" cache push hundred >/dev/null)
noop=()
for _ in 1 2 3; do noop+=("$(cd "$W100" && timed "$LUNA" cache push hundred)"); done
NOOP100="$(printf '%s\n' "${noop[@]}" | median)"
grep -q "pushed 0 objects" "$WORK/last.log" || { say "the 100-stage push was not a no-op"; cat "$WORK/last.log" >&2; exit 1; }
moto_stop
say "no-op push of 100 stages: $NOOP100 s"

# ---------------------------------------------------------------------------- 4. table
mbs() { echo "$BYTES / $1 / 1000000" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
verdict() { if (( $(echo "$1" | bc -l) )); then echo "met"; else echo "**missed**"; fi; }
# server_table SERVER: the table and the targets of one server's timings
server_table() {
  local sv="$1" lp="${T[$1,luna-push]}" ll="${T[$1,luna-pull]}" dp="${T[$1,dvc-push]}" dl="${T[$1,dvc-pull]}"
  local bp="${T[$1,aws-push]}" bl="${T[$1,aws-pull]}" bpt="AWS CLI" blt="AWS CLI" rp="${T[$1,rclone-push]}" rl="${T[$1,rclone-pull]}"
  if [ -n "$rp" ] && (( $(echo "$rp < $bp" | bc -l) )); then bp="$rp"; bpt=rclone; fi
  if [ -n "$rl" ] && (( $(echo "$rl < $bl" | bc -l) )); then bl="$rl"; blt=rclone; fi
  row() { printf '| %s | %.2f | %s | %.2f | %s | %s× | %s× |\n' "$1" "$2" "$(mbs "$2")" "$3" "$(mbs "$3")" "$(ratio "$2" "$lp")" "$(ratio "$3" "$ll")"; }
  if [ "$sv" = moto ]; then echo "## Server: moto $MOTO_V (Python; the tests' server)"; else echo "## Server: s3s-fs 0.14.1 (Rust, over a local folder)"; fi
  echo
  echo "| tool | upload s | MB/s | download s | MB/s | upload vs luna | download vs luna |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  row "**luna cache push / pull** (blake3-verified pull)" "$lp" "$ll"
  if [ -n "$dp" ]; then row "dvc push / dvc pull" "$dp" "$dl"; else echo "| dvc push / dvc pull | fails: s3s-fs answers 500 to its folder probes | | | | | |"; fi
  row "aws s3 cp --recursive (plain copy)" "${T[$sv,aws-push]}" "${T[$sv,aws-pull]}"
  if [ -n "$rp" ]; then row "rclone copy (plain copy)" "$rp" "$rl"; fi
  echo
  if [ -n "$dp" ]; then echo "Targets: luna ≥ 2× faster than DVC — push $(ratio "$dp" "$lp")× ($(verdict "$dp >= 2 * $lp")), pull $(ratio "$dl" "$ll")× ($(verdict "$dl >= 2 * $ll"));"; fi
  echo "luna within 1.3× of the fastest plain copy — push $(ratio "$lp" "$bp")× of $bpt ($(verdict "$lp <= 1.3 * $bp")), pull $(ratio "$ll" "$bl")× of $blt ($(verdict "$ll <= 1.3 * $bl"))."
  echo "No-op push of the crops pipeline: $(printf %.3f "${T[$sv,luna-noop]}") s. luna's push said: \`${T[$sv,luna-line]}\`"
  echo
}
{
  echo "# Cache remote benchmark (issue 11)"
  echo
  echo "Run $DATE_START on $(nproc) cores, load before: $LOAD_START, after: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Data: the crops of \`luna synth --preset real --seed $SEED --series $SERIES\` at three crop sizes (32×48×48, 32×96×96, 48×64×64): $NFILES HDF5 files, $(printf %.2f "$GB") GB (luna's objects, stage + partitions + tables, hard links counted once: $(echo "$LUNA_BYTES / 1000000000" | bc -l | xargs printf %.2f) GB)."
  echo "Each server on 127.0.0.1, a fresh one (empty bucket) per tool, on the same 2 cores as the client. Tools: luna (release), $DVC_V (dvc), $AWS_V, $RCLONE_V; default concurrency each. MB/s = data GB above / seconds."
  echo
  for sv in $SERVERS; do server_table "$sv"; done
  echo "No-op push (everything already there) of a 100-stage pipeline (moto): $(printf %.3f "$NOOP100") s (median of 3; target ≤ 1 s: $(verdict "$NOOP100 <= 1"))."
} | tee "$OUT_MD"
rm -rf "$WORK"
