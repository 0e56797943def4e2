//! `import_model` (issue 25, points 1–2): PyTorch checkpoints in every form luna reads, written
//! by PyTorch itself (oracle `tests/oracle/import_model.py`, the book's classes), imported
//! through `luna run` and loaded as every consuming stage loads a model; the book's own
//! checkpoints; and each error case, a malicious pickle among them.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use luna_torch::nn::checkpoint::load_model_files;
use luna_torch::nn::{LunaModel, Model, UNet};
use tch::{Device, Tensor};

use crate::engine_support::{Out, Ws};
use crate::nn_support::{read_st, run_oracle};

/// A pipeline of one `import_model` stage per `(stage, with)` pair.
fn pipeline(stages: &[(&str, String)]) -> String {
    let mut y = String::from("pipeline: imp\nstages:\n");
    for (name, with) in stages {
        y.push_str(&format!(
            "  {name}:\n    uses: import_model\n    with: {{ {with} }}\n"
        ));
    }
    y
}

/// The model artifact of `stage` in the last run: its two files.
fn artifact(ws: &Ws, stage: &str) -> (PathBuf, PathBuf) {
    let dir = ws.object_of(stage);
    (
        dir.join(luna::model::MODEL_WEIGHTS),
        dir.join(luna::model::MODEL_META),
    )
}

/// max |a − b| / max |b|, and max |a − b|.
fn rel_diff(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let d = crate::nn_support::max_abs_diff(a, b);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    (d / scale, d)
}

/// Runs luna's model in batches of 20 (eval mode), as `evaluate_classifier`/`segment` do.
fn batched(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let parts: Vec<Tensor> = x
        .split(20, 0)
        .iter()
        .map(|b| tch::no_grad(|| f(b)))
        .collect();
    Tensor::cat(&parts, 0)
}

