//! The CLI's error type: wraps each layer's error and renders it once, with its hint.

use crate::engine::error::CacheError;
use crate::engine::plan::PlanError;
use crate::engine::spec_error::LoadError;

/// Any error a command can end with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Finding or parsing a pipeline.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Planning (selection, fingerprints).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The cache.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The workspace config (`luna.toml`).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A cache remote (`luna cache push/pull`, `luna run --pull`).
    #[error(transparent)]
    Remote(#[from] crate::engine::error::RemoteError),
    /// Anything else, with a hint and an exit code.
    #[error("{message}")]
    Other {
        /// What went wrong.
        message: String,
        /// What to do.
        hint: Option<String>,
        /// Exit code.
        code: i32,
    },
}

impl CliError {
    /// An error with exit code 2.
    pub fn usage(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Other {
            message: message.into(),
            hint,
            code: 2,
        }
    }
    /// An error with exit code 1.
    pub fn failed(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Other {
            message: message.into(),
            hint,
            code: 1,
        }
    }

    /// Exit code.
    pub fn code(&self) -> i32 {
        match self {
            CliError::Load(_) | CliError::Plan(_) | CliError::Config(_) => 2,
            CliError::Cache(e) => {
                if e.is_setup() {
                    2
                } else {
                    1
                }
            }
            CliError::Remote(e) => {
                if e.is_setup() {
                    2
                } else {
                    1
                }
            }
            CliError::Other { code, .. } => *code,
        }
    }

    /// Text for stderr.
    pub fn render(&self) -> String {
        if let CliError::Load(LoadError::Spec(s)) = self {
            return s.render(&super::workspace::shown(&s.file));
        }
        let hint = match self {
            CliError::Load(e) => e.hint(),
            CliError::Plan(e) => e.hint(),
            CliError::Cache(e) => e.hint(),
            CliError::Config(e) => e.hint(),
            CliError::Remote(e) => e.hint(),
            CliError::Other { hint, .. } => hint.clone(),
        };
        let mut out = format!("error: {self}\n");
        if let Some(h) = hint {
            out.push_str(&format!("  = hint: {h}\n"));
        }
        out
    }
}
