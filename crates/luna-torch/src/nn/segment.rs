//! The segmentation task for the generic loop (book p2ch13 `SegmentationTrainingApp`):
//! per-sample soft Dice loss plus 8 × the Dice loss over label pixels only (the FN term),
//! pixel TP/FN/FP at `p > 0.5` (the threshold `cluster` applies), the book's metric set
//! (`loss/all`, `percent_all/{tp,fn,fp}` of label pixels, `pr/{precision,recall,f1_score}`),
//! best checkpoint by validation **recall** (the book's score; a model that marks every pixel
//! has recall 1, which an early epoch can be, so `best_by: f1` is offered), `metrics.parquet`
//! (`tables::Table::SegMetrics`) and the `loss.png` / `scores.png` plots.
//!
//! Dice (book `diceLoss`): per sample, dice = (2·Σ p·l + ε) / (Σ p + Σ l + ε) over channel and
//! pixels, ε = 1, loss = 1 − dice; the FN term is `diceLoss(p · l, l)`. The total of a batch is
//! `mean(dice) + 8 · mean(fn)` = the mean of the per-sample `dice + 8 · fn` this task returns.
//! Pass outputs are running sums (no per-pixel storage), so a pass over whole CT slices costs
//! no memory beyond its batches.
//!
//! Images (book `logImages`): after every validation, 6 evenly spaced slices (`k·(n−1)//5`,
//! repeats dropped) of the first `image_series` validation series (book: 12), where n counts
//! the series' stored validation slices — its positive slices (the book spaces them over the
//! whole CT, which the seg_dataset does not hold). Tag `{series}_prediction_{k}`: the centre
//! slice in grey (`hu/2000 + 0.5`) with TP green, FP red, FN red plus half green (orange),
//! the sum halved and clipped to [0, 1], bytes = ⌊255·v⌋ (what `SummaryWriter.add_image`
//! makes of floats); on the first validation also `{series}_label_{k}` (label green). The
//! slices are padded like the validation samples (air, drawn black, at the bottom/right).
use std::path::Path;

use tch::{Kind, Tensor};

use luna::tables::{write_rows, SegMetrics, SegMetricsRow, Table};

use crate::nn::image::RgbImage;
use crate::nn::loader::{SampleSource, SourceError};
use crate::nn::report::{phase_series, plot_epochs, EpochRow};
use crate::nn::task::{ImageSample, Task, TaskImage};
use crate::nn::train::TrainError;

/// Weight of the FN (label-pixels-only) Dice term (book: 8).
pub const FN_WEIGHT: f64 = 8.0;
/// Pixel threshold of the metrics (book: 0.5, strict).
pub const PIXEL_THRESHOLD: f64 = 0.5;

/// Per-sample soft Dice loss `1 − (2Σpl + 1)/(Σp + Σl + 1)` of (N, C, H, W) tensors.
pub fn dice_loss(pred: &Tensor, label: &Tensor) -> Tensor {
    let dims: &[i64] = &[1, 2, 3];
    let inter = (pred * label).sum_dim_intlist(dims, false, Kind::Float);
    let sp = pred.sum_dim_intlist(dims, false, Kind::Float);
    let sl = label.sum_dim_intlist(dims, false, Kind::Float);
    1.0 - (inter * 2.0 + 1.0) / (sp + sl + 1.0)
}

/// Per-sample loss of the book: `dice_loss(p, l) + 8 · dice_loss(p · l, l)`.
pub fn seg_loss(pred: &Tensor, label: &Tensor) -> Tensor {
    dice_loss(pred, label) + dice_loss(&(pred * label), label) * FN_WEIGHT
}

/// Slices drawn per validation series (book: 6).
pub const IMAGE_SLICES: usize = 6;

/// Segmentation of nodule pixels; the best checkpoint by validation recall (the book) or F1.
#[derive(Debug, Clone, Copy, Default)]
pub struct Segmentation {
    /// Choose the best checkpoint by pixel F1 instead of recall.
    pub best_by_f1: bool,
    /// Validation series whose slices are drawn after every validation (book: 12; 0 = none).
    pub image_series: usize,
}

/// The book's overlay value of one channel: halved, clipped to [0, 1], ⌊255·v⌋.
fn overlay_byte(v: f32) -> u8 {
    ((v * 0.5).clamp(0.0, 1.0) * 255.0) as u8
}

/// The grey level of a clipped HU value (book: `hu / 2000 + 0.5`).
fn grey(hu: f32) -> f32 {
    hu / 2000.0 + 0.5
}

