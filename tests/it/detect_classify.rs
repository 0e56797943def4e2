//! `classify_candidates`: the clusters' crops scored by the classifiers equal
//! `evaluate_classifier`'s predictions on the same centres (same crop rule, same model).

use std::collections::HashMap;
use std::path::PathBuf;

use luna::tables::{read_rows, DetectionRow, DiagnosisRow, MergedRow};

use crate::engine_support::Ws;

#[test]
fn classify_candidates_equals_evaluate_classifier_on_the_same_centres() {
    let ws = Ws::new();
    let fast = "batch_size: 16, augment: null, optimizer: { kind: adam, lr: 0.001 }, device: cpu, threads: 1, loader_threads: 1";
    ws.pipeline(
        "d",
        &format!(
            "pipeline: d\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 5 }}\n\
             \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
             \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: {{ val_stride: 2 }}\n\
             \x20 crops:\n    uses: build_crops\n    needs: [candidates, data]\n\
             \x20 nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 64, {fast} }}\n\
             \x20 mal:\n    uses: train_classifier\n    needs: [crops, nodule]\n    with: {{ task: malignancy, finetune_from: nodule, epochs: 1, epoch_samples: 32, {fast} }}\n\
             \x20 eval:\n    uses: evaluate_classifier\n    needs: [crops, nodule]\n    with: {{ split: all, device: cpu }}\n\
             \x20 clusters:\n    uses: command\n    needs: [candidates]\n    with: {{ run: '\"$LUNA_PYTHON\" {repo}/tests/oracle/clusters_from_candidates.py \"$LUNA_IN_CANDIDATES/candidates.parquet\" \"$LUNA_OUT\"', provides: [clusters] }}\n\
             \x20 detections:\n    uses: classify_candidates\n    needs: [clusters, nodule, mal, data]\n    with: {{ model: nodule, malignancy_model: mal, device: cpu }}\n\
             \x20 diagnosis:\n    uses: diagnose\n    needs: [detections, candidates]\n\
             \x20 direct:\n    uses: classify_candidates\n    needs: [candidates, nodule, mal, data]\n    with: {{ model: nodule, malignancy_model: mal, device: cpu }}\n",
            repo = crate::REPO
        ),
    );
    let py = crate::py::python();
    let out = ws.luna_env(&["run", "d"], &[("LUNA_PYTHON", py.to_str().unwrap())]);
    if out.code != 0 {
        panic!(
            "{}\n{}",
            out.stderr,
            crate::train_support::stage_logs(ws.root(), "detections")
        );
    }
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "d", s]).stdout.trim());
    let det = read_rows::<DetectionRow>(&dir("detections").join("detections.parquet")).unwrap();
    assert!(det.iter().all(|d| d.prob_malignant.is_some()));
    // The series searched are passed on from the clusters artifact.
    let searched = |s: &str| std::fs::read_to_string(dir(s).join("seriesuids.csv")).unwrap();
    assert_eq!(searched("detections"), searched("clusters"));
    // candidate_id -> xyz, and evaluate's probability per candidate
    let rows = read_rows::<MergedRow>(&dir("candidates").join("candidates.parquet")).unwrap();
    let xyz: HashMap<i64, [f64; 3]> = rows
        .iter()
        .map(|r| (r.candidate_id, r.center_xyz))
        .collect();
    let pred = crate::train_support::predictions(&dir("eval"));
    let key = |p: [f64; 3]| format!("{:.6},{:.6},{:.6}", p[0], p[1], p[2]);
    let by_xyz: HashMap<String, f64> = pred.iter().map(|(id, &p)| (key(xyz[id]), p)).collect();
    assert_eq!(det.len(), pred.len(), "one detection per candidate");
    let mut worst = 0f64;
    for d in &det {
        let e = by_xyz[&key(d.center_xyz)];
        worst = worst.max((d.prob_nodule - e).abs());
    }
    println!("classify_candidates vs evaluate_classifier: max |diff| {worst:e}");
    assert!(worst <= 1e-5, "probabilities differ by {worst}");
    // the candidate table bound directly (no clusters) gives the same detections
    let direct = read_rows::<DetectionRow>(&dir("direct").join("detections.parquet")).unwrap();
    assert_eq!(direct.len(), det.len());
    let by_key: HashMap<String, (f64, Option<f64>)> = det
        .iter()
        .map(|d| (key(d.center_xyz), (d.prob_nodule, d.prob_malignant)))
        .collect();
    for d in &direct {
        assert_eq!(
            by_key[&key(d.center_xyz)],
            (d.prob_nodule, d.prob_malignant)
        );
    }

    // diagnose: one verdict per series; the per-patient AUC equals a hand computation
    // (Mann-Whitney over the rows, ties 1/2); the report has the book's table.
    let dg = read_rows::<DiagnosisRow>(&dir("diagnosis").join("diagnosis.parquet")).unwrap();
    let series: std::collections::BTreeSet<&str> =
        det.iter().map(|d| d.series_uid.as_str()).collect();
    assert_eq!(dg.len(), series.len());
    let score: Vec<f64> = dg.iter().map(|r| r.patient_score).collect();
    let truth: Vec<Option<bool>> = dg.iter().map(|r| r.truth_malignant).collect();
    let (mut pairs, mut wins) = (0.0, 0.0);
    for i in 0..dg.len() {
        for j in 0..dg.len() {
            if truth[i] == Some(true) && truth[j] == Some(false) {
                pairs += 1.0;
                let (a, b) = (score[i] as f32, score[j] as f32);
                wins += if a > b {
                    1.0
                } else if a == b {
                    0.5
                } else {
                    0.0
                };
            }
        }
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("diagnosis").join("diagnosis.json")).unwrap())
            .unwrap();
    if pairs > 0.0 {
        let auc = doc["per_patient_auc"].as_f64().unwrap();
        assert!(
            (auc - wins / pairs).abs() < 1e-12,
            "{auc} vs {}",
            wins / pairs
        );
    } else {
        assert!(doc["per_patient_auc"].is_null());
    }
    let report = std::fs::read_to_string(dir("diagnosis").join("report.md")).unwrap();
    assert!(
        report.contains("           Total |    Complete Miss |     Filtered Out |     Pred. Benign |  Pred. Malignant"),
        "{report}"
    );
}
