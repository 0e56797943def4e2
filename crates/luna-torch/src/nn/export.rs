//! `luna export`'s torch half: a trained-model artifact (`model.safetensors` + `model.json`,
//! whichever kind wrote it) → a TorchScript module and/or a PyTorch `state_dict` file.
//!
//! - **TorchScript** (`torch.jit.load` in Python, `torch::jit::load` in C++): the model is
//!   traced in eval mode (BatchNorm running statistics) with its weights frozen, as the book's
//!   chapter 15 does with `torch.jit.trace` after `requires_grad_(False)`; the weights become
//!   constants of the traced graph. The segmenter's module returns the probability map
//!   (N, 1, H, W) (the book's UNetWrapper: sigmoid output), for any H, W divisible by 4. The
//!   classifier's returns **one tensor of shape (2, N, 2)**: `[0]` the logits, `[1]` the softmax
//!   probabilities, so `logits, probs = module(x)` unpacks in Python as the book's
//!   `(logits, softmax)` tuple does. Why not a tuple: a saved TorchScript method must return one
//!   value, and libtorch's tracing API as tch exposes it registers each output separately,
//!   with no way to build a tuple node.
//! - **state_dict**: the artifact's variables, under their PyTorch names, in `torch.save`'s zip
//!   format ([`crate::nn::state_dict`]), so the book's `LunaModel` / `UNetWrapper` load it with
//!   `load_state_dict(strict=True)`.
//!
//! ONNX is not written: libtorch's ONNX exporter lives in PyTorch's Python package (it needs
//! `torch.onnx`), and a hand-written ONNX protobuf would be a second definition of each model.
//! Both files are produced on the CPU from the artifact's weights as loaded for inference
//! (shapes and finiteness checked by [`checkpoint::load_model_files`]).
use std::path::{Path, PathBuf};

use tch::{CModule, Device, Kind, Tensor};

use crate::nn::checkpoint::{self, CheckpointError};
use crate::nn::model::{Model, ModelConfig};
use crate::nn::state_dict::{write_state_dict, RawTensor, StateDictError};
use crate::nn::{LunaModel, UNet};

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The artifact's model could not be loaded.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing the state dict failed.
    #[error(transparent)]
    StateDict(#[from] StateDictError),
    /// Tracing or saving the TorchScript module failed.
    #[error("{path}: TorchScript export failed: {source}")]
    TorchScript {
        /// The file being written.
        path: PathBuf,
        /// Cause.
        source: tch::TchError,
    },
    /// A variable's values could not be read.
    #[error("variable {name}: {source}")]
    Read {
        /// Variable.
        name: String,
        /// Cause.
        source: tch::TchError,
    },
    /// A variable of a dtype PyTorch's storages do not cover here.
    #[error("variable {name}: dtype {kind:?} cannot be exported; hint: luna's models hold float32 and int64 tensors only, so the artifact is not one of luna's")]
    Dtype {
        /// Variable.
        name: String,
        /// Its kind.
        kind: Kind,
    },
}

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct ExportTargets {
    /// The TorchScript file, if wanted.
    pub torchscript: Option<PathBuf>,
    /// The state-dict file, if wanted.
    pub state_dict: Option<PathBuf>,
}

/// A model [`export`] can trace: an example input and the traced function's one output.
trait Traceable: Model {
    /// A batch of one input of the model's shape.
    fn example_input(&self) -> Vec<i64>;
    /// The eval-mode output the TorchScript module returns (see the module doc).
    fn traced_output(&self, x: &Tensor) -> Tensor;
}

impl Traceable for LunaModel {
    fn example_input(&self) -> Vec<i64> {
        let c = self.config();
        let [d, h, w] = c.input_size;
        vec![1, c.in_channels, d, h, w]
    }
    fn traced_output(&self, x: &Tensor) -> Tensor {
        let (logits, probs) = self.forward_t(x, false);
        Tensor::stack(&[logits, probs], 0)
    }
}

impl Traceable for UNet {
    fn example_input(&self) -> Vec<i64> {
        vec![1, self.config().in_channels, 64, 64]
    }
    fn traced_output(&self, x: &Tensor) -> Tensor {
        self.forward(x, false)
    }
}

/// Exports the trained-model artifact in `dir` to `targets`; returns the architecture name.
pub fn export(dir: &Path, targets: &ExportTargets) -> Result<&'static str, ExportError> {
    let weights = dir.join(luna::model::MODEL_WEIGHTS);
    let meta = dir.join(luna::model::MODEL_META);
    match checkpoint::read_meta_file(&meta)?.model {
        ModelConfig::LunaModel(_) => export_model::<LunaModel>(&weights, &meta, targets),
        ModelConfig::UNet(_) => export_model::<UNet>(&weights, &meta, targets),
    }
}

fn export_model<M: Traceable>(
    weights: &Path,
    meta: &Path,
    targets: &ExportTargets,
) -> Result<&'static str, ExportError> {
    let (mut lm, _) = checkpoint::load_model_files::<M>(weights, meta, Device::Cpu)?;
    if let Some(path) = &targets.state_dict {
        write_state_dict(path, &raw_tensors(&lm.vs.variables())?)?;
    }
    if let Some(path) = &targets.torchscript {
        lm.vs.freeze();
        let ts_err = |source| ExportError::TorchScript {
            path: path.clone(),
            source,
        };
        let x = Tensor::zeros(lm.model.example_input(), (Kind::Float, Device::Cpu));
        let model = &lm.model;
        let module = tch::no_grad(|| {
            CModule::create_by_tracing(M::ARCHITECTURE, "forward", &[x], &mut |xs| {
                vec![model.traced_output(&xs[0])]
            })
        })
        .map_err(ts_err)?;
        let tmp = path.with_extension("tmp-luna");
        module.save(&tmp).map_err(ts_err)?;
        std::fs::rename(&tmp, path).map_err(|e| ts_err(tch::TchError::Io(e)))?;
    }
    Ok(M::ARCHITECTURE)
}

/// The variables as raw little-endian tensors, sorted by name.
fn raw_tensors(
    vars: &std::collections::HashMap<String, Tensor>,
) -> Result<Vec<RawTensor>, ExportError> {
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let t = vars[name].to_device(Device::Cpu).contiguous();
            let (storage, elem_size) = match t.kind() {
                Kind::Float => ("FloatStorage", 4),
                Kind::Double => ("DoubleStorage", 8),
                Kind::Int64 => ("LongStorage", 8),
                Kind::Int => ("IntStorage", 4),
                kind => {
                    return Err(ExportError::Dtype {
                        name: name.clone(),
                        kind,
                    })
                }
            };
            let numel = t.numel();
            let mut data = vec![0u8; numel * elem_size];
            t.f_copy_data_u8(&mut data, numel)
                .map_err(|source| ExportError::Read {
                    name: name.clone(),
                    source,
                })?;
            Ok(RawTensor {
                name: name.clone(),
                storage,
                elem_size,
                shape: t.size(),
                data,
            })
        })
        .collect()
}