/// The book's overlays of one slice (row-major `height × width` clipped HU and 0/1 labels):
/// with `prob`, the prediction overlay (grey CT, TP green, FP red, FN red + half green);
/// without, the label overlay (grey CT, label green).
pub fn overlay(
    hu: &[f32],
    label: &[f32],
    prob: Option<&[f32]>,
    width: usize,
    height: usize,
) -> Result<RgbImage, crate::nn::image::ImageError> {
    let one = |b: bool| if b { 1.0f32 } else { 0.0 };
    let mut px = Vec::with_capacity(hu.len() * 3);
    for (i, (&h, &l)) in hu.iter().zip(label).enumerate() {
        let (g, lab) = (grey(h), l > 0.5);
        let (r, gr) = match prob {
            Some(p) => {
                let pred = p.get(i).is_some_and(|&v| f64::from(v) > PIXEL_THRESHOLD);
                let (tp, fp, fn_) = (pred && lab, pred && !lab, !pred && lab);
                (g + one(fp) + one(fn_), g + one(fn_) * 0.5 + one(tp))
            }
            None => (g, g + one(lab)),
        };
        px.extend([overlay_byte(r), overlay_byte(gr), overlay_byte(g)]);
    }
    RgbImage::new(width, height, px)
}

fn plane(t: &Tensor) -> Result<Vec<f32>, TrainError> {
    Ok(Vec::<f32>::try_from(
        t.to_kind(Kind::Float).contiguous().flatten(0, -1),
    )?)
}

/// Running sums of a pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegOutputs {
    /// Samples.
    pub samples: usize,
    /// Sum of per-sample losses.
    pub loss_sum: f64,
    /// True-positive pixels.
    pub tp: f64,
    /// False-negative pixels.
    pub fn_: f64,
    /// False-positive pixels.
    pub fp: f64,
    /// Non-finite probabilities seen (an error when the pass ends).
    pub non_finite: usize,
    /// Probabilities seen.
    pub pixels: usize,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

impl Task for Segmentation {
    type Metrics = SegMetrics;
    type Outputs = SegOutputs;

    fn loss(&self, pred: &Tensor, label: &Tensor) -> Result<Tensor, TrainError> {
        Ok(seg_loss(pred, &label.to_kind(pred.kind())))
    }

    fn collect(
        &self,
        out: &mut SegOutputs,
        indices: &[usize],
        pred: &Tensor,
        label: &Tensor,
        loss: &Tensor,
    ) -> Result<(), TrainError> {
        let label = label.to_kind(Kind::Float);
        let hit = pred.gt(PIXEL_THRESHOLD).to_kind(Kind::Float);
        let sum = |t: Tensor| t.sum(Kind::Double).double_value(&[]);
        out.samples += indices.len();
        out.loss_sum += sum(loss.shallow_clone());
        out.tp += sum(&hit * &label);
        out.fn_ += sum((1.0 - &hit) * &label);
        out.fp += sum(&hit * (1.0 - &label));
        out.non_finite += pred
            .isfinite()
            .logical_not()
            .sum(Kind::Int64)
            .int64_value(&[]) as usize;
        out.pixels += pred.numel();
        Ok(())
    }

    fn metrics(&self, o: &SegOutputs) -> Result<SegMetrics, TrainError> {
        if o.non_finite > 0 {
            return Err(TrainError::Metrics(
                crate::nn::metrics::MetricsError::NonFinite {
                    count: o.non_finite,
                    total: o.pixels,
                    first: 0,
                },
            ));
        }
        let label = o.tp + o.fn_;
        let precision = ratio(o.tp, o.tp + o.fp);
        let recall = ratio(o.tp, label);
        Ok(SegMetrics {
            loss: ratio(o.loss_sum, o.samples as f64),
            precision,
            recall,
            f1: ratio(2.0 * precision * recall, precision + recall),
            tp_percent: 100.0 * ratio(o.tp, label),
            fn_percent: 100.0 * ratio(o.fn_, label),
            fp_percent: 100.0 * ratio(o.fp, label),
            label_pixels: label as i64,
        })
    }

    fn score(&self, m: &SegMetrics) -> f64 {
        if self.best_by_f1 {
            m.f1
        } else {
            m.recall
        }
    }

