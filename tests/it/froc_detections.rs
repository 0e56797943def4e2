//! `evaluate_froc` on the detection track, through the real binary: a `command` stage provides
//! `detections` (a generated detections.parquet and the seriesuids.csv of the series searched,
//! as `classify_candidates` writes them) and the natural YAML
//! `{ uses: evaluate_froc, needs: [detections, data] }` scores it. froc.json / froc.csv equal
//! the independent Python oracle (`tests/oracle/froc_oracle.py`, ≤ 1e-9) on the same marks,
//! including a searched series without any detection (a scan with a missed nodule) and one
//! with neither; plus the plan-time errors of the either-or mark source and the run-time
//! errors of a detections artifact that cannot be scored.

use luna::froc::FrocOptions;
use luna::tables::{write_rows, DetectionRow};

use crate::engine_support::{Out, Ws};
use crate::froc_support::{assert_files_same, oracle, Case};

/// Five searched series: S4 has a nodule but no detection (a miss the FP divisor must see),
/// S5 has nothing at all; S1 has a double detection, S2 a mark on an excluded finding.
fn case() -> Case {
    Case {
        scans: vec!["S1", "S2", "S3", "S4", "S5"],
        included: vec![
            ("S1", [0.0, 0.0, 0.0], 8.0),
            ("S1", [30.0, 0.0, 0.0], 6.0),
            ("S2", [-20.0, 10.0, 5.0], 12.0),
            ("S4", [5.0, 5.0, 5.0], 10.0),
        ],
        excluded: vec![("S2", [40.0, 40.0, 40.0], -1.0)],
        marks: vec![
            ("S1", [1.0, 0.0, 0.0], 0.9),
            ("S1", [0.0, 1.5, 0.0], 0.7),
            ("S1", [30.5, 0.0, 0.0], 0.35),
            ("S1", [80.0, 0.0, 0.0], 0.6),
            ("S2", [-19.0, 11.0, 5.0], 0.55),
            ("S2", [41.0, 40.0, 40.0], 0.95),
            ("S2", [0.0, -60.0, 0.0], 0.2),
            ("S3", [10.0, 10.0, 10.0], 0.4),
            ("S3", [-10.0, 10.0, 10.0], 0.05),
        ],
    }
}

/// Detection rows for the case's marks (cluster ids 1.. per series).
fn detections(case: &Case) -> Vec<DetectionRow> {
    let mut prev = "";
    let mut id = 0;
    case.marks
        .iter()
        .map(|(uid, xyz, p)| {
            id = if *uid == prev { id + 1 } else { 1 };
            prev = uid;
            DetectionRow {
                series_uid: uid.to_string(),
                cluster_id: id,
                center_xyz: *xyz,
                center_irc: [0, 0, 0],
                prob_nodule: *p,
                prob_malignant: None,
            }
        })
        .collect()
}

/// Writes the case: `oracle/` (the official bundle's four files), `data/` (annotations and
/// excluded, as a dataset holds them) and `det/` (detections.parquet + seriesuids.csv).
fn write(ws: &Ws, case: &Case, rows: &[DetectionRow], uids: Option<&str>) {
    case.write(&ws.path("oracle"));
    for f in ["annotations.csv", "annotations_excluded.csv"] {
        ws.file(&format!("data/{f}"), ws.read(&format!("oracle/{f}")));
    }
    std::fs::create_dir_all(ws.path("det")).unwrap();
    write_rows(rows, &ws.path("det/detections.parquet")).unwrap();
    if let Some(u) = uids {
        ws.file("det/seriesuids.csv", u);
    }
}

const STAGES: &str = r#"pipeline: t
stages:
  data:
    uses: command
    with: { run: 'cp data/* "$LUNA_OUT"/', inputs: [data], provides: [dataset] }
  detections:
    uses: command
    with: { run: 'cp det/* "$LUNA_OUT"/', inputs: [det], provides: [detections] }
"#;

fn pipeline(froc: &str) -> String {
    format!("{STAGES}  froc:\n{froc}")
}

const FROC: &str = "    uses: evaluate_froc\n    needs: [detections, data]\n    with: { bootstrap: 40, seed: 7 }\n";

/// Nothing of `froc` was committed.
fn froc_not_committed(ws: &Ws) {
    assert!(
        ws.manifests().iter().all(|m| m["stage"] != "froc"),
        "a failed evaluate_froc committed an artifact"
    );
}

