//! Writing a scoring's files (the module doc lists them). Floats are written with Rust's
//! shortest round-trip formatting, so a reader (numpy, pandas, the official script) parses the
//! exact values luna computed with.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use super::error::FrocError;
use super::input::FrocInput;
use super::{FrocResult, RATES};

/// The header of a submission (and of `submission.csv`).
pub const SUBMISSION_HEADER: &str = "seriesuid,coordX,coordY,coordZ,probability";

/// The files [`write_outputs`] writes, in order (relative to the output directory).
pub const OUTPUT_FILES: [&str; 6] = [
    "submission.csv",
    "seriesuids.csv",
    "froc.csv",
    "froc.json",
    "froc_bootstrap.csv",
    "froc.png",
];

fn write(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), FrocError> {
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|source| FrocError::Io { path, source })
}

/// The `froc.json` document.
pub fn froc_json(r: &FrocResult) -> serde_json::Value {
    let c = &r.counts;
    let bootstrap = r.bootstrap.as_ref().map(|b| {
        json!({
            "samples": b.samples,
            "seed": b.seed,
            "confidence": b.confidence,
            "generator": "scan j of round b = splitmix64(seed + (b*scans + j + 1)*0x9E3779B97F4A7C15) mod scans",
            "cpm": b.cpm,
            "sensitivities": RATES.iter().zip(&b.sensitivities).map(|(rate, iv)| json!({
                "rate": rate, "mean": iv.mean, "low": iv.low, "high": iv.high,
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "rates": RATES,
        "sensitivities": r.sensitivities,
        "cpm": r.cpm,
        "cpm_nearest": r.cpm_nearest,
        "sensitivities_nearest": r.sensitivities_nearest,
        "counts": c,
        "candidate_recall": c.tp as f64 / c.nodules as f64,
        "marks_per_scan": c.marks as f64 / c.scans as f64,
        "max_marks": r.options.max_marks,
        "curve_points": r.curve.len(),
        "bootstrap": bootstrap,
    })
}

/// Writes every output file of a scoring into `dir` (which must exist).
pub fn write_outputs(dir: &Path, input: &FrocInput, r: &FrocResult) -> Result<(), FrocError> {
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
    let mut uids = String::new();
    for u in &input.scans.uids {
        uids.push_str(u);
        uids.push('\n');
    }
    write(dir, "seriesuids.csv", uids.as_bytes())?;
    let mut curve = String::from("fps,sensitivity,threshold\n");
    for p in &r.curve {
        let _ = writeln!(curve, "{:?},{:?},{:?}", p.fps, p.sensitivity, p.threshold);
    }
    write(dir, "froc.csv", curve.as_bytes())?;
    let doc = froc_json(r);
    let text = format!("{doc:#}\n");
    write(dir, "froc.json", text.as_bytes())?;
    let mut band = String::from("fps,mean,lower,upper\n");
    for p in r.bootstrap.iter().flat_map(|b| &b.band) {
        let _ = writeln!(band, "{:?},{:?},{:?},{:?}", p.fps, p.mean, p.lower, p.upper);
    }
    write(dir, "froc_bootstrap.csv", band.as_bytes())?;
    super::plot::plot_froc(&dir.join("froc.png"), r)?;
    Ok(())
}
