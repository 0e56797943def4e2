//! Opening a MetaImage volume: locate and validate its voxel bytes, then decode on demand.
//!
//! Decisions:
//! - Uncompressed single-file data (the LUNA16 `.raw` case, and `LOCAL`) is **memory-mapped**
//!   (memmap2) and decoded lazily: `crop_hu_i16` touches only the rows of the crop. Compressed
//!   data (zlib, `CompressedData = True`) and `LIST`/pattern files are read into memory.
//! - A compressed volume is inflated in one libdeflate call from the mapped file into a buffer
//!   of exactly DimSize × element size (checked against the available memory first). Rejected:
//!   a streaming zlib decoder (zlib-rs measured 0.64-0.98 s against libdeflate's 0.33-0.57 s
//!   for a 157 MB real-preset CT, the same run); inflating only the slices a stage needs
//!   (data-dependent gain, and a damaged tail would go unnoticed).
//! - The data size must match DimSize × element size exactly: fewer bytes is `Truncated`, more is
//!   `SizeMismatch` (rejected: ITK's silent read of a prefix, which hides a wrong DimSize).
//! - `HeaderSize = N` skips N bytes of the data file (after the header for `LOCAL`);
//!   `HeaderSize = -1` means the data is the last DimSize × size bytes of the file.
//! - The mmap is sound only while no one truncates or rewrites the file; CT inputs are read-only.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::convert::{decode_all, map_into, Elem};
use super::crop::{crop_into, CropWindow};
use super::datafile::DataFile;
use super::element::{ElementType, VoxelData};
use super::error::CtError;
use super::geometry::{Geometry, Irc, Xyz};
use super::header::{read_header, MetaHeader};

enum Data {
    Mapped {
        map: Mmap,
        offset: usize,
        len: usize,
    },
    Owned(Vec<u8>),
}

/// A CT volume: geometry plus a (mapped or in-memory) voxel source. Opened from a `.mhd` header
/// (mapped or inflated data in its stored type) or built from decoded voxels (a DICOM series:
/// owned little-endian int16 HU).
pub struct CtImage {
    /// The `.mhd` header, for a MetaImage.
    header: Option<MetaHeader>,
    /// The `.mhd` file, or the DICOM series folder.
    path: PathBuf,
    geometry: Geometry,
    /// (index, row, col).
    shape: [usize; 3],
    element_type: ElementType,
    /// Big-endian data (MetaImage `BinaryDataByteOrderMSB`).
    msb: bool,
    data: Data,
}

/// Dispatch a generic body over the element type: `dispatch!(et, T => expr)`.
macro_rules! dispatch {
    ($et:expr, $t:ident => $body:expr) => {
        match $et {
            ElementType::I8 => {
                type $t = i8;
                $body
            }
            ElementType::U8 => {
                type $t = u8;
                $body
            }
            ElementType::I16 => {
                type $t = i16;
                $body
            }
            ElementType::U16 => {
                type $t = u16;
                $body
            }
            ElementType::I32 => {
                type $t = i32;
                $body
            }
            ElementType::U32 => {
                type $t = u32;
                $body
            }
            ElementType::I64 => {
                type $t = i64;
                $body
            }
            ElementType::U64 => {
                type $t = u64;
                $body
            }
            ElementType::F32 => {
                type $t = f32;
                $body
            }
            ElementType::F64 => {
                type $t = f64;
                $body
            }
        }
    };
}

impl CtImage {
    /// Open a `.mhd` file: parse the header, find and size-check the data (mapping it if raw,
    /// with every page faulted in at once: for readers that touch most of the volume).
    pub fn open(mhd: &Path) -> Result<CtImage, CtError> {
        Self::open_with(mhd, true)
    }

    /// As [`CtImage::open`], but a raw file's pages are only mapped when first touched: for
    /// readers that need a small part of the volume (a few crops, some slices).
    pub fn open_sparse(mhd: &Path) -> Result<CtImage, CtError> {
        Self::open_with(mhd, false)
    }

