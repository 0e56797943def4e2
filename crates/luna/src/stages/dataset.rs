//! Shared glue for the data stages: where the LUNA files are (an explicit path, or the
//! artifact bound to the stage's `dataset` input, e.g. the `synth` stage), which CT series
//! are on disk, a CT's key material (the content hashes of its header and data files, free
//! from an upstream manifest when the CTs are an artifact) and the candidates-and-CTs inputs
//! that `build_crops` and `seg_dataset` share. Not a stage kind itself.
//!
//! CTs on disk ([`find_series`]) are `.mhd` files (uid = file stem, as LUNA16 names them) and
//! DICOM series (uid = SeriesInstanceUID, found by `ct::dicom::scan_tree`), as [`CtSource`]s;
//! every kind that reads CTs takes them from here, so a DICOM series is a CT wherever a `.mhd`
//! is. LUNA16's `seg-lungs-LUNA16` masks are skipped. A DICOM CT's key material is the sorted
//! content hashes of its slice files; a `.mhd`'s is unchanged (header, then data files), so
//! keys of existing pipelines stay. Rejected: a `format` switch in `ct_root` (mixed trees are
//! what archives hand out) and keying a series by its folder (folders are named by patient).
//!
//! An explicit `ct_root` enters a stage's key as the CTs the stage reads ([`ct_reads`]: the
//! series its input table names, or its `series` choice), each by its files' content, not as
//! the whole tree: a README or a new `subset9` next to the data leaves the key alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::artifact::{CANDIDATES, DATASET};
use super::glue::table_err;
use crate::ct::dicom::SeriesFiles;
use crate::ct::CtSource;
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, InputPath, InputSlot, ReadItem, StageRef};
use crate::tables::{read_rows, AnnotationRow, CandidateRow, MergedRow, SplitChoice, Table};

/// The `dataset` input of a stage that reads CTs: required unless `ct_root` names them.
pub fn dataset_slot(ct_root: Option<&InputPath>, named: Option<&StageRef>) -> InputSlot {
    if ct_root.is_none() {
        InputSlot::required("dataset", DATASET, named)
    } else {
        InputSlot::optional("dataset", DATASET, named)
    }
}

/// The external input of an explicit `ct_root` (none when the CTs come from a dataset stage),
/// keyed by the CTs the stage reads ([`ct_reads`]), not by the whole tree: `by` is the input
/// slot whose artifact names them (`None`: the parameters alone say).
pub fn ct_root_inputs(ct_root: Option<&InputPath>, by: Option<&'static str>) -> Vec<ExternalInput> {
    ct_root
        .iter()
        .map(|r| ExternalInput::new("ct_root", r.path()).narrowed_by(by))
        .collect()
}

/// What a stage reads of a CT root, as its key sees it: each series of `uids` (every series
/// when `None`) that is on disk, with the files whose content is the CT ([`CtSource::files`]).
/// Other files (a README, lung masks) and other series (a new `subset9`) are not read, so they
/// leave the key alone. Series not on disk are left out: the stage reports them when it runs.
pub fn ct_reads(root: &Path, uids: Option<&BTreeSet<String>>) -> Result<Vec<ReadItem>, StageError> {
    reads_of(find_series(root)?, uids)
}

/// [`ct_reads`] of series already found under the root ([`find_series`]).
pub fn reads_of(
    found: BTreeMap<String, CtSource>,
    uids: Option<&BTreeSet<String>>,
) -> Result<Vec<ReadItem>, StageError> {
    found
        .into_iter()
        .filter(|(uid, _)| uids.is_none_or(|u| u.contains(uid)))
        .map(|(uid, src)| {
            let files = src.files().map_err(StageError::domain)?;
            Ok(ReadItem { item: uid, files })
        })
        .collect()
}

/// [`ct_reads`] of the series of split `choice` in the candidates table of artifact
/// `candidates` (every series when there is none): what `build_crops` and `seg_dataset` read
/// (a training's crops of `train_val` read no test CT, so a test CT leaves their key alone).
pub fn candidate_ct_reads(
    root: &Path,
    candidates: Option<&Path>,
    choice: SplitChoice,
) -> Result<Vec<ReadItem>, StageError> {
    let uids = candidates
        .map(|dir| candidate_uids(dir, choice))
        .transpose()?;
    ct_reads(root, uids.as_ref())
}

