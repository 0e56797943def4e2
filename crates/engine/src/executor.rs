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

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::Scope;
use std::time::{Duration, Instant};

use super::cache::{Cache, KeyLock, Manifest, MANIFEST_VERSION};
use super::context::{cores, share_cores, ContextParts, StageContext, ThreadBudget, Upstream};
use super::error::StageError;
use super::events::{Event, EventSink, StageStatus};
use super::keying::{explain, key_stage, UpState};
use super::plan::{Freshness, PlannedStage};
use super::reason::{Pending, RerunReason};
use super::remote::Fetcher;
use super::runs::{self, PipelineState, RunRecord, Runs, StageRecord, StageState};
use super::spec::{Pipeline, StageSpec};
use super::statcache::StatCache;

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
    pub stat: Option<Arc<StatCache>>,
    /// Re-hash every upstream file before a stage consumes it, whatever the object's size
    /// (`luna run --verify`); otherwise only objects up to `CHEAP_HASH_BYTES` are re-hashed.
    pub verify: bool,
    /// Fetches a missing artifact (or partition) from a remote instead of computing it
    /// (`luna run --pull`; see `remote.rs`).
    pub fetch: Option<Arc<dyn Fetcher>>,
    /// Where stages' work runs ([`Local`] unless `luna run --executor` says otherwise).
    pub backend: Arc<dyn Backend>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum St {
    Pending,
    Running,
    Done(StageStatus),
}

/// What a stage thread hands back to the main thread (next to its `Finished` event).
struct Outcome {
    error: Option<(String, Option<String>)>,
    /// The failure is a user's input file that cannot be used (`luna run` exits 2).
    bad_input: bool,
    partitions: Vec<String>,
    status: StageStatus,
    jobs: Vec<String>,
    /// The artifact's output identity (see `fingerprint.rs`, "Early cutoff").
    identity: Option<String>,
}

impl Outcome {
    /// Ended without error: `status` (`Ran` or `Cached`), with the artifact's partitions and
    /// output identity.
    fn ok(status: StageStatus, partitions: Vec<String>, identity: String) -> Outcome {
        Outcome {
            error: None,
            bad_input: false,
            partitions,
            status,
            jobs: Vec::new(),
            identity: Some(identity),
        }
    }
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
    let mut rec = new_record(p);
    let saved = runs.save(&rec);
    let mut run = Run::new(p, plan, cache, runs, opts, rec.id.clone());
    reporter.start(p, plan, run.jobs, &run.run_id);
    if let Err(e) = saved {
        warn_unsaved(runs, &rec, &e, reporter);
    }
    run.settle_fresh(reporter);
    let (tx, rx) = channel::<Event>();
    std::thread::scope(|scope| run.drive(scope, &tx, &rx, reporter));
    drop(tx);
    // drain events that arrived after the last Finished (none expected)
    while let Ok(ev) = rx.try_recv() {
        reporter.event(&ev);
    }
    rec.stages = run
        .order
        .iter()
        .filter_map(|i| run.records.remove(i))
        .collect();
    rec.success = rec
        .stages
        .iter()
        .all(|s| matches!(s.status, StageStatus::Ran | StageStatus::Cached));
    rec.ended = Some(chrono::Utc::now().to_rfc3339());
    if let Err(e) = runs.save(&rec) {
        warn_unsaved(runs, &rec, &e, reporter);
    }
    reporter.finish(&rec, run.started.elapsed());
    rec
}

/// A new run's record, before any stage ran.
fn new_record(p: &Pipeline) -> RunRecord {
    RunRecord {
        id: runs::new_run_id(&p.name),
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
    }
}

/// A run record that could not be saved: the run goes on (its artifacts are in the cache;
/// only `luna runs`, the report and `cache gc --keep-runs` miss the record), with a warning
/// on stderr (through the reporter) and in the run's `warnings.log`.
fn warn_unsaved(runs: &Runs, rec: &RunRecord, e: &std::io::Error, reporter: &mut dyn Reporter) {
    let path = runs.run_dir(&rec.id).join("run.json");
    let message = format!("could not save the run record {}: {e}", path.display());
    if let Err(e2) = runs.append_warning(&rec.id, &message) {
        reporter.event(&Event::Warning {
            message: format!("{message} (nor write it to the run's warnings.log: {e2})"),
        });
    } else {
        reporter.event(&Event::Warning { message });
    }
}

