//! Training loop smoke test on generated data, balanced sampling, checkpoints and fine-tuning.
use luna::nn::checkpoint::{self, CheckpointMeta, LoadedModel};
use luna::nn::train::{self, epoch_order, SampleSource, SourceError};
use luna::nn::{LunaModelConfig, Optimizer, OptimizerConfig, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::ops::ControlFlow;
use tch::Device;

const SHAPE: [usize; 3] = [16, 16, 16];

/// Positive = bright blob in the centre on noise; negative = noise only. Generated per index.
pub(crate) struct Blobs {
    pub(crate) n: usize,
    pub(crate) seed: u64,
}

impl SampleSource for Blobs {
    fn len(&self) -> usize {
        self.n
    }
    fn label(&self, i: usize) -> bool {
        i.is_multiple_of(3)
    }
    fn crop_shape(&self) -> [usize; 3] {
        SHAPE
    }
    fn read(&self, i: usize, out: &mut [i16]) -> Result<(), SourceError> {
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
            *o = (noise.sample(&mut rng) + blob).clamp(-1000.0, 1000.0) as i16;
        }
        Ok(())
    }
}

pub(crate) fn model_cfg() -> LunaModelConfig {
    LunaModelConfig {
        input_size: [16, 16, 16],
        ..Default::default()
    }
}

fn train_cfg(epochs: usize) -> TrainConfig {
    TrainConfig {
        batch_size: 16,
        epochs,
        epoch_samples: 320,
        ratio: 1,
        seed: 7,
        ..Default::default()
    }
}

fn meta(epoch: usize, total: u64) -> CheckpointMeta {
    CheckpointMeta {
        format_version: checkpoint::FORMAT_VERSION,
        model: model_cfg(),
        optimizer: OptimizerConfig::adam(1e-3),
        train_params: serde_json::to_value(train_cfg(3)).unwrap(),
        epoch,
        total_samples: total,
        score: None,
        best_score: None,
        rng_state: None,
    }
}

#[test]
fn balanced_order_follows_book_formula() {
    let labels: Vec<bool> = (0..10).map(|i| i < 3).collect();
    let o = epoch_order(&labels, 1, 12, 1, 1).unwrap();
    assert!(o.iter().step_by(2).all(|&i| labels[i]));
    assert!(o.iter().skip(1).step_by(2).all(|&i| !labels[i]));
    // positives wrap: each of the 3 appears twice in 6 even slots
    for p in 0..3 {
        assert_eq!(o.iter().step_by(2).filter(|&&i| i == p).count(), 2);
    }
    let o2 = epoch_order(&labels, 2, 9, 1, 1).unwrap();
    assert!(o2
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 3 == 0)
        .all(|(_, &i)| labels[i]));
    assert_ne!(
        epoch_order(&labels, 1, 12, 1, 2).unwrap(),
        o,
        "reshuffled each epoch"
    );
    assert_eq!(epoch_order(&labels, 1, 12, 1, 1).unwrap(), o, "seeded");
    let e = epoch_order(&[true, true], 1, 4, 1, 1).unwrap_err();
    assert_eq!(e.to_string(), "training data has 2 positives and 0 negatives; balanced sampling (ratio 1) needs both; hint: set ratio 0 or fix the split");
}

