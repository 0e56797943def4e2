//! `train_classifier`: train the book's LunaModel on a crops artifact (book p2ch14
//! `training.py`), either nodule vs non-nodule or, fine-tuned from a nodule model, malignant vs
//! benign.
//!
//! Decisions:
//! - Defaults are p2ch14's: batch 24, SGD lr 1e-3 (3e-3 when fine-tuning) without momentum,
//!   weight decay 1e-4, balanced ratio 1, epoch 50,000 samples (nodule) / 100,000 (malignancy),
//!   validation at epoch 1 and every 5th (every epoch when fine-tuning). We also validate the
//!   last epoch, so a short run always has a scored model. Augmentation defaults to the ch. 12
//!   per-sample set (flip, offset, scale, rotate, noise), each switchable; p2ch14 only flips and
//!   rotates (its offset is a no-op bug, see `nn::augment`).
//! - Malignancy training samples as `MalignantLunaDataset`: odd samples malignant, `k%4==0`
//!   benign, `k%4==2` non-nodule negatives (labelled not malignant), lists reshuffled per epoch;
//!   validation is nodules only.
//! - The best checkpoint is chosen by validation F1 (nodule) or ROC AUC (malignancy), as p2ch14.
//! - Every epoch checkpoints (model, optimizer state, sidecar, history) into the stage's resume
//!   directory; a re-run after a crash resumes from it (epoch RNGs derive from seed + epoch, so
//!   the result matches an uninterrupted run's sampling).
//! - Work runs in the `luna-torch` worker (see `crate::worker`); `device`, `threads`,
//!   `loader_threads` and `prefetch` are hints, outside the cache key.
//!
//! The torch half (the work itself) is `crates/luna-torch/src/kinds/train_classifier.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{Hint, InputSlot, ParamError, Stage, StageRef};
use crate::model::Device;
use crate::model::CLASSIFIER;
use crate::stages::artifact::CROPS;
pub use crate::store::crop_set::Task;
use crate::worker::WorkerStage;

use crate::model::{check_augment, check_optimizer};
pub use crate::model::{AugmentParams, OptimizerParams};

/// Parameters of `train_classifier`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// `nodule` (nodule vs non-nodule) or `malignancy` (malignant vs benign).
    #[serde(default)]
    pub task: Task,
    /// Epochs to train (required: no default, a silent 1 would hide a forgotten setting).
    pub epochs: usize,
    /// Samples per batch (book: 24).
    #[serde(default = "batch")]
    pub batch_size: usize,
    /// Samples per training epoch (default: book 50,000 nodule / 100,000 malignancy).
    #[serde(default)]
    pub epoch_samples: Option<usize>,
    /// Optimizer (default: book SGD lr 1e-3, or 3e-3 when fine-tuning, weight decay 1e-4).
    #[serde(default)]
    pub optimizer: OptimizerParams,
    /// Training augmentation; `null` = none.
    #[serde(default = "some_aug")]
    pub augment: Option<AugmentParams>,
    /// Negatives per positive for the nodule task (book: 1).
    #[serde(default = "one")]
    pub ratio: usize,
    /// Seed for init, sampling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Validate at epoch 1, every n-th epoch and the last (default 5; 1 when fine-tuning).
    #[serde(default)]
    pub validate_every: Option<usize>,
    /// Upstream `train_classifier` stage to fine-tune from (all but the head is loaded).
    #[serde(default)]
    pub finetune_from: Option<StageRef>,
    /// Upstream `build_crops` stage (default: the one upstream that provides crops).
    #[serde(default)]
    pub crops: Option<StageRef>,
    /// Trainable blocks when fine-tuning: 1 = head, 2 = head + block4 (book).
    #[serde(default = "one")]
    pub finetune_depth: usize,
    /// Train even when the training split has only one class (otherwise an error); sampling
    /// is then an unbalanced shuffled pass.
    #[serde(default)]
    pub allow_single_class: bool,
    /// Hint: `auto` (default), `cpu`, `cuda` or `cuda:N`.
    #[serde(default)]
    pub device: Hint<Device>,
    /// Hint: torch intra-op threads (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
    /// Hint: background batch-assembly threads (default 2).
    #[serde(default)]
    pub loader_threads: Hint<Option<usize>>,
    /// Hint: batches each loader thread prepares ahead (default 2).
    #[serde(default)]
    pub prefetch: Hint<Option<usize>>,
}

fn one() -> usize {
    1
}
fn batch() -> usize {
    24
}
fn some_aug() -> Option<AugmentParams> {
    Some(AugmentParams::default())
}

impl TrainParams {
    /// Samples per epoch after defaults.
    pub fn epoch_samples(&self) -> usize {
        self.epoch_samples.unwrap_or(match self.task {
            Task::Nodule => 50_000,
            Task::Malignancy => 100_000,
        })
    }
    /// Validation interval after defaults.
    pub fn validate_every(&self) -> usize {
        self.validate_every
            .unwrap_or(if self.finetune_from.is_some() { 1 } else { 5 })
    }
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "train_classifier";

/// The `train_classifier` kind.
pub struct TrainClassifierStage;

impl WorkerStage for TrainClassifierStage {
    fn device(p: &TrainParams) -> Option<Device> {
        Some(*p.device)
    }
}

impl Stage for TrainClassifierStage {
    type Params = TrainParams;
    const KIND: &'static str = KIND;
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Train the book's LunaModel on a crops artifact (nodule or malignancy; resumable)";
    const OUTPUTS: &'static [&'static str] = &[CLASSIFIER];

    fn slots(p: &TrainParams) -> Vec<InputSlot> {
        let mut v = vec![InputSlot::required("crops", CROPS, p.crops.as_ref())];
        if let Some(src) = &p.finetune_from {
            v.push(InputSlot::required("finetune_from", CLASSIFIER, Some(src)));
        }
        v
    }

    fn validate(p: &TrainParams) -> Result<(), ParamError> {
        for (v, f) in [
            (p.epochs, "epochs"),
            (p.batch_size, "batch_size"),
            (p.epoch_samples(), "epoch_samples"),
            (p.validate_every(), "validate_every"),
        ] {
            if v == 0 {
                return Err(ParamError::new(f, format!("{f} must be at least 1")));
            }
        }
        if !(1..=6).contains(&p.finetune_depth) {
            return Err(ParamError::new(
                "finetune_depth",
                format!(
                    "finetune_depth must be 1..=6 (1 = head, 2 = head + block4), got {}",
                    p.finetune_depth
                ),
            ));
        }
        if p.task == Task::Malignancy && p.ratio != 1 {
            return Err(ParamError::new("ratio", "ratio applies to the nodule task only; malignancy sampling is fixed (50% malignant, 25% benign, 25% non-nodule)"));
        }
        check_optimizer(&p.optimizer)?;
        if let Some(a) = &p.augment {
            check_augment(a)?;
        }
        Ok(())
    }

    fn run(&self, _p: &TrainParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}
