//! `luna detect CT.mhd|DICOM-DIR [more …]`: a pipeline's trained system on CTs outside any dataset
//! (`crate::detect` says how: the pipeline's own chain, appended with the CTs as `ct_root`).
//! Prints each accepted nodule and the patient verdict; `--json` for scripts; `--out DIR`
//! copies detections.parquet and diagnosis.parquet.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::workspace::open;
use super::{CliError, Globals, PipelineArgs};
use crate::detect::series::{stage_inputs, InputError};
use crate::detect::{detect_pipeline_text, find_chain, staging_dir, DetectError};
use crate::engine::plan::{plan, Freshness, Selection};
use crate::engine::spec;
use crate::stages::diagnose::DiagnoseParams;
use crate::tables::{read_rows, DetectionRow, DiagnosisRow, Table};

/// Arguments of `luna detect`.
#[derive(Debug, Args)]
pub struct DetectArgs {
    /// CT headers (`.mhd`; the file name without `.mhd` is the series uid) or DICOM folders
    /// (one series, or a patient/study/series tree with `--series`; uid = SeriesInstanceUID).
    #[arg(required = true, value_name = "CT")]
    cts: Vec<PathBuf>,
    /// The SeriesInstanceUID to read from a DICOM folder that holds several series.
    #[arg(long, value_name = "UID")]
    series: Option<String>,
    /// The pipeline whose trained models detect (name or path).
    #[arg(long, default_value = "demo")]
    pipeline: String,
    /// Override a variable of the pipeline: --set name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
    /// The `classify_candidates` stage whose chain to use (when the pipeline has several).
    #[arg(long, value_name = "STAGE")]
    stage: Option<String>,
    /// Print JSON (one object: per CT its nodules and verdict) instead of tables.
    #[arg(long)]
    json: bool,
    /// Copy detections.parquet and diagnosis.parquet into DIR.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Stages to run at once (default: number of cores).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// `luna serve`: stage the CTs here instead of `.luna/detect/<id>`.
    #[arg(skip)]
    staging: Option<PathBuf>,
    /// `luna serve`: record the run under this folder, without a report, instead of `runs/`.
    #[arg(skip)]
    runs: Option<PathBuf>,
}

impl DetectArgs {
    /// The arguments `luna serve` detects an uploaded CT with (`--json`, no `--out`): staged
    /// in `staging`, recorded under `runs` (see `crate::serve::scratch`).
    pub(super) fn for_serve(
        ct: PathBuf,
        pipeline: &PipelineArgs,
        staging: PathBuf,
        runs: PathBuf,
    ) -> DetectArgs {
        DetectArgs {
            cts: vec![ct],
            series: None,
            pipeline: pipeline.pipeline.clone(),
            sets: pipeline.sets.clone(),
            stage: None,
            json: true,
            out: None,
            jobs: None,
            staging: Some(staging),
            runs: Some(runs),
        }
    }
}

/// What a detection found: per CT its accepted nodules (highest P(nodule) first) and verdict.
pub(super) struct Detected {
    pipeline: String,
    run: String,
    threshold: f64,
    cts: Vec<crate::detect::StagedCt>,
    by_uid: BTreeMap<String, Vec<DetectionRow>>,
    verdicts: Vec<crate::tables::DiagnosisRow>,
}

impl Detected {
    fn verdict_of(&self, uid: &str) -> Option<&crate::tables::DiagnosisRow> {
        self.verdicts.iter().find(|v| v.series_uid == uid)
    }

