//! The run report: one self-contained HTML file per run (`runs/<id>/report.html`) — the stage
//! timeline, the headline numbers, every plot the stages drew, the FROC results, the book's
//! confusion table, the per-patient table and galleries of true positives, false positives and
//! missed nodules — and the same headline numbers as console lines at the end of `luna run`.
//!
//! Design:
//! - **Read, never recompute**: everything comes from the run record (`run.json`: status,
//!   start, duration, reasons, errors), the stage logs and the committed artifacts of the run's
//!   stages (found by their keys), so the report says exactly what the run produced. Only the
//!   gallery matches detections to the truth, with the book's matcher that `diagnose` uses
//!   (`crate::diagnose::matches`).
//! - Sections follow the artifacts a stage has, not its kind's name where possible: every
//!   top-level PNG of an artifact is shown under its stage; `froc.json`, `metrics.json`,
//!   `diagnosis.json`/`report.md` get their tables. The gallery needs the pipeline's typed
//!   bindings (diagnose → its detections and candidates, classify_candidates → its CTs), so
//!   it is drawn when the run's pipeline file still defines those stages.
//! - **Self-contained**: inline CSS, PNGs and SVG as data: URIs and markup; no script, no
//!   font or CDN, so it opens from a file URL with the network off and can be mailed.
//! - A failed stage shows its error and the tail of its log; stages that did not commit have
//!   no artifact sections.
//!
//! Rejected: a JavaScript dashboard (a server or a bundle to maintain; the report must be an
//! archive of one run), and re-running the metrics (could disagree with the artifacts).

mod gallery;
mod html;

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::artifacts::{ClassifierMetrics, DiagnosisSummary, FrocSummary};
use crate::ct::CtSource;
use crate::diagnose::{matches, TrueNodule};
use crate::engine::cache::Cache;
use crate::engine::events::StageStatus;
use crate::engine::kind::Stage;
use crate::engine::runs::{RunRecord, StageRecord};
use crate::engine::spec::Pipeline;
use crate::stages::diagnose::DiagnoseStage;
use crate::stages::evaluate_classifier::EvaluateClassifierStage;
use crate::stages::evaluate_froc::EvaluateFrocStage;
use crate::tables::{read_rows, DetectionRow, DiagnosisRow, MergedRow, Table};
use html::{esc, img_png, num, table, CSS};

/// Tiles per gallery.
const TILES: usize = 12;

/// What a report is made from.
pub struct ReportSource<'a> {
    /// The run.
    pub record: &'a RunRecord,
    /// The cache holding its artifacts.
    pub cache: &'a Cache,
    /// The pipeline as loaded now (for typed bindings); `None` when it no longer loads.
    pub pipeline: Option<&'a Pipeline>,
    /// `runs/<id>` (logs; the report is written there).
    pub run_dir: PathBuf,
}

/// Report errors.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing the file failed.
    #[error("cannot write the report {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// One headline number.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// What it is.
    pub label: String,
    /// The value, formatted.
    pub value: String,
}

impl<'a> ReportSource<'a> {
    fn artifact(&self, s: &StageRecord) -> Option<PathBuf> {
        matches!(s.status, StageStatus::Ran | StageStatus::Cached)
            .then(|| self.cache.object_dir(&s.key))
            .filter(|d| d.is_dir())
    }
    fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.record.stages.iter().find(|s| s.stage == name)
    }
    fn binding(&self, stage: &str, slot: &str) -> Option<String> {
        let p = self.pipeline?;
        let i = p.stage_index(stage)?;
        p.stages[i].bindings.get(slot).cloned()
    }
    fn of_kind(&self, kind: &str) -> impl Iterator<Item = (&StageRecord, PathBuf)> {
        let kind = kind.to_string();
        self.record
            .stages
            .iter()
            .filter(move |s| s.kind == kind)
            .filter_map(|s| self.artifact(s).map(|d| (s, d)))
    }
}

/// An artifact's JSON document: `None` when the file is absent, `Err` (shown in the report)
/// when it does not parse as the struct its writer uses.
fn read_doc<T: DeserializeOwned>(path: &Path) -> Option<Result<T, String>> {
    let bytes = std::fs::read(path).ok()?;
    Some(serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())))
}

