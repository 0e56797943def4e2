//! The book's diameter-only malignancy baseline (§14.5) through the real binaries: a malignancy
//! model's `evaluate_classifier` reports `diameter_auc`, the ROC AUC of the nodule diameter
//! alone on the nodules it scored, and it equals scikit-learn's `roc_auc_score(y, diameter)`
//! on the same nodules (read by pyarrow from the stage's predictions and the crops index);
//! the run's headline shows it beside the model's AUC.

use luna::tables::{read_rows, write_rows, CropIndexRow};

use crate::engine_support::Ws;
use crate::train_support::{pipeline, write_crops, Fixture};

const ORACLE: &str = r#"
import sys, pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score
pred = pq.read_table(sys.argv[1]).to_pydict()
index = pq.read_table(sys.argv[2]).to_pydict()
diameter = dict(zip(index["candidate_id"], index["diameter_mm"]))
y = [int(l) for l in pred["label"]]
d = [diameter[c] for c in pred["candidate_id"]]
print(repr(float(roc_auc_score(y, d))))
"#;

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
fn diameter_baseline_auc_equals_sklearn_on_the_same_nodules() {
    let ws = Ws::new();
    write_crops(
        &ws.path("fixture"),
        &Fixture {
            series: 8,
            per_series: 24,
            malignancy: true,
        },
    );
    spread_diameters(&ws.path("fixture/index.parquet"));
    ws.pipeline(
        "t",
        &pipeline(
            "  mal:\n    uses: train_classifier\n    needs: [crops]\n    with: { task: malignancy, epochs: 1, epoch_samples: 32, batch_size: 16, augment: null, device: cpu, threads: 1, loader_threads: 1 }\n\
             \x20 eval_mal:\n    uses: evaluate_classifier\n    needs: [crops, mal]\n    with: { device: cpu }\n",
        ),
    );
    let run = ws.luna(&["run", "t"]);
    run.expect_code(0);
    let dir = std::path::PathBuf::from(ws.luna(&["path", "t", "eval_mal"]).stdout.trim());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["positives"], 8, "the val nodules: {m}");
    let ours = m["diameter_auc"]
        .as_f64()
        .expect("diameter_auc of a malignancy model");
    let pred = dir.join("predictions.parquet");
    let index = ws.path("fixture/index.parquet");
    let theirs: f64 = crate::py::run_stdin(
        &["-", &pred.to_string_lossy(), &index.to_string_lossy()],
        ORACLE,
    )
    .trim()
    .parse()
    .unwrap();
    assert!(
        (ours - theirs).abs() < 1e-12,
        "luna {ours} vs sklearn {theirs}"
    );
    assert_eq!(ours, 0.625, "40 of 64 pairs, ties counting half");
    let out = format!("{}{}", run.stdout, run.stderr);
    assert!(
        out.contains("ROC AUC of the diameter alone, book's baseline (eval_mal)"),
        "{out}"
    );
}
