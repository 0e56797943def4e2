//! No patient identifier leaves a DICOM input. The tiny system (tests/it/system.rs) trained on
//! DICOM series written by pydicom (`tests/oracle/dicom_use_write.py`: PatientName `Jane^Doe`,
//! PatientID `PHI-12345`, a birth date, InstitutionName, AccessionNumber,
//! ReferringPhysicianName), then `luna detect --json` on a series folder, on a tree with
//! `--series` and on the `.mhd` SimpleITK makes of the series, `/v1/detect` with the series as a
//! zip and as `.dcm` parts, and `luna report`; then a recursive search of the workspace (cache,
//! runs, staging, everything) and of every command's stdout and stderr and the server's log
//! finds none of the identifiers, `Jane` and `Doe` included.
//!
//! The search: every identifier of 4+ bytes anywhere in any file; `Doe` (3 bytes, which random
//! bytes of model weights or compressed chunks hold by chance about once per 16 MB) anywhere in
//! text files and, in binary files, only inside printable text (3 printable ASCII bytes on
//! either side). `Doe` can only come from PatientName, whose full value `Jane^Doe` holds `Jane`,
//! searched everywhere. Files that *are* the input — hard links `luna detect` stages (same
//! device and inode as an input file) — are not outputs; the test checks that they sit in the
//! staging folder only.
//!
//! The same run checks the detection half of the DICOM/`.mhd` equivalence (`dicom_equiv` has
//! crops, segmentation samples and clusters): `luna detect --json` on the series and on
//! SimpleITK's `.mhd` of it agree except for the file path, and `/v1/detect`'s answers equal the
//! command's.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::dicom_equiv::write_dicom;
use crate::engine_support::{Out, Ws};
use crate::serve::{http, Server};

/// The identifiers the oracle writes (and their parts).
const PHI: &[&str] = &[
    "Jane^Doe",
    "Jane",
    "Doe",
    "PHI-12345",
    "19450317",
    "Glenmoor Infirmary",
    "Glenmoor",
    "ACC-770011",
    "Quibble^Hortensia",
    "Quibble",
    "Hortensia",
];

/// The tiny system of `system.rs` with every CT-reading stage on the DICOM root `dcm`.
fn pipeline(dcm: &Path) -> String {
    let root = dcm.display();
    let fast = "batch_size: 16, augment: null, optimizer: { kind: adam, lr: 0.001 }, device: cpu, threads: 2, loader_threads: 1";
    format!(
        "pipeline: t\nstages:\n  \
         annotations: {{ uses: load_annotations, with: {{ annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv }} }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ val_stride: 2, ct_root: {root} }} }}\n  \
         crops: {{ uses: build_crops, needs: [candidates], with: {{ ct_root: {root} }} }}\n  \
         nodule: {{ uses: train_classifier, needs: [crops], with: {{ epochs: 1, epoch_samples: 64, {fast} }} }}\n  \
         mal: {{ uses: train_classifier, needs: [crops, nodule], with: {{ task: malignancy, finetune_from: nodule, epochs: 1, epoch_samples: 32, {fast} }} }}\n  \
         segdata: {{ uses: seg_dataset, needs: [candidates], with: {{ crop: 48, ct_root: {root} }} }}\n  \
         unet: {{ uses: train_segmentation, needs: [segdata], with: {{ epochs: 2, epoch_samples: 48, sub_crop: 32, batch_size: 8, device: cpu, threads: 2, loader_threads: 1, validate_every: 1, best_by: f1 }} }}\n  \
         segment: {{ uses: segment, needs: [unet, candidates], with: {{ device: cpu, batch_size: 8, ct_root: {root} }} }}\n  \
         clusters: {{ uses: cluster, needs: [segment], with: {{ threshold: 0.99, ct_root: {root} }} }}\n  \
         detections: {{ uses: classify_candidates, needs: [clusters, nodule, mal], with: {{ model: nodule, malignancy_model: mal, device: cpu, ct_root: {root} }} }}\n  \
         diagnosis: {{ uses: diagnose, needs: [detections, candidates] }}\n"
    )
}

/// `luna detect --json`'s document without what differs per call (run id, file path).
fn comparable(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("run");
    for s in doc["series"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("file");
    }
    doc
}

