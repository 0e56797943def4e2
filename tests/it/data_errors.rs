//! Bad input through `luna run` (issue 3, point 3): each broken dataset fails with exit code 1
//! and an error on stderr that names the file and the cause (and never a panic). A malformed
//! CSV row is shown as `file:line`; with `strict: false` it is dropped and counted in
//! `load_report.json` instead.

use std::path::PathBuf;

use crate::data_support::{
    data_artifact, data_expect_failure, data_ext_pipeline, data_json, data_mhd_with,
    data_set_csv_field, data_set_header, data_synth,
};
use crate::engine_support::Ws;

/// A workspace with a 3-series tiny dataset in `ext/` and the external-data pipeline; returns
/// it with the `.mhd` of an uncompressed series and that series' uid.
fn setup() -> (Ws, PathBuf, String) {
    let ws = Ws::new();
    ws.pipeline("data", &data_ext_pipeline("", ""));
    data_synth(&ws, "ext", 5, 3);
    let mhd = data_mhd_with(&ws.path("ext"), "CompressedData = False");
    let uid = mhd.file_stem().expect("stem").to_string_lossy().to_string();
    (ws, mhd, uid)
}

/// `DimSize` values of a header.
fn dims(mhd: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(mhd).expect("read mhd");
    let line = text
        .lines()
        .find(|l| l.starts_with("DimSize"))
        .expect("DimSize line");
    line.split('=')
        .nth(1)
        .expect("value")
        .split_whitespace()
        .map(String::from)
        .collect()
}

#[test]
fn data_truncated_raw_names_file_and_sizes() {
    let (ws, mhd, uid) = setup();
    let raw = mhd.with_extension("raw");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&raw)
        .expect("open raw")
        .set_len(1000)
        .expect("truncate");
    let d = dims(&mhd);
    let bytes = d
        .iter()
        .map(|v| v.parse::<usize>().expect("dim"))
        .product::<usize>()
        * 2;
    let want = format!(
        "truncated data: expected {bytes} bytes (DimSize [{}, {}, {}] × 2 bytes of MET_SHORT) \
         after offset 0, found 1000",
        d[0], d[1], d[2]
    );
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[&format!("{uid}.raw: "), &want, "FAILED", "crops"],
    );
}

#[test]
fn data_dimsize_count_mismatch_names_header_line() {
    let (ws, mhd, uid) = setup();
    let d = dims(&mhd);
    data_set_header(&mhd, "DimSize", &format!("{} {}", d[0], d[1]));
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[
            &format!("{uid}.mhd:"),
            "key `DimSize` has 2 values but 3 are needed (NDims); fix the header",
        ],
    );
}

#[test]
fn data_dimsize_larger_than_data_is_truncation() {
    let (ws, mhd, uid) = setup();
    let d = dims(&mhd);
    data_set_header(&mhd, "DimSize", &format!("{} {} 999", d[0], d[1]));
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[
            &format!("{uid}.raw: truncated data: expected"),
            &format!("(DimSize [{}, {}, 999] × 2 bytes of MET_SHORT)", d[0], d[1]),
        ],
    );
}

#[test]
fn data_unknown_element_type_lists_known_ones() {
    let (ws, mhd, uid) = setup();
    data_set_header(&mhd, "ElementType", "MET_FOO");
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[
            &format!("{uid}.mhd:"),
            "unknown ElementType \"MET_FOO\"; known types are MET_CHAR",
            "MET_SHORT",
        ],
    );
}

#[test]
fn data_missing_data_file_names_header_and_file() {
    let (ws, mhd, uid) = setup();
    std::fs::remove_file(mhd.with_extension("raw")).expect("remove raw");
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[
            &format!("{uid}.mhd: ElementDataFile "),
            &format!("{uid}.raw cannot be read: No such file or directory"),
            "restore the data file",
        ],
    );
}

#[test]
fn data_malformed_csv_row_strict_and_lenient() {
    let (ws, _, _) = setup();
    let csv = ws.path("ext/candidates.csv");
    let total = std::fs::read_to_string(&csv).expect("csv").lines().count() - 1;
    data_set_csv_field(&csv, 5, 1, "abc");
    let o = ws.luna(&["run", "data"]);
    data_expect_failure(
        &o,
        &[
            "candidates.csv: 1 bad row(s):",
            "candidates.csv:5: non-numeric value \"abc\" in column coordX",
            "strict: false",
        ],
    );
    assert_eq!(
        o.stderr.matches("hint: fix the rows").count(),
        1,
        "hint printed once:\n{}",
        o.stderr
    );

    ws.pipeline("data", &data_ext_pipeline(", strict: false", ""));
    ws.luna(&["run", "data"]).expect_code(0);
    let report = data_json(&data_artifact(&ws, "data", "annotations").join("load_report.json"));
    assert_eq!(report["candidates"]["dropped"], 1, "{report}");
    assert_eq!(report["candidates"]["rows"], total - 1, "{report}");
    assert_eq!(
        report["candidates"]["drop_reasons"],
        serde_json::json!(["line 5: non-numeric value \"abc\" in column coordX"])
    );
    assert_eq!(report["annotations"]["dropped"], 0);
}

#[test]
fn data_centre_outside_volume_names_ct_and_coordinates() {
    let (ws, _, _) = setup();
    let csv = ws.path("ext/candidates.csv");
    let text = std::fs::read_to_string(&csv).expect("csv");
    // A class-0 row (a negative, kept by the final merge rule).
    let line = text
        .lines()
        .position(|l| l.ends_with(",0"))
        .expect("a class-0 row")
        + 1;
    let uid = text
        .lines()
        .nth(line - 1)
        .expect("row")
        .split(',')
        .next()
        .expect("uid")
        .to_string();
    data_set_csv_field(&csv, line, 1, "9000.5");
    data_expect_failure(
        &ws.luna(&["run", "data"]),
        &[
            &format!("{uid}.mhd: candidate "),
            "at xyz (9000.50, ",
            "lies outside the volume of shape (i,r,c)",
            "TransformMatrix",
        ],
    );
}
