//! Reading the slices of one series into a volume: parse, order, check, decode HU.
//!
//! Every slice file is read once, parsed by dicom-rs straight from the file (rejected: reading
//! the whole file into a buffer first, one more copy and 70 MB more page faults per CT), in
//! parallel; the slices are then ordered by ImagePositionPatient projected on the normal
//! (row × column direction of ImageOrientationPatient), and decoded in parallel straight into
//! their place in one volume buffer. The geometry is SimpleITK's `ImageSeriesReader`'s:
//! origin = the first slice's position, x/y spacing = PixelSpacing[1]/[0] (DICOM gives
//! row spacing first), z spacing = |last − first position| / (n − 1), direction columns =
//! row direction, column direction, normal (orthogonalised as ITK's GDCMImageIO does).
//!
//! Values: HU = stored × RescaleSlope + RescaleIntercept, computed per slice. With integer
//! slope and intercept (every CT scanner we know) the volume is int16, and a value outside
//! int16 is an error; otherwise it is float64, as SimpleITK gives (the HU clip then truncates
//! like for a float `.mhd`). Padding values are kept as they are.
//!
//! Checks, each an error naming the files: all slices share Rows/Columns/PixelSpacing and
//! ImageOrientationPatient (else non-parallel or mixed images), consecutive positions step along
//! the normal only (else gantry tilt), and every gap equals the median gap within 1 %
//! (else a missing or duplicated slice). Rejected: SimpleITK's behaviour of reading tilted or
//! gapped series with only a warning (the geometry is then wrong for every voxel).

use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_core::value::{PrimitiveValue, Value};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::OpenFileOptions;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use rayon::prelude::*;

use super::super::element::ElementType;
use super::super::error::CtError;
use super::super::geometry::{Geometry, Xyz};
use super::super::metaimage::CtImage;
use super::attrs::{self, tag, Obj};
use super::scan::{has_dicm_marker, SeriesFiles};

/// Relative tolerance on each slice gap against the median gap.
const GAP_TOLERANCE: f64 = 0.01;
/// Tolerance on direction cosines when comparing orientations.
const IOP_TOLERANCE: f64 = 1e-4;

/// The technical header of one slice.
struct Slice {
    path: PathBuf,
    pos: [f64; 3],
    iop: [f64; 6],
    rows: usize,
    cols: usize,
    /// PixelSpacing as written: [row spacing (y), column spacing (x)].
    pixel_spacing: [f64; 2],
    slope: f64,
    intercept: f64,
    pixel: PixelFormat,
    obj: Obj,
}

/// How the stored samples are laid out.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PixelFormat {
    bits_allocated: u32,
    bits_stored: u32,
    signed: bool,
}

/// Read all slices of `series` into a HU volume with SimpleITK's geometry.
pub fn read_series(series: &SeriesFiles) -> Result<CtImage, CtError> {
    let (dir, uid) = (&series.dir, series.uid.as_str());
    if series.files.len() < 2 {
        return Err(CtError::DicomTooFewSlices {
            dir: dir.clone(),
            uid: uid.to_string(),
            slices: series.files.len(),
        });
    }
    let mut slices: Vec<Slice> = series
        .files
        .par_iter()
        .map(|p| parse(p))
        .collect::<Result<_, _>>()?;
    check_alike(&slices, dir, uid)?;
    let normal = orthonormal(&slices[0].iop)[2];
    let along = |s: &Slice| dot(s.pos, normal);
    slices.sort_by(|a, b| along(a).total_cmp(&along(b)));
    check_stack(&slices, normal, dir, uid)?;
    let geometry = geometry(&slices, dir)?;
    let shape = [slices.len(), slices[0].rows, slices[0].cols];
    let integral = slices
        .iter()
        .all(|s| s.slope.fract() == 0.0 && s.intercept.fract() == 0.0);
    let et = if integral {
        ElementType::I16
    } else {
        ElementType::F64
    };
    let per_slice = shape[1] * shape[2] * et.size();
    let mut out = vec![0u8; per_slice * shape[0]];
    out.par_chunks_mut(per_slice)
        .zip(slices.into_par_iter())
        .try_for_each(|(o, s)| decode(s, et, o))?;
    Ok(CtImage::from_owned(dir.clone(), geometry, shape, et, out))
}

