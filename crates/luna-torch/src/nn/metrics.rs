//! Classification metrics from per-sample (label, P(positive), loss) arrays (book §3.5).
//!
//! Decision rule, the one luna uses everywhere (training-time validation, `evaluate_classifier`,
//! later detection): a sample is predicted positive when `P(pos) >= threshold` ([`is_positive`];
//! threshold 0.5 during training). This is scikit-learn's `predict_proba(x) >= t` convention.
//! The book's p2ch14 takes the argmax of the two softmax outputs, whose tie at exactly 0.5
//! resolves to negative; the two differ only on a probability of exactly 0.5.
//!
//! - A non-finite probability (NaN, ±inf: a diverged or corrupt model) is an error before any
//!   count or curve is computed, never a silently wrong number; the curves' tie grouping uses
//!   a total order, so no input can make them loop.
//! - Precision/recall/F1 with a zero denominator are 0 (the book's numpy code yields NaN,
//!   which poisons "best score" comparisons; sklearn's `zero_division=0` convention instead).
//! - AUC is exact (the curves live in `luna::curves`, shared with `diagnose`): the trapezoid over the ROC at every distinct score (ties form one step, a
//!   diagonal segment), equal to the Mann–Whitney probability with ties counted ½. The book's
//!   p2ch14 AUC samples 100 thresholds of `linspace(1,0)`, which only approximates this; we
//!   report the exact value (`roc_auc_score` semantics). With no positives or no negatives the
//!   AUC is undefined and reported as `None`.
use serde::{Deserialize, Serialize};

/// One epoch's metrics for one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of samples.
    pub count: usize,
    /// Number of positive samples.
    pub pos_count: usize,
    /// Number of negative samples.
    pub neg_count: usize,
    /// Mean loss over all samples (book `loss/all`).
    pub loss_all: f64,
    /// Mean loss over negatives (`loss/neg`; 0 when none).
    pub loss_neg: f64,
    /// Mean loss over positives (`loss/pos`; 0 when none).
    pub loss_pos: f64,
    /// Correctly classified negatives (true negatives).
    pub neg_correct: usize,
    /// Correctly classified positives (true positives).
    pub pos_correct: usize,
    /// Percentage correct overall (`correct/all`).
    pub correct_all: f64,
    /// Percentage of negatives correct (`correct/neg`; 0 when none).
    pub correct_neg: f64,
    /// Percentage of positives correct (`correct/pos`; 0 when none).
    pub correct_pos: f64,
    /// TP / (TP + FP) (`pr/precision`).
    pub precision: f64,
    /// TP / (TP + FN) (`pr/recall`).
    pub recall: f64,
    /// Harmonic mean of precision and recall (`pr/f1_score`).
    pub f1: f64,
    /// Exact ROC AUC; `None` when one class is absent.
    pub auc: Option<f64>,
}

/// Errors from metric computation.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Probabilities that are NaN or infinite.
    #[error("{count} of {total} probabilities are NaN or infinite (first at sample {first}): the model diverged or its weights are corrupt; hint: lower the learning rate, or retrain the model")]
    NonFinite {
        /// How many.
        count: usize,
        /// Out of.
        total: usize,
        /// Index of the first.
        first: usize,
    },
    /// Input arrays differ in length.
    #[error("metrics: labels ({labels}), probabilities ({probs}) and losses ({losses}) must have the same length")]
    LengthMismatch {
        /// Labels length.
        labels: usize,
        /// Probabilities length.
        probs: usize,
        /// Losses length.
        losses: usize,
    },
}

fn pct(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        100.0 * n as f64 / d as f64
    }
}

fn ratio(n: f64, d: f64) -> f64 {
    if d == 0.0 {
        0.0
    } else {
        n / d
    }
}

/// The decision threshold of training-time metrics.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// The one decision rule: predicted positive when `p >= threshold`.
pub fn is_positive(p: f32, threshold: f64) -> bool {
    f64::from(p) >= threshold
}

/// Computes all metrics at the 0.5 threshold.
pub fn compute(labels: &[bool], prob_pos: &[f32], loss: &[f32]) -> Result<Metrics, MetricsError> {
    compute_at(labels, prob_pos, loss, DEFAULT_THRESHOLD)
}

