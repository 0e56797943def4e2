//! Crop oracle (issue 3, point 1): the documented `data` pipeline on a tiny synthetic dataset
//! (it holds zlib-compressed and rotated series), then `tests/oracle/data_crops_oracle.py`
//! checks every crop bit-exactly against SimpleITK + numpy with the book's window rule written
//! independently in Python, every centre against SimpleITK's physical→index transform, and every
//! Parquet table of the pipeline against `schemas/<table>.schema.json` with pyarrow.

use std::path::Path;

use crate::data_support::{data_artifact, data_json, data_oracle};
use crate::engine_support::Ws;

const PIPELINE: &str = "pipeline: data
stages:
  data: { uses: synth, with: { preset: tiny, seed: 1 } }
  annotations: { uses: load_annotations, needs: [data] }
  candidates: { uses: merge_candidates, needs: [annotations], with: { val_stride: 2 } }
  crops: { uses: build_crops, needs: [candidates] }
";

/// The number after `key=` in the oracle's summary line.
fn count(summary: &str, key: &str) -> usize {
    let at = summary
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key}= in {summary}"));
    summary[at + key.len() + 1..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("bad {key}= in {summary}"))
}

#[test]
fn data_crops_match_simpleitk_for_every_candidate() {
    let ws = Ws::new();
    ws.pipeline("data", PIPELINE);
    ws.luna(&["run", "data"]).expect_code(0);
    let ct_root = data_artifact(&ws, "data", "data");
    let ann = data_artifact(&ws, "data", "annotations");
    let cand = data_artifact(&ws, "data", "candidates");
    let crops = data_artifact(&ws, "data", "crops");
    let summary = data_json(&crops.join("crops.json"));
    assert_eq!(summary["width_irc"], serde_json::json!([32, 48, 48]));
    assert_eq!(summary["series"], 4);
    assert_eq!(summary["series_computed"], 4);
    let schemas = Path::new(crate::REPO).join("schemas");
    let out = data_oracle(
        "data_crops_oracle.py",
        &[&schemas, &ct_root, &ann, &cand, &crops],
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("OK "))
        .unwrap_or_else(|| panic!("no OK line:\n{out}"));
    // The run must exercise what it claims to: compressed and rotated CTs, edge-shifted windows.
    assert!(count(line, "compressed") >= 1, "{line}");
    assert!(count(line, "rotated") >= 1, "{line}");
    assert!(count(line, "shifted") >= 1, "{line}");
    assert_eq!(
        line.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse::<u64>().ok()),
        summary["crops"].as_u64(),
        "{line}"
    );
}