/// The document, or nothing: for the headline cards, which have no room for a parse error
/// (the artifact's section shows it).
fn read_ok<T: DeserializeOwned>(path: &Path) -> Option<T> {
    read_doc(path)?.ok()
}

/// A CPM with its bootstrap CI, when there is one.
fn cpm_value(j: &FrocSummary) -> String {
    let ci = match j.bootstrap.as_ref().map(|b| (b.cpm.low, b.cpm.high)) {
        Some((l, h)) if l.is_finite() && h.is_finite() => format!(" (95% CI {l:.3}–{h:.3})"),
        _ => String::new(),
    };
    format!("{}{ci}", num(Some(j.cpm), 3))
}

/// The 7 sensitivities of the CPM, space-separated.
fn sensitivities(j: &FrocSummary) -> String {
    let v: Vec<String> = j.sensitivities.iter().map(|s| num(Some(*s), 3)).collect();
    v.join(" ")
}

/// `, pooled over N inputs` for a scoring of `n` pooled inputs (folds); empty for none.
fn pooled_note(n: usize) -> String {
    match n {
        0 => String::new(),
        n => format!(", pooled over {n} inputs"),
    }
}

/// The headline numbers of a run: FROC CPMs (both tracks), classifier F1/AUC, nodules found by
/// the detection chain, per-patient AUC.
pub fn headlines(src: &ReportSource) -> Vec<Headline> {
    let mut out = Vec::new();
    for (s, dir) in src.of_kind(EvaluateFrocStage::KIND) {
        let Some(j) = read_ok::<FrocSummary>(&dir.join("froc.json")) else {
            continue;
        };
        let track = if src.binding(&s.stage, "detections").is_some() {
            "detection"
        } else {
            "false-positive reduction"
        };
        let pooled = pooled_note(j.inputs.len());
        out.push(Headline {
            label: format!("CPM, {track} track ({}{pooled})", s.stage),
            value: cpm_value(&j),
        });
        out.push(Headline {
            label: format!("sensitivity at 1/8 … 8 FPs/scan ({})", s.stage),
            value: sensitivities(&j),
        });
        for i in &j.inputs {
            out.push(Headline {
                label: format!("  CPM of `{}` alone ({})", i.stage, s.stage),
                value: format!("{}; {}", cpm_value(&i.froc), sensitivities(&i.froc)),
            });
        }
        out.push(Headline {
            label: format!(
                "nodule recall, LUNA16 radius d/2 / book's 0.7 × d ({})",
                s.stage
            ),
            value: format!(
                "{} / {}",
                num(Some(j.candidate_recall), 3),
                num(Some(j.recall_book_matcher), 3)
            ),
        });
    }
    for (s, dir) in src.of_kind(EvaluateClassifierStage::KIND) {
        if let Some(j) = read_ok::<ClassifierMetrics>(&dir.join("metrics.json")) {
            let pooled = pooled_note(j.inputs.len());
            out.push(Headline {
                label: format!("F1 / ROC AUC ({}{pooled})", s.stage),
                value: format!("{} / {}", num(Some(j.f1), 3), num(j.roc_auc, 3)),
            });
            if j.diameter_auc.is_some() {
                out.push(Headline {
                    label: format!(
                        "ROC AUC of the diameter alone, book's baseline ({})",
                        s.stage
                    ),
                    value: num(j.diameter_auc, 3),
                });
            }
        }
    }
    for (s, dir) in src.of_kind(DiagnoseStage::KIND) {
        let Some(j) = read_ok::<DiagnosisSummary>(&dir.join("diagnosis.json")) else {
            continue;
        };
        let c = j.confusion;
        let planted: u64 = c[1].iter().chain(c[2].iter()).sum();
        if planted > 0 {
            let found = planted - c[1][0] - c[2][0];
            out.push(Headline {
                label: format!("nodules found / annotated ({})", s.stage),
                value: format!(
                    "{found} / {planted} ({:.1}%)",
                    100.0 * found as f64 / planted as f64
                ),
            });
        }
        if j.per_patient_auc.is_some() {
            out.push(Headline {
                label: format!("per-patient malignancy AUC ({})", s.stage),
                value: num(j.per_patient_auc, 3),
            });
        }
    }
    out
}

