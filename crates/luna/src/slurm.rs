//! The Slurm executor backend (`luna run --executor slurm`): each stage's work runs as Slurm
//! jobs over the shared cache, while the `luna run` process (the driver) plans, locks, checks
//! upstreams and commits exactly as a local run does (see the engine's `executor` module doc).
//!
//! - A stage's work is one `sbatch` job running the hidden `luna __stage REQUEST`, where
//!   `REQUEST` is the [`WorkerRequest`] the torch worker already takes (written to a file under
//!   `runs/<id>/logs/<stage>.slurm/`): the job rebuilds the stage's context, runs the kind into
//!   the driver's tmp dir (on the shared cache) and prints the worker protocol's `luna:done` or
//!   `luna:error` line into its output file, which the driver reads back ([`Relay`]) while it
//!   waits. The driver then commits the tmp dir as it does locally, so keys, files and
//!   manifests are the same.
//! - A partitioned kind ([`DynKind::partitioned`]) becomes a job array of
//!   `[executor.slurm] array_tasks` tasks; task `i` runs the stage in shard mode
//!   (`StageContext::set_shard`), committing only its own partitions (each atomically, under its
//!   key lock). The stage then runs in the driver over the cached partitions — the local code
//!   path — and commits. Progress (partitions done / total) is the sum over the tasks' reports.
//! - Job states come from `squeue -t all` (one call per poll for every job the driver waits
//!   on), because `sacct` needs slurmdbd accounting, which small clusters and the test cluster
//!   (scripts/slurm-local.sh) do not run; a job that left `squeue` is judged by its output file
//!   (`luna:done`, `luna:error`, or neither: killed).
//! - A job the scheduler killed (cancelled, time limit, node failure, preemption) committed
//!   nothing of the stage (a shard may have committed whole partitions, which are reused) and is
//!   resubmitted up to `retries` times; a job that failed fails the stage with its error and the
//!   tail of its stderr. Ctrl-C / SIGTERM of the driver `scancel`s every job it submitted.
//! - Before anything is submitted, every stage's sbatch options are checked with
//!   `sbatch --test-only`, so an unknown partition or a request Slurm rejects is one error
//!   naming the stage and Slurm's words (exit 2) and nothing runs.
//!
//! Why here and not in the engine: the request a job runs is the `luna` crate's worker request,
//! and GPU requests depend on the domain's typed `device` hint (`stages::wants_gpu`); the
//! engine only knows the [`Backend`] trait. Rejected: a scheduler of our own (Slurm is the lab's scheduler); DRMAA
//! (not installed on most clusters, and one more C library); one job per partition (888 jobs
//! for LUNA16 swamp the queue; arrays are Slurm's answer); the final commit as a last dependent
//! job (a second commit path, and the driver would wait for it anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::executor::SlurmConfig;
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::executor::Backend;
use crate::engine::kind::DynKind;
use crate::engine::spec::StageSpec;
use crate::worker::{Relay, WorkerDone, WorkerRequest};

/// Set by the driver's SIGINT / SIGTERM handler ([`install_signal_handlers`]).
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM set [`INTERRUPTED`] instead of killing the driver, which then cancels its
/// jobs and writes the run record.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

/// Setting up or talking to Slurm failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command is not installed (or not on PATH).
    #[error("--executor slurm needs `{program}`, which cannot be run: {source}")]
    Missing {
        /// The program.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Slurm rejected a stage's job request.
    #[error("stage `{stage}`: Slurm rejects its job request: {message}")]
    Rejected {
        /// The stage.
        stage: String,
        /// Slurm's words.
        message: String,
    },
}

impl SlurmError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            SlurmError::Missing { .. } => "run on a Slurm login node (where `sbatch` works), or drop `--executor slurm` / set `[executor] kind = \"local\"` in luna.toml".into(),
            SlurmError::Rejected { .. } => "fix the stage's `resources:` or `[executor.slurm]` in luna.toml (partition, account, sbatch_args); `sinfo` lists partitions".into(),
        })
    }
}

/// Job states after which a job runs no more.
const FINISHED_OK: &str = "COMPLETED";
const FAILED: &[&str] = &["FAILED", "OUT_OF_MEMORY"];
const KILLED: &[&str] = &[
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "REVOKED",
];

