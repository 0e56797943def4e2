//! The row structs of every table, each declared once with [`columns!`]: its fields are the
//! table's columns (order, names, descriptions, value rules), so the schema, the Parquet writer
//! and the reader all come from this one list (see `columns.rs`).
//!
//! Decision: parsing, merging and the stages work on plain `Vec<Row>` (simple, testable, exact
//! control of order and hashing); the Parquet columns exist only inside `parquet.rs`.

use serde::{Deserialize, Serialize};

use super::columns::{col, columns, ColDoc, Flatten};
use super::schema::{Table, ValueRule};

const UID: ColDoc = col("series_uid", "LUNA16 series UID (the .mhd file stem)");
const XYZ: [ColDoc; 3] = [
    col(
        "coord_x",
        "centre x, world mm (ITK physical coordinates, as in the CSV)",
    )
    .rule(ValueRule::Finite),
    col("coord_y", "centre y, world mm").rule(ValueRule::Finite),
    col("coord_z", "centre z, world mm").rule(ValueRule::Finite),
];
const LINE: ColDoc = col(
    "source_line",
    "1-based line of the row in the source CSV (header = line 1)",
);
const CANDIDATE_ID: ColDoc = col("candidate_id", "candidate_id of candidates.parquet");
const EPOCH: ColDoc = col("epoch", "1-based epoch");
const PHASE: ColDoc = col("phase", "\"trn\" or \"val\"");
const SAMPLES_PER_SEC: ColDoc = col("samples_per_sec", "throughput of the pass");
const DATA_WAIT: ColDoc = col(
    "data_wait_fraction",
    "fraction of the pass the model waited for batches",
);

/// Which split a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Training series.
    Train,
    /// Validation series (they choose the best checkpoint).
    Val,
    /// Held-out test series (never read by training).
    Test,
}

