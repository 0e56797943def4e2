//! Stage kinds: one file per kind, each the glue between the engine and the domain modules,
//! and [`registry`], the list of kinds a pipeline may use.

pub mod build_crops;
pub mod command;
pub mod dataset;
pub mod evaluate_classifier;
pub mod load_annotations;
pub mod merge_candidates;
pub mod synth;
pub mod test_kinds;
pub mod torch_data;
#[cfg(feature = "torch")]
pub mod torch_eval;
pub mod torch_model;
#[cfg(feature = "torch")]
pub mod torch_report;
#[cfg(feature = "torch")]
pub mod torch_train;
pub mod train_classifier;

use crate::engine::registry::Registry;

/// The kinds pipelines may use: the built-in ones, plus test-only kinds when the environment
/// has `LUNA_TEST_KINDS=1`.
pub fn registry() -> Registry {
    let mut r = builtin_registry();
    if std::env::var_os("LUNA_TEST_KINDS").is_some_and(|v| v == "1") {
        r.add(test_kinds::TestParamsStage);
    }
    r
}

/// The built-in kinds (what `schemas/pipeline.schema.json` describes).
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    r.add(command::CommandStage);
    r.add(synth::SynthStage);
    r.add(load_annotations::LoadAnnotationsStage);
    r.add(merge_candidates::MergeCandidatesStage);
    r.add(build_crops::BuildCropsStage);
    r.add(train_classifier::TrainClassifierStage);
    r.add(evaluate_classifier::EvaluateClassifierStage);
    r
}

/// Runs the torch work of `kind` inside the `luna-torch` worker.
#[cfg(feature = "torch")]
pub fn run_torch_kind(
    kind: &str,
    ctx: &mut crate::engine::context::StageContext,
) -> Result<(), crate::engine::error::StageError> {
    match kind {
        "train_classifier" => return train_classifier::execute(ctx),
        "evaluate_classifier" => return evaluate_classifier::execute(ctx),
        _ => {}
    }
    Err(crate::engine::error::StageError::msg(format!(
        "luna-torch has no torch kind `{kind}`"
    )))
}
