//! Typed access to the few technical attributes the reader uses, with errors that name the file
//! and the attribute — and never print a value of an attribute that is not in this file's list
//! (so no patient attribute can reach a message).

use std::path::Path;

use dicom_core::Tag;
use dicom_object::{DefaultDicomObject, InMemDicomObject};

use super::super::error::CtError;

/// A parsed DICOM file (meta group + data set).
pub type Obj = DefaultDicomObject;

/// The attributes read, with their keywords for messages.
pub mod tag {
    use dicom_core::Tag;
    use dicom_dictionary_std::tags;

    /// (tag, keyword) pairs.
    pub type Named = (Tag, &'static str);
    /// SeriesInstanceUID.
    pub const SERIES_UID: Named = (tags::SERIES_INSTANCE_UID, "SeriesInstanceUID");
    /// Modality.
    pub const MODALITY: Named = (tags::MODALITY, "Modality");
    /// ImageType.
    pub const IMAGE_TYPE: Named = (tags::IMAGE_TYPE, "ImageType");
    /// ImageOrientationPatient.
    pub const IOP: Named = (tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient");
    /// ImagePositionPatient.
    pub const IPP: Named = (tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient");
    /// PixelSpacing.
    pub const PIXEL_SPACING: Named = (tags::PIXEL_SPACING, "PixelSpacing");
    /// Rows.
    pub const ROWS: Named = (tags::ROWS, "Rows");
    /// Columns.
    pub const COLUMNS: Named = (tags::COLUMNS, "Columns");
    /// SamplesPerPixel.
    pub const SAMPLES: Named = (tags::SAMPLES_PER_PIXEL, "SamplesPerPixel");
    /// BitsAllocated.
    pub const BITS_ALLOCATED: Named = (tags::BITS_ALLOCATED, "BitsAllocated");
    /// BitsStored.
    pub const BITS_STORED: Named = (tags::BITS_STORED, "BitsStored");
    /// PixelRepresentation.
    pub const PIXEL_REPR: Named = (tags::PIXEL_REPRESENTATION, "PixelRepresentation");
    /// NumberOfFrames.
    pub const FRAMES: Named = (tags::NUMBER_OF_FRAMES, "NumberOfFrames");
    /// RescaleSlope.
    pub const SLOPE: Named = (tags::RESCALE_SLOPE, "RescaleSlope");
    /// RescaleIntercept.
    pub const INTERCEPT: Named = (tags::RESCALE_INTERCEPT, "RescaleIntercept");
    /// PixelData.
    pub const PIXEL_DATA: Named = (tags::PIXEL_DATA, "PixelData");
    /// The tag where header-only reads stop.
    pub const STOP: Tag = tags::PIXEL_DATA;
}

fn is_blank(e: &dicom_object::mem::InMemElement) -> bool {
    e.to_str()
        .map(|s| {
            s.trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .is_empty()
        })
        .unwrap_or(false)
}

fn elem(obj: &InMemDicomObject, t: Tag) -> Option<&dicom_object::mem::InMemElement> {
    obj.element_opt(t).ok().flatten()
}

/// A string attribute, trimmed of DICOM padding; `None` when absent or empty.
pub fn text(obj: &InMemDicomObject, (t, _): tag::Named) -> Option<String> {
    let v = elem(obj, t)?.to_str().ok()?;
    let v = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!v.is_empty()).then(|| v.to_string())
}

/// A required string attribute.
pub fn req_text(obj: &InMemDicomObject, t: tag::Named, path: &Path) -> Result<String, CtError> {
    text(obj, t).ok_or_else(|| missing(path, t))
}

/// All values of a multi-valued string attribute (e.g. ImageType), trimmed.
pub fn texts(obj: &InMemDicomObject, (t, _): tag::Named) -> Vec<String> {
    elem(obj, t)
        .and_then(|e| e.to_multi_str().ok())
        .map(|v| v.iter().map(|s| s.trim().to_string()).collect())
        .unwrap_or_default()
}

/// A required numeric attribute with exactly `n` values.
pub fn floats(
    obj: &InMemDicomObject,
    t: tag::Named,
    n: usize,
    path: &Path,
) -> Result<Vec<f64>, CtError> {
    let e = elem(obj, t.0).ok_or_else(|| missing(path, t))?;
    match e.to_multi_float64() {
        Ok(v) if v.len() == n && v.iter().all(|x| x.is_finite()) => Ok(v),
        Ok(v) if v.len() != n => Err(bad(path, t, e, "wrong number of values")),
        _ => Err(bad(path, t, e, "not finite numbers")),
    }
}

/// An optional single number (`default` when absent).
pub fn float_or(
    obj: &InMemDicomObject,
    t: tag::Named,
    default: f64,
    path: &Path,
) -> Result<f64, CtError> {
    match elem(obj, t.0) {
        None => Ok(default),
        Some(e) if is_blank(e) => Ok(default),
        Some(e) => match e.to_float64() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(bad(path, t, e, "not a finite number")),
        },
    }
}

/// A required unsigned integer attribute.
pub fn uint(obj: &InMemDicomObject, t: tag::Named, path: &Path) -> Result<u32, CtError> {
    let e = elem(obj, t.0).ok_or_else(|| missing(path, t))?;
    e.to_int::<u32>()
        .map_err(|_| bad(path, t, e, "not an unsigned integer"))
}

/// An optional unsigned integer attribute (`default` when absent or empty).
pub fn uint_or(
    obj: &InMemDicomObject,
    t: tag::Named,
    default: u32,
    path: &Path,
) -> Result<u32, CtError> {
    match elem(obj, t.0) {
        None => Ok(default),
        Some(e) if is_blank(e) => Ok(default),
        Some(_) => uint(obj, t, path),
    }
}

/// The error for an absent required attribute.
pub fn missing(path: &Path, (_, name): tag::Named) -> CtError {
    CtError::DicomMissingTag {
        path: path.to_path_buf(),
        tag: name,
    }
}

fn bad(
    path: &Path,
    (_, name): tag::Named,
    e: &dicom_object::mem::InMemElement,
    reason: &'static str,
) -> CtError {
    // only the technical attributes of `tag` are ever passed here, so the value may be shown
    let value: String = e
        .to_str()
        .map(|s| s.chars().take(64).collect())
        .unwrap_or_default();
    CtError::DicomBadValue {
        path: path.to_path_buf(),
        tag: name,
        value,
        reason,
    }
}
