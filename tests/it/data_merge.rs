//! Merge rules through `luna run` (issue 3, point 4), on hand-made CSVs (no CTs,
//! `require_on_disk: false`): the final book rule and the chapter-10 `diameter_match` rule give
//! the counts worked out by hand below, and the split is by series: sorted uids, every
//! `val_stride`-th is validation, no series in both splits. The book's rule is positional, so an
//! extra series that sorts *between* existing ones moves later series between splits (asserted
//! exactly), while one that sorts after all of them moves none.

use std::collections::{BTreeMap, BTreeSet};

use luna::tables::{read_rows, MergedRow};

use crate::data_support::{data_artifact, data_json};
use crate::engine_support::Ws;

// Series A=1.1, B=1.2, C=1.3, D=1.4 (sorted in this order).
const ANNOTATIONS: &str = "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool
1.1,0,0,0,8,True
1.1,50,50,50,4,False
1.2,10,10,10,12,True
1.3,0,0,0,6,False
";

// Diameter rule (box of half-width d/4 per axis):
//   1.1 (0.5,0.5,0.5) c1 → ann (0,0,0) d8 (r 2): 8      1.1 (1.9,-1.9,0) c0 → 8 (negative near a nodule)
//   1.1 (2.5,0,0)    c0 → 2.5 > 2: 0                   1.1 (51,50,50) c1 → ann d4 (r 1): 4
//   1.2 (10,10,13)   c1 → ann d12 (r 3): 12            1.2 (20,20,20) c0 → 0
//   1.3 (1.6,0,0)    c1 → r 1.5 < 1.6: 0 (a positive without diameter)
//   1.4 (5,5,5) c0, (6,6,6) c0 → 0 (no annotations)
const CANDIDATES: &str = "seriesuid,coordX,coordY,coordZ,class
1.1,0.5,0.5,0.5,1
1.1,1.9,-1.9,0,0
1.1,2.5,0,0,0
1.1,51,50,50,1
1.2,10,10,13,1
1.2,20,20,20,0
1.3,1.6,0,0,1
1.4,5,5,5,0
1.4,6,6,6,0
";

fn pipeline(name: &str, rule: &str, stride: usize) -> String {
    format!(
        "pipeline: {name}\nstages:\n  \
         annotations: {{ uses: load_annotations, with: {{ annotations: ann.csv, candidates: cand.csv }} }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ rule: {rule}, val_stride: {stride}, require_on_disk: false }} }}\n"
    )
}

/// Runs pipeline `name` and returns (merge_report.json, rows of candidates.parquet).
fn run(ws: &Ws, name: &str) -> (serde_json::Value, Vec<MergedRow>) {
    ws.luna(&["run", name]).expect_code(0);
    let dir = data_artifact(ws, name, "candidates");
    (
        data_json(&dir.join("merge_report.json")),
        read_rows::<MergedRow>(&dir.join("candidates.parquet")).expect("read candidates.parquet"),
    )
}

/// series → split, asserting each series has exactly one split.
fn splits(rows: &[MergedRow]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for r in rows {
        out.entry(r.series_uid.clone())
            .or_default()
            .insert(r.split.as_str());
    }
    out.into_iter()
        .map(|(s, v)| {
            assert_eq!(v.len(), 1, "series {s} is in both splits: {v:?}");
            (s, v.into_iter().next().expect("one split").to_string())
        })
        .collect()
}

fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn data_merge_rules_give_known_counts() {
    let ws = Ws::new();
    ws.file("ann.csv", ANNOTATIONS).file("cand.csv", CANDIDATES);
    ws.pipeline("final", &pipeline("final", "final", 2));
    ws.pipeline("dm", &pipeline("dm", "diameter_match", 2));

    let (rep, rows) = run(&ws, "final");
    assert_eq!(
        rep,
        serde_json::json!({"rows": 9, "nodules": 4, "malignant": 2, "negatives": 5,
        "series": 4, "val_series": 2, "train_series": 2, "test_series": 0})
    );
    // Nodules first, malignant before benign, then by diameter descending (book sort).
    let head: Vec<(f64, Option<bool>)> = rows
        .iter()
        .take(4)
        .map(|r| (r.diameter_mm, r.is_malignant))
        .collect();
    assert_eq!(
        head,
        vec![
            (12.0, Some(true)),
            (8.0, Some(true)),
            (6.0, Some(false)),
            (4.0, Some(false))
        ]
    );
    assert!(rows[4..]
        .iter()
        .all(|r| !r.is_nodule && r.diameter_mm == 0.0 && r.is_malignant == Some(false)));
    assert_eq!(
        splits(&rows),
        want(&[
            ("1.1", "val"),
            ("1.2", "train"),
            ("1.3", "val"),
            ("1.4", "train")
        ])
    );

    let (rep, rows) = run(&ws, "dm");
    assert_eq!(rep["rows"], 9);
    assert_eq!(rep["nodules"], 4);
    // Malignancy follows the matched annotation, also for the class-0 row inside the box.
    assert_eq!(rep["malignant"], 3);
    let diam: BTreeMap<(String, String), (f64, bool, bool)> = rows
        .iter()
        .map(|r| {
            (
                (r.series_uid.clone(), format!("{:?}", r.center_xyz)),
                (r.diameter_mm, r.is_nodule, r.has_annotation),
            )
        })
        .collect();
    let d = |s: &str, c: [f64; 3]| diam[&(s.to_string(), format!("{c:?}"))];
    assert_eq!(d("1.1", [0.5, 0.5, 0.5]), (8.0, true, true));
    assert_eq!(d("1.1", [1.9, -1.9, 0.0]), (8.0, false, true));
    assert_eq!(d("1.1", [2.5, 0.0, 0.0]), (0.0, false, false));
    assert_eq!(d("1.1", [51.0, 50.0, 50.0]), (4.0, true, true));
    assert_eq!(d("1.2", [10.0, 10.0, 13.0]), (12.0, true, true));
    assert_eq!(d("1.2", [20.0, 20.0, 20.0]), (0.0, false, false));
    assert_eq!(d("1.3", [1.6, 0.0, 0.0]), (0.0, true, false));
    assert_eq!(d("1.4", [5.0, 5.0, 5.0]), (0.0, false, false));
    assert_eq!(
        splits(&rows),
        want(&[
            ("1.1", "val"),
            ("1.2", "train"),
            ("1.3", "val"),
            ("1.4", "train")
        ])
    );
}

#[test]
fn data_split_is_by_sorted_series_position() {
    let ws = Ws::new();
    ws.file("ann.csv", ANNOTATIONS).file("cand.csv", CANDIDATES);
    ws.pipeline("final", &pipeline("final", "final", 2));
    let (_, rows) = run(&ws, "final");
    let base = splits(&rows);
    assert_eq!(
        base,
        want(&[
            ("1.1", "val"),
            ("1.2", "train"),
            ("1.3", "val"),
            ("1.4", "train")
        ])
    );
    let ids: BTreeSet<i64> = rows.iter().map(|r| r.candidate_id).collect();

    // An unrelated series sorting last: existing series keep their split, ids are unchanged.
    ws.file("cand.csv", format!("{CANDIDATES}1.9,1,2,3,0\n"));
    let (rep, rows) = run(&ws, "final");
    assert_eq!(rep["series"], 5);
    let mut w = base.clone();
    w.insert("1.9".into(), "val".into());
    assert_eq!(splits(&rows), w);
    let ids2: BTreeSet<i64> = rows.iter().map(|r| r.candidate_id).collect();
    assert!(
        ids.is_subset(&ids2),
        "candidate ids must not depend on unrelated rows"
    );

    // One sorting between 1.1 and 1.2 shifts every later series by one position (book rule).
    ws.file("cand.csv", format!("{CANDIDATES}1.15,1,2,3,0\n"));
    let (_, rows) = run(&ws, "final");
    assert_eq!(
        splits(&rows),
        want(&[
            ("1.1", "val"),
            ("1.15", "train"),
            ("1.2", "val"),
            ("1.3", "train"),
            ("1.4", "val")
        ])
    );
}
