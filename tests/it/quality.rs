//! Quality regression (issue 27): a test that fails when a nodule classifier gets worse.
//!
//! One pipeline on a small `realistic` synthetic set with fixed seeds (synth →
//! load_annotations → merge_candidates → build_crops → classifiers → `evaluate_classifier` on
//! the validation split), two parts, each a *normal* model that must reach a ROC AUC bound and
//! a *weakened* one that must score below it; asserting both shows the bound has teeth (a
//! model that learned next to nothing, or a damaged one, does not pass it):
//! - **trained**: `train_classifier` as a user would run it (2000 samples) vs the same stage
//!   trained on one batch (one optimizer step);
//! - **book**: the book's own nodule classifier (`import_model` of
//!   `shared/real/book-models/cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state`) vs
//!   a damaged copy of it (every conv and linear weight plus Gaussian noise of 0.75 × its
//!   tensor's standard deviation, written by PyTorch). Needs `../shared/real`: under `CI` a
//!   missing folder fails the test, otherwise this part is skipped saying so.
//!
//! The AUCs are read from each stage's `metrics.json` through the serde struct its writer uses
//! ([`luna::artifacts::ClassifierMetrics`]). Every failed check is collected and reported at
//! once, with the measured AUCs and the bound.
//!
//! `LUNA_QUALITY_WEAKEN=1` puts the weakened models in the normal models' place, to see the
//! test fail.
//!
//! Measured (realgen's 4e84be2; 6 series of 6–8 nodules, 21 validation nodules, 210
//! negatives): trained 0.865 / 0.883 / 0.896 with training seeds 1 / 2 / 3, one batch
//! 0.502 / 0.636 / 0.712; the book's model 0.959, with 0.5σ / 0.75σ / 1σ of noise
//! 0.899 / 0.644 / 0.577. Hence the bounds 0.78 and 0.85: each about 0.09–0.11 below the
//! normal model, above the weakened one under every seed tried (by 0.07 and 0.21). After the
//! generator kept isolated nodules clear of thick vessels (e225631) the same set measures:
//! trained 0.865, one batch 0.485; the book's model 0.9995, with 0.75σ of noise 0.705 (each
//! bound at least 0.085 from either side). (On the `small` preset every normal model scores
//! 1.0: the ceiling this test was written to leave.)
//!
//! Decisions:
//! - One pipeline and one `luna run`: the data (the expensive part in a debug build, about
//!   25 CPU-seconds per 512² series) is made once; the models train and score side by side
//!   (one torch thread each: deterministic, and fits 2-core CI).
//! - The set: the fewest series that give at least 20 validation nodules ([`MIN_POSITIVES`])
//!   and about as many to train on: 6 series with the most nodules the generator allows (8),
//!   every 2nd series validation, 10 negatives per nodule.
//! - The trained model's weakening is the training budget (`epoch_samples` = one batch), a knob
//!   users already have. Rejected: a production switch zeroing the classifier head (a knob only
//!   a test wants), lr → 0 (the optimizer rightly refuses lr ≤ 0), and a fresh head on the
//!   book's backbone (`finetune_from`, one step: it still ranks well, 0.92 on `small`).
//! - The book model's weakening is weight noise, a graded damage that leaves a model better
//!   than chance (0.64) rather than a zeroed head, whose constant output gives an AUC of
//!   exactly 0.5 and proves nothing about the bound's height.
//! - Lower bounds with a margin below the measured values, not exact AUCs: an equality would
//!   break on any harmless change of floating-point order; the question is "did the model get
//!   worse", not "is it bit-identical".
//! - The trained models use 16³ crops (LunaModel's smallest input) to keep a debug-build run
//!   short; the book model needs its own 32×48×48.

use std::io::Write;
use std::path::{Path, PathBuf};

use luna::artifacts::ClassifierMetrics;

use crate::engine_support::Ws;

/// The synthetic set.
const DATA: &str = "preset: realistic, seed: 3, series: 6, nodules_per_series: [6, 8], \
                    negatives_per_nodule: 10";

/// Fewest validation nodules for an AUC to mean something.
const MIN_POSITIVES: usize = 20;

/// The lowest validation ROC AUC the normal trained model may score.
const TRAINED_BOUND: f64 = 0.78;

/// `train_classifier` settings both trained models share.
const COMMON: &str = "epochs: 1, batch_size: 16, optimizer: { kind: adam, lr: 0.001 }, \
                      augment: null, seed: 1, device: cpu, threads: 1, loader_threads: 1";

/// The normal trained model's budget.
const NORMAL: &str = "epoch_samples: 2000";

/// The weakened one's: one batch, one optimizer step.
const WEAK: &str = "epoch_samples: 16";

/// The lowest validation ROC AUC the book's classifier may score.
const BOOK_BOUND: f64 = 0.85;

/// The book's nodule classifier, under `shared/real/book-models/`.
const BOOK_CLS: &str = "cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state";

/// Noise added to each weight tensor of the damaged copy, in units of the tensor's std.
const DAMAGE: f64 = 0.75;

/// argv: source checkpoint, destination, noise (× std), seed. Writes the book checkpoint's
/// `model_state` with Gaussian noise added to every conv and linear weight.
const DAMAGE_PY: &str = r#"
import sys, torch
src, dst, frac, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
state = torch.load(src, map_location="cpu", weights_only=False)["model_state"]
g = torch.Generator().manual_seed(seed)
for k, v in state.items():
    if k.endswith(".weight") and v.dim() > 1:
        state[k] = v + frac * v.std() * torch.randn(v.shape, generator=g)
torch.save({"model_state": state}, dst)
"#;

