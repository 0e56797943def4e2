//! `train_classifier` / `evaluate_classifier` through the real binaries: outputs, fine-tuning,
//! caching, parameter errors, the missing-malignancy error, and resume after `kill -9`.

use std::time::{Duration, Instant};

use crate::engine_support::{statuses, Ws};
use crate::train_support::{pipeline, stage_logs, write_crops, Fixture};

fn ws_with(f: &Fixture, extra: &str) -> Ws {
    let ws = Ws::new();
    write_crops(&ws.path("fixture"), f);
    ws.pipeline("t", &pipeline(extra));
    ws
}

const FAST: &str = "batch_size: 16, augment: null, optimizer: { kind: adam, lr: 0.001 }, device: cpu, threads: 1, loader_threads: 1";

fn objects_of(ws: &Ws, stage: &str) -> usize {
    ws.manifests()
        .iter()
        .filter(|m| m["stage"] == stage)
        .count()
}

#[test]
fn train_evaluate_finetune_outputs_and_cache() {
    let ws = ws_with(
        &Fixture { series: 8, per_series: 24, malignancy: true },
        &format!(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 3, epoch_samples: 256, {FAST} }}\n\
             \x20 eval:\n    uses: evaluate_classifier\n    needs: [crops, nodule]\n    with: {{ device: cpu }}\n\
             \x20 mal:\n    uses: train_classifier\n    needs: [crops, nodule]\n    with: {{ task: malignancy, finetune_from: nodule, finetune_depth: 2, epochs: 3, epoch_samples: 256, {FAST} }}\n\
             \x20 eval_mal:\n    uses: evaluate_classifier\n    needs: [crops, mal]\n    with: {{ model: mal }}\n"
        ),
    );
    ws.luna(&["run", "t"]).expect_code(0);
    let dir = |s: &str| std::path::PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());
    let nod = dir("nodule");
    for f in [
        "model.safetensors",
        "model.json",
        "last/checkpoint.json",
        "last/optimizer.safetensors",
        "metrics.parquet",
        "loss.png",
        "scores.png",
    ] {
        assert!(nod.join(f).is_file(), "train artifact lacks {f}");
    }
    assert_eq!(
        std::fs::read_dir(nod.join("tensorboard/trn"))
            .unwrap()
            .count(),
        1
    );
    assert!(
        ws.path("runs/tensorboard/t/nodule/val").is_dir(),
        "tensorboard mirror under runs/"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(nod.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["model"]["input_size"], serde_json::json!([16, 16, 16]));
    let log = stage_logs(ws.root(), "nodule");
    assert!(log.contains("device: cpu (requested)"), "{log}");
    assert_eq!(
        log.matches(" trn ").count(),
        3,
        "one trn row per epoch:\n{log}"
    );
    assert!(log.contains("samples/s"), "{log}");

    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("eval").join("metrics.json")).unwrap()).unwrap();
    // 2 val series x 24 candidates, 8 nodules each
    assert_eq!(
        (m["samples"].as_u64(), m["positives"].as_u64()),
        (Some(48), Some(16))
    );
    assert!(
        m["f1"].as_f64().unwrap() >= 0.9,
        "nodule F1 on an easy fixture: {m}"
    );
    assert!(
        dir("eval").join("roc.png").is_file() && dir("eval").join("predictions.parquet").is_file()
    );

    let mlog = stage_logs(ws.root(), "mal");
    assert!(
        mlog.contains("fine-tuning from `nodule` (depth 2: training block4."),
        "{mlog}"
    );
    let mm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("eval_mal").join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(
        (mm["samples"].as_u64(), mm["positives"].as_u64()),
        (Some(16), Some(8)),
        "malignancy evaluates nodules only"
    );
    assert!(
        mm["roc_auc"].as_f64().unwrap() >= 0.9,
        "malignancy AUC on an easy fixture: {mm}"
    );

    ws.luna(&["run", "t"]).expect_code(0);
    assert!(
        statuses(&ws.last_run()).iter().all(|(_, s)| s == "cached"),
        "second run is cached: {:?}",
        statuses(&ws.last_run())
    );
}