#[test]
fn imported_checkpoints_in_every_form_give_pytorchs_outputs() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    let o = ws.path("o");
    std::fs::create_dir_all(&o).unwrap();
    run_oracle("import_model.py", &["models", o.to_str().unwrap()]);
    let luna_forms = [
        "luna_legacy.state",
        "luna_zip_dict.pt",
        "luna_zip.pt",
        "luna_module_legacy.pt",
        "luna_f64.pt",
        "luna.safetensors",
    ];
    let unet_forms = ["unet_legacy.state", "unet_zip.pt", "unet.safetensors"];
    let mut stages: Vec<(String, String)> = Vec::new();
    for (i, f) in luna_forms.iter().enumerate() {
        stages.push((
            format!("l{i}"),
            format!("checkpoint: o/{f}, architecture: luna_model"),
        ));
    }
    for (i, f) in unet_forms.iter().enumerate() {
        stages.push((
            format!("u{i}"),
            format!("checkpoint: o/{f}, architecture: unet, provides: segmenter"),
        ));
    }
    let refs: Vec<(&str, String)> = stages
        .iter()
        .map(|(a, b)| (a.as_str(), b.clone()))
        .collect();
    ws.pipeline("imp", &pipeline(&refs));
    ws.luna(&["run", "imp"]).expect_code(0);
    let t = read_st(&o.join("out.safetensors"));
    let tch_threads = tch::get_num_threads();
    tch::set_num_threads(2);
    let mut worst: (f64, f64) = (0.0, 0.0);
    for (i, f) in luna_forms.iter().enumerate() {
        let (w, m) = artifact(&ws, &format!("l{i}"));
        let (lm, meta) = load_model_files::<LunaModel>(&w, &m, Device::Cpu).unwrap();
        let logits = batched(&t["x_luna"], |b| lm.model.forward_t(b, false).0);
        let probs = batched(&t["x_luna"], |b| lm.model.forward_t(b, false).1);
        let (rl, dl) = rel_diff(&logits, &t["luna_logits"]);
        let (rp, dp) = rel_diff(&probs, &t["luna_probs"]);
        println!("{f}: logits max |diff| {dl:.3e} ({rl:.3e} of scale), probs {dp:.3e} ({rp:.3e})");
        assert!(rl <= 1e-5 && rp <= 1e-5, "{f}: logits {rl:e}, probs {rp:e}");
        worst = (worst.0.max(rl), worst.1.max(rp));
        assert_eq!(meta.model.architecture(), "LunaModel");
        if f.starts_with("luna_legacy") || f.starts_with("luna_zip_dict") {
            assert_eq!((meta.epoch, meta.total_samples), (3, 150_000), "{f}");
            assert_eq!(meta.train_params["task"], "nodule");
            assert_eq!(
                meta.train_params["imported"]["extras"]["sys_argv"][1],
                "--epochs"
            );
        }
    }
    for (i, f) in unet_forms.iter().enumerate() {
        let (w, m) = artifact(&ws, &format!("u{i}"));
        let (lm, meta) = load_model_files::<UNet>(&w, &m, Device::Cpu).unwrap();
        let probs = batched(&t["x_unet"], |b| lm.model.forward(b, false));
        let (r, d) = rel_diff(&probs, &t["unet_probs"]);
        println!("{f}: probabilities max |diff| {d:.3e} ({r:.3e} of scale)");
        assert!(r <= 1e-5, "{f}: {r:e}");
        worst.1 = worst.1.max(r);
        assert_eq!(meta.model.architecture(), "UNet");
    }
    tch::set_num_threads(tch_threads);
    println!(
        "worst relative max |diff|: logits {:.3e}, probabilities {:.3e}",
        worst.0, worst.1
    );
    // the checkpoint's content is the key: a re-run is cached, an edited checkpoint re-runs
    let out = ws.luna(&["run", "imp"]);
    assert!(
        out.expect_code(0).stderr.contains("0 ran, 9 cached"),
        "{}",
        out.stderr
    );
    // (new content: other weights; a copy of another form would share that form's key)
    let mut sd: Vec<(String, Tensor)> = read_st(&o.join("luna.safetensors")).into_iter().collect();
    for (n, t) in sd.iter_mut() {
        if n == "head_linear.bias" {
            *t = &*t + 1.0;
        }
    }
    Tensor::write_safetensors(&sd, o.join("luna_legacy.state")).unwrap();
    let out = ws.luna(&["run", "imp"]);
    let ran: Vec<&str> = out
        .expect_code(0)
        .stderr
        .lines()
        .filter(|l| l.contains("RAN ["))
        .collect();
    assert!(ran.len() == 1 && ran[0].ends_with(" l0"), "{}", out.stderr);
}

/// The bad files and two valid ones (`luna_plain.pt`, `luna16.pt`), written once per test
/// process into the workspace folder of the first test that asks.
fn bad_files() -> &'static (PathBuf, String) {
    static DIR: OnceLock<(PathBuf, String)> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("import-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let tag = format!("{}-{nanos}", std::process::id());
        run_oracle("import_model.py", &["bad", dir.to_str().unwrap(), &tag]);
        (dir, tag)
    })
}

/// `luna run` of one import of `file` (from [`bad_files`]) with `with`; returns the outcome.
fn import_one(file: &str, with: &str) -> Out {
    let (dir, _) = bad_files();
    let ws = Ws::new();
    let with = format!("checkpoint: {}, {with}", dir.join(file).display());
    ws.pipeline("imp", &pipeline(&[("m", with)]));
    ws.luna(&["run", "imp"])
}

