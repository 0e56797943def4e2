//! The one error type of `crate::ct`: reading MetaImage files and DICOM series, geometry and crops.
//!
//! Decision: every variant holds data (path, key, line, expected/found), never a preformatted
//! string, and its message names the file (where there is one), the cause, and what to do next.
//! Crop errors carry no path because a `CropWindow` is pure arithmetic on shapes; `CtImage`
//! callers know which series they cropped.

use std::path::PathBuf;

use super::dicom::{SeriesCount, SkippedFile};
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
    /// A path given as a DICOM folder is not a folder.
    #[error("{path} is not a folder; give the folder that holds one DICOM series (or a patient/study/series tree)")]
    DicomNotAFolder {
        /// The path given.
        path: PathBuf,
    },
    /// A folder holds no DICOM CT series.
    #[error(
        "{dir}: no DICOM CT series found{}; give the folder of one CT series \
         (DICOM Part-10 files with the DICM marker)",
        skipped_note(skipped)
    )]
    DicomNoSeries {
        /// The folder scanned.
        dir: PathBuf,
        /// The files that were passed over, with why.
        skipped: Vec<SkippedFile>,
    },
    /// The only image series found is not CT.
    #[error("{path}: Modality is {modality}, not CT; luna reads CT series only, give the folder of a CT series")]
    DicomNotCt {
        /// A file of the series.
        path: PathBuf,
        /// The Modality found.
        modality: String,
    },
    /// A folder holds several CT series and none was named.
    #[error(
        "{dir} holds {} CT series: {}; pick one with `--series UID`",
        series.len(),
        series_list(series)
    )]
    DicomSeveralSeries {
        /// The folder scanned.
        dir: PathBuf,
        /// The series found.
        series: Vec<SeriesCount>,
    },
    /// The series named with `--series` is not in the folder.
    #[error(
        "{dir}: no CT series has SeriesInstanceUID {uid}; the CT series there are: {}; \
         pass one of them to `--series`",
        series_list(series)
    )]
    DicomSeriesNotFound {
        /// The folder scanned.
        dir: PathBuf,
        /// The uid asked for.
        uid: String,
        /// The series found.
        series: Vec<SeriesCount>,
    },
    /// A file named as DICOM is not a DICOM Part-10 file.
    #[error(
        "{path}: not a DICOM file (no `DICM` marker at byte 128); remove it from the series \
         folder, or re-export the series as DICOM Part-10 files"
    )]
    DicomNotDicom {
        /// The file.
        path: PathBuf,
    },
    /// A DICOM file cannot be parsed (truncated or damaged).
    #[error("{path}: cannot be read as DICOM: {what}; re-export or re-download the series")]
    DicomCorrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// A required technical attribute is missing.
    #[error("{path}: required attribute {tag} is missing; the file is not a CT slice or was damaged, re-export the series")]
    DicomMissingTag {
        /// The file.
        path: PathBuf,
        /// The attribute keyword.
        tag: &'static str,
    },
    /// A technical attribute has an unusable value.
    #[error("{path}: attribute {tag} = {value:?} is unusable ({reason}); the file was damaged or written wrongly, re-export the series")]
    DicomBadValue {
        /// The file.
        path: PathBuf,
        /// The attribute keyword (a technical attribute, never a patient one).
        tag: &'static str,
        /// Its value as text (technical attributes only).
        value: String,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// The pixel data is in a transfer syntax this build cannot decode.
    #[error(
        "{path}: transfer syntax {uid} ({name}) cannot be decoded by luna (it reads implicit and \
         explicit VR little endian, explicit VR big endian, RLE lossless, JPEG baseline, extended \
         and lossless, and JPEG 2000); convert the series to explicit VR little endian \
         (e.g. `gdcmconv --raw`) and read it again"
    )]
    DicomTransferSyntax {
        /// The file.
        path: PathBuf,
        /// The transfer syntax UID.
        uid: String,
        /// Its name ("unknown" when not in the registry).
        name: String,
    },
    /// The pixel layout is not a greyscale single-frame image.
    #[error("{path}: {what} is not supported; luna reads greyscale single-frame CT slices (8 or 16 bits), re-export the series as such")]
    DicomPixelFormat {
        /// The file.
        path: PathBuf,
        /// The layout found.
        what: String,
    },
    /// A series has fewer than two slices.
    #[error("{dir}: series {uid} has {slices} slice(s); a CT needs at least two, give the folder of a complete series")]
    DicomTooFewSlices {
        /// The series folder.
        dir: PathBuf,
        /// SeriesInstanceUID.
        uid: String,
        /// Slices found.
        slices: usize,
    },
    /// Slices of one series have different orientations.
    #[error(
        "{dir}: series {uid}: slices are not parallel: ImageOrientationPatient of {other} is \
         {:?}, of {first} {:?}; luna reads only series of parallel slices, remove the odd \
         slices or re-export the series",
        iops[1],
        iops[0]
    )]
    DicomNotParallel {
        /// The series folder.
        dir: PathBuf,
        /// SeriesInstanceUID.
        uid: String,
        /// The reference slice.
        first: PathBuf,
        /// The slice that differs.
        other: PathBuf,
        /// ImageOrientationPatient of `first` and of `other` (boxed: keeps `CtError` small).
        iops: Box<[[f64; 6]; 2]>,
    },
    /// Slices of one series differ in shape or pixel spacing.
    #[error(
        "{dir}: series {uid}: {tag} of {other} is {}, of {first} {}; the folder mixes \
         different images under one series, re-export the series",
        values[1],
        values[0]
    )]
    DicomInconsistent {
        /// The series folder.
        dir: PathBuf,
        /// SeriesInstanceUID.
        uid: String,
        /// The attribute(s) that differ.
        tag: &'static str,
        /// The reference slice.
        first: PathBuf,
        /// The slice that differs.
        other: PathBuf,
        /// The values of `first` and of `other` (boxed: keeps `CtError` small).
        values: Box<[String; 2]>,
    },
    /// Consecutive slices are offset across the slice plane (gantry tilt or a sheared stack).
    #[error(
        "{dir}: series {uid}: gantry tilt or sheared slices: {second} is offset {drift:.3} mm \
         across the slice plane from {first} (positions do not step along the slice normal); \
         luna reads only untilted series, resample the series onto an untilted grid first"
    )]
    DicomTilted {
        /// The series folder.
        dir: PathBuf,
        /// SeriesInstanceUID.
        uid: String,
        /// The earlier slice.
        first: PathBuf,
        /// The next slice.
        second: PathBuf,
        /// In-plane offset (mm).
        drift: f64,
    },
    /// The gap between two consecutive slices differs from the others (a missing or duplicate
    /// slice).
    #[error(
        "series {uid}: slices are not evenly spaced: a gap of {gap:.4} mm between {before} \
         (at {at_before:.4} mm along the normal) and {after} (at {at_after:.4} mm), where the \
         other slices are {expected:.4} mm apart; a slice is missing or duplicated, restore the \
         complete series"
    )]
    DicomUneven {
        /// SeriesInstanceUID.
        uid: String,
        /// The slice before the gap.
        before: PathBuf,
        /// The slice after the gap.
        after: PathBuf,
        /// Position of `before` along the normal (mm).
        at_before: f64,
        /// Position of `after` along the normal (mm).
        at_after: f64,
        /// The gap (mm).
        gap: f64,
        /// The median gap (mm).
        expected: f64,
    },
    /// A rescaled value does not fit int16.
    #[error(
        "{path}: stored value {stored} × RescaleSlope {slope} + RescaleIntercept {intercept} = \
         {hu} does not fit int16 HU; the rescale attributes are wrong, fix them or re-export the series"
    )]
    DicomValueRange {
        /// The file.
        path: PathBuf,
        /// The stored sample.
        stored: i32,
        /// RescaleSlope.
        slope: f64,
        /// RescaleIntercept.
        intercept: f64,
        /// The value it gives.
        hu: i64,
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

/// "uid (N slices), ..." for messages listing series.
fn series_list(series: &[SeriesCount]) -> String {
    let items: Vec<String> = series
        .iter()
        .map(|s| format!("{} ({} slices)", s.uid, s.slices))
        .collect();
    items.join(", ")
}

/// " (skipped: file: why; ...)" for a scan that found nothing, at most 5 files named.
fn skipped_note(skipped: &[SkippedFile]) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let items: Vec<String> = skipped
        .iter()
        .take(5)
        .map(|s| format!("{}: {}", s.path.display(), s.reason))
        .collect();
    let more = skipped.len().saturating_sub(5);
    let tail = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(" (passed over: {}{tail})", items.join("; "))
}
