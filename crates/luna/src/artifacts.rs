//! The JSON files that artifacts hold, as serde structs shared by the stage that writes each
//! one and every reader (the run report, `evaluate_froc`, tests): a renamed or retyped field is
//! a compile error at both ends, or a parse error naming the file, never a report cell that
//! quietly turns into "–".
//!
//! Design:
//! - **The bytes are the contract.** Field order is the order of the keys in the file, floats
//!   are written by serde_json's shortest round-trip formatting, an absent optional value is
//!   `null` (never a missing key), and a non-finite float is written as `null`, as the
//!   `json!` documents that these structs replaced wrote them; [`f64_or_nan`] reads such a
//!   `null` back as NaN, so a file luna wrote always parses. The unit tests pin the bytes.
//! - Pretty files ([`Style::Pretty`]) for the documents people read (`froc.json` adds a final
//!   newline), compact ones ([`Style::Compact`]) where the file always was compact
//!   (`diagnosis.json`, the torch stages' small summaries). [`encode`] is the one encoder;
//!   `stages::glue::write_json` writes a document into a stage's output and fails the stage
//!   when it cannot (a summary is never silently empty).
//! - Structs are owned and deserializable (readers need them); the writers build them from
//!   their results right before writing.
//!
//! Rejected: reading the files as `serde_json::Value` by key path (what the report did: a
//! renamed field became "–"); `#[serde(skip_serializing_if)]` on optional values (it would
//! change the files: today they hold `null`); one generic "summary" map (no contract at all).

use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};

use crate::froc::{Counts, Interval};
use crate::stages::seg_dataset::ValSlices;
use crate::store::crop_set::{Split, Task};

/// Reads a float that serde_json wrote as `null` because it was NaN or infinite, as NaN.
pub fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// How a document is laid out in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// serde_json's pretty layout (two-space indent), no final newline.
    Pretty,
    /// Pretty with a final newline (`froc.json`).
    PrettyLine,
    /// One line, no spaces, no final newline.
    Compact,
}

/// A document that could not be encoded (a map with non-string keys, a failing `Serialize`).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {path}: {source}")]
pub struct EncodeError {
    /// The file it was meant for.
    pub path: PathBuf,
    /// serde_json's reason.
    pub source: serde_json::Error,
}

/// The bytes of `doc` in `style`, for the file `path` (named in the error).
pub fn encode<T: Serialize>(
    doc: &T,
    style: Style,
    path: &std::path::Path,
) -> Result<Vec<u8>, EncodeError> {
    let bytes = match style {
        Style::Pretty | Style::PrettyLine => serde_json::to_vec_pretty(doc),
        Style::Compact => serde_json::to_vec(doc),
    };
    let mut bytes = bytes.map_err(|source| EncodeError {
        path: path.to_path_buf(),
        source,
    })?;
    if style == Style::PrettyLine {
        bytes.push(b'\n');
    }
    Ok(bytes)
}

/// `froc.json` of `evaluate_froc` and `luna froc --out` (see `crate::froc`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrocSummary {
    /// The FP-per-scan rates of the official CPM.
    pub rates: [f64; 7],
    /// Sensitivity at each rate (numpy.interp on the curve).
    pub sensitivities: [f64; 7],
    /// Mean of `sensitivities`: the competition performance metric.
    #[serde(deserialize_with = "f64_or_nan")]
    pub cpm: f64,
    /// DIAG's nearest-point CPM.
    #[serde(deserialize_with = "f64_or_nan")]
    pub cpm_nearest: f64,
    /// Per-rate sensitivities of DIAG's nearest-point rule.
    pub sensitivities_nearest: [f64; 7],
    /// TP/FP/FN and ignored counts.
    pub counts: Counts,
    /// TP / nodules: recall at the LUNA16 radius (a kept mark closer than diameter / 2).
    #[serde(deserialize_with = "f64_or_nan")]
    pub candidate_recall: f64,
    /// Recall under the book's matcher (a kept mark closer than 0.7 × diameter, p2ch14
    /// `match_and_score`): more lenient, shown beside `candidate_recall`, not a LUNA16 number.
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall_book_matcher: f64,
    /// Marks / scans.
    #[serde(deserialize_with = "f64_or_nan")]
    pub marks_per_scan: f64,
    /// Marks kept per scan (0: all).
    pub max_marks: usize,
    /// Points of the FROC curve (`froc.csv`).
    pub curve_points: usize,
    /// The bootstrap, `null` when none was run.
    pub bootstrap: Option<FrocBootstrapSummary>,
    /// When several inputs (folds) are pooled into this scoring: each one scored alone over
    /// its own scans, in the order of the list; empty for one input.
    pub inputs: Vec<FrocInputSummary>,
}

