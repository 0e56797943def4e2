//! `luna serve`: a pipeline's trained models as an HTTP service (the book's chapter 15,
//! without Python), with dynamic request batching.
//!
//! ```text
//!  clients ──HTTP/1.1──▶ http.rs (hyper on tokio: routes, limits, request ids, metrics)
//!                          │ classify: parse.rs → Batcher::submit (bounded, 503 when full)
//!                          ▼
//!                        batcher.rs: max_batch crops or max_wait, whichever first
//!                          │ wire.rs frames over the worker's stdin/stdout
//!                          ▼
//!                        `luna-torch infer` (LunaModel ×2, the pipeline's cached weights)
//!                        detect: the upload (a `.mhd`, or a DICOM series as a zip or `.dcm`
//!                          parts: dicom_upload.rs) staged in a folder, `luna detect`'s own code
//!                          path in-process, one at a time per device (a semaphore)
//! ```
//!
//! - The `luna` binary does not link libtorch, so the forward passes run in one long-lived
//!   worker process per device; it only runs batches, so a crash of it loses only the batch
//!   it held (503, the worker is restarted, the server stays up).
//! - `/v1/detect` reuses `luna detect`'s entry point, so its answer is `luna detect --json`'s
//!   by construction (the engine runs the pipeline's detection chain on the staged CT; the
//!   models' stages are cache hits).
//! - Nothing outside, no one in: a bearer token (`auth.rs`; required to serve a non-loopback
//!   address), a budget of body bytes in flight and body deadlines (`limits.rs`), upload
//!   folders removed after the answer, bounded run records and a disk floor (`scratch.rs`),
//!   escaped log lines and no server paths in answers (`sanitize.rs`).
//! - The models are found by the pipeline's detection chain (`crate::detect::find_chain`) and
//!   must be trained (`luna run` first); `/v1/models` lists their cache keys, kinds and params.
//!
//! Rejected: the server inside `luna-torch` (every `luna` command would then pay for libtorch,
//! or the CLI would be split in two binaries); one worker process per request (0.2 s of
//! libtorch start-up plus model loading per request, and no batching).

pub mod auth;
pub mod batcher;
pub mod dicom_upload;
pub mod http;
pub mod lanes;
pub mod limits;
pub mod metrics;
pub mod parse;
pub mod pyliteral;
pub mod sanitize;
pub mod scratch;
pub mod wire;
