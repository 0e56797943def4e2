//! Planning: compute every selected stage's key (fingerprinting external inputs in parallel),
//! decide fresh/stale by key, and explain each stale stage. Nothing runs here; `status` and
//! `run --dry-run` print the plan, `run` executes it.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use super::cache::Cache;
use super::error::FingerprintError;
use super::fingerprint::{fingerprint_input, InputFingerprint, KeyMaterial};
use super::reason::{diff, RerunReason};
use super::runs::PipelineState;
use super::spec::Pipeline;
use super::statcache::StatCache;

/// Which stages a run covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--until S`: S and its ancestors.
    pub until: Option<String>,
    /// `--only S` (repeatable): just these stages; their upstream must be cached.
    pub only: Vec<String>,
    /// `--force S` (repeatable): S and its descendants run even if cached.
    pub force: Vec<String>,
}

/// Planning errors.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A selection names no stage.
    #[error("{flag} {name}: pipeline `{pipeline}` has no stage `{name}`")]
    UnknownStage {
        /// The flag.
        flag: &'static str,
        /// The name.
        name: String,
        /// Pipeline name.
        pipeline: String,
        /// Its stages.
        known: Vec<String>,
    },
    /// An external input could not be fingerprinted.
    #[error("stage `{stage}`: {source}")]
    Fingerprint {
        /// Stage.
        stage: String,
        /// Cause.
        source: FingerprintError,
    },
    /// `--only` on a stage whose upstream is not cached.
    #[error("--only {stage}: upstream stage `{upstream}` has no cached artifact")]
    OnlyNeedsUpstream {
        /// The selected stage.
        stage: String,
        /// The missing upstream.
        upstream: String,
    },
}

impl PlanError {
    /// What to do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::UnknownStage { name, known, .. } => {
                let dym = super::suggest::nearest(name, known.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                Some(format!("{dym}stages: {}", known.join(", ")))
            }
            PlanError::Fingerprint { source, .. } => source.hint(),
            PlanError::OnlyNeedsUpstream { upstream, .. } => {
                Some(format!("run `--until {upstream}` first, or drop --only"))
            }
        }
    }
}

/// One stage of a plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    /// Index in the pipeline.
    #[serde(skip)]
    pub index: usize,
    /// Stage name.
    pub stage: String,
    /// Kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Key material.
    #[serde(skip)]
    pub material: KeyMaterial,
    /// Whether the run covers it.
    #[serde(skip)]
    pub selected: bool,
    /// "fresh" or "stale".
    pub state: Freshness,
    /// Why it will run (empty when fresh).
    pub reasons: Vec<RerunReason>,
}

/// Fresh or stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Its artifact is cached.
    Fresh,
    /// It will run.
    Stale,
}

/// Plans a run of `p` (`selection` decides which stages are covered).
pub fn plan(
    p: &Pipeline,
    cache: &Cache,
    stat: &StatCache,
    sel: &Selection,
) -> Result<Vec<PlannedStage>, PlanError> {
    let cover = Cover::of(p, sel)?;
    let fps = fingerprints(p, &cover.needed, stat)?;
    let state = PipelineState::load(&p.workspace, &p.name);
    let n = p.stages.len();
    let mut keys: Vec<Option<String>> = vec![None; n];
    let mut stale = vec![false; n];
    let mut out = Vec::new();
    for i in p.dag.topo_order() {
        if !cover.needed.contains(&i) {
            continue;
        }
        let s = &p.stages[i];
        let material = material(p, i, &keys, &fps);
        let key = material.key();
        keys[i] = Some(key.clone());
        let is_forced = cover.forced.contains(&i) && cover.selected.contains(&i);
        let fresh = cache.has(&key) && !is_forced;
        stale[i] = !fresh;
        let reasons = if fresh {
            Vec::new()
        } else if is_forced {
            vec![RerunReason::Forced]
        } else {
            let will_run = |name: &str| p.stage_index(name).is_some_and(|d| stale[d]);
            why_stale(&state, &s.name, &key, &material, &will_run)
        };
        out.push(PlannedStage {
            index: i,
            stage: s.name.clone(),
            kind: s.kind.name().into(),
            key,
            material,
            selected: cover.selected.contains(&i),
            state: if fresh {
                Freshness::Fresh
            } else {
                Freshness::Stale
            },
            reasons,
        });
    }
    if !sel.only.is_empty() {
        check_only(p, &out, &cover.selected, &stale)?;
    }
    Ok(out)
}

/// The stages a selection covers.
struct Cover {
    /// Run (or reported fresh).
    selected: BTreeSet<usize>,
    /// Run even if cached (`--force` and descendants).
    forced: BTreeSet<usize>,
    /// Keyed: the selected stages and their ancestors.
    needed: BTreeSet<usize>,
}