/// The threads a stage may use when it starts: the cores, shared by the stages running at that
/// moment (`running`, itself included); [`Run::finished`] re-shares them when a stage ends, so
/// a long stage takes the cores that free up.
fn stage_threads(running: usize) -> ThreadBudget {
    ThreadBudget::new(cores() / running.max(1))
}

/// The state of one run on the main thread (the only thread that changes it).
struct Run<'a> {
    p: &'a Pipeline,
    cache: &'a Cache,
    runs: &'a Runs,
    opts: &'a RunOptions,
    run_id: String,
    /// Stages at once.
    jobs: usize,
    started: Instant,
    /// The planned stages by index, re-keyed as their upstream stages finish.
    stages: BTreeMap<usize, PlannedStage>,
    /// Their indices in topological order.
    order: Vec<usize>,
    /// What downstream keys see of each stage (by index): see `keying.rs`.
    ups: Vec<Option<UpState>>,
    /// Stages that ran in this run, and, for each stage that stayed cached because an upstream
    /// re-ran with unchanged output, the stages that re-ran.
    ran: BTreeSet<usize>,
    cut: BTreeMap<usize, Vec<String>>,
    st: BTreeMap<usize, St>,
    records: BTreeMap<usize, StageRecord>,
    /// Filled by stage threads before they send `Finished`.
    outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>>,
    /// Stage threads started and not finished.
    running: usize,
    /// The thread budgets of the running stages, re-shared when one finishes.
    budgets: BTreeMap<usize, ThreadBudget>,
}

impl<'a> Run<'a> {
    fn new(
        p: &'a Pipeline,
        plan: &'a [PlannedStage],
        cache: &'a Cache,
        runs: &'a Runs,
        opts: &'a RunOptions,
        run_id: String,
    ) -> Self {
        let stages: BTreeMap<usize, PlannedStage> =
            plan.iter().map(|ps| (ps.index, ps.clone())).collect();
        let order = p
            .dag
            .topo_order()
            .into_iter()
            .filter(|i| stages.contains_key(i))
            .collect();
        let mut ups = vec![None; p.stages.len()];
        for ps in plan {
            ups[ps.index] = Some(UpState {
                key: ps.key.clone(),
                identity: ps.identity.clone(),
                pending: ps.state.pending(),
            });
        }
        Run {
            p,
            cache,
            runs,
            opts,
            run_id,
            jobs: opts.jobs.max(1),
            started: Instant::now(),
            stages,
            order,
            ups,
            ran: BTreeSet::new(),
            cut: BTreeMap::new(),
            st: BTreeMap::new(),
            records: BTreeMap::new(),
            outcomes: Arc::default(),
            running: 0,
            budgets: BTreeMap::new(),
        }
    }

    /// Marks every stage pending, except those outside the selection and those fresh already
    /// (done: their artifacts are cached or not needed); the fresh selected ones are reported
    /// as cached, with one state-file write for all of them.
    fn settle_fresh(&mut self, reporter: &mut dyn Reporter) {
        let mut fresh_states = Vec::new();
        for ps in self.order.iter().map(|i| &self.stages[i]) {
            let s = if !ps.selected || ps.state == Freshness::Fresh {
                St::Done(StageStatus::Cached)
            } else {
                St::Pending
            };
            self.st.insert(ps.index, s);
            let fresh = ps.selected && ps.state == Freshness::Fresh;
            // a shared cache's object is verified before this run uses it (see cache.rs)
            if let (true, Err(e)) = (fresh, self.cache.verify_use(&ps.key, Some(&ps.material))) {
                self.st.insert(ps.index, St::Done(StageStatus::Failed));
                let detail = match e.hint() {
                    Some(h) => format!("{e}\n  = hint: {h}"),
                    None => e.to_string(),
                };
                settle(
                    reporter,
                    &mut self.records,
                    ps,
                    StageStatus::Failed,
                    0.0,
                    Some(detail),
                );
                continue;
            }
            if fresh {
                settle(
                    reporter,
                    &mut self.records,
                    ps,
                    StageStatus::Cached,
                    0.0,
                    None,
                );
                fresh_states.push((ps.stage.clone(), state_of(ps)));
            }
        }
        PipelineState::record(&self.p.workspace, &self.p.name, fresh_states);
    }

