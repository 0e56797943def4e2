//! Running torch stages in a worker process (`luna-torch`).
//!
//! Linking libtorch costs every process ~0.2 s of C++ static initialisation before `main`, so
//! the `luna` binary does not link it: kinds that need torch (training, evaluation) run their
//! work in `luna-torch`, spawned per stage. The parent sends a [`WorkerRequest`] as one JSON
//! line on stdin, then keeps stdin open for `luna:threads N` lines whenever the executor
//! changes the stage's thread budget (a stage that finishes frees cores; see
//! [`forward_budget`] / [`follow_budget`]); the worker rebuilds a [`StageContext`] whose events
//! go to stdout as
//! `luna:event <json>` lines, which the parent forwards to its own progress bar and log;
//! a failure is one `luna:error <json>` line and exit code 1. The worker's context computes
//! partition keys from the same base (kind, version, semantic params) as an in-process stage,
//! and its last line, `luna:done <json>`, lists the partitions it used and the output files
//! whose hashes it knows, so the parent's manifest lists them and `cache gc` keeps them. The worker dies with its parent
//! (PR_SET_PDEATHSIG), so `kill -9` of luna stops training too, and the stage is not committed.
//! A side benefit: a CUDA crash cannot take the executor down with it.
//!
//! The same request and line protocol carry a stage to a Slurm job (`luna __stage`, see
//! [`crate::slurm`]): [`WorkerRequest::from_context`] on the driver, [`WorkerRequest::context`]
//! and [`report_result`] in the job, [`Relay`] reading the job's output file back. Rejected: a
//! second request format for the scheduler (the two would drift apart).

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::cache::{Cache, FileEntry};
use crate::engine::context::{ContextParts, StageContext, ThreadBudget, Upstream};
use crate::engine::error::StageError;
use crate::engine::events::{EventSink, WireEvent, WIRE_PREFIX};
use crate::engine::kind::Stage;
use crate::model::Device;

/// Prefix of the worker's error line.
pub const ERROR_PREFIX: &str = "luna:error ";
/// Prefix of the worker's success line ([`WorkerDone`]).
pub const DONE_PREFIX: &str = "luna:done ";
/// Prefix of the lines the parent writes to the worker's stdin after the request: the stage's
/// new thread budget.
pub const THREADS_PREFIX: &str = "luna:threads ";

/// How often the parent looks at the stage's thread budget for a change to forward.
const BUDGET_POLL: Duration = Duration::from_millis(200);

/// Writes a `luna:threads N` line to `to` (a worker's stdin) whenever `budget` differs from
/// what the worker was last told (`sent`: the request's count at first), looking every
/// `every`, until `stop`'s senders are gone or the worker no longer reads.
pub fn forward_budget(
    budget: &ThreadBudget,
    mut sent: usize,
    mut to: impl Write,
    stop: Receiver<()>,
    every: Duration,
) {
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(every) {
        let n = budget.get();
        if n != sent {
            let line = format!("{THREADS_PREFIX}{n}\n");
            if to
                .write_all(line.as_bytes())
                .and_then(|()| to.flush())
                .is_err()
            {
                return; // the worker has exited: nothing left to tell it
            }
            sent = n;
        }
    }
}

/// The worker's side of [`forward_budget`]: sets `budget` from each `luna:threads N` line of
/// `from` until it ends; any other line goes to `log` as an error.
pub fn follow_budget(from: impl BufRead, budget: &ThreadBudget, log: impl Fn(String)) {
    for line in from.lines().map_while(Result::ok) {
        match line
            .strip_prefix(THREADS_PREFIX)
            .map(|n| n.trim().parse::<usize>())
        {
            Some(Ok(n)) => budget.set(n),
            _ => log(format!(
                "worker: ignored a bad control line from luna: {line:?}"
            )),
        }
    }
}

/// What a successful worker reports back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerDone {
    /// Keys of the partitions the stage used.
    pub partitions: Vec<String>,
    /// Output files with known hashes (linked from committed objects).
    pub known_files: Vec<FileEntry>,
    /// Keys of the partitions it computed (rather than found cached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub computed: Vec<String>,
}

