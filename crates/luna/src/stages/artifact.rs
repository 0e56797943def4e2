//! The artifact types stage inputs bind to (`InputSlot`'s `artifact`, a kind's `OUTPUTS`), in
//! one place: a kind that reads another kind's output names the type from here, never from
//! the producing kind's file, so no kind imports a sibling. A `command` stage declares its own
//! with `provides:`; any of these names there makes it a drop-in producer.
//!
//! Rejected: each constant in its producing kind's file (the kinds that read it then import a
//! sibling kind, and a torch kind's constant drags its module into every reader).

pub use crate::model::{CLASSIFIER, SEGMENTER};

/// A LUNA16-format dataset: CT files and CSVs (`synth`).
pub const DATASET: &str = "dataset";
/// annotations.parquet + candidates_raw.parquet (`load_annotations`).
pub const ANNOTATIONS: &str = "annotations";
/// candidates.parquet, the merged table models train on (`merge_candidates`).
pub const CANDIDATES: &str = "candidates";
/// index.parquet + crops/<uid>.h5 (`build_crops`).
pub const CROPS: &str = "crops";
/// predictions.parquet + metrics.json (`evaluate_classifier`).
pub const PREDICTIONS: &str = "predictions";
/// froc.json, froc.csv, submission.csv, … (`evaluate_froc`).
pub const FROC: &str = "froc";
/// Per-series probability volumes, probs/<uid>.h5 (`segment`).
pub const PROBABILITIES: &str = "probabilities";
/// clusters.parquet + seriesuids.csv (`cluster`).
pub const CLUSTERS: &str = "clusters";
/// detections.parquet + seriesuids.csv (`classify_candidates`).
pub const DETECTIONS: &str = "detections";
/// diagnosis.parquet, diagnosis.json, report.md (`diagnose`).
pub const DIAGNOSIS: &str = "diagnosis";
/// Segmentation samples and their index (`seg_dataset`).
pub const SEG_DATASET: &str = "seg_dataset";
