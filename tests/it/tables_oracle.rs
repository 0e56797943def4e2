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
    ]);
    obj(v)
}

/// Writes `df` as `table`, reads it back, asserts equality, returns the oracle entry.
fn round_trip(
    dir: &Path,
    file: &str,
    table: Table,
    mut df: polars::prelude::DataFrame,
    rows: Vec<Value>,
) -> Value {
    let path: PathBuf = dir.join(file);
    write_parquet(&mut df, table, &path).expect("write");
    let back = read_parquet(&path, table).expect("read");
    assert!(back.equals_missing(&df), "{file} round trip");
    json!({"path": path.display().to_string(), "table": table.name(), "rows": rows})
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
        val_stride: 2,
        require_on_disk: None,
    };
    let m = merge_rows(&a.rows, &c.rows, &mo).expect("merge");
    let mp = merge_rows(
        &ap.rows,
        &c.rows,
        &MergeOptions {
            rule: MergeRule::DiameterMatch,
            ..mo
        },
    )
    .expect("merge plain");

    let files = vec![
        round_trip(
            d,
            "annotations.parquet",
            Table::Annotations,
            a.frame.clone(),
            a.rows.iter().map(ann_json).collect(),
        ),
        round_trip(
            d,
            "annotations_nomal.parquet",
            Table::Annotations,
            ap.frame.clone(),
            ap.rows.iter().map(ann_json).collect(),
        ),
        round_trip(
            d,
            "candidates_raw.parquet",
            Table::CandidatesRaw,
            c.frame.clone(),
            c.rows.iter().map(cand_json).collect(),
        ),
        round_trip(
            d,
            "candidates.parquet",
            Table::Candidates,
            merged_to_frame(&m).expect("m"),
            m.iter().map(merged_json).collect(),
        ),
        round_trip(
            d,
            "candidates_nomal.parquet",
            Table::Candidates,
            merged_to_frame(&mp).expect("mp"),
            mp.iter().map(merged_json).collect(),
        ),
    ];
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
    assert!(text.contains("5 files OK"), "{text}");
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
    write_parquet(&mut c.frame.clone(), Table::CandidatesRaw, &path).expect("write");
    let err = read_parquet(&path, Table::Candidates).expect_err("wrong table");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: column \"candidate_id\" of table candidates: expected column #0 of type Int64, found no such column (was this written by another luna version or for another table?)",
            path.display()
        )
    );
    // Writing a frame that is not the table's schema is refused before anything is written.
    let other = dir.path().join("x.parquet");
    let err =
        write_parquet(&mut c.frame.clone(), Table::Annotations, &other).expect_err("wrong schema");
    assert!(
        err.to_string()
            .contains("column \"diameter_mm\" of table annotations: expected column #4"),
        "{err}"
    );
    assert!(!other.exists());
}
