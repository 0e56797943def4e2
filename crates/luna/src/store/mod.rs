//! Chunked HDF5 stores for CT crops: int16 HU, one sample per chunk, zstd (filter 32015),
//! readable without luna by h5py + `hdf5plugin` (DESIGN.md "Data formats"). The same chunk
//! machinery backs the probability volumes (`prob_volume`) and the segmentation samples
//! (`seg_store`).
//!
//! Layout of a crop store file:
//! - `crops`: int16 (N, w0, w1, w2), chunks (1, w0, w1, w2), filters `[shuffle (2), zstd (32015,
//!   cd_values = [level])]` (or `[zstd]` alone with `shuffle: false`);
//!   attributes `width_irc` (u64 ×3), `luna_version` (string), `hu_clip` (i16 ×2, optional).
//! - `center_irc`: int32 (N, 3), the crop centres in (index, row, col) voxels.
//!
//! Decisions (details in each file):
//! - int16 HU, exact and half the size of f32; one chunk per sample for random access.
//! - zstd filter implemented in luna ([`zstd_filter`]), not blosc: no extra C build, and the
//!   chunk is a plain zstd frame that luna compresses/decompresses itself.
//! - Writing compresses in parallel and stores chunks directly (`H5Dwrite_chunk`); reading copies
//!   the stored chunk under the HDF5 lock and decompresses outside it, so many loader threads
//!   scale ([`crops`], [`crop_reader`], [`chunk_io`]).
//!
//! ```no_run
//! use luna::store::{CropReader, CropWriter};
//! let mut w = CropWriter::create("crops.h5", [32, 48, 48], 3)?;
//! w.append(&vec![0i16; 32 * 48 * 48], [10, 20, 30])?;
//! w.finish()?;
//! let r = CropReader::open("crops.h5")?;
//! let mut crop = vec![0i16; r.voxels()];
//! r.read(0, &mut crop)?;
//! # Ok::<(), luna::store::StoreError>(())
//! ```

mod chunk_io;
pub mod crop_reader;
pub mod crop_set;
pub mod crops;
mod error;
pub mod prob_volume;
pub mod seg_store;
mod shuffle;
pub mod zstd_filter;

pub use crop_reader::CropReader;
pub use crops::{
    CropWriter, CropWriterOptions, WriteMode, CENTERS_DATASET, CROPS_DATASET, DEFAULT_LEVEL,
};
pub use error::StoreError;
pub use seg_store::{SegLayout, SegStore, SegWriter, ShuffledSlice};
pub use zstd_filter::{register_zstd_filter, ZSTD_FILTER_ID};
