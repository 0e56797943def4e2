//! The schemas of the Parquet tables luna writes: the single source of truth is [`schema_of`];
//! `schemas/<table>.schema.json` is generated from it by [`schema_json`] (a unit test fails when
//! the files are stale; run it with `LUNA_UPDATE_SCHEMAS=1` to rewrite them).
//!
//! Comparison rules (also written into every JSON file, key `type_rules`):
//! - `Utf8` means any Arrow string type: polars writes `string_view` into the embedded Arrow
//!   schema, and readers may give `string`, `large_string` or `string_view`; all count as `Utf8`.
//! - `nullable: false` is a contract on the values (the column never holds a null), checked on
//!   read. Polars marks every Parquet field as optional, so the Arrow field flag read back by
//!   other tools is always nullable and is not compared.
//! - Column order is part of the schema; extra columns are rejected.
//! - `values` (world coordinates: finite; probabilities: in [0, 1]) is checked with the types,
//!   so a NaN coordinate written by another tool is an error naming the file, column and row
//!   when a stage reads it, not a crop at a nonsense place. Rejected: checking in each stage
//!   (every reader of the table would need to remember it).

use polars::prelude::{DataFrame, DataType};
use serde_json::{json, Value};

use super::error::TableError;

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

    /// The polars dtype a frame column of this type has.
    pub fn polars(self) -> DataType {
        match self {
            Self::Utf8 => DataType::String,
            Self::Float64 => DataType::Float64,
            Self::Boolean => DataType::Boolean,
            Self::Int64 => DataType::Int64,
            Self::Int8 => DataType::Int8,
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

    fn holds(self, v: f64) -> bool {
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

impl ColumnSpec {
    const fn rule(self, r: ValueRule) -> ColumnSpec {
        ColumnSpec {
            values: Some(r),
            ..self
        }
    }
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

const fn col(
    name: &'static str,
    dtype: ArrowType,
    nullable: bool,
    description: &'static str,
) -> ColumnSpec {
    ColumnSpec {
        name,
        dtype,
        nullable,
        description,
        values: None,
    }
}

const UID: ColumnSpec = col(
    "series_uid",
    ArrowType::Utf8,
    false,
    "LUNA16 series UID (the .mhd file stem)",
);
const X: ColumnSpec = col(
    "coord_x",
    ArrowType::Float64,
    false,
    "centre x, world mm (ITK physical coordinates, as in the CSV)",
)
.rule(ValueRule::Finite);
const Y: ColumnSpec =
    col("coord_y", ArrowType::Float64, false, "centre y, world mm").rule(ValueRule::Finite);
const Z: ColumnSpec =
    col("coord_z", ArrowType::Float64, false, "centre z, world mm").rule(ValueRule::Finite);
const LINE: ColumnSpec = col(
    "source_line",
    ArrowType::Int64,
    false,
    "1-based line of the row in the source CSV (header = line 1)",
);

/// The columns of `table`, in order: the single source of the schema.
pub fn schema_of(table: Table) -> Vec<ColumnSpec> {
    use ArrowType::*;
    match table {
        Table::Annotations => vec![
            UID, X, Y, Z,
            col("diameter_mm", Float64, false, "nodule diameter in mm (-1 only in annotations_excluded.csv)"),
            col("is_malignant", Boolean, true, "mal_bool of annotations_with_malignancy.csv; null when the file has no mal_bool column"),
            LINE,
        ],
        Table::CandidatesRaw => vec![
            UID, X, Y, Z,
            col("class", Int8, false, "the CSV class column: 1 = nodule candidate, 0 = not"),
            LINE,
        ],
        Table::Candidates => vec![
            col("candidate_id", Int64, false, "stable content-derived id, >= 0 (see table description)"),
            UID, X, Y, Z,
            col("is_nodule", Boolean, false, "positive sample (final rule: an annotation row; diameter_match rule: class == 1)"),
            col("has_annotation", Boolean, false, "final rule: equals is_nodule; diameter_match rule: an annotation box matched"),
            col("is_malignant", Boolean, true, "malignancy label; false for negatives; null when no malignancy labels were loaded"),
            col("diameter_mm", Float64, false, "annotation diameter in mm; 0.0 when none"),
            col("split", Utf8, false, "\"train\" or \"val\"; by series: sorted unique series_uid, every val_stride-th (index 0 first) is val"),
        ],
        Table::CropIndex => vec![
            col("candidate_id", Int64, false, "candidate_id of candidates.parquet"),
            UID,
            col("file", Utf8, false, "HDF5 file holding the crop, relative to the artifact directory (crops/<series_uid>.h5)"),
            col("row", Int64, false, "row of the crop in that file's `crops` dataset"),
            col("center_i", Int64, false, "crop centre, voxel index (slice) after xyz->irc with the full direction matrix, round half to even"),
            col("center_r", Int64, false, "crop centre, voxel row"),
            col("center_c", Int64, false, "crop centre, voxel column"),
            col("is_nodule", Boolean, false, "as in candidates.parquet"),
            col("has_annotation", Boolean, false, "as in candidates.parquet"),
            col("is_malignant", Boolean, true, "as in candidates.parquet"),
            col("diameter_mm", Float64, false, "as in candidates.parquet"),
            col("split", Utf8, false, "as in candidates.parquet"),
        ],
        Table::Predictions => vec![
            col("candidate_id", Int64, false, "candidate_id of candidates.parquet"),
            UID,
            col("label", Boolean, false, "ground truth of the task: is_nodule (nodule task) or is_malignant (malignancy task)"),
            col("probability", Float64, false, "model probability of the positive class, in [0, 1]").rule(ValueRule::Probability),
        ],
        Table::ClassifierMetrics => vec![
            col("epoch", Int64, false, "1-based epoch"),
            col("total_samples", Int64, false, "training samples seen after this epoch (the book's TensorBoard x-axis)"),
            col("phase", Utf8, false, "\"trn\" or \"val\""),
            col("loss", Float64, false, "mean per-sample cross-entropy (book loss/all)"),
            col("loss_neg", Float64, false, "mean loss over negatives (0 when none)"),
            col("loss_pos", Float64, false, "mean loss over positives (0 when none)"),
            col("precision", Float64, false, "TP / (TP + FP), 0 when undefined"),
            col("recall", Float64, false, "TP / (TP + FN), 0 when undefined"),
            col("f1", Float64, false, "harmonic mean of precision and recall, 0 when undefined"),
            col("neg_correct", Int64, false, "true negatives"),
            col("neg_count", Int64, false, "negatives"),
            col("pos_correct", Int64, false, "true positives"),
            col("pos_count", Int64, false, "positives"),
            col("auc", Float64, true, "exact ROC AUC; null when one class is absent"),
            col("samples_per_sec", Float64, false, "throughput of the pass"),
            col("data_wait_fraction", Float64, false, "fraction of the pass the model waited for batches"),
        ],
        Table::SegMetrics => vec![
            col("epoch", Int64, false, "1-based epoch"),
            col("total_samples", Int64, false, "training samples seen after this epoch"),
            col("phase", Utf8, false, "\"trn\" or \"val\""),
            col("loss", Float64, false, "mean of the per-sample loss: soft Dice loss + 8 x the Dice loss over label pixels (book)"),
            col("precision", Float64, false, "TP / (TP + FP) pixels, 0 when undefined"),
            col("recall", Float64, false, "TP / (TP + FN) pixels, 0 when undefined (the best-model score)"),
            col("f1", Float64, false, "harmonic mean of precision and recall, 0 when undefined"),
            col("tp_percent", Float64, false, "TP as % of label pixels"),
            col("fn_percent", Float64, false, "FN as % of label pixels"),
            col("fp_percent", Float64, false, "FP as % of label pixels"),
            col("label_pixels", Int64, false, "label pixels of the pass"),
            col("samples_per_sec", Float64, false, "throughput of the pass"),
            col("data_wait_fraction", Float64, false, "fraction of the pass the model waited for batches"),
        ],
        Table::SegIndex => vec![
            UID,
            col("split", Utf8, false, "\"train\" or \"val\", the series' split in candidates.parquet"),
            col("file", Utf8, false, "HDF5 file of the series, relative to the artifact directory (seg/<series_uid>.h5)"),
            col("dataset", Utf8, false, "\"train\" (datasets train_input/train_label) or \"val\" (val_input/val_label)"),
            col("row", Int64, false, "row of the sample in those datasets"),
            col("slice", Int64, false, "centre slice index of the sample's context slices"),
            col("center_r", Int64, false, "train: the nodule centre's voxel row (xyz->irc, round half to even); val: R / 2"),
            col("center_c", Int64, false, "train: the nodule centre's voxel column; val: C / 2"),
            col("label_pixels", Int64, false, "mask voxels in the sample's label"),
        ],
        Table::Diagnosis => vec![
            UID,
            col("nodules", Int64, false, "detections accepted as nodules (P(nodule) >= nodule_threshold)"),
            col("patient_score", Float64, false, "max (or noisy-OR) P(malignant) over the accepted nodules; 0 when none"),
            col("predicted_malignant", Boolean, false, "patient_score >= malignancy_threshold"),
            col("truth_nodules", Int64, true, "annotated nodules of the series (null without ground truth)"),
            col("truth_malignant", Boolean, true, "the series has a malignant nodule (null without ground truth)"),
        ],
        Table::Detections => vec![
            UID,
            col("cluster_id", Int64, false, "cluster_id of clusters.parquet"),
            X, Y, Z,
            col("center_i", Int64, false, "crop centre, voxel index (xyz->irc of the cluster centre, round half to even)"),
            col("center_r", Int64, false, "crop centre, voxel row"),
            col("center_c", Int64, false, "crop centre, voxel column"),
            col("prob_nodule", Float64, false, "nodule classifier's P(nodule)").rule(ValueRule::Probability),
            col("prob_malignant", Float64, true, "malignancy classifier's P(malignant); null without a malignancy model").rule(ValueRule::Probability),
        ],
        Table::Clusters => vec![
            UID,
            col("cluster_id", Int64, false, "scipy.ndimage.label's label, 1-based, raster order of the first voxel"),
            X, Y, Z,
            col("center_i", Float64, false, "centre of mass, continuous voxel index (slice)"),
            col("center_r", Float64, false, "centre of mass, continuous voxel row"),
            col("center_c", Float64, false, "centre of mass, continuous voxel column"),
            col("voxels", Int64, false, "voxels of the component (after erosion)"),
            col("prob_max", Float64, false, "highest probability of its voxels").rule(ValueRule::Probability),
            col("prob_mean", Float64, false, "mean probability of its voxels").rule(ValueRule::Probability),
            col("bbox_i0", Int64, false, "bounding box, first slice"),
            col("bbox_i1", Int64, false, "bounding box, last slice (inclusive)"),
            col("bbox_r0", Int64, false, "bounding box, first row"),
            col("bbox_r1", Int64, false, "bounding box, last row (inclusive)"),
            col("bbox_c0", Int64, false, "bounding box, first column"),
            col("bbox_c1", Int64, false, "bounding box, last column (inclusive)"),
        ],
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
        "format": "Parquet, zstd, written by polars",
        "description": table.description(),
        "type_rules": [
            "Utf8 = any Arrow string type (string, large_string, string_view); polars writes string_view",
            "nullable=false: the column holds no nulls (checked on read); the Arrow field flag is always nullable in polars output and is not compared",
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

/// Checks that `df` has exactly the columns of `table` (names, order, dtypes, no nulls in
/// non-nullable columns); `what` names the file or frame in the error.
pub fn check_frame(df: &DataFrame, table: Table, what: &str) -> Result<(), TableError> {
    let spec = schema_of(table);
    let mismatch = |column: &str, expected: String, found: String| TableError::SchemaMismatch {
        what: what.to_string(),
        table: table.name(),
        column: column.to_string(),
        expected,
        found,
    };
    for (i, c) in spec.iter().enumerate() {
        let Some(got) = df.columns().get(i) else {
            return Err(mismatch(
                c.name,
                format!("column #{i} of type {}", c.dtype.name()),
                "missing".into(),
            ));
        };
        if got.name().as_str() != c.name && !df.columns().iter().any(|g| g.name() == c.name) {
            return Err(mismatch(
                c.name,
                format!("column #{i} of type {}", c.dtype.name()),
                "no such column".into(),
            ));
        }
        if got.name().as_str() != c.name {
            return Err(mismatch(
                c.name,
                format!("column #{i}"),
                format!("column {:?} there", got.name().as_str()),
            ));
        }
        if got.dtype() != &c.dtype.polars() {
            return Err(mismatch(
                c.name,
                c.dtype.name().into(),
                format!("{}", got.dtype()),
            ));
        }
        if !c.nullable && got.null_count() > 0 {
            return Err(mismatch(
                c.name,
                "no nulls".into(),
                format!("{} nulls", got.null_count()),
            ));
        }
        if let Some(rule) = c.values {
            check_values(got, rule, table, what)?;
        }
    }
    if let Some(extra) = df.columns().get(spec.len()) {
        return Err(mismatch(
            extra.name().as_str(),
            "no such column".into(),
            "extra column".into(),
        ));
    }
    Ok(())
}

/// The first value of a Float64 column that breaks `rule`, as an error naming its row.
fn check_values(
    column: &polars::prelude::Column,
    rule: ValueRule,
    table: Table,
    what: &str,
) -> Result<(), TableError> {
    let ca = column.f64().map_err(|source| TableError::Polars {
        what: what.to_string(),
        source,
    })?;
    let bad = ca
        .iter()
        .enumerate()
        .find_map(|(row, v)| v.filter(|v| !rule.holds(*v)).map(|v| (row, v)));
    match bad {
        None => Ok(()),
        Some((row, value)) => Err(TableError::BadValue {
            what: what.to_string(),
            table: table.name(),
            column: column.name().to_string(),
            row,
            value,
            rule: rule.text(),
        }),
    }
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
