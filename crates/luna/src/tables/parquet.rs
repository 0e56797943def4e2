//! Parquet IO for the luna tables: zstd (level 3) via polars' `ParquetWriter`, schema checked on
//! both write and read so no off-schema artifact is ever written or silently accepted.
//! Writes go to `<path>.tmp` and are renamed into place, so a crash leaves no half file.

use std::fs::File;
use std::io::{BufWriter, Write};
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
    // Buffered: polars writes the Parquet footer a few bytes per call (~2,000 syscalls for a
    // small table otherwise).
    let mut file = KeepIoError {
        inner: BufWriter::with_capacity(1 << 16, File::create(&tmp).map_err(io(&tmp))?),
        error: None,
    };
    let level = ZstdLevel::try_new(3).map_err(pe(path))?;
    let written = ParquetWriter::new(&mut file)
        .with_compression(ParquetCompression::Zstd(Some(level)))
        .finish(df);
    if let Err(e) = written {
        return Err(match file.error {
            Some(source) => TableError::Io { path: tmp, source },
            None => pe(path)(e),
        });
    }
    // The buffer's last bytes: an error here (a full disk) must not be lost in a drop.
    file.flush().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// A writer that keeps the first I/O error of the file it writes: polars' Parquet writer turns
/// a write error into text ("underlying IO error: ..."), and callers must still see that the
/// disk was full (`ErrorKind::StorageFull`), not a malformed table.
struct KeepIoError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> KeepIoError<W> {
    fn keep<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let (Err(e), None) = (&r, &self.error) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                return r; // retried by the caller
            }
            self.error = Some(match e.raw_os_error() {
                Some(n) => std::io::Error::from_raw_os_error(n),
                None => std::io::Error::new(e.kind(), e.to_string()),
            });
        }
        r
    }
}

impl<W: Write> Write for KeepIoError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.keep(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

/// Reads `path` and checks it has the schema of `table`; the error names the file and column.
pub fn read_parquet(path: &Path, table: Table) -> Result<DataFrame, TableError> {
    let file = File::open(path).map_err(io(path))?;
    let df = ParquetReader::new(file).finish().map_err(pe(path))?;
    check_frame(&df, table, &path.display().to_string())?;
    Ok(df)
}
