//! The one error type of `crate::ct`: reading MetaImage files, geometry and crops.
//!
//! Decision: every variant holds data (path, key, line, expected/found), never a preformatted
//! string, and its message names the file (where there is one), the cause, and what to do next.
//! Crop errors carry no path because a `CropWindow` is pure arithmetic on shapes; `CtImage`
//! callers know which series they cropped.

use std::path::PathBuf;

use super::geometry::Irc;

/// Everything that can go wrong while reading a CT or cutting a crop from it.
#[derive(Debug, thiserror::Error)]
pub enum CtError {
    /// An OS-level read failure (permissions, I/O error).
    #[error("cannot read {path}: {source}; check that the file exists and is readable")]
    Io {
        /// The file being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data file named by `ElementDataFile` is not on disk.
    #[error(
        "{mhd}: ElementDataFile points to {looked_for}, which does not exist; \
         put the data file next to the .mhd or fix ElementDataFile"
    )]
    MissingDataFile {
        /// The header file.
        mhd: PathBuf,
        /// The path that was looked for.
        looked_for: PathBuf,
    },
    /// `ElementDataFile` names a file outside the `.mhd`'s folder (absolute, or with `..`).
    #[error(
        "{path}:{line}: ElementDataFile `{name}` points outside the folder of the .mhd; \
         data files must be named relative to it, without `..` (put the data next to the header)"
    )]
    DataFileOutside {
        /// The header file.
        path: PathBuf,
        /// 1-based line of `ElementDataFile` (or of the `LIST` entry).
        line: usize,
        /// The file name as written.
        name: String,
    },
    /// A key that the reader needs is absent from the header.
    #[error(
        "{path}: required key `{key}` is missing from the header; add it (see the MetaImage spec)"
    )]
    MissingKey {
        /// The header file.
        path: PathBuf,
        /// The missing key.
        key: &'static str,
    },
    /// A header line is not of the form `Key = Value`.
    #[error("{path}:{line}: expected `Key = Value`, found {text:?}; fix or remove the line")]
    BadLine {
        /// The header file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The offending line.
        text: String,
    },
    /// A value that should be a number is not one.
    #[error("{path}:{line}: bad number {value:?} in key `{key}`; write a plain decimal number")]
    BadNumber {
        /// The header file.
        path: PathBuf,
        /// The key whose value failed to parse.
        key: String,
        /// 1-based line number.
        line: usize,
        /// The token that failed to parse.
        value: String,
    },
    /// A key has the wrong number of values for NDims.
    #[error("{path}:{line}: key `{key}` has {found} values but {expected} are needed (NDims); fix the header")]
    BadValueCount {
        /// The header file.
        path: PathBuf,
        /// The key.
        key: String,
        /// 1-based line number.
        line: usize,
        /// Number of values needed.
        expected: usize,
        /// Number of values found.
        found: usize,
    },
    /// `ElementType` is not one of the scalar MetaImage types.
    #[error(
        "{path}:{line}: unknown ElementType {value:?}; known types are MET_CHAR, MET_UCHAR, \
         MET_SHORT, MET_USHORT, MET_INT, MET_UINT, MET_LONG, MET_ULONG, MET_LONG_LONG, \
         MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE"
    )]
    UnknownElementType {
        /// The header file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The value found.
        value: String,
    },
    /// A header value is valid MetaImage but this reader does not handle it.
    #[error("{path}: `{key} = {value}` is not supported: {reason}")]
    Unsupported {
        /// The header file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The value found.
        value: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },
    /// Spacing, origin or direction contain NaN or infinity.
    #[error("{path}:{line}: key `{key}` contains a non-finite value ({value}); the header is corrupt, rewrite it")]
    NonFinite {
        /// The header file.
        path: PathBuf,
        /// The key.
        key: String,
        /// 1-based line number.
        line: usize,
        /// The offending value.
        value: f64,
    },
    /// A voxel spacing is zero or negative.
    #[error("{path}: key `{key}` has spacing {value} on axis {axis}; spacings must be > 0 mm, fix the header")]
    NonPositiveSpacing {
        /// The header file.
        path: PathBuf,
        /// `ElementSpacing` or `ElementSize`.
        key: String,
        /// Axis 0=x, 1=y, 2=z.
        axis: usize,
        /// The offending value.
        value: f64,
    },
    /// The direction matrix cannot be inverted, so world → voxel is undefined.
    #[error("{path}: key `{key}` gives a non-invertible direction matrix (determinant {det:e}); use direction cosines of an orthonormal basis")]
    SingularDirection {
        /// The header file.
        path: PathBuf,
        /// `TransformMatrix` (or its synonym).
        key: String,
        /// The determinant found.
        det: f64,
    },
    /// The data file holds fewer bytes than DimSize × element size.
    #[error(
        "{path}: truncated data: expected {expected} bytes (DimSize {dims:?} × {elem_size} bytes of \
         {element_type}) after offset {offset}, found {found}; re-download or re-export the volume"
    )]
    Truncated {
        /// The data file.
        path: PathBuf,
        /// DimSize (x, y, z).
        dims: Vec<usize>,
        /// The MetaImage type name.
        element_type: &'static str,
        /// Bytes per voxel.
        elem_size: usize,
        /// Byte offset where the data starts.
        offset: u64,
        /// Bytes needed.
        expected: u64,
        /// Bytes available after the offset.
        found: u64,
    },
    /// The data file holds more bytes than DimSize × element size (header and data disagree).
    #[error(
        "{path}: DimSize {dims:?} × {elem_size} bytes of {element_type} = {expected} bytes, but the \
         data holds {found} bytes after offset {offset}; fix DimSize/ElementType, or set \
         HeaderSize = -1 if the file has a leading header"
    )]
    SizeMismatch {
        /// The data file.
        path: PathBuf,
        /// DimSize (x, y, z).
        dims: Vec<usize>,
        /// The MetaImage type name.
        element_type: &'static str,
        /// Bytes per voxel.
        elem_size: usize,
        /// Byte offset where the data starts.
        offset: u64,
        /// Bytes needed.
        expected: u64,
        /// Bytes found after the offset.
        found: u64,
    },
    /// A `LIST`/pattern `ElementDataFile` names the wrong number of files for DimSize.
    #[error("{path}: ElementDataFile lists {found} data files but DimSize needs {expected}; list one file per slice")]
    ListCount {
        /// The header file.
        path: PathBuf,
        /// Files needed.
        expected: usize,
        /// Files listed.
        found: usize,
    },
    /// A compressed volume would need more memory than the machine has available.
    #[error("{path}: DimSize × element size is {bytes} bytes, more than the {available} bytes of memory available; the header is wrong or the volume too large for this machine")]
    TooLarge {
        /// The header file.
        path: PathBuf,
        /// Bytes the volume needs.
        bytes: u64,
        /// Bytes of memory available (MemAvailable).
        available: u64,
    },
    /// The zlib stream is corrupt or inflates to the wrong size.
    #[error("{path}: compressed data inflates to {found} bytes, expected {expected} (DimSize × element size); the file is corrupt or the header is wrong")]
    Inflate {
        /// The data file.
        path: PathBuf,
        /// Bytes expected.
        expected: u64,
        /// Bytes produced before the stream ended or failed.
        found: u64,
    },
    /// A crop centre does not lie inside the volume.
    #[error(
        "crop centre (index {}, row {}, col {}) lies outside the volume of shape (i,r,c) {shape:?}; \
         check the candidate's xyz against the CT's origin, spacing and direction",
        center.index, center.row, center.col
    )]
    CenterOutside {
        /// The requested centre.
        center: Irc,
        /// The volume shape (index, row, col).
        shape: [usize; 3],
    },
    /// The volume is smaller than the crop along some axis.
    #[error("crop width (i,r,c) {width:?} does not fit in the volume of shape {shape:?}; use a smaller crop")]
    VolumeTooSmall {
        /// The requested width.
        width: [usize; 3],
        /// The volume shape (index, row, col).
        shape: [usize; 3],
    },
    /// Skeleton placeholder while the DICOM reader is being written.
    #[error("{path}: reading DICOM is not implemented yet")]
    DicomNotYet {
        /// The folder or file.
        path: PathBuf,
    },
}

impl CtError {
    /// Wrap an I/O error with the path being read.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CtError::Io {
            path: path.into(),
            source,
        }
    }
}
