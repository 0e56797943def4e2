//! The book's diameter-only malignancy baseline (§14.5) through the real binaries: a malignancy
//! model's `evaluate_classifier` reports `diameter_auc`, the ROC AUC of the nodule diameter
//! alone on the nodules it scored, and it equals scikit-learn's `roc_auc_score(y, diameter)`
//! on the same nodules (read by pyarrow from the stage's predictions and the crops index);
//! the run's headline shows it beside the model's AUC. Pooled folds (`predictions: [...]`):
//! the inputs' rows scored as one set give sklearn's AUCs on the concatenated rows, and each
//! input's row is its own `metrics.json`.

use luna::tables::{read_rows, write_rows, CropIndexRow, Split};

use crate::engine_support::Ws;
use crate::train_support::{pipeline, write_crops, Fixture};

/// argv: the crops index, then predictions files (concatenated): prints the ROC AUC of the
/// model's probability and of the diameter, by scikit-learn.
const ORACLE: &str = r#"
import sys, pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score
index = pq.read_table(sys.argv[1]).to_pydict()
diameter = dict(zip(index["candidate_id"], index["diameter_mm"]))
y, p, d = [], [], []
for f in sys.argv[2:]:
    pred = pq.read_table(f).to_pydict()
    y += [int(l) for l in pred["label"]]
    p += pred["probability"]
    d += [diameter[c] for c in pred["candidate_id"]]
print(repr(float(roc_auc_score(y, p))), repr(float(roc_auc_score(y, d))))
"#;

/// sklearn's (model AUC, diameter AUC) on the concatenated `predictions` files.
fn sklearn(index: &std::path::Path, predictions: &[std::path::PathBuf]) -> (f64, f64) {
    let mut args = vec!["-".to_string(), index.to_string_lossy().into_owned()];
    args.extend(predictions.iter().map(|p| p.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = crate::py::run_stdin(&args, ORACLE);
    let v: Vec<f64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0], v[1])
}

