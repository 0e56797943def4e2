//! `train_segmentation` through the binary: seg_dataset → UNet training (the one loop) →
//! segment → cluster on a tiny synthetic set; artifact files, the metrics table, resume after
//! `kill -9`, and typed-input errors.

use std::path::PathBuf;
use std::time::Duration;

use crate::engine_support::Ws;
use crate::train_support::stage_logs;

fn pipeline(train_with: &str) -> String {
    pipeline_with("val_stride: 2", "crop: 48", train_with)
}

/// The test pipeline with `merge_candidates`, `seg_dataset` and `train_segmentation` params.
fn pipeline_with(candidates: &str, segdata: &str, train_with: &str) -> String {
    format!(
        "pipeline: s\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 3 }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: {{ {candidates} }}\n\
         \x20 segdata:\n    uses: seg_dataset\n    needs: [candidates, data]\n    with: {{ {segdata} }}\n\
         \x20 unet:\n    uses: train_segmentation\n    needs: [segdata]\n    with: {{ sub_crop: 32, batch_size: 8, device: cpu, threads: 2, loader_threads: 1, validate_every: 1, {train_with} }}\n\
         \x20 segment:\n    uses: segment\n    needs: [unet, candidates, data]\n    with: {{ device: cpu, batch_size: 8 }}\n\
         \x20 clusters:\n    uses: cluster\n    needs: [segment, data]\n"
    )
}

#[test]
fn train_segmentation_trains_with_the_loop_and_segment_uses_its_model() {
    let ws = Ws::new();
    ws.pipeline("s", &pipeline("epochs: 2, epoch_samples: 48"));
    let out = ws.luna(&["run", "s"]);
    if out.code != 0 {
        panic!("{}\n{}", out.stderr, stage_logs(ws.root(), "unet"));
    }
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "s", s]).stdout.trim());
    let unet = dir("unet");
    for f in [
        "model.safetensors",
        "model.json",
        "last/checkpoint.json",
        "metrics.parquet",
        "loss.png",
        "scores.png",
    ] {
        assert!(
            unet.join(f).is_file(),
            "train_segmentation artifact lacks {f}"
        );
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unet.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["model"]["architecture"], "UNet");
    assert_eq!(meta["model"]["in_channels"], 7);
    let log = stage_logs(ws.root(), "unet");
    assert_eq!(log.matches(" trn ").count(), 2, "{log}");
    assert_eq!(log.matches(" val ").count(), 2, "{log}");
    assert!(log.contains("recall"), "{log}");
    // pyarrow reads metrics.parquet with its schema (seg_metrics)
    let expected = ws.path("expected.json");
    std::fs::write(
        &expected,
        serde_json::json!({"files": [{"path": unet.join("metrics.parquet"), "table": "seg_metrics", "rows": null}]}).to_string(),
    )
    .unwrap();
    let root = std::path::Path::new(crate::REPO);
    let py = std::process::Command::new(crate::py::python())
        .arg(root.join("tests/oracle/tables_check.py"))
        .arg(root.join("schemas"))
        .arg(&expected)
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(String::from_utf8_lossy(&py.stdout).contains("rows=4"));
    assert!(dir("clusters").join("clusters.parquet").is_file());
    prediction_images_match_the_books_overlay(&unet, &dir("segdata"));
}

/// TensorBoard (EventAccumulator) reads the prediction images of both validations and the
/// label images of the first; every pixel of the last validation's images equals the book's
/// overlay recomputed in numpy from the PyTorch UNet's output with the last checkpoint's
/// weights (tests/oracle/seg_images.py), and the artifact's PNGs are the same pictures.
fn prediction_images_match_the_books_overlay(unet: &std::path::Path, segdata: &std::path::Path) {
    let s = |p: PathBuf| p.to_str().unwrap().to_string();
    let out = crate::nn_support::run_oracle(
        "seg_images.py",
        &[
            &s(unet.join("tensorboard/val")),
            &s(unet.join("last/model.safetensors")),
            &s(segdata.to_path_buf()),
            &s(unet.join("images/val")),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let n = v["pred_images"].as_u64().unwrap();
    assert!(n > 0, "{v}");
    assert_eq!(v["label_images"], n, "{v}");
    assert_eq!(
        v["tags"],
        2 * n,
        "one prediction and one label tag per slice: {v}"
    );
    assert_eq!(v["steps"], serde_json::json!([48, 96]), "{v}");
    assert_eq!(v["label_steps"], serde_json::json!([48]), "{v}");
    for k in ["pred_mismatch", "label_mismatch", "png_mismatch"] {
        assert_eq!(v[k], 0, "{k}: {v}");
    }
    // All three colours occur, so the comparison covers green, red and orange pixels.
    for k in ["tp", "fn", "fp"] {
        assert!(v[k].as_u64().unwrap() > 0, "{k}: {v}");
    }
}

#[test]
fn train_segmentation_resumes_after_kill_9() {
    let ws = Ws::new();
    ws.pipeline("s", &pipeline("epochs: 4, epoch_samples: 64"));
    ws.luna(&["run", "s", "--until", "segdata"]).expect_code(0);
    let mut child = ws
        .command(&["run", "s", "--until", "unet"])
        .spawn()
        .unwrap();
    // Wait for the first epoch checkpoint, then kill luna (the worker dies with it).
    let resume = ws.path("cache/resume");
    crate::harness::wait_until(
        "the first epoch's checkpoint",
        Duration::from_secs(240),
        || walk_has(&resume, "checkpoint.json"),
    );
    // SAFETY: kill(2) on our child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    let out = ws.luna(&["run", "s", "--until", "unet"]);
    out.expect_code(0);
    let log = stage_logs(ws.root(), "unet");
    assert!(log.contains("resuming from epoch"), "{log}");
    let n = ws
        .manifests()
        .iter()
        .filter(|m| m["stage"] == "unet")
        .count();
    assert_eq!(n, 1, "exactly one committed artifact");
}

fn walk_has(dir: &std::path::Path, name: &str) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return false;
    };
    rd.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            walk_has(&p, name)
        } else {
            p.file_name().is_some_and(|n| n == name) && p.to_string_lossy().contains("/last/")
        }
    })
}

