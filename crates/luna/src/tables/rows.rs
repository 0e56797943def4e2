//! Typed row structs of the three tables, and their conversion to and from polars DataFrames.
//!
//! Decision: parsing and merging work on plain `Vec<struct>` (simple, testable, exact control of
//! order and hashing); DataFrames appear only at the boundary (loaders return them, Parquet IO
//! takes them). Converting 550k rows either way costs a few milliseconds.

use polars::prelude::*;

use super::error::TableError;
use super::schema::{check_frame, Table};

/// One annotation (a row of annotations.csv / annotations_with_malignancy.csv).
#[derive(Debug, Clone, PartialEq)]
pub struct AnnotationRow {
    /// LUNA series UID.
    pub series_uid: String,
    /// Nodule centre, world mm (x, y, z).
    pub center_xyz: [f64; 3],
    /// Nodule diameter in mm (-1 allowed only for annotations_excluded.csv).
    pub diameter_mm: f64,
    /// `mal_bool`; `None` when the file has no malignancy column.
    pub is_malignant: Option<bool>,
    /// 1-based line in the source CSV.
    pub source_line: i64,
}

/// One candidate (a row of candidates.csv / candidates_V2.csv).
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateRow {
    /// LUNA series UID.
    pub series_uid: String,
    /// Candidate centre, world mm (x, y, z).
    pub center_xyz: [f64; 3],
    /// The `class` column, 0 or 1.
    pub class: i8,
    /// 1-based line in the source CSV.
    pub source_line: i64,
}

/// Which split a series belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Split {
    /// Training series.
    Train,
    /// Validation series.
    Val,
}

impl Split {
    /// The string stored in the `split` column: "train" or "val".
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
        }
    }
}

/// One row of candidates.parquet, the merged table models train on.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRow {
    /// Stable content-derived id (see `merge.rs`).
    pub candidate_id: i64,
    /// LUNA series UID.
    pub series_uid: String,
    /// Centre, world mm (x, y, z).
    pub center_xyz: [f64; 3],
    /// Whether this is a nodule (positive).
    pub is_nodule: bool,
    /// Whether the row comes from / matched an annotation.
    pub has_annotation: bool,
    /// Malignancy; `None` when no malignancy labels were loaded.
    pub is_malignant: Option<bool>,
    /// Diameter in mm (0.0 when unknown).
    pub diameter_mm: f64,
    /// Train or validation, decided by series.
    pub split: Split,
}

fn pe(what: &str) -> impl FnOnce(PolarsError) -> TableError + '_ {
    move |source| TableError::Polars {
        what: what.to_string(),
        source,
    }
}

/// The `series_uid, coord_x, coord_y, coord_z` columns every table starts with (after its id).
fn uid_xyz_columns<R>(rows: &[R], key: impl Fn(&R) -> (&str, [f64; 3])) -> [Column; 4] {
    let uid = StringChunked::from_iter_values("series_uid".into(), rows.iter().map(|r| key(r).0));
    let names = ["coord_x", "coord_y", "coord_z"];
    let [x, y, z] = std::array::from_fn(|a| {
        Column::new(
            names[a].into(),
            rows.iter().map(|r| key(r).1[a]).collect::<Vec<f64>>(),
        )
    });
    [uid.into_column(), x, y, z]
}

fn frame(table: Table, height: usize, columns: Vec<Column>) -> Result<DataFrame, TableError> {
    DataFrame::new(height, columns).map_err(pe(table.name()))
}

/// Builds an annotations.parquet frame from rows.
pub fn annotations_to_frame(rows: &[AnnotationRow]) -> Result<DataFrame, TableError> {
    let [uid, x, y, z] = uid_xyz_columns(rows, |r| (r.series_uid.as_str(), r.center_xyz));
    let cols = vec![
        uid,
        x,
        y,
        z,
        Column::new(
            "diameter_mm".into(),
            rows.iter().map(|r| r.diameter_mm).collect::<Vec<_>>(),
        ),
        Column::new(
            "is_malignant".into(),
            rows.iter().map(|r| r.is_malignant).collect::<Vec<_>>(),
        ),
        Column::new(
            "source_line".into(),
            rows.iter().map(|r| r.source_line).collect::<Vec<_>>(),
        ),
    ];
    frame(Table::Annotations, rows.len(), cols)
}