/// What the worker needs to run one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// Kind name.
    pub kind: String,
    /// Stage name.
    pub stage: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Workspace root.
    pub workspace: PathBuf,
    /// Cache root.
    pub cache_root: PathBuf,
    /// Upstream artifacts.
    pub upstream: Vec<Upstream>,
    /// Named inputs bound to upstream stages.
    pub bindings: BTreeMap<String, String>,
    /// Kind, version and semantic params (partition keys start from these).
    pub partition_base: serde_json::Value,
    /// Stage log file.
    pub log_path: PathBuf,
    /// Thread budget.
    pub threads: usize,
    /// The stage's cache key.
    pub key: String,
    /// `with:` including hints.
    pub with: serde_json::Value,
    /// The shard (index, count) of a partitioned stage's items to compute (a Slurm array
    /// task; see `StageContext::set_shard`); none: the whole stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<(u32, u32)>,
}

impl WorkerRequest {
    /// The request that runs the stage of `ctx` (kind `kind`) in another process.
    pub fn from_context(kind: &str, ctx: &StageContext) -> WorkerRequest {
        WorkerRequest {
            kind: kind.into(),
            stage: ctx.stage().into(),
            pipeline: ctx.pipeline().into(),
            out_dir: ctx.out_dir().into(),
            workspace: ctx.workspace().into(),
            cache_root: ctx.cache().root().into(),
            upstream: ctx.upstreams().to_vec(),
            bindings: ctx.bindings().clone(),
            partition_base: ctx.partition_base().clone(),
            log_path: ctx.log_path().into(),
            threads: ctx.threads(),
            key: ctx.key().into(),
            with: ctx.with_json().clone(),
            shard: ctx.shard(),
        }
    }

    /// Rebuilds the stage's context in the worker process, its events going to stdout.
    pub fn context(&self) -> Result<StageContext, StageError> {
        let cache = Cache::open(&self.cache_root)?;
        let mut ctx = StageContext::new(ContextParts {
            stage: self.stage.clone(),
            pipeline: self.pipeline.clone(),
            out_dir: self.out_dir.clone(),
            workspace: self.workspace.clone(),
            upstream: self.upstream.clone(),
            bindings: self.bindings.clone(),
            tx: EventSink::Stdout,
            with: self.with.clone(),
            log_path: self.log_path.clone(),
            cache,
            partition_base: self.partition_base.clone(),
            threads: ThreadBudget::new(self.threads),
            key: self.key.clone(),
            stat: None,
        });
        if let Some((i, n)) = self.shard {
            ctx.set_shard(i, n);
        }
        Ok(ctx)
    }
}

/// Prints the worker's last line: `luna:done` (the partitions and known files of `ctx`) on
/// success, else `luna:error`; returns the process's exit code (0 or 1). A shard's result is
/// settled first (`StageContext::settle_shard`).
pub fn report_result(result: Result<(), StageError>, ctx: &StageContext) -> i32 {
    match ctx.settle_shard(result) {
        Ok(()) => {
            let done = WorkerDone {
                partitions: ctx.partition_keys(),
                known_files: ctx.known_files(),
                computed: ctx.computed_partitions(),
            };
            println!(
                "{DONE_PREFIX}{}",
                serde_json::to_string(&done).unwrap_or_default()
            );
            0
        }
        Err(e) => {
            report_error(&e);
            1
        }
    }
}

/// Prints `e` as the worker's `luna:error` line.
pub fn report_error(e: &StageError) {
    let we = WorkerError {
        message: e.to_string(),
        hint: e.hint(),
        no_space: crate::engine::error::out_of_space(e),
        bad_input: e.is_bad_input(),
    };
    println!(
        "{ERROR_PREFIX}{}",
        serde_json::to_string(&we).unwrap_or_default()
    );
}

