//! Merge rules on hand-made CSVs with known answers (final and diameter_match rules), the
//! series split and candidate_id stability, and require_malignancy.

use std::collections::{BTreeMap, BTreeSet};

use luna::tables::*;

use super::tables_support::{write, ANNOTATIONS_MAL, ANNOTATIONS_PLAIN, CANDIDATES};

type Owned = (
    String,
    [f64; 3],
    bool,
    bool,
    Option<bool>,
    f64,
    &'static str,
);
type Expect = (
    &'static str,
    [f64; 3],
    bool,
    bool,
    Option<bool>,
    f64,
    &'static str,
);

fn load(mal: bool) -> (Vec<AnnotationRow>, Vec<CandidateRow>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (name, text, kind) = if mal {
        ("a.csv", ANNOTATIONS_MAL, AnnotationsKind::WithMalignancy)
    } else {
        ("a.csv", ANNOTATIONS_PLAIN, AnnotationsKind::Plain)
    };
    let a = read_annotations_csv(&write(dir.path(), name, text), kind, CsvOptions::default())
        .expect("annotations");
    let c = read_candidates_csv(
        &write(dir.path(), "c.csv", CANDIDATES),
        CsvOptions::default(),
    )
    .expect("candidates");
    (a.rows, c.rows)
}

fn project(rows: &[MergedRow]) -> Vec<Owned> {
    rows.iter()
        .map(|r| {
            let s = r.split.as_str();
            (
                r.series_uid.clone(),
                r.center_xyz,
                r.is_nodule,
                r.has_annotation,
                r.is_malignant,
                r.diameter_mm,
                s,
            )
        })
        .collect()
}

fn expect(e: &[Expect]) -> Vec<Owned> {
    e.iter()
        .map(|&(u, c, n, h, m, d, s)| (u.to_string(), c, n, h, m, d, s))
        .collect()
}

fn opts(rule: MergeRule, stride: usize) -> MergeOptions<'static> {
    MergeOptions {
        rule,
        split: SplitSpec::Stride { val_stride: stride },
        require_on_disk: None,
        subsets: None,
    }
}

const F: Option<bool> = Some(false);
const T: Option<bool> = Some(true);

#[test]
fn final_rule_known_answer() {
    let (a, c) = load(true);
    let got = merge_rows(&a, &c, &opts(MergeRule::Final, 2)).expect("merge");
    // split: sorted s1 s2 s3 s4 -> [::2] = s1, s3 are val.
    let want: &[Expect] = &[
        ("s1", [10.0, 20.0, 30.0], true, true, T, 8.0, "val"),
        ("s3", [-5.0, -5.0, -5.0], true, true, T, 6.0, "val"),
        ("s1", [11.0, 20.0, 30.0], true, true, F, 20.0, "val"),
        ("s2", [0.0, 0.0, 0.0], true, true, F, 4.0, "train"),
        ("s4", [1.0, 2.0, 3.0], false, false, F, 0.0, "train"),
        ("s3", [100.0, 100.0, 100.0], false, false, F, 0.0, "val"),
        ("s2", [0.5, -0.5, 1.0], false, false, F, 0.0, "train"),
        ("s1", [12.5, 20.0, 30.0], false, false, F, 0.0, "val"),
        ("s1", [12.0, 22.0, 32.0], false, false, F, 0.0, "val"),
    ];
    assert_eq!(project(&got), expect(want));
}

