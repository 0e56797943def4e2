//! The torch layer as a whole: the stage trains with exactly the library loop, typed inputs are
//! bound (and refused) at plan time, partitions computed inside `luna-torch` are keyed, listed,
//! kept and incremental like in-process ones, and the torch stages' tables match `schemas/`.

use std::path::PathBuf;

use luna::tables::{read_rows, ClassifierMetricsRow};

use crate::engine_support::Ws;
use crate::train_support::{pipeline, write_crops, Fixture};
use luna::stages::train_classifier::TrainParams;
use luna_torch::kinds::train_classifier::{train, Dirs};
use luna_torch::nn::train::Quiet;

const PARAMS: &str = r#"{"epochs": 2, "epoch_samples": 96, "seed": 5, "batch_size": 16, "augment": null, "optimizer": {"kind": "adam", "lr": 0.001}, "validate_every": 1, "device": "cpu", "threads": 1, "loader_threads": 1}"#;

#[test]
fn stage_training_is_the_library_loop() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    write_crops(
        &ws.path("fixture"),
        &Fixture {
            series: 8,
            per_series: 24,
            malignancy: true,
        },
    );
    let flow = PARAMS.replace('"', "");
    ws.pipeline(
        "t",
        &pipeline(&format!(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {flow}\n"
        )),
    );
    ws.luna(&["run", "t"]).expect_code(0);
    let art = PathBuf::from(ws.luna(&["path", "t", "nodule"]).stdout.trim());

    // The same parameters through the library function the worker calls, in this process.
    let p: TrainParams = serde_json::from_str(PARAMS).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (resume, out) = (tmp.path().join("resume"), tmp.path().join("out"));
    std::fs::create_dir_all(&resume).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    tch::set_num_threads(1);
    let fitted = train(
        &p,
        &Dirs {
            crops: &ws.path("fixture"),
            finetune: None,
            resume: &resume,
            out: &out,
            mirrors: vec![],
        },
        tch::Device::Cpu,
        &Quiet,
    )
    .unwrap();
    assert_eq!(fitted.history.len(), 4, "2 epochs x (trn, val)");

    // Every column but the timing ones (samples_per_sec, data_wait_fraction).
    let read = |d: &std::path::Path| -> Vec<ClassifierMetricsRow> {
        read_rows::<ClassifierMetricsRow>(&d.join("metrics.parquet"))
            .unwrap()
            .into_iter()
            .map(|r| ClassifierMetricsRow {
                samples_per_sec: 0.0,
                data_wait_fraction: 0.0,
                ..r
            })
            .collect()
    };
    let (stage, lib) = (read(&art), read(&out));
    assert_eq!(stage.len(), 4);
    assert_eq!(stage, lib, "metrics.parquet: stage vs library loop");
    // ... and the same weights, bit for bit.
    let w = |d: &std::path::Path| {
        let mut v = tch::Tensor::read_safetensors(d.join("model.safetensors")).unwrap();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let (ws_stage, ws_lib) = (w(&art), w(&out));
    let names = |v: &[(String, tch::Tensor)]| v.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    // the same tensors by name first: a zip would stop at the shorter list and pass
    assert_eq!(
        names(&ws_stage),
        names(&ws_lib),
        "weight names of the stage vs the library loop"
    );
    for ((k, a), (_, b)) in ws_stage.iter().zip(ws_lib.iter()) {
        assert!(
            a.equal(b),
            "weight {k} differs between the stage and the library loop"
        );
    }
}