impl Split {
    /// The string stored in the `split` column: "train", "val" or "test".
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

columns! {
    /// One annotation (a row of annotations.csv / annotations_with_malignancy.csv).
    #[derive(Debug, Clone, PartialEq)]
    pub struct AnnotationRow in Table::Annotations {
        /// LUNA series UID.
        series_uid: String = UID,
        /// Nodule centre, world mm (x, y, z).
        center_xyz: [f64; 3] = XYZ,
        /// Nodule diameter in mm (-1 allowed only for annotations_excluded.csv).
        diameter_mm: f64 = col("diameter_mm", "nodule diameter in mm (-1 only in annotations_excluded.csv)"),
        /// `mal_bool`; `None` when the file has no malignancy column.
        is_malignant: Option<bool> = col("is_malignant", "mal_bool of annotations_with_malignancy.csv; null when the file has no mal_bool column"),
        /// 1-based line in the source CSV.
        source_line: i64 = LINE,
    }
}

columns! {
    /// One candidate (a row of candidates.csv / candidates_V2.csv).
    #[derive(Debug, Clone, PartialEq)]
    pub struct CandidateRow in Table::CandidatesRaw {
        /// LUNA series UID.
        series_uid: String = UID,
        /// Candidate centre, world mm (x, y, z).
        center_xyz: [f64; 3] = XYZ,
        /// The `class` column, 0 or 1.
        class: i8 = col("class", "the CSV class column: 1 = nodule candidate, 0 = not"),
        /// 1-based line in the source CSV.
        source_line: i64 = LINE,
    }
}

columns! {
    /// One row of candidates.parquet, the merged table models train on.
    #[derive(Debug, Clone, PartialEq)]
    pub struct MergedRow in Table::Candidates {
        /// Stable content-derived id (see `merge.rs`).
        candidate_id: i64 = col("candidate_id", "stable content-derived id, >= 0 (see table description)"),
        /// LUNA series UID.
        series_uid: String = UID,
        /// Centre, world mm (x, y, z).
        center_xyz: [f64; 3] = XYZ,
        /// Whether this is a nodule (positive).
        is_nodule: bool = col("is_nodule", "positive sample (final rule: an annotation row; diameter_match rule: class == 1)"),
        /// Whether the row comes from / matched an annotation.
        has_annotation: bool = col("has_annotation", "final rule: equals is_nodule; diameter_match rule: an annotation box matched"),
        /// Malignancy; `None` when no malignancy labels were loaded.
        is_malignant: Option<bool> = col("is_malignant", "malignancy label; false for negatives; null when no malignancy labels were loaded"),
        /// Diameter in mm (0.0 when unknown).
        diameter_mm: f64 = col("diameter_mm", "annotation diameter in mm; 0.0 when none"),
        /// Train, validation or test, decided by series.
        split: Split = col("split", "\"train\", \"val\" or \"test\", by series (merge_candidates' `split`: the book's every val_stride-th sorted series is val, or LUNA16 subset folds)"),
        /// The `subsetN` folder of the series' CT.
        subset: Option<i64> = col("subset", "N of the subsetN folder the series' CT sits in; null when it is in none (or no CT was looked up)"),
    }
}

columns! {
    /// One row of index.parquet, the crop index of a build_crops artifact (see
    /// [`Table::CropIndex`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct CropIndexRow in Table::CropIndex {
        /// Candidate id (stable across stages).
        candidate_id: i64 = CANDIDATE_ID,
        /// Series UID.
        series_uid: String = UID,
        /// HDF5 file, relative to the artifact.
        file: String = col("file", "HDF5 file holding the crop, relative to the artifact directory (crops/<series_uid>.h5)"),
        /// Row in that file.
        row: i64 = col("row", "row of the crop in that file's `crops` dataset"),
        /// Crop centre (index, row, col).
        center_irc: [i64; 3] = [
            col("center_i", "crop centre, voxel index (slice) after xyz->irc with the full direction matrix, round half to even"),
            col("center_r", "crop centre, voxel row"),
            col("center_c", "crop centre, voxel column"),
        ],
        /// Whether the candidate is a nodule.
        is_nodule: bool = col("is_nodule", "as in candidates.parquet"),
        /// Whether the row comes from / matched an annotation.
        has_annotation: bool = col("has_annotation", "as in candidates.parquet"),
        /// Whether the nodule is malignant; `None` when the malignancy file was absent.
        is_malignant: Option<bool> = col("is_malignant", "as in candidates.parquet"),
        /// Diameter in mm (0.0 when unknown).
        diameter_mm: f64 = col("diameter_mm", "as in candidates.parquet"),
        /// The series' split.
        split: Split = col("split", "as in candidates.parquet"),
    }
}

columns! {
    /// One row of predictions.parquet (see [`Table::Predictions`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct PredictionRow in Table::Predictions {
        /// Candidate id.
        candidate_id: i64 = CANDIDATE_ID,
        /// Series UID.
        series_uid: String = UID,
        /// Ground truth of the task.
        label: bool = col("label", "ground truth of the task: is_nodule (nodule task) or is_malignant (malignancy task)"),
        /// P(positive).
        probability: f64 = col("probability", "model probability of the positive class, in [0, 1]").rule(ValueRule::Probability),
    }
}