    /// The main loop: start what is ready, then wait for the next event, until nothing runs.
    fn drive<'s>(
        &mut self,
        scope: &'s Scope<'s, 'a>,
        tx: &Sender<Event>,
        rx: &Receiver<Event>,
        reporter: &mut dyn Reporter,
    ) {
        loop {
            self.start_ready(scope, tx, reporter);
            if self.running == 0 {
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
                self.finished(stage, *status, *duration);
            }
            reporter.event(&ev);
        }
    }

    /// Starts the pending stages whose upstream is done (up to `jobs` running); skips those
    /// whose upstream failed or was skipped.
    fn start_ready<'s>(
        &mut self,
        scope: &'s Scope<'s, 'a>,
        tx: &Sender<Event>,
        reporter: &mut dyn Reporter,
    ) {
        let order = self.order.clone();
        for idx in order {
            if self.st[&idx] != St::Pending {
                continue;
            }
            let ps = &self.stages[&idx];
            let deps = self.p.dag.deps(ps.index);
            let failed_dep = deps.iter().find(|d| {
                matches!(
                    self.st.get(d),
                    Some(St::Done(StageStatus::Failed)) | Some(St::Done(StageStatus::Skipped))
                )
            });
            if let Some(&d) = failed_dep {
                let detail = format!("upstream '{}' did not complete", self.p.stages[d].name);
                self.st.insert(ps.index, St::Done(StageStatus::Skipped));
                let at = self.started.elapsed().as_secs_f64();
                let status = StageStatus::Skipped;
                settle(reporter, &mut self.records, ps, status, at, Some(detail));
                continue;
            }
            let ready = deps
                .iter()
                .all(|d| matches!(self.st.get(d), Some(St::Done(_)) | None));
            if !ready || self.running >= self.jobs {
                continue;
            }
            if ps.waiting && self.rekey(idx, reporter) {
                continue;
            }
            self.st.insert(idx, St::Running);
            self.running += 1;
            self.launch(scope, idx, tx.clone());
        }
    }

    /// Keys stage `idx` again now that the upstream stages its key was guessed from have
    /// finished (see `keying.rs`). Returns true when that settled it: its artifact is cached
    /// (an upstream re-ran with unchanged output: early cutoff) or it could not be keyed.
    fn rekey(&mut self, idx: usize, reporter: &mut dyn Reporter) -> bool {
        let ps = &self.stages[&idx];
        let state = PipelineState::load(&self.p.workspace, &self.p.name);
        let prev = state.as_ref().ok().and_then(|st| st.stages.get(&ps.stage));
        let plain: BTreeMap<usize, _> = ps.material.inputs.iter().cloned().enumerate().collect();
        let stat = (self.opts.stat.clone()).unwrap_or_else(|| Arc::new(StatCache::disabled()));
        let keyed = key_stage(
            self.p,
            idx,
            &self.ups,
            &plain,
            prev.map(|x| &x.material),
            (self.cache, &stat),
        );
        let keyed = match keyed {
            Ok(k) => k,
            Err(e) => {
                let detail = match e.hint() {
                    Some(h) => format!("{e}\n  = hint: {h}"),
                    None => e.to_string(),
                };
                self.st.insert(idx, St::Done(StageStatus::Failed));
                let at = self.started.elapsed().as_secs_f64();
                settle(
                    reporter,
                    &mut self.records,
                    ps,
                    StageStatus::Failed,
                    at,
                    Some(detail),
                );
                return true;
            }
        };
        let key = keyed.material.key();
        let forced = ps.reasons.contains(&RerunReason::Forced);
        let cutoff = !forced && key != ps.key && self.cache.has(&key);
        let cut = cutoff.then(|| self.cut_by(idx));
        let ps = self.stages.get_mut(&idx).expect("a planned stage");
        ps.waiting = false;
        ps.state = Freshness::Stale;
        if key == ps.key {
            return false;
        }
        ps.material = keyed.material;
        ps.identity = key.clone();
        ps.key = key;
        let Some(cut) = cut else {
            if !forced {
                ps.reasons = explain(&state, &ps.stage, &ps.key, &ps.material, &[]);
            }
            return false;
        };
        ps.state = Freshness::Fresh;
        ps.identity = self.cache.identity(&ps.key);
        ps.reasons = cut
            .iter()
            .map(|s| RerunReason::UpstreamUnchanged { stage: s.clone() })
            .collect();
        let ps = &self.stages[&idx];
        let detail = ps.reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        self.cut.insert(idx, cut);
        self.st.insert(idx, St::Done(StageStatus::Cached));
        self.ups[idx] = Some(UpState {
            key: ps.key.clone(),
            identity: ps.identity.clone(),
            pending: Pending::Settled,
        });
        PipelineState::record(
            &self.p.workspace,
            &self.p.name,
            vec![(ps.stage.clone(), state_of(ps))],
        );
        let at = self.started.elapsed().as_secs_f64();
        let detail = Some(detail.join("; "));
        settle(
            reporter,
            &mut self.records,
            ps,
            StageStatus::Cached,
            at,
            detail,
        );
        true
    }

    /// The stages that re-ran in this run behind stage `idx`'s guessed key: each upstream it
    /// waited for that ran, or, for one that stayed cached itself, the stages behind that one.
    fn cut_by(&self, idx: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.stages[&idx].reasons {
            let (RerunReason::UpstreamWillRun { stage } | RerunReason::UpstreamMayRun { stage }) =
                r
            else {
                continue;
            };
            let names = match self.p.stage_index(stage) {
                Some(d) if self.ran.contains(&d) => vec![stage.clone()],
                Some(d) => self.cut.get(&d).cloned().unwrap_or_default(),
                None => Vec::new(),
            };
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }

    /// Runs stage `idx` on its own thread: `Started`, the work, its outcome, `Finished`.
    fn launch<'s>(&mut self, scope: &'s Scope<'s, 'a>, idx: usize, tx: Sender<Event>) {
        let budget = stage_threads(self.running);
        self.budgets.insert(idx, budget.clone());
        let ps = self.stages[&idx].clone();
        let job = StageJob {
            p: self.p,
            upstream: upstreams(self.p, &self.stages, ps.index, self.cache),
            cache: self.cache,
            tx,
            log_path: self
                .runs
                .run_dir(&self.run_id)
                .join("logs")
                .join(format!("{}.log", ps.stage)),
            threads: budget,
            verify: self.opts.verify,
            stat: self.opts.stat.clone(),
            fetch: self.opts.fetch.clone(),
            backend: self.opts.backend.clone(),
            ps,
        };
        let outcomes = self.outcomes.clone();
        scope.spawn(move || {
            let t0 = Instant::now();
            let tx = job.tx.clone();
            let (index, stage) = (job.ps.index, job.ps.stage.clone());
            // the main thread receives until every started stage has sent `Finished`, so
            // these sends cannot fail while it listens; after that no one needs them
            let _ = tx.send(Event::Started {
                stage: stage.clone(),
                reasons: job.ps.reasons.clone(),
            });
            let out = run_stage_caught(job);
            let (detail, hint) = match &out.error {
                Some((d, h)) => (Some(d.clone()), h.clone()),
                None => (None, None),
            };
            let status = out.status;
            outcomes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(index, out);
            let _ = tx.send(Event::Finished {
                stage,
                status,
                duration: t0.elapsed(),
                detail,
                hint,
            });
        });
    }

    /// A stage thread finished: its state, state file entry and record.
    fn finished(&mut self, stage: &str, status: StageStatus, duration: Duration) {
        let Some(ps) = self.stages.values().find(|ps| ps.stage == stage) else {
            return;
        };
        self.running -= 1;
        self.budgets.remove(&ps.index);
        share_cores(self.budgets.values());
        self.st.insert(ps.index, St::Done(status));
        let out = self
            .outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ps.index);
        let (err, bad_input, parts, jobs, identity) = match out {
            Some(o) => (
                o.error.map(|e| e.0),
                o.bad_input,
                o.partitions,
                o.jobs,
                o.identity,
            ),
            None => (None, false, Vec::new(), Vec::new(), None),
        };
        if matches!(status, StageStatus::Ran | StageStatus::Cached) {
            let state = vec![(ps.stage.clone(), state_of(ps))];
            PipelineState::record(&self.p.workspace, &self.p.name, state);
            self.ups[ps.index] = Some(UpState {
                key: ps.key.clone(),
                identity: identity.unwrap_or_else(|| ps.key.clone()),
                pending: Pending::Settled,
            });
        }
        if status == StageStatus::Ran {
            self.ran.insert(ps.index);
        }
        let secs = duration.as_secs_f64();
        let start = (self.started.elapsed().as_secs_f64() - secs).max(0.0);
        let mut r = record(ps, status, start, secs, err, parts);
        r.jobs = jobs;
        r.bad_input = bad_input;
        self.records.insert(ps.index, r);
    }
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
        reasons: if status == StageStatus::Ran || ps.state == Freshness::Fresh {
            ps.reasons.clone()
        } else {
            Vec::new()
        },
        error,
        partitions,
        jobs: Vec::new(),
        bad_input: false,
    }
}

