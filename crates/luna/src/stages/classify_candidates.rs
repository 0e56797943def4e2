//! `classify_candidates`: the book's p2ch14 `classifyCandidates` — every cluster of the
//! segmentation is cropped from its CT with the `build_crops` rule (32×48×48 by default, the
//! window shifted inside the volume, HU clipped) and scored by the nodule classifier and,
//! when given, the malignancy classifier → `detections.parquet`.
//!
//! Decisions:
//! - Input points: a `clusters` artifact (the detection path), **or** any `candidates` table
//!   (series_uid + world xyz, e.g. `merge_candidates`' or a `command` stage's): exactly one of
//!   the two binds (an either-or input). With a candidate table every candidate is a point
//!   (its `candidate_id` becomes the detection's `cluster_id`) and the searched series are the
//!   table's series. (Scoring the LUNA16 candidates for the false-positive-reduction track is
//!   usually `evaluate_classifier` + `evaluate_froc`, which also gives labels and metrics.)
//! - Malignancy is scored for every candidate (as the book does; `diagnose` only counts it for
//!   candidates the nodule classifier accepts); without a malignancy model the column is null.
//! - **Partitioned per series** in the `luna-torch` worker; key material = the CT's content,
//!   the series' cluster centres and the model artifacts' keys.
//! - The crop size is the nodule model's `input_size` (the malignancy model must agree).
//! - **Which series were searched**: the clusters artifact's `seriesuids.csv` (see
//!   `stages::cluster`), copied beside `detections.parquet`, so a series that was segmented
//!   but yielded no detection is still a scan for `evaluate_froc` (the FP divisor, its nodules
//!   missed). A clusters artifact without it is an error, not "the series with clusters".
//! - The models are checked against their slots: `model` must be a nodule classifier and
//!   `malignancy_model` a malignancy one (from the sidecar's task); a swap is an error.
//!
//! The torch half (the work itself) is `crates/luna-torch/src/kinds/classify_candidates.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, Hint, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::model::{Device, CLASSIFIER};
use crate::stages::artifact::{CANDIDATES, CLUSTERS, DETECTIONS};
use crate::stages::dataset::{ct_reads, ct_root_inputs, dataset_slot};
use crate::worker::WorkerStage;

/// Parameters of `classify_candidates`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClassifyCandidatesParams {
    /// Upstream `cluster` stage (default: the one upstream providing clusters).
    #[serde(default)]
    pub clusters: Option<StageRef>,
    /// Instead of `clusters`: an upstream stage providing a `candidates` table (every
    /// candidate is classified).
    #[serde(default)]
    pub candidates: Option<StageRef>,
    /// Upstream nodule classifier (`train_classifier`, task nodule).
    #[serde(default)]
    pub model: Option<StageRef>,
    /// Upstream malignancy classifier (`train_classifier`, task malignancy); none = no
    /// malignancy column.
    #[serde(default)]
    pub malignancy_model: Option<StageRef>,
    /// Upstream dataset stage with the CTs (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// Folder with `subset*/<uid>.mhd` instead of a dataset stage.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Hint: `auto` (default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Hint<Device>,
    /// Hint: crops per batch (default 32).
    #[serde(default)]
    pub batch_size: Hint<Option<usize>>,
    /// Hint: torch intra-op threads (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "classify_candidates";

/// The `classify_candidates` kind.
pub struct ClassifyCandidatesStage;

impl WorkerStage for ClassifyCandidatesStage {
    fn device(p: &ClassifyCandidatesParams) -> Option<Device> {
        Some(*p.device)
    }
}

impl Stage for ClassifyCandidatesStage {
    const PARTITIONED: bool = true;
    type Params = ClassifyCandidatesParams;
    const KIND: &'static str = KIND;
    // 3: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Classify segmentation clusters (or any candidate table): crops from the CT, P(nodule) and P(malignant) per point";
    const OUTPUTS: &'static [&'static str] = &[DETECTIONS];

    fn slots(p: &ClassifyCandidatesParams) -> Vec<InputSlot> {
        let mut v = vec![
            InputSlot::alternative("points", "clusters", CLUSTERS, p.clusters.as_ref()),
            InputSlot::alternative("points", "candidates", CANDIDATES, p.candidates.as_ref()),
            InputSlot::required("model", CLASSIFIER, p.model.as_ref()),
        ];
        if let Some(m) = &p.malignancy_model {
            v.push(InputSlot::required("malignancy_model", CLASSIFIER, Some(m)));
        }
        v.push(dataset_slot(p.ct_root.as_ref(), p.dataset.as_ref()));
        v
    }

    fn inputs(p: &ClassifyCandidatesParams) -> Vec<ExternalInput> {
        ct_root_inputs(p.ct_root.as_ref(), None)
    }

    /// Every CT under the root (its points come from one of two tables, clusters or
    /// candidates): a README or a lung mask leaves the key alone, a new series does not.
    fn reads(_p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        ct_reads(at.root, None)
    }

    fn validate(p: &ClassifyCandidatesParams) -> Result<(), ParamError> {
        if p.batch_size.0 == Some(0) {
            return Err(ParamError::new(
                "batch_size",
                "batch_size must be at least 1",
            ));
        }
        Ok(())
    }

    fn run(&self, _p: &ClassifyCandidatesParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}
