//! The torch half of `classify_candidates` (its plan and params:
//! `luna::stages::classify_candidates`): per series, the clusters' crops through the nodule (and
//! malignancy) LunaModel, committed as partitions.

use std::collections::BTreeMap;
use std::path::Path;

use luna::ct::Xyz;
use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::froc::{write_seriesuids, Scans, SERIESUIDS_FILE};
use luna::stages::classify_candidates::{ClassifyCandidatesParams, ClassifyCandidatesStage};
use luna::stages::dataset::{
    ct_file_hashes, find_series, no_ct, resolve_ct_root, upstream_file_hashes,
};
use luna::stages::glue::{searched_series, table_err};
use luna::store::crop_set::Task;
use luna::tables::{read_rows, write_rows, ClusterRow, DetectionRow, MergedRow, Table};
use tch::{Device, Kind, Tensor};

use crate::kinds::{params, TorchThreads};
use crate::nn::checkpoint::{self, LoadedModel};
use crate::nn::LunaModel;

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// P(positive) of each crop (C order, `[d, h, w]` each), `batch` at a time, eval mode.
pub fn classify_crops(
    model: &LunaModel,
    crops: &[Vec<i16>],
    shape: [usize; 3],
    batch: usize,
) -> Result<Vec<f64>, StageError> {
    let device: Device = model.device();
    let vox: usize = shape.iter().product();
    let mut out = Vec::with_capacity(crops.len());
    for chunk in crops.chunks(batch.max(1)) {
        let mut data = Vec::with_capacity(chunk.len() * vox);
        for c in chunk {
            data.extend(c.iter().map(|&v| f32::from(v)));
        }
        let x = Tensor::from_slice(&data)
            .view([
                chunk.len() as i64,
                1,
                shape[0] as i64,
                shape[1] as i64,
                shape[2] as i64,
            ])
            .to_device(device);
        let (_, probs) = tch::no_grad(|| model.forward_t(&x, false));
        let p: Vec<f32> = Vec::try_from(
            probs
                .select(1, 1)
                .to_device(Device::Cpu)
                .to_kind(Kind::Float),
        )
        .map_err(dom)?;
        if p.iter().any(|v| !v.is_finite()) {
            return Err(
                StageError::msg("the classifier produced non-finite probabilities")
                    .with_hint("the model's weights are corrupt or diverged: retrain it"),
            );
        }
        out.extend(p.into_iter().map(f64::from));
    }
    Ok(out)
}

/// Runs `classify_candidates` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: ClassifyCandidatesParams = params(ClassifyCandidatesStage, ctx)?;
    let threads = TorchThreads::start(ctx, p.threads.0);
    let device = crate::device::choose(*p.device, ctx)?;
    let load =
        |slot: &str, want: Task| -> Result<Option<(String, String, LoadedModel)>, StageError> {
            let Some(up) = ctx.input_opt(slot)?.cloned() else {
                return Ok(None);
            };
            let (lm, meta) = checkpoint::load_model_files::<LunaModel>(
                &up.dir.join(luna::model::MODEL_WEIGHTS),
                &up.dir.join(luna::model::MODEL_META),
                device,
            )
            .map_err(dom)?;
            check_task(
                slot,
                &up.stage,
                Task::of_train_params(&meta.train_params),
                want,
            )?;
            Ok(Some((up.stage, up.key, lm)))
        };
    let (nstage, nkey, nodule) = load("model", Task::Nodule)?.ok_or_else(|| {
        StageError::msg("classify_candidates needs its `model` input (a nodule classifier)")
    })?;
    let mal = load("malignancy_model", Task::Malignancy)?;
    let shape = nodule.model.config().input_size.map(|v| v as usize);
    if let Some((s, _, m)) = &mal {
        let ms = m.model.config().input_size.map(|v| v as usize);
        if ms != shape {
            return Err(StageError::msg(format!(
                "the malignancy model `{s}` takes {ms:?} crops, the nodule model `{nstage}` {shape:?}"
            ))
            .with_hint("train both classifiers on the same crops"));
        }
    }
    let (points, by_series, scans) = points(ctx)?;
    let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
    let on_disk = find_series(&root)?;
    if let Some(uid) = by_series.keys().find(|u| !on_disk.contains_key(*u)) {
        return Err(StageError::msg(format!(
            "{}: series {uid} has clusters but {}",
            points.display(),
            no_ct(&root, uid)
        ))
        .with_hint("point `ct_root` (or the `dataset` input) at the CTs that were segmented"));
    }
    let known = upstream_file_hashes(ctx, &root);
    let batch = p.batch_size.0.unwrap_or(32).max(1);
    ctx.log(format!(
        "classifying {} clusters of {} series with `{nstage}`{}",
        by_series.values().map(Vec::len).sum::<usize>(),
        by_series.len(),
        mal.as_ref()
            .map(|(s, _, _)| format!(" and `{s}` (malignancy)"))
            .unwrap_or_default()
    ));
    ctx.progress().start(by_series.len() as u64, "CTs");
    let mut all = Vec::new();
    let mut computed = 0usize;
    for (uid, rows) in &by_series {
        let src = &on_disk[uid];
        let centers: Vec<[f64; 3]> = rows.iter().map(|r| r.center_xyz).collect();
        let material = serde_json::json!({
            "format": 1,
            "ct": ct_file_hashes(ctx, src, &known)?,
            "centers": centers,
            "model": nkey,
            "malignancy_model": mal.as_ref().map(|(_, k, _)| k.clone()),
        });
        let part = ctx.partition(uid, &material, |dir| {
            let ct = src.open().map_err(dom)?;
            let mut crops = Vec::with_capacity(rows.len());
            let mut ircs = Vec::with_capacity(rows.len());
            for r in rows {
                let xyz = Xyz {
                    x: r.center_xyz[0],
                    y: r.center_xyz[1],
                    z: r.center_xyz[2],
                };
                let (crop, irc, _) = ct.crop_around_xyz(xyz, shape).map_err(|e| {
                    StageError::msg(format!(
                        "{}: cluster {} of series {uid} at xyz ({:.2}, {:.2}, {:.2}) mm: {e}",
                        src.display().display(),
                        r.cluster_id,
                        xyz.x,
                        xyz.y,
                        xyz.z
                    ))
                })?;
                crops.push(crop);
                ircs.push([irc.index, irc.row, irc.col]);
            }
            let pn = classify_crops(&nodule.model, &crops, shape, batch)?;
            let pm = match &mal {
                Some((_, _, m)) => Some(classify_crops(&m.model, &crops, shape, batch)?),
                None => None,
            };
            let det: Vec<DetectionRow> = rows
                .iter()
                .enumerate()
                .map(|(k, r)| DetectionRow {
                    series_uid: uid.clone(),
                    cluster_id: r.cluster_id,
                    center_xyz: r.center_xyz,
                    center_irc: ircs[k],
                    prob_nodule: pn[k],
                    prob_malignant: pm.as_ref().map(|v| v[k]),
                })
                .collect();
            write_rows(&det, &dir.join("detections.parquet")).map_err(table_err)
        })?;
        computed += usize::from(!part.cached);
        all.extend(
            read_rows::<DetectionRow>(&part.dir.join("detections.parquet")).map_err(table_err)?,
        );
        ctx.progress().inc(1);
        threads.follow();
    }
    write_rows(&all, &ctx.out_dir().join(Table::Detections.file_name())).map_err(table_err)?;
    write_seriesuids(&ctx.out_dir().join(SERIESUIDS_FILE), &scans.uids).map_err(dom)?;
    let accepted = all.iter().filter(|d| d.prob_nodule >= 0.5).count();
    ctx.log(format!(
        "{} detections ({accepted} with P(nodule) >= 0.5) in {} series ({computed} computed, {} cached); {} series searched",
        all.len(),
        by_series.len(),
        by_series.len() - computed,
        scans.len()
    ));
    Ok(())
}

