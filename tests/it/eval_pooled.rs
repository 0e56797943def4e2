//! Pooled evaluation (the official 10-fold protocol) through the real binary: `evaluate_froc`
//! over a list of `predictions` (one per fold, each with its own `merge_candidates`-like table)
//! scores them as ONE submission — its files equal what `luna froc` computes from the
//! concatenated per-fold `submission.csv` and `seriesuids.csv` of single-input stages — and its
//! per-input rows equal those single-input stages' `froc.json`. List bindings that cannot be
//! bound (an empty list, a stage of the wrong artifact type, a repeat, unpaired candidates)
//! are plan-time errors at their line:column; folds sharing a series fail the run.

use luna::tables::{write_rows, PredictionRow, Split};
use serde_json::Value;

use crate::engine_support::Ws;
use crate::froc_support::{Case, Row};

/// Folds, and series per fold.
const FOLDS: usize = 3;
const PER_FOLD: usize = 2;

fn uid(s: usize) -> &'static str {
    ["S0", "S1", "S2", "S3", "S4", "S5"][s]
}

/// A nodule (centre, diameter); a candidate (centre, diameter, is a nodule).
type Nodule = ([f64; 3], f64);
type Candidate = ([f64; 3], f64, bool);

/// Series `s`: its nodules (centre, diameter) and where its candidates sit: every nodule gets
/// a candidate, the second one 0.6 × d off centre (a hit for the book's 0.7 × d matcher, a
/// miss for LUNA16's d/2), plus three non-nodules.
fn series(s: usize) -> (Vec<Nodule>, Vec<Candidate>) {
    let x = 100.0 * s as f64;
    let mut nodules = vec![([x, 0.0, 0.0], 6.0 + s as f64)];
    if s.is_multiple_of(2) {
        nodules.push(([x, 40.0, 0.0], 8.0));
    }
    let mut cands: Vec<Candidate> = nodules
        .iter()
        .enumerate()
        .map(|(k, &([cx, cy, cz], d))| ([cx + 0.6 * d * k as f64, cy, cz], d, true))
        .collect();
    cands.extend((0..3).map(|j| ([x, -50.0 - 10.0 * j as f64, 20.0], 0.0, false)));
    (nodules, cands)
}

/// Writes the dataset (annotations + excluded) and, per fold, a candidate table whose fold
/// series are `val` (the rest `train`) and the predictions of its fold's candidates.
fn write_fixture(ws: &Ws, folds_of: impl Fn(usize) -> Vec<usize>) {
    let mut ann: Vec<Row> = Vec::new();
    for s in 0..FOLDS * PER_FOLD {
        ann.extend(series(s).0.iter().map(|(xyz, d)| (uid(s), *xyz, *d)));
    }
    let case = Case {
        scans: (0..FOLDS * PER_FOLD).map(uid).collect(),
        included: ann,
        excluded: vec![("S1", [100.0, -60.0, 20.0], -1.0)],
        marks: vec![],
    };
    case.write(&ws.path("fixture/data"));
    for f in ["submission.csv", "seriesuids.csv"] {
        std::fs::remove_file(ws.path(&format!("fixture/data/{f}"))).unwrap();
    }
    for fold in 0..FOLDS {
        let mine = folds_of(fold);
        let (mut cands, mut preds) = (Vec::new(), Vec::new());
        let mut id = 0;
        for s in 0..FOLDS * PER_FOLD {
            for (xyz, d, is_nodule) in series(s).1 {
                id += 1;
                let split = if mine.contains(&s) {
                    Split::Val
                } else {
                    Split::Train
                };
                cands.push(crate::froc_support::merged_row(
                    id,
                    uid(s),
                    xyz,
                    d,
                    is_nodule,
                    split,
                ));
                if split == Split::Val {
                    let p = (id * 37 % 100) as f64 / 100.0;
                    preds.push(PredictionRow {
                        candidate_id: id,
                        series_uid: uid(s).into(),
                        label: is_nodule,
                        probability: if is_nodule { 0.5 + p / 2.0 } else { p * 0.8 },
                    });
                }
            }
        }
        write_rows(&cands, &ws.path(&format!("fixture/cand_{fold}.parquet"))).unwrap();
        write_rows(&preds, &ws.path(&format!("fixture/eval_{fold}.parquet"))).unwrap();
    }
}

/// Fold `k` holds series 2k and 2k+1.
fn disjoint(fold: usize) -> Vec<usize> {
    (fold * PER_FOLD..(fold + 1) * PER_FOLD).collect()
}