/// Builds a candidates_raw.parquet frame from rows.
pub fn candidates_raw_to_frame(rows: &[CandidateRow]) -> Result<DataFrame, TableError> {
    let [uid, x, y, z] = uid_xyz_columns(rows, |r| (r.series_uid.as_str(), r.center_xyz));
    let cols = vec![
        uid,
        x,
        y,
        z,
        Column::new(
            "class".into(),
            rows.iter().map(|r| r.class).collect::<Vec<i8>>(),
        ),
        Column::new(
            "source_line".into(),
            rows.iter().map(|r| r.source_line).collect::<Vec<_>>(),
        ),
    ];
    frame(Table::CandidatesRaw, rows.len(), cols)
}

/// Builds a candidates.parquet frame from merged rows.
pub fn merged_to_frame(rows: &[MergedRow]) -> Result<DataFrame, TableError> {
    let [uid, x, y, z] = uid_xyz_columns(rows, |r| (r.series_uid.as_str(), r.center_xyz));
    let split =
        StringChunked::from_iter_values("split".into(), rows.iter().map(|r| r.split.as_str()));
    let cols = vec![
        Column::new(
            "candidate_id".into(),
            rows.iter().map(|r| r.candidate_id).collect::<Vec<_>>(),
        ),
        uid,
        x,
        y,
        z,
        Column::new(
            "is_nodule".into(),
            rows.iter().map(|r| r.is_nodule).collect::<Vec<_>>(),
        ),
        Column::new(
            "has_annotation".into(),
            rows.iter().map(|r| r.has_annotation).collect::<Vec<_>>(),
        ),
        Column::new(
            "is_malignant".into(),
            rows.iter().map(|r| r.is_malignant).collect::<Vec<_>>(),
        ),
        Column::new(
            "diameter_mm".into(),
            rows.iter().map(|r| r.diameter_mm).collect::<Vec<_>>(),
        ),
        split.into_column(),
    ];
    frame(Table::Candidates, rows.len(), cols)
}

/// Non-null accessors; `check_frame` has proven non-nullable columns have no nulls.
struct Cols<'a> {
    df: &'a DataFrame,
    table: Table,
}

