//! The schemas of the Parquet tables luna writes: [`schema_of`] gives a table's columns, taken
//! from its row type's column list (`rows.rs`, the single source);
//! `schemas/<table>.schema.json` is generated from it by [`schema_json`] (a unit test fails when
//! the files are stale; run it with `LUNA_UPDATE_SCHEMAS=1` to rewrite them).
//!
//! Comparison rules (also written into every JSON file, key `type_rules`):
//! - `Utf8` means any Arrow string type: luna writes BYTE_ARRAY with the String logical type
//!   (pyarrow reads `string`); readers may give `string`, `large_string` or `string_view`, and
//!   all count as `Utf8`.
//! - `nullable: false` is a contract on the values (the column never holds a null), checked on
//!   read. luna writes such a column REQUIRED (the Arrow field is not nullable); other writers
//!   (pyarrow) mark every column optional, which is accepted when it holds no null.
//! - Column order is part of the schema; extra columns are rejected.
//! - `values` (world coordinates: finite; probabilities: in [0, 1]) is checked with the types,
//!   so a NaN coordinate written by another tool is an error naming the file, column and row
//!   when a stage reads it, not a crop at a nonsense place. Rejected: checking in each stage
//!   (every reader of the table would need to remember it).

use serde_json::{json, Value};

use super::columns::Row;
use super::rows::{
    AnnotationRow, CandidateRow, ClassifierMetricsRow, ClusterRow, CropIndexRow, DetectionRow,
    DiagnosisRow, MergedRow, PredictionRow, SegIndexRow, SegMetricsRow,
};

/// The Arrow type of a column, named as in Arrow (`pyarrow` prints `string`, `double`, `bool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrowType {
    /// UTF-8 string (any of string / large_string / string_view).
    Utf8,
    /// 64-bit float.
    Float64,
    /// Boolean.
    Boolean,
    /// Signed 64-bit integer.
    Int64,
    /// Signed 8-bit integer.
    Int8,
}

impl ArrowType {
    /// The Arrow type name written in the JSON schema files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Utf8 => "Utf8",
            Self::Float64 => "Float64",
            Self::Boolean => "Boolean",
            Self::Int64 => "Int64",
            Self::Int8 => "Int8",
        }
    }
}

/// What a Float64 column's values must be (checked with the schema, on write and on read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueRule {
    /// Any finite number (world coordinates).
    Finite,
    /// A probability: finite and in [0, 1].
    Probability,
}

impl ValueRule {
    /// The rule as the schema files and errors write it.
    pub fn text(self) -> &'static str {
        match self {
            Self::Finite => "a finite number",
            Self::Probability => "a probability in [0, 1]",
        }
    }

    /// Whether `v` keeps the rule.
    pub(crate) fn holds(self, v: f64) -> bool {
        match self {
            Self::Finite => v.is_finite(),
            Self::Probability => (0.0..=1.0).contains(&v),
        }
    }
}

/// One column of a table schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name.
    pub name: &'static str,
    /// Arrow type.
    pub dtype: ArrowType,
    /// Whether nulls are allowed.
    pub nullable: bool,
    /// What the column means.
    pub description: &'static str,
    /// What its (non-null) values must be, beyond the type.
    pub values: Option<ValueRule>,
}

/// The Parquet tables luna writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    /// annotations.parquet: the annotations CSV, typed.
    Annotations,
    /// candidates_raw.parquet: the candidates CSV, typed.
    CandidatesRaw,
    /// candidates.parquet: the merged, split table models train on.
    Candidates,
    /// index.parquet: where each candidate's crop is in a build_crops artifact.
    CropIndex,
    /// predictions.parquet: a classifier's probability per candidate (evaluate_classifier).
    Predictions,
    /// metrics.parquet: one row per epoch and phase of a classifier's training.
    ClassifierMetrics,
    /// clusters.parquet: nodule candidates found by clustering segmented voxels.
    Clusters,
    /// metrics.parquet of a segmentation training (schema file seg_metrics.schema.json).
    SegMetrics,
    /// seg_index.parquet: the samples of a seg_dataset artifact.
    SegIndex,
    /// detections.parquet: clusters classified as nodule / malignant (classify_candidates).
    Detections,
    /// diagnosis.parquet: one verdict per patient (series) of a diagnose artifact.
    Diagnosis,
}