columns! {
    /// One row of a classifier's metrics.parquet (see [`Table::ClassifierMetrics`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct ClassifierMetricsRow in Table::ClassifierMetrics {
        /// 1-based epoch.
        epoch: i64 = EPOCH,
        /// Training samples seen.
        total_samples: i64 = col("total_samples", "training samples seen after this epoch (the book's TensorBoard x-axis)"),
        /// `trn` or `val`.
        phase: String = PHASE,
        /// Mean loss.
        loss: f64 = col("loss", "mean per-sample cross-entropy (book loss/all)"),
        /// Mean loss over negatives.
        loss_neg: f64 = col("loss_neg", "mean loss over negatives (0 when none)"),
        /// Mean loss over positives.
        loss_pos: f64 = col("loss_pos", "mean loss over positives (0 when none)"),
        /// Precision.
        precision: f64 = col("precision", "TP / (TP + FP), 0 when undefined"),
        /// Recall.
        recall: f64 = col("recall", "TP / (TP + FN), 0 when undefined"),
        /// F1.
        f1: f64 = col("f1", "harmonic mean of precision and recall, 0 when undefined"),
        /// True negatives.
        neg_correct: i64 = col("neg_correct", "true negatives"),
        /// Negatives.
        neg_count: i64 = col("neg_count", "negatives"),
        /// True positives.
        pos_correct: i64 = col("pos_correct", "true positives"),
        /// Positives.
        pos_count: i64 = col("pos_count", "positives"),
        /// ROC AUC.
        auc: Option<f64> = col("auc", "exact ROC AUC; null when one class is absent"),
        /// Throughput.
        samples_per_sec: f64 = SAMPLES_PER_SEC,
        /// Data wait fraction.
        data_wait_fraction: f64 = DATA_WAIT,
    }
}

columns! {
    /// One row of clusters.parquet (see [`Table::Clusters`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct ClusterRow in Table::Clusters {
        /// Series UID.
        series_uid: String = UID,
        /// 1-based label.
        cluster_id: i64 = col("cluster_id", "scipy.ndimage.label's label, 1-based, raster order of the first voxel"),
        /// Centre, world mm.
        center_xyz: [f64; 3] = XYZ,
        /// Centre, continuous (index, row, col).
        center_irc: [f64; 3] = [
            col("center_i", "centre of mass, continuous voxel index (slice)"),
            col("center_r", "centre of mass, continuous voxel row"),
            col("center_c", "centre of mass, continuous voxel column"),
        ],
        /// Voxels.
        voxels: i64 = col("voxels", "voxels of the component (after erosion)"),
        /// Max probability.
        prob_max: f64 = col("prob_max", "highest probability of its voxels").rule(ValueRule::Probability),
        /// Mean probability.
        prob_mean: f64 = col("prob_mean", "mean probability of its voxels").rule(ValueRule::Probability),
        /// Bounding box, inclusive: [i0, i1, r0, r1, c0, c1].
        bbox: [i64; 6] = [
            col("bbox_i0", "bounding box, first slice"),
            col("bbox_i1", "bounding box, last slice (inclusive)"),
            col("bbox_r0", "bounding box, first row"),
            col("bbox_r1", "bounding box, last row (inclusive)"),
            col("bbox_c0", "bounding box, first column"),
            col("bbox_c1", "bounding box, last column (inclusive)"),
        ],
    }
}

columns! {
    /// One pass's segmentation metrics (the columns between `phase` and `samples_per_sec` of
    /// [`SegMetricsRow`]; also the training loop's per-pass metrics).
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct SegMetrics {
        /// Mean per-sample loss.
        loss: f64 = col("loss", "mean of the per-sample loss: soft Dice loss + 8 x the Dice loss over label pixels (book)"),
        /// Pixel precision.
        precision: f64 = col("precision", "TP / (TP + FP) pixels, 0 when undefined"),
        /// Pixel recall.
        recall: f64 = col("recall", "TP / (TP + FN) pixels, 0 when undefined (the best-model score)"),
        /// Pixel F1.
        f1: f64 = col("f1", "harmonic mean of precision and recall, 0 when undefined"),
        /// TP % of label pixels.
        tp_percent: f64 = col("tp_percent", "TP as % of label pixels"),
        /// FN % of label pixels.
        fn_percent: f64 = col("fn_percent", "FN as % of label pixels"),
        /// FP % of label pixels.
        fp_percent: f64 = col("fp_percent", "FP as % of label pixels"),
        /// Label pixels.
        label_pixels: i64 = col("label_pixels", "label pixels of the pass"),
    }
}

