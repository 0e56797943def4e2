//! Per-series probability volumes: what the `segment` stage writes and `cluster` reads.
//!
//! Layout of `<series_uid>.h5`:
//! - dataset `prob`: uint8 (index, row, col), chunked one slice per chunk, zstd (filter 32015);
//!   the probability of a voxel is `value / 255`;
//! - attributes on `prob`: `origin_xyz` (f64 ×3, mm), `spacing_xyz` (f64 ×3, mm), `direction`
//!   (f64 ×9, row-major, SimpleITK `GetDirection()` order), `series_uid` (string), `encoding`
//!   (`"uint8: p = value / 255"`), `luna_version`.
//!
//! Decisions:
//! - uint8 quantisation, not f16: a quarter of f32 and half of f16, exact round trips of the
//!   0.5 threshold (`p > 0.5` ⇔ `value >= 128`), and a step of 1/255 ≈ 0.004 is far below
//!   what a segmentation threshold or a reported max/mean probability needs. h5py reads it
//!   as plain uint8 (no float16 handling in downstream tools).
//! - One slice per chunk: `segment` writes slice by slice (bounded memory) and a viewer reads
//!   one slice without decoding the volume.
//! - The CT geometry travels with the volume, so downstream stages need not reopen the `.mhd`;
//!   a consumer that does open the CT checks both agree (`check_matches`).

use std::path::{Path, PathBuf};

use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File};

use super::zstd_filter::{register_zstd_filter, ZSTD_FILTER_ID};
use super::StoreError;
use crate::ct::{Geometry, Xyz};

/// Name of the probability dataset.
pub const PROB_DATASET: &str = "prob";
/// The encoding attribute's value.
pub const ENCODING: &str = "uint8: p = value / 255";

