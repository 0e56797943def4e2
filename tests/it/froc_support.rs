//! FROC test helpers: hand-made scoring cases written as the official bundle's four files, the
//! independent Python oracle (`tests/oracle/froc_oracle.py`), the random-data generator
//! (`tests/oracle/froc_data.py`) and the comparison of luna's result with the oracle's.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use luna::froc::{evaluate, FrocInput, FrocOptions, FrocResult};
use serde_json::Value;

use crate::py::python;

/// Largest difference allowed between luna and the oracle.
pub const TOL: f64 = 1e-9;

/// A finding or mark: series, world xyz, diameter (findings) or probability (marks).
pub type Row = (&'static str, [f64; 3], f64);

/// One hand-made case.
#[derive(Debug, Clone, Default)]
pub struct Case {
    /// The evaluated scans.
    pub scans: Vec<&'static str>,
    /// annotations.csv rows (diameter).
    pub included: Vec<Row>,
    /// annotations_excluded.csv rows (diameter, -1 allowed).
    pub excluded: Vec<Row>,
    /// submission rows (probability).
    pub marks: Vec<Row>,
}

fn rows(header: &str, rows: &[Row]) -> String {
    let mut s = format!("{header}\n");
    for (u, [x, y, z], v) in rows {
        let _ = writeln!(s, "{u},{x:?},{y:?},{z:?},{v:?}");
    }
    s
}

impl Case {
    /// Writes annotations.csv, annotations_excluded.csv, seriesuids.csv, submission.csv.
    pub fn write(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        let h = "seriesuid,coordX,coordY,coordZ,diameter_mm";
        std::fs::write(dir.join("annotations.csv"), rows(h, &self.included)).unwrap();
        std::fs::write(
            dir.join("annotations_excluded.csv"),
            rows(h, &self.excluded),
        )
        .unwrap();
        let uids: String = self.scans.iter().map(|u| format!("{u}\n")).collect();
        std::fs::write(dir.join("seriesuids.csv"), uids).unwrap();
        let sub = rows("seriesuid,coordX,coordY,coordZ,probability", &self.marks);
        std::fs::write(dir.join("submission.csv"), sub).unwrap();
    }
}

/// `luna froc` in `ws` on the submission `sub` and scan list `uids` (written as `sub.csv` and
/// `uids.csv`) against the fixture dataset at `fixture/data/`, into `cli/`; asserts success.
pub fn luna_froc_cli(
    ws: &crate::engine_support::Ws,
    sub: &str,
    uids: &str,
    boot: &str,
    seed: &str,
) {
    ws.file("sub.csv", sub);
    ws.file("uids.csv", uids);
    let data = "fixture/data";
    ws.luna(&[
        "froc",
        "sub.csv",
        "--annotations",
        &format!("{data}/annotations.csv"),
        "--excluded",
        &format!("{data}/annotations_excluded.csv"),
        "--seriesuids",
        "uids.csv",
        "--out",
        "cli",
        "--bootstrap",
        boot,
        "--seed",
        seed,
    ])
    .expect_code(0);
}

/// A candidate row for the `evaluate_froc` fixtures (an annotation's when `is_nodule`; benign).
pub fn merged_row(
    id: i64,
    uid: &str,
    xyz: [f64; 3],
    d: f64,
    is_nodule: bool,
    split: luna::tables::Split,
) -> luna::tables::MergedRow {
    luna::tables::MergedRow {
        candidate_id: id,
        series_uid: uid.into(),
        center_xyz: xyz,
        is_nodule,
        has_annotation: is_nodule,
        is_malignant: Some(false),
        diameter_mm: d,
        split,
        subset: None,
    }
}

/// Runs `froc_data.py` into `dir`.
pub fn generate(dir: &Path, scans: usize, marks: usize, seed: u64) {
    let st = Command::new(python())
        .arg(format!("{}/tests/oracle/froc_data.py", crate::REPO))
        .arg(dir)
        .args(["--scans", &scans.to_string(), "--marks", &marks.to_string()])
        .args(["--seed", &seed.to_string()])
        .status()
        .expect("run froc_data.py");
    assert!(st.success(), "froc_data.py failed");
}

/// The four files of `dir` scored by luna's library.
pub fn luna_eval(dir: &Path, opts: FrocOptions) -> FrocResult {
    let input = FrocInput::load(
        &dir.join("submission.csv"),
        &dir.join("annotations.csv"),
        Some(&dir.join("annotations_excluded.csv")),
        &dir.join("seriesuids.csv"),
    )
    .expect("load the case");
    evaluate(&input, opts).expect("score the case")
}

/// The four files of `dir` scored by the Python oracle.
pub fn oracle(dir: &Path, opts: FrocOptions) -> Value {
    let out = dir.join("oracle.json");
    let o = Command::new(python())
        .arg(format!("{}/tests/oracle/froc_oracle.py", crate::REPO))
        .args([
            "--annotations",
            &dir.join("annotations.csv").to_string_lossy(),
        ])
        .args([
            "--excluded",
            &dir.join("annotations_excluded.csv").to_string_lossy(),
        ])
        .args([
            "--seriesuids",
            &dir.join("seriesuids.csv").to_string_lossy(),
        ])
        .args([
            "--submission",
            &dir.join("submission.csv").to_string_lossy(),
        ])
        .args(["--max-marks", &opts.max_marks.to_string()])
        .args(["--bootstrap", &opts.bootstrap.to_string()])
        .args(["--seed", &opts.seed.to_string()])
        .args(["--out", &out.to_string_lossy()])
        .output()
        .expect("run froc_oracle.py");
    assert!(
        o.status.success(),
        "froc_oracle.py failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(what: &str, a: f64, b: f64) {
    assert!(
        (a - b).abs() <= TOL,
        "{what}: luna {a:?} vs oracle {b:?} (diff {:e})",
        (a - b).abs()
    );
}

fn close_all(what: &str, a: &[f64], b: &Value) {
    let b = b
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array"));
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        close(&format!("{what}[{i}]"), *x, f(y));
    }
}

/// Asserts that luna's result equals the oracle's: curve points (fps, sensitivity, threshold),
/// the 7 sensitivities, both CPMs, the counts and, when present, the bootstrap.
pub fn assert_same(r: &FrocResult, o: &Value) {
    let c = &o["curve"];
    let fps: Vec<f64> = r.curve.iter().map(|p| p.fps).collect();
    let sens: Vec<f64> = r.curve.iter().map(|p| p.sensitivity).collect();
    close_all("curve fps", &fps, &c["fps"]);
    close_all("curve sensitivity", &sens, &c["sensitivity"]);
    let thr = c["threshold"].as_array().unwrap();
    assert_eq!(r.curve.len(), thr.len(), "curve thresholds: length");
    for (i, (p, t)) in r.curve.iter().zip(thr).enumerate() {
        match t.as_f64() {
            None => assert!(p.threshold.is_infinite(), "threshold[{i}] inf"),
            Some(t) => assert_eq!(p.threshold, t, "threshold[{i}]"),
        }
    }
    close_all("sensitivities", &r.sensitivities, &o["sensitivities"]);
    close("cpm", r.cpm, f(&o["cpm"]));
    close("cpm_nearest", r.cpm_nearest, f(&o["cpm_nearest"]));
    close_all(
        "sensitivities_nearest",
        &r.sensitivities_nearest,
        &o["sensitivities_nearest"],
    );
    assert_eq!(
        serde_json::to_value(r.counts).unwrap(),
        o["counts"],
        "counts"
    );
    if let Some(b) = &r.bootstrap {
        let ob = &o["bootstrap"];
        for (k, iv) in [
            ("mean", b.cpm.mean),
            ("low", b.cpm.low),
            ("high", b.cpm.high),
        ] {
            close(&format!("bootstrap cpm {k}"), iv, f(&ob["cpm"][k]));
        }
        for (i, s) in b.sensitivities.iter().enumerate() {
            let os = &ob["sensitivities"][i];
            close(&format!("bootstrap sens[{i}] mean"), s.mean, f(&os["mean"]));
            close(&format!("bootstrap sens[{i}] low"), s.low, f(&os["low"]));
            close(&format!("bootstrap sens[{i}] high"), s.high, f(&os["high"]));
        }
        let band = |k: fn(&luna::froc::BandPoint) -> f64| b.band.iter().map(k).collect::<Vec<_>>();
        close_all("band fps", &band(|p| p.fps), &ob["band"]["fps"]);
        close_all("band mean", &band(|p| p.mean), &ob["band"]["mean"]);
        close_all("band lower", &band(|p| p.lower), &ob["band"]["lower"]);
        close_all("band upper", &band(|p| p.upper), &ob["band"]["upper"]);
    }
}

/// Writes `case` under `dir`, scores it with luna and the oracle and compares; returns luna's.
pub fn check_case(dir: &Path, case: &Case, opts: FrocOptions) -> FrocResult {
    case.write(dir);
    let r = luna_eval(dir, opts);
    assert_same(&r, &oracle(dir, opts));
    r
}

/// Asserts that the files of a FROC artifact or `luna froc --out` directory (`froc.json`,
/// `froc.csv`) hold the oracle's numbers: curve points, sensitivities, both CPMs, counts and
/// the bootstrap's CPM and sensitivity intervals.
pub fn assert_files_same(dir: &Path, o: &Value) {
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("froc.json")).unwrap()).unwrap();
    let csv = std::fs::read_to_string(dir.join("froc.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("fps,sensitivity,threshold"));
    let (mut fps, mut sens) = (Vec::new(), Vec::new());
    for l in lines {
        let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
        fps.push(v[0]);
        sens.push(v[1]);
    }
    close_all("curve fps", &fps, &o["curve"]["fps"]);
    close_all("curve sensitivity", &sens, &o["curve"]["sensitivity"]);
    let nums = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(f).collect() };
    close_all(
        "sensitivities",
        &nums(&doc["sensitivities"]),
        &o["sensitivities"],
    );
    close("cpm", f(&doc["cpm"]), f(&o["cpm"]));
    close("cpm_nearest", f(&doc["cpm_nearest"]), f(&o["cpm_nearest"]));
    assert_eq!(doc["counts"], o["counts"], "counts");
    let (b, ob) = (&doc["bootstrap"], &o["bootstrap"]);
    for k in ["mean", "low", "high"] {
        close(
            &format!("bootstrap cpm {k}"),
            f(&b["cpm"][k]),
            f(&ob["cpm"][k]),
        );
        for i in 0..7 {
            close(
                &format!("bootstrap sens[{i}] {k}"),
                f(&b["sensitivities"][i][k]),
                f(&ob["sensitivities"][i][k]),
            );
        }
    }
}
