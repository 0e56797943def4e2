//! `cluster`: per series, the book's grouping of segmented voxels into nodule candidates
//! (`crate::cluster`: threshold, one erosion, 6-connected components, HU-weighted centres in
//! world mm) → `clusters.parquet`.
//!
//! Inputs: `probabilities` = an artifact of per-series probability volumes in the
//! `store::prob_volume` layout (`probs/<uid>.h5`, written by `segment`, or by any tool that
//! writes that layout and declares `provides: [probabilities]`), and the CTs (`dataset` input
//! or `ct_root`) for the HU weights. A volume whose shape or geometry disagrees with its CT is
//! an error naming both files. **Partitioned per series**: the key material is the volume's
//! and the CT's content and the threshold, so adding series computes only the new ones; series
//! run longest first (`StageContext::longest_first`).
//!
//! Beside `clusters.parquet` the artifact holds `seriesuids.csv`: every series clustered, one
//! uid per line (the official LUNA16 scan-list format, `froc::write_seriesuids`). A series
//! whose volume yields no cluster has no row in the table but is still a scan that was
//! searched: `classify_candidates` passes the list on, and `evaluate_froc` divides its false
//! positives by it and counts that series' nodules as missed. Rejected: reading the series
//! from the table (loses the empty ones) or a Parquet table of one column (the scan list is
//! the file the official script and `luna froc --seriesuids` take as it is).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{CLUSTERS, PROBABILITIES};
use super::dataset::{
    ct_file_hashes, ct_reads, ct_root_inputs, dataset_slot, find_series, no_ct, resolve_ct_root,
    upstream_file_hashes,
};
/// Re-exported for the torch halves of the kinds (`luna-torch`) until they import
/// `stages::glue` themselves.
use super::glue::table_err;
use crate::cluster::Erosion;
use crate::ct::CtSource;
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, Hint, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::froc::{write_seriesuids, SERIESUIDS_FILE};
use crate::store::prob_volume::{check_matches, read_prob_volume};
use crate::tables::{read_rows, write_rows, ClusterRow, Table};

/// Parameters of `cluster`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterParams {
    /// Voxels with probability > threshold are segmented (book: 0.5).
    #[serde(default = "half")]
    pub threshold: f64,
    /// Erosion before labelling: `3d` (the book's 6-connected cross), `2d` (in-plane cross:
    /// keeps small nodules segmented on one or two thick slices) or `none`.
    #[serde(default)]
    pub erosion: Erosion,
    /// Upstream stage with the probability volumes (default: the one upstream providing them).
    #[serde(default)]
    pub probabilities: Option<StageRef>,
    /// Upstream dataset stage with the CTs (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// Folder with `subset*/<uid>.mhd` instead of a dataset stage.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Hint: series processed at once (default: the stage's thread budget).
    #[serde(default)]
    pub threads: Hint<Option<usize>>,
}

fn half() -> f64 {
    0.5
}

/// The `cluster` kind.
pub struct ClusterStage;

