//! What the training loop reports per epoch, for every task: the history (kept in the resume
//! directory as `history.json`, so a run that resumes after `kill -9` still reports every
//! epoch), the console/log table frame, and TensorBoard writers (one per phase, `trn` and
//! `val`, x-axis = training samples seen, as in p2ch14) in the artifact and in mirrors such as
//! `runs/tensorboard/<pipeline>/<stage>/`. The task supplies the metric columns and tags.
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::nn::loader::PassStats;
use crate::nn::task::{Task, TaskImage};
use crate::nn::tensorboard::EventWriter;
use crate::nn::train::TrainError;

/// One phase of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRow<M> {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training samples seen after this epoch.
    pub total_samples: u64,
    /// `trn` or `val`.
    pub phase: String,
    /// The task's metrics.
    pub metrics: M,
    /// Throughput.
    pub stats: PassStats,
}

/// Reads the history a previous attempt left in `dir` (empty when none).
pub fn load_history<M: DeserializeOwned>(dir: &Path) -> Vec<EpochRow<M>> {
    std::fs::read(dir.join("history.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the history into `dir` (write + rename).
pub fn save_history<M: Serialize>(dir: &Path, rows: &[EpochRow<M>]) -> Result<(), TrainError> {
    let p = dir.join("history.json");
    let tmp = dir.join("history.tmp.json");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    let body = serde_json::to_vec_pretty(rows).map_err(|e| TrainError::Report(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &p).map_err(io(&p))
}

/// Header of the console table: the task's columns, then throughput.
pub fn table_header<T: Task>(task: &T) -> String {
    format!(
        "{:>5} {:>3} {} {:>9} {:>6}",
        "epoch",
        "",
        task.table_header(),
        "samples/s",
        "wait"
    )
}

/// One console table row.
pub fn table_row<T: Task>(task: &T, r: &EpochRow<T::Metrics>) -> String {
    format!(
        "{:>5} {:>3} {} {:>9.1} {:>5.1}%",
        r.epoch,
        r.phase,
        task.table_row(&r.metrics),
        r.stats.samples_per_sec,
        r.stats.data_wait_fraction * 100.0
    )
}

/// TensorBoard writers for both phases, under several roots (`<root>/{trn,val}`).
pub struct Boards {
    writers: Vec<(String, EventWriter)>,
}

impl Boards {
    /// Creates `<root>/{trn,val}` for each root, replaying `history` into the first root's
    /// writers (a resumed run). A mirror root that cannot be created is skipped, with the
    /// reason returned for the log.
    pub fn create<T: Task>(
        task: &T,
        roots: &[PathBuf],
        history: &[EpochRow<T::Metrics>],
    ) -> Result<(Boards, Vec<String>), TrainError> {
        let mut writers = Vec::new();
        let mut skipped = Vec::new();
        for (k, root) in roots.iter().enumerate() {
            for phase in ["trn", "val"] {
                let dir = root.join(phase);
                match EventWriter::create(&dir) {
                    Ok(mut w) => {
                        if k == 0 {
                            for r in history.iter().filter(|r| r.phase == phase) {
                                w.add_scalars(r.total_samples as i64, &f32s(task, &r.metrics))?;
                            }
                            w.flush()?;
                        }
                        writers.push((phase.to_string(), w));
                    }
                    Err(e) if k == 0 => return Err(e.into()),
                    Err(e) => skipped.push(format!("tensorboard mirror disabled: {e}")),
                }
            }
        }
        Ok((Boards { writers }, skipped))
    }

    /// Writes one row to its phase's writers.
    pub fn add<T: Task>(&mut self, task: &T, r: &EpochRow<T::Metrics>) -> Result<(), TrainError> {
        let s = f32s(task, &r.metrics);
        for (phase, w) in &mut self.writers {
            if *phase == r.phase {
                w.add_scalars(r.total_samples as i64, &s)?;
                w.flush()?;
            }
        }
        Ok(())
    }

    /// Writes `images` to the writers of `phase` under `<phase>/<tag>` at `step`.
    pub fn add_images(
        &mut self,
        phase: &str,
        step: u64,
        images: &[TaskImage],
    ) -> Result<(), TrainError> {
        if images.is_empty() {
            return Ok(());
        }
        for (p, w) in &mut self.writers {
            if p == phase {
                for img in images {
                    w.add_image(&format!("{phase}/{}", img.tag), &img.image, step as i64)?;
                }
                w.flush()?;
            }
        }
        Ok(())
    }
}

fn f32s<T: Task>(task: &T, m: &T::Metrics) -> Vec<(&'static str, f32)> {
    task.scalars(m)
        .into_iter()
        .map(|(k, v)| (k, v as f32))
        .collect()
}

/// `(epoch, value)` points of one phase of the history, for a plot (epochs where `f` gives no
/// value are left out).
pub fn phase_series<M>(
    history: &[EpochRow<M>],
    phase: &str,
    f: &dyn Fn(&M) -> Option<f64>,
) -> Vec<(f64, f64)> {
    history
        .iter()
        .filter(|r| r.phase == phase)
        .filter_map(|r| f(&r.metrics).map(|v| (r.epoch as f64, v)))
        .collect()
}

/// Draws the non-empty `series` over epochs into `out/name` (nothing when all are empty).
pub fn plot_epochs(
    out: &Path,
    name: &str,
    title: &str,
    series: Vec<(String, Vec<(f64, f64)>)>,
) -> Result<(), TrainError> {
    let s: Vec<_> = series.into_iter().filter(|(_, p)| !p.is_empty()).collect();
    if s.is_empty() {
        return Ok(());
    }
    crate::nn::plot::plot_lines(&out.join(name), title, "epoch", &s).map_err(TrainError::from)
}
