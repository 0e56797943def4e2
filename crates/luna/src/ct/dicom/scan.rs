//! Finding DICOM CT series in a folder tree from file headers only.

use std::path::{Path, PathBuf};

use super::super::error::CtError;

/// The slice files of one CT series, and the files beside them that were skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFiles {
    /// SeriesInstanceUID: the CT's name everywhere in luna.
    pub uid: String,
    /// The folder holding the slices (the first slice's folder when they are spread out).
    pub dir: PathBuf,
    /// The slice files, sorted by path (the read orders them by position).
    pub files: Vec<PathBuf>,
    /// Files of this series' folder that are not slices of it (localizers, other modalities).
    pub skipped: Vec<SkippedFile>,
}

/// A file that a scan passed over, with why (never a patient attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it is not a slice (e.g. "ImageType contains LOCALIZER").
    pub reason: String,
}

/// Every DICOM CT series below `root` (any depth), by SeriesInstanceUID, reading only headers.
pub fn scan_tree(root: &Path) -> Result<Vec<SeriesFiles>, CtError> {
    Err(CtError::DicomNotYet {
        path: root.to_path_buf(),
    })
}

/// The one CT series of `dir` (or the one named `series`): what `luna detect DIR` reads.
pub fn select_series(dir: &Path, series: Option<&str>) -> Result<SeriesFiles, CtError> {
    let _ = series; // skeleton: implemented next
    Err(CtError::DicomNotYet {
        path: dir.to_path_buf(),
    })
}
