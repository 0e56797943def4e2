//! The `[executor]` table of `luna.toml`: how `luna run` executes stages.
//!
//! ```toml
//! [executor]
//! kind = "slurm"            # default of `luna run --executor` (default "local")
//!
//! [executor.slurm]
//! partition = "cpu"         # sbatch --partition (default: the cluster's default partition)
//! gpu_partition = "gpu"     # partition of jobs that ask for a GPU (default: `partition`)
//! account = "lung-lab"      # sbatch --account
//! sbatch_args = ["--qos=normal"]   # passed to every sbatch as written
//! gpus = true               # the cluster has GPUs: torch stages with device cuda/auto ask --gres=gpu:1
//! array_tasks = 8           # tasks of a partitioned stage's job array (default 4)
//! retries = 1               # resubmissions of a job the scheduler killed (default 1)
//! poll_ms = 500             # how often the driver asks squeue (default 500)
//! ```
//!
//! None of it enters a cache key. Rejected: a free-form `sbatch` template (a stage's hidden
//! command line and output files are luna's business; the user's part is the options above).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Executor defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    /// The executor `luna run` uses when `--executor` is not given.
    #[serde(default)]
    pub kind: ExecutorKind,
    /// Settings of the Slurm executor.
    #[serde(default)]
    pub slurm: SlurmConfig,
}

/// Which executor runs stages' work.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// In the `luna run` process (and its `luna-torch` workers).
    #[default]
    Local,
    /// As Slurm jobs over the shared cache (`sbatch`).
    Slurm,
}

/// The `[executor.slurm]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    /// `sbatch --partition` of every job (default: the cluster's default partition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// The partition of jobs that ask for GPUs (default: `partition`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_partition: Option<String>,
    /// `sbatch --account`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Extra `sbatch` options, passed as written.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
    /// The cluster has GPUs: torch stages whose `device` is `cuda` or `auto` ask for one
    /// (`--gres=gpu:1`, or `resources.gpus`).
    #[serde(default)]
    pub gpus: bool,
    /// Tasks of a partitioned stage's job array.
    #[serde(default = "default_array_tasks")]
    pub array_tasks: u32,
    /// Resubmissions of a job the scheduler killed (time limit, node failure, `scancel`).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Milliseconds between two `squeue` polls.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_array_tasks() -> u32 {
    4
}
fn default_retries() -> u32 {
    1
}
fn default_poll_ms() -> u64 {
    500
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            gpu_partition: None,
            account: None,
            sbatch_args: Vec::new(),
            gpus: false,
            array_tasks: default_array_tasks(),
            retries: default_retries(),
            poll_ms: default_poll_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_table_defaults_and_values() {
        let f = std::path::Path::new("luna.toml");
        let c = crate::config::Config::parse(
            "[executor]\nkind = \"slurm\"\n[executor.slurm]\npartition = \"cpu\"\nretries = 3\n",
            f,
        )
        .ok()
        .map(|c| c.executor);
        let c = c.unwrap_or_default();
        assert_eq!(c.kind, ExecutorKind::Slurm);
        assert_eq!(c.slurm.partition.as_deref(), Some("cpu"));
        assert_eq!(
            (c.slurm.retries, c.slurm.array_tasks, c.slurm.poll_ms),
            (3, 4, 500)
        );
        let e = crate::config::Config::parse("[executor.slurm]\npartiton = \"x\"\n", f)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("luna.toml:2:1: unknown field `partiton`"),
            "{e}"
        );
    }
}
