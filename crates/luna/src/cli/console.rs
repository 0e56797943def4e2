//! The owner of the terminal: everything the engine reports while it works (run events,
//! remote transfers) is drawn here, into one [`MultiProgress`] on stderr, so bars never
//! overwrite each other.
//!
//! The human reporter: a start line, one fixed-column line per finished stage, a summary.
//! On a terminal each running stage gets an indicatif bar (count, rate, ETA); elsewhere
//! (CI logs) progress is printed as plain lines at most every 10% or 10 s per stage.
//! Remote transfers ([`TransferBars`]) get one bar each on a terminal (bytes, rate, ETA,
//! files) and nothing elsewhere: the command's summary line says what moved.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::events::{Event, EventSink, Listener, StageStatus, Transfer};
use crate::engine::executor::Reporter;
use crate::engine::plan::{Freshness, PlannedStage};
use crate::engine::runs::RunRecord;
use crate::engine::spec::Pipeline;

/// Renders run events for people.
pub struct HumanReporter {
    verbose: bool,
    tty: bool,
    mp: MultiProgress,
    bars: BTreeMap<String, ProgressBar>,
    plain: BTreeMap<String, (Instant, u64)>,
    /// Per stage: when the current progress phase began and the last position seen (a stage
    /// that restarts its count, e.g. per epoch, starts a new phase with its own rate).
    phase: BTreeMap<String, (Instant, u64)>,
    started: BTreeMap<String, Instant>,
    run_id: String,
    transfers: TransferBars,
}

/// The process's one set of bars on stderr (hidden when stderr is not a terminal).
fn terminal() -> &'static MultiProgress {
    static MP: OnceLock<MultiProgress> = OnceLock::new();
    MP.get_or_init(|| {
        MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        })
    })
}

/// Renders [`Event::Transfer`]: one bar per running transfer, on [`terminal`].
#[derive(Debug, Default)]
pub struct TransferBars {
    bars: Mutex<BTreeMap<(&'static str, String), ProgressBar>>,
}

impl TransferBars {
    /// Shows `t` (a new bar, a new position, or the bar removed when it is done).
    pub fn show(&self, t: &Transfer) {
        let mut bars = self.bars.lock().unwrap_or_else(|e| e.into_inner());
        let key = (t.verb, t.remote.clone());
        if t.done {
            if let Some(pb) = bars.remove(&key) {
                pb.finish_and_clear();
                terminal().remove(&pb);
            }
            return;
        }
        if t.total_bytes == 0 {
            return;
        }
        let pb = bars.entry(key).or_insert_with(|| {
            let pb = terminal().add(ProgressBar::new(t.total_bytes));
            let style = ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            pb.set_style(style);
            pb.set_prefix(format!("{} {}", t.verb, t.remote));
            pb.enable_steady_tick(Duration::from_millis(200));
            pb
        });
        pb.set_position(t.bytes);
        pb.set_message(format!("({}/{} files)", t.files, t.total_files));
    }
}

impl Listener for TransferBars {
    fn event(&self, ev: Event) {
        if let Event::Transfer(t) = &ev {
            self.show(t);
        }
    }
}

/// The sink a remote sends its transfers' progress to: bars on this terminal.
pub fn transfer_sink() -> EventSink {
    EventSink::Listener(Arc::new(TransferBars::default()))
}

impl HumanReporter {
    /// A reporter writing to stderr.
    pub fn new(verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        HumanReporter {
            verbose,
            tty,
            mp: terminal().clone(),
            bars: BTreeMap::new(),
            plain: BTreeMap::new(),
            phase: BTreeMap::new(),
            started: BTreeMap::new(),
            run_id: String::new(),
            transfers: TransferBars::default(),
        }
    }

