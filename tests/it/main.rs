//! luna integration tests: one binary, one module per area. It lives in its own package
//! (`tests/`, `luna-tests`) because it uses all three crates; the binaries it runs (`luna`,
//! `luna-torch`) are the workspace's, found next to the test binary's `deps/` folder.

/// The repository root (schemas/, pipelines/, tests/oracle/).
pub const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A workspace binary of this build (`target/<profile>/<name>`), or of `$LUNA_BIN_DIR` when
/// set (a copy made right after `cargo build --workspace`, for when several checkouts share
/// one target directory and another's build may replace `target/<profile>/luna` meanwhile);
/// panics with what to do when it was not built.
pub fn bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = match std::env::var_os("LUNA_BIN_DIR") {
        Some(d) => std::path::PathBuf::from(d),
        None => exe
            .parent()
            .and_then(|deps| deps.parent())
            .expect("the test binary lives in target/<profile>/deps")
            .to_path_buf(),
    };
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} does not exist: build the workspace first (`cargo build --workspace`, as scripts/test.sh does)",
        p.display()
    );
    p
}

mod book_chain;
mod classify_inputs;
mod cluster_oracle;
mod ct_crop_oracle;
mod ct_dicom;
mod ct_dicom_bench;
mod ct_dicom_errors;
mod ct_dicom_support;
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
mod detect_classify;
mod diagnose_inputs;
mod dicom_equiv;
mod dicom_phi;
mod dicom_use;
mod engine_cache;
mod engine_cli;
mod engine_crash;
mod engine_errors;
mod engine_exec;
mod engine_support;
mod eval_classifier;
mod eval_pooled;
mod export_model;
mod fold_luna16;
mod froc_cli;
mod froc_detections;
mod froc_oracle;
mod froc_stage;
mod froc_support;
mod harden_cache;
mod harden_command;
mod harden_disk;
mod harden_fuzz;
mod harden_inputs;
mod harden_readonly;
mod harden_remote;
mod harden_remote_fuzz;
mod harden_remote_s3;
mod harden_shared;
mod harden_spec;
mod harness;
mod import_model;
mod keys_reads;
mod keys_stable;
mod nn_augment;
mod nn_gpu;
mod nn_metrics;
mod nn_model;
mod nn_optim;
mod nn_plot;
mod nn_support;
mod nn_tensorboard;
mod nn_train;
mod nn_unet;
mod py;
mod quality;
mod seg_dataset;
mod seg_train;
mod serve;
mod serve_harden;
mod slurm;
mod spec_families;
mod store_bench;
mod store_oracle;
mod store_roundtrip;
mod store_support;
mod synth_gen;
mod synth_oracle;
mod synth_support;
mod system;
mod tables_csv;
mod tables_merge;
mod tables_oracle;
mod tables_support;
mod team_remote;
mod team_shared;
mod torch_layer;
mod train_bench;
mod train_guards;
mod train_stage;
mod train_support;
