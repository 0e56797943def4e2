//! The training loop (`nn::train::fit`) on generated data: balanced sampling, accuracy,
//! bit-identical resume, fine-tuning, checkpoints and shape errors.
use luna_torch::nn::checkpoint::{self, CheckpointMeta, LoadedModel};
use luna_torch::nn::classify::{BestBy, Classification};
use luna_torch::nn::loader::balanced_order;
use luna_torch::nn::train::{self, fit, Fit, Quiet, SampleSource, SourceError, Start};
use luna_torch::nn::{
    LunaModel, LunaModelConfig, ModelConfig, Optimizer, OptimizerConfig, TrainConfig,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use tch::Device;

const SHAPE: [usize; 3] = [16, 16, 16];

/// Positive = bright blob in the centre on noise; negative = noise only. Generated per index.
pub(crate) struct Blobs {
    pub(crate) n: usize,
    pub(crate) seed: u64,
}

impl Blobs {
    pub(crate) fn label(&self, i: usize) -> bool {
        i.is_multiple_of(3)
    }
    pub(crate) fn labels(&self) -> Vec<bool> {
        (0..self.n).map(|i| self.label(i)).collect()
    }
}

impl SampleSource for Blobs {
    fn len(&self) -> usize {
        self.n
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![1, SHAPE[0], SHAPE[1], SHAPE[2]]
    }
    fn target_shape(&self) -> Vec<usize> {
        Vec::new()
    }
    fn read(&self, i: usize, out: &mut [f32], target: &mut [f32]) -> Result<(), SourceError> {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(self.seed * 1_000_003 + i as u64);
        let noise = Normal::new(-500.0f64, 150.0).unwrap();
        let c = [
            7.5 + rng.random_range(-1.5..1.5),
            7.5 + rng.random_range(-1.5..1.5),
            7.5,
        ];
        for (k, o) in out.iter_mut().enumerate() {
            let p = [(k / 256) as f64, ((k / 16) % 16) as f64, (k % 16) as f64];
            let r2: f64 = p.iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
            let blob = if self.label(i) && r2 < 9.0 {
                700.0
            } else {
                0.0
            };
            *o = f32::from((noise.sample(&mut rng) + blob).clamp(-1000.0, 1000.0) as i16);
        }
        target[0] = f32::from(u8::from(self.label(i)));
        Ok(())
    }
}

pub(crate) fn model_cfg() -> LunaModelConfig {
    LunaModelConfig {
        input_size: [16, 16, 16],
        ..Default::default()
    }
}

pub(crate) fn train_cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        epochs,
        seed: 7,
        ..Default::default()
    }
}

fn meta(epoch: usize, total: u64) -> CheckpointMeta {
    CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: ModelConfig::LunaModel(model_cfg()),
        optimizer: OptimizerConfig::adam(1e-3),
        train_params: serde_json::json!({}),
        epoch,
        total_samples: total,
        score: None,
        best_score: None,
        rng_state: None,
        trainable: None,
    }
}

const TASK: Classification = Classification {
    best_by: BestBy::F1,
};

/// Runs `fit` on Blobs with resume dir `dir/resume` and artifact dir `dir/out`.
fn run_fit(
    dir: &std::path::Path,
    cfg: &TrainConfig,
    val: Option<&Blobs>,
) -> train::Fitted<luna_torch::nn::Metrics> {
    let trn = Blobs { n: 300, seed: 1 };
    let labels = trn.labels();
    let order = move |e: usize| balanced_order(&labels, 1, 320, 7, e);
    let (resume, out) = (dir.join("resume"), dir.join("out"));
    std::fs::create_dir_all(&resume).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    let spec = Fit {
        task: &TASK,
        train: &trn,
        val: val.map(|v| v as &dyn SampleSource).into_iter().collect(),
        order: &order,
        cfg,
        device: Device::Cpu,
        resume_dir: &resume,
        out_dir: &out,
        tensorboard_mirrors: vec![],
        train_params: serde_json::json!({"test": true}),
        observer: &Quiet,
    };
    fit::<LunaModel, _>(&spec, || {
        tch::manual_seed(3);
        let model = LoadedModel::fresh(&model_cfg(), Device::Cpu)?;
        let opt = Optimizer::new(&model.vs, OptimizerConfig::adam(1e-3), None)?;
        Ok(Start {
            model,
            opt,
            trainable: None,
        })
    })
    .unwrap()
}

