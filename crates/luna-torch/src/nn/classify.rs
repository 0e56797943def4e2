//! The classifier's task for the generic loop (book ch. 11–14): per-sample cross-entropy on
//! the two logits, P(positive) = softmax[1], the book's metric set (`nn::metrics`, predicted
//! positive when `P >= 0.5`), best checkpoint by F1 (nodule) or ROC AUC (malignancy), the
//! book's TensorBoard tags, `metrics.parquet` (`tables::Table::ClassifierMetrics`) and the
//! `loss.png` / `scores.png` plots. Also the book's samplers and the crops artifact as a
//! sample source.
use std::path::Path;

use rand::seq::SliceRandom;
use tch::{Device, Kind, Reduction, Tensor};

use luna::store::crop_set::CropSet;
use luna::tables::{write_rows, ClassifierMetricsRow};

use crate::nn::loader::{epoch_rng, SampleSource, SourceError};
use crate::nn::metrics::{self, Metrics};
use crate::nn::report::{phase_series, plot_epochs, EpochRow};
use crate::nn::task::Task;
use crate::nn::train::TrainError;

/// Which validation score picks the best checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BestBy {
    /// F1 at the 0.5 threshold (book p2ch14 nodule classifier).
    F1,
    /// ROC AUC (book p2ch14 malignancy classifier).
    Auc,
}

/// Two-class classification.
#[derive(Debug, Clone, Copy)]
pub struct Classification {
    /// The best-checkpoint score.
    pub best_by: BestBy,
}

/// Per-sample outputs of a classification pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Predictions {
    /// Source indices in pass order.
    pub indices: Vec<usize>,
    /// Labels.
    pub labels: Vec<bool>,
    /// Softmax probability of the positive class.
    pub prob_pos: Vec<f32>,
    /// Per-sample cross-entropy.
    pub loss: Vec<f32>,
}

fn cpu_f32(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Ok(Vec::try_from(
        t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1),
    )?)
}

impl Task for Classification {
    type Metrics = Metrics;
    type Outputs = Predictions;

    fn loss(&self, logits: &Tensor, target: &Tensor) -> Result<Tensor, TrainError> {
        Ok(logits.f_cross_entropy_loss::<Tensor>(
            &target.to_kind(Kind::Int64),
            None,
            Reduction::None,
            -100,
            0.0,
        )?)
    }

    fn collect(
        &self,
        out: &mut Predictions,
        indices: &[usize],
        logits: &Tensor,
        target: &Tensor,
        loss: &Tensor,
    ) -> Result<(), TrainError> {
        let probs = logits.softmax(1, Kind::Float).select(1, 1);
        out.indices.extend_from_slice(indices);
        out.labels
            .extend(cpu_f32(target)?.into_iter().map(|t| t >= 0.5));
        out.prob_pos.extend(cpu_f32(&probs)?);
        out.loss.extend(cpu_f32(loss)?);
        Ok(())
    }

    fn metrics(&self, p: &Predictions) -> Result<Metrics, TrainError> {
        Ok(metrics::compute(&p.labels, &p.prob_pos, &p.loss)?)
    }

    fn score(&self, m: &Metrics) -> f64 {
        match self.best_by {
            BestBy::F1 => m.f1,
            BestBy::Auc => m.auc.unwrap_or(0.0),
        }
    }

