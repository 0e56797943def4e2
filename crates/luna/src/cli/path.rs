//! `luna path NAME STAGE`: the directory of the stage's current artifact, for scripts.

use clap::Args;

use std::path::PathBuf;

use super::workspace::{open, Opened};
use super::{CliError, Globals, PipelineArgs};
use crate::engine::plan::{plan, Freshness, Selection};

/// Arguments of `luna path`.
#[derive(Debug, Args)]
pub struct PathArgs {
    #[command(flatten)]
    p: PipelineArgs,
    /// Stage name.
    stage: String,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: PathArgs) -> Result<i32, CliError> {
    let o = open(g, &a.p)?;
    println!("{}", current_artifact(&o, &a.stage)?.display());
    Ok(0)
}

/// The directory of `stage`'s current artifact: a usage error when the pipeline has no such
/// stage, a failure naming the `luna run` to do when it is not up to date.
pub fn current_artifact(o: &Opened, stage: &str) -> Result<PathBuf, CliError> {
    if o.pipeline.stage_index(stage).is_none() {
        // checked here so the message does not speak of `--until`, which the user never wrote
        let known: Vec<&str> = o.pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        let dym = crate::engine::suggest::nearest(stage, known.iter().copied())
            .map(|s| format!("did you mean `{s}`? "))
            .unwrap_or_default();
        return Err(CliError::usage(
            format!("pipeline `{}` has no stage `{}`", o.pipeline.name, stage),
            Some(format!("{dym}stages: {}", known.join(", "))),
        ));
    }
    let sel = Selection {
        until: Some(stage.to_string()),
        ..Default::default()
    };
    let planned = plan(&o.pipeline, &o.cache, &o.stat, &sel);
    o.stat.save();
    let planned = planned?;
    let Some(ps) = planned.iter().find(|s| s.stage == stage) else {
        return Err(CliError::usage(format!("no stage `{stage}`"), None));
    };
    match ps.state {
        Freshness::Fresh => Ok(o.cache.object_dir(&ps.key)),
        Freshness::Stale | Freshness::MaybeStale => {
            let why: Vec<String> = ps.reasons.iter().map(|r| r.to_string()).collect();
            Err(CliError::failed(
                format!(
                    "stage `{}` has no current artifact: {}",
                    stage,
                    why.join("; ")
                ),
                Some(format!(
                    "run `luna run {} --until {}` first",
                    o.pipeline.name, stage
                )),
            ))
        }
    }
}
