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
//! Everything here is generic over the [`Model`]; the sidecar's tagged `model` config says which
//! architecture a checkpoint holds, so loading one model kind as another is a clear error.
//!
//! Fine-tuning (book §3.6): every variable except the model's head block (`head_linear.*` for
//! LunaModel) is copied from the source checkpoint, the head keeps its fresh init, and only the
//! last `depth` of the model's blocks (LunaModel: `[tail_batchnorm, block1..block4,
//! head_linear]`) are trainable (1 = head, 2 = head + block4). The trainable names are saved in
//! the sidecar, so a resumed fine-tuning rebuilds the same optimizer. As in the book, frozen
//! BatchNorm running statistics still update in train mode.
use crate::nn::luna_model::{LunaModel, LunaModelConfig, ModelError};
use crate::nn::model::{Model, ModelConfig};
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

/// The JSON sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Sidecar format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Architecture (tagged by `architecture`).
    pub model: ModelConfig,
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
    /// Variables the optimizer trains (`None` = all): set when fine-tuning.
    #[serde(default)]
    pub trainable: Option<Vec<String>>,
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
    /// Weights that are NaN or infinite (a corrupt or diverged model).
    #[error("checkpoint {path}: {count} weight tensor(s) hold NaN or infinite values (first: {first}); hint: the model diverged or the file is corrupt: retrain it")]
    NonFiniteWeights {
        /// File.
        path: PathBuf,
        /// Tensors affected.
        count: usize,
        /// The first tensor's name.
        first: String,
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
pub struct LoadedModel<M = LunaModel> {
    /// Weights.
    pub vs: VarStore,
    /// The model.
    pub model: M,
}

impl<M: Model> LoadedModel<M> {
    /// Builds a freshly initialised model on `device`.
    pub fn build(config: &M::Config, device: Device) -> Result<LoadedModel<M>, ModelError> {
        let vs = VarStore::new(device);
        let model = M::build(&vs.root(), config)?;
        Ok(LoadedModel { vs, model })
    }
}

impl LoadedModel<LunaModel> {
    /// Builds a freshly initialised LunaModel on `device`.
    pub fn fresh(config: &LunaModelConfig, device: Device) -> Result<LoadedModel, ModelError> {
        LoadedModel::build(config, device)
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
    read_meta_file(&dir.join(META_FILE))
}

/// Reads and checks a sidecar file.
pub fn read_meta_file(path: &Path) -> Result<CheckpointMeta, CheckpointError> {
    let path = path.to_path_buf();
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
    check_finite(vs, file)
}

/// [`CheckpointError::NonFiniteWeights`] (naming `file`) when a floating-point variable of `vs`
/// holds NaN or an infinity.
pub fn check_finite(vs: &VarStore, file: &Path) -> Result<(), CheckpointError> {
    let mut bad: Vec<String> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.is_floating_point() && t.isfinite().all().int64_value(&[]) == 0)
        .map(|(n, _)| n)
        .collect();
    bad.sort();
    if let Some(first) = bad.first() {
        return Err(CheckpointError::NonFiniteWeights {
            path: file.to_path_buf(),
            count: bad.len(),
            first: first.clone(),
        });
    }
    Ok(())
}

/// Loads only the model of a checkpoint directory (for inference or evaluation).
pub fn load_model<M: Model>(
    dir: &Path,
    device: Device,
) -> Result<(LoadedModel<M>, CheckpointMeta), CheckpointError> {
    load_model_files(&dir.join(MODEL_FILE), &dir.join(META_FILE), device)
}

/// Loads a model from its weights and sidecar files (a trained artifact names them
/// `model.safetensors` and `model.json`).
pub fn load_model_files<M: Model>(
    weights: &Path,
    meta: &Path,
    device: Device,
) -> Result<(LoadedModel<M>, CheckpointMeta), CheckpointError> {
    let meta = read_meta_file(meta)?;
    let lm = LoadedModel::<M>::build(M::config_of(&meta.model)?, device)?;
    copy_weights(&lm.vs, weights, |_| false)?;
    Ok((lm, meta))
}

/// Loads model and optimizer state to resume training where the checkpoint left off.
pub fn load_resume<M: Model>(
    dir: &Path,
    device: Device,
) -> Result<(LoadedModel<M>, Optimizer, CheckpointMeta), CheckpointError> {
    let (lm, meta) = load_model::<M>(dir, device)?;
    let mut opt = Optimizer::new(&lm.vs, meta.optimizer.clone(), meta.trainable.as_deref())?;
    opt.load(&dir.join(OPTIMIZER_FILE))?;
    Ok((lm, opt, meta))
}

/// Variable names trainable at fine-tune `depth` (1 = the head only, 2 = the head and the block
/// before it, …).
pub fn finetune_trainable<M: Model>(
    vs: &VarStore,
    depth: usize,
) -> Result<Vec<String>, CheckpointError> {
    let all = M::BLOCKS;
    if depth == 0 || depth > all.len() {
        return Err(CheckpointError::Depth {
            depth,
            max: all.len(),
        });
    }
    let blocks = &all[all.len() - depth..];
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

/// Loads a model for fine-tuning from its weights and sidecar: all but the head from the
/// files, a fresh head, and an optimizer (fresh state) over the last `depth` blocks only.
/// Returns the trainable names too (saved in later checkpoints' sidecars).
pub fn load_finetune<M: Model>(
    weights: &Path,
    meta: &Path,
    device: Device,
    depth: usize,
    optimizer: OptimizerConfig,
) -> Result<(LoadedModel<M>, Optimizer, Vec<String>), CheckpointError> {
    let meta = read_meta_file(meta)?;
    let lm = LoadedModel::<M>::build(M::config_of(&meta.model)?, device)?;
    let head = format!("{}.", M::HEAD);
    copy_weights(&lm.vs, weights, |n| n.starts_with(&head))?;
    let trainable = finetune_trainable::<M>(&lm.vs, depth)?;
    let opt = Optimizer::new(&lm.vs, optimizer, Some(&trainable))?;
    Ok((lm, opt, trainable))
}
