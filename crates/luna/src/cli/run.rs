//! `luna run NAME`: plan, then execute the stale stages (or print the plan with --dry-run).

use clap::Args;

use super::console::HumanReporter;
use super::status::print_plan;
use super::workspace::{open, Opened};
use super::{CliError, Globals, PipelineArgs};
use crate::config::executor::ExecutorKind;
use crate::engine::executor::{execute, Backend, Local, RunOptions};
use crate::engine::plan::{plan, Freshness, PlannedStage, Selection};
use crate::engine::runs::RunRecord;
use crate::engine::spec::Pipeline;

/// Arguments of `luna run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    p: PipelineArgs,
    /// Stages to run at once (default: number of cores).
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Run only STAGE and what it depends on.
    #[arg(long, value_name = "STAGE")]
    until: Option<String>,
    /// Run only STAGE (repeatable); its upstream must be cached.
    #[arg(long, value_name = "STAGE")]
    only: Vec<String>,
    /// Re-run STAGE and everything downstream of it even if cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    force: Vec<String>,
    /// Print what would run and why, run nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Re-hash every upstream file before a stage reads it (default: sizes, and hashes of
    /// upstream artifacts up to 64 MiB).
    #[arg(long)]
    verify: bool,
    /// Fetch a missing artifact from the remote instead of computing it, per stage and per
    /// partition (default: [cache] pull of luna.toml).
    #[arg(long)]
    pull: bool,
    /// Upload what the run computed to the remote (default: [cache] push of luna.toml).
    #[arg(long)]
    push: bool,
    /// Ignore [cache] pull/push of luna.toml (no remote is used unless --pull/--push).
    #[arg(long, conflicts_with_all = ["pull", "push"])]
    no_remote: bool,
    /// The remote for --pull/--push (default: [cache] remote, or the only one).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Where stages' work runs: here, or as Slurm jobs over the shared cache (default:
    /// `[executor] kind` in luna.toml, else local).
    #[arg(long, value_enum, value_name = "EXECUTOR")]
    executor: Option<ExecutorKind>,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: RunArgs) -> Result<i32, CliError> {
    let o = open(g, &a.p)?;
    let pull = a.pull || (o.config.cache.pull && !a.no_remote);
    let push = a.push || (o.config.cache.push && !a.no_remote);
    // a remote that is misconfigured or unreachable fails here, before anything runs
    let remote = if (pull || push) && !a.dry_run {
        Some(std::sync::Arc::new(
            super::remote::open(&o.config, a.remote.as_deref())?.0,
        ))
    } else {
        None
    };
    let slurm = match a.executor.unwrap_or(o.config.executor.kind) {
        ExecutorKind::Local => None,
        ExecutorKind::Slurm => Some(std::sync::Arc::new(
            crate::slurm::Slurm::new(o.config.executor.slurm.clone())
                .map_err(|e| CliError::usage(e.to_string(), e.hint()))?,
        )),
    };
    let sel = Selection {
        until: a.until,
        only: a.only,
        force: a.force,
    };
    // held until the run ends: `cache gc` deletes nothing while a run may read objects
    let _in_use = o.cache.use_lock()?;
    let planned = plan(&o.pipeline, &o.cache, &o.stat, &sel);
    o.stat.save();
    let planned = planned?;
    if a.dry_run {
        print_plan(&o.pipeline, &planned, true, None);
        return Ok(0);
    }
    // a read-only cache serves what it holds; a stage to compute is a user error (exit 2)
    let to_run = planned
        .iter()
        .filter(|ps| ps.selected && ps.state != Freshness::Fresh);
    if let Some(ps) = to_run.clone().next().filter(|_| o.cache.is_read_only()) {
        return Err(crate::engine::error::CacheError::ReadOnly {
            root: o.cache.root().to_path_buf(),
            stages: to_run.count(),
            first: ps.stage.clone(),
        }
        .into());
    }
    let fetch = remote
        .clone()
        .filter(|_| pull)
        .map(|r| r as std::sync::Arc<dyn crate::engine::remote::Fetcher>);
    let backend: std::sync::Arc<dyn Backend> = match &slurm {
        None => std::sync::Arc::new(Local),
        Some(s) => {
            // every job request checked before anything is submitted
            s.preflight(
                planned
                    .iter()
                    .filter(|ps| ps.selected && ps.state != Freshness::Fresh)
                    .map(|ps| &o.pipeline.stages[ps.index]),
            )
            .map_err(|e| CliError::usage(e.to_string(), e.hint()))?;
            crate::slurm::install_signal_handlers();
            s.clone()
        }
    };
    // with Slurm the driver only waits: every ready stage may have its jobs queued
    let jobs = a.jobs.or(slurm.as_ref().map(|_| 256));
    let rec = execute_plan(
        g,
        &o,
        (&o.pipeline, &planned),
        (jobs, a.verify, true),
        fetch,
        backend,
        true,
    );
    if let Some(s) = &slurm {
        if crate::slurm::INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
            s.cancel_all();
            eprintln!(
                "luna: interrupted; cancelled the Slurm jobs this run submitted ({})",
                s.submitted().join(", ")
            );
            return Ok(130);
        }
    }
    if let Some(r) = &remote {
        for w in r.take_warnings() {
            eprintln!("warning: {w}");
        }
        if push {
            let t0 = std::time::Instant::now();
            let keys: Vec<String> = rec
                .stages
                .iter()
                .filter(|s| {
                    matches!(
                        s.status,
                        crate::engine::events::StageStatus::Ran
                            | crate::engine::events::StageStatus::Cached
                    )
                })
                .map(|s| s.key.clone())
                .collect();
            let report = r.push(&o.cache, &keys)?;
            super::cache::print_push(r, &report, t0.elapsed());
        }
    }
    Ok(exit_code(&rec))
}