/// A model bound to `slot` must have been trained for `want` (also checked by `luna-torch infer`).
pub fn check_task(slot: &str, stage: &str, got: Task, want: Task) -> Result<(), StageError> {
    if got == want {
        return Ok(());
    }
    let name = |t: Task| match t {
        Task::Nodule => "nodule",
        Task::Malignancy => "malignancy",
    };
    Err(StageError::msg(format!(
        "`{slot}: {stage}` is a {} classifier, but `{slot}` takes a {} classifier",
        name(got),
        name(want)
    ))
    .with_hint(
        "bind `model:` to the train_classifier stage with `task: nodule` and `malignancy_model:` to the one with `task: malignancy`",
    ))
}

/// The series the clusters artifact searched (its `seriesuids.csv`, see `stages::cluster`);
/// every series with clusters must be among them.
fn clustered_series(dir: &Path, stage: &str, by_series: &BySeries) -> Result<Scans, StageError> {
    let scans = searched_series(dir, stage, Table::Clusters, "")?;
    if let Some(uid) = by_series.keys().find(|u| scans.get(u).is_none()) {
        return Err(StageError::msg(format!(
            "{}: series {uid} has clusters but is not listed in {}",
            dir.join(Table::Clusters.file_name()).display(),
            scans.source.display()
        ))
        .with_hint("seriesuids.csv lists every series the clusters come from"));
    }
    Ok(scans)
}

/// A point to classify: a cluster (its id) or a candidate (its `candidate_id`).
struct Point {
    cluster_id: i64,
    center_xyz: [f64; 3],
}

/// The points of each series.
type BySeries = BTreeMap<String, Vec<Point>>;

/// The points per series from the bound input (`clusters` or `candidates`), the table's path
/// (for errors) and the searched series.
fn points(ctx: &StageContext) -> Result<(std::path::PathBuf, BySeries, Scans), StageError> {
    let mut by_series = BySeries::new();
    if let Some(up) = ctx.input_opt("clusters")?.cloned() {
        let path = up.dir.join(Table::Clusters.file_name());
        let rows = read_rows::<ClusterRow>(&path).map_err(table_err)?;
        for r in rows {
            by_series.entry(r.series_uid).or_default().push(Point {
                cluster_id: r.cluster_id,
                center_xyz: r.center_xyz,
            });
        }
        let scans = clustered_series(&up.dir, &up.stage, &by_series)?;
        return Ok((path, by_series, scans));
    }
    let up = ctx.input("candidates")?.clone();
    let path = up.dir.join(Table::Candidates.file_name());
    let rows = read_rows::<MergedRow>(&path).map_err(table_err)?;
    for r in rows {
        by_series.entry(r.series_uid).or_default().push(Point {
            cluster_id: r.candidate_id,
            center_xyz: r.center_xyz,
        });
    }
    let scans = Scans::new(by_series.keys().cloned().collect(), &path).map_err(dom)?;
    Ok((path, by_series, scans))
}
