//! `luna status NAME`: per stage, `up to date` or the reasons it will run (`--json` for
//! scripts; `--quiet` only sets the exit code: 1 when anything would run).

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
}

/// Runs the command.
pub fn cmd(g: &Globals, a: StatusArgs) -> Result<i32, CliError> {
    let o = open(g, &a.p)?;
    let planned = plan(&o.pipeline, &o.cache, &o.stat, &Selection::default());
    o.stat.save();
    let planned = planned?;
    let stale = planned.iter().any(|s| s.state == Freshness::Stale);
    if a.json {
        let v = serde_json::to_string_pretty(&planned)
            .map_err(|e| CliError::failed(e.to_string(), None))?;
        println!("{v}");
    } else if !a.quiet {
        print_plan(&o.pipeline, &planned, false);
    }
    Ok(if a.quiet && stale { 1 } else { 0 })
}

/// Prints a plan: one line per stage, reasons indented below stale ones.
pub fn print_plan(p: &Pipeline, planned: &[PlannedStage], dry_run: bool) {
    let file = p
        .file
        .strip_prefix(&p.workspace)
        .unwrap_or(&p.file)
        .display()
        .to_string();
    println!("pipeline {} ({file})", p.name);
    let width = planned.iter().map(|s| s.stage.len()).max().unwrap_or(0);
    let mut n_stale = 0;
    for s in planned.iter().filter(|s| s.selected) {
        match s.state {
            Freshness::Fresh => println!("  {:width$}  up to date", s.stage),
            Freshness::Stale => {
                n_stale += 1;
                let verb = if dry_run { "would run" } else { "will run" };
                println!("  {:width$}  {verb}:", s.stage);
                for r in &s.reasons {
                    println!("  {:width$}    - {r}", "");
                }
            }
        }
    }
    if n_stale == 0 {
        println!("everything is up to date");
    } else {
        println!(
            "{n_stale} of {} stages would run",
            planned.iter().filter(|s| s.selected).count()
        );
    }
}
