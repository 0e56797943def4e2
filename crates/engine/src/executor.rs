//! Runs a plan: ready stages in parallel (up to `-j`), each under its key lock, output written to
//! a tmp dir and committed atomically. A failed stage stops its downstream (reported as
//! skipped); unrelated branches finish. Workers talk to the main thread only through events;
//! the main thread alone updates state files and feeds the reporter. Before a stage starts, each
//! of its upstream artifacts is checked (`Cache::check_upstream`); a damaged one fails the stage.
//! The caller holds `Cache::use_lock` for the whole run, so `cache gc` cannot delete an upstream.
//!
//! **Backends.** Where a stage's *work* runs is a [`Backend`]: [`Local`] runs the kind in this
//! process; another backend (the Slurm one in the `luna` crate) runs it in scheduler jobs over
//! the shared cache. Everything around the work stays here — the key lock, upstream checks, the
//! tmp dir, the manifest and the commit — so a stage's key, files and manifest are the same
//! whichever backend ran it. Rejected: a second executor loop per backend (two copies of the
//! scheduling, skipping and recording), and backends that commit themselves (two commit paths).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::cache::{Cache, Manifest, MANIFEST_VERSION};
use super::context::{cores, share_cores, ContextParts, StageContext, ThreadBudget, Upstream};
use super::error::StageError;
use super::events::{Event, EventSink, StageStatus};
use super::plan::{Freshness, PlannedStage};
use super::reason::RerunReason;
use super::runs::{self, PipelineState, RunRecord, Runs, StageRecord, StageState};
use super::spec::{Pipeline, StageSpec};

/// Where a stage's work runs (see the module doc).
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs the kind of `spec` with `ctx` (its output goes under `ctx.out_dir()`), recording in
    /// `ctx` the partitions and known files of work done elsewhere and any scheduler job ids.
    fn run_kind(&self, spec: &StageSpec, ctx: &mut StageContext) -> Result<(), StageError>;
}

/// The default backend: the kind runs in this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Local;

impl Backend for Local {
    fn run_kind(&self, spec: &StageSpec, ctx: &mut StageContext) -> Result<(), StageError> {
        spec.kind.run(&spec.params, ctx)
    }
}

/// Receives a run's events; the CLI renders them.
pub trait Reporter {
    /// Called once before anything runs.
    fn start(&mut self, pipeline: &Pipeline, plan: &[PlannedStage], jobs: usize, run_id: &str);
    /// Called for every event, on the main thread.
    fn event(&mut self, ev: &Event);
    /// Called once at the end.
    fn finish(&mut self, rec: &RunRecord, elapsed: Duration);
}

/// Run options.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Maximum stages running at once.
    pub jobs: usize,
    /// Stat cache stages may use to hash files they read (see `StageContext::hash_file`).
    pub stat: Option<std::sync::Arc<super::statcache::StatCache>>,
    /// Re-hash every upstream file before a stage consumes it, whatever the object's size
    /// (`luna run --verify`); otherwise only objects up to `CHEAP_HASH_BYTES` are re-hashed.
    pub verify: bool,
    /// Fetches a missing artifact (or partition) from a remote instead of computing it
    /// (`luna run --pull`; see `remote.rs`).
    pub fetch: Option<Arc<dyn super::remote::Fetcher>>,
    /// Where stages' work runs ([`Local`] unless `luna run --executor` says otherwise).
    pub backend: Arc<dyn Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Pending,
    Running,
    Done(StageStatus),
}

struct Outcome {
    error: Option<(String, Option<String>)>,
    partitions: Vec<String>,
    status: StageStatus,
    jobs: Vec<String>,
}

