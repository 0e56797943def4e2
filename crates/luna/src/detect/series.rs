//! The inputs of `luna detect` (and of `/v1/detect`): `.mhd` files and DICOM folders — a folder
//! holding one series, or a `patient/study/series/*.dcm` tree from which `--series UID` picks
//! one — staged side by side into the detection's CT root.
//!
//! Design: a folder is resolved by the reader (`ct::dicom::select_series`: its errors — two
//! series without `--series`, no series, a non-CT — are the user's, exit 2), its uid checked
//! to be a DICOM UID (it names files and cache partitions), and its slice files hard-linked (or
//! copied across file systems) as `subset0/<uid>/IM<k>.dcm` beside the staged `.mhd` files, so
//! the appended stages find it by their ordinary `ct_root` scan, keyed by SeriesInstanceUID.
//! The staged names are numbered, never the archive's (which may name the patient); skipped
//! files (localizers) are not staged and are returned as notes for the CLI to print.
//! Rejected: a `ct_root` per input (the appended stages take one root) and converting the
//! series to a `.mhd` first (a second copy of the CT, and its numbers would come from another
//! reader than the dataset's).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{link_or_copy, stage_cts, DetectError, StagedCt};
use crate::ct::dicom::{select_series, SeriesFiles};
use crate::ct::CtError;
use crate::stages::dataset::{is_dicom_uid, two_folders};

/// Errors of `luna detect`'s inputs (all the user's: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// A `.mhd` input or the staging failed (boxed: `CtError` is large).
    #[error(transparent)]
    Detect(Box<DetectError>),
    /// The DICOM reader refused a folder.
    #[error(transparent)]
    Dicom(Box<CtError>),
    /// A series whose SeriesInstanceUID cannot name a CT.
    #[error("{dir}: the series' SeriesInstanceUID {uid:?} is not a DICOM UID (digits and dots, at most 64 characters)")]
    BadUid {
        /// The series folder.
        dir: PathBuf,
        /// The uid read.
        uid: String,
    },
    /// The same uid from two inputs.
    #[error("series {uid} is given twice: {a} and {b}")]
    SameUid {
        /// The uid.
        uid: String,
        /// First input.
        a: PathBuf,
        /// Second input.
        b: PathBuf,
    },
    /// `--series` without a DICOM folder.
    #[error("--series {series}: no DICOM folder is given (it picks a series of a folder)")]
    SeriesWithoutFolder {
        /// The uid given.
        series: String,
    },
}

impl From<DetectError> for InputError {
    fn from(e: DetectError) -> Self {
        InputError::Detect(Box::new(e))
    }
}

impl From<CtError> for InputError {
    fn from(e: CtError) -> Self {
        InputError::Dicom(Box::new(e))
    }
}

impl InputError {
    /// What to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            InputError::Detect(e) => e.hint(),
            // the reader's messages say what to do themselves
            InputError::Dicom(_) => None,
            InputError::BadUid { .. } => Some("fix the SeriesInstanceUID of its files".into()),
            InputError::SameUid { .. } => {
                Some("pass each CT once: luna identifies a CT by its series uid".into())
            }
            InputError::SeriesWithoutFolder { .. } => {
                Some("pass the folder (or tree) that holds the series".into())
            }
        }
    }
}

/// What was staged: the CTs in the given order, and the notes on skipped files.
pub struct Staged {
    /// One per input.
    pub cts: Vec<StagedCt>,
    /// `path: reason` of each file a series folder held but that is not one of its slices.
    pub notes: Vec<String>,
}

/// One resolved input.
enum Input {
    MetaImage(PathBuf),
    Series(SeriesFiles),
}

/// Resolves and stages `inputs` (`.mhd` files and DICOM folders) into `dir/subset0/`
/// (see the module doc); `series` picks the series of a folder that holds several.
pub fn stage_inputs(
    inputs: &[PathBuf],
    series: Option<&str>,
    dir: &Path,
) -> Result<Staged, InputError> {
    let resolved = inputs
        .iter()
        .map(|p| resolve(p, series))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(s) = series {
        if !resolved.iter().any(|r| matches!(r, Input::Series(_))) {
            return Err(InputError::SeriesWithoutFolder { series: s.into() });
        }
    }
    check_unique(&resolved)?;
    let mhds: Vec<PathBuf> = resolved
        .iter()
        .filter_map(|r| match r {
            Input::MetaImage(p) => Some(p.clone()),
            Input::Series(_) => None,
        })
        .collect();
    let mut staged_mhds = stage_cts(&mhds, dir)?.into_iter();
    let mut out = Staged {
        cts: Vec::with_capacity(resolved.len()),
        notes: Vec::new(),
    };
    for r in resolved {
        match r {
            // stage_cts returns one entry per file, in the order given
            Input::MetaImage(_) => out.cts.extend(staged_mhds.next()),
            Input::Series(s) => {
                stage_series(&s, &dir.join("subset0").join(&s.uid))?;
                out.notes.extend(
                    s.skipped
                        .iter()
                        .map(|k| format!("{}: skipped ({})", k.path.display(), k.reason)),
                );
                out.cts.push(StagedCt {
                    uid: s.uid,
                    source: s.dir,
                });
            }
        }
    }
    Ok(out)
}

/// A `.mhd` as it is; a folder's series (`series` picks one of several), checked to be one
/// series of one folder with a DICOM UID.
fn resolve(p: &Path, series: Option<&str>) -> Result<Input, InputError> {
    if !p.is_dir() {
        return Ok(Input::MetaImage(p.to_path_buf()));
    }
    let s = select_series(p, series)?;
    if !is_dicom_uid(&s.uid) {
        return Err(InputError::BadUid {
            dir: s.dir,
            uid: s.uid,
        });
    }
    if let Some((a, b)) = two_folders(&s) {
        return Err(InputError::SameUid { uid: s.uid, a, b });
    }
    Ok(Input::Series(s))
}

/// Errors when a DICOM series shares its uid with another input (a series or a `.mhd` stem);
/// two `.mhd` with one stem are `stage_cts`'s error.
fn check_unique(inputs: &[Input]) -> Result<(), InputError> {
    let mut series: BTreeMap<&str, &Path> = BTreeMap::new();
    for r in inputs {
        if let Input::Series(s) = r {
            if let Some(a) = series.insert(&s.uid, &s.dir) {
                return Err(InputError::SameUid {
                    uid: s.uid.clone(),
                    a: a.into(),
                    b: s.dir.clone(),
                });
            }
        }
    }
    for r in inputs {
        let Input::MetaImage(p) = r else { continue };
        let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
        if let Some((uid, a)) = stem.and_then(|u| series.get_key_value(u.as_str())) {
            return Err(InputError::SameUid {
                uid: uid.to_string(),
                a: a.to_path_buf(),
                b: p.clone(),
            });
        }
    }
    Ok(())
}

/// Links the series' slice files into `to` as `IM00000.dcm`, `IM00001.dcm`, … (in the
/// series' file order).
fn stage_series(s: &SeriesFiles, to: &Path) -> Result<(), InputError> {
    std::fs::create_dir_all(to).map_err(|e| DetectError::Stage {
        from: s.dir.clone(),
        to: to.into(),
        source: e,
    })?;
    for (k, f) in s.files.iter().enumerate() {
        link_or_copy(f, &to.join(format!("IM{k:05}.dcm")))?;
    }
    Ok(())
}
