//! Finding DICOM CT series in a folder tree from file headers only.
//!
//! A file is looked at unless its extension says it is something else ([`IGNORED`]: `.mhd`,
//! `.raw`, `.xml`, ...) or it is hidden. It is DICOM when it carries the Part-10 `DICM` marker
//! at byte 128 (a 132-byte read); then its header is parsed up to PixelData, in parallel. Files
//! are grouped by SeriesInstanceUID. Passed over, each with a note ([`SkippedFile`]): a file
//! without the marker (unless named `.dcm`: then it is an error, [`CtError::DicomNotDicom`]),
//! an object without pixels (DICOMDIR, SR, ...), a modality other than CT, a localizer
//! (ImageType LOCALIZER, or a single image whose orientation differs from the rest of its
//! series — the scout that SimpleITK's series grouping also leaves out).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use dicom_object::OpenFileOptions;
use rayon::prelude::*;

use super::super::error::CtError;
use super::attrs::{self, tag, Obj};

/// Extensions of files that are never DICOM slices and are not opened (lower case).
pub const IGNORED: &[&str] = &[
    "mhd", "raw", "zraw", "xml", "csv", "txt", "json", "md", "zip", "gz", "npy", "npz", "h5",
    "hdf5", "png", "jpg", "jpeg", "pdf", "html", "yaml", "yml", "toml", "py", "parquet", "nii",
    "nrrd", "log",
];

/// The slice files of one CT series, and the files beside them that were skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesFiles {
    /// SeriesInstanceUID: the CT's name everywhere in luna.
    pub uid: String,
    /// The folder holding the slices (the first slice's folder when they are spread out).
    pub dir: PathBuf,
    /// The slice files, sorted by path (the read orders them by position).
    pub files: Vec<PathBuf>,
    /// Files of this series' folder that are not slices of it (localizers, other modalities).
    pub skipped: Vec<SkippedFile>,
}

/// A file that a scan passed over, with why (never a patient attribute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// Why it is not a slice (e.g. "ImageType contains LOCALIZER").
    pub reason: String,
}

/// A series uid and its slice count, for messages that list series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCount {
    /// SeriesInstanceUID.
    pub uid: String,
    /// Number of slice files.
    pub slices: usize,
}

/// What a scan found: the CT series, and the skipped files no series' folder holds.
struct Scan {
    series: Vec<SeriesFiles>,
    orphans: Vec<SkippedFile>,
    non_ct: Vec<(PathBuf, String)>,
}

/// ImageOrientationPatient rounded to 1e-4 (a grouping key), when present.
type Orientation = Option<[i64; 6]>;

/// One file's verdict after its header.
enum Probe {
    Skip(String),
    NonCt(String),
    Slice { uid: String, iop: Orientation },
}

/// Every DICOM CT series below `root` (any depth), by SeriesInstanceUID, reading only headers.
pub fn scan_tree(root: &Path) -> Result<Vec<SeriesFiles>, CtError> {
    Ok(scan(root)?.series)
}

/// The one CT series of `dir` (or the one named `series`): what `luna detect DIR` reads.
pub fn select_series(dir: &Path, series: Option<&str>) -> Result<SeriesFiles, CtError> {
    let found = scan(dir)?;
    let counts = || {
        found
            .series
            .iter()
            .map(|s| SeriesCount {
                uid: s.uid.clone(),
                slices: s.files.len(),
            })
            .collect::<Vec<_>>()
    };
    if let Some(uid) = series {
        return match found.series.iter().find(|s| s.uid == uid) {
            Some(s) => Ok(s.clone()),
            None => Err(CtError::DicomSeriesNotFound {
                dir: dir.to_path_buf(),
                uid: uid.to_string(),
                series: counts(),
            }),
        };
    }
    match found.series.len() {
        1 => Ok(found.series[0].clone()),
        0 => Err(match found.non_ct.into_iter().next() {
            Some((path, modality)) => CtError::DicomNotCt { path, modality },
            None => CtError::DicomNoSeries {
                dir: dir.to_path_buf(),
                skipped: found.orphans,
            },
        }),
        _ => Err(CtError::DicomSeveralSeries {
            dir: dir.to_path_buf(),
            series: counts(),
        }),
    }
}

fn scan(root: &Path) -> Result<Scan, CtError> {
    if !root.is_dir() {
        return Err(CtError::DicomNotAFolder {
            path: root.to_path_buf(),
        });
    }
    let candidates = candidates(root)?;
    let probes: Vec<(PathBuf, Probe)> = candidates
        .into_par_iter()
        .map(|p| probe(&p).map(|v| (p, v)))
        .collect::<Result<_, _>>()?;
    Ok(group(probes))
}

/// Files below `root` that may be DICOM, sorted by path.
fn candidates(root: &Path) -> Result<Vec<PathBuf>, CtError> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(root).follow_links(true) {
        let e = e.map_err(|e| {
            let path = e.path().unwrap_or(root).to_path_buf();
            CtError::io(path, e.into())
        })?;
        let name = e.file_name().to_string_lossy();
        if !e.file_type().is_file() || name.starts_with('.') {
            continue;
        }
        let ext = e
            .path()
            .extension()
            .map(|x| x.to_string_lossy().to_ascii_lowercase());
        if ext.is_some_and(|x| IGNORED.contains(&x.as_str())) {
            continue;
        }
        out.push(e.into_path());
    }
    out.sort();
    Ok(out)
}

