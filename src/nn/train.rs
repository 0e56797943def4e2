//! Format-independent training loop for [`LunaModel`] (book ch. 11–12, p2ch14 classifier).
//!
//! - Sources, balanced epoch order and background batch assembly: see `nn::loader`.
//! - Train step: forward (train mode), per-sample cross-entropy on logits, mean, backward,
//!   optimizer step; per-sample loss and P(pos) are kept for the epoch's metrics.
//! - Validation: eval mode under `no_grad` over all samples in order, never augmented.
use crate::nn::augment::{AugmentConfig, AugmentError, Augmenter};
use crate::nn::checkpoint::LoadedModel;
pub use crate::nn::loader::{epoch_order, PassStats, SampleSource, SourceError};
use crate::nn::loader::{for_each_batch, Batch};
use crate::nn::luna_model::LunaModel;
use crate::nn::metrics::{self, Metrics, MetricsError};
use crate::nn::optim::Optimizer;
use serde::{Deserialize, Serialize};
use std::ops::ControlFlow;
use tch::nn::VarStore;
use tch::{Device, Kind, Reduction, Tensor};

/// Training-loop settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Samples per batch (book p2ch14: 24).
    pub batch_size: usize,
    /// Epochs to run (in total, counting resumed ones).
    pub epochs: usize,
    /// Samples per training epoch (book p2ch14: 50,000); 0 = the source length.
    pub epoch_samples: usize,
    /// Negatives per positive (book: 1); 0 = unbalanced.
    pub ratio: usize,
    /// Background batch-assembly threads.
    pub loader_threads: usize,
    /// Batches each loader thread may hold ready ahead of the model.
    pub prefetch: usize,
    /// Seed for sampling and augmentation.
    pub seed: u64,
    /// Augmentation of training batches; `None` = off.
    pub augment: Option<AugmentConfig>,
    /// Validate at epoch 1 and every n-th epoch (book p2ch14: 5; 1 = every epoch).
    pub validate_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 24,
            epochs: 1,
            epoch_samples: 50_000,
            ratio: 1,
            loader_threads: 2,
            prefetch: 2,
            seed: 0,
            augment: None,
            validate_every: 1,
        }
    }
}

/// Training errors.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The source failed to produce a sample.
    #[error("reading sample {index}: {source}")]
    Source {
        /// Sample index.
        index: usize,
        /// Cause.
        source: SourceError,
    },
    /// Balanced sampling needs both classes.
    #[error("training data has {pos} positives and {neg} negatives; balanced sampling (ratio {ratio}) needs both; hint: set ratio 0 or fix the split")]
    OneClass {
        /// Positives.
        pos: usize,
        /// Negatives.
        neg: usize,
        /// Ratio requested.
        ratio: usize,
    },
    /// Source crop size differs from the model input size.
    #[error("sample crop shape {found:?} differs from the model input size {expected:?}; hint: re-crop the data or change the model config")]
    CropShape {
        /// Model input size.
        expected: [i64; 3],
        /// Source crop shape.
        found: [usize; 3],
    },
    /// Zero batch size, epochs or threads.
    #[error("train config: {field} must be >= 1")]
    Config {
        /// Field name.
        field: &'static str,
    },
    /// A loader thread stopped without delivering a batch (it panicked).
    #[error("batch loader thread stopped before delivering batch {batch}; hint: the sample source panicked, see the message above")]
    LoaderStopped {
        /// Batch number in the pass.
        batch: usize,
    },
    /// Augmentation failed.
    #[error(transparent)]
    Augment(#[from] AugmentError),
    /// Metrics failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Torch failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// The per-epoch callback failed.
    #[error("epoch callback: {0}")]
    Callback(SourceError),
}

/// Per-sample outputs of a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Source indices in pass order.
    pub indices: Vec<usize>,
    /// Labels.
    pub labels: Vec<bool>,
    /// Softmax probability of the positive class.
    pub prob_pos: Vec<f32>,
    /// Per-sample cross-entropy.
    pub loss: Vec<f32>,
}

/// What the per-epoch callback sees.
#[derive(Debug, Clone)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Training samples seen after this epoch.
    pub total_samples: u64,
    /// Training metrics (on augmented batches, train-mode outputs).
    pub train: Metrics,
    /// Training throughput.
    pub train_stats: PassStats,
    /// Validation metrics, predictions and throughput when validated this epoch.
    pub val: Option<(Metrics, Predictions, PassStats)>,
}

fn push_outputs(
    p: &mut Predictions,
    b: &Batch,
    probs: &Tensor,
    loss: &Tensor,
) -> Result<(), TrainError> {
    let pp: Vec<f32> = Vec::try_from(
        probs
            .select(1, 1)
            .to_device(Device::Cpu)
            .to_kind(Kind::Float),
    )?;
    let ll: Vec<f32> = Vec::try_from(loss.to_device(Device::Cpu).to_kind(Kind::Float))?;
    p.indices.extend_from_slice(&b.indices);
    p.labels.extend_from_slice(&b.labels);
    p.prob_pos.extend(pp);
    p.loss.extend(ll);
    Ok(())
}