#[test]
fn typed_input_errors_name_the_position_and_providers() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    write_crops(
        &ws.path("fixture"),
        &Fixture {
            series: 4,
            per_series: 6,
            malignancy: false,
        },
    );
    // `model: crops` names a stage that provides crops, not a classifier.
    ws.pipeline(
        "wrong",
        &pipeline(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: { epochs: 1 }\n  eval:\n    uses: evaluate_classifier\n    needs: [crops, nodule]\n    with: { model: crops }\n",
        ),
    );
    let out = ws.luna(&["status", "wrong"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("error: stage `eval`: `model: crops` names a `command` stage, which provides `crops`, not a `classifier`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pipelines/wrong.yaml:13:20"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("stages that provide a `classifier`: nodule"),
        "{}",
        out.stderr
    );
    // No classifier upstream at all.
    ws.pipeline(
        "missing",
        &pipeline(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: { epochs: 1 }\n  eval:\n    uses: evaluate_classifier\n    needs: [crops]\n",
        ),
    );
    let out = ws.luna(&["status", "missing"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("error: stage `eval` needs a `classifier` artifact for its input `model`, but no upstream stage provides one"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pipelines/missing.yaml:12:12"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("stages that provide a `classifier`: nodule; add one to `needs:`"),
        "{}",
        out.stderr
    );
    // A stage that is not upstream.
    ws.pipeline(
        "notup",
        &pipeline(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: { epochs: 1 }\n  eval:\n    uses: evaluate_classifier\n    needs: [crops]\n    with: { model: nodule }\n",
        ),
    );
    let out = ws.luna(&["status", "notup"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("`model: nodule` names a stage that is not upstream of `eval`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("add `nodule` to `needs:`"),
        "{}",
        out.stderr
    );
}

fn manifest_partitions(ws: &Ws, stage: &str) -> Vec<String> {
    let m = ws
        .manifests()
        .into_iter()
        .find(|m| m["stage"] == stage)
        .unwrap_or_else(|| panic!("no manifest of {stage}"));
    m["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn worker_partitions_are_keyed_listed_kept_and_incremental() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    for (n, body) in [("a", "aaaa"), ("b", "bb"), ("c", "c")] {
        ws.file(&format!("items/{n}"), body);
    }
    ws.pipeline(
        "p",
        "pipeline: p\nstages:\n  one:\n    uses: test_torch_partitions\n    with: { items: items, scale: 1.0 }\n  two:\n    uses: test_torch_partitions\n    with: { items: items, scale: 2.0 }\n",
    );
    ws.luna(&["run", "p"]).expect_code(0);
    let (one, two) = (
        manifest_partitions(&ws, "one"),
        manifest_partitions(&ws, "two"),
    );
    assert_eq!((one.len(), two.len()), (3, 3), "one partition per item");
    assert!(
        one.iter().all(|k| !two.contains(k)),
        "different params, different partition keys: {one:?} {two:?}"
    );
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "p", s]).stdout.trim());
    assert_eq!(
        std::fs::read_to_string(dir("two").join("parts/a.txt")).unwrap(),
        format!("{}\n", 2.0 * 4.0 * f64::from(b'a'))
    );
    // gc keeps every partition the last run's stages list.
    ws.luna(&["cache", "gc", "--keep-runs", "1"]).expect_code(0);
    for k in one.iter().chain(&two) {
        let shard = ws.path(&format!("cache/objects/{}/{k}", &k[..2]));
        assert!(shard.is_dir(), "gc removed partition {k}");
    }
    // A new item: only its partitions are computed.
    ws.file("items/d", "dd");
    ws.luna(&["run", "p"]).expect_code(0);
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("one").join("summary.json")).unwrap()).unwrap();
    assert_eq!(s, serde_json::json!({"computed": 1, "cached": 3}));
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("one").join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["partitions"].as_array().unwrap().len(), 4);
}

#[test]
fn pyarrow_reads_predictions_and_metrics_with_their_schemas() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    write_crops(
        &ws.path("fixture"),
        &Fixture {
            series: 4,
            per_series: 12,
            malignancy: false,
        },
    );
    let flow = PARAMS.replace('"', "");
    ws.pipeline(
        "t",
        &pipeline(&format!(
            "  nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {flow}\n  eval:\n    uses: evaluate_classifier\n    needs: [crops, nodule]\n    with: {{ device: cpu, split: all }}\n"
        )),
    );
    ws.luna(&["run", "t"]).expect_code(0);
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());
    let expected = ws.path("expected.json");
    let files = serde_json::json!({"files": [
        {"path": dir("nodule").join("metrics.parquet"), "table": "metrics", "rows": null},
        {"path": dir("eval").join("predictions.parquet"), "table": "predictions", "rows": null},
    ]});
    std::fs::write(&expected, files.to_string()).unwrap();
    let root = std::path::Path::new(crate::REPO);
    let out = std::process::Command::new(crate::py::python())
        .arg(root.join("tests/oracle/tables_check.py"))
        .arg(root.join("schemas"))
        .arg(&expected)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pyarrow oracle failed:\n{text}");
    assert!(text.contains("2 files OK"), "{text}");
    assert!(
        text.contains("OK predictions predictions.parquet rows=48"),
        "{text}"
    );
}
