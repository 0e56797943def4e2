//! LunaModel vs the book's PyTorch model (oracle), plus config/sidecar facts.
use crate::nn_support::{max_abs_diff, read_st, run_oracle};
use luna_torch::nn::{LoadedModel, LunaModelConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn pytorch_loads_luna_safetensors_and_gives_same_logits() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(42);
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    lm.vs.save(dir.path().join("model.safetensors")).unwrap();
    // HU-like input: mean −300, std 400, plus a bright blob.
    let x = Tensor::randn([3, 1, 32, 48, 48], (Kind::Float, Device::Cpu)) * 400.0 - 300.0;
    Tensor::write_safetensors(&[("x", &x)], dir.path().join("input.safetensors")).unwrap();

    let (eval_logits, eval_probs) = tch::no_grad(|| lm.model.forward_t(&x, false));
    let train_logits = tch::no_grad(|| lm.model.forward_t(&x, true).0);
    run_oracle("nn_model.py", &[dir.path().to_str().unwrap()]);
    let t = read_st(&dir.path().join("torch_out.safetensors"));

    // a batch on the CPU runs channels-last (luna_model.rs), another summation order than
    // PyTorch's default layout: equal up to float rounding relative to the logits' scale
    // (~4e3 here with HU input and the book's init; measured ~1e-6, as far as PyTorch's own
    // channels_last_3d pass is from its NCDHW one)
    let scale = t["eval_logits"].abs().max().double_value(&[]);
    let rel = max_abs_diff(&eval_logits, &t["eval_logits"]) / scale;
    println!("eval logits max diff vs torch, relative to their scale {scale}: {rel:e}");
    assert!(
        rel <= 1e-5,
        "eval logits differ by {rel} of their scale {scale}"
    );
    assert!(max_abs_diff(&eval_probs, &t["eval_probs"]) <= 1e-5);
    let d = max_abs_diff(&train_logits, &t["train_logits"]);
    println!("train logits max abs diff vs torch: {d:e}");
    assert!(d <= 1e-4, "train-mode logits differ by {d}");
    let vars = lm.vs.variables();
    assert!(max_abs_diff(&vars["tail_batchnorm.running_mean"], &t["running_mean"]) <= 1e-3);
    assert!(max_abs_diff(&vars["tail_batchnorm.running_var"], &t["running_var"]) <= 1.0);
    let rel = (&vars["tail_batchnorm.running_var"] / &t["running_var"] - 1.0)
        .abs()
        .max()
        .double_value(&[]);
    assert!(rel < 1e-5, "running_var rel diff {rel}");
    assert_eq!(
        vars["tail_batchnorm.num_batches_tracked"].int64_value(&[]),
        1
    );
    assert_eq!(t["num_batches_tracked"].int64_value(&[0]), 1);
}

#[test]
fn head_size_follows_crop_size() {
    let _torch = crate::nn_support::torch_lock();
    let cfg = LunaModelConfig {
        input_size: [16, 32, 48],
        ..Default::default()
    };
    let lm = LoadedModel::fresh(&cfg, Device::Cpu).unwrap();
    assert_eq!(
        lm.vs.variables()["head_linear.weight"].size(),
        vec![2, 64 * 2 * 3]
    );
    let x = Tensor::zeros([2, 1, 16, 32, 48], (Kind::Float, Device::Cpu));
    let (l, p) = tch::no_grad(|| lm.model.forward_t(&x, false));
    assert_eq!(l.size(), vec![2, 2]);
    let s = p.sum_dim_intlist(1, false, Kind::Float);
    assert!(max_abs_diff(&s, &Tensor::ones([2], (Kind::Float, Device::Cpu))) < 1e-6);
}

#[test]
fn config_sidecar_json_is_stable_and_rejects_bad_values() {
    let _torch = crate::nn_support::torch_lock();
    let json = serde_json::to_string(&luna_torch::nn::ModelConfig::LunaModel(
        LunaModelConfig::default(),
    ))
    .unwrap();
    assert_eq!(
        json,
        r#"{"architecture":"LunaModel","input_size":[32,48,48],"in_channels":1,"conv_channels":8,"bias_init":"book_normal"}"#
    );
    let bad = LunaModelConfig {
        input_size: [8, 48, 48],
        ..Default::default()
    };
    let e = LoadedModel::fresh(&bad, Device::Cpu).unwrap_err();
    assert_eq!(e.to_string(), "model config: input size [8, 48, 48] is too small: every axis must be >= 16 so that 4 max-pools leave at least 1 voxel; hint: use a crop of at least 16 voxels per axis (book: 32x48x48)");
}

#[test]
fn book_bias_init_has_negative_mean_and_uniform_option_is_bounded() {
    let _torch = crate::nn_support::torch_lock();
    tch::manual_seed(1);
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    // block4.conv1: weight (64,32,3,3,3), fan_out = 64*27 = 1728, bound = 0.02406.
    let b = &lm.vs.variables()["block4.conv1.bias"];
    let bound = 1.0 / 1728f64.sqrt();
    let mean = b.mean(Kind::Double).double_value(&[]);
    assert!(
        (mean + bound).abs() < 0.5 * bound,
        "mean {mean} not near -{bound}"
    );
    let w = &lm.vs.variables()["block4.conv1.weight"];
    let std = w.std(true).double_value(&[]);
    assert!(
        (std - (2.0f64 / 1728.0).sqrt()).abs() < 0.003,
        "weight std {std}"
    );
    let cfg = LunaModelConfig {
        bias_init: luna_torch::nn::BiasInit::Uniform,
        ..Default::default()
    };
    let lm = LoadedModel::fresh(&cfg, Device::Cpu).unwrap();
    let b = &lm.vs.variables()["block4.conv1.bias"];
    assert!(b.abs().max().double_value(&[]) <= bound);
}

#[test]
fn checked_forward_rejects_wrong_crop() {
    let _torch = crate::nn_support::torch_lock();
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    let x = Tensor::zeros([2, 1, 32, 48, 40], (Kind::Float, Device::Cpu));
    let e = lm.model.f_forward_t(&x, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        "model input: expected shape [N, 1, 32, 48, 48], found [2, 1, 32, 48, 40]; hint: crops must match the model's input_size"
    );
}
