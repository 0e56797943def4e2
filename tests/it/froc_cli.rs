//! `luna froc` through the real binary: the files it writes (and that they hold what the
//! library computed), and bad input — a missing column, NaN coordinates or probabilities, an
//! unknown series uid, an empty file, a repeated scan — each exit 2 with one exact line naming
//! the file and row, a hint, and nothing written.

use luna::froc::{FrocOptions, OUTPUT_FILES};

use crate::engine_support::Ws;
use crate::froc_support::{luna_eval, Case};

fn case() -> Case {
    Case {
        scans: vec!["S1", "S2", "S3"],
        included: vec![("S1", [0.0, 0.0, 0.0], 8.0), ("S2", [5.0, 5.0, 5.0], 12.0)],
        excluded: vec![("S3", [0.0, 0.0, 0.0], -1.0)],
        marks: vec![
            ("S1", [1.0, 1.0, 1.0], 0.8),
            ("S1", [40.0, 1.0, 1.0], 0.6),
            ("S2", [6.0, 5.0, 5.0], 0.4),
            ("S3", [1.0, 0.0, 0.0], 0.9),
            ("S3", [60.0, 0.0, 0.0], 0.1),
        ],
    }
}

const ARGS: [&str; 6] = [
    "--annotations",
    "in/annotations.csv",
    "--excluded",
    "in/annotations_excluded.csv",
    "--seriesuids",
    "in/seriesuids.csv",
];

fn froc(ws: &Ws, submission: &str, extra: &[&str]) -> crate::engine_support::Out {
    let mut args = vec!["froc", submission];
    args.extend(ARGS);
    args.extend(extra);
    ws.luna(&args)
}

