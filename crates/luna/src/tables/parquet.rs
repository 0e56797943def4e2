//! Parquet IO of typed rows through the `parquet` crate's low-level API: a
//! `SerializedFileWriter` with one typed column writer per column (one row group, zstd level 3),
//! a `SerializedFileReader` whose file schema is checked against the row type's columns before
//! any value is read. Writes go to `<path>.tmp` and are renamed into place, so a crash leaves
//! no half file.
//!
//! Stored types (what pyarrow reads): Utf8 = BYTE_ARRAY with the String logical type
//! (`string`); Float64 = DOUBLE; Boolean = BOOLEAN; Int64 = INT64; Int8 = INT32 with the
//! Integer(8, signed) logical type (`int8`). Nullable columns are OPTIONAL, the others
//! REQUIRED. Reading accepts what other writers make of the same types (pyarrow marks every
//! column OPTIONAL: a null in a non-nullable column is an error naming it; dictionary pages,
//! several row groups, snappy).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType, ZstdLevel};
use parquet::column::reader::ColumnReader;
use parquet::data_type::DataType;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::{SerializedFileWriter, SerializedRowGroupWriter};
use parquet::schema::types::{ColumnDescriptor, Type};

use super::columns::{Cell, Row};
use super::error::TableError;
use super::schema::{ArrowType, ColumnSpec, Table};

fn pq(what: &Path) -> impl FnOnce(ParquetError) -> TableError + '_ {
    move |source| TableError::Parquet {
        what: what.display().to_string(),
        source,
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.into(),
        source,
    }
}