/// Quantises a probability (clamped to [0, 1]; NaN → 0) to the stored byte.
pub fn quantize(p: f32) -> u8 {
    if p.is_nan() {
        return 0;
    }
    (p.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// The probability a stored byte means.
pub fn dequantize(v: u8) -> f64 {
    f64::from(v) / 255.0
}

/// A probability volume read back.
#[derive(Debug, Clone)]
pub struct ProbVolume {
    /// Series UID.
    pub series_uid: String,
    /// Shape (index, row, col).
    pub shape: [usize; 3],
    /// The CT's geometry.
    pub geometry: Geometry,
    /// Quantised probabilities, C order.
    pub data: Vec<u8>,
}

fn h5err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(hdf5::Error) -> StoreError + 'a {
    move |e| StoreError::hdf5(path, PROB_DATASET, op, e)
}

/// Writes a whole probability volume (`data` in C order, `shape` product long).
pub fn write_prob_volume(
    path: &Path,
    series_uid: &str,
    shape: [usize; 3],
    geometry: &Geometry,
    data: &[u8],
    level: i32,
) -> Result<(), StoreError> {
    register_zstd_filter()?;
    let n: usize = shape.iter().product();
    if data.len() != n || n == 0 {
        return Err(StoreError::BufferSize {
            path: path.to_path_buf(),
            expected: n,
            found: data.len(),
        });
    }
    // no modification times in the object headers (as store/crops.rs): reproducible bytes
    let file = File::with_options()
        .with_fcpl(|p| p.obj_track_times(false))
        .create(path)
        .map_err(h5err(path, "create the file"))?;
    let ds = file
        .new_dataset::<u8>()
        .obj_track_times(false)
        .chunk((1, shape[1], shape[2]))
        .add_filter(ZSTD_FILTER_ID, &[level as u32])
        .shape(shape)
        .create(PROB_DATASET)
        .map_err(h5err(path, "create the dataset"))?;
    ds.write_raw(data).map_err(h5err(path, "write"))?;
    write_geometry_attrs(
        &ds,
        geometry,
        &[
            ("series_uid", series_uid),
            ("encoding", ENCODING),
            ("luna_version", env!("CARGO_PKG_VERSION")),
        ],
    )
    .map_err(h5err(path, "write attributes of"))?;
    // The chunk cache writes at flush: its errors (a full disk) surface here, not in a drop.
    file.flush().map_err(h5err(path, "flush the file"))
}

/// Writes a CT's geometry as attributes of `ds` (`origin_xyz`, `spacing_xyz`: f64 ×3;
/// `direction`: f64 ×9 row-major) plus the given string attributes. Shared by the
/// probability volumes and the segmentation stores.
pub(crate) fn write_geometry_attrs(
    ds: &Dataset,
    g: &Geometry,
    strings: &[(&str, &str)],
) -> hdf5::Result<()> {
    let dir: Vec<f64> = g.direction.iter().flatten().copied().collect();
    ds.new_attr::<f64>()
        .shape(3)
        .create("origin_xyz")?
        .write_raw(&[g.origin.x, g.origin.y, g.origin.z])?;
    ds.new_attr::<f64>()
        .shape(3)
        .create("spacing_xyz")?
        .write_raw(&[g.spacing.x, g.spacing.y, g.spacing.z])?;
    ds.new_attr::<f64>()
        .shape(9)
        .create("direction")?
        .write_raw(&dir)?;
    for &(name, value) in strings {
        let v: VarLenUnicode = value
            .parse()
            .map_err(|_| hdf5::Error::from(format!("attribute {name} holds a NUL byte")))?;
        ds.new_attr::<VarLenUnicode>()
            .create(name)?
            .write_scalar(&v)?;
    }
    Ok(())
}

/// Reads the geometry attributes [`write_geometry_attrs`] wrote on dataset `name` of `path`.
pub(crate) fn read_geometry_attrs(
    ds: &Dataset,
    path: &Path,
    name: &str,
) -> Result<Geometry, StoreError> {
    let err = |e| StoreError::hdf5(path, name, "read attributes of", e);
    let f64s = |attr: &str, n: usize| -> Result<Vec<f64>, StoreError> {
        let v: Vec<f64> = ds.attr(attr).and_then(|a| a.read_raw()).map_err(err)?;
        if v.len() != n {
            return Err(StoreError::WrongShape {
                path: path.to_path_buf(),
                dataset: format!("{name}@{attr}"),
                expected: format!("{n} values"),
                found: vec![v.len()],
            });
        }
        Ok(v)
    };
    let (o, s, d) = (
        f64s("origin_xyz", 3)?,
        f64s("spacing_xyz", 3)?,
        f64s("direction", 9)?,
    );
    Geometry::new(
        Xyz {
            x: o[0],
            y: o[1],
            z: o[2],
        },
        Xyz {
            x: s[0],
            y: s[1],
            z: s[2],
        },
        [[d[0], d[1], d[2]], [d[3], d[4], d[5]], [d[6], d[7], d[8]]],
        path,
    )
    .map_err(|e| StoreError::Invalid {
        path: path.to_path_buf(),
        message: format!("the geometry attributes of `{name}` are invalid: {e}"),
    })
}

/// Reads a string attribute of `ds` (dataset `name` of `path`).
pub(crate) fn read_string_attr(
    ds: &Dataset,
    path: &Path,
    name: &str,
    attr: &str,
) -> Result<String, StoreError> {
    ds.attr(attr)
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .map(|v| v.as_str().to_string())
        .map_err(|e| StoreError::hdf5(path, name, "read attributes of", e))
}

/// Reads a probability volume with its geometry.
pub fn read_prob_volume(path: &Path) -> Result<ProbVolume, StoreError> {
    register_zstd_filter()?;
    let file = File::open(path).map_err(h5err(path, "open the file"))?;
    let ds = file
        .dataset(PROB_DATASET)
        .map_err(|_| StoreError::MissingDataset {
            path: path.to_path_buf(),
            dataset: PROB_DATASET.into(),
            found: file.member_names().unwrap_or_default(),
        })?;
    let shape = ds.shape();
    if shape.len() != 3 {
        return Err(StoreError::WrongShape {
            path: path.to_path_buf(),
            dataset: PROB_DATASET.into(),
            expected: "(index, row, col)".into(),
            found: shape,
        });
    }
    let geometry = read_geometry_attrs(&ds, path, PROB_DATASET)?;
    let series_uid = read_string_attr(&ds, path, PROB_DATASET, "series_uid")?;
    let data: Vec<u8> = ds.read_raw().map_err(h5err(path, "read"))?;
    Ok(ProbVolume {
        series_uid,
        shape: [shape[0], shape[1], shape[2]],
        geometry,
        data,
    })
}

/// Errors unless a probability volume's shape and geometry equal its CT's (within 1e-6 mm).
pub fn check_matches(
    path: &Path,
    vol: &ProbVolume,
    ct_path: &Path,
    ct_shape: [usize; 3],
    ct: &Geometry,
) -> Result<(), StoreError> {
    let g = &vol.geometry;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6;
    let same_xyz = |a: &Xyz, b: &Xyz| close(a.x, b.x) && close(a.y, b.y) && close(a.z, b.z);
    let same_dir = g
        .direction
        .iter()
        .flatten()
        .zip(ct.direction.iter().flatten())
        .all(|(a, b)| close(*a, *b));
    if vol.shape != ct_shape
        || !same_xyz(&g.origin, &ct.origin)
        || !same_xyz(&g.spacing, &ct.spacing)
        || !same_dir
    {
        return Err(StoreError::Invalid {
            path: path.to_path_buf(),
            message: format!(
                "its geometry disagrees with the CT {}: shape {:?} vs {:?}, origin {:?} vs {:?}, spacing {:?} vs {:?}",
                ct_path.display(),
                vol.shape,
                ct_shape,
                g.origin,
                ct.origin,
                g.spacing,
                ct.spacing
            ),
        });
    }
    Ok(())
}

/// The path of a series' volume under an artifact directory: `probs/<uid>.h5`.
pub fn volume_path(dir: &Path, series_uid: &str) -> PathBuf {
    dir.join("probs").join(format!("{series_uid}.h5"))
}