/// Whether `path` starts with the Part-10 preamble and `DICM` marker.
pub fn has_dicm_marker(path: &Path) -> Result<bool, CtError> {
    let mut f = std::fs::File::open(path).map_err(|e| CtError::io(path, e))?;
    let mut head = [0u8; 132];
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(CtError::io(path, e)),
        }
    }
    Ok(n == head.len() && &head[128..] == b"DICM")
}

/// Whether `path` is named as a DICOM file (`.dcm`, `.dicom`), so that not being one is an error.
fn named_dicom(path: &Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("dcm") || x.eq_ignore_ascii_case("dicom"))
}

fn probe(path: &Path) -> Result<Probe, CtError> {
    if !has_dicm_marker(path)? {
        if named_dicom(path) {
            return Err(CtError::DicomNotDicom {
                path: path.to_path_buf(),
            });
        }
        return Ok(Probe::Skip(
            "not a DICOM file (no DICM marker at byte 128)".into(),
        ));
    }
    let obj = OpenFileOptions::new()
        .read_until(tag::STOP)
        .open_file(path)
        .map_err(|_| CtError::DicomCorrupt {
            path: path.to_path_buf(),
            what: "its header cannot be parsed",
        })?;
    classify(&obj, path)
}

fn classify(obj: &Obj, path: &Path) -> Result<Probe, CtError> {
    if attrs::text(obj, tag::ROWS).is_none() {
        let class = obj.meta().media_storage_sop_class_uid();
        let class = class.trim_end_matches(['\0', ' ']);
        return Ok(Probe::Skip(format!("not an image (SOP class {class})")));
    }
    let modality = attrs::text(obj, tag::MODALITY).unwrap_or_else(|| "(none)".into());
    if modality != "CT" {
        return Ok(Probe::NonCt(modality));
    }
    if attrs::texts(obj, tag::IMAGE_TYPE)
        .iter()
        .any(|t| t.eq_ignore_ascii_case("LOCALIZER"))
    {
        return Ok(Probe::Skip(
            "ImageType contains LOCALIZER (a scout image, not a slice)".into(),
        ));
    }
    let uid = attrs::req_text(obj, tag::SERIES_UID, path)?;
    let iop = attrs::floats(obj, tag::IOP, 6, path)
        .ok()
        .map(|v| [0, 1, 2, 3, 4, 5].map(|i| (v[i] * 1e4).round() as i64));
    Ok(Probe::Slice { uid, iop })
}

/// Group probed files into series; single images with a stray orientation become skipped
/// localizers; skip notes attach to the series of their folder.
fn group(probes: Vec<(PathBuf, Probe)>) -> Scan {
    let mut by_uid: BTreeMap<String, Vec<(PathBuf, Orientation)>> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut non_ct = Vec::new();
    for (path, p) in probes {
        match p {
            Probe::Skip(reason) => skipped.push(SkippedFile { path, reason }),
            Probe::NonCt(m) => {
                let reason = format!("Modality {m} is not CT");
                skipped.push(SkippedFile {
                    path: path.clone(),
                    reason,
                });
                non_ct.push((path, m));
            }
            Probe::Slice { uid, iop } => by_uid.entry(uid).or_default().push((path, iop)),
        }
    }
    let mut series: Vec<SeriesFiles> = by_uid
        .into_iter()
        .map(|(uid, files)| split_localizers(uid, files, &mut skipped))
        .collect();
    let mut orphans = Vec::new();
    for s in skipped {
        match series
            .iter_mut()
            .find(|x| s.path.parent() == Some(x.dir.as_path()))
        {
            Some(x) => x.skipped.push(s),
            None => orphans.push(s),
        }
    }
    Scan {
        series,
        orphans,
        non_ct,
    }
}

/// The series of `files`, less each image that is alone with its orientation while the rest
/// share another one (a localizer without the LOCALIZER ImageType).
fn split_localizers(
    uid: String,
    files: Vec<(PathBuf, Orientation)>,
    skipped: &mut Vec<SkippedFile>,
) -> SeriesFiles {
    let mut counts: BTreeMap<Orientation, usize> = BTreeMap::new();
    for (_, o) in &files {
        *counts.entry(*o).or_default() += 1;
    }
    let main = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(o, n)| (*o, *n));
    let mut keep = Vec::new();
    for (path, o) in files {
        let stray = counts.get(&o) == Some(&1) && main.is_some_and(|(m, n)| m != o && n > 1);
        if stray {
            skipped.push(SkippedFile {
                path,
                reason: format!(
                    "its ImageOrientationPatient differs from the other slices of series {uid} \
                     (a localizer)"
                ),
            });
        } else {
            keep.push(path);
        }
    }
    let dir = keep
        .first()
        .and_then(|p| p.parent())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    SeriesFiles {
        uid,
        dir,
        files: keep,
        skipped: Vec::new(),
    }
}
