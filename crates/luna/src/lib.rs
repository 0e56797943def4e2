//! luna: declarative, content-cached pipelines for lung-CT deep learning — the domain and the
//! CLI.
//!
//! Layering (DESIGN.md): the generic engine is its own crate, [`luna_engine`] (re-exported as
//! [`engine`]), so "the engine never imports domain code" is checked by the compiler; this
//! crate holds the domain modules ([`ct`], [`tables`], [`store`], [`synth`], [`cluster`],
//! [`annotation_mask`], [`froc`], [`plot`]), the stage kinds
//! ([`stages`], the only place where engine and domain meet) and the [`cli`]. Torch lives in
//! the `luna-torch` crate, which depends on this one: `luna` never links libtorch, and torch
//! kinds hand their work to the `luna-torch` worker process ([`worker`]).
#![warn(missing_docs)]

pub use luna_engine as engine;
pub use luna_engine::text;

pub mod annotation_mask;
pub mod artifacts;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ct;
pub mod curves;
pub mod detect;
pub mod diagnose;
pub mod froc;
pub mod image;
pub mod model;
pub mod plot;
pub mod ptload;
pub mod report;
pub mod serve;
pub mod slurm;
pub mod stages;
pub mod store;
pub mod synth;
pub mod tables;
pub mod worker;