impl<'a> Cols<'a> {
    fn col(&self, name: &str) -> Result<&'a Column, TableError> {
        self.df.column(name).map_err(pe(self.table.name()))
    }
    fn f64(&self, name: &str) -> Result<Vec<f64>, TableError> {
        let ca = self.col(name)?.f64().map_err(pe(self.table.name()))?;
        Ok(ca.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
    fn i64(&self, name: &str) -> Result<Vec<i64>, TableError> {
        let ca = self.col(name)?.i64().map_err(pe(self.table.name()))?;
        Ok(ca.iter().map(|v| v.unwrap_or_default()).collect())
    }
    fn opt_bool(&self, name: &str) -> Result<Vec<Option<bool>>, TableError> {
        let ca = self.col(name)?.bool().map_err(pe(self.table.name()))?;
        Ok(ca.iter().collect())
    }
    fn bool(&self, name: &str) -> Result<Vec<bool>, TableError> {
        Ok(self
            .opt_bool(name)?
            .iter()
            .map(|v| v.unwrap_or_default())
            .collect())
    }
    fn str(&self, name: &str) -> Result<Vec<String>, TableError> {
        let ca = self.col(name)?.str().map_err(pe(self.table.name()))?;
        Ok(ca
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    }
    fn xyz(&self) -> Result<Vec<[f64; 3]>, TableError> {
        let (x, y, z) = (
            self.f64("coord_x")?,
            self.f64("coord_y")?,
            self.f64("coord_z")?,
        );
        Ok(x.into_iter()
            .zip(y)
            .zip(z)
            .map(|((x, y), z)| [x, y, z])
            .collect())
    }
}

/// Reads annotation rows back from an annotations.parquet frame (schema checked first).
pub fn annotations_from_frame(df: &DataFrame) -> Result<Vec<AnnotationRow>, TableError> {
    check_frame(df, Table::Annotations, "DataFrame")?;
    let c = Cols {
        df,
        table: Table::Annotations,
    };
    let (uid, xyz, d) = (c.str("series_uid")?, c.xyz()?, c.f64("diameter_mm")?);
    let (mal, line) = (c.opt_bool("is_malignant")?, c.i64("source_line")?);
    Ok((0..df.height())
        .map(|i| AnnotationRow {
            series_uid: uid[i].clone(),
            center_xyz: xyz[i],
            diameter_mm: d[i],
            is_malignant: mal[i],
            source_line: line[i],
        })
        .collect())
}

/// Reads candidate rows back from a candidates_raw.parquet frame (schema checked first).
pub fn candidates_raw_from_frame(df: &DataFrame) -> Result<Vec<CandidateRow>, TableError> {
    check_frame(df, Table::CandidatesRaw, "DataFrame")?;
    let c = Cols {
        df,
        table: Table::CandidatesRaw,
    };
    let (uid, xyz, line) = (c.str("series_uid")?, c.xyz()?, c.i64("source_line")?);
    let class = c.col("class")?.i8().map_err(pe("candidates_raw"))?;
    Ok(class
        .iter()
        .enumerate()
        .map(|(i, class)| CandidateRow {
            series_uid: uid[i].clone(),
            center_xyz: xyz[i],
            class: class.unwrap_or_default(),
            source_line: line[i],
        })
        .collect())
}

/// Reads merged rows back from a candidates.parquet frame (schema checked first).
pub fn merged_from_frame(df: &DataFrame) -> Result<Vec<MergedRow>, TableError> {
    check_frame(df, Table::Candidates, "DataFrame")?;
    let c = Cols {
        df,
        table: Table::Candidates,
    };
    let (id, uid, xyz) = (c.i64("candidate_id")?, c.str("series_uid")?, c.xyz()?);
    let (nod, ann, mal) = (
        c.bool("is_nodule")?,
        c.bool("has_annotation")?,
        c.opt_bool("is_malignant")?,
    );
    let (d, split) = (c.f64("diameter_mm")?, c.str("split")?);
    let mut out = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        let split = match split[i].as_str() {
            "train" => Split::Train,
            "val" => Split::Val,
            other => {
                return Err(TableError::SchemaMismatch {
                    what: "DataFrame".into(),
                    table: Table::Candidates.name(),
                    column: "split".into(),
                    expected: "\"train\" or \"val\"".into(),
                    found: format!("{other:?} at row {i}"),
                })
            }
        };
        out.push(MergedRow {
            candidate_id: id[i],
            series_uid: uid[i].clone(),
            center_xyz: xyz[i],
            is_nodule: nod[i],
            has_annotation: ann[i],
            is_malignant: mal[i],
            diameter_mm: d[i],
            split,
        });
    }
    Ok(out)
}

/// One row of predictions.parquet (see [`Table::Predictions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionRow {
    /// Candidate id.
    pub candidate_id: i64,
    /// Series UID.
    pub series_uid: String,
    /// Ground truth of the task.
    pub label: bool,
    /// P(positive).
    pub probability: f64,
}

/// Builds a predictions.parquet frame.
pub fn predictions_to_frame(rows: &[PredictionRow]) -> Result<DataFrame, TableError> {
    let cols = vec![
        Column::new(
            "candidate_id".into(),
            rows.iter().map(|r| r.candidate_id).collect::<Vec<_>>(),
        ),
        StringChunked::from_iter_values(
            "series_uid".into(),
            rows.iter().map(|r| r.series_uid.as_str()),
        )
        .into_column(),
        Column::new(
            "label".into(),
            rows.iter().map(|r| r.label).collect::<Vec<_>>(),
        ),
        Column::new(
            "probability".into(),
            rows.iter().map(|r| r.probability).collect::<Vec<_>>(),
        ),
    ];
    let df = frame(Table::Predictions, rows.len(), cols)?;
    check_frame(&df, Table::Predictions, "predictions")?;
    Ok(df)
}

/// Reads prediction rows back from a predictions.parquet frame (schema checked first).
pub fn predictions_from_frame(df: &DataFrame) -> Result<Vec<PredictionRow>, TableError> {
    check_frame(df, Table::Predictions, "DataFrame")?;
    let c = Cols {
        df,
        table: Table::Predictions,
    };
    let (id, uid) = (c.i64("candidate_id")?, c.str("series_uid")?);
    let (label, prob) = (c.bool("label")?, c.f64("probability")?);
    Ok(id
        .into_iter()
        .zip(uid)
        .zip(label.into_iter().zip(prob))
        .map(
            |((candidate_id, series_uid), (label, probability))| PredictionRow {
                candidate_id,
                series_uid,
                label,
                probability,
            },
        )
        .collect())
}

