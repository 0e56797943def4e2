//! `merge_candidates`: the candidate table models train on (`candidates.parquet`).
//!
//! Rules (`tables::merge` has the details): the default `final` is the book's (p2ch13/14:
//! positives are the annotation rows, centred, negatives the class-0 candidates) and stays the
//! demo's; `official` is LUNA16's false-positive-reduction track (the candidates file's classes
//! as given, off-centre positives, malignancy joined within the LUNA16 radius, else null) and is
//! the LUNA16 template's; `diameter_match` is the chapter-10 rule.
//!
//! The split is **by series**, never by candidate (`tables::split`): `split: { by: stride,
//! val_stride: N }` (the book; `val_stride: N` is its shorthand, default 10) or LUNA16's folds
//! `split: { by: subset, test: K, val: … }`. Each series' `subsetN` folder is recorded in the
//! `subset` column whenever the CTs are looked up (`require_on_disk`, or a `by: subset` split,
//! which needs them); otherwise it is null. `require_on_disk` keeps only series whose CT is
//! present (a partial download), for annotations and candidates alike.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{ANNOTATIONS, CANDIDATES, DATASET};
use super::dataset::{annotation_uids, find_series, reads_of, resolve_ct_root, series_subsets};
use super::glue::{table_err, write_json};
use crate::artifacts::{MergeReport, Style};
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, InputPath, InputSlot, ParamError, ReadItem, ReadsAt, Stage, StageRef,
};
use crate::tables::{
    merge_rows, read_rows, write_rows, AnnotationRow, CandidateRow, MergeOptions, MergeRule, Split,
    SplitSpec, Table,
};

/// Parameters of `merge_candidates`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeCandidatesParams {
    /// Merge rule: `final` (the book's, default), `official` (LUNA16 FP reduction) or
    /// `diameter_match` (book ch. 10).
    #[serde(default)]
    pub rule: MergeRule,
    /// The book's split shorthand: every `val_stride`-th sorted series is validation (default
    /// 10); the same as `split: { by: stride, val_stride: N }`.
    #[serde(default)]
    pub val_stride: Option<usize>,
    /// The series split: `{ by: stride, val_stride: N }` or `{ by: subset, test: K, val: [..] |
    /// next, val_stride: N }` (LUNA16 folds).
    #[serde(default)]
    pub split: Option<SplitSpec>,
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

fn yes() -> bool {
    true
}

impl MergeCandidatesParams {
    /// The split after the shorthand and the default.
    pub fn split(&self) -> SplitSpec {
        match (&self.split, self.val_stride) {
            (Some(s), _) => s.clone(),
            (None, n) => SplitSpec::Stride {
                val_stride: n.unwrap_or(10),
            },
        }
    }

    /// Whether the stage looks up the CTs (to filter series, or to split by subset).
    fn reads_ct_root(&self) -> bool {
        self.require_on_disk || self.split().needs_subsets()
    }
}

/// The `merge_candidates` kind.
pub struct MergeCandidatesStage;

impl Stage for MergeCandidatesStage {
    type Params = MergeCandidatesParams;
    const KIND: &'static str = "merge_candidates";
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    // 3: `subset` column, `test` split, `rule: official`, `split:`.
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Merge annotations and candidates into the training table, split by series";
    const OUTPUTS: &'static [&'static str] = &[CANDIDATES];

    fn slots(p: &MergeCandidatesParams) -> Vec<InputSlot> {
        let ds = if p.reads_ct_root() && p.ct_root.is_none() {
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
        match (&p.ct_root, p.reads_ct_root()) {
            (Some(r), true) => {
                vec![ExternalInput::listing("ct_root", r.path()).narrowed_by(Some("annotations"))]
            }
            _ => Vec::new(),
        }
    }

    /// The series of its tables that are on disk (a listing: names only) and, when the split
    /// is by subset, the `subsetN` folder each sits in (moving a series re-splits it).
    fn reads(p: &Self::Params, at: ReadsAt<'_>) -> Result<Vec<ReadItem>, StageError> {
        let uids = at.by.map(annotation_uids).transpose()?;
        let found = find_series(at.root)?;
        let subsets = match p.split().needs_subsets() {
            true => series_subsets(at.root, &found),
            false => BTreeMap::new(),
        };
        Ok(reads_of(found, uids.as_ref())?
            .into_iter()
            .map(|r| ReadItem {
                item: match subsets.get(&r.item) {
                    Some(n) => format!("subset{n}/{}", r.item),
                    None => r.item,
                },
                files: r.files,
            })
            .collect())
    }

    fn validate(p: &MergeCandidatesParams) -> Result<(), ParamError> {
        if p.split.is_some() && p.val_stride.is_some() {
            return Err(ParamError::new(
                "val_stride",
                "give `val_stride` or `split`, not both (`split: { by: stride, val_stride: N }` is the same)",
            ));
        }
        p.split().validate().map_err(|(field, why)| {
            let key = if p.split.is_some() {
                format!("split.{field}")
            } else {
                field.to_string()
            };
            ParamError::new(key, why)
        })
    }

    fn run(&self, p: &MergeCandidatesParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let tables = &ctx.input("annotations")?.dir;
        let ann_file = tables.join(Table::Annotations.file_name());
        let cand_file = tables.join(Table::CandidatesRaw.file_name());
        let ann = read_rows::<AnnotationRow>(&ann_file).map_err(table_err)?;
        let cand = read_rows::<CandidateRow>(&cand_file).map_err(table_err)?;
        let (on_disk, subsets) = if p.reads_ct_root() {
            let root = resolve_ct_root(ctx, p.ct_root.as_ref())?;
            let found = find_series(&root)?;
            let subsets = series_subsets(&root, &found);
            ctx.log(format!(
                "{} CT series on disk under {} ({} in subsetN folders)",
                found.len(),
                root.display(),
                subsets.len()
            ));
            let on_disk = p.require_on_disk.then(|| found.into_keys().collect());
            (on_disk, subsets)
        } else {
            (None, BTreeMap::new())
        };
        let opts = MergeOptions {
            rule: p.rule,
            split: p.split(),
            require_on_disk: on_disk.as_ref(),
            subsets: Some(&subsets),
        };
        let rows = merge_rows(&ann, &cand, &opts).map_err(table_err)?;
        let pos = rows.iter().filter(|r| r.is_nodule).count();
        let mal = rows.iter().filter(|r| r.is_malignant == Some(true)).count();
        let series: BTreeMap<&str, Split> = rows
            .iter()
            .map(|r| (r.series_uid.as_str(), r.split))
            .collect();
        let count = |s: Split| series.values().filter(|v| **v == s).count();
        let val_series = count(Split::Val);
        write_rows(&rows, &ctx.out_dir().join(Table::Candidates.file_name())).map_err(table_err)?;
        let report = MergeReport {
            rows: rows.len(),
            nodules: pos,
            malignant: mal,
            negatives: rows.len() - pos,
            series: series.len(),
            val_series,
            train_series: count(Split::Train),
            test_series: count(Split::Test),
        };
        write_json(
            &ctx.out_dir().join("merge_report.json"),
            &report,
            Style::Pretty,
        )?;
        ctx.log(format!(
            "{} candidates ({pos} nodules, {mal} malignant) in {} series ({val_series} validation, {} test)",
            rows.len(),
            series.len(),
            report.test_series
        ));
        Ok(())
    }
}