impl Table {
    /// All tables, in documentation order.
    pub const ALL: [Table; 11] = [
        Table::Annotations,
        Table::CandidatesRaw,
        Table::Candidates,
        Table::CropIndex,
        Table::Predictions,
        Table::ClassifierMetrics,
        Table::Clusters,
        Table::SegMetrics,
        Table::SegIndex,
        Table::Detections,
        Table::Diagnosis,
    ];

    /// The table name (also the stem of its Parquet and schema files).
    pub fn name(self) -> &'static str {
        match self {
            Self::Annotations => "annotations",
            Self::CandidatesRaw => "candidates_raw",
            Self::Candidates => "candidates",
            Self::CropIndex => "index",
            Self::Predictions => "predictions",
            Self::ClassifierMetrics => "metrics",
            Self::Clusters => "clusters",
            Self::SegMetrics => "seg_metrics",
            Self::SegIndex => "seg_index",
            Self::Detections => "detections",
            Self::Diagnosis => "diagnosis",
        }
    }

    /// The Parquet file name, e.g. `candidates.parquet` (a training artifact's history is
    /// `metrics.parquet` whatever its task).
    pub fn file_name(self) -> String {
        match self {
            Self::SegMetrics => "metrics.parquet".into(),
            _ => format!("{}.parquet", self.name()),
        }
    }

    /// One-paragraph description for the schema file.
    pub fn description(self) -> &'static str {
        match self {
            Self::Annotations => "LUNA16 annotations (annotations.csv, annotations_with_malignancy.csv or annotations_excluded.csv), typed; one row per valid CSV row, in file order.",
            Self::CandidatesRaw => "LUNA16 candidates (candidates.csv or candidates_V2.csv), typed; one row per valid CSV row, in file order.",
            Self::Candidates => "Merged candidate table models train on (book getCandidateInfoList): rows sorted like the book (reverse tuple order), split into train/val by series. candidate_id = first 63 bits of blake3(\"luna.candidate.v1\", source, series_uid, centre f64 bits, duplicate ordinal): stable across runs and unaffected by unrelated rows.",
            Self::CropIndex => "Crop index of a build_crops artifact: one row per candidate of candidates.parquet, naming the HDF5 file (relative to the artifact) and row of its crop (dataset `crops`, int16 HU clipped to [-1000, 1000], one sample per chunk, zstd filter 32015), the crop centre in voxel coordinates and the candidate's labels and split. Rows are grouped by series; within a series ordered by centre.",
            Self::Predictions => "Predictions of an evaluate_classifier artifact: one row per scored candidate of the chosen split, in crop-index order. `probability` is the model's softmax P(positive); a candidate counts as predicted positive when probability >= the stage's threshold (sklearn's predict_proba >= t convention).",
            Self::ClassifierMetrics => "Training history of a train_classifier artifact: one row per epoch and phase (`trn` = the augmented training pass in train mode, `val` = the validation pass in eval mode, present at epoch 1, every validate_every-th epoch and the last). Book p2ch14 metric names; predicted positive when P(positive) >= 0.5.",
            Self::SegIndex => "Sample index of a seg_dataset artifact: one row per segmentation sample, naming the per-series HDF5 file (relative to the artifact), the dataset group (`train`: train_input/train_label, one 2k+1 x crop x crop sample per annotated nodule of a training series, in candidates.parquet order; `val`: val_input/val_label, full 2k+1 x R x C context slices of a validation series' positive slices, or of every slice) and the row in it. Rows sorted by series_uid, then by row.",
            Self::Diagnosis => "Per-patient diagnosis of a diagnose artifact: one row per series searched (the detections artifact's seriesuids.csv), with or without detections. A detection is a nodule when P(nodule) >= nodule_threshold; the patient score is the highest P(malignant) of its nodules (or noisy-OR), predicted malignant when >= malignancy_threshold. Truth columns are null without a candidates table.",
            Self::Detections => "Detections of a classify_candidates artifact: every cluster of the segmentation, cropped from its CT with the build_crops rule (the window shifted inside the volume) and scored by the nodule classifier (and the malignancy classifier when given). Rows sorted by series_uid, then cluster_id.",
            Self::Clusters => "Clusters of a cluster artifact (book groupSegmentationOutput): per series, the 6-connected components of the probability volume thresholded (p > threshold) and eroded once with the 6-connected cross (scipy.ndimage semantics), numbered 1.. in raster order of their first voxel; the centre is the centre of mass weighted by the CT's HU clipped to [-1000, 1000] plus 1001, converted to world mm with the full direction matrix. Rows sorted by series_uid, then cluster_id.",
            Self::SegMetrics => "Training history of a train_segmentation artifact (file metrics.parquet): one row per epoch and phase (`trn` = the augmented 64x64 training crops in train mode, `val` = the full positive slices of the validation series in eval mode). Pixel counts at p > 0.5 (the threshold cluster uses); tp/fn/fp percentages are of the label pixels (so fp can exceed 100), as the book logs them.",
        }
    }
}