#[test]
fn diameter_match_rule_known_answer() {
    let (a, c) = load(true);
    let got = merge_rows(&a, &c, &opts(MergeRule::DiameterMatch, 2)).expect("merge");
    let want: &[Expect] = &[
        // line 4: outside box of the first annotation (dz 2.5 > 8/4), inside the second's (20/4).
        ("s1", [10.0, 20.0, 32.5], true, true, F, 20.0, "val"),
        // line 2: inside both boxes; the first annotation in file order wins.
        ("s1", [11.5, 21.9, 28.1], true, true, T, 8.0, "val"),
        // line 6: dz 1.5 > 4/4: no match, diameter 0.
        ("s2", [0.0, 0.0, 1.5], true, false, F, 0.0, "train"),
        // line 3: a negative near a nodule gets the second annotation's diameter.
        ("s1", [12.5, 20.0, 30.0], false, true, F, 20.0, "val"),
        // line 5: |d| = 2 on every axis = 8/4: inside the box though the euclidean distance is 3.46.
        ("s1", [12.0, 22.0, 32.0], false, true, T, 8.0, "val"),
        ("s2", [0.5, -0.5, 1.0], false, true, F, 4.0, "train"),
        ("s4", [1.0, 2.0, 3.0], false, false, F, 0.0, "train"),
        ("s3", [100.0, 100.0, 100.0], false, false, F, 0.0, "val"),
    ];
    assert_eq!(project(&got), expect(want));
}

#[test]
fn candidate_ids_are_the_same_for_a_candidate_under_both_rules() {
    let (a, c) = load(true);
    let fin = merge_rows(&a, &c, &opts(MergeRule::Final, 10)).expect("final");
    let dm = merge_rows(&a, &c, &opts(MergeRule::DiameterMatch, 10)).expect("dm");
    let id = |rows: &[MergedRow], xyz: [f64; 3]| {
        rows.iter()
            .find(|r| r.center_xyz == xyz)
            .map(|r| r.candidate_id)
    };
    for xyz in [[12.5, 20.0, 30.0], [1.0, 2.0, 3.0], [0.5, -0.5, 1.0]] {
        assert_eq!(id(&fin, xyz), id(&dm, xyz));
        assert!(id(&fin, xyz).is_some_and(|v| v >= 0));
    }
    assert_eq!(
        fin[0].candidate_id,
        candidate_id(true, "s1", [10.0, 20.0, 30.0], 0)
    );
    let ids: BTreeSet<i64> = fin.iter().map(|r| r.candidate_id).collect();
    assert_eq!(ids.len(), fin.len());
}

#[test]
fn require_on_disk_filters_annotations_and_candidates() {
    let (a, c) = load(true);
    let disk: BTreeSet<String> = ["s1", "s3"].iter().map(|s| s.to_string()).collect();
    let o = MergeOptions {
        rule: MergeRule::Final,
        split: SplitSpec::Stride { val_stride: 2 },
        require_on_disk: Some(&disk),
        subsets: None,
    };
    let got = merge_rows(&a, &c, &o).expect("merge");
    let want: &[Expect] = &[
        ("s1", [10.0, 20.0, 30.0], true, true, T, 8.0, "val"),
        ("s3", [-5.0, -5.0, -5.0], true, true, T, 6.0, "train"),
        ("s1", [11.0, 20.0, 30.0], true, true, F, 20.0, "val"),
        ("s3", [100.0, 100.0, 100.0], false, false, F, 0.0, "train"),
        ("s1", [12.5, 20.0, 30.0], false, false, F, 0.0, "val"),
        ("s1", [12.0, 22.0, 32.0], false, false, F, 0.0, "val"),
    ];
    assert_eq!(project(&got), expect(want));
}

#[test]
fn without_malignancy_is_malignant_is_null_and_required_check_fails() {
    let (a, c) = load(false);
    let rows = merge_rows(&a, &c, &opts(MergeRule::Final, 10)).expect("merge");
    assert!(rows.iter().all(|r| r.is_malignant.is_none()));
    let err = require_malignancy(rows.iter().map(|r| r.is_malignant)).expect_err("must refuse");
    assert_eq!(
        err.to_string(),
        "9 of 9 rows have no is_malignant value: malignancy stages need annotations_with_malignancy.csv (pass it as the annotations file)"
    );
    let (a, c) = load(true);
    let rows = merge_rows(&a, &c, &opts(MergeRule::Final, 10)).expect("merge");
    require_malignancy(rows.iter().map(|r| r.is_malignant)).expect("has labels");
    require_malignancy(a.iter().map(|r| r.is_malignant)).expect("annotations have labels");
}