impl Cover {
    fn of(p: &Pipeline, sel: &Selection) -> Result<Cover, PlanError> {
        let known: Vec<String> = p.stages.iter().map(|s| s.name.clone()).collect();
        let lookup = |flag: &'static str, name: &str| {
            p.stage_index(name).ok_or_else(|| PlanError::UnknownStage {
                flag,
                name: name.into(),
                pipeline: p.name.clone(),
                known: known.clone(),
            })
        };
        let mut selected: BTreeSet<usize> = (0..p.stages.len()).collect();
        if let Some(u) = &sel.until {
            selected = p.dag.ancestors_inclusive(lookup("--until", u)?);
        }
        if !sel.only.is_empty() {
            let mut s = BTreeSet::new();
            for o in &sel.only {
                s.insert(lookup("--only", o)?);
            }
            selected = selected.intersection(&s).copied().collect();
        }
        let mut forced = BTreeSet::new();
        for f in &sel.force {
            forced.extend(p.dag.descendants_inclusive(lookup("--force", f)?));
        }
        let mut needed = BTreeSet::new();
        for &i in &selected {
            needed.extend(p.dag.ancestors_inclusive(i));
        }
        Ok(Cover {
            selected,
            forced,
            needed,
        })
    }
}

/// Every external input of the needed stages, fingerprinted in parallel: (stage, input).
fn fingerprints(
    p: &Pipeline,
    needed: &BTreeSet<usize>,
    stat: &StatCache,
) -> Result<BTreeMap<(usize, usize), InputFingerprint>, PlanError> {
    let jobs: Vec<(usize, usize)> = needed
        .iter()
        .flat_map(|&i| (0..p.stages[i].params.inputs.len()).map(move |j| (i, j)))
        .collect();
    let results: Vec<Result<(usize, usize, InputFingerprint), PlanError>> = jobs
        .par_iter()
        .map(|&(i, j)| {
            let inp = &p.stages[i].params.inputs[j];
            let path = if inp.path.is_absolute() {
                inp.path.clone()
            } else {
                p.workspace.join(&inp.path)
            };
            fingerprint_input(
                &inp.name,
                &inp.path.to_string_lossy(),
                &path,
                inp.optional,
                inp.listing,
                stat,
            )
            .map(|f| (i, j, f))
            .map_err(|e| PlanError::Fingerprint {
                stage: p.stages[i].name.clone(),
                source: e,
            })
        })
        .collect();
    let mut fps = BTreeMap::new();
    for r in results {
        let (i, j, f) = r?;
        fps.insert((i, j), f);
    }
    Ok(fps)
}

/// The key material of stage `i` (its upstreams' keys are in `keys` already).
fn material(
    p: &Pipeline,
    i: usize,
    keys: &[Option<String>],
    fps: &BTreeMap<(usize, usize), InputFingerprint>,
) -> KeyMaterial {
    let s = &p.stages[i];
    let upstream: BTreeMap<String, String> = p
        .dag
        .deps(i)
        .iter()
        .map(|&d| {
            (
                p.stages[d].name.clone(),
                keys[d].clone().unwrap_or_default(),
            )
        })
        .collect();
    KeyMaterial {
        kind: s.kind.name().into(),
        version: s.kind.version(),
        params: s.params.semantic.clone(),
        upstream,
        inputs: (0..s.params.inputs.len())
            .filter_map(|j| fps.get(&(i, j)).cloned())
            .collect(),
        bindings: s
            .bindings
            .iter()
            .map(|(input, stage)| {
                let key = p.stage_index(stage).and_then(|d| keys[d].clone());
                (input.clone(), key.unwrap_or_default())
            })
            .collect(),
    }
}

/// Why a stale, unforced stage runs: compared with its last recorded state.
fn why_stale(
    state: &Result<PipelineState, String>,
    stage: &str,
    key: &str,
    material: &KeyMaterial,
    will_run: &dyn Fn(&str) -> bool,
) -> Vec<RerunReason> {
    match state {
        Err(e) => vec![RerunReason::ManifestUnreadable { error: e.clone() }],
        Ok(st) => match st.stages.get(stage) {
            None => vec![RerunReason::FirstRun],
            Some(prev) if prev.key == key => {
                vec![RerunReason::NoCachedArtifact { key: key.into() }]
            }
            Some(prev) => {
                let r = diff(&prev.material, material, will_run);
                if r.is_empty() {
                    vec![RerunReason::NothingObvious]
                } else {
                    r
                }
            }
        },
    }
}

/// `--only`: every upstream of a selected stage must be cached (it will not be computed).
fn check_only(
    p: &Pipeline,
    out: &[PlannedStage],
    selected: &BTreeSet<usize>,
    stale: &[bool],
) -> Result<(), PlanError> {
    for ps in out.iter().filter(|ps| ps.selected) {
        for &d in p.dag.deps(ps.index) {
            if !selected.contains(&d) && stale[d] {
                return Err(PlanError::OnlyNeedsUpstream {
                    stage: ps.stage.clone(),
                    upstream: p.stages[d].name.clone(),
                });
            }
        }
    }
    Ok(())
}
