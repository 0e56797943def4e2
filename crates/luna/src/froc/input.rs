//! Reading what FROC scoring needs: the scan list (`seriesuids.csv`: one uid per line, no
//! header, as in the official bundle), the submission (strict, `file:line` errors) and the
//! included / excluded findings (through `tables::read_annotations_csv`, so annotation files
//! are checked exactly as `load_annotations` checks them; findings of series that are not
//! evaluated are dropped, as the script never looks at them).
//!
//! Decision: the submission is split with `tables`' line-aware CSV splitter and fails on its
//! first bad row (one line to show), instead of collecting every bad row like the annotation
//! loaders: a submission is machine-written, and one bad row means the writer is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::FrocError;
use crate::tables::{
    parse_finite, read_annotations_csv, read_text, AnnotationsKind, BadRowReason, CsvOptions,
    Records,
};

/// The evaluated scans, in list order (their count divides the FP count).
#[derive(Debug, Clone, PartialEq)]
pub struct Scans {
    /// Series uids in order.
    pub uids: Vec<String>,
    index: HashMap<String, usize>,
    /// Where the list came from (shown in errors).
    pub source: PathBuf,
}

impl Scans {
    /// A scan list from uids; a repeated uid is an error naming its (1-based) positions.
    pub fn new(uids: Vec<String>, source: impl Into<PathBuf>) -> Result<Scans, FrocError> {
        let source = source.into();
        let lines: Vec<usize> = (1..=uids.len()).collect();
        Scans::with_lines(uids, &lines, source)
    }

    fn with_lines(uids: Vec<String>, lines: &[usize], source: PathBuf) -> Result<Scans, FrocError> {
        if uids.is_empty() {
            return Err(FrocError::NoScans { path: source });
        }
        let mut index = HashMap::with_capacity(uids.len());
        for (i, u) in uids.iter().enumerate() {
            if let Some(&first) = index.get(u) {
                return Err(FrocError::DuplicateScan {
                    path: source,
                    line: lines[i],
                    uid: u.clone(),
                    first: lines[first],
                });
            }
            index.insert(u.clone(), i);
        }
        Ok(Scans {
            uids,
            index,
            source,
        })
    }

    /// Position of `uid` in the list.
    pub fn get(&self, uid: &str) -> Option<usize> {
        self.index.get(uid).copied()
    }

    /// Number of scans.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// Whether the list is empty (never, once built).
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }
}

/// One CAD mark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mark {
    /// Index of its scan in [`Scans`].
    pub scan: usize,
    /// World mm (x, y, z).
    pub xyz: [f64; 3],
    /// Suspicion; higher is more suspicious (any finite real).
    pub probability: f64,
}

/// One annotated finding (included nodule or excluded finding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    /// Index of its scan in [`Scans`].
    pub scan: usize,
    /// World mm (x, y, z).
    pub xyz: [f64; 3],
    /// Diameter in mm; negative means 10 mm.
    pub diameter_mm: f64,
}

/// Everything one scoring reads.
#[derive(Debug, Clone)]
pub struct FrocInput {
    /// The evaluated scans.
    pub scans: Scans,
    /// The CAD marks (any order; all scans mixed).
    pub marks: Vec<Mark>,
    /// Included findings (the reference standard).
    pub included: Vec<Finding>,
    /// Excluded findings (irrelevant: marks on them are ignored).
    pub excluded: Vec<Finding>,
}

impl FrocInput {
    /// Reads the four files of the official bundle (`excluded: None` = no excluded findings).
    pub fn load(
        submission: &Path,
        annotations: &Path,
        excluded: Option<&Path>,
        seriesuids: &Path,
    ) -> Result<FrocInput, FrocError> {
        let scans = read_seriesuids(seriesuids)?;
        let marks = read_submission(submission, &scans)?;
        let included = read_findings(annotations, AnnotationsKind::Plain, &scans)?;
        let excluded = match excluded {
            Some(p) => read_findings(p, AnnotationsKind::Excluded, &scans)?,
            None => Vec::new(),
        };
        Ok(FrocInput {
            scans,
            marks,
            included,
            excluded,
        })
    }
}

/// The file name of a scan list (the official bundle's, and beside `clusters.parquet` /
/// `detections.parquet`: the series a per-series stage evaluated).
pub const SERIESUIDS_FILE: &str = "seriesuids.csv";

