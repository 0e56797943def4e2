//! `diagnose` through the real binary on hand-made detections and ground truth (`command`
//! stages provide them): every searched series is a patient — one without detections gets
//! score 0 and its nodule is a Complete Miss in the book's table (known answer) — and bad
//! input (NaN or out-of-range probabilities, a detection of an unsearched series, a ground
//! truth table without a column or without a searched series, no scan list) is exit 1 with
//! the file, row and cause, and nothing committed.

use std::path::PathBuf;

use luna::tables::{read_rows, write_rows, DetectionRow, DiagnosisRow, MergedRow, Split};

use crate::engine_support::{Out, Ws};
use crate::tables_support::{parquet_drop, parquet_set};

/// (series, xyz, P(nodule), P(malignant)).
const DETECTIONS: [(&str, [f64; 3], f64, f64); 3] = [
    ("P1", [0.5, 0.0, 0.0], 0.9, 0.8), // the malignant nodule: Pred. Malignant
    ("P2", [11.0, 0.0, 0.0], 0.3, 0.1), // the benign nodule: Filtered Out
    ("P2", [50.0, 0.0, 0.0], 0.7, 0.2), // no nodule there: Non-Nodules / Pred. Benign
];

/// (series, xyz, diameter, malignant) of the true nodules; P3 has one and no detection.
const NODULES: [(&str, [f64; 3], f64, bool); 3] = [
    ("P1", [0.0, 0.0, 0.0], 10.0, true),
    ("P2", [10.0, 0.0, 0.0], 8.0, false),
    ("P3", [-20.0, 5.0, 5.0], 6.0, false),
];

const SEARCHED: &str = "P1\nP2\nP3\nP4\n";

fn write_fixture(ws: &Ws, searched: Option<&str>) {
    write_fixture_named(ws, searched, &|uid| uid.to_string());
}

/// The fixture with every series uid renamed by `name`.
fn write_fixture_named(ws: &Ws, searched: Option<&str>, name: &dyn Fn(&str) -> String) {
    let det: Vec<DetectionRow> = DETECTIONS
        .iter()
        .enumerate()
        .map(|(k, (uid, xyz, pn, pm))| DetectionRow {
            series_uid: name(uid),
            cluster_id: k as i64 + 1,
            center_xyz: *xyz,
            center_irc: [0, 0, 0],
            prob_nodule: *pn,
            prob_malignant: Some(*pm),
        })
        .collect();
    std::fs::create_dir_all(ws.path("det")).unwrap();
    let _ = std::fs::remove_file(ws.path("det/seriesuids.csv"));
    write_rows(&det, &ws.path("det/detections.parquet")).unwrap();
    if let Some(s) = searched {
        ws.file("det/seriesuids.csv", s);
    }
    let mut cands: Vec<MergedRow> = NODULES
        .iter()
        .map(|(uid, xyz, d, mal)| (name(uid), *xyz, *d, Some(*mal)))
        .chain(
            ["P1", "P2", "P3", "P4"]
                .iter()
                .map(|u| (name(u), [90.0, 90.0, 90.0], 0.0, None)),
        )
        .enumerate()
        .map(
            |(k, (series_uid, center_xyz, diameter_mm, mal))| MergedRow {
                candidate_id: k as i64 + 1,
                series_uid,
                center_xyz,
                is_nodule: mal.is_some(),
                has_annotation: mal.is_some(),
                is_malignant: Some(mal.unwrap_or(false)),
                diameter_mm,
                split: Split::Val,
                subset: None,
            },
        )
        .collect();
    cands.sort_by(|a, b| a.series_uid.cmp(&b.series_uid));
    std::fs::create_dir_all(ws.path("cand")).unwrap();
    write_rows(&cands, &ws.path("cand/candidates.parquet")).unwrap();
}

const PIPELINE: &str = r#"pipeline: d
stages:
  detections:
    uses: command
    with: { run: 'cp det/* "$LUNA_OUT"/', inputs: [det], provides: [detections] }
  candidates:
    uses: command
    with: { run: 'cp cand/* "$LUNA_OUT"/', inputs: [cand], provides: [candidates] }
  diagnosis:
    uses: diagnose
    needs: [detections, candidates]
"#;

