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
    let mut step = || {
        let (logits, _probs) = lm.model.forward_t(&x, true);
        let loss = logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::None, -100, 0.0);
        opt.backward_step(&loss.mean(Kind::Float));
    };
    step();
    step();
    sync();
    let t0 = Instant::now();
    for _ in 0..steps {
        step();
    }
    sync();
    Ok(t0.elapsed().as_secs_f64() / steps.max(1) as f64)
}
