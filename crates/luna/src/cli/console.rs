//! The human reporter: a start line, one fixed-column line per finished stage, a summary.
//! On a terminal each running stage gets an indicatif bar (count, rate, ETA); elsewhere
//! (CI logs) progress is printed as plain lines at most every 10% or 10 s per stage.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::events::{Event, StageStatus};
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
}

impl HumanReporter {
    /// A reporter writing to stderr.
    pub fn new(verbose: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let mp = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr_with_hz(8)
        } else {
            ProgressDrawTarget::hidden()
        });
        HumanReporter {
            verbose,
            tty,
            mp,
            bars: BTreeMap::new(),
            plain: BTreeMap::new(),
            phase: BTreeMap::new(),
            started: BTreeMap::new(),
            run_id: String::new(),
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

impl Reporter for HumanReporter {
    fn start(&mut self, p: &Pipeline, plan: &[PlannedStage], jobs: usize, run_id: &str) {
        self.run_id = run_id.into();
        let sel: Vec<_> = plan.iter().filter(|s| s.selected).collect();
        let stale = sel.iter().filter(|s| s.state == Freshness::Stale).count();
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
            } => {
                if self.tty {
                    if let Some(pb) = self.bars.get(stage) {
                        if let Some(l) = len {
                            if pb.length() != Some(*l) {
                                pb.set_length(*l);
                                pb.set_style(
                                    ProgressStyle::with_template(&format!(
                                        "{{prefix:>14}} [{{bar:30.cyan/blue}}] {{pos}}/{{len}} {unit} ({{per_sec}}, ETA {{eta}}) {{msg}}"
                                    ))
                                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                                    .progress_chars("=> "),
                                );
                            }
                        }
                        pb.set_position(*pos);
                        pb.set_message(message.clone());
                    }
                } else {
                    let now = Instant::now();
                    let phase = self.phase.entry(stage.clone()).or_insert((now, 0));
                    if *pos < phase.1 {
                        *phase = (now, 0);
                        self.plain.remove(stage);
                    }
                    phase.1 = *pos;
                    let phase_start = phase.0;
                    let (last_t, last_pos) = self
                        .plain
                        .get(stage)
                        .copied()
                        .unwrap_or((now - Duration::from_secs(3600), 0));
                    let step = len.map(|l| (l / 10).max(1)).unwrap_or(u64::MAX);
                    let done = len.is_some_and(|l| *pos >= l);
                    if (pos.saturating_sub(last_pos) >= step
                        || now - last_t >= Duration::from_secs(10)
                        || done)
                        && *pos != last_pos
                    {
                        self.plain.insert(stage.clone(), (now, *pos));
                        let el = self
                            .started
                            .get(stage)
                            .map(|t| t.elapsed())
                            .unwrap_or_default();
                        let rate = *pos as f64 / (now - phase_start).as_secs_f64().max(1e-9);
                        let total = len.map(|l| format!("/{l}")).unwrap_or_default();
                        self.line(format!(
                            "{} {pos}{total} {unit} ({rate:.1}/s) {message}",
                            status_line("PROGRESS", Some(el), stage)
                        ));
                    }
                }
            }
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
                    if *status == StageStatus::Skipped {
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
