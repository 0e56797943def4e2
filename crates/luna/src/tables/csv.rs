//! Loading the LUNA16 CSV files into typed rows, with `file:line: reason` for every rejected row.
//!
//! Decision: our own line-aware splitter (`csv_split.rs`) + typed parsing, instead of a CSV
//! library's reader, which cannot say on which line a bad value is.
//! Columns are found by header name (extra columns such as `mal_details` are ignored); every row
//! must have as many fields as the header. Strict mode (default) fails with the first
//! [`MAX_REPORTED_ROWS`] bad rows and their total; `strict: false` drops bad rows and reports
//! them in [`CsvLoad`].

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::csv_split::Records;
use super::error::{BadRow, BadRowReason, TableError, MAX_REPORTED_ROWS};
use super::rows::{AnnotationRow, CandidateRow};

/// Options of the CSV loaders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOptions {
    /// Fail on the first bad rows (true, default) or drop them and report (false).
    pub strict: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self { strict: true }
    }
}

/// Which annotations file is being read (they differ in columns and diameter rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationsKind {
    /// annotations.csv; `mal_bool` is read if present, else is_malignant is null.
    Plain,
    /// annotations_with_malignancy.csv; `mal_bool` is required.
    WithMalignancy,
    /// annotations_excluded.csv; diameter_mm may be -1.
    Excluded,
}

/// Result of a CSV load: the typed rows and what was dropped (lenient mode).
#[derive(Debug, Clone)]
pub struct CsvLoad<R> {
    /// The valid rows, in file order.
    pub rows: Vec<R>,
    /// Number of bad rows dropped (0 in strict mode).
    pub dropped: usize,
    /// The first few dropped rows with their reasons.
    pub drop_reasons: Vec<BadRow>,
}

/// Reads a CSV file as UTF-8 text without its BOM (`file:line` of the first invalid byte): a
/// regular file only (a FIFO or `/dev/zero` is an error, not a hang), and never more bytes
/// than its size when opened.
pub(crate) fn read_text(path: &Path) -> Result<String, TableError> {
    use std::io::Read;
    let io = |source| TableError::Io {
        path: path.into(),
        source,
    };
    let (f, len) = crate::engine::fingerprint::open_regular(path).map_err(io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(1 << 30));
    f.take(len).read_to_end(&mut bytes).map_err(io)?;
    match String::from_utf8(bytes) {
        Ok(mut s) => {
            if s.starts_with('\u{feff}') {
                s.drain(..'\u{feff}'.len_utf8());
            }
            Ok(s)
        }
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count();
            Err(TableError::NotUtf8 {
                path: path.into(),
                line,
            })
        }
    }
}

/// Header column positions, looked up by name.
struct Header {
    path: PathBuf,
    names: Vec<String>,
}

impl Header {
    fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
    fn require(&self, name: &str) -> Result<usize, TableError> {
        self.find(name).ok_or_else(|| TableError::MissingColumn {
            path: self.path.clone(),
            column: name.into(),
            found: self.names.clone(),
        })
    }
}

/// Collects bad rows; in strict mode turns them into an error at the end.
struct Bad {
    rows: Vec<BadRow>,
    total: usize,
}

impl Bad {
    fn push(&mut self, line: usize, reason: BadRowReason) {
        self.total += 1;
        if self.rows.len() < MAX_REPORTED_ROWS {
            self.rows.push(BadRow { line, reason });
        }
    }
}