#[test]
fn luna_froc_writes_every_file_with_the_library_numbers() {
    let ws = Ws::new();
    case().write(&ws.path("in"));
    let out = froc(
        &ws,
        "in/submission.csv",
        &["--out", "res", "--bootstrap", "50", "--seed", "5"],
    );
    out.expect_code(0);
    assert_eq!(ws.ls("res"), {
        let mut v: Vec<String> = OUTPUT_FILES.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    });
    let want = luna_eval(
        &ws.path("in"),
        FrocOptions {
            bootstrap: 50,
            seed: 5,
            ..FrocOptions::default()
        },
    );
    let doc: serde_json::Value = serde_json::from_str(&ws.read("res/froc.json")).unwrap();
    assert_eq!(doc["cpm"].as_f64().unwrap(), want.cpm);
    assert_eq!(
        doc["rates"],
        serde_json::json!([0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0])
    );
    assert_eq!(doc["sensitivities"].as_array().unwrap().len(), 7);
    assert_eq!(doc["counts"]["tp"], 2);
    assert_eq!(doc["counts"]["ignored_on_excluded"], 1);
    let b = &doc["bootstrap"];
    assert_eq!(b["samples"], 50);
    assert_eq!(
        b["cpm"]["mean"].as_f64().unwrap(),
        want.bootstrap.unwrap().cpm.mean
    );
    let csv = ws.read("res/froc.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "fps,sensitivity,threshold");
    assert_eq!(lines[1], "0.0,0.0,inf");
    assert_eq!(lines.len() - 1, want.curve.len());
    assert_eq!(ws.read("res/seriesuids.csv"), "S1\nS2\nS3\n");
    let sub = ws.read("res/submission.csv");
    assert_eq!(
        sub.lines().next(),
        Some("seriesuid,coordX,coordY,coordZ,probability")
    );
    assert_eq!(sub.lines().count(), 1 + 5);
    assert_eq!(sub.lines().nth(1), Some("S1,1.0,1.0,1.0,0.8"));
    assert!(out.stdout.contains("CPM "), "{}", out.stdout);
    // The written submission scores the same.
    let again = froc(
        &ws,
        "res/submission.csv",
        &["--out", "res2", "--bootstrap", "0"],
    );
    again.expect_code(0);
    let doc2: serde_json::Value = serde_json::from_str(&ws.read("res2/froc.json")).unwrap();
    assert_eq!(doc2["cpm"], doc["cpm"]);
    assert_eq!(doc2["bootstrap"], serde_json::Value::Null);
}

/// Runs `luna froc` on a submission with `body` and returns stderr, checking exit 2 and that
/// no output directory was created.
fn rejected(body: &str) -> String {
    let ws = Ws::new();
    case().write(&ws.path("in"));
    ws.file("bad.csv", body);
    let out = froc(&ws, "bad.csv", &["--out", "res"]);
    out.expect_code(2);
    assert!(!ws.path("res").exists(), "nothing written on bad input");
    out.stderr
}

#[test]
fn bad_submissions_are_one_line_errors_with_file_and_row() {
    let head = "seriesuid,coordX,coordY,coordZ,probability\n";
    assert_eq!(
        rejected("seriesuid,coordX,coordY,probability\nS1,0,0,0.5\n"),
        "error: bad.csv:1: header has no column \"coordZ\" (found [\"seriesuid\", \"coordX\", \"coordY\", \"probability\"])\n  \
         = hint: a submission has the columns seriesuid,coordX,coordY,coordZ,probability (extra columns are ignored)\n"
    );
    let hint = "  = hint: every row needs a series uid, finite world-mm coordinates and a finite probability\n";
    assert_eq!(
        rejected(&format!("{head}S1,0,0,0,0.5\nS2,nan,0,0,0.5\n")),
        format!("error: bad.csv:3: non-finite value \"nan\" (NaN/inf) in column coordX\n{hint}")
    );
    assert_eq!(
        rejected(&format!("{head}S1,0,0,0,NaN\n")),
        format!(
            "error: bad.csv:2: non-finite value \"NaN\" (NaN/inf) in column probability\n{hint}"
        )
    );
    assert_eq!(
        rejected(&format!("{head}S1,0,0,zero,0.5\n")),
        format!("error: bad.csv:2: non-numeric value \"zero\" in column coordZ\n{hint}")
    );
    assert_eq!(
        rejected(&format!("{head}S1,0,0,0,0.5\nS1,0,0\n")),
        format!("error: bad.csv:3: wrong column count: expected 5 fields, found 3\n{hint}")
    );
    assert_eq!(
        rejected(&format!("{head}S1,0,0,0,0.5\n\nS9,0,0,0,0.5\n")),
        "error: bad.csv:4: series \"S9\" is not one of the 3 evaluated scans of in/seriesuids.csv\n  \
         = hint: score only the listed scans, or add the series to the seriesuids list\n"
    );
    let empty_hint = "  = hint: a submission is a CSV with the header seriesuid,coordX,coordY,coordZ,probability and one row per CAD mark (world mm)\n";
    assert_eq!(
        rejected(""),
        format!("error: bad.csv: the file is empty; a submission starts with the header seriesuid,coordX,coordY,coordZ,probability\n{empty_hint}")
    );
    assert_eq!(
        rejected(head),
        format!("error: bad.csv: no marks (the header is not followed by any row)\n{empty_hint}")
    );
}

#[test]
fn bad_scan_lists_and_missing_files_are_errors() {
    let ws = Ws::new();
    case().write(&ws.path("in"));
    ws.file("in/seriesuids.csv", "S1\nS2\nS1\n");
    let out = froc(&ws, "in/submission.csv", &["--out", "res"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: in/seriesuids.csv:3: series \"S1\" is listed twice (first on line 1)\n  \
         = hint: seriesuids.csv lists each evaluated scan once, one uid per line, no header\n"
    );
    ws.file("in/seriesuids.csv", "S1\nS2\nS3\n");
    ws.file(
        "in/annotations.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm\nS1,0,0,0,-1\n",
    );
    let out = froc(&ws, "in/submission.csv", &["--out", "res"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("in/annotations.csv:2: negative diameter_mm -1"),
        "{}",
        out.stderr
    );
    ws.file(
        "in/annotations.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm\nS9,0,0,0,5\n",
    );
    let out = froc(&ws, "in/submission.csv", &["--out", "res"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        "error: no included nodule (annotations.csv row) in any of the 3 evaluated scans: the sensitivity is undefined\n  \
         = hint: check that the annotations file belongs to these scans (same series uids)\n"
    );
    assert!(!ws.path("res").exists());
}
