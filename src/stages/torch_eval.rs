//! The torch side of `evaluate_classifier` (runs in `luna-torch`).

use std::path::Path;

use polars::prelude::*;

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::nn::checkpoint;
use crate::nn::metrics::{pr_curve, roc_auc, roc_curve};
use crate::nn::plot::plot_lines;
use crate::nn::train::predict;
use crate::stages::evaluate_classifier::{confusion, EvaluateParams};
use crate::stages::torch_data::{read_index, select, write_parquet, CropSet, Task};
use crate::stages::torch_model::{choose_device, staged_checkpoint};

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Runs `evaluate_classifier` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let with = match ctx.with_json() {
        serde_json::Value::Null => serde_json::json!({}),
        v => v.clone(),
    };
    let p: EvaluateParams = serde_json::from_value(with)
        .map_err(|e| StageError::msg(format!("evaluate_classifier params: {e}")))?;
    if let Some(t) = p.threads.0 {
        tch::set_num_threads(t.max(1) as i32);
    } else {
        tch::set_num_threads(ctx.threads().max(1) as i32);
    }
    let device = choose_device(&p.device, ctx)?;
    let up = match &p.model {
        Some(name) => ctx.upstream(name)?.clone(),
        None => ctx
            .upstreams()
            .iter()
            .find(|u| u.kind == "train_classifier")
            .cloned()
            .ok_or_else(|| {
                StageError::msg(format!(
                    "stage `{}` needs a trained model but no upstream stage is a train_classifier",
                    ctx.stage()
                ))
                .with_hint("add the training stage to `needs:` (or name it with `model:`)")
            })?,
    };
    let scratch = ctx.resume_dir()?.join("model");
    let staged = staged_checkpoint(&up.dir, &scratch)?;
    let (lm, meta) = checkpoint::load_model(&staged, device).map_err(dom)?;
    let task: Task = meta
        .train_params
        .get("task")
        .and_then(|t| serde_json::from_value(t.clone()).ok())
        .unwrap_or_default();
    let index = ctx.upstream_file("index.parquet", "a crops table")?;
    let dir = index.parent().unwrap_or(Path::new(".")).to_path_buf();
    let rows = read_index(&index)?;
    let (sel, labels) = select(&rows, task, p.split, task == Task::Nodule, &index)?;
    if sel.is_empty() {
        return Err(StageError::msg(format!(
            "no {:?} rows to evaluate in {}",
            p.split,
            index.display()
        )));
    }
    let set = CropSet::open(&dir, sel, labels)?;
    ctx.log(format!(
        "evaluating `{}` ({task:?} model, epoch {}) on {} {:?} samples",
        up.stage,
        meta.epoch,
        set.rows.len(),
        p.split
    ));
    ctx.progress().start(set.rows.len() as u64, "samples");
    let (pred, stats) = predict(&lm.model, &set, 24, 2, 2).map_err(dom)?;
    ctx.progress()
        .set(set.rows.len() as u64, set.rows.len() as u64, "samples");
    let rows_in_order: Vec<_> = pred.indices.iter().map(|&i| &set.rows[i]).collect();
    let mut df = df!(
        "candidate_id" => rows_in_order.iter().map(|r| r.candidate_id).collect::<Vec<_>>(),
        "series_uid" => rows_in_order.iter().map(|r| r.series_uid.clone()).collect::<Vec<_>>(),
        "label" => pred.labels.clone(),
        "probability" => pred.prob_pos.clone(),
    )
    .map_err(|e| StageError::msg(format!("predictions table: {e}")))?;
    let out = ctx.out_dir().to_path_buf();
    write_parquet(&out.join("predictions.parquet"), &mut df)?;
    let c = confusion(&pred.labels, &pred.prob_pos, p.threshold);
    let auc = roc_auc(&pred.labels, &pred.prob_pos);
    let roc = roc_curve(&pred.labels, &pred.prob_pos);
    let pr = pr_curve(&pred.labels, &pred.prob_pos);
    let positives = pred.labels.iter().filter(|&&l| l).count();
    let doc = serde_json::json!({
        "model_stage": up.stage,
        "task": task,
        "split": p.split,
        "samples": pred.labels.len(),
        "positives": positives,
        "negatives": pred.labels.len() - positives,
        "confusion": c,
        "precision": c.precision,
        "recall": c.recall,
        "f1": c.f1,
        "roc_auc": auc,
        "pr_curve": pr.iter().map(|&(r, p)| [r, p]).collect::<Vec<_>>(),
        "samples_per_sec": stats.samples_per_sec,
    });
    let mpath = out.join("metrics.json");
    std::fs::write(
        &mpath,
        serde_json::to_vec_pretty(&doc).map_err(|e| StageError::msg(e.to_string()))?,
    )
    .map_err(|e| StageError::io(&mpath, e))?;
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
    ctx.log(format!(
        "{task:?} {:?}: threshold {} TP {} FP {} TN {} FN {}; precision {:.4} recall {:.4} F1 {:.4}; ROC AUC {}",
        p.split,
        c.threshold,
        c.tp,
        c.fp,
        c.tn,
        c.r#fn,
        c.precision,
        c.recall,
        c.f1,
        auc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
    ));
    Ok(())
}