    fn score_name(&self) -> &'static str {
        if self.best_by_f1 {
            "F1"
        } else {
            "recall"
        }
    }

    fn scalars(&self, m: &SegMetrics) -> Vec<(&'static str, f64)> {
        vec![
            ("seg_loss/all", m.loss),
            ("seg_percent_all/tp", m.tp_percent),
            ("seg_percent_all/fn", m.fn_percent),
            ("seg_percent_all/fp", m.fp_percent),
            ("seg_pr/precision", m.precision),
            ("seg_pr/recall", m.recall),
            ("seg_pr/f1_score", m.f1),
        ]
    }

    fn image_samples(&self, val: &[&dyn SampleSource]) -> Vec<ImageSample> {
        let mut out = Vec::new();
        for (source, v) in val.iter().enumerate().take(self.image_series) {
            let n = v.len();
            let mut seen = Vec::new();
            for position in 0..IMAGE_SLICES {
                let index = position * n.saturating_sub(1) / (IMAGE_SLICES - 1);
                if n > 0 && !seen.contains(&index) {
                    seen.push(index);
                    out.push(ImageSample {
                        source,
                        index,
                        position,
                    });
                }
            }
        }
        out
    }

    fn draw(
        &self,
        s: &ImageSample,
        input: &Tensor,
        output: &Tensor,
        target: &Tensor,
        first: bool,
    ) -> Result<Vec<TaskImage>, TrainError> {
        let (depth, h, w) = input.size3()?;
        let hu = plane(&input.get(depth / 2))?;
        let label = plane(target)?;
        let (width, height) = (w as usize, h as usize);
        let mut images = vec![TaskImage {
            tag: format!("{}_prediction_{}", s.source, s.position),
            image: overlay(&hu, &label, Some(&plane(output)?), width, height)?,
        }];
        if first {
            images.push(TaskImage {
                tag: format!("{}_label_{}", s.source, s.position),
                image: overlay(&hu, &label, None, width, height)?,
            });
        }
        Ok(images)
    }

    fn table_header(&self) -> String {
        format!(
            "{:>8} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7}",
            "loss", "prec", "recall", "f1", "tp%", "fn%", "fp%"
        )
    }

    fn table_row(&self, m: &SegMetrics) -> String {
        format!(
            "{:>8.4} {:>6.3} {:>6.3} {:>6.3} {:>7.1} {:>7.1} {:>7.1}",
            m.loss, m.precision, m.recall, m.f1, m.tp_percent, m.fn_percent, m.fp_percent
        )
    }

    fn write_summary(
        &self,
        out: &Path,
        history: &[EpochRow<SegMetrics>],
    ) -> Result<(), TrainError> {
        let rows: Vec<SegMetricsRow> = history
            .iter()
            .map(|r| SegMetricsRow {
                epoch: r.epoch as i64,
                total_samples: r.total_samples as i64,
                phase: r.phase.clone(),
                metrics: r.metrics.clone(),
                samples_per_sec: r.stats.samples_per_sec,
                data_wait_fraction: r.stats.data_wait_fraction,
            })
            .collect();
        let report = |e: luna::tables::TableError| TrainError::Report(e.to_string());
        write_rows(&rows, &out.join(Table::SegMetrics.file_name())).map_err(report)?;
        let series = |phase: &str, f: &dyn Fn(&SegMetrics) -> f64| {
            phase_series(history, phase, &|m| Some(f(m)))
        };
        plot_epochs(
            out,
            "loss.png",
            "loss (Dice + 8 x FN Dice)",
            vec![
                ("trn loss".into(), series("trn", &|m| m.loss)),
                ("val loss".into(), series("val", &|m| m.loss)),
            ],
        )?;
        plot_epochs(
            out,
            "scores.png",
            "validation pixel scores",
            vec![
                ("val recall".into(), series("val", &|m| m.recall)),
                ("val precision".into(), series("val", &|m| m.precision)),
                ("trn recall".into(), series("trn", &|m| m.recall)),
            ],
        )
    }
}

/// Training samples of a seg_dataset: every training crop (decoded into memory once), drawn as
/// random `sub`×`sub` sub-crops. Sample index `i` = `crop · n² + dr · n + dc` with `n = crop −
/// sub` possible offsets per axis (book: `randrange(0, 32)`), so an epoch order fixes both the
/// crop and its offsets. Input (2k+1, sub, sub) HU, target (1, sub, sub) mask.
pub struct SegTrainSamples {
    inputs: Vec<i16>,
    labels: Vec<u8>,
    count: usize,
    depth: usize,
    crop: usize,
    sub: usize,
}

impl SegTrainSamples {
    /// Reads every training sample of `stores`.
    pub fn load(
        stores: &[luna::store::seg_store::SegStore],
        sub: usize,
    ) -> Result<SegTrainSamples, luna::store::StoreError> {
        let (mut inputs, mut labels, mut count) = (Vec::new(), Vec::new(), 0);
        let (mut depth, mut crop) = (0, 0);
        for s in stores {
            let [d, c, _] = s.train_input_shape();
            (depth, crop) = (d, c);
            let (mut inp, mut lab) = (vec![0i16; d * c * c], vec![0u8; c * c]);
            for row in 0..s.train_len() {
                s.read_train(row, &mut inp, &mut lab)?;
                inputs.extend_from_slice(&inp);
                labels.extend_from_slice(&lab);
                count += 1;
            }
        }
        Ok(SegTrainSamples {
            inputs,
            labels,
            count,
            depth,
            crop,
            sub,
        })
    }

