//! Checkpoints: model weights, optimizer state and a JSON sidecar in one directory.
//!
//! Layout of a checkpoint directory:
//! - `model.safetensors` — `VarStore::save`; keys are the PyTorch state-dict keys, so
//!   `LunaModel().load_state_dict(safetensors.torch.load_file(...))` works in Python;
//! - `optimizer.safetensors` — [`Optimizer::save`] (momentum buffers / Adam moments / steps);
//! - `checkpoint.json` — [`CheckpointMeta`]: architecture config, optimizer hyperparameters,
//!   caller's training params (opaque JSON), epoch, total samples, score, best score, RNG state.
//!
//! Files are written under temporary names and renamed, sidecar last, so a crash leaves either
//! the previous complete checkpoint or a sidecar-less directory that [`read_meta`] rejects.
//!
//! Fine-tuning (book §3.6): every variable except `head_linear.*` is copied from the source
//! checkpoint, the head keeps its fresh book init, and only the last `depth` of
//! `[tail_batchnorm, block1..block4, head_linear]` are trainable (1 = head, 2 = head + block4).
//! As in the book, frozen BatchNorm running statistics still update in train mode.
use crate::nn::luna_model::{LunaModel, LunaModelConfig, ModelError};
use crate::nn::optim::{OptimError, Optimizer, OptimizerConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

/// Weights file name inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.safetensors";
/// Optimizer state file name.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// Sidecar file name.
pub const META_FILE: &str = "checkpoint.json";
/// Current sidecar format version.
pub const FORMAT_VERSION: u32 = 1;
/// Top-level parameter blocks in model order (book `model_blocks`).
pub const MODEL_BLOCKS: [&str; 6] = [
    "tail_batchnorm",
    "block1",
    "block2",
    "block3",
    "block4",
    "head_linear",
];

/// The JSON sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Sidecar format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Architecture.
    pub model: LunaModelConfig,
    /// Optimizer kind and hyperparameters.
    pub optimizer: OptimizerConfig,
    /// Training parameters as given by the caller (opaque here).
    pub train_params: serde_json::Value,
    /// Epochs completed.
    pub epoch: usize,
    /// Training samples seen so far (the book's TensorBoard x-axis).
    pub total_samples: u64,
    /// Score of this checkpoint, if validated.
    pub score: Option<f64>,
    /// Best score so far.
    pub best_score: Option<f64>,
    /// RNG state to continue the sampler/augmenter from, if any.
    pub rng_state: Option<u64>,
}

/// Checkpoint errors.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// File IO failed.
    #[error(
        "checkpoint {path}: {source}; hint: check the directory exists and is readable/writable"
    )]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Sidecar is not valid JSON of the expected shape.
    #[error("checkpoint {path}: invalid sidecar: {source}; hint: the checkpoint is incomplete or from another tool, retrain or delete it")]
    Meta {
        /// File.
        path: PathBuf,
        /// Cause.
        source: serde_json::Error,
    },
    /// Unsupported sidecar version.
    #[error("checkpoint {path}: format_version {found}, this luna reads {expected}; hint: re-create the checkpoint with this version")]
    Version {
        /// File.
        path: PathBuf,
        /// Found.
        found: u32,
        /// Supported.
        expected: u32,
    },
    /// Weights could not be read/written or do not match the model.
    #[error("checkpoint {path}: {source}; hint: the weights do not match the architecture in the sidecar")]
    Weights {
        /// File.
        path: PathBuf,
        /// Cause.
        source: tch::TchError,
    },
    /// A weight is missing or has the wrong shape.
    #[error("checkpoint {path}: variable {name:?} expected shape {expected:?}, found {found:?} (empty = missing); hint: the checkpoint was trained with a different crop size or architecture")]
    Shape {
        /// File.
        path: PathBuf,
        /// Variable name.
        name: String,
        /// Model shape.
        expected: Vec<i64>,
        /// File shape.
        found: Vec<i64>,
    },
    /// Fine-tune depth out of range.
    #[error("finetune depth {depth} must be between 1 and {max}; hint: 1 trains head_linear only, 2 adds block4")]
    Depth {
        /// Requested depth.
        depth: usize,
        /// Maximum.
        max: usize,
    },
    /// Model construction failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Optimizer state failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
}

/// A model together with the VarStore that owns its weights.
#[derive(Debug)]
pub struct LoadedModel {
    /// Weights.
    pub vs: VarStore,
    /// The model.
    pub model: LunaModel,
}

