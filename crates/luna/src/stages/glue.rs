//! Stage glue that several kinds share and that belongs to no one kind: domain errors as stage
//! errors (`From<TableError>` / `From<FrocError>` for [`StageError`], keeping their hints),
//! the scan list of a per-series artifact ([`searched_series`]), writing an artifact's JSON
//! document ([`write_json`]) and parameter checks shared by several kinds
//! ([`check_zstd_level`]). Where the CTs and CSVs are (and what a CT's key
//! material is) lives beside it in `stages::dataset`; the artifact type names in
//! `stages::artifact`.
//!
//! Rejected: these helpers in the kind that first needed them (`load_annotations` held the
//! table conversion, `build_crops` the CT hashes): every other kind then imported a sibling
//! kind's file, and a change to one kind rippled into the others. The `From` impls live here
//! and not in `tables`/`froc` because those domain modules know nothing of the engine.

use std::path::Path;

use serde::Serialize;

use crate::artifacts::{encode, Style};
use crate::engine::error::StageError;
use crate::engine::kind::ParamError;
use crate::froc::{read_seriesuids, FrocError, Scans, SERIESUIDS_FILE};
use crate::tables::{Table, TableError};

impl From<TableError> for StageError {
    fn from(e: TableError) -> Self {
        // Some table errors already end their message with the hint (bad rows); do not print
        // it twice.
        let hint = e.hint().filter(|h| !e.to_string().contains(h.as_str()));
        let err = StageError::domain(e);
        match hint {
            Some(h) => err.with_hint(h),
            None => err,
        }
    }
}

impl From<FrocError> for StageError {
    fn from(e: FrocError) -> Self {
        match e.hint() {
            Some(h) => StageError::domain(e).with_hint(h),
            None => StageError::domain(e),
        }
    }
}

/// A table error as a stage error, keeping its hint (the `From` conversion, as a function for
/// `map_err`).
pub fn table_err(e: TableError) -> StageError {
    e.into()
}

/// A FROC error as a stage error, with its hint (the `From` conversion, as a function for
/// `map_err`).
pub fn froc_err(e: FrocError) -> StageError {
    e.into()
}

/// The series a per-series artifact (`clusters`, `detections`) searched: its
/// `seriesuids.csv` (see `stages::cluster`), which must exist beside `table`; `or_else` ends
/// the hint when it is missing (what else the user can do).
pub fn searched_series(
    dir: &Path,
    stage: &str,
    table: Table,
    or_else: &str,
) -> Result<Scans, StageError> {
    let path = dir.join(SERIESUIDS_FILE);
    if !path.is_file() {
        return Err(StageError::msg(format!(
            "{}: missing: the {} artifact of `{stage}` does not say which series were searched",
            path.display(),
            table.name()
        ))
        .with_hint(format!(
            "a stage that provides `{}` writes seriesuids.csv beside {}: every series it searched (with or without rows), one uid per line, no header{or_else}",
            table.name(),
            table.file_name()
        )));
    }
    Ok(read_seriesuids(&path)?)
}

/// Writes the JSON document `doc` (one of `crate::artifacts`) to `path` in `style`; any
/// failure fails the stage (a summary file is never left empty).
pub fn write_json<T: Serialize>(path: &Path, doc: &T, style: Style) -> Result<(), StageError> {
    let bytes = encode(doc, style, path).map_err(StageError::domain)?;
    std::fs::write(path, bytes).map_err(|e| StageError::io(path, e))
}

/// Reads the JSON document at `path` (one of `crate::artifacts`); a missing or malformed file
/// fails the stage naming it.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| StageError::msg(format!("{}: {e}", path.display())))
}

/// The `level` parameter check shared by the HDF5-writing stages: zstd levels -7..=19, not 0.
pub fn check_zstd_level(level: i32) -> Result<(), ParamError> {
    if !(-7..=19).contains(&level) || level == 0 {
        return Err(ParamError::new(
            "level",
            format!("zstd level {level} is outside -7..=19 (0 is not a level)"),
        ));
    }
    Ok(())
}
