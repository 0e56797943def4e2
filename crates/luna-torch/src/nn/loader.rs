//! Sample sources, epoch orders and background batch assembly for the training loop.
//!
//! - Data comes from a [`SampleSource`]: random access to (input, target) pairs of fixed
//!   per-sample shapes, written as f32 into buffers the loader owns. A classifier's target is a
//!   scalar class (shape `[]`); a segmenter's is a mask with the input's spatial shape. nn knows
//!   no files: the data layer implements the trait.
//! - Epoch orders come from the caller (a closure of the epoch number), so each task samples as
//!   its book dataset does; [`balanced_order`] is the book's §3.3 positive/negative
//!   interleaving. Every epoch's RNG derives from the seed and the epoch ([`epoch_rng`]), so a
//!   resumed run continues identically without storing RNG state.
//! - Batches are assembled on `loader_threads` background threads (worker `w` builds batches
//!   `w, w+T, …`, each into its own bounded channel of depth `prefetch`) as CPU tensors and moved
//!   to the device by the training thread. Reading the workers round-robin keeps the batch
//!   order deterministic (rejected: one shared queue, which reorders batches between runs).
//!   Time blocked on the channel is the "data wait".
use crate::nn::train::TrainError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{sync_channel, Receiver};
use std::time::{Duration, Instant};
use tch::Tensor;

/// Error type a [`SampleSource`] or callback may return.
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// Random-access (input, target) samples; implemented by the data layer.
pub trait SampleSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one input, without the batch axis (e.g. `[1, 32, 48, 48]`).
    fn input_shape(&self) -> Vec<usize>;
    /// Shape of one target, without the batch axis (`[]` for a class label).
    fn target_shape(&self) -> Vec<usize>;
    /// Writes sample `i` into `input` and `target` (C-order, sized by the shapes).
    fn read(&self, i: usize, input: &mut [f32], target: &mut [f32]) -> Result<(), SourceError>;
}

/// Throughput of one pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PassStats {
    /// Samples processed.
    pub samples: usize,
    /// Wall seconds.
    pub seconds: f64,
    /// Samples per second.
    pub samples_per_sec: f64,
    /// Fraction of wall time the model thread waited for batches.
    pub data_wait_fraction: f64,
}

/// The RNG of epoch `epoch` (sampling and augmentation seeds derive from it).
pub fn epoch_rng(seed: u64, epoch: usize) -> Pcg64 {
    Pcg64::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// Book §3.3 balanced order for epoch `epoch`: positive and negative index lists reshuffled per
/// epoch; sample `k` is `pos[k/(r+1) % P]` when `k % (r+1) == 0`, else
/// `neg[(k − 1 − k/(r+1)) % N]`. `ratio = 0` is an unbalanced shuffled pass (wrapping);
/// `epoch_samples = 0` means one pass over the labels.
pub fn balanced_order(
    labels: &[bool],
    ratio: usize,
    epoch_samples: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, TrainError> {
    let mut rng = epoch_rng(seed, epoch);
    let n = if epoch_samples == 0 {
        labels.len()
    } else {
        epoch_samples
    };
    if ratio == 0 {
        let mut all: Vec<usize> = (0..labels.len()).collect();
        all.shuffle(&mut rng);
        return Ok((0..n).map(|k| all[k % all.len().max(1)]).collect());
    }
    let mut pos: Vec<usize> = (0..labels.len()).filter(|&i| labels[i]).collect();
    let mut neg: Vec<usize> = (0..labels.len()).filter(|&i| !labels[i]).collect();
    if pos.is_empty() || neg.is_empty() {
        return Err(TrainError::OneClass {
            pos: pos.len(),
            neg: neg.len(),
            ratio,
        });
    }
    pos.shuffle(&mut rng);
    neg.shuffle(&mut rng);
    Ok((0..n)
        .map(|k| {
            let pos_ndx = k / (ratio + 1);
            if k % (ratio + 1) != 0 {
                neg[(k - 1 - pos_ndx) % neg.len()]
            } else {
                pos[pos_ndx % pos.len()]
            }
        })
        .collect())
}

/// One assembled batch (CPU tensors).
pub struct Batch {
    /// Inputs (N, ...input_shape).
    pub input: Tensor,
    /// Targets (N, ...target_shape).
    pub target: Tensor,
    /// Source indices of the samples.
    pub indices: Vec<usize>,
}

fn shape_i64(n: usize, s: &[usize]) -> Vec<i64> {
    std::iter::once(n as i64)
        .chain(s.iter().map(|&d| d as i64))
        .collect()
}

pub(crate) fn build_batch(source: &dyn SampleSource, idx: &[usize]) -> Result<Batch, TrainError> {
    let (is, ts) = (source.input_shape(), source.target_shape());
    let (ni, nt) = (is.iter().product::<usize>(), ts.iter().product::<usize>());
    let mut input = vec![0f32; ni * idx.len()];
    let mut target = vec![0f32; nt * idx.len()];
    for (k, &i) in idx.iter().enumerate() {
        source
            .read(
                i,
                &mut input[k * ni..(k + 1) * ni],
                &mut target[k * nt..(k + 1) * nt],
            )
            .map_err(|source| TrainError::Source { index: i, source })?;
    }
    Ok(Batch {
        input: Tensor::from_slice(&input).view(shape_i64(idx.len(), &is).as_slice()),
        target: Tensor::from_slice(&target).view(shape_i64(idx.len(), &ts).as_slice()),
        indices: idx.to_vec(),
    })
}

/// Runs `body` on every batch of `order`, assembled ahead on background threads.
pub(crate) fn for_each_batch(
    source: &dyn SampleSource,
    order: &[usize],
    batch_size: usize,
    threads: usize,
    prefetch: usize,
    mut body: impl FnMut(usize, Batch) -> Result<(), TrainError>,
) -> Result<PassStats, TrainError> {
    let start = Instant::now();
    let mut wait = Duration::ZERO;
    let chunks: Vec<&[usize]> = order.chunks(batch_size.max(1)).collect();
    let threads = threads.clamp(1, chunks.len().max(1));
    std::thread::scope(|s| {
        let mut rxs: Vec<Receiver<Result<Batch, TrainError>>> = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = sync_channel(prefetch.max(1));
            rxs.push(rx);
            let chunks = &chunks;
            s.spawn(move || {
                for c in chunks.iter().skip(w).step_by(threads) {
                    let b = build_batch(source, c);
                    let failed = b.is_err();
                    if tx.send(b).is_err() || failed {
                        return;
                    }
                }
            });
        }
        for b in 0..chunks.len() {
            let t0 = Instant::now();
            let got = rxs[b % threads].recv();
            wait += t0.elapsed();
            match got {
                Ok(batch) => body(b, batch?)?,
                // A worker only stops early after sending an error, so this means it panicked.
                Err(_) => return Err(TrainError::LoaderStopped { batch: b }),
            }
        }
        Ok::<(), TrainError>(())
    })?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(PassStats {
        samples: order.len(),
        seconds,
        samples_per_sec: order.len() as f64 / seconds.max(1e-9),
        data_wait_fraction: wait.as_secs_f64() / seconds.max(1e-9),
    })
}