    /// The `--json` document (also `luna serve`'s `/v1/detect` answer).
    pub(super) fn json(&self) -> serde_json::Value {
        let series: Vec<_> = self
            .cts
            .iter()
            .map(|ct| {
                let nodules: Vec<_> = self
                    .by_uid
                    .get(ct.uid.as_str())
                    .map(|v| {
                        v.iter()
                            .map(|d| {
                                json!({
                                    "xyz": d.center_xyz,
                                    "irc": d.center_irc,
                                    "prob_nodule": d.prob_nodule,
                                    "prob_malignant": d.prob_malignant,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let v = self.verdict_of(&ct.uid);
                json!({
                    "file": ct.source,
                    "series_uid": ct.uid,
                    "nodules": nodules,
                    "patient_score": v.map(|v| v.patient_score),
                    "malignant": v.map(|v| v.predicted_malignant),
                })
            })
            .collect();
        json!({
            "pipeline": self.pipeline,
            "run": self.run,
            "nodule_threshold": self.threshold,
            "series": series,
        })
    }
}

/// The stages the chain's models depend on, planned: an error naming the `luna run` that
/// trains them when any is stale (`luna detect` and `luna serve` never train).
pub(super) fn trained_models(
    o: &super::workspace::Opened,
    chain: &crate::detect::Chain,
    pipeline_arg: &str,
) -> Result<Vec<crate::engine::plan::PlannedStage>, CliError> {
    // The models must be trained: every stage they depend on is up to date (one plan up to
    // the classify stage covers all of them).
    let needed: std::collections::BTreeSet<usize> = chain
        .models()
        .iter()
        .filter_map(|m| o.pipeline.stage_index(m))
        .flat_map(|i| o.pipeline.dag.ancestors_inclusive(i))
        .collect();
    let planned = plan(
        &o.pipeline,
        &o.cache,
        &o.stat,
        &Selection {
            until: Some(chain.classify.clone()),
            ..Default::default()
        },
    )?;
    let stale: Vec<String> = planned
        .iter()
        .filter(|s| needed.contains(&s.index) && s.state != Freshness::Fresh)
        .map(|s| s.stage.clone())
        .collect();
    if !stale.is_empty() {
        o.stat.save();
        return Err(CliError::failed(
            format!(
                "the models of pipeline `{}` are not trained yet (to run: {})",
                o.pipeline.name,
                stale.join(", ")
            ),
            Some(format!(
                "run `luna run {} --until {}` first; `luna detect` and `luna serve` never train",
                pipeline_arg, chain.classify
            )),
        ));
    }
    Ok(planned)
}

pub(super) fn detect_err(e: DetectError) -> CliError {
    let hint = e.hint();
    CliError::usage(e.to_string(), hint)
}

fn input_err(e: InputError) -> CliError {
    let hint = e.hint();
    CliError::usage(e.to_string(), hint)
}

/// Runs the command.
pub fn cmd(g: &Globals, a: DetectArgs) -> Result<i32, CliError> {
    let d = detect(g, &a)?;
    print(&d, a.json);
    Ok(0)
}

/// Detects nodules in `a.cts` with the pipeline's trained chain (and copies the tables to
/// `--out`); `luna serve` calls it for each uploaded CT.
pub(super) fn detect(g: &Globals, a: &DetectArgs) -> Result<Detected, CliError> {
    let pa = PipelineArgs {
        pipeline: a.pipeline.clone(),
        sets: a.sets.clone(),
    };
    let mut o = open(g, &pa)?;
    if let Some(runs) = &a.runs {
        o.runs = crate::engine::runs::Runs::new(runs.clone());
    }
    let chain = find_chain(&o.pipeline, a.stage.as_deref()).map_err(detect_err)?;
    let _in_use = o.cache.use_lock()?;
    trained_models(&o, &chain, &a.pipeline)?;

    let dir = a
        .staging
        .clone()
        .unwrap_or_else(|| staging_dir(&o.pipeline.workspace, &a.cts));
    let staged = stage_inputs(&a.cts, a.series.as_deref(), &dir).map_err(input_err)?;
    for note in &staged.notes {
        eprintln!("note: {note}");
    }
    let cts = staged.cts;
    let text = std::fs::read_to_string(&o.pipeline.file).map_err(|e| {
        CliError::usage(
            format!("cannot read {}: {e}", o.pipeline.file.display()),
            None,
        )
    })?;
    let (text, names) = detect_pipeline_text(&text, &o.pipeline.file, &o.pipeline, &chain, &dir)
        .map_err(detect_err)?;
    let sets = spec::parse_sets(&a.sets)?;
    let dp = spec::parse(
        &text,
        &o.pipeline.file,
        &o.pipeline.workspace,
        &sets,
        &crate::stages::registry(),
    )
    .map_err(|e| {
        CliError::usage(
            format!("the detection stages do not load: {e}"),
            Some("this is a bug in `luna detect`; please report it with the pipeline file".into()),
        )
    })?;
    let planned = plan(
        &dp,
        &o.cache,
        &o.stat,
        &Selection {
            until: Some(names.diagnose.clone()),
            ..Default::default()
        },
    );
    o.stat.save();
    let planned = planned?;
    let rec = super::run::execute_plan(
        g,
        &o,
        (&dp, &planned),
        (a.jobs, false, false),
        None,
        std::sync::Arc::new(crate::engine::executor::Local),
        // serve's runs are records only: a report per request would fill the disk
        a.runs.is_none(),
    );
    if !rec.success {
        return Err(CliError::failed(
            format!("detection failed (run {})", rec.id),
            Some(format!("see `luna runs show {}`", rec.id)),
        ));
    }
    // the run's keys, not the plan's: a stage below one that ran is keyed again once that one
    // finished (its key depends on what the upstream wrote)
    let key_of = |stage: &str| {
        rec.stages
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| o.cache.object_dir(&s.key))
            .ok_or_else(|| CliError::failed(format!("no artifact of `{stage}`"), None))
    };
    let det_dir = key_of(&names.classify)?;
    let dia_dir = key_of(&names.diagnose)?;
    let det_path = det_dir.join(Table::Detections.file_name());
    let dets =
        read_rows::<DetectionRow>(&det_path).map_err(|e| CliError::failed(e.to_string(), None))?;
    let dia_path = dia_dir.join(Table::Diagnosis.file_name());
    let verdicts =
        read_rows::<DiagnosisRow>(&dia_path).map_err(|e| CliError::failed(e.to_string(), None))?;
    let threshold = dp
        .stages
        .iter()
        .find(|s| s.name == names.diagnose)
        .and_then(|s| s.params.typed.downcast_ref::<DiagnoseParams>())
        .map(|p| p.nodule_threshold)
        .ok_or_else(|| CliError::failed("the diagnose stage has no parameters", None))?;

    let mut by_uid: BTreeMap<String, Vec<DetectionRow>> = BTreeMap::new();
    for d in dets.into_iter().filter(|d| d.prob_nodule >= threshold) {
        by_uid.entry(d.series_uid.clone()).or_default().push(d);
    }
    for v in by_uid.values_mut() {
        v.sort_by(|a, b| b.prob_nodule.total_cmp(&a.prob_nodule));
    }

    if let Some(out) = &a.out {
        std::fs::create_dir_all(out)
            .map_err(|e| CliError::failed(format!("cannot create {}: {e}", out.display()), None))?;
        for p in [&det_path, &dia_path] {
            let to = out.join(p.file_name().unwrap_or_default());
            std::fs::copy(p, &to).map_err(|e| {
                CliError::failed(format!("cannot write {}: {e}", to.display()), None)
            })?;
        }
    }

    Ok(Detected {
        pipeline: o.pipeline.name.clone(),
        run: rec.id.clone(),
        threshold,
        cts,
        by_uid,
        verdicts,
    })
}

fn print(d: &Detected, json: bool) {
    // stdout may be a closed pipe (`luna detect … | head -1`; SIGPIPE is ignored while a run
    // executes): write errors end the output, never the process
    let mut out = std::io::stdout().lock();
    if json {
        let doc = d.json();
        let text = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string());
        let _ = writeln!(out, "{text}");
        return;
    }
    for ct in &d.cts {
        let found = d
            .by_uid
            .get(ct.uid.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let v = d.verdict_of(&ct.uid);
        let assessed = found.iter().any(|det| det.prob_malignant.is_some());
        let verdict = match v {
            // without a malignancy model (the book's default) nothing was judged malignant
            // or benign: a "benign (score 0)" would read as a finding
            Some(_) if !found.is_empty() && !assessed => {
                "malignancy not assessed (the pipeline has no malignancy model)".into()
            }
            Some(v) if v.predicted_malignant => {
                format!("MALIGNANT (score {:.3})", v.patient_score)
            }
            Some(v) => format!("benign (score {:.3})", v.patient_score),
            None => "no verdict".into(),
        };
        let _ = writeln!(
            out,
            "{} ({}): {} nodule{}, {}",
            ct.source.display(),
            ct.uid,
            found.len(),
            if found.len() == 1 { "" } else { "s" },
            verdict
        );
        if !found.is_empty() {
            let _ = writeln!(
                out,
                "  {:>9} {:>9} {:>9}  {:>9}  {:>12}",
                "x mm", "y mm", "z mm", "P(nodule)", "P(malignant)"
            );
        }
        for det in found {
            let _ = writeln!(
                out,
                "  {:>9.1} {:>9.1} {:>9.1}  {:>9.3}  {:>12}",
                det.center_xyz[0],
                det.center_xyz[1],
                det.center_xyz[2],
                det.prob_nodule,
                det.prob_malignant
                    .map(|m| format!("{m:.3}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
}
