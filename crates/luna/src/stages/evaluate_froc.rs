//! `evaluate_froc`: the official LUNA16 FROC / CPM of a system's marks, with the bootstrap CI.
//! Writes the `froc` module's files. Two tracks, one source of marks each:
//!
//! - **Detection track** (`detections` input: a `classify_candidates` stage, or any stage that
//!   provides `detections`): every row of `detections.parquet` is a mark at its world centre
//!   with P(nodule) as its probability.
//! - **False-positive-reduction track** (`predictions` + `candidates`): every candidate of the
//!   scored split is a mark, its probability the nodule model's P(nodule).
//!
//! Decisions:
//! - **Exactly one source.** `detections` and `predictions` are the two alternatives of one
//!   either-or input (`InputSlot::alternative`, group `marks`): the one named in `with:`, else
//!   the one upstream in `needs:`; both or neither is a spec error at plan time, at the
//!   `needs:` (or the second naming value). `candidates` is bound only with `predictions`
//!   (`InputSlot::only_with`), so an ancestor's merge_candidates never leaks into the
//!   detection track. Rejected: a `track:` parameter (one more thing to keep in step with
//!   `needs:`); two stage kinds (everything after the marks is shared).
//! - **Detection-track scans** = the detections artifact's `seriesuids.csv` (written by
//!   `cluster` and passed on by `classify_candidates`: every series searched, including those
//!   without any detection), or the explicit `seriesuids` file. A series that was segmented but
//!   yielded nothing is thus still a scan (the FP divisor) and its nodules are missed. An
//!   artifact without that file (e.g. a `command` stage) is an error: counting only the series
//!   with detections would silently raise the sensitivity and the FP rate. A detection of a
//!   series not in the list is an error naming the file.
//! - **FP-reduction marks** = the rows of `predictions.parquet` (an `evaluate_classifier` stage
//!   of a *nodule* model; a malignancy model's predictions are refused, its labels are not
//!   "nodule"). World xyz come from `candidates.parquet` (the `merge_candidates` stage the
//!   crops were built from), joined on `candidate_id`: the candidate table is the one place
//!   that holds world coordinates (the crops index holds voxel centres only). A prediction
//!   whose candidate is missing, or whose series differs, is an error (the two inputs do not
//!   belong together).
//! - **FP-reduction scans** = every series of the candidate table whose split is one of the
//!   predicted candidates' splits (`split: val` → the validation series), or the explicit
//!   `seriesuids` file. Series without marks still count (the FP divisor).
//! - **Pooled inputs** (the official 10-fold protocol: pool the test folds into one FROC over
//!   all scans): `predictions: [eval_0, eval_1, …]` (or `detections: [...]`) names several
//!   inputs, scored as ONE submission over the union of their scans, in list order (marks and
//!   scans concatenated, exactly what `luna froc` does on the concatenated `submission.csv` and
//!   `seriesuids.csv` files); `froc.json`'s `inputs` then holds each input scored alone over its
//!   own scans. `candidates:` is one stage for all, or a list paired with the predictions. A
//!   series in two inputs is an error (folds are disjoint; counting a scan twice would change
//!   the FP divisor). An explicit `seriesuids` takes one input only. Rejected: a separate
//!   `pool_froc` kind (it would repeat the mark reading of both tracks); averaging per-fold CPMs
//!   (not the official number: LUNA16 pools the marks).
//! - **Findings** = `annotations.csv` (the LUNA16 reference standard; never the book's
//!   malignancy file, which drops unmatched nodules) and `annotations_excluded.csv` of the
//!   `dataset` input, or the explicit `annotations` / `excluded` paths. When the dataset has no
//!   excluded file, no finding is excluded and the stage log says so.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::artifact::{CANDIDATES, DATASET, DETECTIONS, FROC, PREDICTIONS};
use super::dataset::resolve_file;
use super::glue::{froc_err, searched_series};
use crate::artifacts::metrics_task;
use crate::engine::context::{StageContext, Upstream};
use crate::engine::error::StageError;
use crate::engine::kind::{
    ExternalInput, InputPath, InputSlot, ParamError, Stage, StageRef, StageRefs,
};
use crate::froc::{
    evaluate, input_rows, read_findings, read_seriesuids, summary, write_outputs, Finding,
    FrocInput, FrocOptions, FrocResult, Mark, Scans,
};
use crate::store::crop_set::Task;
use crate::tables::{read_rows, AnnotationsKind, DetectionRow, MergedRow, PredictionRow, Table};

