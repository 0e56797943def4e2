//! Helpers for the data-stage tests (`data_*`): the venv python for oracles, `luna synth` into a
//! workspace folder, pipeline YAML for external LUNA-format data, and small file edits used to
//! break a dataset on purpose.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::engine_support::{Out, Ws};

/// Runs `tests/oracle/<script>` with `args`; panics (never skips) when python, a module or a
/// check fails, and returns its stdout.
pub fn data_oracle(script: &str, args: &[&Path]) -> String {
    let py = crate::py::python();
    let path = Path::new(crate::REPO).join("tests/oracle").join(script);
    let o = Command::new(&py).arg(&path).args(args).output().unwrap_or_else(|e| {
        panic!(
            "oracle {script}: cannot run python at {} ({e}); set LUNA_PYTHON to a python with numpy, SimpleITK, h5py, hdf5plugin and pyarrow",
            py.display()
        )
    });
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "oracle {script} failed (python {}; needs numpy, SimpleITK, h5py, hdf5plugin, pyarrow; set LUNA_PYTHON):\nstdout:\n{stdout}\nstderr:\n{}",
        py.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout
}

/// `luna synth <ws>/<rel> --preset tiny --seed <seed> --series <n>`; panics on failure.
pub fn data_synth(ws: &Ws, rel: &str, seed: u64, series: usize) {
    let (s, n) = (seed.to_string(), series.to_string());
    ws.luna(&[
        "synth", rel, "--preset", "tiny", "--seed", &s, "--series", &n,
    ])
    .expect_code(0);
}

/// A pipeline `data` over LUNA files in the workspace folder `ext` (explicit CSV paths and
/// `ct_root`), with extra `with:` entries for load_annotations and merge_candidates.
pub fn data_ext_pipeline(load_extra: &str, merge_extra: &str) -> String {
    format!(
        "pipeline: data\nstages:\n  \
         annotations: {{ uses: load_annotations, with: {{ annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv{load_extra} }} }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ val_stride: 2, ct_root: ext{merge_extra} }} }}\n  \
         crops: {{ uses: build_crops, needs: [candidates], with: {{ ct_root: ext }} }}\n"
    )
}

/// The artifact directory of `stage` of pipeline `pipeline` (`luna path`).
pub fn data_artifact(ws: &Ws, pipeline: &str, stage: &str) -> PathBuf {
    let o = ws.luna(&["path", pipeline, stage]);
    o.expect_code(0);
    PathBuf::from(o.stdout.trim())
}

/// Reads a JSON file.
pub fn data_json(path: &Path) -> Value {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every `.mhd` below `dir`, sorted.
pub fn data_mhds(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in std::fs::read_dir(dir).expect("list dataset dir").flatten() {
        if sub.path().is_dir() {
            for f in std::fs::read_dir(sub.path())
                .expect("list subset dir")
                .flatten()
            {
                if f.path().extension().is_some_and(|x| x == "mhd") {
                    out.push(f.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// The first `.mhd` in `dir` whose header contains `needle` (e.g. `CompressedData = False`).
pub fn data_mhd_with(dir: &Path, needle: &str) -> PathBuf {
    data_mhds(dir)
        .into_iter()
        .find(|m| std::fs::read_to_string(m).is_ok_and(|t| t.contains(needle)))
        .unwrap_or_else(|| panic!("no .mhd under {} with {needle:?}", dir.display()))
}

/// Replaces the header line starting with `key =` by `key = value`.
pub fn data_set_header(mhd: &Path, key: &str, value: &str) {
    let text = std::fs::read_to_string(mhd).expect("read .mhd");
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split('=').next().is_some_and(|k| k.trim() == key) {
                found = true;
                format!("{key} = {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(found, "{} has no {key} line", mhd.display());
    std::fs::write(mhd, lines.join("\n") + "\n").expect("write .mhd");
}

/// Replaces field `col` of data line `line` (1-based file line) of a CSV; returns the old value.
pub fn data_set_csv_field(csv: &Path, line: usize, col: usize, value: &str) -> String {
    let text = std::fs::read_to_string(csv).expect("read csv");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[line - 1].split(',').map(String::from).collect();
    let old = std::mem::replace(&mut fields[col], value.to_string());
    lines[line - 1] = fields.join(",");
    std::fs::write(csv, lines.join("\n") + "\n").expect("write csv");
    old
}

/// Asserts a failed `luna run`: exit code 1 and every `needle` in stderr.
pub fn data_expect_failure(o: &Out, needles: &[&str]) {
    o.expect_code(1);
    for n in needles {
        assert!(
            o.stderr.contains(n),
            "stderr lacks {n:?}\nstderr:\n{}",
            o.stderr
        );
    }
    assert!(
        !o.stderr.contains("panicked"),
        "a stage panicked:\n{}",
        o.stderr
    );
}

/// Number of cache objects whose manifest `kind` is `kind`.
pub fn data_count_kind(ws: &Ws, kind: &str) -> usize {
    ws.manifests()
        .iter()
        .filter(|m| m["kind"].as_str() == Some(kind))
        .count()
}
