//! The torch half of `train_segmentation` (its plan and params:
//! `luna::stages::train_segmentation`): the seg_dataset's samples as sources, a fresh UNet, the
//! Segmentation task, `nn::train::fit`.

use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::train_segmentation::{SegScore, TrainSegmentationParams, TrainSegmentationStage};
use luna::store::seg_store::SegStore;
use luna::tables::{read_rows, SegIndexRow, Split, Table};

use crate::kinds::{
    augment_config, cap_threads, optimizer_config, params, tensorboard_mirror, Reporter,
    TorchThreads,
};
use crate::nn::checkpoint::LoadedModel;
use crate::nn::segment::{seg_train_order, SegTrainSamples, SegValSamples, Segmentation};
use crate::nn::train::{fit, Fit, Start, TrainConfig};
use crate::nn::{Optimizer, SampleSource, UNet, UNetConfig};

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Training needs crops to draw from and validation slices to choose the best checkpoint by
/// (without them every epoch would be "best" with an undefined recall): both are errors that
/// name the seg_dataset stage and its index, before anything is trained.
fn check_samples(
    stage: &str,
    index: &std::path::Path,
    crops: usize,
    val_slices: usize,
) -> Result<(), StageError> {
    if crops == 0 {
        return Err(StageError::msg(format!(
            "seg_dataset `{stage}` holds no training samples: {} lists 0 training crops ({val_slices} validation slices); train_segmentation draws its batches from the crops around the training series' nodules",
            index.display()
        ))
        .with_hint("no training series has an annotated nodule: raise merge_candidates' val_stride (every n-th series is validation) or check the annotations"));
    }
    if val_slices == 0 {
        return Err(StageError::msg(format!(
            "seg_dataset `{stage}` holds no validation slices: {} lists 0 validation samples ({crops} training crops); train_segmentation chooses its best checkpoint by validation pixel recall",
            index.display()
        ))
        .with_hint("no validation series has a positive slice: lower merge_candidates' val_stride so a series with nodules is validation, or check seg_dataset's threshold_hu"));
    }
    Ok(())
}

/// Runs `train_segmentation` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: TrainSegmentationParams = params(TrainSegmentationStage, ctx)?;
    let threads = TorchThreads::start(ctx, p.threads.0);
    let loader = cap_threads(ctx, "loader_threads", p.loader_threads.0.unwrap_or(2));
    let device = crate::device::choose(*p.device, ctx)?;
    let data = ctx.input("seg_dataset")?.clone();
    let index = data.dir.join(Table::SegIndex.file_name());
    let rows = read_rows::<SegIndexRow>(&index).map_err(dom)?;
    let mut files: Vec<(String, Split)> = rows.iter().map(|r| (r.file.clone(), r.split)).collect();
    files.sort();
    files.dedup();
    let open = |split: Split| -> Result<Vec<SegStore>, StageError> {
        files
            .iter()
            .filter(|(_, s)| *s == split)
            .map(|(f, _)| SegStore::open(data.dir.join(f)).map_err(dom))
            .collect()
    };
    let (train_stores, val_stores) = (open(Split::Train)?, open(Split::Val)?);
    let trn = SegTrainSamples::load(&train_stores, p.sub_crop).map_err(dom)?;
    if let Some(s) = train_stores.first() {
        let crop = s.crop();
        if p.sub_crop > crop {
            return Err(StageError::msg(format!(
                "sub_crop {} is larger than the seg_dataset's {crop}x{crop} crops",
                p.sub_crop
            ))
            .with_hint("lower sub_crop or rebuild the seg_dataset with a larger crop"));
        }
    }
    let vals: Vec<SegValSamples> = val_stores.iter().map(SegValSamples::new).collect();
    let val_slices: usize = vals.iter().map(|v| v.len()).sum();
    check_samples(&data.stage, &index, trn.crops(), val_slices)?;
    let depth = train_stores
        .first()
        .or(val_stores.first())
        .map(|s| 2 * s.context_slices() + 1)
        .unwrap_or(7);
    ctx.log(format!(
        "data: `{}`: {} training crops in {} series, {val_slices} validation slices in {} series; torch threads {}",
        data.stage,
        trn.crops(),
        train_stores.len(),
        vals.len(),
        threads.get()
    ));
    let cfg = TrainConfig {
        batch_size: p.batch_size,
        epochs: p.epochs,
        validate_every: p.validate_every,
        seed: p.seed,
        augment: p.augment.as_ref().map(|a| augment_config(a, true)),
        loader_threads: loader,
        prefetch: p.prefetch.0.unwrap_or(2).max(1),
    };
    let opt_cfg = optimizer_config(&p.optimizer, 1e-3);
    ctx.log(format!(
        "optimizer {opt_cfg:?}; augment {:?}; {} epochs x {} samples, batch {}, sub-crop {}",
        cfg.augment, p.epochs, p.epoch_samples, p.batch_size, p.sub_crop
    ));
    let order = |epoch: usize| seg_train_order(&trn, p.epoch_samples, p.seed, epoch);
    let resume = ctx.resume_dir()?;
    let mirror = tensorboard_mirror(ctx);
    let reporter = Reporter::new(ctx, &threads);
    let spec = Fit {
        task: &Segmentation {
            best_by_f1: p.best_by == SegScore::F1,
            image_series: p.image_series,
        },
        train: &trn,
        val: vals.iter().map(|v| v as &dyn SampleSource).collect(),
        order: &order,
        cfg: &cfg,
        device,
        resume_dir: &resume,
        out_dir: ctx.out_dir(),
        tensorboard_mirrors: vec![mirror],
        train_params: serde_json::to_value(&p).unwrap_or_default(),
        observer: &reporter,
    };
    let model_cfg = UNetConfig {
        in_channels: depth as i64,
        ..UNetConfig::default()
    };
    fit::<UNet, _>(&spec, || {
        tch::manual_seed(p.seed as i64);
        let model = LoadedModel::<UNet>::build(&model_cfg, device)?;
        let opt = Optimizer::new(&model.vs, opt_cfg.clone(), None)?;
        Ok(Start {
            model,
            opt,
            trainable: None,
        })
    })
    .map_err(dom)?;
    Ok(())
}