/// One pooled input's own scoring in `froc.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrocInputSummary {
    /// The upstream stage the marks came from.
    pub stage: String,
    /// Its scoring alone (its own `inputs` empty).
    pub froc: FrocSummary,
}

/// The bootstrap part of `froc.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrocBootstrapSummary {
    /// Rounds.
    pub samples: usize,
    /// Seed of the scan resampling.
    pub seed: u64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// The resampling rule, in words.
    pub generator: String,
    /// The CPM's interval.
    pub cpm: Interval,
    /// The interval at each rate.
    pub sensitivities: Vec<RateInterval>,
}

/// One rate's bootstrap interval in `froc.json`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RateInterval {
    /// FPs per scan.
    pub rate: f64,
    /// Bootstrap mean.
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean: f64,
    /// Lower bound.
    #[serde(deserialize_with = "f64_or_nan")]
    pub low: f64,
    /// Upper bound.
    #[serde(deserialize_with = "f64_or_nan")]
    pub high: f64,
}

/// `metrics.json` of `evaluate_classifier` (written by its torch half in `luna-torch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMetrics {
    /// The stage that trained the model.
    pub model_stage: String,
    /// What the model classifies.
    pub task: Task,
    /// The split scored.
    pub split: Split,
    /// Samples scored.
    pub samples: usize,
    /// Positive samples.
    pub positives: usize,
    /// Negative samples.
    pub negatives: usize,
    /// The counts at the decision threshold.
    pub confusion: ConfusionAt,
    /// TP / (TP + FP).
    #[serde(deserialize_with = "f64_or_nan")]
    pub precision: f64,
    /// TP / (TP + FN).
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    #[serde(deserialize_with = "f64_or_nan")]
    pub f1: f64,
    /// Exact ROC AUC; `null` when one class is absent.
    pub roc_auc: Option<f64>,
    /// Malignancy task: the exact ROC AUC of the nodule diameter alone as the score, on the
    /// same nodules (the book's baseline, §14.5: 0.901 on its validation split); `null` for a
    /// nodule model or when one class is absent.
    #[serde(default)]
    pub diameter_auc: Option<f64>,
    /// (recall, precision) points.
    pub pr_curve: Vec<[f64; 2]>,
    /// Scoring throughput (`null` when pooled: no model ran).
    #[serde(deserialize_with = "f64_or_nan")]
    pub samples_per_sec: f64,
    /// When folds are pooled (`predictions: [...]`): each input's own `metrics.json`, in list
    /// order; empty otherwise.
    #[serde(default)]
    pub inputs: Vec<ClassifierInputSummary>,
}

/// One pooled input's own `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierInputSummary {
    /// The `evaluate_classifier` stage it came from.
    pub stage: String,
    /// Its metrics.
    pub metrics: ClassifierMetrics,
}

