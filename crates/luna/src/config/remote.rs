//! `[remotes.NAME]` tables of `luna.toml`: where a team's shared artifacts live.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One remote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` or `file:///absolute/path`.
    pub url: String,
}
