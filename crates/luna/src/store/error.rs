//! Typed errors of the crop stores.
//!
//! Every variant names the file, the dataset (where there is one) and the cause, and its message
//! ends with what to do next. Variants hold data (paths, shapes, ids), never preformatted text,
//! so callers can match on them; [`StoreError::hint`] returns the advice alone.

use std::path::PathBuf;

/// An error while writing or reading a chunked HDF5 crop store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An HDF5 library call failed (open, create, resize, write, read).
    #[error("{}: HDF5 failed to {op} (dataset `{dataset}`): {source}; check that the path is writable/readable and the file is a valid HDF5 file (try `h5ls -r {}`)", path.display(), path.display())]
    Hdf5 {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset concerned (or `/` for the file itself).
        dataset: String,
        /// What luna was doing, e.g. "open the file".
        op: &'static str,
        /// The library's error.
        #[source]
        source: hdf5::Error,
    },
    /// An HDF5 call failed because a system call did (HDF5 records the errno in its error
    /// stack: `errno = N`, a documented format); `source` says which, e.g. "No space left on
    /// device (os error 28)", so callers can tell a full disk from a damaged file.
    #[error("{}: HDF5 failed to {op} (dataset `{dataset}`): {source}; check the file system of that path (free space, quota, permissions)", path.display())]
    Os {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset concerned (or `/` for the file itself).
        dataset: String,
        /// What luna was doing, e.g. "write a chunk of".
        op: &'static str,
        /// The system error HDF5 reported.
        #[source]
        source: std::io::Error,
    },
    /// The file has no dataset of that name.
    #[error("{}: no dataset `{dataset}` (found: {found:?}); this is not a luna crop store, or it was written under another name; list it with `h5ls -r {}`", path.display(), path.display())]
    MissingDataset {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset looked for.
        dataset: String,
        /// Top-level names that do exist.
        found: Vec<String>,
    },
    /// The dataset's element type is not what the store needs.
    #[error("{}: dataset `{dataset}` has element type {found}, expected {expected}; crops are stored as little-endian int16 HU, rewrite the file with luna (or h5py dtype='<i2')", path.display())]
    WrongDtype {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The type needed.
        expected: &'static str,
        /// The type found, as HDF5 describes it.
        found: String,
    },
    /// The dataset's shape has the wrong rank or sizes.
    #[error("{}: dataset `{dataset}` has shape {found:?}, expected {expected}; rewrite it with one crop per row: (N, w0, w1, w2)", path.display())]
    WrongShape {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// What the shape should look like.
        expected: String,
        /// The shape found.
        found: Vec<usize>,
    },
    /// The dataset is not chunked one sample per chunk.
    #[error("{}: dataset `{dataset}` has chunk shape {found:?}, expected {expected:?} (one sample per chunk); rewrite it with chunks=(1, w0, w1, w2) so single crops can be read without decoding their neighbours", path.display())]
    WrongChunkShape {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The chunk shape needed.
        expected: Vec<usize>,
        /// The chunk shape found (`None`: contiguous layout, not chunked).
        found: Option<Vec<usize>>,
    },
    /// The zstd HDF5 filter (id 32015) could not be registered with the library.
    #[error("cannot register the zstd HDF5 filter (id {filter_id}): H5Zregister returned {code}; another filter with this id may be loaded through HDF5_PLUGIN_PATH, unset it and retry")]
    FilterUnavailable {
        /// The filter id (32015).
        filter_id: i32,
        /// The library's return code.
        code: i32,
    },
    /// A stored chunk could not be decoded into a crop.
    #[error("{}: dataset `{dataset}` row {row}: corrupted chunk ({cause}); the file is damaged or was written by an incompatible filter, regenerate this store", path.display())]
    CorruptChunk {
        /// The HDF5 file.
        path: PathBuf,
        /// The dataset.
        dataset: String,
        /// The row (sample index).
        row: u64,
        /// What was wrong with the bytes.
        cause: String,
    },
    /// A row index past the end of the store.
    #[error("{}: row {row} is out of range, the store has {len} rows; check the index table that points into this store", path.display())]
    RowOutOfRange {
        /// The HDF5 file.
        path: PathBuf,
        /// The row asked for.
        row: u64,
        /// Number of rows in the store.
        len: u64,
    },
    /// A crop or output buffer has the wrong number of voxels.
    #[error("{}: crop buffer has {found} voxels, expected {expected} (= w0*w1*w2 of the store); pass exactly one crop of the store's width", path.display())]
    BufferSize {
        /// The HDF5 file.
        path: PathBuf,
        /// Voxels per crop.
        expected: usize,
        /// Voxels given.
        found: usize,
    },
    /// A store whose content is invalid for another reason (the message says which).
    #[error("{}: {message}", path.display())]
    Invalid {
        /// The HDF5 file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
}

impl StoreError {
    /// The advice part of the message alone (what to do next), if there is one.
    pub fn hint(&self) -> Option<String> {
        let msg = self.to_string();
        msg.rsplit_once("; ").map(|(_, hint)| hint.to_string())
    }

    /// Builds an [`StoreError::Hdf5`], or [`StoreError::Os`] when HDF5's error stack says a
    /// system call failed (shorthand used across the module).
    pub(crate) fn hdf5(
        path: &std::path::Path,
        dataset: &str,
        op: &'static str,
        source: hdf5::Error,
    ) -> Self {
        match system_errno(&source) {
            Some(errno) => StoreError::Os {
                path: path.to_path_buf(),
                dataset: dataset.to_string(),
                op,
                source: std::io::Error::from_raw_os_error(errno),
            },
            None => StoreError::Hdf5 {
                path: path.to_path_buf(),
                dataset: dataset.to_string(),
                op,
                source,
            },
        }
    }
}

/// The errno of the first frame of an HDF5 error stack that records one. HDF5's system-error
/// frames (`HSYS_GOTO_ERROR`, the sec2 driver's read/write failures) end their description
/// with `errno = N, error message = '...'`, a format HDF5 documents as API.
fn system_errno(e: &hdf5::Error) -> Option<i32> {
    e.stack()?.iter().find_map(|f| errno_in(f.desc()))
}

/// The N of `errno = N` in `desc`.
fn errno_in(desc: &str) -> Option<i32> {
    let rest = &desc[desc.find("errno = ")? + "errno = ".len()..];
    let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
    digits.parse().ok().filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::errno_in;

    #[test]
    fn errno_is_read_from_hdf5_system_error_text() {
        let d = "file write failed: time = Tue Dec  1 18:00:00 2026, filename = '/c/tmp/x/seg.h5', \
                 file descriptor = 5, errno = 28, error message = 'No space left on device', buf = 0x1";
        assert_eq!(errno_in(d), Some(28));
        assert_eq!(errno_in("unable to extend file properly, errno = 122, error message = 'Disk quota exceeded'"), Some(122));
        assert_eq!(errno_in("can't write chunk"), None);
        assert_eq!(errno_in("errno = 0"), None);
    }
}
