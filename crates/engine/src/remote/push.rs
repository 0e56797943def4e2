//! Push: every file the remote lacks, under its blake3, then the manifests (partitions'
//! first, the listed objects' last), so that an object is visible only once all it names is
//! there. Files are mapped, not read, and hashed on the way (see the module doc of `remote`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use futures::stream::{self, TryStreamExt};
use object_store::{ObjectStoreExt, PutPayload};

use super::super::cache::{Cache, Manifest};
use super::super::error::{CacheError, RemoteError};
use tokio::task::JoinSet;

use super::{short, Inventory, Progress, PushReport, Remote, PARTS_IN_FLIGHT, PART_BYTES};

/// One file to upload.
struct Upload {
    /// Its blake3 (the manifest's).
    blake3: String,
    /// Its size.
    size: u64,
    /// A local path holding it.
    path: PathBuf,
    /// The object it was found in (for messages).
    key: String,
}

/// The process umask, restored on drop.
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask has no preconditions.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::umask(self.0) };
    }
}

/// Objects to push, in the order their manifests go up: partitions, then the stages.
type Groups = Vec<Vec<(String, Manifest)>>;

impl Upload {
    /// The error for a local file that no longer matches its manifest (`got`: what it has).
    fn damaged(&self, got: &str) -> RemoteError {
        RemoteError::from(CacheError::Damaged {
            key: self.key.clone(),
            problems: vec![format!(
                "{} content changed (blake3 {} → {})",
                self.path.display(),
                short(&self.blake3),
                short(got)
            )],
        })
    }

    fn io(&self, e: std::io::Error) -> RemoteError {
        RemoteError::from(CacheError::io(&self.path, e))
    }

    /// `h` updated with `part`, on a blocking task: the runtime's workers only drive
    /// connections.
    async fn hash(
        &self,
        h: blake3::Hasher,
        part: bytes::Bytes,
    ) -> Result<blake3::Hasher, RemoteError> {
        tokio::task::spawn_blocking(move || {
            let mut h = h;
            h.update(&part);
            h
        })
        .await
        .map_err(|e| self.io(std::io::Error::other(e)))
    }
}

impl Remote {
    /// Uploads the objects of `keys` (and the partitions their manifests list) that the remote
    /// lacks: files first, partitions' manifests next, the listed objects' manifests last.
    pub fn push(&self, cache: &Cache, keys: &[String]) -> Result<PushReport, RemoteError> {
        let mut report = PushReport::default();
        let groups = local_objects(cache, keys, &mut report)?;
        let inv = self.inventory()?;
        let (uploads, todo) = missing(cache, &inv, groups, &mut report);
        let total: u64 = uploads.values().map(|u| u.size).sum();
        let bar = self.progress("push", total, uploads.len());
        // a folder remote is often a share of several users: what this push creates must be
        // readable by all and its folders writable by the group, whatever the user's umask
        // (pulls verify every byte, so a member replacing a file cannot go unnoticed)
        let _umask = self.url.starts_with("file://").then(|| Umask::set(0o002));
        report.files_sent = uploads.len();
        report.bytes_sent = total;
        let sent = self.rt.block_on(async {
            stream::iter(uploads.into_values().map(Ok))
                .try_for_each_concurrent(self.jobs, |u| self.upload(u, &bar))
                .await?;
            for group in &todo {
                stream::iter(group.iter().map(Ok))
                    .try_for_each_concurrent(self.jobs, |(k, _)| self.put_manifest(cache, k))
                    .await?;
            }
            Ok::<(), RemoteError>(())
        });
        bar.finish();
        sent?;
        report.pushed = todo.into_iter().flatten().map(|(k, _)| k).collect();
        Ok(report)
    }

    /// Uploads the manifest of the local object `key`.
    async fn put_manifest(&self, cache: &Cache, key: &str) -> Result<(), RemoteError> {
        let mpath = cache.object_dir(key).join("manifest.json");
        let bytes = std::fs::read(&mpath).map_err(|e| CacheError::io(&mpath, e))?;
        self.store
            .put(&self.manifest_path(key), PutPayload::from(bytes))
            .await
            .map_err(|e| self.err("uploading a manifest", e))?;
        Ok(())
    }

    /// Uploads one file under its blake3: one PUT, or a multipart upload read part by part.
    /// The bytes are hashed on the way: a local file that no longer matches its manifest is
    /// never completed on the remote (the PUT is not sent, the multipart upload is aborted).
    async fn upload(&self, up: Upload, bar: &Progress) -> Result<(), RemoteError> {
        if super::uploads::interrupted() {
            return Err(self.interrupted());
        }
        let path = up.path.clone();
        let data = tokio::task::spawn_blocking(move || map_file(&path))
            .await
            .map_err(|e| up.io(std::io::Error::other(e)))?
            .map_err(|e| up.io(e))?;
        if data.len() as u64 != up.size {
            return Err(up.damaged(&format!("{} bytes", data.len())));
        }
        if up.size > self.multipart_bytes {
            self.upload_parts(&up, data, bar).await?;
        } else {
            let got = up.hash(blake3::Hasher::new(), data.clone()).await?;
            let got = got.finalize().to_hex().to_string();
            if got != up.blake3 {
                return Err(up.damaged(&got));
            }
            self.store
                .put(&self.file_path(&up.blake3), PutPayload::from(data))
                .await
                .map_err(|e| self.err("uploading a file", e))?;
            bar.inc(up.size);
        }
        bar.file_done();
        Ok(())
    }

