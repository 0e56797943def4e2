//! Parquet round trips of every table, schema errors naming the file, and the pyarrow oracle
//! (`tests/oracle/tables_check.py`): types, nullability, zstd and values read independently.

use std::path::{Path, PathBuf};
use std::process::Command;

use luna::tables::*;
use serde_json::{json, Value};

use super::tables_support::{write, ANNOTATIONS_MAL, ANNOTATIONS_PLAIN, CANDIDATES};
use crate::py::python;

fn xyz(c: [f64; 3]) -> [(&'static str, Value); 3] {
    [
        ("coord_x", json!(c[0])),
        ("coord_y", json!(c[1])),
        ("coord_z", json!(c[2])),
    ]
}

fn obj(pairs: Vec<(&'static str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn ann_json(r: &AnnotationRow) -> Value {
    let mut v = vec![("series_uid", json!(r.series_uid))];
    v.extend(xyz(r.center_xyz));
    v.extend([
        ("diameter_mm", json!(r.diameter_mm)),
        ("is_malignant", json!(r.is_malignant)),
        ("source_line", json!(r.source_line)),
    ]);
    obj(v)
}

fn cand_json(r: &CandidateRow) -> Value {
    let mut v = vec![("series_uid", json!(r.series_uid))];
    v.extend(xyz(r.center_xyz));
    v.extend([
        ("class", json!(r.class)),
        ("source_line", json!(r.source_line)),
    ]);
    obj(v)
}

fn merged_json(r: &MergedRow) -> Value {
    let mut v = vec![
        ("candidate_id", json!(r.candidate_id)),
        ("series_uid", json!(r.series_uid)),
    ];
    v.extend(xyz(r.center_xyz));
    v.extend([
        ("is_nodule", json!(r.is_nodule)),
        ("has_annotation", json!(r.has_annotation)),
        ("is_malignant", json!(r.is_malignant)),
        ("diameter_mm", json!(r.diameter_mm)),
        ("split", json!(r.split.as_str())),
        ("subset", json!(r.subset)),
    ]);
    obj(v)
}

/// Writes `rows`, reads them back, asserts equality, returns the oracle entry (`json`: the
/// rows as pyarrow must read them, or null to check types and compression only).
fn round_trip<R: Row + PartialEq + std::fmt::Debug>(
    dir: &Path,
    file: &str,
    rows: &[R],
    json: Option<Vec<Value>>,
) -> Value {
    let path: PathBuf = dir.join(file);
    write_rows(rows, &path).expect("write");
    let back = read_rows::<R>(&path).expect("read");
    assert_eq!(back, rows, "{file} round trip");
    json!({"path": path.display().to_string(), "table": R::TABLE.name(), "rows": json})
}

/// One or two rows of every table without a CSV source (nulls where a column allows them), for
/// the oracle's type checks.
fn other_tables(d: &Path) -> Vec<Value> {
    let uid = || "1.2.3".to_string();
    let seg = SegMetrics {
        loss: 0.5,
        precision: 0.25,
        recall: 0.75,
        f1: 0.375,
        tp_percent: 75.0,
        fn_percent: 25.0,
        fp_percent: 225.0,
        label_pixels: 40,
    };
    vec![
        round_trip(
            d,
            "index.parquet",
            &[CropIndexRow {
                candidate_id: 7,
                series_uid: uid(),
                file: "crops/1.2.3.h5".into(),
                row: 0,
                center_irc: [1, 2, 3],
                is_nodule: true,
                has_annotation: true,
                is_malignant: None,
                diameter_mm: 4.5,
                split: Split::Val,
            }],
            None,
        ),
        round_trip(
            d,
            "predictions.parquet",
            &[PredictionRow {
                candidate_id: 7,
                series_uid: uid(),
                label: true,
                probability: 0.5,
            }],
            None,
        ),
        round_trip(
            d,
            "metrics.parquet",
            &[ClassifierMetricsRow {
                epoch: 1,
                total_samples: 96,
                phase: "val".into(),
                loss: 0.5,
                loss_neg: 0.25,
                loss_pos: 1.0,
                precision: 0.5,
                recall: 0.5,
                f1: 0.5,
                neg_correct: 3,
                neg_count: 4,
                pos_correct: 1,
                pos_count: 2,
                auc: None,
                samples_per_sec: 100.0,
                data_wait_fraction: 0.125,
            }],
            None,
        ),
        round_trip(
            d,
            "seg_metrics.parquet",
            &[SegMetricsRow {
                epoch: 1,
                total_samples: 8,
                phase: "trn".into(),
                metrics: seg,
                samples_per_sec: 10.0,
                data_wait_fraction: 0.0,
            }],
            None,
        ),
        round_trip(
            d,
            "clusters.parquet",
            &[ClusterRow {
                series_uid: uid(),
                cluster_id: 1,
                center_xyz: [1.0, 2.0, 3.0],
                center_irc: [4.5, 5.5, 6.5],
                voxels: 9,
                prob_max: 0.9,
                prob_mean: 0.7,
                bbox: [1, 2, 3, 4, 5, 6],
            }],
            None,
        ),
        round_trip(
            d,
            "seg_index.parquet",
            &[SegIndexRow {
                series_uid: uid(),
                split: Split::Train,
                file: "seg/1.2.3.h5".into(),
                dataset: Split::Val,
                row: 0,
                slice: 4,
                center_r: 32,
                center_c: 32,
                label_pixels: 12,
            }],
            None,
        ),
        round_trip(
            d,
            "detections.parquet",
            &[
                DetectionRow {
                    series_uid: uid(),
                    cluster_id: 1,
                    center_xyz: [1.0, 2.0, 3.0],
                    center_irc: [4, 5, 6],
                    prob_nodule: 0.75,
                    prob_malignant: None,
                },
                DetectionRow {
                    series_uid: uid(),
                    cluster_id: 2,
                    center_xyz: [1.0, 2.0, 3.0],
                    center_irc: [4, 5, 6],
                    prob_nodule: 0.25,
                    prob_malignant: Some(0.5),
                },
            ],
            None,
        ),
        round_trip(
            d,
            "diagnosis.parquet",
            &[DiagnosisRow {
                series_uid: uid(),
                nodules: 1,
                patient_score: 0.5,
                predicted_malignant: true,
                truth_nodules: None,
                truth_malignant: Some(false),
            }],
            None,
        ),
    ]
}

#[test]
fn every_table_round_trips_and_matches_pyarrow_oracle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let o = CsvOptions::default();
    let a = read_annotations_csv(
        &write(d, "am.csv", ANNOTATIONS_MAL),
        AnnotationsKind::WithMalignancy,
        o,
    )
    .expect("a");
    let ap = read_annotations_csv(
        &write(d, "ap.csv", ANNOTATIONS_PLAIN),
        AnnotationsKind::Plain,
        o,
    )
    .expect("ap");
    let c = read_candidates_csv(&write(d, "c.csv", CANDIDATES), o).expect("c");
    let mo = MergeOptions {
        rule: MergeRule::Final,
        split: SplitSpec::Stride { val_stride: 2 },
        require_on_disk: None,
        subsets: None,
    };
    let m = merge_rows(&a.rows, &c.rows, &mo).expect("merge");
    let mp = merge_rows(
        &ap.rows,
        &c.rows,
        &MergeOptions {
            rule: MergeRule::DiameterMatch,
            ..mo.clone()
        },
    )
    .expect("merge plain");

    let mut files = vec![
        round_trip(
            d,
            "annotations.parquet",
            &a.rows,
            Some(a.rows.iter().map(ann_json).collect()),
        ),
        round_trip(
            d,
            "annotations_nomal.parquet",
            &ap.rows,
            Some(ap.rows.iter().map(ann_json).collect()),
        ),
        round_trip(
            d,
            "candidates_raw.parquet",
            &c.rows,
            Some(c.rows.iter().map(cand_json).collect()),
        ),
        round_trip(
            d,
            "candidates.parquet",
            &m,
            Some(m.iter().map(merged_json).collect()),
        ),
        round_trip(
            d,
            "candidates_nomal.parquet",
            &mp,
            Some(mp.iter().map(merged_json).collect()),
        ),
    ];
    files.extend(other_tables(d));
    let expected = d.join("expected.json");
    std::fs::write(
        &expected,
        serde_json::to_vec(&json!({"files": files})).expect("json"),
    )
    .expect("write expected");

    let root = Path::new(crate::REPO);
    let py = python();
    let out = Command::new(&py)
        .arg(root.join("tests/oracle/tables_check.py"))
        .arg(root.join("schemas"))
        .arg(&expected)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python {} (set LUNA_PYTHON): {e}", py.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "pyarrow oracle failed:\n{text}");
    assert!(text.contains("13 files OK"), "{text}");
}

#[test]
fn reading_with_the_wrong_schema_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = read_candidates_csv(
        &write(dir.path(), "c.csv", CANDIDATES),
        CsvOptions::default(),
    )
    .expect("c");
    let path = dir.path().join("candidates_raw.parquet");
    write_rows(&c.rows, &path).expect("write");
    let err = read_rows::<MergedRow>(&path).expect_err("wrong table");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: column \"candidate_id\" of table candidates: expected column #0 of type Int64, found no such column (was this written by another luna version or for another table?)",
            path.display()
        )
    );
    // Writing a value that breaks its column's rule is refused, and nothing is left behind.
    let other = dir.path().join("x.parquet");
    let mut bad = c.rows.clone();
    bad[1].center_xyz[1] = f64::NAN;
    let err = write_rows(&bad, &other).expect_err("NaN coordinate");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: row 1 (0-based) of table candidates_raw: column coord_y is NaN, not a finite number",
            other.display()
        )
    );
    assert!(!other.exists());
    assert!(!dir.path().join("x.parquet.tmp").exists());
}