    fn open_with(mhd: &Path, populate: bool) -> Result<CtImage, CtError> {
        let header = read_header(mhd)?;
        let h = &header;
        let geometry = Geometry::new(
            Xyz {
                x: h.origin[0],
                y: h.origin[1],
                z: h.origin[2],
            },
            Xyz {
                x: h.spacing[0],
                y: h.spacing[1],
                z: h.spacing[2],
            },
            h.direction,
            mhd,
        )?;
        let data = load_data(h, populate)?;
        let d = h.dim_size;
        Ok(CtImage {
            path: h.path.clone(),
            shape: [d[2], d[1], d[0]],
            element_type: h.element_type,
            msb: h.msb,
            header: Some(header),
            geometry,
            data,
        })
    }

    /// A volume from decoded voxels: `le_bytes` holds shape (index,row,col) elements of
    /// `element_type`, little-endian. `path` names it in messages (a DICOM series folder).
    pub(crate) fn from_owned(
        path: PathBuf,
        geometry: Geometry,
        shape: [usize; 3],
        element_type: ElementType,
        le_bytes: Vec<u8>,
    ) -> CtImage {
        debug_assert_eq!(
            le_bytes.len(),
            shape.iter().product::<usize>() * element_type.size()
        );
        CtImage {
            header: None,
            path,
            geometry,
            shape,
            element_type,
            msb: false,
            data: Data::Owned(le_bytes),
        }
    }

    /// The parsed `.mhd` header; `None` for a CT that is not a MetaImage (a DICOM series).
    pub fn header(&self) -> Option<&MetaHeader> {
        self.header.as_ref()
    }

    /// The `.mhd` path this image was opened from, or the DICOM series folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Origin, spacing and direction.
    pub fn geometry(&self) -> &Geometry {
        &self.geometry
    }

    /// Shape as (index, row, col) = (z, y, x), i.e. DimSize reversed.
    pub fn shape_irc(&self) -> [usize; 3] {
        self.shape
    }

    /// The stored voxel type.
    pub fn element_type(&self) -> ElementType {
        self.element_type
    }

    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Data::Owned(v) => v,
        }
    }

    /// All voxels in their stored type, (index,row,col) order.
    pub fn voxels(&self) -> VoxelData {
        let (b, msb) = (self.bytes(), self.msb);
        match self.element_type {
            ElementType::I8 => VoxelData::I8(decode_all(b, msb)),
            ElementType::U8 => VoxelData::U8(decode_all(b, msb)),
            ElementType::I16 => VoxelData::I16(decode_all(b, msb)),
            ElementType::U16 => VoxelData::U16(decode_all(b, msb)),
            ElementType::I32 => VoxelData::I32(decode_all(b, msb)),
            ElementType::U32 => VoxelData::U32(decode_all(b, msb)),
            ElementType::I64 => VoxelData::I64(decode_all(b, msb)),
            ElementType::U64 => VoxelData::U64(decode_all(b, msb)),
            ElementType::F32 => VoxelData::F32(decode_all(b, msb)),
            ElementType::F64 => VoxelData::F64(decode_all(b, msb)),
        }
    }

    /// All voxels as f64, (index,row,col) order (64-bit integers beyond 2^53 lose precision).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        let (b, msb) = (self.bytes(), self.msb);
        let mut out = vec![0.0f64; self.voxel_count()];
        dispatch!(self.element_type, T => map_into::<T, f64>(b, msb, &mut out, |v| v.as_f64()));
        out
    }

    /// Number of voxels.
    pub fn voxel_count(&self) -> usize {
        self.shape_irc().iter().product()
    }

    /// The whole volume as HU clipped to [-1000, 1000], i16, (index,row,col) order.
    pub fn hu_i16_clipped(&self) -> Result<Vec<i16>, CtError> {
        let (b, msb) = (self.bytes(), self.msb);
        let mut out = vec![0i16; self.voxel_count()];
        dispatch!(self.element_type, T => map_into::<T, i16>(b, msb, &mut out, |v| v.hu()));
        Ok(out)
    }

    /// The clipped HU voxels of `window`, (index,row,col) order, length `window.len()`.
    /// Only the crop's rows are read from the mapping.
    pub fn crop_hu_i16(&self, window: &CropWindow) -> Result<Vec<i16>, CtError> {
        let shape = self.shape_irc();
        window.check_fits(shape)?;
        let (b, msb) = (self.bytes(), self.msb);
        let mut out = vec![0i16; window.len()];
        dispatch!(self.element_type, T => crop_into::<T, i16>(b, msb, shape, window, &mut out, &|v: T| v.hu()));
        Ok(out)
    }

    /// The raw (unclipped) voxels of `window` as f64, (index,row,col) order: what thresholds on
    /// raw HU (the segmentation mask) compare against. Exact for every type but 64-bit integers
    /// beyond 2^53.
    pub fn window_raw_f64(&self, window: &CropWindow) -> Result<Vec<f64>, CtError> {
        let shape = self.shape_irc();
        window.check_fits(shape)?;
        let (b, msb) = (self.bytes(), self.msb);
        let mut out = vec![0f64; window.len()];
        dispatch!(self.element_type, T => crop_into::<T, f64>(b, msb, shape, window, &mut out, &|v: T| v.as_f64()));
        Ok(out)
    }

    /// The book's `getRawCandidate`: xyz → irc (half-to-even), the shifted window of
    /// `width_irc` around it, and its clipped HU voxels. Returns (voxels, centre, window).
    pub fn crop_around_xyz(
        &self,
        center: Xyz,
        width_irc: [usize; 3],
    ) -> Result<(Vec<i16>, Irc, CropWindow), CtError> {
        let center_irc = self.geometry.xyz_to_irc(center);
        let window = CropWindow::around(center_irc, width_irc, self.shape_irc())?;
        Ok((self.crop_hu_i16(&window)?, center_irc, window))
    }
}

