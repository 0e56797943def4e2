//! Shared glue for the data stages: where the LUNA files are (an explicit path, or the
//! artifact bound to the stage's `dataset` input, e.g. the `synth` stage) and which CT series
//! are on disk. Not a stage kind itself.

/// The artifact type of a LUNA16-format dataset (CT files and CSVs).
pub const DATASET: &str = "dataset";

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, InputPath, InputSlot, StageRef};

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
