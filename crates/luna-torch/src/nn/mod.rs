//! Neural-network layer of luna: models on tch (libtorch), the one training loop every model
//! uses, and what it reports through (TensorBoard, PNG plots, metric tables).
//!
//! Map: [`model`] (what a model is) ← [`luna_model`] (the book's classifier), [`unet`] (the
//! book's segmenter); [`loader`]
//! (samples, epoch orders, background batches) → [`train`] (the loop: steps, validation,
//! checkpoints, resume, best-by-score) ← [`task`] (loss and metrics of a task) ←
//! [`classify`] (the classifier's task), [`segment`] (the segmenter's); [`checkpoint`], [`export`] (TorchScript and `state_dict` files for PyTorch, through
//! [`state_dict`]), [`optim`], [`augment`], [`metrics`],
//! [`report`], [`tensorboard`] and [`image`] (PNG images a task draws), [`plot`], [`bench`].
//!
//! Decisions shared by the sub-modules:
//! - tch 0.24 / libtorch 2.11; weights are safetensors with PyTorch state-dict names so the
//!   book's Python model loads them unchanged (checked by an oracle test).
//! - Everything stochastic is seeded (sampler, augmentation, init via `tch::manual_seed` by the
//!   caller) so a run can be repeated and resumed.
//! - nn writes files only through the checkpoint, TensorBoard and plot writers and `tables`.
//! - The device is always the caller's choice (`tch::Device`); nothing here probes CUDA.
//! - On CUDA, libtorch runs fp32 convolutions through cuDNN with TF32 allowed (its default), so
//!   GPU logits differ from CPU by ~1e-3 relative (measured on an H200: 3.1 on |logits| up to
//!   3299 in eval mode, 4.7e-3 on |logits| ≤ 6 in train mode); CPU matches PyTorch exactly.
pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod classify;
pub mod export;
/// RGB images and their PNG encoding (shared with the `luna` report).
pub use luna::image;
pub mod import;
pub mod loader;
pub mod luna_model;
pub mod metrics;
pub mod model;
pub mod optim;
pub mod plot;
pub mod report;
pub mod segment;
pub mod state_dict;
pub mod task;
pub mod tensorboard;
pub mod train;
pub mod unet;

pub use augment::{augment_with, AugmentConfig, Augmenter};
pub use checkpoint::{CheckpointMeta, LoadedModel};
pub use luna_model::{BiasInit, LunaModel, LunaModelConfig};
pub use metrics::Metrics;
pub use model::{Model, ModelConfig};
pub use optim::{Optimizer, OptimizerConfig};
pub use train::{SampleSource, TrainConfig};
pub use unet::{UNet, UNetConfig};
