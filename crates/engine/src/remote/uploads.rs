//! Unfinished multipart uploads of an S3 remote: a push killed mid-file (`kill -9`, a lost
//! machine) leaves one, invisible to listings and pulls but stored (and billed) until it is
//! aborted. A push aborts its own on any error and on SIGINT/SIGTERM ([`interrupt`]);
//! `luna cache gc --remote` lists those older than a given age under the remote's `files/`
//! (ListMultipartUploads) and aborts them (AbortMultipartUpload).
//!
//! object_store has no call for the listing: it is one GET `?uploads` signed with
//! object_store's own SigV4 signer ([`AwsAuthorizer`]) and sent with its HTTP client, and the
//! XML answer is read for its `<Upload>` entries. Rejected: an S3 lifecycle rule (not every
//! S3-compatible server has them, and a user may not be allowed to set them); aborting every
//! unfinished upload (a live push of another member would lose its parts: only old ones go).
//! A `file://` remote has none: its writes are a temporary file and a rename.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::MultipartStore;
use object_store::signer::Signer;

use super::super::error::RemoteError;
use super::Remote;

/// Set by SIGINT/SIGTERM during a push: uploads stop, multipart ones are aborted.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Asks running pushes to stop (async-signal-safe: one atomic store).
pub fn interrupt() {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Whether [`interrupt`] was called.
pub(super) fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// An unfinished multipart upload on a remote.
#[derive(Debug, Clone)]
pub struct StaleUpload {
    /// The object key being uploaded (bucket-relative).
    pub key: String,
    /// The upload's id.
    pub upload_id: String,
    /// When it was started (RFC 3339, the server's words).
    pub initiated: String,
}

impl Remote {
    /// The unfinished multipart uploads under this remote's `files/` started more than `age`
    /// ago (none on a `file://` remote).
    pub fn stale_uploads(&self, age: Duration) -> Result<Vec<StaleUpload>, RemoteError> {
        let Some(s3) = &self.s3 else {
            return Ok(Vec::new());
        };
        let xml = self.rt.block_on(self.list_uploads(s3))?;
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
        Ok(parse_uploads(&xml)
            .into_iter()
            .filter(|u| {
                chrono::DateTime::parse_from_rfc3339(&u.initiated)
                    .is_ok_and(|t| t.with_timezone(&chrono::Utc) <= cutoff)
            })
            .collect())
    }

    /// Aborts an unfinished multipart upload.
    pub fn abort_upload(&self, u: &StaleUpload) -> Result<(), RemoteError> {
        let Some(s3) = &self.s3 else {
            return Ok(());
        };
        let path = object_store::path::Path::from(u.key.as_str());
        self.rt
            .block_on(s3.abort_multipart(&path, &u.upload_id))
            .map_err(|e| self.err("aborting an unfinished upload", e))
    }

    /// GET `<bucket>?uploads&prefix=<prefix>/files/`, signed: the XML answer.
    async fn list_uploads(&self, s3: &object_store::aws::AmazonS3) -> Result<String, RemoteError> {
        let fail = |reason: String| RemoteError::Transfer {
            remote: self.name.clone(),
            what: "listing unfinished uploads".into(),
            reason,
        };
        let prefix = self.child(&["files"]).to_string() + "/";
        // the bucket's URL as object_store forms it (path- or virtual-host style)
        let probe = object_store::path::Path::from("x");
        let mut url = s3
            .signed_url(http::Method::GET, &probe, Duration::from_secs(60))
            .await
            .map_err(|e| self.err("listing unfinished uploads", e))?;
        url.set_query(None);
        let bucket = url
            .as_str()
            .strip_suffix("x")
            .unwrap_or(url.as_str())
            .to_string();
        let mut list = url::Url::parse(&bucket).map_err(|e| fail(e.to_string()))?;
        list.query_pairs_mut()
            .append_pair("uploads", "")
            .append_pair("prefix", &prefix);
        let cred = s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| self.err("listing unfinished uploads", e))?;
        let mut req = http::Request::builder()
            .method(http::Method::GET)
            .uri(list.as_str())
            .body(HttpRequestBody::from(Vec::new()))
            .map_err(|e| fail(e.to_string()))?;
        AwsAuthorizer::new(&cred, "s3", &self.region).authorize(&mut req, None);
        let options = object_store::ClientOptions::new().with_allow_http(list.scheme() == "http");
        let client = ReqwestConnector::default()
            .connect(&options)
            .map_err(|e| self.err("listing unfinished uploads", e))?;
        let resp = client.execute(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .bytes()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let body = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            return Err(fail(format!(
                "{status}: {}",
                first_tag(&body, "Message").unwrap_or_default()
            )));
        }
        Ok(body)
    }
}

/// The `<Upload>` entries of a ListMultipartUploads answer.
fn parse_uploads(xml: &str) -> Vec<StaleUpload> {
    xml.split("<Upload>")
        .skip(1)
        .filter_map(|u| {
            Some(StaleUpload {
                key: first_tag(u, "Key")?,
                upload_id: first_tag(u, "UploadId")?,
                initiated: first_tag(u, "Initiated")?,
            })
        })
        .collect()
}

/// The text of the first `<tag>…</tag>` in `s`, XML entities decoded.
fn first_tag(s: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let rest = s.split_once(open.as_str())?.1;
    let text = rest.split_once(format!("</{tag}>").as_str())?.0;
    Some(
        text.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_list_multipart_uploads_answer() {
        let xml = "<ListMultipartUploadsResult><Bucket>b</Bucket><Upload><Key>luna/files/ab/a&amp;b</Key><UploadId>u1</UploadId><Initiated>2026-01-01T00:00:00.000Z</Initiated></Upload><Upload><Key>k2</Key><UploadId>u2</UploadId><Initiated>2026-01-02T00:00:00Z</Initiated></Upload></ListMultipartUploadsResult>";
        let u = parse_uploads(xml);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].key, "luna/files/ab/a&b");
        assert_eq!(u[1].upload_id, "u2");
    }
}
