//! The torch half of `train_classifier` (its plan and params: `luna::stages::train_classifier`):
//! turn the stage's parameters into the generic loop's inputs — the crops as samples, the book's
//! sampler for the task, a fresh or fine-tuned LunaModel — and call `nn::train::fit`.

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::train_classifier::{TrainClassifierStage, TrainParams};
use luna::store::crop_set::{read_index, select, CropSet, Split, Task};

use crate::kinds::{
    augment_config, cap_threads, optimizer_config, params, tensorboard_mirror, Reporter,
    TorchThreads,
};
use crate::nn::checkpoint::{self, LoadedModel};
use crate::nn::classify::{malignancy_order, BestBy, Classification, CropSamples};
use crate::nn::loader::balanced_order;
use crate::nn::train::{fit, Fit, Start, TrainConfig, TrainError};
use crate::nn::{LunaModel, LunaModelConfig, Optimizer, OptimizerConfig};

/// The optimizer after defaults (book: SGD lr 1e-3, or 3e-3 when fine-tuning).
pub fn optimizer(p: &TrainParams) -> OptimizerConfig {
    let default_lr = if p.finetune_from.is_some() {
        3e-3
    } else {
        1e-3
    };
    optimizer_config(&p.optimizer, default_lr)
}

/// The loop settings of `p`.
pub fn train_config(p: &TrainParams) -> TrainConfig {
    TrainConfig {
        batch_size: p.batch_size,
        epochs: p.epochs,
        validate_every: p.validate_every(),
        seed: p.seed,
        augment: p.augment.as_ref().map(|a| augment_config(a, false)),
        loader_threads: p.loader_threads.0.unwrap_or(2).max(1),
        prefetch: p.prefetch.0.unwrap_or(2).max(1),
    }
}

/// The training and validation sets of a crops artifact for `task`.
pub fn crop_sets(
    crops_dir: &std::path::Path,
    task: Task,
) -> Result<(CropSet, CropSet), StageError> {
    let index = crops_dir.join("index.parquet");
    let rows = read_index(&index)?;
    let (tr, tl) = select(&rows, task, Split::Train, true, &index)?;
    let (vr, vl) = select(&rows, task, Split::Val, task == Task::Nodule, &index)?;
    if tr.is_empty() {
        return Err(StageError::msg(format!(
            "the crops table {} has no training rows",
            index.display()
        )));
    }
    Ok((
        CropSet::open(crops_dir, tr, tl)?,
        CropSet::open(crops_dir, vr, vl)?,
    ))
}

/// Positives and negatives of the training set for the task (malignancy: malignant vs the
/// rest).
fn class_counts(set: &CropSet) -> (usize, usize) {
    let pos = set.labels.iter().filter(|&&l| l).count();
    (pos, set.labels.len() - pos)
}

/// The book's sample order of an epoch for `task` over `set`; a single-class set (allowed by
/// `allow_single_class`) is an unbalanced shuffled pass.
pub fn order(p: &TrainParams, set: &CropSet, epoch: usize) -> Result<Vec<usize>, TrainError> {
    let (pos, neg) = class_counts(set);
    if pos == 0 || neg == 0 {
        return balanced_order(&set.labels, 0, p.epoch_samples(), p.seed, epoch);
    }
    match p.task {
        Task::Nodule => balanced_order(&set.labels, p.ratio, p.epoch_samples(), p.seed, epoch),
        Task::Malignancy => {
            let kinds: Vec<(bool, bool)> = set
                .rows
                .iter()
                .zip(&set.labels)
                .map(|(r, &l)| (r.is_nodule, l))
                .collect();
            malignancy_order(&kinds, p.epoch_samples(), p.seed, epoch)
        }
    }
}

/// The task of `p`: best checkpoint by F1 (nodule) or ROC AUC (malignancy), as p2ch14.
pub fn task(p: &TrainParams) -> Classification {
    Classification {
        best_by: match p.task {
            Task::Nodule => BestBy::F1,
            Task::Malignancy => BestBy::Auc,
        },
    }
}

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Where a training run reads and writes (the stage passes its own; tests pass temp dirs).
pub struct Dirs<'a> {
    /// The crops artifact.
    pub crops: &'a std::path::Path,
    /// The model artifact to fine-tune from (`finetune_from`), with its stage name.
    pub finetune: Option<(&'a std::path::Path, &'a str)>,
    /// Survives crashes (checkpoints, history).
    pub resume: &'a std::path::Path,
    /// The artifact directory.
    pub out: &'a std::path::Path,
    /// TensorBoard mirrors.
    pub mirrors: Vec<std::path::PathBuf>,
}

