//! Per-patient diagnosis from detections (book p2ch14 `nodule_analysis.py`, made complete):
//! accepted nodules, a patient score, the book's 3×4 confusion table and a per-patient AUC.
//!
//! - A detection is a **nodule** when `P(nodule) >= nodule_threshold` (the book's strict
//!   `prob < 0.5` = "filtered out", so 0.5 counts as a nodule, as in luna's one threshold rule)
//!   and **malignant** when also `P(malignant) >= malignancy_threshold`.
//! - Patient score: the highest malignancy probability of its accepted nodules (0 when none),
//!   or with `noisy_or` 1 − Π(1 − p) over them (several suspicious nodules add up).
//! - The book's table (`match_and_score`): detection class 1 = filtered out, 2 = predicted
//!   benign (or "nodule" without a malignancy model), 3 = predicted malignant; a detection
//!   matches a true nodule when its distance is below 0.7 × the nodule's diameter (the book's
//!   lenient matcher, not LUNA16's radius); each true nodule takes the highest class among its
//!   matches, or 0 = complete miss; unmatched detections count in the Non-Nodules row. Rows
//!   Non-Nodules / Benign / Malignant, columns Complete Miss / Filtered Out / Pred. Benign /
//!   Pred. Malignant ("Pred. Nodule" when there is no malignancy model).
//! - Per-patient ROC AUC of the patient score against "the series has a malignant nodule"
//!   (exact, `curves::roc_auc`), where ground truth exists.

use std::fmt::Write;

/// A detection of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// World centre (mm).
    pub xyz: [f64; 3],
    /// P(nodule).
    pub prob_nodule: f64,
    /// P(malignant), if scored.
    pub prob_malignant: Option<f64>,
}

/// A true nodule of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct TrueNodule {
    /// World centre (mm).
    pub xyz: [f64; 3],
    /// Diameter (mm).
    pub diameter_mm: f64,
    /// Malignant.
    pub malignant: bool,
}

/// How the patient score combines nodules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientScore {
    /// The highest malignancy probability.
    Max,
    /// 1 − Π(1 − p).
    NoisyOr,
}

/// Thresholds and score rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// P(nodule) threshold.
    pub nodule_threshold: f64,
    /// P(malignant) threshold.
    pub malignancy_threshold: f64,
    /// Patient score.
    pub score: PatientScore,
}

/// The book's 3×4 confusion counts: `[truth row][detection column]`.
pub type Confusion = [[u64; 4]; 3];

/// Detection class in the book's table (1 filtered out, 2 benign / nodule, 3 malignant).
pub fn detection_class(d: &Detection, r: &Rules) -> usize {
    if d.prob_nodule < r.nodule_threshold {
        1
    } else if d.prob_malignant.is_none_or(|m| m < r.malignancy_threshold) {
        2
    } else {
        3
    }
}

/// The patient score of a series' detections.
pub fn patient_score(dets: &[Detection], r: &Rules) -> f64 {
    let mal = dets
        .iter()
        .filter(|d| d.prob_nodule >= r.nodule_threshold)
        .map(|d| d.prob_malignant.unwrap_or(0.0));
    match r.score {
        PatientScore::Max => mal.fold(0.0, f64::max),
        PatientScore::NoisyOr => 1.0 - mal.fold(1.0, |acc, p| acc * (1.0 - p)),
    }
}

fn dist(a: [f64; 3], b: [f64; 3]) -> f64 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt()
}

/// The annotated nodules of a candidate table (`merge_candidates`: nodule rows with an
/// annotation, their diameter and malignancy), per series.
pub fn truth_by_series(
    rows: Vec<crate::tables::MergedRow>,
) -> std::collections::BTreeMap<String, Vec<TrueNodule>> {
    let mut m: std::collections::BTreeMap<String, Vec<TrueNodule>> = Default::default();
    for r in rows.into_iter().filter(|r| r.is_nodule && r.has_annotation) {
        m.entry(r.series_uid.clone()).or_default().push(TrueNodule {
            xyz: r.center_xyz,
            diameter_mm: r.diameter_mm,
            malignant: r.is_malignant.unwrap_or(false),
        });
    }
    m
}

/// The book's matcher: a detection at `xyz` matches `t` when it is closer than 0.7 × t's
/// diameter.
pub fn matches(t: &TrueNodule, xyz: [f64; 3]) -> bool {
    t.diameter_mm > 0.0 && dist(t.xyz, xyz) / t.diameter_mm < 0.7
}