    /// Offsets per axis.
    pub fn offsets(&self) -> usize {
        (self.crop - self.sub).max(1)
    }

    /// Number of distinct crops.
    pub fn crops(&self) -> usize {
        self.count
    }
}

impl SampleSource for SegTrainSamples {
    fn len(&self) -> usize {
        self.count * self.offsets() * self.offsets()
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![self.depth, self.sub, self.sub]
    }
    fn target_shape(&self) -> Vec<usize> {
        vec![1, self.sub, self.sub]
    }
    fn read(&self, i: usize, input: &mut [f32], target: &mut [f32]) -> Result<(), SourceError> {
        let n = self.offsets();
        let (k, off) = (i / (n * n), i % (n * n));
        let (dr, dc) = (off / n, off % n);
        let (c, s) = (self.crop, self.sub);
        let base = k * self.depth * c * c;
        for d in 0..self.depth {
            for r in 0..s {
                let src = base + d * c * c + (r + dr) * c + dc;
                let dst = (d * s + r) * s;
                for (o, &v) in input[dst..dst + s]
                    .iter_mut()
                    .zip(&self.inputs[src..src + s])
                {
                    *o = f32::from(v);
                }
            }
        }
        for r in 0..s {
            let src = k * c * c + (r + dr) * c + dc;
            for (o, &v) in target[r * s..(r + 1) * s]
                .iter_mut()
                .zip(&self.labels[src..src + s])
            {
                *o = f32::from(v);
            }
        }
        Ok(())
    }
}

/// Validation samples of one series: its full context slices, padded at the bottom and right
/// to a multiple of 4 with −1000 HU (label 0) for the UNet's two poolings.
pub struct SegValSamples<'a> {
    store: &'a luna::store::seg_store::SegStore,
    depth: usize,
    rows: usize,
    cols: usize,
    pad_rows: usize,
    pad_cols: usize,
}

impl<'a> SegValSamples<'a> {
    /// The validation slices of `store`.
    pub fn new(store: &'a luna::store::seg_store::SegStore) -> SegValSamples<'a> {
        let [d, r, c] = store.val_input_shape();
        SegValSamples {
            store,
            depth: d,
            rows: r,
            cols: c,
            pad_rows: r.div_ceil(4) * 4,
            pad_cols: c.div_ceil(4) * 4,
        }
    }
}

impl SampleSource for SegValSamples<'_> {
    fn len(&self) -> usize {
        self.store.val_len()
    }
    fn input_shape(&self) -> Vec<usize> {
        vec![self.depth, self.pad_rows, self.pad_cols]
    }
    fn target_shape(&self) -> Vec<usize> {
        vec![1, self.pad_rows, self.pad_cols]
    }
    fn read(&self, i: usize, input: &mut [f32], target: &mut [f32]) -> Result<(), SourceError> {
        let (r, c, pr, pc) = (self.rows, self.cols, self.pad_rows, self.pad_cols);
        let mut inp = vec![0i16; self.depth * r * c];
        let mut lab = vec![0u8; r * c];
        self.store.read_val(i, &mut inp, &mut lab)?;
        input.fill(-1000.0);
        target.fill(0.0);
        for d in 0..self.depth {
            for row in 0..r {
                let src = (d * r + row) * c;
                let dst = (d * pr + row) * pc;
                for (o, &v) in input[dst..dst + c].iter_mut().zip(&inp[src..src + c]) {
                    *o = f32::from(v);
                }
            }
        }
        for row in 0..r {
            for (o, &v) in target[row * pc..row * pc + c]
                .iter_mut()
                .zip(&lab[row * c..(row + 1) * c])
            {
                *o = f32::from(v);
            }
        }
        Ok(())
    }
}

/// The book's training order of an epoch: the crops reshuffled per epoch and drawn
/// round-robin (`pos_list[ndx % len]`), each draw with random sub-crop offsets.
pub fn seg_train_order(
    samples: &SegTrainSamples,
    epoch_samples: usize,
    seed: u64,
    epoch: usize,
) -> Result<Vec<usize>, TrainError> {
    use rand::seq::SliceRandom;
    use rand::Rng;
    let n = samples.crops();
    if n == 0 {
        return Err(TrainError::Setup(
            "the seg_dataset has no training samples (no annotated nodules in the training series); hint: check the split and the annotations".into(),
        ));
    }
    let mut rng = crate::nn::loader::epoch_rng(seed, epoch);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    let o = samples.offsets();
    Ok((0..epoch_samples)
        .map(|k| {
            let (dr, dc) = (rng.random_range(0..o), rng.random_range(0..o));
            perm[k % n] * o * o + dr * o + dc
        })
        .collect())
}