#[test]
fn seg_datasets_without_training_or_validation_samples_fail_naming_stage_and_index() {
    // val_stride 1: every series validates (no training crops); threshold_hu 3000: no mask
    // voxel, so no positive validation slice; sub_crop 64 > the 48-voxel crops.
    let ws = Ws::new();
    for (candidates, segdata, train, msg, hint) in [
        (
            "val_stride: 1",
            "crop: 48",
            "",
            "seg_dataset `segdata` holds no training samples: ",
            "raise merge_candidates' val_stride",
        ),
        (
            "val_stride: 2",
            "crop: 48, threshold_hu: 3000",
            "",
            "seg_dataset `segdata` holds no validation slices: ",
            "lower merge_candidates' val_stride",
        ),
        (
            "val_stride: 2",
            "crop: 48",
            "sub_crop: 64,",
            "sub_crop 64 is larger than the seg_dataset's 48x48 crops",
            "lower sub_crop or rebuild the seg_dataset with a larger crop",
        ),
    ] {
        let train = format!("{train} epochs: 1, epoch_samples: 8");
        let mut yaml = pipeline_with(candidates, segdata, &train);
        if train.contains("sub_crop: 64") {
            yaml = yaml.replacen("sub_crop: 32, ", "", 1);
        }
        ws.pipeline("s", &yaml);
        let out = ws.luna(&["run", "s", "--until", "unet"]);
        out.expect_code(1);
        let e = &out.stderr;
        assert!(e.contains("unet") && e.contains(msg), "{segdata}: {e}");
        assert!(e.contains(hint), "{segdata}: {e}");
        if !msg.starts_with("sub_crop") {
            assert!(
                e.contains("seg_index.parquet lists 0 "),
                "names the index file: {e}"
            );
        }
        assert_eq!(ws.committed("unet"), 0, "nothing committed: {e}");
        assert!(
            ws.committed("segdata") >= 1,
            "the upstream stage did commit"
        );
    }
}

#[test]
fn invalid_train_segmentation_params_are_spec_errors_with_positions() {
    let ws = Ws::new();
    for (with, msg) in [
        ("epochs: 0", "epochs must be at least 1"),
        ("epoch_samples: 0", "epoch_samples must be at least 1"),
        (
            "sub_crop: 30",
            "sub_crop must be a positive multiple of 4 (the UNet pools twice), got 30",
        ),
        (
            "optimizer: { kind: adam, lr: -1 }",
            "optimizer.lr must be a finite number > 0",
        ),
        (
            "augment: { noise: -1 }",
            "augment.noise must be a finite number in [0, 1000] (HU; book: 25), got -1",
        ),
        (
            "best_by: precision",
            "unknown variant `precision`, expected `recall` or `f1`",
        ),
        (
            "image_series: -1",
            "invalid value: integer `-1`, expected usize",
        ),
    ] {
        ws.pipeline(
            "bad",
            &format!(
                "pipeline: bad\nstages:\n  seg:\n    uses: command\n    with: {{ run: 'true', provides: [seg_dataset] }}\n\
                 \x20 unet:\n    uses: train_segmentation\n    needs: [seg]\n    with:\n      {with}\n{epochs}",
                // `epochs` is required; the "epochs: 0" case names it itself
                epochs = if with.starts_with("epochs") { "" } else { "      epochs: 1\n" }
            ),
        );
        let out = ws.luna(&["status", "bad"]);
        out.expect_code(2);
        assert!(out.stderr.contains(msg), "{with}:\n{}", out.stderr);
        assert!(
            out.stderr.contains("pipelines/bad.yaml:10:"),
            "{with}:\n{}",
            out.stderr
        );
    }
}

#[test]
fn a_wrong_kind_bound_to_the_seg_dataset_slot_is_a_spec_error() {
    let ws = Ws::new();
    ws.pipeline(
        "bad",
        "pipeline: bad\nstages:\n  cands:\n    uses: command\n    with: { run: 'true', provides: [candidates] }\n\
         \x20 unet:\n    uses: train_segmentation\n    needs: [cands]\n    with: { seg_dataset: cands, epochs: 1 }\n",
    );
    let out = ws.luna(&["status", "bad"]);
    out.expect_code(2);
    eprintln!("{}", out.stderr);
    assert!(
        out.stderr.contains("pipelines/bad.yaml:9:"),
        "{}",
        out.stderr
    );
}
