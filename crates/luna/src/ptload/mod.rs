//! PyTorch checkpoints read without Python and without running anything: the `state_dict`
//! of a `torch.save` file (legacy or zip format) or a safetensors file, as named f32/i64
//! arrays that `luna-torch` copies into a model (`import_model`).
//!
//! Design:
//! - [`container`] reads the file into a pickled object and storage bytes; [`pickle`] is a
//!   restricted interpreter that knows tensors, storages and plain containers only and refuses
//!   any other global with [`PtLoadError::RefusedGlobal`] (a malicious `os.system` reduce is
//!   never executed: nothing is ever called).
//! - The state dict is the object itself when it is a dict of tensors, else the dict under
//!   `model_state` (the book's training scripts) or `state_dict`; the other entries (epoch,
//!   optimizer state, `sys_argv`, …) are parsed as plain data and not used beyond
//!   [`Checkpoint::extras`]. A `module.` prefix (DataParallel) is stripped.
//! - Only the state dict's tensors are materialised: storage offset and strides honoured
//!   (non-contiguous views), float16/bfloat16/float64 converted to f32, int64 kept (BatchNorm's
//!   `num_batches_tracked`); any other dtype is [`PtLoadError::Dtype`] naming the tensor.
//!   Tensors saved from CUDA load like CPU ones (the location tag is ignored).
//! - [`fit`] compares a state dict with the tensors a model expects and lists the missing,
//!   unexpected and mis-shaped ones ([`PtLoadError::Mismatch`]).
//!
//! Rejected: calling Python (`torch.load`) at run time (a Python install in every deployment,
//! and `torch.load` executes pickles), and a general pickle object model (see [`pickle`]).

pub mod container;
pub mod pickle;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use pickle::Value;

/// Element types of PyTorch storages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// float32.
    F32,
    /// float64.
    F64,
    /// float16.
    F16,
    /// bfloat16.
    BF16,
    /// int64.
    I64,
    /// int32.
    I32,
    /// int16.
    I16,
    /// int8.
    I8,
    /// uint8.
    U8,
    /// bool.
    Bool,
}

