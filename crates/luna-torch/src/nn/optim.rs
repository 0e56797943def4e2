//! SGD and Adam implemented on tensors under `no_grad`, with exportable state.
//!
//! Why not `tch::nn::Optimizer`: it wraps libtorch's C++ optimizer, whose state (momentum
//! buffers, Adam moments, step) cannot be read or written from Rust, so training could not be
//! resumed bit-for-bit. Here the state is a plain map of named tensors saved as safetensors.
//!
//! Semantics follow `torch.optim` single-tensor code paths exactly:
//! - SGD: `g = grad + wd·p`; with momentum: `buf = g` on the first step, else
//!   `buf = momentum·buf + g` (dampening 0); `g = buf` (nesterov off); `p -= lr·g`.
//! - Adam: `g = grad + wd·p` (L2, not AdamW); `m.lerp_(g, 1−β1)`; `v = β2·v + (1−β2)·g²`;
//!   `p -= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)`.
//! - Parameters without a gradient are skipped, as torch does; freezing for fine-tuning
//!   ([`Optimizer::new`]'s `trainable` filter) turns `requires_grad` off so they get none.
//!
//! State file keys: `<param>.momentum_buffer` (SGD), `<param>.exp_avg`, `<param>.exp_avg_sq`,
//! `<param>.step` (Adam, f64 scalar). Hyperparameters live in the JSON sidecar, not here.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// Optimizer kind and hyperparameters (serialised in the checkpoint sidecar).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// torch.optim.SGD (dampening 0, nesterov false).
    Sgd {
        /// Learning rate.
        lr: f64,
        /// Momentum (0 = plain SGD, the p2ch14 setting).
        momentum: f64,
        /// L2 weight decay.
        weight_decay: f64,
    },
    /// torch.optim.Adam (amsgrad false, L2 weight decay).
    Adam {
        /// Learning rate.
        lr: f64,
        /// (β1, β2).
        betas: (f64, f64),
        /// Denominator epsilon.
        eps: f64,
        /// L2 weight decay.
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// The learning rate.
    pub fn lr(&self) -> f64 {
        match self {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => *lr,
        }
    }

    /// The p2ch14 classifier setting: SGD lr 1e-3, no momentum, weight decay 1e-4.
    pub fn book_classifier() -> Self {
        OptimizerConfig::Sgd {
            lr: 1e-3,
            momentum: 0.0,
            weight_decay: 1e-4,
        }
    }

    /// torch's Adam defaults with the given learning rate.
    pub fn adam(lr: f64) -> Self {
        OptimizerConfig::Adam {
            lr,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Optimizer errors.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// A requested trainable name is not a variable of the model.
    #[error("optimizer: trainable variable {name:?} is not in the model; hint: names look like \"head_linear.weight\"")]
    UnknownVariable {
        /// Name requested.
        name: String,
    },
    /// A requested trainable name is a buffer (running statistics, counters).
    #[error("optimizer: variable {name:?} is a buffer, not a trainable parameter; hint: list only weights and biases")]
    NotTrainable {
        /// Name requested.
        name: String,
    },
    /// State file could not be read or written.
    #[error("optimizer state {path}: {source}; hint: the file may be missing or truncated, delete the checkpoint to start fresh")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: tch::TchError,
    },
    /// State file entry has a wrong shape or unknown key.
    #[error("optimizer state {path}: entry {key:?} does not match the model (expected shape {expected:?}, found {found:?}); hint: the checkpoint belongs to another model or optimizer kind")]
    StateMismatch {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Expected shape (empty when the key is unknown).
        expected: Vec<i64>,
        /// Found shape.
        found: Vec<i64>,
    },
}

/// One optimised parameter with its state.
#[derive(Debug)]
struct Param {
    name: String,
    var: Tensor,
    /// SGD: momentum buffer; Adam: exp_avg.
    buf1: Option<Tensor>,
    /// Adam: exp_avg_sq.
    buf2: Option<Tensor>,
    step: f64,
}

/// A stateful optimizer over named VarStore variables.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
}

impl Optimizer {
    /// Optimises the trainable variables of `vs`; if `trainable` is given, only the listed names
    /// (others get `requires_grad(false)`, i.e. frozen as in book §3.6).
    pub fn new(
        vs: &VarStore,
        config: OptimizerConfig,
        trainable: Option<&[String]>,
    ) -> Result<Optimizer, OptimError> {
        let vars: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        // The VarStore's trainable list (not the current requires_grad flag, which an earlier
        // freeze may have cleared) says what is a parameter; buffers are never optimised.
        let param_ptrs: Vec<usize> = vs
            .trainable_variables()
            .iter()
            .map(|t| t.data_ptr() as usize)
            .collect();
        if let Some(list) = trainable {
            for n in list {
                match vars.get(n) {
                    None => return Err(OptimError::UnknownVariable { name: n.clone() }),
                    Some(t) if !param_ptrs.contains(&(t.data_ptr() as usize)) => {
                        return Err(OptimError::NotTrainable { name: n.clone() })
                    }
                    Some(_) => {}
                }
            }
        }
        let mut params = Vec::new();
        for (name, var) in vars {
            if !param_ptrs.contains(&(var.data_ptr() as usize)) {
                continue;
            }
            let keep = trainable.is_none_or(|l| l.contains(&name));
            let _ = var.set_requires_grad(keep);
            if keep {
                params.push(Param {
                    name,
                    var,
                    buf1: None,
                    buf2: None,
                    step: 0.0,
                });
            }
        }
        Ok(Optimizer { config, params })
    }

