//! Errors of the `tables` module: one typed enum, [`TableError`], whose variants carry the file,
//! line, column and expected/found values, and whose messages name the file, the cause and what
//! to do. Bad CSV rows are collected as [`BadRow`]s (line + typed [`BadRowReason`]) so a caller
//! can show or count them; only the first [`MAX_REPORTED_ROWS`] are kept, the total is counted.

use std::fmt;
use std::path::PathBuf;

/// How many bad rows an error (or a lenient load) keeps for display; the total is always counted.
pub const MAX_REPORTED_ROWS: usize = 5;

/// Why one CSV row was rejected.
#[derive(Debug, Clone, PartialEq)]
pub enum BadRowReason {
    /// The row has a different number of fields than the header.
    ColumnCount {
        /// Number of header columns.
        expected: usize,
        /// Number of fields in the row.
        found: usize,
    },
    /// A numeric column holds text that is not a number.
    NotANumber {
        /// Column name as in the header.
        column: String,
        /// The offending field (trimmed).
        value: String,
    },
    /// A numeric column holds NaN or an infinity.
    NonFinite {
        /// Column name as in the header.
        column: String,
        /// The offending field (trimmed).
        value: String,
    },
    /// `diameter_mm` is negative (only `-1` is allowed, and only in annotations_excluded.csv).
    NegativeDiameter {
        /// The parsed diameter.
        value: f64,
    },
    /// `class` is not `0` or `1`.
    BadClass {
        /// The offending field (trimmed).
        value: String,
    },
    /// A boolean column (`mal_bool`) is not one of True/False/true/false/1/0.
    BadBool {
        /// Column name as in the header.
        column: String,
        /// The offending field (trimmed).
        value: String,
    },
    /// `seriesuid` is empty.
    EmptySeriesUid,
    /// The quoting of the row is broken (text after a closing quote, or an unterminated quote).
    Malformed {
        /// What is wrong, e.g. "unterminated quoted field".
        what: &'static str,
    },
}

impl fmt::Display for BadRowReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ColumnCount { expected, found } => {
                write!(
                    f,
                    "wrong column count: expected {expected} fields, found {found}"
                )
            }
            Self::NotANumber { column, value } => {
                write!(f, "non-numeric value {value:?} in column {column}")
            }
            Self::NonFinite { column, value } => {
                write!(f, "non-finite value {value:?} (NaN/inf) in column {column}")
            }
            Self::NegativeDiameter { value } => write!(f, "negative diameter_mm {value}"),
            Self::BadClass { value } => write!(f, "class must be 0 or 1, found {value:?}"),
            Self::BadBool { column, value } => write!(
                f,
                "column {column} must be True/False/true/false/1/0, found {value:?}"
            ),
            Self::EmptySeriesUid => write!(f, "empty seriesuid"),
            Self::Malformed { what } => write!(f, "malformed CSV: {what}"),
        }
    }
}

/// One rejected CSV row: its 1-based line number (the header is line 1) and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRow {
    /// 1-based line where the row starts.
    pub line: usize,
    /// Why it was rejected.
    pub reason: BadRowReason,
}

