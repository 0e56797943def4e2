//! Stage kinds: one file or one folder per kind, each the glue between the engine and the
//! domain modules, and [`registry`], the list of kinds a pipeline may use.
//!
//! A torch kind is a folder: `mod.rs` holds its parameters, the artifact types it provides
//! and its named inputs (everything planning needs, without torch), and its `run` hands the work
//! to the `luna-torch` worker; `torch.rs` beside it is the work itself, compiled into the
//! `luna-torch` crate (`luna-torch/src/kinds.rs`), because the `luna` binary must not link
//! libtorch. Domain logic stays in the domain modules (`store::crop_set` for the crops as
//! samples, `luna_torch::nn` for models, loop, metrics and reports).
//!
//! Shared glue is never in a kind file, and no kind imports another kind's file: the artifact
//! type names live in [`artifact`], the CT and CSV locations and a CT's key material in
//! [`dataset`], error conversions, scan lists, JSON writing and shared parameter checks in
//! [`glue`]; the JSON documents themselves are `crate::artifacts`.
//!
//! Artifact types (what typed inputs bind to): `dataset` (synth), `annotations`
//! (load_annotations), `candidates` (merge_candidates), `crops` (build_crops), `classifier`
//! (train_classifier), `predictions` (evaluate_classifier), `froc` (evaluate_froc),
//! `probabilities` (segment), `clusters` (cluster), `detections` (classify_candidates), `diagnosis` (diagnose), `seg_dataset` (seg_dataset), `segmenter`
//! (train_segmentation); a `command` declares its own with `provides:`.

pub mod artifact;
pub mod build_crops;
pub mod classify_candidates;
pub mod cluster;
pub mod command;
pub mod dataset;
pub mod diagnose;
pub mod evaluate_classifier;
pub mod evaluate_froc;
pub mod glue;
pub mod load_annotations;
pub mod merge_candidates;
pub mod seg_dataset;
pub mod segment;
pub mod synth;
pub mod test_kinds;
pub mod train_classifier;
pub mod train_segmentation;

use crate::engine::registry::Registry;

/// The kinds pipelines may use: the built-in ones, plus test-only kinds when the environment
/// has `LUNA_TEST_KINDS=1`.
pub fn registry() -> Registry {
    let mut r = builtin_registry();
    if std::env::var_os("LUNA_TEST_KINDS").is_some_and(|v| v == "1") {
        r.add(test_kinds::TestParamsStage);
        r.add(test_kinds::TestTorchPartitionsStage);
        r.add(test_kinds::TestSlowPartitionsStage);
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
    r.add(cluster::ClusterStage);
    r.add(classify_candidates::ClassifyCandidatesStage);
    r.add(diagnose::DiagnoseStage);
    r.add(segment::SegmentStage);
    r.add(seg_dataset::SegDatasetStage);
    r.add(train_segmentation::TrainSegmentationStage);
    r.add(evaluate_froc::EvaluateFrocStage);
    r
}
