//! Sample sources, balanced epoch order and background batch assembly for the training loop.
//!
//! - Data comes from a [`SampleSource`] (crop reader + cheap label lookup); nn knows no files.
//! - Balanced sampling (book §3.3): positive and negative index lists are reshuffled each epoch
//!   with a seeded RNG and sample `k` of an epoch is `pos[k/(r+1) % P]` when `k % (r+1) == 0`,
//!   else `neg[(k − 1 − k/(r+1)) % N]`; `ratio = 0` is an unbalanced shuffled pass (wrapping).
//!   Epoch `e` derives its RNG from `seed` and `e`, so a resumed run continues identically
//!   without storing RNG state.
//! - Batches are assembled on `loader_threads` background threads (worker `w` builds batches
//!   `w, w+T, …`, each into its own bounded channel of depth `prefetch`), converted to f32
//!   `(N,1,D,H,W)` CPU tensors there, and moved to the device by the training thread. Reading the
//!   workers round-robin keeps the batch order deterministic (rejected: one shared queue, which
//!   reorders batches between runs). Time blocked on the channel is the "data wait".
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

/// Random-access crops with labels; implemented by the data layer.
pub trait SampleSource: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// True when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Label of sample `i` (true = positive); must be cheap (no crop IO).
    fn label(&self, i: usize) -> bool;
    /// Crop size (index, row, col); every sample has this size.
    fn crop_shape(&self) -> [usize; 3];
    /// Writes sample `i`'s HU values (C-order, `crop_shape` product long) into `out`.
    fn read(&self, i: usize, out: &mut [i16]) -> Result<(), SourceError>;
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

/// Sample order for epoch `epoch` (book §3.3 formula, reshuffled per epoch).
pub fn epoch_order(
    labels: &[bool],
    ratio: usize,
    epoch_samples: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, TrainError> {
    let mut rng = Pcg64::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
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

/// One assembled batch (CPU tensor).
pub(crate) struct Batch {
    pub(crate) input: Tensor,
    pub(crate) indices: Vec<usize>,
    pub(crate) labels: Vec<bool>,
}

pub(crate) fn build_batch(source: &dyn SampleSource, idx: &[usize]) -> Result<Batch, TrainError> {
    let [d, h, w] = source.crop_shape();
    let vox = d * h * w;
    let mut hu = vec![0i16; vox];
    let mut data = vec![0f32; vox * idx.len()];
    let mut labels = Vec::with_capacity(idx.len());
    for (k, &i) in idx.iter().enumerate() {
        source
            .read(i, &mut hu)
            .map_err(|source| TrainError::Source { index: i, source })?;
        for (o, &v) in data[k * vox..(k + 1) * vox].iter_mut().zip(&hu) {
            *o = f32::from(v);
        }
        labels.push(source.label(i));
    }
    let input = Tensor::from_slice(&data).view([idx.len() as i64, 1, d as i64, h as i64, w as i64]);
    Ok(Batch {
        input,
        indices: idx.to_vec(),
        labels,
    })
}

/// Runs `body` on every batch of `order`, assembled ahead on background threads.
pub(crate) fn for_each_batch(
    source: &dyn SampleSource,
    order: &[usize],
    batch_size: usize,
    threads: usize,
    prefetch: usize,
    mut body: impl FnMut(Batch) -> Result<(), TrainError>,
) -> Result<PassStats, TrainError> {
    let start = Instant::now();
    let mut wait = Duration::ZERO;
    let chunks: Vec<&[usize]> = order.chunks(batch_size).collect();
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
                Ok(batch) => body(batch?)?,
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
