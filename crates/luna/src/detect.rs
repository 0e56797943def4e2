//! `luna detect`: the trained system of a pipeline applied to CTs that belong to no dataset (the
//! book's `nodule_analysis.py SERIES_UID`, for any `.mhd`).
//!
//! Design: detection is not a second code path. The pipeline's own detection chain — the
//! `classify_candidates` stage, the `cluster` stage it reads, the `segment` stage that one reads,
//! and the `diagnose` stage of its detections — is found through the typed bindings, and four
//! copies of those stages (same kinds, same parameters) are appended to the pipeline with the
//! given CTs as their `ct_root` and `series: all`. The engine then plans and runs that pipeline:
//! the model stages are cache hits (same keys as in `luna run`), the new stages are partitioned
//! per CT like any other, so detecting the same CT again is instant and the numbers are exactly
//! what the pipeline's own stages compute for a CT of the dataset.
//!
//! - The CTs are staged into `<workspace>/.luna/detect/<id>/subset0/<uid>.mhd` (uid = the file
//!   stem, as LUNA16 names its files): the header is copied with `ElementDataFile` pointing at a
//!   hard link (or, across file systems, a copy) of the data file beside it, because luna reads
//!   data files only inside the CT root. `<id>` hashes the source paths, so the same files get
//!   the same folder; it is re-staged on every call, so a replaced file is never stale.
//! - A DICOM folder is staged as `subset0/<uid>/` beside them (`series`: the reader picks the
//!   series, `--series` one of several).
//! - Models that are not trained yet are an error naming the stale stages and the `luna run`
//!   that trains them; `luna detect` never trains.
//!
//! Rejected: running segment/cluster/classify as library calls outside the engine (a second
//! orchestration with its own caching and worker handling, and numbers that could drift from
//! the pipeline's); a dataset stage that ingests arbitrary files (would need a kind that only
//! this command uses).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value as Yaml};

use crate::ct::header::read_header;
use crate::ct::DataFile;
use crate::engine::kind::Stage;
use crate::engine::spec::{Pipeline, StageSpec};
use crate::stages::classify_candidates::ClassifyCandidatesStage;
use crate::stages::cluster::ClusterStage;
use crate::stages::diagnose::DiagnoseStage;
use crate::stages::segment::SegmentStage;

pub mod series;

