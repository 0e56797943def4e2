//! The workspace config file, `luna.toml` at the workspace root (next to `pipelines/`).
//!
//! It holds what is about the *workspace* rather than a pipeline: the team's cache remotes
//! (`[remotes.NAME]`, see [`remote`]), the defaults of `luna run` that go with them
//! (`[cache]`), and the executor that runs stages (`[executor]`, see [`executor`]). Nothing in
//! it is part of a cache key: two members of a team with different remotes or executors get
//! the same keys and may share artifacts.
//!
//! **Format.** TOML, because it is edited by hand and by `luna remote add` (which keeps the
//! user's comments and layout: edits go through `toml_edit`'s document model). A missing file
//! is the documented default (no remotes, local executor). Unknown keys are errors with the
//! file, line and column, like pipeline files, so a typo (`endpiont`) never silently falls back
//! to a default. `schemas/luna-config.schema.json` is its JSON schema (`luna schema --config`).
//!
//! Rejected: keeping remotes inside the pipeline YAML (a pipeline is shared through git and
//! names no machine or bucket; credentials and endpoints differ per member); `.luna/config`
//! (`.luna/` holds machine-local state such as the stat cache, which is not committed, while a
//! team commits `luna.toml`); a per-user file under `~/.config` as the only place (a team wants
//! one committed file; per-user secrets stay in the standard AWS files and environment).

pub mod executor;
pub mod remote;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The config file's name, at the workspace root.
pub const FILE_NAME: &str = "luna.toml";

/// The whole config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "luna workspace config (luna.toml)")]
pub struct Config {
    /// Defaults for the cache and its remotes.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Named cache remotes (`luna remote add NAME URL`).
    #[serde(default)]
    pub remotes: BTreeMap<String, remote::RemoteConfig>,
    /// How stages are executed (`luna run --executor`).
    #[serde(default)]
    pub executor: executor::ExecutorConfig,
}

/// The `[cache]` table: defaults of `luna run` and `luna cache push/pull`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The remote used when a command names none (default: the only remote, if there is
    /// exactly one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// `luna run` fetches missing artifacts from the remote (as `--pull`).
    #[serde(default)]
    pub pull: bool,
    /// `luna run` uploads what it computed to the remote (as `--push`).
    #[serde(default)]
    pub push: bool,
}

/// Reading or editing `luna.toml` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read or written.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("{}:{line}:{column}: {message}", file.display())]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line of the offending text.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong (the parser's words).
        message: String,
    },
}

impl ConfigError {
    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Invalid { .. } => Some(
                "see `luna schema --config` for the keys luna.toml may hold, and the README's \
                 \"Workspace config\" section"
                    .into(),
            ),
        }
    }
}

/// 1-based line and column of byte offset `at` in `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Config {
    /// The config file of the workspace at `workspace`.
    pub fn path(workspace: &Path) -> PathBuf {
        workspace.join(FILE_NAME)
    }

    /// Loads `<workspace>/luna.toml`; a missing file is the default config.
    pub fn load(workspace: &Path) -> Result<Config, ConfigError> {
        let file = Self::path(workspace);
        match std::fs::read_to_string(&file) {
            Ok(text) => Self::parse(&text, &file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Io { file, source }),
        }
    }

    /// Parses config text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        toml_edit::de::from_str::<Config>(text).map_err(|e| {
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            ConfigError::Invalid {
                file: file.to_path_buf(),
                line,
                column,
                message: e.message().to_string(),
            }
        })
    }

    /// The JSON schema of the file (`schemas/luna-config.schema.json`).
    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Config)).unwrap_or_default()
    }
}

/// Edits `<workspace>/luna.toml` in place, keeping comments and layout: `edit` changes the
/// document, which is then checked against the schema and written atomically (temp file +
/// rename), so a failed edit leaves the old file as it was.
pub fn edit(
    workspace: &Path,
    edit: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), String>,
) -> Result<Result<Config, String>, ConfigError> {
    let file = Config::path(workspace);
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(ConfigError::Io { file, source }),
    };
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(&text, s.start));
        ConfigError::Invalid {
            file: file.clone(),
            line,
            column,
            message: e.message().to_string(),
        }
    })?;
    if let Err(why) = edit(&mut doc) {
        return Ok(Err(why));
    }
    let new_text = doc.to_string();
    let config = Config::parse(&new_text, &file)?;
    let tmp = file.with_extension(format!("toml.tmp.{}", std::process::id()));
    std::fs::write(&tmp, &new_text)
        .and_then(|()| std::fs::rename(&tmp, &file))
        .map_err(|source| {
            let _ = std::fs::remove_file(&tmp);
            ConfigError::Io {
                file: file.clone(),
                source,
            }
        })?;
    Ok(Ok(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_default_and_unknown_keys_fail_with_position() {
        let f = Path::new("luna.toml");
        assert_eq!(Config::parse("", f).ok(), Some(Config::default()));
        let e = Config::parse("[cache]\npull = true\nplul = 1\n", f)
            .err()
            .map(|e| e.to_string());
        let e = e.unwrap_or_default();
        assert!(e.starts_with("luna.toml:3:1: unknown field `plul`"), "{e}");
    }
}
