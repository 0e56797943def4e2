//! Golden test: a small pipeline's cache keys and artifact bytes are what they were.
//!
//! The pipeline runs every non-torch kind on the tiny synthetic set (synth, load_annotations,
//! merge_candidates, build_crops, seg_dataset, cluster, evaluate_froc; two `command` stages
//! stand in for the torch stages: probability volumes written by h5py and a nodule "model"'s
//! predictions written by pyarrow, both from scripts compiled into this test so that no path or file
//! outside this test enters a key). For every cache object (stage artifacts and per-item
//! partitions) it records the key, the kind and its `VERSION`, and each file's blake3 from the
//! object's `manifest.json` (checked against the file's bytes); for each Parquet file of a luna
//! kind also a digest of its decoded content (column names and rows, read by pyarrow), so that
//! a failure tells "different bytes, same table" (e.g. another Parquet writer) from "different
//! data". It compares all of that with `tests/it/golden/keys_stable.json`.
//!
//! **A deliberate change of output** (a kind computes something else, or writes other bytes)
//! bumps that kind's `VERSION` (which changes its key and every key downstream) and re-blesses
//! the golden file: run this test with `LUNA_BLESS=1`, and say in the commit message which kind
//! changed and why. A refactor must pass unchanged.
//!
//! Rejected: the demo pipeline (minutes of training; torch results depend on the CPU's
//! kernels), and comparing keys only (a key is computed before the stage runs, so it cannot see
//! a change of what the stage writes).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::engine_support::{b3, Ws};

/// Probability volumes (the `segment` stage's layout) from the CTs, by the oracle script the
/// cluster tests use (p = 1 where HU > -300); compiled in, so its bytes, not its path, are in
/// the key.
const PROBS_PY: &str = include_str!("../oracle/write_prob_volumes.py");

/// A nodule classifier's predictions for the validation candidates, as a fixed function of
/// the candidate (nodules 0.9, others spread over [0, 0.5)).
const PREDICT_PY: &str = r#"import sys
import pyarrow as pa, pyarrow.parquet as pq
cand, out = sys.argv[1], sys.argv[2]
rows = [r for r in pq.read_table(cand + "/candidates.parquet").to_pylist() if r["split"] == "val"]
prob = [0.9 if r["is_nodule"] else (r["candidate_id"] * 37 % 100) / 200.0 for r in rows]
pq.write_table(pa.table({
    "candidate_id": pa.array([r["candidate_id"] for r in rows], pa.int64()),
    "series_uid": pa.array([r["series_uid"] for r in rows], pa.string()),
    "label": pa.array([bool(r["is_nodule"]) for r in rows], pa.bool_()),
    "probability": pa.array(prob, pa.float64()),
}), out + "/predictions.parquet")
"#;

/// Prints `{path: digest}` of the decoded content of every Parquet (pyarrow: column names and
/// rows) and HDF5 file (h5py: every object's path, dtype, shape, data and attributes) named on
/// stdin.
const CONTENT_PY: &str = r#"import hashlib, json, sys
import h5py, hdf5plugin, numpy as np, pyarrow.parquet as pq
def h5_doc(path):
    items = []
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = sorted((k, repr(np.asarray(v).tolist())) for k, v in obj.attrs.items())
            if isinstance(obj, h5py.Dataset):
                data = np.ascontiguousarray(obj[()])
                items.append([name, str(obj.dtype), list(obj.shape), hashlib.sha256(data.tobytes()).hexdigest(), attrs])
            else:
                items.append([name, attrs])
        visit("/", f)
        f.visititems(visit)
    return items
out = {}
for p in sys.stdin.read().split("\n"):
    if p.endswith(".parquet"):
        t = pq.read_table(p)
        doc = {"columns": t.column_names, "rows": t.to_pylist()}
    elif p.endswith(".h5"):
        doc = h5_doc(p)
    else:
        continue
    out[p] = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
print(json.dumps(out))
"#;