/// Executes a plan as `luna run` does: `jobs` stages at once (default: the cores), progress to
/// stderr, the stat cache saved, the run's report written (and its headline numbers printed
/// when `headlines`), artifacts fetched by `fetch` (`--pull`) and the stages' work on `backend`.
/// `luna detect` runs its appended pipeline through it too; without `report` (`luna serve`'s
/// detections) no report is written.
pub(super) fn execute_plan(
    g: &Globals,
    o: &Opened,
    (pipeline, planned): (&Pipeline, &[PlannedStage]),
    (jobs, verify, headlines): (Option<usize>, bool, bool),
    fetch: Option<std::sync::Arc<dyn crate::engine::remote::Fetcher>>,
    backend: std::sync::Arc<dyn Backend>,
    report: bool,
) -> RunRecord {
    let jobs = jobs.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    // A reader that goes away (`luna run p 2>&1 | head -1`) must not kill the run halfway and
    // leave an unfinished run record: ignore SIGPIPE from here on (main sets the default for
    // the other commands) and let the reporter drop output it cannot write. Commands and the
    // torch worker start with the default disposition again (std resets it in children).
    // SAFETY: changing a signal disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let mut reporter = HumanReporter::new(g.verbose);
    let rec = execute(
        pipeline,
        planned,
        &o.cache,
        &o.runs,
        &RunOptions {
            jobs,
            stat: Some(o.stat.clone()),
            verify,
            fetch,
            backend,
        },
        &mut reporter,
    );
    // stages hash the files they read through the stat cache too (e.g. CTs in build_crops)
    o.stat.save();
    if report {
        super::report::finish_run(&o.runs, &o.cache, Some(pipeline), &rec, headlines);
    }
    rec
}

/// A run's exit code: 0 when it succeeded, 2 when a stage failed on a file the user gave it
/// (`StageError::BadInput`: not a checkpoint, refused, does not fit), else 1.
pub fn exit_code(rec: &crate::engine::runs::RunRecord) -> i32 {
    match rec.success {
        true => 0,
        false if rec.stages.iter().any(|s| s.bad_input) => 2,
        false => 1,
    }
}
