//! The same CT as a DICOM series (written by pydicom from luna's synthetic CTs,
//! `tests/oracle/dicom_use_write.py`) and as the `.mhd` SimpleITK's ImageSeriesReader makes of
//! that series gives byte-identical candidate tables, crops (`build_crops`), segmentation
//! samples (`seg_dataset`) and clusters (`cluster`, over one set of probability volumes written
//! by h5py from the SimpleITK images). Byte-identical includes the geometry the seg files
//! store: the reader gives SimpleITK's `+0.0`, never `-0.0`, for a zero of the direction. `luna detect --json` on both forms is compared in
//! `dicom_phi` (it needs the trained system).

use std::path::{Path, PathBuf};

use crate::data_support::{data_artifact, data_synth};
use crate::engine_support::Ws;

/// The synthetic CTs of `ext` as DICOM series under `dcm/` and SimpleITK `.mhd` under `sitk/`
/// (each relative to the workspace); returns the oracle's `uid folder` lines.
pub(crate) fn write_dicom(ws: &Ws, src: &str, dcm: &Path, sitk: Option<&str>) -> Vec<String> {
    let script = Path::new(crate::REPO).join("tests/oracle/dicom_use_write.py");
    let mut cmd = std::process::Command::new(crate::py::python_with("pydicom, SimpleITK"));
    cmd.arg(script).arg(ws.path(src)).arg(dcm);
    if let Some(s) = sitk {
        cmd.arg(ws.path(s));
    }
    let out = cmd.output().expect("run the DICOM writer");
    assert!(
        out.status.success(),
        "dicom_use_write.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every file below `dir` by relative path, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() != "manifest.json")
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn pipeline(repo: &str) -> String {
    let both = |name: &str, body: &str| {
        format!(
            "  {name}_d: {}\n  {name}_m: {}\n",
            body.replace("ROOT", "dcm").replace("SUFFIX", "_d"),
            body.replace("ROOT", "sitk").replace("SUFFIX", "_m")
        )
    };
    let mut p = String::from(
        "pipeline: eq\nstages:\n  \
         annotations: { uses: load_annotations, with: { annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv } }\n",
    );
    p += &both(
        "cand",
        "{ uses: merge_candidates, needs: [annotations], with: { val_stride: 2, ct_root: ROOT } }",
    );
    p += &both(
        "crops",
        "{ uses: build_crops, needs: [candSUFFIX], with: { ct_root: ROOT } }",
    );
    p += &both(
        "seg",
        "{ uses: seg_dataset, needs: [candSUFFIX], with: { crop: 48, ct_root: ROOT } }",
    );
    p += &format!(
        "  probs:\n    uses: command\n    with: {{ run: '\"$LUNA_PYTHON\" {repo}/tests/oracle/write_prob_volumes.py sitk \"$LUNA_OUT\"', inputs: [sitk], provides: [probabilities] }}\n"
    );
    p += &both(
        "clusters",
        "{ uses: cluster, needs: [probs], with: { threshold: 0.5, ct_root: ROOT } }",
    );
    p
}

#[test]
fn a_dicom_series_and_the_mhd_simpleitk_makes_of_it_give_identical_crops_and_clusters() {
    let ws = Ws::new();
    data_synth(&ws, "ext", 5, 3);
    let series = write_dicom(&ws, "ext", &ws.path("dcm"), Some("sitk"));
    assert_eq!(series.len(), 3, "{series:?}");
    ws.pipeline("eq", &pipeline(crate::REPO));
    let py = crate::py::python();
    let out = ws.luna_env(&["run", "eq"], &[("LUNA_PYTHON", py.to_str().unwrap())]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for stage in ["cand", "crops", "seg", "clusters"] {
        let d = data_artifact(&ws, "eq", &format!("{stage}_d"));
        let m = data_artifact(&ws, "eq", &format!("{stage}_m"));
        let (fd, fm) = (files(&d), files(&m));
        let names = |f: &[(PathBuf, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fd), names(&fm), "{stage}: the same files");
        for ((name, a), (_, b)) in fd.iter().zip(&fm) {
            assert!(
                a == b,
                "{stage}: {} differs (DICOM vs SimpleITK .mhd)",
                name.display()
            );
        }
        println!(
            "{stage}: {} files equal ({} bytes)",
            fd.len(),
            fd.iter().map(|f| f.1.len()).sum::<usize>()
        );
    }
    let crops =
        std::fs::read_to_string(data_artifact(&ws, "eq", "crops_d").join("crops.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&crops).unwrap();
    assert_eq!(doc["series"], 3, "{crops}");
    assert!(doc["crops"].as_u64().unwrap() > 0, "{crops}");
}