fn json_of(o: &Out) -> Value {
    assert_eq!(o.code, 0, "{}", o.stderr);
    serde_json::from_str(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", o.stdout))
}

/// A zip of `dir`'s files (Python's zipfile, deflate), entry names relative to `dir`; extra
/// entries `(name, bytes)` appended.
fn zip_of(dir: &Path, out: &Path, extra: &[(&str, &str)]) -> Vec<u8> {
    let script = "import os, sys, zipfile\n\
        d, out = sys.argv[1], sys.argv[2]\n\
        with zipfile.ZipFile(out, 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   for n in sorted(os.listdir(d)):\n\
        \x20       z.write(os.path.join(d, n), 'study/series/' + n)\n\
        \x20   for i in range(3, len(sys.argv), 2):\n\
        \x20       z.writestr(sys.argv[i], sys.argv[i + 1])\n";
    let mut cmd = std::process::Command::new(crate::py::python());
    cmd.args(["-c", script]).arg(dir).arg(out);
    for (n, v) in extra {
        cmd.args([n, v]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

/// A multipart body of `dir`'s files as `.dcm` parts.
fn multipart_of(dir: &Path, boundary: &str) -> Vec<u8> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    let mut v = Vec::new();
    for (k, p) in names.iter().enumerate() {
        v.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"f{k}\"; filename=\"s{k}.dcm\"\r\nContent-Type: application/dicom\r\n\r\n").as_bytes());
        v.extend(std::fs::read(p).unwrap());
        v.extend(b"\r\n");
    }
    v.extend(format!("--{boundary}--\r\n").as_bytes());
    v
}

/// Whether `hay` holds `needle` (for 3-byte needles in binary files: inside printable text).
fn holds(hay: &[u8], needle: &[u8], text: bool) -> bool {
    let printable = |b: &u8| (0x20..0x7f).contains(b);
    hay.windows(needle.len()).enumerate().any(|(i, w)| {
        if w != needle {
            return false;
        }
        if text || needle.len() > 3 {
            return true;
        }
        let before = i >= 3 && hay[i - 3..i].iter().all(printable);
        let end = i + needle.len();
        let after = hay.len() >= end + 3 && hay[end..end + 3].iter().all(printable);
        before || after
    })
}

/// Every identifier found in `bytes`, as `what: identifier`.
fn leaks(what: &str, bytes: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(bytes).is_ok() && !bytes.contains(&0);
    PHI.iter()
        .filter(|n| holds(bytes, n.as_bytes(), text))
        .map(|n| format!("{what}: {n}"))
        .collect()
}

/// (device, inode) of every file below `dir`.
fn inodes(dir: &Path) -> HashSet<(u64, u64)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let m = e.metadata().unwrap();
            (m.dev(), m.ino())
        })
        .collect()
}

/// The identifiers found in the workspace's files, and the staged input files (hard links).
fn search_tree(root: &Path, input: &HashSet<(u64, u64)>) -> (Vec<String>, Vec<PathBuf>) {
    let (mut found, mut staged) = (Vec::new(), Vec::new());
    for e in walkdir::WalkDir::new(root).into_iter().flatten() {
        if !e.file_type().is_file() {
            continue; // symlinks are not followed: what they point at is searched where it is
        }
        let m = e.metadata().unwrap();
        if input.contains(&(m.dev(), m.ino())) {
            staged.push(e.into_path());
            continue;
        }
        let bytes = std::fs::read(e.path()).unwrap();
        found.extend(leaks(&e.path().display().to_string(), &bytes));
    }
    (found, staged)
}

