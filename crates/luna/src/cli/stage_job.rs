//! `luna __stage REQUEST [--shards N]` (hidden): the work of one stage inside a Slurm job,
//! submitted by `luna run --executor slurm` (see [`crate::slurm`]). Not for people.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `luna __stage`.
#[derive(Debug, Args)]
pub struct StageJobArgs {
    /// The stage request the driver wrote (runs/<id>/logs/<stage>.slurm/request.json).
    request: PathBuf,
    /// Run as task $SLURM_ARRAY_TASK_ID of N shards of a partitioned stage.
    #[arg(long, value_name = "N")]
    shards: Option<u32>,
}

/// Runs the command; returns the exit code.
pub fn cmd(a: StageJobArgs) -> i32 {
    crate::slurm::serve_job(&a.request, a.shards)
}