#[test]
fn parquet_merge_equals_row_merge() {
    let (a, c) = load(true);
    let o = opts(MergeRule::Final, 3);
    let rows = merge_rows(&a, &c, &o).expect("rows");
    let dir = tempfile::tempdir().expect("tempdir");
    let (af, cf) = (
        dir.path().join("annotations.parquet"),
        dir.path().join("candidates_raw.parquet"),
    );
    write_rows(&a, &af).expect("af");
    write_rows(&c, &cf).expect("cf");
    assert_eq!(merge_candidates(&af, &cf, &o).expect("merge files"), rows);
    let err = merge_candidates(&cf, &af, &o).expect_err("swapped inputs");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: column \"diameter_mm\" of table annotations",
            cf.display()
        )),
        "{err}"
    );
}

#[test]
fn val_stride_zero_is_rejected() {
    let (a, c) = load(true);
    let err = merge_rows(&a, &c, &opts(MergeRule::Final, 0)).expect_err("stride 0");
    assert_eq!(
        err.to_string(),
        "invalid option val_stride = 0: must be >= 1"
    );
}

/// Deterministic pseudo-random candidates over `n_series` series (an LCG; no rand needed).
fn synthetic(n_series: usize, per_series: usize, seed: u64) -> Vec<CandidateRow> {
    let mut s = seed;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 33) as f64) / f64::from(1u32 << 31) * 300.0 - 150.0
    };
    let mut out = Vec::new();
    for k in 0..n_series {
        for _ in 0..per_series {
            let line = out.len() as i64 + 2;
            let c = [next(), next(), next()];
            out.push(CandidateRow {
                series_uid: format!("1.3.6.{k:03}"),
                center_xyz: c,
                class: 0,
                source_line: line,
            });
        }
    }
    out
}

#[test]
fn split_is_by_series_and_stable_when_unrelated_rows_change() {
    let (a, _) = load(true);
    let base = synthetic(37, 20, 7);
    let o = opts(MergeRule::Final, 10);
    let m1 = merge_rows(&a, &base, &o).expect("m1");
    let mut per_series: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &m1 {
        per_series
            .entry(&r.series_uid)
            .or_default()
            .insert(r.split.as_str());
    }
    assert!(
        per_series.values().all(|s| s.len() == 1),
        "a series is in both splits"
    );
    let val: Vec<&str> = per_series
        .iter()
        .filter(|(_, s)| s.contains("val"))
        .map(|(k, _)| *k)
        .collect();
    // 37 synthetic + s1 s2 s3 from annotations = 40 sorted series; [::10] -> 4 val series.
    assert_eq!(
        val,
        vec!["1.3.6.000", "1.3.6.010", "1.3.6.020", "1.3.6.030"]
    );

    // Drop every third row and add rows to existing series: same split, same ids for kept rows.
    let mut changed: Vec<CandidateRow> = base
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 1)
        .map(|(_, r)| r.clone())
        .collect();
    changed.extend(synthetic(37, 2, 99).into_iter().map(|mut r| {
        r.source_line += 10_000;
        r
    }));
    let m2 = merge_rows(&a, &changed, &o).expect("m2");
    let split_of = |m: &[MergedRow]| -> BTreeMap<String, Split> {
        m.iter().map(|r| (r.series_uid.clone(), r.split)).collect()
    };
    assert_eq!(split_of(&m1), split_of(&m2));
    let ids1: BTreeMap<(String, [u64; 3]), i64> = m1
        .iter()
        .map(|r| {
            (
                (r.series_uid.clone(), r.center_xyz.map(f64::to_bits)),
                r.candidate_id,
            )
        })
        .collect();
    let mut kept = 0;
    for r in &m2 {
        if let Some(id) = ids1.get(&(r.series_uid.clone(), r.center_xyz.map(f64::to_bits))) {
            assert_eq!(*id, r.candidate_id);
            kept += 1;
        }
    }
    assert_eq!(kept, 4 + 37 * 20 - (37 * 20 + 1) / 3);
}
