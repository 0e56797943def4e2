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
pub mod train_classifier;

use crate::engine::registry::Registry;

/// The kinds pipelines may use: the built-in ones, plus test-only kinds when the environment
/// has `LUNA_TEST_KINDS=1`.
pub fn registry() -> Registry {
    let mut r = builtin_registry();
    if std::env::var_os("LUNA_TEST_KINDS").is_some_and(|v| v == "1") {
        r.add(test_kinds::TestParamsStage);
        r.add(test_kinds::TestTorchPartitionsStage);
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
