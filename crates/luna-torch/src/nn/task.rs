//! What the training loop needs of a task: how a batch's output becomes a per-sample loss, what
//! a pass keeps for its metrics, how metrics are scored, shown and written.
//!
//! The loop (`nn::train`) owns everything that is the same for every model — batches, the
//! optimizer step, validation cadence, checkpoints, resume, best-by-score, history,
//! TensorBoard and the console table frame; a [`Task`] supplies the parts that differ between
//! classification and segmentation. `nn::classify` is the classifier's task.
//!
//! Images: a task may name validation samples ([`Task::image_samples`]) that the loop runs
//! through the model after every validation pass and hands back to [`Task::draw`] with their
//! input, output and target; the loop logs what it draws (TensorBoard, PNG files) and knows
//! nothing of what the pictures show. Rejected: drawing inside [`Task::collect`] (it never
//! sees the input, and every validation sample would pay for a choice of a few).
use std::fmt::Debug;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::Tensor;

use crate::nn::image::RgbImage;
use crate::nn::loader::SampleSource;
use crate::nn::report::EpochRow;
use crate::nn::train::TrainError;

/// A validation sample a task draws after every validation pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSample {
    /// Which validation source (position among the loop's non-empty sources).
    pub source: usize,
    /// Sample index in that source.
    pub index: usize,
    /// Position of this sample among the drawn samples of its source (stable across epochs).
    pub position: usize,
}

/// One image a task drew, with its tag (the loop prefixes the phase: `val/<tag>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskImage {
    /// TensorBoard tag without the phase (also the PNG file stem).
    pub tag: String,
    /// The picture.
    pub image: RgbImage,
}

/// A learning task: loss, per-pass outputs, metrics and their reports.
pub trait Task: Sync {
    /// One pass's metrics (kept in the history, so serde).
    type Metrics: Clone + Debug + Serialize + DeserializeOwned + Send;
    /// What a pass accumulates for its metrics (on the CPU).
    type Outputs: Default + Send;

    /// Per-sample loss `(N,)` of a batch's model output against its targets.
    fn loss(&self, output: &Tensor, target: &Tensor) -> Result<Tensor, TrainError>;
    /// Keeps what the metrics need of one batch (`output`, `target`, `loss` are detached).
    fn collect(
        &self,
        outputs: &mut Self::Outputs,
        indices: &[usize],
        output: &Tensor,
        target: &Tensor,
        loss: &Tensor,
    ) -> Result<(), TrainError>;
    /// The metrics of a whole pass.
    fn metrics(&self, outputs: &Self::Outputs) -> Result<Self::Metrics, TrainError>;
    /// The validation score the best checkpoint is chosen by (higher is better).
    fn score(&self, m: &Self::Metrics) -> f64;
    /// The score's name in logs (`F1`, `AUC`, `recall`).
    fn score_name(&self) -> &'static str;
    /// TensorBoard scalars of a pass (the book's tags).
    fn scalars(&self, m: &Self::Metrics) -> Vec<(&'static str, f64)>;
    /// Column headers of the task's part of the console table.
    fn table_header(&self) -> String;
    /// The task's part of one console table row.
    fn table_row(&self, m: &Self::Metrics) -> String;
    /// Validation samples to draw after every validation pass (default: none).
    fn image_samples(&self, _val: &[&dyn SampleSource]) -> Vec<ImageSample> {
        Vec::new()
    }
    /// The images of one drawn sample from its `input`, the model's `output` (eval mode) and
    /// its `target`, each without the batch axis, on the CPU; `first` = the run's first
    /// validation (epoch 1).
    fn draw(
        &self,
        _sample: &ImageSample,
        _input: &Tensor,
        _output: &Tensor,
        _target: &Tensor,
        _first: bool,
    ) -> Result<Vec<TaskImage>, TrainError> {
        Ok(Vec::new())
    }
    /// Writes the history's tables and plots into `out` (rewritten every epoch).
    fn write_summary(
        &self,
        out: &Path,
        history: &[EpochRow<Self::Metrics>],
    ) -> Result<(), TrainError>;
}
