//! The command line: argument parsing (clap), one file per command, and the one place where
//! errors are rendered and exit codes chosen.
//!
//! Exit codes: 0 success; 1 a stage failed (or `status --quiet` found stale stages, or a
//! check failed); 2 usage, spec or setup error.

mod cache;
mod console;
mod dag;
mod detect;
mod doctor;
mod error;
mod export;
mod fingerprint;
mod froc;
mod path;
mod remote;
mod report;
mod run;
mod runs;
mod schema;
mod serve;
mod stage_job;
mod stages;
mod status;
mod synth;
mod workspace;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use error::CliError;

/// luna: declarative, content-cached pipelines for lung-CT deep learning.
#[derive(Debug, Parser)]
#[command(name = "luna", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Cache directory (a shared team cache works); default: <workspace>/cache.
    #[arg(long, global = true, env = "LUNA_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Re-hash every external input instead of trusting the stat cache.
    #[arg(long, global = true)]
    no_stat_cache: bool,
    /// Show stage log lines and reasons while running.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a pipeline (only stages whose inputs changed).
    Run(run::RunArgs),
    /// Show which stages are up to date and why the others would run.
    Status(status::StatusArgs),
    /// Print the stage graph (text, dot or mermaid).
    Dag(dag::DagArgs),
    /// List stage kinds, or show one kind's parameters.
    Stages(stages::StagesArgs),
    /// Print the directory of a stage's current cached artifact.
    Path(path::PathArgs),
    /// Export a stage's model for PyTorch: TorchScript and/or state_dict.
    Export(export::ExportArgs),
    /// List run records, or show one.
    Runs(runs::RunsArgs),
    /// Inspect, verify and garbage-collect the cache.
    #[command(subcommand)]
    Cache(cache::CacheCmd),
    /// Add, list and remove cache remotes (luna.toml).
    #[command(subcommand)]
    Remote(remote::RemoteCmd),
    /// Print versions of torch, HDF5 and CUDA availability.
    Doctor,
    /// Print the JSON schema of pipeline files.
    Schema(schema::SchemaArgs),
    /// Fingerprint files or directories as luna does (blake3 by content).
    Fingerprint(fingerprint::FingerprintArgs),
    /// Write the synthetic LUNA16-format dataset to a directory.
    Synth(synth::SynthArgs),
    /// Score a LUNA16 submission (FROC, CPM, bootstrap CI) by the official rules.
    Froc(froc::FrocArgs),
    /// Write the HTML report of a run (default: the latest) to runs/<id>/report.html.
    Report(report::ReportArgs),
    /// Find nodules in CTs with a pipeline's trained models and diagnose each patient.
    Detect(detect::DetectArgs),
    /// (internal) Run one stage's work inside a Slurm job.
    #[command(name = "__stage", hide = true)]
    StageJob(stage_job::StageJobArgs),
    /// Serve a pipeline's trained models over HTTP, batching concurrent requests.
    Serve(serve::ServeArgs),
}

/// Options shared by commands that load a pipeline.
#[derive(Debug, Args, Clone)]
pub struct PipelineArgs {
    /// Pipeline name (pipelines/NAME.yaml in the workspace) or a path to a .yaml file.
    pub pipeline: String,
    /// Override a variable: --set name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
}

/// Global options passed to every command.
#[derive(Debug, Clone)]
pub struct Globals {
    /// --cache-dir.
    pub cache_dir: Option<PathBuf>,
    /// --no-stat-cache.
    pub no_stat_cache: bool,
    /// -v.
    pub verbose: bool,
}

/// Parses `args` and runs the command; returns the process exit code. Safe to call more than
/// once per process.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    let g = Globals {
        cache_dir: cli.cache_dir,
        no_stat_cache: cli.no_stat_cache,
        verbose: cli.verbose,
    };
    let res = match cli.cmd {
        Cmd::Run(a) => run::cmd(&g, a),
        Cmd::Status(a) => status::cmd(&g, a),
        Cmd::Dag(a) => dag::cmd(&g, a),
        Cmd::Stages(a) => stages::cmd(a),
        Cmd::Path(a) => path::cmd(&g, a),
        Cmd::Export(a) => export::cmd(&g, a),
        Cmd::Runs(a) => runs::cmd(&g, a),
        Cmd::Cache(c) => cache::cmd(&g, c),
        Cmd::Remote(c) => remote::cmd(c),
        Cmd::Doctor => doctor::cmd(),
        Cmd::Schema(a) => schema::cmd(a),
        Cmd::Fingerprint(a) => fingerprint::cmd(&g, a),
        Cmd::Synth(a) => synth::cmd(a),
        Cmd::Froc(a) => froc::cmd(a),
        Cmd::Detect(a) => detect::cmd(&g, a),
        Cmd::Serve(a) => serve::cmd(&g, a),
        Cmd::Report(a) => report::cmd(&g, a),
        Cmd::StageJob(a) => Ok(stage_job::cmd(a)),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprint!("{}", e.render());
            e.code()
        }
    }
}