impl LoadedModel {
    /// Builds a freshly initialised model on `device`.
    pub fn fresh(config: &LunaModelConfig, device: Device) -> Result<LoadedModel, ModelError> {
        let vs = VarStore::new(device);
        let model = LunaModel::new(&vs.root(), config)?;
        Ok(LoadedModel { vs, model })
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes a checkpoint into `dir` (created if needed).
pub fn save_checkpoint(
    dir: &Path,
    vs: &VarStore,
    opt: &Optimizer,
    meta: &CheckpointMeta,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp_model = dir.join("model.tmp.safetensors");
    vs.save(&tmp_model)
        .map_err(|source| CheckpointError::Weights {
            path: tmp_model.clone(),
            source,
        })?;
    let tmp_opt = dir.join("optimizer.tmp.safetensors");
    opt.save(&tmp_opt)?;
    let tmp_meta = dir.join("checkpoint.tmp.json");
    let json = serde_json::to_vec_pretty(meta).map_err(|source| CheckpointError::Meta {
        path: tmp_meta.clone(),
        source,
    })?;
    std::fs::write(&tmp_meta, json).map_err(io(&tmp_meta))?;
    for (tmp, name) in [
        (tmp_model, MODEL_FILE),
        (tmp_opt, OPTIMIZER_FILE),
        (tmp_meta, META_FILE),
    ] {
        let dst = dir.join(name);
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
    }
    Ok(())
}

/// Reads and checks the sidecar of the checkpoint in `dir`.
pub fn read_meta(dir: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let path = dir.join(META_FILE);
    let text = std::fs::read(&path).map_err(io(&path))?;
    let meta: CheckpointMeta =
        serde_json::from_slice(&text).map_err(|source| CheckpointError::Meta {
            path: path.clone(),
            source,
        })?;
    if meta.format_version != FORMAT_VERSION {
        return Err(CheckpointError::Version {
            path,
            found: meta.format_version,
            expected: FORMAT_VERSION,
        });
    }
    Ok(meta)
}

/// Copies weights from `file` into `vs`, skipping names for which `skip` is true.
fn copy_weights(
    vs: &VarStore,
    file: &Path,
    skip: impl Fn(&str) -> bool,
) -> Result<(), CheckpointError> {
    let src: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(file)
        .map_err(|source| CheckpointError::Weights {
            path: file.to_path_buf(),
            source,
        })?
        .into_iter()
        .collect();
    for (name, var) in vs.variables() {
        if skip(&name) {
            continue;
        }
        let found = src.get(&name).map(|t| t.size()).unwrap_or_default();
        if found != var.size() {
            return Err(CheckpointError::Shape {
                path: file.to_path_buf(),
                name,
                expected: var.size(),
                found,
            });
        }
        tch::no_grad(|| var.shallow_clone().copy_(&src[&name]));
    }
    Ok(())
}

/// Loads only the model of a checkpoint (for inference or evaluation).
pub fn load_model(
    dir: &Path,
    device: Device,
) -> Result<(LoadedModel, CheckpointMeta), CheckpointError> {
    let meta = read_meta(dir)?;
    let lm = LoadedModel::fresh(&meta.model, device)?;
    copy_weights(&lm.vs, &dir.join(MODEL_FILE), |_| false)?;
    Ok((lm, meta))
}

/// Loads model and optimizer state to resume training where the checkpoint left off.
pub fn load_resume(
    dir: &Path,
    device: Device,
) -> Result<(LoadedModel, Optimizer, CheckpointMeta), CheckpointError> {
    let (lm, meta) = load_model(dir, device)?;
    let mut opt = Optimizer::new(&lm.vs, meta.optimizer.clone(), None)?;
    opt.load(&dir.join(OPTIMIZER_FILE))?;
    Ok((lm, opt, meta))
}

/// Variable names trainable at fine-tune `depth` (1 = head only, 2 = head + block4, …).
pub fn finetune_trainable(vs: &VarStore, depth: usize) -> Result<Vec<String>, CheckpointError> {
    if depth == 0 || depth > MODEL_BLOCKS.len() {
        return Err(CheckpointError::Depth {
            depth,
            max: MODEL_BLOCKS.len(),
        });
    }
    let blocks = &MODEL_BLOCKS[MODEL_BLOCKS.len() - depth..];
    let params: Vec<usize> = vs
        .trainable_variables()
        .iter()
        .map(|t| t.data_ptr() as usize)
        .collect();
    let mut names: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(n, t)| {
            params.contains(&(t.data_ptr() as usize))
                && blocks.contains(&n.split('.').next().unwrap_or(""))
        })
        .map(|(n, _)| n)
        .collect();
    names.sort();
    Ok(names)
}

/// Loads a checkpoint for fine-tuning: all but `head_linear.*` from `dir`, a fresh head, and an
/// optimizer (fresh state) over the last `depth` blocks only.
pub fn load_finetune(
    dir: &Path,
    device: Device,
    depth: usize,
    optimizer: OptimizerConfig,
) -> Result<(LoadedModel, Optimizer, CheckpointMeta), CheckpointError> {
    let meta = read_meta(dir)?;
    let lm = LoadedModel::fresh(&meta.model, device)?;
    copy_weights(&lm.vs, &dir.join(MODEL_FILE), |n| {
        n.starts_with("head_linear.")
    })?;
    let trainable = finetune_trainable(&lm.vs, depth)?;
    let opt = Optimizer::new(&lm.vs, optimizer, Some(&trainable))?;
    Ok((lm, opt, meta))
}