/// Upstream artifacts of stage `i`: direct needs first, then further ancestors.
fn upstreams(
    p: &Pipeline,
    stages: &BTreeMap<usize, PlannedStage>,
    i: usize,
    cache: &Cache,
) -> Vec<Upstream> {
    let key_of = |j: usize| stages.get(&j).map(|ps| ps.key.clone()).unwrap_or_default();
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

/// Everything one stage's thread needs.
struct StageJob<'a> {
    p: &'a Pipeline,
    ps: PlannedStage,
    cache: &'a Cache,
    upstream: Vec<Upstream>,
    tx: Sender<Event>,
    log_path: PathBuf,
    /// Threads the stage may use now ([`stage_threads`], re-shared as stages finish).
    threads: ThreadBudget,
    /// `--verify`: re-hash every upstream file.
    verify: bool,
    stat: Option<Arc<StatCache>>,
    fetch: Option<Arc<dyn Fetcher>>,
    backend: Arc<dyn Backend>,
}

impl StageJob<'_> {
    /// A failed outcome (a full disk is named as such).
    fn fail(&self, e: StageError, jobs: Vec<String>) -> Outcome {
        let e = e.or_no_space(self.cache.root());
        Outcome {
            error: Some((e.to_string(), e.hint())),
            bad_input: e.is_bad_input(),
            partitions: Vec::new(),
            status: StageStatus::Failed,
            jobs,
            identity: None,
        }
    }

    /// `--force` re-runs a stage even though its object exists; the new output replaces it.
    fn forced(&self) -> bool {
        self.ps.reasons.contains(&RerunReason::Forced)
    }
}

