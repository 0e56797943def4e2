//! Per-series segmentation stores: what `seg_dataset` writes and `train_segmentation` reads.
//!
//! Layout of `seg/<series_uid>.h5` (every dataset carries the zstd filter 32015):
//! - `mask`: uint8 (I, R, C), the whole annotation mask (0/1), chunks (1, R, C);
//!   attributes `origin_xyz`, `spacing_xyz` (f64 ×3), `direction` (f64 ×9, row-major,
//!   SimpleITK `GetDirection()` order), `series_uid` (string), `context_slices`, `crop` (u64),
//!   `luna_version` (string);
//! - `train_input`: int16 (N, 2k+1, crop, crop) HU clipped to ±1000, chunks (1, 2k+1, crop,
//!   crop); `train_label`: uint8 (N, crop, crop), chunks (1, crop, crop); `train_center_irc`:
//!   int32 (N, 3) nodule centre (index, row, col). N = 0 for a validation series;
//! - `val_input`: int16 (M, 2k+1, R, C), chunks (1, 2k+1, R, C); `val_label`: uint8 (M, R, C),
//!   chunks (1, R, C); `val_slice`: int32 (M,) slice index. M = 0 for a training series.
//!
//! Decisions:
//! - One sample (or slice) per chunk, so a loader decodes exactly the sample it draws. The
//!   small int32 tables are chunked by up to 4096 rows (one sample per chunk would store
//!   12-byte chunks).
//! - int16 pipelines are `[shuffle, zstd]` as in the crop stores (smaller and faster, see
//!   `store::crops`); uint8 pipelines are `[zstd]` (byte shuffle is a no-op on one byte).
//!   h5py reads both with `import hdf5plugin`.
//! - Writing compresses chunks in parallel in luna and stores them with `H5Dwrite_chunk`
//!   (`crops::compress_chunk`, `chunk_io::write_chunk`); an all-zero mask slice is compressed
//!   once and reused, and a validation label (its slice of the mask) reuses that slice's mask
//!   chunk. Validation inputs come as [`ShuffledSlice`]s: each slice is shuffled once and a
//!   sample's chunk is assembled by copying planes (rejected: concatenating the 2k+1 slices and
//!   shuffling every sample, which converts and copies each slice 2k+1 times). Reading the int16 samples goes through [`CropReader`] (chunk copied under
//!   the HDF5 lock, decompressed outside it); labels and the mask are small and read plainly.
//! - Empty datasets keep their sample shape ((0, 7, 96, 96)), so a reader never special-cases
//!   a split.

use std::path::{Path, PathBuf};

use hdf5::{Dataset, File};
use rayon::prelude::*;

use super::crop_reader::CropReader;
use super::crops::{as_bytes, compress_chunk, compress_shuffled_with};
use super::prob_volume::{read_geometry_attrs, read_string_attr, write_geometry_attrs};
use super::shuffle::shuffle2;
use super::zstd_filter::{register_zstd_filter, ZSTD_FILTER_ID};
use super::{chunk_io, StoreError};
use crate::ct::Geometry;

/// The annotation mask dataset.
pub const MASK: &str = "mask";
/// Training inputs (N, 2k+1, crop, crop) int16.
pub const TRAIN_INPUT: &str = "train_input";
/// Training labels (N, crop, crop) uint8.
pub const TRAIN_LABEL: &str = "train_label";
/// Training nodule centres (N, 3) int32.
pub const TRAIN_CENTER: &str = "train_center_irc";
/// Validation inputs (M, 2k+1, R, C) int16.
pub const VAL_INPUT: &str = "val_input";
/// Validation labels (M, R, C) uint8.
pub const VAL_LABEL: &str = "val_label";
/// Validation slice indices (M,) int32.
pub const VAL_SLICE: &str = "val_slice";

/// Rows per chunk of the small int32 datasets.
const TABLE_CHUNK: usize = 4096;

fn h5err<'a>(
    path: &'a Path,
    ds: &'static str,
    op: &'static str,
) -> impl FnOnce(hdf5::Error) -> StoreError + 'a {
    move |e| StoreError::hdf5(path, ds, op, e)
}

