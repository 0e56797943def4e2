//! The torch halves of luna's torch kinds, one file each (`kinds/<kind>.rs`; the other half,
//! parameters and plan, is `luna::stages::<kind>`), the helpers they share, and [`DISPATCH`],
//! the table the worker runs a kind from.
//!
//! The table's keys are the kinds' `KIND` constants from `luna::stages`, and a test checks that
//! its set equals the registry's worker kinds (`luna::stages::worker_kinds`), so a kind cannot
//! be registered as a worker kind without torch work here, or the other way round. Each kind's
//! work starts from [`params`]: its own `Params` type, checked by the kind's own check (the
//! plan's: unknown keys, types, `validate`). Rejected: a `match` on string literals (a second
//! list of names, a missing arm only a runtime error) and deserialising `with:` without the
//! kind's validation.

pub mod classify_candidates;
pub mod evaluate_classifier;
pub mod import_model;
pub mod segment;
pub mod test_kinds;
pub mod train_classifier;
pub mod train_segmentation;

use std::sync::atomic::{AtomicUsize, Ordering};

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::engine::kind::{DynKind, ParamProblem, Stage, Typed};

/// The torch work of one kind, run in the worker.
pub type Work = fn(&mut StageContext) -> Result<(), StageError>;

/// Every worker kind's `KIND` and its torch work.
pub const DISPATCH: &[(&str, Work)] = &[
    (
        luna::stages::train_classifier::KIND,
        train_classifier::execute,
    ),
    (
        luna::stages::evaluate_classifier::KIND,
        evaluate_classifier::execute,
    ),
    (
        luna::stages::classify_candidates::KIND,
        classify_candidates::execute,
    ),
    (luna::stages::segment::KIND, segment::execute),
    (
        luna::stages::train_segmentation::KIND,
        train_segmentation::execute,
    ),
    (luna::stages::import_model::KIND, import_model::execute),
    (
        luna::stages::test_kinds::TORCH_PARTITIONS_KIND,
        test_kinds::execute,
    ),
];

/// Runs the torch work of `kind` inside the `luna-torch` worker.
pub fn run(kind: &str, ctx: &mut StageContext) -> Result<(), StageError> {
    match DISPATCH.iter().find(|(k, _)| *k == kind) {
        Some((_, work)) => work(ctx),
        None => Err(StageError::msg(format!(
            "luna-torch has no torch kind `{kind}`"
        ))
        .with_hint("luna and luna-torch come from different builds: rebuild both with one `cargo build`")),
    }
}

/// The stage's typed parameters (hints included), from the `with:` the worker received,
/// checked by kind `S`'s own check — the one the plan ran — so the worker never runs on
/// parameters the plan would have refused.
pub fn params<S: Stage>(stage: S, ctx: &StageContext) -> Result<S::Params, StageError> {
    let with = match ctx.with_json() {
        serde_json::Value::Null => serde_json::json!({}),
        v => v.clone(),
    };
    let bad = |what: String| {
        StageError::msg(format!(
            "stage `{}` ({}): parameters: {what}",
            ctx.stage(),
            S::KIND
        ))
    };
    let checked = Typed(stage).check(&with).map_err(|p| match p {
        ParamProblem::Unknown { path, known } => bad(format!(
            "unknown parameter `{path}` (known: {})",
            known.join(", ")
        )),
        ParamProblem::Invalid { path, message } if path.is_empty() => bad(message),
        ParamProblem::Invalid { path, message } => bad(format!("`{path}`: {message}")),
    })?;
    let typed = checked
        .typed
        .downcast::<S::Params>()
        .map_err(|_| bad("the kind's check returned another kind's parameters".into()))?;
    // the check's `Arc` has no other owner; a clone-free unwrap
    std::sync::Arc::try_unwrap(typed).map_err(|_| bad("the checked parameters are shared".into()))
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

/// Torch's intra-op thread count for a stage: an explicit `threads:` hint, fixed for the whole
/// stage, or else the stage's thread budget, which the executor raises when other stages finish
/// and which [`TorchThreads::follow`] applies between batches.
pub struct TorchThreads<'a> {
    ctx: &'a StageContext,
    fixed: bool,
    current: AtomicUsize,
}