/// Parse one slice file (dicom-rs reads it straight from the file, no whole-file buffer) and
/// its technical header.
fn parse(path: &Path) -> Result<Slice, CtError> {
    let obj = OpenFileOptions::new()
        .read_preamble(dicom_object::file::ReadPreamble::Always)
        .open_file(path)
        .map_err(|_| unreadable(path))?;
    header(obj, path)
}

/// Why a file failed to parse: not DICOM, an unsupported transfer syntax, or a damaged file.
fn unreadable(path: &Path) -> CtError {
    match has_dicm_marker(path) {
        Ok(true) => {}
        Ok(false) => {
            return CtError::DicomNotDicom {
                path: path.to_path_buf(),
            }
        }
        Err(e) => return e,
    }
    let meta = std::fs::File::open(path).ok().and_then(|mut f| {
        let mut preamble = [0u8; 128];
        f.read_exact(&mut preamble).ok()?;
        dicom_object::FileMetaTable::from_reader(std::io::BufReader::new(f)).ok()
    });
    if let Some(meta) = meta {
        let ts = meta.transfer_syntax();
        match TransferSyntaxRegistry.get(ts) {
            Some(t) if t.is_unsupported() => return ts_error(path, ts),
            None => return ts_error(path, ts),
            _ => {}
        }
    }
    CtError::DicomCorrupt {
        path: path.to_path_buf(),
        what: "it is truncated or damaged (the data set cannot be parsed)",
    }
}

fn ts_error(path: &Path, uid: &str) -> CtError {
    let name = TransferSyntaxRegistry
        .get(uid)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    CtError::DicomTransferSyntax {
        path: path.to_path_buf(),
        uid: uid.to_string(),
        name,
    }
}

fn header(obj: Obj, path: &Path) -> Result<Slice, CtError> {
    let modality = attrs::text(&obj, tag::MODALITY).unwrap_or_else(|| "(none)".into());
    if modality != "CT" {
        return Err(CtError::DicomNotCt {
            path: path.to_path_buf(),
            modality,
        });
    }
    let pos = attrs::floats(&obj, tag::IPP, 3, path)?;
    let iop = attrs::floats(&obj, tag::IOP, 6, path)?;
    let ps = attrs::floats(&obj, tag::PIXEL_SPACING, 2, path)?;
    let samples = attrs::uint_or(&obj, tag::SAMPLES, 1, path)?;
    let frames = attrs::uint_or(&obj, tag::FRAMES, 1, path)?;
    let bits_allocated = attrs::uint(&obj, tag::BITS_ALLOCATED, path)?;
    let bits_stored = attrs::uint_or(&obj, tag::BITS_STORED, bits_allocated, path)?;
    let signed = attrs::uint_or(&obj, tag::PIXEL_REPR, 0, path)? == 1;
    let unsupported = |what: String| CtError::DicomPixelFormat {
        path: path.to_path_buf(),
        what,
    };
    if samples != 1 {
        return Err(unsupported(format!("SamplesPerPixel {samples} (colour)")));
    }
    if frames != 1 {
        return Err(unsupported(format!(
            "NumberOfFrames {frames} (a multi-frame object)"
        )));
    }
    if !matches!(bits_allocated, 8 | 16) || bits_stored == 0 || bits_stored > bits_allocated {
        return Err(unsupported(format!(
            "BitsAllocated {bits_allocated} with BitsStored {bits_stored}"
        )));
    }
    Ok(Slice {
        path: path.to_path_buf(),
        pos: [pos[0], pos[1], pos[2]],
        iop: [iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]],
        rows: attrs::uint(&obj, tag::ROWS, path)? as usize,
        cols: attrs::uint(&obj, tag::COLUMNS, path)? as usize,
        pixel_spacing: [ps[0], ps[1]],
        slope: attrs::float_or(&obj, tag::SLOPE, 1.0, path)?,
        intercept: attrs::float_or(&obj, tag::INTERCEPT, 0.0, path)?,
        pixel: PixelFormat {
            bits_allocated,
            bits_stored,
            signed,
        },
        obj,
    })
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// The slice normal: row direction × column direction (not normalised).
fn normal(iop: &[f64; 6]) -> [f64; 3] {
    cross([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]])
}

