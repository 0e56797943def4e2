#!/usr/bin/env bash
# Issue 12 benchmark: what the Slurm executor costs over the local one, on the single-node
# cluster of scripts/slurm-local.sh. Prints a markdown table and writes bench/results/slurm.md.
#
#   bench/slurm.sh                        # release build of luna, then both workloads
#   LUNA_BIN=/path/to/luna bench/slurm.sh # benchmark that binary (no build)
#   LUNA_BENCH_RUNS=3 LUNA_BENCH_CTS=40 bench/slurm.sh
#
# Workloads, each run fresh (empty cache) locally and with --executor slurm, side by side:
# (1) a chain of 50 trivial `command` stages (each needs the previous one, so every job waits
#     for the one before: the worst case for per-stage latency); (2) `build_crops` over 40
#     tiny synthetic CTs (the stage's time from the run record; Slurm: a 4-task array, 1 CPU
#     each, on the node's CPUs). Slurm's own latency is measured alongside: 50 trivial jobs
#     submitted one after the other, each polled with `squeue` every 50 ms until it
#     completed. The driver's overhead per stage is (slurm run − that baseline) / 50.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh

# shellcheck source=common.sh
source bench/common.sh
SLURM_BENCH="$BENCH_DIR/slurm"
CTS="${LUNA_BENCH_CTS:-40}"
STAGES=50
OUT_MD="$RESULTS/slurm.md"

bench_luna
eval "$(scripts/slurm-local.sh start)"
mkdir -p "$SLURM_BENCH" "$RESULTS"

# ---------------------------------------------------------------- workspaces
chain_ws="$SLURM_BENCH/chain"
rm -rf "$chain_ws"; mkdir -p "$chain_ws/pipelines"
{
  echo "pipeline: chain"
  echo "stages:"
  for i in $(seq 1 $STAGES); do
    if [ "$i" = 1 ]; then needs=""; else needs=", needs: [s$((i - 1))]"; fi
    echo "  s$i: { uses: command$needs, with: { run: \"echo $i > \$LUNA_OUT/o\", outputs: [o] } }"
  done
} > "$chain_ws/pipelines/chain.yaml"
crops_ws="$SLURM_BENCH/crops"
rm -rf "$crops_ws"; mkdir -p "$crops_ws/pipelines"
"$LUNA" synth "$crops_ws/ext" --preset tiny --seed 0 --series "$CTS" >/dev/null
cat > "$crops_ws/pipelines/crops.yaml" <<YAML
pipeline: crops
stages:
  annotations: { uses: load_annotations, with: { annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv } }
  candidates: { uses: merge_candidates, needs: [annotations], with: { val_stride: 2, ct_root: ext } }
  crops: { uses: build_crops, needs: [candidates], with: { ct_root: ext }, resources: { cpus: 1 } }
YAML
for ws in "$chain_ws" "$crops_ws"; do
  printf '[executor.slurm]\narray_tasks = 4\npoll_ms = 200\n' > "$ws/luna.toml"
done

# run WS PIPELINE [ARGS]: a fresh run; prints its wall seconds
run() {
  local ws="$1" p="$2"; shift 2
  rm -rf "$ws/cache" "$ws/runs" "$ws/.luna"
  local t0 t1
  t0=$(now)
  (cd "$ws" && "$LUNA" run "$p" "$@" >/dev/null 2>&1) || { say "luna run $p $* failed"; exit 1; }
  t1=$(now)
  echo "$t1 - $t0" | bc -l
}
# stage_secs WS STAGE: the stage's duration in the last run record
stage_secs() {
  python3 -c "import json,glob,sys; r=json.load(open(sorted(glob.glob(sys.argv[1]+'/runs/*/run.json'))[-1])); print([s['duration_s'] for s in r['stages'] if s['stage']==sys.argv[2]][0])" "$1" "$2"
}
# one trivial job, submitted and polled to completion: seconds
slurm_job() {
  local t0 id st
  t0=$(now)
  id=$(sbatch --parsable --output=/dev/null --wrap true)
  while :; do
    st=$(squeue -h -t all -j "$id" -o %T 2>/dev/null || true)
    [ "$st" = COMPLETED ] && break
    sleep 0.05
  done
  echo "$(now) - $t0" | bc -l
}

declare -A T
for r in $(seq 1 "$RUNS"); do
  say "run $r/$RUNS: chain of $STAGES local"
  T[chain_local]+="$(run "$chain_ws" chain) "
  say "run $r/$RUNS: chain of $STAGES slurm"
  T[chain_slurm]+="$(run "$chain_ws" chain --executor slurm) "
  say "run $r/$RUNS: $STAGES sequential trivial sbatch jobs"
  s=0; for _ in $(seq 1 $STAGES); do s=$(echo "$s + $(slurm_job)" | bc -l); done
  T[chain_sbatch]+="$s "
  say "run $r/$RUNS: build_crops over $CTS CTs local"
  run "$crops_ws" crops >/dev/null; T[crops_local]+="$(stage_secs "$crops_ws" crops) "
  say "run $r/$RUNS: build_crops over $CTS CTs slurm"
  run "$crops_ws" crops --executor slurm >/dev/null; T[crops_slurm]+="$(stage_secs "$crops_ws" crops) "
  T[crops_sbatch]+="$(slurm_job) "
done
med() { echo "${T[$1]}" | tr ' ' '\n' | grep -v '^$' | median; }
f() { printf '%.2f' "$1"; }
cl=$(med chain_local); cs=$(med chain_slurm); cb=$(med chain_sbatch)
kl=$(med crops_local); ks=$(med crops_slurm); kb=$(med crops_sbatch)
per_stage=$(echo "($cs - $cb) / $STAGES" | bc -l)
crops_over=$(echo "$ks - $kl" | bc -l)

table="$(cat <<MD
# Slurm executor overhead (bench/slurm.sh)

$DATE_START, $(nproc) CPUs, load at start $LOAD_START, $RUNS runs (medians), binary \`$LUNA\`,
single-node Slurm $(sinfo -V | awk '{print $2}') from scripts/slurm-local.sh (poll_ms = 200, array_tasks = 4).

| workload | local | slurm | Slurm's own latency (trivial jobs, squeue polled every 50 ms) | driver overhead |
|---|---|---|---|---|
| chain of $STAGES trivial \`command\` stages (wall s) | $(f "$cl") | $(f "$cs") | $(f "$cb") ($STAGES jobs, one after the other) | $(f "$per_stage") s per stage |
| \`build_crops\` over $CTS tiny CTs (stage s) | $(f "$kl") | $(f "$ks") | $(f "$kb") (one job) | $(f "$crops_over") s over local for the stage |

Raw seconds: chain local [${T[chain_local]}], slurm [${T[chain_slurm]}], sbatch chain [${T[chain_sbatch]}];
crops local [${T[crops_local]}], slurm [${T[crops_slurm]}].
MD
)"
echo "$table"
echo "$table" > "$OUT_MD"
