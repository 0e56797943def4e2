//! Micro-benchmark of one LunaModel training step on the CPU, to compare with PyTorch
//! (`bench/train_step.py` runs the same model, batch and thread count).
//!
//! Measures forward + per-sample cross-entropy + backward + SGD step (the p2ch14 optimizer) on
//! a fixed random batch; two warm-up steps are excluded. Returns mean seconds per step.
use crate::nn::checkpoint::LoadedModel;
use crate::nn::luna_model::{LunaModelConfig, ModelError};
use crate::nn::optim::{Optimizer, OptimizerConfig};
use std::time::Instant;
use tch::{Device, Kind, Reduction, Tensor};

/// Errors of the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Model construction failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Optimizer construction failed.
    #[error(transparent)]
    Optim(#[from] crate::nn::optim::OptimError),
}

/// Mean seconds per training step with `batch` crops of 32×48×48 on `threads` CPU threads.
pub fn bench_train_step(batch: i64, threads: i32, steps: usize) -> Result<f64, BenchError> {
    bench_train_step_on(Device::Cpu, batch, threads, steps)
}

/// As [`bench_train_step`] on any device (CUDA is synchronised before the clock stops).
pub fn bench_train_step_on(
    device: Device,
    batch: i64,
    threads: i32,
    steps: usize,
) -> Result<f64, BenchError> {
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), device)?;
    let mut opt = Optimizer::new(&lm.vs, OptimizerConfig::book_classifier(), None)?;
    let x = Tensor::randn([batch, 1, 32, 48, 48], (Kind::Float, device)) * 300.0;
    let y = Tensor::arange(batch, (Kind::Int64, device)).remainder(2);
    let sync = || {
        if let Device::Cuda(i) = device {
            tch::Cuda::synchronize(i as i64);
        }
    };
    let step = || {
        let (logits, _probs) = lm.model.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, -100, 0.0);
        opt.backward_step(&loss.mean(Kind::Float));
    };
    Ok(seconds_per_step(steps, step, sync))
}

/// Mean seconds per UNet training step (the book's segmentation step: batch of 7×64×64
/// inputs, Dice + 8·FN loss, Adam) on `threads` CPU threads; two warm-up steps excluded
/// (`bench/unet_step.py` runs the same in PyTorch).
pub fn bench_unet_step(batch: i64, threads: i32, steps: usize) -> Result<f64, BenchError> {
    use crate::nn::model::Model;
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let device = Device::Cpu;
    let lm = LoadedModel::<crate::nn::unet::UNet>::build(&Default::default(), device)?;
    let mut opt = Optimizer::new(&lm.vs, OptimizerConfig::adam(1e-3), None)?;
    let x = Tensor::randn([batch, 7, 64, 64], (Kind::Float, device)) * 300.0;
    let y = Tensor::rand([batch, 1, 64, 64], (Kind::Float, device))
        .gt(0.9)
        .to_kind(Kind::Float);
    let step = || {
        let p = lm.model.forward(&x, true);
        let loss = crate::nn::segment::seg_loss(&p, &y).mean(Kind::Float);
        opt.backward_step(&loss);
    };
    Ok(seconds_per_step(steps, step, || {}))
}

/// Mean seconds per crop of an eval-mode LunaModel forward pass (no gradient) over `batch`
/// crops of 32×48×48 on `threads` CPU threads, the pass `classify_crops` (and so `luna serve`)
/// runs; two warm-up passes excluded (`bench/serve_model.py` runs the same in PyTorch).
pub fn bench_infer(batch: i64, threads: i32, steps: usize) -> Result<f64, BenchError> {
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), Device::Cpu)?;
    let x = Tensor::randn([batch, 1, 32, 48, 48], (Kind::Float, Device::Cpu)) * 300.0;
    let pass = || {
        let _probs = tch::no_grad(|| lm.model.forward_t(&x, false).1);
    };
    Ok(seconds_per_step(steps, pass, || {}) / batch.max(1) as f64)
}

/// Mean seconds of `step` over `steps` runs after two warm-up runs; `sync` waits for the
/// device before the clock starts and stops.
fn seconds_per_step(steps: usize, mut step: impl FnMut(), sync: impl Fn()) -> f64 {
    step();
    step();
    sync();
    let t0 = Instant::now();
    for _ in 0..steps {
        step();
    }
    sync();
    t0.elapsed().as_secs_f64() / steps.max(1) as f64
}
