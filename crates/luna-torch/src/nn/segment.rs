//! The segmentation task for the generic loop (book p2ch13 `SegmentationTrainingApp`):
//! per-sample soft Dice loss plus 8 × the Dice loss over label pixels only (the FN term),
//! pixel TP/FN/FP at `p > 0.5` (the threshold `cluster` applies), the book's metric set
//! (`loss/all`, `percent_all/{tp,fn,fp}` of label pixels, `pr/{precision,recall,f1_score}`),
//! best checkpoint by validation **recall** (the book's score), `metrics.parquet`
//! (`tables::Table::SegMetrics`) and the `loss.png` / `scores.png` plots.
//!
//! Dice (book `diceLoss`): per sample, dice = (2·Σ p·l + ε) / (Σ p + Σ l + ε) over channel and
//! pixels, ε = 1, loss = 1 − dice; the FN term is `diceLoss(p · l, l)`. The total of a batch is
//! `mean(dice) + 8 · mean(fn)` = the mean of the per-sample `dice + 8 · fn` this task returns.
//! Pass outputs are running sums (no per-pixel storage), so a pass over whole CT slices costs
//! no memory beyond its batches.
use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use luna::tables::{seg_metrics_to_frame, write_parquet, SegMetricsRow, Table};

use crate::nn::plot::plot_lines;
use crate::nn::report::EpochRow;
use crate::nn::task::Task;
use crate::nn::train::TrainError;

/// Weight of the FN (label-pixels-only) Dice term (book: 8).
pub const FN_WEIGHT: f64 = 8.0;
/// Pixel threshold of the metrics (book: 0.5, strict).
pub const PIXEL_THRESHOLD: f64 = 0.5;

/// Per-sample soft Dice loss `1 − (2Σpl + 1)/(Σp + Σl + 1)` of (N, C, H, W) tensors.
pub fn dice_loss(pred: &Tensor, label: &Tensor) -> Tensor {
    let dims: &[i64] = &[1, 2, 3];
    let inter = (pred * label).sum_dim_intlist(dims, false, Kind::Float);
    let sp = pred.sum_dim_intlist(dims, false, Kind::Float);
    let sl = label.sum_dim_intlist(dims, false, Kind::Float);
    1.0 - (inter * 2.0 + 1.0) / (sp + sl + 1.0)
}

/// Per-sample loss of the book: `dice_loss(p, l) + 8 · dice_loss(p · l, l)`.
pub fn seg_loss(pred: &Tensor, label: &Tensor) -> Tensor {
    dice_loss(pred, label) + dice_loss(&(pred * label), label) * FN_WEIGHT
}

/// Segmentation of nodule pixels.
#[derive(Debug, Clone, Copy, Default)]
pub struct Segmentation;

/// Running sums of a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegOutputs {
    /// Samples.
    pub samples: usize,
    /// Sum of per-sample losses.
    pub loss_sum: f64,
    /// True-positive pixels.
    pub tp: f64,
    /// False-negative pixels.
    pub fn_: f64,
    /// False-positive pixels.
    pub fp: f64,
    /// Non-finite probabilities seen (an error when the pass ends).
    pub non_finite: usize,
    /// Probabilities seen.
    pub pixels: usize,
}

/// One pass's segmentation metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegMetrics {
    /// Mean per-sample loss.
    pub loss: f64,
    /// Pixel precision.
    pub precision: f64,
    /// Pixel recall.
    pub recall: f64,
    /// Pixel F1.
    pub f1: f64,
    /// TP % of label pixels.
    pub tp_percent: f64,
    /// FN % of label pixels.
    pub fn_percent: f64,
    /// FP % of label pixels.
    pub fp_percent: f64,
    /// Label pixels.
    pub label_pixels: u64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

impl Task for Segmentation {
    type Metrics = SegMetrics;
    type Outputs = SegOutputs;

    fn loss(&self, pred: &Tensor, label: &Tensor) -> Result<Tensor, TrainError> {
        Ok(seg_loss(pred, &label.to_kind(pred.kind())))
    }

    fn collect(
        &self,
        out: &mut SegOutputs,
        indices: &[usize],
        pred: &Tensor,
        label: &Tensor,
        loss: &Tensor,
    ) -> Result<(), TrainError> {
        let label = label.to_kind(Kind::Float);
        let hit = pred.gt(PIXEL_THRESHOLD).to_kind(Kind::Float);
        let sum = |t: Tensor| t.sum(Kind::Double).double_value(&[]);
        out.samples += indices.len();
        out.loss_sum += sum(loss.shallow_clone());
        out.tp += sum(&hit * &label);
        out.fn_ += sum((1.0 - &hit) * &label);
        out.fp += sum(&hit * (1.0 - &label));
        out.non_finite += pred
            .isfinite()
            .logical_not()
            .sum(Kind::Int64)
            .int64_value(&[]) as usize;
        out.pixels += pred.numel();
        Ok(())
    }

