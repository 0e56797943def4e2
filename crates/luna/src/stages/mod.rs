//! Stage kinds: one file per kind, each the glue between the engine and the domain modules,
//! and [`registry`], the list of kinds a pipeline may use.
//!
//! A torch kind has two halves in two crates, one file each: `stages/<kind>.rs` here holds
//! its `KIND` name, parameters (with their validation), the artifact types it provides and its
//! named inputs (everything planning needs, without torch), and its `run` hands the work to the
//! `luna-torch` worker; the work itself is `crates/luna-torch/src/kinds/<kind>.rs`, whose
//! dispatch table is built from the same `KIND` constants (see [`worker_kinds`]). The `luna`
//! binary must not link libtorch, so the torch half cannot live here. Rejected: compiling the
//! torch half from this folder into `luna-torch` with a `path` attribute (tools and readers
//! lost the trail, and `crate::` meant the other crate). Domain logic stays in the domain modules
//! (`store::crop_set` for the crops as samples, `luna_torch::nn` for models, loop, metrics
//! and reports).
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
//! (train_segmentation; `classifier` and `segmenter` also from import_model); a `command` declares its own with `provides:`.

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
pub mod import_model;
pub mod load_annotations;
pub mod merge_candidates;
pub mod seg_dataset;
pub mod segment;
pub mod synth;
pub mod test_kinds;
pub mod train_classifier;
pub mod train_segmentation;

use crate::engine::kind::{CheckedParams, Stage};
use crate::engine::registry::Registry;
use crate::model::Device;
use crate::worker::WorkerStage;

/// A kind whose work runs in the `luna-torch` worker, as the registry lists it.
#[derive(Clone, Copy)]
pub struct WorkerKind {
    /// Its name (`KIND`).
    pub kind: &'static str,
    /// Its `device` hint, read from the typed parameters the plan checked.
    device: fn(&CheckedParams) -> Option<Device>,
}

impl WorkerKind {
    /// The `device` hint of a stage's checked parameters (`None`: no device, or parameters
    /// of another kind).
    pub fn device(&self, params: &CheckedParams) -> Option<Device> {
        (self.device)(params)
    }
}

fn device_of<S: WorkerStage>(params: &CheckedParams) -> Option<Device> {
    params.typed.downcast_ref::<S::Params>().and_then(S::device)
}

/// The one list of kinds, as it is built: the registry plus which of its kinds are worker
/// kinds (registered with [`Kinds::worker`]). Rejected: a second hand-written list of worker
/// kinds beside the registry (they drift apart; a missing arm was a runtime error).
#[derive(Default)]
struct Kinds {
    registry: Registry,
    workers: Vec<WorkerKind>,
}

impl Kinds {
    /// Registers a kind that runs in the `luna` process.
    fn local<S: Stage>(&mut self, stage: S) -> &mut Self {
        self.registry.add(stage);
        self
    }

    /// Registers a kind whose work runs in the `luna-torch` worker.
    fn worker<S: WorkerStage>(&mut self, stage: S) -> &mut Self {
        self.workers.push(WorkerKind {
            kind: S::KIND,
            device: device_of::<S>,
        });
        self.local(stage)
    }

    /// The built-in kinds, and the test-only ones when `test_kinds`.
    fn all(test_kinds: bool) -> Kinds {
        let mut k = Kinds::default();
        k.local(command::CommandStage)
            .local(synth::SynthStage)
            .local(load_annotations::LoadAnnotationsStage)
            .local(merge_candidates::MergeCandidatesStage)
            .local(build_crops::BuildCropsStage)
            .worker(train_classifier::TrainClassifierStage)
            .worker(evaluate_classifier::EvaluateClassifierStage)
            .local(cluster::ClusterStage)
            .worker(classify_candidates::ClassifyCandidatesStage)
            .local(diagnose::DiagnoseStage)
            .worker(segment::SegmentStage)
            .local(seg_dataset::SegDatasetStage)
            .worker(train_segmentation::TrainSegmentationStage)
            .local(evaluate_froc::EvaluateFrocStage)
            .worker(import_model::ImportModelStage);
        if test_kinds {
            k.local(test_kinds::TestParamsStage)
                .worker(test_kinds::TestTorchPartitionsStage)
                .local(test_kinds::TestSlowPartitionsStage);
        }
        k
    }
}

/// Whether the environment enables the test-only kinds (`LUNA_TEST_KINDS=1`).
fn test_kinds_enabled() -> bool {
    std::env::var_os("LUNA_TEST_KINDS").is_some_and(|v| v == "1")
}

/// The kinds pipelines may use: the built-in ones, plus test-only kinds when the environment
/// has `LUNA_TEST_KINDS=1`.
pub fn registry() -> Registry {
    registry_with(test_kinds_enabled())
}

/// The built-in kinds, plus the test-only ones when `test_kinds`.
pub fn registry_with(test_kinds: bool) -> Registry {
    Kinds::all(test_kinds).registry
}

/// The built-in kinds (what `schemas/pipeline.schema.json` describes).
pub fn builtin_registry() -> Registry {
    registry_with(false)
}

/// The registry's kinds whose work runs in the `luna-torch` worker (test-only ones included
/// when `test_kinds`).
pub fn worker_kinds(test_kinds: bool) -> Vec<WorkerKind> {
    Kinds::all(test_kinds).workers
}

/// Whether a stage of `kind` with these checked parameters runs on a GPU when it can: a
/// worker kind whose `device` hint is `auto` (the default) or `cuda…` (Slurm's `--gres`).
pub fn wants_gpu(kind: &str, params: &CheckedParams) -> bool {
    Kinds::all(true)
        .workers
        .iter()
        .find(|w| w.kind == kind)
        .and_then(|w| w.device(params))
        .is_some_and(Device::wants_gpu)
}