    fn score_name(&self) -> &'static str {
        match self.best_by {
            BestBy::F1 => "F1",
            BestBy::Auc => "AUC",
        }
    }

    fn scalars(&self, m: &Metrics) -> Vec<(&'static str, f64)> {
        let mut v = vec![
            ("loss/all", m.loss_all),
            ("loss/neg", m.loss_neg),
            ("loss/pos", m.loss_pos),
            ("correct/all", m.correct_all),
            ("correct/neg", m.correct_neg),
            ("correct/pos", m.correct_pos),
            ("pr/precision", m.precision),
            ("pr/recall", m.recall),
            ("pr/f1_score", m.f1),
        ];
        if let Some(a) = m.auc {
            v.push(("auc", a));
        }
        v
    }

    fn table_header(&self) -> String {
        format!(
            "{:>8} {:>6} {:>6} {:>6} {:>13} {:>13} {:>6}",
            "loss", "prec", "recall", "f1", "neg correct", "pos correct", "auc"
        )
    }

    fn table_row(&self, m: &Metrics) -> String {
        format!(
            "{:>8.4} {:>6.3} {:>6.3} {:>6.3} {:>13} {:>13} {:>6}",
            m.loss_all,
            m.precision,
            m.recall,
            m.f1,
            format!("{}/{}", m.neg_correct, m.neg_count),
            format!("{}/{}", m.pos_correct, m.pos_count),
            m.auc
                .map(|a| format!("{a:.4}"))
                .unwrap_or_else(|| "-".into()),
        )
    }

    fn write_summary(&self, out: &Path, history: &[EpochRow<Metrics>]) -> Result<(), TrainError> {
        let rows: Vec<ClassifierMetricsRow> = history
            .iter()
            .map(|r| {
                let m = &r.metrics;
                ClassifierMetricsRow {
                    epoch: r.epoch as i64,
                    total_samples: r.total_samples as i64,
                    phase: r.phase.clone(),
                    loss: m.loss_all,
                    loss_neg: m.loss_neg,
                    loss_pos: m.loss_pos,
                    precision: m.precision,
                    recall: m.recall,
                    f1: m.f1,
                    neg_correct: m.neg_correct as i64,
                    neg_count: m.neg_count as i64,
                    pos_correct: m.pos_correct as i64,
                    pos_count: m.pos_count as i64,
                    auc: m.auc,
                    samples_per_sec: r.stats.samples_per_sec,
                    data_wait_fraction: r.stats.data_wait_fraction,
                }
            })
            .collect();
        let report = |e: luna::tables::TableError| TrainError::Report(e.to_string());
        write_rows(&rows, &out.join("metrics.parquet")).map_err(report)?;
        let series =
            |phase: &str, f: &dyn Fn(&Metrics) -> Option<f64>| phase_series(history, phase, f);
        plot_epochs(
            out,
            "loss.png",
            "loss",
            vec![
                ("trn loss".into(), series("trn", &|m| Some(m.loss_all))),
                ("val loss".into(), series("val", &|m| Some(m.loss_all))),
            ],
        )?;
        plot_epochs(
            out,
            "scores.png",
            "validation scores",
            vec![
                ("val F1".into(), series("val", &|m| Some(m.f1))),
                ("val ROC AUC".into(), series("val", &|m| m.auc)),
                ("trn F1".into(), series("trn", &|m| Some(m.f1))),
            ],
        )
    }
}

/// Book `MalignantLunaDataset` order: odd k malignant, k%4==0 benign, k%4==2 non-nodule;
/// lists reshuffled per epoch. `kinds[i]` is sample i's (is_nodule, label).
pub fn malignancy_order(
    kinds: &[(bool, bool)],
    n: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, TrainError> {
    let mut rng = epoch_rng(seed, epoch);
    let mut mal = Vec::new();
    let mut ben = Vec::new();
    let mut neg = Vec::new();
    for (i, &(is_nodule, label)) in kinds.iter().enumerate() {
        match (is_nodule, label) {
            (true, true) => mal.push(i),
            (true, false) => ben.push(i),
            (false, _) => neg.push(i),
        }
    }
    if mal.is_empty() || (ben.is_empty() && neg.is_empty()) {
        return Err(TrainError::Setup(format!(
            "malignancy training needs malignant and non-malignant samples; the training split has {} malignant, {} benign, {} non-nodule; hint: use more series or check the malignancy labels",
            mal.len(), ben.len(), neg.len()
        ).into()));
    }
    mal.shuffle(&mut rng);
    ben.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    let (ben, neg) = match (ben.is_empty(), neg.is_empty()) {
        (true, _) => (neg.clone(), neg),
        (_, true) => (ben.clone(), ben),
        _ => (ben, neg),
    };
    Ok((0..n)
        .map(|k| {
            if k % 2 == 1 {
                mal[(k / 2) % mal.len()]
            } else if k % 4 == 0 {
                ben[(k / 4) % ben.len()]
            } else {
                neg[(k / 4) % neg.len()]
            }
        })
        .collect())
}

/// The crops of a [`CropSet`] as classifier samples: input `(1, D, H, W)` HU as f32, target the
/// label (1.0 / 0.0).
pub struct CropSamples<'a>(pub &'a CropSet);

impl SampleSource for CropSamples<'_> {
    fn len(&self) -> usize {
        self.0.rows.len()
    }
    fn input_shape(&self) -> Vec<usize> {
        let [d, h, w] = self.0.shape();
        vec![1, d, h, w]
    }
    fn target_shape(&self) -> Vec<usize> {
        Vec::new()
    }
    fn read(&self, i: usize, input: &mut [f32], target: &mut [f32]) -> Result<(), SourceError> {
        let mut hu = vec![0i16; input.len()];
        self.0.read_into(i, &mut hu)?;
        for (o, &v) in input.iter_mut().zip(&hu) {
            *o = f32::from(v);
        }
        target[0] = f32::from(u8::from(self.0.labels[i]));
        Ok(())
    }
}