/// One row of a classifier's metrics.parquet (see [`Table::ClassifierMetrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClassifierMetricsRow {
    /// 1-based epoch.
    pub epoch: i64,
    /// Training samples seen.
    pub total_samples: i64,
    /// `trn` or `val`.
    pub phase: String,
    /// Mean loss.
    pub loss: f64,
    /// Mean loss over negatives.
    pub loss_neg: f64,
    /// Mean loss over positives.
    pub loss_pos: f64,
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub f1: f64,
    /// True negatives.
    pub neg_correct: i64,
    /// Negatives.
    pub neg_count: i64,
    /// True positives.
    pub pos_correct: i64,
    /// Positives.
    pub pos_count: i64,
    /// ROC AUC.
    pub auc: Option<f64>,
    /// Throughput.
    pub samples_per_sec: f64,
    /// Data wait fraction.
    pub data_wait_fraction: f64,
}

/// Builds a classifier metrics.parquet frame.
pub fn classifier_metrics_to_frame(rows: &[ClassifierMetricsRow]) -> Result<DataFrame, TableError> {
    let f = |name: &str, g: fn(&ClassifierMetricsRow) -> f64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<f64>>())
    };
    let i = |name: &str, g: fn(&ClassifierMetricsRow) -> i64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<i64>>())
    };
    let cols = vec![
        i("epoch", |r| r.epoch),
        i("total_samples", |r| r.total_samples),
        StringChunked::from_iter_values("phase".into(), rows.iter().map(|r| r.phase.as_str()))
            .into_column(),
        f("loss", |r| r.loss),
        f("loss_neg", |r| r.loss_neg),
        f("loss_pos", |r| r.loss_pos),
        f("precision", |r| r.precision),
        f("recall", |r| r.recall),
        f("f1", |r| r.f1),
        i("neg_correct", |r| r.neg_correct),
        i("neg_count", |r| r.neg_count),
        i("pos_correct", |r| r.pos_correct),
        i("pos_count", |r| r.pos_count),
        Column::new(
            "auc".into(),
            rows.iter().map(|r| r.auc).collect::<Vec<Option<f64>>>(),
        ),
        f("samples_per_sec", |r| r.samples_per_sec),
        f("data_wait_fraction", |r| r.data_wait_fraction),
    ];
    let df = frame(Table::ClassifierMetrics, rows.len(), cols)?;
    check_frame(&df, Table::ClassifierMetrics, "metrics")?;
    Ok(df)
}

/// One row of clusters.parquet (see [`Table::Clusters`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterRow {
    /// Series UID.
    pub series_uid: String,
    /// 1-based label.
    pub cluster_id: i64,
    /// Centre, world mm.
    pub center_xyz: [f64; 3],
    /// Centre, continuous (index, row, col).
    pub center_irc: [f64; 3],
    /// Voxels.
    pub voxels: i64,
    /// Max probability.
    pub prob_max: f64,
    /// Mean probability.
    pub prob_mean: f64,
    /// Bounding box, inclusive: [i0, i1, r0, r1, c0, c1].
    pub bbox: [i64; 6],
}

/// Builds a clusters.parquet frame.
pub fn clusters_to_frame(rows: &[ClusterRow]) -> Result<DataFrame, TableError> {
    let [uid, x, y, z] = uid_xyz_columns(rows, |r| (r.series_uid.as_str(), r.center_xyz));
    let f = |name: &str, g: &dyn Fn(&ClusterRow) -> f64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<f64>>())
    };
    let i = |name: &str, g: &dyn Fn(&ClusterRow) -> i64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<i64>>())
    };
    let mut cols = vec![uid, i("cluster_id", &|r| r.cluster_id), x, y, z];
    for (k, n) in ["center_i", "center_r", "center_c"].iter().enumerate() {
        cols.push(f(n, &|r| r.center_irc[k]));
    }
    cols.push(i("voxels", &|r| r.voxels));
    cols.push(f("prob_max", &|r| r.prob_max));
    cols.push(f("prob_mean", &|r| r.prob_mean));
    for (k, n) in [
        "bbox_i0", "bbox_i1", "bbox_r0", "bbox_r1", "bbox_c0", "bbox_c1",
    ]
    .iter()
    .enumerate()
    {
        cols.push(i(n, &|r| r.bbox[k]));
    }
    let df = frame(Table::Clusters, rows.len(), cols)?;
    check_frame(&df, Table::Clusters, "clusters")?;
    Ok(df)
}

