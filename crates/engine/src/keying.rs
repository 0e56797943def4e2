//! Keying one stage from where its upstream stages stand: shared by planning (before anything
//! runs) and the executor (which re-keys a stage once the upstreams it waited for finished).
//!
//! A stage's key needs, of each upstream (a `needs:` entry, a bound input, or the artifact
//! that narrows an external input), its **output identity** (see `fingerprint.rs`, "Early
//! cutoff"): known for a fresh or finished upstream, only guessed (its own key) for one that
//! will or may run. A stage keyed from a guess is *waiting*: `plan` reports it stale or
//! "maybe stale", and the executor keys it again when the upstreams are settled. A narrowed
//! input whose deciding artifact does not exist yet keeps its last recorded fingerprint for
//! the guess. Rejected: running the upstream during `status` (status must cost no stage work),
//! and keying downstream stages by upstream keys only (an upstream that re-ran with identical
//! output would re-run everything below it).

use std::collections::BTreeMap;
use std::path::Path;

use super::cache::Cache;
use super::error::FingerprintError;
use super::fingerprint::{fingerprint_input, fingerprint_reads, InputFingerprint, KeyMaterial};
use super::kind::{ExternalInput, ReadsAt};
use super::reason::{diff, Pending, RerunReason};
use super::runs::PipelineState;
use super::spec::Pipeline;
use super::statcache::StatCache;

/// What a stage's key sees of one upstream stage.
#[derive(Debug, Clone)]
pub struct UpState {
    /// Its key (where its artifact is, or will be).
    pub key: String,
    /// Its output identity: known when settled, its key (a guess) while pending.
    pub identity: String,
    /// Whether it is settled, will run, or may run.
    pub pending: Pending,
}

/// A stage's key material, and the upstream stages it was guessed from (empty: final).
#[derive(Debug, Clone)]
pub struct Keyed {
    /// The key material.
    pub material: KeyMaterial,
    /// Upstream stages not settled yet, by name, with where they stand.
    pub waiting: Vec<(String, Pending)>,
}

/// Keys stage `i` of `p`: upstream identities from `ups` (by stage index), whole-tree inputs
/// from `plain` (by input index, fingerprinted already), narrowed inputs read now where their
/// deciding artifact is settled, else taken from `prev` (the last recorded material).
pub fn key_stage(
    p: &Pipeline,
    i: usize,
    ups: &[Option<UpState>],
    plain: &BTreeMap<usize, InputFingerprint>,
    prev: Option<&KeyMaterial>,
    (cache, stat): (&Cache, &StatCache),
) -> Result<Keyed, FingerprintError> {
    let s = &p.stages[i];
    let mut waiting: Vec<(String, Pending)> = Vec::new();
    let mut see = |d: usize| -> Option<&UpState> {
        let u = ups.get(d)?.as_ref()?;
        let name = &p.stages[d].name;
        if u.pending != Pending::Settled && !waiting.iter().any(|(n, _)| n == name) {
            waiting.push((name.clone(), u.pending));
        }
        Some(u)
    };
    let identity = |u: Option<&UpState>| u.map(|u| u.identity.clone()).unwrap_or_default();
    let upstream: BTreeMap<String, String> = p
        .dag
        .deps(i)
        .iter()
        .map(|&d| (p.stages[d].name.clone(), identity(see(d))))
        .collect();
    let bindings: BTreeMap<String, String> = s
        .bindings
        .iter()
        .map(|(input, stage)| {
            (
                input.clone(),
                identity(p.stage_index(stage).and_then(&mut see)),
            )
        })
        .collect();
    let mut inputs = Vec::new();
    for (j, inp) in s.params.inputs.iter().enumerate() {
        let Some(narrowed) = inp.narrowed else {
            inputs.extend(plain.get(&j).cloned());
            continue;
        };
        let by = narrowed
            .by
            .and_then(|slot| s.bindings.get(slot))
            .and_then(|stage| p.stage_index(stage))
            .and_then(&mut see)
            .map(|u| (u.pending == Pending::Settled, cache.object_dir(&u.key)));
        let fp = match by {
            Some((false, _)) => guessed(inp, prev),
            Some((true, dir)) => read_narrowed(p, i, inp, Some(&dir), stat)?,
            None => read_narrowed(p, i, inp, None, stat)?,
        };
        inputs.push(fp);
    }
    let material = KeyMaterial {
        kind: s.kind.name().into(),
        version: s.kind.version(),
        params: s.params.semantic.clone(),
        upstream,
        inputs,
        bindings,
    };
    Ok(Keyed { material, waiting })
}

