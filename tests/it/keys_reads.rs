//! Keys from what a stage reads, and early cutoff (issue 26, point 6): a pipeline over an
//! explicit `ct_root` (a `luna synth` folder with explicit CSV paths) is keyed by the series
//! its tables name, so a README and a new `subset9` CT beside the data leave every stage fresh;
//! and a stage that re-runs but writes byte-identical output stops the cascade, saying so.

use serde_json::Value;

use crate::data_support::{data_ext_pipeline, data_mhds, data_synth};
use crate::engine_support::{st, stages_with, Ws};

/// The workspace after a first run of `data` over `ext` (3 series, seed 11).
fn ran_once() -> Ws {
    let ws = Ws::new();
    ws.pipeline("data", &data_ext_pipeline("", ""));
    data_synth(&ws, "ext", 11, 3);
    ws.luna(&["run", "data"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[
            ("annotations", "ran"),
            ("candidates", "ran"),
            ("crops", "ran")
        ])
    );
    ws
}

/// `luna status data --json` as (stage, state) pairs.
fn states(ws: &Ws) -> Vec<(String, String)> {
    let o = ws.luna(&["status", "data", "--json"]);
    o.expect_code(0);
    let v: Value = serde_json::from_str(&o.stdout).expect("status --json is JSON");
    v.as_array()
        .expect("an array of stages")
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap_or_default().to_string(),
                r["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `luna status` says every stage is fresh.
fn assert_all_fresh(ws: &Ws) {
    let fresh = |s: &str| (s.to_string(), "fresh".to_string());
    let want = vec![fresh("annotations"), fresh("candidates"), fresh("crops")];
    assert_eq!(states(ws), want);
}

/// The reasons recorded for `stage` in run record `rec`.
fn reasons_of(rec: &Value, stage: &str) -> Value {
    rec["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stage"] == stage))
        .map(|s| s["reasons"].clone())
        .unwrap_or_else(|| panic!("no record of {stage} in {rec}"))
}

#[test]
fn a_readme_and_a_new_subset_leave_the_stages_over_the_other_series_fresh() {
    let ws = ran_once();
    // a CT of another series (not in the CSVs) in a new subset9 folder, and a README
    data_synth(&ws, "other", 12, 2);
    let mhd = data_mhds(&ws.path("other"))
        .into_iter()
        .next()
        .expect("a synthetic CT");
    std::fs::create_dir_all(ws.path("ext/subset9")).expect("make subset9");
    for f in [mhd.clone(), mhd.with_extension("raw")] {
        let name = f.file_name().expect("a file name");
        std::fs::copy(&f, ws.path("ext/subset9").join(name)).expect("copy the CT");
    }
    ws.file("ext/README.txt", "LUNA16, downloaded 2026-12-07\n");

    let status = ws.luna(&["status", "data"]);
    status.expect_code(0);
    assert!(
        status.stdout.ends_with("everything is up to date\n"),
        "{}",
        status.stdout
    );
    assert_all_fresh(&ws);
    let run = ws.luna(&["run", "data"]);
    run.expect_code(0);
    assert!(
        stages_with(&run.stderr, "RUNNING").is_empty(),
        "{}",
        run.stderr
    );
    assert!(ws.last_statuses().iter().all(|(_, s)| s == "cached"));

    // a CT the tables name does change the key of the stages that read it
    let used = data_mhds(&ws.path("ext"))
        .into_iter()
        .find(|m| !m.starts_with(ws.path("ext/subset9")))
        .expect("a CT of the tables");
    let mut raw = std::fs::read(used.with_extension("raw")).expect("read a .raw");
    raw[0] ^= 1;
    std::fs::write(used.with_extension("raw"), raw).expect("change one byte");
    assert_eq!(
        states(&ws),
        st(&[
            ("annotations", "fresh"),
            ("candidates", "fresh"),
            ("crops", "stale")
        ])
    );
}

#[test]
fn a_stage_whose_output_is_unchanged_stops_the_cascade() {
    let ws = ran_once();
    // an annotation of a series that is not on disk: load_annotations' table changes, but
    // merge_candidates keeps only series on disk, so its output is byte-identical
    let csv = ws.path("ext/annotations_with_malignancy.csv");
    let text = std::fs::read_to_string(&csv).expect("read the annotations");
    let last = text.lines().last().expect("an annotation row");
    let (_, rest) = last.split_once(',').expect("a CSV row");
    std::fs::write(&csv, format!("{text}1.2.826.0.1.3680043.999,{rest}\n")).expect("append");

    let status = ws.luna(&["status", "data"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains(
            "  candidates   may run (if its upstream's output changes):\n                 - upstream 'annotations' will run\n"
        ),
        "{}",
        status.stdout
    );
    assert_eq!(
        states(&ws),
        st(&[
            ("annotations", "stale"),
            ("candidates", "maybe_stale"),
            ("crops", "maybe_stale")
        ])
    );

    let run = ws.luna(&["run", "data"]);
    run.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[
            ("annotations", "ran"),
            ("candidates", "ran"),
            ("crops", "cached")
        ])
    );
    assert!(
        run.stderr
            .contains("upstream re-ran, output unchanged ('candidates')"),
        "{}",
        run.stderr
    );
    let rec = ws.last_run();
    assert_eq!(
        reasons_of(&rec, "crops"),
        serde_json::json!([{"reason": "upstream_unchanged", "stage": "candidates"}])
    );
    assert_eq!(
        reasons_of(&rec, "candidates"),
        serde_json::json!([{"reason": "upstream_will_run", "stage": "annotations"}])
    );

    // afterwards everything is fresh, and stays so
    assert_all_fresh(&ws);
    ws.luna(&["run", "data"]).expect_code(0);
    assert!(ws.last_statuses().iter().all(|(_, s)| s == "cached"));
}
