//! Parquet IO for the luna tables: zstd (level 3) via polars' `ParquetWriter`, schema checked on
//! both write and read so no off-schema artifact is ever written or silently accepted.
//! Writes go to `<path>.tmp` and are renamed into place, so a crash leaves no half file.

use std::fs::File;
use std::path::Path;

use polars::polars_utils::compression::ZstdLevel;
use polars::prelude::*;

use super::error::TableError;
use super::schema::{check_frame, Table};

fn pe(path: &Path) -> impl FnOnce(PolarsError) -> TableError + '_ {
    move |source| TableError::Polars {
        what: path.display().to_string(),
        source,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.into(),
        source,
    }
}

/// Writes `df` as `table` to `path` (zstd Parquet) after checking it has the table's schema.
pub fn write_parquet(df: &mut DataFrame, table: Table, path: &Path) -> Result<(), TableError> {
    check_frame(df, table, &path.display().to_string())?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let level = ZstdLevel::try_new(3).map_err(pe(path))?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(Some(level)))
        .finish(df)
        .map_err(pe(path))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads `path` and checks it has the schema of `table`; the error names the file and column.
pub fn read_parquet(path: &Path, table: Table) -> Result<DataFrame, TableError> {
    let file = File::open(path).map_err(io(path))?;
    let df = ParquetReader::new(file).finish().map_err(pe(path))?;
    check_frame(&df, table, &path.display().to_string())?;
    Ok(df)
}