    /// Names of the optimised parameters (sorted).
    pub fn param_names(&self) -> Vec<String> {
        self.params.iter().map(|p| p.name.clone()).collect()
    }

    /// The hyperparameters.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, new_lr: f64) {
        match &mut self.config {
            OptimizerConfig::Sgd { lr, .. } | OptimizerConfig::Adam { lr, .. } => *lr = new_lr,
        }
    }

    /// Clears the gradients of the optimised parameters.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            p.var.zero_grad();
        }
    }

    /// Backward on `loss`, then one step.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// One update with the current gradients.
    pub fn step(&mut self) {
        let config = self.config.clone();
        tch::no_grad(|| {
            for p in &mut self.params {
                let grad = p.var.grad();
                if !grad.defined() {
                    continue;
                }
                match config {
                    OptimizerConfig::Sgd {
                        lr,
                        momentum,
                        weight_decay,
                    } => sgd_step(p, grad, lr, momentum, weight_decay),
                    OptimizerConfig::Adam {
                        lr,
                        betas,
                        eps,
                        weight_decay,
                    } => adam_step(p, grad, lr, betas, eps, weight_decay),
                }
            }
        });
    }

    /// The state as named tensors (empty entries are omitted).
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for p in &self.params {
            let (k1, k2) = self.keys();
            if let Some(b) = &p.buf1 {
                out.push((format!("{}.{k1}", p.name), b.shallow_clone()));
            }
            if let Some(b) = &p.buf2 {
                out.push((format!("{}.{k2}", p.name), b.shallow_clone()));
            }
            if matches!(self.config, OptimizerConfig::Adam { .. }) && p.step > 0.0 {
                out.push((format!("{}.step", p.name), Tensor::from(p.step)));
            }
        }
        out
    }

    fn keys(&self) -> (&'static str, &'static str) {
        match self.config {
            OptimizerConfig::Sgd { .. } => ("momentum_buffer", "unused"),
            OptimizerConfig::Adam { .. } => ("exp_avg", "exp_avg_sq"),
        }
    }

    /// Writes the state to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<(), OptimError> {
        let cpu: Vec<(String, Tensor)> = self
            .state_tensors()
            .into_iter()
            .map(|(k, t)| (k, t.to_device(tch::Device::Cpu)))
            .collect();
        Tensor::write_safetensors(&cpu, path).map_err(|source| OptimError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Restores the state written by [`Optimizer::save`].
    pub fn load(&mut self, path: &Path) -> Result<(), OptimError> {
        let entries = Tensor::read_safetensors(path).map_err(|source| OptimError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let (k1, k2) = self.keys();
        for p in &mut self.params {
            p.buf1 = None;
            p.buf2 = None;
            p.step = 0.0;
        }
        for (key, t) in entries {
            let hit = self.params.iter_mut().find_map(|p| {
                let rest = key.strip_prefix(p.name.as_str())?.strip_prefix('.')?;
                Some((rest.to_string(), p))
            });
            let mismatch = |expected: Vec<i64>, found: Vec<i64>| OptimError::StateMismatch {
                path: path.to_path_buf(),
                key: key.clone(),
                expected,
                found,
            };
            let Some((field, p)) = hit else {
                return Err(mismatch(vec![], t.size()));
            };
            if field == "step" {
                p.step = t.double_value(&[]);
                continue;
            }
            if t.size() != p.var.size() || (field != k1 && field != k2) {
                return Err(mismatch(p.var.size(), t.size()));
            }
            let t = t.to_kind(p.var.kind()).to_device(p.var.device());
            if field == k1 {
                p.buf1 = Some(t);
            } else {
                p.buf2 = Some(t);
            }
        }
        Ok(())
    }
}

fn sgd_step(p: &mut Param, grad: Tensor, lr: f64, momentum: f64, weight_decay: f64) {
    let mut g = if weight_decay != 0.0 {
        grad + &p.var * weight_decay
    } else {
        grad
    };
    if momentum != 0.0 {
        let buf = match p.buf1.take() {
            None => g.detach().copy(),
            Some(mut b) => {
                let _ = b.g_mul_scalar_(momentum).g_add_(&g);
                b
            }
        };
        g = buf.shallow_clone();
        p.buf1 = Some(buf);
    }
    let _ = p.var.shallow_clone().g_add_(&(g * (-lr)));
}

fn adam_step(
    p: &mut Param,
    grad: Tensor,
    lr: f64,
    (beta1, beta2): (f64, f64),
    eps: f64,
    weight_decay: f64,
) {
    let g = if weight_decay != 0.0 {
        grad + &p.var * weight_decay
    } else {
        grad
    };
    let mut m = p.buf1.take().unwrap_or_else(|| p.var.zeros_like());
    let mut v = p.buf2.take().unwrap_or_else(|| p.var.zeros_like());
    p.step += 1.0;
    let _ = m.lerp_(&g, 1.0 - beta1);
    let _ = v.g_mul_scalar_(beta2).g_add_(&(&g * &g * (1.0 - beta2)));
    let bc1 = 1.0 - beta1.powf(p.step);
    let bc2 = 1.0 - beta2.powf(p.step);
    let step_size = lr / bc1;
    let denom = (v.sqrt() / bc2.sqrt()).g_add_scalar_(eps);
    let upd = (&m / &denom) * (-step_size);
    let _ = p.var.shallow_clone().g_add_(&upd);
    p.buf1 = Some(m);
    p.buf2 = Some(v);
}
