//! `merge_candidates`: the candidate table models train on (`candidates.parquet`).
//!
//! Default rule = the final book code (p2ch13/14): positives are the annotation rows (centre,
//! diameter, malignancy), negatives the class-0 candidates; `rule: diameter_match` is the
//! chapter-10 rule (every candidate, diameter from the first annotation whose per-axis box of
//! half-width d/4 holds it). The train/val split is **by series**: sorted unique series uids,
//! every `val_stride`-th is validation, never by candidate. `require_on_disk` keeps only series
//! whose CT is present (a partial download), for annotations and candidates alike.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{ANNOTATIONS, CANDIDATES, DATASET};
use super::dataset::{annotation_uids, ct_reads, find_series, resolve_ct_root};
use super::glue::{table_err, write_json};
use crate::artifacts::{MergeReport, Style};
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::tables::{
    merge_rows, read_rows, write_rows, AnnotationRow, CandidateRow, MergeOptions, MergeRule, Table,
};

/// Which merge rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Final book code: annotations are positives, class-0 candidates negatives.
    #[default]
    Final,
    /// Chapter 10: every candidate; diameter from a per-axis box match to an annotation.
    DiameterMatch,
}

/// Parameters of `merge_candidates`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeCandidatesParams {
    /// Merge rule.
    #[serde(default)]
    pub rule: Rule,
    /// Every `val_stride`-th sorted series is validation (book: 10).
    #[serde(default = "ten")]
    pub val_stride: usize,
    /// Keep only series whose CT (`<uid>.mhd`) is on disk under `ct_root`.
    #[serde(default = "yes")]
    pub require_on_disk: bool,
    /// Folder with `subset*/<uid>.mhd`; default: the upstream dataset.
    #[serde(default)]
    pub ct_root: Option<InputPath>,
    /// Upstream `load_annotations` stage (default: the one upstream that provides it).
    #[serde(default)]
    pub annotations: Option<StageRef>,
    /// Upstream dataset stage for `require_on_disk` (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
}

fn ten() -> usize {
    10
}
fn yes() -> bool {
    true
}

/// The `merge_candidates` kind.
pub struct MergeCandidatesStage;

impl Stage for MergeCandidatesStage {
    type Params = MergeCandidatesParams;
    const KIND: &'static str = "merge_candidates";
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Merge annotations and candidates into the training table, split by series";
    const OUTPUTS: &'static [&'static str] = &[CANDIDATES];

    fn slots(p: &MergeCandidatesParams) -> Vec<InputSlot> {
        let ds = if p.require_on_disk && p.ct_root.is_none() {
            InputSlot::required("dataset", DATASET, p.dataset.as_ref())
        } else {
            InputSlot::optional("dataset", DATASET, p.dataset.as_ref())
        };
        vec![
            InputSlot::required("annotations", ANNOTATIONS, p.annotations.as_ref()),
            ds,
        ]
    }

    fn inputs(p: &MergeCandidatesParams) -> Vec<ExternalInput> {
        match (&p.ct_root, p.require_on_disk) {
            (Some(r), true) => {
                vec![ExternalInput::listing("ct_root", r.path()).narrowed_by(Some("annotations"))]
            }
            _ => Vec::new(),
        }
    }

    /// Which of the tables' series are on disk (names only: presence is all it reads).
    fn reads(_p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        let uids = at.by.map(annotation_uids).transpose()?;
        ct_reads(at.root, uids.as_ref())
    }

    fn validate(p: &MergeCandidatesParams) -> Result<(), ParamError> {
        if p.val_stride == 0 {
            return Err(ParamError::new(
                "val_stride",
                "must be at least 1 (every Nth series is validation)",
            ));
        }
        Ok(())
    }

    fn run(&self, p: &MergeCandidatesParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let tables = &ctx.input("annotations")?.dir;
        let ann_file = tables.join(Table::Annotations.file_name());
        let cand_file = tables.join(Table::CandidatesRaw.file_name());
        let ann = read_rows::<AnnotationRow>(&ann_file).map_err(table_err)?;
        let cand = read_rows::<CandidateRow>(&cand_file).map_err(table_err)?;
        let on_disk: Option<BTreeSet<String>> = if p.require_on_disk {
            let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
            let found = find_series(&root)?;
            ctx.log(format!(
                "{} CT series on disk under {}",
                found.len(),
                root.display()
            ));
            Some(found.into_keys().collect())
        } else {
            None
        };
        let opts = MergeOptions {
            rule: match p.rule {
                Rule::Final => MergeRule::Final,
                Rule::DiameterMatch => MergeRule::DiameterMatch,
            },
            val_stride: p.val_stride,
            require_on_disk: on_disk.as_ref(),
        };
        let rows = merge_rows(&ann, &cand, &opts).map_err(table_err)?;
        let pos = rows.iter().filter(|r| r.is_nodule).count();
        let mal = rows.iter().filter(|r| r.is_malignant == Some(true)).count();
        let series: BTreeSet<(&str, &str)> = rows
            .iter()
            .map(|r| (r.series_uid.as_str(), r.split.as_str()))
            .collect();
        let val_series = series.iter().filter(|(_, s)| *s == "val").count();
        write_rows(&rows, &ctx.out_dir().join(Table::Candidates.file_name())).map_err(table_err)?;
        let report = MergeReport {
            rows: rows.len(),
            nodules: pos,
            malignant: mal,
            negatives: rows.len() - pos,
            series: series.len(),
            val_series,
            train_series: series.len() - val_series,
        };
        write_json(
            &ctx.out_dir().join("merge_report.json"),
            &report,
            Style::Pretty,
        )?;
        ctx.log(format!(
            "{} candidates ({pos} nodules, {mal} malignant) in {} series ({val_series} validation)",
            rows.len(),
            series.len()
        ));
        Ok(())
    }
}