/// Files whose bytes are not reproducible today, compared by decoded content instead (none
/// since seg_store.rs and prob_volume.rs stopped recording HDF5 modification times):
/// `(kind prefix, file suffix, why)`. Remove an entry when its writer is fixed (that fix
/// changes the bytes once: bump the kind's VERSION and re-bless).
const NOT_REPRODUCIBLE: &[(&str, &str, &str)] = &[];

/// What the golden file records instead of the blake3 of a [`NOT_REPRODUCIBLE`] file.
const UNREPRODUCIBLE: &str = "not reproducible: compared by content";

/// Whether a file of `kind` named `rel` is compared by content (see [`NOT_REPRODUCIBLE`]).
fn by_content(kind: &str, rel: &str) -> bool {
    NOT_REPRODUCIBLE
        .iter()
        .any(|(k, suffix, _)| kind.starts_with(k) && rel.ends_with(suffix))
}

const PIPELINE: &str = r#"pipeline: keys
stages:
  data: { uses: synth, with: { preset: tiny, seed: 3 } }
  annotations: { uses: load_annotations, needs: [data] }
  candidates: { uses: merge_candidates, needs: [annotations, data], with: { val_stride: 2 } }
  crops: { uses: build_crops, needs: [candidates, data] }
  segdata: { uses: seg_dataset, needs: [candidates, data], with: { crop: 48 } }
  probs:
    uses: command
    needs: [data]
    with: { run: '"$LUNA_PYTHON" fixture/probs.py "$LUNA_IN_DATA" "$LUNA_OUT"', inputs: [fixture/probs.py], provides: [probabilities] }
  clusters: { uses: cluster, needs: [probs, data] }
  predict:
    uses: command
    needs: [candidates]
    with: { run: '"$LUNA_PYTHON" fixture/predict.py "$LUNA_IN_CANDIDATES" "$LUNA_OUT"', inputs: [fixture/predict.py], provides: [predictions] }
  froc: { uses: evaluate_froc, needs: [predict, candidates, data], with: { bootstrap: 20, seed: 1 } }
"#;

fn golden_path() -> std::path::PathBuf {
    Path::new(crate::REPO).join("tests/it/golden/keys_stable.json")
}

/// Runs the pipeline in a fresh workspace and returns its objects, labelled by stage (a
/// partition as `stage[item]`).
fn observe() -> BTreeMap<String, Value> {
    let ws = Ws::new();
    ws.file("fixture/probs.py", PROBS_PY)
        .file("fixture/predict.py", PREDICT_PY)
        .pipeline("keys", PIPELINE);
    let py = crate::py::python();
    let out = ws.luna_env(
        &["run", "keys"],
        &[("LUNA_PYTHON", py.to_str().expect("a UTF-8 python path"))],
    );
    out.expect_code(0);
    let mut objects = BTreeMap::new();
    let mut parquet = Vec::new();
    for m in ws.manifests() {
        let key = m["key"].as_str().expect("manifest key").to_string();
        let dir = ws.path("cache/objects").join(&key[..2]).join(&key);
        let kind = m["kind"].as_str().unwrap_or_default().to_string();
        let mut files = BTreeMap::new();
        for f in m["files"].as_array().expect("manifest files") {
            let rel = f["path"].as_str().expect("file path");
            let hash = f["blake3"].as_str().expect("file blake3");
            let bytes = std::fs::read(dir.join(rel)).expect("read an artifact file");
            assert_eq!(
                b3(&bytes),
                hash,
                "{key}/{rel}: bytes differ from the manifest"
            );
            if (rel.ends_with(".parquet") || rel.ends_with(".h5")) && !kind.starts_with("command") {
                parquet.push((
                    m["stage"].as_str().unwrap_or_default().to_string(),
                    rel.to_string(),
                    dir.join(rel),
                ));
            }
            let recorded = if by_content(&kind, rel) {
                UNREPRODUCIBLE.to_string()
            } else {
                hash.to_string()
            };
            files.insert(rel.to_string(), json!(recorded));
        }
        let label = m["stage"].as_str().expect("manifest stage").to_string();
        let entry = json!({ "key": key, "kind": kind, "version": m["version"], "files": files, "content": {} });
        assert!(
            objects.insert(label.clone(), entry).is_none(),
            "two objects labelled {label}"
        );
    }
    for (label, rel, digest) in parquet_content(&parquet) {
        objects.get_mut(&label).expect("a labelled object")["content"][rel] = json!(digest);
    }
    objects
}