    fn line(&self, s: String) {
        if self.tty {
            let _ = self.mp.println(s);
        } else {
            // a closed stderr (`luna run p 2>&1 | head -1`) must not stop the run
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{s}");
        }
    }
}

/// `      STATUS [  12.31s] stage`.
pub fn status_line(word: &str, d: Option<Duration>, stage: &str) -> String {
    match d {
        Some(d) => format!("{word:>12} [{:>8.2}s] {stage}", d.as_secs_f64()),
        None => format!("{word:>12} {:11} {stage}", ""),
    }
}

impl HumanReporter {
    /// A stage's progress: its bar on a terminal, else a plain line at most every 10% or
    /// 10 s.
    fn progress(&mut self, stage: &str, pos: u64, len: Option<u64>, unit: &str, message: &str) {
        if self.tty {
            if let Some(pb) = self.bars.get(stage) {
                if let Some(l) = len {
                    if pb.length() != Some(l) {
                        pb.set_length(l);
                        pb.set_style(
                            ProgressStyle::with_template(&format!(
                                "{{prefix:>14}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"
                            ))
                            .unwrap_or_else(|_| ProgressStyle::default_bar())
                            .progress_chars("=> "),
                        );
                    }
                }
                pb.set_position(pos);
                pb.set_message(message.to_string());
            }
        } else {
            let now = Instant::now();
            let phase = self.phase.entry(stage.to_string()).or_insert((now, 0));
            if pos < phase.1 {
                *phase = (now, 0);
                self.plain.remove(stage);
            }
            phase.1 = pos;
            let phase_start = phase.0;
            let (last_t, last_pos) = self
                .plain
                .get(stage)
                .copied()
                .unwrap_or((now - Duration::from_secs(3600), 0));
            let step = len.map(|l| (l / 10).max(1)).unwrap_or(u64::MAX);
            let done = len.is_some_and(|l| pos >= l);
            if (pos.saturating_sub(last_pos) >= step
                || now - last_t >= Duration::from_secs(10)
                || done)
                && pos != last_pos
            {
                self.plain.insert(stage.to_string(), (now, pos));
                let el = self
                    .started
                    .get(stage)
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                let rate = pos as f64 / (now - phase_start).as_secs_f64().max(1e-9);
                let total = len.map(|l| format!("/{l}")).unwrap_or_default();
                self.line(format!(
                    "{} {pos}{total} {unit} ({rate:.1}/s) {message}",
                    status_line("PROGRESS", Some(el), stage)
                ));
            }
        }
    }
}

impl Reporter for HumanReporter {
    fn start(&mut self, p: &Pipeline, plan: &[PlannedStage], jobs: usize, run_id: &str) {
        self.run_id = run_id.into();
        let sel: Vec<_> = plan.iter().filter(|s| s.selected).collect();
        let stale = sel.iter().filter(|s| s.state != Freshness::Fresh).count();
        self.line(format!(
            "{:>12} pipeline {} ({} stages: {} cached, {} to run, -j {jobs})",
            "Starting",
            p.name,
            sel.len(),
            sel.len() - stale,
            stale
        ));
    }

    fn event(&mut self, ev: &Event) {
        match ev {
            Event::Started { stage, reasons } => {
                self.started.insert(stage.clone(), Instant::now());
                if self.verbose || !self.tty {
                    let why: Vec<String> = reasons.iter().map(|r| r.to_string()).collect();
                    self.line(format!(
                        "{} ({})",
                        status_line("RUNNING", None, stage),
                        why.join("; ")
                    ));
                }
                if self.tty {
                    let pb = self.mp.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner:.cyan} {prefix:>14} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_prefix(stage.clone());
                    pb.set_message("running");
                    pb.enable_steady_tick(Duration::from_millis(125));
                    self.bars.insert(stage.clone(), pb);
                }
            }
            Event::Waiting { stage } => {
                self.line(status_line(
                    "WAITING",
                    None,
                    &format!("{stage} (another luna run is computing it)"),
                ));
            }
            Event::Progress {
                stage,
                pos,
                len,
                unit,
                message,
            } => self.progress(stage, *pos, *len, unit, message),
            Event::Warning { message } => self.line(format!("{:>12} {message}", "warning:")),
            Event::Transfer(t) => self.transfers.show(t),
            Event::Log { stage, line } => {
                if self.verbose {
                    self.line(format!("{:>12} {stage}: {line}", "|"));
                }
            }
            Event::Finished {
                stage,
                status,
                duration,
                detail,
                hint,
            } => {
                if let Some(pb) = self.bars.remove(stage) {
                    pb.finish_and_clear();
                    self.mp.remove(&pb);
                }
                let d = if *status == StageStatus::Skipped {
                    None
                } else {
                    Some(*duration)
                };
                let mut s = status_line(status.word(), d, stage);
                if let Some(det) = detail {
                    // a skip's cause, or why a stage that looked stale stayed cached
                    if matches!(*status, StageStatus::Skipped | StageStatus::Cached) {
                        s.push_str(&format!(" ({det})"));
                    } else {
                        // continuation lines (a command's stderr tail) stay in the message column
                        let det = det.replace('\n', &format!("\n{:13}", ""));
                        s.push_str(&format!("\n{:>12} {det}", "error:"));
                    }
                }
                if let Some(h) = hint {
                    s.push_str(&format!("\n{:>12} {h}", "hint:"));
                }
                self.line(s);
            }
        }
    }

    fn finish(&mut self, rec: &RunRecord, elapsed: Duration) {
        let (ran, cached, failed, skipped) = rec.counts();
        let word = if rec.success { "Finished" } else { "Failed" };
        self.line(format!(
            "{word:>12} [{:>8.2}s] {}: {ran} ran, {cached} cached, {failed} failed, {skipped} skipped (run {})",
            elapsed.as_secs_f64(),
            rec.pipeline,
            self.run_id
        ));
        let _ = self.mp.clear();
    }
}
