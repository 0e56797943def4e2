//! The book's UNet, its Dice + 8·FN loss and the 2-D augmentation against PyTorch (oracle
//! `tests/oracle/nn_unet.py`).
use crate::nn_support::{max_abs_diff, read_st, run_oracle};
use luna_torch::nn::segment::seg_loss;
use luna_torch::nn::{augment::augment_with_2d, AugmentConfig, Augmenter, LoadedModel, Model};
use luna_torch::nn::{UNet, UNetConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn pytorch_loads_luna_unet_safetensors_and_gives_the_same_output() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(7);
    let lm = LoadedModel::<UNet>::build(&UNetConfig::default(), Device::Cpu).unwrap();
    lm.vs.save(dir.path().join("model.safetensors")).unwrap();
    let x = Tensor::randn([2, 7, 64, 64], (Kind::Float, Device::Cpu)) * 400.0 - 300.0;
    Tensor::write_safetensors(&[("x", &x)], dir.path().join("input.safetensors")).unwrap();
    let eval = tch::no_grad(|| lm.model.forward(&x, false));
    let train = tch::no_grad(|| lm.model.forward(&x, true));
    run_oracle("nn_unet.py", &["model", dir.path().to_str().unwrap()]);
    let t = read_st(&dir.path().join("torch_out.safetensors"));
    let d = max_abs_diff(&eval, &t["eval"]);
    println!("UNet eval output max abs diff vs torch: {d:e}");
    assert!(d <= 1e-4, "eval outputs differ by {d}");
    let d = max_abs_diff(&train, &t["train"]);
    println!("UNet train output max abs diff vs torch: {d:e}");
    assert!(d <= 1e-4, "train-mode outputs differ by {d}");
    let vars = lm.vs.variables();
    assert!(max_abs_diff(&vars["input_batchnorm.running_mean"], &t["running_mean"]) <= 1e-3);
    let n: i64 = lm
        .vs
        .trainable_variables()
        .iter()
        .map(|v| v.numel() as i64)
        .sum();
    assert_eq!(n, t["params"].int64_value(&[0]), "parameter count");
    assert_eq!(eval.size(), vec![2, 1, 64, 64]);
    assert!(lm.model.check_input(&[7, 512, 512]).is_ok());
    assert_eq!(
        lm.model.check_input(&[7, 30, 64]).unwrap_err(),
        "[7, H, W] with H and W divisible by 4"
    );
}

#[test]
fn dice_plus_fn_loss_and_its_gradient_equal_torch() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(3);
    let pred = Tensor::rand([4, 1, 16, 16], (Kind::Float, Device::Cpu));
    let label = Tensor::rand([4, 1, 16, 16], (Kind::Float, Device::Cpu))
        .gt(0.8)
        .to_kind(Kind::Float);
    Tensor::write_safetensors(
        &[("pred", &pred), ("label", &label)],
        dir.path().join("input.safetensors"),
    )
    .unwrap();
    let p = pred.detach().set_requires_grad(true);
    let loss = seg_loss(&p, &label).mean(Kind::Float);
    loss.backward();
    run_oracle("nn_unet.py", &["loss", dir.path().to_str().unwrap()]);
    let t = read_st(&dir.path().join("torch_out.safetensors"));
    let dl = (loss.double_value(&[]) - t["loss"].double_value(&[0])).abs();
    assert!(dl <= 1e-6, "loss differs by {dl}");
    let dg = max_abs_diff(&p.grad(), &t["grad"]);
    println!("Dice+FN loss diff {dl:e}, gradient max abs diff {dg:e}");
    assert!(dg <= 1e-7, "gradient differs by {dg}");
}