/// `(label, file, digest)` of the decoded content of Parquet files, by pyarrow.
fn parquet_content(
    files: &[(String, String, std::path::PathBuf)],
) -> Vec<(String, String, String)> {
    let list: String = files
        .iter()
        .map(|(_, _, p)| format!("{}\n", p.display()))
        .collect();
    let out = crate::py::run_stdin(&["-c", CONTENT_PY], &list);
    let map: BTreeMap<String, String> =
        serde_json::from_str(&out).expect("the content digests are JSON");
    files
        .iter()
        .map(|(label, rel, p)| {
            let d = map
                .get(&p.display().to_string())
                .expect("a digest per file");
            (label.clone(), rel.clone(), d.clone())
        })
        .collect()
}

/// One line per difference of object `label`, empty when equal.
fn diff_object(label: &str, want: &Value, got: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let (wk, gk) = (&want["key"], &got["key"]);
    if wk != gk || want["version"] != got["version"] || want["kind"] != got["kind"] {
        out.push(format!(
            "{label}: key {wk} ({} v{}) -> {gk} ({} v{})",
            want["kind"], want["version"], got["kind"], got["version"]
        ));
    }
    let empty = serde_json::Map::new();
    let files = |v: &Value| v["files"].as_object().unwrap_or(&empty).clone();
    let (wf, gf) = (files(want), files(got));
    for (rel, h) in &wf {
        match gf.get(rel) {
            None => out.push(format!("{label}: file {rel} is gone")),
            Some(g) if g != h => {
                let (wc, gc) = (&want["content"][rel], &got["content"][rel]);
                let why = if wc.is_null() {
                    String::new()
                } else if wc == gc {
                    " (bytes only: the decoded content is the same)".into()
                } else {
                    " (its decoded content differs too)".into()
                };
                out.push(format!("{label}: file {rel} changed{why}"));
            }
            Some(_) if h == UNREPRODUCIBLE && want["content"][rel] != got["content"][rel] => {
                out.push(format!("{label}: file {rel}: its decoded content changed"));
            }
            Some(_) => {}
        }
    }
    for rel in gf.keys().filter(|r| !wf.contains_key(*r)) {
        out.push(format!("{label}: new file {rel}"));
    }
    out
}

#[test]
fn keys_and_artifact_bytes_of_the_non_torch_kinds_are_unchanged() {
    let got = observe();
    let path = golden_path();
    if std::env::var_os("LUNA_BLESS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&got).expect("the golden serialises");
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, text + "\n").expect("write the golden file");
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {} ({e}): create it with LUNA_BLESS=1", path.display()));
    let want: BTreeMap<String, Value> = serde_json::from_str(&text).expect("the golden is JSON");
    let mut diffs = Vec::new();
    for (label, w) in &want {
        match got.get(label) {
            None => diffs.push(format!("{label}: object is gone")),
            Some(g) => diffs.extend(diff_object(label, w, g)),
        }
    }
    for label in got.keys().filter(|l| !want.contains_key(*l)) {
        diffs.push(format!("{label}: new object {}", got[label]["key"]));
    }
    assert!(
        diffs.is_empty(),
        "keys or artifacts differ from {}:\n  {}\nA refactor must not change them. A deliberate \
         change of output bumps the kind's VERSION and re-blesses (LUNA_BLESS=1), saying so in \
         the commit message.",
        path.display(),
        diffs.join("\n  ")
    );
}