/// A narrowed input whose deciding artifact does not exist yet: its last recorded
/// fingerprint (a guess, replaced once the artifact exists), or `pending`.
fn guessed(inp: &ExternalInput, prev: Option<&KeyMaterial>) -> InputFingerprint {
    prev.and_then(|m| m.inputs.iter().find(|f| f.name == inp.name))
        .cloned()
        .unwrap_or_else(|| InputFingerprint {
            name: inp.name.clone(),
            path: inp.path.to_string_lossy().into(),
            blake3: "pending".into(),
            size: 0,
            files: 0,
        })
}

/// The fingerprint of a narrowed input: the items the kind says it reads (given the deciding
/// artifact `by`), or, when it cannot say (a missing root, an unreadable table, a bad tree),
/// the whole tree as for any input: the stage then runs and reports the problem itself.
fn read_narrowed(
    p: &Pipeline,
    i: usize,
    inp: &ExternalInput,
    by: Option<&Path>,
    stat: &StatCache,
) -> Result<InputFingerprint, FingerprintError> {
    let s = &p.stages[i];
    let root = if inp.path.is_absolute() {
        inp.path.clone()
    } else {
        p.workspace.join(&inp.path)
    };
    let shown = inp.path.to_string_lossy();
    if root.is_dir() {
        let at = ReadsAt {
            input: &inp.name,
            root: &root,
            by,
        };
        let read = s.kind.reads(&s.params, at);
        // a file it names that cannot be read (a missing .raw) is the stage's error to report
        if let Ok(Ok(fp)) =
            read.map(|items| fingerprint_reads(&inp.name, &shown, &items, inp.listing, stat))
        {
            return Ok(fp);
        }
    }
    fingerprint_input(&inp.name, &shown, &root, inp.optional, inp.listing, stat)
}

/// Why a stage whose key is not cached will (or may) run, from its last recorded state;
/// `waiting` are the upstream stages its key was guessed from.
pub fn explain(
    state: &Result<PipelineState, String>,
    stage: &str,
    key: &str,
    material: &KeyMaterial,
    waiting: &[(String, Pending)],
) -> Vec<RerunReason> {
    let prev = match state {
        Err(e) => return vec![RerunReason::ManifestUnreadable { error: e.clone() }],
        Ok(st) => match st.stages.get(stage) {
            None => return vec![RerunReason::FirstRun],
            Some(prev) if prev.key == key && waiting.is_empty() => {
                return vec![RerunReason::NoCachedArtifact { key: key.into() }]
            }
            Some(prev) => prev,
        },
    };
    let lookup = |name: &str| {
        waiting
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Pending::Settled, |w| w.1)
    };
    let mut out = diff(&prev.material, material, &lookup);
    for (name, pending) in waiting {
        let named = |r: &RerunReason| match r {
            RerunReason::UpstreamWillRun { stage } | RerunReason::UpstreamMayRun { stage } => {
                stage == name
            }
            _ => false,
        };
        if !out.iter().any(named) {
            out.push(match pending {
                Pending::MayRun => RerunReason::UpstreamMayRun {
                    stage: name.clone(),
                },
                _ => RerunReason::UpstreamWillRun {
                    stage: name.clone(),
                },
            });
        }
    }
    if out.is_empty() {
        out.push(RerunReason::NothingObvious);
    }
    out
}
