//! The torch half of `evaluate_classifier` (its plan and params:
//! `luna::stages::evaluate_classifier`): the model bound to the `model` input scores the crops of
//! the chosen split with `nn::train::predict`, the same pass training-time validation runs; counts
//! use the one threshold rule of `nn::metrics`.

use luna::artifacts::{ClassifierInputSummary, ClassifierMetrics, ConfusionAt, Style};
use std::collections::HashMap;

use luna::engine::context::{StageContext, Upstream};
use luna::engine::error::StageError;
use luna::stages::evaluate_classifier::{EvaluateClassifierStage, EvaluateParams};
use luna::stages::glue::{read_json, write_json};
use luna::store::crop_set::{read_index, select, CropSet, Split, Task};
use luna::tables::{read_rows, write_rows, PredictionRow};

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
    if p.predictions.is_some() {
        return pool(ctx, &p);
    }
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
    let diameters = (task == Task::Malignancy).then(|| {
        pred.indices
            .iter()
            .map(|&i| set.rows[i].diameter_mm as f32)
            .collect()
    });
    let scored = Scored {
        model_stage: up.stage.clone(),
        task,
        split: p.split,
        rows: out_rows,
        loss: pred.loss,
        diameters,
        samples_per_sec: stats.samples_per_sec,
    };
    write_results(ctx, &p, scored, Vec::new())
}

/// Pooled folds: the inputs' prediction rows concatenated in list order and scored as one set,
/// each input's own metrics kept beside (see `luna::stages::evaluate_classifier`).
fn pool(ctx: &StageContext, p: &EvaluateParams) -> Result<(), StageError> {
    let crops = ctx.inputs("crops")?;
    let (rows, inputs, diameters) = read_inputs(ctx, &crops)?;
    let Some(first) = inputs.first() else {
        return Err(StageError::msg("no `predictions` input is bound"));
    };
    let (task, split) = (first.metrics.task, first.metrics.split);
    let names: Vec<&str> = inputs.iter().map(|i| i.stage.as_str()).collect();
    ctx.log(format!(
        "pooling {} rows of `{}`",
        rows.len(),
        names.join("`, `")
    ));
    if task == Task::Malignancy && crops.is_empty() {
        ctx.log("no `crops:` bound: the pooled diameter baseline is not computed");
    }
    let models: Vec<&str> = inputs
        .iter()
        .map(|i| i.metrics.model_stage.as_str())
        .collect();
    let scored = Scored {
        model_stage: models.join(", "),
        task,
        split,
        // the loss is not in the pooled rows; compute_at only averages it, and it is not written
        loss: vec![0.0; rows.len()],
        diameters: (task == Task::Malignancy && !crops.is_empty()).then_some(diameters),
        rows,
        samples_per_sec: f64::NAN,
    };
    write_results(ctx, p, scored, inputs)
}

/// The pooled rows, each input's own metrics, the rows' diameters.
type Pooled = (Vec<PredictionRow>, Vec<ClassifierInputSummary>, Vec<f32>);

/// Each `predictions` input's rows (concatenated), its own metrics, and the rows' diameters
/// from its `crops` (the paired one, or the one for all; none when no crops are bound).
fn read_inputs(ctx: &StageContext, crops: &[&Upstream]) -> Result<Pooled, StageError> {
    let (mut rows, mut inputs, mut diameters) = (Vec::new(), Vec::new(), Vec::new());
    let mut seen: HashMap<(String, i64), String> = HashMap::new();
    for (i, up) in ctx.inputs("predictions")?.into_iter().enumerate() {
        let metrics: ClassifierMetrics = read_json(&up.dir.join("metrics.json"))?;
        let input = ClassifierInputSummary {
            stage: up.stage.clone(),
            metrics,
        };
        check_poolable(inputs.first(), &input)?;
        let path = up.dir.join("predictions.parquet");
        let mine = read_rows::<PredictionRow>(&path).map_err(StageError::domain)?;
        for r in &mine {
            let id = (r.series_uid.clone(), r.candidate_id);
            if let Some(first) = seen.insert(id, up.stage.clone()) {
                return Err(StageError::msg(format!(
                    "candidate {} of series {} is scored by both `{first}` and `{}`: pooled inputs must not overlap",
                    r.candidate_id, r.series_uid, up.stage
                ))
                .with_hint("pool one test fold per input"));
            }
        }
        if let Some(c) = crops.get(i).or(crops.first()) {
            diameters.extend(diameters_of(&mine, c)?);
        }
        rows.extend(mine);
        inputs.push(input);
    }
    Ok((rows, inputs, diameters))
}