/// Parameters of `evaluate_froc`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateFrocParams {
    /// Detection track: upstream `classify_candidates` stage; its detections are the marks and
    /// its seriesuids.csv the scans (default: the one upstream that provides detections). A
    /// list pools several (folds). Exactly one of `detections` and `predictions` is used.
    #[serde(default)]
    pub detections: Option<StageRefs>,
    /// False-positive-reduction track: upstream `evaluate_classifier` stage of a nodule model
    /// (default: the one upstream that provides predictions); a list pools several (folds).
    #[serde(default)]
    pub predictions: Option<StageRefs>,
    /// With `predictions` only: upstream `merge_candidates` stage, for the candidates' world
    /// coordinates (default: the one upstream that provides candidates); one for all pooled
    /// predictions, or a list paired with them.
    #[serde(default)]
    pub candidates: Option<StageRefs>,
    /// Upstream dataset stage holding `annotations.csv` and `annotations_excluded.csv`
    /// (default: the one upstream `dataset`).
    #[serde(default)]
    pub dataset: Option<StageRef>,
    /// annotations.csv; default: the dataset's.
    #[serde(default)]
    pub annotations: Option<InputPath>,
    /// annotations_excluded.csv; default: the dataset's (none excluded when it has none).
    #[serde(default)]
    pub excluded: Option<InputPath>,
    /// The evaluated scans (one uid per line); default: the detections' seriesuids.csv, or the
    /// series of the predictions' split.
    #[serde(default)]
    pub seriesuids: Option<InputPath>,
    /// Marks kept per scan, the official script's cap (0 keeps all).
    #[serde(default = "hundred")]
    pub max_marks: usize,
    /// Bootstrap rounds for the confidence intervals (0: none).
    #[serde(default = "thousand")]
    pub bootstrap: usize,
    /// Seed of the bootstrap's scan resampling.
    #[serde(default)]
    pub seed: u64,
}

fn hundred() -> usize {
    100
}
fn thousand() -> usize {
    1000
}

/// The `evaluate_froc` kind.
pub struct EvaluateFrocStage;

impl Stage for EvaluateFrocStage {
    type Params = EvaluateFrocParams;
    const KIND: &'static str = "evaluate_froc";
    // 2: froc.json gains `recall_book_matcher` and `inputs` (pooled folds).
    const VERSION: u32 = 2;
    const DOC: &'static str =
        "Official LUNA16 FROC and CPM (with bootstrap CI) of detections or of a nodule classifier's predictions";
    const OUTPUTS: &'static [&'static str] = &[FROC];

    fn inputs(p: &EvaluateFrocParams) -> Vec<ExternalInput> {
        [
            ("annotations", &p.annotations),
            ("excluded", &p.excluded),
            ("seriesuids", &p.seriesuids),
        ]
        .into_iter()
        .filter_map(|(name, path)| path.as_ref().map(|x| ExternalInput::new(name, x.path())))
        .collect()
    }

    fn slots(p: &EvaluateFrocParams) -> Vec<InputSlot> {
        let dataset = if p.annotations.is_none() {
            InputSlot::required("dataset", DATASET, p.dataset.as_ref())
        } else {
            InputSlot::optional("dataset", DATASET, p.dataset.as_ref())
        };
        vec![
            InputSlot::alternative("marks", "detections", DETECTIONS, None)
                .listed(p.detections.as_ref()),
            InputSlot::alternative("marks", "predictions", PREDICTIONS, None)
                .listed(p.predictions.as_ref()),
            InputSlot::required("candidates", CANDIDATES, None)
                .listed(p.candidates.as_ref())
                .only_with("predictions"),
            dataset,
        ]
    }

    fn validate(p: &EvaluateFrocParams) -> Result<(), ParamError> {
        let n = |r: &Option<StageRefs>| r.as_ref().map_or(1, StageRefs::len);
        let (preds, cands) = (n(&p.predictions), n(&p.candidates));
        if cands > 1 && cands != preds {
            return Err(ParamError::new(
                "candidates",
                format!("{cands} candidate stages for {preds} predictions: name one for all, or one per predictions stage, in the same order"),
            ));
        }
        if p.seriesuids.is_some() && preds.max(n(&p.detections)) > 1 {
            return Err(ParamError::new(
                "seriesuids",
                "`seriesuids` is the scan list of one input; pooled inputs are scored over their own scans: leave it out",
            ));
        }
        Ok(())
    }

    fn run(&self, p: &EvaluateFrocParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let given = match &p.seriesuids {
            Some(s) => Some(read_seriesuids(&ctx.resolve(s.path())).map_err(froc_err)?),
            None => None,
        };
        let parts = match ctx.input_opt("detections")? {
            Some(_) => detection_parts(ctx, given)?,
            None => fp_reduction_parts(ctx, given)?,
        };
        let (scans, marks) = pool(&parts)?;
        let source: Vec<&str> = parts.iter().map(|p| p.stage.as_str()).collect();
        let source = source.join("`, `");
        let ann = resolve_file(
            ctx,
            p.annotations.as_ref(),
            &["annotations.csv"],
            "annotations",
        )?;
        let exc = excluded_file(ctx, p.excluded.as_ref())?;
        let included = read_findings(&ann, AnnotationsKind::Plain, &scans).map_err(froc_err)?;
        let excluded = match &exc {
            Some(e) => read_findings(e, AnnotationsKind::Excluded, &scans).map_err(froc_err)?,
            None => Vec::new(),
        };
        ctx.log(format!(
            "{} marks from `{}` over {} scans; {} included and {} excluded findings in them ({}{})",
            marks.len(),
            source,
            scans.len(),
            included.len(),
            excluded.len(),
            ann.display(),
            exc.as_ref()
                .map(|e| format!(", {}", e.display()))
                .unwrap_or_default()
        ));
        let input = FrocInput {
            scans,
            marks,
            included,
            excluded,
        };
        let opts = FrocOptions {
            max_marks: p.max_marks,
            bootstrap: p.bootstrap,
            seed: p.seed,
            ..FrocOptions::default()
        };
        let r = evaluate(&input, opts).map_err(froc_err)?;
        let rows = per_input(&parts, &input, opts)?;
        for (stage, ri) in &rows {
            ctx.log(format!("input `{stage}` alone: {}", cpm_line(ri)));
        }
        write_outputs(ctx.out_dir(), &input, &r, input_rows(&rows)).map_err(froc_err)?;
        if parts.len() > 1 {
            ctx.log(format!("pooled over {} inputs:", parts.len()));
        }
        for line in summary(&r) {
            ctx.log(line);
        }
        Ok(())
    }
}

