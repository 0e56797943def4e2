//! The torch side of `train_classifier` (runs in `luna-torch`): load data, build or resume the
//! model, run epochs with `nn::train::{train_pass, predict}`, checkpoint, report.
//!
//! The epoch loop lives here rather than in `nn::train::train` because the malignancy task
//! samples three lists (malignant, benign, non-nodule) as the book's `MalignantLunaDataset`,
//! which `nn`'s two-class `epoch_order` cannot express.

use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::events::ProgressHandle;
use crate::nn::checkpoint::{self, CheckpointMeta, LoadedModel};
use crate::nn::train::{epoch_order, predict, train_pass, SampleSource, SourceError};
use crate::nn::{metrics, Augmenter, LunaModelConfig, Optimizer, TrainConfig};
use crate::stages::torch_data::{read_index, select, CropSet, Split, Task};
use crate::stages::torch_model::{
    choose_device, copy_dir, staged_checkpoint, MODEL_META, MODEL_WEIGHTS,
};
use crate::stages::torch_report::{self as report, Boards, EpochRow};
use crate::stages::train_classifier::params_from;

/// Counts samples read, to move the progress bar from the loader threads.
struct Counting<'a> {
    inner: &'a CropSet,
    progress: &'a ProgressHandle,
}

impl SampleSource for Counting<'_> {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn label(&self, i: usize) -> bool {
        self.inner.label(i)
    }
    fn crop_shape(&self) -> [usize; 3] {
        self.inner.crop_shape()
    }
    fn read(&self, i: usize, out: &mut [i16]) -> Result<(), SourceError> {
        self.progress.inc(1);
        self.inner.read(i, out)
    }
}