/// Writes `rows` to `path` as their table (zstd Parquet), atomically (`<path>.tmp`, then
/// renamed); a value that breaks its column's rule is refused and nothing is left behind.
pub fn write_rows<R: Row>(rows: &[R], path: &Path) -> Result<(), TableError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = KeepIoError {
        inner: File::create(&tmp).map_err(io(&tmp))?,
        error: None,
    };
    let mut w = match writer::<R>(file, path) {
        Ok(w) => w,
        Err(e) => return Err(gone(&tmp, e)),
    };
    if let Err(e) = write_group(rows, &mut w, path).and_then(|()| w.finish().map_err(pq(path))) {
        // A failed write is reported as the parquet crate's error: the file's own (a full
        // disk) wins.
        let e = match w.inner_mut().error.take() {
            Some(source) => TableError::Io {
                path: tmp.clone(),
                source,
            },
            None => e,
        };
        return Err(gone(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Removes the half-written `tmp` and returns the error that stopped it.
fn gone(tmp: &Path, e: TableError) -> TableError {
    // The write error is what matters; a .tmp left behind is overwritten by the next write.
    let _ = std::fs::remove_file(tmp);
    e
}

/// A file writer with the table's schema, zstd level 3.
fn writer<R: Row>(
    file: KeepIoError<File>,
    path: &Path,
) -> Result<SerializedFileWriter<KeepIoError<File>>, TableError> {
    let level = ZstdLevel::try_new(3).map_err(pq(path))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .build();
    let schema = Arc::new(message_type(R::TABLE, &R::columns()).map_err(pq(path))?);
    SerializedFileWriter::new(file, schema, Arc::new(props)).map_err(pq(path))
}

/// Writes `rows` as one row group (none for an empty table).
fn write_group<R: Row>(
    rows: &[R],
    w: &mut SerializedFileWriter<KeepIoError<File>>,
    path: &Path,
) -> Result<(), TableError> {
    if rows.is_empty() {
        return Ok(());
    }
    let specs = R::columns();
    let mut sink = ColumnSink {
        rg: w.next_row_group().map_err(pq(path))?,
        specs: &specs,
        next: 0,
        table: R::TABLE,
        path,
    };
    R::write(rows, &|r| r, &mut sink)?;
    sink.close()
}

/// The Parquet message type of a table: one primitive field per column.
fn message_type(table: Table, specs: &[ColumnSpec]) -> Result<Type, ParquetError> {
    let fields = specs
        .iter()
        .map(|c| {
            let (physical, logical) = stored_type(c.dtype);
            let repetition = match c.nullable {
                true => Repetition::OPTIONAL,
                false => Repetition::REQUIRED,
            };
            Type::primitive_type_builder(c.name, physical)
                .with_repetition(repetition)
                .with_logical_type(logical)
                .build()
                .map(Arc::new)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Type::group_type_builder(table.name())
        .with_fields(fields)
        .build()
}

/// How a column of `t` is stored: physical type and logical type.
fn stored_type(t: ArrowType) -> (PhysicalType, Option<LogicalType>) {
    match t {
        ArrowType::Utf8 => (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)),
        ArrowType::Float64 => (PhysicalType::DOUBLE, None),
        ArrowType::Boolean => (PhysicalType::BOOLEAN, None),
        ArrowType::Int64 => (PhysicalType::INT64, None),
        ArrowType::Int8 => (PhysicalType::INT32, Some(LogicalType::integer(8, true))),
    }
}

/// Whether a file's column holds `t` (other writers' spellings of the same type included).
fn holds(col: &ColumnDescriptor, t: ArrowType) -> bool {
    let logical = col.logical_type_ref();
    let int = |bits| matches!(logical, Some(LogicalType::Integer(t)) if t.is_signed && t.bit_width == bits);
    match t {
        ArrowType::Utf8 => {
            col.physical_type() == PhysicalType::BYTE_ARRAY
                && (matches!(logical, Some(LogicalType::String))
                    || col.converted_type() == parquet::basic::ConvertedType::UTF8)
        }
        ArrowType::Float64 => col.physical_type() == PhysicalType::DOUBLE && logical.is_none(),
        ArrowType::Boolean => col.physical_type() == PhysicalType::BOOLEAN,
        ArrowType::Int64 => {
            col.physical_type() == PhysicalType::INT64 && (logical.is_none() || int(64))
        }
        ArrowType::Int8 => col.physical_type() == PhysicalType::INT32 && int(8),
    }
}

/// The type of a file's column as an error shows it, e.g. `INT32 (Integer(8, signed))`.
fn shown(col: &ColumnDescriptor) -> String {
    match col.logical_type_ref() {
        Some(l) => format!("{} ({l:?})", col.physical_type()),
        None => col.physical_type().to_string(),
    }
}

/// Writes a row group's columns in order (see [`super::columns::Field::write`]).
pub struct ColumnSink<'a> {
    rg: SerializedRowGroupWriter<'a, KeepIoError<File>>,
    specs: &'a [ColumnSpec],
    next: usize,
    table: Table,
    path: &'a Path,
}

impl ColumnSink<'_> {
    /// Writes the next column: `values`, one per row, checked against the column's rule.
    pub fn column<'v, C: Cell + 'v>(
        &mut self,
        values: impl Iterator<Item = &'v C>,
    ) -> Result<(), TableError> {
        let (path, table) = (self.path, self.table);
        let spec = self
            .specs
            .get(self.next)
            .ok_or_else(|| internal(path, table))?;
        self.next += 1;
        let (mut stored, mut def) = (Vec::new(), Vec::new());
        for (row, v) in values.enumerate() {
            if let (Some(rule), Some(x)) = (spec.values, v.number()) {
                if !rule.holds(x) {
                    return Err(TableError::BadValue {
                        what: path.display().to_string(),
                        table: table.name(),
                        column: spec.name.into(),
                        row,
                        value: x,
                        rule: rule.text(),
                    });
                }
            }
            let p = v.to_phys();
            def.push(i16::from(p.is_some()));
            stored.extend(p);
        }
        let mut col = self
            .rg
            .next_column()
            .map_err(pq(path))?
            .ok_or_else(|| internal(path, table))?;
        let typed =
            C::Phys::get_column_writer_mut(col.untyped()).ok_or_else(|| internal(path, table))?;
        let levels = C::NULLABLE.then_some(def.as_slice());
        typed.write_batch(&stored, levels, None).map_err(pq(path))?;
        col.close().map_err(pq(path))
    }

    fn close(self) -> Result<(), TableError> {
        if self.next != self.specs.len() {
            return Err(internal(self.path, self.table));
        }
        self.rg.close().map(drop).map_err(pq(self.path))
    }
}

/// A row type whose fields do not match its columns: a bug in `rows.rs`, not in the data.
fn internal(path: &Path, table: Table) -> TableError {
    TableError::Internal {
        what: path.display().to_string(),
        table: table.name(),
    }
}

/// A writer that keeps the first I/O error of the file it writes: the Parquet writer reports a
/// write error as its own error type, and callers must still see that the disk was full
/// (`ErrorKind::StorageFull`), not a malformed table.
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

/// Reads the rows of `path`, after checking its columns against the row type's (names, order,
/// types); an error names the file and the column.
pub fn read_rows<R: Row>(path: &Path) -> Result<Vec<R>, TableError> {
    let file = File::open(path).map_err(io(path))?;
    let reader = SerializedFileReader::new(file).map_err(pq(path))?;
    let specs = R::columns();
    check_schema(&reader, R::TABLE, &specs, path)?;
    let rows = row_count(reader.metadata().file_metadata().num_rows(), path)?;
    let mut source = ColumnSource {
        reader,
        specs,
        next: 0,
        rows,
        table: R::TABLE,
        path: path.into(),
    };
    R::read(&mut source)
}

/// A row count from the file's metadata (negative only in a corrupt file).
fn row_count(n: i64, path: &Path) -> Result<usize, TableError> {
    usize::try_from(n).map_err(|_| TableError::Parquet {
        what: path.display().to_string(),
        source: ParquetError::General(format!("corrupt metadata: {n} rows")),
    })
}

/// Checks that the file has exactly the columns of `table` (names, order, types).
fn check_schema(
    reader: &SerializedFileReader<File>,
    table: Table,
    specs: &[ColumnSpec],
    path: &Path,
) -> Result<(), TableError> {
    let schema = reader.metadata().file_metadata().schema_descr();
    let cols = schema.columns();
    let mismatch = |column: &str, expected: String, found: String| TableError::SchemaMismatch {
        what: path.display().to_string(),
        table: table.name(),
        column: column.to_string(),
        expected,
        found,
    };
    let nested = schema.root_schema().get_fields().len() != cols.len();
    if let Some(c) = cols.iter().find(|c| nested || c.max_rep_level() > 0) {
        return Err(mismatch(
            &c.path().string(),
            "a flat column".into(),
            "a nested column".into(),
        ));
    }
    for (i, c) in specs.iter().enumerate() {
        let Some(got) = cols.get(i) else {
            return Err(mismatch(
                c.name,
                format!("column #{i} of type {}", c.dtype.name()),
                "missing".into(),
            ));
        };
        if got.name() != c.name {
            let found = match cols.iter().any(|g| g.name() == c.name) {
                true => format!("column {:?} there", got.name()),
                false => "no such column".into(),
            };
            let expected = match found.as_str() {
                "no such column" => format!("column #{i} of type {}", c.dtype.name()),
                _ => format!("column #{i}"),
            };
            return Err(mismatch(c.name, expected, found));
        }
        if !holds(got, c.dtype) {
            return Err(mismatch(c.name, c.dtype.name().into(), shown(got)));
        }
    }
    if let Some(extra) = cols.get(specs.len()) {
        return Err(mismatch(
            extra.name(),
            "no such column".into(),
            "extra column".into(),
        ));
    }
    Ok(())
}

/// Reads a checked file's columns in order (see [`super::columns::Field::read`]).
pub struct ColumnSource {
    reader: SerializedFileReader<File>,
    specs: Vec<ColumnSpec>,
    next: usize,
    rows: usize,
    table: Table,
    path: PathBuf,
}

impl ColumnSource {
    /// Rows in the file.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The error for a column that yielded fewer values than the file has rows.
    pub fn short(&self) -> TableError {
        TableError::Parquet {
            what: self.path.display().to_string(),
            source: ParquetError::General(format!(
                "a column of table {} holds fewer values than the file's {} rows",
                self.table.name(),
                self.rows
            )),
        }
    }

    /// Reads the next column: one value per row, nulls and rules checked.
    pub fn column<C: Cell>(&mut self) -> Result<Vec<C>, TableError> {
        let j = self.next;
        self.next += 1;
        let spec = self
            .specs
            .get(j)
            .ok_or_else(|| internal(&self.path, self.table))?
            .clone();
        let stored = self.stored::<C::Phys>(j)?;
        let what = self.path.display().to_string();
        let mismatch = |expected: &str, found: String| TableError::SchemaMismatch {
            what: what.clone(),
            table: self.table.name(),
            column: spec.name.into(),
            expected: expected.into(),
            found,
        };
        let nulls = stored.iter().filter(|v| v.is_none()).count();
        if !C::NULLABLE && nulls > 0 {
            return Err(mismatch("no nulls", format!("{nulls} nulls")));
        }
        let mut out = Vec::with_capacity(stored.len());
        for (row, v) in stored.into_iter().enumerate() {
            let v = C::from_phys(v)
                .map_err(|e| mismatch(e.expected, format!("{} at row {row}", e.found)))?;
            if let (Some(rule), Some(x)) = (spec.values, v.number()) {
                if !rule.holds(x) {
                    return Err(TableError::BadValue {
                        what: what.clone(),
                        table: self.table.name(),
                        column: spec.name.into(),
                        row,
                        value: x,
                        rule: rule.text(),
                    });
                }
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Column `j`'s values over all row groups, `None` for a null.
    fn stored<T: DataType>(&self, j: usize) -> Result<Vec<Option<T::T>>, TableError> {
        let path = self.path.as_path();
        let mut out = Vec::with_capacity(self.rows);
        for g in 0..self.reader.num_row_groups() {
            let rg = self.reader.get_row_group(g).map_err(pq(path))?;
            let want = row_count(rg.metadata().num_rows(), path)?;
            let reader: ColumnReader = rg.get_column_reader(j).map_err(pq(path))?;
            let mut typed =
                T::get_column_reader(reader).ok_or_else(|| internal(path, self.table))?;
            let (mut values, mut def) = (Vec::new(), Vec::new());
            let mut got = 0;
            while got < want {
                let (records, _, _) = typed
                    .read_records(want - got, Some(&mut def), None, &mut values)
                    .map_err(pq(path))?;
                if records == 0 {
                    return Err(self.short());
                }
                got += records;
            }
            let nullable = rg.metadata().column(j).column_descr().max_def_level() > 0;
            let mut values = values.into_iter();
            if nullable {
                for d in def {
                    out.push(if d > 0 { values.next() } else { None });
                }
            } else {
                out.extend(values.map(Some));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::columns::{col, columns};
    use crate::tables::{DiagnosisRow, SegIndexRow, Split};

    columns! {
        /// seg_index.parquet with free-text splits, to write what luna never writes.
        #[derive(Debug, Clone, PartialEq)]
        pub struct LooseSegIndex in Table::SegIndex {
            /// uid
            series_uid: String = col("series_uid", ""),
            /// split
            split: String = col("split", ""),
            /// file
            file: String = col("file", ""),
            /// dataset
            dataset: String = col("dataset", ""),
            /// row, slice, center_r, center_c, label_pixels
            ints: [i64; 5] = [col("row", ""), col("slice", ""), col("center_r", ""), col("center_c", ""), col("label_pixels", "")],
        }
    }

    /// A fresh directory for one test (luna has no tempfile dev-dependency).
    fn test_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("luna-tables-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn nulls_and_empty_tables_round_trip() {
        let dir = test_dir("nulls");
        let path = dir.join("diagnosis.parquet");
        let rows = vec![
            DiagnosisRow {
                series_uid: "a".into(),
                nodules: 2,
                patient_score: 0.5,
                predicted_malignant: true,
                truth_nodules: None,
                truth_malignant: Some(false),
            },
            DiagnosisRow {
                series_uid: "b".into(),
                nodules: 0,
                patient_score: 0.0,
                predicted_malignant: false,
                truth_nodules: Some(3),
                truth_malignant: None,
            },
        ];
        write_rows(&rows, &path).expect("write");
        assert_eq!(read_rows::<DiagnosisRow>(&path).expect("read"), rows);
        write_rows::<DiagnosisRow>(&[], &path).expect("write empty");
        assert!(read_rows::<DiagnosisRow>(&path)
            .expect("read empty")
            .is_empty());
    }

    #[test]
    fn an_unknown_split_names_the_file_column_and_row() {
        let dir = test_dir("split");
        let path = dir.join("seg_index.parquet");
        let row = |split: &str| LooseSegIndex {
            series_uid: "s".into(),
            split: split.into(),
            file: "seg/s.h5".into(),
            dataset: "train".into(),
            ints: [0, 1, 2, 3, 4],
        };
        write_rows(&[row("val"), row("tset")], &path).expect("write");
        let err = read_rows::<SegIndexRow>(&path).expect_err("tset is no split");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: column \"split\" of table seg_index: expected \"train\", \"val\" or \"test\", found \"tset\" at row 1 (was this written by another luna version or for another table?)",
                path.display()
            )
        );
        write_rows(&[row("val")], &path).expect("write");
        let back = read_rows::<SegIndexRow>(&path).expect("read");
        assert_eq!((back[0].split, back[0].dataset), (Split::Val, Split::Train));
        std::fs::remove_dir_all(dir).expect("clean up");
    }
}