/// Computes all metrics at `threshold` (positive when `p >= threshold`).
pub fn compute_at(
    labels: &[bool],
    prob_pos: &[f32],
    loss: &[f32],
    threshold: f64,
) -> Result<Metrics, MetricsError> {
    if labels.len() != prob_pos.len() || labels.len() != loss.len() {
        return Err(MetricsError::LengthMismatch {
            labels: labels.len(),
            probs: prob_pos.len(),
            losses: loss.len(),
        });
    }
    check_finite(prob_pos)?;
    let (mut pos, mut neg, mut tp, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let (mut lp, mut ln) = (0f64, 0f64);
    for ((&l, &p), &x) in labels.iter().zip(prob_pos).zip(loss) {
        let pred = is_positive(p, threshold);
        if l {
            pos += 1;
            lp += x as f64;
            tp += usize::from(pred);
        } else {
            neg += 1;
            ln += x as f64;
            tn += usize::from(!pred);
        }
    }
    let fp = neg - tn;
    let fneg = pos - tp;
    let precision = ratio(tp as f64, (tp + fp) as f64);
    let recall = ratio(tp as f64, (tp + fneg) as f64);
    let f1 = ratio(2.0 * precision * recall, precision + recall);
    let n = labels.len();
    Ok(Metrics {
        count: n,
        pos_count: pos,
        neg_count: neg,
        loss_all: ratio(lp + ln, n as f64),
        loss_neg: ratio(ln, neg as f64),
        loss_pos: ratio(lp, pos as f64),
        neg_correct: tn,
        pos_correct: tp,
        correct_all: pct(tp + tn, n),
        correct_neg: pct(tn, neg),
        correct_pos: pct(tp, pos),
        precision,
        recall,
        f1,
        auc: roc_auc(labels, prob_pos),
    })
}

/// Errors when any probability is NaN or infinite.
pub fn check_finite(prob: &[f32]) -> Result<(), MetricsError> {
    let mut bad = prob.iter().enumerate().filter(|(_, p)| !p.is_finite());
    if let Some((first, _)) = bad.next() {
        return Err(MetricsError::NonFinite {
            count: 1 + bad.count(),
            total: prob.len(),
            first,
        });
    }
    Ok(())
}

pub use luna::curves::{pr_curve, roc_auc, roc_curve};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_counts_and_scores() {
        // labels:    T    T    T    F    F    F    F
        // probs:    .9   .6   .4   .7  .45   .2   .1   -> pred: T T F T F F F
        let l = [true, true, true, false, false, false, false];
        let p = [0.9, 0.6, 0.4, 0.7, 0.45, 0.2, 0.1];
        let x = [0.1, 0.5, 0.9, 1.2, 0.7, 0.2, 0.1];
        let m = compute(&l, &p, &x).unwrap();
        assert_eq!((m.pos_correct, m.neg_correct), (2, 3));
        assert!((m.loss_pos - 0.5).abs() < 1e-6);
        assert!((m.loss_neg - 0.55).abs() < 1e-6);
        assert!((m.loss_all - 3.7 / 7.0).abs() < 1e-6);
        assert!((m.correct_all - 500.0 / 7.0).abs() < 1e-9);
        assert!((m.correct_pos - 200.0 / 3.0).abs() < 1e-9);
        assert!((m.correct_neg - 75.0).abs() < 1e-9);
        assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
        // Pairs (pos > neg): .9 beats 4, .6 beats 3 (.45,.2,.1), .4 beats 2 -> 9/12.
        assert!((m.auc.unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn auc_matches_sklearn_examples() {
        // sklearn docs: roc_auc_score([0,0,1,1],[0.1,0.4,0.35,0.8]) == 0.75
        let auc = roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12);
        // ties count half: all equal scores -> 0.5
        let auc = roc_auc(&[false, true, false, true], &[0.3; 4]).unwrap();
        assert!((auc - 0.5).abs() < 1e-12);
        // one tie across classes: pos {.8,.5} neg {.5,.1} -> (1+1+0.5+1)/4
        let auc = roc_auc(&[true, true, false, false], &[0.8, 0.5, 0.5, 0.1]).unwrap();
        assert!((auc - 0.875).abs() < 1e-12);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
    }

    #[test]
    fn threshold_half_is_positive_and_empty_precision_is_zero() {
        let m = compute(&[true, false], &[0.5, 0.5], &[0.0, 0.0]).unwrap();
        assert_eq!((m.pos_correct, m.neg_correct), (1, 0));
        assert_eq!((m.precision, m.recall), (0.5, 1.0));
        let m = compute(&[true, false], &[0.4, 0.4], &[0.0, 0.0]).unwrap();
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
    }

    #[test]
    fn curves_have_expected_points() {
        let l = [false, false, true, true];
        let s = [0.1, 0.4, 0.35, 0.8];
        assert_eq!(
            roc_curve(&l, &s),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        assert_eq!(
            pr_curve(&l, &s),
            vec![(0.5, 1.0), (0.5, 0.5), (1.0, 2.0 / 3.0), (1.0, 0.5)]
        );
        assert!(matches!(
            compute(&[true], &[], &[]),
            Err(MetricsError::LengthMismatch { .. })
        ));
    }
}
