//! `froc` against the independent Python oracle (`tests/oracle/froc_oracle.py`, numpy only,
//! its own ROC): curve points, the 7 sensitivities, both CPMs, the counts and the bootstrap
//! (same documented resampling generator) agree to 1e-9 on hand-made cases that each isolate a
//! rule, and on a 200-scan random submission. Hand-made cases also assert the counts the
//! rules give by hand, so luna and the oracle cannot agree on a shared mistake there.

use luna::froc::{draw, interp, FrocOptions};

use crate::froc_support::{assert_same, check_case, generate, luna_eval, oracle, Case, Row};

fn opts(bootstrap: usize) -> FrocOptions {
    FrocOptions {
        bootstrap,
        seed: 7,
        ..FrocOptions::default()
    }
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("luna-froc-")
        .tempdir()
        .unwrap()
}

/// Scans A–E: double detection and a mark on the R boundary (A), an ignored mark on a −1 mm
/// excluded finding and a mark just outside it (B), one mark hitting two nodules (C), a scan
/// without marks whose nodule is missed (D), a scan without nodules or marks (E).
fn rules_case() -> Case {
    Case {
        scans: vec!["A", "B", "C", "D", "E"],
        included: vec![
            ("A", [0.0, 0.0, 0.0], 10.0),
            ("C", [0.0, 0.0, 0.0], 4.0),
            ("C", [3.0, 0.0, 0.0], 4.0),
            ("D", [100.0, 100.0, -100.0], 6.0),
        ],
        excluded: vec![("B", [10.0, 10.0, 10.0], -1.0)],
        marks: vec![
            ("A", [1.0, 0.0, 0.0], 0.9),
            ("A", [0.0, 2.0, 0.0], 0.5),
            ("A", [50.0, 0.0, 0.0], 0.7),
            ("A", [5.0, 0.0, 0.0], 0.95), // distance² = R² exactly: not a hit
            ("B", [0.0, 0.0, 0.0], 0.6),
            ("B", [12.0, 10.0, 10.0], 0.8), // within 5 mm of the -1 finding: ignored
            ("B", [10.0, 10.0, 15.5], 0.3), // 5.5 mm away: FP
            ("C", [1.5, 0.0, 0.0], 0.4),    // hits both nodules of C
        ],
    }
}

#[test]
fn rules_case_matches_oracle_and_hand_counts() {
    let d = tmp();
    let r = check_case(d.path(), &rules_case(), opts(200));
    let c = r.counts;
    assert_eq!((c.tp, c.fn_, c.fp, c.nodules, c.scans), (3, 1, 4, 4, 5));
    assert_eq!(
        (c.ignored_on_excluded, c.double_detections, c.marks),
        (1, 1, 8)
    );
    // ROC entries: nodules at 0.9 (A), 0.4, 0.4 (C); FPs 0.95, 0.7 (A), 0.6, 0.3 (B); 5 scans,
    // 4 nodules. Cumulative (fp, tp) per threshold: (1,0) (1,1) (2,1) (3,1) (3,3) (4,3);
    // (2,1) is collinear (dropped by drop_intermediate); then (0,0) first.
    let pts: Vec<(f64, f64)> = r.curve.iter().map(|p| (p.fps, p.sensitivity)).collect();
    let want = [
        (0.0, 0.0),
        (0.2, 0.0),
        (0.2, 0.25),
        (0.6, 0.25),
        (0.6, 0.75),
        (0.8, 0.75),
    ];
    assert_eq!(pts.len(), want.len(), "{pts:?}");
    for (p, w) in pts.iter().zip(want) {
        assert!(
            (p.0 - w.0).abs() < 1e-12 && (p.1 - w.1).abs() < 1e-12,
            "{pts:?}"
        );
    }
    assert_eq!(r.sensitivities, [0.0, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]);
    assert!((r.cpm - 0.5).abs() < 1e-12);
}

/// A scan with 103 marks whose 101st-highest probability is tied with five others: all six are
/// dropped (97 kept), with them the only hit of its nodule; a scan with exactly 100 marks (no
/// cut) and one with 101 distinct (one dropped).
fn cap_case() -> Case {
    let mut marks: Vec<Row> = Vec::new();
    for i in 0..97 {
        marks.push(("A", [200.0 + i as f64, 0.0, 0.0], 0.99 - 0.001 * i as f64));
    }
    for i in 0..6 {
        marks.push((
            "A",
            [if i == 0 { 0.5 } else { -300.0 - i as f64 }, 0.0, 0.0],
            0.2,
        ));
    }
    for i in 0..100 {
        marks.push((
            "B",
            [i as f64 * 3.0, 50.0, 0.0],
            ((i * 37) % 100) as f64 / 100.0,
        ));
    }
    for i in 0..101 {
        let p = 0.5 + 0.004 * i as f64;
        marks.push(("C", [i as f64 * 3.0, -50.0, 0.0], p));
    }
    marks.push(("C", [0.0, -50.0, 0.0], 0.001)); // the lowest: dropped, would hit C's nodule
    Case {
        scans: vec!["A", "B", "C"],
        included: vec![
            ("A", [0.0, 0.0, 0.0], 6.0),
            ("B", [0.0, 50.0, 0.0], 4.0),
            ("C", [0.1, -50.0, 0.0], 1.0),
        ],
        excluded: vec![],
        marks,
    }
}