/// [`run_stage`] with any panic on the stage's thread (a remote fetch, a commit, the kind)
/// turned into a failed outcome: the thread then still sends `Finished`, so the main loop,
/// which waits for every started stage, never waits forever.
fn run_stage_caught(job: StageJob<'_>) -> Outcome {
    let cache = job.cache;
    match catch_unwind(AssertUnwindSafe(|| run_stage(job))) {
        Ok(out) => out,
        Err(panic) => {
            let e = StageError::Panicked(panic_message(&*panic)).or_no_space(cache.root());
            Outcome {
                error: Some((
                    e.to_string(),
                    Some("this is a bug in luna: please report it with the message above".into()),
                )),
                bad_input: false,
                partitions: Vec::new(),
                status: StageStatus::Failed,
                jobs: Vec::new(),
                identity: None,
            }
        }
    }
}

/// The text of a panic's payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}

/// One stage under its key lock: reused if it appeared meanwhile (or comes from the remote),
/// else computed and committed.
fn run_stage(job: StageJob<'_>) -> Outcome {
    let lock = match key_lock(&job) {
        Ok(l) => l,
        Err(e) => return job.fail(e, Vec::new()),
    };
    match reuse(&job) {
        Ok(Some(out)) => {
            drop(lock);
            return out;
        }
        Ok(None) => {}
        Err(e) => return job.fail(e, Vec::new()),
    }
    if let Err(e) = check_upstreams(&job) {
        return job.fail(e, Vec::new());
    }
    let out = compute(&job);
    drop(lock);
    out
}