/// The marks of one input (fold) over its own scans.
struct Part {
    /// The upstream stage they came from.
    stage: String,
    scans: Scans,
    marks: Vec<Mark>,
}

/// The detection track's inputs: each detections artifact's marks over its searched series
/// (or the `given` scans, for one input).
fn detection_parts(ctx: &StageContext, given: Option<Scans>) -> Result<Vec<Part>, StageError> {
    let mut given = given;
    ctx.inputs("detections")?
        .into_iter()
        .map(|det| {
            let path = det.dir.join(Table::Detections.file_name());
            let rows = read_rows::<DetectionRow>(&path).map_err(StageError::domain)?;
            let scans = match given.take() {
                Some(s) => s,
                None => searched_series(
                    &det.dir,
                    &det.stage,
                    Table::Detections,
                    "; or set `seriesuids:`",
                )?,
            };
            let marks = marks_from_detections(&rows, &scans, &path)?;
            Ok(Part {
                stage: det.stage.clone(),
                scans,
                marks,
            })
        })
        .collect()
}

/// The false-positive-reduction track's inputs: each predictions artifact with its candidates
/// (the one stage for all, or its pair in the list).
fn fp_reduction_parts(ctx: &StageContext, given: Option<Scans>) -> Result<Vec<Part>, StageError> {
    let preds = ctx.inputs("predictions")?;
    let cands = ctx.inputs("candidates")?;
    let mut given = given;
    preds
        .iter()
        .enumerate()
        .map(|(i, pred)| {
            let cand = cands.get(i).or(cands.first()).ok_or_else(|| {
                StageError::msg(format!("stage `{}` has no candidates bound", ctx.stage()))
            })?;
            let (scans, marks) = fp_reduction_marks(pred, cand, given.take())?;
            Ok(Part {
                stage: pred.stage.clone(),
                scans,
                marks,
            })
        })
        .collect()
}