/// Writes `runs/<id>/report.html` (atomically: a temporary file renamed over it); returns its
/// path and the headline numbers shown in it.
pub fn write_report(src: &ReportSource) -> Result<(PathBuf, Vec<Headline>), ReportError> {
    let heads = headlines(src);
    let html = render(src, &heads);
    let path = src.run_dir.join("report.html");
    let tmp = src.run_dir.join(".report.html.tmp");
    let err = |e| ReportError::Write {
        path: path.clone(),
        source: e,
    };
    std::fs::create_dir_all(&src.run_dir).map_err(err)?;
    std::fs::write(&tmp, html).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)?;
    Ok((path, heads))
}

/// The whole page, with the run's `heads` (see [`headlines`]).
pub fn render(src: &ReportSource, heads: &[Headline]) -> String {
    let r = src.record;
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>luna · {} · {}</title><style>{CSS}</style></head><body>",
        esc(&r.pipeline),
        esc(&r.id)
    );
    let status = if r.success {
        "<span class=\"ran\">succeeded</span>"
    } else if r.ended.is_none() {
        "<span class=\"skipped\">did not finish</span>"
    } else {
        "<span class=\"failed\">failed</span>"
    };
    let _ = write!(
        o,
        "<h1>Pipeline <code>{}</code> — run {status}</h1><p class=\"meta\">run {} · started {} · \
         ended {} · host {} · luna {} · git {} · {}</p>",
        esc(&r.pipeline),
        esc(&r.id),
        esc(&r.started),
        esc(r.ended.as_deref().unwrap_or("–")),
        esc(&r.host),
        esc(&r.luna_version),
        esc(r.git_revision.as_deref().unwrap_or("–")),
        esc(&r.pipeline_file)
    );
    if !heads.is_empty() {
        o.push_str("<section id=\"summary\"><h2>Summary</h2><div class=\"cards\">");
        for h in heads {
            let _ = write!(
                o,
                "<div class=\"card\"><div class=\"v\">{}</div><div class=\"k\">{}</div></div>",
                esc(&h.value),
                esc(&h.label)
            );
        }
        o.push_str("</div></section>");
    }
    timeline(src, &mut o);
    failures(src, &mut o);
    froc_sections(src, &mut o);
    diagnosis_sections(src, &mut o);
    plots(src, &mut o);
    o.push_str("</body></html>\n");
    o
}

