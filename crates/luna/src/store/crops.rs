//! Writing crop stores: one HDF5 file, dataset `crops` of int16 HU with shape (N, w0, w1, w2),
//! chunked one sample per chunk and compressed with zstd (filter 32015), plus `center_irc`
//! (N, 3) int32 and attributes `width_irc`, `luna_version`, `hu_clip` on `crops`.
//!
//! Decisions:
//! - One sample per chunk: a training batch reads random rows, so a row must be decodable alone.
//! - Pipeline `[shuffle, zstd]` by default (`shuffle: true`): HDF5's byte shuffle (filter 2,
//!   built into every HDF5/h5py) before zstd makes CT crops ~18 % smaller and zstd ~7× faster
//!   (see `shuffle`). `shuffle: false` gives the plain `[zstd]` pipeline of `hdf5plugin.Zstd()`.
//! - Rows are buffered (`batch_rows`, default 64) and flushed with one resize per batch.
//! - Two write paths, same file format ([`WriteMode`]):
//!   - `Direct` (default): luna compresses the batch's chunks in parallel (rayon, one zstd
//!     context per thread) and stores them with `H5Dwrite_chunk`; the dataset still declares
//!     the pipeline, so h5py/hdf5plugin and the library path decode them normally. A chunk that
//!     zstd cannot shrink is stored raw with every filter-mask bit set (what HDF5 does when an
//!     optional filter fails), and readers honour the mask.
//!   - `Library`: a hyperslab `H5Dwrite` through HDF5's filter pipeline; it compresses on one
//!     thread while holding the global HDF5 lock (every reader thread in the process waits).
//!   - Measured (`store_bench`, release, 3000 crops 32×48×48, zstd-3 + shuffle, a 2-core box
//!     saturated by other builds, load ≈ 4.3): Direct 2900 crops/s, Library 2800 crops/s, file
//!     229 MB for 442 MB raw (ratio 1.93). With no free core rayon cannot help, so the two tie
//!     there; Direct is kept as default because its compression runs outside the HDF5 lock and
//!     scales with idle cores. Without shuffle both drop to ≈ 750 crops/s at ratio 1.64.
//! - `center_irc` is int32 (CT indices fit easily); values outside i32 are clamped.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File};
use rayon::prelude::*;

use super::zstd_filter::{register_zstd_filter, ZSTD_FILTER_ID};
use super::{chunk_io, StoreError};

/// Name of the crops dataset (N, w0, w1, w2) int16.
pub const CROPS_DATASET: &str = "crops";
/// Name of the crop-centre dataset (N, 3) int32, (index, row, col) voxel coordinates.
pub const CENTERS_DATASET: &str = "center_irc";
/// Default zstd level (3: fast; higher levels gain little on noisy HU data).
pub const DEFAULT_LEVEL: i32 = 3;

/// How the writer gets compressed chunks into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Compress in parallel in luna and write with `H5Dwrite_chunk` (fast path).
    Direct,
    /// Let HDF5's filter pipeline compress (single-threaded, under the HDF5 lock).
    Library,
}

/// Options of [`CropWriter::create_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CropWriterOptions {
    /// zstd level stored as the filter's `cd_values[0]`.
    pub level: i32,
    /// Which write path to use.
    pub mode: WriteMode,
    /// Byte-shuffle before zstd (pipeline `[shuffle, zstd]`); false: `[zstd]` only.
    pub shuffle: bool,
    /// Rows buffered before one resize + write (≥ 1).
    pub batch_rows: usize,
    /// HU clip range recorded as attribute `hu_clip` (None: not recorded).
    pub hu_clip: Option<[i16; 2]>,
}

impl Default for CropWriterOptions {
    fn default() -> Self {
        CropWriterOptions {
            level: DEFAULT_LEVEL,
            mode: WriteMode::Direct,
            shuffle: true,
            batch_rows: 64,
            hu_clip: Some([-1000, 1000]),
        }
    }
}

/// Appends crops to a new HDF5 crop store; call [`CropWriter::finish`] to flush and close.
pub struct CropWriter {
    path: PathBuf,
    crops: Dataset,
    centers: Dataset,
    width: [usize; 3],
    opts: CropWriterOptions,
    pending: Vec<i16>,
    pending_centers: Vec<i32>,
    written: u64,
    finished: bool,
    /// Declared last, so dropped last: the file must outlive its datasets. When a flush
    /// failed (a full disk), closing the file's last open dataset makes HDF5 close the file
    /// from inside that close and flush every dataset, the closing one too, and it crashed
    /// (SIGSEGV in `H5D__flush_all_cb`, 1 run in ~10 of `harden_disk`).
    file: File,
}

impl CropWriter {
    /// Creates (truncates) `path` with default options and the given zstd `level`.
    pub fn create(
        path: impl AsRef<Path>,
        width_irc: [usize; 3],
        level: i32,
    ) -> Result<Self, StoreError> {
        let opts = CropWriterOptions {
            level,
            ..CropWriterOptions::default()
        };
        Self::create_with(path, width_irc, opts)
    }

