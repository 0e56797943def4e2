//! Running torch stages in a worker process (`luna-torch`).
//!
//! Linking libtorch costs every process ~0.2 s of C++ static initialisation before `main`, so
//! the `luna` binary does not link it: kinds that need torch (training, evaluation) run their
//! work in `luna-torch`, spawned per stage. The parent sends a [`WorkerRequest`] as JSON on
//! stdin; the worker rebuilds a [`StageContext`] whose events go to stdout as
//! `luna:event <json>` lines, which the parent forwards to its own progress bar and log;
//! a failure is one `luna:error <json>` line and exit code 1. The worker's context computes
//! partition keys from the same base (kind, version, semantic params) as an in-process stage,
//! and its last line, `luna:done <json>`, lists the partitions it used and the output files
//! whose hashes it knows, so the parent's manifest lists them and `cache gc` keeps them. The worker dies with its parent
//! (PR_SET_PDEATHSIG), so `kill -9` of luna stops training too, and the stage is not committed.
//! A side benefit: a CUDA crash cannot take the executor down with it.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::engine::cache::FileEntry;
use crate::engine::context::{StageContext, Upstream};
use crate::engine::error::StageError;
use crate::engine::events::{WireEvent, WIRE_PREFIX};

/// Prefix of the worker's error line.
pub const ERROR_PREFIX: &str = "luna:error ";
/// Prefix of the worker's success line ([`WorkerDone`]).
pub const DONE_PREFIX: &str = "luna:done ";

/// What a successful worker reports back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerDone {
    /// Keys of the partitions the stage used.
    pub partitions: Vec<String>,
    /// Output files with known hashes (linked from committed objects).
    pub known_files: Vec<FileEntry>,
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

/// Runs the current stage's work in `luna-torch` and forwards its progress and log.
pub fn run_in_worker(kind: &str, ctx: &StageContext) -> Result<(), StageError> {
    let req = WorkerRequest {
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
    };
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
    if let Some(mut stdin) = child.stdin.take() {
        let body = serde_json::to_vec(&req).map_err(|e| StageError::msg(e.to_string()))?;
        stdin
            .write_all(&body)
            .map_err(|e| StageError::io(&bin, e))?;
    }
    let error: Arc<Mutex<Option<WorkerError>>> = Arc::default();
    let done: Arc<Mutex<Option<WorkerDone>>> = Arc::default();
    let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    std::thread::scope(|s| {
        if let Some(out) = stdout {
            let error = error.clone();
            let done = done.clone();
            s.spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(j) = line.strip_prefix(WIRE_PREFIX) {
                        match serde_json::from_str::<WireEvent>(j) {
                            Ok(WireEvent::Progress {
                                pos,
                                len,
                                unit,
                                message,
                            }) => {
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
                            Err(_) => ctx.log(&line),
                        }
                    } else if let Some(j) = line.strip_prefix(DONE_PREFIX) {
                        *done.lock().unwrap_or_else(|e| e.into_inner()) =
                            serde_json::from_str(j).ok();
                    } else if let Some(j) = line.strip_prefix(ERROR_PREFIX) {
                        *error.lock().unwrap_or_else(|e| e.into_inner()) =
                            serde_json::from_str(j).ok();
                    } else {
                        ctx.log(&line);
                    }
                }
            });
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
    if status.success() {
        let Some(d) = done.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(StageError::msg(format!(
                "torch worker {} exited without its `luna:done` line",
                bin.display()
            ))
            .with_hint("luna and luna-torch come from different builds: rebuild both with one `cargo build`"));
        };
        ctx.record_partitions(&d.partitions, &d.known_files);
        return Ok(());
    }
    if let Some(e) = error.lock().unwrap_or_else(|e| e.into_inner()).take() {
        return Err(match e.no_space {
            // the worker's text as an I/O error of the same kind, so the executor's
            // `or_no_space` names the cache dir (the text stays in the log as the source)
            Some(quota) => StageError::Domain {
                source: Box::new(std::io::Error::new(
                    if quota {
                        std::io::ErrorKind::QuotaExceeded
                    } else {
                        std::io::ErrorKind::StorageFull
                    },
                    e.message,
                )),
                hint: e.hint,
            },
            None => StageError::Message {
                message: e.message,
                hint: e.hint,
            },
        });
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
