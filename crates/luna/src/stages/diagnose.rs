//! `diagnose`: per patient (series), the detections the nodule classifier accepts, their
//! malignancy, a patient score and verdict (`crate::diagnose`) → `diagnosis.parquet` and
//! `report.md`; with ground truth (a `candidates` table: its annotated nodules with diameter
//! and malignancy), the book's 3×4 confusion table per series and in total, printed as the book
//! prints it, and the per-patient ROC AUC.
//!
//! Decisions:
//! - **Patients** = the series the detections artifact searched (its `seriesuids.csv`, see
//!   `stages::cluster`), not only those with detections: a CT in which nothing was found is a
//!   patient with score 0, and its true nodules are Complete Misses in the book's table. A
//!   detection of a series not in that list is an error.
//! - `ground_truth: false` declares no `candidates` input at all, so none is bound through the
//!   ancestors (a detection chain's models descend from a dataset's candidate table, which
//!   knows none of the CTs `luna detect` is given). Rejected: binding it and skipping unknown
//!   series (a wrong table would then silently give no confusion table).
//! - With ground truth, every patient must have rows in the candidate table (it lists every
//!   candidate of every series of the dataset); a series it does not know is an error, not
//!   "no nodules" — the table would belong to another dataset.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{CANDIDATES, DETECTIONS, DIAGNOSIS};
use super::glue::{searched_series, table_err, write_json};
use crate::artifacts::{DiagnosisSummary, Style};
use crate::diagnose::{
    add_confusion, match_and_score, patient_score, render_confusion, truth_by_series, Confusion,
    Detection, PatientScore, Rules, TrueNodule,
};
use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{InputSlot, ParamError, Stage, StageRef};
use crate::froc::Scans;
use crate::tables::{read_rows, write_rows, DetectionRow, DiagnosisRow, MergedRow, Table};

/// How the patient score combines nodules (YAML).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScoreParam {
    /// The highest P(malignant) of the accepted nodules.
    #[default]
    Max,
    /// 1 − Π(1 − P(malignant)).
    NoisyOr,
}

/// Parameters of `diagnose`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiagnoseParams {
    /// A detection is a nodule when P(nodule) >= this (book: 0.5).
    #[serde(default = "half")]
    pub nodule_threshold: f64,
    /// A patient is malignant when the score >= this (book: 0.5).
    #[serde(default = "half")]
    pub malignancy_threshold: f64,
    /// `max` (default) or `noisy_or`.
    #[serde(default)]
    pub patient_score: ScoreParam,
    /// Upstream `classify_candidates` stage (default: the one upstream).
    #[serde(default)]
    pub detections: Option<StageRef>,
    /// Upstream `merge_candidates` stage for ground truth (optional).
    #[serde(default)]
    pub candidates: Option<StageRef>,
    /// `false`: no ground truth at all, even when a candidate table is upstream (CTs outside
    /// any dataset, as `luna detect` appends them). Left out of the key when `true`, so the
    /// keys of existing pipelines do not change.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub ground_truth: bool,
}