#[test]
fn ties_at_the_100_mark_cut_match_oracle() {
    let d = tmp();
    let r = check_case(d.path(), &cap_case(), opts(100));
    // A: the 6 marks tied at the 101st-highest (0.2) all go, 97 stay. C: 102 marks, the
    // 101st-highest is 0.5; the 100 above it stay, the 0.5 and 0.001 marks (both hits) go.
    assert_eq!(r.counts.marks_dropped_by_cap, 6 + 2);
    assert_eq!((r.counts.tp, r.counts.fn_), (1, 2), "A and C missed, B hit");
    let all = FrocOptions {
        max_marks: 0,
        ..opts(0)
    };
    let r0 = check_case(d.path(), &cap_case(), all);
    assert_eq!((r0.counts.marks_dropped_by_cap, r0.counts.tp), (0, 3));
}

#[test]
fn system_without_false_positives_matches_oracle() {
    let case = Case {
        scans: vec!["A", "B", "C"],
        included: vec![
            ("A", [0.0, 0.0, 0.0], 8.0),
            ("B", [0.0, 0.0, 0.0], 8.0),
            ("B", [40.0, 0.0, 0.0], 8.0),
        ],
        excluded: vec![("C", [0.0, 0.0, 0.0], 3.0)],
        marks: vec![
            ("A", [1.0, 0.0, 0.0], 0.3),
            ("B", [0.0, 1.0, 0.0], 0.8),
            ("B", [0.0, 0.0, 1.0], 0.2),
            ("C", [0.5, 0.0, 0.0], 0.9), // on an excluded finding: ignored, not a FP
        ],
    };
    let d = tmp();
    let r = check_case(d.path(), &case, opts(100));
    assert_eq!((r.counts.fp, r.counts.tp, r.counts.fn_), (0, 2, 1));
    assert!(r.curve.iter().all(|p| p.fps == 0.0));
    // numpy.interp right of the last point: the plateau (2 of 3 nodules) at every rate.
    assert!(r
        .sensitivities
        .iter()
        .all(|&s| (s - 2.0 / 3.0).abs() < 1e-12));
    // DIAG's nearest-point rule never beats the initial distance max(fps) = 0: all zeros.
    assert_eq!(r.cpm_nearest, 0.0);
}

#[test]
fn nothing_detected_and_excluded_before_included_match_oracle() {
    let case = Case {
        scans: vec!["A", "B"],
        included: vec![("A", [0.0, 0.0, 0.0], 5.0)],
        // A's mark hits A's nodule and a -1 mm excluded finding: included findings come
        // first, so it is a hit, not ignored. B's first mark hits B's excluded finding: ignored.
        excluded: vec![("A", [0.0, 0.0, 1.0], -1.0), ("B", [0.0, 0.0, 0.0], 2.0)],
        marks: vec![
            ("A", [0.0, 0.0, 0.5], 0.7),
            ("B", [0.0, 0.0, 0.5], 0.9),
            ("B", [30.0, 0.0, 0.0], 0.1),
        ],
    };
    let d = tmp();
    let r = check_case(d.path(), &case, opts(50));
    assert_eq!(
        (r.counts.tp, r.counts.ignored_on_excluded, r.counts.fp),
        (1, 1, 1)
    );
    let missed = Case {
        scans: vec!["A", "B"],
        included: vec![("A", [0.0, 0.0, 0.0], 5.0)],
        excluded: vec![],
        marks: vec![("A", [9.0, 0.0, 0.0], 0.7), ("B", [1.0, 0.0, 0.0], 0.2)],
    };
    let r = check_case(d.path(), &missed, opts(50));
    assert_eq!(r.cpm, 0.0, "no nodule detected: sensitivity 0 everywhere");
}

#[test]
fn random_200_scan_submission_matches_oracle() {
    let d = tmp();
    generate(d.path(), 200, 100, 11);
    let o = FrocOptions {
        bootstrap: 100,
        seed: 3,
        ..FrocOptions::default()
    };
    let r = luna_eval(d.path(), o);
    assert!(r.counts.marks_dropped_by_cap > 0, "the cut is exercised");
    assert!(r.counts.double_detections > 0 && r.counts.ignored_on_excluded > 0);
    assert!(r.curve.len() > 100, "{} curve points", r.curve.len());
    assert_same(&r, &oracle(d.path(), o));
    let b = r.bootstrap.as_ref().unwrap();
    assert!(b.cpm.low <= b.cpm.mean && b.cpm.mean <= b.cpm.high);
    assert!(b.cpm.low < r.cpm && r.cpm < b.cpm.high);
    // Deterministic: the same seed gives the same rounds, another seed others.
    assert_eq!(luna_eval(d.path(), o).bootstrap, r.bootstrap);
    let other = luna_eval(d.path(), FrocOptions { seed: 4, ..o });
    assert_ne!(other.bootstrap.unwrap().cpm, b.cpm);
}

#[test]
fn generator_and_interp_follow_their_definitions() {
    // SplitMix64 seeded 0: its first output is the published 0xE220A8397B1DCDAF.
    assert_eq!(draw(0, 0), 0xE220_A839_7B1D_CDAF);
    // numpy.interp: left/right plateaus, the upper value at a vertical step, linear between.
    let xs = [0.0, 0.0, 1.0, 1.0, 3.0];
    let ys = [0.0, 0.2, 0.4, 0.6, 1.0];
    assert_eq!(interp(-1.0, &xs, &ys), 0.0);
    assert_eq!(interp(0.0, &xs, &ys), 0.2);
    assert_eq!(interp(1.0, &xs, &ys), 0.6);
    assert_eq!(interp(2.0, &xs, &ys), 0.8);
    assert_eq!(interp(9.0, &xs, &ys), 1.0);
}