/// Writes a scan list as [`read_seriesuids`] reads it: one uid per line, no header.
pub fn write_seriesuids<S: AsRef<str>>(path: &Path, uids: &[S]) -> Result<(), FrocError> {
    let mut text = String::with_capacity(uids.len() * 65);
    for u in uids {
        text.push_str(u.as_ref());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|source| FrocError::Io {
        path: path.into(),
        source,
    })
}

/// Reads a scan list: one uid per line (the first field of a CSV row), no header.
pub fn read_seriesuids(path: &Path) -> Result<Scans, FrocError> {
    let text = read_text(path)?;
    let mut uids = Vec::new();
    let mut lines = Vec::new();
    for rec in Records::new(&text) {
        let fields = rec.fields.map_err(|what| FrocError::BadRow {
            path: path.into(),
            line: rec.line,
            reason: BadRowReason::Malformed { what },
        })?;
        let uid = fields.first().map(|f| f.to_string()).unwrap_or_default();
        if uid.is_empty() {
            return Err(FrocError::BadRow {
                path: path.into(),
                line: rec.line,
                reason: BadRowReason::EmptySeriesUid,
            });
        }
        uids.push(uid);
        lines.push(rec.line);
    }
    Scans::with_lines(uids, &lines, path.into())
}

/// The submission's required columns, in header order.
const COLUMNS: [&str; 5] = ["seriesuid", "coordX", "coordY", "coordZ", "probability"];

/// Reads a submission strictly (see the module doc); every mark's series must be in `scans`.
pub fn read_submission(path: &Path, scans: &Scans) -> Result<Vec<Mark>, FrocError> {
    let text = read_text(path)?;
    let mut records = Records::new(&text);
    let bad = |line: usize, reason: BadRowReason| FrocError::BadRow {
        path: path.into(),
        line,
        reason,
    };
    let header = records
        .next()
        .ok_or_else(|| FrocError::Empty { path: path.into() })?;
    let names: Vec<String> = header
        .fields
        .map_err(|what| bad(header.line, BadRowReason::Malformed { what }))?
        .iter()
        .map(|f| f.to_string())
        .collect();
    let mut idx = [0usize; 5];
    for (slot, column) in idx.iter_mut().zip(COLUMNS) {
        *slot = names
            .iter()
            .position(|n| n == column)
            .ok_or_else(|| FrocError::MissingColumn {
                path: path.into(),
                column,
                found: names.clone(),
            })?;
    }
    let mut marks = Vec::with_capacity(text.len() / 80);
    for rec in records {
        let fields = rec
            .fields
            .map_err(|what| bad(rec.line, BadRowReason::Malformed { what }))?;
        if fields.len() != names.len() {
            let reason = BadRowReason::ColumnCount {
                expected: names.len(),
                found: fields.len(),
            };
            return Err(bad(rec.line, reason));
        }
        let uid: &str = &fields[idx[0]];
        if uid.is_empty() {
            return Err(bad(rec.line, BadRowReason::EmptySeriesUid));
        }
        let scan = scans.get(uid).ok_or_else(|| FrocError::UnknownSeries {
            path: path.into(),
            line: rec.line,
            uid: uid.to_string(),
            list: scans.source.clone(),
            scans: scans.len(),
        })?;
        let value =
            |k: usize| parse_finite(&fields, idx[k], COLUMNS[k]).map_err(|r| bad(rec.line, r));
        marks.push(Mark {
            scan,
            xyz: [value(1)?, value(2)?, value(3)?],
            probability: value(4)?,
        });
    }
    if marks.is_empty() {
        return Err(FrocError::NoMarks { path: path.into() });
    }
    Ok(marks)
}

/// Reads an annotations file (`Plain`: annotations.csv; `Excluded`: annotations_excluded.csv,
/// where `-1` diameters are allowed) and keeps the findings of the evaluated scans.
pub fn read_findings(
    path: &Path,
    kind: AnnotationsKind,
    scans: &Scans,
) -> Result<Vec<Finding>, FrocError> {
    let load = read_annotations_csv(path, kind, CsvOptions::default())?;
    Ok(load
        .rows
        .iter()
        .filter_map(|r| {
            scans.get(&r.series_uid).map(|scan| Finding {
                scan,
                xyz: r.center_xyz,
                diameter_mm: r.diameter_mm,
            })
        })
        .collect())
}
