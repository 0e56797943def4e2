//! Parsing MetaImage (`.mhd`) headers into a validated [`MetaHeader`].
//!
//! Decisions:
//! - Keys are matched **case-insensitively** and whitespace around `=` and values is ignored; CRLF
//!   line ends are accepted. ITK itself is case-sensitive (SimpleITK 2.5 rejects `elementtype`);
//!   accepting more is harmless since no two MetaImage keys differ only in case.
//! - As in MetaIO, `ElementDataFile` is the **last** header key: parsing stops there, and for
//!   `LOCAL` the data starts right after that line; for `LIST` the file names follow, one per line.
//! - Synonyms: `Offset`/`Origin`/`Position`; `TransformMatrix`/`Rotation`/`Orientation`;
//!   `ElementSpacing` wins over `ElementSize`; `BinaryDataByteOrderMSB`/`ElementByteOrderMSB`.
//! - `TransformMatrix` is stored by ITK column-major: the first three numbers are the world
//!   direction of the x voxel axis. We convert it to SimpleITK's row-major `GetDirection()` D, so
//!   D[r][c] = tm[c·N + r] (verified against SimpleITK 2.5.7 by the oracle test).
//! - NDims 2 is accepted as a single-slice volume (z extent 1, spacing 1, origin 0).
//! - Unknown keys are ignored (MetaIO keeps them as user fields).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::datafile::{parse_data_file, DataFile};
use super::element::ElementType;
use super::error::CtError;

/// A parsed and validated header. Vectors are in header (x,y,z) order.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaHeader {
    /// The `.mhd` path.
    pub path: PathBuf,
    /// NDims as written (2 or 3).
    pub ndims: usize,
    /// DimSize (x, y, z); z = 1 for 2-D.
    pub dim_size: [usize; 3],
    /// Voxel type.
    pub element_type: ElementType,
    /// Spacing (x, y, z), finite and > 0.
    pub spacing: [f64; 3],
    /// Origin (x, y, z), finite.
    pub origin: [f64; 3],
    /// Direction D, row-major as SimpleITK `GetDirection()`.
    pub direction: [[f64; 3]; 3],
    /// Big-endian data.
    pub msb: bool,
    /// zlib-compressed data.
    pub compressed: bool,
    /// `CompressedDataSize`, if given.
    pub compressed_size: Option<u64>,
    /// `HeaderSize` (bytes to skip in the data file; -1 = data is at the end of the file).
    pub header_size: i64,
    /// Where the data is.
    pub data_file: DataFile,
    /// Byte offset just after the `ElementDataFile` line (start of `LOCAL` data).
    pub header_end: u64,
}

/// One `Key = Value` header line.
pub(super) struct Raw {
    /// The key as written.
    pub(super) key: String,
    /// The value, trimmed.
    pub(super) value: String,
    /// 1-based line number.
    pub(super) line: usize,
}

fn find<'a>(raws: &'a [Raw], keys: &[&str]) -> Option<&'a Raw> {
    // Last occurrence of any synonym wins, as when fields are re-read.
    raws.iter()
        .rev()
        .find(|r| keys.iter().any(|k| r.key.eq_ignore_ascii_case(k)))
}

fn nums(path: &Path, r: &Raw, n: usize) -> Result<Vec<f64>, CtError> {
    let toks: Vec<&str> = r.value.split_whitespace().collect();
    if toks.len() != n {
        return Err(CtError::BadValueCount {
            path: path.to_path_buf(),
            key: r.key.clone(),
            line: r.line,
            expected: n,
            found: toks.len(),
        });
    }
    let mut out = Vec::with_capacity(n);
    for t in toks {
        let v: f64 = t.parse().map_err(|_| CtError::BadNumber {
            path: path.to_path_buf(),
            key: r.key.clone(),
            line: r.line,
            value: t.to_string(),
        })?;
        if !v.is_finite() {
            return Err(CtError::NonFinite {
                path: path.to_path_buf(),
                key: r.key.clone(),
                line: r.line,
                value: v,
            });
        }
        out.push(v);
    }
    Ok(out)
}

fn int(path: &Path, r: &Raw) -> Result<i64, CtError> {
    r.value.trim().parse().map_err(|_| CtError::BadNumber {
        path: path.to_path_buf(),
        key: r.key.clone(),
        line: r.line,
        value: r.value.clone(),
    })
}

fn boolean(path: &Path, r: &Raw) -> Result<bool, CtError> {
    match r.value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(CtError::Unsupported {
            path: path.to_path_buf(),
            key: r.key.clone(),
            value: r.value.clone(),
            reason: "expected True or False",
        }),
    }
}

pub(super) fn unsupported(path: &Path, r: &Raw, reason: &'static str) -> CtError {
    CtError::Unsupported {
        path: path.to_path_buf(),
        key: r.key.clone(),
        value: r.value.clone(),
        reason,
    }
}

fn required<'a>(path: &Path, raws: &'a [Raw], key: &'static str) -> Result<&'a Raw, CtError> {
    find(raws, &[key]).ok_or(CtError::MissingKey {
        path: path.to_path_buf(),
        key,
    })
}

