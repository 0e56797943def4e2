//! What a failed request means for the user: `object_store`'s errors (and the S3 error XML
//! inside them) classified into the [`RemoteError`]s that name what to fix — the endpoint,
//! the credentials, the bucket — instead of the client's chain of causes.

use super::super::error::RemoteError;
use super::Remote;

impl Remote {
    /// Classifies a store error of operation `what`.
    pub(super) fn err(&self, what: &str, e: object_store::Error) -> RemoteError {
        match classify(&self.name, &self.url, what, e) {
            RemoteError::Credentials { .. } | RemoteError::Unreachable { .. }
                if self.no_credentials =>
            {
                RemoteError::NoCredentials {
                    remote: self.name.clone(),
                }
            }
            e => e,
        }
    }
}

/// Turns a store error into what the user must fix: the endpoint, the credentials, the bucket.
pub(super) fn classify(remote: &str, url: &str, what: &str, e: object_store::Error) -> RemoteError {
    let mut text = e.to_string();
    let mut root = text.clone();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&e);
    while let Some(s) = src {
        root = s.to_string();
        text.push_str(": ");
        text.push_str(&root);
        src = s.source();
    }
    // the innermost cause says it best; the server's words (S3 error XML) are in the middle
    let reason = |t: &str| {
        let code = ["<Code>", "<Message>"]
            .iter()
            .filter_map(|tag| {
                let at = t.find(tag)? + tag.len();
                let end = t[at..].find('<')?;
                Some(t[at..at + end].to_string())
            })
            .collect::<Vec<_>>();
        if code.is_empty() {
            first_line(&root)
        } else {
            code.join(": ")
        }
    };
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let remote = remote.to_string();
    if has(&["NoSuchBucket", "bucket does not exist"]) {
        let bucket = url
            .strip_prefix("s3://")
            .and_then(|r| r.split('/').next())
            .unwrap_or(url)
            .to_string();
        RemoteError::NoBucket { remote, bucket }
    } else if matches!(
        e,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
        "403 Forbidden",
        "Missing credentials",
        "InvalidClientTokenId",
    ]) {
        RemoteError::Credentials {
            remote,
            reason: reason(&text),
        }
    } else if has(&[
        "error sending request",
        "Connection refused",
        "connection refused",
        "dns error",
        "timed out",
        "tcp connect",
        "client error (Connect)",
    ]) {
        RemoteError::Unreachable {
            remote,
            url: url.to_string(),
            reason: reason(&text),
        }
    } else {
        RemoteError::Transfer {
            remote,
            what: what.to_string(),
            reason: reason(&text),
        }
    }
}

fn first_line(s: &str) -> String {
    let s = s.lines().next().unwrap_or(s);
    if s.len() > 300 {
        let end = s.char_indices().nth(300).map_or(s.len(), |(i, _)| i);
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}