/// DimSize × element size in bytes; saturates (a huge DimSize then fails as `Truncated`).
fn expected_bytes(h: &MetaHeader, slices: usize) -> u64 {
    let n = h.dim_size[0] as u128 * h.dim_size[1] as u128 * slices as u128;
    u64::try_from(n * h.element_type.size() as u128).unwrap_or(u64::MAX)
}

/// Opens a data file: a regular file only (a FIFO or device is an error, not a hang); the
/// size returned bounds every read.
fn open_file(h: &MetaHeader, path: &Path) -> Result<(File, u64), CtError> {
    crate::engine::fingerprint::open_regular(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CtError::MissingDataFile {
                mhd: h.path.clone(),
                looked_for: path.to_path_buf(),
            }
        } else {
            CtError::io(path, e)
        }
    })
}

/// Data offset and checked length for an uncompressed region starting at `base`.
fn locate(
    h: &MetaHeader,
    path: &Path,
    base: u64,
    file_len: u64,
    expected: u64,
) -> Result<u64, CtError> {
    let offset = if h.header_size == -1 {
        file_len.saturating_sub(expected).max(base)
    } else {
        base.saturating_add(h.header_size as u64)
    };
    let found = file_len.saturating_sub(offset);
    let fields = |p: &Path| {
        (
            p.to_path_buf(),
            h.dim_size.to_vec(),
            h.element_type.met_name(),
            h.element_type.size(),
        )
    };
    if found < expected {
        let (path, dims, element_type, elem_size) = fields(path);
        return Err(CtError::Truncated {
            path,
            dims,
            element_type,
            elem_size,
            offset,
            expected,
            found,
        });
    }
    if found > expected {
        let (path, dims, element_type, elem_size) = fields(path);
        return Err(CtError::SizeMismatch {
            path,
            dims,
            element_type,
            elem_size,
            offset,
            expected,
            found,
        });
    }
    Ok(offset)
}

fn load_data(h: &MetaHeader, populate: bool) -> Result<Data, CtError> {
    let expected = expected_bytes(h, h.dim_size[2]);
    let (path, base) = match &h.data_file {
        DataFile::Local => (h.path.clone(), h.header_end),
        DataFile::File(p) => (p.clone(), 0),
        DataFile::List {
            files,
            slices_per_file,
        } => return load_list(h, files, *slices_per_file),
    };
    if h.compressed {
        // an inflated volume lives in memory: refuse one that cannot fit before reading
        let available = available_memory();
        if expected > available {
            return Err(CtError::TooLarge {
                path: h.path.clone(),
                bytes: expected,
                available,
            });
        }
    }
    let (mut file, len) = open_file(h, &path)?;
    if h.compressed {
        return inflate(h, &path, &mut file, base, len, expected).map(Data::Owned);
    }
    let offset = locate(h, &path, base, len, expected)?;
    // SAFETY: the map is read-only; inputs are not modified while a CtImage is alive (module doc).
    // populate: fault the whole file in with one sequential read instead of a page fault per
    // 4 KiB touched by the crop loops (build_crops reads most of every CT anyway).
    let mut opts = memmap2::MmapOptions::new();
    if populate {
        opts.populate();
    }
    let map = unsafe { opts.map(&file) }.map_err(|e| CtError::io(&path, e))?;
    Ok(Data::Mapped {
        map,
        offset: offset as usize,
        len: expected as usize,
    })
}

