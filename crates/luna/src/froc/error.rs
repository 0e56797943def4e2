//! Errors of FROC scoring: one typed enum whose variants carry the file, the 1-based line and
//! what was found, so `luna froc` and `evaluate_froc` can print one line and a hint.

use std::path::PathBuf;

use crate::plot::PlotError;
use crate::tables::{BadRowReason, TableError};

/// Why a submission, a scan list or a scoring could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FrocError {
    /// Reading or parsing an annotations file (or reading any file as UTF-8 text).
    #[error(transparent)]
    Table(#[from] TableError),
    /// The submission has no header (an empty file).
    #[error("{}: the file is empty; a submission starts with the header {}", path.display(), super::SUBMISSION_HEADER)]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The submission's header lacks a column.
    #[error("{}:1: header has no column {column:?} (found {found:?})", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The missing column.
        column: &'static str,
        /// The header as read.
        found: Vec<String>,
    },
    /// A submission row is malformed (field count, number, NaN/inf, empty uid).
    #[error("{}:{line}: {reason}", path.display())]
    BadRow {
        /// The file.
        path: PathBuf,
        /// 1-based line of the row.
        line: usize,
        /// What is wrong with it.
        reason: BadRowReason,
    },
    /// A submission row names a series that is not among the evaluated scans.
    #[error("{}:{line}: series {uid:?} is not one of the {scans} evaluated scans of {}", path.display(), list.display())]
    UnknownSeries {
        /// The file.
        path: PathBuf,
        /// 1-based line of the row.
        line: usize,
        /// The series uid found.
        uid: String,
        /// Where the evaluated scans come from (the seriesuids file or a stage).
        list: PathBuf,
        /// How many scans are evaluated.
        scans: usize,
    },
    /// The submission has a header but no marks.
    #[error("{}: no marks (the header is not followed by any row)", path.display())]
    NoMarks {
        /// The file.
        path: PathBuf,
    },
    /// The scan list is empty.
    #[error("{}: no series uids (expected one uid per line)", path.display())]
    NoScans {
        /// The file.
        path: PathBuf,
    },
    /// A series uid is listed twice in the scan list.
    #[error("{}:{line}: series {uid:?} is listed twice (first on line {first})", path.display())]
    DuplicateScan {
        /// The file.
        path: PathBuf,
        /// 1-based line of the repeat.
        line: usize,
        /// The uid.
        uid: String,
        /// 1-based line of its first occurrence.
        first: usize,
    },
    /// None of the evaluated scans has an included nodule: sensitivity is undefined.
    #[error("no included nodule (annotations.csv row) in any of the {scans} evaluated scans: the sensitivity is undefined")]
    NoNodules {
        /// How many scans are evaluated.
        scans: usize,
    },
    /// An option is out of range.
    #[error("invalid option {option} = {value}: {why}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// Writing an output file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A JSON output (`froc.json`) could not be encoded.
    #[error(transparent)]
    Encode(#[from] crate::artifacts::EncodeError),
    /// Drawing `froc.png` failed.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

impl FrocError {
    /// What to do next, when there is more to say than the message.
    pub fn hint(&self) -> Option<String> {
        let header = super::SUBMISSION_HEADER;
        match self {
            // BadRows already ends its message with a hint for the annotation loaders.
            Self::Table(TableError::BadRows { .. }) => None,
            Self::Table(e) => e.hint(),
            Self::Empty { .. } | Self::NoMarks { .. } => Some(format!(
                "a submission is a CSV with the header {header} and one row per CAD mark (world mm)"
            )),
            Self::MissingColumn { .. } => Some(format!(
                "a submission has the columns {header} (extra columns are ignored)"
            )),
            Self::BadRow { .. } => Some(
                "every row needs a series uid, finite world-mm coordinates and a finite probability"
                    .into(),
            ),
            Self::UnknownSeries { .. } => Some(
                "score only the listed scans, or add the series to the seriesuids list".into(),
            ),
            Self::NoScans { .. } | Self::DuplicateScan { .. } => Some(
                "seriesuids.csv lists each evaluated scan once, one uid per line, no header".into(),
            ),
            Self::NoNodules { .. } => Some(
                "check that the annotations file belongs to these scans (same series uids)".into(),
            ),
            Self::InvalidOption { .. } | Self::Io { .. } | Self::Encode(_) | Self::Plot(_) => None,
        }
    }
}