/// Writes one series' store; call [`SegWriter::finish`] to close it.
pub struct SegWriter {
    path: PathBuf,
    shape: [usize; 3],
    context: usize,
    crop: usize,
    level: i32,
    val_rows: usize,
    /// The stored chunks of `mask`, one per slice: a validation label is its slice's mask, so
    /// its chunk is written from here instead of being compressed again.
    mask_chunks: Vec<(u32, Vec<u8>)>,
    /// Stored chunks of the validation batch being written, reused from batch to batch.
    val_chunks: Vec<(u32, Vec<u8>)>,
    train: [Dataset; 3],
    val_input: Dataset,
    val_label: Dataset,
    val_slice: Dataset,
    /// Declared last, so dropped last: the file must outlive its datasets. When a flush
    /// failed (a full disk), closing the file's last open dataset makes HDF5 close the file
    /// from inside that close and flush every dataset, the closing one too, and it crashed
    /// (SIGSEGV in `H5D__flush_all_cb`, 1 run in ~10 of `harden_disk`).
    file: File,
}

/// What a store is created for: the CT and the sample geometry.
#[derive(Debug, Clone, Copy)]
pub struct SegLayout<'a> {
    /// Series UID.
    pub series_uid: &'a str,
    /// The CT's geometry (stored as attributes of `mask`).
    pub geometry: &'a Geometry,
    /// CT shape (index, row, col).
    pub shape: [usize; 3],
    /// k: samples hold 2k+1 slices.
    pub context_slices: usize,
    /// Side of the training crops.
    pub crop: usize,
    /// zstd level of every chunk.
    pub level: i32,
}

/// One slice of int16 voxels in HDF5's byte-shuffle layout (every element's first byte, then
/// every second byte). The shuffle of a (2k+1)-slice sample is its slices' first planes, then
/// their second planes, so [`SegWriter::append_val`] assembles a sample's chunk by copying:
/// each slice is shuffled once, not once per sample that holds it (2k+1 times).
pub struct ShuffledSlice(Vec<u8>);

impl ShuffledSlice {
    /// Shuffles one slice (R×C voxels, row-major).
    pub fn new(voxels: &[i16]) -> Self {
        let raw = as_bytes(voxels);
        let mut bytes = vec![0u8; raw.len()];
        shuffle2(raw, &mut bytes);
        ShuffledSlice(bytes)
    }
}

impl SegWriter {
    /// Creates (truncates) `path` for the CT of `layout` and writes `mask` (0/1, C order,
    /// `shape` product long) with the geometry attributes. `maybe_nonzero[i] == false` says
    /// slice i is all zero (written without being read); `None`: every slice is checked.
    pub fn create(
        path: &Path,
        layout: &SegLayout,
        mask: &[u8],
        maybe_nonzero: Option<&[bool]>,
    ) -> Result<Self, StoreError> {
        let SegLayout {
            series_uid,
            geometry,
            shape,
            context_slices,
            crop,
            level,
        } = *layout;
        register_zstd_filter()?;
        let plane = shape[1] * shape[2];
        if mask.len() != shape[0] * plane || plane == 0 || crop == 0 {
            return Err(StoreError::BufferSize {
                path: path.to_path_buf(),
                expected: shape[0] * plane,
                found: mask.len(),
            });
        }
        // no modification times in the object headers (as store/crops.rs): the same samples
        // are the same bytes whenever and wherever they are written
        let file = File::with_options()
            .with_fcpl(|p| p.obj_track_times(false))
            .create(path)
            .map_err(h5err(path, "/", "create the file"))?;
        chunk_io::set_cloexec(&file);
        let depth = 2 * context_slices + 1;
        let (r, c) = (shape[1], shape[2]);
        let mask_ds = new_u8(&file, path, MASK, &[shape[0], r, c], level)?;
        write_attrs(&mask_ds, series_uid, geometry, context_slices, crop).map_err(h5err(
            path,
            MASK,
            "write attributes of",
        ))?;
        let train = [
            new_i16(&file, path, TRAIN_INPUT, &[0, depth, crop, crop], level)?,
            new_u8(&file, path, TRAIN_LABEL, &[0, crop, crop], level)?,
            new_table(&file, path, TRAIN_CENTER, &[0, 3], level)?,
        ];
        let val_input = new_i16(&file, path, VAL_INPUT, &[0, depth, r, c], level)?;
        let val_label = new_u8(&file, path, VAL_LABEL, &[0, r, c], level)?;
        let val_slice = new_table(&file, path, VAL_SLICE, &[0], level)?;
        // Every empty slice compresses to the same bytes: compress one and reuse it.
        let zero = compress_chunk(&vec![0u8; plane], level, false);
        let mask_chunks: Vec<(u32, Vec<u8>)> = mask
            .par_chunks(plane)
            .enumerate()
            .map(|(i, s)| {
                let known_zero = maybe_nonzero.is_some_and(|m| !m.get(i).copied().unwrap_or(true));
                if known_zero || s.iter().all(|&v| v == 0) {
                    zero.clone()
                } else {
                    compress_chunk(s, level, false)
                }
            })
            .collect();
        let w = SegWriter {
            path: path.to_path_buf(),
            file,
            shape,
            context: context_slices,
            crop,
            level,
            val_rows: 0,
            mask_chunks,
            val_chunks: Vec::new(),
            train,
            val_input,
            val_label,
            val_slice,
        };
        let written = w.put_chunks(&mask_ds, MASK, 0, &w.mask_chunks);
        drop(mask_ds); // before `w` can drop on the error path: see `SegWriter::file`
        written?;
        Ok(w)
    }

