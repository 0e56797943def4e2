#!/usr/bin/env bash
# The LUNA16 template end to end (issue 26): `luna synth --layout luna16` (10 subsets of tiny
# CTs), `luna run luna16` (10 folds: merge, crops, nodule + malignancy training, test-fold
# evaluation, pooled FROC and malignancy), then `luna status luna16` (must be all fresh) and
# the pooled CPM of `evaluate_froc` against `luna froc` on the 10 folds' submissions
# concatenated (built here from each fold's predictions.parquet and candidates.parquet with
# pyarrow). Writes bench/results/luna16_template.md: wall time, per-family stage seconds and
# artifact sizes. Release binaries by default (LUNA_BENCH_DEBUG=1: the dev build);
# LUNA_BENCH_SERIES sets the CT count (default 20, two per subset).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=../scripts/env.sh
source scripts/env.sh
# shellcheck source=common.sh
source bench/common.sh
N="${LUNA_BENCH_SERIES:-20}"
WS="$BENCH_DIR/luna16-template-ws"
OUT_MD="$RESULTS/luna16_template.md"
if [ "${LUNA_BENCH_DEBUG:-0}" = 1 ]; then prof=(); dir=debug; else prof=(--release); dir=release; fi
cargo build "${prof[@]}" --locked -p luna -p luna-torch >&2
L="$CARGO_TARGET_DIR/$dir/luna"

rm -rf "$WS"; mkdir -p "$WS/pipelines"
cp pipelines/luna16.yaml "$WS/pipelines/"
cd "$WS"
"$L" synth data/luna16 --preset tiny --layout luna16 --series "$N" >&2
t0="$(now)"
"$L" run luna16 >run.log 2>&1 || { tail -30 run.log >&2; exit 1; }
wall="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
"$L" status luna16 >status.log 2>&1
fresh="$(tail -1 status.log)"
args=()
for k in 0 1 2 3 4 5 6 7 8 9; do
  args+=("$("$L" path luna16 "evaluate_$k")" "$("$L" path luna16 "candidates_$k")")
done
"$PY" - "${args[@]}" <<'PY'
import csv, sys, pyarrow.parquet as pq
a = sys.argv[1:]; rows = []; uids = []
for e, c in zip(a[0::2], a[1::2]):
    cand = {r["candidate_id"]: r for r in pq.read_table(c + "/candidates.parquet").to_pylist()}
    uids += sorted({r["series_uid"] for r in cand.values() if r["split"] == "test"})
    for r in pq.read_table(e + "/predictions.parquet").to_pylist():
        x = cand[r["candidate_id"]]
        rows.append((r["series_uid"], x["coord_x"], x["coord_y"], x["coord_z"], r["probability"]))
with open("concat.csv", "w", newline="") as f:
    w = csv.writer(f); w.writerow(["seriesuid", "coordX", "coordY", "coordZ", "probability"]); w.writerows(rows)
open("uids.csv", "w").write("\n".join(uids) + "\n")
PY
E=data/luna16/evaluationScript/annotations
"$L" froc concat.csv --annotations "$E/annotations.csv" --excluded "$E/annotations_excluded.csv" \
  --seriesuids uids.csv --out froc-concat >&2
"$PY" - "$wall" "$fresh" "$N" "$dir" "$("$L" path luna16 froc)" <<'PY' >"$OUT_MD"
import collections, glob, json, os, sys, time
wall, fresh, n, build, froc = sys.argv[1:6]
run = json.load(open(sorted(glob.glob("runs/*/run.json"))[-1]))
fam = lambda s: s.rsplit("_", 1)[0] if s.rsplit("_", 1)[-1].isdigit() else s
secs, count, size = collections.defaultdict(float), collections.Counter(), collections.defaultdict(int)
for s in run["stages"]:
    f = fam(s["stage"]); secs[f] += s["duration_s"]; count[f] += 1
    d = f"cache/objects/{s['key'][:2]}/{s['key']}"
    size[f] += sum(os.path.getsize(os.path.join(r, x)) for r, _, xs in os.walk(d) for x in xs)
pooled, concat = json.load(open(froc + "/froc.json")), json.load(open("froc-concat/froc.json"))
print("# The LUNA16 template on `synth --layout luna16` (issue 26)\n")
print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {os.cpu_count()} CPUs, {build} luna, "
      f"{n} tiny CTs in subset0…9. `bench/luna16_template.sh`.\n")
print(f"- `luna run luna16`: **{wall} s** wall, {len(run['stages'])} stages, success {run['success']}")
print(f"- `luna status luna16` afterwards: {fresh}")
print(f"- pooled CPM (`evaluate_froc`, 10 inputs): {pooled['cpm']:.6f}; `luna froc` on the concatenated "
      f"per-fold submissions: {concat['cpm']:.6f}; equal: {pooled['cpm'] == concat['cpm'] and pooled['sensitivities'] == concat['sensitivities']}")
print(f"- pooled sensitivities at 1/8…8 FPs/scan: {' '.join(f'{x:.3f}' for x in pooled['sensitivities'])}\n")
print("| stages | count | stage seconds (sum) | artifact MB (sum; per-CT partitions shared across folds) |\n|---|---|---|---|")
for f in secs:
    print(f"| {f} | {count[f]} | {secs[f]:.1f} | {size[f] / 1e6:.2f} |")
PY
cat "$OUT_MD"