    /// A multipart upload of `data`: up to [`PARTS_IN_FLIGHT`] parts sent at once, each
    /// hashed before it goes; aborted on any error or a hash that does not match.
    async fn upload_parts(
        &self,
        up: &Upload,
        data: bytes::Bytes,
        bar: &Progress,
    ) -> Result<(), RemoteError> {
        let mut upload = self
            .store
            .put_multipart(&self.file_path(&up.blake3))
            .await
            .map_err(|e| self.err("starting a multipart upload", e))?;
        // parts are sent by spawned tasks, so they progress while the next part is hashed
        let mut sending: JoinSet<object_store::Result<u64>> = JoinSet::new();
        let mut h = blake3::Hasher::new();
        let mut failed = None;
        for at in (0..data.len()).step_by(PART_BYTES) {
            if super::uploads::interrupted() {
                failed = Some(self.interrupted());
                break;
            }
            let slice = data.slice(at..(at + PART_BYTES).min(data.len()));
            let len = slice.len() as u64;
            h = match up.hash(std::mem::take(&mut h), slice.clone()).await {
                Ok(h) => h,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let sent = upload.put_part(PutPayload::from(slice));
            sending.spawn(async move { sent.await.map(|()| len) });
            failed = self
                .join_parts(&mut sending, PARTS_IN_FLIGHT - 1, bar)
                .await;
            if failed.is_some() {
                break;
            }
        }
        if failed.is_none() {
            failed = self.join_parts(&mut sending, 0, bar).await;
        }
        drop(sending);
        if failed.is_none() {
            let got = h.finalize().to_hex().to_string();
            if got != up.blake3 {
                failed = Some(up.damaged(&got));
            }
        }
        if let Some(e) = failed {
            // the upload's own error is what matters; one the abort leaves unfinished is never
            // visible (S3 lists only completed objects) and `cache gc --remote` aborts it
            let _ = upload.abort().await;
            return Err(e);
        }
        upload
            .complete()
            .await
            .map_err(|e| self.err("completing a multipart upload", e))?;
        Ok(())
    }

    /// Waits for sent parts until at most `left` are in flight; the first error, if any.
    async fn join_parts(
        &self,
        sending: &mut JoinSet<object_store::Result<u64>>,
        left: usize,
        bar: &Progress,
    ) -> Option<RemoteError> {
        while sending.len() > left {
            match sending.join_next().await? {
                Ok(Ok(n)) => bar.inc(n),
                Ok(Err(e)) => return Some(self.err("uploading a part", e)),
                Err(e) => {
                    return Some(RemoteError::Transfer {
                        remote: self.name.clone(),
                        what: "uploading a part".into(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        None
    }
}

/// The local objects of `keys` with their manifests, grouped as they are pushed
/// (partitions first: a stage object is visible only once what it lists is); keys not in
/// the cache go to `report.missing_locally`.
fn local_objects(
    cache: &Cache,
    keys: &[String],
    report: &mut PushReport,
) -> Result<Groups, RemoteError> {
    let mut parts: Vec<(String, Manifest)> = Vec::new();
    let mut stages: Vec<(String, Manifest)> = Vec::new();
    let mut seen = BTreeSet::new();
    for k in keys {
        if !seen.insert(k.clone()) {
            continue;
        }
        if !cache.has(k) {
            report.missing_locally.push(k.clone());
            continue;
        }
        let m = cache.manifest(k)?;
        for p in &m.partitions {
            if seen.insert(p.clone()) && cache.has(p) {
                parts.push((p.clone(), cache.manifest(p)?));
            }
        }
        stages.push((k.clone(), m));
    }
    Ok(vec![parts, stages])
}

/// What the remote lacks: the files to upload (each once, by blake3) and the objects whose
/// manifests go up after them, by group.
fn missing(
    cache: &Cache,
    inv: &Inventory,
    groups: Groups,
    report: &mut PushReport,
) -> (BTreeMap<String, Upload>, Groups) {
    let mut uploads: BTreeMap<String, Upload> = BTreeMap::new();
    let mut todo: Groups = Vec::new();
    for group in groups {
        let mut g = Vec::new();
        for (k, m) in group {
            if inv.objects.contains(&k) {
                report.present += 1;
                continue;
            }
            for f in &m.files {
                if inv.files.get(&f.blake3) == Some(&f.size) {
                    report.files_skipped += 1;
                } else if !uploads.contains_key(&f.blake3) {
                    let up = Upload {
                        blake3: f.blake3.clone(),
                        size: f.size,
                        path: cache.object_dir(&k).join(&f.path),
                        key: k.clone(),
                    };
                    uploads.insert(f.blake3.clone(), up);
                }
            }
            g.push((k, m));
        }
        todo.push(g);
    }
    (uploads, todo)
}

/// A file's bytes, mapped (no copy, no memory of ours: the page cache's pages). Cache objects
/// are read-only and never modified, and every byte sent is hashed against the manifest
/// first. An empty file cannot be mapped: empty bytes.
fn map_file(path: &Path) -> std::io::Result<bytes::Bytes> {
    let f = std::fs::File::open(path)?;
    if f.metadata()?.len() == 0 {
        return Ok(bytes::Bytes::new());
    }
    // SAFETY: the file is a committed cache object (read-only, never written in place).
    let map = unsafe { memmap2::Mmap::map(&f)? };
    Ok(bytes::Bytes::from_owner(map))
}

impl Remote {
    /// The error of a push stopped by SIGINT/SIGTERM ([`super::interrupt`]).
    fn interrupted(&self) -> RemoteError {
        RemoteError::Transfer {
            remote: self.name.clone(),
            what: "pushing".into(),
            reason: "interrupted (unfinished uploads were aborted)".into(),
        }
    }
}