impl WorkerError {
    /// The stage error it stands for.
    pub fn into_stage_error(self) -> StageError {
        match self.no_space {
            // the worker's text as an I/O error of the same kind, so the executor's
            // `or_no_space` names the cache dir (the text stays in the log as the source)
            Some(quota) => StageError::Domain {
                source: Box::new(std::io::Error::new(
                    if quota {
                        std::io::ErrorKind::QuotaExceeded
                    } else {
                        std::io::ErrorKind::StorageFull
                    },
                    self.message,
                )),
                hint: self.hint,
            },
            None if self.bad_input => StageError::BadInput {
                source: self.message.into(),
                hint: self.hint,
            },
            None => StageError::Message {
                message: self.message,
                hint: self.hint,
            },
        }
    }
}

/// Reads a worker's stdout lines: forwards its progress and log to the parent's context and
/// keeps its `luna:done` / `luna:error` line.
#[derive(Debug, Default)]
pub struct Relay {
    /// The `luna:done` line, once seen.
    pub done: Option<WorkerDone>,
    /// The `luna:error` line, once seen.
    pub error: Option<WorkerError>,
    /// The last progress (position, length, unit) the worker reported.
    pub progress: Option<(u64, Option<u64>, String)>,
}

impl Relay {
    /// Handles one line; progress goes to `ctx` unless `forward_progress` is false (the caller
    /// then combines [`Relay::progress`] of several workers itself).
    pub fn line(&mut self, ctx: &StageContext, line: &str, forward_progress: bool) {
        if let Some(j) = line.strip_prefix(WIRE_PREFIX) {
            match serde_json::from_str::<WireEvent>(j) {
                Ok(WireEvent::Progress {
                    pos,
                    len,
                    unit,
                    message,
                }) => {
                    self.progress = Some((pos, len, unit.clone()));
                    if !forward_progress {
                        return;
                    }
                    match len {
                        Some(l) => ctx.progress().set(pos, l, &unit),
                        None => ctx
                            .progress()
                            .inc(pos.saturating_sub(ctx.progress().position())),
                    }
                    if !message.is_empty() {
                        ctx.progress().set_message(message);
                    }
                }
                Ok(WireEvent::Log { line }) => ctx.echo_log(&line),
                Err(_) => ctx.log(line),
            }
        } else if let Some(j) = line.strip_prefix(DONE_PREFIX) {
            self.done = serde_json::from_str(j).ok();
        } else if let Some(j) = line.strip_prefix(ERROR_PREFIX) {
            self.error = serde_json::from_str(j).ok();
        } else {
            ctx.log(line);
        }
    }
}

/// The worker's error line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerError {
    /// Message.
    pub message: String,
    /// Hint.
    pub hint: Option<String>,
    /// The failure ran out of space (`Some(false)`: ENOSPC, `Some(true)`: EDQUOT) somewhere in
    /// its error chain, which the text alone cannot carry: the stage then fails as
    /// `StageError::NoSpace` naming the cache dir, as a stage of the `luna` binary does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_space: Option<bool>,
    /// A user's input file that cannot be used (`StageError::BadInput`: `luna run` exits 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bad_input: bool,
}