fn metrics(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap()
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Overlapping diameters with ties (the fixture's 10 mm / 5 mm would make any AUC 1.0).
fn spread_diameters(index: &std::path::Path) {
    let mut rows: Vec<CropIndexRow> = read_rows(index).unwrap();
    for r in rows.iter_mut().filter(|r| r.is_nodule) {
        let k = r.candidate_id as f64;
        r.diameter_mm = if r.is_malignant == Some(true) {
            5.0 + (k * 7.0) % 15.0 / 2.0
        } else {
            3.5 + (k * 11.0) % 12.0 / 2.0
        };
    }
    write_rows(&rows, index).unwrap();
}

#[test]
fn diameter_baseline_and_pooled_folds_equal_sklearn_on_the_same_nodules() {
    let (ws, fixture) = (
        Ws::new(),
        Fixture {
            series: 8,
            per_series: 24,
            malignancy: true,
        },
    );
    write_crops(&ws.path("fixture"), &fixture);
    spread_diameters(&ws.path("fixture/index.parquet"));
    // two "folds" of the same crops: the val split is series 3 in one, series 7 in the other
    for (fold, val) in [("fold_a", "1.2.3.3"), ("fold_b", "1.2.3.7")] {
        copy_dir(&ws.path("fixture"), &ws.path(fold));
        let index = ws.path(&format!("{fold}/index.parquet"));
        let mut rows: Vec<CropIndexRow> = read_rows(&index).unwrap();
        for r in &mut rows {
            r.split = if r.series_uid == val {
                Split::Val
            } else {
                Split::Train
            };
        }
        write_rows(&rows, &index).unwrap();
    }
    ws.pipeline(
        "t",
        &pipeline(
            "  mal:\n    uses: train_classifier\n    needs: [crops]\n    with: { task: malignancy, epochs: 1, epoch_samples: 32, batch_size: 16, augment: null, device: cpu, threads: 1, loader_threads: 1 }\n\
             \x20 eval_mal:\n    uses: evaluate_classifier\n    needs: [crops, mal]\n    with: { device: cpu }\n\
             \x20 crops_a:\n    uses: command\n    with: { run: 'cp -r fold_a/. \"$LUNA_OUT\"/', inputs: [fold_a], provides: [crops] }\n\
             \x20 crops_b:\n    uses: command\n    with: { run: 'cp -r fold_b/. \"$LUNA_OUT\"/', inputs: [fold_b], provides: [crops] }\n\
             \x20 eval_a:\n    uses: evaluate_classifier\n    needs: [crops_a, mal]\n    with: { device: cpu }\n\
             \x20 eval_b:\n    uses: evaluate_classifier\n    needs: [crops_b, mal]\n    with: { device: cpu }\n\
             \x20 pooled:\n    uses: evaluate_classifier\n    needs: [crops_a, crops_b, eval_a, eval_b]\n    with: { predictions: [eval_a, eval_b], crops: [crops_a, crops_b] }\n",
        ),
    );
    let run = ws.luna(&["run", "t"]);
    run.expect_code(0);
    let dir = |s: &str| std::path::PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());
    let index = ws.path("fixture/index.parquet");
    let preds = |s: &str| dir(s).join("predictions.parquet");
    let m = metrics(&dir("eval_mal"));
    assert_eq!(m["positives"], 8, "the val nodules: {m}");
    let ours = m["diameter_auc"]
        .as_f64()
        .expect("diameter_auc of a malignancy model");
    let (_, theirs) = sklearn(&index, &[preds("eval_mal")]);
    assert!(
        (ours - theirs).abs() < 1e-12,
        "luna {ours} vs sklearn {theirs}"
    );
    assert_eq!(ours, 0.625, "40 of 64 pairs, ties counting half");
    // Pooled: one set of rows, sklearn's numbers on their concatenation, per-input rows.
    let pooled = metrics(&dir("pooled"));
    let (auc, diam) = sklearn(&index, &[preds("eval_a"), preds("eval_b")]);
    let close = |a: &serde_json::Value, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-12;
    assert!(
        close(&pooled["roc_auc"], auc),
        "{} vs sklearn {auc}",
        pooled["roc_auc"]
    );
    assert!(
        close(&pooled["diameter_auc"], diam),
        "{} vs {diam}",
        pooled["diameter_auc"]
    );
    assert_eq!(
        pooled["samples"], 16,
        "the 8 nodules of each fold's val series"
    );
    let inputs = pooled["inputs"].as_array().unwrap();
    assert_eq!(inputs.len(), 2);
    for (row, s) in inputs.iter().zip(["eval_a", "eval_b"]) {
        assert_eq!(
            (&row["stage"], &row["metrics"]),
            (&s.into(), &metrics(&dir(s)))
        );
    }
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("ROC AUC of the diameter alone, book's baseline (eval_mal)")
            && out.contains("F1 / ROC AUC (pooled, pooled over 2 inputs)"),
        "{out}"
    );
}

#[test]
fn pooling_with_a_model_or_unpaired_crops_is_a_plan_time_error() {
    let stages = "  e0:\n    uses: command\n    with: { run: 'true', provides: [predictions] }\n\
                  \x20 e1:\n    uses: command\n    with: { run: 'true', provides: [predictions] }\n";
    for (with, needle, message) in [
        (
            "predictions: [e0, e1], model: e0",
            "e0 }",
            "`predictions` pools evaluations that already ran their models: leave `model` out",
        ),
        (
            "predictions: [e0, e1], crops: [crops, crops, crops]",
            "[crops",
            "3 crops stages for 2 inputs",
        ),
    ] {
        let ws = Ws::new();
        let yaml = pipeline(&format!(
            "{stages}  pooled:\n    uses: evaluate_classifier\n    needs: [crops, e0, e1]\n    with: {{ {with} }}\n"
        ));
        ws.pipeline("t", &yaml);
        let out = ws.luna(&["status", "t"]);
        out.expect_code(2);
        let (line, text) = (yaml.lines().count(), yaml.lines().last().unwrap());
        let pos = format!("t.yaml:{line}:{}", text.find(needle).unwrap() + 1);
        assert!(
            out.stderr.contains(&pos) && out.stderr.contains(message),
            "{pos} {message:?}:\n{}",
            out.stderr
        );
    }
}
