//! `luna schema`: the JSON schema of pipeline files, generated from the kinds' Rust types
//! (`--config`: of the workspace config `luna.toml`). `schemas/pipeline.schema.json` and
//! `schemas/luna-config.schema.json` are this output; a test fails when either is stale.

use clap::Args;

use super::CliError;

/// Arguments of `luna schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Write to this file instead of stdout.
    #[arg(long, value_name = "FILE")]
    write: Option<std::path::PathBuf>,
    /// The schema of the workspace config file `luna.toml` instead of pipeline files.
    #[arg(long)]
    config: bool,
}

/// The schema text (pretty JSON with a final newline) of pipeline files, or of `luna.toml`.
pub fn schema_text(config: bool) -> String {
    let v = if config {
        crate::config::Config::schema()
    } else {
        crate::stages::builtin_registry().pipeline_schema()
    };
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

/// Runs the command.
pub fn cmd(a: SchemaArgs) -> Result<i32, CliError> {
    let text = schema_text(a.config);
    match a.write {
        Some(p) => std::fs::write(&p, text)
            .map_err(|e| CliError::failed(format!("{}: {e}", p.display()), None))?,
        None => print!("{text}"),
    }
    Ok(0)
}
