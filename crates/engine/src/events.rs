//! Events from running stages to the one owner of the terminal (the reporter), and the
//! progress handle stages use. Stages never print; they report through these, and so do the
//! engine's other long operations: a remote transfer (`remote/`) sends [`Event::Transfer`]
//! and a run record that cannot be saved is an [`Event::Warning`]. The engine draws nothing
//! itself: the CLI's console renders events (bars on a terminal, lines elsewhere).
//! Rejected: progress bars drawn by the engine (two owners of one terminal, whose bars
//! overwrite each other, and a library that prints).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::reason::RerunReason;

/// Final status of a stage in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Computed in this run.
    Ran,
    /// Reused from the cache.
    Cached,
    /// Failed.
    Failed,
    /// Not run because an upstream stage failed.
    Skipped,
}

impl StageStatus {
    /// Upper-case word for the progress column.
    pub fn word(self) -> &'static str {
        match self {
            StageStatus::Ran => "RAN",
            StageStatus::Cached => "CACHED",
            StageStatus::Failed => "FAILED",
            StageStatus::Skipped => "SKIPPED",
        }
    }
}

/// Something that happened in a run.
#[derive(Debug, Clone)]
pub enum Event {
    /// A stage started computing.
    Started {
        /// Stage name.
        stage: String,
        /// Why it runs.
        reasons: Vec<RerunReason>,
    },
    /// A stage waits for another process computing the same key.
    Waiting {
        /// Stage name.
        stage: String,
    },
    /// Progress of a running stage.
    Progress {
        /// Stage name.
        stage: String,
        /// Items done.
        pos: u64,
        /// Items in all, when known.
        len: Option<u64>,
        /// Unit label (`CTs`, `samples`).
        unit: String,
        /// Short status text.
        message: String,
    },
    /// A log line from a stage.
    Log {
        /// Stage name.
        stage: String,
        /// The line.
        line: String,
    },
    /// Something the user should know that fails nothing (e.g. a run record not saved).
    Warning {
        /// The text.
        message: String,
    },
    /// Progress of a transfer to or from a cache remote.
    Transfer(Transfer),
    /// A stage finished.
    Finished {
        /// Stage name.
        stage: String,
        /// Outcome.
        status: StageStatus,
        /// Wall time.
        duration: Duration,
        /// Error text for failures, or the reason for a skip.
        detail: Option<String>,
        /// Hint for failures.
        hint: Option<String>,
    },
}

/// Progress of one push, pull or remote verify: bytes and files moved so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// `push`, `pull` or `verify`.
    pub verb: &'static str,
    /// The remote's name.
    pub remote: String,
    /// Bytes moved so far.
    pub bytes: u64,
    /// Bytes to move in all.
    pub total_bytes: u64,
    /// Files done so far.
    pub files: u64,
    /// Files in all.
    pub total_files: u64,
    /// The transfer has ended (the last event of it).
    pub done: bool,
}

/// Receives events on the thread that sends them (a renderer that is itself thread-safe).
pub trait Listener: Send + Sync + std::fmt::Debug {
    /// Takes one event.
    fn event(&self, ev: Event);
}

#[derive(Debug)]
struct ProgressState {
    len: Option<u64>,
    unit: String,
    message: String,
    last_sent: Option<Instant>,
}

/// Where a stage's events go: the executor's channel, or (in a worker process running a stage
/// on behalf of a parent luna) stdout as `luna:event <json>` lines that the parent forwards.
#[derive(Debug, Clone)]
pub enum EventSink {
    /// Dropped (tests, tools).
    None,
    /// The executor's channel.
    Channel(Sender<Event>),
    /// `luna:event` lines on stdout.
    Stdout,
    /// A listener called on the sending thread (the CLI's renderer of remote transfers).
    Listener(Arc<dyn Listener>),
}

/// The part of an event a worker process forwards to its parent.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WireEvent {
    /// Progress.
    Progress {
        /// Items done.
        pos: u64,
        /// Items in all.
        len: Option<u64>,
        /// Unit label.
        unit: String,
        /// Status text.
        message: String,
    },
    /// A log line.
    Log {
        /// The line.
        line: String,
    },
}

/// Prefix of forwarded event lines.
pub const WIRE_PREFIX: &str = "luna:event ";

impl EventSink {
    /// Sends an event (Progress and Log only are forwarded over stdout).
    pub fn send(&self, ev: Event) {
        match self {
            EventSink::None => {}
            EventSink::Channel(tx) => {
                // the receiver (the executor's main thread) outlives every stage that sends
                let _ = tx.send(ev);
            }
            EventSink::Listener(l) => l.event(ev),
            EventSink::Stdout => {
                let wire = match ev {
                    Event::Progress {
                        pos,
                        len,
                        unit,
                        message,
                        ..
                    } => WireEvent::Progress {
                        pos,
                        len,
                        unit,
                        message,
                    },
                    Event::Log { line, .. } => WireEvent::Log { line },
                    _ => return,
                };
                if let Ok(j) = serde_json::to_string(&wire) {
                    use std::io::Write;
                    let mut out = std::io::stdout().lock();
                    // a parent that stopped reading has gone: progress for no one is no loss
                    let _ = writeln!(out, "{WIRE_PREFIX}{j}");
                    let _ = out.flush();
                }
            }
        }
    }
}

/// A stage's progress reporter: cheap to clone, thread-safe, throttled to ~10 events/s.
#[derive(Debug, Clone)]
pub struct ProgressHandle {
    stage: String,
    tx: EventSink,
    pos: Arc<AtomicU64>,
    state: Arc<Mutex<ProgressState>>,
}

impl ProgressHandle {
    /// A handle that reports to `tx` for `stage`.
    pub fn new(stage: &str, tx: EventSink) -> Self {
        ProgressHandle {
            stage: stage.into(),
            tx,
            pos: Arc::new(AtomicU64::new(0)),
            state: Arc::new(Mutex::new(ProgressState {
                len: None,
                unit: String::new(),
                message: String::new(),
                last_sent: None,
            })),
        }
    }

    /// Starts a new phase: total item count and unit (resets the position).
    pub fn start(&self, len: u64, unit: &str) {
        self.pos.store(0, Ordering::Relaxed);
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.len = Some(len);
            s.unit = unit.into();
        }
        self.send(true);
    }

    /// Sets position, total and unit at once (for sources that report absolute progress).
    pub fn set(&self, pos: u64, len: u64, unit: &str) {
        self.pos.store(pos, Ordering::Relaxed);
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            s.len = Some(len);
            s.unit = unit.into();
        }
        self.send(false);
    }

    /// Advances by `n` items.
    pub fn inc(&self, n: u64) {
        self.pos.fetch_add(n, Ordering::Relaxed);
        self.send(false);
    }

    /// Sets the short status text.
    pub fn set_message(&self, m: impl Into<String>) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).message = m.into();
        self.send(true);
    }

    /// Current position.
    pub fn position(&self) -> u64 {
        self.pos.load(Ordering::Relaxed)
    }

    fn send(&self, force: bool) {
        if matches!(self.tx, EventSink::None) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let pos = self.pos.load(Ordering::Relaxed);
        let done = s.len == Some(pos);
        let due = s
            .last_sent
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if force || done || due {
            s.last_sent = Some(Instant::now());
            self.tx.send(Event::Progress {
                stage: self.stage.clone(),
                pos,
                len: s.len,
                unit: s.unit.clone(),
                message: s.message.clone(),
            });
        }
    }
}