fn timeline(src: &ReportSource, o: &mut String) {
    let stages = &src.record.stages;
    o.push_str("<section id=\"timeline\"><h2>Stages</h2>");
    let total = stages
        .iter()
        .map(|s| s.start_s + s.duration_s)
        .fold(0.0f64, f64::max)
        .max(1e-3);
    let (label_w, bar_w, row_h) = (170.0, 720.0, 20.0);
    let h = row_h * stages.len() as f64 + 24.0;
    let _ = write!(
        o,
        "<svg width=\"{}\" height=\"{h}\" role=\"img\" \
         aria-label=\"stage timeline\" font-size=\"12\" font-family=\"sans-serif\">",
        label_w + bar_w + 60.0
    );
    for (k, s) in stages.iter().enumerate() {
        let y = k as f64 * row_h;
        let colour = match s.status {
            StageStatus::Ran => "#2b8a3e",
            StageStatus::Cached => "#adb5bd",
            StageStatus::Failed => "#c92a2a",
            StageStatus::Skipped => "#f08c00",
        };
        let x = label_w + bar_w * s.start_s / total;
        let w = (bar_w * s.duration_s / total).max(2.0);
        let _ = write!(
            o,
            "<text x=\"0\" y=\"{}\">{}</text><rect x=\"{x:.1}\" y=\"{}\" width=\"{w:.1}\" \
             height=\"{}\" fill=\"{colour}\"><title>{} {} {:.2} s</title></rect>\
             <text x=\"{:.1}\" y=\"{}\" fill=\"#495057\">{:.1} s</text>",
            y + 14.0,
            esc(&s.stage),
            y + 3.0,
            row_h - 6.0,
            esc(&s.stage),
            s.status.word(),
            s.duration_s,
            x + w + 4.0,
            y + 14.0,
            s.duration_s
        );
    }
    let _ = write!(
        o,
        "<text x=\"{label_w}\" y=\"{}\" fill=\"#495057\">0 s</text><text x=\"{}\" y=\"{}\" \
         fill=\"#495057\" text-anchor=\"end\">{total:.1} s</text></svg>",
        h - 4.0,
        label_w + bar_w,
        h - 4.0
    );
    let rows: Vec<Vec<String>> = stages
        .iter()
        .map(|s| {
            let why = if let Some(e) = &s.error {
                esc(e)
            } else {
                s.reasons
                    .iter()
                    .map(|r| esc(&r.to_string()))
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            vec![
                esc(&s.stage),
                esc(&s.kind),
                format!(
                    "<span class=\"{}\">{}</span>",
                    s.status.word().to_lowercase(),
                    s.status.word()
                ),
                format!("{:.2} s", s.duration_s),
                format!("<code>{}</code>", esc(crate::engine::cache::short(&s.key))),
                why,
            ]
        })
        .collect();
    o.push_str(&table(
        &[
            "stage",
            "kind",
            "status",
            "time",
            "key",
            "why it ran / error",
        ],
        &rows,
    ));
    o.push_str("</section>");
}

fn failures(src: &ReportSource, o: &mut String) {
    let failed: Vec<&StageRecord> = src
        .record
        .stages
        .iter()
        .filter(|s| s.status == StageStatus::Failed)
        .collect();
    if failed.is_empty() {
        return;
    }
    o.push_str("<section id=\"failures\"><h2>Failures</h2>");
    for s in failed {
        let log = src.run_dir.join("logs").join(format!("{}.log", s.stage));
        let tail = std::fs::read_to_string(&log)
            .map(|t| {
                let lines: Vec<&str> = t.lines().collect();
                lines[lines.len().saturating_sub(30)..].join("\n")
            })
            .unwrap_or_default();
        let _ = write!(
            o,
            "<div class=\"fail\"><h3>{} failed</h3><pre>{}</pre><p class=\"meta\">last lines \
             of {}:</p><pre>{}</pre></div>",
            esc(&s.stage),
            esc(s.error.as_deref().unwrap_or("(no error text)")),
            esc(&log.display().to_string()),
            esc(&tail)
        );
    }
    o.push_str("</section>");
}

fn froc_sections(src: &ReportSource, o: &mut String) {
    let mut any = false;
    for (s, dir) in src.of_kind(EvaluateFrocStage::KIND) {
        let Some(doc) = read_doc::<FrocSummary>(&dir.join("froc.json")) else {
            continue;
        };
        if !any {
            o.push_str("<section id=\"froc\"><h2>FROC (official LUNA16 rules)</h2>");
            any = true;
        }
        let _ = write!(o, "<h3>{}</h3>", esc(&s.stage));
        if let Ok(png) = std::fs::read(dir.join("froc.png")) {
            o.push_str(&img_png(&png, &format!("FROC of {}", s.stage), "froc"));
        }
        match doc {
            Ok(j) => froc_tables(&j, o),
            Err(e) => {
                let _ = write!(o, "<p class=\"failed\">{}</p>", esc(&e));
            }
        }
    }
    if any {
        o.push_str("</section>");
    }
}

/// The sensitivity table (with the bootstrap intervals) and the counts of one `froc.json`.
fn froc_tables(j: &FrocSummary, o: &mut String) {
    let boot = j.bootstrap.as_ref();
    let mut rows = Vec::new();
    for (k, r) in j.rates.iter().enumerate() {
        let ci = boot
            .and_then(|b| b.sensitivities.get(k))
            .map(|b| format!("{} – {}", num(Some(b.low), 3), num(Some(b.high), 3)));
        rows.push(vec![
            num(Some(*r), 3),
            num(j.sensitivities.get(k).copied(), 4),
            ci.unwrap_or_else(|| "–".into()),
        ]);
    }
    rows.push(vec![
        "<b>CPM</b>".into(),
        format!("<b>{}</b>", num(Some(j.cpm), 4)),
        format!(
            "{} – {}",
            num(boot.map(|b| b.cpm.low), 3),
            num(boot.map(|b| b.cpm.high), 3)
        ),
    ]);
    o.push_str(&table(&["FPs / scan", "sensitivity", "95% CI"], &rows));
    if !j.inputs.is_empty() {
        o.push_str(&input_table(j));
    }
    o.push_str(&table(
        &[
            "recall, LUNA16 radius (d/2)",
            "recall, book's matcher (0.7 × d)",
        ],
        &[vec![
            num(Some(j.candidate_recall), 4),
            num(Some(j.recall_book_matcher), 4),
        ]],
    ));
    let c = &j.counts;
    o.push_str(&table(
        &["scans", "nodules", "TP", "FP", "FN", "ignored on excluded"],
        &[
            [c.scans, c.nodules, c.tp, c.fp, c.fn_, c.ignored_on_excluded]
                .iter()
                .map(|n| n.to_string())
                .collect(),
        ],
    ));
}

/// The pooled inputs (folds) of one `froc.json`, one row each and the pooled row last: the 7
/// sensitivities, the CPM and its interval.
fn input_table(j: &FrocSummary) -> String {
    let row = |name: String, f: &FrocSummary| {
        let ci = f.bootstrap.as_ref().map_or("–".into(), |b| {
            format!("{} – {}", num(Some(b.cpm.low), 3), num(Some(b.cpm.high), 3))
        });
        let mut r = vec![name, f.counts.scans.to_string()];
        r.extend(f.sensitivities.iter().map(|s| num(Some(*s), 3)));
        r.extend([num(Some(f.cpm), 4), ci]);
        r
    };
    let mut rows: Vec<Vec<String>> = j
        .inputs
        .iter()
        .map(|i| row(esc(&i.stage), &i.froc))
        .collect();
    rows.push(row("<b>pooled</b>".into(), j));
    let rates: Vec<String> = j.rates.iter().map(|r| format!("{r}")).collect();
    let mut head = vec!["input", "scans"];
    head.extend(rates.iter().map(String::as_str));
    head.extend(["CPM", "95% CI"]);
    table(&head, &rows)
}

fn diagnosis_sections(src: &ReportSource, o: &mut String) {
    for (s, dir) in src.of_kind(DiagnoseStage::KIND) {
        let _ = write!(
            o,
            "<section class=\"diagnosis\" id=\"diagnosis-{0}\"><h2>Diagnosis ({0})</h2>",
            esc(&s.stage)
        );
        if let Ok(md) = std::fs::read_to_string(dir.join("report.md")) {
            // the book's tables are the fenced blocks of report.md: the total shown, the
            // per-series tables (one per patient) folded
            let mut folded = false;
            for (k, block) in md.split("```").enumerate() {
                let table = esc(block.trim_matches('\n'));
                if k % 2 == 1 && folded {
                    let _ = write!(
                        o,
                        "<details><summary>Per series</summary><pre>{table}</pre></details>"
                    );
                } else if k % 2 == 1 {
                    let _ = write!(o, "<pre>{table}</pre>");
                } else {
                    for line in block
                        .lines()
                        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                    {
                        if line.trim() == "Per series:" {
                            folded = true;
                        } else {
                            let _ = write!(o, "<p>{}</p>", esc(line));
                        }
                    }
                }
            }
        }
        let path = dir.join(Table::Diagnosis.file_name());
        if let Ok(rows) = read_rows::<DiagnosisRow>(&path) {
            let body: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        format!("<code>{}</code>", esc(&r.series_uid)),
                        r.nodules.to_string(),
                        format!("{:.3}", r.patient_score),
                        if r.predicted_malignant {
                            "malignant"
                        } else {
                            "benign"
                        }
                        .into(),
                        r.truth_nodules
                            .map(|n| n.to_string())
                            .unwrap_or_else(|| "–".into()),
                        match r.truth_malignant {
                            Some(true) => "malignant".into(),
                            Some(false) => "benign".into(),
                            None => "–".into(),
                        },
                    ]
                })
                .collect();
            o.push_str("<h3>Per patient</h3>");
            o.push_str(&table(
                &[
                    "series",
                    "nodules",
                    "score",
                    "verdict",
                    "annotated nodules",
                    "truth",
                ],
                &body,
            ));
        }
        gallery_section(src, s, &dir, o);
        o.push_str("</section>");
    }
}

