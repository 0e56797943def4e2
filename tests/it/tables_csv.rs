//! CSV robustness: CRLF, quotes, spaces, BOM and blank lines parse equal to the clean file; every
//! bad-row kind gives `file:line: reason`; `strict: false` drops and counts.

use std::path::Path;

use luna::tables::*;

use super::tables_support::{write, ANNOTATIONS_MAL, CANDIDATES};

fn cands(path: &Path) -> Result<CsvLoad<CandidateRow>, TableError> {
    read_candidates_csv(path, CsvOptions::default())
}

#[test]
fn dirty_variants_parse_equal_to_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = cands(&write(dir.path(), "clean.csv", CANDIDATES)).expect("clean");
    assert_eq!(clean.rows.len(), 8);
    assert_eq!(
        clean.rows[1],
        CandidateRow {
            series_uid: "s1".into(),
            center_xyz: [12.5, 20.0, 30.0],
            class: 0,
            source_line: 3
        }
    );
    let quoted: String = CANDIDATES
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| format!("\"{f}\""))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    let spaced: String = CANDIDATES
        .lines()
        .map(|l| {
            l.split(',')
                .map(|f| format!("  {f}\t "))
                .collect::<Vec<_>>()
                .join(",")
                + "\n"
        })
        .collect();
    let variants = [
        ("crlf", CANDIDATES.replace('\n', "\r\n")),
        ("bom", format!("\u{feff}{CANDIDATES}")),
        ("quoted", quoted.clone()),
        ("spaced", spaced),
        (
            "quoted_spaced_crlf",
            quoted.replace("\",\"", "\" , \"").replace('\n', " \r\n"),
        ),
        ("blank_tail", format!("{CANDIDATES}\n\r\n  \n")),
        ("no_final_newline", CANDIDATES.trim_end().to_string()),
    ];
    for (name, text) in variants {
        let got = cands(&write(dir.path(), &format!("{name}.csv"), &text))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.rows, clean.rows, "{name}");
    }
}

#[test]
fn malignancy_file_with_quoted_commas_and_bool_spellings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = read_annotations_csv(
        &write(dir.path(), "a.csv", ANNOTATIONS_MAL),
        AnnotationsKind::WithMalignancy,
        CsvOptions::default(),
    )
    .expect("load");
    let mal: Vec<Option<bool>> = a.rows.iter().map(|r| r.is_malignant).collect();
    assert_eq!(mal, vec![Some(true), Some(false), Some(false), Some(true)]);
    assert_eq!(a.rows[3].source_line, 5);
    for (s, v) in [
        ("True", true),
        ("true", true),
        ("1", true),
        ("False", false),
        ("false", false),
        ("0", false),
    ] {
        assert_eq!(parse_bool(s), Some(v));
    }
    assert_eq!(parse_bool("yes"), None);
    // Plain kind reads mal_bool when present, WithMalignancy requires it.
    let plain = "seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,1,2,3,4\n";
    let p = write(dir.path(), "plain.csv", plain);
    let got =
        read_annotations_csv(&p, AnnotationsKind::Plain, CsvOptions::default()).expect("plain");
    assert_eq!(got.rows[0].is_malignant, None);
    let err = read_annotations_csv(&p, AnnotationsKind::WithMalignancy, CsvOptions::default())
        .expect_err("no mal_bool");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:1: header has no column \"mal_bool\" (found [\"seriesuid\", \"coordX\", \"coordY\", \"coordZ\", \"diameter_mm\"]); is this the right file?",
            p.display()
        )
    );
}

/// Loads a one-bad-row file and returns the error text with the path replaced by `F`.
fn one_bad(kind: Option<AnnotationsKind>, header: &str, bad: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = if kind.is_some() {
        "s1,1,2,3,4"
    } else {
        "s1,1,2,3,0"
    };
    let ok = if header.ends_with("mal_bool") {
        format!("{ok},True")
    } else {
        ok.to_string()
    };
    let p = write(
        dir.path(),
        "f.csv",
        &format!("{header}\n{ok}\n{bad}\n{ok}\n"),
    );
    let err = match kind {
        Some(k) => read_annotations_csv(&p, k, CsvOptions::default()).map(|_| ()),
        None => cands(&p).map(|_| ()),
    }
    .expect_err("must fail");
    err.to_string().replace(&p.display().to_string(), "F")
}

