//! What the torch kinds share on the planning side, without linking torch: the `device` hint
//! (parsed once, at plan time), the optimizer and augmentation parameters with their plan-time
//! range checks, and the files a trained-model artifact holds.
//!
//! A trained artifact (`train_classifier`, later `train_segmentation`) holds the best
//! checkpoint's weights as `model.safetensors` (PyTorch state-dict names) and its sidecar as
//! `model.json` (architecture, task, training parameters), plus the full last checkpoint in
//! `last/`. Rejected: the sidecar under the checkpoint name `checkpoint.json` as well, which
//! would make users wonder which file is authoritative.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::kind::ParamError;

/// The artifact type of a trained classifier (`train_classifier`).
pub const CLASSIFIER: &str = "classifier";
/// The artifact type of a trained segmenter (`train_segmentation`).
pub const SEGMENTER: &str = "segmenter";

/// Weights file of a trained-model artifact.
pub const MODEL_WEIGHTS: &str = "model.safetensors";
/// Sidecar of a trained-model artifact.
pub const MODEL_META: &str = "model.json";

/// Where torch work runs: the `device` hint of every torch kind.
///
/// Written as `auto` (CUDA when usable, else CPU; the default), `cpu`, `cuda` (device 0) or
/// `cuda:N`. Anything else is a spec error at plan time with the value's line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    /// CUDA device 0 when CUDA is usable, otherwise the CPU (the log says why).
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device N (`cuda` = `cuda:0`); an error when CUDA is not usable.
    Cuda(usize),
}

impl Device {
    /// Whether a stage with this hint runs on a GPU when one is there (`auto` or `cuda…`):
    /// what a scheduler backend asks for (`--gres=gpu:1`).
    pub fn wants_gpu(self) -> bool {
        !matches!(self, Device::Cpu)
    }

    /// Parses `auto`, `cpu`, `cuda` or `cuda:N` (the empty string is `auto`).
    pub fn parse(s: &str) -> Result<Device, String> {
        match s {
            "" | "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(Device::Cuda(n)),
                _ => Err(format!(
                    "unknown device `{s}`; expected auto, cpu, cuda or cuda:N"
                )),
            },
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for Device {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Device {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Device {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Device".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^(auto|cpu|cuda|cuda:[0-9]+)$",
            "description": "auto (CUDA when usable, else CPU), cpu, cuda or cuda:N"
        })
    }
}

/// Augmentation settings as written in YAML (mirrors `nn::AugmentConfig`; each switchable).
///
/// Ranges (checked at plan time): `offset` in [0, 1] (normalised grid units, 1 = half the
/// crop), `scale` in [0, 1) (a factor 1 ± scale must stay positive), `noise` in [0, 1000] HU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentParams {
    /// Flip each axis with probability 0.5.
    pub flip: bool,
    /// Max translation in normalised grid units (0 = off).
    pub offset: f64,
    /// Max relative scale change per axis (0 = off).
    pub scale: f64,
    /// Rotate about the index axis.
    pub rotate: bool,
    /// Std of additive HU noise (0 = off).
    pub noise: f64,
}

impl Default for AugmentParams {
    fn default() -> Self {
        AugmentParams {
            flip: true,
            offset: 0.1,
            scale: 0.2,
            rotate: true,
            noise: 25.0,
        }
    }
}

/// Optimizer as written in YAML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerParams {
    /// torch.optim.SGD.
    Sgd {
        /// Learning rate (default 1e-3, 3e-3 when fine-tuning).
        #[serde(default)]
        lr: Option<f64>,
        /// Momentum (book p2ch14: 0).
        #[serde(default)]
        momentum: f64,
        /// L2 weight decay (book: 1e-4).
        #[serde(default = "wd")]
        weight_decay: f64,
    },
    /// torch.optim.Adam.
    Adam {
        /// Learning rate (default 1e-3).
        #[serde(default)]
        lr: Option<f64>,
        /// L2 weight decay.
        #[serde(default)]
        weight_decay: f64,
    },
}

fn wd() -> f64 {
    1e-4
}

impl Default for OptimizerParams {
    fn default() -> Self {
        OptimizerParams::Sgd {
            lr: None,
            momentum: 0.0,
            weight_decay: wd(),
        }
    }
}

/// An error at `path` unless `lo <= v <= hi` (with `hi_open`: `v < hi`) and finite.
fn in_range(
    path: &str,
    v: f64,
    lo: f64,
    hi: f64,
    hi_open: bool,
    what: &str,
) -> Result<(), ParamError> {
    let ok = v.is_finite() && v >= lo && if hi_open { v < hi } else { v <= hi };
    if ok {
        return Ok(());
    }
    let close = if hi_open { ")" } else { "]" };
    Err(ParamError::new(
        path,
        format!("{path} must be a finite number in [{lo}, {hi}{close} ({what}), got {v}"),
    ))
}

/// Plan-time checks of the optimizer's hyperparameters (a negative or non-finite learning
/// rate diverges at once; a huge one is allowed and stopped by the loss guard at run time).
pub fn check_optimizer(o: &OptimizerParams) -> Result<(), ParamError> {
    let (lr, wd) = match o {
        OptimizerParams::Sgd {
            lr,
            momentum,
            weight_decay,
        } => {
            in_range(
                "optimizer.momentum",
                *momentum,
                0.0,
                1.0,
                true,
                "0 = plain SGD as in the book",
            )?;
            (lr, weight_decay)
        }
        OptimizerParams::Adam { lr, weight_decay } => (lr, weight_decay),
    };
    if let Some(lr) = lr {
        if !(lr.is_finite() && *lr > 0.0) {
            return Err(ParamError::new(
                "optimizer.lr",
                format!("optimizer.lr must be a finite number > 0 (book: 1e-3), got {lr}"),
            ));
        }
    }
    in_range(
        "optimizer.weight_decay",
        *wd,
        0.0,
        1.0,
        true,
        "L2 penalty; book: 1e-4",
    )
}

/// Plan-time checks of the augmentation ranges (see [`AugmentParams`]).
pub fn check_augment(a: &AugmentParams) -> Result<(), ParamError> {
    in_range(
        "augment.offset",
        a.offset,
        0.0,
        1.0,
        false,
        "normalised grid units; book: 0.1",
    )?;
    in_range(
        "augment.scale",
        a.scale,
        0.0,
        1.0,
        true,
        "relative scale change; book: 0.2",
    )?;
    in_range("augment.noise", a.noise, 0.0, 1000.0, false, "HU; book: 25")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_parses_and_prints_round_trip() {
        for (s, d) in [
            ("auto", Device::Auto),
            ("", Device::Auto),
            ("cpu", Device::Cpu),
            ("cuda", Device::Cuda(0)),
            ("cuda:3", Device::Cuda(3)),
        ] {
            assert_eq!(Device::parse(s), Ok(d));
        }
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        let e = Device::parse("gpu").unwrap_err();
        assert_eq!(
            e,
            "unknown device `gpu`; expected auto, cpu, cuda or cuda:N"
        );
        let e: Result<Device, _> = serde_json::from_value(serde_json::json!("cuda:x"));
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("unknown device `cuda:x`"));
    }
}