/// Read and validate the header of `path` (reads only up to the end of the header).
pub fn read_header(path: &Path) -> Result<MetaHeader, CtError> {
    // a regular file only: a FIFO named `x.mhd` must be an error, not a hang
    let (file, _) =
        crate::engine::fingerprint::open_regular(path).map_err(|e| CtError::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut raws = Vec::new();
    let mut offset = 0u64;
    let mut line_no = 0usize;
    let mut buf = Vec::new();
    let mut list_lines: Vec<String> = Vec::new();
    let mut in_list = false;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| CtError::io(path, e))?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        line_no += 1;
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if in_list {
            if !text.is_empty() {
                list_lines.push(text.to_string());
            }
            continue;
        }
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((k, v)) = text.split_once('=') else {
            return Err(CtError::BadLine {
                path: path.to_path_buf(),
                line: line_no,
                text: text.to_string(),
            });
        };
        let (key, value) = (k.trim().to_string(), v.trim().to_string());
        let is_data = key.eq_ignore_ascii_case("ElementDataFile");
        let is_list = is_data
            && value
                .split_whitespace()
                .next()
                .is_some_and(|t| t.eq_ignore_ascii_case("LIST"));
        raws.push(Raw {
            key,
            value,
            line: line_no,
        });
        if is_list {
            in_list = true;
        } else if is_data {
            break;
        }
    }
    build(path, &raws, offset, list_lines)
}

fn build(
    path: &Path,
    raws: &[Raw],
    header_end: u64,
    list_lines: Vec<String>,
) -> Result<MetaHeader, CtError> {
    let p = path;
    if let Some(r) = find(raws, &["ObjectType"]) {
        if !r.value.eq_ignore_ascii_case("Image") {
            return Err(unsupported(p, r, "only ObjectType = Image can be read"));
        }
    }
    let nd_raw = required(p, raws, "NDims")?;
    let ndims = match int(p, nd_raw)? {
        n @ (2 | 3) => n as usize,
        _ => {
            return Err(unsupported(
                p,
                nd_raw,
                "only NDims = 2 or 3 volumes are supported",
            ))
        }
    };
    let ds_raw = required(p, raws, "DimSize")?;
    let mut dim_size = [1usize; 3];
    for (i, v) in nums(p, ds_raw, ndims)?.into_iter().enumerate() {
        if v < 1.0 || v.fract() != 0.0 || v > u32::MAX as f64 {
            return Err(CtError::BadNumber {
                path: p.to_path_buf(),
                key: ds_raw.key.clone(),
                line: ds_raw.line,
                value: v.to_string(),
            });
        }
        dim_size[i] = v as usize;
    }
    let et_raw = required(p, raws, "ElementType")?;
    let element_type =
        ElementType::from_met(&et_raw.value).ok_or_else(|| CtError::UnknownElementType {
            path: p.to_path_buf(),
            line: et_raw.line,
            value: et_raw.value.clone(),
        })?;
    if let Some(r) = find(raws, &["ElementNumberOfChannels"]) {
        if int(p, r)? != 1 {
            return Err(unsupported(
                p,
                r,
                "only single-channel (scalar) images are supported",
            ));
        }
    }
    if let Some(r) = find(raws, &["BinaryData"]) {
        if !boolean(p, r)? {
            return Err(unsupported(
                p,
                r,
                "ASCII voxel data is not supported; re-export as binary",
            ));
        }
    }
    let mut spacing = [1.0f64; 3];
    if let Some(r) = find(raws, &["ElementSpacing"]).or_else(|| find(raws, &["ElementSize"])) {
        for (axis, v) in nums(p, r, ndims)?.into_iter().enumerate() {
            if v <= 0.0 {
                return Err(CtError::NonPositiveSpacing {
                    path: p.to_path_buf(),
                    key: r.key.clone(),
                    axis,
                    value: v,
                });
            }
            spacing[axis] = v;
        }
    }
    let mut origin = [0.0f64; 3];
    if let Some(r) = find(raws, &["Offset", "Origin", "Position"]) {
        origin[..ndims].copy_from_slice(&nums(p, r, ndims)?);
    }
    let mut direction = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    if let Some(r) = find(raws, &["TransformMatrix", "Rotation", "Orientation"]) {
        let tm = nums(p, r, ndims * ndims)?;
        for (row, drow) in direction.iter_mut().enumerate().take(ndims) {
            for (col, d) in drow.iter_mut().enumerate().take(ndims) {
                *d = tm[col * ndims + row];
            }
        }
        if super::geometry::invert3(&direction).is_none() {
            return Err(CtError::SingularDirection {
                path: p.to_path_buf(),
                key: r.key.clone(),
                det: super::geometry::det3(&direction),
            });
        }
    }
    if let Some(r) = find(raws, &["CenterOfRotation"]) {
        nums(p, r, ndims)?; // validated, not used (ITK ignores it for images too)
    }
    let msb = match find(raws, &["BinaryDataByteOrderMSB", "ElementByteOrderMSB"]) {
        Some(r) => boolean(p, r)?,
        None => false,
    };
    let compressed = match find(raws, &["CompressedData"]) {
        Some(r) => boolean(p, r)?,
        None => false,
    };
    let compressed_size = match find(raws, &["CompressedDataSize"]) {
        Some(r) => Some(u64::try_from(int(p, r)?).map_err(|_| unsupported(p, r, "must be >= 0"))?),
        None => None,
    };
    let header_size = match find(raws, &["HeaderSize"]) {
        Some(r) => match int(p, r)? {
            n if n >= -1 => n,
            _ => {
                return Err(unsupported(
                    p,
                    r,
                    "HeaderSize must be >= 0, or -1 for data at the end of the file",
                ))
            }
        },
        None => 0,
    };
    let df_raw = required(p, raws, "ElementDataFile")?;
    let data_file = parse_data_file(p, df_raw, ndims, dim_size, list_lines)?;
    Ok(MetaHeader {
        path: p.to_path_buf(),
        ndims,
        dim_size,
        element_type,
        spacing,
        origin,
        direction,
        msb,
        compressed,
        compressed_size,
        header_size,
        data_file,
        header_end,
    })
}