fn weights(dir: &std::path::Path) -> Vec<(String, tch::Tensor)> {
    let mut v = tch::Tensor::read_safetensors(dir).unwrap();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn balanced_order_follows_book_formula() {
    let _torch = crate::nn_support::torch_lock();
    let labels: Vec<bool> = (0..10).map(|i| i < 3).collect();
    let o = balanced_order(&labels, 1, 12, 1, 1).unwrap();
    assert!(o.iter().step_by(2).all(|&i| labels[i]));
    assert!(o.iter().skip(1).step_by(2).all(|&i| !labels[i]));
    // positives wrap: each of the 3 appears twice in 6 even slots
    for p in 0..3 {
        assert_eq!(o.iter().step_by(2).filter(|&&i| i == p).count(), 2);
    }
    let o2 = balanced_order(&labels, 2, 9, 1, 1).unwrap();
    assert!(o2
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 3 == 0)
        .all(|(_, &i)| labels[i]));
    assert_ne!(
        balanced_order(&labels, 1, 12, 1, 2).unwrap(),
        o,
        "reshuffled each epoch"
    );
    assert_eq!(balanced_order(&labels, 1, 12, 1, 1).unwrap(), o, "seeded");
    let e = balanced_order(&[true, true], 1, 4, 1, 1).unwrap_err();
    assert_eq!(e.to_string(), "training data has 2 positives and 0 negatives; balanced sampling (ratio 1) needs both; hint: set ratio 0 or fix the split");
}