#[test]
fn smoke_training_reaches_high_accuracy_and_checkpoints_resume() {
    tch::set_num_threads(2);
    tch::manual_seed(3);
    let trn = Blobs { n: 300, seed: 1 };
    let val = Blobs { n: 90, seed: 2 };
    let lm = LoadedModel::fresh(&model_cfg(), Device::Cpu).unwrap();
    let mut opt = Optimizer::new(&lm.vs, OptimizerConfig::adam(1e-3), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ck1 = dir.path().join("epoch1");
    let mut last_val = None;
    let mut cb = |r: &train::EpochReport,
                  vs: &tch::nn::VarStore,
                  o: &Optimizer|
     -> Result<ControlFlow<()>, SourceError> {
        let (vm, _, vs_stats) = r.val.as_ref().expect("validated every epoch");
        println!(
            "epoch {} trn loss {:.4} acc {:.1}% | val loss {:.4} acc {:.1}% f1 {:.3} auc {:?} | {:.0} samples/s, data wait {:.1}% (val {:.0} samples/s)",
            r.epoch, r.train.loss_all, r.train.correct_all, vm.loss_all, vm.correct_all, vm.f1, vm.auc,
            r.train_stats.samples_per_sec, 100.0 * r.train_stats.data_wait_fraction, vs_stats.samples_per_sec
        );
        if r.epoch == 1 {
            checkpoint::save_checkpoint(&ck1, vs, o, &meta(1, r.total_samples))?;
        }
        last_val = Some(vm.clone());
        Ok(ControlFlow::Continue(()))
    };
    let total = train::train(
        &lm,
        &mut opt,
        &trn,
        Some(&val),
        &train_cfg(3),
        0,
        0,
        &mut cb,
    )
    .unwrap();
    assert_eq!(total, 960);
    let vm = last_val.unwrap();
    assert!(
        vm.correct_all >= 95.0,
        "validation accuracy {}",
        vm.correct_all
    );
    assert!(vm.auc.unwrap() >= 0.98);

    // Resume from epoch 1 and train epochs 2..3 again: bit-identical weights.
    let (lm2, mut opt2, m2) = checkpoint::load_resume(&ck1, Device::Cpu).unwrap();
    assert_eq!((m2.epoch, m2.total_samples), (1, 320));
    let total2 = train::train(
        &lm2,
        &mut opt2,
        &trn,
        None,
        &train_cfg(3),
        m2.epoch,
        m2.total_samples,
        &mut |_, _, _| Ok(ControlFlow::Continue(())),
    )
    .unwrap();
    assert_eq!(total2, 960);
    let (a, b) = (lm.vs.variables(), lm2.vs.variables());
    for (k, v) in &a {
        let d = (v.to_kind(tch::Kind::Double) - b[k].to_kind(tch::Kind::Double))
            .abs()
            .max()
            .double_value(&[]);
        assert_eq!(d, 0.0, "{k} differs after resume by {d}");
    }

    // Fine-tune depth 1: everything but the head comes from the checkpoint; only the head trains.
    let ck3 = dir.path().join("final");
    checkpoint::save_checkpoint(&ck3, &lm.vs, &opt, &meta(3, total)).unwrap();
    let (ft, mut ft_opt, _) = checkpoint::load_finetune(
        &ck3,
        Device::Cpu,
        1,
        OptimizerConfig::Sgd {
            lr: 3e-3,
            momentum: 0.0,
            weight_decay: 1e-4,
        },
    )
    .unwrap();
    assert_eq!(
        ft_opt.param_names(),
        ["head_linear.bias", "head_linear.weight"]
    );
    let before = ft.vs.variables();
    let snap: Vec<(String, tch::Tensor)> =
        before.iter().map(|(k, v)| (k.clone(), v.copy())).collect();
    for (k, v) in &snap {
        let same = v.equal(&a[k]);
        assert_eq!(same, !k.starts_with("head_linear."), "{k}");
    }
    let cfg1 = TrainConfig {
        epochs: 1,
        ..train_cfg(1)
    };
    train::train(&ft, &mut ft_opt, &trn, None, &cfg1, 0, 0, &mut |_, _, _| {
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    let after = ft.vs.variables();
    for (k, v) in &snap {
        let moved = !after[k].equal(v);
        let expect = k.starts_with("head_linear.")
            || k.contains("running_")
            || k.ends_with("num_batches_tracked");
        assert_eq!(moved, expect, "{k} moved={moved}");
    }
    let d2 = checkpoint::finetune_trainable(&ft.vs, 2).unwrap();
    assert_eq!(d2.len(), 6);
    assert!(d2
        .iter()
        .all(|n| n.starts_with("block4.") || n.starts_with("head_linear.")));
}

#[test]
fn checkpoint_errors_name_the_file() {
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
    let e = checkpoint::finetune_trainable(&tch::nn::VarStore::new(Device::Cpu), 0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "finetune depth 0 must be between 1 and 6; hint: 1 trains head_linear only, 2 adds block4"
    );
}

#[test]
fn crop_shape_mismatch_is_an_error() {
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu).unwrap();
    let e = train::predict(&lm.model, &Blobs { n: 4, seed: 1 }, 2, 1, 1).unwrap_err();
    assert_eq!(e.to_string(), "sample crop shape [16, 16, 16] differs from the model input size [32, 48, 48]; hint: re-crop the data or change the model config");
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_luna_train_step() {
    let s = luna::nn::bench::bench_train_step(24, 2, 10).unwrap();
    println!("luna train step: batch 24, threads 2: {s:.4} s/step");
}
