//! Helpers shared by the torch stages: the `device` hint, and the model files a
//! `train_classifier` artifact holds.
//!
//! A trained artifact holds the best checkpoint's weights as `model.safetensors` and its sidecar
//! (`nn::checkpoint::CheckpointMeta`) as `model.json`, plus the full last checkpoint in `last/`.
//! `nn::checkpoint` loads from a directory with `checkpoint.json`, so [`staged_checkpoint`]
//! links the two files under that name into a scratch directory first (rejected: writing the
//! sidecar twice into the artifact, which would make users wonder which one is authoritative).

use std::path::{Path, PathBuf};

use crate::engine::error::StageError;

/// Weights file of a trained-model artifact.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// Sidecar of a trained-model artifact.
pub const MODEL_META: &str = "model.json";

/// Checks a `device` hint: `auto`, `cpu`, `cuda` or `cuda:N` (empty = auto).
pub fn check_device(s: &str) -> Result<(), String> {
    match s {
        "" | "auto" | "cpu" | "cuda" => Ok(()),
        _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(_)) => Ok(()),
            _ => Err(format!(
                "unknown device `{s}`; expected auto, cpu, cuda or cuda:N"
            )),
        },
    }
}

/// Resolves the `device` hint to a torch device and logs which one and why.
#[cfg(feature = "torch")]
pub fn choose_device(
    hint: &str,
    ctx: &crate::engine::context::StageContext,
) -> Result<tch::Device, StageError> {
    let (cuda, why) = crate::runtime::cuda_summary();
    let d = match hint {
        "" | "auto" => {
            if cuda {
                ctx.log(format!(
                    "device: cuda:0 (device: auto; CUDA available: {why})"
                ));
                tch::Device::Cuda(0)
            } else {
                ctx.log(format!("device: cpu (device: auto; no CUDA: {why})"));
                tch::Device::Cpu
            }
        }
        "cpu" => {
            ctx.log("device: cpu (requested)");
            tch::Device::Cpu
        }
        other => {
            let idx = other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(0);
            if !cuda {
                return Err(StageError::msg(format!("device `{other}` requested but CUDA is not usable: {why}"))
                    .with_hint("use `device: auto` or `device: cpu`, or run on a machine with an NVIDIA GPU (`luna-torch doctor` says why CUDA is off)"));
            }
            let n = tch::Cuda::device_count() as usize;
            if idx >= n {
                return Err(StageError::msg(format!(
                    "device `{other}` requested but only {n} CUDA device(s) exist"
                ))
                .with_hint("pick a device index below the count, or `device: cuda`"));
            }
            ctx.log(format!("device: cuda:{idx} (requested; {why})"));
            tch::Device::Cuda(idx)
        }
    };
    Ok(d)
}

/// Links a trained artifact's `model.safetensors` + `model.json` into `scratch` as an
/// `nn::checkpoint` directory and returns it.
pub fn staged_checkpoint(model_dir: &Path, scratch: &Path) -> Result<PathBuf, StageError> {
    let w = model_dir.join(MODEL_WEIGHTS);
    let m = model_dir.join(MODEL_META);
    if !w.is_file() || !m.is_file() {
        return Err(StageError::msg(format!(
            "{} holds no trained model ({MODEL_WEIGHTS} + {MODEL_META})",
            model_dir.display()
        ))
        .with_hint("name a `train_classifier` stage"));
    }
    std::fs::create_dir_all(scratch).map_err(|e| StageError::io(scratch, e))?;
    for (src, name) in [(w, "model.safetensors"), (m, "checkpoint.json")] {
        let dst = scratch.join(name);
        let _ = std::fs::remove_file(&dst);
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| StageError::io(&src, e))?;
        }
    }
    Ok(scratch.to_path_buf())
}

/// Copies (hard-links where possible) every file of `src` into `dst` (flat).
pub fn copy_dir(src: &Path, dst: &Path) -> Result<(), StageError> {
    std::fs::create_dir_all(dst).map_err(|e| StageError::io(dst, e))?;
    for e in std::fs::read_dir(src).map_err(|e| StageError::io(src, e))? {
        let e = e.map_err(|e| StageError::io(src, e))?;
        if e.path().is_file() {
            let to = dst.join(e.file_name());
            std::fs::copy(e.path(), &to).map_err(|err| StageError::io(&to, err))?;
        }
    }
    Ok(())
}
