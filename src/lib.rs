//! luna: declarative, content-cached pipelines for lung-CT deep learning.
//!
//! The crate is layered (see DESIGN.md): [`engine`] is generic (specs, DAG, cache, executor)
//! and never imports domain code; [`stages`] are the only place where engine and domain meet;
//! [`cli`] parses arguments and renders results.
#![warn(missing_docs)]

pub mod cli;
pub mod ct;
pub mod engine;
#[cfg(feature = "torch")]
pub mod nn;
#[cfg(feature = "torch")]
pub mod runtime;
pub mod stages;
pub mod store;
pub mod synth;
pub mod tables;
pub mod worker;
#[cfg(feature = "torch")]
pub mod worker_serve;
