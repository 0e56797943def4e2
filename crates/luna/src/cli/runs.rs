//! `luna runs`: list run records; `luna runs show ID` (id prefix or `latest`) shows one.

use clap::{Args, Subcommand};

use super::workspace::workspace_here;
use super::{CliError, Globals};
use crate::engine::runs::Runs;

/// Arguments of `luna runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    #[command(subcommand)]
    cmd: Option<RunsCmd>,
}

#[derive(Debug, Subcommand)]
enum RunsCmd {
    /// Show one run (id, unique id prefix, or `latest`).
    Show {
        /// Run id.
        id: String,
    },
}

/// Runs the command.
pub fn cmd(_g: &Globals, a: RunsArgs) -> Result<i32, CliError> {
    let ws = workspace_here()?;
    let runs = Runs::new(ws.join("runs"));
    match a.cmd {
        None => {
            let all = runs.list();
            if all.is_empty() {
                println!("no runs yet (`luna run NAME` records one under runs/)");
                return Ok(0);
            }
            println!(
                "{:<40} {:<12} {:>8} {:>4} {:>6} {:>6} {:>7}  status",
                "id", "pipeline", "seconds", "ran", "cached", "failed", "skipped"
            );
            for r in &all {
                let (ran, cached, failed, skipped) = r.counts();
                let secs = duration(r)
                    .map(|d| format!("{d:.1}"))
                    .unwrap_or_else(|| "-".into());
                let status = if r.ended.is_none() {
                    "incomplete"
                } else if r.success {
                    "ok"
                } else {
                    "failed"
                };
                println!("{:<40} {:<12} {secs:>8} {ran:>4} {cached:>6} {failed:>6} {skipped:>7}  {status}", r.id, r.pipeline);
            }
            Ok(0)
        }
        Some(RunsCmd::Show { id }) => {
            let Some(r) = runs.find(&id) else {
                return Err(CliError::usage(
                    format!("no single run matches `{id}`"),
                    Some("`luna runs` lists run ids".into()),
                ));
            };
            println!("run       {}", r.id);
            println!("pipeline  {} ({})", r.pipeline, r.pipeline_file);
            println!("git       {}", r.git_revision.as_deref().unwrap_or("-"));
            println!("host      {}", r.host);
            println!("started   {}", r.started);
            println!(
                "ended     {}",
                r.ended
                    .as_deref()
                    .unwrap_or("(incomplete: the run was interrupted)")
            );
            println!("status    {}", if r.success { "ok" } else { "failed" });
            println!("logs      {}", runs.run_dir(&r.id).join("logs").display());
            for s in &r.stages {
                println!(
                    "{}",
                    super::console::status_line(
                        s.status.word(),
                        Some(std::time::Duration::from_secs_f64(s.duration_s)),
                        &format!(
                            "{} ({}, key {})",
                            s.stage,
                            s.kind,
                            crate::text::head_chars(&s.key, 12)
                        )
                    )
                );
                for why in &s.reasons {
                    println!("{:>24}- {why}", "");
                }
                if !s.jobs.is_empty() {
                    println!("{:>24}Slurm jobs {}", "", s.jobs.join(", "));
                }
                if let Some(e) = &s.error {
                    println!("{:>24}{e}", "");
                }
            }
            Ok(if r.success { 0 } else { 1 })
        }
    }
}

fn duration(r: &crate::engine::runs::RunRecord) -> Option<f64> {
    let s = chrono::DateTime::parse_from_rfc3339(&r.started).ok()?;
    let e = chrono::DateTime::parse_from_rfc3339(r.ended.as_ref()?).ok()?;
    Some((e - s).num_milliseconds() as f64 / 1000.0)
}