#[test]
fn device_hint_does_not_change_the_key() {
    let body = |dev: &str| {
        format!("  train:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 32, batch_size: 16, augment: null, device: {dev}, loader_threads: 1 }}\n")
    };
    let ws = ws_with(
        &Fixture {
            series: 4,
            per_series: 6,
            malignancy: true,
        },
        &body("cpu"),
    );
    ws.luna(&["run", "t"]).expect_code(0);
    ws.pipeline("t", &pipeline(&body("auto")));
    ws.luna(&["run", "t"]).expect_code(0);
    assert_eq!(
        statuses(&ws.last_run()),
        crate::engine_support::st(&[("crops", "cached"), ("train", "cached")])
    );
}

#[test]
fn unknown_task_is_a_spec_error() {
    let ws = ws_with(
        &Fixture {
            series: 4,
            per_series: 6,
            malignancy: true,
        },
        "  train:\n    uses: train_classifier\n    needs: [crops]\n    with: { task: tumour }\n",
    );
    let out = ws.luna(&["run", "t"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "stages.train.with.task: unknown variant `tumour`, expected `nodule` or `malignancy`"
        ),
        "{}",
        out.stderr
    );
    assert!(ws.manifests().is_empty(), "nothing ran");
}

#[test]
fn malignancy_without_labels_fails_clearly() {
    let ws = ws_with(
        &Fixture { series: 4, per_series: 6, malignancy: false },
        "  train:\n    uses: train_classifier\n    needs: [crops]\n    with: { task: malignancy, epochs: 1, epoch_samples: 16, device: cpu }\n",
    );
    let out = ws.luna(&["run", "t"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("malignancy stages need annotations_with_malignancy.csv"),
        "{}",
        out.stderr
    );
    assert_eq!(objects_of(&ws, "train"), 0);
}

#[test]
fn kill_9_mid_training_resumes_from_checkpoint() {
    let ws = ws_with(
        &Fixture { series: 4, per_series: 12, malignancy: true },
        &format!("  train:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 12, epoch_samples: 320, {FAST} }}\n"),
    );
    let mut luna = ws
        .command(&["run", "t"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start luna");
    let checkpoint = || {
        std::fs::read_dir(ws.path("cache/resume"))
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|d| {
                let p = d.path().join("last/checkpoint.json");
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                v["epoch"].as_u64()
            })
    };
    let end = Instant::now() + Duration::from_secs(120);
    let mut epoch = None;
    while Instant::now() < end && epoch.is_none() {
        epoch = checkpoint();
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(epoch) = epoch else {
        let _ = luna.kill();
        let _ = luna.wait();
        panic!("no checkpoint within 120 s");
    };
    // SAFETY: SIGKILL to the luna process this test started.
    assert_eq!(unsafe { libc::kill(luna.id() as i32, libc::SIGKILL) }, 0);
    luna.wait().expect("reap luna");
    assert!(
        epoch < 12,
        "killed before the last epoch (checkpoint at epoch {epoch})"
    );
    assert_eq!(
        objects_of(&ws, "train"),
        0,
        "nothing committed by the killed run"
    );

    ws.luna(&["run", "t"]).expect_code(0);
    let log = stage_logs(ws.root(), "train");
    assert!(log.contains("resuming from epoch"), "{log}");
    assert_eq!(objects_of(&ws, "train"), 1, "committed exactly once");
    let dir = std::path::PathBuf::from(ws.luna(&["path", "t", "train"]).stdout.trim());
    let last: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("last/checkpoint.json")).unwrap()).unwrap();
    assert_eq!(last["epoch"], 12);
    assert_eq!(
        last["total_samples"],
        12 * 320,
        "resumed run counts the samples of the killed one"
    );
    assert!(
        ws.ls("cache/resume").is_empty(),
        "resume dir removed after commit: {:?}",
        ws.ls("cache/resume")
    );
}