/// Book `MalignantLunaDataset` order: odd k malignant, k%4==0 benign, k%4==2 non-nodule;
/// lists reshuffled per epoch (seeded by `seed` and `epoch`).
pub fn malignancy_order(
    set: &CropSet,
    n: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, StageError> {
    let mut rng = Pcg64::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut mal = Vec::new();
    let mut ben = Vec::new();
    let mut neg = Vec::new();
    for (i, r) in set.rows.iter().enumerate() {
        match (r.is_nodule, set.labels[i]) {
            (true, true) => mal.push(i),
            (true, false) => ben.push(i),
            (false, _) => neg.push(i),
        }
    }
    if mal.is_empty() || (ben.is_empty() && neg.is_empty()) {
        return Err(StageError::msg(format!(
            "malignancy training needs malignant and non-malignant samples; the training split has {} malignant, {} benign, {} non-nodule",
            mal.len(), ben.len(), neg.len()
        )).with_hint("use more series or check the malignancy labels"));
    }
    mal.shuffle(&mut rng);
    ben.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    let (ben, neg) = match (ben.is_empty(), neg.is_empty()) {
        (true, _) => (neg.clone(), neg),
        (_, true) => (ben.clone(), ben),
        _ => (ben, neg),
    };
    Ok((0..n)
        .map(|k| {
            if k % 2 == 1 {
                mal[(k / 2) % mal.len()]
            } else if k % 4 == 0 {
                ben[(k / 4) % ben.len()]
            } else {
                neg[(k / 4) % neg.len()]
            }
        })
        .collect())
}

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Runs `train_classifier` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p = params_from(ctx)?;
    let threads = p.threads.0.unwrap_or(ctx.threads()).max(1);
    tch::set_num_threads(threads as i32);
    let device = choose_device(&p.device, ctx)?;
    let index = ctx.upstream_file("index.parquet", "a crops table")?;
    let dir = index.parent().unwrap_or(Path::new(".")).to_path_buf();
    let rows = read_index(&index)?;
    let (tr, tl) = select(&rows, p.task, Split::Train, true, &index)?;
    let (vr, vl) = select(&rows, p.task, Split::Val, p.task == Task::Nodule, &index)?;
    if tr.is_empty() {
        return Err(StageError::msg(format!(
            "the crops table {} has no training rows",
            index.display()
        )));
    }
    let train_set = CropSet::open(&dir, tr, tl)?;
    let val_set = CropSet::open(&dir, vr, vl)?;
    let pos = |s: &CropSet| s.labels.iter().filter(|&&l| l).count();
    ctx.log(format!(
        "data: {} training samples ({} positive), {} validation ({} positive), crops {:?}, {}; torch threads {threads}",
        train_set.len(), pos(&train_set), val_set.len(), pos(&val_set), train_set.shape(),
        if train_set.in_memory() { "decoded in memory" } else { "read per sample" }
    ));
    let shape = train_set.shape();
    let model_cfg = LunaModelConfig {
        input_size: [shape[0] as i64, shape[1] as i64, shape[2] as i64],
        ..LunaModelConfig::default()
    };
    let resume = ctx.resume_dir()?;
    let last_dir = resume.join("last");
    let best_dir = resume.join("best");
    let opt_cfg = p.optimizer();
    let trainable = |lm: &LoadedModel| -> Result<Option<Vec<String>>, StageError> {
        Ok(match p.finetune_from {
            Some(_) => Some(checkpoint::finetune_trainable(&lm.vs, p.finetune_depth).map_err(dom)?),
            None => None,
        })
    };
    let (lm, mut opt, start_epoch, mut total, mut best) =
        if last_dir.join(checkpoint::META_FILE).is_file() {
            let (lm, meta) = checkpoint::load_model(&last_dir, device).map_err(dom)?;
            let mut opt =
                Optimizer::new(&lm.vs, meta.optimizer.clone(), trainable(&lm)?.as_deref())
                    .map_err(dom)?;
            opt.load(&last_dir.join(checkpoint::OPTIMIZER_FILE))
                .map_err(dom)?;
            ctx.log(format!(
                "resuming from epoch {} checkpoint ({} samples seen)",
                meta.epoch, meta.total_samples
            ));
            (lm, opt, meta.epoch, meta.total_samples, meta.best_score)
        } else if let Some(src) = &p.finetune_from {
            let up = ctx.upstream(src)?;
            if up.kind != "train_classifier" {
                return Err(StageError::msg(format!(
                    "finetune_from: stage `{src}` is a `{}`, not a train_classifier",
                    up.kind
                )));
            }
            let staged = staged_checkpoint(&up.dir, &resume.join("finetune_source"))?;
            tch::manual_seed(p.seed as i64);
            let (lm, opt, _) =
                checkpoint::load_finetune(&staged, device, p.finetune_depth, opt_cfg.clone())
                    .map_err(dom)?;
            ctx.log(format!(
                "fine-tuning from `{src}` (depth {}: training {})",
                p.finetune_depth,
                opt.param_names().join(", ")
            ));
            (lm, opt, 0, 0, None)
        } else {
            tch::manual_seed(p.seed as i64);
            let lm = LoadedModel::fresh(&model_cfg, device).map_err(dom)?;
            let opt = Optimizer::new(&lm.vs, opt_cfg.clone(), None).map_err(dom)?;
            (lm, opt, 0, 0, None)
        };
    let mut history = if start_epoch > 0 {
        report::load_history(&resume)
    } else {
        Vec::new()
    };
    history.retain(|r| r.epoch <= start_epoch);
    let mut boards = Boards::create(ctx, &history)?;
    ctx.log(format!(
        "optimizer {:?}; augment {:?}; {} epochs x {} samples, batch {}",
        opt.config(),
        p.augment(),
        p.epochs,
        p.epoch_samples(),
        p.batch_size
    ));
    ctx.log(report::table_header());
    let cfg = TrainConfig {
        batch_size: p.batch_size,
        epochs: p.epochs,
        epoch_samples: p.epoch_samples(),
        ratio: p.ratio,
        loader_threads: p.loader_threads.0.unwrap_or(2).max(1),
        prefetch: p.prefetch.0.unwrap_or(2).max(1),
        seed: p.seed,
        augment: p.augment(),
        validate_every: p.validate_every(),
    };
    let progress = ctx.progress().clone();
    for epoch in start_epoch + 1..=p.epochs {
        let order = match p.task {
            Task::Nodule => epoch_order(
                &train_set.labels,
                cfg.ratio,
                cfg.epoch_samples,
                cfg.seed,
                epoch,
            )
            .map_err(dom)?,
            Task::Malignancy => malignancy_order(&train_set, cfg.epoch_samples, cfg.seed, epoch)?,
        };
        progress.start(order.len() as u64, "samples");
        progress.set_message(format!("epoch {epoch}/{}", p.epochs));
        let src = Counting {
            inner: &train_set,
            progress: &progress,
        };
        let mut aug = cfg
            .augment
            .clone()
            .map(|a| Augmenter::new(a, cfg.seed.wrapping_add(epoch as u64)));
        let (tp, ts) =
            train_pass(&lm.model, &mut opt, &src, &order, &cfg, aug.as_mut()).map_err(dom)?;
        total += order.len() as u64;
        let trn = EpochRow {
            epoch,
            total_samples: total,
            phase: "trn".into(),
            metrics: metrics::compute(&tp.labels, &tp.prob_pos, &tp.loss).map_err(dom)?,
            stats: ts,
        };
        ctx.log(report::table_row(&trn));
        boards.add(&trn)?;
        history.push(trn);
        let mut score = None;
        if !val_set.is_empty()
            && (epoch == 1 || epoch % cfg.validate_every == 0 || epoch == p.epochs)
        {
            progress.set_message(format!("epoch {epoch}/{} validation", p.epochs));
            let (vp, vs) = predict(
                &lm.model,
                &val_set,
                cfg.batch_size,
                cfg.loader_threads,
                cfg.prefetch,
            )
            .map_err(dom)?;
            let m = metrics::compute(&vp.labels, &vp.prob_pos, &vp.loss).map_err(dom)?;
            score = Some(match p.task {
                Task::Nodule => m.f1,
                Task::Malignancy => m.auc.unwrap_or(0.0),
            });
            let val = EpochRow {
                epoch,
                total_samples: total,
                phase: "val".into(),
                metrics: m,
                stats: vs,
            };
            ctx.log(report::table_row(&val));
            boards.add(&val)?;
            history.push(val);
        }
        // Book p2ch14: best = max(score, best), saved when score == best (a later tie wins).
        let improved = score.is_some_and(|s| best.is_none_or(|b| s >= b));
        if improved {
            best = score;
        }
        let meta = CheckpointMeta {
            format_version: checkpoint::FORMAT_VERSION,
            model: lm.model.config().clone(),
            optimizer: opt.config().clone(),
            train_params: serde_json::to_value(&p).unwrap_or_default(),
            epoch,
            total_samples: total,
            score,
            best_score: best,
            rng_state: None,
        };
        if improved || val_set.is_empty() || !best_dir.join(checkpoint::META_FILE).is_file() {
            checkpoint::save_checkpoint(&best_dir, &lm.vs, &opt, &meta).map_err(dom)?;
            if improved {
                ctx.log(format!(
                    "epoch {epoch}: new best {} {:.4}",
                    if p.task == Task::Nodule { "F1" } else { "AUC" },
                    score.unwrap_or(0.0)
                ));
            }
        }
        report::save_history(&resume, &history)?;
        // metrics.parquet and the plots are rewritten every epoch, so they are current while
        // training runs (and complete in the artifact once it commits)
        report::write_summary(ctx.out_dir(), &history)?;
        checkpoint::save_checkpoint(&last_dir, &lm.vs, &opt, &meta).map_err(dom)?;
    }
    finish(ctx, &resume, &history)
}

fn finish(ctx: &StageContext, resume: &Path, history: &[EpochRow]) -> Result<(), StageError> {
    let out = ctx.out_dir();
    let best_dir = resume.join("best");
    for (src, dst) in [
        (checkpoint::MODEL_FILE, MODEL_WEIGHTS),
        (checkpoint::META_FILE, MODEL_META),
    ] {
        let (s, d) = (best_dir.join(src), out.join(dst));
        std::fs::copy(&s, &d).map_err(|e| StageError::io(&s, e))?;
    }
    copy_dir(&resume.join("last"), &out.join("last"))?;
    report::write_summary(out, history)?;
    if let Ok(meta) = checkpoint::read_meta(&best_dir) {
        ctx.log(format!(
            "best model: epoch {} score {:?}",
            meta.epoch, meta.score
        ));
    }
    let _ = std::fs::remove_dir_all(resume.join("finetune_source"));
    Ok(())
}