/// A failed import: exit code 2 (the checkpoint the user gave cannot be used), the run
/// record saying so, and stderr holding every one of `want`.
fn expect_error(out: &Out, want: &[&str]) {
    out.expect_code(2);
    for w in want {
        assert!(
            out.stderr.contains(w),
            "stderr lacks {w:?}:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn import_refuses_a_malicious_pickle_and_runs_nothing() {
    let (_, tag) = bad_files();
    for (file, which) in [
        ("bad_evil_legacy.state", "legacy"),
        ("bad_evil_zip.pt", "zip"),
    ] {
        let out = import_one(file, "architecture: luna_model");
        expect_error(
            &out,
            &[file, "refused", "`posix.system`", "nothing was run"],
        );
        let pwned = PathBuf::from(format!("/tmp/pwned-{tag}-{which}"));
        assert!(
            !pwned.exists(),
            "{} exists: the pickle ran",
            pwned.display()
        );
    }
}

#[test]
fn import_says_when_a_file_is_not_a_checkpoint() {
    expect_error(
        &import_one("bad_text.state", "architecture: luna_model"),
        &["bad_text.state", "not a PyTorch checkpoint", "74 68 69 73"],
    );
    expect_error(
        &import_one("bad_plain.pkl", "architecture: luna_model"),
        &["bad_plain.pkl", "not a PyTorch checkpoint", "magic number"],
    );
    expect_error(
        &import_one("bad_nostate.pt", "architecture: luna_model"),
        &["bad_nostate.pt", "no state_dict", "epoch (an int)"],
    );
}

#[test]
fn import_names_a_dtype_luna_cannot_use() {
    expect_error(
        &import_one("bad_dtype.pt", "architecture: luna_model"),
        &["bad_dtype.pt", "tensor `block1.conv1.bias` has dtype int32"],
    );
}

#[test]
fn half_precision_weights_import_as_pytorchs_float32_conversion() {
    let (dir, _) = bad_files();
    for form in ["f16", "bf16"] {
        let ws = Ws::new();
        let with = format!(
            "checkpoint: {}, architecture: luna_model",
            dir.join(format!("luna_{form}.pt")).display()
        );
        ws.pipeline("imp", &pipeline(&[("m", with)]));
        ws.luna(&["run", "imp"]).expect_code(0);
        let (w, _) = artifact(&ws, "m");
        let ours = read_st(&w);
        let want = read_st(&dir.join(format!("luna_{form}_ref.safetensors")));
        assert_eq!(want.len(), 22);
        for (name, t) in &want {
            let d = crate::nn_support::max_abs_diff(&ours[name], t);
            assert!(d == 0.0, "{form} {name}: {d}");
        }
    }
}

#[test]
fn import_refuses_weights_that_are_not_finite() {
    expect_error(
        &import_one("bad_nan.pt", "architecture: luna_model"),
        &["bad_nan.pt: 1 weight tensor(s) hold NaN or infinite values (first: block3.conv2.weight)"],
    );
}

#[test]
fn import_lists_missing_unexpected_and_misshaped_tensors() {
    // a LunaModel imported as a UNet: nothing fits
    expect_error(
        &import_one("luna_plain.pt", "architecture: unet"),
        &[
            "luna_plain.pt does not fit unet",
            // 81 tensors less the 11 `num_batches_tracked`, which may be missing (as in PyTorch)
            "70 missing (input_batchnorm.bias [7]",
            "23 unexpected (block1.conv1.bias [8]",
            "0 mis-shaped",
        ],
    );
    // the right architecture with the wrong parameters: shapes differ
    expect_error(
        &import_one(
            "luna_plain.pt",
            "architecture: luna_model, conv_channels: 4",
        ),
        &[
            "does not fit luna_model",
            "0 missing; 0 unexpected; 17 mis-shaped (block1.conv1.bias model [4] file [8]",
        ],
    );
}

#[test]
fn import_refuses_parameters_of_the_other_architecture_at_plan_time() {
    let ws = Ws::new();
    ws.file("m.pt", b"x");
    ws.pipeline(
        "imp",
        &pipeline(&[(
            "m",
            "checkpoint: m.pt, architecture: unet, conv_channels: 8".into(),
        )]),
    );
    let out = ws.luna(&["run", "imp"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("`conv_channels` is not a parameter of architecture unet"),
        "{}",
        out.stderr
    );
    ws.pipeline(
        "imp",
        &pipeline(&[(
            "m",
            "checkpoint: m.pt, architecture: unet, provides: classifier".into(),
        )]),
    );
    let out = ws.luna(&["run", "imp"]);
    out.expect_code(2);
    assert!(out.stderr.contains("cannot provide"), "{}", out.stderr);
}

#[test]
fn evaluate_classifier_and_finetuning_run_on_an_imported_model() {
    let (dir, _) = bad_files();
    let ws = Ws::new();
    crate::train_support::write_crops(
        &ws.path("fixture"),
        &crate::train_support::Fixture {
            series: 4,
            per_series: 9,
            malignancy: true,
        },
    );
    let ck = dir.join("luna16.pt");
    let fast = "epochs: 1, epoch_samples: 32, batch_size: 16, augment: null, device: cpu, threads: 1, loader_threads: 1";
    ws.pipeline(
        "t",
        &crate::train_support::pipeline(&format!(
            "  imp:\n    uses: import_model\n    with: {{ checkpoint: {}, architecture: luna_model, input_size: [16, 16, 16] }}\n  eval:\n    uses: evaluate_classifier\n    needs: [crops, imp]\n    with: {{ model: imp, split: all, device: cpu }}\n  mal:\n    uses: train_classifier\n    needs: [crops, imp]\n    with: {{ task: malignancy, finetune_from: imp, {fast} }}\n",
            ck.display()
        )),
    );
    ws.luna(&["run", "t"]).expect_code(0);
    let p = crate::train_support::predictions(&ws.object_of("eval"));
    assert_eq!(p.len(), 36);
    assert!(p.values().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
    let first = p[&0];
    assert!(p.values().any(|v| *v != first), "{p:?}");
    // fine-tuning starts from the imported weights, as from a trained classifier
    let log = crate::train_support::stage_logs(ws.root(), "mal");
    assert!(log.contains("fine-tuning from `imp`"), "{log}");
}

#[test]
fn the_books_2020_checkpoints_import_and_the_2019_ones_do_not_fit() {
    let Some(real) = crate::harness::require_real_data() else {
        return;
    };
    let m = real.join("book-models");
    let ws = Ws::new();
    let cls = m.join("cls_2020-02-06_14.16.55_final-nodule-nonnodule.best.state");
    let seg =
        m.join("seg_2020-01-26_19.45.12_w4d3c1-bal_1_nodupe-label_pos-d1_fn8-adam.best.state");
    ws.pipeline(
        "imp",
        &pipeline(&[
            (
                "cls",
                format!("checkpoint: {}, architecture: luna_model", cls.display()),
            ),
            (
                "seg",
                format!("checkpoint: {}, architecture: unet", seg.display()),
            ),
        ]),
    );
    ws.luna(&["run", "imp"]).expect_code(0);
    let log = crate::train_support::stage_logs(ws.root(), "cls");
    assert!(
        log.contains("legacy format, 23 tensors) as LunaModel"),
        "{log}"
    );
    let log = crate::train_support::stage_logs(ws.root(), "seg");
    assert!(log.contains("legacy format, 81 tensors) as UNet"), "{log}");
    let (w, meta) = artifact(&ws, "cls");
    let (lm, _) = load_model_files::<LunaModel>(&w, &meta, Device::Cpu).unwrap();
    assert_eq!(lm.vs.variables().len(), 23);
    for (file, arch, want) in [
        (
            "cls_2019-06-23_14.57.45_redo.best.state",
            "luna_model",
            "missing (block1.conv1.bias [8]",
        ),
        (
            "alternate_cls_2019-06-16_14.18.58_ch12-other-model.best.state",
            "luna_model",
            "missing (block1.conv1.bias [8]",
        ),
        (
            "seg_2019-06-22_22.55.11_ch12-no-aug-bn-all-metrics-more-samples.750000.state",
            "unet",
            "unexpected (",
        ),
    ] {
        let ws = Ws::new();
        let with = format!(
            "checkpoint: {}, architecture: {arch}",
            m.join(file).display()
        );
        ws.pipeline("imp", &pipeline(&[("m", with)]));
        let out = ws.luna(&["run", "imp"]);
        println!(
            "{file}: {}",
            out.stderr
                .lines()
                .find(|l| l.contains("does not fit"))
                .unwrap_or("")
        );
        expect_error(&out, &[file, &format!("does not fit {arch}"), want]);
    }
}