    /// Writes the training samples (once): `inputs` N × (2k+1)·crop², `labels` N × crop²,
    /// `centres` N nodule centres (index, row, col).
    pub fn write_train(
        &mut self,
        inputs: &[i16],
        labels: &[u8],
        centres: &[[i32; 3]],
    ) -> Result<(), StoreError> {
        let (depth, crop) = (2 * self.context + 1, self.crop);
        let n = centres.len();
        self.check_len(inputs.len(), n * depth * crop * crop)?;
        self.check_len(labels.len(), n * crop * crop)?;
        if n == 0 {
            return Ok(());
        }
        let path = self.path.clone();
        let [input, label, centre] = &self.train;
        input
            .resize((n, depth, crop, crop))
            .map_err(h5err(&path, TRAIN_INPUT, "resize"))?;
        label
            .resize((n, crop, crop))
            .map_err(h5err(&path, TRAIN_LABEL, "resize"))?;
        centre
            .resize((n, 3))
            .map_err(h5err(&path, TRAIN_CENTER, "resize"))?;
        self.put_rows_i16(input, TRAIN_INPUT, 0, inputs, depth * crop * crop)?;
        self.put_rows_u8(label, TRAIN_LABEL, 0, labels, crop * crop)?;
        let flat: Vec<i32> = centres.iter().flatten().copied().collect();
        chunk_io::write_rows(centre, 0, &[3], &flat).map_err(h5err(
            &path,
            TRAIN_CENTER,
            "write rows of",
        ))
    }