/// Splits the file, runs `setup` on the header (column lookup) and `row` on each data record.
fn parse<P, R>(
    path: &Path,
    setup: impl FnOnce(&Header) -> Result<P, TableError>,
    row: impl Fn(&P, &[Cow<'_, str>], usize) -> Result<R, BadRowReason>,
) -> Result<(Vec<R>, Bad), TableError> {
    let text = read_text(path)?;
    let mut records = Records::new(&text);
    let names = match records.next() {
        Some(r) => r
            .fields
            .unwrap_or_default()
            .iter()
            .map(|f| f.to_string())
            .collect(),
        None => Vec::new(),
    };
    let header = Header {
        path: path.into(),
        names,
    };
    let state = setup(&header)?;
    let mut out = Vec::with_capacity(text.len() / 64);
    let mut bad = Bad {
        rows: Vec::new(),
        total: 0,
    };
    for rec in records {
        let fields = match rec.fields {
            Ok(f) => f,
            Err(what) => {
                bad.push(rec.line, BadRowReason::Malformed { what });
                continue;
            }
        };
        if fields.len() != header.names.len() {
            let reason = BadRowReason::ColumnCount {
                expected: header.names.len(),
                found: fields.len(),
            };
            bad.push(rec.line, reason);
            continue;
        }
        match row(&state, &fields, rec.line) {
            Ok(r) => out.push(r),
            Err(reason) => bad.push(rec.line, reason),
        }
    }
    Ok((out, bad))
}

fn finish<R>(
    path: &Path,
    opts: CsvOptions,
    rows: Vec<R>,
    bad: Bad,
) -> Result<CsvLoad<R>, TableError> {
    if opts.strict && bad.total > 0 {
        return Err(TableError::BadRows {
            path: path.into(),
            rows: bad.rows,
            total: bad.total,
        });
    }
    Ok(CsvLoad {
        rows,
        dropped: bad.total,
        drop_reasons: bad.rows,
    })
}

/// Parses field `idx` as a finite f64 (NaN and infinities are rejected, naming `column`).
pub(crate) fn num(fields: &[Cow<'_, str>], idx: usize, column: &str) -> Result<f64, BadRowReason> {
    let s: &str = &fields[idx];
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(BadRowReason::NonFinite {
            column: column.into(),
            value: s.into(),
        }),
        Err(_) => Err(BadRowReason::NotANumber {
            column: column.into(),
            value: s.into(),
        }),
    }
}

fn uid_and_xyz(
    fields: &[Cow<'_, str>],
    idx: &[usize; 4],
) -> Result<(String, [f64; 3]), BadRowReason> {
    let uid = &fields[idx[0]];
    if uid.is_empty() {
        return Err(BadRowReason::EmptySeriesUid);
    }
    let xyz = [
        num(fields, idx[1], "coordX")?,
        num(fields, idx[2], "coordY")?,
        num(fields, idx[3], "coordZ")?,
    ];
    Ok((uid.to_string(), xyz))
}

/// Parses a `mal_bool` field: True/False/true/false/TRUE/FALSE/1/0.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "True" | "true" | "TRUE" | "1" => Some(true),
        "False" | "false" | "FALSE" | "0" => Some(false),
        _ => None,
    }
}

/// Positions of seriesuid, coordX, coordY, coordZ in the header.
fn xyz_columns(h: &Header) -> Result<[usize; 4], TableError> {
    Ok([
        h.require("seriesuid")?,
        h.require("coordX")?,
        h.require("coordY")?,
        h.require("coordZ")?,
    ])
}

/// Loads an annotations CSV of the given kind into annotations.parquet rows.
pub fn read_annotations_csv(
    path: &Path,
    kind: AnnotationsKind,
    opts: CsvOptions,
) -> Result<CsvLoad<AnnotationRow>, TableError> {
    let setup = |h: &Header| -> Result<_, TableError> {
        let idx = xyz_columns(h)?;
        let d_idx = h.require("diameter_mm")?;
        let mal_idx = match kind {
            AnnotationsKind::WithMalignancy => Some(h.require("mal_bool")?),
            AnnotationsKind::Plain => h.find("mal_bool"),
            AnnotationsKind::Excluded => None,
        };
        Ok((idx, d_idx, mal_idx))
    };
    let row = |&(idx, d_idx, mal_idx): &([usize; 4], usize, Option<usize>),
               f: &[Cow<'_, str>],
               line: usize| {
        let (series_uid, center_xyz) = uid_and_xyz(f, &idx)?;
        let diameter_mm = num(f, d_idx, "diameter_mm")?;
        let allowed =
            diameter_mm >= 0.0 || (kind == AnnotationsKind::Excluded && diameter_mm == -1.0);
        if !allowed {
            return Err(BadRowReason::NegativeDiameter { value: diameter_mm });
        }
        let is_malignant = match mal_idx {
            Some(m) => Some(parse_bool(&f[m]).ok_or_else(|| BadRowReason::BadBool {
                column: "mal_bool".into(),
                value: f[m].to_string(),
            })?),
            None => None,
        };
        Ok(AnnotationRow {
            series_uid,
            center_xyz,
            diameter_mm,
            is_malignant,
            source_line: line as i64,
        })
    };
    let (rows, bad) = parse(path, setup, row)?;
    finish(path, opts, rows, bad)
}

/// Loads candidates.csv or candidates_V2.csv into candidates_raw.parquet rows.
pub fn read_candidates_csv(
    path: &Path,
    opts: CsvOptions,
) -> Result<CsvLoad<CandidateRow>, TableError> {
    let setup = |h: &Header| Ok((xyz_columns(h)?, h.require("class")?));
    let row = |&(idx, class_idx): &([usize; 4], usize), f: &[Cow<'_, str>], line: usize| {
        let (series_uid, center_xyz) = uid_and_xyz(f, &idx)?;
        let class = match &*f[class_idx] {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(BadRowReason::BadClass {
                    value: other.into(),
                })
            }
        };
        Ok(CandidateRow {
            series_uid,
            center_xyz,
            class,
            source_line: line as i64,
        })
    };
    let (rows, bad) = parse(path, setup, row)?;
    finish(path, opts, rows, bad)
}