/// Executes the selected stages of `plan`; returns the run record (also saved under `runs/`).
pub fn execute(
    p: &Pipeline,
    plan: &[PlannedStage],
    cache: &Cache,
    runs: &Runs,
    opts: &RunOptions,
    reporter: &mut dyn Reporter,
) -> RunRecord {
    cache.clean_stale_tmp();
    let run_id = runs::new_run_id(&p.name);
    let started = Instant::now();
    let mut rec = RunRecord {
        id: run_id.clone(),
        pipeline: p.name.clone(),
        pipeline_file: p
            .file
            .strip_prefix(&p.workspace)
            .unwrap_or(&p.file)
            .to_string_lossy()
            .to_string(),
        git_revision: runs::git_revision(&p.workspace),
        host: runs::hostname(),
        luna_version: env!("CARGO_PKG_VERSION").into(),
        started: chrono::Utc::now().to_rfc3339(),
        ended: None,
        success: false,
        stages: Vec::new(),
    };
    let _ = runs.save(&rec);
    let jobs = opts.jobs.max(1);
    reporter.start(p, plan, jobs, &run_id);

    let by_index: BTreeMap<usize, &PlannedStage> = plan.iter().map(|ps| (ps.index, ps)).collect();
    let order: Vec<&PlannedStage> = p
        .dag
        .topo_order()
        .iter()
        .filter_map(|i| by_index.get(i).copied())
        .collect();
    let mut st: BTreeMap<usize, St> = BTreeMap::new();
    let mut records: BTreeMap<usize, StageRecord> = BTreeMap::new();
    let outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>> = Arc::default();

    // Stages outside the selection count as done (their artifacts are cached or not needed).
    // one state-file write for every stage that is fresh already (not one per stage)
    let mut fresh_states = Vec::new();
    for ps in &order {
        let s = if !ps.selected || ps.state == Freshness::Fresh {
            St::Done(StageStatus::Cached)
        } else {
            St::Pending
        };
        st.insert(ps.index, s);
        if ps.selected && ps.state == Freshness::Fresh {
            settle(reporter, &mut records, ps, StageStatus::Cached, 0.0, None);
            fresh_states.push((ps.stage.clone(), state_of(ps)));
        }
    }

    PipelineState::record(&p.workspace, &p.name, fresh_states);

    let (tx, rx) = channel::<Event>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        let mut budgets: BTreeMap<usize, ThreadBudget> = BTreeMap::new();
        loop {
            // Start what is ready; skip what can no longer run.
            for ps in &order {
                if st[&ps.index] != St::Pending {
                    continue;
                }
                let deps = p.dag.deps(ps.index);
                let failed_dep = deps.iter().find(|d| {
                    matches!(
                        st.get(d),
                        Some(St::Done(StageStatus::Failed)) | Some(St::Done(StageStatus::Skipped))
                    )
                });
                if let Some(&d) = failed_dep {
                    let detail = format!("upstream '{}' did not complete", p.stages[d].name);
                    st.insert(ps.index, St::Done(StageStatus::Skipped));
                    settle(
                        reporter,
                        &mut records,
                        ps,
                        StageStatus::Skipped,
                        started.elapsed().as_secs_f64(),
                        Some(detail),
                    );
                    continue;
                }
                let ready = deps
                    .iter()
                    .all(|d| matches!(st.get(d), Some(St::Done(_)) | None));
                if !ready || running >= jobs {
                    continue;
                }
                st.insert(ps.index, St::Running);
                running += 1;
                let upstream = upstreams(p, plan, ps.index, cache);
                let tx = tx.clone();
                let outcomes = outcomes.clone();
                // thread budget: a share of the cores now, re-shared when a stage finishes
                let threads = ThreadBudget::new(cores() / running.max(1));
                budgets.insert(ps.index, threads.clone());
                let log_path = runs
                    .run_dir(&run_id)
                    .join("logs")
                    .join(format!("{}.log", ps.stage));
                let stat = opts.stat.clone();
                let verify = opts.verify;
                let fetch = opts.fetch.clone();
                let backend = opts.backend.clone();
                scope.spawn(move || {
                    let t0 = Instant::now();
                    let _ = tx.send(Event::Started {
                        stage: ps.stage.clone(),
                        reasons: ps.reasons.clone(),
                    });
                    let out = run_stage(
                        p,
                        ps,
                        cache,
                        upstream,
                        tx.clone(),
                        log_path,
                        (threads, verify),
                        stat,
                        fetch,
                        &*backend,
                    );
                    let (detail, hint) = match &out.error {
                        Some((d, h)) => (Some(d.clone()), h.clone()),
                        None => (None, None),
                    };
                    let status = out.status;
                    outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(ps.index, out);
                    let _ = tx.send(Event::Finished {
                        stage: ps.stage.clone(),
                        status,
                        duration: t0.elapsed(),
                        detail,
                        hint,
                    });
                });
            }
            if running == 0 {
                break;
            }
            let Ok(ev) = rx.recv() else { break };
            if let Event::Finished {
                stage,
                status,
                duration,
                ..
            } = &ev
            {
                if let Some(ps) = order.iter().find(|ps| &ps.stage == stage) {
                    running -= 1;
                    budgets.remove(&ps.index);
                    share_cores(budgets.values());
                    st.insert(ps.index, St::Done(*status));
                    let out = outcomes
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&ps.index);
                    let (err, parts, jobs) = match out {
                        Some(o) => (o.error.map(|e| e.0), o.partitions, o.jobs),
                        None => (None, Vec::new(), Vec::new()),
                    };
                    if matches!(status, StageStatus::Ran | StageStatus::Cached) {
                        PipelineState::record(
                            &p.workspace,
                            &p.name,
                            vec![(ps.stage.clone(), state_of(ps))],
                        );
                    }
                    let secs = duration.as_secs_f64();
                    let start = (started.elapsed().as_secs_f64() - secs).max(0.0);
                    let mut r = record(ps, *status, start, secs, err, parts);
                    r.jobs = jobs;
                    records.insert(ps.index, r);
                }
            }
            reporter.event(&ev);
        }
    });
    drop(tx);
    // drain events that arrived after the last Finished (none expected)
    while let Ok(ev) = rx.try_recv() {
        reporter.event(&ev);
    }
    rec.stages = order
        .iter()
        .filter_map(|ps| records.remove(&ps.index))
        .collect();
    rec.success = rec
        .stages
        .iter()
        .all(|s| matches!(s.status, StageStatus::Ran | StageStatus::Cached));
    rec.ended = Some(chrono::Utc::now().to_rfc3339());
    let _ = runs.save(&rec);
    reporter.finish(&rec, started.elapsed());
    rec
}

