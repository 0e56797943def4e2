//! ROC and precision–recall curves and the exact ROC AUC from labels and scores, shared by
//! the classifiers' metrics (`luna_torch::nn::metrics`) and the per-patient diagnosis.
//!
//! Every distinct score is one threshold (predicted positive when `score >= threshold`); tied
//! scores form one step, so the AUC is the trapezoid over all steps = the Mann–Whitney
//! probability with ties counted ½ (scikit-learn's `roc_auc_score`). Ties are grouped with a
//! total order, so even NaN input cannot make the loop stall (callers reject non-finite scores
//! before, with a clear error). Rejected: the book's 100-threshold approximation.

/// Confusion counts (TP, FP) after each distinct threshold, scores descending; starts at (0,0).
fn cumulative_counts(labels: &[bool], scores: &[f32]) -> Vec<(f32, usize, usize)> {
    let mut idx: Vec<usize> = (0..labels.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut k = 0;
    while k < idx.len() {
        let s = scores[idx[k]];
        // total_cmp, not ==: a NaN equals itself here, so k always advances.
        while k < idx.len() && scores[idx[k]].total_cmp(&s).is_eq() {
            if labels[idx[k]] {
                tp += 1;
            } else {
                fp += 1;
            }
            k += 1;
        }
        out.push((s, tp, fp));
    }
    out
}

/// ROC curve points `(fpr, tpr)` from (0,0) to (1,1), one per distinct score (predicted positive
/// when score >= threshold). Empty when a class is absent.
pub fn roc_curve(labels: &[bool], scores: &[f32]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 || labels.len() != scores.len() {
        return Vec::new();
    }
    let mut pts = vec![(0.0, 0.0)];
    for (_, tp, fp) in cumulative_counts(labels, scores) {
        pts.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
    }
    pts
}

/// Exact area under the ROC curve (trapezoid over all distinct thresholds, ties = ½).
pub fn roc_auc(labels: &[bool], scores: &[f32]) -> Option<f64> {
    let pts = roc_curve(labels, scores);
    if pts.is_empty() {
        return None;
    }
    Some(
        pts.windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum(),
    )
}

/// Precision–recall points `(recall, precision)`, one per distinct score (descending score).
/// Empty when there are no positives.
pub fn pr_curve(labels: &[bool], scores: &[f32]) -> Vec<(f64, f64)> {
    let pos = labels.iter().filter(|&&l| l).count();
    if pos == 0 || labels.len() != scores.len() {
        return Vec::new();
    }
    cumulative_counts(labels, scores)
        .into_iter()
        .map(|(_, tp, fp)| (tp as f64 / pos as f64, tp as f64 / (tp + fp) as f64))
        .collect()
}
