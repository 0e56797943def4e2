//! `segment`: whole-CT inference of a trained segmenter (book p2ch14 `segmentCt`): for each
//! chosen series, every slice with its context slices (clamped at the volume ends, HU clipped
//! to ±1000) through the UNet, batched on the device → the per-series probability volume
//! (`store::prob_volume`: uint8 p = v/255, the CT's geometry as attributes) that `cluster`
//! reads.
//!
//! Decisions:
//! - Series: `val` (default, the book's `--run-validation`), `test`, `train`, `train_val`,
//!   `all`, or a list of uids; the split is the `candidates` table's (merge_candidates), so a
//!   split needs that input, `all` and a list do not.
//! - **Partitioned per series**, key material = the CT's content + the model artifact's key, so
//!   a new series (or a retrained model) computes exactly what changed; the work runs in the
//!   `luna-torch` worker, which reports its partitions to the manifest.
//! - Memory stays bounded: one clipped CT (i16) and one output volume (u8) per series; slices
//!   are assembled batch by batch (`batch_size` slices, a hint).
//! - The number of context slices comes from the model (in_channels = 2·context + 1).
//! - Slices whose size is not a multiple of 4 (the UNet's two poolings) are padded with air
//!   (−1000 HU) at the bottom and right and the output cropped back; LUNA16's 512×512 needs
//!   none.
//!
//! The torch half (the work itself) is `crates/luna-torch/src/kinds/segment.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, Hint, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::model::{Device, SEGMENTER};
use crate::stages::artifact::{CANDIDATES, PROBABILITIES};
use crate::stages::dataset::{candidate_uids, ct_reads, ct_root_inputs, dataset_slot};
use crate::worker::WorkerStage;
use std::collections::BTreeSet;

/// Which series to segment (default `val`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum SeriesChoice {
    /// `val`, `train` or `all`.
    Split(SplitChoice),
    /// Explicit series uids.
    List(Vec<String>),
}

impl Default for SeriesChoice {
    fn default() -> Self {
        SeriesChoice::Split(SplitChoice::Val)
    }
}

/// A named set of series: a split of the candidates table, or `all` (every CT of the dataset).
pub use crate::tables::SplitChoice;

impl SeriesChoice {
    /// Whether the choice needs the candidates table's split.
    pub fn needs_split(&self) -> bool {
        matches!(self, SeriesChoice::Split(s) if *s != SplitChoice::All)
    }
}

/// Parameters of `segment`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentParams {
    /// `val` (default), `test`, `train`, `train_val`, `all`, or a list of series uids.
    #[serde(default)]
    pub series: SeriesChoice,
    /// Upstream `train_segmentation` stage (default: the one upstream segmenter).
    #[serde(default)]
    pub model: Option<StageRef>,
    /// Upstream `merge_candidates` stage (for the split; default: the one upstream).
    #[serde(default)]
    pub candidates: Option<StageRef>,
    /// Upstream dataset stage with the CTs (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// Folder with `subset*/<uid>.mhd` instead of a dataset stage.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Hint: `auto` (default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Hint<Device>,
    /// Hint: slices per batch (default 8).
    #[serde(default)]
    pub batch_size: Hint<Option<usize>>,
    /// Hint: torch intra-op threads (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "segment";

/// The `segment` kind.
pub struct SegmentStage;

impl WorkerStage for SegmentStage {
    fn device(p: &SegmentParams) -> Option<Device> {
        Some(*p.device)
    }
}

impl Stage for SegmentStage {
    const PARTITIONED: bool = true;
    type Params = SegmentParams;
    const KIND: &'static str = KIND;
    // 2: probability volumes without HDF5 modification times (reproducible bytes, same values).
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Whole-CT segmentation with a trained UNet: per-series probability volumes for cluster";
    const OUTPUTS: &'static [&'static str] = &[PROBABILITIES];

    fn slots(p: &SegmentParams) -> Vec<InputSlot> {
        let mut v = vec![InputSlot::required("model", SEGMENTER, p.model.as_ref())];
        v.push(if p.series.needs_split() {
            InputSlot::required("candidates", CANDIDATES, p.candidates.as_ref())
        } else {
            InputSlot::optional("candidates", CANDIDATES, p.candidates.as_ref())
        });
        v.push(dataset_slot(p.ct_root.as_ref(), p.dataset.as_ref()));
        v
    }

    /// Which series run is a selection, not part of a series' result: partitions do not depend
    /// on it, so segmenting one more series reuses the others.
    fn partition_params(_p: &SegmentParams, semantic: &serde_json::Value) -> serde_json::Value {
        let mut v = semantic.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("series");
        }
        v
    }

    fn inputs(p: &SegmentParams) -> Vec<ExternalInput> {
        let by = p.series.needs_split().then_some("candidates");
        ct_root_inputs(p.ct_root.as_ref(), by)
    }

    /// The CTs of the chosen series: listed, every one, or those of a split of the candidates.
    fn reads(p: &SegmentParams, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        let uids: Option<BTreeSet<String>> = match (&p.series, at.by) {
            (SeriesChoice::List(l), _) => Some(l.iter().cloned().collect()),
            (SeriesChoice::Split(choice), Some(d)) => Some(candidate_uids(d, *choice)?),
            (SeriesChoice::Split(_), None) => None,
        };
        ct_reads(at.root, uids.as_ref())
    }

    fn validate(p: &SegmentParams) -> Result<(), ParamError> {
        if let SeriesChoice::List(l) = &p.series {
            if l.is_empty() {
                return Err(ParamError::new("series", "the series list is empty; use `val`, `train`, `all` or name at least one series uid"));
            }
        }
        if p.batch_size.0 == Some(0) {
            return Err(ParamError::new(
                "batch_size",
                "batch_size must be at least 1",
            ));
        }
        Ok(())
    }

    fn run(&self, _p: &SegmentParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}