#[test]
fn each_bad_row_kind_names_file_line_and_reason() {
    let c = "seriesuid,coordX,coordY,coordZ,class";
    let a = "seriesuid,coordX,coordY,coordZ,diameter_mm";
    let m = "seriesuid,coordX,coordY,coordZ,diameter_mm,mal_bool";
    let cases: Vec<(Option<AnnotationsKind>, &str, &str, &str)> = vec![
        (
            None,
            c,
            "s1,1,2,3",
            "wrong column count: expected 5 fields, found 4",
        ),
        (
            None,
            c,
            "s1,1,2,3,0,9",
            "wrong column count: expected 5 fields, found 6",
        ),
        (
            None,
            c,
            "s1,abc,2,3,0",
            "non-numeric value \"abc\" in column coordX",
        ),
        (
            None,
            c,
            "s1,1,,3,0",
            "non-numeric value \"\" in column coordY",
        ),
        (
            None,
            c,
            "s1,1,2,NaN,0",
            "non-finite value \"NaN\" (NaN/inf) in column coordZ",
        ),
        (
            None,
            c,
            "s1,inf,2,3,0",
            "non-finite value \"inf\" (NaN/inf) in column coordX",
        ),
        (None, c, "s1,1,2,3,2", "class must be 0 or 1, found \"2\""),
        (
            None,
            c,
            "s1,1,2,3,1.0",
            "class must be 0 or 1, found \"1.0\"",
        ),
        (None, c, " ,1,2,3,0", "empty seriesuid"),
        (
            None,
            c,
            "\"s1\"x,1,2,3,0",
            "malformed CSV: text after a closing quote",
        ),
        (
            Some(AnnotationsKind::Plain),
            a,
            "s1,1,2,3,-1",
            "negative diameter_mm -1",
        ),
        (
            Some(AnnotationsKind::Excluded),
            a,
            "s1,1,2,3,-2.5",
            "negative diameter_mm -2.5",
        ),
        (
            Some(AnnotationsKind::WithMalignancy),
            m,
            "s1,1,2,3,4,maybe",
            "column mal_bool must be True/False/true/false/1/0, found \"maybe\"",
        ),
    ];
    for (kind, header, bad, reason) in cases {
        let want = format!("F: 1 bad row(s):\n  F:3: {reason}\nhint: fix the rows, or load with `strict: false` to drop them");
        assert_eq!(one_bad(kind, header, bad), want, "row {bad:?}");
    }
}

#[test]
fn excluded_annotations_allow_minus_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = write(
        dir.path(),
        "ex.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,1,2,3,-1\ns1,1,2,3,0\n",
    );
    let got = read_annotations_csv(&p, AnnotationsKind::Excluded, CsvOptions::default())
        .expect("excluded");
    assert_eq!(
        got.rows.iter().map(|r| r.diameter_mm).collect::<Vec<_>>(),
        vec![-1.0, 0.0]
    );
}