/// The `luna-torch` executable: `$LUNA_TORCH_BIN`, else next to the running binary.
pub fn worker_binary() -> Result<PathBuf, StageError> {
    if let Some(p) = std::env::var_os("LUNA_TORCH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| StageError::io("current executable", e))?;
    let p = exe.with_file_name("luna-torch");
    if p.is_file() {
        Ok(p)
    } else {
        Err(StageError::msg(format!("this stage needs the torch worker, but {} does not exist", p.display()))
            .with_hint("build it next to luna: `cargo build --bin luna-torch` (feature `torch`, on by default), or set LUNA_TORCH_BIN"))
    }
}

/// A kind whose work runs in the `luna-torch` worker: its `run` is [`run_in_worker`], it is
/// registered with `stages`' worker list ([`crate::stages::worker_kinds`]), and `luna-torch`
/// dispatches on its `KIND` (a test there checks the two sets are equal).
pub trait WorkerStage: Stage {
    /// The `device` hint of a stage's parameters; `None`: the kind has no device (CPU only).
    fn device(params: &Self::Params) -> Option<Device>;
}

/// Runs the current stage's work (kind `S`) in `luna-torch` and forwards its progress and log.
pub fn run_in_worker<S: WorkerStage>(ctx: &StageContext) -> Result<(), StageError> {
    let req = WorkerRequest::from_context(S::KIND, ctx);
    let bin = worker_binary()?;
    let mut cmd = Command::new(&bin);
    cmd.arg("stage")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| StageError::io(&bin, e))?;
    let mut stdin = child.stdin.take();
    if let Some(stdin) = stdin.as_mut() {
        let mut body = serde_json::to_vec(&req).map_err(|e| StageError::msg(e.to_string()))?;
        body.push(b'\n');
        stdin
            .write_all(&body)
            .map_err(|e| StageError::io(&bin, e))?;
    }
    let relay: Arc<Mutex<Relay>> = Arc::default();
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    // the stdout reader holds `stop_tx`: when the worker's output ends, forwarding stops
    let (stop_tx, stop) = channel::<()>();
    std::thread::scope(|s| {
        if let Some(stdin) = stdin {
            s.spawn(move || {
                forward_budget(ctx.thread_budget(), req.threads, stdin, stop, BUDGET_POLL)
            });
        }
        if let Some(out) = stdout {
            let relay = relay.clone();
            s.spawn(move || {
                let _stop_tx = stop_tx;
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    relay
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .line(ctx, &line, true);
                }
            });
        } else {
            drop(stop_tx);
        }
        if let Some(err) = stderr {
            let tail = tail.clone();
            s.spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    ctx.log(&line);
                    let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                    t.push_back(line);
                    if t.len() > 20 {
                        t.pop_front();
                    }
                }
            });
        }
    });
    let status = child.wait().map_err(|e| StageError::io(&bin, e))?;
    let mut relay = std::mem::take(&mut *relay.lock().unwrap_or_else(|e| e.into_inner()));
    if status.success() {
        let Some(d) = relay.done.take() else {
            return Err(StageError::msg(format!(
                "torch worker {} exited without its `luna:done` line",
                bin.display()
            ))
            .with_hint("luna and luna-torch come from different builds: rebuild both with one `cargo build`"));
        };
        ctx.record_partitions(&d.partitions, &d.known_files);
        ctx.mark_computed(&d.computed);
        return Ok(());
    }
    if let Some(e) = relay.error.take() {
        return Err(e.into_stage_error());
    }
    let t = tail.lock().unwrap_or_else(|e| e.into_inner());
    Err(StageError::msg(format!(
        "torch worker exited with {status}{}",
        if t.is_empty() {
            String::new()
        } else {
            format!(":\n{}", t.iter().cloned().collect::<Vec<_>>().join("\n"))
        }
    ))
    .with_hint(format!(
        "the stage log has the details: {}",
        ctx.log_path().display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that sends each write as a line to the test.
    struct Lines(std::sync::mpsc::Sender<String>);

    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(String::from_utf8_lossy(b).into_owned()); // test receiver
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn budget_changes_reach_the_worker_as_lines_and_set_its_budget() {
        let parent = ThreadBudget::new(1);
        let (lines_tx, lines) = channel::<String>();
        let (stop_tx, stop) = channel::<()>();
        let got = std::thread::scope(|s| {
            s.spawn(|| forward_budget(&parent, 1, Lines(lines_tx), stop, Duration::from_millis(1)));
            parent.set(4); // a stage beside this one finished
            let got = lines.recv_timeout(Duration::from_secs(10));
            drop(stop_tx);
            got
        });
        let line = match got {
            Ok(l) => l,
            Err(e) => panic!("no budget line: {e}"),
        };
        assert_eq!(line, "luna:threads 4\n");
        // the worker's side
        let child = ThreadBudget::new(1);
        let bad = Mutex::new(Vec::new());
        let input = format!("{line}luna:threads x\n");
        follow_budget(std::io::Cursor::new(input), &child, |l| {
            bad.lock().unwrap_or_else(|e| e.into_inner()).push(l)
        });
        assert_eq!(child.get(), 4);
        assert_eq!(bad.lock().unwrap_or_else(|e| e.into_inner()).len(), 1);
    }
}