#[test]
fn no_patient_identifier_leaves_a_dicom_input() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    // the input (with the identifiers) lives outside the workspace: what is searched is ours
    let input = tempfile::Builder::new()
        .prefix("luna-phi-input-")
        .tempdir()
        .unwrap();
    let dcm = input.path().join("dcm");
    ws.luna(&["synth", "ext", "--preset", "tiny", "--seed", "3"])
        .expect_code(0);
    let written = write_dicom(&ws, "ext", &dcm, Some("sitk"));
    assert_eq!(written.len(), 4, "{written:?}");
    let mut outputs: Vec<(String, Out)> = Vec::new();

    ws.pipeline("t", &pipeline(&dcm));
    let run = ws.luna(&["run", "t"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run_id = ws.last_run()["id"].as_str().unwrap().to_string();
    outputs.push(("luna run".into(), run));

    // detect: a series folder, SimpleITK's .mhd of it, the tree with --series
    let (uid, series_dir) = written[0].split_once(' ').unwrap();
    let (uid, series_dir) = (uid.to_string(), PathBuf::from(series_dir));
    let detect = |args: &[&str]| {
        let mut all = vec!["detect"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--pipeline", "t"]);
        ws.luna(&all)
    };
    let on_dicom = detect(&[series_dir.to_str().unwrap(), "--json"]);
    let want = comparable(json_of(&on_dicom));
    assert_eq!(want["series"][0]["series_uid"], uid.as_str());
    let mhd = ws.path(&format!("sitk/{uid}.mhd"));
    let on_mhd = detect(&[mhd.to_str().unwrap(), "--json"]);
    assert_eq!(
        comparable(json_of(&on_mhd)),
        want,
        "DICOM vs SimpleITK's .mhd"
    );
    let picked = detect(&[dcm.to_str().unwrap(), "--series", &uid, "--json"]);
    assert_eq!(comparable(json_of(&picked)), want, "--series on the tree");
    let several = detect(&[dcm.to_str().unwrap()]);
    assert_eq!(several.code, 2, "{}", several.stderr);
    for (u, _) in written.iter().filter_map(|l| l.split_once(' ')) {
        assert!(several.stderr.contains(u), "{u}: {}", several.stderr);
    }
    println!(
        "luna detect on {uid}: {} nodules; the tree without --series: {}",
        want["series"][0]["nodules"].as_array().unwrap().len(),
        several.stderr.trim()
    );
    let stray = detect(&[mhd.to_str().unwrap(), "--series", &uid]);
    assert_eq!(stray.code, 2, "{}", stray.stderr);
    assert!(
        stray
            .stderr
            .contains(&format!("--series {uid}: no DICOM folder is given")),
        "{}",
        stray.stderr
    );
    let twice = detect(&[series_dir.to_str().unwrap(), mhd.to_str().unwrap()]);
    assert_eq!(twice.code, 2, "{}", twice.stderr);
    assert!(
        twice.stderr.contains(&format!(
            "series {uid} is given twice: {} and {}",
            series_dir.display(),
            mhd.display()
        )),
        "{}",
        twice.stderr
    );
    outputs.extend([
        ("detect --series on a .mhd".into(), stray),
        ("detect twice".into(), twice),
        ("detect dicom".into(), on_dicom),
        ("detect mhd".into(), on_mhd),
        ("detect --series".into(), picked),
        ("detect tree".into(), several),
    ]);

    // serve: the series as a zip and as .dcm parts; a zip entry leaving its folder is refused
    let serve_log = {
        let srv = Server::start(&ws, "serve", &["--max-body", "200000000"]);
        let post = |content_type: &str, body: &[u8]| {
            let r = http(
                &srv.addr,
                "POST",
                "/v1/detect",
                &[("Content-Type", content_type)],
                body,
            );
            (r.status, r.text())
        };
        let zip = zip_of(&series_dir, &input.path().join("s.zip"), &[]);
        let (status, body) = post("application/zip", &zip);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            comparable(serde_json::from_str(&body).unwrap()),
            want,
            "zip"
        );
        let parts = multipart_of(&series_dir, "XyZ");
        let (status, body) = post("multipart/form-data; boundary=XyZ", &parts);
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            comparable(serde_json::from_str(&body).unwrap()),
            want,
            "multipart"
        );
        let evil = zip_of(
            &series_dir,
            &input.path().join("e.zip"),
            &[("../x.dcm", "x")],
        );
        let (status, body) = post("application/zip", &evil);
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("zip entry \\\"../x.dcm\\\""), "{body}");
        srv.log()
    };

    let report = ws.luna(&["report", &run_id]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    outputs.push(("luna report".into(), report));

    // the search; it finds every identifier of 4+ bytes in an input slice (the control)
    let slice = std::fs::read(series_dir.join("IM0000.dcm")).unwrap();
    let control = leaks("input", &slice);
    for id in PHI.iter().filter(|id| id.len() > 3) {
        assert!(
            control.contains(&format!("input: {id}")),
            "{id}: {control:?}"
        );
    }
    let input_files = inodes(input.path());
    let (mut found, staged) = search_tree(ws.root(), &input_files);
    for (what, o) in &outputs {
        found.extend(leaks(&format!("{what} stdout"), o.stdout.as_bytes()));
        found.extend(leaks(&format!("{what} stderr"), o.stderr.as_bytes()));
    }
    found.extend(leaks("serve log", serve_log.as_bytes()));
    let files = walkdir::WalkDir::new(ws.root())
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count();
    println!(
        "searched {files} files of the workspace (the server log among them), {} outputs for {} identifiers; {} staged input links skipped",
        outputs.len(),
        PHI.len(),
        staged.len()
    );
    assert!(
        found.is_empty(),
        "patient identifiers found:\n{}",
        found.join("\n")
    );
    let staging = ws.path(".luna/detect");
    assert!(
        staged.iter().all(|p| p.starts_with(&staging)),
        "input files linked outside the staging folder: {staged:?}"
    );
}