/// Errors of `luna detect` before the engine runs.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The pipeline has no detection chain.
    #[error(
        "pipeline `{pipeline}` has no `classify_candidates` stage, so it cannot detect nodules"
    )]
    NoChain {
        /// Pipeline name.
        pipeline: String,
    },
    /// Several chains and none chosen.
    #[error("pipeline `{pipeline}` has several `classify_candidates` stages: {stages}")]
    Ambiguous {
        /// Pipeline name.
        pipeline: String,
        /// Their names.
        stages: String,
    },
    /// `--stage` names no classify_candidates stage.
    #[error("pipeline `{pipeline}` has no `classify_candidates` stage `{stage}`")]
    NoSuchStage {
        /// Pipeline name.
        pipeline: String,
        /// The name given.
        stage: String,
    },
    /// A binding of the chain is missing (a pipeline that did not load this way).
    #[error("stage `{stage}` has no `{slot}` input bound")]
    Unbound {
        /// Stage.
        stage: String,
        /// Slot.
        slot: String,
    },
    /// A CT path that is not a MetaImage header.
    #[error("{path}: not a MetaImage header (`.mhd`)")]
    NotMhd {
        /// The path.
        path: PathBuf,
    },
    /// Two CTs with the same file stem.
    #[error("{a} and {b} have the same series uid `{uid}` (the file name without `.mhd`)")]
    SameUid {
        /// The uid.
        uid: String,
        /// First file.
        a: PathBuf,
        /// Second file.
        b: PathBuf,
    },
    /// A CT header that cannot be read.
    #[error(transparent)]
    Ct(#[from] crate::ct::CtError),
    /// A data file list with paths outside the header's folder.
    #[error("{path}: ElementDataFile lists files outside the header's folder ({file})")]
    ListOutside {
        /// The header.
        path: PathBuf,
        /// The offending file.
        file: PathBuf,
    },
    /// A header whose `ElementDataFile` is the header itself.
    #[error("{path}: ElementDataFile names the header itself as its own data file")]
    DataIsHeader {
        /// The header.
        path: PathBuf,
    },
    /// Staging the CTs failed.
    #[error("cannot stage {from} as {to}: {source}")]
    Stage {
        /// Source.
        from: PathBuf,
        /// Destination.
        to: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The pipeline file cannot be read or rewritten.
    #[error("{path}: {message}")]
    Pipeline {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl DetectError {
    /// What to do.
    pub fn hint(&self) -> Option<String> {
        match self {
            DetectError::NoChain { .. } => Some(
                "add segment → cluster → classify_candidates stages (see pipelines/demo.yaml)"
                    .into(),
            ),
            DetectError::Ambiguous { .. } | DetectError::NoSuchStage { .. } => {
                Some("choose one with `--stage NAME`".into())
            }
            DetectError::NotMhd { .. } => Some("pass the `.mhd` file of each CT".into()),
            DetectError::SameUid { .. } => {
                Some("rename one of them: luna identifies a CT by its file name".into())
            }
            DetectError::DataIsHeader { .. } => Some(
                "point ElementDataFile at the voxel data (a `.raw` file), or LOCAL for data after the header"
                    .into(),
            ),
            _ => None,
        }
    }
}

/// The stages of a pipeline's detection chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The `train_segmentation` stage (the UNet).
    pub segmenter: String,
    /// The `segment` stage.
    pub segment: String,
    /// The `cluster` stage.
    pub cluster: String,
    /// The `classify_candidates` stage.
    pub classify: String,
    /// Its nodule classifier.
    pub nodule_model: String,
    /// Its malignancy classifier, if any.
    pub malignancy_model: Option<String>,
    /// The `diagnose` stage reading `classify`, if any.
    pub diagnose: Option<String>,
}

impl Chain {
    /// The model stages (what must be trained before detecting).
    pub fn models(&self) -> Vec<&str> {
        let mut v = vec![self.segmenter.as_str(), self.nodule_model.as_str()];
        v.extend(self.malignancy_model.as_deref());
        v
    }
}

fn bound<'a>(s: &'a StageSpec, slot: &str) -> Result<&'a str, DetectError> {
    s.bindings
        .get(slot)
        .map(String::as_str)
        .ok_or_else(|| DetectError::Unbound {
            stage: s.name.clone(),
            slot: slot.into(),
        })
}

