//! `luna export PIPELINE STAGE --torchscript FILE --state-dict FILE`: a trained (or imported)
//! model leaves luna for PyTorch users, as the book's chapter 15 exports its models.
//!
//! The stage must provide a `classifier` or `segmenter` artifact and be up to date (the same
//! check as `luna path`); the files are written by the `luna-torch` worker
//! (`luna_torch::nn::export`, which says what the TorchScript module returns), because the
//! `luna` binary never links libtorch. Rejected: an export stage kind (the files are for
//! people outside luna, not artifacts other stages read, and their paths are the user's).

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;

use super::path::current_artifact;
use super::workspace::open;
use super::{CliError, Globals, PipelineArgs};
use crate::model::{CLASSIFIER, SEGMENTER};

/// Arguments of `luna export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    p: PipelineArgs,
    /// The stage whose model to export (a `classifier` or `segmenter`: train_classifier,
    /// train_segmentation, import_model).
    stage: String,
    /// Write a TorchScript module (`torch.jit.load`) to FILE.
    #[arg(long, value_name = "FILE")]
    torchscript: Option<PathBuf>,
    /// Write a PyTorch state_dict (`torch.load` + `load_state_dict`) to FILE.
    #[arg(long, value_name = "FILE")]
    state_dict: Option<PathBuf>,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: ExportArgs) -> Result<i32, CliError> {
    if a.torchscript.is_none() && a.state_dict.is_none() {
        return Err(CliError::usage(
            "nothing to export",
            Some("give --torchscript FILE and/or --state-dict FILE".into()),
        ));
    }
    for f in [&a.torchscript, &a.state_dict].into_iter().flatten() {
        check_target(f)?;
    }
    let o = open(g, &a.p)?;
    let dir = current_artifact(&o, &a.stage)?;
    if let Some(i) = o.pipeline.stage_index(&a.stage) {
        let s = &o.pipeline.stages[i];
        let outputs = &s.params.outputs;
        if !outputs.iter().any(|t| t == CLASSIFIER || t == SEGMENTER) {
            return Err(CliError::usage(
                format!(
                    "stage `{}` ({}) provides {}, not a model",
                    a.stage,
                    s.kind.name(),
                    outputs.join(", ")
                ),
                Some("name a stage that provides a classifier or a segmenter (train_classifier, train_segmentation, import_model)".into()),
            ));
        }
    }
    let bin =
        crate::worker::worker_binary().map_err(|e| CliError::usage(e.to_string(), e.hint()))?;
    let mut cmd = Command::new(&bin);
    cmd.arg("export").arg(&dir);
    if let Some(f) = &a.torchscript {
        cmd.arg("--torchscript").arg(f);
    }
    if let Some(f) = &a.state_dict {
        cmd.arg("--state-dict").arg(f);
    }
    let out = cmd
        .output()
        .map_err(|e| CliError::failed(format!("{}: {e}", bin.display()), None))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(CliError::failed(
            format!(
                "exporting stage `{}` failed: {}",
                a.stage,
                err.trim().trim_start_matches("error: ")
            ),
            None,
        ));
    }
    for (what, f) in [
        ("TorchScript", &a.torchscript),
        ("state_dict", &a.state_dict),
    ] {
        if let Some(f) = f {
            println!("{what}: {}", f.display());
        }
    }
    Ok(0)
}

/// A target file's folder must exist (a usage error naming it otherwise).
fn check_target(f: &Path) -> Result<(), CliError> {
    let parent = match f.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if parent.is_dir() {
        Ok(())
    } else {
        Err(CliError::usage(
            format!(
                "{}: the folder {} does not exist",
                f.display(),
                parent.display()
            ),
            Some("create it first, or write the file elsewhere".into()),
        ))
    }
}
