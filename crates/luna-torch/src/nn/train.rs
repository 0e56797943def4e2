//! The one training loop of luna, for every model and task: [`fit`] runs what a training stage
//! runs, and the tests call it directly.
//!
//! Per epoch `e` of `start+1 ..= epochs`:
//! 1. the caller's order for `e` (book samplers: `loader::balanced_order`, the malignancy
//!    order of `nn::classify`), batches assembled ahead on loader threads;
//! 2. train step: forward (train mode), the task's per-sample loss, its mean, a finiteness
//!    check (a NaN or infinite loss stops training with [`TrainError::NonFiniteLoss`] and the
//!    last good checkpoint kept), backward, optimizer step; optional joint augmentation of
//!    input and target on the device (seeded by `seed + e`);
//! 3. validation (eval mode, `no_grad`, never augmented) at epoch 1, every `validate_every`-th
//!    epoch and the last epoch, so a short run always has a scored model;
//! 4. after each validation, the task's image samples (`Task::image_samples`) through the
//!    model (eval, `no_grad`, one batch per source) and what the task draws of them into
//!    TensorBoard (`val/<tag>`) and `images/val/<tag>.png` of the artifact; `first` is the
//!    first validation of this call (epoch 1, or the first after a resume, so the artifact of
//!    a resumed run still holds every image kind);
//! 5. best checkpoint when the score ties or beats the best so far (book p2ch14: a later tie
//!    wins), the last checkpoint every epoch, history and the task's tables rewritten, so a
//!    `kill -9` resumes from the last epoch boundary.
//!
//! At the end the artifact directory receives `model.safetensors` + `model.json` (the best
//! checkpoint), `last/` (the full last checkpoint), the task's tables and plots, and
//! `tensorboard/{trn,val}`, `images/val/` when the task draws.
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::{Device, Kind};

use crate::nn::augment::{AugmentConfig, AugmentError, Augmenter};
use crate::nn::checkpoint::{self, CheckpointError, CheckpointMeta, LoadedModel};
use crate::nn::loader::{build_batch, for_each_batch};
pub use crate::nn::loader::{Batch, PassStats, SampleSource, SourceError};
use crate::nn::metrics::MetricsError;
use crate::nn::model::Model;
use crate::nn::optim::{OptimError, Optimizer};
use crate::nn::report::{self, Boards, EpochRow};
use crate::nn::task::{ImageSample, Task, TaskImage};

/// Loop settings (the task-independent part of a training stage's parameters).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrainConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Epochs to run (in total, counting resumed ones).
    pub epochs: usize,
    /// Validate at epoch 1, every n-th epoch and the last.
    pub validate_every: usize,
    /// Seed for augmentation (the order closure has its own).
    pub seed: u64,
    /// Augmentation of training batches; `None` = off.
    pub augment: Option<AugmentConfig>,
    /// Background batch-assembly threads.
    pub loader_threads: usize,
    /// Batches each loader thread may hold ready ahead of the model.
    pub prefetch: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            batch_size: 24,
            epochs: 1,
            validate_every: 1,
            seed: 0,
            augment: None,
            loader_threads: 2,
            prefetch: 2,
        }
    }
}