#[test]
fn evaluate_froc_scores_detections_like_the_oracle_with_searched_series_without_detections() {
    let ws = Ws::new();
    let c = case();
    write(&ws, &c, &detections(&c), Some("S1\nS2\nS3\nS4\nS5\n"));
    ws.pipeline("t", &pipeline(FROC));
    ws.luna(&["run", "t"]).expect_code(0);
    let dir = std::path::PathBuf::from(ws.luna(&["path", "t", "froc"]).stdout.trim());
    assert_eq!(
        std::fs::read_to_string(dir.join("seriesuids.csv")).unwrap(),
        "S1\nS2\nS3\nS4\nS5\n"
    );
    let opts = FrocOptions {
        bootstrap: 40,
        seed: 7,
        ..FrocOptions::default()
    };
    let o = oracle(&ws.path("oracle"), opts);
    assert_files_same(&dir, &o);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("froc.json")).unwrap()).unwrap();
    let n = &doc["counts"];
    // 5 scans (S4, S5 without detections), S4's nodule missed, S1's second hit a double.
    assert_eq!(
        (
            n["scans"].as_u64(),
            n["nodules"].as_u64(),
            n["tp"].as_u64(),
            n["fn"].as_u64(),
            n["double_detections"].as_u64(),
            n["ignored_on_excluded"].as_u64()
        ),
        (Some(5), Some(4), Some(3), Some(1), Some(1), Some(1)),
        "{n}"
    );
    println!("detection track: CPM {} (oracle {})", doc["cpm"], o["cpm"]);
}

/// One pipeline through `luna status` (plan time only): its exit code and stderr.
fn plan(ws: &Ws, froc: &str) -> Out {
    ws.pipeline("p", &format!("{}{}", pipeline(froc), EXTRA));
    ws.luna(&["status", "p"])
}

/// A false-positive-reduction source next to the detections (`command` stages, never run).
const EXTRA: &str = r#"  evaluate:
    uses: command
    with: { run: 'true', provides: [predictions] }
  candidates:
    uses: command
    with: { run: 'true', provides: [candidates] }
"#;

fn has(out: &Out, text: &str) {
    assert!(
        out.stderr.contains(text),
        "missing {text:?} in:\n{}",
        out.stderr
    );
}

#[test]
fn evaluate_froc_takes_exactly_one_mark_source_at_plan_time() {
    let ws = Ws::new();
    ws.file("data/annotations.csv", "")
        .file("det/seriesuids.csv", "");
    // Neither: no detections and no predictions upstream.
    let out = plan(&ws, "    uses: evaluate_froc\n    needs: [data]\n");
    out.expect_code(2);
    has(&out, "error: stage `froc` takes its marks from one of its inputs `detections` (a `detections` artifact) or `predictions` (a `predictions` artifact), but no upstream stage provides any of them");
    has(&out, "pipelines/p.yaml:11:12");
    has(&out, "hint: stages that provide a `detections`: detections; a `predictions`: evaluate; add one to `needs:`");
    // Both in needs.
    let out = plan(
        &ws,
        "    uses: evaluate_froc\n    needs: [detections, data, evaluate, candidates]\n",
    );
    out.expect_code(2);
    has(&out, "error: stage `froc` takes its marks from one input, `detections` or `predictions`, but 2 are bound: `detections` to `detections`, `predictions` to `evaluate`");
    has(&out, "pipelines/p.yaml:11:12");
    has(&out, "hint: say which one with `with: { detections: detections }`, or drop the others from `needs:`");
    // Naming one resolves it; the candidates of the other track are then not bound.
    let out = plan(
        &ws,
        "    uses: evaluate_froc\n    needs: [detections, data, evaluate, candidates]\n    with: { detections: detections }\n",
    );
    out.expect_code(0);
    // Both named.
    let out = plan(
        &ws,
        "    uses: evaluate_froc\n    needs: [detections, data, evaluate, candidates]\n    with: { detections: detections, predictions: evaluate }\n",
    );
    out.expect_code(2);
    has(&out, "error: stage `froc` takes its marks from one input, `detections` or `predictions`, but 2 are bound: `detections` to `detections`, `predictions` to `evaluate`");
    has(&out, "pipelines/p.yaml:12:50");
    has(
        &out,
        "hint: keep only one of `detections:` or `predictions:` in `with:`",
    );
    // `candidates` named on the detection track.
    let out = plan(
        &ws,
        "    uses: evaluate_froc\n    needs: [detections, data, candidates]\n    with: { candidates: candidates }\n",
    );
    out.expect_code(2);
    has(&out, "error: stage `froc`: `candidates: candidates` is used only together with the input `predictions`, which is not bound");
    has(
        &out,
        "hint: remove `candidates:` from `with:`, or bind `predictions` as well",
    );
    // The FP-reduction track still needs its candidates.
    let out = plan(
        &ws,
        "    uses: evaluate_froc\n    needs: [evaluate, data]\n",
    );
    out.expect_code(2);
    has(&out, "error: stage `froc` needs a `candidates` artifact for its input `candidates`, but no upstream stage provides one");
}