/// The key's lock, waiting (and saying so) while another process holds it.
fn key_lock(job: &StageJob<'_>) -> Result<KeyLock, StageError> {
    if let Some(l) = job.cache.try_lock(&job.ps.key)? {
        return Ok(l);
    }
    // as in `launch`: the main thread listens while this stage runs
    let _ = job.tx.send(Event::Waiting {
        stage: job.ps.stage.clone(),
    });
    Ok(job.cache.lock(&job.ps.key)?)
}

/// The artifact without computing it: another luna process computed it while we waited, or
/// (`--pull`) the remote's copy, verified on the way in. A remote that lacks it or whose copy
/// is refused leaves the stage to compute.
fn reuse(job: &StageJob<'_>) -> Result<Option<Outcome>, StageError> {
    if job.forced() {
        return Ok(None);
    }
    let (cache, key) = (job.cache, &job.ps.key);
    if cache.has(key) {
        cache.verify_use(key, Some(&job.ps.material))?;
        return Ok(Some(Outcome::ok(
            StageStatus::Cached,
            Vec::new(),
            cache.identity(key),
        )));
    }
    let Some(f) = &job.fetch else {
        return Ok(None);
    };
    match f.fetch(cache, key) {
        Ok(true) => {
            let parts = cache
                .manifest(key)
                .map(|m| m.partitions)
                .unwrap_or_default();
            Ok(Some(Outcome::ok(
                StageStatus::Cached,
                parts,
                cache.identity(key),
            )))
        }
        Ok(false) => Ok(None),
        Err(e) => Err(StageError::Message {
            message: e.to_string(),
            hint: e.hint(),
        }),
    }
}

/// Never consume a damaged upstream (sizes always, blake3 of small objects; see cache.rs):
/// a wrong result committed from it would stay cached after the upstream is recomputed.
/// A transitive ancestor whose object is gone (`--only` after a gc) is not read through
/// this stage's direct inputs, so only present ancestors are checked.
fn check_upstreams(job: &StageJob<'_>) -> Result<(), StageError> {
    for u in &job.upstream {
        if !u.direct && !u.dir.exists() {
            continue;
        }
        let checked = job
            .cache
            .verify_use(&u.key, None)
            .and_then(|()| job.cache.check_upstream(&u.key, job.verify));
        if let Err(source) = checked {
            return Err(StageError::Upstream {
                stage: u.stage.clone(),
                source,
            });
        }
    }
    Ok(())
}

