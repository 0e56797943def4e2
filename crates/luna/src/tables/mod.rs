//! Artifact tables: loading the LUNA16 CSV files, the row types and schemas of the Parquet
//! tables luna writes (annotations, candidates_raw, candidates, the crop index, predictions,
//! training metrics, clusters, the segmentation sample index, detections, diagnosis), their
//! Parquet IO, and the book's candidate merge.
//!
//! Layout: `csv_split` (line-aware CSV splitter) → `csv` (typed loaders, `file:line` errors) →
//! `columns` (the [`columns!`](columns::columns) macro and the traits behind it) → `rows` (one
//! declaration per table: the row struct IS the column list) → `schema` (table names and
//! descriptions; `schemas/*.json` generated from the column lists) → `parquet` (typed write /
//! read with schema checks) → `merge` (getCandidateInfoList + series split).
//! Flow: CSV → `read_*_csv` → `write_rows(annotations / candidates_raw)` → `merge_rows` →
//! `write_rows(candidates)`; every stage reads with `read_rows::<TheRow>(path)`.
//!
//! Design:
//! - **One column list per table.** A row struct declared with `columns!` gives, from one field
//!   list, the schema (names, order, Arrow types, nullability from `Option`, descriptions, value
//!   rules), the writer and the reader; the table is known from the row type
//!   ([`Row::TABLE`]), so `write_rows(&rows, path)` cannot write a table under another's name.
//! - **Parquet through the `parquet` crate's low-level API** (`SerializedFileWriter` with typed
//!   column writers, `SerializedFileReader` with typed column readers), without its `arrow`
//!   feature: our tables are small, flat and typed, so Arrow arrays would only be a detour
//!   between `Vec<Row>` and the column writers. zstd level 3; strings are BYTE_ARRAY with the
//!   String logical type, int8 is INT32 with the Integer(8) logical type, so pyarrow reads the
//!   types the schema files name (`tests/oracle/tables_check.py` checks it).
//! - Rejected: polars (used before: ~8 min of a 20 min release build on 2 cores, and it pulled
//!   in object_store, reqwest and tokio's cloud stack, for Parquet IO of tables that never
//!   needed a query engine; its DataFrame boundary also meant nine hand-written row↔frame
//!   pairs); the `arrow` feature of `parquet` (arrow-array/-select/-ipc add build time and a
//!   second representation, for nothing the low-level API cannot do here); serde-based row
//!   mapping (see `columns.rs`).
//! - Writes are atomic (`<path>.tmp`, renamed) and keep the file's own I/O error (a full disk is
//!   `ErrorKind::StorageFull`); reads check names, order and types first and name the file and
//!   column on a mismatch; value rules (finite coordinates, probabilities) hold on both sides.

pub(crate) mod columns;
mod csv;
mod csv_split;
mod error;
mod merge;
pub(crate) mod parquet;
mod rows;
mod schema;
mod split;

pub use columns::{col, Cell, CellError, ColDoc, Field, Flatten, Row};
pub(crate) use csv::{num as parse_finite, read_text};
pub use csv::{
    parse_bool, read_annotations_csv, read_candidates_csv, AnnotationsKind, CsvLoad, CsvOptions,
};
pub(crate) use csv_split::Records;
pub use error::{BadRow, BadRowReason, TableError, MAX_REPORTED_ROWS};
pub use merge::{
    candidate_id, merge_candidates, merge_rows, require_malignancy, sort_like_book, MergeOptions,
    MergeRule,
};
pub use parquet::{read_rows, write_rows, ColumnSink, ColumnSource};
pub use rows::{
    AnnotationRow, CandidateRow, ClassifierMetricsRow, ClusterRow, CropIndexRow, DetectionRow,
    DiagnosisRow, MergedRow, PredictionRow, SegIndexRow, SegMetrics, SegMetricsRow, Split,
};
pub use schema::{
    schema_json, schema_json_text, schema_of, ArrowType, ColumnSpec, Table, ValueRule,
};
pub use split::{assign_splits, SplitChoice, SplitSpec, ValRule, ValSubsets};
