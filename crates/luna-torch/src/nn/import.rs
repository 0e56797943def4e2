//! A PyTorch state dict read by `luna::ptload` → a luna model, and the trained-model artifact
//! (`model.safetensors` + `model.json`) that `import_model` writes.
//!
//! Design: the model is built fresh on the CPU from its config; its VarStore's names and
//! shapes are the expected tensors (luna's models keep PyTorch's state-dict keys, so the book's
//! checkpoints need no renaming), checked by `ptload::fit` before any value is copied. The
//! artifact is then written and loaded back with `checkpoint::load_model_files` — the very
//! call `evaluate_classifier`, `segment`, `classify_candidates`, `serve` and fine-tuning use —
//! so an import that succeeds is one they accept (shapes, finite weights).
//! Rejected: writing the safetensors straight from the parsed arrays (no check that the
//! result is loadable as the model, and a second writer of the weights file format).

use std::path::{Path, PathBuf};

use luna::ptload::{Checkpoint, Data, PtLoadError};
use tch::{Device, Kind, Tensor};

use crate::nn::checkpoint::{self, CheckpointError, CheckpointMeta, LoadedModel};
use crate::nn::luna_model::ModelError;
use crate::nn::model::Model;
use crate::nn::optim::OptimizerConfig;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading or fitting the checkpoint.
    #[error(transparent)]
    Read(#[from] PtLoadError),
    /// Building the model.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Writing or re-loading the artifact.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing a file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Builds an `M` from `config` and copies the checkpoint's tensors into it, after checking
/// that names and shapes fit (`architecture` names the model in the error).
pub fn import<M: Model>(
    config: &M::Config,
    ck: &Checkpoint,
    path: &Path,
    architecture: &str,
) -> Result<LoadedModel<M>, ImportError> {
    let lm = LoadedModel::<M>::build(config, Device::Cpu)?;
    let mut expected: Vec<(String, Vec<i64>)> = lm
        .vs
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    expected.sort();
    luna::ptload::fit(path, architecture, ck, &expected)?;
    let vars = lm.vs.variables();
    for (name, t) in &ck.tensors {
        let Some(var) = vars.get(name) else { continue };
        let src = match (&t.data, var.kind()) {
            (Data::F32(v), k) if k != Kind::Int64 => Tensor::from_slice(v),
            (Data::I64(v), Kind::Int64) => Tensor::from_slice(v),
            (d, k) => {
                return Err(PtLoadError::Dtype {
                    path: path.to_path_buf(),
                    tensor: name.clone(),
                    dtype: format!(
                        "{} where the model holds {k:?}",
                        if matches!(d, Data::I64(_)) {
                            "int64"
                        } else {
                            "floating point"
                        }
                    ),
                }
                .into())
            }
        };
        // `fit` checked the element counts; the model's shape also turns a `[1]` into a scalar
        tch::no_grad(|| {
            src.f_reshape(var.size())
                .and_then(|s| var.shallow_clone().f_copy_(&s))
        })
        .map_err(|source| CheckpointError::Weights {
            path: path.to_path_buf(),
            source,
        })?;
    }
    // named after the checkpoint, before the artifact is written
    checkpoint::check_finite(&lm.vs, path)?;
    Ok(lm)
}

/// The book's optimizer for a model (the sidecar needs one; fine-tuning picks its own).
pub fn book_optimizer<M: Model>() -> OptimizerConfig {
    if M::ARCHITECTURE == "UNet" {
        OptimizerConfig::Adam {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    } else {
        OptimizerConfig::Sgd {
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 1e-4,
        }
    }
}

/// Writes `lm` as a trained-model artifact into `out` (`train_params` says where it came
/// from) and loads it back as the consuming stages do.
pub fn write_artifact<M: Model>(
    out: &Path,
    lm: &LoadedModel<M>,
    ck: &Checkpoint,
    train_params: serde_json::Value,
) -> Result<CheckpointMeta, ImportError> {
    let count = |k: &str| {
        ck.extras
            .get(k)
            .and_then(|v| v.as_u64())
            .unwrap_or_default()
    };
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: lm.model.model_config(),
        optimizer: book_optimizer::<M>(),
        train_params,
        epoch: count("epoch") as usize,
        total_samples: count("totalTrainingSamples_count"),
        score: None,
        best_score: None,
        rng_state: None,
        trainable: None,
    };
    let weights = out.join(luna::model::MODEL_WEIGHTS);
    lm.vs
        .save(&weights)
        .map_err(|source| CheckpointError::Weights {
            path: weights.clone(),
            source,
        })?;
    let sidecar = out.join(luna::model::MODEL_META);
    let json = serde_json::to_vec_pretty(&meta).map_err(|source| CheckpointError::Meta {
        path: sidecar.clone(),
        source,
    })?;
    std::fs::write(&sidecar, json).map_err(|source| ImportError::Io {
        path: sidecar.clone(),
        source,
    })?;
    checkpoint::load_model_files::<M>(&weights, &sidecar, Device::Cpu)?;
    Ok(meta)
}