/// Finds the detection chain (the one `classify_candidates` stage, or `stage`).
pub fn find_chain(p: &Pipeline, stage: Option<&str>) -> Result<Chain, DetectError> {
    let of_kind =
        |k: &str| -> Vec<&StageSpec> { p.stages.iter().filter(|s| s.kind.name() == k).collect() };
    let classifies = of_kind(ClassifyCandidatesStage::KIND);
    let c = match stage {
        Some(name) => classifies
            .iter()
            .find(|s| s.name == name)
            .copied()
            .ok_or_else(|| DetectError::NoSuchStage {
                pipeline: p.name.clone(),
                stage: name.into(),
            })?,
        None => match classifies.as_slice() {
            [] => {
                return Err(DetectError::NoChain {
                    pipeline: p.name.clone(),
                })
            }
            [one] => one,
            many => {
                return Err(DetectError::Ambiguous {
                    pipeline: p.name.clone(),
                    stages: many
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        },
    };
    let by_name = |n: &str| p.stages.iter().find(|s| s.name == n);
    let cluster = bound(c, "clusters")?;
    let k = by_name(cluster).ok_or_else(|| DetectError::Unbound {
        stage: c.name.clone(),
        slot: "clusters".into(),
    })?;
    let segment = bound(k, "probabilities")?;
    let s = by_name(segment).ok_or_else(|| DetectError::Unbound {
        stage: k.name.clone(),
        slot: "probabilities".into(),
    })?;
    let diagnose = of_kind(DiagnoseStage::KIND)
        .into_iter()
        .find(|d| d.bindings.get("detections").map(String::as_str) == Some(c.name.as_str()))
        .map(|d| d.name.clone());
    Ok(Chain {
        segmenter: bound(s, "model")?.into(),
        segment: segment.into(),
        cluster: cluster.into(),
        classify: c.name.clone(),
        nodule_model: bound(c, "model")?.into(),
        malignancy_model: c.bindings.get("malignancy_model").cloned(),
        diagnose,
    })
}

/// Names of the stages `luna detect` appends.
#[derive(Debug, Clone)]
pub struct DetectStages {
    /// segment copy.
    pub segment: String,
    /// cluster copy.
    pub cluster: String,
    /// classify_candidates copy.
    pub classify: String,
    /// diagnose copy.
    pub diagnose: String,
}

impl DetectStages {
    fn new(taken: &dyn Fn(&str) -> bool) -> DetectStages {
        let pick = |base: &str| {
            let mut name = format!("detect-{base}");
            let mut n = 2;
            while taken(&name) {
                name = format!("detect-{base}-{n}");
                n += 1;
            }
            name
        };
        DetectStages {
            segment: pick("segment"),
            cluster: pick("cluster"),
            classify: pick("classify"),
            diagnose: pick("diagnose"),
        }
    }
}

/// The pipeline text with the detection stages appended (see the module doc), and their names.
pub fn detect_pipeline_text(
    text: &str,
    file: &Path,
    p: &Pipeline,
    chain: &Chain,
    ct_root: &Path,
) -> Result<(String, DetectStages), DetectError> {
    let bad = |message: String| DetectError::Pipeline {
        path: file.into(),
        message,
    };
    let mut doc: Yaml = serde_yaml::from_str(text).map_err(|e| bad(e.to_string()))?;
    let names = DetectStages::new(&|n| p.stage_index(n).is_some());
    let top = doc
        .as_mapping_mut()
        .ok_or_else(|| bad("not a mapping".into()))?;
    if let Some(Yaml::String(name)) = top.get("pipeline") {
        let renamed = format!("{name}-detect");
        top.insert("pipeline".into(), renamed.into());
    }
    let stages = top
        .get_mut("stages")
        .and_then(Yaml::as_mapping_mut)
        .ok_or_else(|| bad("no `stages:` mapping".into()))?;
    // A chain stage's parameters without the inputs that tied it to the dataset (`dataset`,
    // `candidates`: the split, the ground truth, the candidate-table alternative), with `set`
    // (the CT root, the series, the bindings to the appended stages) written over them.
    let with_of = |stages: &Mapping, name: Option<&str>, set: Vec<(&str, Yaml)>| -> Mapping {
        let mut w = name
            .and_then(|n| stages.get(n))
            .and_then(|s| s.get("with"))
            .and_then(Yaml::as_mapping)
            .cloned()
            .unwrap_or_default();
        for k in ["dataset", "candidates"] {
            w.remove(k);
        }
        for (k, v) in set {
            w.insert(k.into(), v);
        }
        w
    };
    let stage = |uses: &str, needs: Vec<&str>, with: Mapping| -> Yaml {
        let mut m = Mapping::new();
        m.insert("uses".into(), uses.into());
        m.insert(
            "needs".into(),
            Yaml::Sequence(needs.into_iter().map(Yaml::from).collect()),
        );
        m.insert("with".into(), Yaml::Mapping(with));
        Yaml::Mapping(m)
    };
    let root = || ("ct_root", Yaml::from(ct_root.display().to_string()));
    let seg = with_of(
        stages,
        Some(&chain.segment),
        vec![
            root(),
            ("series", "all".into()),
            ("model", chain.segmenter.as_str().into()),
        ],
    );
    let clu = with_of(
        stages,
        Some(&chain.cluster),
        vec![root(), ("probabilities", names.segment.as_str().into())],
    );
    let mut cls_set = vec![
        root(),
        ("clusters", names.cluster.as_str().into()),
        ("model", chain.nodule_model.as_str().into()),
    ];
    let mut cls_needs = vec![names.cluster.as_str(), chain.nodule_model.as_str()];
    if let Some(m) = &chain.malignancy_model {
        cls_set.push(("malignancy_model", m.as_str().into()));
        cls_needs.push(m);
    }
    let cls = with_of(stages, Some(&chain.classify), cls_set);
    let dia = with_of(
        stages,
        chain.diagnose.as_deref(),
        vec![
            ("detections", names.classify.as_str().into()),
            // CTs outside any dataset: no candidate table upstream is theirs
            ("ground_truth", false.into()),
        ],
    );
    let new = [
        (
            names.segment.clone(),
            stage(SegmentStage::KIND, vec![chain.segmenter.as_str()], seg),
        ),
        (
            names.cluster.clone(),
            stage(ClusterStage::KIND, vec![names.segment.as_str()], clu),
        ),
        (
            names.classify.clone(),
            stage(ClassifyCandidatesStage::KIND, cls_needs, cls),
        ),
        (
            names.diagnose.clone(),
            stage(DiagnoseStage::KIND, vec![names.classify.as_str()], dia),
        ),
    ];
    for (name, s) in new {
        stages.insert(name.into(), s);
    }
    let out = serde_yaml::to_string(&doc).map_err(|e| bad(e.to_string()))?;
    Ok((out, names))
}

/// One CT handed to `luna detect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedCt {
    /// Series uid (the file stem).
    pub uid: String,
    /// The file the user named.
    pub source: PathBuf,
}

/// The staging folder for `files` under `workspace` (stable for the same paths).
pub fn staging_dir(workspace: &Path, files: &[PathBuf]) -> PathBuf {
    let mut h = blake3::Hasher::new();
    for f in files {
        let abs = std::path::absolute(f).unwrap_or_else(|_| f.clone());
        h.update(abs.as_os_str().as_encoded_bytes());
        h.update(b"\0");
    }
    let id = h.finalize().to_hex();
    workspace.join(".luna").join("detect").join(&id[..16])
}

/// Stages `files` into `dir/subset0/` (see the module doc); returns them in the given order.
pub fn stage_cts(files: &[PathBuf], dir: &Path) -> Result<Vec<StagedCt>, DetectError> {
    let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut out = Vec::new();
    for f in files {
        if f.extension().is_none_or(|e| e != "mhd") {
            return Err(DetectError::NotMhd { path: f.clone() });
        }
        let header = checked_ct(f)?;
        let uid = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        if let Some(prev) = seen.insert(uid.clone(), f.clone()) {
            return Err(DetectError::SameUid {
                uid,
                a: prev,
                b: f.clone(),
            });
        }
        out.push((uid, f.clone(), header));
    }
    let sub = dir.join("subset0");
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| DetectError::Stage {
            from: dir.into(),
            to: dir.into(),
            source: e,
        })?;
    }
    std::fs::create_dir_all(&sub).map_err(|e| DetectError::Stage {
        from: dir.into(),
        to: sub.clone(),
        source: e,
    })?;
    let base = |f: &Path| f.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut staged = Vec::new();
    for (uid, f, header) in out {
        let mhd_to = sub.join(format!("{uid}.mhd"));
        match &header.data_file {
            DataFile::Local => link_or_copy(&f, &mhd_to)?,
            DataFile::File(d) => {
                let from = if d.is_absolute() {
                    d.clone()
                } else {
                    base(&f).join(d)
                };
                // never `<uid>.mhd`: the data would be the staged header's name
                let ext = d
                    .extension()
                    .map(|e| e.to_string_lossy().to_string())
                    .filter(|e| !e.eq_ignore_ascii_case("mhd"))
                    .unwrap_or_else(|| "raw".into());
                let name = format!("{uid}.{ext}");
                link_or_copy(&from, &sub.join(&name))?;
                let text = std::fs::read_to_string(&f).map_err(|e| DetectError::Stage {
                    from: f.clone(),
                    to: mhd_to.clone(),
                    source: e,
                })?;
                write_text(&mhd_to, &retarget(&text, &name), &f)?;
            }
            DataFile::List { files, .. } => {
                let root = base(&f);
                for d in files {
                    let rel = d.strip_prefix(&root).ok().filter(|r| {
                        r.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                    });
                    let Some(rel) = rel else {
                        return Err(DetectError::ListOutside {
                            path: f.clone(),
                            file: d.clone(),
                        });
                    };
                    let to = sub.join(rel);
                    if let Some(parent) = to.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| DetectError::Stage {
                            from: d.clone(),
                            to: to.clone(),
                            source: e,
                        })?;
                    }
                    link_or_copy(d, &to)?;
                }
                link_or_copy(&f, &mhd_to)?;
            }
        }
        staged.push(StagedCt { uid, source: f });
    }
    Ok(staged)
}

