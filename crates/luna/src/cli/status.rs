//! `luna status NAME`: per stage, `up to date` or the reasons it will run (`--json` for
//! scripts; `--quiet` only sets the exit code: 1 when anything would run).

use std::collections::BTreeSet;

use clap::Args;

use super::workspace::open;
use super::{CliError, Globals, PipelineArgs};
use crate::engine::plan::{plan, Freshness, PlannedStage, Selection};
use crate::engine::spec::Pipeline;

/// Arguments of `luna status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    p: PipelineArgs,
    /// Machine-readable output: [{"stage", "state", "reasons"}].
    #[arg(long)]
    json: bool,
    /// Print nothing; exit 1 if any stage would run.
    #[arg(short, long)]
    quiet: bool,
    /// Say which stale stages the remote has (`luna run --pull` would fetch them; default:
    /// [cache] pull of luna.toml).
    #[arg(long)]
    pull: bool,
    /// The remote to ask (default: [cache] remote, or the only one).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: StatusArgs) -> Result<i32, CliError> {
    let o = open(g, &a.p)?;
    let planned = plan(&o.pipeline, &o.cache, &o.stat, &Selection::default());
    o.stat.save();
    let planned = planned?;
    let stale = planned.iter().any(|s| s.state != Freshness::Fresh);
    let on_remote = if (a.pull || o.config.cache.pull || a.remote.is_some()) && !a.json {
        let (r, inv) = super::remote::open(&o.config, a.remote.as_deref())?;
        let keys = planned
            .iter()
            .filter(|s| s.state != Freshness::Fresh && inv.objects.contains(&s.key))
            .map(|s| s.key.clone())
            .collect();
        Some((r.name().to_string(), keys))
    } else {
        None
    };
    if a.json {
        let v = serde_json::to_string_pretty(&planned)
            .map_err(|e| CliError::failed(e.to_string(), None))?;
        println!("{v}");
    } else if !a.quiet {
        let on_remote = on_remote.as_ref().map(|(n, k)| (n.as_str(), k));
        print_plan(&o.pipeline, &planned, false, on_remote);
    }
    Ok(if a.quiet && stale { 1 } else { 0 })
}

/// Prints a plan: one line per stage, reasons indented below stale and maybe-stale ones.
/// `on_remote`: a remote's name and the stale stages' keys it holds (they would be pulled).
pub fn print_plan(
    p: &Pipeline,
    planned: &[PlannedStage],
    dry_run: bool,
    on_remote: Option<(&str, &BTreeSet<String>)>,
) {
    let file = p
        .file
        .strip_prefix(&p.workspace)
        .unwrap_or(&p.file)
        .display()
        .to_string();
    println!("pipeline {} ({file})", p.name);
    let width = planned.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    let (mut n_stale, mut n_maybe, mut n_remote) = (0, 0, 0);
    for s in planned.iter().filter(|s| s.selected) {
        let verb = match s.state {
            Freshness::Fresh => {
                println!("  {:width$}  up to date", s.stage);
                continue;
            }
            _ if on_remote.is_some_and(|(_, k)| k.contains(&s.key)) => {
                let name = on_remote.map_or("", |(n, _)| n);
                n_remote += 1;
                println!("  {:width$}  available on remote {name}", s.stage);
                continue;
            }
            Freshness::MaybeStale => {
                n_maybe += 1;
                "may run (if its upstream's output changes)"
            }
            Freshness::Stale => {
                n_stale += 1;
                if dry_run {
                    "would run"
                } else {
                    "will run"
                }
            }
        };
        println!("  {:width$}  {verb}:", s.stage);
        for r in &s.reasons {
            println!("  {:width$}    - {r}", "");
        }
    }
    let maybe = if n_maybe > 0 {
        format!(", {n_maybe} more may run")
    } else {
        String::new()
    };
    if n_remote > 0 {
        println!(
            "{n_remote} of {} stages available on remote {} (`luna run --pull` fetches them), {n_stale} would run",
            planned.iter().filter(|s| s.selected).count(),
            on_remote.map_or("", |(n, _)| n)
        );
    } else if n_stale + n_maybe == 0 {
        println!("everything is up to date");
    } else {
        println!(
            "{n_stale} of {} stages would run{maybe}",
            planned.iter().filter(|s| s.selected).count()
        );
    }
}
