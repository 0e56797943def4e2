//! The whole system on a tiny synthetic set: the pipeline trains the classifiers and the UNet
//! and runs the detection chain; `luna detect` on a CT that SimpleITK (not luna) wrote gives the
//! pipeline's detections for that CT; the run's HTML report opens in headless Chromium with the
//! network off, without console errors, with every image loaded, and shows a failed stage.

use std::path::{Path, PathBuf};

use luna::tables::{read_rows, DetectionRow};

use crate::engine_support::Ws;
use crate::train_support::stage_logs;

/// The tiny whole system (also `serve`'s fixture): classifiers, UNet, detection chain.
pub(crate) fn pipeline(name: &str, extra: &str) -> String {
    let fast = "batch_size: 16, augment: null, optimizer: { kind: adam, lr: 0.001 }, device: cpu, threads: 2, loader_threads: 1";
    format!(
        "pipeline: {name}\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 3 }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: {{ val_stride: 2 }}\n\
         \x20 crops:\n    uses: build_crops\n    needs: [candidates, data]\n\
         \x20 nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 64, {fast} }}\n\
         \x20 mal:\n    uses: train_classifier\n    needs: [crops, nodule]\n    with: {{ task: malignancy, finetune_from: nodule, epochs: 1, epoch_samples: 32, {fast} }}\n\
         \x20 eval:\n    uses: evaluate_classifier\n    needs: [crops, nodule]\n    with: {{ split: val, device: cpu }}\n\
         \x20 froc:\n    uses: evaluate_froc\n    needs: [eval, candidates, data]\n    with: {{ bootstrap: 50 }}\n\
         \x20 segdata:\n    uses: seg_dataset\n    needs: [candidates, data]\n    with: {{ crop: 48 }}\n\
         \x20 unet:\n    uses: train_segmentation\n    needs: [segdata]\n    with: {{ epochs: 2, epoch_samples: 48, sub_crop: 32, batch_size: 8, device: cpu, threads: 2, loader_threads: 1, validate_every: 1, best_by: f1 }}\n\
         \x20 segment:\n    uses: segment\n    needs: [unet, candidates, data]\n    with: {{ device: cpu, batch_size: 8 }}\n\
         \x20 clusters:\n    uses: cluster\n    needs: [segment, data]\n    with: {{ threshold: 0.99 }}\n\
         \x20 detections:\n    uses: classify_candidates\n    needs: [clusters, nodule, mal, data]\n    with: {{ model: nodule, malignancy_model: mal, device: cpu }}\n\
         \x20 diagnosis:\n    uses: diagnose\n    needs: [detections, candidates]\n{extra}"
    )
}

fn detections(path: &Path) -> Vec<DetectionRow> {
    read_rows::<DetectionRow>(path).unwrap()
}

