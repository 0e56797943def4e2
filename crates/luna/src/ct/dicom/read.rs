//! Reading the slices of one series into a volume: parse, order, check spacing, decode HU.

use super::super::error::CtError;
use super::super::metaimage::CtImage;
use super::scan::SeriesFiles;

/// Read all slices of `series` into an int16 HU volume with SimpleITK's geometry.
pub fn read_series(series: &SeriesFiles) -> Result<CtImage, CtError> {
    Err(CtError::DicomNotYet {
        path: series.dir.clone(),
    })
}