impl DType {
    /// The dtype of a `torch.<Name>` storage type.
    pub fn of_storage(name: &str) -> Option<DType> {
        Some(match name {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" | "UntypedStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// PyTorch's name for it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::I16 => "int16",
            DType::I8 => "int8",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

/// Why a checkpoint was not read.
#[derive(Debug, thiserror::Error)]
pub enum PtLoadError {
    /// The file cannot be read.
    #[error("checkpoint {path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Not a PyTorch checkpoint or safetensors file.
    #[error("checkpoint {path}: not a PyTorch checkpoint: {found}; hint: give a file written by torch.save (legacy or zip format) or a safetensors file")]
    NotACheckpoint {
        /// File.
        path: PathBuf,
        /// What it looks like instead.
        found: String,
    },
    /// Truncated or malformed.
    #[error("checkpoint {path}: corrupt or unsupported: {what}; hint: re-save it with torch.save(model.state_dict(), path)")]
    Corrupt {
        /// File.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The pickle names something other than tensors, storages and plain containers.
    #[error("checkpoint {path}: refused: the pickle asks for `{global}`, which is neither a tensor, a storage nor a plain container; nothing was run; hint: only load checkpoints you trust, and save plain state dicts (torch.save(model.state_dict(), path)) or safetensors")]
    RefusedGlobal {
        /// File.
        path: PathBuf,
        /// `module.name`.
        global: String,
    },
    /// No state dict in the file.
    #[error("checkpoint {path}: no state_dict: {found}; hint: save a dict of tensors (model.state_dict()) or a dict holding one under `model_state`")]
    NoStateDict {
        /// File.
        path: PathBuf,
        /// What the file holds instead.
        found: String,
    },
    /// A tensor's dtype luna cannot use.
    #[error("checkpoint {path}: tensor `{tensor}` has dtype {dtype}, which luna cannot use; hint: convert the model to float32 (model.float()) before saving")]
    Dtype {
        /// File.
        path: PathBuf,
        /// Tensor name.
        tensor: String,
        /// Its dtype.
        dtype: String,
    },
    /// The tensors do not fit the architecture.
    #[error("checkpoint {path} does not fit {architecture}: {}; hint: check `architecture` and its parameters (in_channels, conv_channels, depth, wf, ...) against the model that was saved", mismatch_text(.missing, .unexpected, .misshaped))]
    Mismatch {
        /// File.
        path: PathBuf,
        /// The architecture asked for.
        architecture: String,
        /// Expected by the model, absent from the file (name, model shape).
        missing: Vec<(String, Vec<i64>)>,
        /// In the file, unknown to the model (name, file shape).
        unexpected: Vec<(String, Vec<i64>)>,
        /// In both with other shapes (name, model shape, file shape).
        misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    },
}

/// How many names of each kind a mismatch error shows.
const SHOWN: usize = 5;

fn mismatch_text(
    missing: &[(String, Vec<i64>)],
    unexpected: &[(String, Vec<i64>)],
    misshaped: &[(String, Vec<i64>, Vec<i64>)],
) -> String {
    let mut s = String::new();
    let mut part = |what: &str, n: usize, items: Vec<String>| {
        if !s.is_empty() {
            s.push_str("; ");
        }
        let _ = write!(s, "{n} {what}"); // writing to a String cannot fail
        if n > 0 {
            let more = if n > SHOWN { ", ..." } else { "" };
            let _ = write!(s, " ({}{more})", items.join(", "));
        }
    };
    let shown = |v: Vec<String>| v.into_iter().take(SHOWN).collect::<Vec<_>>();
    part(
        "missing",
        missing.len(),
        shown(
            missing
                .iter()
                .map(|(n, sh)| format!("{n} {sh:?}"))
                .collect(),
        ),
    );
    part(
        "unexpected",
        unexpected.len(),
        shown(
            unexpected
                .iter()
                .map(|(n, sh)| format!("{n} {sh:?}"))
                .collect(),
        ),
    );
    part(
        "mis-shaped",
        misshaped.len(),
        shown(
            misshaped
                .iter()
                .map(|(n, m, f)| format!("{n} model {m:?} file {f:?}"))
                .collect(),
        ),
    );
    s
}

/// A tensor's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Floating point, converted to f32.
    F32(Vec<f32>),
    /// int64.
    I64(Vec<i64>),
}

/// One tensor of a state dict, contiguous (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Shape.
    pub shape: Vec<i64>,
    /// Values.
    pub data: Data,
}

/// A checkpoint read from a file.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The state dict, by name (prefixes stripped), sorted.
    pub tensors: BTreeMap<String, Tensor>,
    /// `legacy`, `zip` or `safetensors`.
    pub format: &'static str,
    /// Plain-data entries beside the state dict (`epoch`, `model_name`, …) as JSON; tensors
    /// and other non-plain values are left out.
    pub extras: serde_json::Map<String, serde_json::Value>,
}

/// Reads the checkpoint at `path`.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, PtLoadError> {
    let bytes = std::fs::read(path).map_err(|source| PtLoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let kind = container::sniff(&bytes).map_err(|found| PtLoadError::NotACheckpoint {
        path: path.to_path_buf(),
        found,
    })?;
    let pickled = match kind {
        container::Sniffed::Safetensors => return from_safetensors(path, &bytes),
        container::Sniffed::Legacy => container::legacy(path, &bytes)?,
        container::Sniffed::Zip => container::zip(path, &bytes)?,
    };
    let (entries, extras) = state_dict(path, &pickled.object)?;
    let mut tensors = BTreeMap::new();
    for (name, t) in entries {
        let bytes = pickled
            .storages
            .get(&t.storage.key)
            .ok_or_else(|| PtLoadError::Corrupt {
                path: path.to_path_buf(),
                what: format!(
                    "tensor `{name}`: storage {} is not in the file",
                    t.storage.key
                ),
            })?;
        let tensor = materialise(path, &name, &t, bytes)?;
        tensors.insert(name, tensor);
    }
    Ok(Checkpoint {
        tensors,
        format: pickled.format,
        extras,
    })
}

fn from_safetensors(path: &Path, bytes: &[u8]) -> Result<Checkpoint, PtLoadError> {
    let mut tensors = BTreeMap::new();
    for (name, dtype, shape, data) in container::safetensors(path, bytes)? {
        let numel: u64 = shape.iter().product();
        let t = pickle::TensorRef {
            storage: pickle::StorageRef {
                key: name.clone(),
                dtype,
                numel,
            },
            offset: 0,
            stride: contiguous_strides(&shape),
            size: shape,
        };
        let name = strip_module(&name);
        tensors.insert(name.clone(), materialise(path, &name, &t, &data)?);
    }
    Ok(Checkpoint {
        tensors,
        format: "safetensors",
        extras: Default::default(),
    })
}

fn contiguous_strides(shape: &[u64]) -> Vec<u64> {
    let mut s = vec![1u64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn strip_module(name: &str) -> String {
    name.strip_prefix("module.").unwrap_or(name).to_string()
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::List(_) => "a list",
        Value::Tuple(_) => "a tuple",
        Value::Dict(_) => "a dict",
        Value::Set(_) => "a set",
        Value::Global(_) => "a class",
        Value::Storage(_) => "a storage",
        Value::Tensor(_) => "a tensor",
    }
}

/// Plain data as JSON (None for tensors, storages and classes).
fn plain(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::None => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => i64::try_from(*i)
            .map(J::from)
            .unwrap_or(J::String(i.to_string())),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        Value::Str(s) => J::String(s.clone()),
        Value::List(l) => J::Array(l.borrow().iter().map(plain).collect::<Option<_>>()?),
        Value::Tuple(l) => J::Array(l.iter().map(plain).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// The first keys of a dict with what their values are, for an error message.
fn key_list(d: &[(Value, Value)]) -> String {
    let keys: Vec<String> = d
        .iter()
        .take(8)
        .map(|(k, v)| match k {
            Value::Str(s) => format!("{s} ({})", describe(v)),
            _ => describe(k).to_string(),
        })
        .collect();
    keys.join(", ")
}

type Entries = (
    Vec<(String, pickle::TensorRef)>,
    serde_json::Map<String, serde_json::Value>,
);

/// The state dict's tensors in `object`, and the plain extras beside it.
fn state_dict(path: &Path, object: &Value) -> Result<Entries, PtLoadError> {
    let no = |found: String| PtLoadError::NoStateDict {
        path: path.to_path_buf(),
        found,
    };
    let Value::Dict(top) = object else {
        return Err(no(format!("the file holds {}", describe(object))));
    };
    let top = top.borrow();
    let is_tensors = |d: &[(Value, Value)]| {
        !d.is_empty() && d.iter().all(|(_, v)| matches!(v, Value::Tensor(_)))
    };
    let nested = top.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(d)) if k == "model_state" || k == "state_dict" => {
            Some(d.clone())
        }
        _ => None,
    });
    let mut extras = serde_json::Map::new();
    let sd: Vec<(Value, Value)> = match nested {
        Some(d) => {
            for (k, v) in top.iter() {
                if let (Value::Str(k), Some(j)) = (k, plain(v)) {
                    extras.insert(k.clone(), j);
                }
            }
            d.borrow().clone()
        }
        None if is_tensors(&top) => top.clone(),
        None => {
            return Err(no(format!(
                "a dict without `model_state` whose values are not all tensors (keys: {})",
                key_list(&top)
            )))
        }
    };
    let mut out = Vec::new();
    for (k, v) in sd {
        match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => out.push((strip_module(&k), t)),
            (Value::Str(k), v) => {
                return Err(no(format!("entry `{k}` is {}, not a tensor", describe(&v))))
            }
            (k, _) => return Err(no(format!("a key that is {}, not a name", describe(&k)))),
        }
    }
    Ok((out, extras))
}

/// The values of `t` (row-major), read from its storage's little-endian `bytes`.
fn materialise(
    path: &Path,
    name: &str,
    t: &pickle::TensorRef,
    bytes: &[u8],
) -> Result<Tensor, PtLoadError> {
    let dtype = t.storage.dtype;
    let corrupt = |what: String| PtLoadError::Corrupt {
        path: path.to_path_buf(),
        what: format!("tensor `{name}`: {what}"),
    };
    let have = (bytes.len() / dtype.size()) as u64;
    let idx = element_indices(t, have).map_err(corrupt)?;
    let el = |i: usize| &bytes[i * dtype.size()..(i + 1) * dtype.size()];
    let data = match dtype {
        DType::F32 => Data::F32(
            idx.iter()
                .map(|&i| f32::from_le_bytes(arr(el(i))))
                .collect(),
        ),
        DType::F64 => Data::F32(
            idx.iter()
                .map(|&i| f64::from_le_bytes(arr(el(i))) as f32)
                .collect(),
        ),
        DType::F16 => Data::F32(
            idx.iter()
                .map(|&i| f16_to_f32(u16::from_le_bytes(arr(el(i)))))
                .collect(),
        ),
        DType::BF16 => Data::F32(
            idx.iter()
                .map(|&i| f32::from_bits(u32::from(u16::from_le_bytes(arr(el(i)))) << 16))
                .collect(),
        ),
        DType::I64 => Data::I64(
            idx.iter()
                .map(|&i| i64::from_le_bytes(arr(el(i))))
                .collect(),
        ),
        other => {
            return Err(PtLoadError::Dtype {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                dtype: other.name().to_string(),
            })
        }
    };
    Ok(Tensor {
        shape: t.size.iter().map(|&s| s as i64).collect(),
        data,
    })
}

/// The storage index of each element of `t` in row-major order, checked against a storage of
/// `have` elements.
fn element_indices(t: &pickle::TensorRef, have: u64) -> Result<Vec<usize>, String> {
    if t.size.len() != t.stride.len() {
        return Err("size and stride differ in length".into());
    }
    let numel: u64 = t.size.iter().product();
    // the last element read, which must lie inside the storage
    let last = t
        .size
        .iter()
        .zip(&t.stride)
        .map(|(&n, &s)| n.saturating_sub(1).saturating_mul(s))
        .fold(t.offset, u64::saturating_add);
    if numel > 0 && last >= have {
        return Err(format!("reads element {last} of a storage of {have}"));
    }
    let mut idx = Vec::with_capacity(numel as usize);
    let mut pos = vec![0u64; t.size.len()];
    for _ in 0..numel {
        idx.push((t.offset + pos.iter().zip(&t.stride).map(|(p, s)| p * s).sum::<u64>()) as usize);
        for d in (0..pos.len()).rev() {
            pos[d] += 1;
            if pos[d] < t.size[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    Ok(idx)
}

fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(b);
    a
}

/// IEEE half → f32 (subnormals, infinities and NaN included).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: f × 2^-24
            let v = f as f32 * 2f32.powi(-24);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Checks `ck` against the tensors a model of `architecture` expects (name, shape, whether it
/// is an int64 buffer); a missing `num_batches_tracked` is allowed (PyTorch's BatchNorm loads
/// pre-0.4.1 state dicts without it), and so is a one-element `[1]` tensor for a scalar, as
/// PyTorch's `load_state_dict` allows (old checkpoints and some safetensors writers).
pub fn fit(
    path: &Path,
    architecture: &str,
    ck: &Checkpoint,
    expected: &[(String, Vec<i64>)],
) -> Result<(), PtLoadError> {
    let mut missing = Vec::new();
    let mut misshaped = Vec::new();
    for (name, shape) in expected {
        match ck.tensors.get(name) {
            None if name.ends_with(".num_batches_tracked") => {}
            None => missing.push((name.clone(), shape.clone())),
            Some(t) if shape.is_empty() && t.shape == [1] => {}
            Some(t) if t.shape != *shape => {
                misshaped.push((name.clone(), shape.clone(), t.shape.clone()))
            }
            Some(_) => {}
        }
    }
    let unexpected: Vec<(String, Vec<i64>)> = ck
        .tensors
        .iter()
        .filter(|(n, _)| !expected.iter().any(|(e, _)| e == *n))
        .map(|(n, t)| (n.clone(), t.shape.clone()))
        .collect();
    if missing.is_empty() && unexpected.is_empty() && misshaped.is_empty() {
        return Ok(());
    }
    missing.sort();
    misshaped.sort();
    Err(PtLoadError::Mismatch {
        path: path.to_path_buf(),
        architecture: architecture.to_string(),
        missing,
        unexpected,
        misshaped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_converts_exactly() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x8001), -(2f32.powi(-24)));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }

    #[test]
    fn strided_views_are_read_in_row_major_order() {
        // a 2x3 storage read transposed (3x2, strides (1, 3)) from offset 0
        let bytes: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let t = pickle::TensorRef {
            storage: pickle::StorageRef {
                key: "0".into(),
                dtype: DType::F32,
                numel: 6,
            },
            offset: 0,
            size: vec![3, 2],
            stride: vec![1, 3],
        };
        let got = materialise(Path::new("x"), "t", &t, &bytes).unwrap();
        assert_eq!(got.data, Data::F32(vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]));
    }
}
