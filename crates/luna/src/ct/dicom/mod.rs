//! `crate::ct::dicom`: CT series stored as DICOM (one file per slice), read into a [`CtImage`]
//! with the geometry and values SimpleITK's `ImageSeriesReader` gives.
//!
//! Design: `scan` walks a folder tree, reads only each file's header (dicom-rs stops before
//! PixelData) and groups the CT image files by SeriesInstanceUID; a file is taken for DICOM by
//! the `DICM` marker at byte 128 (Part 10), and files with a known non-DICOM extension (`.mhd`,
//! `.raw`, `.xml`, ...) are never opened. `read` then parses every slice file once, in parallel
//! (rayon), orders the slices by ImagePositionPatient projected on the slice normal, checks the
//! spacing, and decodes HU = stored × slope + intercept straight into one owned int16 volume.
//!
//! Rejected: hand-parsing DICOM (the dicom-rs crates are maintained and cover the transfer
//! syntaxes); C codecs (charls, openjpeg-sys, GDCM: a C/C++ toolchain for every user) — only the
//! pure-Rust decoders of `dicom-pixeldata` are enabled (RLE, JPEG via jpeg-decoder, JPEG 2000 via
//! openjp2), and other encodings (JPEG-LS, HTJ2K, ...) fail naming the transfer syntax;
//! sorting by file name or InstanceNumber (archives shuffle both).
//!
//! Patient identifiers: nothing here reads, keeps or prints any attribute but the technical ones
//! (UIDs, geometry, pixel description, Modality, ImageType); errors and notes name files,
//! folders and SeriesInstanceUIDs only.
//!
//! [`CtImage`]: super::CtImage

mod attrs;
mod read;
mod scan;

pub use read::read_series;
pub use scan::{
    has_dicm_marker, scan_tree, select_series, SeriesCount, SeriesFiles, SkippedFile, IGNORED,
};