impl Stage for ClusterStage {
    const PARTITIONED: bool = true;
    type Params = ClusterParams;
    const KIND: &'static str = "cluster";
    // 3: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Group segmented voxels into nodule candidates: threshold, erode, label, HU-weighted centres";
    const OUTPUTS: &'static [&'static str] = &[CLUSTERS];

    fn slots(p: &ClusterParams) -> Vec<InputSlot> {
        vec![
            InputSlot::required("probabilities", PROBABILITIES, p.probabilities.as_ref()),
            dataset_slot(p.ct_root.as_ref(), p.dataset.as_ref()),
        ]
    }

    fn inputs(p: &ClusterParams) -> Vec<ExternalInput> {
        ct_root_inputs(p.ct_root.as_ref(), Some("probabilities"))
    }

    /// The CTs of the series that have a probability volume.
    fn reads(_p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        let uids: Option<BTreeSet<String>> = match at.by {
            Some(dir) => Some(volumes(dir)?.into_iter().map(|(uid, _)| uid).collect()),
            None => None,
        };
        ct_reads(at.root, uids.as_ref())
    }

    fn validate(p: &ClusterParams) -> Result<(), ParamError> {
        if !(p.threshold.is_finite() && (0.0..1.0).contains(&p.threshold)) {
            return Err(ParamError::new(
                "threshold",
                format!(
                    "threshold must be a finite number in [0, 1), got {}",
                    p.threshold
                ),
            ));
        }
        Ok(())
    }

    fn run(&self, p: &ClusterParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let volumes = volumes(&ctx.input("probabilities")?.dir)?;
        let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
        let on_disk = find_series(&root)?;
        if let Some((uid, f)) = volumes.iter().find(|(u, _)| !on_disk.contains_key(u)) {
            return Err(StageError::msg(format!(
                "{}: series {uid} has a probability volume but {}",
                f.display(),
                no_ct(&root, uid)
            ))
            .with_hint("point `ct_root` (or the `dataset` input) at the CTs that were segmented"));
        }
        let known = upstream_file_hashes(ctx, &root);
        let threads = p.threads.0.unwrap_or(ctx.threads()).max(1);
        ctx.progress().start(volumes.len() as u64, "CTs");
        let ctx_ref = &*ctx;
        let results = ctx.longest_first(
            &volumes,
            threads,
            |(_, f)| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0),
            |(uid, f)| -> Result<(PathBuf, bool), StageError> {
                let src = &on_disk[uid];
                let material = serde_json::json!({
                    "format": 1,
                    "probabilities": ctx_ref.hash_file(f)?,
                    "ct": ct_file_hashes(ctx_ref, src, &known)?,
                    "threshold": p.threshold,
                    "erosion": p.erosion,
                });
                let part = ctx_ref.partition(uid, &material, |dir| {
                    let (rows, secs) = cluster_series(uid, f, src, p.threshold, p.erosion)?;
                    ctx_ref.log(format!(
                        "series {uid}: {} clusters; clustering took {secs:.3} s",
                        rows.len()
                    ));
                    write_rows(&rows, &dir.join("clusters.parquet")).map_err(table_err)
                })?;
                ctx_ref.progress().inc(1);
                Ok((part.dir.join("clusters.parquet"), part.cached))
            },
        )?;
        let mut all = Vec::new();
        let mut computed = 0;
        for r in results {
            let (file, cached) = r?;
            computed += usize::from(!cached);
            all.extend(read_rows::<ClusterRow>(&file).map_err(table_err)?);
        }
        write_rows(&all, &ctx.out_dir().join(Table::Clusters.file_name())).map_err(table_err)?;
        let uids: Vec<&str> = volumes.iter().map(|(u, _)| u.as_str()).collect();
        write_seriesuids(&ctx.out_dir().join(SERIESUIDS_FILE), &uids)
            .map_err(StageError::domain)?;
        ctx.log(format!(
            "{} clusters in {} series ({computed} computed, {} cached)",
            all.len(),
            volumes.len(),
            volumes.len() - computed
        ));
        Ok(())
    }
}

/// Clusters one series' probability volume against its CT.
/// Returns the rows and the seconds the clustering itself took (threshold, erosion,
/// labelling, centres; without reading the files), which the stage logs.
pub fn cluster_series(
    uid: &str,
    volume: &Path,
    src: &CtSource,
    threshold: f64,
    erosion: Erosion,
) -> Result<(Vec<ClusterRow>, f64), StageError> {
    let vol = read_prob_volume(volume).map_err(StageError::domain)?;
    let ct = src.open().map_err(StageError::domain)?;
    check_matches(volume, &vol, src.display(), ct.shape_irc(), ct.geometry()).map_err(|e| {
        StageError::domain(e).with_hint("re-run the segmentation for this CT (the CT changed, or the volume belongs to another series)")
    })?;
    let hu = ct.hu_i16_clipped().map_err(StageError::domain)?;
    let t0 = std::time::Instant::now();
    let found =
        crate::cluster::find_clusters(&vol.data, &hu, vol.shape, ct.geometry(), threshold, erosion);
    let secs = t0.elapsed().as_secs_f64();
    let rows = found
        .into_iter()
        .map(|c| ClusterRow {
            series_uid: uid.to_string(),
            cluster_id: i64::from(c.id),
            center_xyz: [c.center_xyz.x, c.center_xyz.y, c.center_xyz.z],
            center_irc: c.center_irc,
            voxels: c.voxels as i64,
            prob_max: c.prob_max,
            prob_mean: c.prob_mean,
            bbox: [
                c.bbox[0][0] as i64,
                c.bbox[0][1] as i64,
                c.bbox[1][0] as i64,
                c.bbox[1][1] as i64,
                c.bbox[2][0] as i64,
                c.bbox[2][1] as i64,
            ],
        })
        .collect();
    Ok((rows, secs))
}

/// The probability volumes of a `probabilities` artifact, by series uid (the file stem).
fn volumes(artifact: &Path) -> Result<Vec<(String, PathBuf)>, StageError> {
    let probs = artifact.join("probs");
    let mut volumes: Vec<(String, PathBuf)> = std::fs::read_dir(&probs)
        .map_err(|e| StageError::io(&probs, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|f| f.extension().is_some_and(|x| x == "h5"))
        .filter_map(|f| Some((f.file_stem()?.to_string_lossy().to_string(), f)))
        .collect();
    volumes.sort();
    Ok(volumes)
}
