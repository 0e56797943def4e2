//! What the torch kinds share on the planning side, without linking torch: the `device` hint
//! (parsed once, at plan time) and the files a trained-model artifact holds.
//!
//! A trained artifact (`train_classifier`, later `train_segmentation`) holds the best
//! checkpoint's weights as `model.safetensors` (PyTorch state-dict names) and its sidecar as
//! `model.json` (architecture, task, training parameters), plus the full last checkpoint in
//! `last/`. Rejected: the sidecar under the checkpoint name `checkpoint.json` as well, which
//! would make users wonder which file is authoritative.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
