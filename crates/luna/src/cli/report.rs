//! `luna report [RUN]`: (re)writes `runs/<id>/report.html` for a run (default: the latest), and
//! the helper every run calls at its end to write the report and print the headline numbers.

use std::io::Write;

use clap::Args;

use super::workspace::{cache_root, shown, workspace_here};
use super::{CliError, Globals};
use crate::engine::cache::Cache;
use crate::engine::runs::{RunRecord, Runs};
use crate::engine::spec::{self, Pipeline};
use crate::report::{write_report, ReportSource};

/// Arguments of `luna report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run id, unique id prefix, or `latest`.
    #[arg(default_value = "latest")]
    run: String,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: ReportArgs) -> Result<i32, CliError> {
    let ws = workspace_here()?;
    let runs = Runs::new(ws.join("runs"));
    let Some(rec) = runs.find(&a.run) else {
        return Err(CliError::usage(
            format!("no single run matches `{}`", a.run),
            Some("`luna runs` lists run ids".into()),
        ));
    };
    let cache = Cache::open(&cache_root(g, &ws))?;
    // the typed bindings (for the galleries) come from the pipeline file as it is now
    let file = ws.join(&rec.pipeline_file);
    let pipeline = spec::load(&file, &ws, &Default::default(), &crate::stages::registry()).ok();
    if pipeline.is_none() {
        eprintln!(
            "note: {} does not load now; the report has no galleries",
            file.display()
        );
    }
    let path = finish_run(&runs, &cache, pipeline.as_ref(), &rec, false)
        .ok_or_else(|| CliError::failed("the report could not be written", None))?;
    println!("{}", path.display());
    Ok(0)
}

/// Writes the run's report and, when `print` is set, prints its headline numbers and the path
/// to stderr (the end of `luna run`). A report that cannot be written is a warning: the run
/// itself is done.
pub fn finish_run(
    runs: &Runs,
    cache: &Cache,
    pipeline: Option<&Pipeline>,
    rec: &RunRecord,
    print: bool,
) -> Option<std::path::PathBuf> {
    let src = ReportSource {
        record: rec,
        cache,
        pipeline,
        run_dir: runs.run_dir(&rec.id),
    };
    // stderr may be a closed pipe (`luna run p 2>&1 | head -1`): never panic on writing
    let say = |line: String| {
        let _ = writeln!(std::io::stderr(), "{line}");
    };
    let (path, heads) = match write_report(&src) {
        Ok(p) => p,
        Err(e) => {
            say(format!("warning: {e}"));
            return None;
        }
    };
    if print {
        let w = heads.iter().map(|h| h.label.len()).max().unwrap_or(0);
        for h in heads {
            say(format!("  {:<w$}  {}", h.label, h.value));
        }
        say(format!("  report: {}", shown(&path)));
    }
    Some(path)
}