columns! {
    /// One row of a segmentation training's metrics.parquet (see [`Table::SegMetrics`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct SegMetricsRow in Table::SegMetrics {
        /// 1-based epoch.
        epoch: i64 = EPOCH,
        /// Training samples seen.
        total_samples: i64 = col("total_samples", "training samples seen after this epoch"),
        /// `trn` or `val`.
        phase: String = PHASE,
        /// The pass's metrics.
        metrics: SegMetrics = Flatten,
        /// Throughput.
        samples_per_sec: f64 = SAMPLES_PER_SEC,
        /// Data wait fraction.
        data_wait_fraction: f64 = DATA_WAIT,
    }
}

columns! {
    /// One row of seg_index.parquet (see [`Table::SegIndex`]).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SegIndexRow in Table::SegIndex {
        /// Series UID.
        series_uid: String = UID,
        /// The series' split.
        split: Split = col("split", "\"train\" or \"val\", the series' split in candidates.parquet (test series are never in a segmentation dataset)"),
        /// HDF5 file relative to the artifact (`seg/<uid>.h5`).
        file: String = col("file", "HDF5 file of the series, relative to the artifact directory (seg/<series_uid>.h5)"),
        /// Which sample datasets: train (`train_*`) or val (`val_*`).
        dataset: Split = col("dataset", "\"train\" (datasets train_input/train_label) or \"val\" (val_input/val_label)"),
        /// Row in those datasets.
        row: i64 = col("row", "row of the sample in those datasets"),
        /// Centre slice.
        slice: i64 = col("slice", "centre slice index of the sample's context slices"),
        /// Centre row (train: the nodule's; val: R / 2).
        center_r: i64 = col("center_r", "train: the nodule centre's voxel row (xyz->irc, round half to even); val: R / 2"),
        /// Centre column (train: the nodule's; val: C / 2).
        center_c: i64 = col("center_c", "train: the nodule centre's voxel column; val: C / 2"),
        /// Mask voxels in the label.
        label_pixels: i64 = col("label_pixels", "mask voxels in the sample's label"),
    }
}

columns! {
    /// One row of detections.parquet (see [`Table::Detections`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct DetectionRow in Table::Detections {
        /// Series UID.
        series_uid: String = UID,
        /// The cluster's id.
        cluster_id: i64 = col("cluster_id", "cluster_id of clusters.parquet"),
        /// Centre, world mm.
        center_xyz: [f64; 3] = XYZ,
        /// Crop centre (index, row, col).
        center_irc: [i64; 3] = [
            col("center_i", "crop centre, voxel index (xyz->irc of the cluster centre, round half to even)"),
            col("center_r", "crop centre, voxel row"),
            col("center_c", "crop centre, voxel column"),
        ],
        /// P(nodule).
        prob_nodule: f64 = col("prob_nodule", "nodule classifier's P(nodule)").rule(ValueRule::Probability),
        /// P(malignant), when a malignancy model was given.
        prob_malignant: Option<f64> = col("prob_malignant", "malignancy classifier's P(malignant); null without a malignancy model").rule(ValueRule::Probability),
    }
}

columns! {
    /// One row of diagnosis.parquet (see [`Table::Diagnosis`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct DiagnosisRow in Table::Diagnosis {
        /// Series UID.
        series_uid: String = UID,
        /// Accepted nodules.
        nodules: i64 = col("nodules", "detections accepted as nodules (P(nodule) >= nodule_threshold)"),
        /// Patient score.
        patient_score: f64 = col("patient_score", "max (or noisy-OR) P(malignant) over the accepted nodules; 0 when none"),
        /// Predicted malignant.
        predicted_malignant: bool = col("predicted_malignant", "patient_score >= malignancy_threshold"),
        /// Annotated nodules.
        truth_nodules: Option<i64> = col("truth_nodules", "annotated nodules of the series (null without ground truth)"),
        /// Has a malignant nodule.
        truth_malignant: Option<bool> = col("truth_malignant", "the series has a malignant nodule (null without ground truth)"),
    }
}