/// Every slice has the first one's shape, pixel spacing and orientation.
fn check_alike(slices: &[Slice], dir: &Path, uid: &str) -> Result<(), CtError> {
    let first = &slices[0];
    for s in &slices[1..] {
        if (0..6).any(|i| (s.iop[i] - first.iop[i]).abs() > IOP_TOLERANCE) {
            return Err(CtError::DicomNotParallel {
                dir: dir.to_path_buf(),
                uid: uid.to_string(),
                first: first.path.clone(),
                other: s.path.clone(),
                iops: Box::new([first.iop, s.iop]),
            });
        }
        let differ = |tag: &'static str, a: String, b: String| CtError::DicomInconsistent {
            dir: dir.to_path_buf(),
            uid: uid.to_string(),
            tag,
            first: first.path.clone(),
            other: s.path.clone(),
            values: Box::new([a, b]),
        };
        if (s.rows, s.cols) != (first.rows, first.cols) {
            let shape = |x: &Slice| format!("{} × {}", x.rows, x.cols);
            return Err(differ("Rows × Columns", shape(first), shape(s)));
        }
        if (0..2).any(|i| (s.pixel_spacing[i] - first.pixel_spacing[i]).abs() > 1e-6) {
            let ps = |x: &Slice| format!("{:?}", x.pixel_spacing);
            return Err(differ("PixelSpacing", ps(first), ps(s)));
        }
    }
    Ok(())
}

/// Consecutive (ordered) slices step along the normal only, by one uniform gap.
fn check_stack(slices: &[Slice], normal: [f64; 3], dir: &Path, uid: &str) -> Result<(), CtError> {
    let along: Vec<f64> = slices.iter().map(|s| dot(s.pos, normal)).collect();
    let mut gaps: Vec<f64> = along.windows(2).map(|w| w[1] - w[0]).collect();
    for (k, w) in slices.windows(2).enumerate() {
        let d = [0, 1, 2].map(|i| w[1].pos[i] - w[0].pos[i]);
        let off = [0, 1, 2].map(|i| d[i] - gaps[k] * normal[i]);
        let drift = dot(off, off).sqrt();
        if drift > 1e-3 * gaps[k].abs().max(1.0) {
            return Err(CtError::DicomTilted {
                dir: dir.to_path_buf(),
                uid: uid.to_string(),
                first: w[0].path.clone(),
                second: w[1].path.clone(),
                drift,
            });
        }
    }
    let mut sorted = gaps.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    for (k, g) in gaps.drain(..).enumerate() {
        if median <= 0.0 || (g - median).abs() > GAP_TOLERANCE * median {
            return Err(CtError::DicomUneven {
                uid: uid.to_string(),
                before: slices[k].path.clone(),
                after: slices[k + 1].path.clone(),
                at_before: along[k],
                at_after: along[k + 1],
                gap: g,
                expected: median,
            });
        }
    }
    Ok(())
}

