//! Shared glue for the data stages: where the LUNA files are (an explicit path, or the
//! artifact bound to the stage's `dataset` input, e.g. the `synth` stage), which CT series
//! are on disk, a CT's key material (the content hashes of its header and data files, free
//! from an upstream manifest when the CTs are an artifact) and the candidates-and-CTs inputs
//! that `build_crops` and `seg_dataset` share. Not a stage kind itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::artifact::{CANDIDATES, DATASET};
use super::glue::table_err;
use crate::ct::DataFile;
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, InputPath, InputSlot, StageRef};
use crate::tables::{read_rows, MergedRow, Table};

/// The `dataset` input of a stage that reads CTs: required unless `ct_root` names them.
pub fn dataset_slot(ct_root: Option<&InputPath>, named: Option<&StageRef>) -> InputSlot {
    if ct_root.is_none() {
        InputSlot::required("dataset", DATASET, named)
    } else {
        InputSlot::optional("dataset", DATASET, named)
    }
}

/// The external input of an explicit `ct_root` (none when the CTs come from a dataset stage).
pub fn ct_root_inputs(ct_root: Option<&InputPath>) -> Vec<ExternalInput> {
    ct_root
        .iter()
        .map(|r| ExternalInput::new("ct_root", r.path()))
        .collect()
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

/// Every `<uid>.mhd` below `root` (any depth), by series uid. A uid found twice is an error.
pub fn find_series(root: &Path) -> Result<BTreeMap<String, PathBuf>, StageError> {
    if !root.is_dir() {
        return Err(
            StageError::msg(format!("CT root {} is not a directory", root.display()))
                .with_hint("point `ct_root` at the folder that holds subset0..9/*.mhd"),
        );
    }
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    for e in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let e = e.map_err(|e| StageError::msg(format!("cannot list {}: {e}", root.display())))?;
        let p = e.path();
        if e.file_type().is_file() && p.extension().is_some_and(|x| x == "mhd") {
            let uid = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            if let Some(prev) = out.insert(uid.clone(), p.to_path_buf()) {
                return Err(StageError::msg(format!(
                    "series {uid} is on disk twice: {} and {}",
                    prev.display(),
                    p.display()
                ))
                .with_hint("remove one copy; luna identifies a CT by its series uid"));
            }
        }
    }
    Ok(out)
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
    on_disk: &BTreeMap<String, PathBuf>,
    mut uids: impl Iterator<Item = &'a String>,
) -> Result<(), StageError> {
    match uids.find(|u| !on_disk.contains_key(*u)) {
        Some(uid) => Err(StageError::msg(format!(
            "the candidate table has series {uid} but {} holds no {uid}.mhd",
            root.display()
        ))
        .with_hint("set `require_on_disk: true` on merge_candidates, or add the missing CT")),
        None => Ok(()),
    }
}

/// Rough work estimate of one CT for scheduling (not part of any key): inflating a compressed
/// volume costs ~40× a memory-mapped read of the same bytes, and compressing a crop ~20×.
/// An unreadable header counts as free; the worker reports its error.
pub fn estimated_cost(mhd: &Path, crop_bytes: u64) -> u64 {
    let Ok(h) = crate::ct::header::read_header(mhd) else {
        return 0;
    };
    let bytes =
        h.dim_size.iter().map(|&d| d as u64).product::<u64>() * h.element_type.size() as u64;
    bytes.saturating_mul(if h.compressed { 40 } else { 1 }) + crop_bytes.saturating_mul(20)
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

/// blake3 of the `.mhd` and every data file it names (the key material of a CT; `cluster`
/// uses it too).
pub fn ct_file_hashes(
    ctx: &StageContext,
    mhd: &Path,
    known: &BTreeMap<PathBuf, String>,
) -> Result<Vec<String>, StageError> {
    let header = crate::ct::header::read_header(mhd).map_err(StageError::domain)?;
    let mut files = vec![mhd.to_path_buf()];
    match header.data_file {
        DataFile::Local => {}
        DataFile::File(f) => files.push(if f.is_absolute() {
            f
        } else {
            mhd.parent().unwrap_or(Path::new(".")).join(f)
        }),
        DataFile::List { files: fs, .. } => files.extend(fs),
    }
    files
        .iter()
        .enumerate()
        .map(|(i, f)| match known.get(f) {
            Some(h) => Ok(h.clone()),
            None if i == 0 => ctx.hash_file(f),
            // A data file: name the header that points at it, not only the missing path.
            None => ctx.hash_file(f).map_err(|e| {
                StageError::msg(format!(
                    "{}: ElementDataFile {} cannot be read: {}",
                    mhd.display(),
                    f.display(),
                    io_cause(&e)
                ))
                .with_hint(
                    "restore the data file next to the .mhd, or fix ElementDataFile in the header",
                )
            }),
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