/// The book's `match_and_score` for one series.
pub fn match_and_score(dets: &[Detection], truth: &[TrueNodule], r: &Rules) -> Confusion {
    let mut c = [[0u64; 4]; 3];
    let classes: Vec<usize> = dets.iter().map(|d| detection_class(d, r)).collect();
    let mut matched = vec![false; dets.len()];
    for t in truth {
        let mut best = 0;
        for (k, d) in dets.iter().enumerate() {
            if matches(t, d.xyz) {
                matched[k] = true;
                best = best.max(classes[k]);
            }
        }
        c[if t.malignant { 2 } else { 1 }][best] += 1;
    }
    for (k, m) in matched.iter().enumerate() {
        if !m {
            c[0][classes[k]] += 1;
        }
    }
    c
}

/// Renders a confusion table as the book prints it (`print_confusion`): width 16, right
/// aligned, " | " separated; the Non-Nodules "Complete Miss" cell blank; without a malignancy
/// model the last two columns merge into "Pred. Nodule".
pub fn render_confusion(label: &str, c: &Confusion, with_malignancy: bool) -> String {
    let mut s = String::new();
    let cols: Vec<&str> = if with_malignancy {
        vec![
            "Complete Miss",
            "Filtered Out",
            "Pred. Benign",
            "Pred. Malignant",
        ]
    } else {
        vec!["Complete Miss", "Filtered Out", "Pred. Nodule"]
    };
    let _ = write!(s, "{label:>16} |");
    for h in &cols {
        let _ = write!(s, " {h:>16} |");
    }
    s.truncate(s.len() - 2);
    s.push('\n');
    for (i, row) in ["Non-Nodules", "Benign", "Malignant"].iter().enumerate() {
        let mut cells: Vec<String> = if with_malignancy {
            c[i].iter().map(|v| v.to_string()).collect()
        } else {
            vec![
                c[i][0].to_string(),
                c[i][1].to_string(),
                (c[i][2] + c[i][3]).to_string(),
            ]
        };
        if i == 0 {
            cells[0].clear();
        }
        let _ = write!(s, "{row:>16} |");
        for v in &cells {
            let _ = write!(s, " {v:>16} |");
        }
        s.truncate(s.len() - 2);
        s.push('\n');
    }
    s
}

/// Adds `b` into `a`.
pub fn add_confusion(a: &mut Confusion, b: &Confusion) {
    for i in 0..3 {
        for j in 0..4 {
            a[i][j] += b[i][j];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Rules = Rules {
        nodule_threshold: 0.5,
        malignancy_threshold: 0.5,
        score: PatientScore::Max,
    };

    fn det(x: f64, pn: f64, pm: f64) -> Detection {
        Detection {
            xyz: [x, 0.0, 0.0],
            prob_nodule: pn,
            prob_malignant: Some(pm),
        }
    }

    #[test]
    fn the_books_table_on_a_hand_made_case() {
        let truth = [
            // benign nodule at 0 (d 10): matched by a benign detection at 3 (0.3 d) and a
            // filtered-out one at 5 (0.5 d) -> highest class 2 (Pred. Benign)
            TrueNodule {
                xyz: [0.0, 0.0, 0.0],
                diameter_mm: 10.0,
                malignant: false,
            },
            // malignant nodule at 100 (d 10): detection at 106.9 (0.69 d) malignant -> 3
            TrueNodule {
                xyz: [100.0, 0.0, 0.0],
                diameter_mm: 10.0,
                malignant: true,
            },
            // malignant nodule at 200: detection at 207 (0.7 d, not < 0.7) -> complete miss
            TrueNodule {
                xyz: [200.0, 0.0, 0.0],
                diameter_mm: 10.0,
                malignant: true,
            },
        ];
        let dets = [
            det(3.0, 0.9, 0.2),
            det(5.0, 0.4, 0.9),
            det(106.9, 0.5, 0.5),
            det(207.0, 0.8, 0.1),
            det(300.0, 0.2, 0.0),
        ];
        let c = match_and_score(&dets, &truth, &R);
        assert_eq!(c, [[0, 1, 1, 0], [0, 0, 1, 0], [1, 0, 0, 1]]);
        let t = render_confusion("Total", &c, true);
        assert_eq!(
            t,
            "           Total |    Complete Miss |     Filtered Out |     Pred. Benign |  Pred. Malignant\n     Non-Nodules |                  |                1 |                1 |                0\n          Benign |                0 |                0 |                1 |                0\n       Malignant |                1 |                0 |                0 |                1\n"
        );
        let t = render_confusion("Total", &c, false);
        assert!(
            t.contains("Pred. Nodule") && t.ends_with("|                1\n"),
            "{t}"
        );
        assert_eq!(patient_score(&dets, &R), 0.5);
        let noisy = Rules {
            score: PatientScore::NoisyOr,
            ..R
        };
        // accepted: 0.2, 0.5, 0.1 -> 1 - 0.8*0.5*0.9 = 0.64
        assert!((patient_score(&dets, &noisy) - 0.64).abs() < 1e-12);
    }
}