/// Reads clusters.parquet rows back.
pub fn clusters_from_frame(df: &DataFrame) -> Result<Vec<ClusterRow>, TableError> {
    check_frame(df, Table::Clusters, "clusters")?;
    let c = Cols {
        df,
        table: Table::Clusters,
    };
    let (uid, id, xyz) = (c.str("series_uid")?, c.i64("cluster_id")?, c.xyz()?);
    let irc = [c.f64("center_i")?, c.f64("center_r")?, c.f64("center_c")?];
    let (vox, pmax, pmean) = (c.i64("voxels")?, c.f64("prob_max")?, c.f64("prob_mean")?);
    let bb: Vec<Vec<i64>> = [
        "bbox_i0", "bbox_i1", "bbox_r0", "bbox_r1", "bbox_c0", "bbox_c1",
    ]
    .iter()
    .map(|n| c.i64(n))
    .collect::<Result<_, _>>()?;
    Ok((0..df.height())
        .map(|k| ClusterRow {
            series_uid: uid[k].clone(),
            cluster_id: id[k],
            center_xyz: xyz[k],
            center_irc: [irc[0][k], irc[1][k], irc[2][k]],
            voxels: vox[k],
            prob_max: pmax[k],
            prob_mean: pmean[k],
            bbox: std::array::from_fn(|j| bb[j][k]),
        })
        .collect())
}

/// One row of a segmentation training's metrics.parquet (see [`Table::SegMetrics`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SegMetricsRow {
    /// 1-based epoch.
    pub epoch: i64,
    /// Training samples seen.
    pub total_samples: i64,
    /// `trn` or `val`.
    pub phase: String,
    /// Mean loss.
    pub loss: f64,
    /// Pixel precision.
    pub precision: f64,
    /// Pixel recall.
    pub recall: f64,
    /// Pixel F1.
    pub f1: f64,
    /// TP % of label pixels.
    pub tp_percent: f64,
    /// FN % of label pixels.
    pub fn_percent: f64,
    /// FP % of label pixels.
    pub fp_percent: f64,
    /// Label pixels.
    pub label_pixels: i64,
    /// Throughput.
    pub samples_per_sec: f64,
    /// Data wait fraction.
    pub data_wait_fraction: f64,
}

/// Builds a segmentation metrics.parquet frame.
pub fn seg_metrics_to_frame(rows: &[SegMetricsRow]) -> Result<DataFrame, TableError> {
    let f = |name: &str, g: fn(&SegMetricsRow) -> f64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<f64>>())
    };
    let i = |name: &str, g: fn(&SegMetricsRow) -> i64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<i64>>())
    };
    let cols = vec![
        i("epoch", |r| r.epoch),
        i("total_samples", |r| r.total_samples),
        StringChunked::from_iter_values("phase".into(), rows.iter().map(|r| r.phase.as_str()))
            .into_column(),
        f("loss", |r| r.loss),
        f("precision", |r| r.precision),
        f("recall", |r| r.recall),
        f("f1", |r| r.f1),
        f("tp_percent", |r| r.tp_percent),
        f("fn_percent", |r| r.fn_percent),
        f("fp_percent", |r| r.fp_percent),
        i("label_pixels", |r| r.label_pixels),
        f("samples_per_sec", |r| r.samples_per_sec),
        f("data_wait_fraction", |r| r.data_wait_fraction),
    ];
    let df = frame(Table::SegMetrics, rows.len(), cols)?;
    check_frame(&df, Table::SegMetrics, "metrics")?;
    Ok(df)
}

/// One row of seg_index.parquet (see [`Table::SegIndex`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegIndexRow {
    /// Series UID.
    pub series_uid: String,
    /// The series' split.
    pub split: Split,
    /// HDF5 file relative to the artifact (`seg/<uid>.h5`).
    pub file: String,
    /// Which sample datasets: train (`train_*`) or val (`val_*`).
    pub dataset: Split,
    /// Row in those datasets.
    pub row: i64,
    /// Centre slice.
    pub slice: i64,
    /// Centre row (train: the nodule's; val: R / 2).
    pub center_r: i64,
    /// Centre column (train: the nodule's; val: C / 2).
    pub center_c: i64,
    /// Mask voxels in the label.
    pub label_pixels: i64,
}

