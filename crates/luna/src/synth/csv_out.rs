//! Writing the LUNA16 CSVs, `seriesuids.csv` and `synth_truth.json` for a planned dataset.
//!
//! Floats use Rust's shortest round-trip formatting (parsing gives the exact f64 back, and the
//! CSV values equal those in synth_truth.json). Column sets follow the real files: annotations.csv
//! `seriesuid,coordX,coordY,coordZ,diameter_mm`; the book's annotations_with_malignancy.csv
//! (rows in series order, like annotations.csv — the book's committed file is not sorted by
//! `mal_bool` either, whatever its notebook says; `mal_bool` as `True`/`False`,
//! `mal_details` a quoted Python-list string such as `"[4, 4, 5]"`, bbox = centre ± radius in world
//! mm); candidates.csv V1 (`class` 1 = nodule); annotations_excluded.csv like annotations.csv.
//! `seriesuids.csv` is one UID per line with **no header**, as in the official evaluation
//! bundle (`evaluationScript/annotations/seriesuids.csv`, read by the script without skipping a
//! row). Rows follow series order, so files are deterministic.
//!
//! The luna16 layout puts the same tables where the LUNA16 download has them: `annotations.csv`
//! and `annotations_with_malignancy.csv` at the top, the candidates as `candidates_V2.csv`, and
//! `annotations.csv`, `annotations_excluded.csv` and `seriesuids.csv` (again) in
//! `evaluationScript/annotations/`.

use super::truth::SeriesTruth;
use super::{Layout, ResolvedOptions, SynthError, EVAL_DIR};
use std::fmt::Write as _;
use std::path::Path;

/// The header of annotations_with_malignancy.csv (the book's column order).
pub const MALIGNANCY_HEADER: &str = "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool,mal_details,bboxLowX,bboxLowY,bboxLowZ,bboxHighX,bboxHighY,bboxHighZ,len_mal_details";

fn write(out_dir: &Path, name: &str, text: &str) -> Result<u64, SynthError> {
    let p = out_dir.join(name);
    std::fs::write(&p, text.as_bytes()).map_err(|e| SynthError::io(&p, e))?;
    Ok(text.len() as u64)
}

/// Write every table plus synth_truth.json; returns the bytes written.
pub(crate) fn write_all(
    out_dir: &Path,
    opts: &ResolvedOptions,
    truths: &[SeriesTruth],
) -> Result<u64, SynthError> {
    let mut ann = String::from("seriesuid,coordX,coordY,coordZ,diameter_mm\n");
    let mut exc = ann.clone();
    let mut cand = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    let mut uids = String::new();
    let mut mal_rows: Vec<String> = Vec::new();
    for t in truths {
        uids.push_str(&t.uid);
        uids.push('\n');
        for n in &t.nodules {
            let [x, y, z] = n.xyz;
            let _ = writeln!(ann, "{},{x},{y},{z},{}", t.uid, n.diameter_mm);
            let r = n.diameter_mm / 2.0;
            let details: Vec<String> = n.mal_details.iter().map(|v| v.to_string()).collect();
            let row = format!(
                "{},{x},{y},{z},{},{},\"[{}]\",{},{},{},{},{},{},{}\n",
                t.uid,
                n.diameter_mm,
                if n.mal_bool { "True" } else { "False" },
                details.join(", "),
                x - r,
                y - r,
                z - r,
                x + r,
                y + r,
                z + r,
                n.mal_details.len()
            );
            mal_rows.push(row);
        }
        for e in &t.excluded {
            let [x, y, z] = e.xyz;
            let _ = writeln!(exc, "{},{x},{y},{z},{}", t.uid, e.diameter_mm);
        }
        for c in &t.candidates {
            let [x, y, z] = c.xyz;
            let _ = writeln!(cand, "{},{x},{y},{z},{}", t.uid, c.class);
        }
    }
    let mut mal = format!("{MALIGNANCY_HEADER}\n");
    for r in &mal_rows {
        mal.push_str(r);
    }
    let files: Vec<(String, &str)> = match opts.layout {
        Layout::Flat => vec![
            ("annotations.csv".into(), ann.as_str()),
            ("annotations_with_malignancy.csv".into(), mal.as_str()),
            ("annotations_excluded.csv".into(), exc.as_str()),
            ("candidates.csv".into(), cand.as_str()),
            ("seriesuids.csv".into(), uids.as_str()),
        ],
        Layout::Luna16 => vec![
            ("annotations.csv".into(), ann.as_str()),
            ("annotations_with_malignancy.csv".into(), mal.as_str()),
            ("candidates_V2.csv".into(), cand.as_str()),
            (format!("{EVAL_DIR}/annotations.csv"), ann.as_str()),
            (format!("{EVAL_DIR}/annotations_excluded.csv"), exc.as_str()),
            (format!("{EVAL_DIR}/seriesuids.csv"), uids.as_str()),
        ],
    };
    let mut bytes = 0;
    for (name, text) in files {
        bytes += write(out_dir, &name, text)?;
    }
    let truth_path = out_dir.join("synth_truth.json");
    let json = serde_json::json!({ "options": opts, "series": truths });
    let text = serde_json::to_string_pretty(&json).map_err(|e| SynthError::Json {
        path: truth_path.clone(),
        source: e,
    })?;
    bytes += write(out_dir, "synth_truth.json", &(text + "\n"))?;
    Ok(bytes)
}
