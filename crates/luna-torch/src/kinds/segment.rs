//! The torch half of `segment` (its plan and params: `luna::stages::segment`): per series, slices
//! with their context through the UNet in batches, quantised into the probability volume, committed
//! as a partition from inside the worker.

use std::collections::BTreeSet;
use std::path::Path;

use luna::artifacts::{SegmentSummary, Style};
use luna::engine::context::StageContext;
use luna::engine::error::StageError;
use luna::stages::dataset::{
    ct_file_hashes, find_series, resolve_ct_root, slice_count, upstream_file_hashes,
};
use luna::stages::glue::{table_err, write_json};
use luna::stages::segment::{SegmentParams, SegmentStage, SeriesChoice, SplitChoice};
use luna::store::prob_volume::{quantize, volume_path, write_prob_volume};
use luna::tables::{read_rows, MergedRow, Table};
use tch::{Device, Kind, Tensor};

use crate::kinds::{params, TorchThreads};
use crate::nn::checkpoint;
use crate::nn::{Model, UNet};

fn dom(e: impl std::error::Error + Send + Sync + 'static) -> StageError {
    StageError::domain(e)
}

/// Probabilities of every slice of `hu` ((I, R, C), clipped) with `context` slices on each
/// side (clamped at the ends), `batch` slices at a time, quantised to the stored bytes. Slices
/// whose rows or columns are not a multiple of the UNet's 2^(depth−1) are padded at the bottom
/// and right with −1000 HU (air) and the output cropped back (the book only sees 512×512).
pub fn segment_volume(
    model: &UNet,
    hu: &[i16],
    shape: [usize; 3],
    context: usize,
    batch: usize,
    on_batch: &mut dyn FnMut(usize),
) -> Result<Vec<u8>, StageError> {
    let [ni, nr, nc] = shape;
    let plane = nr * nc;
    let ch = 2 * context + 1;
    let div = 1usize << (model.config().depth - 1).max(0);
    let (pr, pc) = (nr.div_ceil(div) * div, nc.div_ceil(div) * div);
    model
        .check_input(&[ch, pr, pc])
        .map_err(|want| StageError::msg(format!("the segmenter takes {want}, not {ch} slices")))?;
    let device: Device = model.device();
    let mut out = vec![0u8; hu.len()];
    let mut start = 0;
    while start < ni {
        let n = batch.min(ni - start);
        let mut input = vec![-1000f32; n * ch * pr * pc];
        for k in 0..n {
            let c = start + k;
            for j in 0..ch {
                let src = (c + j).saturating_sub(context).min(ni - 1);
                let base = (k * ch + j) * pr * pc;
                for r in 0..nr {
                    let row = &hu[src * plane + r * nc..src * plane + (r + 1) * nc];
                    for (o, &v) in input[base + r * pc..base + r * pc + nc].iter_mut().zip(row) {
                        *o = f32::from(v);
                    }
                }
            }
        }
        let x = Tensor::from_slice(&input)
            .view([n as i64, ch as i64, pr as i64, pc as i64])
            .to_device(device);
        let p = tch::no_grad(|| model.forward(&x, false));
        let probs: Vec<f32> =
            Vec::try_from(p.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
                .map_err(dom)?;
        for k in 0..n {
            for r in 0..nr {
                let src = &probs[k * pr * pc + r * pc..k * pr * pc + r * pc + nc];
                if let Some(bad) = src.iter().position(|v| !v.is_finite()) {
                    return Err(StageError::msg(format!(
                        "the segmenter produced a non-finite probability at slice {}, row {r}, column {bad}",
                        start + k
                    ))
                    .with_hint("the model's weights are corrupt or diverged: retrain it"));
                }
                let dst =
                    &mut out[(start + k) * plane + r * nc..(start + k) * plane + (r + 1) * nc];
                for (o, &v) in dst.iter_mut().zip(src) {
                    *o = quantize(v);
                }
            }
        }
        start += n;
        on_batch(n);
    }
    Ok(out)
}

/// Runs `segment` in the worker.
pub fn execute(ctx: &mut StageContext) -> Result<(), StageError> {
    let p: SegmentParams = params(SegmentStage, ctx)?;
    let threads = TorchThreads::start(ctx, p.threads.0);
    let device = crate::device::choose(*p.device, ctx)?;
    let up = ctx.input("model")?.clone();
    let (lm, meta) = checkpoint::load_model_files::<UNet>(
        &up.dir.join(luna::model::MODEL_WEIGHTS),
        &up.dir.join(luna::model::MODEL_META),
        device,
    )
    .map_err(|e| {
        dom(e).with_hint(format!(
            "`model` must name a train_segmentation stage (`{}` is a {})",
            up.stage, up.kind
        ))
    })?;
    let ch = lm.model.config().in_channels as usize;
    if ch.is_multiple_of(2) {
        return Err(StageError::msg(format!(
            "the segmenter of `{}` takes {ch} input slices; luna needs an odd count (2·context + 1)",
            up.stage
        )));
    }
    let context = (ch - 1) / 2;
    let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
    let on_disk = find_series(&root)?;
    let chosen: Vec<String> = match &p.series {
        SeriesChoice::List(l) => {
            if let Some(u) = l.iter().find(|u| !on_disk.contains_key(*u)) {
                return Err(
                    StageError::msg(format!("series {u} is not under {}", root.display()))
                        .with_hint("list series uids of CTs in the dataset (the .mhd file stems or DICOM SeriesInstanceUIDs)"),
                );
            }
            l.clone()
        }
        SeriesChoice::Split(SplitChoice::All) => on_disk.keys().cloned().collect(),
        SeriesChoice::Split(s) => {
            let table = ctx
                .input("candidates")?
                .dir
                .join(Table::Candidates.file_name());
            let rows = read_rows::<MergedRow>(&table).map_err(table_err)?;
            let set: BTreeSet<String> = rows
                .into_iter()
                .filter(|r| s.includes(r.split))
                .map(|r| r.series_uid)
                .collect();
            set.into_iter()
                .filter(|u| on_disk.contains_key(u))
                .collect()
        }
    };
    let batch = p.batch_size.0.unwrap_or(8).max(1);
    ctx.log(format!(
        "segmenting {} series with `{}` (UNet, epoch {}, {ch} input slices), {batch} slices per batch",
        chosen.len(),
        up.stage,
        meta.epoch
    ));
    let known = upstream_file_hashes(ctx, &root);
    let total_slices: u64 = chosen.iter().map(|u| slice_count(&on_disk[u])).sum();
    ctx.progress().start(total_slices, "slices");
    let t0 = std::time::Instant::now();
    let mut computed = 0usize;
    for uid in &chosen {
        let src = &on_disk[uid];
        let material = serde_json::json!({
            "format": 1,
            "ct": ct_file_hashes(ctx, src, &known)?,
            "model": up.key,
            "context": context,
        });
        let ctx_ref = &*ctx;
        let part = ctx.partition(uid, &material, |dir| {
            let t_read = std::time::Instant::now();
            let ct = src.open().map_err(dom)?;
            let shape = ct.shape_irc();
            let hu = ct.hu_i16_clipped().map_err(dom)?;
            let t_model = std::time::Instant::now();
            let mut on_batch = |n: usize| {
                ctx_ref.progress().inc(n as u64);
                threads.follow();
            };
            let probs = segment_volume(&lm.model, &hu, shape, context, batch, &mut on_batch)?;
            let t_write = std::time::Instant::now();
            let out = volume_path(dir, uid);
            if let Some(parent) = out.parent() {
                std::fs::create_dir_all(parent).map_err(|e| StageError::io(parent, e))?;
            }
            write_prob_volume(&out, uid, shape, ct.geometry(), &probs, 1).map_err(dom)?;
            let end = std::time::Instant::now();
            ctx_ref.log(format!(
                "series {uid}: {} slices in {:.3} s (read {:.3} s, UNet {:.3} s, write {:.3} s)",
                shape[0],
                (end - t_read).as_secs_f64(),
                (t_model - t_read).as_secs_f64(),
                (t_write - t_model).as_secs_f64(),
                (end - t_write).as_secs_f64()
            ));
            Ok(())
        })?;
        computed += usize::from(!part.cached);
        let rel = format!("probs/{uid}.h5");
        ctx.link_into_output(&volume_path(&part.dir, uid), &rel)?;
    }
    let secs = t0.elapsed().as_secs_f64();
    ctx.log(format!(
        "{} series ({computed} computed, {} cached) in {secs:.1}s",
        chosen.len(),
        chosen.len() - computed
    ));
    write_summary(ctx.out_dir(), &chosen, computed)
}

fn write_summary(out: &Path, series: &[String], computed: usize) -> Result<(), StageError> {
    let doc = SegmentSummary {
        series: series.to_vec(),
        computed,
    };
    write_json(&out.join("segment.json"), &doc, Style::Compact)
}