/// Errors of CSV loading, schema checks, Parquet IO and merging.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read or written.
    #[error("{}: {source} (check that the path exists and is readable/writable)", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV file is not UTF-8.
    #[error("{}:{line}: file is not valid UTF-8 (re-save it as UTF-8)", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Line of the first invalid byte.
        line: usize,
    },
    /// The CSV header lacks a required column (or the file is empty).
    #[error("{}:1: header has no column {column:?} (found {found:?}); is this the right file?", path.display())]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The required column.
        column: String,
        /// The header as read.
        found: Vec<String>,
    },
    /// Rows failed validation in strict mode.
    #[error("{}", fmt_bad_rows(path, rows, *total))]
    BadRows {
        /// The file.
        path: PathBuf,
        /// The first few bad rows (at most [`MAX_REPORTED_ROWS`]).
        rows: Vec<BadRow>,
        /// How many rows were bad in all.
        total: usize,
    },
    /// A Parquet file does not have a table's schema.
    #[error("{what}: column {column:?} of table {table}: expected {expected}, found {found} (was this written by another luna version or for another table?)")]
    SchemaMismatch {
        /// The file.
        what: String,
        /// The table name.
        table: &'static str,
        /// The column.
        column: String,
        /// Expected type/nullability, or "present".
        expected: String,
        /// Found type/nullability, or "missing"/"extra".
        found: String,
    },
    /// A value breaks its column's rule (`values` in the schema): NaN coordinates, a
    /// probability outside [0, 1].
    #[error(
        "{what}: row {row} (0-based) of table {table}: column {column} is {value}, not {rule}"
    )]
    BadValue {
        /// The file.
        what: String,
        /// The table name.
        table: &'static str,
        /// The column.
        column: String,
        /// 0-based row (as pandas and pyarrow number them).
        row: usize,
        /// The value found.
        value: f64,
        /// What the value must be.
        rule: &'static str,
    },
    /// A stage needs malignancy labels that the table does not have.
    #[error("{nulls} of {rows} rows have no is_malignant value: malignancy stages need annotations_with_malignancy.csv (pass it as the annotations file)")]
    MalignancyMissing {
        /// Rows with a null is_malignant.
        nulls: usize,
        /// Rows in all.
        rows: usize,
    },
    /// An option value is invalid.
    #[error("invalid option {option} = {value}: {why}")]
    InvalidOption {
        /// The option name.
        option: &'static str,
        /// The value given.
        value: String,
        /// What is allowed.
        why: &'static str,
    },
    /// `split: { by: subset }` needs every series in a `subsetN` folder.
    #[error("series {series} (and {count} in all) sits in no subsetN folder, so `split: {{ by: subset }}` cannot place it")]
    NoSubset {
        /// The first such series.
        series: String,
        /// How many series have no subset.
        count: usize,
    },
    /// A split rule left a split without series.
    #[error("the {split} split is empty: {detail}")]
    EmptySplit {
        /// `test`, `val` or `train`.
        split: &'static str,
        /// Why, and which subsets hold series.
        detail: String,
    },
    /// Two different candidates hashed to the same candidate_id (astronomically unlikely).
    #[error("candidate_id collision {id} between series {first} and {second}; report this as a luna bug")]
    IdCollision {
        /// The colliding id.
        id: i64,
        /// Series of the first candidate.
        first: String,
        /// Series of the second candidate.
        second: String,
    },
    /// A Parquet file could not be encoded or decoded.
    #[error("{what}: parquet error: {source}")]
    Parquet {
        /// The file.
        what: String,
        /// The parquet crate's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A row type whose fields do not match its column list (a bug in luna, not in the data).
    #[error("{what}: the row type of table {table} does not match its columns; report this as a luna bug")]
    Internal {
        /// The file.
        what: String,
        /// The table name.
        table: &'static str,
    },
}

impl TableError {
    /// A short suggestion of what to do next, when there is one beyond the message.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::BadRows { .. } => {
                Some("fix the rows, or load with `strict: false` to drop them".into())
            }
            Self::BadValue { .. } => Some(
                "the tool that wrote this file must write finite world coordinates and probabilities in [0, 1] (see schemas/)".into(),
            ),
            Self::NoSubset { .. } => Some(
                "put every CT in a subsetN folder (the LUNA16 layout), keep `require_on_disk: true`, or split with `{ by: stride }`".into(),
            ),
            Self::EmptySplit { .. } => Some(
                "choose `test` / `val` among the subsets that hold series".into(),
            ),
            Self::MalignancyMissing { .. } => {
                Some("use annotations_with_malignancy.csv from the book's repository".into())
            }
            _ => None,
        }
    }
}

fn fmt_bad_rows(path: &std::path::Path, rows: &[BadRow], total: usize) -> String {
    let mut s = format!("{}: {total} bad row(s)", path.display());
    if total > rows.len() {
        s.push_str(&format!(", first {}", rows.len()));
    }
    s.push(':');
    for r in rows {
        s.push_str(&format!("\n  {}:{}: {}", path.display(), r.line, r.reason));
    }
    s.push_str("\nhint: fix the rows, or load with `strict: false` to drop them");
    s
}