/// The pipeline: the dataset, per fold a candidates and a predictions stage and a
/// single-input `froc_k`, and `froc` with `extra` as its `with:` (pooling).
fn pipeline(extra: &str) -> String {
    let mut y = String::from(
        "pipeline: t\nstages:\n  data:\n    uses: command\n    with: { run: 'cp fixture/data/* \"$LUNA_OUT\"/', inputs: [fixture/data], provides: [dataset] }\n",
    );
    let mut all = vec!["data".to_string()];
    for k in 0..FOLDS {
        for (name, provides) in [("cand", "candidates"), ("eval", "predictions")] {
            y.push_str(&format!(
                "  {name}_{k}:\n    uses: command\n    with: {{ run: 'cp fixture/{name}_{k}.parquet \"$LUNA_OUT\"/{provides}.parquet', inputs: [fixture/{name}_{k}.parquet], provides: [{provides}] }}\n"
            ));
            all.push(format!("{name}_{k}"));
        }
        y.push_str(&format!(
            "  froc_{k}:\n    uses: evaluate_froc\n    needs: [data, cand_{k}, eval_{k}]\n    with: {{ bootstrap: 40, seed: 3 }}\n"
        ));
    }
    y.push_str(&format!(
        "  froc:\n    uses: evaluate_froc\n    needs: [{}]\n    with: {{ {extra}, bootstrap: 40, seed: 3 }}\n",
        all.join(", ")
    ));
    y
}

const POOLED: &str = "predictions: [eval_0, eval_1, eval_2], candidates: [cand_0, cand_1, cand_2]";

