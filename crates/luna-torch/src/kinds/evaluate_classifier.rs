//! The torch half of `evaluate_classifier` (its plan and params:
//! `luna::stages::evaluate_classifier`): the model bound to the `model` input scores the crops of
//! the chosen split with `nn::train::predict`, the same pass training-time validation runs; counts
//! use the one threshold rule of `nn::metrics`.

use luna::artifacts::{ClassifierMetrics, ConfusionAt, Style};
use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::evaluate_classifier::{EvaluateClassifierStage, EvaluateParams};
use luna::stages::glue::write_json;
use luna::store::crop_set::{read_index, select, CropSet, Task};
use luna::tables::{write_rows, PredictionRow};

use crate::kinds::{params, Reporter, TorchThreads};
use crate::nn::checkpoint;
use crate::nn::classify::{BestBy, Classification, CropSamples};
use crate::nn::metrics::{compute_at, pr_curve, roc_auc, roc_curve};
use crate::nn::plot::plot_lines;
use crate::nn::train::{predict, TrainConfig};
use crate::nn::LunaModel;

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Runs `evaluate_classifier` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: EvaluateParams = params(EvaluateClassifierStage, ctx)?;
    let threads = TorchThreads::start(ctx, p.threads.0);
    let device = crate::device::choose(*p.device, ctx)?;
    let up = ctx.input("model")?.clone();
    let (lm, meta) = checkpoint::load_model_files::<LunaModel>(
        &up.dir.join(luna::model::MODEL_WEIGHTS),
        &up.dir.join(luna::model::MODEL_META),
        device,
    )
    .map_err(dom)?;
    let task = Task::of_train_params(&meta.train_params);
    let crops = ctx.input("crops")?.clone();
    let index = crops.dir.join("index.parquet");
    let rows = read_index(&index)?;
    let (sel, labels) = select(&rows, task, p.split, task == Task::Nodule, &index)?;
    if sel.is_empty() {
        return Err(StageError::msg(format!(
            "no {:?} rows to evaluate in {}",
            p.split,
            index.display()
        )));
    }
    let set = CropSet::open(&crops.dir, sel, labels)?;
    ctx.log(format!(
        "evaluating `{}` ({task:?} model, epoch {}) on {} {:?} samples of `{}`",
        up.stage,
        meta.epoch,
        set.rows.len(),
        p.split,
        crops.stage
    ));
    ctx.progress().start(set.rows.len() as u64, "samples");
    let cls = Classification {
        best_by: BestBy::F1,
    };
    let cfg = TrainConfig {
        batch_size: 24,
        ..TrainConfig::default()
    };
    let (pred, stats) = predict(
        &lm.model,
        &cls,
        &CropSamples(&set),
        &cfg,
        &Reporter::new(ctx, &threads),
    )
    .map_err(dom)?;
    let out_rows: Vec<PredictionRow> = pred
        .indices
        .iter()
        .zip(&pred.labels)
        .zip(&pred.prob_pos)
        .map(|((&i, &label), &prob)| PredictionRow {
            candidate_id: set.rows[i].candidate_id,
            series_uid: set.rows[i].series_uid.clone(),
            label,
            probability: f64::from(prob),
        })
        .collect();
    let out = ctx.out_dir().to_path_buf();
    let table = |e: luna::tables::TableError| StageError::domain(e);
    write_rows(&out_rows, &out.join("predictions.parquet")).map_err(table)?;
    let m = compute_at(&pred.labels, &pred.prob_pos, &pred.loss, p.threshold).map_err(dom)?;
    let (tp, tn) = (m.pos_correct, m.neg_correct);
    let (fp, fneg) = (m.neg_count - tn, m.pos_count - tp);
    let roc = roc_curve(&pred.labels, &pred.prob_pos);
    let diameter_auc = (task == Task::Malignancy).then(|| {
        let d: Vec<f32> = pred
            .indices
            .iter()
            .map(|&i| set.rows[i].diameter_mm as f32)
            .collect();
        roc_auc(&pred.labels, &d)
    });
    let pr = pr_curve(&pred.labels, &pred.prob_pos);
    let doc = ClassifierMetrics {
        model_stage: up.stage.clone(),
        task,
        split: p.split,
        samples: m.count,
        positives: m.pos_count,
        negatives: m.neg_count,
        confusion: ConfusionAt {
            threshold: p.threshold,
            rule: "positive when probability >= threshold".into(),
            tp,
            fp,
            tn,
            fn_: fneg,
            precision: m.precision,
            recall: m.recall,
            f1: m.f1,
        },
        precision: m.precision,
        recall: m.recall,
        f1: m.f1,
        roc_auc: m.auc,
        diameter_auc: diameter_auc.flatten(),
        pr_curve: pr.iter().map(|&(r, p)| [r, p]).collect(),
        samples_per_sec: stats.samples_per_sec,
    };
    write_json(&out.join("metrics.json"), &doc, Style::Pretty)?;
    if !roc.is_empty() {
        plot_lines(
            &out.join("roc.png"),
            &format!("ROC (AUC {:.4})", m.auc.unwrap_or(0.0)),
            "false positive rate",
            &[
                ("ROC".into(), roc),
                ("chance".into(), vec![(0.0, 0.0), (1.0, 1.0)]),
            ],
        )
        .map_err(dom)?;
    }
    if !pr.is_empty() {
        plot_lines(
            &out.join("pr.png"),
            "precision vs recall",
            "recall",
            &[("precision".into(), pr)],
        )
        .map_err(dom)?;
    }
    ctx.log(format!(
        "{task:?} {:?}: threshold {} TP {tp} FP {fp} TN {tn} FN {fneg}; precision {:.4} recall {:.4} F1 {:.4}; ROC AUC {}",
        p.split,
        p.threshold,
        m.precision,
        m.recall,
        m.f1,
        m.auc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
    ));
    if let Some(a) = diameter_auc.flatten() {
        ctx.log(format!(
            "ROC AUC of the diameter alone (the book's baseline): {a:.4}"
        ));
    }
    Ok(())
}
