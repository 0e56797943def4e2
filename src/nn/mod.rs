//! Neural-network layer of luna: the book's LunaModel classifier on tch (libtorch), its
//! augmentation, optimizers with exportable state, metrics, checkpoints, a training loop
//! independent of file formats, and the writers it reports through (TensorBoard, PNG plots).
//!
//! Decisions shared by the sub-modules:
//! - tch 0.24 / libtorch 2.11; weights are safetensors with PyTorch state-dict names so the
//!   book's Python model loads them unchanged (checked by an oracle test).
//! - Everything stochastic is seeded (sampler, augmentation, init via `tch::manual_seed` by the
//!   caller) so a run can be repeated and resumed.
//! - nn performs no file IO except the checkpoint, TensorBoard and plot writers.
//! - The device is always the caller's choice (`tch::Device`); nothing here probes CUDA.
//! - On CUDA, libtorch runs fp32 convolutions through cuDNN with TF32 allowed (its default), so
//!   GPU logits differ from CPU by ~1e-3 relative (measured on an H200: 3.1 on |logits| up to
//!   3299 in eval mode, 4.7e-3 on |logits| ≤ 6 in train mode); CPU matches PyTorch exactly.
pub mod augment;
pub mod bench;
pub mod checkpoint;
pub mod loader;
pub mod luna_model;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod tensorboard;
pub mod train;

pub use augment::{augment_with, AugmentConfig, Augmenter};
pub use checkpoint::{CheckpointMeta, LoadedModel};
pub use luna_model::{BiasInit, LunaModel, LunaModelConfig};
pub use metrics::Metrics;
pub use optim::{Optimizer, OptimizerConfig};
pub use train::{SampleSource, TrainConfig};
