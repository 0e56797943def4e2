//! The three containers a PyTorch `state_dict` comes in, each read into a pickled [`Value`]
//! plus the bytes of its storages (or, for safetensors, the tensors directly).
//!
//! - Legacy (`torch.save(..., _use_new_zipfile_serialization=False)`, every PyTorch before
//!   1.6): five pickles back to back — the magic number 0x1950a86a20f9469cfc6c, the protocol
//!   version 1001, `sys_info` (checked for little-endian), the object, the sorted storage keys —
//!   then each storage in key order as an 8-byte little-endian element count and the raw bytes.
//! - Zip (PyTorch ≥ 1.6): `<archive>/data.pkl` plus one entry `<archive>/data/<key>` per
//!   storage (stored, not compressed; read through the `zip` crate already in the tree).
//! - safetensors: a JSON header and one byte buffer (the `safetensors` crate).
//!
//! Rejected: memory-mapping the file (a checkpoint is a few MB, read once).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use super::pickle::{self, Value};
use super::{DType, PtLoadError};

/// The legacy format's magic number.
const LEGACY_MAGIC: i128 = 0x1950a86a20f9469cfc6c;

/// A container's content: the pickled object and the storages' bytes by key.
pub struct Pickled {
    /// The object `torch.save` wrote.
    pub object: Value,
    /// Storage bytes (little-endian elements) by key.
    pub storages: HashMap<String, Vec<u8>>,
    /// Which container it was (`legacy`, `zip`).
    pub format: &'static str,
}

/// Which container `bytes` is, by content.
pub enum Sniffed {
    /// The legacy pickle stream.
    Legacy,
    /// A zip archive.
    Zip,
    /// safetensors.
    Safetensors,
}

/// Sniffs the container, or says what the file starts with.
pub fn sniff(bytes: &[u8]) -> Result<Sniffed, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return Ok(Sniffed::Zip);
    }
    if bytes.starts_with(&[0x80, 0x02]) {
        return Ok(Sniffed::Legacy);
    }
    if bytes.len() >= 9 {
        let mut n = [0u8; 8];
        n.copy_from_slice(&bytes[..8]);
        let n = u64::from_le_bytes(n);
        if bytes[8] == b'{' && n < bytes.len() as u64 {
            return Ok(Sniffed::Safetensors);
        }
    }
    let head: String = bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(if bytes.is_empty() {
        "the file is empty".into()
    } else {
        format!("it starts with bytes {head}, neither a PyTorch legacy pickle (80 02), a zip archive (PK) nor safetensors")
    })
}

fn refused(path: &Path, r: pickle::Refusal) -> PtLoadError {
    match r {
        pickle::Refusal::Global { module, name } => PtLoadError::RefusedGlobal {
            path: path.to_path_buf(),
            global: format!("{module}.{name}"),
        },
        pickle::Refusal::Opcode { op, at } => PtLoadError::Corrupt {
            path: path.to_path_buf(),
            what: format!("pickle opcode 0x{op:02x} at byte {at} is not one a tensor checkpoint needs (refused, not run)"),
        },
        pickle::Refusal::Malformed { what, at } => PtLoadError::Corrupt {
            path: path.to_path_buf(),
            what: format!("pickle at byte {at}: {what}"),
        },
    }
}

fn corrupt(path: &Path, what: impl Into<String>) -> PtLoadError {
    PtLoadError::Corrupt {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Every storage referenced by `v`, by key.
fn storages_of(v: &Value, out: &mut HashMap<String, pickle::StorageRef>) {
    match v {
        Value::Storage(s) => {
            out.insert(s.key.clone(), s.clone());
        }
        Value::Tensor(t) => {
            out.insert(t.storage.key.clone(), t.storage.clone());
        }
        Value::List(l) => l.borrow().iter().for_each(|x| storages_of(x, out)),
        Value::Tuple(l) | Value::Set(l) => l.iter().for_each(|x| storages_of(x, out)),
        Value::Dict(d) => d.borrow().iter().for_each(|(k, x)| {
            storages_of(k, out);
            storages_of(x, out);
        }),
        _ => {}
    }
}

/// Reads the legacy format.
pub fn legacy(path: &Path, bytes: &[u8]) -> Result<Pickled, PtLoadError> {
    let next = |at: usize| pickle::load(bytes, at).map_err(|r| refused(path, r));
    let (magic, at) = next(0)?;
    if !matches!(magic, Value::Int(LEGACY_MAGIC)) {
        return Err(PtLoadError::NotACheckpoint {
            path: path.to_path_buf(),
            found: "a pickle without PyTorch's magic number (not written by torch.save)".into(),
        });
    }
    let (_protocol, at) = next(at)?;
    let (sys_info, at) = next(at)?;
    if let Value::Dict(d) = &sys_info {
        let le = d.borrow().iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Bool(b)) if k == "little_endian" => Some(*b),
            _ => None,
        });
        if le == Some(false) {
            return Err(corrupt(
                path,
                "written on a big-endian machine, which luna does not read",
            ));
        }
    }
    let (object, at) = next(at)?;
    let (keys, at) = next(at)?;
    let storages = legacy_storages(path, bytes, &object, keys, at)?;
    Ok(Pickled {
        object,
        storages,
        format: "legacy",
    })
}

