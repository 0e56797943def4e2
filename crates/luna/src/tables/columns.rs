//! One column list per table: the [`columns!`] macro declares a row struct and, from the same
//! field list, its schema ([`Row::columns`], which `schemas/*.json` is generated from) and its
//! conversion to and from Parquet columns ([`Field::write`], [`Field::read`]).
//!
//! Each field says how its columns are documented; its Rust type says how they are stored:
//! - a scalar field (a [`Cell`]: `String`, [`Split`], `f64`, `i64`, `i8`, `bool`, or an
//!   `Option` of one, which makes the column nullable) is one column, documented by a
//!   [`ColDoc`];
//! - an array field `[T; N]` is N columns, documented by `[ColDoc; N]` (`center_xyz` →
//!   `coord_x, coord_y, coord_z`);
//! - a column group (a struct declared with `columns!` without a table, e.g. [`SegMetrics`]) is
//!   its own columns, in place, documented in its own declaration (`= Flatten`).
//!
//! The compiler checks that a field's documentation has the shape of its type (one doc per
//! column) and that reading builds every field; the column order is the field order.
//!
//! Rejected: hand-written row↔column pairs plus a separate schema list (three lists per table
//! that had to agree; they did not always); a derive macro (a proc-macro crate for nine
//! structs); serde-based row (de)serialisation (cannot say "this `[f64; 3]` is three named
//! columns with their own descriptions", and reads column-wise data row by row).
//!
//! [`Split`]: super::Split
//! [`SegMetrics`]: super::SegMetrics

use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DataType, DoubleType};
use parquet::data_type::{Int32Type, Int64Type};

use super::error::TableError;
use super::parquet::{ColumnSink, ColumnSource};
use super::rows::Split;
use super::schema::{ArrowType, ColumnSpec, Table, ValueRule};

/// The documentation of one column: name, meaning and value rule (type and nullability come
/// from the field's Rust type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColDoc {
    /// Column name.
    pub name: &'static str,
    /// What the column means.
    pub description: &'static str,
    /// What its (non-null) values must be, beyond the type.
    pub values: Option<ValueRule>,
}

/// A column's documentation, without a value rule.
pub const fn col(name: &'static str, description: &'static str) -> ColDoc {
    ColDoc {
        name,
        description,
        values: None,
    }
}

impl ColDoc {
    /// The same column with a value rule (checked on write and read).
    pub const fn rule(self, r: ValueRule) -> ColDoc {
        ColDoc {
            values: Some(r),
            ..self
        }
    }
}

/// The documentation of a column group field: the group documents its own columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flatten;

/// Why a stored value is not a value of the field's type (becomes a `SchemaMismatch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellError {
    /// What the column's values must be.
    pub expected: &'static str,
    /// What was found.
    pub found: String,
}

/// A Rust type stored as one Parquet column.
pub trait Cell: Sized {
    /// The Parquet physical type.
    type Phys: DataType;
    /// The Arrow type readers see.
    const TYPE: ArrowType;
    /// Whether the column may hold nulls (`Option` types).
    const NULLABLE: bool = false;
    /// The stored value; `None` is a null.
    fn to_phys(&self) -> Option<<Self::Phys as DataType>::T>;
    /// The value back from its stored form (`None`: a null).
    fn from_phys(v: Option<<Self::Phys as DataType>::T>) -> Result<Self, CellError>;
    /// The value as a number, for [`ValueRule`] checks (float columns only).
    fn number(&self) -> Option<f64> {
        None
    }
}

fn null() -> CellError {
    CellError {
        expected: "no nulls",
        found: "a null".into(),
    }
}

