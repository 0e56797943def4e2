//! luna-torch: luna's torch layer and the `luna-torch` worker.
//!
//! - [`nn`]: models (the book's LunaModel), augmentation, optimizers, metrics, checkpoints and
//!   the one training loop every model uses, with its reporting (console table, TensorBoard,
//!   `metrics.parquet`, plots).
//! - [`kinds`]: the torch halves of the stage kinds, one file each (`kinds/<kind>.rs`). A torch
//!   kind's other half — its `KIND` name, parameters and validation, outputs and inputs — is
//!   `luna::stages::<kind>` (`crates/luna/src/stages/<kind>.rs`); the work lives here because
//!   `luna` must not link libtorch. Rejected: a `torch` cargo feature on `luna` — one `cargo
//!   build` of the workspace unifies features, so the `luna` binary would link libtorch too;
//!   and compiling files of the `luna` crate's folders here with a `path` attribute (the old layout:
//!   `crate::` meant another crate and tools lost the trail).
//! - [`infer`]: the long-lived model worker of `luna serve` (`luna-torch infer`).
//! - [`serve`]: the worker's side of the protocol in `luna::worker`; [`runtime`]: loading the
//!   CUDA backend before any tch call; [`device`]: the `device` hint → a tch device.
#![warn(missing_docs)]

pub use luna::engine;

pub mod device;
pub mod infer;
pub mod kinds;
pub mod nn;
pub mod runtime;
pub mod serve;
