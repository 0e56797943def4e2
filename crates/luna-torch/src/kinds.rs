//! The torch halves of luna's stage kinds, compiled from their kind folders in the `luna`
//! crate (see the crate doc for why), and the table the worker dispatches on.

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use serde::de::DeserializeOwned;

/// The stage's typed parameters, from the `with:` the worker received (hints included).
pub fn params<P: DeserializeOwned>(ctx: &StageContext) -> Result<P, StageError> {
    let with = match ctx.with_json() {
        serde_json::Value::Null => serde_json::json!({}),
        v => v.clone(),
    };
    serde_json::from_value(with)
        .map_err(|e| StageError::msg(format!("stage `{}`: parameters: {e}", ctx.stage())))
}

/// A thread-count hint capped at the machine's cores (at least 1), with a log note when it
/// was capped: more threads than cores only slow torch down (`threads: 1000` ran 9× slower).
pub fn cap_threads(ctx: &StageContext, name: &str, wanted: usize) -> usize {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    if wanted > cores {
        ctx.log(format!(
            "note: {name}: {wanted} capped to the machine's {cores} cores"
        ));
        cores
    } else {
        wanted.max(1)
    }
}

/// The optimizer of a training stage's parameters; `default_lr` when `lr` is not given.
pub fn optimizer_config(
    o: &luna::model::OptimizerParams,
    default_lr: f64,
) -> crate::nn::OptimizerConfig {
    use luna::model::OptimizerParams;
    match o {
        OptimizerParams::Sgd {
            lr,
            momentum,
            weight_decay,
        } => crate::nn::OptimizerConfig::Sgd {
            lr: lr.unwrap_or(default_lr),
            momentum: *momentum,
            weight_decay: *weight_decay,
        },
        OptimizerParams::Adam { lr, weight_decay } => crate::nn::OptimizerConfig::Adam {
            lr: lr.unwrap_or(1e-3),
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: *weight_decay,
        },
    }
}

/// The augmentation of a training stage's parameters.
pub fn augment_config(a: &luna::model::AugmentParams, per_batch: bool) -> crate::nn::AugmentConfig {
    crate::nn::AugmentConfig {
        flip: a.flip,
        offset: a.offset,
        scale: a.scale,
        rotate: a.rotate,
        noise: a.noise,
        per_batch,
    }
}

/// Where a training stage mirrors its TensorBoard events, so one `tensorboard --logdir
/// runs/tensorboard` shows every run: `runs/tensorboard/<pipeline>/<stage>/`.
pub fn tensorboard_mirror(ctx: &StageContext) -> std::path::PathBuf {
    ctx.workspace()
        .join("runs/tensorboard")
        .join(ctx.pipeline())
        .join(ctx.stage())
}

/// The training loop's observer for a stage: log lines go to the stage log, passes to its
/// progress bar.
pub struct Reporter<'a>(pub &'a StageContext);

impl crate::nn::train::Observer for Reporter<'_> {
    fn log(&self, line: &str) {
        self.0.log(line);
    }
    fn pass(&self, len: u64, message: &str) {
        self.0.progress().start(len, "samples");
        self.0.progress().set_message(message.to_string());
    }
    fn advance(&self, n: u64) {
        self.0.progress().inc(n);
    }
}

#[path = "../../luna/src/stages/train_classifier/torch.rs"]
pub mod train_classifier;

#[path = "../../luna/src/stages/evaluate_classifier/torch.rs"]
pub mod evaluate_classifier;

#[path = "../../luna/src/stages/classify_candidates/torch.rs"]
pub mod classify_candidates;

#[path = "../../luna/src/stages/segment/torch.rs"]
pub mod segment;

#[path = "../../luna/src/stages/train_segmentation/torch.rs"]
pub mod train_segmentation;

#[path = "../../luna/src/stages/test_kinds/torch.rs"]
pub mod test_kinds;

/// Runs the torch work of `kind` inside the `luna-torch` worker.
pub fn run(kind: &str, ctx: &mut StageContext) -> Result<(), StageError> {
    match kind {
        "train_classifier" => train_classifier::execute(ctx),
        "evaluate_classifier" => evaluate_classifier::execute(ctx),
        "classify_candidates" => classify_candidates::execute(ctx),
        "segment" => segment::execute(ctx),
        "train_segmentation" => train_segmentation::execute(ctx),
        "test_torch_partitions" => test_kinds::execute(ctx),
        _ => Err(StageError::msg(format!(
            "luna-torch has no torch kind `{kind}`"
        ))
        .with_hint("luna and luna-torch come from different builds: rebuild both with one `cargo build`")),
    }
}