#[test]
fn augmentation_2d_with_known_parameters_equals_affine_grid_and_grid_sample() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(5);
    let x = Tensor::randn([3, 7, 24, 32], (Kind::Float, Device::Cpu)) * 300.0;
    let label = Tensor::rand([3, 1, 24, 32], (Kind::Float, Device::Cpu))
        .gt(0.7)
        .to_kind(Kind::Float);
    let mut aug = Augmenter::new(
        AugmentConfig {
            offset: 0.1,
            noise: 0.0,
            ..AugmentConfig::default()
        },
        11,
    );
    let flat: Vec<f32> = (0..3).flat_map(|_| aug.random_theta_2d()).collect();
    let theta = Tensor::from_slice(&flat).view([3, 2, 3]);
    Tensor::write_safetensors(
        &[("x", &x), ("label", &label), ("theta", &theta)],
        dir.path().join("input.safetensors"),
    )
    .unwrap();
    let ox = augment_with_2d(&x, &theta, 0.0, None).unwrap();
    let ol = augment_with_2d(&label, &theta, 0.0, None)
        .unwrap()
        .gt(0.5)
        .to_kind(Kind::Float);
    run_oracle("nn_unet.py", &["augment", dir.path().to_str().unwrap()]);
    let t = read_st(&dir.path().join("torch_out.safetensors"));
    let d = max_abs_diff(&ox, &t["x"]);
    assert!(d <= 1e-3, "warped input differs by {d}");
    assert_eq!(max_abs_diff(&ol, &t["label"]), 0.0, "warped label differs");
    // The offset lands in the translation column (the book's bottom-row offset is a no-op).
    let t0: Vec<f32> = Vec::try_from(theta.get(0).flatten(0, -1)).unwrap();
    assert!(t0[2] != 0.0 && t0[5] != 0.0, "{t0:?}");
    // Joint augmentation keeps the mask binary and the same shape; one transform per batch
    // when asked.
    let mut per_batch = Augmenter::new(
        AugmentConfig {
            per_batch: true,
            ..AugmentConfig::default()
        },
        2,
    );
    let (xi, li) = per_batch.augment_pair(&x, &label).unwrap();
    assert_eq!((xi.size(), li.size()), (x.size(), label.size()));
    let vals: Vec<f32> = Vec::try_from(li.flatten(0, -1)).unwrap();
    assert!(vals.iter().all(|&v| v == 0.0 || v == 1.0));
}

/// Saves a freshly initialised UNet as a trained-model artifact layout (`model.safetensors` +
/// `model.json`) in `dir`.
pub(crate) fn write_segmenter(dir: &std::path::Path, seed: i64) {
    use luna_torch::nn::checkpoint::{CheckpointMeta, FORMAT_VERSION};
    std::fs::create_dir_all(dir).unwrap();
    tch::manual_seed(seed);
    let lm = LoadedModel::<UNet>::build(&UNetConfig::default(), Device::Cpu).unwrap();
    lm.vs.save(dir.join("model.safetensors")).unwrap();
    let meta = CheckpointMeta {
        format_version: FORMAT_VERSION,
        model: lm.model.model_config(),
        optimizer: luna_torch::nn::OptimizerConfig::adam(1e-3),
        train_params: serde_json::json!({}),
        epoch: 1,
        total_samples: 0,
        score: None,
        best_score: None,
        rng_state: None,
        trainable: None,
    };
    std::fs::write(dir.join("model.json"), serde_json::to_vec(&meta).unwrap()).unwrap();
}