/// The confusion counts of `metrics.json` at its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionAt {
    /// Decision threshold on P(positive).
    pub threshold: f64,
    /// The rule, in words.
    pub rule: String,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// TP / (TP + FP).
    #[serde(deserialize_with = "f64_or_nan")]
    pub precision: f64,
    /// TP / (TP + FN).
    #[serde(deserialize_with = "f64_or_nan")]
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    #[serde(deserialize_with = "f64_or_nan")]
    pub f1: f64,
}

/// The rule that names `metrics.json`'s positive class: the only field `evaluate_froc` reads
/// from a predictions artifact, which may come from a `command` stage with a metrics.json of
/// its own making, so anything but a known `task` is "not said".
pub fn metrics_task(doc: &serde_json::Value) -> Option<Task> {
    doc.get("task").and_then(|t| Task::deserialize(t).ok())
}

/// `diagnosis.json` of `diagnose` (compact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosisSummary {
    /// Patients (series searched).
    pub patients: usize,
    /// Per-patient ROC AUC of the score vs "has a malignant nodule"; `null` without ground
    /// truth or with one class only.
    pub per_patient_auc: Option<f64>,
    /// The book's 3×4 table summed over the patients (all zero without ground truth).
    pub confusion: crate::diagnose::Confusion,
}

/// `load_report.json` of `load_annotations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The annotations CSV.
    pub annotations: CsvLoad,
    /// The candidates CSV.
    pub candidates: CsvLoad,
    /// Whether every annotation has a malignancy label.
    pub malignancy: bool,
}

/// One CSV's line of `load_report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsvLoad {
    /// The file name (no directory).
    pub file: Option<String>,
    /// Rows kept.
    pub rows: usize,
    /// Rows dropped (`strict: false`).
    pub dropped: usize,
    /// `line N: reason` of each dropped row.
    pub drop_reasons: Vec<String>,
}

/// `merge_report.json` of `merge_candidates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeReport {
    /// Rows of candidates.parquet.
    pub rows: usize,
    /// Nodule rows.
    pub nodules: usize,
    /// Malignant rows.
    pub malignant: usize,
    /// Non-nodule rows.
    pub negatives: usize,
    /// Series.
    pub series: usize,
    /// Validation series.
    pub val_series: usize,
    /// Training series.
    pub train_series: usize,
    /// Held-out test series (0 without a test split).
    #[serde(default)]
    pub test_series: usize,
}

/// `crops.json` of `build_crops`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CropsSummary {
    /// Crop size, (index, row, col).
    pub width_irc: [usize; 3],
    /// Series.
    pub series: usize,
    /// Crops.
    pub crops: u64,
    /// Series computed in this run (the rest came from cached partitions).
    pub series_computed: u64,
}

/// `seg.json` of `seg_dataset`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegDatasetSummary {
    /// Series.
    pub series: usize,
    /// Series computed in this run.
    pub series_computed: u64,
    /// Training samples.
    pub train_samples: usize,
    /// Validation samples.
    pub val_samples: usize,
    /// Slices of context on each side.
    pub context_slices: usize,
    /// Crop size of a training sample.
    pub crop: usize,
    /// Which validation slices became samples.
    pub val_slices: ValSlices,
    /// HU threshold of the annotation masks.
    pub threshold_hu: f64,
}

/// `segment.json` of `segment` (compact; written by its torch half in `luna-torch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentSummary {
    /// The series segmented.
    pub series: Vec<String>,
    /// Series computed in this run.
    pub computed: usize,
}

/// `summary.json` of the test-only partitioned kinds (compact; written in `luna-torch`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartsSummary {
    /// Partitions computed in this run.
    pub computed: usize,
    /// Partitions taken from the cache.
    pub cached: usize,
}

#[cfg(test)]
mod tests {
    //! Each struct against the `json!` document it replaced: same bytes.
    use super::*;
    use serde_json::json;