/// The inputs as one submission: scans concatenated in list order (each input's marks moved
/// by its offset); a series in two inputs is an error naming both.
fn pool(parts: &[Part]) -> Result<(Scans, Vec<Mark>), StageError> {
    let mut owner: HashMap<&str, &str> = HashMap::new();
    let mut uids = Vec::new();
    let mut marks = Vec::new();
    for part in parts {
        for uid in &part.scans.uids {
            if let Some(first) = owner.insert(uid, &part.stage) {
                return Err(StageError::msg(format!(
                    "series {uid} is scored by both `{first}` and `{}`: pooled inputs must cover disjoint scans",
                    part.stage
                ))
                .with_hint("pool one test fold per input (each series in one fold's test split)"));
            }
        }
        let offset = uids.len();
        uids.extend(part.scans.uids.iter().cloned());
        marks.extend(part.marks.iter().map(|m| Mark {
            scan: m.scan + offset,
            ..*m
        }));
    }
    let source = match parts {
        [one] => one.scans.source.clone(),
        _ => PathBuf::from(format!("the pooled scans of {} inputs", parts.len())),
    };
    Ok((Scans::new(uids, source).map_err(froc_err)?, marks))
}

/// Each pooled input scored alone over its own scans (its findings are the pooled ones of its
/// scans); none for one input, whose scoring is the pooled one.
fn per_input(
    parts: &[Part],
    pooled: &FrocInput,
    opts: FrocOptions,
) -> Result<Vec<(String, FrocResult)>, StageError> {
    if parts.len() < 2 {
        return Ok(Vec::new());
    }
    let mut offset = 0;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let range = offset..offset + part.scans.len();
        let local = |f: &[Finding]| -> Vec<Finding> {
            f.iter()
                .filter(|x| range.contains(&x.scan))
                .map(|x| Finding {
                    scan: x.scan - offset,
                    ..*x
                })
                .collect()
        };
        let input = FrocInput {
            scans: part.scans.clone(),
            marks: part.marks.clone(),
            included: local(&pooled.included),
            excluded: local(&pooled.excluded),
        };
        out.push((
            part.stage.clone(),
            evaluate(&input, opts).map_err(froc_err)?,
        ));
        offset = range.end;
    }
    Ok(out)
}

/// The CPM of one scoring, its interval and its 7 sensitivities, on one line.
fn cpm_line(r: &FrocResult) -> String {
    let sens: Vec<String> = r.sensitivities.iter().map(|s| format!("{s:.4}")).collect();
    let ci = r
        .bootstrap
        .as_ref()
        .map(|b| format!(" (95% CI {:.4}–{:.4})", b.cpm.low, b.cpm.high))
        .unwrap_or_default();
    format!(
        "CPM {:.4}{ci} over {} scans, {} nodules; sensitivities {}",
        r.cpm,
        r.counts.scans,
        r.counts.nodules,
        sens.join(" ")
    )
}

/// The false-positive-reduction track's marks: predictions at their candidates' centres, over
/// the `given` scans or the series of the predicted split.
fn fp_reduction_marks(
    pred: &Upstream,
    cand: &Upstream,
    given: Option<Scans>,
) -> Result<(Scans, Vec<Mark>), StageError> {
    refuse_malignancy(&pred.dir, &pred.stage)?;
    let pred_path = pred.dir.join(Table::Predictions.file_name());
    let preds = read_rows::<PredictionRow>(&pred_path).map_err(StageError::domain)?;
    let cand_path = cand.dir.join(Table::Candidates.file_name());
    let cands = read_rows::<MergedRow>(&cand_path).map_err(StageError::domain)?;
    let by_id: HashMap<i64, &MergedRow> = cands.iter().map(|c| (c.candidate_id, c)).collect();
    let joined = join(&preds, &by_id, &pred.stage, &cand.stage)?;
    let scans = match given {
        Some(s) => s,
        None => split_scans(&joined, &cands, &cand.stage)?,
    };
    let marks = marks_from_predictions(&joined, &scans, &pred.stage)?;
    Ok((scans, marks))
}

/// The marks of a detections table: one per detection, at its world centre, with P(nodule).
pub fn marks_from_detections(
    rows: &[DetectionRow],
    scans: &Scans,
    path: &Path,
) -> Result<Vec<Mark>, StageError> {
    rows.iter()
        .enumerate()
        .map(|(row, d)| {
            let scan = scans.get(&d.series_uid).ok_or_else(|| {
                StageError::msg(format!(
                    "{}: row {row} (0-based): series {} is not one of the {} scans of {}",
                    path.display(),
                    d.series_uid,
                    scans.len(),
                    scans.source.display()
                ))
                .with_hint("the scan list names every series searched; list this one, or drop its detections")
            })?;
            Ok(Mark {
                scan,
                xyz: d.center_xyz,
                probability: d.prob_nodule,
            })
        })
        .collect()
}

