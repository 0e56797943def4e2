//! Quality regression (issue 27): a test that fails when the nodule classifier gets worse.
//!
//! One pipeline on a small synthetic set with fixed seeds (synth → load_annotations →
//! merge_candidates → build_crops → two `train_classifier` stages → their
//! `evaluate_classifier`s): the *normal* model, trained as a user would, must reach a ROC AUC
//! of at least [`BOUND`] on the validation split; a *weakened* model (the same stage trained on
//! one batch, i.e. one optimizer step) must score below it. Asserting both shows the bound has
//! teeth: a model that learned next to nothing does not pass it. The AUC is read from the
//! stage's `metrics.json` through the serde struct its writer uses
//! ([`luna::artifacts::ClassifierMetrics`]).
//!
//! `LUNA_QUALITY_WEAKEN=1` trains the "normal" model with the weakened settings, to see the
//! test fail (its message names the measured AUCs and the bound).
//!
//! Decisions:
//! - Both models in one pipeline and one `luna run`: the data and crops are made once and the
//!   two trainings run side by side (one torch thread each, for determinism and 2-core CI).
//! - The weakening is the training budget (`epoch_samples` = one batch), a knob users already
//!   have. Rejected: a production switch zeroing the classifier head (a knob only a test
//!   wants), and lr → 0 (the optimizer rightly refuses lr ≤ 0).
//! - A lower bound with a margin below the measured value, not an exact AUC: an equality
//!   would break on any harmless change of floating-point order, and the question the test
//!   answers is "did the model get worse", not "is it bit-identical".
//! - Crops of 16³ voxels (LunaModel's smallest input) keep a debug-build run short.

use std::path::PathBuf;

use luna::artifacts::ClassifierMetrics;

use crate::engine_support::Ws;

/// The lowest validation ROC AUC the normal model may score.
const BOUND: f64 = 0.75;

/// Fewest validation nodules for the AUC to mean something.
const MIN_POSITIVES: usize = 20;

/// `train_classifier` settings both models share.
const COMMON: &str = "epochs: 1, batch_size: 16, optimizer: { kind: adam, lr: 0.001 }, \
                      augment: null, seed: 1, device: cpu, threads: 1, loader_threads: 1";

/// The normal model's training budget.
const NORMAL: &str = "epoch_samples: 2000";

/// The weakened model's: one batch, one optimizer step.
const WEAK: &str = "epoch_samples: 16";

/// The pipeline; `normal` is the training budget of the stage called `normal`.
fn pipeline(normal: &str) -> String {
    format!(
        "pipeline: q\nstages:\n\
         \x20 data:\n    uses: synth\n    with: {{ preset: small, seed: 3, series: 16, negatives_per_nodule: 6 }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations]\n    with: {{ val_stride: 2 }}\n\
         \x20 crops:\n    uses: build_crops\n    needs: [candidates]\n    with: {{ width_irc: [16, 16, 16] }}\n\
         \x20 normal:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ {normal}, {COMMON} }}\n\
         \x20 weak:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ {WEAK}, {COMMON} }}\n\
         \x20 eval_normal:\n    uses: evaluate_classifier\n    needs: [crops, normal]\n    with: {{ device: cpu, threads: 1 }}\n\
         \x20 eval_weak:\n    uses: evaluate_classifier\n    needs: [crops, weak]\n    with: {{ device: cpu, threads: 1 }}\n"
    )
}

/// `metrics.json` of stage `stage`, through the writer's struct.
fn metrics(ws: &Ws, stage: &str) -> ClassifierMetrics {
    let dir = PathBuf::from(ws.luna(&["path", "q", stage]).stdout.trim());
    let bytes = std::fs::read(dir.join("metrics.json"))
        .unwrap_or_else(|e| panic!("{stage}'s metrics.json in {}: {e}", dir.display()));
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{stage}'s metrics.json is not ClassifierMetrics: {e}"))
}

/// The ROC AUC of `m`, after checking there were enough nodules to rank.
fn auc(m: &ClassifierMetrics) -> f64 {
    assert!(
        m.positives >= MIN_POSITIVES,
        "{}: {} validation nodules, fewer than {MIN_POSITIVES}",
        m.model_stage,
        m.positives
    );
    m.roc_auc
        .unwrap_or_else(|| panic!("{}: no ROC AUC (one class absent)", m.model_stage))
}

#[test]
fn a_weakened_classifier_scores_below_the_bound_the_normal_one_reaches() {
    let weaken = std::env::var("LUNA_QUALITY_WEAKEN").is_ok_and(|v| v == "1");
    let ws = Ws::new();
    ws.pipeline("q", &pipeline(if weaken { WEAK } else { NORMAL }));
    let run = ws.luna(&["run", "q"]);
    run.expect_code(0);
    let (normal, weak) = (
        auc(&metrics(&ws, "eval_normal")),
        auc(&metrics(&ws, "eval_weak")),
    );
    println!("quality: normal model ROC AUC {normal}, weakened {weak}, bound {BOUND}");
    let budget = if weaken {
        "LUNA_QUALITY_WEAKEN=1: trained like the weakened one"
    } else {
        NORMAL
    };
    assert!(
        normal >= BOUND,
        "the normal model's validation ROC AUC {normal:.4} is below the bound {BOUND} \
         ({budget}; the weakened model scored {weak:.4}): the classifier got worse"
    );
    assert!(
        weak < BOUND,
        "the weakened model ({WEAK}) scored ROC AUC {weak:.4}, not below the bound {BOUND}: \
         the bound does not tell a trained model from an untrained one"
    );
}