#[test]
fn evaluate_froc_refuses_detections_it_cannot_score() {
    let ws = Ws::new();
    let c = case();
    let rows = detections(&c);
    ws.pipeline("t", &pipeline(FROC));
    // No seriesuids.csv beside detections.parquet.
    write(&ws, &c, &rows, None);
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    has(&out, "seriesuids.csv: missing: the detections artifact of `detections` does not say which series were searched");
    has(&out, "hint: a stage that provides `detections` writes seriesuids.csv beside detections.parquet: every series it searched (with or without rows), one uid per line, no header; or set `seriesuids:`");
    froc_not_committed(&ws);
    // A detection of a series that was not searched.
    write(&ws, &c, &rows, Some("S1\nS3\nS4\nS5\n"));
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    has(
        &out,
        "detections.parquet: row 4 (0-based): series S2 is not one of the 4 scans of ",
    );
    has(&out, "seriesuids.csv");
    froc_not_committed(&ws);
    // A NaN probability and a NaN coordinate (written by pyarrow: luna's writer refuses them).
    for (col, row, value, rule) in [
        ("prob_nodule", 2, "nan", "a probability in [0, 1]"),
        ("prob_nodule", 5, "1.5", "a probability in [0, 1]"),
        ("coord_y", 3, "nan", "a finite number"),
    ] {
        write(&ws, &c, &rows, Some("S1\nS2\nS3\nS4\nS5\n"));
        crate::tables_support::parquet_set(&ws.path("det/detections.parquet"), col, row, value);
        let out = ws.luna(&["run", "t"]);
        out.expect_code(1);
        let v = if value == "nan" { "NaN" } else { value };
        has(
            &out,
            &format!("detections.parquet: row {row} (0-based) of table detections: column {col} is {v}, not {rule}"),
        );
        froc_not_committed(&ws);
    }
}

#[test]
fn pooled_detection_folds_score_like_the_oracle_on_all_their_scans() {
    let ws = Ws::new();
    let c = case();
    write(&ws, &c, &detections(&c), None);
    // two folds: S1–S2 and S3–S5, each a detections artifact with its searched series
    let rows = detections(&c);
    for (fold, uids) in [("a", ["S1", "S2"].as_slice()), ("b", &["S3", "S4", "S5"])] {
        let mine: Vec<DetectionRow> = rows
            .iter()
            .filter(|r| uids.contains(&r.series_uid.as_str()))
            .cloned()
            .collect();
        std::fs::create_dir_all(ws.path(&format!("det_{fold}"))).unwrap();
        write_rows(&mine, &ws.path(&format!("det_{fold}/detections.parquet"))).unwrap();
        let list: String = uids.iter().map(|u| format!("{u}\n")).collect();
        ws.file(&format!("det_{fold}/seriesuids.csv"), list);
    }
    let folds = "  det_a:\n    uses: command\n    with: { run: 'cp det_a/* \"$LUNA_OUT\"/', inputs: [det_a], provides: [detections] }\n\
                 \x20 det_b:\n    uses: command\n    with: { run: 'cp det_b/* \"$LUNA_OUT\"/', inputs: [det_b], provides: [detections] }\n\
                 \x20 froc:\n    uses: evaluate_froc\n    needs: [det_a, det_b, data]\n    with: { detections: [det_a, det_b], bootstrap: 40, seed: 7 }\n";
    ws.pipeline("t", &format!("{STAGES}{folds}"));
    ws.luna(&["run", "t", "--until", "froc"]).expect_code(0);
    let dir = std::path::PathBuf::from(ws.luna(&["path", "t", "froc"]).stdout.trim());
    let opts = FrocOptions {
        bootstrap: 40,
        seed: 7,
        ..FrocOptions::default()
    };
    assert_files_same(&dir, &oracle(&ws.path("oracle"), opts));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("froc.json")).unwrap()).unwrap();
    let scans: Vec<(&str, u64)> = doc["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["stage"].as_str().unwrap(),
                i["froc"]["counts"]["scans"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(scans, [("det_a", 2), ("det_b", 3)]);
}
