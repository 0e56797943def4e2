//! Rules 7–8 of the module doc: the FROC curve as sklearn's `roc_curve` and the script's
//! `computeFROC` give it, numpy's `interp`, and the two CPM read-outs.
//!
//! The curve takes a per-scan weight so the bootstrap can score a resample (each scan counted
//! as often as it was drawn) without copying or re-sorting entries; weight 1 is the plain
//! evaluation.

use super::score::Scored;

/// One point of the FROC curve (a line of `froc.csv`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// Average false positives per scan.
    pub fps: f64,
    /// Fraction of included nodules detected.
    pub sensitivity: f64,
    /// Probability threshold (marks with probability ≥ it count); `inf` for the (0, 0) point.
    pub threshold: f64,
}

/// The non-excluded entries sorted by probability, descending, ready for [`froc_curve`] and the
/// bootstrap's rounds.
#[derive(Debug, Clone)]
pub struct Ranked {
    /// Probabilities, descending.
    pub probability: Vec<f64>,
    /// Per entry: `scan << 2 | last_of_group << 1 | positive`, where `last_of_group` says that
    /// the next entry has a different probability (ends a threshold). Packed so a bootstrap
    /// round streams 4 bytes per entry.
    pub(crate) packed: Vec<u32>,
}

/// Bit of a packed entry: a detected nodule (else a FP).
pub(crate) const POSITIVE: u32 = 1;
/// Bit of a packed entry: the last entry of its probability.
pub(crate) const LAST_OF_GROUP: u32 = 2;

impl Ranked {
    /// Sorts the ROC entries of `scored` (the non-excluded ones).
    pub fn new(scored: &Scored) -> Ranked {
        let mut e: Vec<_> = scored.entries.iter().filter(|e| !e.excluded).collect();
        e.sort_by(|a, b| b.probability.total_cmp(&a.probability));
        let probability: Vec<f64> = e.iter().map(|e| e.probability).collect();
        let packed = e
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let last = i + 1 == probability.len() || probability[i + 1] != probability[i];
                (e.scan << 2) | (u32::from(last) * LAST_OF_GROUP) | u32::from(e.positive)
            })
            .collect();
        Ranked {
            probability,
            packed,
        }
    }
}

/// The FROC curve of the entries of `ranked`, each counted `weight(scan)` times, with
/// `nodules` included nodules (detected or not, weighted alike) in `scans` scans.
pub fn froc_curve(
    ranked: &Ranked,
    weight: impl Fn(u32) -> u64,
    nodules: u64,
    scans: usize,
) -> Vec<CurvePoint> {
    // sklearn `_binary_clf_curve`: cumulative (fp, tp) at the end of each distinct threshold.
    let mut raw: Vec<(u64, u64, f64)> = Vec::with_capacity(ranked.packed.len() / 2 + 1);
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut open = false;
    for (&e, &p) in ranked.packed.iter().zip(&ranked.probability) {
        let w = weight(e >> 2);
        if w > 0 {
            open = true;
            if e & POSITIVE != 0 {
                tp += w;
            } else {
                fp += w;
            }
        }
        if open && e & LAST_OF_GROUP != 0 {
            raw.push((fp, tp, p));
            open = false;
        }
    }
    // `drop_intermediate=True`: drop interior points where both second differences are 0.
    if raw.len() > 2 {
        let d2 = |a: u64, b: u64, c: u64| (c as i128 - b as i128) != (b as i128 - a as i128);
        let mut kept = Vec::with_capacity(raw.len());
        kept.push(raw[0]);
        for k in 1..raw.len() - 1 {
            let (a, b, c) = (raw[k - 1], raw[k], raw[k + 1]);
            if d2(a.0, b.0, c.0) || d2(a.1, b.1, c.1) {
                kept.push(b);
            }
        }
        kept.push(raw[raw.len() - 1]);
        raw = kept;
    }
    let (fp_total, tp_total) = raw.last().map_or((0, 0), |r| (r.0, r.1));
    let mut curve = Vec::with_capacity(raw.len() + 1);
    for (fp, tp, threshold) in std::iter::once((0, 0, f64::INFINITY)).chain(raw) {
        // The script: fps = fpr * (n_candidates - n_detected) / n_images, where
        // n_candidates - n_detected is the FP total; all zeros when there is no FP at all.
        let fps = if fp_total == 0 {
            0.0
        } else {
            (fp as f64 / fp_total as f64) * fp_total as f64 / scans as f64
        };
        // sens = tpr * n_detected / n_lesions; 0 where tpr is undefined (see module doc).
        let sensitivity = if tp_total == 0 || nodules == 0 {
            0.0
        } else {
            (tp as f64 / tp_total as f64) * tp_total as f64 / nodules as f64
        };
        curve.push(CurvePoint {
            fps,
            sensitivity,
            threshold,
        });
    }
    curve
}

/// `numpy.interp(x, xs, ys)` for non-decreasing `xs` (at least one point): `ys[0]` left of the
/// curve, the last `ys` right of it, and at repeated `xs` the value of the last repeat.
pub fn interp(x: f64, xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len();
    if x < xs[0] {
        return ys[0];
    }
    if x > xs[n - 1] {
        return ys[n - 1];
    }
    // The last j with xs[j] <= x (numpy's binary_search_with_guess).
    let j = xs.partition_point(|&v| v <= x) - 1;
    if j == n - 1 || xs[j] == x {
        return ys[j];
    }
    let slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j]);
    slope * (x - xs[j]) + ys[j]
}

/// The sensitivity at each rate by [`interp`] on the full curve.
pub fn sensitivities_at<const N: usize>(curve: &[CurvePoint], rates: &[f64; N]) -> [f64; N] {
    let xs: Vec<f64> = curve.iter().map(|p| p.fps).collect();
    let ys: Vec<f64> = curve.iter().map(|p| p.sensitivity).collect();
    rates.map(|r| interp(r, &xs, &ys))
}

/// DIAG's `getCPM` (nearest point, strict `<`, search starting from `max(fps)`): the mean and
/// the per-rate values.
pub fn cpm_nearest<const N: usize>(curve: &[CurvePoint], rates: &[f64; N]) -> (f64, [f64; N]) {
    let max_fps = curve
        .iter()
        .map(|p| p.fps)
        .fold(f64::NEG_INFINITY, f64::max);
    let sens = rates.map(|r| {
        let (mut best, mut prior) = (0.0, max_fps);
        for p in curve {
            let d = (p.fps - r).abs();
            if d < prior {
                best = p.sensitivity;
                prior = d;
            }
        }
        best
    });
    (super::mean(&sens), sens)
}