/// Training errors.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The source failed to produce a sample.
    #[error("reading sample {index}: {source}")]
    Source {
        /// Sample index.
        index: usize,
        /// Cause.
        source: SourceError,
    },
    /// Balanced sampling needs both classes.
    #[error("training data has {pos} positives and {neg} negatives; balanced sampling (ratio {ratio}) needs both; hint: set ratio 0 or fix the split")]
    OneClass {
        /// Positives.
        pos: usize,
        /// Negatives.
        neg: usize,
        /// Ratio requested.
        ratio: usize,
    },
    /// A source's sample shape differs from the model input shape.
    #[error("sample shape {found:?} differs from the model input shape {expected}; hint: re-crop the data or change the model config")]
    InputShape {
        /// What the model takes (without the batch axis).
        expected: String,
        /// Source input shape.
        found: Vec<usize>,
    },
    /// Zero batch size, epochs or threads.
    #[error("train config: {field} must be >= 1")]
    Config {
        /// Field name.
        field: &'static str,
    },
    /// The loss became NaN or infinite.
    #[error("loss became {value} at epoch {epoch}, batch {batch} (lr {lr}): lower the learning rate or check the inputs (the last good checkpoint is kept; nothing is committed)")]
    NonFiniteLoss {
        /// `NaN`, `inf` or `-inf`.
        value: String,
        /// 1-based epoch.
        epoch: usize,
        /// 0-based batch of the epoch.
        batch: usize,
        /// The learning rate.
        lr: f64,
    },
    /// A pass's metrics could not be computed (non-finite outputs).
    #[error("epoch {epoch} {phase}: {source}")]
    PassMetrics {
        /// 1-based epoch.
        epoch: usize,
        /// `trn` or `val`.
        phase: &'static str,
        /// Cause.
        source: MetricsError,
    },
    /// A loader thread stopped without delivering a batch (it panicked).
    #[error("batch loader thread stopped before delivering batch {batch}; hint: the sample source panicked, see the message above")]
    LoaderStopped {
        /// Batch number in the pass.
        batch: usize,
    },
    /// Writing a report or history file failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A report could not be produced.
    #[error("training report: {0}")]
    Report(String),
    /// Augmentation failed.
    #[error(transparent)]
    Augment(#[from] AugmentError),
    /// Metrics failed.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// A checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The optimizer failed.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// Building the model failed.
    #[error(transparent)]
    Model(#[from] crate::nn::luna_model::ModelError),
    /// TensorBoard failed.
    #[error(transparent)]
    Tensorboard(#[from] crate::nn::tensorboard::TensorboardError),
    /// Saving an image failed.
    #[error(transparent)]
    Image(#[from] crate::nn::image::ImageError),
    /// Plotting failed.
    #[error(transparent)]
    Plot(#[from] crate::nn::plot::PlotError),
    /// Torch failed.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    /// The caller's setup (building the model, the order) failed.
    #[error("{0}")]
    Setup(SourceError),
}

/// Where the loop reports: the stage's log and progress bar, or a test's collector.
pub trait Observer: Sync {
    /// One log line.
    fn log(&self, line: &str);
    /// A pass of `len` samples starts; `message` says which (`epoch 3/5 validation`).
    fn pass(&self, len: u64, message: &str);
    /// `n` more samples of the current pass are done.
    fn advance(&self, n: u64);
    /// Called between batches (after [`Observer::advance`]), on the thread that runs the
    /// model: the place to change torch's thread count (a stage's budget grew).
    fn between_batches(&self) {}
}

/// An observer that discards everything.
pub struct Quiet;

impl Observer for Quiet {
    fn log(&self, _: &str) {}
    fn pass(&self, _: u64, _: &str) {}
    fn advance(&self, _: u64) {}
}

/// The model and optimizer a fresh training starts from (built by the caller: a new model, or
/// one loaded for fine-tuning).
pub struct Start<M> {
    /// The model.
    pub model: LoadedModel<M>,
    /// Its optimizer.
    pub opt: Optimizer,
    /// The variables the optimizer trains, when not all (fine-tuning).
    pub trainable: Option<Vec<String>>,
}

/// One training run: everything [`fit`] needs besides the model.
pub struct Fit<'a, T: Task> {
    /// The task.
    pub task: &'a T,
    /// Training samples.
    pub train: &'a dyn SampleSource,
    /// Validation samples, possibly in several sources whose sample shapes differ (whole CT
    /// slices of series of different sizes); their outputs are pooled into one metrics row.
    /// Empty = never validated; every epoch's model is then "best".
    pub val: Vec<&'a dyn SampleSource>,
    /// The sample order of an epoch (1-based).
    pub order: &'a (dyn Fn(usize) -> Result<Vec<usize>, TrainError> + Sync),
    /// Loop settings.
    pub cfg: &'a TrainConfig,
    /// Device to resume on (a fresh start brings its model's device).
    pub device: Device,
    /// Survives crashes: `last/`, `best/`, `history.json`.
    pub resume_dir: &'a Path,
    /// The artifact directory.
    pub out_dir: &'a Path,
    /// Extra TensorBoard roots (mirrors) besides `out_dir/tensorboard`.
    pub tensorboard_mirrors: Vec<PathBuf>,
    /// The caller's parameters, saved in every checkpoint sidecar.
    pub train_params: serde_json::Value,
    /// Where to report.
    pub observer: &'a dyn Observer,
}

/// What a finished [`fit`] returns.
#[derive(Debug, Clone)]
pub struct Fitted<M> {
    /// Every epoch's rows, both phases.
    pub history: Vec<EpochRow<M>>,
    /// The best checkpoint's sidecar.
    pub best: CheckpointMeta,
}

fn check_input<M: Model>(model: &M, source: &dyn SampleSource) -> Result<(), TrainError> {
    let found = source.input_shape();
    model
        .check_input(&found)
        .map_err(|expected| TrainError::InputShape { expected, found })
}

/// Names the epoch and phase of a metrics error.
fn in_pass(e: TrainError, epoch: usize, phase: &'static str) -> TrainError {
    match e {
        TrainError::Metrics(source) => TrainError::PassMetrics {
            epoch,
            phase,
            source,
        },
        other => other,
    }
}

fn non_finite(v: f64) -> Option<String> {
    if v.is_nan() {
        Some("NaN".into())
    } else if v.is_infinite() {
        Some(if v > 0.0 { "inf" } else { "-inf" }.into())
    } else {
        None
    }
}

/// One training pass over `order`; `epoch` (1-based) only labels a non-finite-loss error.
#[allow(clippy::too_many_arguments)]
pub fn train_pass<M: Model, T: Task>(
    model: &M,
    opt: &mut Optimizer,
    task: &T,
    source: &dyn SampleSource,
    order: &[usize],
    cfg: &TrainConfig,
    mut augmenter: Option<&mut Augmenter>,
    epoch: usize,
    observer: &dyn Observer,
) -> Result<(T::Outputs, PassStats), TrainError> {
    check_input(model, source)?;
    let device = model.device();
    let mut outputs = T::Outputs::default();
    let stats = for_each_batch(
        source,
        order,
        cfg.batch_size,
        cfg.loader_threads,
        cfg.prefetch,
        |k, b| {
            let mut input = b.input.to_device(device);
            let mut target = b.target.to_device(device);
            if let Some(a) = augmenter.as_deref_mut() {
                (input, target) = a.augment_pair(&input, &target)?;
            }
            let output = model.forward(&input, true);
            let loss = task.loss(&output, &target)?;
            let mean = loss.mean(Kind::Float);
            let v = mean.double_value(&[]);
            if let Some(value) = non_finite(v) {
                return Err(TrainError::NonFiniteLoss {
                    value,
                    epoch,
                    batch: k,
                    lr: opt.config().lr(),
                });
            }
            opt.backward_step(&mean);
            task.collect(
                &mut outputs,
                &b.indices,
                &output.detach(),
                &target,
                &loss.detach(),
            )?;
            observer.advance(b.indices.len() as u64);
            observer.between_batches();
            Ok(())
        },
    )?;
    Ok((outputs, stats))
}

/// Evaluation pass (eval mode, `no_grad`) over every sample of `source` in order.
pub fn predict<M: Model, T: Task>(
    model: &M,
    task: &T,
    source: &dyn SampleSource,
    cfg: &TrainConfig,
    observer: &dyn Observer,
) -> Result<(T::Outputs, PassStats), TrainError> {
    let mut outputs = T::Outputs::default();
    let stats = predict_into(model, task, source, cfg, observer, &mut outputs)?;
    Ok((outputs, stats))
}

/// [`predict`] adding to existing `outputs` (a pass over several sources).
pub fn predict_into<M: Model, T: Task>(
    model: &M,
    task: &T,
    source: &dyn SampleSource,
    cfg: &TrainConfig,
    observer: &dyn Observer,
    outputs: &mut T::Outputs,
) -> Result<PassStats, TrainError> {
    check_input(model, source)?;
    let device = model.device();
    let order: Vec<usize> = (0..source.len()).collect();
    for_each_batch(
        source,
        &order,
        cfg.batch_size,
        cfg.loader_threads,
        cfg.prefetch,
        |_, b| {
            tch::no_grad(|| {
                let target = b.target.to_device(device);
                let output = model.forward(&b.input.to_device(device), false);
                let loss = task.loss(&output, &target)?;
                task.collect(outputs, &b.indices, &output, &target, &loss)?;
                observer.advance(b.indices.len() as u64);
                observer.between_batches();
                Ok(())
            })
        },
    )
}

/// Runs the task's image samples of `val` through `model` (eval mode, `no_grad`, one batch
/// per source) and returns what the task draws of them.
pub fn draw_images<M: Model, T: Task>(
    model: &M,
    task: &T,
    val: &[&dyn SampleSource],
    first: bool,
) -> Result<Vec<TaskImage>, TrainError> {
    let samples = task.image_samples(val);
    let mut images = Vec::new();
    for (k, source) in val.iter().enumerate() {
        let mine: Vec<&ImageSample> = samples.iter().filter(|s| s.source == k).collect();
        if mine.is_empty() {
            continue;
        }
        check_input(model, *source)?;
        let idx: Vec<usize> = mine.iter().map(|s| s.index).collect();
        let b = build_batch(*source, &idx)?;
        let output = tch::no_grad(|| model.forward(&b.input.to_device(model.device()), false))
            .to_device(Device::Cpu);
        for (j, s) in mine.iter().enumerate() {
            let j = j as i64;
            images.extend(task.draw(
                s,
                &b.input.get(j),
                &output.get(j),
                &b.target.get(j),
                first,
            )?);
        }
    }
    Ok(images)
}

fn copy_files(src: &Path, dst: &Path) -> Result<(), TrainError> {
    let io = |p: &Path| {
        let path = p.to_path_buf();
        move |source| TrainError::Io { path, source }
    };
    std::fs::create_dir_all(dst).map_err(io(dst))?;
    for e in std::fs::read_dir(src).map_err(io(src))? {
        let e = e.map_err(io(src))?;
        if e.file_type().map_err(io(src))?.is_file() {
            let to = dst.join(e.file_name());
            std::fs::copy(e.path(), &to).map_err(io(&to))?;
        }
    }
    Ok(())
}

/// The state a run of [`fit`] carries from epoch to epoch (resumed or fresh).
struct Run<M> {
    lm: LoadedModel<M>,
    opt: Optimizer,
    trainable: Option<Vec<String>>,
    /// The last epoch already done (0 for a fresh run).
    done: usize,
    /// Training samples seen so far.
    total: u64,
    /// The best validation score so far.
    best: Option<f64>,
}

impl<T: Task> Fit<'_, T> {
    /// The last checkpoint (every epoch), what a resume starts from.
    fn last_dir(&self) -> PathBuf {
        self.resume_dir.join("last")
    }
    /// The best checkpoint so far.
    fn best_dir(&self) -> PathBuf {
        self.resume_dir.join("best")
    }
}

/// Trains (or resumes) a model: see the module doc. `start` builds the model and optimizer of a
/// fresh run; it is not called when `resume_dir/last` holds a checkpoint.
pub fn fit<M: Model, T: Task>(
    f: &Fit<'_, T>,
    start: impl FnOnce() -> Result<Start<M>, TrainError>,
) -> Result<Fitted<T::Metrics>, TrainError> {
    let cfg = f.cfg;
    check_config(cfg)?;
    let obs = f.observer;
    let mut run = resume_or_start(f, start)?;
    let mut history: Vec<EpochRow<T::Metrics>> = if run.done > 0 {
        report::load_history(f.resume_dir)
    } else {
        Vec::new()
    };
    history.retain(|r| r.epoch <= run.done);
    let mut roots = vec![f.out_dir.join("tensorboard")];
    roots.extend(f.tensorboard_mirrors.iter().cloned());
    let (mut boards, skipped) = Boards::create(f.task, &roots, &history)?;
    for s in skipped {
        obs.log(&s);
    }
    obs.log(&report::table_header(f.task));
    let val: Vec<&dyn SampleSource> = f.val.iter().copied().filter(|v| !v.is_empty()).collect();
    let mut first_validation = true;
    for epoch in run.done + 1..=cfg.epochs {
        let trn = train_epoch(f, &mut run, epoch)?;
        obs.log(&report::table_row(f.task, &trn));
        boards.add(f.task, &trn)?;
        history.push(trn);
        let mut score = None;
        let validate = epoch == 1 || epoch % cfg.validate_every == 0 || epoch == cfg.epochs;
        if !val.is_empty() && validate {
            let row = validate_epoch(f, &run.lm.model, &val, epoch, run.total)?;
            score = Some(f.task.score(&row.metrics));
            obs.log(&report::table_row(f.task, &row));
            boards.add(f.task, &row)?;
            history.push(row);
            let images = draw_images(&run.lm.model, f.task, &val, first_validation)?;
            first_validation = false;
            boards.add_images("val", run.total, &images)?;
            for img in &images {
                let png = f
                    .out_dir
                    .join("images/val")
                    .join(format!("{}.png", img.tag));
                img.image.save_png(&png)?;
            }
        }
        end_epoch(f, &mut run, epoch, score, val.is_empty(), &history)?;
    }
    finish(f, history)
}

/// Refuses loop settings that cannot run (a zero batch size, epoch count, ...).
fn check_config(cfg: &TrainConfig) -> Result<(), TrainError> {
    for (v, field) in [
        (cfg.batch_size, "batch_size"),
        (cfg.epochs, "epochs"),
        (cfg.loader_threads, "loader_threads"),
        (cfg.validate_every, "validate_every"),
    ] {
        if v == 0 {
            return Err(TrainError::Config { field });
        }
    }
    Ok(())
}

/// The run resumed from the last checkpoint in the resume directory, else started by `start`.
fn resume_or_start<M: Model, T: Task>(
    f: &Fit<'_, T>,
    start: impl FnOnce() -> Result<Start<M>, TrainError>,
) -> Result<Run<M>, TrainError> {
    let last_dir = f.last_dir();
    if !last_dir.join(checkpoint::META_FILE).is_file() {
        let s = start()?;
        return Ok(Run {
            lm: s.model,
            opt: s.opt,
            trainable: s.trainable,
            done: 0,
            total: 0,
            best: None,
        });
    }
    let (lm, opt, meta) = checkpoint::load_resume::<M>(&last_dir, f.device)?;
    f.observer.log(&format!(
        "resuming from epoch {} checkpoint ({} samples seen)",
        meta.epoch, meta.total_samples
    ));
    Ok(Run {
        lm,
        opt,
        trainable: meta.trainable,
        done: meta.epoch,
        total: meta.total_samples,
        best: meta.best_score,
    })
}

/// The training pass of `epoch`: the caller's order, augmentation seeded by `seed + epoch`;
/// returns the epoch's `trn` row.
fn train_epoch<M: Model, T: Task>(
    f: &Fit<'_, T>,
    run: &mut Run<M>,
    epoch: usize,
) -> Result<EpochRow<T::Metrics>, TrainError> {
    let cfg = f.cfg;
    let order = (f.order)(epoch)?;
    f.observer
        .pass(order.len() as u64, &format!("epoch {epoch}/{}", cfg.epochs));
    let mut aug = cfg
        .augment
        .clone()
        .map(|a| Augmenter::new(a, cfg.seed.wrapping_add(epoch as u64)));
    let (outputs, stats) = train_pass(
        &run.lm.model,
        &mut run.opt,
        f.task,
        f.train,
        &order,
        cfg,
        aug.as_mut(),
        epoch,
        f.observer,
    )?;
    run.total += order.len() as u64;
    Ok(EpochRow {
        epoch,
        total_samples: run.total,
        phase: "trn".into(),
        metrics: f
            .task
            .metrics(&outputs)
            .map_err(|e| in_pass(e, epoch, "trn"))?,
        stats,
    })
}

/// The validation pass of `epoch` over every source of `val`, pooled into one `val` row.
fn validate_epoch<M: Model, T: Task>(
    f: &Fit<'_, T>,
    model: &M,
    val: &[&dyn SampleSource],
    epoch: usize,
    total: u64,
) -> Result<EpochRow<T::Metrics>, TrainError> {
    let n: usize = val.iter().map(|v| v.len()).sum();
    f.observer.pass(
        n as u64,
        &format!("epoch {epoch}/{} validation", f.cfg.epochs),
    );
    let mut outputs = T::Outputs::default();
    let (mut secs, mut wait) = (0.0, 0.0);
    for v in val {
        let s = predict_into(model, f.task, *v, f.cfg, f.observer, &mut outputs)?;
        secs += s.seconds;
        wait += s.data_wait_fraction * s.seconds;
    }
    let stats = PassStats {
        samples: n,
        seconds: secs,
        samples_per_sec: n as f64 / secs.max(1e-9),
        data_wait_fraction: wait / secs.max(1e-9),
    };
    let metrics = f
        .task
        .metrics(&outputs)
        .map_err(|e| in_pass(e, epoch, "val"))?;
    Ok(EpochRow {
        epoch,
        total_samples: total,
        phase: "val".into(),
        metrics,
        stats,
    })
}

/// An epoch's end: the best checkpoint when `score` ties or beats the best (or nothing is
/// validated, or none was saved yet), history and the task's tables, the last checkpoint.
fn end_epoch<M: Model, T: Task>(
    f: &Fit<'_, T>,
    run: &mut Run<M>,
    epoch: usize,
    score: Option<f64>,
    never_validated: bool,
    history: &[EpochRow<T::Metrics>],
) -> Result<(), TrainError> {
    // Book p2ch14: best = max(score, best), saved when score == best (a later tie wins).
    let improved = score.is_some_and(|s| run.best.is_none_or(|b| s >= b));
    if improved {
        run.best = score;
    }
    let meta = CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: run.lm.model.model_config(),
        optimizer: run.opt.config().clone(),
        train_params: f.train_params.clone(),
        epoch,
        total_samples: run.total,
        score,
        best_score: run.best,
        rng_state: None,
        trainable: run.trainable.clone(),
    };
    let best_dir = f.best_dir();
    if improved || never_validated || !best_dir.join(checkpoint::META_FILE).is_file() {
        checkpoint::save_checkpoint(&best_dir, &run.lm.vs, &run.opt, &meta)?;
        if improved {
            f.observer.log(&format!(
                "epoch {epoch}: new best {} {:.4}",
                f.task.score_name(),
                score.unwrap_or(0.0)
            ));
        }
    }
    report::save_history(f.resume_dir, history)?;
    // The task's tables and plots are rewritten every epoch, so they are current while
    // training runs (and complete in the artifact once it commits).
    f.task.write_summary(f.out_dir, history)?;
    checkpoint::save_checkpoint(&f.last_dir(), &run.lm.vs, &run.opt, &meta)?;
    Ok(())
}

/// The artifact of a finished run: the best checkpoint as the model, `last/`, the task's
/// tables; logs the best epoch.
fn finish<T: Task>(
    f: &Fit<'_, T>,
    history: Vec<EpochRow<T::Metrics>>,
) -> Result<Fitted<T::Metrics>, TrainError> {
    let best_dir = f.best_dir();
    let best = checkpoint::read_meta(&best_dir)?;
    for (src, dst) in [
        (checkpoint::MODEL_FILE, luna::model::MODEL_WEIGHTS),
        (checkpoint::META_FILE, luna::model::MODEL_META),
    ] {
        let (s, d) = (best_dir.join(src), f.out_dir.join(dst));
        std::fs::copy(&s, &d).map_err(|source| TrainError::Io { path: s, source })?;
    }
    copy_files(&f.last_dir(), &f.out_dir.join("last"))?;
    f.task.write_summary(f.out_dir, &history)?;
    f.observer.log(&format!(
        "best model: epoch {} {} {}",
        best.epoch,
        f.task.score_name(),
        best.score
            .map(|s| format!("{s:.4}"))
            .unwrap_or_else(|| "n/a (not validated)".into())
    ));
    Ok(Fitted { history, best })
}
