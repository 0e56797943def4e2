//! `train_segmentation`: train the book's UNet (p2ch13) on a `seg_dataset` artifact with the
//! one training loop (`nn::train::fit` + the `Segmentation` task), resumable like
//! `train_classifier`.
//!
//! Decisions (book defaults unless said):
//! - Adam lr 1e-3, batch 16, 300,000 samples per epoch (`epoch_samples`; the demo uses far
//!   fewer), validation at epoch 1, every 5th and the last; best checkpoint by validation
//!   pixel recall.
//! - Training samples: the seg_dataset's 7×96×96 crops around each annotated nodule of the
//!   training series, drawn round-robin over a per-epoch shuffle (book `pos_list[ndx % len]`),
//!   each draw a random 64×64 sub-crop (`sub_crop`) with its centre-slice label. The draw's
//!   sub-crop offsets are part of its sample index, so epochs are reproducible and resumable.
//! - Validation: the full (padded to a multiple of 4) positive slices of the validation
//!   series, pooled over series of different sizes. Best checkpoint by recall (the book) or,
//!   with `best_by: f1`, by F1 — recall alone picks the first epoch's mark-everything model on
//!   the synthetic data (val recall 0.999 at precision 0.014; by epoch 3: 0.91 at 0.46).
//! - Augmentation: the book's p2ch13 set, one transform per batch, on the device (flip, scale
//!   0.2, rotation, noise 25 HU) — plus the translation the book's code drops (offset 0.03
//!   here works; set `offset: 0` for the book's behaviour). Ranges checked at plan time.
//! - Images: after every validation, the book's prediction overlays (`logImages`) of 6 slices
//!   of the first `image_series` validation series, in TensorBoard (every validation) and as
//!   PNGs in the artifact (`images/val/`, the last validation's; `nn::segment` says what is
//!   drawn).
//! - Work runs in the `luna-torch` worker; `device`, `threads`, `loader_threads`, `prefetch`
//!   are hints.
//!
//! The torch half (the work itself) is `crates/luna-torch/src/kinds/train_segmentation.rs`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{Hint, InputSlot, ParamError, Stage, StageRef};
use crate::model::{
    check_augment, check_optimizer, AugmentParams, Device, OptimizerParams, SEGMENTER,
};
use crate::stages::artifact::SEG_DATASET;
use crate::worker::WorkerStage;

/// Parameters of `train_segmentation`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainSegmentationParams {
    /// Epochs to train (required: no default, a silent 1 would hide a forgotten setting).
    pub epochs: usize,
    /// Samples per batch (book: 16).
    #[serde(default = "sixteen")]
    pub batch_size: usize,
    /// Samples (sub-crop draws) per training epoch (book: 300,000).
    #[serde(default = "book_epoch")]
    pub epoch_samples: usize,
    /// Optimizer (book: Adam lr 1e-3).
    #[serde(default = "adam")]
    pub optimizer: OptimizerParams,
    /// Augmentation, one transform per batch (default: the book's p2ch13 values); `null` = none.
    #[serde(default = "seg_aug")]
    pub augment: Option<AugmentParams>,
    /// Side of the random training sub-crop (book: 64); divisible by 4, at most the dataset's crop.
    #[serde(default = "sixty_four")]
    pub sub_crop: usize,
    /// Seed for init, sampling and augmentation.
    #[serde(default)]
    pub seed: u64,
    /// Validate at epoch 1, every n-th epoch and the last (book: 5).
    #[serde(default = "five")]
    pub validate_every: usize,
    /// Best checkpoint by validation pixel `recall` (the book) or `f1`. Recall alone rewards a
    /// model that marks every pixel (recall 1, precision ≈ 0), which an early epoch often is.
    #[serde(default)]
    pub best_by: SegScore,
    /// Validation series drawn into TensorBoard images and `images/val/*.png` after every
    /// validation, 6 slices each: CT grey, TP green, FP red, FN orange (book: 12; 0 = none).
    #[serde(default = "twelve")]
    pub image_series: usize,
    /// Upstream `seg_dataset` stage (default: the one upstream that provides it).
    #[serde(default)]
    pub seg_dataset: Option<StageRef>,
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

fn five() -> usize {
    5
}
fn twelve() -> usize {
    12
}
fn sixteen() -> usize {
    16
}
fn sixty_four() -> usize {
    64
}
fn book_epoch() -> usize {
    300_000
}
fn adam() -> OptimizerParams {
    OptimizerParams::Adam {
        lr: None,
        weight_decay: 0.0,
    }
}
fn seg_aug() -> Option<AugmentParams> {
    Some(AugmentParams {
        flip: true,
        offset: 0.03,
        scale: 0.2,
        rotate: true,
        noise: 25.0,
    })
}

/// The validation score the best segmentation checkpoint is chosen by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SegScore {
    /// Pixel recall (book p2ch13).
    #[default]
    Recall,
    /// Pixel F1.
    F1,
}

/// This kind's name in `uses:` and in the `luna-torch` worker's dispatch table.
pub const KIND: &str = "train_segmentation";

/// The `train_segmentation` kind.
pub struct TrainSegmentationStage;

impl WorkerStage for TrainSegmentationStage {
    fn device(p: &TrainSegmentationParams) -> Option<Device> {
        Some(*p.device)
    }
}

impl Stage for TrainSegmentationStage {
    type Params = TrainSegmentationParams;
    const KIND: &'static str = KIND;
    // 2: prediction overlay images (TensorBoard + images/val/*.png).
    // 3: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Train the book's UNet on a seg_dataset (Dice + 8 x FN loss, best by recall; resumable)";
    const OUTPUTS: &'static [&'static str] = &[SEGMENTER];

    fn slots(p: &TrainSegmentationParams) -> Vec<InputSlot> {
        vec![InputSlot::required(
            "seg_dataset",
            SEG_DATASET,
            p.seg_dataset.as_ref(),
        )]
    }

    fn validate(p: &TrainSegmentationParams) -> Result<(), ParamError> {
        for (v, f) in [
            (p.epochs, "epochs"),
            (p.batch_size, "batch_size"),
            (p.epoch_samples, "epoch_samples"),
            (p.validate_every, "validate_every"),
        ] {
            if v == 0 {
                return Err(ParamError::new(f, format!("{f} must be at least 1")));
            }
        }
        if p.sub_crop == 0 || !p.sub_crop.is_multiple_of(4) {
            return Err(ParamError::new(
                "sub_crop",
                format!(
                    "sub_crop must be a positive multiple of 4 (the UNet pools twice), got {}",
                    p.sub_crop
                ),
            ));
        }
        check_optimizer(&p.optimizer)?;
        if let Some(a) = &p.augment {
            check_augment(a)?;
        }
        Ok(())
    }

    fn run(&self, _p: &TrainSegmentationParams, ctx: &mut StageContext) -> Result<(), StageError> {
        crate::worker::run_in_worker::<Self>(ctx)
    }
}