#[test]
fn strict_lists_first_five_and_total_lenient_drops_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    for i in 0..10 {
        text.push_str(&format!("s{i},{i},0,0,0\n"));
        if i % 2 == 1 {
            text.push_str(&format!("s{i},x,0,0,0\n"));
        }
        if i == 4 {
            text.push_str("s4,1,2,3,7\n\"unterminated,1,2,3,0\n"); // the open quote eats the rest
        }
    }
    let p = write(dir.path(), "many.csv", &text);
    let err = cands(&p).expect_err("strict");
    let TableError::BadRows { rows, total, .. } = &err else {
        panic!("wrong variant: {err}")
    };
    assert_eq!(*total, 4);
    assert_eq!(
        rows.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![4, 7, 9, 10]
    );
    assert!(err.to_string().contains(&format!(
        "{}:10: malformed CSV: unterminated quoted field",
        p.display()
    )));
    assert_eq!(
        err.hint().as_deref(),
        Some("fix the rows, or load with `strict: false` to drop them")
    );

    let lenient = read_candidates_csv(&p, CsvOptions { strict: false }).expect("lenient");
    assert_eq!(lenient.dropped, 4);
    assert_eq!(lenient.drop_reasons, rows.clone());
    assert_eq!(
        lenient
            .rows
            .iter()
            .map(|r| r.series_uid.as_str())
            .collect::<Vec<_>>(),
        vec!["s0", "s1", "s2", "s3", "s4"]
    );

    // More than MAX_REPORTED_ROWS bad rows: the message says how many are shown.
    let mut text = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    for i in 0..8 {
        text.push_str(&format!("s{i},{i},0,0,5\n"));
    }
    let p = write(dir.path(), "eight.csv", &text);
    let msg = cands(&p).expect_err("strict").to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: 8 bad row(s), first 5:\n  {}:2: class",
            p.display(),
            p.display()
        )),
        "{msg}"
    );
    assert_eq!(msg.matches("class must be").count(), 5);
}

#[test]
fn missing_file_and_empty_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("absent.csv");
    let msg = cands(&p).expect_err("absent").to_string();
    assert!(
        msg.starts_with(&format!("{}: ", p.display()))
            && msg.ends_with("(check that the path exists and is readable/writable)"),
        "{msg}"
    );
    let p = write(dir.path(), "empty.csv", "");
    let msg = cands(&p).expect_err("empty").to_string();
    assert_eq!(
        msg,
        format!(
            "{}:1: header has no column \"seriesuid\" (found []); is this the right file?",
            p.display()
        )
    );
}

/// Timing probe (not a pass/fail test): a generated candidates.csv of the real size (551,065
/// rows, LUNA-like UIDs and coordinates). Run: `cargo test --release --test it -- --ignored
/// tables_parse_timing --nocapture`.
#[test]
#[ignore = "timing probe; run in release"]
fn tables_parse_timing() {
    use std::fmt::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("seriesuid,coordX,coordY,coordZ,class\n");
    let mut s: u64 = 1;
    for i in 0..551_065u64 {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let f = |k: u32| ((s >> k) & 0xffff) as f64 / 65536.0 * 300.0 - 150.0;
        let uid = format!(
            "1.3.6.1.4.1.14519.5.2.1.6279.6001.{:030}",
            (i / 620) * 7919 + 100_000_000_000
        );
        let _ = writeln!(
            text,
            "{uid},{:.8},{:.8},{:.8},{}",
            f(0),
            f(16),
            f(32),
            u8::from(i % 408 == 0)
        );
    }
    let p = write(dir.path(), "candidates.csv", &text);
    let t = std::time::Instant::now();
    let got = read_candidates_csv(&p, CsvOptions::default()).expect("parse");
    let dt = t.elapsed();
    assert_eq!(got.rows.len(), 551_065);
    let t2 = std::time::Instant::now();
    let opts = MergeOptions {
        rule: MergeRule::Final,
        split: SplitSpec::Stride { val_stride: 10 },
        require_on_disk: None,
        subsets: None,
    };
    let merged = merge_rows(&[], &got.rows, &opts).expect("merge");
    let dt_merge = t2.elapsed();
    let t3 = std::time::Instant::now();
    write_rows(&merged, &dir.path().join("candidates.parquet")).expect("write");
    let back = read_rows::<MergedRow>(&dir.path().join("candidates.parquet")).expect("read");
    assert_eq!(back, merged);
    println!(
        "tables_parse_timing: merge {:.3} s, parquet write+read {:.3} s",
        dt_merge.as_secs_f64(),
        t3.elapsed().as_secs_f64()
    );
    println!(
        "tables_parse_timing: {} rows, {:.1} MB, {:.3} s (typed rows)",
        got.rows.len(),
        text.len() as f64 / 1e6,
        dt.as_secs_f64()
    );
}
