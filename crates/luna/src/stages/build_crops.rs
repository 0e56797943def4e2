//! `build_crops`: one pass per CT extracts all its candidates' crops (default 32×48×48,
//! (index,row,col)) as i16 HU clipped to ±1000 into chunked HDF5 (one sample per chunk, zstd
//! 32015), plus `index.parquet` (candidate id → file, row, centre irc, labels, split).
//!
//! **Partitioned per series.** Each CT is a cache partition keyed by the CT's content hash,
//! the crop width/level and its candidates' centres — not by the whole table — so adding
//! subset1 to a pipeline that processed subset0 computes only subset1's CTs. Rows within a
//! series file are ordered by centre, which keeps a partition independent of candidate ids and
//! of the train/val split. The artifact holds `crops/<uid>.h5` (hard links to the partitions).
//!
//! **Splits.** `split:` crops only the series of one split of the candidates table
//! (`train_val` for a training stage, `test` for the held-out fold; default: every series), so
//! a training's crops never hold, and its stage never reads, a test CT.
//!
//! **Edges.** A window that sticks out of the volume is shifted inside (the book's rule; the
//! candidate is then off-centre, never padded); a centre outside the volume is an error naming
//! the CT and the coordinates. CTs run in parallel (bounded by `threads`), longest first
//! (`StageContext::longest_first`); a CT is memory-mapped when uncompressed, so memory stays
//! near one decoded CT per thread.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::CROPS;
use super::dataset::{
    candidate_ct_reads, candidate_ct_slots, check_on_disk, ct_root_inputs, estimated_cost,
    find_series, read_candidates, resolve_ct_root,
};
/// Re-exported for the torch halves of the kinds (`luna-torch`) until they import
/// `stages::dataset` themselves.
use super::glue::{check_zstd_level, table_err, write_json};
use crate::artifacts::{CropsSummary, Style};
use crate::ct::{CtSource, Xyz};
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, Hint, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::stages::dataset::{ct_file_hashes, upstream_file_hashes};
use crate::store::{CropReader, CropWriter};
use crate::tables::{write_rows, CropIndexRow, MergedRow, SplitChoice, Table};

/// Parameters of `build_crops`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildCropsParams {
    /// Crop size in voxels, (index, row, col).
    #[serde(default = "default_width")]
    pub width_irc: [usize; 3],
    /// Folder with `subset*/<uid>.mhd`; default: the upstream dataset.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Upstream `merge_candidates` stage (default: the one upstream that provides it).
    #[serde(default)]
    pub candidates: Option<StageRef>,
    /// Crop only the series of this split (`train_val` for training, `test` for the held-out
    /// fold, `val`, `train`); default: every series.
    #[serde(default)]
    pub split: Option<SplitChoice>,
    /// Upstream dataset stage (default: the one upstream `dataset`, unless `ct_root` is set).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// zstd level of the HDF5 chunks: -7..=19; negative levels are zstd's fast modes (the
    /// default, 1, is fast and within a few percent of level 3's size on CT crops).
    #[serde(default = "default_level")]
    pub level: i32,
    /// CTs processed at once (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

fn default_width() -> [usize; 3] {
    [32, 48, 48]
}
fn default_level() -> i32 {
    1
}

/// One series' outcome: its uid and the partition's HDF5 file.
type SeriesResult = Result<(String, PathBuf), StageError>;

/// The `build_crops` kind.
pub struct BuildCropsStage;

impl Stage for BuildCropsStage {
    const PARTITIONED: bool = true;
    type Params = BuildCropsParams;
    const KIND: &'static str = "build_crops";
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Extract candidate crops per CT into chunked HDF5 (partitioned per series) + index.parquet";