/// SimpleITK's geometry of the ordered slices.
fn geometry(slices: &[Slice], dir: &Path) -> Result<Geometry, CtError> {
    let (first, last) = (&slices[0], &slices[slices.len() - 1]);
    let d = [0, 1, 2].map(|i| last.pos[i] - first.pos[i]);
    let z = dot(d, d).sqrt() / (slices.len() - 1) as f64;
    let direction = direction(&first.iop);
    let [oy, ox] = first.pixel_spacing;
    let xyz = |p: [f64; 3]| Xyz {
        x: p[0],
        y: p[1],
        z: p[2],
    };
    Geometry::new(xyz(first.pos), xyz([ox, oy, z]), direction, dir)
}

/// The direction matrix (row-major, columns = row, column and normal axes). `+ 0.0` turns the
/// cross products' −0.0 into +0.0, as SimpleITK reports them (a −0.0 would print and hash
/// differently in what luna writes from this geometry).
fn direction(iop: &[f64; 6]) -> [[f64; 3]; 3] {
    let [r, c, n] = orthonormal(iop);
    [[r[0], c[0], n[0]], [r[1], c[1], n[1]], [r[2], c[2], n[2]]].map(|row| row.map(|v| v + 0.0))
}

/// ITK's (GDCMImageIO) orthogonalised axes from ImageOrientationPatient: n = |r × c|,
/// r' = |c × n|, c' = n × r'.
fn orthonormal(iop: &[f64; 6]) -> [[f64; 3]; 3] {
    let unit = |v: [f64; 3]| {
        let l = dot(v, v).sqrt();
        v.map(|x| x / l)
    };
    let c = [iop[3], iop[4], iop[5]];
    let n = unit(normal(iop));
    let r = unit(cross(c, n));
    [r, cross(n, r), n]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Decode one slice's pixels into `out` (one slice of the volume, `et` little-endian).
fn decode(s: Slice, et: ElementType, out: &mut [u8]) -> Result<(), CtError> {
    let n = s.rows * s.cols;
    let path = s.path.as_path();
    let short = |found: usize| CtError::DicomCorrupt {
        path: path.to_path_buf(),
        what: if found < n {
            "its pixel data is shorter than Rows × Columns (truncated)"
        } else {
            "its pixel data is longer than Rows × Columns"
        },
    };
    let ts = s.obj.meta().transfer_syntax();
    let registry = TransferSyntaxRegistry.get(ts);
    let native = registry.is_some_and(|t| !t.is_encapsulated_pixel_data());
    let pd = s
        .obj
        .element_opt(tag::PIXEL_DATA.0)
        .ok()
        .flatten()
        .ok_or_else(|| attrs::missing(path, tag::PIXEL_DATA))?;
    let sink = Sink::new(&s, et, path);
    if native {
        return match pd.value() {
            Value::Primitive(PrimitiveValue::U16(v)) if s.pixel.bits_allocated == 16 => {
                check_len(v.len(), n, short)?;
                sink.fill(out, v.iter().copied())
            }
            Value::Primitive(PrimitiveValue::I16(v)) if s.pixel.bits_allocated == 16 => {
                check_len(v.len(), n, short)?;
                sink.fill(out, v.iter().map(|&x| x as u16))
            }
            Value::Primitive(PrimitiveValue::U8(v)) => sink.fill_bytes(out, v, n, short),
            _ => Err(CtError::DicomCorrupt {
                path: path.to_path_buf(),
                what: "its PixelData has an unexpected value representation",
            }),
        };
    }
    if !registry.is_some_and(|t| t.can_decode_all()) {
        return Err(ts_error(path, ts));
    }
    let decoded = s
        .obj
        .decode_pixel_data()
        .map_err(|_| CtError::DicomCorrupt {
            path: path.to_path_buf(),
            what: "its compressed pixel data cannot be decoded",
        })?;
    sink.fill_bytes(out, decoded.data(), n, short)
}

fn check_len(found: usize, n: usize, err: impl Fn(usize) -> CtError) -> Result<(), CtError> {
    // dicom-rs pads odd lengths; a longer value holds more than one frame or junk
    if found != n {
        return Err(err(found));
    }
    Ok(())
}

/// Stored sample → HU writer for one slice.
struct Sink<'a> {
    pixel: PixelFormat,
    slope: f64,
    intercept: f64,
    et: ElementType,
    path: &'a Path,
}

