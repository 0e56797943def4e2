//! Writing a scoring's files (the module doc lists them). Floats are written with Rust's
//! shortest round-trip formatting, so a reader (numpy, pandas, the official script) parses the
//! exact values luna computed with.

use std::fmt::Write as _;
use std::path::Path;

use super::error::FrocError;
use super::input::{write_seriesuids, FrocInput, SERIESUIDS_FILE};
use super::{FrocResult, RATES};
use crate::artifacts::{
    encode, FrocBootstrapSummary, FrocInputSummary, FrocSummary, RateInterval, Style,
};

/// The header of a submission (and of `submission.csv`).
pub const SUBMISSION_HEADER: &str = "seriesuid,coordX,coordY,coordZ,probability";

/// The files [`write_outputs`] writes, in order (relative to the output directory).
pub const OUTPUT_FILES: [&str; 6] = [
    "submission.csv",
    SERIESUIDS_FILE,
    "froc.csv",
    "froc.json",
    "froc_bootstrap.csv",
    "froc.png",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), FrocError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|source| FrocError::Io { path, source })
}

/// The `froc.json` document of one scoring (no pooled inputs).
pub fn froc_json(r: &FrocResult) -> FrocSummary {
    let c = &r.counts;
    let bootstrap = r.bootstrap.as_ref().map(|b| FrocBootstrapSummary {
        samples: b.samples,
        seed: b.seed,
        confidence: b.confidence,
        generator:
            "scan j of round b = splitmix64(seed + (b*scans + j + 1)*0x9E3779B97F4A7C15) mod scans"
                .into(),
        cpm: b.cpm,
        sensitivities: RATES
            .iter()
            .zip(&b.sensitivities)
            .map(|(&rate, iv)| RateInterval {
                rate,
                mean: iv.mean,
                low: iv.low,
                high: iv.high,
            })
            .collect(),
    });
    FrocSummary {
        rates: RATES,
        sensitivities: r.sensitivities,
        cpm: r.cpm,
        cpm_nearest: r.cpm_nearest,
        sensitivities_nearest: r.sensitivities_nearest,
        counts: *c,
        candidate_recall: c.tp as f64 / c.nodules as f64,
        recall_book_matcher: r.book_hits as f64 / c.nodules as f64,
        marks_per_scan: c.marks as f64 / c.scans as f64,
        max_marks: r.options.max_marks,
        curve_points: r.curve.len(),
        bootstrap,
        inputs: Vec::new(),
    }
}

/// The `froc.json` rows of pooled inputs: (stage, its own scoring), in list order.
pub fn input_rows(inputs: &[(String, FrocResult)]) -> Vec<FrocInputSummary> {
    inputs
        .iter()
        .map(|(stage, r)| FrocInputSummary {
            stage: stage.clone(),
            froc: froc_json(r),
        })
        .collect()
}

/// A scoring in five lines (counts, hits, both recalls, the 7 sensitivities, the CPMs), as
/// `luna froc` prints it and `evaluate_froc` logs it.
pub fn summary(r: &FrocResult) -> [String; 5] {
    let c = &r.counts;
    let sens: Vec<String> = RATES
        .iter()
        .zip(&r.sensitivities)
        .map(|(rate, s)| format!("{rate}: {s:.4}"))
        .collect();
    [
        format!(
            "scans {}  nodules {}  marks {} (dropped by the cap of {}: {})",
            c.scans, c.nodules, c.marks, r.options.max_marks, c.marks_dropped_by_cap
        ),
        format!(
            "TP {}  FP {}  FN {}  ignored on excluded {}  double detections {}",
            c.tp, c.fp, c.fn_, c.ignored_on_excluded, c.double_detections
        ),
        format!(
            "recall at the LUNA16 radius (d/2) {:.4}  with the book's matcher (0.7 x d) {:.4}",
            c.tp as f64 / c.nodules as f64,
            r.book_hits as f64 / c.nodules as f64
        ),
        format!("sensitivity at FPs/scan  {}", sens.join("  ")),
        match &r.bootstrap {
            Some(b) => format!(
                "CPM {:.4} (95% CI {:.4}–{:.4}, {} bootstraps, seed {})  nearest-point CPM {:.4}",
                r.cpm, b.cpm.low, b.cpm.high, b.samples, b.seed, r.cpm_nearest
            ),
            None => format!("CPM {:.4}  nearest-point CPM {:.4}", r.cpm, r.cpm_nearest),
        },
    ]
}

/// Writes every output file of a scoring into `dir` (which must exist); `inputs` are the
/// pooled inputs' own rows ([`input_rows`]; empty for one input).
pub fn write_outputs(
    dir: &Path,
    input: &FrocInput,
    r: &FrocResult,
    inputs: Vec<FrocInputSummary>,
) -> Result<(), FrocError> {
    let mut sub = String::with_capacity(input.marks.len() * 100);
    sub.push_str(SUBMISSION_HEADER);
    sub.push('\n');
    for m in &input.marks {
        let [x, y, z] = m.xyz;
        let _ = writeln!(
            sub,
            "{},{x:?},{y:?},{z:?},{:?}",
            input.scans.uids[m.scan], m.probability
        );
    }
    write(dir, "submission.csv", sub.as_bytes())?;
    write_seriesuids(&dir.join(SERIESUIDS_FILE), &input.scans.uids)?;
    let mut curve = String::from("fps,sensitivity,threshold\n");
    for p in &r.curve {
        let _ = writeln!(curve, "{:?},{:?},{:?}", p.fps, p.sensitivity, p.threshold);
    }
    write(dir, "froc.csv", curve.as_bytes())?;
    let path = dir.join("froc.json");
    let doc = FrocSummary {
        inputs,
        ..froc_json(r)
    };
    let bytes = encode(&doc, Style::PrettyLine, &path)?;
    write(dir, "froc.json", &bytes)?;
    let mut band = String::from("fps,mean,lower,upper\n");
    for p in r.bootstrap.iter().flat_map(|b| &b.band) {
        let _ = writeln!(band, "{:?},{:?},{:?},{:?}", p.fps, p.mean, p.lower, p.upper);
    }
    write(dir, "froc_bootstrap.csv", band.as_bytes())?;
    super::plot::plot_froc(&dir.join("froc.png"), r)?;
    Ok(())
}