/// The Slurm backend.
#[derive(Debug)]
pub struct Slurm {
    cfg: SlurmConfig,
    luna: PathBuf,
    /// Every job id submitted (array job ids without a task), for `scancel`.
    submitted: Mutex<Vec<String>>,
    /// Jobs some stage waits on → (last `squeue` poll, states by `%i`).
    states: Mutex<(Option<Instant>, BTreeMap<String, String>)>,
    active: Mutex<BTreeSet<String>>,
    cancelled: AtomicBool,
}

/// One job (or array task) a stage waits on.
struct Task {
    shard: Option<u32>,
    id: String,
    base: String,
    out: PathBuf,
    err: PathBuf,
    offset: u64,
    relay: Relay,
    attempts: u32,
    since: Instant,
    seen: bool,
    done: bool,
}

fn run_tool(program: &str, args: &[String]) -> Result<std::process::Output, SlurmError> {
    Command::new(program)
        .args(args)
        .output()
        .map_err(|source| SlurmError::Missing {
            program: program.into(),
            source,
        })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Slurm {
    /// The backend, after checking that `sbatch`, `squeue` and `scancel` can be run.
    pub fn new(cfg: SlurmConfig) -> Result<Slurm, SlurmError> {
        for program in ["sbatch", "squeue", "scancel"] {
            run_tool(program, &["--version".into()])?;
        }
        let luna = std::env::current_exe().map_err(|source| SlurmError::Missing {
            program: "luna (the running executable)".into(),
            source,
        })?;
        Ok(Slurm {
            cfg,
            luna,
            submitted: Mutex::default(),
            states: Mutex::default(),
            active: Mutex::default(),
            cancelled: AtomicBool::new(false),
        })
    }

    /// The sbatch options of a stage's jobs (resources, partition, account, extra options).
    pub fn sbatch_options(&self, spec: &StageSpec) -> Vec<String> {
        let r = &spec.resources;
        let gpus = match r.gpus {
            Some(n) => n,
            None if self.cfg.gpus && crate::stages::wants_gpu(spec.kind.name(), &spec.params) => 1,
            None => 0,
        };
        let mut v = Vec::new();
        let partition = if gpus > 0 {
            self.cfg
                .gpu_partition
                .as_ref()
                .or(self.cfg.partition.as_ref())
        } else {
            self.cfg.partition.as_ref()
        };
        if let Some(p) = partition {
            v.push(format!("--partition={p}"));
        }
        if let Some(a) = &self.cfg.account {
            v.push(format!("--account={a}"));
        }
        if let Some(c) = r.cpus {
            v.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &r.mem {
            v.push(format!("--mem={m}"));
        }
        if let Some(t) = &r.time {
            v.push(format!("--time={t}"));
        }
        if gpus > 0 {
            v.push(format!("--gres=gpu:{gpus}"));
        }
        v.extend(self.cfg.sbatch_args.iter().cloned());
        v
    }

    /// Checks every stage's job request with `sbatch --test-only` (identical requests once).
    pub fn preflight<'a>(
        &self,
        stages: impl IntoIterator<Item = &'a StageSpec>,
    ) -> Result<(), SlurmError> {
        let mut checked = BTreeSet::new();
        for spec in stages {
            let opts = self.sbatch_options(spec);
            if !checked.insert(opts.clone()) {
                continue;
            }
            let mut args = vec!["--test-only".to_string()];
            args.extend(opts);
            args.extend(["--wrap".into(), "true".into()]);
            let out = run_tool("sbatch", &args)?;
            if !out.status.success() {
                let message = text(&out.stderr)
                    .lines()
                    .map(|l| l.trim_start_matches("sbatch: error: ").trim())
                    .filter(|l| !l.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(SlurmError::Rejected {
                    stage: spec.name.clone(),
                    message,
                });
            }
        }
        Ok(())
    }

    /// `scancel`s every job submitted so far (once).
    pub fn cancel_all(&self) {
        if self.cancelled.swap(true, Ordering::SeqCst) {
            return;
        }
        let ids = self
            .submitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !ids.is_empty() {
            let _ = run_tool("scancel", &ids);
        }
    }

    /// Every job id submitted (array job ids).
    pub fn submitted(&self) -> Vec<String> {
        self.submitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Submits the stage's job (or, with `shards`, the array tasks `tasks` of `shards`).
    fn submit(
        &self,
        spec: &StageSpec,
        ctx: &StageContext,
        dir: &Path,
        shards: Option<(u32, &[u32])>,
    ) -> Result<Vec<Task>, StageError> {
        if INTERRUPTED.load(Ordering::SeqCst) || self.cancelled.load(Ordering::SeqCst) {
            return Err(StageError::msg(
                "interrupted: no more Slurm jobs are submitted",
            ));
        }
        let request = dir.join("request.json");
        let mut wrap = format!(
            "exec {} __stage {}",
            quote(&self.luna.to_string_lossy()),
            quote(&request.to_string_lossy())
        );
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=luna-{}-{}", ctx.pipeline(), spec.name),
            format!("--chdir={}", ctx.workspace().display()),
        ];
        let pattern_dir = filename_pattern_dir(dir)?;
        match shards {
            Some((n, tasks)) => {
                wrap.push_str(&format!(" --shards {n}"));
                let list: Vec<String> = tasks.iter().map(|t| t.to_string()).collect();
                args.push(format!("--array={}", list.join(",")));
                args.push(format!("--output={pattern_dir}/%A_%a.out"));
                args.push(format!("--error={pattern_dir}/%A_%a.err"));
            }
            None => {
                args.push(format!("--output={pattern_dir}/%j.out"));
                args.push(format!("--error={pattern_dir}/%j.err"));
            }
        }
        args.extend(self.sbatch_options(spec));
        args.extend(["--wrap".into(), wrap]);
        let out = run_tool("sbatch", &args).map_err(|e| StageError::msg(e.to_string()))?;
        if !out.status.success() {
            return Err(StageError::msg(format!(
                "Slurm rejects the job of stage `{}`: {}",
                spec.name,
                text(&out.stderr)
            )));
        }
        let stdout = text(&out.stdout);
        // `--parsable` prints `id` or `id;cluster`
        let base = stdout.split(';').next().unwrap_or("").trim().to_string();
        if base.is_empty() || !base.chars().all(|c| c.is_ascii_digit()) {
            return Err(StageError::msg(format!(
                "sbatch printed no job id for stage `{}` (stdout: {stdout:?})",
                spec.name
            )));
        }
        self.submitted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(base.clone());
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(base.clone());
        // a job cancelled by the signal between the check above and here must go too
        if INTERRUPTED.load(Ordering::SeqCst) {
            let _ = run_tool("scancel", std::slice::from_ref(&base));
        }
        let task = |shard: Option<u32>, id: String| Task {
            shard,
            out: dir.join(format!("{id}.out")),
            err: dir.join(format!("{id}.err")),
            id,
            base: base.clone(),
            offset: 0,
            relay: Relay::default(),
            attempts: 1,
            since: Instant::now(),
            seen: false,
            done: false,
        };
        let tasks: Vec<Task> = match shards {
            Some((_, list)) => list
                .iter()
                .map(|&t| task(Some(t), format!("{base}_{t}")))
                .collect(),
            None => vec![task(None, base.clone())],
        };
        for t in &tasks {
            ctx.record_job(t.id.clone());
            ctx.log(format!("slurm: submitted job {}", t.id));
        }
        Ok(tasks)
    }

    /// The states (`squeue -t all -o %i|%T`) of the jobs stages wait on, at most `poll_ms` old.
    fn states(&self) -> BTreeMap<String, String> {
        let mut g = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let fresh =
            g.0.is_some_and(|t| t.elapsed() < Duration::from_millis(self.cfg.poll_ms));
        if fresh {
            return g.1.clone();
        }
        let ids: Vec<String> = self
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        let mut map = BTreeMap::new();
        if !ids.is_empty() {
            let args = vec![
                "-h".to_string(),
                "-t".into(),
                "all".into(),
                "-j".into(),
                ids.join(","),
                "-o".into(),
                "%i|%T".into(),
            ];
            // an error (e.g. every id purged already) reads as "no job listed": the tasks are
            // then judged by their output files
            if let Ok(out) = run_tool("squeue", &args) {
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if let Some((id, st)) = line.trim().split_once('|') {
                        map.insert(id.to_string(), st.to_string());
                    }
                }
            }
        }
        *g = (Some(Instant::now()), map.clone());
        map
    }

    /// Waits for `tasks`, resubmitting killed ones; returns each task's `luna:done`.
    fn wait(
        &self,
        spec: &StageSpec,
        ctx: &StageContext,
        dir: &Path,
        shards: Option<u32>,
        mut tasks: Vec<Task>,
    ) -> Result<Vec<WorkerDone>, StageError> {
        let mut results = Vec::new();
        let poll = Duration::from_millis(self.cfg.poll_ms.max(10));
        loop {
            if INTERRUPTED.load(Ordering::SeqCst) {
                self.cancel_all();
                return Err(StageError::msg(format!(
                    "interrupted: Slurm job{} {} cancelled",
                    if tasks.len() == 1 { "" } else { "s" },
                    tasks
                        .iter()
                        .map(|t| t.id.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            let states = self.states();
            let mut resubmit = Vec::new();
            let mut failure = None;
            for t in tasks.iter_mut().filter(|t| !t.done) {
                read_new_lines(t, ctx, shards.is_none());
                let state = states.get(&t.id).cloned().or_else(|| {
                    // pending tasks of an array show as `123_[1-3]`
                    let prefix = format!("{}_[", t.base);
                    states
                        .keys()
                        .any(|k| k.starts_with(&prefix))
                        .then(|| "PENDING".to_string())
                });
                let state = match state {
                    Some(s) => {
                        t.seen = true;
                        s
                    }
                    // left squeue (or never showed up): judge by the output file
                    None if t.seen || t.since.elapsed() > Duration::from_secs(10) => {
                        match (&t.relay.done, &t.relay.error) {
                            (Some(_), _) => FINISHED_OK.into(),
                            (None, Some(_)) => "FAILED".into(),
                            (None, None) => "VANISHED".into(),
                        }
                    }
                    None => continue,
                };
                let state = state.split_whitespace().next().unwrap_or("").to_string();
                if state == FINISHED_OK {
                    read_new_lines(t, ctx, shards.is_none());
                    t.done = true;
                    match t.relay.done.take() {
                        Some(d) => results.push(d),
                        None => {
                            failure =
                                Some(self.job_error(t, "completed without its `luna:done` line"));
                            break;
                        }
                    }
                } else if FAILED.contains(&state.as_str()) {
                    read_new_lines(t, ctx, shards.is_none());
                    t.done = true;
                    failure = Some(self.job_error(t, &format!("failed ({state})")));
                    break;
                } else if KILLED.contains(&state.as_str()) || state == "VANISHED" {
                    t.done = true;
                    if t.attempts > self.cfg.retries {
                        failure = Some(self.job_error(
                            t,
                            &format!(
                                "was killed by the scheduler ({state}) {} time(s); no retries left ([executor.slurm] retries = {})",
                                t.attempts, self.cfg.retries
                            ),
                        ));
                        break;
                    }
                    ctx.log(format!(
                        "slurm: job {} ended {state} without committing; resubmitting",
                        t.id
                    ));
                    resubmit.push((t.shard, t.attempts));
                }
            }
            if let Some(e) = failure {
                // the stage failed: its other tasks have nothing left to do
                let left: Vec<String> = tasks
                    .iter()
                    .filter(|t| !t.done)
                    .map(|t| t.id.clone())
                    .collect();
                if !left.is_empty() {
                    ctx.log(format!("slurm: cancelling {}", left.join(", ")));
                    let _ = run_tool("scancel", &left);
                }
                return Err(e);
            }
            for (shard, attempts) in resubmit {
                let list: Vec<u32> = shard.into_iter().collect();
                let arg = shards.map(|n| (n, list.as_slice()));
                for mut t in self.submit(spec, ctx, dir, arg)? {
                    t.attempts = attempts + 1;
                    tasks.push(t);
                }
            }
            if let Some(n) = shards {
                // partitions done / total: each item belongs to one task, which alone counts it
                let (mut pos, mut len, mut unit) = (0, 0, String::new());
                for t in tasks.iter() {
                    if let Some((p, l, u)) = &t.relay.progress {
                        pos += p;
                        len = len.max(l.unwrap_or(0));
                        unit = u.clone();
                    }
                }
                if len > 0 {
                    ctx.progress().set(pos, len, &unit);
                }
                let running = tasks.iter().filter(|t| !t.done).count();
                ctx.progress()
                    .set_message(format!("{running} of {n} Slurm array tasks left"));
            }
            if tasks.iter().all(|t| t.done) {
                let mut g = self.active.lock().unwrap_or_else(|e| e.into_inner());
                for t in &tasks {
                    g.remove(&t.base);
                }
                return Ok(results);
            }
            std::thread::sleep(poll);
        }
    }

    /// A failed job as a stage error: the job's own error (if it printed one) and its stderr.
    fn job_error(&self, t: &mut Task, what: &str) -> StageError {
        let tail = stderr_tail(&t.err, 20);
        let tail = if tail.is_empty() {
            String::new()
        } else {
            format!("\nstderr of job {} (last lines):\n{tail}", t.id)
        };
        match t.relay.error.take() {
            Some(e) => {
                let hint = e.hint.clone();
                let inner = e.into_stage_error();
                StageError::Message {
                    message: format!("{inner} (Slurm job {} {what}){tail}", t.id),
                    hint,
                }
            }
            None => StageError::msg(format!("Slurm job {} {what}{tail}", t.id))
                .with_hint(output_hint(&t.out)),
        }
    }
}

/// `dir` as the folder part of an sbatch `--output`/`--error` filename pattern: Slurm reads
/// `%` as a replacement symbol (`%%` is a literal one), and a `\\` anywhere turns every
/// replacement off, which would merge all tasks' output into one file — refused.
fn filename_pattern_dir(dir: &Path) -> Result<String, StageError> {
    let text = dir.to_string_lossy();
    if text.contains('\\') {
        return Err(StageError::msg(format!(
            "the job folder {} holds a backslash, which Slurm's --output pattern cannot carry",
            dir.display()
        ))
        .with_hint("move the workspace to a path without `\\` to run it on Slurm"));
    }
    Ok(text.replace('%', "%%"))
}

/// Feeds the lines added to the task's output file since the last call to its relay.
fn read_new_lines(t: &mut Task, ctx: &StageContext, forward_progress: bool) {
    let Ok(mut f) = std::fs::File::open(&t.out) else {
        return;
    };
    if f.seek(SeekFrom::Start(t.offset)).is_err() {
        return;
    }
    let mut buf = String::new();
    if f.read_to_string(&mut buf).is_err() {
        return;
    }
    // only whole lines; a partial last line is read again next time
    let whole = buf.rfind('\n').map_or(0, |i| i + 1);
    for line in buf[..whole].lines() {
        t.relay.line(ctx, line, forward_progress);
    }
    t.offset += whole as u64;
}

/// Where a failed job's output is, or that Slurm wrote none where it was asked to.
fn output_hint(out: &Path) -> String {
    if out.exists() {
        format!("the job's output is in {}", out.display())
    } else {
        format!(
            "Slurm wrote no output file at {} (see `sacct -j` and slurmd's log for why)",
            out.display()
        )
    }
}

/// The last `n` lines of a file ("" when it is missing or empty).
fn stderr_tail(path: &Path, n: usize) -> String {
    let Ok(f) = std::fs::File::open(path) else {
        return String::new();
    };
    let lines: Vec<String> = BufReader::new(f).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Backend for Slurm {
    fn run_kind(&self, spec: &StageSpec, ctx: &mut StageContext) -> Result<(), StageError> {
        let dir = std::path::absolute(ctx.log_path().with_extension("slurm"))
            .map_err(|e| StageError::io(ctx.log_path(), e))?;
        std::fs::create_dir_all(&dir).map_err(|e| StageError::io(&dir, e))?;
        let req = WorkerRequest::from_context(spec.kind.name(), ctx);
        let file = dir.join("request.json");
        let body = serde_json::to_vec_pretty(&req).map_err(|e| StageError::msg(e.to_string()))?;
        std::fs::write(&file, body).map_err(|e| StageError::io(&file, e))?;
        if spec.kind.partitioned() {
            let n = self.cfg.array_tasks.max(1);
            let all: Vec<u32> = (0..n).collect();
            let tasks = self.submit(spec, ctx, &dir, Some((n, &all)))?;
            for d in self.wait(spec, ctx, &dir, Some(n), tasks)? {
                // what the tasks computed counts as computed in this run, as it would locally
                ctx.mark_computed(&d.computed);
            }
            // scratch dirs of tasks the scheduler killed (their flocks died with them)
            ctx.cache().clean_stale_tmp();
            ctx.log("slurm: every array task done; the stage runs here over the cached partitions");
            // the local code path, over partitions the tasks committed
            spec.kind.run(&spec.params, ctx)
        } else {
            let tasks = self.submit(spec, ctx, &dir, None)?;
            for d in self.wait(spec, ctx, &dir, None, tasks)? {
                ctx.record_partitions(&d.partitions, &d.known_files);
                ctx.mark_computed(&d.computed);
            }
            Ok(())
        }
    }
}

/// A stage's work set up inside a job: its context and, for a shard, its scratch dir.
struct Job {
    ctx: StageContext,
    scratch: Option<PathBuf>,
    kind: std::sync::Arc<dyn DynKind>,
    params: crate::engine::kind::CheckedParams,
}

/// Sets up the job's stage from the driver's request; a shard gets its own scratch dir (a
/// shard writes no stage output) and the shard of `$SLURM_ARRAY_TASK_ID`.
fn start_job(mut req: WorkerRequest, shards: Option<u32>) -> Result<Job, StageError> {
    // the job's own allocation, not the driver's cores
    req.threads = std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let kind = crate::stages::registry()
        .get(&req.kind)
        .ok_or_else(|| StageError::msg(format!("this luna has no stage kind `{}`", req.kind)))?;
    let params = kind
        .check(&req.with)
        .map_err(|p| StageError::msg(format!("the stage's parameters no longer check: {p:?}")))?;
    let mut scratch = None;
    if let Some(n) = shards {
        let i: u32 = std::env::var("SLURM_ARRAY_TASK_ID")
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StageError::msg("--shards needs $SLURM_ARRAY_TASK_ID"))?;
        let cache = crate::engine::cache::Cache::open(&req.cache_root)?;
        let tmp = cache.new_tmp(&req.key)?;
        req.out_dir = tmp.clone();
        scratch = Some(tmp);
        req.shard = Some((i, n));
    }
    Ok(Job {
        ctx: req.context()?,
        scratch,
        kind,
        params,
    })
}

/// `luna __stage REQUEST [--shards N]`: the work of one stage inside a Slurm job (see the
/// module doc); the shard is `$SLURM_ARRAY_TASK_ID`. Returns the exit code.
pub fn serve_job(request: &Path, shards: Option<u32>) -> i32 {
    let job = std::fs::read(request)
        .map_err(|e| StageError::io(request, e))
        .and_then(|b| {
            serde_json::from_slice::<WorkerRequest>(&b).map_err(|e| {
                StageError::msg(format!("bad stage request {}: {e}", request.display()))
            })
        })
        .and_then(|req| start_job(req, shards));
    let mut job = match job {
        Ok(j) => j,
        Err(e) => {
            crate::worker::report_error(&e);
            return 1;
        }
    };
    let res = job.kind.run(&job.params, &mut job.ctx);
    if let Some(t) = &job.scratch {
        job.ctx.cache().discard_tmp(t);
    }
    crate::worker::report_result(res, &job.ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torch_stages_want_a_gpu_unless_their_device_is_cpu() {
        let r = crate::stages::registry_with(true);
        let wants = |kind: &str, with: serde_json::Value| {
            let Some(k) = r.get(kind) else {
                panic!("kind {kind} registered");
            };
            match k.check(&with) {
                Ok(p) => crate::stages::wants_gpu(kind, &p),
                Err(e) => panic!("{kind} {with}: {e:?}"),
            }
        };
        assert!(wants("train_classifier", serde_json::json!({"epochs": 1})));
        assert!(wants(
            "train_classifier",
            serde_json::json!({"epochs": 1, "device": "auto"})
        ));
        assert!(wants(
            "train_classifier",
            serde_json::json!({"epochs": 1, "device": "cuda:1"})
        ));
        assert!(!wants(
            "train_classifier",
            serde_json::json!({"epochs": 1, "device": "cpu"})
        ));
        assert!(!wants("command", serde_json::json!({"run": "true"})));
        // a device hint alone does not make a kind a torch kind
        assert!(!wants("test_params", serde_json::json!({"device": "cuda"})));
        assert_eq!(quote("a'b"), "'a'\\''b'");
    }
}