fn json(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn evaluate_froc_pools_folds_like_luna_froc_on_the_concatenated_submissions() {
    let ws = Ws::new();
    write_fixture(&ws, disjoint);
    ws.pipeline("t", &pipeline(POOLED));
    let run = ws.luna(&["run", "t"]);
    run.expect_code(0);
    let dir = |s: &str| std::path::PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());
    let read = |s: &str, f: &str| std::fs::read_to_string(dir(s).join(f)).unwrap();
    // The folds' own submissions and scan lists, concatenated in list order.
    let (mut sub, mut uids) = (String::new(), String::new());
    for k in 0..FOLDS {
        let one = read(&format!("froc_{k}"), "submission.csv");
        let body = if k == 0 {
            &one[..]
        } else {
            one.split_once('\n').unwrap().1
        };
        sub.push_str(body);
        uids.push_str(&read(&format!("froc_{k}"), "seriesuids.csv"));
    }
    assert_eq!(
        read("froc", "submission.csv"),
        sub,
        "the pooled marks, in fold order"
    );
    assert_eq!(
        read("froc", "seriesuids.csv"),
        uids,
        "the union of the folds' scans"
    );
    crate::froc_support::luna_froc_cli(&ws, &sub, &uids, "40", "3");
    let mut pooled = json(&dir("froc").join("froc.json"));
    let inputs = pooled["inputs"].take();
    pooled["inputs"] = Value::Array(Vec::new());
    assert_eq!(
        pooled,
        json(&ws.path("cli/froc.json")),
        "pooled CPM = luna froc's"
    );
    assert_eq!(read("froc", "froc.csv"), ws.read("cli/froc.csv"));
    assert_eq!(pooled["counts"]["scans"], FOLDS * PER_FOLD);
    // Per-input rows: each fold alone, equal to its single-input stage's froc.json.
    let inputs = inputs.as_array().unwrap();
    assert_eq!(inputs.len(), FOLDS);
    for (k, row) in inputs.iter().enumerate() {
        assert_eq!(row["stage"], format!("eval_{k}"));
        assert_eq!(
            row["froc"],
            json(&dir(&format!("froc_{k}")).join("froc.json")),
            "fold {k}"
        );
        assert_eq!(row["froc"]["counts"]["scans"], PER_FOLD);
    }
    // Both recalls: the off-centre candidates hit only under the book's 0.7 × d matcher.
    let (luna16, book) = (&pooled["candidate_recall"], &pooled["recall_book_matcher"]);
    assert_eq!(luna16.as_f64(), Some(6.0 / 9.0), "{pooled}");
    assert_eq!(book.as_f64(), Some(1.0), "{pooled}");
    assert!(
        pooled["bootstrap"]["cpm"]["low"].is_f64(),
        "a CI for the pooled CPM"
    );
    assert!(inputs
        .iter()
        .all(|r| r["froc"]["bootstrap"]["cpm"]["high"].is_f64()));
    // Console: the headline says it is pooled; the stage log has the per-fold lines.
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(out.contains("(froc, pooled over 3 inputs)"), "{out}");
    assert!(
        out.contains("sensitivity at 1/8 … 8 FPs/scan (froc)"),
        "{out}"
    );
    assert!(
        out.contains("CPM of `eval_2` alone (froc)"),
        "one headline per fold: {out}"
    );
    assert!(
        out.contains("LUNA16 radius d/2 / book's 0.7 × d (froc)"),
        "{out}"
    );
    let log = crate::train_support::stage_logs(ws.root(), "froc");
    assert!(
        log.contains("input `eval_2` alone: CPM ") && log.contains("pooled over 3 inputs:"),
        "{log}"
    );
    // The HTML report: one row per fold and the pooled row.
    let report = ws.luna(&["report"]);
    report.expect_code(0);
    let html = std::fs::read_to_string(report.stdout.trim()).unwrap();
    assert!(
        html.contains("<td>eval_1</td>") && html.contains("<b>pooled</b>"),
        "per-fold rows"
    );
    assert!(html.contains("recall, book"), "both recalls in the report");
    // Keys: every member's key in order (a reordered list re-runs); a list of one keys like
    // the stage bound by type.
    let reordered = "predictions: [eval_1, eval_0, eval_2], candidates: [cand_1, cand_0, cand_2]";
    let yaml = pipeline(reordered).replace(
        "needs: [data, cand_0, eval_0]\n    with: {",
        "needs: [data, cand_0, eval_0]\n    with: { predictions: [eval_0], candidates: [cand_0],",
    );
    assert!(
        yaml.contains("predictions: [eval_0],"),
        "froc_0 names a list of one"
    );
    ws.pipeline("t", &yaml);
    let status = ws.luna(&["status", "t", "--json"]);
    let states: Vec<(String, String)> = serde_json::from_str::<Value>(&status.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().into(),
                s["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (stage, state) in &states {
        let stale = stage == "froc";
        assert_eq!(state != "fresh", stale, "{stage}: {state} ({states:?})");
    }
}

#[test]
fn pooled_folds_sharing_a_series_fail_naming_both() {
    let ws = Ws::new();
    // fold 1 also scores S0, which fold 0 scores
    write_fixture(&ws, |k| {
        let mut v = disjoint(k);
        if k == 1 {
            v.push(0);
        }
        v
    });
    ws.pipeline("t", &pipeline(POOLED));
    let out = ws.luna(&["run", "t", "--until", "froc"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("series S0 is scored by both `eval_0` and `eval_1`: pooled inputs must cover disjoint scans"),
        "{}",
        out.stderr
    );
}

/// `luna status t` on the pipeline with `with` for `froc`: exit 2, the stderr.
fn plan_error(with: &str) -> (String, String) {
    let ws = Ws::new();
    let yaml = pipeline(with);
    ws.pipeline("t", &yaml);
    let out = ws.luna(&["status", "t"]);
    out.expect_code(2);
    (yaml, out.stderr)
}

/// `t.yaml:LINE:COL` of the first `needle` on the `froc:` stage's `with:` line.
fn at(yaml: &str, needle: &str) -> String {
    let (n, line) = yaml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("with: {") && l.contains(needle))
        .last()
        .unwrap();
    format!("t.yaml:{}:{}", n + 1, line.find(needle).unwrap() + 1)
}

#[test]
fn list_bindings_that_cannot_bind_are_plan_time_errors_at_their_position() {
    let cases = [
        ("predictions: []", "[]", "an empty list names no stage"),
        (
            "predictions: [eval_0, data, eval_2], candidates: [cand_0, cand_1, cand_2]",
            "data,",
            "`predictions: data` names a `command` stage, which provides `dataset`, not a `predictions`",
        ),
        (
            "predictions: [eval_0, eval_1, eval_0], candidates: cand_0",
            "eval_0]",
            "`predictions` names `eval_0` twice",
        ),
        (
            "predictions: [eval_0, eval_1, eval_2], candidates: [cand_0, cand_1]",
            "[cand_0",
            "2 candidate stages for 3 predictions",
        ),
        (
            "predictions: [eval_0, eval_9]",
            "eval_9",
            "`predictions: eval_9` names no stage of this pipeline",
        ),
        ("dataset: [data, data]", "[data", "expected a string"),
    ];
    for (with, needle, message) in cases {
        let (yaml, err) = plan_error(with);
        let pos = at(&yaml, needle);
        assert!(
            err.contains(&pos) && err.contains(message),
            "{with}: expected {pos} and {message:?} in:\n{err}"
        );
    }
}