fn half() -> f64 {
    0.5
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// The `diagnose` kind.
pub struct DiagnoseStage;

impl Stage for DiagnoseStage {
    type Params = DiagnoseParams;
    const KIND: &'static str = "diagnose";
    // 3: Parquet written by the parquet crate instead of polars (same values, other bytes).
    const VERSION: u32 = 3;
    const DOC: &'static str =
        "Per-patient diagnosis from detections; the book's 3x4 table and per-patient AUC with ground truth";
    const OUTPUTS: &'static [&'static str] = &[DIAGNOSIS];

    fn slots(p: &DiagnoseParams) -> Vec<InputSlot> {
        let mut v = vec![InputSlot::required(
            "detections",
            DETECTIONS,
            p.detections.as_ref(),
        )];
        if p.ground_truth {
            v.push(InputSlot::optional(
                "candidates",
                CANDIDATES,
                p.candidates.as_ref(),
            ));
        }
        v
    }

    fn validate(p: &DiagnoseParams) -> Result<(), ParamError> {
        if let (false, Some(c)) = (p.ground_truth, &p.candidates) {
            return Err(ParamError::new(
                "candidates",
                format!(
                    "`candidates: {}` names ground truth, but `ground_truth: false` says there is none; remove one of them",
                    c.0
                ),
            ));
        }
        for (v, f) in [
            (p.nodule_threshold, "nodule_threshold"),
            (p.malignancy_threshold, "malignancy_threshold"),
        ] {
            if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                return Err(ParamError::new(
                    f,
                    format!("{f} must be in [0, 1], got {v}"),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, p: &DiagnoseParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let rules = Rules {
            nodule_threshold: p.nodule_threshold,
            malignancy_threshold: p.malignancy_threshold,
            score: match p.patient_score {
                ScoreParam::Max => PatientScore::Max,
                ScoreParam::NoisyOr => PatientScore::NoisyOr,
            },
        };
        let dup = ctx.input("detections")?.clone();
        let dpath = dup.dir.join(Table::Detections.file_name());
        let det = read_rows::<DetectionRow>(&dpath).map_err(table_err)?;
        let scans = searched_series(&dup.dir, &dup.stage, Table::Detections, "")?;
        check_searched(&det, &scans, &dpath)?;
        let with_mal = det.iter().any(|d| d.prob_malignant.is_some());
        let mut by_series: BTreeMap<String, Vec<Detection>> = BTreeMap::new();
        for d in &det {
            by_series
                .entry(d.series_uid.clone())
                .or_default()
                .push(Detection {
                    xyz: d.center_xyz,
                    prob_nodule: d.prob_nodule,
                    prob_malignant: d.prob_malignant,
                });
        }
        let truth = read_truth(ctx, &scans, &dup.stage)?;
        let mut rows = Vec::new();
        let mut report = String::from("# Diagnosis\n\n");
        let mut total: Confusion = [[0; 4]; 3];
        let mut tables = String::new();
        let (mut labels, mut scores) = (Vec::new(), Vec::new());
        for uid in &scans.uids {
            let dets = by_series.get(uid).map(Vec::as_slice).unwrap_or_default();
            let nodules = dets
                .iter()
                .filter(|d| d.prob_nodule >= rules.nodule_threshold)
                .count();
            let score = patient_score(dets, &rules);
            let t = truth
                .as_ref()
                .map(|m| m.get(uid).cloned().unwrap_or_default());
            if let Some(t) = &t {
                let c = match_and_score(dets, t, &rules);
                add_confusion(&mut total, &c);
                let _ = writeln!(
                    tables,
                    "{}",
                    render_confusion(crate::text::tail_chars(uid, 10), &c, with_mal)
                );
                labels.push(t.iter().any(|n| n.malignant));
                scores.push(score as f32);
            }
            rows.push(DiagnosisRow {
                series_uid: uid.clone(),
                nodules: nodules as i64,
                patient_score: score,
                predicted_malignant: score >= rules.malignancy_threshold,
                truth_nodules: t.as_ref().map(|t| t.len() as i64),
                truth_malignant: t.as_ref().map(|t| t.iter().any(|n| n.malignant)),
            });
        }
        write_rows(&rows, &ctx.out_dir().join(Table::Diagnosis.file_name())).map_err(table_err)?;
        let _ = writeln!(
            report,
            "{} patients, {} predicted malignant (score: {:?}, nodule threshold {}, malignancy threshold {}).\n",
            rows.len(),
            rows.iter().filter(|r| r.predicted_malignant).count(),
            p.patient_score,
            p.nodule_threshold,
            p.malignancy_threshold
        );
        let auc = crate::curves::roc_auc(&labels, &scores);
        if truth.is_some() {
            let totals = render_confusion("Total", &total, with_mal);
            let _ = writeln!(
                report,
                "Per-patient ROC AUC (score vs. has a malignant nodule): {}\n\n```\n{totals}```\n\nPer series:\n\n```\n{tables}```",
                auc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "undefined (one class)".into())
            );
            ctx.log(format!(
                "confusion (book 0.7 x diameter matcher):\n{totals}"
            ));
        }
        let rp = ctx.out_dir().join("report.md");
        std::fs::write(&rp, &report).map_err(|e| StageError::io(&rp, e))?;
        let doc = DiagnosisSummary {
            patients: rows.len(),
            per_patient_auc: auc,
            confusion: total,
        };
        write_json(&ctx.out_dir().join("diagnosis.json"), &doc, Style::Compact)?;
        ctx.log(format!(
            "{} patients; per-patient AUC {}",
            rows.len(),
            auc.map(|a| format!("{a:.4}"))
                .unwrap_or_else(|| "n/a".into())
        ));
        Ok(())
    }
}

/// Errors unless every detection's series is one of the searched `scans`.
fn check_searched(det: &[DetectionRow], scans: &Scans, dpath: &Path) -> Result<(), StageError> {
    match det
        .iter()
        .enumerate()
        .find(|(_, d)| scans.get(&d.series_uid).is_none())
    {
        Some((row, d)) => Err(StageError::msg(format!(
            "{}: row {row} (0-based): series {} is not one of the {} series searched ({})",
            dpath.display(),
            d.series_uid,
            scans.len(),
            scans.source.display()
        ))
        .with_hint("seriesuids.csv lists every series the detections come from")),
        None => Ok(()),
    }
}

/// The ground truth per series from the `candidates` input, if bound; every searched series
/// must be in it (see the module doc). `det_stage` names the detections' stage in the error.
fn read_truth(
    ctx: &StageContext,
    scans: &Scans,
    det_stage: &str,
) -> Result<Option<BTreeMap<String, Vec<TrueNodule>>>, StageError> {
    let Some(up) = ctx.input_opt("candidates")? else {
        return Ok(None);
    };
    let t = up.dir.join(Table::Candidates.file_name());
    let rows = read_rows::<MergedRow>(&t).map_err(table_err)?;
    let known: BTreeSet<&str> = rows.iter().map(|r| r.series_uid.as_str()).collect();
    if let Some(uid) = scans.uids.iter().find(|u| !known.contains(u.as_str())) {
        return Err(StageError::msg(format!(
            "{}: series {uid} (searched by `{det_stage}`) has no candidate in the ground truth table {}",
            scans.source.display(),
            t.display()
        ))
        .with_hint(format!(
            "bind `candidates:` to the merge_candidates stage of the dataset these CTs come from (now `{}`)",
            up.stage
        )));
    }
    Ok(Some(truth_by_series(rows)))
}
