//! Reading crop stores (luna's own, or h5py files with the same layout) from many threads.
//!
//! Decisions:
//! - The static HDF5 build serialises every call on one process-wide lock, so decoding inside
//!   HDF5 would make N reader threads run one at a time. Instead a read takes the lock only to
//!   copy the stored chunk bytes (`H5Dread_chunk`), then decompresses zstd outside it, in the
//!   calling thread (one zstd context per thread). The filter mask is honoured: a chunk stored
//!   unfiltered is copied as is.
//! - Decoded directly: pipelines `[]`, `[zstd 32015]` (hdf5plugin.Zstd) and `[shuffle, zstd]`
//!   (luna's default). The filter mask picks, per chunk, which steps to undo.
//! - Files with any other pipeline (e.g. h5py gzip) fall
//!   back to HDF5's own decoding (`Decode::Library`): correct, but serialised. Big-endian int16
//!   is rejected as a wrong dtype (the direct path copies native bytes).
//! - [`CropReader::read_all`] pipelines: while rayon decodes one batch of chunks in parallel,
//!   the next batch's raw bytes are read under the lock.
//! - A chunk that was never written (h5py with unwritten rows) reads as zeros (HDF5 fill value 0).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hdf5::filters::Filter;
use hdf5::types::{IntSize, TypeDescriptor};
use hdf5::{Dataset, File};
use rayon::prelude::*;

use super::crops::{as_bytes_mut, CENTERS_DATASET, CROPS_DATASET};
use super::shuffle::unshuffle2;
use super::zstd_filter::{register_zstd_filter, ZSTD_FILTER_ID};
use super::{chunk_io, StoreError};

/// How stored chunks are turned into crops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Pipeline `[zstd]` or `[shuffle, zstd]`: raw chunk read under the lock, decoded outside.
    Zstd {
        /// Whether byte shuffle precedes zstd in the pipeline.
        shuffle: bool,
    },
    /// No filters: raw chunk bytes are the crop.
    Raw,
    /// Any other pipeline: HDF5 decodes (under its lock).
    Library,
}

/// A stored chunk as read: filter mask (`None`: never written) and its bytes.
type RawChunk = (Option<u32>, Vec<u8>);

/// Random-access reader of a crop store; `Send + Sync`, share it by reference across threads.
pub struct CropReader {
    path: PathBuf,
    dataset: &'static str,
    _file: File,
    ds: Dataset,
    len: u64,
    width: [usize; 3],
    decode: Decode,
}

