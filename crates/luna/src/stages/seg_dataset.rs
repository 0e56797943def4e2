//! `seg_dataset`: per CT, the book's annotation mask and the UNet's samples (book-reference
//! §4.2–4.3) as chunked HDF5 (`store::seg_store`: `seg/<uid>.h5`) plus `seg_index.parquet`
//! (one row per sample) and `seg.json` (counts).
//!
//! Per series (the split is the candidates table's, by series, never by candidate):
//! - the whole mask (`annotation_mask`: per nodule a box grown per axis from the centre, AND
//!   raw HU > `threshold_hu`; the module documents the rule at the volume edges);
//! - training series: one (2k+1)×crop×crop sample per annotated nodule (`is_nodule` rows, in
//!   candidates-table order), label = the mask of the centre slice's window;
//! - validation series: the full (2k+1)×R×C context slices of every positive slice (any mask
//!   voxel; `val_slices: all`: of every slice), label = that slice's mask;
//! - test series (a held-out LUNA16 fold) are left out: their CTs are never read, so
//!   segmentation training cannot depend on them.
//!
//! **Partitioned per series**, like `build_crops`: the key material is the CT's content
//! hashes, the series' split and its nodule centres and diameters (the parameters are in every
//! partition key already), so a new series computes only its own partition. Each partition
//! holds `seg.h5` and its rows of the index (`seg_index.parquet`, so a cached partition needs
//! no HDF5 read to be indexed). Series run longest first on `threads` threads; a series
//! decodes only the CT rows its samples need. Rejected: one HDF5 file for the whole dataset
//! (one new CT would rewrite it, and the writers would serialise on the HDF5 lock).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::SEG_DATASET;
use super::dataset::{
    candidate_ct_reads, candidate_ct_slots, check_on_disk, ct_file_hashes, ct_root_inputs,
    estimated_cost, estimated_voxels, find_series, read_candidates, resolve_ct_root,
    upstream_file_hashes,
};
use super::glue::{check_zstd_level, table_err, write_json};
use crate::annotation_mask::{build_mask, check_ct, nodule_centres, train_sample, SliceCache};
use crate::artifacts::{SegDatasetSummary, Style};
use crate::ct::CtSource;
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, Hint, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::store::{SegLayout, SegWriter, ShuffledSlice};
use crate::tables::{read_rows, write_rows, MergedRow, SegIndexRow, Split, SplitChoice, Table};

/// Which slices of a validation series become samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValSlices {
    /// Slices with at least one mask voxel (the book's validation set).
    #[default]
    Positive,
    /// Every slice (whole-CT evaluation).
    All,
}

/// Parameters of `seg_dataset`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegDatasetParams {
    /// k: a sample holds slices c−k … c+k (book: 3, i.e. 7 slices).
    #[serde(default = "three")]
    pub context_slices: usize,
    /// Side of the training crops in voxels (book: 96); divisible by 4, at most the CTs' rows
    /// and columns.
    #[serde(default = "ninety_six")]
    pub crop: usize,
    /// Validation samples: `positive` slices (book) or `all` slices.
    #[serde(default)]
    pub val_slices: ValSlices,
    /// Mask voxels have raw HU above this (book: −700).
    #[serde(default = "minus_700")]
    pub threshold_hu: f64,
    /// zstd level of the HDF5 chunks: -7..=19 (0 is not a level).
    #[serde(default = "one")]
    pub level: i32,
    /// Folder with `subset*/<uid>.mhd`; default: the upstream dataset.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Upstream `merge_candidates` stage (default: the one upstream that provides it).
    #[serde(default)]
    pub candidates: Option<StageRef>,
    /// Upstream dataset stage (default: the one upstream `dataset`, unless `ct_root` is set).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// CTs processed at once (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

fn three() -> usize {
    3
}
fn ninety_six() -> usize {
    96
}
fn minus_700() -> f64 {
    -700.0
}
fn one() -> i32 {
    1
}

/// Validation samples written per HDF5 batch (bounds memory: 8 × 7 × 512² i16 = 29 MB).
const VAL_BATCH: usize = 8;

/// One series of the candidates table: its split and its nodules, in table order.
struct Series {
    split: Split,
    nodules: Vec<MergedRow>,
}

/// The `seg_dataset` kind.
pub struct SegDatasetStage;

