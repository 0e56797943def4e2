//! `luna export`: a trained classifier and segmenter leave luna as TorchScript and as a
//! `state_dict`. PyTorch runs them (tests/oracle/export_check.py: `torch.jit.load`; the book's
//! own classes with `torch.load` under its safe default and `load_state_dict(strict=True)`),
//! libtorch's C++ loader runs the TorchScript, and both give luna's outputs on random inputs.

use std::path::{Path, PathBuf};

use luna_torch::nn::checkpoint::load_model_files;
use luna_torch::nn::{LunaModel, Model, UNet};
use tch::{CModule, Device, Kind, Tensor};

use crate::engine_support::Ws;
use crate::nn_support::{max_abs_diff, run_oracle, torch_lock};

fn pipeline() -> String {
    let fast = "batch_size: 4, device: cpu, threads: 2, loader_threads: 1";
    format!(
        "pipeline: e\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 3 }}\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: {{ val_stride: 2 }}\n\
         \x20 crops:\n    uses: build_crops\n    needs: [candidates, data]\n    with: {{ width_irc: [32, 48, 48] }}\n\
         \x20 nodule:\n    uses: train_classifier\n    needs: [crops]\n    with: {{ epochs: 1, epoch_samples: 8, augment: null, {fast} }}\n\
         \x20 segdata:\n    uses: seg_dataset\n    needs: [candidates, data]\n    with: {{ crop: 48 }}\n\
         \x20 unet:\n    uses: train_segmentation\n    needs: [segdata]\n    with: {{ epochs: 1, epoch_samples: 8, sub_crop: 32, validate_every: 1, {fast} }}\n"
    )
}

/// The max |diff| of each output of the oracle's JSON, checked against `tol`.
fn assert_close(report: &serde_json::Value, keys: &[&str], tol: f64) {
    for k in keys {
        let d = report[*k].as_f64().unwrap_or(f64::INFINITY);
        assert!(d <= tol, "{k}: max |diff| {d} > {tol}: {report}");
    }
}

/// Exports `stage` through the CLI into `ws` and returns (TorchScript, state_dict) paths.
fn export(ws: &Ws, stage: &str) -> (PathBuf, PathBuf) {
    let (ts, sd) = (
        ws.path(&format!("{stage}.ts.pt")),
        ws.path(&format!("{stage}.state.pt")),
    );
    let out = ws.luna(&[
        "export",
        "e",
        stage,
        "--torchscript",
        ts.to_str().unwrap(),
        "--state-dict",
        sd.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    (ts, sd)
}

fn save_io(path: &Path, named: &[(&str, &Tensor)]) {
    Tensor::write_safetensors(named, path).unwrap();
}

#[test]
fn exported_models_run_in_pytorch_and_libtorch_with_lunas_outputs() {
    let ws = Ws::new();
    ws.pipeline("e", &pipeline());
    let out = ws.luna(&["run", "e"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "e", s]).stdout.trim());
    let _guard = torch_lock();
    tch::manual_seed(11);

    // the classifier: luna's logits and probabilities on 4 random HU crops
    let nodule = dir("nodule");
    let (lm, _) = load_model_files::<LunaModel>(
        &nodule.join("model.safetensors"),
        &nodule.join("model.json"),
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::rand([4, 1, 32, 48, 48], (Kind::Float, Device::Cpu)) * 2000.0 - 1000.0;
    let (logits, probs) = tch::no_grad(|| lm.model.forward_t(&x, false));
    let (ts, sd) = export(&ws, "nodule");
    let io = ws.path("nodule.io.safetensors");
    save_io(&io, &[("x", &x), ("logits", &logits), ("probs", &probs)]);
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let report: serde_json::Value = serde_json::from_str(&run_oracle(
        "export_check.py",
        &["classifier", &s(&ts), &s(&sd), &s(&io)],
    ))
    .unwrap();
    assert_eq!(report["keys"], 23, "{report}");
    let scale = report["scale"].as_f64().unwrap().max(1.0);
    assert_close(&report, &["ts_logits", "sd_logits"], 1e-5 * scale);
    assert_close(&report, &["ts_probs", "sd_probs"], 1e-5);
    // libtorch's C++ loader: one (2, N, 2) tensor, [0] logits, [1] probabilities
    let cm = CModule::load(&ts).unwrap();
    let both = tch::no_grad(|| cm.forward_ts(&[&x])).unwrap();
    assert_eq!(both.size(), vec![2, 4, 2]);
    assert!(max_abs_diff(&both.get(0), &logits) <= 1e-5 * scale);
    assert!(max_abs_diff(&both.get(1), &probs) <= 1e-5);

    // the segmenter: luna's probability map on 2 random 7-slice inputs of a size it never saw
    let unet = dir("unet");
    let (um, _) = load_model_files::<UNet>(
        &unet.join("model.safetensors"),
        &unet.join("model.json"),
        Device::Cpu,
    )
    .unwrap();
    let x = Tensor::rand([2, 7, 96, 128], (Kind::Float, Device::Cpu)) * 2000.0 - 1000.0;
    let probs = tch::no_grad(|| um.model.forward(&x, false));
    let (ts, sd) = export(&ws, "unet");
    let io = ws.path("unet.io.safetensors");
    save_io(&io, &[("x", &x), ("probs", &probs)]);
    let report: serde_json::Value = serde_json::from_str(&run_oracle(
        "export_check.py",
        &["segmenter", &s(&ts), &s(&sd), &s(&io)],
    ))
    .unwrap();
    assert_eq!(report["keys"], 81, "{report}");
    assert_close(&report, &["ts_probs", "sd_probs"], 1e-5);
    let cm = CModule::load(&ts).unwrap();
    let got = tch::no_grad(|| cm.forward_ts(&[&x])).unwrap();
    assert!(max_abs_diff(&got, &probs) <= 1e-5);

    // a stage that is not a model, and nothing to write: usage errors (exit 2)
    let bad = ws.luna(&["export", "e", "crops", "--torchscript", "x.pt"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a model"), "{}", bad.stderr);
    let none = ws.luna(&["export", "e", "nodule"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    let nodir = ws.luna(&["export", "e", "nodule", "--state-dict", "no/such/dir/m.pt"]);
    assert_eq!(nodir.code, 2, "{}", nodir.stderr);
    assert!(nodir.stderr.contains("no/such/dir"), "{}", nodir.stderr);
}