/// The series uids of the annotation and raw candidate tables in a `load_annotations`
/// artifact `dir`: the series `merge_candidates` may keep.
pub fn annotation_uids(dir: &Path) -> Result<BTreeSet<String>, StageError> {
    let ann =
        read_rows::<AnnotationRow>(&dir.join(Table::Annotations.file_name())).map_err(table_err)?;
    let cand = read_rows::<CandidateRow>(&dir.join(Table::CandidatesRaw.file_name()))
        .map_err(table_err)?;
    Ok(ann
        .into_iter()
        .map(|r| r.series_uid)
        .chain(cand.into_iter().map(|r| r.series_uid))
        .collect())
}

/// The series uids of the candidates table in artifact `dir` whose split `choice` includes.
pub fn candidate_uids(dir: &Path, choice: SplitChoice) -> Result<BTreeSet<String>, StageError> {
    let rows =
        read_rows::<MergedRow>(&dir.join(Table::Candidates.file_name())).map_err(table_err)?;
    Ok(rows
        .into_iter()
        .filter(|r| choice.includes(r.split))
        .map(|r| r.series_uid)
        .collect())
}

/// Resolves a file parameter: the given path (relative to the workspace), or the first of
/// `defaults` found in an upstream artifact (e.g. the `synth` dataset).
pub fn resolve_file(
    ctx: &StageContext,
    given: Option<&InputPath>,
    defaults: &[&str],
    param: &str,
) -> Result<PathBuf, StageError> {
    if let Some(p) = given {
        return Ok(ctx.resolve(p.path()));
    }
    if let Some(up) = ctx.input_opt("dataset")? {
        for d in defaults {
            let p = up.dir.join(d);
            if p.is_file() {
                return Ok(p);
            }
        }
        return Err(StageError::msg(format!(
            "stage `{}`: no `{param}` given and the dataset `{}` holds no {}",
            ctx.stage(),
            up.stage,
            defaults.join(" or ")
        ))
        .with_hint(format!(
            "set `with: {{ {param}: path/to/{} }}`",
            defaults[0]
        )));
    }
    Err(StageError::msg(format!(
        "stage `{}`: no `{param}` given and no `dataset` upstream",
        ctx.stage(),
    ))
    .with_hint(format!(
        "set `with: {{ {param}: path/to/{} }}` or add the dataset stage (e.g. `synth`) to `needs:`",
        defaults[0]
    )))
}

/// The CT root: the given directory, or the upstream artifact that holds `subset*` folders
/// (the `synth` dataset).
pub fn resolve_ct_root(
    ctx: &StageContext,
    given: Option<&InputPath>,
) -> Result<PathBuf, StageError> {
    if let Some(p) = given {
        return Ok(ctx.resolve(p.path()));
    }
    if let Some(up) = ctx.input_opt("dataset")? {
        if up.dir.join("seriesuids.csv").is_file() || has_mhd(&up.dir) {
            return Ok(up.dir.clone());
        }
        return Err(StageError::msg(format!(
            "stage `{}`: the dataset `{}` holds no CT files",
            ctx.stage(),
            up.stage
        ))
        .with_hint("set `with: { ct_root: /data/luna16 }` (the folder holding subset0..9)"));
    }
    Err(StageError::msg(format!("stage `{}`: no `ct_root` given and no upstream dataset with CT files", ctx.stage()))
        .with_hint("set `with: { ct_root: /data/luna16 }` (the folder holding subset0..9) or add the `synth` stage to `needs:`"))
}

fn has_mhd(dir: &Path) -> bool {
    walkdir::WalkDir::new(dir)
        .max_depth(2)
        .into_iter()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "mhd"))
}

/// LUNA16's lung-mask folder: `.mhd` files named like the CTs they mask, which are not CTs.
pub const LUNG_MASKS_DIR: &str = "seg-lungs-LUNA16";