/// An `evaluate_classifier` stage of model `model` on crops `crops`.
fn eval(name: &str, crops: &str, model: &str) -> String {
    format!(
        "  {name}:\n    uses: evaluate_classifier\n    needs: [{crops}, {model}]\n    with: {{ model: {model}, crops: {crops}, device: cpu, threads: 1 }}\n"
    )
}

/// The data stages and the trained part; `normal` is the normal model's budget.
fn trained_stages(normal: &str) -> String {
    format!(
        "pipeline: q\nstages:\n\
         \x20 data:\n    uses: synth\n    with: {{ {DATA} }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations]\n    with: {{ val_stride: 2 }}\n\
         \x20 crops:\n    uses: build_crops\n    needs: [candidates]\n    with: {{ width_irc: [16, 16, 16] }}\n\
         \x20 normal:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ {normal}, {COMMON} }}\n\
         \x20 weak:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ {WEAK}, {COMMON} }}\n{}{}",
        eval("eval_normal", "crops", "normal"),
        eval("eval_weak", "crops", "weak"),
    )
}

/// The book part: the checkpoints imported, scored on the book's crop size.
fn book_stages(normal: &Path, damaged: &Path) -> String {
    let import = |name: &str, file: &Path| {
        format!(
            "  {name}:\n    uses: import_model\n    with: {{ checkpoint: {:?}, architecture: luna_model, provides: classifier }}\n",
            file.to_str().expect("a UTF-8 path")
        )
    };
    format!(
        "  book_crops:\n    uses: build_crops\n    needs: [candidates]\n    with: {{ width_irc: [32, 48, 48] }}\n{}{}{}{}",
        import("book", normal),
        import("damaged", damaged),
        eval("eval_book", "book_crops", "book"),
        eval("eval_damaged", "book_crops", "damaged"),
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

/// The validation ROC AUC of stage `stage`, after checking there were enough nodules to rank.
fn auc(ws: &Ws, stage: &str) -> f64 {
    let m = metrics(ws, stage);
    assert!(
        m.positives >= MIN_POSITIVES,
        "{stage}: {} validation nodules, fewer than {MIN_POSITIVES}",
        m.positives
    );
    m.roc_auc
        .unwrap_or_else(|| panic!("{stage}: no ROC AUC (one class absent)"))
}

/// One part's verdict: the normal model at or above `bound`, the weakened one below it.
struct Part {
    /// What is compared, for messages.
    name: &'static str,
    /// The normal model's evaluation stage, and how it was made.
    normal: (&'static str, String),
    /// The weakened model's evaluation stage, and how it was made.
    weak: (&'static str, String),
    /// The bound.
    bound: f64,
}

impl Part {
    /// Failed checks, in words, after printing the measured AUCs.
    fn failures(&self, ws: &Ws) -> Vec<String> {
        let (normal, weak) = (auc(ws, self.normal.0), auc(ws, self.weak.0));
        println!(
            "quality {}: normal ROC AUC {normal}, weakened {weak}, bound {}",
            self.name, self.bound
        );
        let mut out = Vec::new();
        if normal < self.bound {
            out.push(format!(
                "{}: the normal model's validation ROC AUC {normal:.4} is below the bound {} \
                 ({}; the weakened model scored {weak:.4}): the classifier got worse",
                self.name, self.bound, self.normal.1
            ));
        }
        if weak >= self.bound {
            out.push(format!(
                "{}: the weakened model ({}) scored ROC AUC {weak:.4}, not below the bound {}: \
                 the bound does not tell a working model from a broken one",
                self.name, self.weak.1, self.bound
            ));
        }
        out
    }
}

/// The book checkpoint and its damaged copy (written into the workspace), or `None` (skip
/// line printed) without the real data.
fn book_checkpoints(ws: &Ws) -> Option<(PathBuf, PathBuf)> {
    let Some(real) = crate::harness::require_real_data() else {
        // the harness's SKIPPED line names the whole test; only this part is left out
        let _ = writeln!(
            std::io::stderr().lock(),
            "  (only the book part is skipped: the trained part runs)"
        );
        return None;
    };
    let book = real.join("book-models").join(BOOK_CLS);
    let damaged = ws.path("damaged.state");
    let s = |p: &Path| p.to_str().expect("a UTF-8 path").to_string();
    crate::py::run_stdin(
        &["-", &s(&book), &s(&damaged), &DAMAGE.to_string(), "0"],
        DAMAGE_PY,
    );
    Some((book, damaged))
}

#[test]
fn normal_classifiers_reach_their_auc_bounds_and_weakened_ones_do_not() {
    let weaken = std::env::var("LUNA_QUALITY_WEAKEN").is_ok_and(|v| v == "1");
    let ws = Ws::new();
    let mut yaml = trained_stages(if weaken { WEAK } else { NORMAL });
    let book = book_checkpoints(&ws);
    if let Some((normal, damaged)) = &book {
        yaml += &book_stages(if weaken { damaged } else { normal }, damaged);
    }
    ws.pipeline("q", &yaml);
    ws.luna(&["run", "q"]).expect_code(0);
    let why = |what: &str| match weaken {
        true => "LUNA_QUALITY_WEAKEN=1: made like the weakened one".to_string(),
        false => what.to_string(),
    };
    let mut parts = vec![Part {
        name: "trained",
        normal: ("eval_normal", why(&format!("trained with {NORMAL}"))),
        weak: ("eval_weak", format!("trained with {WEAK}")),
        bound: TRAINED_BOUND,
    }];
    if book.is_some() {
        parts.push(Part {
            name: "book",
            normal: ("eval_book", why(&format!("{BOOK_CLS} as it is"))),
            weak: ("eval_damaged", format!("weights + {DAMAGE} std of noise")),
            bound: BOOK_BOUND,
        });
    }
    let failures: Vec<String> = parts.iter().flat_map(|p| p.failures(&ws)).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