/// A gallery entry.
struct Entry {
    uid: String,
    xyz: [f64; 3],
    caption: String,
    order: f64,
}

fn gallery_section(src: &ReportSource, diag: &StageRecord, diag_dir: &Path, o: &mut String) {
    match gallery_entries(src, diag, diag_dir) {
        Ok(Some(Gallery { roots, groups })) => {
            let tiles = render_tiles(&roots, &groups);
            for (g, (title, entries)) in groups.iter().enumerate() {
                let _ = write!(
                    o,
                    "<h3>{title} ({})</h3><div class=\"gallery\">",
                    entries.len()
                );
                for (k, e) in entries.iter().take(TILES).enumerate() {
                    let body = match &tiles[&(g, k)] {
                        Ok(png) => img_png(png, &e.caption, "tile"),
                        Err(err) => format!("<span class=\"failed\">{}</span>", esc(err)),
                    };
                    o.push_str(&tile_html(&body, &e.uid, &e.caption));
                }
                if entries.len() > TILES {
                    let _ = write!(
                        o,
                        "<p class=\"meta\">and {} more</p>",
                        entries.len() - TILES
                    );
                }
                o.push_str("</div>");
            }
        }
        Ok(None) => {}
        Err(e) => {
            let _ = write!(o, "<p class=\"meta\">no gallery: {}</p>", esc(&e));
        }
    }
}

