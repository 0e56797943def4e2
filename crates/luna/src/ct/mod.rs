//! `crate::ct`: reading CT volumes (MetaImage `.mhd` + `.raw`/`.zraw`), world↔voxel geometry,
//! HU clipping and the book's fixed-size crops.
//!
//! Layout: `header` parses `.mhd` headers (with `element` for `ElementType` and `datafile` for
//! `ElementDataFile` forms); `metaimage` opens the data (memory-mapped when uncompressed) as a
//! [`CtImage`]; `convert` decodes voxels and applies the HU clip; `geometry` converts xyz (mm) ↔
//! irc (voxels) with the true inverse direction; `crop` computes and cuts windows.
//! `dicom` reads DICOM series into the same `CtImage` (owned int16 HU voxels); `source` names
//! either form of a CT ([`CtSource`]).
//! Arrays are (index,row,col) = (z,y,x) everywhere; header vectors are (x,y,z).
//! Rejected: depending on ITK/SimpleITK (C++ toolchain); SimpleITK
//! is used only as a test oracle.

pub mod convert;
pub mod crop;
pub mod datafile;
pub mod dicom;
pub mod element;
pub mod error;
pub mod geometry;
pub mod header;
pub mod metaimage;
pub mod source;

pub use convert::{HU_MAX, HU_MIN};
pub use crop::CropWindow;
pub use datafile::DataFile;
pub use element::{ElementType, VoxelData};
pub use error::CtError;
pub use geometry::{round_half_even, Geometry, Irc, IrcF, Xyz};
pub use header::MetaHeader;
pub use metaimage::CtImage;
pub use source::CtSource;