fn targets(labels: &[bool], device: Device) -> Tensor {
    let t: Vec<i64> = labels.iter().map(|&l| i64::from(l)).collect();
    Tensor::from_slice(&t).to_device(device)
}

fn check_shape(model: &LunaModel, source: &dyn SampleSource) -> Result<(), TrainError> {
    let expected = model.config().input_size;
    let found = source.crop_shape();
    if expected.iter().zip(found).any(|(&e, f)| e as usize != f) {
        return Err(TrainError::CropShape { expected, found });
    }
    Ok(())
}

/// One training pass over `order` (see [`epoch_order`]).
pub fn train_pass(
    model: &LunaModel,
    opt: &mut Optimizer,
    source: &dyn SampleSource,
    order: &[usize],
    cfg: &TrainConfig,
    mut augmenter: Option<&mut Augmenter>,
) -> Result<(Predictions, PassStats), TrainError> {
    check_shape(model, source)?;
    let device = model.device();
    let mut preds = Predictions::default();
    let stats = for_each_batch(
        source,
        order,
        cfg.batch_size,
        cfg.loader_threads,
        cfg.prefetch,
        |b| {
            let mut input = b.input.to_device(device);
            if let Some(a) = augmenter.as_deref_mut() {
                input = a.augment(&input)?;
            }
            let (logits, probs) = model.forward_t(&input, true);
            let loss = logits.cross_entropy_loss::<Tensor>(
                &targets(&b.labels, device),
                None,
                Reduction::None,
                -100,
                0.0,
            );
            opt.backward_step(&loss.mean(Kind::Float));
            push_outputs(&mut preds, &b, &probs.detach(), &loss.detach())
        },
    )?;
    Ok((preds, stats))
}

/// Evaluation pass (eval mode, `no_grad`) over every sample of `source` in order.
pub fn predict(
    model: &LunaModel,
    source: &dyn SampleSource,
    batch_size: usize,
    loader_threads: usize,
    prefetch: usize,
) -> Result<(Predictions, PassStats), TrainError> {
    check_shape(model, source)?;
    let device = model.device();
    let order: Vec<usize> = (0..source.len()).collect();
    let mut preds = Predictions::default();
    let stats = for_each_batch(
        source,
        &order,
        batch_size.max(1),
        loader_threads,
        prefetch,
        |b| {
            tch::no_grad(|| {
                let (logits, probs) = model.forward_t(&b.input.to_device(device), false);
                let loss = logits.cross_entropy_loss::<Tensor>(
                    &targets(&b.labels, device),
                    None,
                    Reduction::None,
                    -100,
                    0.0,
                );
                push_outputs(&mut preds, &b, &probs, &loss)
            })
        },
    )?;
    Ok((preds, stats))
}

/// Per-epoch callback: sees the report, the weights and the optimizer (to checkpoint); returns
/// `Break` to stop early.
pub type EpochCallback<'a> =
    dyn FnMut(&EpochReport, &VarStore, &Optimizer) -> Result<ControlFlow<()>, SourceError> + 'a;

/// Runs epochs `start_epoch+1 ..= cfg.epochs`; `on_epoch` may stop early with `Break`.
#[allow(clippy::too_many_arguments)]
pub fn train(
    lm: &LoadedModel,
    opt: &mut Optimizer,
    train_src: &dyn SampleSource,
    val_src: Option<&dyn SampleSource>,
    cfg: &TrainConfig,
    start_epoch: usize,
    mut total_samples: u64,
    on_epoch: &mut EpochCallback<'_>,
) -> Result<u64, TrainError> {
    for (v, field) in [
        (cfg.batch_size, "batch_size"),
        (cfg.loader_threads, "loader_threads"),
        (cfg.validate_every, "validate_every"),
    ] {
        if v == 0 {
            return Err(TrainError::Config { field });
        }
    }
    let labels: Vec<bool> = (0..train_src.len()).map(|i| train_src.label(i)).collect();
    for epoch in start_epoch + 1..=cfg.epochs {
        let order = epoch_order(&labels, cfg.ratio, cfg.epoch_samples, cfg.seed, epoch)?;
        let mut aug = cfg
            .augment
            .clone()
            .map(|a| Augmenter::new(a, cfg.seed.wrapping_add(epoch as u64)));
        let (tp, train_stats) = train_pass(&lm.model, opt, train_src, &order, cfg, aug.as_mut())?;
        total_samples += order.len() as u64;
        let train = metrics::compute(&tp.labels, &tp.prob_pos, &tp.loss)?;
        let val = match val_src {
            Some(v) if epoch == 1 || epoch % cfg.validate_every == 0 => {
                let (p, s) = predict(
                    &lm.model,
                    v,
                    cfg.batch_size,
                    cfg.loader_threads,
                    cfg.prefetch,
                )?;
                Some((metrics::compute(&p.labels, &p.prob_pos, &p.loss)?, p, s))
            }
            _ => None,
        };
        let report = EpochReport {
            epoch,
            total_samples,
            train,
            train_stats,
            val,
        };
        if on_epoch(&report, &lm.vs, opt)
            .map_err(TrainError::Callback)?
            .is_break()
        {
            break;
        }
    }
    Ok(total_samples)
}
