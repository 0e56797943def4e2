//! The `[executor]` table of `luna.toml`: how `luna run` executes stages.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Executor defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {}