/// Builds a seg_index.parquet frame.
pub fn seg_index_to_frame(rows: &[SegIndexRow]) -> Result<DataFrame, TableError> {
    let s = |name: &str, g: &dyn Fn(&SegIndexRow) -> &str| {
        StringChunked::from_iter_values(name.into(), rows.iter().map(g)).into_column()
    };
    let i = |name: &str, g: &dyn Fn(&SegIndexRow) -> i64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<i64>>())
    };
    let cols = vec![
        s("series_uid", &|r| r.series_uid.as_str()),
        s("split", &|r| r.split.as_str()),
        s("file", &|r| r.file.as_str()),
        s("dataset", &|r| r.dataset.as_str()),
        i("row", &|r| r.row),
        i("slice", &|r| r.slice),
        i("center_r", &|r| r.center_r),
        i("center_c", &|r| r.center_c),
        i("label_pixels", &|r| r.label_pixels),
    ];
    let df = frame(Table::SegIndex, rows.len(), cols)?;
    check_frame(&df, Table::SegIndex, "seg_index")?;
    Ok(df)
}

/// Reads seg_index.parquet rows back.
pub fn seg_index_from_frame(df: &DataFrame) -> Result<Vec<SegIndexRow>, TableError> {
    check_frame(df, Table::SegIndex, "seg_index")?;
    let c = Cols {
        df,
        table: Table::SegIndex,
    };
    let (uid, split, file, dataset) = (
        c.str("series_uid")?,
        c.str("split")?,
        c.str("file")?,
        c.str("dataset")?,
    );
    let ints: Vec<Vec<i64>> = ["row", "slice", "center_r", "center_c", "label_pixels"]
        .iter()
        .map(|n| c.i64(n))
        .collect::<Result<_, _>>()?;
    let parse = |col: &'static str, v: &str| match v {
        "train" => Ok(Split::Train),
        "val" => Ok(Split::Val),
        other => Err(TableError::SchemaMismatch {
            what: "seg_index".into(),
            table: Table::SegIndex.name(),
            column: col.into(),
            expected: "\"train\" or \"val\"".into(),
            found: format!("{other:?}"),
        }),
    };
    (0..df.height())
        .map(|k| {
            Ok(SegIndexRow {
                series_uid: uid[k].clone(),
                split: parse("split", &split[k])?,
                file: file[k].clone(),
                dataset: parse("dataset", &dataset[k])?,
                row: ints[0][k],
                slice: ints[1][k],
                center_r: ints[2][k],
                center_c: ints[3][k],
                label_pixels: ints[4][k],
            })
        })
        .collect()
}

/// One row of detections.parquet (see [`Table::Detections`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionRow {
    /// Series UID.
    pub series_uid: String,
    /// The cluster's id.
    pub cluster_id: i64,
    /// Centre, world mm.
    pub center_xyz: [f64; 3],
    /// Crop centre (index, row, col).
    pub center_irc: [i64; 3],
    /// P(nodule).
    pub prob_nodule: f64,
    /// P(malignant), when a malignancy model was given.
    pub prob_malignant: Option<f64>,
}

/// Builds a detections.parquet frame.
pub fn detections_to_frame(rows: &[DetectionRow]) -> Result<DataFrame, TableError> {
    let [uid, x, y, z] = uid_xyz_columns(rows, |r| (r.series_uid.as_str(), r.center_xyz));
    let i = |name: &str, g: &dyn Fn(&DetectionRow) -> i64| {
        Column::new(name.into(), rows.iter().map(g).collect::<Vec<i64>>())
    };
    let cols = vec![
        uid,
        i("cluster_id", &|r| r.cluster_id),
        x,
        y,
        z,
        i("center_i", &|r| r.center_irc[0]),
        i("center_r", &|r| r.center_irc[1]),
        i("center_c", &|r| r.center_irc[2]),
        Column::new(
            "prob_nodule".into(),
            rows.iter().map(|r| r.prob_nodule).collect::<Vec<f64>>(),
        ),
        Column::new(
            "prob_malignant".into(),
            rows.iter()
                .map(|r| r.prob_malignant)
                .collect::<Vec<Option<f64>>>(),
        ),
    ];
    let df = frame(Table::Detections, rows.len(), cols)?;
    check_frame(&df, Table::Detections, "detections")?;
    Ok(df)
}