/// `target/test-artifacts` of this build (screenshots).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let d = target.join("test-artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_trained_system_detects_an_outside_ct_and_its_report_opens_in_a_browser() {
    let ws = Ws::new();
    ws.pipeline("t", &pipeline("t", ""));

    // before training: detect says which run trains the models, and does not train
    let early = ws.luna(&["detect", "nowhere.mhd", "--pipeline", "t"]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    assert!(
        early
            .stderr
            .contains("the models of pipeline `t` are not trained yet"),
        "{}",
        early.stderr
    );
    assert!(
        early
            .stderr
            .contains("run `luna run t --until detections` first"),
        "{}",
        early.stderr
    );

    let out = ws.luna(&["run", "t"]);
    if out.code != 0 {
        panic!("{}\n{}", out.stderr, stage_logs(ws.root(), "detections"));
    }
    assert!(out.stderr.contains("report: "), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("CPM, false-positive reduction track (froc)"),
        "{}",
        out.stderr
    );
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());
    let ours = detections(&dir("detections").join("detections.parquet"));
    assert!(!ours.is_empty(), "the tiny system found no clusters at all");

    // the series with the most detections, rewritten by SimpleITK outside any dataset
    let mut uids: Vec<&str> = ours.iter().map(|d| d.series_uid.as_str()).collect();
    uids.sort();
    let uid = uids
        .iter()
        .max_by_key(|u| uids.iter().filter(|v| v == u).count())
        .unwrap()
        .to_string();
    let src = walkdir::WalkDir::new(dir("data"))
        .into_iter()
        .flatten()
        .find(|e| e.file_name().to_string_lossy() == format!("{uid}.mhd"))
        .unwrap()
        .into_path();
    std::fs::create_dir_all(ws.path("outside")).unwrap();
    let outside = ws.path(&format!("outside/{uid}.mhd"));
    let py = std::process::Command::new(crate::py::python())
        .args([
            "-c",
            "import sys, SimpleITK as s; s.WriteImage(s.ReadImage(sys.argv[1]), sys.argv[2], useCompression=False)",
        ])
        .arg(&src)
        .arg(&outside)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_ne!(
        std::fs::read(&outside).unwrap(),
        std::fs::read(&src).unwrap(),
        "SimpleITK's header differs from luna's"
    );

    let det = ws.luna(&[
        "detect",
        outside.to_str().unwrap(),
        "--pipeline",
        "t",
        "--json",
        "--out",
        "found",
    ]);
    assert_eq!(det.code, 0, "{}", det.stderr);
    let doc: serde_json::Value = serde_json::from_str(&det.stdout).unwrap();
    let theirs = detections(&ws.path("found/detections.parquet"));
    let mut mine: Vec<&DetectionRow> = ours.iter().filter(|d| d.series_uid == uid).collect();
    mine.sort_by_key(|d| d.cluster_id);
    let mut got: Vec<&DetectionRow> = theirs.iter().collect();
    got.sort_by_key(|d| d.cluster_id);
    assert_eq!(got.len(), mine.len(), "same clusters");
    for (a, b) in got.iter().zip(&mine) {
        assert_eq!(a.center_irc, b.center_irc);
        for k in 0..3 {
            assert!((a.center_xyz[k] - b.center_xyz[k]).abs() < 1e-9);
        }
        assert!((a.prob_nodule - b.prob_nodule).abs() < 1e-6);
        assert!((a.prob_malignant.unwrap() - b.prob_malignant.unwrap()).abs() < 1e-6);
    }
    let accepted = mine.iter().filter(|d| d.prob_nodule >= 0.5).count();
    let series = &doc["series"][0];
    assert_eq!(series["series_uid"], uid.as_str());
    assert_eq!(series["nodules"].as_array().unwrap().len(), accepted);
    assert!(series["patient_score"].is_number(), "{doc}");
    println!(
        "luna detect on a SimpleITK-written CT: {} clusters, {accepted} accepted — identical to the pipeline's",
        got.len()
    );
    // bad input: a file that is not a header, one that does not exist, two CTs with one uid
    std::fs::write(ws.path("notes.txt"), "hello").unwrap();
    let bad = ws.luna(&["detect", "notes.txt", "--pipeline", "t"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("notes.txt: not a MetaImage header (`.mhd`)"),
        "{}",
        bad.stderr
    );
    let bad = ws.luna(&["detect", "outside/nothere.mhd", "--pipeline", "t"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("nothere.mhd"), "{}", bad.stderr);
    let twice = ws.luna(&[
        "detect",
        outside.to_str().unwrap(),
        src.to_str().unwrap(),
        "--pipeline",
        "t",
    ]);
    assert_eq!(twice.code, 2, "{}", twice.stderr);
    assert!(
        twice
            .stderr
            .contains(&format!("have the same series uid `{uid}`")),
        "{}",
        twice.stderr
    );
    // a second call is cached
    let again = ws.luna(&["detect", outside.to_str().unwrap(), "--pipeline", "t"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(!again.stderr.contains("RUNNING"), "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains(&format!("({uid}): {accepted} nodule")),
        "{}",
        again.stdout
    );

    // a run with a failed stage: everything else is cached, the report shows the failure
    ws.pipeline(
        "t2",
        &pipeline(
            "t2",
            "  broken:\n    uses: command\n    with: { run: 'echo the scanner exploded >&2; exit 3' }\n",
        ),
    );
    let failed = ws.luna(&["run", "t2"]);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    let report = ws.path(&format!(
        "runs/{}/report.html",
        ws.last_run()["id"].as_str().unwrap()
    ));
    assert!(report.is_file());
    let html = std::fs::read_to_string(&report).unwrap();
    for bad in ["http://", "https://", "<script"] {
        assert!(!html.contains(bad), "the report references {bad}");
    }
    let shot = artifacts_dir().join("report.png");
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|c| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(c))
                    .find(|f| f.is_file())
            })
        })
        .expect("the report's browser test needs chromium (scripts/test.sh installs it)");
    let b = std::process::Command::new(crate::py::python())
        .arg(Path::new(crate::REPO).join("tests/oracle/report_browser.py"))
        .arg(&report)
        .arg(&shot)
        .arg(&chromium)
        .output()
        .unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    let seen: serde_json::Value = serde_json::from_slice(&b.stdout).unwrap();
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["page_errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["external_requests"], serde_json::json!([]), "{seen}");
    let images = seen["images"].as_array().unwrap();
    assert!(images.len() >= 5, "{seen}");
    for i in images {
        assert!(
            i["complete"] == true && i["naturalWidth"].as_u64().unwrap() > 0,
            "an image did not load: {i}"
        );
    }
    let sections: Vec<&str> = seen["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for s in ["summary", "timeline", "failures", "froc", "plots"] {
        assert!(sections.contains(&s), "no `{s}` section: {seen}");
    }
    assert!(seen["froc_images"].as_u64().unwrap() >= 1, "{seen}");
    assert!(seen["gallery_tiles"].as_u64().unwrap() >= 1, "{seen}");
    let titles = seen["gallery_titles"].to_string();
    for t in ["True positives", "False positives", "Missed nodules"] {
        assert!(titles.contains(t), "{titles}");
    }
    let failures = seen["failures_text"].as_str().unwrap();
    assert!(failures.contains("broken failed"), "{failures}");
    assert!(failures.contains("the scanner exploded"), "{failures}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    println!("report screenshot: {}", shot.display());

    // `luna report` rewrites the latest run's report
    std::fs::remove_file(&report).unwrap();
    let again = ws.luna(&["report"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        PathBuf::from(again.stdout.trim()).canonicalize().unwrap(),
        report.canonicalize().unwrap()
    );
    assert!(report.is_file());
}
