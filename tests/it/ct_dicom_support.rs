//! Shared pieces of the DICOM reader tests: writing synthetic series with pydicom
//! (tests/oracle/dicom_write_series.py), reading a series with SimpleITK
//! (tests/oracle/dicom_sitk_read.py) and comparing luna's volume with it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use luna::ct::CtImage;
use luna::synth::{render_series, Preset, SynthOptions};

/// The patient identifiers planted by `"phi": true` (dicom_write_series.py's PHI).
pub const PHI: [&str; 6] = [
    "Jane^Doe",
    "PHI-12345",
    "19710203",
    "Saint PHI Hospital",
    "ACC-PHI-777",
    "Referrer^PHI",
];

/// The repository's slab of LIDC-IDRI-0003 (tests/fixtures/lidc-slab).
pub fn fixture_slab() -> PathBuf {
    Path::new(crate::REPO).join("tests/fixtures/lidc-slab")
}

/// The real LIDC-IDRI-0003 series folder under `real` (shared/real).
pub fn real_lidc_series(real: &Path) -> PathBuf {
    let patient = real.join("lidc/LIDC-IDRI-0003");
    let study = only_subdir(&patient);
    only_subdir(&study)
}

fn only_subdir(d: &Path) -> PathBuf {
    let mut subs: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(subs.len(), 1, "{}: one sub-folder expected", d.display());
    subs.remove(0)
}

fn run_py(script: &str, args: &[&Path]) -> String {
    let py = crate::py::python_with("SimpleITK, pydicom, numpy");
    let script = format!("{}/tests/oracle/{script}", crate::REPO);
    let out = Command::new(&py)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} {script}: {e}", py.display()));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A small synthetic CT of luna's generator (tiny preset), cut to `slices` slices, written as
/// int16 into `dir/volume.bin`; returns its (z, y, x) shape.
pub fn synth_volume(dir: &Path, slices: usize) -> [usize; 3] {
    let opts = SynthOptions {
        seed: 23,
        series: Some(1),
        subsets: Some(1),
        ..SynthOptions::preset(Preset::Tiny)
    };
    let (data, g) = render_series(&opts, 0).expect("render a synthetic CT");
    let [x, y, z] = g.dims_xyz;
    let z = z.min(slices);
    let bytes: Vec<u8> = data[..z * y * x]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    std::fs::write(dir.join("volume.bin"), bytes).expect("write volume.bin");
    [z, y, x]
}

/// Writes the series described by `cases` (dicom_write_series.py's CASE objects; `out` is
/// relative to `dir`) from `dir/volume.bin` of `shape`; returns their SeriesInstanceUIDs.
pub fn write_series(dir: &Path, shape: [usize; 3], cases: serde_json::Value) -> Vec<String> {
    let mut cases = cases;
    for c in cases.as_array_mut().expect("a list of cases") {
        let out = dir.join(c["out"].as_str().expect("out"));
        c["out"] = serde_json::json!(out);
    }
    let spec = serde_json::json!({
        "volume": dir.join("volume.bin"), "shape": shape, "series": cases,
    });
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let out = run_py("dicom_write_series.py", &[&spec_path]);
    serde_json::from_str(out.trim()).expect("uids printed by the writer")
}

/// What SimpleITK's ImageSeriesReader gives for a series.
pub struct Sitk {
    /// numpy dtype name of the pixels.
    pub dtype: String,
    /// (z, y, x).
    pub shape: Vec<usize>,
    /// Origin (x, y, z).
    pub origin: Vec<f64>,
    /// Spacing (x, y, z).
    pub spacing: Vec<f64>,
    /// GetDirection, row-major.
    pub direction: Vec<f64>,
    /// The voxels as f64 (exact for int16/int32/float64).
    pub values: Vec<f64>,
}

/// Reads `series` with SimpleITK (files in `work`).
pub fn sitk_read(series: &Path, work: &Path) -> Sitk {
    let prefix = work.join("sitk");
    run_py("dicom_sitk_read.py", &[series, &prefix]);
    let txt = std::fs::read_to_string(prefix.with_extension("txt")).expect("sitk.txt");
    let field = |k: &str| -> Vec<String> {
        let line = txt
            .lines()
            .find(|l| l.split_whitespace().next() == Some(k))
            .unwrap_or_else(|| panic!("sitk.txt has no {k}"));
        line.split_whitespace().skip(1).map(String::from).collect()
    };
    let nums =
        |k: &str| -> Vec<f64> { field(k).iter().map(|v| v.parse().expect("float")).collect() };
    let dtype = field("type").remove(0);
    let bytes = std::fs::read(prefix.with_extension("bin")).expect("sitk.bin");
    let values = match dtype.as_str() {
        "int16" => bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as f64)
            .collect(),
        "int32" => bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
            .collect(),
        "float64" => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect(),
        other => panic!("SimpleITK gave pixel type {other}; extend the oracle"),
    };
    Sitk {
        dtype,
        shape: nums("shape").iter().map(|v| *v as usize).collect(),
        origin: nums("origin"),
        spacing: nums("spacing"),
        direction: nums("direction"),
        values,
    }
}

/// luna's volume equals SimpleITK's: same shape and voxels, geometry within 1e-6.
pub fn assert_same_as_sitk(ct: &CtImage, s: &Sitk, what: &str) {
    assert_eq!(ct.shape_irc().to_vec(), s.shape, "{what}: shape (z,y,x)");
    let g = ct.geometry();
    let close = |a: &[f64], b: &[f64], k: &str| {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!(
                (x - y).abs() <= 1e-6,
                "{what}: {k} luna {a:?} SimpleITK {b:?}"
            );
        }
    };
    close(&[g.origin.x, g.origin.y, g.origin.z], &s.origin, "origin");
    close(
        &[g.spacing.x, g.spacing.y, g.spacing.z],
        &s.spacing,
        "spacing",
    );
    let d: Vec<f64> = g.direction.iter().flatten().copied().collect();
    close(&d, &s.direction, "direction");
    let v = ct.to_f64_vec();
    let differ = v.iter().zip(&s.values).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{what}: {differ} voxels differ from SimpleITK's");
}