/// The columns of `table`, in order: its row type's column list (see `rows.rs`).
pub fn schema_of(table: Table) -> Vec<ColumnSpec> {
    match table {
        Table::Annotations => AnnotationRow::columns(),
        Table::CandidatesRaw => CandidateRow::columns(),
        Table::Candidates => MergedRow::columns(),
        Table::CropIndex => CropIndexRow::columns(),
        Table::Predictions => PredictionRow::columns(),
        Table::ClassifierMetrics => ClassifierMetricsRow::columns(),
        Table::Clusters => ClusterRow::columns(),
        Table::SegMetrics => SegMetricsRow::columns(),
        Table::SegIndex => SegIndexRow::columns(),
        Table::Detections => DetectionRow::columns(),
        Table::Diagnosis => DiagnosisRow::columns(),
    }
}

/// The JSON document stored as `schemas/<table>.schema.json`.
pub fn schema_json(table: Table) -> Value {
    let columns: Vec<Value> = schema_of(table)
        .iter()
        .map(|c| {
            let mut v = json!({"name": c.name, "type": c.dtype.name(), "nullable": c.nullable, "description": c.description});
            if let Some(r) = c.values {
                v["values"] = json!(r.text());
            }
            v
        })
        .collect();
    json!({
        "table": table.name(),
        "file": table.file_name(),
        "format": "Parquet, zstd",
        "description": table.description(),
        "type_rules": [
            "Utf8 = any Arrow string type (string, large_string, string_view); luna writes BYTE_ARRAY with the String logical type (string)",
            "nullable=false: the column holds no nulls (checked on read); luna writes it REQUIRED, other writers (pyarrow) may mark it optional",
            "column order is part of the schema; extra columns are rejected",
            "values: what every non-null value of the column must be (checked on write and read)"
        ],
        "columns": columns,
    })
}

/// The pretty-printed text of `schemas/<table>.schema.json` (with a trailing newline).
pub fn schema_json_text(table: Table) -> String {
    let mut s = serde_json::to_string_pretty(&schema_json(table))
        .expect("a serde_json Value always serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_files_match_rust_definitions() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let update = std::env::var_os("LUNA_UPDATE_SCHEMAS").is_some();
        for t in Table::ALL {
            let path = dir.join(format!("{}.schema.json", t.name()));
            let want = schema_json_text(t);
            if update {
                std::fs::write(&path, &want).expect("LUNA_UPDATE_SCHEMAS: schemas/ is writable");
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                have,
                want,
                "{} is stale: rerun with LUNA_UPDATE_SCHEMAS=1",
                path.display()
            );
        }
    }

    #[test]
    fn names_are_unique() {
        for t in Table::ALL {
            let s = schema_of(t);
            let mut names: Vec<_> = s.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), s.len(), "{}", t.name());
        }
    }
}
