//! `evaluate_froc` through the real binary, on a workspace whose `command` stages provide a
//! dataset (annotations + excluded), a candidates table and a predictions table: the scans are
//! the validation series, marks sit at their candidates' world centres, the stage's files equal
//! what `luna froc` computes from the stage's own submission, a re-run is cached, a
//! prediction whose candidate is missing is an error naming both stages, and a NaN
//! probability is an error naming the file, row and column.

use luna::tables::{write_rows, MergedRow, PredictionRow, Split};

use crate::engine_support::{st, Ws};
use crate::froc_support::Case;

/// (series, split, nodules: (xyz, d), negatives: xyz).
type Series = (&'static str, Split, Vec<([f64; 3], f64)>, Vec<[f64; 3]>);

fn series() -> Vec<Series> {
    vec![
        (
            "T1",
            Split::Train,
            vec![([0.0, 0.0, 0.0], 8.0)],
            vec![[30.0, 0.0, 0.0]],
        ),
        (
            "V1",
            Split::Val,
            vec![([0.0, 0.0, 0.0], 8.0), ([20.0, 0.0, 0.0], 6.0)],
            vec![[50.0, 0.0, 0.0], [-40.0, 5.0, 5.0]],
        ),
        (
            "V2",
            Split::Val,
            vec![([10.0, 10.0, 10.0], 10.0)],
            vec![[0.0, 0.0, 0.0], [70.0, 0.0, 0.0]],
        ),
        ("V3", Split::Val, vec![], vec![[1.0, 2.0, 3.0]]),
    ]
}

fn write_fixture(ws: &Ws, drop_candidate: bool) {
    let mut ann = Vec::new();
    let mut cands = Vec::new();
    let mut preds = Vec::new();
    let mut id = 100;
    for (uid, split, nodules, negatives) in series() {
        for (xyz, d) in &nodules {
            ann.push((uid, *xyz, *d));
        }
        let rows = nodules
            .iter()
            .map(|(xyz, d)| (*xyz, *d, true))
            .chain(negatives.iter().map(|xyz| (*xyz, 0.0, false)));
        for (xyz, d, is_nodule) in rows {
            id += 1;
            cands.push(MergedRow {
                candidate_id: id,
                series_uid: uid.into(),
                center_xyz: xyz,
                is_nodule,
                has_annotation: is_nodule,
                is_malignant: Some(false),
                diameter_mm: d,
                split,
                subset: None,
            });
            if split == Split::Val {
                preds.push(PredictionRow {
                    candidate_id: id,
                    series_uid: uid.into(),
                    label: is_nodule,
                    probability: if is_nodule {
                        0.9 - 0.1 * (id % 3) as f64
                    } else {
                        0.05 * (id % 7) as f64
                    },
                });
            }
        }
    }
    if drop_candidate {
        cands.retain(|c| c.series_uid != "V3");
    }
    // The synth dataset's layout: annotations.csv and annotations_excluded.csv side by side.
    let case = Case {
        scans: vec!["T1", "V1", "V2", "V3"],
        included: ann,
        excluded: vec![("V2", [70.0, 0.0, 1.0], -1.0)],
        marks: vec![],
    };
    case.write(&ws.path("fixture/data"));
    std::fs::remove_file(ws.path("fixture/data/submission.csv")).unwrap();
    std::fs::remove_file(ws.path("fixture/data/seriesuids.csv")).unwrap();
    write_rows(&cands, &ws.path("fixture/candidates.parquet")).unwrap();
    write_rows(&preds, &ws.path("fixture/predictions.parquet")).unwrap();
}

const PIPELINE: &str = r#"pipeline: t
stages:
  data:
    uses: command
    with: { run: 'cp fixture/data/* "$LUNA_OUT"/', inputs: [fixture/data], provides: [dataset] }
  candidates:
    uses: command
    with: { run: 'cp fixture/candidates.parquet "$LUNA_OUT"/', inputs: [fixture/candidates.parquet], provides: [candidates] }
  evaluate:
    uses: command
    with: { run: 'cp fixture/predictions.parquet "$LUNA_OUT"/', inputs: [fixture/predictions.parquet], provides: [predictions] }
  froc:
    uses: evaluate_froc
    needs: [data, candidates, evaluate]
    with: { bootstrap: 50, seed: 2 }
"#;

#[test]
fn evaluate_froc_scores_the_validation_series_like_luna_froc() {
    let ws = Ws::new();
    write_fixture(&ws, false);
    ws.pipeline("t", PIPELINE);
    ws.luna(&["run", "t"]).expect_code(0);
    let dir = std::path::PathBuf::from(ws.luna(&["path", "t", "froc"]).stdout.trim());
    for f in luna::froc::OUTPUT_FILES {
        assert!(dir.join(f).is_file(), "evaluate_froc artifact lacks {f}");
    }
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    assert_eq!(
        read("seriesuids.csv"),
        "V1\nV2\nV3\n",
        "the val series, sorted"
    );
    let sub = read("submission.csv");
    assert_eq!(sub.lines().count(), 1 + 8, "one mark per val prediction");
    assert!(
        sub.contains("\nV2,70.0,0.0,0.0,"),
        "marks at the candidates' world centres"
    );
    let doc: serde_json::Value = serde_json::from_str(&read("froc.json")).unwrap();
    let c = &doc["counts"];
    assert_eq!(
        (c["scans"].as_u64(), c["nodules"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(
        (c["tp"].as_u64(), c["ignored_on_excluded"].as_u64()),
        (Some(3), Some(1))
    );
    // The same numbers from `luna froc` on the stage's own submission and scan list.
    ws.file("sub.csv", sub);
    ws.file("uids.csv", read("seriesuids.csv"));
    let out = ws.luna(&[
        "froc",
        "sub.csv",
        "--annotations",
        "fixture/data/annotations.csv",
        "--excluded",
        "fixture/data/annotations_excluded.csv",
        "--seriesuids",
        "uids.csv",
        "--out",
        "cli",
        "--bootstrap",
        "50",
        "--seed",
        "2",
    ]);
    out.expect_code(0);
    assert_eq!(ws.read("cli/froc.json"), read("froc.json"));
    assert_eq!(ws.read("cli/froc.csv"), read("froc.csv"));
    let logs = crate::train_support::stage_logs(ws.root(), "froc");
    assert!(logs.contains("CPM "), "{logs}");
    // Unchanged inputs: cached.
    ws.luna(&["run", "t"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[
            ("data", "cached"),
            ("candidates", "cached"),
            ("evaluate", "cached"),
            ("froc", "cached")
        ])
    );
}

#[test]
fn evaluate_froc_refuses_predictions_of_other_candidates() {
    let ws = Ws::new();
    write_fixture(&ws, true);
    ws.pipeline("t", PIPELINE);
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("(series V3) is not in `candidates`")
            && out
                .stderr
                .contains("bind `candidates:` to the merge_candidates stage"),
        "{}",
        out.stderr
    );
}

#[test]
fn evaluate_froc_refuses_a_nan_prediction() {
    let ws = Ws::new();
    write_fixture(&ws, false);
    crate::tables_support::parquet_set(
        &ws.path("fixture/predictions.parquet"),
        "probability",
        3,
        "nan",
    );
    ws.pipeline("t", PIPELINE);
    let out = ws.luna(&["run", "t"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("predictions.parquet: row 3 (0-based) of table predictions: column probability is NaN, not a probability in [0, 1]"),
        "{}",
        out.stderr
    );
    assert!(ws.manifests().iter().all(|m| m["stage"] != "froc"));
}