    /// Appends validation samples: per sample its 2k+1 context slices (each R×C, shuffled)
    /// and the index of its centre slice, whose mask is the sample's label. Chunks are
    /// assembled from the shuffled slices and compressed in parallel (the caller's rayon pool).
    pub fn append_val(
        &mut self,
        contexts: &[Vec<&ShuffledSlice>],
        slices: &[usize],
    ) -> Result<(), StoreError> {
        let [n, r, c] = self.shape;
        let depth = 2 * self.context + 1;
        let m = slices.len();
        self.check_len(contexts.len(), m)?;
        for ctx in contexts {
            self.check_len(ctx.len(), depth)?;
            for s in ctx {
                self.check_len(s.0.len(), 2 * r * c)?;
            }
        }
        if let Some(&bad) = slices.iter().find(|&&s| s >= n) {
            return Err(StoreError::RowOutOfRange {
                path: self.path.clone(),
                row: bad as u64,
                len: n as u64,
            });
        }
        if m == 0 {
            return Ok(());
        }
        let (n0, n1) = (self.val_rows, self.val_rows + m);
        let path = self.path.clone();
        self.val_input
            .resize((n1, depth, r, c))
            .map_err(h5err(&path, VAL_INPUT, "resize"))?;
        self.val_label
            .resize((n1, r, c))
            .map_err(h5err(&path, VAL_LABEL, "resize"))?;
        self.val_slice
            .resize(n1)
            .map_err(h5err(&path, VAL_SLICE, "resize"))?;
        let (level, plane) = (self.level, r * c);
        if self.val_chunks.len() < m {
            self.val_chunks.resize_with(m, Default::default);
        }
        contexts
            .par_iter()
            .zip(self.val_chunks[..m].par_iter_mut())
            .for_each(|(ctx, (mask, out))| {
                let fill = |buf: &mut [u8]| {
                    let (first, second) = buf.split_at_mut(depth * plane);
                    for (j, s) in ctx.iter().enumerate() {
                        let (a, b) = s.0.split_at(plane);
                        first[j * plane..(j + 1) * plane].copy_from_slice(a);
                        second[j * plane..(j + 1) * plane].copy_from_slice(b);
                    }
                };
                *mask = compress_shuffled_with(2 * depth * plane, level, fill, out);
            });
        self.put_chunks(&self.val_input, VAL_INPUT, n0, &self.val_chunks[..m])?;
        self.put_chunks(
            &self.val_label,
            VAL_LABEL,
            n0,
            slices.iter().map(|&s| &self.mask_chunks[s]),
        )?;
        let idx: Vec<i32> = slices.iter().map(|&s| s as i32).collect();
        chunk_io::write_rows(&self.val_slice, n0 as u64, &[], &idx).map_err(h5err(
            &path,
            VAL_SLICE,
            "write rows of",
        ))?;
        self.val_rows = n1;
        Ok(())
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> Result<(), StoreError> {
        self.file
            .flush()
            .map_err(h5err(&self.path, "/", "flush the file"))
    }

    fn check_len(&self, found: usize, expected: usize) -> Result<(), StoreError> {
        if found != expected {
            return Err(StoreError::BufferSize {
                path: self.path.clone(),
                expected,
                found,
            });
        }
        Ok(())
    }

    fn put_rows_i16(
        &self,
        ds: &Dataset,
        name: &'static str,
        first: usize,
        data: &[i16],
        row: usize,
    ) -> Result<(), StoreError> {
        let level = self.level;
        let chunks: Vec<(u32, Vec<u8>)> = data
            .par_chunks(row)
            .map(|s| compress_chunk(as_bytes(s), level, true))
            .collect();
        self.put_chunks(ds, name, first, &chunks)
    }

    fn put_rows_u8(
        &self,
        ds: &Dataset,
        name: &'static str,
        first: usize,
        data: &[u8],
        row: usize,
    ) -> Result<(), StoreError> {
        let level = self.level;
        let chunks: Vec<(u32, Vec<u8>)> = data
            .par_chunks(row)
            .map(|s| compress_chunk(s, level, false))
            .collect();
        self.put_chunks(ds, name, first, &chunks)
    }

    fn put_chunks<'c>(
        &self,
        ds: &Dataset,
        name: &'static str,
        first: usize,
        chunks: impl IntoIterator<Item = &'c (u32, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let rank = ds.ndim();
        for (i, (mask, bytes)) in chunks.into_iter().enumerate() {
            let mut offset = vec![0u64; rank];
            offset[0] = (first + i) as u64;
            chunk_io::write_chunk(ds, &offset, *mask, bytes).map_err(h5err(
                &self.path,
                name,
                "write a chunk of",
            ))?;
        }
        Ok(())
    }
}

/// An empty, resizable int16 sample dataset of rows `shape[1..]`, one sample per chunk,
/// `[shuffle, zstd]` (`shape[0]` is ignored: rows are added by `resize`).
fn new_i16(
    file: &File,
    path: &Path,
    name: &'static str,
    shape: &[usize; 4],
    level: i32,
) -> Result<Dataset, StoreError> {
    let [_, a, b, c] = *shape;
    file.new_dataset::<i16>()
        .obj_track_times(false)
        .chunk((1, a, b, c))
        .shuffle()
        .add_filter(ZSTD_FILTER_ID, &[level as u32])
        .shape((0.., a, b, c))
        .create(name)
        .map_err(h5err(path, name, "create the dataset"))
}

/// An empty, resizable uint8 dataset of rows `shape[1..]` (rank 3), one row per chunk,
/// `[zstd]`; the mask is created at its full size (`shape[0]` slices).
fn new_u8(
    file: &File,
    path: &Path,
    name: &'static str,
    shape: &[usize; 3],
    level: i32,
) -> Result<Dataset, StoreError> {
    let [n, a, b] = *shape;
    file.new_dataset::<u8>()
        .obj_track_times(false)
        .chunk((1, a, b))
        .add_filter(ZSTD_FILTER_ID, &[level as u32])
        .shape((n.., a, b))
        .create(name)
        .map_err(h5err(path, name, "create the dataset"))
}