    /// Creates (truncates) `path` with explicit options.
    pub fn create_with(
        path: impl AsRef<Path>,
        width_irc: [usize; 3],
        opts: CropWriterOptions,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        register_zstd_filter()?;
        let [w0, w1, w2] = width_irc;
        let vox = w0 * w1 * w2;
        if vox == 0 {
            return Err(StoreError::WrongShape {
                path,
                dataset: CROPS_DATASET.into(),
                expected: "a crop width with every side ≥ 1".into(),
                found: width_irc.to_vec(),
            });
        }
        let p = &path;
        let err = |op| move |e| StoreError::hdf5(p, CROPS_DATASET, op, e);
        // no modification times in the object headers (root group and datasets): the same
        // crops are the same bytes whenever and wherever (a Slurm job, this machine) written
        let file = File::with_options()
            .with_fcpl(|p| p.obj_track_times(false))
            .create(&path)
            .map_err(err("create the file"))?;
        chunk_io::set_cloexec(&file);
        let mut builder = file
            .new_dataset::<i16>()
            .obj_track_times(false)
            .chunk((1, w0, w1, w2));
        if opts.shuffle {
            builder = builder.shuffle();
        }
        let crops = builder
            .add_filter(ZSTD_FILTER_ID, &[opts.level as u32])
            .shape((0.., w0, w1, w2))
            .create(CROPS_DATASET)
            .map_err(err("create the dataset"))?;
        let centers = file
            .new_dataset::<i32>()
            .obj_track_times(false)
            .chunk((4096, 3))
            .shape((0.., 3))
            .create(CENTERS_DATASET)
            .map_err(|e| StoreError::hdf5(&path, CENTERS_DATASET, "create the dataset", e))?;
        write_attrs(&crops, width_irc, opts.hu_clip).map_err(err("write attributes of"))?;
        let batch = opts.batch_rows.max(1);
        Ok(CropWriter {
            pending: Vec::with_capacity(batch * vox),
            pending_centers: Vec::with_capacity(batch * 3),
            path,
            file,
            crops,
            centers,
            width: width_irc,
            opts,
            written: 0,
            finished: false,
        })
    }

    /// Appends one crop (row-major (i, r, c), `w0*w1*w2` values); returns its row index.
    pub fn append(&mut self, crop: &[i16], center_irc: [i64; 3]) -> Result<u64, StoreError> {
        let vox = self.voxels();
        if crop.len() != vox {
            return Err(StoreError::BufferSize {
                path: self.path.clone(),
                expected: vox,
                found: crop.len(),
            });
        }
        self.pending.extend_from_slice(crop);
        self.pending_centers.extend(
            center_irc
                .iter()
                .map(|&c| c.clamp(i32::MIN as i64, i32::MAX as i64) as i32),
        );
        let row = self.written + self.pending_rows() as u64 - 1;
        if self.pending_rows() >= self.opts.batch_rows.max(1) {
            self.flush()?;
        }
        Ok(row)
    }

    /// Flushes buffered rows, closes the file and returns the number of rows written.
    pub fn finish(mut self) -> Result<u64, StoreError> {
        self.flush()?;
        self.finished = true;
        self.file
            .flush()
            .map_err(|e| StoreError::hdf5(&self.path, "/", "flush the file", e))?;
        Ok(self.written)
    }

    /// Rows appended so far (written or buffered).
    pub fn len(&self) -> u64 {
        self.written + self.pending_rows() as u64
    }

    /// True when nothing has been appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The crop width (index, row, col) of this store.
    pub fn width(&self) -> [usize; 3] {
        self.width
    }

    fn voxels(&self) -> usize {
        self.width.iter().product()
    }

    fn pending_rows(&self) -> usize {
        self.pending.len() / self.voxels()
    }