thread_local! {
    static RAW: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static SHUFFLED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

impl CropReader {
    /// Opens `path` and checks the `crops` dataset: int16, rank 4, chunks (1, w0, w1, w2).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_dataset(path, CROPS_DATASET)
    }

    /// Opens the int16 rank-4 dataset `dataset` of `path` (chunks (1, w0, w1, w2)) as a crop
    /// store: the segmentation samples (`store::seg_store`) use the same layout.
    pub fn open_dataset(path: impl AsRef<Path>, dataset: &'static str) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        register_zstd_filter()?;
        let file =
            File::open(&path).map_err(|e| StoreError::hdf5(&path, "/", "open the file", e))?;
        chunk_io::set_cloexec(&file);
        if !file.link_exists(dataset) {
            return Err(StoreError::MissingDataset {
                found: file.member_names().unwrap_or_default(),
                path,
                dataset: dataset.into(),
            });
        }
        let p = &path;
        let err = |op| move |e| StoreError::hdf5(p, dataset, op, e);
        let ds = file.dataset(dataset).map_err(err("open"))?;
        let dtype = ds.dtype().map_err(err("read the type of"))?;
        let desc = dtype.to_descriptor().map_err(err("read the type of"))?;
        let little = matches!(dtype.byte_order(), hdf5::datatype::ByteOrder::LittleEndian);
        if desc != TypeDescriptor::Integer(IntSize::U2) || little != cfg!(target_endian = "little")
        {
            let order = if little { "" } else { " (big-endian)" };
            return Err(StoreError::WrongDtype {
                path: path.clone(),
                dataset: dataset.into(),
                expected: "int16",
                found: format!("{desc}{order}"),
            });
        }
        let shape = ds.shape();
        if shape.len() != 4 || shape[1..].contains(&0) {
            return Err(StoreError::WrongShape {
                path: path.clone(),
                dataset: dataset.into(),
                expected: "(N, w0, w1, w2), each w ≥ 1".into(),
                found: shape,
            });
        }
        let width = [shape[1], shape[2], shape[3]];
        let expected = vec![1, width[0], width[1], width[2]];
        let chunk = ds.chunk();
        if chunk.as_ref() != Some(&expected) {
            return Err(StoreError::WrongChunkShape {
                path: path.clone(),
                dataset: dataset.into(),
                expected,
                found: chunk,
            });
        }
        let decode = match ds.filters().as_slice() {
            [] => Decode::Raw,
            [Filter::User(id, _)] if *id == ZSTD_FILTER_ID => Decode::Zstd { shuffle: false },
            [Filter::Shuffle, Filter::User(id, _)] if *id == ZSTD_FILTER_ID => {
                Decode::Zstd { shuffle: true }
            }
            _ => Decode::Library,
        };
        Ok(CropReader {
            len: shape[0] as u64,
            path,
            dataset,
            _file: file,
            ds,
            width,
            decode,
        })
    }

    /// Number of crops (rows).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the store holds no crops.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Crop width (index, row, col).
    pub fn width(&self) -> [usize; 3] {
        self.width
    }

    /// Voxels per crop (`w0*w1*w2`).
    pub fn voxels(&self) -> usize {
        self.width.iter().product()
    }

    /// The file this reader reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when luna decodes chunks itself, outside the HDF5 lock (pipelines `[]`, `[zstd]`,
    /// `[shuffle, zstd]`); false when HDF5 decodes them (other pipelines, serialised).
    pub fn decodes_outside_lock(&self) -> bool {
        self.decode != Decode::Library
    }

    /// Bytes the crops take in the file (compressed).
    pub fn stored_bytes(&self) -> u64 {
        self.ds.storage_size()
    }

    /// Reads crop `row` into `out` (`w0*w1*w2` values, row-major (i, r, c)).
    pub fn read(&self, row: u64, out: &mut [i16]) -> Result<(), StoreError> {
        self.check(row, out.len())?;
        if self.decode == Decode::Library {
            return self.read_library(row, out);
        }
        RAW.with(|raw| {
            let mut raw = raw.borrow_mut();
            let got = chunk_io::read_chunk(&self.ds, &[row, 0, 0, 0], &mut raw)
                .map_err(|e| StoreError::hdf5(&self.path, self.dataset, "read a chunk of", e))?;
            match got {
                Some((mask, len)) => self.decode_chunk(row, Some(mask), &raw[..len], out),
                None => self.decode_chunk(row, None, &[], out),
            }
        })
    }

    /// Reads every crop into one vector (`len * w0*w1*w2` values), decoding in parallel.
    pub fn read_all(&self) -> Result<Vec<i16>, StoreError> {
        let vox = self.voxels();
        let mut out = vec![0i16; self.len as usize * vox];
        if self.decode == Decode::Library {
            self.ds
                .read_into_raw(&mut out)
                .map_err(|e| StoreError::hdf5(&self.path, self.dataset, "read", e))?;
            return Ok(out);
        }
        const BATCH: usize = 256;
        let read_batch = |start: usize| -> Result<Vec<RawChunk>, StoreError> {
            let end = (start + BATCH).min(self.len as usize);
            let mut scratch = Vec::new();
            (start..end)
                .map(|row| {
                    let got = chunk_io::read_chunk(&self.ds, &[row as u64, 0, 0, 0], &mut scratch)
                        .map_err(|e| {
                            StoreError::hdf5(&self.path, self.dataset, "read a chunk of", e)
                        })?;
                    Ok(match got {
                        Some((mask, len)) => (Some(mask), scratch[..len].to_vec()),
                        None => (None, Vec::new()),
                    })
                })
                .collect()
        };
        let mut next = read_batch(0)?;
        for (b, out_batch) in out.chunks_mut(BATCH * vox).enumerate() {
            let current = std::mem::take(&mut next);
            let start = b * BATCH;
            let more = start + BATCH < self.len as usize;
            let (read, decoded) = rayon::join(
                || {
                    if more {
                        read_batch(start + BATCH)
                    } else {
                        Ok(Vec::new())
                    }
                },
                || {
                    out_batch
                        .par_chunks_mut(vox)
                        .zip(current.par_iter())
                        .enumerate()
                        .try_for_each(|(i, (crop, (mask, raw)))| {
                            self.decode_chunk((start + i) as u64, *mask, raw, crop)
                        })
                },
            );
            decoded?;
            next = read?;
        }
        Ok(out)
    }

    /// Reads the `center_irc` dataset, if the file has one.
    pub fn centers(&self) -> Result<Option<Vec<[i32; 3]>>, StoreError> {
        if !self._file.link_exists(CENTERS_DATASET) {
            return Ok(None);
        }
        let err = |e| StoreError::hdf5(&self.path, CENTERS_DATASET, "read", e);
        let ds = self._file.dataset(CENTERS_DATASET).map_err(err)?;
        let flat: Vec<i32> = ds.read_raw().map_err(err)?;
        Ok(Some(
            flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        ))
    }

    fn check(&self, row: u64, out_len: usize) -> Result<(), StoreError> {
        if row >= self.len {
            return Err(StoreError::RowOutOfRange {
                path: self.path.clone(),
                row,
                len: self.len,
            });
        }
        if out_len != self.voxels() {
            return Err(StoreError::BufferSize {
                path: self.path.clone(),
                expected: self.voxels(),
                found: out_len,
            });
        }
        Ok(())
    }

    fn read_library(&self, row: u64, out: &mut [i16]) -> Result<(), StoreError> {
        let w = self.width.map(|w| w as u64);
        chunk_io::read_rows(&self.ds, row, &w, out)
            .map_err(|e| StoreError::hdf5(&self.path, self.dataset, "read a row of", e))
    }

    /// Turns stored chunk bytes into a crop (no HDF5 call: runs outside the lock).
    fn decode_chunk(
        &self,
        row: u64,
        mask: Option<u32>,
        raw: &[u8],
        out: &mut [i16],
    ) -> Result<(), StoreError> {
        let Some(mask) = mask else {
            out.fill(0);
            return Ok(());
        };
        // Pipeline position of zstd, and whether shuffle was applied to this chunk.
        let (zstd_bit, shuffled) = match self.decode {
            Decode::Raw => (None, false),
            Decode::Zstd { shuffle: false } => (Some(0b1), false),
            Decode::Zstd { shuffle: true } => (Some(0b10), mask & 1 == 0),
            Decode::Library => unreachable!("library-decoded stores never reach decode_chunk"),
        };
        let zstd_applied = zstd_bit.is_some_and(|bit| mask & bit == 0);
        let undo_zstd = |dest: &mut [u8]| {
            if zstd_applied {
                inflate(raw, dest)
            } else if raw.len() == dest.len() {
                dest.copy_from_slice(raw);
                Ok(())
            } else {
                Err(format!(
                    "unfiltered chunk has {} bytes, expected {}",
                    raw.len(),
                    dest.len()
                ))
            }
        };
        let result = if shuffled {
            SHUFFLED.with(|cell| {
                let mut buf = cell.borrow_mut();
                buf.resize(std::mem::size_of_val(out), 0);
                undo_zstd(&mut buf)?;
                unshuffle2(&buf, as_bytes_mut(out));
                Ok(())
            })
        } else {
            undo_zstd(as_bytes_mut(out))
        };
        result.map_err(|cause| StoreError::CorruptChunk {
            path: self.path.clone(),
            dataset: self.dataset.into(),
            row,
            cause,
        })
    }
}

/// Decompresses one zstd frame into exactly `dest` (this thread's zstd context).
fn inflate(raw: &[u8], dest: &mut [u8]) -> Result<(), String> {
    let n = DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        let dec = slot.as_mut().expect("decompressor was just created");
        dec.decompress_to_buffer(raw, dest)
            .map_err(|e| format!("zstd: {e}"))
    })?;
    if n != dest.len() {
        return Err(format!(
            "zstd frame decodes to {n} bytes, expected {}",
            dest.len()
        ));
    }
    Ok(())
}