/// An empty, resizable int32 table of rows `shape[1..]` ((n,) or (n, w)), chunks of 4096
/// rows, `[zstd]`.
fn new_table(
    file: &File,
    path: &Path,
    name: &'static str,
    shape: &[usize],
    level: i32,
) -> Result<Dataset, StoreError> {
    let b = file
        .new_dataset::<i32>()
        .obj_track_times(false)
        .add_filter(ZSTD_FILTER_ID, &[level as u32]);
    let b = match shape {
        [_, w] => b.chunk((TABLE_CHUNK, *w)).shape((0.., *w)),
        _ => b.chunk(TABLE_CHUNK).shape(0..),
    };
    b.create(name)
        .map_err(h5err(path, name, "create the dataset"))
}

fn write_attrs(
    ds: &Dataset,
    series_uid: &str,
    g: &Geometry,
    context: usize,
    crop: usize,
) -> hdf5::Result<()> {
    ds.new_attr::<u64>()
        .create("context_slices")?
        .write_scalar(&(context as u64))?;
    ds.new_attr::<u64>()
        .create("crop")?
        .write_scalar(&(crop as u64))?;
    write_geometry_attrs(
        ds,
        g,
        &[
            ("series_uid", series_uid),
            ("luna_version", env!("CARGO_PKG_VERSION")),
        ],
    )
}

/// A segmentation store opened for reading; `Send + Sync` (share it across loader threads).
pub struct SegStore {
    path: PathBuf,
    file: File,
    series_uid: String,
    shape: [usize; 3],
    context_slices: usize,
    crop: usize,
    geometry: Geometry,
    train_input: CropReader,
    val_input: CropReader,
    train_label: Dataset,
    val_label: Dataset,
}