impl<'a> TorchThreads<'a> {
    /// Sets torch's thread count for the start of the stage: `hint` (capped at the machine's
    /// cores, with a note), else the stage's budget.
    pub fn start(ctx: &'a StageContext, hint: Option<usize>) -> TorchThreads<'a> {
        let n = cap_threads(ctx, "threads", hint.unwrap_or(ctx.threads()));
        tch::set_num_threads(n as i32);
        TorchThreads {
            ctx,
            fixed: hint.is_some(),
            current: AtomicUsize::new(n),
        }
    }

    /// The thread count torch runs with now.
    pub fn get(&self) -> usize {
        self.current.load(Ordering::Relaxed)
    }

    /// Between batches: when the stage's budget changed (and no explicit hint fixes the
    /// count), torch's thread count follows it, with a line in the stage log.
    pub fn follow(&self) {
        if self.fixed {
            return;
        }
        let n = self.ctx.threads().clamp(1, luna::engine::context::cores());
        let was = self.current.swap(n, Ordering::Relaxed);
        if n != was {
            tch::set_num_threads(n as i32);
            self.ctx.log(format!(
                "torch threads {was} -> {n} (the stage's thread budget changed)"
            ));
        }
    }
}

/// The training loop's observer for a stage: log lines go to the stage log, passes to its
/// progress bar; between batches torch's thread count follows the stage's budget.
pub struct Reporter<'a> {
    ctx: &'a StageContext,
    threads: &'a TorchThreads<'a>,
}

impl<'a> Reporter<'a> {
    /// The observer of `ctx`'s stage, torch running with `threads`.
    pub fn new(ctx: &'a StageContext, threads: &'a TorchThreads<'a>) -> Reporter<'a> {
        Reporter { ctx, threads }
    }
}

impl crate::nn::train::Observer for Reporter<'_> {
    fn log(&self, line: &str) {
        self.ctx.log(line);
    }
    fn pass(&self, len: u64, message: &str) {
        self.ctx.progress().start(len, "samples");
        self.ctx.progress().set_message(message.to_string());
    }
    fn advance(&self, n: u64) {
        self.ctx.progress().inc(n);
    }
    fn between_batches(&self) {
        self.threads.follow();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use luna::engine::cache::Cache;
    use luna::engine::context::{ContextParts, StageContext, ThreadBudget};
    use luna::engine::events::EventSink;

    use super::{TorchThreads, DISPATCH};

    fn context(dir: &std::path::Path, budget: &ThreadBudget) -> StageContext {
        let cache = match Cache::open(&dir.join("cache")) {
            Ok(c) => c,
            Err(e) => panic!("cache: {e}"),
        };
        StageContext::new(ContextParts {
            stage: "s".into(),
            pipeline: "p".into(),
            out_dir: dir.join("out"),
            workspace: dir.to_path_buf(),
            upstream: Vec::new(),
            bindings: Default::default(),
            tx: EventSink::None,
            with: serde_json::Value::Null,
            log_path: dir.join("s.log"),
            cache,
            partition_base: serde_json::Value::Null,
            threads: budget.clone(),
            key: String::new(),
            stat: None,
        })
    }

    #[test]
    fn torch_threads_follow_the_budget_between_batches_unless_the_user_fixed_them() {
        let dir = std::env::temp_dir().join(format!("luna-torch-threads-{}", std::process::id()));
        let cores = luna::engine::context::cores();
        let budget = ThreadBudget::new(1);
        let ctx = context(&dir, &budget);
        let a = tch::Tensor::ones([64, 64], (tch::Kind::Float, tch::Device::Cpu));
        let threads = TorchThreads::start(&ctx, None);
        assert_eq!(threads.get(), 1);
        let _ = a.matmul(&a); // parallel work has started; the count still changes
        budget.set(cores); // the executor: the other stages finished
        threads.follow();
        assert_eq!(threads.get(), cores);
        assert_eq!(tch::get_num_threads() as usize, cores);
        let log = std::fs::read_to_string(dir.join("s.log")).unwrap_or_default();
        assert_eq!(
            log.contains(&format!("torch threads 1 -> {cores}")),
            cores > 1,
            "{log}"
        );
        // an explicit `threads:` hint wins and is never changed
        let fixed = TorchThreads::start(&ctx, Some(1));
        budget.set(cores + 1);
        fixed.follow();
        assert_eq!(fixed.get(), 1);
        assert_eq!(tch::get_num_threads(), 1);
        let _ = std::fs::remove_dir_all(&dir); // best effort: a temp dir
    }

    #[test]
    fn dispatch_table_is_the_registrys_worker_kinds() {
        let dispatch: BTreeSet<&str> = DISPATCH.iter().map(|(k, _)| *k).collect();
        assert_eq!(dispatch.len(), DISPATCH.len(), "a kind twice in DISPATCH");
        let workers: BTreeSet<&str> = luna::stages::worker_kinds(true)
            .iter()
            .map(|w| w.kind)
            .collect();
        assert_eq!(dispatch, workers);
        let registry = luna::stages::registry_with(true);
        for k in &workers {
            assert!(registry.get(k).is_some(), "worker kind {k} not registered");
        }
    }
}
