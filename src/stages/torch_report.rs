//! What `train_classifier` reports per epoch: a console/log table row, TensorBoard scalars (in
//! the artifact and mirrored under `runs/tensorboard/<pipeline>/<stage>/`), `metrics.parquet`
//! and the `loss.png` / `scores.png` plots.
//!
//! The per-epoch history lives in the stage's resume directory (`history.json`), so a run that
//! resumes after `kill -9` still writes the whole history into its artifact. TensorBoard tags
//! are the book's (`loss/all`, `correct/pos`, `pr/f1_score`, `auc`, …) with one writer per
//! phase (`trn`, `val`), x-axis = training samples seen, as in p2ch14.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::nn::metrics::Metrics;
use crate::nn::tensorboard::EventWriter;
use crate::nn::train::PassStats;

/// One phase of one epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: usize,
    /// Training samples seen after this epoch.
    pub total_samples: u64,
    /// `trn` or `val`.
    pub phase: String,
    /// Metrics.
    pub metrics: Metrics,
    /// Throughput.
    pub stats: PassStats,
}

/// Reads the history a previous attempt left (empty when none).
pub fn load_history(resume: &Path) -> Vec<EpochRow> {
    std::fs::read(resume.join("history.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Saves the history next to the checkpoints.
pub fn save_history(resume: &Path, rows: &[EpochRow]) -> Result<(), StageError> {
    let p = resume.join("history.json");
    let tmp = resume.join("history.tmp.json");
    let body = serde_json::to_vec_pretty(rows).map_err(|e| StageError::msg(e.to_string()))?;
    std::fs::write(&tmp, body).map_err(|e| StageError::io(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| StageError::io(&p, e))
}

/// Header of the log table.
pub fn table_header() -> String {
    format!(
        "{:>5} {:>3} {:>8} {:>6} {:>6} {:>6} {:>13} {:>13} {:>6} {:>9} {:>6}",
        "epoch",
        "",
        "loss",
        "prec",
        "recall",
        "f1",
        "neg correct",
        "pos correct",
        "auc",
        "samples/s",
        "wait"
    )
}

/// One log table row.
pub fn table_row(r: &EpochRow) -> String {
    let m = &r.metrics;
    format!(
        "{:>5} {:>3} {:>8.4} {:>6.3} {:>6.3} {:>6.3} {:>13} {:>13} {:>6} {:>9.1} {:>5.1}%",
        r.epoch,
        r.phase,
        m.loss_all,
        m.precision,
        m.recall,
        m.f1,
        format!("{}/{}", m.neg_correct, m.neg_count),
        format!("{}/{}", m.pos_correct, m.pos_count),
        m.auc
            .map(|a| format!("{a:.4}"))
            .unwrap_or_else(|| "-".into()),
        r.stats.samples_per_sec,
        r.stats.data_wait_fraction * 100.0
    )
}

/// TensorBoard writers for both phases, in the artifact and the workspace mirror.
pub struct Boards {
    writers: Vec<(String, EventWriter)>,
}

fn tb_err(e: crate::nn::tensorboard::TensorboardError) -> StageError {
    StageError::domain(e)
}

impl Boards {
    /// Creates `out/tensorboard/{trn,val}` and `runs/tensorboard/<pipeline>/<stage>/{trn,val}`,
    /// replaying `history` into the artifact's writers (a resumed run).
    pub fn create(ctx: &StageContext, history: &[EpochRow]) -> Result<Boards, StageError> {
        let mirror: PathBuf = ctx
            .workspace()
            .join("runs/tensorboard")
            .join(ctx.pipeline())
            .join(ctx.stage());
        let mut writers = Vec::new();
        for phase in ["trn", "val"] {
            let mut w = EventWriter::create(&ctx.out_dir().join("tensorboard").join(phase))
                .map_err(tb_err)?;
            for r in history.iter().filter(|r| r.phase == phase) {
                w.add_scalars(r.total_samples as i64, &scalars(&r.metrics))
                    .map_err(tb_err)?;
            }
            w.flush().map_err(tb_err)?;
            writers.push((phase.to_string(), w));
            match EventWriter::create(&mirror.join(phase)) {
                Ok(m) => writers.push((phase.to_string(), m)),
                Err(e) => ctx.log(format!("tensorboard mirror disabled: {e}")),
            }
        }
        Ok(Boards { writers })
    }

    /// Writes one row to its phase's writers.
    pub fn add(&mut self, r: &EpochRow) -> Result<(), StageError> {
        let s = scalars(&r.metrics);
        for (phase, w) in &mut self.writers {
            if *phase == r.phase {
                w.add_scalars(r.total_samples as i64, &s).map_err(tb_err)?;
                w.flush().map_err(tb_err)?;
            }
        }
        Ok(())
    }
}

fn scalars(m: &Metrics) -> Vec<(&'static str, f32)> {
    let mut v = vec![
        ("loss/all", m.loss_all as f32),
        ("loss/neg", m.loss_neg as f32),
        ("loss/pos", m.loss_pos as f32),
        ("correct/all", m.correct_all as f32),
        ("correct/neg", m.correct_neg as f32),
        ("correct/pos", m.correct_pos as f32),
        ("pr/precision", m.precision as f32),
        ("pr/recall", m.recall as f32),
        ("pr/f1_score", m.f1 as f32),
    ];
    if let Some(a) = m.auc {
        v.push(("auc", a as f32));
    }
    v
}

/// Writes `metrics.parquet`, `loss.png` and `scores.png` into `out`.
pub fn write_summary(out: &Path, history: &[EpochRow]) -> Result<(), StageError> {
    let col = |f: &dyn Fn(&EpochRow) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let mut df = df!(
        "epoch" => history.iter().map(|r| r.epoch as i64).collect::<Vec<_>>(),
        "total_samples" => history.iter().map(|r| r.total_samples as i64).collect::<Vec<_>>(),
        "phase" => history.iter().map(|r| r.phase.clone()).collect::<Vec<_>>(),
        "loss" => col(&|r| r.metrics.loss_all),
        "loss_neg" => col(&|r| r.metrics.loss_neg),
        "loss_pos" => col(&|r| r.metrics.loss_pos),
        "precision" => col(&|r| r.metrics.precision),
        "recall" => col(&|r| r.metrics.recall),
        "f1" => col(&|r| r.metrics.f1),
        "neg_correct" => history.iter().map(|r| r.metrics.neg_correct as i64).collect::<Vec<_>>(),
        "neg_count" => history.iter().map(|r| r.metrics.neg_count as i64).collect::<Vec<_>>(),
        "pos_correct" => history.iter().map(|r| r.metrics.pos_correct as i64).collect::<Vec<_>>(),
        "pos_count" => history.iter().map(|r| r.metrics.pos_count as i64).collect::<Vec<_>>(),
        "auc" => history.iter().map(|r| r.metrics.auc).collect::<Vec<Option<f64>>>(),
        "samples_per_sec" => col(&|r| r.stats.samples_per_sec),
        "data_wait_fraction" => col(&|r| r.stats.data_wait_fraction),
    )
    .map_err(|e| StageError::msg(format!("metrics table: {e}")))?;
    crate::stages::torch_data::write_parquet(&out.join("metrics.parquet"), &mut df)?;
    let series = |phase: &str, f: &dyn Fn(&Metrics) -> Option<f64>| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter(|r| r.phase == phase)
            .filter_map(|r| f(&r.metrics).map(|v| (r.epoch as f64, v)))
            .collect()
    };
    let plot = |name: &str, title: &str, s: Vec<(String, Vec<(f64, f64)>)>| {
        let s: Vec<_> = s.into_iter().filter(|(_, p)| !p.is_empty()).collect();
        if s.is_empty() {
            return Ok(());
        }
        crate::nn::plot::plot_lines(&out.join(name), title, "epoch", &s).map_err(StageError::domain)
    };
    plot(
        "loss.png",
        "loss",
        vec![
            ("trn loss".into(), series("trn", &|m| Some(m.loss_all))),
            ("val loss".into(), series("val", &|m| Some(m.loss_all))),
        ],
    )?;
    plot(
        "scores.png",
        "validation scores",
        vec![
            ("val F1".into(), series("val", &|m| Some(m.f1))),
            ("val ROC AUC".into(), series("val", &|m| m.auc)),
            ("trn F1".into(), series("trn", &|m| Some(m.f1))),
        ],
    )
}
