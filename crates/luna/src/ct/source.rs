//! [`CtSource`]: where one CT comes from — a MetaImage `.mhd` or a DICOM series — so that
//! datasets, stages and `luna detect` treat both alike.
//!
//! Design: a plain enum over the two forms rather than a trait object; both open into the same
//! [`CtImage`]. A CT is named by its uid: the `.mhd` file stem, or the SeriesInstanceUID.
//! Its cache key material is [`CtSource::files`]: the header and data file(s) of a `.mhd`, the
//! slice files of a series.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::datafile::DataFile;
use super::dicom::{read_series, SeriesFiles};
use super::error::CtError;
use super::header::read_header;
use super::metaimage::CtImage;

/// One CT on disk.
#[derive(Debug, Clone, PartialEq)]
pub enum CtSource {
    /// A MetaImage header (`.mhd`) and the data file(s) it names.
    MetaImage(PathBuf),
    /// A DICOM series (one file per slice).
    Dicom(SeriesFiles),
}

impl CtSource {
    /// The CT's uid: the `.mhd` stem, or the SeriesInstanceUID.
    pub fn uid(&self) -> Cow<'_, str> {
        match self {
            CtSource::MetaImage(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or(Cow::Borrowed("")),
            CtSource::Dicom(s) => Cow::Borrowed(&s.uid),
        }
    }

    /// The files whose content is the CT (its cache key): the `.mhd` then its data file(s), or
    /// the slice files in path order.
    pub fn files(&self) -> Result<Vec<PathBuf>, CtError> {
        match self {
            CtSource::MetaImage(mhd) => {
                let header = read_header(mhd)?;
                let mut files = vec![mhd.clone()];
                match header.data_file {
                    DataFile::Local => {}
                    DataFile::File(f) => files.push(if f.is_absolute() {
                        f
                    } else {
                        mhd.parent().unwrap_or(Path::new(".")).join(f)
                    }),
                    DataFile::List { files: fs, .. } => files.extend(fs),
                }
                Ok(files)
            }
            CtSource::Dicom(s) => Ok(s.files.clone()),
        }
    }

    /// A path naming the CT in messages: the `.mhd`, or the series folder.
    pub fn display(&self) -> &Path {
        match self {
            CtSource::MetaImage(p) => p,
            CtSource::Dicom(s) => &s.dir,
        }
    }

    /// Open the CT for readers that touch most of the volume.
    pub fn open(&self) -> Result<CtImage, CtError> {
        match self {
            CtSource::MetaImage(p) => CtImage::open(p),
            CtSource::Dicom(s) => read_series(s),
        }
    }

    /// Open the CT for readers that touch a small part of it (a `.mhd`'s raw data is mapped
    /// lazily; a DICOM series is decoded whole either way).
    pub fn open_sparse(&self) -> Result<CtImage, CtError> {
        match self {
            CtSource::MetaImage(p) => CtImage::open_sparse(p),
            CtSource::Dicom(s) => read_series(s),
        }
    }
}
