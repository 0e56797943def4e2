//! What the training loop needs of a model: the [`Model`] trait, and [`ModelConfig`], the
//! tagged architecture config every checkpoint sidecar carries.
//!
//! Decisions:
//! - A model is a plain struct built on a `VarStore` path (tch-rs style) whose `forward` returns
//!   the raw output the model's task turns into a loss (a classifier's logits, a segmenter's
//!   probabilities). The trait adds only what generic code needs: its config for the sidecar,
//!   which per-sample input shapes it takes (checked against a data source before any batch
//!   runs: a classifier one fixed crop size, a fully convolutional UNet any size), and its
//!   named parameter blocks in input-to-output order (fine-tuning trains the last `depth` of
//!   them and re-initialises the head).
//! - [`ModelConfig`] is an enum tagged by `architecture`, so a sidecar says which model it holds
//!   and loading the wrong kind of model is a clear error, not a shape mismatch. Rejected: a
//!   `Box<dyn Model>` registry keyed by strings (no compile-time list of architectures).
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Tensor};

use crate::nn::luna_model::{LunaModelConfig, ModelError};

/// The architecture of a saved model, tagged by name (`{"architecture": "LunaModel", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "architecture")]
pub enum ModelConfig {
    /// The book's 3-D nodule classifier.
    LunaModel(LunaModelConfig),
    /// The book's 2-D segmentation UNet.
    UNet(crate::nn::unet::UNetConfig),
}

impl ModelConfig {
    /// The architecture name.
    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::LunaModel(_) => "LunaModel",
            ModelConfig::UNet(_) => "UNet",
        }
    }
}

/// A model the generic training loop can train, checkpoint and fine-tune.
pub trait Model: Send + Sized {
    /// Its architecture config (part of [`ModelConfig`]).
    type Config: Clone + Serialize + DeserializeOwned;
    /// The `architecture` tag.
    const ARCHITECTURE: &'static str;
    /// Named top-level parameter blocks, input to output (fine-tuning trains the last ones).
    const BLOCKS: &'static [&'static str];
    /// The block re-initialised when fine-tuning from another model.
    const HEAD: &'static str;

    /// Builds and initialises the model on `p` (normally `vs.root()`).
    fn build(p: &nn::Path, config: &Self::Config) -> Result<Self, ModelError>;
    /// Its config, tagged.
    fn model_config(&self) -> ModelConfig;
    /// This architecture's config out of a tagged one; an error names both architectures.
    fn config_of(c: &ModelConfig) -> Result<&Self::Config, ModelError>;
    /// Forward pass on a batch; `train` selects train-mode BatchNorm.
    fn forward(&self, xs: &Tensor, train: bool) -> Tensor;
    /// Checks a per-sample input shape (without the batch axis); `Err` describes what the
    /// model takes (e.g. `[1, 32, 48, 48]`, or `[7, H, W] with H, W divisible by 4`).
    fn check_input(&self, shape: &[usize]) -> Result<(), String>;
    /// Device of the weights.
    fn device(&self) -> Device;
    /// Re-initialises [`Model::HEAD`] as a fresh model would be.
    fn reinit_head(&self);
}