#[test]
fn diagnose_counts_searched_series_without_detections_as_patients_and_complete_misses() {
    let ws = Ws::new();
    write_fixture(&ws, Some(SEARCHED));
    ws.pipeline("d", PIPELINE);
    ws.luna(&["run", "d"]).expect_code(0);
    let dir = PathBuf::from(ws.luna(&["path", "d", "diagnosis"]).stdout.trim());
    let dg = read_rows::<DiagnosisRow>(&dir.join("diagnosis.parquet")).unwrap();
    let uids: Vec<String> = dg.iter().map(|r| r.series_uid.clone()).collect();
    assert_eq!(
        uids,
        ["P1", "P2", "P3", "P4"],
        "one row per searched series"
    );
    let score: Vec<f64> = dg.iter().map(|r| r.patient_score).collect();
    // P1: its accepted malignant nodule 0.8; P2: the accepted non-nodule's 0.2; P3, P4: none.
    assert_eq!(score, [0.8, 0.2, 0.0, 0.0]);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("diagnosis.json")).unwrap()).unwrap();
    // Rows Non-Nodules / Benign / Malignant; columns Complete Miss / Filtered Out /
    // Pred. Benign / Pred. Malignant. P3's nodule (no detection in P3) is the complete miss.
    assert_eq!(
        doc["confusion"],
        serde_json::json!([[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]])
    );
    assert_eq!(doc["patients"], 4);
    // P1 (malignant) outranks the three others: AUC 1.
    assert_eq!(doc["per_patient_auc"].as_f64(), Some(1.0));
}

#[test]
fn diagnose_and_report_take_series_uids_with_multibyte_characters() {
    // 'é' and '€' (2 and 3 bytes): the per-series table cut uids at a byte offset and panicked
    let name = |uid: &str| format!("1.2.€é{uid}€€€€");
    let ws = Ws::new();
    let searched: String = ["P1", "P2", "P3", "P4"]
        .iter()
        .map(|u| name(u) + "\n")
        .collect();
    write_fixture_named(&ws, Some(&searched), &name);
    ws.pipeline("d", PIPELINE);
    let out = ws.luna(&["run", "d"]);
    out.expect_code(0);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let dir = PathBuf::from(ws.luna(&["path", "d", "diagnosis"]).stdout.trim());
    let dg = read_rows::<DiagnosisRow>(&dir.join("diagnosis.parquet")).unwrap();
    assert_eq!(dg[0].series_uid, name("P1"));
    let report = ws.luna(&["report"]);
    report.expect_code(0);
    assert!(!report.stderr.contains("panicked"), "{}", report.stderr);
}

fn fails(ws: &Ws, texts: &[&str]) -> Out {
    let out = ws.luna(&["run", "d"]);
    out.expect_code(1);
    for t in texts {
        assert!(out.stderr.contains(t), "missing {t:?} in:\n{}", out.stderr);
    }
    assert!(
        ws.manifests().iter().all(|m| m["stage"] != "diagnosis"),
        "a failed diagnose committed an artifact"
    );
    out
}

#[test]
fn diagnose_refuses_bad_detections_and_ground_truth() {
    let ws = Ws::new();
    ws.pipeline("d", PIPELINE);
    // NaN and out-of-range probabilities (written by pyarrow).
    for (col, row, value, shown) in [
        ("prob_nodule", 1, "nan", "NaN"),
        ("prob_malignant", 0, "1.7", "1.7"),
    ] {
        write_fixture(&ws, Some(SEARCHED));
        parquet_set(&ws.path("det/detections.parquet"), col, row, value);
        fails(
            &ws,
            &[&format!(
                "detections.parquet: row {row} (0-based) of table detections: column {col} is {shown}, not a probability in [0, 1]"
            )],
        );
    }
    // A detection of a series that was not searched.
    write_fixture(&ws, Some("P1\nP3\nP4\n"));
    fails(
        &ws,
        &[
            "detections.parquet: row 1 (0-based): series P2 is not one of the 3 series searched (",
            "hint: seriesuids.csv lists every series the detections come from",
        ],
    );
    // No scan list beside the detections.
    write_fixture(&ws, None);
    fails(
        &ws,
        &["seriesuids.csv: missing: the detections artifact of `detections` does not say which series were searched"],
    );
    // A searched series the ground truth does not know.
    write_fixture(&ws, Some("P1\nP2\nP3\nP4\nP9\n"));
    fails(
        &ws,
        &[
            "seriesuids.csv: series P9 (searched by `detections`) has no candidate in the ground truth table ",
            "hint: bind `candidates:` to the merge_candidates stage of the dataset these CTs come from (now `candidates`)",
        ],
    );
    // A ground truth table without a column.
    write_fixture(&ws, Some(SEARCHED));
    parquet_drop(&ws.path("cand/candidates.parquet"), "diameter_mm");
    fails(
        &ws,
        &["candidates.parquet: column \"diameter_mm\" of table candidates: expected column #8 of type Float64, found no such column"],
    );
}
