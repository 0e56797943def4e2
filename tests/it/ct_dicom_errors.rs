//! One test per error case of the DICOM reader: each message names the folder or file and says
//! what to do, and none carries a planted patient identifier (every series here has them).

use std::path::Path;

use luna::ct::dicom::{scan_tree, select_series};
use luna::ct::{CtError, CtSource};

use crate::ct_dicom_support::{synth_volume, write_series, PHI};

const SLICES: usize = 10;

/// Writes `cases` (each with `out`) of a 10-slice synthetic CT into a fresh folder.
fn series(cases: serde_json::Value) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = synth_volume(dir.path(), SLICES);
    let mut cases = cases;
    for c in cases.as_array_mut().expect("list") {
        let defaults = serde_json::json!({"direction": [1, 0, 0, 0, 1, 0, 0, 0, 1],
            "origin": [-50.0, -60.0, -70.0], "spacing": [0.7, 0.7, 2.0], "phi": true,
            "names": "plain"});
        for (k, v) in defaults.as_object().expect("object") {
            if c.get(k).is_none() {
                c[k] = v.clone();
            }
        }
    }
    let uids = write_series(dir.path(), shape, cases);
    (dir, uids)
}

/// The message of `e`, checked free of the planted identifiers, in Display and Debug.
fn message(e: CtError) -> String {
    let (shown, debug) = (e.to_string(), format!("{e:?}"));
    for p in PHI {
        assert!(
            !shown.contains(p) && !debug.contains(p),
            "{p} leaked: {shown}"
        );
    }
    shown
}

fn read_err(dir: &Path) -> String {
    let s = select_series(dir, None).expect("one series");
    match CtSource::Dicom(s).open() {
        Ok(_) => panic!("{}: read without error", dir.display()),
        Err(e) => message(e),
    }
}

fn has_all(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}

#[test]
fn ct_dicom_error_two_series_in_one_folder() {
    let (d, uids) = series(serde_json::json!([
        {"out": "s"},
        {"out": "s", "drop": [0, 1], "names": "shuffled"}
    ]));
    let dir = d.path().join("s");
    let e = message(select_series(&dir, None).expect_err("two series"));
    has_all(
        &e,
        &[
            &dir.display().to_string(),
            "holds 2 CT series",
            &format!("{} (10 slices)", uids[0]),
            &format!("{} (8 slices)", uids[1]),
            "--series UID",
        ],
    );
    let picked = select_series(&dir, Some(&uids[1])).expect("--series picks one");
    assert_eq!(picked.files.len(), 8);
    let e = message(select_series(&dir, Some("1.2.3")).expect_err("unknown uid"));
    has_all(
        &e,
        &[
            "no CT series has SeriesInstanceUID 1.2.3",
            &uids[0],
            "--series",
        ],
    );
    // a dataset tree simply lists both
    assert_eq!(scan_tree(d.path()).expect("scan").len(), 2);
}

#[test]
fn ct_dicom_error_missing_slice_names_the_gap() {
    let (d, _) = series(serde_json::json!([{"out": "s", "drop": [4]}]));
    let e = read_err(&d.path().join("s"));
    has_all(
        &e,
        &[
            "not evenly spaced",
            "gap of 4.0000 mm",
            "slice003.dcm",
            "slice005.dcm",
            "2.0000 mm apart",
            "a slice is missing",
        ],
    );
}

#[test]
fn ct_dicom_error_gantry_tilt() {
    let (d, _) = series(serde_json::json!([{"out": "s", "tilt": 0.5}]));
    let e = read_err(&d.path().join("s"));
    has_all(
        &e,
        &[
            "gantry tilt",
            "offset 0.500 mm",
            "slice000.dcm",
            "slice001.dcm",
        ],
    );
}