#[test]
fn smoke_training_reaches_high_accuracy_and_resume_is_bit_identical() {
    let _torch = crate::nn_support::torch_lock();
    tch::set_num_threads(2);
    let val = Blobs { n: 90, seed: 2 };
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    let fitted = run_fit(&full, &train_cfg(3), Some(&val));
    for r in &fitted.history {
        println!(
            "epoch {} {} loss {:.4} acc {:.1}% f1 {:.3} auc {:?} | {:.0} samples/s, data wait {:.1}%",
            r.epoch, r.phase, r.metrics.loss_all, r.metrics.correct_all, r.metrics.f1,
            r.metrics.auc, r.stats.samples_per_sec, 100.0 * r.stats.data_wait_fraction
        );
    }
    assert_eq!(
        fitted
            .history
            .iter()
            .map(|r| (r.epoch, r.phase.as_str(), r.total_samples))
            .collect::<Vec<_>>(),
        [
            (1, "trn", 320),
            (1, "val", 320),
            (2, "trn", 640),
            (2, "val", 640),
            (3, "trn", 960),
            (3, "val", 960)
        ]
    );
    let vm = &fitted.history.last().unwrap().metrics;
    assert!(
        vm.correct_all >= 95.0,
        "validation accuracy {}",
        vm.correct_all
    );
    assert!(vm.auc.unwrap() >= 0.98);
    for f in [
        "model.safetensors",
        "model.json",
        "last/checkpoint.json",
        "metrics.parquet",
        "loss.png",
    ] {
        assert!(full.join("out").join(f).is_file(), "artifact lacks {f}");
    }

    // Stop after epoch 1 (as a kill would), then resume the same directories to epoch 3:
    // the last weights are bit-identical to the uninterrupted run's.
    let part = dir.path().join("part");
    run_fit(&part, &train_cfg(1), Some(&val));
    let resumed = run_fit(&part, &train_cfg(3), Some(&val));
    assert_eq!(
        resumed.history.len(),
        6,
        "history restored from the resume dir"
    );
    let (a, b) = (
        weights(&full.join("resume/last/model.safetensors")),
        weights(&part.join("resume/last/model.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((k, v), (l, w)) in a.iter().zip(&b) {
        assert_eq!(k, l, "the same weight names in the same order");
        assert!(v.equal(w), "{k} differs after resume");
    }

    // Fine-tune depth 1: everything but the head comes from the model; only the head trains.
    let out = full.join("out");
    let (ft, mut ft_opt, trainable) = checkpoint::load_finetune::<LunaModel>(
        &out.join("model.safetensors"),
        &out.join("model.json"),
        Device::Cpu,
        1,
        OptimizerConfig::Sgd {
            lr: 3e-3,
            momentum: 0.0,
            weight_decay: 1e-4,
        },
    )
    .unwrap();
    assert_eq!(trainable, ["head_linear.bias", "head_linear.weight"]);
    assert_eq!(ft_opt.param_names(), trainable);
    let src: std::collections::HashMap<String, tch::Tensor> =
        weights(&out.join("model.safetensors"))
            .into_iter()
            .collect();
    let snap: Vec<(String, tch::Tensor)> = ft
        .vs
        .variables()
        .iter()
        .map(|(k, v)| (k.clone(), v.copy()))
        .collect();
    for (k, v) in &snap {
        assert_eq!(v.equal(&src[k]), !k.starts_with("head_linear."), "{k}");
    }
    let trn = Blobs { n: 300, seed: 1 };
    let order = balanced_order(&trn.labels(), 1, 320, 7, 1).unwrap();
    train::train_pass(
        &ft.model,
        &mut ft_opt,
        &TASK,
        &trn,
        &order,
        &train_cfg(1),
        None,
        1,
        &Quiet,
    )
    .unwrap();
    let after = ft.vs.variables();
    for (k, v) in &snap {
        let moved = !after[k].equal(v);
        let expect = k.starts_with("head_linear.")
            || k.contains("running_")
            || k.ends_with("num_batches_tracked");
        assert_eq!(moved, expect, "{k} moved={moved}");
    }
    let d2 = checkpoint::finetune_trainable::<LunaModel>(&ft.vs, 2).unwrap();
    assert_eq!(d2.len(), 6);
    assert!(d2
        .iter()
        .all(|n| n.starts_with("block4.") || n.starts_with("head_linear.")));
}

#[test]
fn checkpoint_errors_name_the_file() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let e = checkpoint::read_meta(dir.path()).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "checkpoint {}:",
            dir.path().join("checkpoint.json").display()
        )),
        "{e}"
    );
    let mut m = meta(1, 1);
    m.format_version = 99;
    std::fs::write(
        dir.path().join("checkpoint.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let e = checkpoint::read_meta(dir.path()).unwrap_err().to_string();
    assert_eq!(e, format!("checkpoint {}: format_version 99, this luna reads 1; hint: re-create the checkpoint with this version", dir.path().join("checkpoint.json").display()));
    let e = checkpoint::finetune_trainable::<LunaModel>(&tch::nn::VarStore::new(Device::Cpu), 0)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "finetune depth 0 must be between 1 and 6; hint: 1 trains head_linear only, 2 adds block4"
    );
}

#[test]
fn crop_shape_mismatch_is_an_error() {
    let _torch = crate::nn_support::torch_lock();
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    let e = train::predict(
        &lm.model,
        &TASK,
        &Blobs { n: 4, seed: 1 },
        &train_cfg(1),
        &Quiet,
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "sample shape [1, 16, 16, 16] differs from the model input shape [1, 32, 48, 48]; hint: re-crop the data or change the model config");
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_luna_train_step() {
    let _torch = crate::nn_support::torch_lock();
    let s = luna_torch::nn::bench::bench_train_step(24, 2, 10).unwrap();
    println!("luna train step: batch 24, threads 2: {s:.4} s/step");
}
