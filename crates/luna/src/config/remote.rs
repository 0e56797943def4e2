//! `[remotes.NAME]` tables of `luna.toml`: where a team's shared artifacts live, and how a
//! command picks one (`--remote`, else `[cache] remote`, else the only one).
//!
//! Credentials are never kept here (the file is committed): they come from the standard AWS
//! environment variables and `~/.aws/credentials` / `~/.aws/config` (see
//! `luna_engine::remote`). Rejected: a `credentials` key (secrets in git).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Config;

/// One remote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// `s3://bucket/prefix` or `file:///absolute/path`.
    pub url: String,
    /// S3 endpoint URL of a non-AWS server (MinIO, Ceph, R2, …), e.g. `http://10.0.0.5:9000`;
    /// default: `AWS_ENDPOINT_URL`, then AWS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 region; default: `AWS_REGION`, the profile's `region`, then `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Profile of `~/.aws/credentials` and `~/.aws/config`; default: `AWS_PROFILE`, then
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Files transferred at once, each with up to 4 parts in flight (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 256))]
    pub jobs: Option<usize>,
    /// Files above this many MiB are uploaded in 16 MiB parts, smaller ones in one request
    /// (default 200, as rclone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 5000))]
    pub multipart_mib: Option<u64>,
}

/// Files transferred at once when a remote does not say: 4 files (each in one PUT up to
/// 200 MiB, larger ones 4 parts in flight), as rclone's defaults; more requests at once made
/// pushes slower, not faster, on a loopback server (2.22 GB to moto on 2 cores: 14.8 s with 4
/// files, 20.3 s with 8, 22.6 s with 16).
pub const DEFAULT_JOBS: usize = 4;

/// Why a URL cannot be a remote (`None` when it can).
pub fn url_problem(url: &str) -> Option<String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or("");
        let ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        (!ok).then(|| {
            format!("`{bucket}` is not an S3 bucket name (3-63 lowercase letters, digits, - and .)")
        })
    } else if let Some(path) = url.strip_prefix("file://") {
        (!path.starts_with('/')).then(|| "a file:// URL names an absolute path: file:///…".into())
    } else {
        Some("a remote URL starts with s3:// or file://".into())
    }
}

/// Why a name cannot name a remote (`None` when it can): letters, digits, `-` and `_`.
pub fn name_problem(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (!ok).then(|| format!("`{name}` is not a remote name (letters, digits, - and _)"))
}

/// The remote a command uses: `asked` (`--remote`), else `[cache] remote`, else the only
/// remote. `Err` says what is wrong and what to do.
pub fn choose<'c>(
    config: &'c Config,
    asked: Option<&str>,
) -> Result<(String, &'c RemoteConfig), (String, String)> {
    let known = || {
        if config.remotes.is_empty() {
            "luna.toml names no remotes".to_string()
        } else {
            format!(
                "luna.toml names: {}",
                config
                    .remotes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let name = match asked.or(config.cache.remote.as_deref()) {
        Some(n) => n.to_string(),
        None if config.remotes.len() == 1 => {
            config.remotes.keys().next().cloned().unwrap_or_default()
        }
        None if config.remotes.is_empty() => {
            return Err((
                "no remote is configured".into(),
                "add one with `luna remote add NAME s3://BUCKET/PREFIX` (or file:///PATH)".into(),
            ))
        }
        None => {
            return Err((
                format!("several remotes are configured ({}); say which", known()),
                "pass --remote NAME, or set `remote = \"NAME\"` under [cache] in luna.toml".into(),
            ))
        }
    };
    match config.remotes.get(&name) {
        Some(r) => Ok((name, r)),
        None => Err((
            format!("unknown remote `{name}` ({})", known()),
            format!("add it with `luna remote add {name} URL`, or see `luna remote list`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names_are_checked() {
        assert_eq!(url_problem("s3://team-bucket/luna"), None);
        assert_eq!(url_problem("file:///mnt/share"), None);
        assert!(url_problem("s3://Bad_Bucket").is_some());
        assert!(url_problem("file://relative").is_some());
        assert!(url_problem("gs://x").is_some());
        assert_eq!(name_problem("team-s3_1"), None);
        assert!(name_problem("a b").is_some());
    }
}