impl Cell for f64 {
    type Phys = DoubleType;
    const TYPE: ArrowType = ArrowType::Float64;
    fn to_phys(&self) -> Option<f64> {
        Some(*self)
    }
    fn from_phys(v: Option<f64>) -> Result<Self, CellError> {
        v.ok_or_else(null)
    }
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl Cell for i64 {
    type Phys = Int64Type;
    const TYPE: ArrowType = ArrowType::Int64;
    fn to_phys(&self) -> Option<i64> {
        Some(*self)
    }
    fn from_phys(v: Option<i64>) -> Result<Self, CellError> {
        v.ok_or_else(null)
    }
}

impl Cell for i8 {
    type Phys = Int32Type;
    const TYPE: ArrowType = ArrowType::Int8;
    fn to_phys(&self) -> Option<i32> {
        Some(i32::from(*self))
    }
    fn from_phys(v: Option<i32>) -> Result<Self, CellError> {
        let v = v.ok_or_else(null)?;
        i8::try_from(v).map_err(|_| CellError {
            expected: "an int8 value",
            found: v.to_string(),
        })
    }
}

impl Cell for bool {
    type Phys = BoolType;
    const TYPE: ArrowType = ArrowType::Boolean;
    fn to_phys(&self) -> Option<bool> {
        Some(*self)
    }
    fn from_phys(v: Option<bool>) -> Result<Self, CellError> {
        v.ok_or_else(null)
    }
}

impl Cell for String {
    type Phys = ByteArrayType;
    const TYPE: ArrowType = ArrowType::Utf8;
    fn to_phys(&self) -> Option<ByteArray> {
        Some(ByteArray::from(self.as_str()))
    }
    fn from_phys(v: Option<ByteArray>) -> Result<Self, CellError> {
        let v = v.ok_or_else(null)?;
        String::from_utf8(v.data().to_vec()).map_err(|e| CellError {
            expected: "UTF-8 text",
            found: format!("invalid UTF-8 ({e})"),
        })
    }
}

impl Cell for Split {
    type Phys = ByteArrayType;
    const TYPE: ArrowType = ArrowType::Utf8;
    fn to_phys(&self) -> Option<ByteArray> {
        Some(ByteArray::from(self.as_str()))
    }
    fn from_phys(v: Option<ByteArray>) -> Result<Self, CellError> {
        let v = v.ok_or_else(null)?;
        match v.data() {
            b"train" => Ok(Split::Train),
            b"val" => Ok(Split::Val),
            b"test" => Ok(Split::Test),
            other => Err(CellError {
                expected: "\"train\", \"val\" or \"test\"",
                found: format!("{:?}", String::from_utf8_lossy(other)),
            }),
        }
    }
}

impl<T: Cell> Cell for Option<T> {
    type Phys = T::Phys;
    const TYPE: ArrowType = T::TYPE;
    const NULLABLE: bool = true;
    fn to_phys(&self) -> Option<<T::Phys as DataType>::T> {
        self.as_ref().and_then(T::to_phys)
    }
    fn from_phys(v: Option<<T::Phys as DataType>::T>) -> Result<Self, CellError> {
        v.map(|v| T::from_phys(Some(v))).transpose()
    }
    fn number(&self) -> Option<f64> {
        self.as_ref().and_then(T::number)
    }
}

/// A row struct's field: one or more columns, in order.
pub trait Field: Sized {
    /// How the field's columns are documented: [`ColDoc`] for a scalar, `[ColDoc; N]` for an
    /// array, [`Flatten`] for a column group.
    type Docs;
    /// Appends the field's column specs.
    fn specs(docs: Self::Docs, out: &mut Vec<ColumnSpec>);
    /// Writes the field of every row (`get` picks it out of a row) as the sink's next columns.
    fn write<R>(
        rows: &[R],
        get: &dyn Fn(&R) -> &Self,
        sink: &mut ColumnSink<'_>,
    ) -> Result<(), TableError>;
    /// Reads the field of every row from the source's next columns.
    fn read(source: &mut ColumnSource) -> Result<Vec<Self>, TableError>;
}

impl<C: Cell> Field for C {
    type Docs = ColDoc;
    fn specs(d: ColDoc, out: &mut Vec<ColumnSpec>) {
        out.push(ColumnSpec {
            name: d.name,
            dtype: C::TYPE,
            nullable: C::NULLABLE,
            description: d.description,
            values: d.values,
        });
    }
    fn write<R>(
        rows: &[R],
        get: &dyn Fn(&R) -> &Self,
        sink: &mut ColumnSink<'_>,
    ) -> Result<(), TableError> {
        sink.column(rows.iter().map(get))
    }
    fn read(source: &mut ColumnSource) -> Result<Vec<Self>, TableError> {
        source.column()
    }
}

impl<C: Cell + Clone, const N: usize> Field for [C; N] {
    type Docs = [ColDoc; N];
    fn specs(docs: [ColDoc; N], out: &mut Vec<ColumnSpec>) {
        for d in docs {
            C::specs(d, out);
        }
    }
    fn write<R>(
        rows: &[R],
        get: &dyn Fn(&R) -> &Self,
        sink: &mut ColumnSink<'_>,
    ) -> Result<(), TableError> {
        (0..N).try_for_each(|k| sink.column(rows.iter().map(|r| &get(r)[k])))
    }
    fn read(source: &mut ColumnSource) -> Result<Vec<Self>, TableError> {
        let cols = (0..N)
            .map(|_| source.column::<C>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok((0..source.rows())
            .map(|i| std::array::from_fn(|k| cols[k][i].clone()))
            .collect())
    }
}

/// A table's row type: its fields are the table's columns, in order.
pub trait Row: Field<Docs = Flatten> {
    /// The table the rows belong to.
    const TABLE: Table;

    /// The table's columns, in order: the single source of its schema.
    fn columns() -> Vec<ColumnSpec> {
        let mut out = Vec::new();
        Self::specs(Flatten, &mut out);
        out
    }
}

/// Declares a row struct (`pub struct X in Table::Y { .. }`) or a column group (`pub struct X
/// { .. }`) whose fields are columns: `/// doc` `name: Type = docs,` per field (see the module
/// doc). Every field is `pub`.
macro_rules! columns {
    (
        $(#[$meta:meta])*
        pub struct $name:ident $(in $table:path)? {
            $( $(#[$fmeta:meta])* $field:ident: $ty:ty = $docs:expr, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::tables::columns::Field for $name {
            type Docs = $crate::tables::columns::Flatten;
            fn specs(
                _: $crate::tables::columns::Flatten,
                out: &mut Vec<$crate::tables::ColumnSpec>,
            ) {
                $( <$ty as $crate::tables::columns::Field>::specs($docs, out); )*
            }
            fn write<R>(
                rows: &[R],
                get: &dyn Fn(&R) -> &Self,
                sink: &mut $crate::tables::parquet::ColumnSink<'_>,
            ) -> Result<(), $crate::tables::TableError> {
                $( <$ty as $crate::tables::columns::Field>::write(rows, &|r| &get(r).$field, sink)?; )*
                Ok(())
            }
            fn read(
                source: &mut $crate::tables::parquet::ColumnSource,
            ) -> Result<Vec<Self>, $crate::tables::TableError> {
                $( let mut $field = <$ty as $crate::tables::columns::Field>::read(source)?.into_iter(); )*
                let mut out = Vec::with_capacity(source.rows());
                for _ in 0..source.rows() {
                    out.push(Self { $( $field: $field.next().ok_or_else(|| source.short())?, )* });
                }
                Ok(out)
            }
        }

        $( impl $crate::tables::columns::Row for $name {
            const TABLE: $crate::tables::Table = $table;
        } )?
    };
}

pub(crate) use columns;
