//! Oracle tests of the DICOM series reader (`luna::ct::dicom`) against SimpleITK's
//! ImageSeriesReader: the real LIDC-IDRI-0003 series (shared/real), its slab kept in the
//! repository, and synthetic series written by pydicom from a luna synthetic CT with shuffled
//! names, reversed slice order, non-axial orientations, slope ≠ 1, intercept −1024, implicit
//! and explicit VR, big endian, RLE, JPEG Lossless and JPEG 2000.

use std::path::Path;

use luna::ct::dicom::{scan_tree, select_series};
use luna::ct::CtSource;

use crate::ct_dicom_support::{
    assert_same_as_sitk, fixture_slab, real_lidc_series, sitk_read, synth_volume, write_series, PHI,
};

const LIDC_UID: &str = "1.3.6.1.4.1.14519.5.2.1.6279.6001.170706757615202213033480003264";

fn read_and_compare(series_dir: &Path, what: &str) -> luna::ct::dicom::SeriesFiles {
    let work = tempfile::tempdir().expect("tempdir");
    let series = select_series(series_dir, None).unwrap_or_else(|e| panic!("{what}: {e}"));
    let ct = CtSource::Dicom(series.clone())
        .open()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_same_as_sitk(&ct, &sitk_read(series_dir, work.path()), what);
    series
}

#[test]
fn ct_dicom_real_lidc_series_matches_simpleitk() {
    let Some(real) = crate::harness::require_real_data() else {
        return;
    };
    let dir = real_lidc_series(&real);
    let s = read_and_compare(&dir, "LIDC-IDRI-0003");
    assert_eq!(s.uid, LIDC_UID);
    assert_eq!(s.files.len(), 140);
    // the whole patient folder is a tree with one series (and the readers' XML, not opened)
    let found = scan_tree(&real.join("lidc")).expect("scan");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].files.len(), 140);
}

#[test]
fn ct_dicom_fixture_slab_matches_simpleitk() {
    let s = read_and_compare(&fixture_slab(), "tests/fixtures/lidc-slab");
    assert_eq!(s.uid, LIDC_UID);
}

/// Direction matrices (row-major, columns = x, y, z axes).
const AXIAL: [f64; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
/// Axial with the z axis against row × column: files store the slices in reverse order.
const AXIAL_REVERSED: [f64; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0];
/// Coronal: rows along x, columns along −z, slices along y.
const CORONAL: [f64; 9] = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0];

/// An oblique orientation: Rz(30°)·Rx(20°), written out (columns = the rotated x, y, z axes).
fn oblique() -> [f64; 9] {
    let (a, b) = (30f64.to_radians(), 20f64.to_radians());
    let (ca, sa, cb, sb) = (a.cos(), a.sin(), b.cos(), b.sin());
    [ca, -sa * cb, sa * sb, sa, ca * cb, -ca * sb, 0.0, sb, cb]
}

#[test]
fn ct_dicom_synthetic_series_match_simpleitk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = synth_volume(dir.path(), 12);
    let common = serde_json::json!({"origin": [-101.5, 33.25, -240.0], "spacing": [0.7, 0.8, 2.5],
                                    "phi": true});
    let cases = [
        (
            "explicit-shuffled",
            serde_json::json!({"ts": "explicit", "direction": AXIAL,
            "names": "shuffled", "signed": false, "intercept": -1024}),
        ),
        (
            "implicit-reversed-slope2",
            serde_json::json!({"ts": "implicit",
            "direction": AXIAL_REVERSED, "names": "reversed", "slope": 2, "intercept": -1024}),
        ),
        (
            "explicit-oblique",
            serde_json::json!({"ts": "explicit", "direction": oblique(),
            "names": "shuffled", "intercept": -1024}),
        ),
        (
            "rle-coronal-12bit",
            serde_json::json!({"ts": "rle", "direction": CORONAL,
            "signed": false, "bits_stored": 12, "intercept": -1024}),
        ),
        (
            "big-endian",
            serde_json::json!({"ts": "big", "direction": AXIAL, "intercept": -1024}),
        ),
        (
            "jpeg-lossless",
            serde_json::json!({"ts": "jpeg-lossless", "direction": oblique(),
            "names": "shuffled", "intercept": -1024}),
        ),
        (
            "jpeg2000-coronal",
            serde_json::json!({"ts": "j2k", "direction": CORONAL,
            "names": "reversed", "intercept": -1024}),
        ),
        (
            "float-rescale",
            serde_json::json!({"ts": "explicit", "direction": AXIAL,
            "slope": 0.5, "intercept": -1024.5}),
        ),
    ];
    let specs: Vec<serde_json::Value> = cases
        .iter()
        .map(|(name, c)| {
            let mut c = c.clone();
            c["out"] = serde_json::json!(name);
            for (k, v) in common.as_object().expect("object") {
                c[k] = v.clone();
            }
            c
        })
        .collect();
    write_series(dir.path(), shape, serde_json::Value::Array(specs));
    for (name, _) in cases {
        let s = read_and_compare(&dir.path().join(name), name);
        assert_eq!(s.files.len(), shape[0], "{name}");
        let debug = format!("{s:?}");
        for p in PHI {
            assert!(!debug.contains(p), "{name}: {p} in {debug}");
        }
    }
}