/// Every CT below `root` (any depth), by series uid: each `<uid>.mhd` (uid = the file stem)
/// and each DICOM series (uid = its SeriesInstanceUID), so mixed trees work. Folders named
/// [`LUNG_MASKS_DIR`] hold masks and are skipped. A uid found twice (two `.mhd`, a `.mhd` and
/// a series, or two series folders) is an error naming both places.
pub fn find_series(root: &Path) -> Result<BTreeMap<String, CtSource>, StageError> {
    if !root.is_dir() {
        return Err(
            StageError::msg(format!("CT root {} is not a directory", root.display())).with_hint(
                "point `ct_root` at the folder that holds subset0..9/*.mhd or DICOM series folders",
            ),
        );
    }
    let mut out: BTreeMap<String, CtSource> = BTreeMap::new();
    for mhd in find_mhds(root)? {
        insert_unique(&mut out, CtSource::MetaImage(mhd))?;
    }
    // the reader's messages say what to do themselves
    let series = crate::ct::dicom::scan_tree(root).map_err(StageError::domain)?;
    for s in series {
        let rel = s.dir.strip_prefix(root).unwrap_or(&s.dir);
        if rel.components().any(|c| c.as_os_str() == LUNG_MASKS_DIR) {
            continue;
        }
        check_dicom_uid(&s)?;
        if let Some((a, b)) = two_folders(&s) {
            return Err(twice(&s.uid, &a, &b));
        }
        insert_unique(&mut out, CtSource::Dicom(s))?;
    }
    Ok(out)
}

fn is_lung_masks(dir: &Path) -> bool {
    dir.file_name().is_some_and(|n| n == LUNG_MASKS_DIR)
}

/// Every `.mhd` below `root` outside [`LUNG_MASKS_DIR`] folders, in file-name order.
fn find_mhds(root: &Path) -> Result<Vec<PathBuf>, StageError> {
    let mut out = Vec::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !(e.depth() > 0 && e.file_type().is_dir() && is_lung_masks(e.path())));
    for e in walk {
        let e = e.map_err(|e| StageError::msg(format!("cannot list {}: {e}", root.display())))?;
        if e.file_type().is_file() && e.path().extension().is_some_and(|x| x == "mhd") {
            out.push(e.into_path());
        }
    }
    Ok(out)
}

/// Adds `src` under its uid; a uid already taken is an error naming both places.
fn insert_unique(out: &mut BTreeMap<String, CtSource>, src: CtSource) -> Result<(), StageError> {
    let uid = src.uid().into_owned();
    if let Some(prev) = out.get(&uid) {
        return Err(twice(&uid, prev.display(), src.display()));
    }
    out.insert(uid, src);
    Ok(())
}

fn twice(uid: &str, a: &Path, b: &Path) -> StageError {
    StageError::msg(format!(
        "series {uid} is on disk twice: {} and {}",
        a.display(),
        b.display()
    ))
    .with_hint("remove one copy; luna identifies a CT by its series uid (the .mhd file stem or the DICOM SeriesInstanceUID)")
}

/// The first two folders of a series whose slice files sit in more than one folder: a copy of
/// the series (SimpleITK, too, reads a series from one folder), reported as a uid on disk twice.
pub fn two_folders(s: &SeriesFiles) -> Option<(PathBuf, PathBuf)> {
    let first = s.files.first()?.parent()?;
    let other = s
        .files
        .iter()
        .filter_map(|f| f.parent())
        .find(|p| *p != first)?;
    Some((first.to_path_buf(), other.to_path_buf()))
}

/// Whether `uid` is a DICOM UID (digits and dots, at most 64 characters, not starting with a
/// dot): what a SeriesInstanceUID must be to name files and cache partitions.
pub fn is_dicom_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && !uid.starts_with('.')
        && uid.bytes().all(|c| c.is_ascii_digit() || c == b'.')
}

/// A series whose SeriesInstanceUID is not a DICOM UID is an error naming its folder.
fn check_dicom_uid(s: &SeriesFiles) -> Result<(), StageError> {
    if is_dicom_uid(&s.uid) {
        return Ok(());
    }
    Err(StageError::msg(format!(
        "{}: the series' SeriesInstanceUID {:?} is not a DICOM UID (digits and dots, at most 64 characters)",
        s.dir.display(),
        s.uid
    ))
    .with_hint("fix the SeriesInstanceUID of its files, or move the folder out of the CT root"))
}

