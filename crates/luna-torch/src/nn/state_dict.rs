//! Writing a `state_dict` as `torch.save` does (PyTorch ≥ 1.6 zip format), without Python, so
//! `model.load_state_dict(torch.load(path))` works for the book's own classes.
//!
//! The file is a zip archive (entries stored, 64-byte aligned as PyTorch aligns them) under one
//! folder `archive/`: `data.pkl` (a pickle, protocol 2), `data/<key>` (each tensor's raw
//! little-endian bytes), `byteorder` (`little`) and `version` (`3`). The pickle is an
//! `collections.OrderedDict` of name → `torch._utils._rebuild_tensor_v2(storage, 0, shape,
//! stride, False, OrderedDict())`, the storage a persistent id `('storage', torch.FloatStorage,
//! key, 'cpu', numel)`: exactly the globals `torch.load(weights_only=True)` allows, so the file
//! loads under PyTorch's safe default.
//!
//! Rejected: tch's `Tensor::save_multi` (libtorch's `OutputArchive`: a TorchScript archive that
//! `torch.load` does not read as a dict) and safetensors (what luna's artifact already holds;
//! the book's code and most PyTorch users call `torch.load`).
use std::io::Write;
use std::path::{Path, PathBuf};

/// One tensor to write: its name, PyTorch storage class, shape and raw little-endian bytes.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// State-dict key.
    pub name: String,
    /// Storage class in module `torch` (`FloatStorage`, `LongStorage`, …).
    pub storage: &'static str,
    /// Element size in bytes.
    pub elem_size: usize,
    /// Shape (empty for a scalar).
    pub shape: Vec<i64>,
    /// Contiguous data, little-endian.
    pub data: Vec<u8>,
}

/// Errors writing a state dict.
#[derive(Debug, thiserror::Error)]
pub enum StateDictError {
    /// The file could not be written.
    #[error("{path}: {source}; hint: check that the folder exists and is writable")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The zip writer failed.
    #[error("{path}: {source}")]
    Zip {
        /// File.
        path: PathBuf,
        /// Cause.
        source: zip::result::ZipError,
    },
    /// A tensor's bytes do not match its shape.
    #[error("tensor {name}: {bytes} bytes for shape {shape:?} of {elem_size}-byte elements")]
    Size {
        /// Tensor.
        name: String,
        /// Bytes given.
        bytes: usize,
        /// Shape.
        shape: Vec<i64>,
        /// Element size.
        elem_size: usize,
    },
}

/// A pickle (protocol 2) under construction: only the opcodes a state dict needs.
struct Pickle(Vec<u8>);

impl Pickle {
    fn global(&mut self, module: &str, name: &str) {
        self.0.push(b'c');
        self.0
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
    }
    fn str(&mut self, s: &str) {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s.as_bytes());
    }
    fn int(&mut self, v: i64) {
        match v {
            0..=0xff => self.0.extend_from_slice(&[b'K', v as u8]),
            0x100..=0xffff => {
                self.0.push(b'M');
                self.0.extend_from_slice(&(v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.0.push(b'J');
                self.0.extend_from_slice(&(v as i32).to_le_bytes());
            }
            _ => {
                self.0.extend_from_slice(&[0x8a, 8]); // LONG1, 8 bytes
                self.0.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn int_tuple(&mut self, vs: &[i64]) {
        self.0.push(b'(');
        for &v in vs {
            self.int(v);
        }
        self.0.push(b't');
    }
    fn empty_ordered_dict(&mut self) {
        self.global("collections", "OrderedDict");
        self.0.extend_from_slice(b")R"); // EMPTY_TUPLE, REDUCE
    }
    /// `_rebuild_tensor_v2(persistent storage, 0, shape, stride, False, OrderedDict())`.
    fn tensor(&mut self, t: &RawTensor, key: &str) {
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.0.extend_from_slice(b"((");
        self.str("storage");
        self.global("torch", t.storage);
        self.str(key);
        self.str("cpu");
        self.int(t.shape.iter().product());
        self.0.extend_from_slice(b"tQ"); // TUPLE, BINPERSID
        self.int(0);
        self.int_tuple(&t.shape);
        self.int_tuple(&contiguous_strides(&t.shape));
        self.0.push(0x89); // NEWFALSE: requires_grad
        self.empty_ordered_dict();
        self.0.extend_from_slice(b"tR"); // TUPLE, REDUCE
    }
}

/// Row-major strides of `shape`.
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

/// The `data.pkl` of `tensors` (storage keys are their indices).
fn pickle(tensors: &[RawTensor]) -> Vec<u8> {
    let mut p = Pickle(vec![0x80, 2]); // PROTO 2
    p.empty_ordered_dict();
    p.0.push(b'(');
    for (i, t) in tensors.iter().enumerate() {
        p.str(&t.name);
        p.tensor(t, &i.to_string());
    }
    p.0.extend_from_slice(b"u."); // SETITEMS, STOP
    p.0
}

/// Writes `tensors` to `path` as `torch.save(OrderedDict(...))` would (written under a
/// temporary name, renamed when complete).
pub fn write_state_dict(path: &Path, tensors: &[RawTensor]) -> Result<(), StateDictError> {
    for t in tensors {
        let want = t.shape.iter().product::<i64>().max(0) as usize * t.elem_size;
        if want != t.data.len() {
            return Err(StateDictError::Size {
                name: t.name.clone(),
                bytes: t.data.len(),
                shape: t.shape.clone(),
                elem_size: t.elem_size,
            });
        }
    }
    let tmp = path.with_extension("tmp-luna");
    let io = |source| StateDictError::Io {
        path: tmp.clone(),
        source,
    };
    let zerr = |source| StateDictError::Zip {
        path: tmp.clone(),
        source,
    };
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut z = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .with_alignment(64);
    let mut entries: Vec<(String, &[u8])> = Vec::new();
    let pkl = pickle(tensors);
    entries.push(("archive/data.pkl".into(), &pkl));
    entries.push(("archive/byteorder".into(), b"little"));
    for (i, t) in tensors.iter().enumerate() {
        entries.push((format!("archive/data/{i}"), &t.data));
    }
    entries.push(("archive/version".into(), b"3\n"));
    for (name, bytes) in entries {
        z.start_file(name, opts).map_err(zerr)?;
        z.write_all(bytes).map_err(io)?;
    }
    let file = z.finish().map_err(zerr)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(|source| StateDictError::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[8, 1, 3, 3, 3]), vec![27, 27, 9, 3, 1]);
        assert_eq!(contiguous_strides(&[]), Vec::<i64>::new());
    }

    #[test]
    fn ints_use_the_shortest_opcode() {
        let mut p = Pickle(Vec::new());
        for v in [7, 300, 70_000, 1 << 40] {
            p.int(v);
        }
        assert_eq!(&p.0[..2], &[b'K', 7]);
        assert_eq!(&p.0[2..5], &[b'M', 0x2c, 0x01]);
        assert_eq!(p.0[5], b'J');
        assert_eq!(&p.0[10..12], &[0x8a, 8]);
    }

    #[test]
    fn a_wrong_byte_count_is_refused() {
        let t = RawTensor {
            name: "w".into(),
            storage: "FloatStorage",
            elem_size: 4,
            shape: vec![2, 2],
            data: vec![0; 12],
        };
        let dir = std::env::temp_dir();
        let err = write_state_dict(&dir.join("luna-never-written.pt"), &[t]);
        assert!(matches!(err, Err(StateDictError::Size { bytes: 12, .. })));
    }
}
