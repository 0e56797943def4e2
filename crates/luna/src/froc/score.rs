//! Rules 2–6 of the module doc: cap each scan's marks, match them to the findings and turn the
//! result into FROC entries (one per included nodule, one per remaining mark) plus the counts
//! the script's `CADAnalysis.txt` reports.
//!
//! Matching is the script's brute force (every finding against every mark of its scan): with
//! ≤ 100 marks and a handful of findings per scan it is microseconds; a spatial index would only
//! add code.

use serde::{Deserialize, Serialize};

use super::input::{Finding, FrocInput, Mark};

/// The probability of a missed nodule's entry (the script's `minProbValue`).
pub const MISSED_PROBABILITY: f64 = -1_000_000_000.0;

/// One FROC entry (the script's FROCGTList / FROCProbList / excludeList / FPDivisorList).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Scan index.
    pub scan: u32,
    /// The entry's probability (a detected nodule: its best hit; a FP: the mark's).
    pub probability: f64,
    /// An included nodule (true) or a false-positive mark (false).
    pub positive: bool,
    /// A missed nodule: kept out of the ROC, counted in the sensitivity denominator.
    pub excluded: bool,
}

/// What the matching found (the script's CADAnalysis.txt counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Included nodules hit by at least one mark.
    pub tp: usize,
    /// Marks left after removing hits and ignored marks.
    pub fp: usize,
    /// Included nodules hit by no mark.
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// Marks removed because they hit an excluded finding.
    pub ignored_on_excluded: usize,
    /// Hits of a nodule beyond its first.
    pub double_detections: usize,
    /// Evaluated scans.
    pub scans: usize,
    /// Included nodules in the evaluated scans.
    pub nodules: usize,
    /// Marks scored (after the cap).
    pub marks: usize,
    /// Marks dropped by the per-scan cap.
    pub marks_dropped_by_cap: usize,
}

/// The entries and counts of one scoring.
#[derive(Debug, Clone)]
pub struct Scored {
    /// Entries grouped by scan, in scan order (nodules first, then FPs, as the script).
    pub entries: Vec<Entry>,
    /// The counts.
    pub counts: Counts,
    /// Included nodules per scan (positive entries, detected or missed).
    pub nodules_per_scan: Vec<u32>,
    /// Included nodules that a kept mark matches under the book's rule ([`book_match`]).
    pub book_hits: usize,
}

/// Rule 2: the marks of one scan that survive a cap of `max_marks` (0 = no cap): when there
/// are more, those strictly above the `max_marks+1`-th highest probability.
pub fn cap_marks<'a>(marks: &[&'a Mark], max_marks: usize) -> Vec<&'a Mark> {
    if max_marks == 0 || marks.len() <= max_marks {
        return marks.to_vec();
    }
    let mut probs: Vec<f64> = marks.iter().map(|m| m.probability).collect();
    probs.sort_by(|a, b| b.total_cmp(a));
    let cut = probs[max_marks];
    marks
        .iter()
        .copied()
        .filter(|m| m.probability > cut)
        .collect()
}

fn radius_squared(f: &Finding) -> f64 {
    let d = if f.diameter_mm < 0.0 {
        10.0
    } else {
        f.diameter_mm
    };
    (d / 2.0) * (d / 2.0)
}

fn hits(f: &Finding, m: &Mark, r2: f64) -> bool {
    let (dx, dy, dz) = (
        f.xyz[0] - m.xyz[0],
        f.xyz[1] - m.xyz[1],
        f.xyz[2] - m.xyz[2],
    );
    dx * dx + dy * dy + dz * dz < r2
}

/// The book's matcher (p2ch14 `match_and_score`, also `diagnose`): a mark closer than
/// 0.7 × the nodule's diameter. More lenient than LUNA16's diameter / 2; reported beside the
/// official recall, never instead of it.
pub fn book_match(f: &Finding, m: &Mark) -> bool {
    let r = 0.7 * f.diameter_mm;
    f.diameter_mm > 0.0 && hits(f, m, r * r)
}

/// Rules 2–6 for every scan of `input`.
pub fn score(input: &FrocInput, max_marks: usize) -> Scored {
    let n = input.scans.len();
    let mut marks: Vec<Vec<&Mark>> = vec![Vec::new(); n];
    for m in &input.marks {
        marks[m.scan].push(m);
    }
    let mut included: Vec<Vec<&Finding>> = vec![Vec::new(); n];
    for f in &input.included {
        included[f.scan].push(f);
    }
    let mut excluded: Vec<Vec<&Finding>> = vec![Vec::new(); n];
    for f in &input.excluded {
        excluded[f.scan].push(f);
    }
    let mut c = Counts {
        scans: n,
        ..Counts::default()
    };
    let mut entries = Vec::with_capacity(input.marks.len().min(n * max_marks.max(1)) + n);
    let mut nodules_per_scan = vec![0u32; n];
    let mut book_hits = 0;
    for s in 0..n {
        let kept = cap_marks(&marks[s], max_marks);
        c.marks_dropped_by_cap += marks[s].len() - kept.len();
        c.marks += kept.len();
        let mut pool = vec![true; kept.len()];
        for f in &included[s] {
            c.nodules += 1;
            nodules_per_scan[s] += 1;
            let r2 = radius_squared(f);
            let mut best: Option<f64> = None;
            let mut matches = 0usize;
            for (k, m) in kept.iter().enumerate() {
                if hits(f, m, r2) {
                    matches += 1;
                    pool[k] = false;
                    best = Some(best.map_or(m.probability, |b| b.max(m.probability)));
                }
            }
            c.double_detections += matches.saturating_sub(1);
            book_hits += usize::from(kept.iter().any(|m| book_match(f, m)));
            let (probability, excluded) = match best {
                Some(p) => {
                    c.tp += 1;
                    (p, false)
                }
                None => {
                    c.fn_ += 1;
                    (MISSED_PROBABILITY, true)
                }
            };
            entries.push(Entry {
                scan: s as u32,
                probability,
                positive: true,
                excluded,
            });
        }
        for f in &excluded[s] {
            let r2 = radius_squared(f);
            for (k, m) in kept.iter().enumerate() {
                if pool[k] && hits(f, m, r2) {
                    pool[k] = false;
                    c.ignored_on_excluded += 1;
                }
            }
        }
        for (k, m) in kept.iter().enumerate() {
            if pool[k] {
                c.fp += 1;
                entries.push(Entry {
                    scan: s as u32,
                    probability: m.probability,
                    positive: false,
                    excluded: false,
                });
            }
        }
    }
    Scored {
        entries,
        counts: c,
        nodules_per_scan,
        book_hits,
    }
}