/// The inputs of a stage over candidates and their CTs: `candidates` (merge_candidates) and
/// `dataset` (required unless `ct_root` is given).
pub fn candidate_ct_slots(
    candidates: Option<&StageRef>,
    ct_root: Option<&InputPath>,
    dataset: Option<&StageRef>,
) -> Vec<InputSlot> {
    vec![
        InputSlot::required("candidates", CANDIDATES, candidates),
        dataset_slot(ct_root, dataset),
    ]
}

/// The rows of the candidates table bound to the stage's `candidates` input, and its path.
pub fn read_candidates(ctx: &StageContext) -> Result<(PathBuf, Vec<MergedRow>), StageError> {
    let file = ctx
        .input("candidates")?
        .dir
        .join(Table::Candidates.file_name());
    let rows = read_rows::<MergedRow>(&file).map_err(table_err)?;
    Ok((file, rows))
}

/// Errors unless every series of the candidate table has its CT under `root`.
pub fn check_on_disk<'a>(
    root: &Path,
    on_disk: &BTreeMap<String, CtSource>,
    mut uids: impl Iterator<Item = &'a String>,
) -> Result<(), StageError> {
    match uids.find(|u| !on_disk.contains_key(*u)) {
        Some(uid) => Err(StageError::msg(format!(
            "the candidate table has series {uid} but {}",
            no_ct(root, uid)
        ))
        .with_hint("set `require_on_disk: true` on merge_candidates, or add the missing CT")),
        None => Ok(()),
    }
}

/// `<root> holds no <uid>.mhd and no DICOM series <uid>`: the end of a missing-CT message.
pub fn no_ct(root: &Path, uid: &str) -> String {
    format!(
        "{} holds no {uid}.mhd and no DICOM series {uid}",
        root.display()
    )
}

/// Voxels of a CT, for scheduling (not part of any key): the product of the header's
/// DimSize, or a DICOM series' file bytes / 2 (16-bit pixels; headers are small). An
/// unreadable header counts as empty; the worker reports its error.
pub fn estimated_voxels(src: &CtSource) -> u64 {
    match src {
        CtSource::MetaImage(mhd) => crate::ct::header::read_header(mhd)
            .map(|h| h.dim_size.iter().map(|&d| d as u64).product::<u64>())
            .unwrap_or(0),
        CtSource::Dicom(s) => series_bytes(s) / 2,
    }
}

