//! Artifact tables: loading the LUNA16 CSV files, the schemas of the Parquet tables luna writes
//! (annotations, candidates_raw, candidates, the crop index, predictions, training metrics,
//! clusters, the segmentation sample index),
//! their Parquet IO, and the book's candidate merge.
//!
//! Layout: `csv_split` (line-aware CSV splitter) → `csv` (typed loaders, `file:line` errors) →
//! `rows` (row structs ↔ DataFrames) → `merge` (getCandidateInfoList + series split) →
//! `schema` (single source of the schemas; `schemas/*.json` generated from it) → `parquet`
//! (zstd write/read with schema checks). Everything uses polars' own Arrow (no arrow-rs).
//! Flow: CSV → `read_*_csv` → `write_parquet(annotations / candidates_raw)` →
//! `merge_candidates` → `write_parquet(candidates)`.

mod csv;
mod csv_split;
mod error;
mod merge;
mod parquet;
mod rows;
mod schema;

pub(crate) use csv::{num as parse_finite, read_text};
pub use csv::{
    parse_bool, read_annotations_csv, read_candidates_csv, AnnotationsKind, CsvLoad, CsvOptions,
};
pub(crate) use csv_split::Records;
pub use error::{BadRow, BadRowReason, TableError, MAX_REPORTED_ROWS};
pub use merge::{
    candidate_id, merge_candidates, merge_rows, require_malignancy, sort_like_book, split_series,
    MergeOptions, MergeRule,
};
pub use parquet::{read_parquet, write_parquet};
pub use rows::{
    annotations_from_frame, annotations_to_frame, candidates_raw_from_frame,
    candidates_raw_to_frame, classifier_metrics_to_frame, clusters_from_frame, clusters_to_frame,
    detections_from_frame, detections_to_frame, diagnosis_from_frame, diagnosis_to_frame,
    merged_from_frame, merged_to_frame, predictions_from_frame, predictions_to_frame,
    seg_index_from_frame, seg_index_to_frame, seg_metrics_to_frame, AnnotationRow, CandidateRow,
    ClassifierMetricsRow, ClusterRow, DetectionRow, DiagnosisRow, MergedRow, PredictionRow,
    SegIndexRow, SegMetricsRow, Split,
};
pub use schema::{
    check_frame, schema_json, schema_json_text, schema_of, ArrowType, ColumnSpec, Table, ValueRule,
};