impl Stage for SegDatasetStage {
    const PARTITIONED: bool = true;
    type Params = SegDatasetParams;
    const KIND: &'static str = "seg_dataset";
    // 2: Parquet written by the parquet crate instead of polars, and HDF5 files without
    // modification times (reproducible bytes); the same values.
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Annotation masks and UNet samples (7-slice context crops / full slices) per CT into chunked HDF5 + seg_index.parquet";
    const OUTPUTS: &'static [&'static str] = &[SEG_DATASET];

    fn slots(p: &SegDatasetParams) -> Vec<InputSlot> {
        candidate_ct_slots(
            p.candidates.as_ref(),
            p.ct_root.as_ref(),
            p.dataset.as_ref(),
        )
    }

    fn inputs(p: &SegDatasetParams) -> Vec<ExternalInput> {
        ct_root_inputs(p.ct_root.as_ref(), Some("candidates"))
    }

    fn reads(_p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        candidate_ct_reads(at.root, at.by, SERIES)
    }

    fn validate(p: &SegDatasetParams) -> Result<(), ParamError> {
        if p.crop == 0 || !p.crop.is_multiple_of(4) {
            return Err(ParamError::new(
                "crop",
                format!(
                    "crop {} must be a positive multiple of 4 (the UNet pools twice)",
                    p.crop
                ),
            ));
        }
        if p.context_slices > 32 {
            return Err(ParamError::new(
                "context_slices",
                format!(
                    "context_slices {} is more than 32 (a sample would hold {} slices)",
                    p.context_slices,
                    2 * p.context_slices + 1
                ),
            ));
        }
        if !p.threshold_hu.is_finite() {
            return Err(ParamError::new(
                "threshold_hu",
                format!(
                    "threshold_hu must be a finite number, got {}",
                    p.threshold_hu
                ),
            ));
        }
        check_zstd_level(p.level)
    }

    fn run(&self, p: &SegDatasetParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let (cand_file, rows) = read_candidates(ctx)?;
        let by_series = group_series(&cand_file, rows)?;
        let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
        let on_disk = find_series(&root)?;
        check_on_disk(&root, &on_disk, by_series.keys())?;
        let known = upstream_file_hashes(ctx, &root);
        let threads = p.threads.0.unwrap_or(ctx.threads()).max(1);
        ctx.progress().start(by_series.len() as u64, "CTs");
        let computed = AtomicU64::new(0);
        let t0 = Instant::now();
        let ctx_ref = &*ctx;
        let series: Vec<(&String, &Series)> = by_series.iter().collect();
        let work = |(uid, s): (&String, &Series)| -> Result<(String, PathBuf), StageError> {
            let src = &on_disk[uid];
            let nodules: Vec<[f64; 4]> = s
                .nodules
                .iter()
                .map(|r| {
                    let [x, y, z] = r.center_xyz;
                    [x, y, z, r.diameter_mm]
                })
                .collect();
            let material = serde_json::json!({
                "format": 1,
                "ct": ct_file_hashes(ctx_ref, src, &known)?,
                "split": s.split.as_str(),
                "nodules": nodules,
            });
            let part = ctx_ref.partition(uid, &material, |dir| {
                let rows = write_series(src, uid, s, p, &dir.join("seg.h5"))?;
                write_rows(&rows, &dir.join("seg_index.parquet")).map_err(table_err)
            })?;
            if !part.cached {
                computed.fetch_add(1, Ordering::Relaxed);
            }
            ctx_ref.progress().inc(1);
            Ok((uid.clone(), part.dir))
        };
        let results = ctx.longest_first(
            &series,
            threads,
            |(uid, s)| estimated_cost(&on_disk[*uid], sample_bytes(&on_disk[*uid], s, p)),
            |&s| work(s),
        )?;
        let mut index: Vec<SegIndexRow> = Vec::new();
        for res in results {
            let (uid, dir) = res?;
            ctx.link_into_output(&dir.join("seg.h5"), &format!("seg/{uid}.h5"))?;
            let part_index = dir.join("seg_index.parquet");
            index.extend(read_rows::<SegIndexRow>(&part_index).map_err(table_err)?);
        }
        write_rows(&index, &ctx.out_dir().join(Table::SegIndex.file_name())).map_err(table_err)?;
        let count = |d: Split| index.iter().filter(|r| r.dataset == d).count();
        let (n_train, n_val) = (count(Split::Train), count(Split::Val));
        let n_computed = computed.load(Ordering::Relaxed);
        let summary = SegDatasetSummary {
            series: by_series.len(),
            series_computed: n_computed,
            train_samples: n_train,
            val_samples: n_val,
            context_slices: p.context_slices,
            crop: p.crop,
            val_slices: p.val_slices,
            threshold_hu: p.threshold_hu,
        };
        write_json(&ctx.out_dir().join("seg.json"), &summary, Style::Pretty)?;
        ctx.log(format!(
            "{n_train} training and {n_val} validation samples from {} CTs ({n_computed} computed, {} cached) in {:.1}s",
            by_series.len(),
            by_series.len() as u64 - n_computed,
            t0.elapsed().as_secs_f64()
        ));
        Ok(())
    }
}

/// The series a segmentation dataset holds (and its key reads): train and val, never test.
const SERIES: SplitChoice = SplitChoice::TrainVal;