    fn same<T: Serialize>(doc: &T, old: serde_json::Value, style: Style) {
        let p = std::path::Path::new("x.json");
        let old = match style {
            Style::Pretty => serde_json::to_vec_pretty(&old).unwrap(),
            Style::PrettyLine => format!("{old:#}\n").into_bytes(),
            Style::Compact => old.to_string().into_bytes(),
        };
        let new = encode(doc, style, p).unwrap();
        assert_eq!(
            String::from_utf8(new).unwrap(),
            String::from_utf8(old).unwrap()
        );
    }

    #[test]
    fn froc_summary_bytes_and_round_trip() {
        let c = Counts {
            tp: 3,
            fp: 5,
            fn_: 1,
            ignored_on_excluded: 2,
            double_detections: 0,
            scans: 4,
            nodules: 4,
            marks: 10,
            marks_dropped_by_cap: 0,
        };
        let iv = Interval {
            mean: 0.5,
            low: 0.25,
            high: f64::NAN,
        };
        let rates = crate::froc::RATES;
        let sens = [0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.75, 1.0];
        for boot in [false, true] {
            let doc = FrocSummary {
                rates,
                sensitivities: sens,
                cpm: 0.1 + 0.2,
                cpm_nearest: 1.0 / 3.0,
                sensitivities_nearest: sens,
                counts: c,
                candidate_recall: 0.75,
                recall_book_matcher: 1.0,
                marks_per_scan: 2.5,
                max_marks: 100,
                curve_points: 17,
                bootstrap: boot.then(|| FrocBootstrapSummary {
                    samples: 40,
                    seed: 7,
                    confidence: 0.95,
                    generator: "g".into(),
                    cpm: iv,
                    sensitivities: rates
                        .iter()
                        .map(|&rate| RateInterval {
                            rate,
                            mean: 0.5,
                            low: 0.25,
                            high: 1.0,
                        })
                        .collect(),
                }),
                inputs: Vec::new(),
            };
            let bootstrap = boot.then(|| {
                json!({
                    "samples": 40, "seed": 7u64, "confidence": 0.95, "generator": "g", "cpm": iv,
                    "sensitivities": rates.iter().map(|rate| json!({
                        "rate": rate, "mean": 0.5, "low": 0.25, "high": 1.0,
                    })).collect::<Vec<_>>(),
                })
            });
            let old = json!({
                "rates": rates, "sensitivities": sens, "cpm": 0.1 + 0.2,
                "cpm_nearest": 1.0 / 3.0, "sensitivities_nearest": sens, "counts": c,
                "candidate_recall": 0.75, "recall_book_matcher": 1.0, "marks_per_scan": 2.5,
                "max_marks": 100, "curve_points": 17, "bootstrap": bootstrap, "inputs": [],
            });
            same(&doc, old, Style::PrettyLine);
            let text = encode(&doc, Style::PrettyLine, std::path::Path::new("f")).unwrap();
            let back: FrocSummary = serde_json::from_slice(&text).unwrap();
            assert_eq!(back.counts, c);
            assert_eq!(back.cpm, doc.cpm);
            if let Some(b) = back.bootstrap {
                assert!(b.cpm.high.is_nan(), "null reads back as NaN");
            }
        }
    }