/// A predictions artifact of a malignancy model scores "malignant?", not "nodule?".
fn refuse_malignancy(dir: &Path, stage: &str) -> Result<(), StageError> {
    let path = dir.join("metrics.json");
    if !path.is_file() {
        return Ok(()); // a `command` stage providing predictions need not write metrics.json
    }
    let bytes = std::fs::read(&path).map_err(|e| StageError::io(&path, e))?;
    let doc: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| StageError::msg(format!("{}: {e}", path.display())))?;
    if metrics_task(&doc) == Some(Task::Malignancy) {
        return Err(StageError::msg(format!(
            "the predictions of `{stage}` come from a malignancy model: FROC scores nodule probabilities"
        ))
        .with_hint("bind `predictions:` to the evaluate_classifier stage of the nodule model"));
    }
    Ok(())
}

/// Each prediction with its candidate row.
fn join<'a>(
    preds: &'a [PredictionRow],
    by_id: &HashMap<i64, &'a MergedRow>,
    pred_stage: &str,
    cand_stage: &str,
) -> Result<Vec<(&'a PredictionRow, &'a MergedRow)>, StageError> {
    let hint =
        "bind `candidates:` to the merge_candidates stage the predictions' crops were built from";
    preds
        .iter()
        .map(|p| match by_id.get(&p.candidate_id) {
            Some(c) if c.series_uid == p.series_uid => Ok((p, *c)),
            Some(c) => Err(StageError::msg(format!(
                "candidate {} is in series {} in `{pred_stage}` but in series {} in `{cand_stage}`",
                p.candidate_id, p.series_uid, c.series_uid
            ))
            .with_hint(hint)),
            None => Err(StageError::msg(format!(
                "candidate {} of `{pred_stage}` (series {}) is not in `{cand_stage}`",
                p.candidate_id, p.series_uid
            ))
            .with_hint(hint)),
        })
        .collect()
}

/// The series of the candidate table in the predictions' split(s), sorted.
fn split_scans(
    joined: &[(&PredictionRow, &MergedRow)],
    cands: &[MergedRow],
    cand_stage: &str,
) -> Result<Scans, StageError> {
    let splits: BTreeSet<&str> = joined.iter().map(|(_, c)| c.split.as_str()).collect();
    let uids: BTreeSet<&str> = cands
        .iter()
        .filter(|c| splits.contains(c.split.as_str()))
        .map(|c| c.series_uid.as_str())
        .collect();
    let names: Vec<&str> = splits.into_iter().collect();
    let source = PathBuf::from(format!("the {} series of `{cand_stage}`", names.join("+")));
    Scans::new(uids.into_iter().map(String::from).collect(), source).map_err(froc_err)
}

/// The marks of an `evaluate_classifier` artifact: one per prediction, at its candidate's
/// centre, with P(nodule).
pub fn marks_from_predictions(
    joined: &[(&PredictionRow, &MergedRow)],
    scans: &Scans,
    pred_stage: &str,
) -> Result<Vec<Mark>, StageError> {
    joined
        .iter()
        .map(|(p, c)| {
            let scan = scans.get(&p.series_uid).ok_or_else(|| {
                StageError::msg(format!(
                    "`{pred_stage}` scores series {}, which is not one of the {} scans of {}",
                    p.series_uid,
                    scans.len(),
                    scans.source.display()
                ))
                .with_hint("list every predicted series in `seriesuids`, or leave it unset")
            })?;
            Ok(Mark {
                scan,
                xyz: c.center_xyz,
                probability: p.probability,
            })
        })
        .collect()
}

/// The excluded-findings file: the given one, else the dataset's if it has one.
fn excluded_file(
    ctx: &StageContext,
    given: Option<&InputPath>,
) -> Result<Option<PathBuf>, StageError> {
    if let Some(p) = given {
        return Ok(Some(ctx.resolve(p.path())));
    }
    let Some(up) = ctx.input_opt("dataset")? else {
        ctx.log("no `excluded` given and no dataset: no finding is excluded");
        return Ok(None);
    };
    let p = up.dir.join("annotations_excluded.csv");
    if p.is_file() {
        Ok(Some(p))
    } else {
        ctx.log(format!(
            "dataset `{}` has no annotations_excluded.csv: no finding is excluded",
            up.stage
        ));
        Ok(None)
    }
}