/// Reads detections.parquet rows back.
pub fn detections_from_frame(df: &DataFrame) -> Result<Vec<DetectionRow>, TableError> {
    check_frame(df, Table::Detections, "detections")?;
    let c = Cols {
        df,
        table: Table::Detections,
    };
    let (uid, id, xyz) = (c.str("series_uid")?, c.i64("cluster_id")?, c.xyz()?);
    let irc = [c.i64("center_i")?, c.i64("center_r")?, c.i64("center_c")?];
    let pn = c.f64("prob_nodule")?;
    let pm = c
        .col("prob_malignant")?
        .f64()
        .map_err(pe(Table::Detections.name()))?
        .iter()
        .collect::<Vec<Option<f64>>>();
    Ok((0..df.height())
        .map(|k| DetectionRow {
            series_uid: uid[k].clone(),
            cluster_id: id[k],
            center_xyz: xyz[k],
            center_irc: [irc[0][k], irc[1][k], irc[2][k]],
            prob_nodule: pn[k],
            prob_malignant: pm[k],
        })
        .collect())
}

/// One row of diagnosis.parquet (see [`Table::Diagnosis`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DiagnosisRow {
    /// Series UID.
    pub series_uid: String,
    /// Accepted nodules.
    pub nodules: i64,
    /// Patient score.
    pub patient_score: f64,
    /// Predicted malignant.
    pub predicted_malignant: bool,
    /// Annotated nodules.
    pub truth_nodules: Option<i64>,
    /// Has a malignant nodule.
    pub truth_malignant: Option<bool>,
}

/// Builds a diagnosis.parquet frame.
pub fn diagnosis_to_frame(rows: &[DiagnosisRow]) -> Result<DataFrame, TableError> {
    let cols = vec![
        StringChunked::from_iter_values(
            "series_uid".into(),
            rows.iter().map(|r| r.series_uid.as_str()),
        )
        .into_column(),
        Column::new(
            "nodules".into(),
            rows.iter().map(|r| r.nodules).collect::<Vec<i64>>(),
        ),
        Column::new(
            "patient_score".into(),
            rows.iter().map(|r| r.patient_score).collect::<Vec<f64>>(),
        ),
        Column::new(
            "predicted_malignant".into(),
            rows.iter()
                .map(|r| r.predicted_malignant)
                .collect::<Vec<bool>>(),
        ),
        Column::new(
            "truth_nodules".into(),
            rows.iter()
                .map(|r| r.truth_nodules)
                .collect::<Vec<Option<i64>>>(),
        ),
        Column::new(
            "truth_malignant".into(),
            rows.iter()
                .map(|r| r.truth_malignant)
                .collect::<Vec<Option<bool>>>(),
        ),
    ];
    let df = frame(Table::Diagnosis, rows.len(), cols)?;
    check_frame(&df, Table::Diagnosis, "diagnosis")?;
    Ok(df)
}

/// Reads diagnosis.parquet rows back.
pub fn diagnosis_from_frame(df: &DataFrame) -> Result<Vec<DiagnosisRow>, TableError> {
    check_frame(df, Table::Diagnosis, "diagnosis")?;
    let c = Cols {
        df,
        table: Table::Diagnosis,
    };
    let (uid, n, score) = (
        c.str("series_uid")?,
        c.i64("nodules")?,
        c.f64("patient_score")?,
    );
    let mal = c.bool("predicted_malignant")?;
    let tn = c
        .col("truth_nodules")?
        .i64()
        .map_err(pe(Table::Diagnosis.name()))?
        .iter()
        .collect::<Vec<Option<i64>>>();
    let tm = c.opt_bool("truth_malignant")?;
    Ok((0..df.height())
        .map(|k| DiagnosisRow {
            series_uid: uid[k].clone(),
            nodules: n[k],
            patient_score: score[k],
            predicted_malignant: mal[k],
            truth_nodules: tn[k],
            truth_malignant: tm[k],
        })
        .collect())
}