    /// Writes the buffered rows: one resize, then the chunks (direct) or one slice (library).
    fn flush(&mut self) -> Result<(), StoreError> {
        let k = self.pending_rows();
        if k == 0 {
            return Ok(());
        }
        let [w0, w1, w2] = self.width;
        let (n0, n1) = (self.written as usize, self.written as usize + k);
        let path = &self.path;
        let err = |op| move |e| StoreError::hdf5(path, CROPS_DATASET, op, e);
        let row_shape = [w0 as u64, w1 as u64, w2 as u64];
        match self.opts.mode {
            WriteMode::Direct => {
                let (level, shuffle) = (self.opts.level, self.opts.shuffle);
                let chunks: Vec<(u32, Vec<u8>)> = self
                    .pending
                    .par_chunks(w0 * w1 * w2)
                    .map(|crop| compress_chunk(as_bytes(crop), level, shuffle))
                    .collect();
                self.crops.resize((n1, w0, w1, w2)).map_err(err("resize"))?;
                for (i, (mask, bytes)) in chunks.iter().enumerate() {
                    let offset = [(n0 + i) as u64, 0, 0, 0];
                    chunk_io::write_chunk(&self.crops, &offset, *mask, bytes)
                        .map_err(err("write a chunk of"))?;
                }
            }
            WriteMode::Library => {
                self.crops.resize((n1, w0, w1, w2)).map_err(err("resize"))?;
                chunk_io::write_rows(&self.crops, n0 as u64, &row_shape, &self.pending)
                    .map_err(err("write rows of"))?;
            }
        }
        let cerr = |op| move |e| StoreError::hdf5(path, CENTERS_DATASET, op, e);
        self.centers.resize((n1, 3)).map_err(cerr("resize"))?;
        chunk_io::write_rows(&self.centers, n0 as u64, &[3], &self.pending_centers)
            .map_err(cerr("write rows of"))?;
        self.written = n1 as u64;
        self.pending.clear();
        self.pending_centers.clear();
        Ok(())
    }
}

impl Drop for CropWriter {
    /// Best-effort flush when `finish` was not called (errors are lost; call `finish`).
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.flush();
        }
    }
}

fn write_attrs(crops: &Dataset, width: [usize; 3], hu_clip: Option<[i16; 2]>) -> hdf5::Result<()> {
    let w: Vec<u64> = width.iter().map(|&w| w as u64).collect();
    crops
        .new_attr::<u64>()
        .shape(3)
        .create("width_irc")?
        .write_raw(&w)?;
    let version: VarLenUnicode = env!("CARGO_PKG_VERSION")
        .parse()
        .expect("the crate version has no NUL byte");
    crops
        .new_attr::<VarLenUnicode>()
        .create("luna_version")?
        .write_scalar(&version)?;
    if let Some(clip) = hu_clip {
        crops
            .new_attr::<i16>()
            .shape(2)
            .create("hu_clip")?
            .write_raw(&clip)?;
    }
    Ok(())
}

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    static SHUFFLED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Encodes one chunk as the pipeline `[shuffle?, zstd]` would, with this thread's zstd context;
/// returns (filter mask, stored bytes). When zstd would not shrink the chunk, returns the raw
/// bytes with every filter skipped (mask `0b11` with shuffle, `0b1` without).
pub(crate) fn compress_chunk(raw: &[u8], level: i32, shuffle: bool) -> (u32, Vec<u8>) {
    let mut out = Vec::new();
    let mask = if shuffle {
        compress_shuffled_with(
            raw.len(),
            level,
            |buf| super::shuffle::shuffle2(raw, buf),
            &mut out,
        )
    } else if zstd_compress(raw, level, &mut out) {
        0
    } else {
        out.clear();
        out.extend_from_slice(raw);
        0b1
    };
    (mask, out)
}

/// Encodes one `[shuffle, zstd]` chunk of `len` bytes whose shuffled bytes `fill` writes into
/// this thread's reused buffer (so a caller that holds its data already shuffled, in pieces,
/// assembles the chunk without an unshuffled copy), into `out` (reused by callers that write
/// many chunks: no fresh pages per chunk). Returns the filter mask, as [`compress_chunk`]:
/// `out` holds the raw (unshuffled) bytes with mask `0b11` when zstd would not shrink it.
pub(crate) fn compress_shuffled_with(
    len: usize,
    level: i32,
    fill: impl FnOnce(&mut [u8]),
    out: &mut Vec<u8>,
) -> u32 {
    SHUFFLED.with(|cell| {
        let mut buf = cell.borrow_mut();
        buf.resize(len, 0);
        fill(&mut buf);
        if zstd_compress(&buf, level, out) {
            0
        } else {
            out.clear();
            out.resize(len, 0);
            super::shuffle::unshuffle2(&buf, out);
            0b11
        }
    })
}

/// Compresses `raw` into `out` (replacing its content); false when zstd failed or would not
/// shrink it.
fn zstd_compress(raw: &[u8], level: i32, out: &mut Vec<u8>) -> bool {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().map(|(l, _)| *l) != Some(level) {
            *slot = zstd::bulk::Compressor::new(level).ok().map(|c| (level, c));
        }
        let Some((_, comp)) = slot.as_mut() else {
            return false;
        };
        out.clear();
        out.reserve(zstd_safe::compress_bound(raw.len()));
        comp.compress_to_buffer(raw, out).is_ok() && out.len() < raw.len()
    })
}

/// The bytes of an i16 slice (native order, as the dataset's native int16 type stores them).
pub(crate) fn as_bytes(v: &[i16]) -> &[u8] {
    // SAFETY: i16 has no padding and u8 has alignment 1; the length covers the same memory.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// The bytes of a mutable i16 slice (any byte pattern is a valid i16).
pub(crate) fn as_bytes_mut(v: &mut [i16]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`; every byte pattern is a valid i16.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}