impl SegStore {
    /// Opens `path` and checks the layout (datasets present, sample shapes consistent).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        register_zstd_filter()?;
        let file = File::open(&path).map_err(h5err(&path, "/", "open the file"))?;
        chunk_io::set_cloexec(&file);
        let ds = |name: &'static str| {
            file.dataset(name).map_err(|_| StoreError::MissingDataset {
                path: path.clone(),
                dataset: name.into(),
                found: file.member_names().unwrap_or_default(),
            })
        };
        let mask = ds(MASK)?;
        let (train_label, val_label) = (ds(TRAIN_LABEL)?, ds(VAL_LABEL)?);
        ds(TRAIN_CENTER)?;
        ds(VAL_SLICE)?;
        let s = mask.shape();
        if s.len() != 3 || s.contains(&0) {
            return Err(wrong_shape(&path, MASK, "(index, row, col)", s));
        }
        let shape = [s[0], s[1], s[2]];
        let u64_attr = |name: &str| -> Result<usize, StoreError> {
            mask.attr(name)
                .and_then(|a| a.read_scalar::<u64>())
                .map(|v| v as usize)
                .map_err(h5err(&path, MASK, "read attributes of"))
        };
        let (context_slices, crop) = (u64_attr("context_slices")?, u64_attr("crop")?);
        let geometry = read_geometry_attrs(&mask, &path, MASK)?;
        let series_uid = read_string_attr(&mask, &path, MASK, "series_uid")?;
        let train_input = CropReader::open_dataset(&path, TRAIN_INPUT)?;
        let val_input = CropReader::open_dataset(&path, VAL_INPUT)?;
        let depth = 2 * context_slices + 1;
        let expect = |name: &'static str, got: Vec<usize>, want: Vec<usize>| {
            if got.len() != want.len() + 1 || got[1..] != want[..] {
                return Err(wrong_shape(&path, name, &format!("(N, {want:?})"), got));
            }
            Ok(())
        };
        let ti = train_input.width();
        let vi = val_input.width();
        expect(
            TRAIN_INPUT,
            vec![0, ti[0], ti[1], ti[2]],
            vec![depth, crop, crop],
        )?;
        expect(
            VAL_INPUT,
            vec![0, vi[0], vi[1], vi[2]],
            vec![depth, shape[1], shape[2]],
        )?;
        expect(TRAIN_LABEL, train_label.shape(), vec![crop, crop])?;
        expect(VAL_LABEL, val_label.shape(), vec![shape[1], shape[2]])?;
        if train_label.shape()[0] as u64 != train_input.len()
            || val_label.shape()[0] as u64 != val_input.len()
        {
            return Err(StoreError::Invalid {
                path: path.clone(),
                message: "input and label datasets hold different numbers of samples; regenerate the store".into(),
            });
        }
        Ok(SegStore {
            path,
            file,
            series_uid,
            shape,
            context_slices,
            crop,
            geometry,
            train_input,
            val_input,
            train_label,
            val_label,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Series UID (attribute of `mask`).
    pub fn series_uid(&self) -> &str {
        &self.series_uid
    }
    /// CT shape (index, row, col).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }
    /// k: a sample holds 2k+1 slices.
    pub fn context_slices(&self) -> usize {
        self.context_slices
    }
    /// Side of the training crops.
    pub fn crop(&self) -> usize {
        self.crop
    }
    /// The CT's geometry.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }
    /// Number of training samples.
    pub fn train_len(&self) -> usize {
        self.train_input.len() as usize
    }
    /// Number of validation samples.
    pub fn val_len(&self) -> usize {
        self.val_input.len() as usize
    }
    /// Shape of one training input (2k+1, crop, crop); its label is (crop, crop).
    pub fn train_input_shape(&self) -> [usize; 3] {
        self.train_input.width()
    }
    /// Shape of one validation input (2k+1, R, C); its label is (R, C).
    pub fn val_input_shape(&self) -> [usize; 3] {
        self.val_input.width()
    }

    /// Reads training sample `row`: input (2k+1)·crop² values, label crop² values.
    pub fn read_train(
        &self,
        row: usize,
        input: &mut [i16],
        label: &mut [u8],
    ) -> Result<(), StoreError> {
        self.train_input.read(row as u64, input)?;
        self.read_label(&self.train_label, TRAIN_LABEL, row, label)
    }

    /// Reads validation sample `row`: input (2k+1)·R·C values, label R·C values.
    pub fn read_val(
        &self,
        row: usize,
        input: &mut [i16],
        label: &mut [u8],
    ) -> Result<(), StoreError> {
        self.val_input.read(row as u64, input)?;
        self.read_label(&self.val_label, VAL_LABEL, row, label)
    }

    /// The whole annotation mask (I·R·C values, 0/1).
    pub fn read_mask(&self) -> Result<Vec<u8>, StoreError> {
        self.file
            .dataset(MASK)
            .and_then(|d| d.read_raw())
            .map_err(h5err(&self.path, MASK, "read"))
    }

    /// The training samples' nodule centres (index, row, col).
    pub fn train_centers(&self) -> Result<Vec<[i32; 3]>, StoreError> {
        let flat: Vec<i32> = self
            .file
            .dataset(TRAIN_CENTER)
            .and_then(|d| d.read_raw())
            .map_err(h5err(&self.path, TRAIN_CENTER, "read"))?;
        Ok(flat.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
    }

    /// The validation samples' slice indices.
    pub fn val_slices(&self) -> Result<Vec<i32>, StoreError> {
        self.file
            .dataset(VAL_SLICE)
            .and_then(|d| d.read_raw())
            .map_err(h5err(&self.path, VAL_SLICE, "read"))
    }

    fn read_label(
        &self,
        ds: &Dataset,
        name: &'static str,
        row: usize,
        out: &mut [u8],
    ) -> Result<(), StoreError> {
        let s = ds.shape();
        let want = s[1] * s[2];
        if out.len() != want {
            return Err(StoreError::BufferSize {
                path: self.path.clone(),
                expected: want,
                found: out.len(),
            });
        }
        if row >= s[0] {
            return Err(StoreError::RowOutOfRange {
                path: self.path.clone(),
                row: row as u64,
                len: s[0] as u64,
            });
        }
        chunk_io::read_rows(ds, row as u64, &[s[1] as u64, s[2] as u64], out).map_err(h5err(
            &self.path,
            name,
            "read a row of",
        ))
    }
}

fn wrong_shape(path: &Path, ds: &str, expected: &str, found: Vec<usize>) -> StoreError {
    StoreError::WrongShape {
        path: path.to_path_buf(),
        dataset: ds.into(),
        expected: expected.into(),
        found,
    }
}

/// The path of a series' store under an artifact directory: `seg/<uid>.h5`.
pub fn store_path(dir: &Path, series_uid: &str) -> PathBuf {
    dir.join("seg").join(format!("{series_uid}.h5"))
}