/// The storages after the legacy format's pickles: for each key of `keys`, in order, an
/// 8-byte element count and the raw elements (their size from the storage type in `object`).
fn legacy_storages(
    path: &Path,
    bytes: &[u8],
    object: &Value,
    keys: Value,
    mut at: usize,
) -> Result<HashMap<String, Vec<u8>>, PtLoadError> {
    let mut refs = HashMap::new();
    storages_of(object, &mut refs);
    let Value::List(keys) = keys else {
        return Err(corrupt(path, "the storage key list is not a list"));
    };
    let mut storages = HashMap::new();
    for k in keys.borrow().iter() {
        let Value::Str(k) = k else {
            return Err(corrupt(path, "a storage key is not a string"));
        };
        let Some(s) = refs.get(k) else {
            return Err(corrupt(
                path,
                format!("storage {k} is listed but never used"),
            ));
        };
        let head = bytes
            .get(at..at + 8)
            .ok_or_else(|| corrupt(path, format!("the file ends before storage {k}")))?;
        let mut n = [0u8; 8];
        n.copy_from_slice(head);
        let len = u64::from_le_bytes(n)
            .checked_mul(s.dtype.size() as u64)
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| corrupt(path, format!("storage {k}: a size that does not fit")))?;
        at += 8;
        let data = bytes.get(at..at.saturating_add(len)).ok_or_else(|| {
            corrupt(
                path,
                format!("the file ends inside storage {k} ({len} bytes expected)"),
            )
        })?;
        storages.insert(k.clone(), data.to_vec());
        at += len;
    }
    Ok(storages)
}

fn zip_entry(
    path: &Path,
    z: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>,
    name: &str,
) -> Result<Vec<u8>, PtLoadError> {
    let mut f = z
        .by_name(name)
        .map_err(|e| corrupt(path, format!("zip entry {name}: {e}")))?;
    let mut out = Vec::with_capacity(usize::try_from(f.size()).unwrap_or(0).min(1 << 30));
    f.read_to_end(&mut out)
        .map_err(|e| corrupt(path, format!("zip entry {name}: {e}")))?;
    Ok(out)
}

/// Reads the zip format.
pub fn zip(path: &Path, bytes: &[u8]) -> Result<Pickled, PtLoadError> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| corrupt(path, format!("not a readable zip archive: {e}")))?;
    let pkl = z
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
        .ok_or_else(|| PtLoadError::NotACheckpoint {
            path: path.to_path_buf(),
            found: "a zip archive without <archive>/data.pkl (not written by torch.save)".into(),
        })?;
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    if let Ok(order) = zip_entry(path, &mut z, &format!("{prefix}byteorder")) {
        if order.trim_ascii() == b"big" {
            return Err(corrupt(
                path,
                "written on a big-endian machine, which luna does not read",
            ));
        }
    }
    let data = zip_entry(path, &mut z, &pkl)?;
    let (object, _) = pickle::load(&data, 0).map_err(|r| refused(path, r))?;
    let mut refs = HashMap::new();
    storages_of(&object, &mut refs);
    let mut storages = HashMap::new();
    for (k, s) in refs {
        let b = zip_entry(path, &mut z, &format!("{prefix}data/{k}"))?;
        if (b.len() as u64) < s.numel * s.dtype.size() as u64 {
            return Err(corrupt(
                path,
                format!(
                    "storage {k} holds {} bytes, {} expected",
                    b.len(),
                    s.numel * s.dtype.size() as u64
                ),
            ));
        }
        storages.insert(k, b);
    }
    Ok(Pickled {
        object,
        storages,
        format: "zip",
    })
}

/// A tensor of a safetensors file: name, dtype, shape and its little-endian bytes.
pub type RawTensor = (String, DType, Vec<u64>, Vec<u8>);

/// Reads a safetensors file.
pub fn safetensors(path: &Path, bytes: &[u8]) -> Result<Vec<RawTensor>, PtLoadError> {
    use safetensors::Dtype as D;
    let st = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| corrupt(path, format!("safetensors: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            D::F32 => DType::F32,
            D::F64 => DType::F64,
            D::F16 => DType::F16,
            D::BF16 => DType::BF16,
            D::I64 => DType::I64,
            D::I32 => DType::I32,
            D::I16 => DType::I16,
            D::I8 => DType::I8,
            D::U8 => DType::U8,
            D::BOOL => DType::Bool,
            other => {
                return Err(PtLoadError::Dtype {
                    path: path.to_path_buf(),
                    tensor: name,
                    dtype: format!("{other:?}"),
                })
            }
        };
        let shape = view.shape().iter().map(|&s| s as u64).collect();
        out.push((name, dtype, shape, view.data().to_vec()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}