/// The whole training of `train_classifier` given its parameters: what the stage runs, and
/// what the tests call to prove it.
pub fn train(
    p: &TrainParams,
    dirs: &Dirs<'_>,
    device: tch::Device,
    observer: &dyn crate::nn::train::Observer,
) -> Result<crate::nn::train::Fitted<crate::nn::Metrics>, StageError> {
    let (train_set, val_set) = crop_sets(dirs.crops, p.task)?;
    let (tp, tn) = class_counts(&train_set);
    if tp == 0 || tn == 0 {
        let what = match p.task {
            Task::Nodule => ("nodules", "non-nodules"),
            Task::Malignancy => ("malignant", "not malignant"),
        };
        if !p.allow_single_class {
            return Err(StageError::msg(format!(
                "the training split has {tp} {} and {tn} {} samples: a classifier needs both classes",
                what.0, what.1
            ))
            .with_hint("add series with both classes, change the split (val_stride), or set `allow_single_class: true`"));
        }
        observer.log(&format!(
            "warning: the training split has {tp} {} and {tn} {} samples (allow_single_class: true): sampling without balancing",
            what.0, what.1
        ));
    }
    let pos = |s: &CropSet| s.labels.iter().filter(|&&l| l).count();
    observer.log(&format!(
        "data: {} training samples ({} positive), {} validation ({} positive), crops {:?}, {}",
        train_set.rows.len(),
        pos(&train_set),
        val_set.rows.len(),
        pos(&val_set),
        train_set.shape(),
        if train_set.in_memory() {
            "decoded in memory"
        } else {
            "read per sample"
        }
    ));
    let shape = train_set.shape();
    let model_cfg = LunaModelConfig {
        input_size: [shape[0] as i64, shape[1] as i64, shape[2] as i64],
        ..LunaModelConfig::default()
    };
    let cfg = train_config(p);
    let opt_cfg = optimizer(p);
    observer.log(&format!(
        "optimizer {opt_cfg:?}; augment {:?}; {} epochs x {} samples, batch {}",
        cfg.augment,
        p.epochs,
        p.epoch_samples(),
        p.batch_size
    ));
    let task = task(p);
    let (trn, val) = (CropSamples(&train_set), CropSamples(&val_set));
    let order = |epoch: usize| order(p, &train_set, epoch);
    let spec = Fit {
        task: &task,
        train: &trn,
        val: vec![&val],
        order: &order,
        cfg: &cfg,
        device,
        resume_dir: dirs.resume,
        out_dir: dirs.out,
        tensorboard_mirrors: dirs.mirrors.clone(),
        train_params: serde_json::to_value(p).unwrap_or_default(),
        observer,
    };
    fit::<LunaModel, _>(&spec, || {
        tch::manual_seed(p.seed as i64);
        match dirs.finetune {
            Some((dir, stage)) => {
                let (model, opt, trainable) = checkpoint::load_finetune::<LunaModel>(
                    &dir.join(luna::model::MODEL_WEIGHTS),
                    &dir.join(luna::model::MODEL_META),
                    device,
                    p.finetune_depth,
                    opt_cfg.clone(),
                )?;
                observer.log(&format!(
                    "fine-tuning from `{stage}` (depth {}: training {})",
                    p.finetune_depth,
                    opt.param_names().join(", ")
                ));
                Ok(Start {
                    model,
                    opt,
                    trainable: Some(trainable),
                })
            }
            None => {
                let model = LoadedModel::fresh(&model_cfg, device)?;
                let opt = Optimizer::new(&model.vs, opt_cfg.clone(), None)?;
                Ok(Start {
                    model,
                    opt,
                    trainable: None,
                })
            }
        }
    })
    .map_err(dom)
}

/// Runs `train_classifier` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let mut p: TrainParams = params(TrainClassifierStage, ctx)?;
    let threads = TorchThreads::start(ctx, p.threads.0);
    p.loader_threads.0 = Some(cap_threads(
        ctx,
        "loader_threads",
        p.loader_threads.0.unwrap_or(2),
    ));
    ctx.log(format!("torch threads {}", threads.get()));
    let device = crate::device::choose(*p.device, ctx)?;
    let crops = ctx.input("crops")?.clone();
    let finetune = ctx.input_opt("finetune_from")?.cloned();
    let resume = ctx.resume_dir()?;
    let mirror = tensorboard_mirror(ctx);
    let dirs = Dirs {
        crops: &crops.dir,
        finetune: finetune
            .as_ref()
            .map(|u| (u.dir.as_path(), u.stage.as_str())),
        resume: &resume,
        out: ctx.out_dir(),
        mirrors: vec![mirror],
    };
    train(&p, &dirs, device, &Reporter::new(ctx, &threads))?;
    Ok(())
}
