//! Planning: compute every selected stage's key (fingerprinting external inputs in parallel),
//! decide fresh/stale by key, and explain each stale stage. Nothing runs here; `status` and
//! `run --dry-run` print the plan, `run` executes it. A stage below one that will run is keyed
//! from a guess (`keying.rs`): "maybe stale" when nothing else about it changed, since the
//! upstream's output decides (early cutoff); the executor keys it again once that upstream ran.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use super::cache::Cache;
use super::error::FingerprintError;
use super::fingerprint::{fingerprint_input, InputFingerprint, KeyMaterial};
use super::keying::{explain, key_stage, Keyed, UpState};
use super::reason::{Pending, RerunReason};
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
    /// Its key (a guess while the stage is `maybe_stale`: see `keying.rs`).
    pub key: String,
    /// Key material.
    #[serde(skip)]
    pub material: KeyMaterial,
    /// Whether the run covers it.
    #[serde(skip)]
    pub selected: bool,
    /// "fresh", "stale" or "maybe_stale".
    pub state: Freshness,
    /// Why it will run (empty when fresh).
    pub reasons: Vec<RerunReason>,
    /// Its output identity, which downstream keys use: the cache's for a fresh stage, its key
    /// otherwise (see `fingerprint.rs`, "Early cutoff").
    #[serde(skip)]
    pub identity: String,
    /// Whether the key was guessed from upstream stages that will or may run first (the
    /// executor keys it again once they finished).
    #[serde(skip)]
    pub waiting: bool,
    /// The key it had when it last ran or was reused (the state file), whose output a re-run
    /// is compared with.
    #[serde(skip)]
    pub previous: Option<String>,
}

/// Fresh, stale or maybe stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Its artifact is cached.
    Fresh,
    /// It will run.
    Stale,
    /// It runs only if an upstream stage that will run first writes other output than last
    /// time (nothing else about it changed).
    MaybeStale,
}

impl Freshness {
    /// Where a stage in this state stands for its downstream stages.
    pub fn pending(self) -> Pending {
        match self {
            Freshness::Fresh => Pending::Settled,
            Freshness::Stale => Pending::WillRun,
            Freshness::MaybeStale => Pending::MayRun,
        }
    }
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
    let mut ups: Vec<Option<UpState>> = vec![None; p.stages.len()];
    let mut out = Vec::new();
    for i in p.dag.topo_order() {
        if !cover.needed.contains(&i) {
            continue;
        }
        let s = &p.stages[i];
        let prev = state.as_ref().ok().and_then(|st| st.stages.get(&s.name));
        let plain: BTreeMap<usize, InputFingerprint> = fps
            .range((i, 0)..(i + 1, 0))
            .map(|(&(_, j), f)| (j, f.clone()))
            .collect();
        let keyed = key_stage(p, i, &ups, &plain, prev.map(|x| &x.material), (cache, stat))
            .map_err(|e| PlanError::Fingerprint {
                stage: s.name.clone(),
                source: e,
            })?;
        let forced = cover.forced.contains(&i) && cover.selected.contains(&i);
        let mut ps = judge(p, i, keyed, forced, cache, &state);
        ps.selected = cover.selected.contains(&i);
        ps.previous = prev.map(|x| x.key.clone());
        ups[i] = Some(UpState {
            key: ps.key.clone(),
            identity: ps.identity.clone(),
            pending: ps.state.pending(),
        });
        out.push(ps);
    }
    if !sel.only.is_empty() {
        check_only(p, &out, &cover.selected)?;
    }
    Ok(out)
}

/// Decides whether stage `i`, keyed as `keyed`, is fresh, stale or maybe stale, and why.
fn judge(
    p: &Pipeline,
    i: usize,
    keyed: Keyed,
    forced: bool,
    cache: &Cache,
    state: &Result<PipelineState, String>,
) -> PlannedStage {
    let s = &p.stages[i];
    let key = keyed.material.key();
    let waiting = !keyed.waiting.is_empty();
    let fresh = !waiting && !forced && cache.has(&key);
    let reasons = if fresh {
        Vec::new()
    } else if forced {
        vec![RerunReason::Forced]
    } else {
        explain(state, &s.name, &key, &keyed.material, &keyed.waiting)
    };
    let state = if fresh {
        Freshness::Fresh
    } else if waiting && !forced && reasons.iter().all(RerunReason::is_upstream_pending) {
        Freshness::MaybeStale
    } else {
        Freshness::Stale
    };
    PlannedStage {
        index: i,
        stage: s.name.clone(),
        kind: s.kind.name().into(),
        identity: if fresh {
            cache.identity(&key)
        } else {
            key.clone()
        },
        key,
        material: keyed.material,
        selected: false,
        state,
        reasons,
        waiting,
        previous: None,
    }
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
        .flat_map(|&i| {
            let inputs = &p.stages[i].params.inputs;
            (0..inputs.len())
                .filter(|&j| inputs[j].narrowed.is_none())
                .map(move |j| (i, j))
        })
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

/// `--only`: every upstream of a selected stage must be cached (it will not be computed).
fn check_only(
    p: &Pipeline,
    out: &[PlannedStage],
    selected: &BTreeSet<usize>,
) -> Result<(), PlanError> {
    let stale = |d: usize| {
        out.iter()
            .any(|ps| ps.index == d && ps.state != Freshness::Fresh)
    };
    for ps in out.iter().filter(|ps| ps.selected) {
        for &d in p.dag.deps(ps.index) {
            if !selected.contains(&d) && stale(d) {
                return Err(PlanError::OnlyNeedsUpstream {
                    stage: ps.stage.clone(),
                    upstream: p.stages[d].name.clone(),
                });
            }
        }
    }
    Ok(())
}