/// Groups the candidate rows of the train and val series by series: the split (one per
/// series) and the nodules in table order; test series are left out. A series with rows in
/// two splits is an error (the split is by series).
fn group_series(
    cand_file: &Path,
    rows: Vec<MergedRow>,
) -> Result<BTreeMap<String, Series>, StageError> {
    let mut by_series: BTreeMap<String, Series> = BTreeMap::new();
    for r in rows.into_iter().filter(|r| SERIES.includes(r.split)) {
        let s = by_series.entry(r.series_uid.clone()).or_insert(Series {
            split: r.split,
            nodules: Vec::new(),
        });
        if s.split != r.split {
            return Err(StageError::msg(format!(
                "{}: series {} has rows in two splits (candidate {})",
                cand_file.display(),
                r.series_uid,
                r.candidate_id
            ))
            .with_hint("split by series (merge_candidates does); never by candidate"));
        }
        if r.is_nodule {
            s.nodules.push(r);
        }
    }
    Ok(by_series)
}

/// Bytes of samples a series will write (a scheduling estimate, not part of any key).
fn sample_bytes(src: &CtSource, s: &Series, p: &SegDatasetParams) -> u64 {
    let depth = 2 * p.context_slices as u64 + 1;
    match s.split {
        Split::Train => s.nodules.len() as u64 * depth * (p.crop * p.crop * 2) as u64,
        // test series never get here (group_series leaves them out)
        Split::Val | Split::Test => {
            let voxels = estimated_voxels(src);
            // All slices, or a guess of a tenth of them for the positive ones.
            let frac = if p.val_slices == ValSlices::All {
                1
            } else {
                10
            };
            voxels * depth * 2 / frac
        }
    }
}

/// Builds one series' mask and samples into `out`; returns its index rows.
fn write_series(
    src: &CtSource,
    uid: &str,
    s: &Series,
    p: &SegDatasetParams,
    out: &Path,
) -> Result<Vec<SegIndexRow>, StageError> {
    let ct = src.open_sparse().map_err(StageError::domain)?;
    let shown = src.display();
    let shape = ct.shape_irc();
    let k = p.context_slices;
    check_ct(shown, uid, shape, k, p.crop).map_err(StageError::domain)?;
    let xyz: Vec<[f64; 3]> = s.nodules.iter().map(|r| r.center_xyz).collect();
    let centres = nodule_centres(&ct, uid, &xyz).map_err(StageError::domain)?;
    let ct_err = |e| StageError::msg(format!("{}: series {uid}: {e}", shown.display()));
    let mask = build_mask(&ct, &centres, p.threshold_hu).map_err(ct_err)?;
    let layout = SegLayout {
        series_uid: uid,
        geometry: ct.geometry(),
        shape,
        context_slices: k,
        crop: p.crop,
        level: p.level,
    };
    let mut w = SegWriter::create(out, &layout, &mask.data, Some(&mask.boxed))
        .map_err(StageError::domain)?;
    let file = format!("seg/{uid}.h5");
    let row = |dataset: Split, n: usize, slice: usize, rc: [i64; 2], label: &[u8]| SegIndexRow {
        series_uid: uid.to_string(),
        split: s.split,
        file: file.clone(),
        dataset,
        row: n as i64,
        slice: slice as i64,
        center_r: rc[0],
        center_c: rc[1],
        label_pixels: label.iter().map(|&v| i64::from(v)).sum(),
    };
    let mut rows = Vec::new();
    match s.split {
        Split::Train => {
            let (mut inputs, mut labels, mut irc) = (Vec::new(), Vec::new(), Vec::new());
            for (n, c) in centres.iter().enumerate() {
                let (input, label) =
                    train_sample(&ct, &mask.data, *c, k, p.crop).map_err(ct_err)?;
                rows.push(row(
                    Split::Train,
                    n,
                    c.index as usize,
                    [c.row, c.col],
                    &label,
                ));
                inputs.extend(input);
                labels.extend(label);
                irc.push([c.index, c.row, c.col].map(|v| v as i32));
            }
            w.write_train(&inputs, &labels, &irc)
                .map_err(StageError::domain)?;
        }
        // test series never get here (group_series leaves them out)
        Split::Val | Split::Test => {
            let slices: Vec<usize> = match p.val_slices {
                ValSlices::Positive => mask.positive_slices(shape),
                ValSlices::All => (0..shape[0]).collect(),
            };
            let plane = shape[1] * shape[2];
            let centre = [(shape[1] / 2) as i64, (shape[2] / 2) as i64];
            let mut cache = SliceCache::new(&ct, ShuffledSlice::new);
            for (b, batch) in slices.chunks(VAL_BATCH).enumerate() {
                let contexts = cache.contexts(batch, k).map_err(ct_err)?;
                for (j, &sl) in batch.iter().enumerate() {
                    let label = &mask.data[sl * plane..(sl + 1) * plane];
                    rows.push(row(Split::Val, b * VAL_BATCH + j, sl, centre, label));
                }
                w.append_val(&contexts, batch).map_err(StageError::domain)?;
            }
        }
    }
    w.finish().map_err(StageError::domain)?;
    Ok(rows)
}
