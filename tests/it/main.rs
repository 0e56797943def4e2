//! luna integration tests: one binary, one module per area.

mod ct_crop_oracle;
mod ct_errors;
mod ct_geometry;
mod ct_header;
mod ct_oracle;
mod ct_support;
mod data_errors;
mod data_incremental;
mod data_merge;
mod data_oracle;
mod data_support;
mod engine_cache;
mod engine_cli;
mod engine_crash;
mod engine_errors;
mod engine_exec;
mod engine_support;
#[cfg(feature = "torch")]
mod nn_augment;
#[cfg(feature = "torch")]
mod nn_gpu;
#[cfg(feature = "torch")]
mod nn_model;
#[cfg(feature = "torch")]
mod nn_optim;
#[cfg(feature = "torch")]
mod nn_plot;
#[cfg(feature = "torch")]
mod nn_support;
#[cfg(feature = "torch")]
mod nn_tensorboard;
#[cfg(feature = "torch")]
mod nn_train;
mod store_bench;
mod store_oracle;
mod store_roundtrip;
mod store_support;
mod synth_gen;
mod synth_oracle;
mod synth_support;
mod tables_csv;
mod tables_merge;
mod tables_oracle;
mod tables_support;
#[cfg(feature = "torch")]
mod train_bench;
#[cfg(feature = "torch")]
mod train_stage;
mod train_support;