/// Bytes of memory available to a new allocation: `MemAvailable` from /proc/meminfo, else the
/// physical memory size.
fn available_memory() -> u64 {
    let from_meminfo = std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb.saturating_mul(1024))
    });
    from_meminfo.unwrap_or_else(|| {
        // SAFETY: sysconf has no preconditions.
        let (pages, size) = unsafe {
            (
                libc::sysconf(libc::_SC_PHYS_PAGES),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        (pages.max(0) as u64).saturating_mul(size.max(0) as u64)
    })
}

/// Inflates the zlib stream of a `CompressedData = True` volume in one call (libdeflate: the
/// whole stream and the whole output are in memory anyway, and it is ~1.8x faster than a
/// streaming zlib). The input is mapped, not read. On failure the stream is inflated again by
/// the streaming decoder only to say how many bytes it holds (`CtError::Inflate::found`).
fn inflate(
    h: &MetaHeader,
    path: &PathBuf,
    file: &mut File,
    base: u64,
    len: u64,
    expected: u64,
) -> Result<Vec<u8>, CtError> {
    let start = match (h.header_size, h.compressed_size) {
        (-1, Some(c)) => len.saturating_sub(c).max(base),
        (-1, None) => {
            return Err(CtError::Unsupported {
                path: h.path.clone(),
                key: "HeaderSize".into(),
                value: "-1".into(),
                reason: "compressed data at the end of the file needs CompressedDataSize",
            })
        }
        (n, _) => base.saturating_add(n as u64),
    };
    let avail = len.saturating_sub(start);
    let take = h.compressed_size.unwrap_or(avail).min(avail);
    // SAFETY: read-only map of an input file that is not modified while open (module doc).
    let map = if take == 0 {
        None
    } else {
        Some(unsafe { memmap2::Mmap::map(&*file) }.map_err(|e| CtError::io(path, e))?)
    };
    let input: &[u8] = match &map {
        Some(m) => &m[start as usize..(start + take) as usize],
        None => &[],
    };
    let size = usize::try_from(expected).map_err(|_| CtError::TooLarge {
        path: h.path.clone(),
        bytes: expected,
        available: usize::MAX as u64,
    })?;
    let mut out = vec![0u8; size];
    match libdeflater::Decompressor::new().zlib_decompress(input, &mut out) {
        Ok(n) if n == size => Ok(out),
        _ => Err(CtError::Inflate {
            path: path.clone(),
            expected,
            found: inflated_len(input, expected),
        }),
    }
}

/// Bytes a zlib stream inflates to before it ends or fails, counting at most `limit + 1`.
fn inflated_len(input: &[u8], limit: u64) -> u64 {
    let mut dec = flate2::read::ZlibDecoder::new(input).take(limit.saturating_add(1));
    let mut n = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(k) = dec.read(&mut buf) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

fn load_list(h: &MetaHeader, files: &[PathBuf], slices_per_file: usize) -> Result<Data, CtError> {
    if h.compressed {
        return Err(CtError::Unsupported {
            path: h.path.clone(),
            key: "CompressedData".into(),
            value: "True".into(),
            reason: "compressed LIST/pattern data files are not supported; use one .zraw file",
        });
    }
    let want_files = h.dim_size[2] / slices_per_file.max(1);
    if files.len() != want_files {
        return Err(CtError::ListCount {
            path: h.path.clone(),
            expected: want_files,
            found: files.len(),
        });
    }
    let per_file = expected_bytes(h, slices_per_file);
    let mut out = Vec::new();
    for f in files {
        let (mut file, len) = open_file(h, f)?;
        let offset = locate(h, f, 0, len, per_file)?;
        let mut buf = Vec::new();
        file.read_to_end(&mut buf).map_err(|e| CtError::io(f, e))?;
        out.extend_from_slice(&buf[offset as usize..(offset + per_file) as usize]);
    }
    Ok(Data::Owned(out))
}
