//! luna-torch: luna's torch layer and the `luna-torch` worker.
//!
//! - [`nn`]: models (the book's LunaModel), augmentation, optimizers, metrics, checkpoints and
//!   the one training loop every model uses, with its reporting (console table, TensorBoard,
//!   `metrics.parquet`, plots).
//! - [`kinds`]: the torch halves of the stage kinds. A torch kind lives in one folder of the
//!   `luna` crate (`stages/<kind>/mod.rs` = parameters and planning, `stages/<kind>/torch.rs` =
//!   the work); this crate compiles the `torch.rs` files, because `luna` must not link libtorch.
//!   Rejected: a `torch` cargo feature on `luna` — one `cargo build` of the workspace unifies
//!   features, so the `luna` binary would link libtorch too.
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