/// Runs the kind on the backend into a tmp dir and commits it (the caller holds the lock).
fn compute(job: &StageJob<'_>) -> Outcome {
    let (p, ps, cache) = (job.p, &job.ps, job.cache);
    let tmp = match cache.new_tmp(&ps.key) {
        Ok(t) => t,
        Err(e) => return job.fail(e.into(), Vec::new()),
    };
    let spec = &p.stages[ps.index];
    let mut ctx = StageContext::new(ContextParts {
        stage: ps.stage.clone(),
        pipeline: p.name.clone(),
        out_dir: tmp.clone(),
        workspace: p.workspace.clone(),
        upstream: job.upstream.clone(),
        bindings: spec.bindings.clone(),
        tx: EventSink::Channel(job.tx.clone()),
        with: spec.with.clone(),
        log_path: job.log_path.clone(),
        cache: cache.clone(),
        partition_base: serde_json::json!({ "kind": ps.kind, "version": ps.material.version, "params": spec.params.partition }),
        threads: job.threads.clone(),
        key: ps.key.clone(),
        stat: job.stat.clone(),
    });
    ctx.set_fetcher(job.fetch.clone());
    let t0 = Instant::now();
    let res = run_caught(&*job.backend, spec, &mut ctx);
    let jobs = ctx.job_ids();
    if let Err(e) = res {
        ctx.log(format!("error: {e}"));
        cache.discard_tmp(&tmp);
        return job.fail(e, jobs);
    }
    let partitions = ctx.partition_keys();
    let mut manifest = manifest(job, partitions.clone(), &ctx, t0.elapsed());
    match cache.hash_output(&tmp, &manifest.files) {
        Ok(files) => manifest.files = files,
        Err(e) => {
            cache.discard_tmp(&tmp);
            return job.fail(e.into(), jobs);
        }
    }
    manifest.same_output_as = same_output(job, &manifest);
    let identity = manifest
        .same_output_as
        .clone()
        .unwrap_or_else(|| ps.key.clone());
    match commit(job, &tmp, manifest) {
        Ok(()) => Outcome {
            jobs,
            ..Outcome::ok(StageStatus::Ran, partitions, identity)
        },
        Err(e) => job.fail(e, jobs),
    }
}

/// Early cutoff: the output identity of the stage's previous artifact (the key it had when it
/// last ran or was reused) when this run, under another key, wrote exactly its files; `None`
/// otherwise (no previous artifact, the same key, or other bytes).
fn same_output(job: &StageJob<'_>, new: &Manifest) -> Option<String> {
    let prev = job.ps.previous.as_deref().filter(|k| *k != job.ps.key)?;
    if !job.cache.has(prev) {
        return None;
    }
    let old = job.cache.manifest(prev).ok()?;
    (old.output_digest() == new.output_digest()).then(|| job.cache.identity(prev))
}

/// The backend's run of the kind, a panic turned into a stage error.
fn run_caught(
    backend: &dyn Backend,
    spec: &StageSpec,
    ctx: &mut StageContext,
) -> Result<(), StageError> {
    match catch_unwind(AssertUnwindSafe(|| backend.run_kind(spec, ctx))) {
        Ok(r) => r,
        Err(panic) => Err(StageError::Panicked(panic_message(&*panic))),
    }
}

/// The manifest of a computed artifact.
fn manifest(
    job: &StageJob<'_>,
    partitions: Vec<String>,
    ctx: &StageContext,
    took: Duration,
) -> Manifest {
    let ps = &job.ps;
    Manifest {
        luna_manifest: MANIFEST_VERSION,
        key: ps.key.clone(),
        stage: ps.stage.clone(),
        pipeline: job.p.name.clone(),
        kind: ps.kind.clone(),
        version: ps.material.version,
        params: ps.material.params.clone(),
        upstream: ps.material.upstream.clone(),
        inputs: ps.material.inputs.clone(),
        partitions,
        files: ctx.known_files(),
        luna_version: env!("CARGO_PKG_VERSION").into(),
        created: chrono::Utc::now().to_rfc3339(),
        duration_s: took.as_secs_f64(),
        same_output_as: None,
    }
}

/// Commits `tmp` (replacing the object under `--force`); on failure the tmp dir is removed.
fn commit(job: &StageJob<'_>, tmp: &Path, manifest: Manifest) -> Result<(), StageError> {
    let (cache, key) = (job.cache, &job.ps.key);
    let committed = if job.forced() {
        cache.commit_replacing(tmp, manifest)
    } else {
        cache.commit(tmp, manifest)
    };
    if let Err(e) = committed {
        cache.discard_tmp(tmp);
        return Err(e.into());
    }
    // the checkpoints of an earlier, interrupted attempt are dead weight now; usually there
    // are none, and one that cannot be removed is `cache gc`'s to delete
    let _ = std::fs::remove_dir_all(cache.resume_dir(key));
    Ok(())
}