    fn metrics(&self, o: &SegOutputs) -> Result<SegMetrics, TrainError> {
        if o.non_finite > 0 {
            return Err(TrainError::Metrics(
                crate::nn::metrics::MetricsError::NonFinite {
                    count: o.non_finite,
                    total: o.pixels,
                    first: 0,
                },
            ));
        }
        let label = o.tp + o.fn_;
        let precision = ratio(o.tp, o.tp + o.fp);
        let recall = ratio(o.tp, label);
        Ok(SegMetrics {
            loss: ratio(o.loss_sum, o.samples as f64),
            precision,
            recall,
            f1: ratio(2.0 * precision * recall, precision + recall),
            tp_percent: 100.0 * ratio(o.tp, label),
            fn_percent: 100.0 * ratio(o.fn_, label),
            fp_percent: 100.0 * ratio(o.fp, label),
            label_pixels: label as u64,
        })
    }

    fn score(&self, m: &SegMetrics) -> f64 {
        m.recall
    }

    fn score_name(&self) -> &'static str {
        "recall"
    }

    fn scalars(&self, m: &SegMetrics) -> Vec<(&'static str, f64)> {
        vec![
            ("seg_loss/all", m.loss),
            ("seg_percent_all/tp", m.tp_percent),
            ("seg_percent_all/fn", m.fn_percent),
            ("seg_percent_all/fp", m.fp_percent),
            ("seg_pr/precision", m.precision),
            ("seg_pr/recall", m.recall),
            ("seg_pr/f1_score", m.f1),
        ]
    }

    fn table_header(&self) -> String {
        format!(
            "{:>8} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}",
            "loss", "prec", "recall", "f1", "tp%", "fn%", "fp%"
        )
    }

    fn table_row(&self, m: &SegMetrics) -> String {
        format!(
            "{:>8.4} {:>6.3} {:>6.3} {:>6.3} {:>7.1} {:>7.1} {:>7.1}",
            m.loss, m.precision, m.recall, m.f1, m.tp_percent, m.fn_percent, m.fp_percent
        )
    }

    fn write_summary(
        &self,
        out: &Path,
        history: &[EpochRow<SegMetrics>],
    ) -> Result<(), TrainError> {
        let rows: Vec<SegMetricsRow> = history
            .iter()
            .map(|r| SegMetricsRow {
                epoch: r.epoch as i64,
                total_samples: r.total_samples as i64,
                phase: r.phase.clone(),
                loss: r.metrics.loss,
                precision: r.metrics.precision,
                recall: r.metrics.recall,
                f1: r.metrics.f1,
                tp_percent: r.metrics.tp_percent,
                fn_percent: r.metrics.fn_percent,
                fp_percent: r.metrics.fp_percent,
                label_pixels: r.metrics.label_pixels as i64,
                samples_per_sec: r.stats.samples_per_sec,
                data_wait_fraction: r.stats.data_wait_fraction,
            })
            .collect();
        let report = |e: luna::tables::TableError| TrainError::Report(e.to_string());
        let mut df = seg_metrics_to_frame(&rows).map_err(report)?;
        write_parquet(
            &mut df,
            Table::SegMetrics,
            &out.join(Table::SegMetrics.file_name()),
        )
        .map_err(report)?;
        let series = |phase: &str, f: &dyn Fn(&SegMetrics) -> f64| -> Vec<(f64, f64)> {
            history
                .iter()
                .filter(|r| r.phase == phase)
                .map(|r| (r.epoch as f64, f(&r.metrics)))
                .collect()
        };
        let plot = |name: &str, title: &str, s: Vec<(String, Vec<(f64, f64)>)>| {
            let s: Vec<_> = s.into_iter().filter(|(_, p)| !p.is_empty()).collect();
            if s.is_empty() {
                return Ok(());
            }
            plot_lines(&out.join(name), title, "epoch", &s).map_err(TrainError::from)
        };
        plot(
            "loss.png",
            "loss (Dice + 8 x FN Dice)",
            vec![
                ("trn loss".into(), series("trn", &|m| m.loss)),
                ("val loss".into(), series("val", &|m| m.loss)),
            ],
        )?;
        plot(
            "scores.png",
            "validation pixel scores",
            vec![
                ("val recall".into(), series("val", &|m| m.recall)),
                ("val precision".into(), series("val", &|m| m.precision)),
                ("trn recall".into(), series("trn", &|m| m.recall)),
            ],
        )
    }
}