#[test]
fn segment_writes_probability_volumes_equal_to_pytorch_and_clusters_read_them() {
    let _torch = crate::nn_support::torch_lock();
    use crate::engine_support::Ws;
    let ws = Ws::new();
    write_segmenter(&ws.path("segmodel"), 9);
    ws.pipeline(
        "s",
        "pipeline: s\nstages:\n  data:\n    uses: synth\n    with: { preset: tiny, seed: 4 }\n\
         \x20 annotations:\n    uses: load_annotations\n    needs: [data]\n\
         \x20 candidates:\n    uses: merge_candidates\n    needs: [annotations, data]\n    with: { val_stride: 2 }\n\
         \x20 model:\n    uses: command\n    with: { run: 'cp segmodel/* \"$LUNA_OUT\"/', inputs: [segmodel], provides: [segmenter] }\n\
         \x20 segment:\n    uses: segment\n    needs: [model, candidates, data]\n    with: { device: cpu, batch_size: 4 }\n\
         \x20 clusters:\n    uses: cluster\n    needs: [segment, data]\n",
    );
    let run = ws.luna(&["run", "s"]);
    if run.code != 0 {
        panic!(
            "{}\nsegment log:\n{}",
            run.stderr,
            crate::train_support::stage_logs(ws.root(), "segment")
        );
    }
    let dir = |s: &str| std::path::PathBuf::from(ws.luna(&["path", "s", s]).stdout.trim());
    let seg = dir("segment");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seg.join("manifest.json")).unwrap()).unwrap();
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seg.join("segment.json")).unwrap()).unwrap();
    let n = summary["series"].as_array().unwrap().len();
    assert!(n >= 1, "the validation split has series");
    assert_eq!(
        m["partitions"].as_array().unwrap().len(),
        n,
        "one partition per series"
    );
    let probs = std::fs::read_dir(seg.join("probs")).unwrap().count();
    assert_eq!(probs, n);
    // PyTorch's UNet on the same CTs gives the same bytes (±1 for float rounding); the oracle
    // works on a copy of the model (its output must not touch the pipeline's inputs).
    let om = ws.path("oracle_model");
    std::fs::create_dir_all(&om).unwrap();
    for f in ["model.safetensors", "model.json"] {
        std::fs::copy(ws.path("segmodel").join(f), om.join(f)).unwrap();
    }
    let out = run_oracle(
        "nn_unet.py",
        &[
            "segment",
            om.to_str().unwrap(),
            seg.to_str().unwrap(),
            dir("data").to_str().unwrap(),
        ],
    );
    let _ = out;
    let t = read_st(&om.join("torch_out.safetensors"));
    let worst = t["max_byte_diff"].int64_value(&[0]);
    println!("segment vs PyTorch: max byte difference {worst}");
    assert!(worst <= 1, "probability bytes differ by {worst}");
    let cl = ws.luna(&["path", "s", "clusters"]);
    assert!(
        dir("clusters").join("clusters.parquet").is_file(),
        "{} {}",
        cl.stdout,
        cl.stderr
    );
    // A second run computes nothing.
    let again = ws.luna(&["run", "s"]);
    again.expect_code(0);
    assert!(
        again.stderr.contains("0 ran, 6 cached") || again.stderr.contains("6 cached"),
        "{}",
        again.stderr
    );
    // Choosing fewer series reuses their partitions (the selection is not in partition keys).
    let first = summary["series"][0].as_str().unwrap().to_string();
    let yaml = std::fs::read_to_string(ws.path("pipelines/s.yaml"))
        .unwrap()
        .replace(
            "with: { device: cpu, batch_size: 4 }",
            &format!("with: {{ device: cpu, batch_size: 4, series: [{first}] }}"),
        );
    ws.pipeline("s", &yaml);
    ws.luna(&["run", "s", "--until", "segment"]).expect_code(0);
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir("segment").join("segment.json")).unwrap())
            .unwrap();
    assert_eq!(again["computed"], 0, "the series' partition is reused");
    assert_eq!(again["series"], serde_json::json!([first]));
    // A model of the wrong kind is a spec error.
    ws.pipeline(
        "w",
        "pipeline: w\nstages:\n  data:\n    uses: synth\n    with: { preset: tiny, seed: 4 }\n\
         \x20 segment:\n    uses: segment\n    needs: [data]\n    with: { model: data, series: all }\n",
    );
    let out = ws.luna(&["status", "w"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains(
            "`model: data` names a `synth` stage, which provides `dataset`, not a `segmenter`"
        ),
        "{}",
        out.stderr
    );
}
