//! What the training loop needs of a task: how a batch's output becomes a per-sample loss, what
//! a pass keeps for its metrics, how metrics are scored, shown and written.
//!
//! The loop (`nn::train`) owns everything that is the same for every model — batches, the
//! optimizer step, validation cadence, checkpoints, resume, best-by-score, history,
//! TensorBoard and the console table frame; a [`Task`] supplies the parts that differ between
//! classification and segmentation. `nn::classify` is the classifier's task.
use std::fmt::Debug;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tch::Tensor;

use crate::nn::report::EpochRow;
use crate::nn::train::TrainError;

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
    /// Writes the history's tables and plots into `out` (rewritten every epoch).
    fn write_summary(
        &self,
        out: &Path,
        history: &[EpochRow<Self::Metrics>],
    ) -> Result<(), TrainError>;
}