/// One gallery tile: its image (or why there is none), the series uid's last characters (uids
/// may hold any Unicode: cut by characters) and the caption.
fn tile_html(body: &str, uid: &str, caption: &str) -> String {
    format!(
        "<div class=\"tile\">{body}<div>…{}</div><div>{}</div></div>",
        esc(crate::text::tail_chars(uid, 8)),
        esc(caption)
    )
}

/// A shown tile: (group, position in the group).
type TileKey = (usize, usize);

/// The PNG (or the reason there is none) of every shown tile: series by series, so each CT is
/// opened once and only one is open at a time.
fn render_tiles(
    roots: &BTreeMap<String, CtSource>,
    groups: &[(&'static str, Vec<Entry>)],
) -> BTreeMap<TileKey, Result<Vec<u8>, String>> {
    let mut by_series: BTreeMap<&str, Vec<(TileKey, [f64; 3])>> = BTreeMap::new();
    for (g, (_, entries)) in groups.iter().enumerate() {
        for (k, e) in entries.iter().take(TILES).enumerate() {
            by_series.entry(&e.uid).or_default().push(((g, k), e.xyz));
        }
    }
    let mut out = BTreeMap::new();
    for (uid, wanted) in by_series {
        let ct = roots
            .get(uid)
            .ok_or_else(|| format!("series {uid} is not in the CT folder"))
            .and_then(|src| src.open().map_err(|err| err.to_string()));
        for (key, xyz) in wanted {
            let tile = match &ct {
                Ok(ct) => gallery::tile_png(ct, xyz),
                Err(err) => Err(err.clone()),
            };
            out.insert(key, tile);
        }
    }
    out
}

/// A gallery: the CT of each series and the titled groups of entries.
struct Gallery {
    roots: BTreeMap<String, CtSource>,
    groups: Vec<(&'static str, Vec<Entry>)>,
}

/// The gallery of a diagnose stage with ground truth: (CT of each series, [(title, entries)]).
fn gallery_entries(
    src: &ReportSource,
    diag: &StageRecord,
    diag_dir: &Path,
) -> Result<Option<Gallery>, String> {
    let (Some(det_stage), Some(cand_stage)) = (
        src.binding(&diag.stage, "detections"),
        src.binding(&diag.stage, "candidates"),
    ) else {
        return Ok(None);
    };
    let dir_of = |name: &str| {
        src.stage(name)
            .and_then(|s| src.artifact(s))
            .ok_or_else(|| format!("stage `{name}` has no artifact in this run"))
    };
    let threshold = src
        .pipeline
        .and_then(|p| p.stage_index(&diag.stage).map(|i| &p.stages[i]))
        .and_then(|s| {
            s.params
                .typed
                .downcast_ref::<crate::stages::diagnose::DiagnoseParams>()
        })
        .map(|p| p.nodule_threshold)
        .ok_or("the diagnose stage's parameters are not known")?;
    let dets = read_rows::<DetectionRow>(&dir_of(&det_stage)?.join(Table::Detections.file_name()))
        .map_err(|e| e.to_string())?;
    let cands = read_rows::<MergedRow>(&dir_of(&cand_stage)?.join(Table::Candidates.file_name()))
        .map_err(|e| e.to_string())?;
    let truth = crate::diagnose::truth_by_series(cands);
    // the CTs: the classify stage's dataset, or its ct_root
    let root = match src.binding(&det_stage, "dataset") {
        Some(ds) => dir_of(&ds)?,
        None => ct_root_of(src, &det_stage).ok_or("the detections' CTs are not known")?,
    };
    let roots = crate::stages::dataset::find_series(&root).map_err(|e| e.to_string())?;
    // every patient the diagnosis covers (series without detections too: their nodules are
    // missed), and any series with detections
    let patients = read_rows::<DiagnosisRow>(&diag_dir.join(Table::Diagnosis.file_name()))
        .map_err(|e| e.to_string())?;
    let series: std::collections::BTreeSet<&str> = patients
        .iter()
        .map(|r| r.series_uid.as_str())
        .chain(dets.iter().map(|d| d.series_uid.as_str()))
        .collect();
    let [tp, fp, missed] = sort_entries(series, &truth, &dets, threshold);
    Ok(Some(Gallery {
        roots,
        groups: vec![
            ("True positives", tp),
            ("False positives", fp),
            ("Missed nodules", missed),
        ],
    }))
}

/// The `ct_root` parameter of the classify stage `det_stage`, in the workspace.
fn ct_root_of(src: &ReportSource, det_stage: &str) -> Option<PathBuf> {
    let pipeline = src.pipeline?;
    let spec = &pipeline.stages[pipeline.stage_index(det_stage)?];
    let p = spec
        .params
        .typed
        .downcast_ref::<crate::stages::classify_candidates::ClassifyCandidatesParams>()?;
    p.ct_root
        .as_ref()
        .map(|r| pipeline.workspace.join(r.path()))
}

/// The detections at or above `threshold` that hit a true nodule (true positives) or none
/// (false positives), and the true nodules no such detection hits (missed), each group sorted
/// (most probable / largest first).
fn sort_entries(
    series: std::collections::BTreeSet<&str>,
    truth: &BTreeMap<String, Vec<TrueNodule>>,
    dets: &[crate::tables::DetectionRow],
    threshold: f64,
) -> [Vec<Entry>; 3] {
    let (mut tp, mut fp, mut missed) = (Vec::new(), Vec::new(), Vec::new());
    let mal = |m: Option<f64>| m.map(|m| format!(", P(mal) {m:.2}")).unwrap_or_default();
    for uid in series {
        let none = Vec::new();
        let t: &Vec<TrueNodule> = truth.get(uid).unwrap_or(&none);
        let mine: Vec<_> = dets.iter().filter(|d| d.series_uid == uid).collect();
        for d in mine.iter().filter(|d| d.prob_nodule >= threshold) {
            let hit = t.iter().any(|n| matches(n, d.center_xyz));
            let e = Entry {
                uid: uid.into(),
                xyz: d.center_xyz,
                caption: format!("P(nodule) {:.2}{}", d.prob_nodule, mal(d.prob_malignant)),
                order: -d.prob_nodule,
            };
            if hit {
                tp.push(e)
            } else {
                fp.push(e)
            }
        }
        for n in t {
            let best = mine
                .iter()
                .filter(|d| matches(n, d.center_xyz))
                .map(|d| d.prob_nodule)
                .fold(None, |a: Option<f64>, p| Some(a.map_or(p, |a| a.max(p))));
            if best.is_none_or(|p| p < threshold) {
                missed.push(Entry {
                    uid: uid.into(),
                    xyz: n.xyz,
                    caption: format!(
                        "{:.1} mm{}, {}",
                        n.diameter_mm,
                        if n.malignant { " malignant" } else { "" },
                        best.map(|p| format!("best P(nodule) {p:.2}"))
                            .unwrap_or_else(|| "no cluster".into())
                    ),
                    order: -n.diameter_mm,
                });
            }
        }
    }
    for v in [&mut tp, &mut fp, &mut missed] {
        v.sort_by(|a, b| a.order.total_cmp(&b.order));
    }
    [tp, fp, missed]
}

/// The headline metrics of an `evaluate_classifier` artifact's `metrics.json`.
fn metrics_table(dir: &Path, o: &mut String) {
    match read_doc::<ClassifierMetrics>(&dir.join("metrics.json")) {
        None => {}
        Some(Ok(m)) => {
            let keys = [
                "input",
                "samples",
                "precision",
                "recall",
                "f1",
                "roc_auc",
                "diameter-only AUC (book baseline)",
            ];
            let row = |name: String, m: &ClassifierMetrics| {
                let cells = [
                    Some(m.samples as f64),
                    Some(m.precision),
                    Some(m.recall),
                    Some(m.f1),
                    m.roc_auc,
                    m.diameter_auc,
                ];
                std::iter::once(name)
                    .chain(cells.iter().map(|v| num(*v, 4)))
                    .collect::<Vec<String>>()
            };
            let mut rows: Vec<Vec<String>> = m
                .inputs
                .iter()
                .map(|i| row(esc(&i.stage), &i.metrics))
                .collect();
            let all = if m.inputs.is_empty() {
                "all"
            } else {
                "<b>pooled</b>"
            };
            rows.push(row(all.into(), &m));
            o.push_str(&table(&keys, &rows));
        }
        Some(Err(e)) => {
            let _ = write!(o, "<p class=\"failed\">{}</p>", esc(&e));
        }
    }
}

fn plots(src: &ReportSource, o: &mut String) {
    let mut any = false;
    for s in &src.record.stages {
        if s.kind == EvaluateFrocStage::KIND {
            continue; // shown with its tables
        }
        let Some(dir) = src.artifact(s) else { continue };
        let mut pngs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "png"))
                    .collect()
            })
            .unwrap_or_default();
        if pngs.is_empty() {
            continue;
        }
        pngs.sort();
        if !any {
            o.push_str("<section id=\"plots\"><h2>Training and evaluation plots</h2>");
            any = true;
        }
        let _ = write!(
            o,
            "<h3>{} <span class=\"meta\">({})</span></h3><div class=\"plots\">",
            esc(&s.stage),
            esc(&s.kind)
        );
        if s.kind == EvaluateClassifierStage::KIND {
            metrics_table(&dir, o);
        }
        for p in pngs {
            if let Ok(b) = std::fs::read(&p) {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                o.push_str(&img_png(&b, &format!("{} {}", s.stage, name), "plot"));
            }
        }
        o.push_str("</div>");
    }
    if any {
        o.push_str("</section>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_caption_of_a_multibyte_uid_is_cut_between_characters() {
        // 'é' and '€' are 2 and 3 bytes: a byte cut at len - 8 fell inside one and panicked
        let html = tile_html("img", "1.2.é€€€€€€€éx", "P 0.91");
        assert!(html.contains("<div>…€€€€€€éx</div>"), "{html}");
        assert!(tile_html("", "é", "").contains("…é"));
    }
}
