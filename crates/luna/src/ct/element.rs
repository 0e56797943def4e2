//! The scalar voxel types of MetaImage (`ElementType`), their names and sizes.
//!
//! `MET_LONG`/`MET_ULONG` are 4 bytes (MetaIO's `MET_ValueTypeSize`), so they map to i32/u32;
//! SimpleITK writes 64-bit pixels as `MET_LONG_LONG`/`MET_ULONG_LONG` (checked with SimpleITK
//! 2.5.7). `MET_ASCII_CHAR`, vector and complex types are rejected as unknown.

/// The scalar voxel types of MetaImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementType {
    /// MET_CHAR, i8.
    I8,
    /// MET_UCHAR, u8.
    U8,
    /// MET_SHORT, i16 (LUNA16).
    I16,
    /// MET_USHORT, u16.
    U16,
    /// MET_INT / MET_LONG, i32.
    I32,
    /// MET_UINT / MET_ULONG, u32.
    U32,
    /// MET_LONG_LONG, i64.
    I64,
    /// MET_ULONG_LONG, u64.
    U64,
    /// MET_FLOAT, f32.
    F32,
    /// MET_DOUBLE, f64.
    F64,
}

impl ElementType {
    /// Parse a MetaImage type name (`MET_SHORT`, ...), case-insensitively.
    pub fn from_met(name: &str) -> Option<ElementType> {
        use ElementType::*;
        Some(match name.to_ascii_uppercase().as_str() {
            "MET_CHAR" => I8,
            "MET_UCHAR" => U8,
            "MET_SHORT" => I16,
            "MET_USHORT" => U16,
            "MET_INT" | "MET_LONG" => I32,
            "MET_UINT" | "MET_ULONG" => U32,
            "MET_LONG_LONG" => I64,
            "MET_ULONG_LONG" => U64,
            "MET_FLOAT" => F32,
            "MET_DOUBLE" => F64,
            _ => return None,
        })
    }

    /// The canonical MetaImage name (what SimpleITK writes).
    pub fn met_name(self) -> &'static str {
        use ElementType::*;
        match self {
            I8 => "MET_CHAR",
            U8 => "MET_UCHAR",
            I16 => "MET_SHORT",
            U16 => "MET_USHORT",
            I32 => "MET_INT",
            U32 => "MET_UINT",
            I64 => "MET_LONG_LONG",
            U64 => "MET_ULONG_LONG",
            F32 => "MET_FLOAT",
            F64 => "MET_DOUBLE",
        }
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        use ElementType::*;
        match self {
            I8 | U8 => 1,
            I16 | U16 => 2,
            I32 | U32 | F32 => 4,
            I64 | U64 | F64 => 8,
        }
    }
}

/// All voxels in their stored type, (index,row,col) order, native endianness.
#[derive(Debug, Clone, PartialEq)]
pub enum VoxelData {
    /// MET_CHAR.
    I8(Vec<i8>),
    /// MET_UCHAR.
    U8(Vec<u8>),
    /// MET_SHORT.
    I16(Vec<i16>),
    /// MET_USHORT.
    U16(Vec<u16>),
    /// MET_INT / MET_LONG.
    I32(Vec<i32>),
    /// MET_UINT / MET_ULONG.
    U32(Vec<u32>),
    /// MET_LONG_LONG.
    I64(Vec<i64>),
    /// MET_ULONG_LONG.
    U64(Vec<u64>),
    /// MET_FLOAT.
    F32(Vec<f32>),
    /// MET_DOUBLE.
    F64(Vec<f64>),
}

impl VoxelData {
    /// The voxels as little-endian bytes (for exact comparison with other tools' dumps).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        macro_rules! le {
            ($v:expr) => {
                $v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
        }
        match self {
            VoxelData::I8(v) => le!(v),
            VoxelData::U8(v) => v.clone(),
            VoxelData::I16(v) => le!(v),
            VoxelData::U16(v) => le!(v),
            VoxelData::I32(v) => le!(v),
            VoxelData::U32(v) => le!(v),
            VoxelData::I64(v) => le!(v),
            VoxelData::U64(v) => le!(v),
            VoxelData::F32(v) => le!(v),
            VoxelData::F64(v) => le!(v),
        }
    }
}
