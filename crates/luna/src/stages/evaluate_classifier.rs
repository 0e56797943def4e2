//! `evaluate_classifier`: score a trained LunaModel on a crops artifact's split and write
//! `predictions.parquet`, `metrics.json`, `roc.png` and `pr.png`.
//!
//! Decisions:
//! - The model is an upstream classifier artifact, by name or (default) the nearest one: a
//!   `train_classifier` stage, or an `import_model` of a `luna_model` checkpoint (its sidecar
//!   says task nodule). The task decides the labels: a malignancy model is evaluated on
//!   nodules only, as the book validates it.
//! - The ROC AUC is exact (all distinct thresholds), not the book's 100-threshold trapezoid.
//! - A malignancy model is reported beside the book's baseline (§14.5): the exact ROC AUC of
//!   the nodule diameter alone as the score, on the same nodules (`diameter_auc`).
//! - **Pooled folds** (`predictions: [eval_0, eval_1, …]`): no model runs; the rows of those
//!   `evaluate_classifier` artifacts are concatenated in list order and scored as one set
//!   (one pooled AUC / F1 / diameter baseline), and `metrics.json`'s `inputs` holds each
//!   input's own `metrics.json` beside it. Their tasks and splits must agree and no candidate
//!   may be scored twice. `crops:` (one, or one per input) gives the diameters for the
//!   malignancy baseline; without it the pooled `diameter_auc` is null (logged). Rejected:
//!   pairing `model:` and `crops:` lists and re-running every fold's inference (the fold
//!   stages have already scored their test split; their rows are the evaluation).
//! - Inference runs in the `luna-torch` worker; `device` is a hint.
//!
//! The torch half (the work itself) is `crates/luna-torch/src/kinds/evaluate_classifier.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{Hint, InputSlot, ParamError, Stage, StageRef, StageRefs};
use crate::model::Device;
use crate::model::CLASSIFIER;
use crate::stages::artifact::{CROPS, PREDICTIONS};
use crate::store::crop_set::Split;
use crate::worker::WorkerStage;

/// Parameters of `evaluate_classifier`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Upstream classifier: a `train_classifier` stage or an `import_model` one (`luna_model`)
    /// (default: the one direct `needs:` entry that provides a classifier).
    #[serde(default)]
    pub model: Option<StageRef>,
    /// Upstream `build_crops` stage (default: the one upstream that provides crops). With
    /// `predictions`: optional, one for all inputs or a list paired with them (diameters).
    #[serde(default)]
    pub crops: Option<StageRefs>,
    /// Pool folds instead of running a model: upstream `evaluate_classifier` stages whose
    /// predictions are scored as one set (no `model`).
    #[serde(default)]
    pub predictions: Option<StageRefs>,
    /// Which split to score: `val`, `test`, `train`, `train_val` or `all`.
    #[serde(default)]
    pub split: Split,
    /// Decision threshold on P(positive) for the confusion counts.
    #[serde(default = "half")]
    pub threshold: f64,
    /// Hint: `auto` (default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Hint<Device>,
    /// Hint: torch intra-op threads.
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

fn half() -> f64 {
    0.5
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "evaluate_classifier";

/// The `evaluate_classifier` kind.
pub struct EvaluateClassifierStage;

impl WorkerStage for EvaluateClassifierStage {
    fn device(p: &EvaluateParams) -> Option<Device> {
        Some(*p.device)
    }
}

impl Stage for EvaluateClassifierStage {
    type Params = EvaluateParams;
    const KIND: &'static str = KIND;
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    // 3: metrics.json gains `diameter_auc` (the diameter-only malignancy baseline) and `inputs`.
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Evaluate a trained classifier: predictions, confusion, P/R/F1, ROC AUC, ROC and PR plots";
    const OUTPUTS: &'static [&'static str] = &[PREDICTIONS];

    fn slots(p: &EvaluateParams) -> Vec<InputSlot> {
        let crops = InputSlot::required("crops", CROPS, None).listed(p.crops.as_ref());
        match &p.predictions {
            Some(preds) => vec![
                InputSlot::required("predictions", PREDICTIONS, None).listed(Some(preds)),
                InputSlot {
                    required: false,
                    ..crops
                },
            ],
            None => vec![
                InputSlot::required("model", CLASSIFIER, p.model.as_ref()),
                crops,
            ],
        }
    }

    fn validate(p: &EvaluateParams) -> Result<(), ParamError> {
        let crops = p.crops.as_ref().map_or(1, StageRefs::len);
        let inputs = p.predictions.as_ref().map_or(1, StageRefs::len);
        if p.predictions.is_some() && p.model.is_some() {
            return Err(ParamError::new(
                "model",
                "`predictions` pools evaluations that already ran their models: leave `model` out",
            ));
        }
        if crops > 1 && crops != inputs {
            return Err(ParamError::new(
                "crops",
                format!("{crops} crops stages for {inputs} inputs: name one for all, or one per `predictions` stage, in the same order"),
            ));
        }
        if !(0.0..=1.0).contains(&p.threshold) {
            return Err(ParamError::new(
                "threshold",
                format!("threshold must be in [0, 1], got {}", p.threshold),
            ));
        }
        Ok(())
    }

    fn run(&self, _p: &EvaluateParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}