impl<'a> Sink<'a> {
    fn new(s: &Slice, et: ElementType, path: &'a Path) -> Sink<'a> {
        Sink {
            pixel: s.pixel,
            slope: s.slope,
            intercept: s.intercept,
            et,
            path,
        }
    }

    /// The stored value of a raw sample: low `bits_stored` bits, sign-extended when signed.
    #[inline(always)]
    fn stored(&self, raw: u16) -> i32 {
        let shift = 32 - self.pixel.bits_stored;
        let v = (raw as u32) << shift;
        if self.pixel.signed {
            (v as i32) >> shift
        } else {
            (v >> shift) as i32
        }
    }

    /// Samples packed as bytes (OB, or a codec's output): 8-bit or 16-bit little-endian.
    fn fill_bytes(
        &self,
        out: &mut [u8],
        bytes: &[u8],
        n: usize,
        short: impl Fn(usize) -> CtError,
    ) -> Result<(), CtError> {
        if self.pixel.bits_allocated == 8 {
            let b = bytes.get(..n).ok_or_else(|| short(bytes.len()))?;
            return self.fill(out, b.iter().map(|&x| x as u16));
        }
        let b = bytes.get(..2 * n).ok_or_else(|| short(bytes.len() / 2))?;
        self.fill(
            out,
            b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
    }

    fn fill(&self, out: &mut [u8], raw: impl Iterator<Item = u16>) -> Result<(), CtError> {
        if self.et == ElementType::F64 {
            for (o, r) in out.chunks_exact_mut(8).zip(raw) {
                let hu = self.stored(r) as f64 * self.slope + self.intercept;
                o.copy_from_slice(&hu.to_le_bytes());
            }
            return Ok(());
        }
        let (m, b) = (self.slope as i64, self.intercept as i64);
        let mut worst: Option<(i32, i64)> = None;
        for (o, r) in out.chunks_exact_mut(2).zip(raw) {
            let st = self.stored(r);
            let hu = st as i64 * m + b;
            let v = hu.clamp(i16::MIN as i64, i16::MAX as i64);
            if v != hu {
                worst.get_or_insert((st, hu));
            }
            o.copy_from_slice(&(v as i16).to_le_bytes());
        }
        match worst {
            None => Ok(()),
            Some((stored, hu)) => Err(CtError::DicomValueRange {
                path: self.path.to_path_buf(),
                stored,
                slope: self.slope,
                intercept: self.intercept,
                hu,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_of_a_coronal_series_has_no_negative_zero() {
        // row x, column −z: the cross products give −0.0 parts
        let iop = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0];
        assert!(orthonormal(&iop)
            .iter()
            .flatten()
            .any(|v| *v == 0.0 && v.is_sign_negative()));
        let d = direction(&iop);
        assert_eq!(d, [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]);
        assert!(d
            .iter()
            .flatten()
            .all(|v| !v.is_sign_negative() || *v != 0.0));
    }

    #[test]
    fn stored_values_sign_extend_and_mask_to_bits_stored() {
        let sink = |signed, bits_stored| Sink {
            pixel: PixelFormat {
                bits_allocated: 16,
                bits_stored,
                signed,
            },
            slope: 1.0,
            intercept: 0.0,
            et: ElementType::I16,
            path: Path::new("x.dcm"),
        };
        assert_eq!(sink(true, 12).stored(0x0fff), -1);
        assert_eq!(sink(true, 12).stored(0x07ff), 2047);
        assert_eq!(sink(false, 12).stored(0xf123), 0x123);
        assert_eq!(sink(true, 16).stored(0x8000), -32768);
        assert_eq!(sink(false, 16).stored(0xffff), 65535);
    }
}