fn series_bytes(s: &SeriesFiles) -> u64 {
    s.files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Slices of a CT (progress counts, not part of any key): DimSize's last entry, or the series'
/// slice files.
pub fn slice_count(src: &CtSource) -> u64 {
    match src {
        CtSource::MetaImage(mhd) => crate::ct::header::read_header(mhd)
            .map(|h| h.dim_size.get(2).copied().unwrap_or(0) as u64)
            .unwrap_or(0),
        CtSource::Dicom(s) => s.files.len() as u64,
    }
}

/// Rough work estimate of one CT for scheduling (not part of any key): inflating a compressed
/// volume costs ~40× a memory-mapped read of the same bytes, and compressing a crop ~20×; a
/// DICOM series costs its file bytes. An unreadable header counts as free; the worker reports
/// its error.
pub fn estimated_cost(src: &CtSource, crop_bytes: u64) -> u64 {
    let crops = crop_bytes.saturating_mul(20);
    let mhd = match src {
        CtSource::MetaImage(mhd) => mhd,
        CtSource::Dicom(s) => return series_bytes(s) + crops,
    };
    let Ok(h) = crate::ct::header::read_header(mhd) else {
        return 0;
    };
    let bytes =
        h.dim_size.iter().map(|&d| d as u64).product::<u64>() * h.element_type.size() as u64;
    bytes.saturating_mul(if h.compressed { 40 } else { 1 }) + crops
}

/// Per-file blake3 from the manifest of the upstream artifact that holds the CTs (free), so
/// CTs generated by `synth` are not re-read just to be hashed (`cluster` and `segment` use it
/// too).
pub fn upstream_file_hashes(ctx: &StageContext, root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for u in ctx.upstreams().iter().filter(|u| u.dir == root) {
        if let Ok(m) = crate::engine::cache::read_manifest(&u.dir.join("manifest.json")) {
            for f in m.files {
                out.insert(u.dir.join(&f.path), f.blake3);
            }
        }
    }
    out
}

/// The key material of a CT (`cluster`, `segment` and `classify_candidates` use it too): the
/// blake3 of the `.mhd` and every data file it names, in that order; or of every slice file of
/// a DICOM series, sorted (the content, not the file names, names the CT).
pub fn ct_file_hashes(
    ctx: &StageContext,
    src: &CtSource,
    known: &BTreeMap<PathBuf, String>,
) -> Result<Vec<String>, StageError> {
    let files = src.files().map_err(StageError::domain)?;
    let hash = |f: &PathBuf| match known.get(f) {
        Some(h) => Ok(h.clone()),
        None => ctx.hash_file(f),
    };
    let CtSource::MetaImage(mhd) = src else {
        let mut hashes = files.iter().map(hash).collect::<Result<Vec<_>, _>>()?;
        hashes.sort();
        return Ok(hashes);
    };
    files
        .iter()
        .enumerate()
        .map(|(i, f)| match hash(f) {
            Ok(h) => Ok(h),
            Err(e) if i == 0 => Err(e),
            // A data file: name the header that points at it, not only the missing path.
            Err(e) => Err(StageError::msg(format!(
                "{}: ElementDataFile {} cannot be read: {}",
                mhd.display(),
                f.display(),
                io_cause(&e)
            ))
            .with_hint(
                "restore the data file next to the .mhd, or fix ElementDataFile in the header",
            )),
        })
        .collect()
}

/// The OS cause of an I/O stage error (without the path, which the caller names itself).
fn io_cause(e: &StageError) -> String {
    match e {
        StageError::Io { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// The LUNA16 subset number of each CT: `N` of the nearest `subsetN` folder (below `root`)
/// holding it; CTs in no such folder are left out (their `subset` is null).
pub fn series_subsets(root: &Path, found: &BTreeMap<String, CtSource>) -> BTreeMap<String, u32> {
    found
        .iter()
        .filter_map(|(uid, src)| {
            let rel = src.display().strip_prefix(root).unwrap_or(src.display());
            let dir = match src {
                CtSource::MetaImage(_) => rel.parent().unwrap_or(Path::new("")),
                CtSource::Dicom(_) => rel,
            };
            dir.components()
                .rev()
                .find_map(|c| subset_number(&c.as_os_str().to_string_lossy()))
                .map(|n| (uid.clone(), n))
        })
        .collect()
}

/// `N` of a folder named `subsetN` (digits only).
fn subset_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("subset")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_come_from_the_nearest_subset_folder() {
        let root = Path::new("/data/luna16");
        let mut found = BTreeMap::new();
        for (uid, rel) in [
            ("1.1", "subset3/1.1.mhd"),
            ("1.2", "subset12/extra/1.2.mhd"),
            ("1.3", "loose/1.3.mhd"),
            ("1.4", "subsetX/1.4.mhd"),
            ("1.5", "subset0/subset7/1.5.mhd"),
        ] {
            found.insert(uid.to_string(), CtSource::MetaImage(root.join(rel)));
        }
        let got = series_subsets(root, &found);
        let want: BTreeMap<String, u32> = [("1.1", 3), ("1.2", 12), ("1.5", 7)]
            .into_iter()
            .map(|(u, n)| (u.to_string(), n))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn only_dicom_uids_name_series() {
        for ok in ["1.2.840.10008.1", "1", &"9.".repeat(32)[..63]] {
            assert!(is_dicom_uid(ok), "{ok}");
        }
        for bad in ["", ".1.2", "1.2/../x", "1.2 ", "Jane^Doe", &"1".repeat(65)] {
            assert!(!is_dicom_uid(bad), "{bad}");
        }
    }

    #[test]
    fn a_series_in_two_folders_names_both() {
        let s = |files: &[&str]| SeriesFiles {
            uid: "1.2".into(),
            dir: PathBuf::from("/a"),
            files: files.iter().map(PathBuf::from).collect(),
            skipped: Vec::new(),
        };
        assert_eq!(two_folders(&s(&["/a/1.dcm", "/a/2.dcm"])), None);
        assert_eq!(
            two_folders(&s(&["/a/1.dcm", "/a/2.dcm", "/b/1.dcm"])),
            Some((PathBuf::from("/a"), PathBuf::from("/b")))
        );
    }
}