/// Reports and records a stage that ends without running (cached, or skipped because an
/// upstream stage did not complete) at `at` seconds into the run.
fn settle(
    reporter: &mut dyn Reporter,
    records: &mut BTreeMap<usize, StageRecord>,
    ps: &PlannedStage,
    status: StageStatus,
    at: f64,
    detail: Option<String>,
) {
    reporter.event(&Event::Finished {
        stage: ps.stage.clone(),
        status,
        duration: Duration::ZERO,
        detail: detail.clone(),
        hint: None,
    });
    records.insert(ps.index, record(ps, status, at, 0.0, detail, Vec::new()));
}

fn state_of(ps: &PlannedStage) -> StageState {
    StageState {
        key: ps.key.clone(),
        material: ps.material.clone(),
    }
}

/// `start`: seconds from the run's start; `secs`: the stage's duration.
fn record(
    ps: &PlannedStage,
    status: StageStatus,
    start: f64,
    secs: f64,
    error: Option<String>,
    partitions: Vec<String>,
) -> StageRecord {
    StageRecord {
        stage: ps.stage.clone(),
        kind: ps.kind.clone(),
        key: ps.key.clone(),
        status,
        duration_s: secs,
        start_s: start,
        reasons: if status == StageStatus::Ran {
            ps.reasons.clone()
        } else {
            Vec::new()
        },
        error,
        partitions,
        jobs: Vec::new(),
    }
}

/// Upstream artifacts of stage `i`: direct needs first, then further ancestors.
fn upstreams(p: &Pipeline, plan: &[PlannedStage], i: usize, cache: &Cache) -> Vec<Upstream> {
    let key_of = |j: usize| {
        plan.iter()
            .find(|ps| ps.index == j)
            .map(|ps| ps.key.clone())
            .unwrap_or_default()
    };
    let direct: Vec<usize> = p.dag.deps(i).to_vec();
    let mut all: Vec<usize> = direct.clone();
    for j in p.dag.ancestors_inclusive(i) {
        if j != i && !all.contains(&j) {
            all.push(j);
        }
    }
    all.into_iter()
        .map(|j| {
            let key = key_of(j);
            Upstream {
                stage: p.stages[j].name.clone(),
                kind: p.stages[j].kind.name().into(),
                dir: cache.object_dir(&key),
                key,
                direct: direct.contains(&j),
            }
        })
        .collect()
}