    #[test]
    fn classifier_metrics_bytes() {
        let pr = [(1.0, 0.5), (0.5, 1.0)];
        let doc = ClassifierMetrics {
            model_stage: "train".into(),
            task: Task::Malignancy,
            split: Split::Val,
            samples: 10,
            positives: 4,
            negatives: 6,
            confusion: ConfusionAt {
                threshold: 0.5,
                rule: "positive when probability >= threshold".into(),
                tp: 3,
                fp: 1,
                tn: 5,
                fn_: 1,
                precision: 0.75,
                recall: 0.75,
                f1: 0.75,
            },
            precision: 0.75,
            recall: 0.75,
            f1: 0.75,
            roc_auc: None,
            diameter_auc: Some(0.875),
            pr_curve: pr.iter().map(|&(r, p)| [r, p]).collect(),
            samples_per_sec: 123.456,
            inputs: Vec::new(),
        };
        let old = json!({
            "model_stage": "train", "task": Task::Malignancy, "split": Split::Val,
            "samples": 10, "positives": 4, "negatives": 6,
            "confusion": {
                "threshold": 0.5, "rule": "positive when probability >= threshold",
                "tp": 3, "fp": 1, "tn": 5, "fn": 1,
                "precision": 0.75, "recall": 0.75, "f1": 0.75,
            },
            "precision": 0.75, "recall": 0.75, "f1": 0.75, "roc_auc": None::<f64>,
            "diameter_auc": 0.875, "pr_curve": pr.iter().map(|&(r, p)| [r, p]).collect::<Vec<_>>(),
            "samples_per_sec": 123.456, "inputs": [],
        });
        same(&doc, old.clone(), Style::Pretty);
        assert_eq!(metrics_task(&old), Some(Task::Malignancy));
        assert_eq!(metrics_task(&json!({"task": "other"})), None);
    }

    #[test]
    fn stage_summaries_bytes() {
        let total: crate::diagnose::Confusion = [[1, 2, 3, 4], [0, 0, 1, 0], [2, 0, 0, 1]];
        same(
            &DiagnosisSummary {
                patients: 3,
                per_patient_auc: Some(0.8125),
                confusion: total,
            },
            json!({ "patients": 3, "per_patient_auc": Some(0.8125), "confusion": total }),
            Style::Compact,
        );
        let load = CsvLoad {
            file: Some("a.csv".into()),
            rows: 5,
            dropped: 1,
            drop_reasons: vec!["line 3: bad".into()],
        };
        let none = CsvLoad {
            file: None,
            rows: 0,
            dropped: 0,
            drop_reasons: vec![],
        };
        same(
            &LoadReport {
                annotations: load.clone(),
                candidates: none,
                malignancy: true,
            },
            json!({
                "annotations": { "file": Some("a.csv"), "rows": 5, "dropped": 1,
                                 "drop_reasons": ["line 3: bad"] },
                "candidates": { "file": None::<String>, "rows": 0, "dropped": 0,
                                "drop_reasons": Vec::<String>::new() },
                "malignancy": true,
            }),
            Style::Pretty,
        );
        same(
            &MergeReport {
                rows: 9,
                nodules: 2,
                malignant: 1,
                negatives: 7,
                series: 3,
                val_series: 1,
                train_series: 2,
                test_series: 0,
            },
            json!({
                "rows": 9, "nodules": 2, "malignant": 1, "negatives": 7,
                "series": 3, "val_series": 1, "train_series": 2, "test_series": 0,
            }),
            Style::Pretty,
        );
        same(
            &CropsSummary {
                width_irc: [32, 48, 48],
                series: 2,
                crops: 40,
                series_computed: 1,
            },
            json!({ "width_irc": [32, 48, 48], "series": 2, "crops": 40u64, "series_computed": 1u64 }),
            Style::Pretty,
        );
        same(
            &SegDatasetSummary {
                series: 2,
                series_computed: 2,
                train_samples: 30,
                val_samples: 8,
                context_slices: 3,
                crop: 96,
                val_slices: ValSlices::All,
                threshold_hu: -700.0,
            },
            json!({
                "series": 2, "series_computed": 2u64, "train_samples": 30, "val_samples": 8,
                "context_slices": 3, "crop": 96, "val_slices": ValSlices::All,
                "threshold_hu": -700.0,
            }),
            Style::Pretty,
        );
        same(
            &SegmentSummary {
                series: vec!["1.2".into()],
                computed: 1,
            },
            json!({ "series": ["1.2"], "computed": 1 }),
            Style::Compact,
        );
        same(
            &PartsSummary {
                computed: 2,
                cached: 1,
            },
            json!({ "computed": 2, "cached": 1 }),
            Style::Compact,
        );
    }
}