#[test]
fn ct_dicom_error_non_parallel_slices() {
    let (d, _) = series(serde_json::json!([{"out": "s", "odd_orientation": [3, 7]}]));
    let e = read_err(&d.path().join("s"));
    has_all(
        &e,
        &[
            "slices are not parallel",
            "ImageOrientationPatient",
            "slice003.dcm",
        ],
    );
}

#[test]
fn ct_dicom_error_non_ct_modality() {
    let (d, _) = series(serde_json::json!([{"out": "s", "modality": "MR"}]));
    let dir = d.path().join("s");
    let e = message(select_series(&dir, None).expect_err("MR"));
    has_all(&e, &["Modality is MR, not CT", "slice000.dcm", "CT series"]);
}

#[test]
fn ct_dicom_localizer_is_skipped_with_a_note() {
    let (d, _) = series(serde_json::json!([{"out": "s", "localizer": true}]));
    let s = select_series(&d.path().join("s"), None).expect("the CT series");
    assert_eq!(s.files.len(), SLICES);
    assert_eq!(s.skipped.len(), 1, "{:?}", s.skipped);
    assert!(s.skipped[0].path.ends_with("scout.dcm"));
    assert!(s.skipped[0].reason.contains("LOCALIZER"), "{:?}", s.skipped);
    let ct = CtSource::Dicom(s).open().expect("reads without the scout");
    assert_eq!(ct.shape_irc()[0], SLICES);
}

#[test]
fn ct_dicom_error_truncated_file() {
    let (d, _) = series(serde_json::json!([{"out": "s"}]));
    let f = d.path().join("s/slice006.dcm");
    let len = std::fs::metadata(&f).expect("stat").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .expect("open");
    file.set_len(len - 300).expect("truncate");
    let e = read_err(&d.path().join("s"));
    has_all(&e, &["slice006.dcm", "truncated", "re-export"]);
}

#[test]
fn ct_dicom_error_corrupt_header() {
    let (d, _) = series(serde_json::json!([{"out": "s"}]));
    let f = d.path().join("s/slice002.dcm");
    let mut bytes = std::fs::read(&f).expect("read");
    for b in &mut bytes[132..200] {
        *b = 0xff;
    }
    std::fs::write(&f, bytes).expect("write");
    let e = message(select_series(&d.path().join("s"), None).expect_err("corrupt"));
    has_all(
        &e,
        &["slice002.dcm", "cannot be read as DICOM", "re-export"],
    );
}

#[test]
fn ct_dicom_error_not_dicom() {
    let (d, _) = series(serde_json::json!([{"out": "s"}]));
    std::fs::write(d.path().join("s/notes.dcm"), "Jane^Doe was here").expect("write");
    let e = message(select_series(&d.path().join("s"), None).expect_err("not DICOM"));
    has_all(&e, &["notes.dcm", "not a DICOM file", "DICM"]);
    // without the .dcm name such a file is passed over with a note
    std::fs::rename(d.path().join("s/notes.dcm"), d.path().join("s/notes")).expect("rename");
    let s = select_series(&d.path().join("s"), None).expect("series");
    assert!(s
        .skipped
        .iter()
        .any(|k| k.reason.contains("not a DICOM file")));
}

#[test]
fn ct_dicom_error_undecodable_transfer_syntax() {
    let (d, _) = series(serde_json::json!([{"out": "s", "fake_ts": "1.2.840.10008.1.2.4.80"}]));
    let e = read_err(&d.path().join("s"));
    has_all(
        &e,
        &[
            "transfer syntax 1.2.840.10008.1.2.4.80",
            "JPEG-LS",
            "convert the series",
        ],
    );
}

#[test]
fn ct_dicom_error_no_series_in_folder() {
    let d = tempfile::tempdir().expect("tempdir");
    std::fs::write(d.path().join("README.txt"), "nothing here").expect("write");
    let e = message(select_series(d.path(), None).expect_err("empty"));
    has_all(
        &e,
        &[
            "no DICOM CT series found",
            "give the folder of one CT series",
        ],
    );
}