/// The header of `f`, checked as the detection will read it: a data file that is not the header
/// itself and holds exactly DimSize × element size bytes (a CT that fails here is the caller's
/// error, named, instead of a failed stage deep in the run).
fn checked_ct(f: &Path) -> Result<crate::ct::header::MetaHeader, DetectError> {
    let header = read_header(f)?;
    let base = f.parent().unwrap_or(Path::new("."));
    let data: Vec<PathBuf> = match &header.data_file {
        DataFile::Local => Vec::new(),
        DataFile::File(d) => vec![base.join(d)],
        DataFile::List { files, .. } => files.iter().map(|d| base.join(d)).collect(),
    };
    let same = |d: &PathBuf| match (std::fs::metadata(d), std::fs::metadata(f)) {
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        _ => false,
    };
    if data.iter().any(same) {
        return Err(DetectError::DataIsHeader { path: f.into() });
    }
    crate::ct::metaimage::CtImage::open_sparse(f)?;
    Ok(header)
}

/// The header text with `ElementDataFile` (the last header line) set to `name`.
fn retarget(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if key.eq_ignore_ascii_case("ElementDataFile") {
            out.push_str(&format!("ElementDataFile = {name}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn write_text(to: &Path, text: &str, from: &Path) -> Result<(), DetectError> {
    std::fs::write(to, text).map_err(|e| DetectError::Stage {
        from: from.into(),
        to: to.into(),
        source: e,
    })
}

fn link_or_copy(from: &Path, to: &Path) -> Result<(), DetectError> {
    let err = |e| DetectError::Stage {
        from: from.into(),
        to: to.into(),
        source: e,
    };
    // a symlink (relative ones above all) is resolved first: hard-linking the link itself
    // would stage a link that dangles in the staging folder
    let real = std::fs::canonicalize(from).map_err(err)?;
    let meta = std::fs::metadata(&real).map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::other("not a regular file")));
    }
    if std::fs::hard_link(&real, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(&real, to).map(|_| ()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retarget_replaces_only_the_data_file_line() {
        let t = "ObjectType = Image\nNDims = 3\nelementdatafile = ../x/a.raw\n";
        assert_eq!(
            retarget(t, "u.raw"),
            "ObjectType = Image\nNDims = 3\nElementDataFile = u.raw\n"
        );
    }

    #[test]
    fn staging_dirs_are_stable_per_file_list() {
        let ws = Path::new("/w");
        let a = staging_dir(ws, &["/d/a.mhd".into()]);
        assert_eq!(a, staging_dir(ws, &["/d/a.mhd".into()]));
        assert_ne!(a, staging_dir(ws, &["/d/b.mhd".into()]));
        assert!(a.starts_with("/w/.luna/detect"));
    }
}