/// Pooled inputs score one task on one split.
fn check_poolable(
    first: Option<&ClassifierInputSummary>,
    next: &ClassifierInputSummary,
) -> Result<(), StageError> {
    let Some(first) = first else { return Ok(()) };
    let (a, b) = (&first.metrics, &next.metrics);
    if (a.task, a.split) == (b.task, b.split) {
        return Ok(());
    }
    Err(StageError::msg(format!(
        "`{}` scores {:?} on {:?} but `{}` {:?} on {:?}: pooled inputs are one task on one split",
        first.stage, a.task, a.split, next.stage, b.task, b.split
    )))
}

/// The diameter of each row's candidate, from the crops index of `crops`.
fn diameters_of(rows: &[PredictionRow], crops: &Upstream) -> Result<Vec<f32>, StageError> {
    let index = read_index(&crops.dir.join("index.parquet"))?;
    let by_id: HashMap<(&str, i64), f64> = index
        .iter()
        .map(|r| ((r.series_uid.as_str(), r.candidate_id), r.diameter_mm))
        .collect();
    rows.iter()
        .map(|r| {
            by_id
                .get(&(r.series_uid.as_str(), r.candidate_id))
                .map(|&d| d as f32)
                .ok_or_else(|| {
                    StageError::msg(format!(
                        "candidate {} of series {} is not in the crops of `{}`",
                        r.candidate_id, r.series_uid, crops.stage
                    ))
                    .with_hint("bind `crops:` to the build_crops stage each input scored")
                })
        })
        .collect()
}

/// `roc.png` and `pr.png` in `out` (each only when its curve exists).
fn plots(
    out: &std::path::Path,
    roc: Vec<(f64, f64)>,
    pr: Vec<(f64, f64)>,
    auc: Option<f64>,
) -> Result<(), StageError> {
    if !roc.is_empty() {
        plot_lines(
            &out.join("roc.png"),
            &format!("ROC (AUC {:.4})", auc.unwrap_or(0.0)),
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
    Ok(())
}

/// What a scoring produced, before its files are written.
struct Scored {
    model_stage: String,
    task: Task,
    split: Split,
    rows: Vec<PredictionRow>,
    /// Per-row loss (only its per-class means feed `compute_at`; not written).
    loss: Vec<f32>,
    /// Per-row nodule diameter, for the malignancy baseline.
    diameters: Option<Vec<f32>>,
    samples_per_sec: f64,
}

/// Writes `predictions.parquet`, `metrics.json` (with `inputs`, pooled folds' own metrics),
/// `roc.png` and `pr.png`, and logs the numbers.
fn write_results(
    ctx: &StageContext,
    p: &EvaluateParams,
    s: Scored,
    inputs: Vec<ClassifierInputSummary>,
) -> Result<(), StageError> {
    let labels: Vec<bool> = s.rows.iter().map(|r| r.label).collect();
    let probs: Vec<f32> = s.rows.iter().map(|r| r.probability as f32).collect();
    let out = ctx.out_dir().to_path_buf();
    let table = |e: luna::tables::TableError| StageError::domain(e);
    write_rows(&s.rows, &out.join("predictions.parquet")).map_err(table)?;
    let m = compute_at(&labels, &probs, &s.loss, p.threshold).map_err(dom)?;
    let (tp, tn) = (m.pos_correct, m.neg_correct);
    let (fp, fneg) = (m.neg_count - tn, m.pos_count - tp);
    let roc = roc_curve(&labels, &probs);
    let pr = pr_curve(&labels, &probs);
    let diameter_auc = s.diameters.and_then(|d| roc_auc(&labels, &d));
    let doc = ClassifierMetrics {
        model_stage: s.model_stage,
        task: s.task,
        split: s.split,
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
        diameter_auc,
        pr_curve: pr.iter().map(|&(r, p)| [r, p]).collect(),
        samples_per_sec: s.samples_per_sec,
        inputs,
    };
    write_json(&out.join("metrics.json"), &doc, Style::Pretty)?;
    plots(&out, roc, pr, m.auc)?;
    ctx.log(format!(
        "{:?} {:?}: threshold {} TP {tp} FP {fp} TN {tn} FN {fneg}; precision {:.4} recall {:.4} F1 {:.4}; ROC AUC {}",
        s.task,
        s.split,
        p.threshold,
        m.precision,
        m.recall,
        m.f1,
        m.auc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
    ));
    if let Some(a) = diameter_auc {
        ctx.log(format!(
            "ROC AUC of the diameter alone (the book's baseline): {a:.4}"
        ));
    }
    Ok(())
}
