//! `load_annotations`: the LUNA16 CSVs → typed Parquet tables (`annotations.parquet`,
//! `candidates_raw.parquet`) with the schemas in `schemas/`.
//!
//! The annotations file may be the book's `annotations_with_malignancy.csv` (then
//! `is_malignant` is filled) or LUNA16's `annotations.csv` (then it is null and malignancy
//! stages refuse to run). Bad rows are rejected with `file:line` and reason; `strict: false`
//! drops and counts them instead (listed in `load_report.json` and the stage log).

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{ANNOTATIONS, DATASET};
use super::dataset::resolve_file;
/// Re-exported for the torch halves of the kinds (`luna-torch`) until they import
/// `stages::glue` themselves.
use super::glue::write_json;
use crate::artifacts::{CsvLoad, LoadReport, Style};
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, InputPath, InputSlot, Stage, StageRef};
use crate::stages::glue::table_err;
use crate::tables::BadRow;
use crate::tables::{
    read_annotations_csv, read_candidates_csv, write_rows, AnnotationsKind, CsvOptions, Table,
};

/// Parameters of `load_annotations`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadAnnotationsParams {
    /// Annotations CSV (`annotations_with_malignancy.csv` or `annotations.csv`); default: the
    /// upstream dataset's, preferring the one with malignancy.
    #[serde(default)]
    pub annotations: Option<InputPath>,
    /// Candidates CSV (`candidates_V2.csv`, which LUNA16 says to use, or the V1 `candidates.csv`);
    /// default: the upstream dataset's `candidates_V2.csv`, else its `candidates.csv` (the stage
    /// log and load_report.json name the file read).
    #[serde(default)]
    pub candidates: Option<InputPath>,
    /// Reject the file on bad rows (true) or drop and count them (false).
    #[serde(default = "yes")]
    pub strict: bool,
    /// Upstream dataset stage the CSVs default to (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
}

fn yes() -> bool {
    true
}

/// The `load_annotations` kind.
pub struct LoadAnnotationsStage;

impl Stage for LoadAnnotationsStage {
    type Params = LoadAnnotationsParams;
    const KIND: &'static str = "load_annotations";
    // 2: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 2;
    const DOC: &'static str = "Load annotations and candidates CSVs into typed Parquet tables";
    const OUTPUTS: &'static [&'static str] = &[ANNOTATIONS];

    fn inputs(p: &LoadAnnotationsParams) -> Vec<ExternalInput> {
        let mut v = Vec::new();
        if let Some(a) = &p.annotations {
            v.push(ExternalInput::new("annotations", a.path()));
        }
        if let Some(c) = &p.candidates {
            v.push(ExternalInput::new("candidates", c.path()));
        }
        v
    }

    fn slots(p: &LoadAnnotationsParams) -> Vec<InputSlot> {
        let needed = p.annotations.is_none() || p.candidates.is_none();
        vec![if needed {
            InputSlot::required("dataset", DATASET, p.dataset.as_ref())
        } else {
            InputSlot::optional("dataset", DATASET, p.dataset.as_ref())
        }]
    }

    fn run(&self, p: &LoadAnnotationsParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let ann_path = resolve_file(
            ctx,
            p.annotations.as_ref(),
            &["annotations_with_malignancy.csv", "annotations.csv"],
            "annotations",
        )?;
        let cand_path = resolve_file(
            ctx,
            p.candidates.as_ref(),
            &["candidates_V2.csv", "candidates.csv"],
            "candidates",
        )?;
        if p.candidates.is_none() {
            ctx.log(format!(
                "candidates: {} (the dataset's)",
                cand_path.display()
            ));
        }
        let opts = CsvOptions { strict: p.strict };
        ctx.progress().start(2, "files");
        let ann =
            read_annotations_csv(&ann_path, AnnotationsKind::Plain, opts).map_err(table_err)?;
        ctx.progress().inc(1);
        let cand = read_candidates_csv(&cand_path, opts).map_err(table_err)?;
        ctx.progress().inc(1);
        let malignancy = ann.rows.iter().all(|r| r.is_malignant.is_some()) && !ann.rows.is_empty();
        for (file, n, reasons) in [
            (&ann_path, ann.dropped, &ann.drop_reasons),
            (&cand_path, cand.dropped, &cand.drop_reasons),
        ] {
            if n > 0 {
                ctx.log(format!(
                    "{}: dropped {n} bad rows (strict: false)",
                    file.display()
                ));
                for r in reasons {
                    ctx.log(format!("  {}:{}: {}", file.display(), r.line, r.reason));
                }
            }
        }
        write_rows(
            &ann.rows,
            &ctx.out_dir().join(Table::Annotations.file_name()),
        )
        .map_err(table_err)?;
        write_rows(
            &cand.rows,
            &ctx.out_dir().join(Table::CandidatesRaw.file_name()),
        )
        .map_err(table_err)?;
        let report = LoadReport {
            annotations: csv_load(&ann_path, ann.rows.len(), ann.dropped, &ann.drop_reasons),
            candidates: csv_load(
                &cand_path,
                cand.rows.len(),
                cand.dropped,
                &cand.drop_reasons,
            ),
            malignancy,
        };
        let rp = ctx.out_dir().join("load_report.json");
        write_json(&rp, &report, Style::Pretty)?;
        ctx.log(format!(
            "{} annotations ({}), {} candidates",
            ann.rows.len(),
            if malignancy {
                "with malignancy"
            } else {
                "no malignancy labels"
            },
            cand.rows.len()
        ));
        Ok(())
    }
}

/// One CSV's entry of `load_report.json`.
fn csv_load(file: &Path, rows: usize, dropped: usize, reasons: &[BadRow]) -> CsvLoad {
    CsvLoad {
        file: file.file_name().map(|f| f.to_string_lossy().to_string()),
        rows,
        dropped,
        drop_reasons: reasons
            .iter()
            .map(|r| format!("line {}: {}", r.line, r.reason))
            .collect(),
    }
}
