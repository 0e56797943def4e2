//! CUDA checks (ignored: need a GPU; run alone so the dlopen precedes every tch call):
//! `it --ignored --exact nn_gpu::cuda_matches_cpu_and_trains --nocapture`.
use crate::nn_support::max_abs_diff;
use crate::nn_train::{model_cfg, Blobs};
use luna_torch::nn::classify::{BestBy, Classification};
use luna_torch::nn::loader::balanced_order;
use luna_torch::nn::train::{fit, Fit, Quiet, Start};
use luna_torch::nn::{
    augment_with, AugmentConfig, Augmenter, LoadedModel, LunaModel, LunaModelConfig, Optimizer,
    OptimizerConfig, TrainConfig,
};
use tch::{Device, Kind, Tensor};

fn load_cuda() {
    let name = std::ffi::CString::new("libtorch_cuda.so").expect("static name has no NUL");
    // SAFETY: plain dlopen of a shared library by name; failure is reported below.
    let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if h.is_null() {
        // SAFETY: dlerror returns a valid C string after a failed dlopen.
        let e = unsafe { std::ffi::CStr::from_ptr(libc::dlerror()) };
        panic!("dlopen libtorch_cuda.so failed: {e:?}; set LD_LIBRARY_PATH to a CUDA torch 2.11 lib dir");
    }
    assert!(
        tch::Cuda::is_available(),
        "CUDA not available after loading libtorch_cuda.so"
    );
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn cuda_matches_cpu_and_trains() {
    let _torch = crate::nn_support::torch_lock();
    load_cuda();
    let cuda = Device::Cuda(0);
    tch::manual_seed(42);
    // Model: same weights on CPU and CUDA.
    let cpu = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    let mut gpu = LoadedModel::fresh(&LunaModelConfig::default(), cuda).unwrap();
    gpu.vs.copy(&cpu.vs).unwrap();
    let x = Tensor::randn([8, 1, 32, 48, 48], (Kind::Float, Device::Cpu)) * 400.0 - 300.0;
    for train in [false, true] {
        let (lc, _) = tch::no_grad(|| cpu.model.forward_t(&x, train));
        let (lg, _) = tch::no_grad(|| gpu.model.forward_t(&x.to_device(cuda), train));
        let d = max_abs_diff(&lc, &lg.to_device(Device::Cpu));
        let scale = lc.abs().max().double_value(&[]);
        println!("cuda vs cpu logits (train={train}): max abs diff {d:e} (max |logit| {scale:.3})");
        assert!(d <= 1e-2 * scale.max(1.0), "cuda logits differ by {d}");
    }
    // Augmentation: explicit theta and seeded random on CUDA.
    let (s, c) = (0.5f32, 0.75f32.sqrt());
    let th: Vec<f32> = [[-c, -s, 0., 0.05, s, c * 0.9, 0., 0., 0., 0., -1.1, -0.1]; 8].concat();
    let th = Tensor::from_slice(&th).view([8, 3, 4]);
    let yc = augment_with(&x, &th, 0.0, None).unwrap();
    let yg = augment_with(&x.to_device(cuda), &th, 0.0, None)
        .unwrap()
        .to_device(Device::Cpu);
    let d = max_abs_diff(&yc, &yg);
    println!("cuda vs cpu augment_with: max abs diff {d:e}");
    assert!(d < 1e-2, "augment differs by {d}");
    let xg = x.to_device(cuda);
    let a = Augmenter::new(AugmentConfig::default(), 5)
        .augment(&xg)
        .unwrap();
    let b = Augmenter::new(AugmentConfig::default(), 5)
        .augment(&xg)
        .unwrap();
    assert_eq!(
        max_abs_diff(&a.to_device(Device::Cpu), &b.to_device(Device::Cpu)),
        0.0
    );
    // Optimizer on CUDA equals CPU; state saved from CUDA loads on CPU.
    let dir = tempfile::tempdir().unwrap();
    let mut finals = Vec::new();
    for dev in [Device::Cpu, cuda] {
        let vs = tch::nn::VarStore::new(dev);
        tch::manual_seed(9);
        let w = vs.root().add(
            "w",
            Tensor::randn([3, 4], (Kind::Double, Device::Cpu)).to_device(dev),
            true,
        );
        let xx = Tensor::ones([5, 4], (Kind::Double, dev));
        let mut opt = Optimizer::new(&vs, OptimizerConfig::adam(0.01), None).unwrap();
        for _ in 0..4 {
            opt.backward_step(&xx.matmul(&w.tr()).tanh().square().mean(Kind::Double));
        }
        opt.save(&dir.path().join("s.safetensors")).unwrap();
        finals.push(w.to_device(Device::Cpu));
    }
    let d = max_abs_diff(&finals[0], &finals[1]);
    println!("cuda vs cpu adam (f64, 4 steps): max abs diff {d:e}");
    assert!(d < 1e-9);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let _w = vs.root().add(
        "w",
        Tensor::zeros([3, 4], (Kind::Double, Device::Cpu)),
        true,
    );
    Optimizer::new(&vs, OptimizerConfig::adam(0.01), None)
        .unwrap()
        .load(&dir.path().join("s.safetensors"))
        .unwrap();
    // Training on CUDA (augmented) reaches high accuracy, through the same loop as the stage.
    let trn = Blobs { n: 300, seed: 1 };
    let val = Blobs { n: 90, seed: 2 };
    let labels = trn.labels();
    let order = move |e: usize| balanced_order(&labels, 1, 960, 7, e);
    let cfg = TrainConfig {
        batch_size: 24,
        epochs: 4,
        seed: 7,
        augment: Some(AugmentConfig {
            noise: 25.0,
            offset: 0.05,
            ..Default::default()
        }),
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let task = Classification {
        best_by: BestBy::F1,
    };
    let spec = Fit {
        task: &task,
        train: &trn,
        val: vec![&val],
        order: &order,
        cfg: &cfg,
        device: cuda,
        resume_dir: tmp.path(),
        out_dir: tmp.path(),
        tensorboard_mirrors: vec![],
        train_params: serde_json::json!({}),
        observer: &Quiet,
    };
    let fitted = fit::<LunaModel, _>(&spec, || {
        tch::manual_seed(3);
        let model = LoadedModel::fresh(&model_cfg(), cuda)?;
        let opt = Optimizer::new(&model.vs, OptimizerConfig::adam(1e-3), None)?;
        Ok(Start {
            model,
            opt,
            trainable: None,
        })
    })
    .unwrap();
    for r in &fitted.history {
        println!(
            "cuda epoch {} {}: loss {:.4} acc {:.1}% auc {:?} | {:.0} samples/s, data wait {:.1}%",
            r.epoch,
            r.phase,
            r.metrics.loss_all,
            r.metrics.correct_all,
            r.metrics.auc,
            r.stats.samples_per_sec,
            100.0 * r.stats.data_wait_fraction
        );
    }
    let last = fitted.history.last().unwrap().metrics.correct_all;
    assert!(last >= 95.0, "cuda validation accuracy {last}");
    let s = luna_torch::nn::bench::bench_train_step_on(cuda, 24, 2, 20).unwrap();
    println!("luna train step: cuda, batch 24: {s:.5} s/step");
}
