//! Metrics that cannot hang or blow up, against scikit-learn; training-time validation and
//! evaluation count "positive" the same way.

use std::time::Instant;

use luna_torch::nn::classify::{BestBy, Classification, Predictions};
use luna_torch::nn::metrics::{compute, compute_at, pr_curve, roc_auc, MetricsError};
use luna_torch::nn::task::Task;
use luna_torch::nn::train::{predict, Quiet, TrainConfig};
use luna_torch::nn::LoadedModel;
use rand::{Rng, SeedableRng};

use crate::nn_train::{model_cfg, Blobs};

fn case(rng: &mut rand_pcg::Pcg64, k: usize) -> (Vec<bool>, Vec<f32>) {
    let n = rng.random_range(0..40usize);
    let p_pos = [0.0, 1.0, 0.5, 0.2][k % 4];
    let labels: Vec<bool> = (0..n).map(|_| rng.random_bool(p_pos)).collect();
    let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
    let scores = (0..n)
        .map(|_| match rng.random_range(0..20) {
            0 if k.is_multiple_of(5) => special[rng.random_range(0..3)],
            1..=6 => [0.0, 0.25, 0.5, 0.75, 1.0][rng.random_range(0..5)], // ties
            _ => rng.random::<f32>(),
        })
        .collect();
    (labels, scores)
}

#[test]
fn metrics_on_random_vectors_are_bounded_and_agree_with_sklearn() {
    let _torch = crate::nn_support::torch_lock();
    let mut rng = rand_pcg::Pcg64::seed_from_u64(11);
    let cases: Vec<(Vec<bool>, Vec<f32>)> = (0..600).map(|k| case(&mut rng, k)).collect();
    let t0 = Instant::now();
    let mut ours = Vec::new();
    for (l, s) in &cases {
        let loss = vec![0.0; l.len()];
        match compute(l, s, &loss) {
            Ok(m) => ours.push(Some((m.auc, pr_curve(l, s)))),
            Err(MetricsError::NonFinite { count, total, .. }) => {
                assert!(count >= 1 && total == l.len());
                assert!(s.iter().any(|v| !v.is_finite()));
                // the curve helpers terminate on non-finite input too (total order)
                let _ = (roc_auc(l, s), pr_curve(l, s));
                ours.push(None);
            }
            Err(e) => panic!("{e}"),
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    assert!(secs < 5.0, "600 metric computations took {secs:.1}s");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cases.json");
    let json: Vec<serde_json::Value> = cases
        .iter()
        .map(|(l, s)| {
            serde_json::json!({
                "labels": l,
                // non-finite values as strings (JSON has no NaN); float('nan') parses them
                "scores": s.iter().map(|v| if v.is_finite() { serde_json::json!(f64::from(*v)) } else { serde_json::json!(v.to_string().to_lowercase()) }).collect::<Vec<_>>(),
            })
        })
        .collect();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    let out = std::process::Command::new(crate::py::python())
        .arg(format!("{}/tests/oracle/metrics_sklearn.py", crate::REPO))
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sk: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let (mut aucs, mut prs) = (0, 0);
    assert_eq!(ours.len(), sk.len(), "one sklearn answer per case");
    for (k, (o, s)) in ours.iter().zip(&sk).enumerate() {
        let Some((auc, pr)) = o else {
            assert!(s["auc"].is_null() && s["pr"].is_null(), "case {k}");
            continue;
        };
        match (auc, s["auc"].as_f64()) {
            (Some(a), Some(b)) => {
                assert!((a - b).abs() < 1e-12, "case {k}: auc {a} vs sklearn {b}");
                aucs += 1;
            }
            (None, None) => {}
            (a, b) => panic!("case {k}: auc {a:?} vs sklearn {b:?}"),
        }
        if let Some(spr) = s["pr"].as_array() {
            assert_eq!(pr.len(), spr.len(), "case {k}: PR points");
            for (i, ((r, p), q)) in pr.iter().zip(spr).enumerate() {
                let (sr, sp) = (q[0].as_f64().unwrap(), q[1].as_f64().unwrap());
                assert!(
                    (r - sr).abs() < 1e-12 && (p - sp).abs() < 1e-12,
                    "case {k} point {i}: ({r}, {p}) vs sklearn ({sr}, {sp})"
                );
            }
            prs += 1;
        } else {
            assert!(
                pr.is_empty(),
                "case {k}: sklearn has no PR curve (no positives)"
            );
        }
    }
    assert!(
        aucs > 100 && prs > 200,
        "compared {aucs} AUCs and {prs} PR curves"
    );
}

#[test]
fn training_time_and_evaluation_metrics_agree_when_every_probability_is_one_half() {
    let _torch = crate::nn_support::torch_lock();
    // A model whose head is zero gives equal logits, so P(positive) is exactly 0.5 for every
    // sample: both paths must count every sample as positive (p >= 0.5).
    let lm = LoadedModel::fresh(&model_cfg(), tch::Device::Cpu).unwrap();
    tch::no_grad(|| {
        for (n, mut t) in lm.vs.variables() {
            if n.starts_with("head_linear.") {
                let _ = t.zero_();
            }
        }
    });
    let task = Classification {
        best_by: BestBy::F1,
    };
    let data = Blobs { n: 30, seed: 4 };
    let cfg = TrainConfig {
        batch_size: 8,
        ..TrainConfig::default()
    };
    let (pred, _): (Predictions, _) = predict(&lm.model, &task, &data, &cfg, &Quiet).unwrap();
    assert!(
        pred.prob_pos.iter().all(|&p| p == 0.5),
        "{:?}",
        pred.prob_pos
    );
    let training = task.metrics(&pred).unwrap();
    let evaluation = compute_at(&pred.labels, &pred.prob_pos, &pred.loss, 0.5).unwrap();
    assert_eq!(training, evaluation);
    // 10 positives of 30, all predicted positive: precision 1/3, recall 1, F1 0.5
    assert_eq!((training.pos_correct, training.neg_correct), (10, 0));
    assert!((training.f1 - 0.5).abs() < 1e-12, "{}", training.f1);
}
