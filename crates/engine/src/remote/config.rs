//! The S3 client's configuration: credentials, region and endpoint from the AWS environment
//! variables and the `~/.aws/credentials` / `~/.aws/config` files (their INI format read
//! here), then the remote's own `endpoint`/`region` from `luna.toml`; retries and timeouts.
//! Rejected: the AWS SDK's config loader (a large dependency tree for two small INI files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::super::error::RemoteError;
use super::error::classify;
use super::RemoteSpec;

/// The S3 client: standard AWS environment variables, then the profile of
/// `~/.aws/credentials` / `~/.aws/config`, then the remote's `endpoint`/`region`; and whether
/// any credentials were found there.
pub(super) fn s3_store(
    spec: &RemoteSpec,
    bucket: &str,
) -> Result<(object_store::aws::AmazonS3, bool, String), RemoteError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as K};
    let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let profile = spec
        .profile
        .clone()
        .or_else(|| env("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let home = env("HOME").map(PathBuf::from);
    let creds_file = env("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
    let config_file = env("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
    let creds = creds_file
        .map(|f| ini_section(&f, &profile))
        .unwrap_or_default();
    let config_section = if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    };
    let conf = config_file
        .map(|f| ini_section(&f, &config_section))
        .unwrap_or_default();
    let mut found = [
        "AWS_ACCESS_KEY_ID",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|k| env(k).is_some());
    if env("AWS_ACCESS_KEY_ID").is_none() {
        found |= creds.contains_key("aws_access_key_id") || conf.contains_key("aws_access_key_id");
        for (file_key, key) in [
            ("aws_access_key_id", K::AccessKeyId),
            ("aws_secret_access_key", K::SecretAccessKey),
            ("aws_session_token", K::Token),
        ] {
            if let Some(v) = creds.get(file_key).or_else(|| conf.get(file_key)) {
                b = b.with_config(key, v);
            }
        }
    }
    if env("AWS_REGION").is_none() && env("AWS_DEFAULT_REGION").is_none() {
        b = b.with_region(conf.get("region").map_or("us-east-1", |s| s.as_str()));
    }
    if env("AWS_ENDPOINT_URL").is_none() && env("AWS_ENDPOINT").is_none() {
        if let Some(e) = conf.get("endpoint_url") {
            b = b.with_endpoint(e);
        }
    }
    if let Some(r) = &spec.region {
        b = b.with_region(r);
    }
    let endpoint = spec
        .endpoint
        .clone()
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .or_else(|| env("AWS_ENDPOINT"))
        .or_else(|| conf.get("endpoint_url").cloned());
    let retry = object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
    };
    let client = object_store::ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(300))
        .with_pool_max_idle_per_host(64);
    // client options first: they hold `allow_http`, which the endpoint sets
    b = b.with_retry(retry).with_client_options(client);
    // no SHA-256 of every payload for its signature: see "Integrity in transit" above
    b = b.with_unsigned_payload(true);
    if let Some(e) = &endpoint {
        b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
    }
    let region = b
        .get_config_value(&K::Region)
        .unwrap_or_else(|| "us-east-1".into());
    b.build()
        .map(|s| (s, found, region))
        .map_err(|e| classify(&spec.name, &spec.url, "configuring the S3 client", e))
}

/// The `key = value` lines of `[section]` of an INI file (AWS credentials/config files);
/// empty when the file or section is absent.
fn ini_section(file: &Path, section: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(text) = std::fs::read_to_string(file) else {
        return out;
    };
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    out
}