// One call site; bundling these into a struct would only move the list.
#[allow(clippy::too_many_arguments)]
fn run_stage(
    p: &Pipeline,
    ps: &PlannedStage,
    cache: &Cache,
    upstream: Vec<Upstream>,
    tx: Sender<Event>,
    log_path: PathBuf,
    (threads, verify): (ThreadBudget, bool),
    stat: Option<std::sync::Arc<super::statcache::StatCache>>,
    fetch: Option<Arc<dyn super::remote::Fetcher>>,
    backend: &dyn Backend,
) -> Outcome {
    let fail_with = |e: StageError, jobs: Vec<String>| {
        let e = e.or_no_space(cache.root());
        Outcome {
            error: Some((e.to_string(), e.hint())),
            partitions: Vec::new(),
            status: StageStatus::Failed,
            jobs,
        }
    };
    let fail = |e: StageError| fail_with(e, Vec::new());
    let lock = match cache.try_lock(&ps.key) {
        Ok(Some(l)) => l,
        Ok(None) => {
            let _ = tx.send(Event::Waiting {
                stage: ps.stage.clone(),
            });
            match cache.lock(&ps.key) {
                Ok(l) => l,
                Err(e) => return fail(e.into()),
            }
        }
        Err(e) => return fail(e.into()),
    };
    // `--force` re-runs a stage even though its object exists; the new output replaces it.
    let forced = ps.reasons.contains(&RerunReason::Forced);
    if cache.has(&ps.key) && !forced {
        // another luna process computed it while we waited
        drop(lock);
        return Outcome {
            error: None,
            partitions: Vec::new(),
            status: StageStatus::Cached,
            jobs: Vec::new(),
        };
    }
    // `--pull`: the remote's copy (verified on the way in) instead of computing it; a remote
    // that lacks it or whose copy is refused leaves the stage to compute.
    if let (Some(f), false) = (&fetch, forced) {
        match f.fetch(cache, &ps.key) {
            Ok(true) => {
                return Outcome {
                    error: None,
                    partitions: cache
                        .manifest(&ps.key)
                        .map(|m| m.partitions)
                        .unwrap_or_default(),
                    status: StageStatus::Cached,
                    jobs: Vec::new(),
                }
            }
            Ok(false) => {}
            Err(e) => {
                return fail(StageError::Message {
                    message: e.to_string(),
                    hint: e.hint(),
                })
            }
        }
    }
    // Never consume a damaged upstream (sizes always, blake3 of small objects; see cache.rs):
    // a wrong result committed from it would stay cached after the upstream is recomputed.
    // A transitive ancestor whose object is gone (`--only` after a gc) is not read through
    // this stage's direct inputs, so only present ancestors are checked.
    for u in &upstream {
        if !u.direct && !u.dir.exists() {
            continue;
        }
        if let Err(source) = cache.check_upstream(&u.key, verify) {
            return fail(StageError::Upstream {
                stage: u.stage.clone(),
                source,
            });
        }
    }
    let tmp = match cache.new_tmp(&ps.key) {
        Ok(t) => t,
        Err(e) => return fail(e.into()),
    };
    let spec = &p.stages[ps.index];
    let mut ctx = StageContext::new(ContextParts {
        stage: ps.stage.clone(),
        pipeline: p.name.clone(),
        out_dir: tmp.clone(),
        workspace: p.workspace.clone(),
        upstream,
        bindings: spec.bindings.clone(),
        tx: EventSink::Channel(tx),
        with: spec.with.clone(),
        log_path,
        cache: cache.clone(),
        partition_base: serde_json::json!({ "kind": ps.kind, "version": ps.material.version, "params": spec.params.partition }),
        threads,
        key: ps.key.clone(),
        stat,
    });
    ctx.set_fetcher(fetch);
    let t0 = Instant::now();
    let res = catch_unwind(AssertUnwindSafe(|| backend.run_kind(spec, &mut ctx)));
    let res = match res {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(StageError::Panicked(msg))
        }
    };
    let jobs = ctx.job_ids();
    if let Err(e) = res {
        ctx.log(format!("error: {e}"));
        cache.discard_tmp(&tmp);
        return fail_with(e, jobs);
    }
    let partitions = ctx.partition_keys();
    let manifest = Manifest {
        luna_manifest: MANIFEST_VERSION,
        key: ps.key.clone(),
        stage: ps.stage.clone(),
        pipeline: p.name.clone(),
        kind: ps.kind.clone(),
        version: ps.material.version,
        params: ps.material.params.clone(),
        upstream: ps.material.upstream.clone(),
        inputs: ps.material.inputs.clone(),
        partitions: partitions.clone(),
        files: ctx.known_files(),
        luna_version: env!("CARGO_PKG_VERSION").into(),
        created: chrono::Utc::now().to_rfc3339(),
        duration_s: t0.elapsed().as_secs_f64(),
    };
    let committed = if forced {
        cache.commit_replacing(&tmp, manifest)
    } else {
        cache.commit(&tmp, manifest)
    };
    match committed {
        Ok(_) => {
            let _ = std::fs::remove_dir_all(cache.resume_dir(&ps.key));
            Outcome {
                error: None,
                partitions,
                status: StageStatus::Ran,
                jobs,
            }
        }
        Err(e) => {
            cache.discard_tmp(&tmp);
            fail_with(e.into(), jobs)
        }
    }
}