    const OUTPUTS: &'static [&'static str] = &[CROPS];

    fn slots(p: &BuildCropsParams) -> Vec<InputSlot> {
        candidate_ct_slots(
            p.candidates.as_ref(),
            p.ct_root.as_ref(),
            p.dataset.as_ref(),
        )
    }

    fn inputs(p: &BuildCropsParams) -> Vec<ExternalInput> {
        ct_root_inputs(p.ct_root.as_ref(), Some("candidates"))
    }

    fn reads(p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        candidate_ct_reads(at.root, at.by, p.split.unwrap_or(SplitChoice::All))
    }

    fn validate(p: &BuildCropsParams) -> Result<(), ParamError> {
        if p.width_irc.contains(&0) {
            return Err(ParamError::new(
                "width_irc",
                "every crop dimension must be at least 1",
            ));
        }
        // checked: [2^32, 2^32, 1] must not wrap to 0, [1000, 1000, 1000] must not allocate
        let voxels = p
            .width_irc
            .iter()
            .try_fold(1usize, |acc, &w| acc.checked_mul(w))
            .filter(|&v| v <= MAX_CROP_VOXELS);
        if voxels.is_none() {
            return Err(ParamError::new(
                "width_irc",
                format!(
                    "a crop of {:?} voxels is larger than the limit of {MAX_CROP_VOXELS} voxels (32 MiB of i16 per crop)",
                    p.width_irc
                ),
            ));
        }
        check_zstd_level(p.level)
    }

    fn run(&self, p: &BuildCropsParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let (_, rows) = read_candidates(ctx)?;
        let chosen = p.split.unwrap_or(SplitChoice::All);
        let mut by_series: BTreeMap<String, Vec<MergedRow>> = BTreeMap::new();
        for r in rows.into_iter().filter(|r| chosen.includes(r.split)) {
            by_series.entry(r.series_uid.clone()).or_default().push(r);
        }
        for v in by_series.values_mut() {
            v.sort_by(|a, b| {
                cmp_center(&a.center_xyz, &b.center_xyz).then(a.candidate_id.cmp(&b.candidate_id))
            });
        }
        let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
        let on_disk = find_series(&root)?;
        check_on_disk(&root, &on_disk, by_series.keys())?;
        let known_hashes = upstream_file_hashes(ctx, &root);
        let threads = p.threads.0.unwrap_or(ctx.threads()).max(1);
        let total: u64 = by_series.values().map(|v| v.len() as u64).sum();
        ctx.progress().start(by_series.len() as u64, "CTs");
        let crops_done = AtomicU64::new(0);
        let computed = AtomicU64::new(0);
        let t0 = Instant::now();
        let ctx_ref = &*ctx;
        let series: Vec<(&String, &Vec<MergedRow>)> = by_series.iter().collect();
        let work = |(uid, rows): (&String, &Vec<MergedRow>)| -> SeriesResult {
            let src = &on_disk[uid];
            let ct_hashes = ct_file_hashes(ctx_ref, src, &known_hashes)?;
            let centers: Vec<[f64; 3]> = rows.iter().map(|r| r.center_xyz).collect();
            let material = serde_json::json!({ "format": 1, "ct": ct_hashes, "centers": centers });
            let part = ctx_ref.partition(uid, &material, |dir| {
                write_series(src, uid, rows, p, &dir.join("crops.h5"))
            })?;
            if !part.cached {
                computed.fetch_add(1, Ordering::Relaxed);
            }
            let n = crops_done.fetch_add(rows.len() as u64, Ordering::Relaxed) + rows.len() as u64;
            let rate = n as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            ctx_ref
                .progress()
                .set_message(format!("{n}/{total} crops, {rate:.0} crops/s"));
            ctx_ref.progress().inc(1);
            Ok((uid.clone(), part.dir.join("crops.h5")))
        };
        let crop_bytes = (p.width_irc.iter().product::<usize>() * 2) as u64;
        let results = ctx.longest_first(
            &series,
            threads,
            |(uid, rows)| estimated_cost(&on_disk[*uid], rows.len() as u64 * crop_bytes),
            |&s| work(s),
        )?;
        let mut index: Vec<CropIndexRow> = Vec::new();
        for res in results {
            let (uid, h5) = res?;
            let rel = format!("crops/{uid}.h5");
            ctx.link_into_output(&h5, &rel)?;
            let reader = CropReader::open(&h5).map_err(StageError::domain)?;
            let centers = reader
                .centers()
                .map_err(StageError::domain)?
                .unwrap_or_default();
            for (row, r) in by_series[&uid].iter().enumerate() {
                let c = centers.get(row).copied().unwrap_or([-1, -1, -1]);
                index.push(index_row(r, &rel, row as i64, c));
            }
        }
        write_rows(&index, &ctx.out_dir().join(Table::CropIndex.file_name())).map_err(table_err)?;
        let summary = CropsSummary {
            width_irc: p.width_irc,
            series: by_series.len(),
            crops: total,
            series_computed: computed.load(Ordering::Relaxed),
        };
        write_json(&ctx.out_dir().join("crops.json"), &summary, Style::Pretty)?;
        ctx.log(format!(
            "{total} crops from {} CTs ({} computed, {} cached) in {:.1}s",
            by_series.len(),
            computed.load(Ordering::Relaxed),
            by_series.len() as u64 - computed.load(Ordering::Relaxed),
            t0.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

fn cmp_center(a: &[f64; 3], b: &[f64; 3]) -> std::cmp::Ordering {
    a[0].total_cmp(&b[0])
        .then(a[1].total_cmp(&b[1]))
        .then(a[2].total_cmp(&b[2]))
}

/// The most voxels one crop may have (2^24: 32 MiB as i16, one HDF5 chunk per crop); the
/// book's crops have 73,728.
pub const MAX_CROP_VOXELS: usize = 1 << 24;

/// Extracts and writes one series' crops.
fn write_series(
    src: &CtSource,
    uid: &str,
    rows: &[MergedRow],
    p: &BuildCropsParams,
    out: &Path,
) -> Result<(), StageError> {
    let ct = src.open().map_err(StageError::domain)?;
    let mut w = CropWriter::create(out, p.width_irc, p.level).map_err(StageError::domain)?;
    for r in rows {
        let xyz = Xyz {
            x: r.center_xyz[0],
            y: r.center_xyz[1],
            z: r.center_xyz[2],
        };
        let (crop, irc, _) = ct.crop_around_xyz(xyz, p.width_irc).map_err(|e| {
            StageError::msg(format!(
                "{}: candidate {} of series {uid} at xyz ({:.2}, {:.2}, {:.2}) mm: {e}",
                src.display().display(),
                r.candidate_id,
                xyz.x,
                xyz.y,
                xyz.z
            ))
            .with_hint("check the candidate's world coordinates against the CT's Offset, ElementSpacing and TransformMatrix")
        })?;
        w.append(&crop, [irc.index, irc.row, irc.col])
            .map_err(StageError::domain)?;
    }
    w.finish().map_err(StageError::domain)?;
    Ok(())
}

/// The crop index row of candidate `r`, whose crop is row `row` of `file`, centred at `c`.
fn index_row(r: &MergedRow, file: &str, row: i64, c: [i32; 3]) -> CropIndexRow {
    CropIndexRow {
        candidate_id: r.candidate_id,
        series_uid: r.series_uid.clone(),
        file: file.to_string(),
        row,
        center_irc: c.map(i64::from),
        is_nodule: r.is_nodule,
        has_annotation: r.has_annotation,
        is_malignant: r.is_malignant,
        diameter_mm: r.diameter_mm,
        split: r.split,
    }
}
