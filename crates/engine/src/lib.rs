//! The generic pipeline engine: specs, the DAG, content-addressed caching and execution.
//! It knows nothing of CTs or torch: stage kinds are plugged in through [`registry::Registry`].
//! It is its own crate (`luna-engine`) so the compiler enforces that: nothing here can name a
//! domain module.

pub mod cache;
pub mod context;
pub mod dag;
pub mod error;
pub mod events;
pub mod executor;
pub mod fingerprint;
pub mod keying;
pub mod kind;
pub mod plan;
pub mod reason;
pub mod registry;
pub mod remote;
pub mod runs;
pub mod span;
pub mod spec;
pub mod spec_error;
pub mod statcache;
pub mod suggest;
pub mod text;
