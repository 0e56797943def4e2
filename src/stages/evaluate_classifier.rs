//! `evaluate_classifier`: score a trained LunaModel on a crops artifact's split and write
//! `predictions.parquet`, `metrics.json`, `roc.png` and `pr.png`.
//!
//! Decisions:
//! - The model is an upstream `train_classifier` stage, by name or (default) the nearest one;
//!   its task (from the model's sidecar) decides the labels: a malignancy model is evaluated on
//!   nodules only, as the book validates it.
//! - The ROC AUC is exact (all distinct thresholds), not the book's 100-threshold trapezoid.
//! - Inference runs in the `luna-torch` worker; `device` is a hint.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{Hint, Stage};
use crate::stages::torch_data::Split;

/// Parameters of `evaluate_classifier`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Upstream `train_classifier` stage (default: the nearest one).
    #[serde(default)]
    pub model: Option<String>,
    /// Which split to score: `val`, `train` or `all`.
    #[serde(default)]
    pub split: Split,
    /// Decision threshold on P(positive) for the confusion counts.
    #[serde(default = "half")]
    pub threshold: f64,
    /// Hint: `auto`, `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Hint<String>,
    /// Hint: torch intra-op threads.
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

fn half() -> f64 {
    0.5
}

/// The `evaluate_classifier` kind.
pub struct EvaluateClassifierStage;

impl Stage for EvaluateClassifierStage {
    type Params = EvaluateParams;
    const KIND: &'static str = "evaluate_classifier";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Evaluate a trained classifier: predictions, confusion, P/R/F1, ROC AUC, ROC and PR plots";

    fn validate(p: &EvaluateParams) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&p.threshold) {
            return Err((
                "threshold".into(),
                format!("threshold must be in [0, 1], got {}", p.threshold),
            ));
        }
        crate::stages::torch_model::check_device(&p.device).map_err(|m| ("device".into(), m))
    }

    fn run(&self, _p: &EvaluateParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker(Self::KIND, ctx)
    }
}

/// Confusion counts and scores at a threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Confusion {
    /// Threshold used (positive when P >= threshold).
    pub threshold: f64,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub r#fn: usize,
    /// TP/(TP+FP) (0 when undefined).
    pub precision: f64,
    /// TP/(TP+FN) (0 when undefined).
    pub recall: f64,
    /// Harmonic mean (0 when undefined).
    pub f1: f64,
}

/// Computes the confusion at `threshold` (positive when `p >= threshold`).
pub fn confusion(labels: &[bool], probs: &[f32], threshold: f64) -> Confusion {
    let (mut tp, mut fp, mut tn, mut fneg) = (0, 0, 0, 0);
    for (&l, &p) in labels.iter().zip(probs) {
        match (l, f64::from(p) >= threshold) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (false, false) => tn += 1,
            (true, false) => fneg += 1,
        }
    }
    let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = div(tp, tp + fp);
    let recall = div(tp, tp + fneg);
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Confusion {
        threshold,
        tp,
        fp,
        tn,
        r#fn: fneg,
        precision,
        recall,
        f1,
    }
}

#[cfg(feature = "torch")]
pub use crate::stages::torch_eval::execute;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_at_threshold() {
        let l = [true, true, true, false, false];
        let p = [0.9, 0.5, 0.2, 0.5, 0.1];
        let c = confusion(&l, &p, 0.5);
        assert_eq!((c.tp, c.fp, c.tn, c.r#fn), (2, 1, 1, 1));
        assert!((c.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((c.f1 - 2.0 / 3.0).abs() < 1e-12);
    }
}
