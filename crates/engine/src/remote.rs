//! Cache remotes: a team's shared copy of cache objects in an S3-compatible bucket or a
//! mounted folder, with push, pull (verified), verify and the fetch hook of `luna run --pull`.
//!
//! ```text
//! <prefix>/files/<2 hex>/<blake3>                 a file's bytes, named by their blake3
//! <prefix>/objects/<2 hex>/<key>/manifest.json    the object's manifest (the cache's own)
//! ```
//!
//! **Files by content, manifest last.** A push uploads every file the remote lacks under its
//! blake3, then the object's manifest; an object is visible (listed, pulled) only through its
//! manifest, so a push killed at any point leaves no object a later pull trusts, and the next
//! push sends only the files that are not there yet (one LIST of the remote says which). Both
//! S3 PUTs and multipart completions are atomic, and so are the folder store's writes
//! (temporary file + rename), so a listed file is a complete file. Two people pushing the same
//! key at once write the same file names with the same bytes (names are content addresses),
//! and each writes its manifest only after its own files are up, so whichever manifest lands
//! last names files that exist: one valid copy. Files shared by objects (a crop stage's
//! output hard-links its partitions' files) are sent once.
//! Rejected: mirroring the cache layout (`objects/<key>/<path>`): two members who computed the
//! same key with different bytes (GPU training is not bit-reproducible) would overwrite each
//! other's files under one manifest and leave a corrupt object; conditional PUTs
//! (`If-None-Match`) would avoid that but are not supported by every S3-compatible server.
//!
//! **Pull verifies before commit.** A pull reads the manifest, streams every file into the
//! cache's `tmp/` while hashing it, compares blake3 and size with the manifest, and commits
//! with the same atomic rename (and read-only sealing) as a computed object, under the key's
//! lock. A corrupt or truncated remote file is reported and never committed; a pull killed
//! at any point leaves only a `tmp/` folder that the next run removes. Objects already
//! committed are not fetched again (resume is per object).
//!
//! **Transfers.** One tokio runtime per [`Remote`] drives `object_store`'s async client
//! (it signs S3 requests and retries). Up to `jobs` files move
//! at once. Where the time goes decided the rest (2.22 GB of crop files of 22–172 MB to moto
//! on loopback, 2 cores shared by client and server; `bench/remote.sh`):
//! - *Push: one PUT per file up to [`MULTIPART_BYTES`] (200 MiB, rclone's cutoff).* The
//!   server's work per byte dominates, and a multipart upload costs it far more than a PUT
//!   (moto stores every part, then copies them all into the object): moto used 20–22 s of CPU
//!   for a push in 16 MiB parts, 13–14 s for the same bytes in one PUT per file; with the
//!   unsigned payloads below the push went from 15.5–16.2 s to 8.5–9.1 s. Larger files go in [`PART_BYTES`] parts,
//!   [`PARTS_IN_FLIGHT`] at once, each sent by its own task. Rejected: smaller thresholds for
//!   parallelism within a file (`jobs` files in flight already keep as many requests busy).
//! - *Files are mapped, not read.* A file's bytes are `mmap`ped and handed to the client as
//!   they are (the page cache's pages: no copy, no heap memory however large the file or the
//!   retry buffer), hashed with blake3 on a blocking thread before the PUT, or part by part
//!   before each part is sent (a mismatch aborts the upload before it completes). Rejected:
//!   reading into buffers (a copy of every byte, and up to `jobs` × 200 MiB of heap).
//! - *Pull writes on blocking threads.* Each download feeds its chunks to a blocking thread
//!   that hashes and writes them, so disk writes never stall the runtime's workers, and it
//!   starts the kernel's writeback every [`WRITEBACK_BYTES`] (`sync_file_range`), so the
//!   commit's fsync finds the data on disk instead of writing 2 GB at the end (pull 2.9 s
//!   with it, 3.3–3.5 s without). The commit still fsyncs every file before the rename, so
//!   a committed object is complete after a crash; the objects of one pull are committed
//!   together ([`Cache::commit_all`]: one parallel batch of fsyncs before the renames, one
//!   after, instead of three rounds per object). Rejected: one `syncfs` per pull (it also
//!   flushes every other process's dirty data on the file system, e.g. a local S3 server's
//!   spool files); skipping the fsync (a crash could leave a committed object with holes);
//!   parallel ranged GETs of one file (S3-compatible servers such as moto read the whole
//!   object for every range, and `jobs` files at once fill the link already).
//!
//! **Integrity in transit.** Requests are signed (SigV4) with `UNSIGNED-PAYLOAD`: the
//! signature covers the method, key and headers, not a SHA-256 of the body, which would be a
//! second full hash of every byte pushed (1.5 s of the client's 2.3 s CPU for 2.2 GB). The
//! body is protected end to end by what luna checks anyway: every file is stored under its
//! blake3, hashed before it is sent, and every pull (and `cache verify --remote`) hashes it
//! again before anything is trusted, so a body damaged in transit or at rest is refused, not
//! used; with `https://` endpoints (AWS and most servers) TLS protects it in transit too.
//! Over plain `http://` a party on the path could replace a body it cannot sign, but it could
//! as well drop the request: the effect is the same refused object, never a wrong one.
//! Rejected: signed payloads (the extra hash buys nothing luna does not already check).
//!
//! Rejected as a whole: shelling out to the AWS CLI or rclone (an extra install for every
//! user, and no blake3 verification on the way in); hand-written S3 signing.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::cache::{Cache, KeyLock, Manifest};
use super::error::{CacheError, RemoteError};

/// Files above this size are uploaded in parts (when [`RemoteSpec::multipart_bytes`] is
/// `None`): rclone's `upload_cutoff`. Smaller files go up in one PUT.
pub const MULTIPART_BYTES: u64 = 200 << 20;
/// Size of one part of a multipart upload.
pub const PART_BYTES: usize = 16 << 20;
/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 4;
/// Received chunks queued between a download and the thread writing its file.
const RECEIVE_QUEUE: usize = 256;
/// A pulled file's kernel writeback is started every this many bytes written.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// Starts the kernel's writeback of `len` bytes at `offset` of `f` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so that the commit's fsync finds them on disk
/// already. Only a hint: the fsync before the commit reports any write error.
fn start_writeback(f: &std::fs::File, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: a file descriptor we own; the call reads no memory of ours.
    unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

/// How to reach a remote (from `[remotes.NAME]` of `luna.toml`).
#[derive(Debug, Clone, Default)]
pub struct RemoteSpec {
    /// The remote's name (for messages).
    pub name: String,
    /// `s3://bucket/prefix` or `file:///absolute/path`.
    pub url: String,
    /// S3 endpoint URL for non-AWS servers (MinIO, Ceph, R2, …).
    pub endpoint: Option<String>,
    /// S3 region.
    pub region: Option<String>,
    /// AWS profile of `~/.aws/credentials` and `~/.aws/config` (default: `AWS_PROFILE`, then
    /// `default`).
    pub profile: Option<String>,
    /// Files moved at once.
    pub jobs: usize,
    /// Files above this many bytes are uploaded in parts (`None`: [`MULTIPART_BYTES`]).
    pub multipart_bytes: Option<u64>,
}

/// What a remote holds: one LIST.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// Keys with a manifest.
    pub objects: BTreeSet<String>,
    /// File blake3 → size.
    pub files: HashMap<String, u64>,
}

/// Outcome of a push.
#[derive(Debug, Default, Clone)]
pub struct PushReport {
    /// Objects uploaded (manifests written).
    pub pushed: Vec<String>,
    /// Objects the remote had already.
    pub present: usize,
    /// Asked-for keys not in the local cache (not pushed).
    pub missing_locally: Vec<String>,
    /// Files sent.
    pub files_sent: usize,
    /// Files that were already there (a resumed push, or shared with other objects).
    pub files_skipped: usize,
    /// Bytes sent.
    pub bytes_sent: u64,
}

/// Outcome of a pull.
#[derive(Debug, Default, Clone)]
pub struct PullReport {
    /// Objects fetched and committed.
    pub pulled: Vec<String>,
    /// Objects the local cache had already.
    pub present: usize,
    /// Asked-for keys the remote does not have.
    pub missing_remotely: Vec<String>,
    /// Objects refused: key and what was wrong (never committed).
    pub corrupt: Vec<(String, String)>,
    /// Bytes received.
    pub bytes_received: u64,
    /// Files an interrupted pull had completed (verified again, not downloaded again).
    pub resumed_files: usize,
}

/// Brings a missing object into the cache instead of computing it (`luna run --pull`).
/// The executor calls it while holding the key's lock.
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Fetches `key` (and the partitions its manifest lists) into `cache`; `Ok(true)` when the
    /// object is now there, `Ok(false)` when the remote does not have it.
    fn fetch(&self, cache: &Cache, key: &str) -> Result<bool, RemoteError>;
}

/// An opened remote.
pub struct Remote {
    name: String,
    url: String,
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    rt: tokio::runtime::Runtime,
    jobs: usize,
    multipart_bytes: u64,
    /// Messages of refused objects during `luna run --pull` (printed by the caller).
    warnings: Mutex<Vec<String>>,
    /// Show progress bars.
    progress: bool,
    /// No credentials were found in the environment or the AWS files (the client then asks
    /// the instance metadata service, which only exists on cloud machines).
    no_credentials: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({} {})", self.name, self.url)
    }
}

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

/// A remote manifest as read: `None` when absent, `Some(Err(why))` when refused.
type Fetched = Option<Result<Manifest, String>>;

impl Remote {
    /// Opens a remote (no request is sent: [`Remote::inventory`] is the first).
    pub fn open(spec: &RemoteSpec) -> Result<Remote, RemoteError> {
        let bad = |reason: String| RemoteError::BadUrl {
            remote: spec.name.clone(),
            url: spec.url.clone(),
            reason,
        };
        let mut no_credentials = false;
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = spec.url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket name after s3://".into()));
                }
                let (store, found) = s3_store(spec, bucket)?;
                no_credentials = !found;
                (Arc::new(store), prefix.to_string())
            } else if let Some(path) = spec.url.strip_prefix("file://") {
                let dir = Path::new(path);
                if !dir.is_absolute() {
                    return Err(bad(
                        "a file:// URL names an absolute path (file:///…)".into()
                    ));
                }
                if !dir.is_dir() {
                    return Err(RemoteError::NoFolder {
                        remote: spec.name.clone(),
                        path: dir.to_path_buf(),
                    });
                }
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| bad(e.to_string()))?;
                (Arc::new(fs), String::new())
            } else {
                return Err(bad("the scheme must be s3:// or file://".into()));
            };
        let jobs = spec.jobs.max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(jobs.clamp(2, 16))
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Transfer {
                remote: spec.name.clone(),
                what: "starting the transfer runtime".into(),
                reason: e.to_string(),
            })?;
        Ok(Remote {
            name: spec.name.clone(),
            url: spec.url.clone(),
            store,
            prefix: StorePath::from(prefix.trim_matches('/')),
            rt,
            jobs,
            multipart_bytes: spec.multipart_bytes.unwrap_or(MULTIPART_BYTES),
            warnings: Mutex::new(Vec::new()),
            progress: console::Term::stderr().is_term(),
            no_credentials,
        })
    }

    /// The remote's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Shows progress bars or not (default: when stderr is a terminal).
    pub fn set_progress(&mut self, on: bool) {
        self.progress = on;
    }

    /// Messages about objects `luna run --pull` refused (and computed instead); drained.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn child(&self, parts: &[&str]) -> StorePath {
        let mut p = self.prefix.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }

    fn manifest_path(&self, key: &str) -> StorePath {
        self.child(&["objects", &key[..2.min(key.len())], key, "manifest.json"])
    }

    fn file_path(&self, blake3: &str) -> StorePath {
        self.child(&["files", &blake3[..2.min(blake3.len())], blake3])
    }

    /// Classifies a store error of operation `what`.
    fn err(&self, what: &str, e: object_store::Error) -> RemoteError {
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

    /// Lists the remote (one paged LIST): which objects and files it holds. Also the check
    /// that the remote is reachable and the credentials work.
    pub fn inventory(&self) -> Result<Inventory, RemoteError> {
        self.rt.block_on(self.inventory_async())
    }

    async fn inventory_async(&self) -> Result<Inventory, RemoteError> {
        let mut inv = Inventory::default();
        let mut listing = self.store.list(Some(&self.prefix));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| self.err("listing", e))?;
            let rel: Vec<String> = meta
                .location
                .prefix_match(&self.prefix)
                .map(|it| it.map(|p| p.as_ref().to_string()).collect())
                .unwrap_or_default();
            match rel.as_slice() {
                [o, shard, key, m]
                    if o == "objects"
                        && m == "manifest.json"
                        && super::cache::is_key(key)
                        && key.starts_with(shard.as_str()) =>
                {
                    inv.objects.insert(key.clone());
                }
                [f, shard, h] if f == "files" && is_hash(h) && h.starts_with(shard.as_str()) => {
                    inv.files.insert(h.clone(), meta.size);
                }
                _ => {}
            }
        }
        Ok(inv)
    }

    /// Which of `keys` the remote has (one LIST).
    pub fn has_objects(&self, keys: &[String]) -> Result<BTreeSet<String>, RemoteError> {
        let inv = self.inventory()?;
        Ok(keys
            .iter()
            .filter(|k| inv.objects.contains(*k))
            .cloned()
            .collect())
    }

    /// Uploads the objects of `keys` (and the partitions their manifests list) that the remote
    /// lacks: files first, partitions' manifests next, the listed objects' manifests last.
    pub fn push(&self, cache: &Cache, keys: &[String]) -> Result<PushReport, RemoteError> {
        let mut report = PushReport::default();
        // partitions first: a stage object is visible only once what it lists is
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
        let inv = self.inventory()?;
        let mut uploads: BTreeMap<String, Upload> = BTreeMap::new();
        let mut todo: Vec<Vec<(String, Manifest)>> = Vec::new();
        for group in [parts, stages] {
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
        let total: u64 = uploads.values().map(|u| u.size).sum();
        let bar = self.bar(total, "push");
        // a folder remote is often a share of several users: what this push creates must be
        // readable by all and its folders writable by the group, whatever the user's umask
        // (pulls verify every byte, so a member replacing a file cannot go unnoticed)
        let _umask = self.url.starts_with("file://").then(|| Umask::set(0o002));
        report.files_sent = uploads.len();
        report.bytes_sent = total;
        self.rt.block_on(async {
            stream::iter(uploads.into_values().map(Ok))
                .try_for_each_concurrent(self.jobs, |u| self.upload(u, &bar))
                .await?;
            for group in &todo {
                stream::iter(group.iter().map(Ok))
                    .try_for_each_concurrent(self.jobs, |(k, _)| async move {
                        let mpath = cache.object_dir(k).join("manifest.json");
                        let bytes = std::fs::read(&mpath).map_err(|e| CacheError::io(&mpath, e))?;
                        self.store
                            .put(&self.manifest_path(k), PutPayload::from(bytes))
                            .await
                            .map_err(|e| self.err("uploading a manifest", e))?;
                        Ok::<(), RemoteError>(())
                    })
                    .await?;
            }
            Ok::<(), RemoteError>(())
        })?;
        bar.finish_and_clear();
        report.pushed = todo.into_iter().flatten().map(|(k, _)| k).collect();
        Ok(report)
    }

    fn bar(&self, total: u64, verb: &str) -> indicatif::ProgressBar {
        if !self.progress || total == 0 {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(total);
        let style = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("{verb} {}", self.name));
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Uploads one file under its blake3: one PUT, or a multipart upload read part by part.
    /// The bytes are hashed on the way: a local file that no longer matches its manifest is
    /// never completed on the remote (the PUT is not sent, the multipart upload is aborted).
    async fn upload(&self, up: Upload, bar: &indicatif::ProgressBar) -> Result<(), RemoteError> {
        let dest = self.file_path(&up.blake3);
        let path = up.path.clone();
        let io = |e| RemoteError::from(CacheError::io(&up.path, e));
        let damaged = |got: &str| {
            RemoteError::from(CacheError::Damaged {
                key: up.key.clone(),
                problems: vec![format!(
                    "{} content changed (blake3 {} → {})",
                    up.path.display(),
                    short(&up.blake3),
                    short(got)
                )],
            })
        };
        let data = tokio::task::spawn_blocking(move || map_file(&path))
            .await
            .map_err(|e| io(std::io::Error::other(e)))?
            .map_err(io)?;
        if data.len() as u64 != up.size {
            return Err(damaged(&format!("{} bytes", data.len())));
        }
        // one blocking task hashes one slice: the runtime's workers only drive connections
        let hash = |h: blake3::Hasher, part: bytes::Bytes| async move {
            tokio::task::spawn_blocking(move || {
                let mut h = h;
                h.update(&part);
                h
            })
            .await
            .map_err(|e| io(std::io::Error::other(e)))
        };
        if up.size <= self.multipart_bytes {
            let got = hash(blake3::Hasher::new(), data.clone()).await?.finalize();
            let got = got.to_hex().to_string();
            if got != up.blake3 {
                return Err(damaged(&got));
            }
            self.store
                .put(&dest, PutPayload::from(data))
                .await
                .map_err(|e| self.err("uploading a file", e))?;
            bar.inc(up.size);
            return Ok(());
        }
        let mut upload = self
            .store
            .put_multipart(&dest)
            .await
            .map_err(|e| self.err("starting a multipart upload", e))?;
        let mut h = blake3::Hasher::new();
        // parts are sent by spawned tasks, so they progress while the next part is hashed
        let mut sending: tokio::task::JoinSet<object_store::Result<u64>> =
            tokio::task::JoinSet::new();
        let mut failed = None;
        let joined = |r: Result<object_store::Result<u64>, tokio::task::JoinError>| match r {
            Ok(Ok(n)) => {
                bar.inc(n);
                None
            }
            Ok(Err(e)) => Some(self.err("uploading a part", e)),
            Err(e) => Some(RemoteError::Transfer {
                remote: self.name.clone(),
                what: "uploading a part".into(),
                reason: e.to_string(),
            }),
        };
        for at in (0..data.len()).step_by(PART_BYTES) {
            let slice = data.slice(at..(at + PART_BYTES).min(data.len()));
            let len = slice.len() as u64;
            h = match hash(std::mem::take(&mut h), slice.clone()).await {
                Ok(h) => h,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            let sent = upload.put_part(PutPayload::from(slice));
            sending.spawn(async move { sent.await.map(|()| len) });
            while sending.len() >= PARTS_IN_FLIGHT && failed.is_none() {
                match sending.join_next().await {
                    Some(r) => failed = joined(r),
                    None => break,
                }
            }
            if failed.is_some() {
                break;
            }
        }
        while failed.is_none() {
            match sending.join_next().await {
                Some(r) => failed = joined(r),
                None => break,
            }
        }
        drop(sending);
        if failed.is_none() {
            let got = h.finalize().to_hex().to_string();
            if got != up.blake3 {
                failed = Some(damaged(&got));
            }
        }
        if let Some(e) = failed {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload
            .complete()
            .await
            .map_err(|e| self.err("completing a multipart upload", e))?;
        Ok(())
    }

    /// Downloads the objects of `keys` (and the partitions they list) the local cache lacks,
    /// verifying every file before committing.
    pub fn pull(&self, cache: &Cache, keys: &[String]) -> Result<PullReport, RemoteError> {
        let mut report = PullReport::default();
        let inv = self.inventory()?;
        let mut want = Vec::new();
        for k in keys {
            if cache.has(k) {
                report.present += 1;
                // its partitions may be missing (gc'd separately): fetch those too
                if let Ok(m) = cache.manifest(k) {
                    want.extend(m.partitions.iter().filter(|p| !cache.has(p)).cloned());
                }
            } else if inv.objects.contains(k) {
                want.push(k.clone());
            } else {
                report.missing_remotely.push(k.clone());
            }
        }
        self.rt
            .block_on(self.fetch_all(cache, want, &mut report, false))?;
        // what an interrupted pull left and this one did not adopt
        cache.clean_stale_tmp();
        Ok(report)
    }

    /// Fetches `keys`: manifests, then their partitions' manifests, then all files at once.
    /// `held`: the caller holds the lock of every key in `keys` (the executor's hook).
    async fn fetch_all(
        &self,
        cache: &Cache,
        keys: Vec<String>,
        report: &mut PullReport,
        held: bool,
    ) -> Result<(), RemoteError> {
        let mut locks: Vec<KeyLock> = Vec::new();
        let mut objects: Vec<(String, Manifest)> = Vec::new();
        let mut seen = BTreeSet::new();
        let mut queue: Vec<(String, bool)> = keys.into_iter().map(|k| (k, held)).collect();
        while !queue.is_empty() {
            let batch: Vec<(String, bool)> = std::mem::take(&mut queue)
                .into_iter()
                .filter(|(k, _)| seen.insert(k.clone()))
                .collect();
            let fetched: Vec<(String, bool, Fetched)> = stream::iter(batch)
                .map(|(k, held)| async move {
                    let m = self.get_manifest(&k).await;
                    (k, held, m)
                })
                .buffer_unordered(self.jobs * 4)
                .collect()
                .await;
            for (k, held, m) in fetched {
                let m = match m {
                    None => {
                        report.missing_remotely.push(k);
                        continue;
                    }
                    Some(Err(why)) => {
                        report.corrupt.push((k, why));
                        continue;
                    }
                    Some(Ok(m)) => m,
                };
                if !held {
                    locks.push(cache.lock(&k)?);
                    if cache.has(&k) {
                        report.present += 1;
                        locks.pop();
                        continue;
                    }
                }
                queue.extend(
                    m.partitions
                        .iter()
                        .filter(|p| !cache.has(p))
                        .map(|p| (p.clone(), false)),
                );
                objects.push((k, m));
            }
        }
        // one download per distinct file; the other places it goes are hard links
        let mut tmps: Vec<PathBuf> = Vec::new();
        let mut dests: BTreeMap<String, (u64, Vec<PathBuf>, Vec<usize>)> = BTreeMap::new();
        for (i, (k, m)) in objects.iter().enumerate() {
            let tmp = cache.new_tmp(k)?;
            // what an interrupted pull of this key completed is not downloaded again
            let adopted = cache.adopt_stale_tmp(k, &tmp, &m.files);
            report.resumed_files += adopted.len();
            for f in m.files.iter().filter(|f| !adopted.contains(&f.path)) {
                let e = dests
                    .entry(f.blake3.clone())
                    .or_insert((f.size, Vec::new(), Vec::new()));
                e.1.push(tmp.join(&f.path));
                e.2.push(i);
            }
            tmps.push(tmp);
        }
        let total: u64 = dests.values().map(|d| d.0).sum();
        report.bytes_received += total;
        let bar = self.bar(total, "pull");
        let results: Vec<(Vec<usize>, Result<(), Problem>)> = stream::iter(dests)
            .map(|(h, (size, paths, owners))| {
                let bar = &bar;
                async move {
                    let r = self.download(&h, size, &paths, bar).await;
                    (owners, r)
                }
            })
            .buffer_unordered(self.jobs)
            .collect()
            .await;
        bar.finish_and_clear();
        let mut bad: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for (owners, r) in results {
            match r {
                Ok(()) => {}
                Err(Problem::Transfer(e)) => {
                    for t in &tmps {
                        cache.discard_tmp(t);
                    }
                    return Err(e);
                }
                Err(Problem::Bad(why)) => {
                    for o in owners {
                        bad.entry(o).or_default().push(why.clone());
                    }
                }
            }
        }
        // the verified objects are committed together: one batch of fsyncs for all of them
        let mut good: Vec<(PathBuf, Manifest)> = Vec::new();
        for (i, ((k, m), tmp)) in objects.into_iter().zip(tmps).enumerate() {
            if let Some(problems) = bad.get(&i) {
                cache.discard_tmp(&tmp);
                report.corrupt.push((k, problems.join("; ")));
                continue;
            }
            good.push((tmp, m));
        }
        if let Err(e) = cache.commit_all(&good) {
            for (t, _) in &good {
                cache.discard_tmp(t);
            }
            return Err(e.into());
        }
        report.pulled.extend(good.into_iter().map(|(_, m)| m.key));
        drop(locks);
        Ok(())
    }

    /// Reads and checks a remote manifest: `None` when there is none, `Some(Err)` when it is
    /// unreadable or unsafe (a path leaving the object folder), with the reason.
    async fn get_manifest(&self, key: &str) -> Fetched {
        let got = match self.store.get(&self.manifest_path(key)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return None,
            Err(e) => return Some(Err(self.err("reading a manifest", e).to_string())),
        };
        let bytes = match got.bytes().await {
            Ok(b) => b,
            Err(e) => return Some(Err(self.err("reading a manifest", e).to_string())),
        };
        Some(check_manifest(key, &bytes))
    }

    /// Streams the file `blake3` to `paths[0]`, checking size and hash, then hard-links (or
    /// copies) it to the other paths.
    async fn download(
        &self,
        blake3: &str,
        size: u64,
        paths: &[PathBuf],
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Problem> {
        let first = &paths[0];
        let name = first
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        self.read_file(blake3, size, &name, Some(first), bar)
            .await?;
        for p in &paths[1..] {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Problem::local(parent, e))?;
            }
            if std::fs::hard_link(first, p).is_err() {
                std::fs::copy(first, p).map_err(|e| Problem::local(p, e))?;
            }
        }
        Ok(())
    }

    /// Reads the remote file `blake3` (shown as `name`), writing it to `out` when given, and
    /// checks its size and hash against the manifest's.
    async fn read_file(
        &self,
        blake3: &str,
        size: u64,
        name: &str,
        out: Option<&Path>,
        bar: &indicatif::ProgressBar,
    ) -> Result<(), Problem> {
        let got = match self.store.get(&self.file_path(blake3)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Problem::Bad(format!("file {name} is missing")))
            }
            Err(e) => return Err(Problem::Transfer(self.err("downloading a file", e))),
        };
        // the file is written and hashed on a blocking thread, fed by this task: disk writes
        // never stall the runtime's workers (which drive every connection)
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(RECEIVE_QUEUE);
        let out_path = out.map(Path::to_path_buf);
        let sink = tokio::task::spawn_blocking(move || -> Result<String, Problem> {
            let mut file = match &out_path {
                Some(p) => {
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Problem::local(parent, e))?;
                    }
                    Some((
                        std::fs::File::create(p).map_err(|e| Problem::local(p, e))?,
                        p,
                    ))
                }
                None => None,
            };
            let mut h = blake3::Hasher::new();
            let (mut written, mut flushed) = (0u64, 0u64);
            while let Some(chunk) = rx.blocking_recv() {
                h.update(&chunk);
                if let Some((f, p)) = file.as_mut() {
                    f.write_all(&chunk).map_err(|e| Problem::local(p, e))?;
                    written += chunk.len() as u64;
                    if written - flushed >= WRITEBACK_BYTES {
                        start_writeback(f, flushed, written - flushed);
                        flushed = written;
                    }
                }
            }
            Ok(h.finalize().to_hex().to_string())
        });
        let mut n = 0u64;
        let mut body = got.into_stream();
        let mut failed = None;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failed = Some(Problem::Transfer(self.err("downloading a file", e)));
                    break;
                }
            };
            n += chunk.len() as u64;
            if n > size {
                failed = Some(Problem::Bad(format!(
                    "file {name} is longer than the manifest's {size} bytes"
                )));
                break;
            }
            let len = chunk.len() as u64;
            if tx.send(chunk).await.is_err() {
                break; // the sink failed: its error is returned below
            }
            bar.inc(len);
        }
        drop(tx);
        let hashed = sink.await.map_err(|e| {
            Problem::Transfer(RemoteError::Transfer {
                remote: self.name.clone(),
                what: "writing a downloaded file".into(),
                reason: e.to_string(),
            })
        })?;
        if let Some(p) = failed {
            return Err(p);
        }
        let got = hashed?;
        if n != size {
            return Err(Problem::Bad(format!(
                "file {name} has {n} bytes, the manifest says {size} (truncated)"
            )));
        }
        if got != blake3 {
            return Err(Problem::Bad(format!(
                "file {name} content does not match the manifest (blake3 {} → {})",
                short(blake3),
                short(&got)
            )));
        }
        Ok(())
    }

    /// Checks every object of the remote: its manifest parses and names its key, and every
    /// file it lists is there with its size and blake3 (each file downloaded and hashed once).
    /// Returns the number of objects checked and the problems by key.
    pub fn verify(&self) -> Result<(usize, Vec<(String, String)>), RemoteError> {
        let inv = self.inventory()?;
        let keys: Vec<String> = inv.objects.iter().cloned().collect();
        self.rt.block_on(async {
            let manifests: Vec<(String, Fetched)> = stream::iter(keys)
                .map(|k| async move {
                    let m = self.get_manifest(&k).await;
                    (k, m)
                })
                .buffer_unordered(self.jobs * 4)
                .collect()
                .await;
            let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut by_file: BTreeMap<String, (u64, String, Vec<String>)> = BTreeMap::new();
            for (k, m) in &manifests {
                match m {
                    Some(Ok(m)) => {
                        for f in &m.files {
                            match inv.files.get(&f.blake3) {
                                None => problems
                                    .entry(k.clone())
                                    .or_default()
                                    .push(format!("file {} is missing", f.path)),
                                Some(&s) if s != f.size => {
                                    problems.entry(k.clone()).or_default().push(format!(
                                        "file {} has {s} bytes, the manifest says {}",
                                        f.path, f.size
                                    ))
                                }
                                Some(_) => by_file
                                    .entry(f.blake3.clone())
                                    .or_insert((f.size, f.path.clone(), Vec::new()))
                                    .2
                                    .push(k.clone()),
                            }
                        }
                    }
                    Some(Err(why)) => problems.entry(k.clone()).or_default().push(why.clone()),
                    None => problems
                        .entry(k.clone())
                        .or_default()
                        .push("manifest vanished while verifying".into()),
                }
            }
            let total = by_file.values().map(|f| f.0).sum();
            let bar = self.bar(total, "verify");
            let hashed: Vec<(Vec<String>, Option<String>)> = stream::iter(by_file)
                .map(|(h, (size, path, owners))| {
                    let bar = &bar;
                    async move {
                        let r = self.read_file(&h, size, &path, None, bar).await;
                        (owners, r.err().map(|p| p.to_string()))
                    }
                })
                .buffer_unordered(self.jobs)
                .collect()
                .await;
            bar.finish_and_clear();
            for (owners, r) in hashed {
                if let Some(why) = r {
                    for o in owners {
                        problems.entry(o).or_default().push(why.clone());
                    }
                }
            }
            Ok((
                manifests.len(),
                problems
                    .into_iter()
                    .map(|(k, v)| (k, v.join("; ")))
                    .collect(),
            ))
        })
    }
}

impl Fetcher for Remote {
    fn fetch(&self, cache: &Cache, key: &str) -> Result<bool, RemoteError> {
        let mut report = PullReport::default();
        self.rt
            .block_on(self.fetch_all(cache, vec![key.to_string()], &mut report, true))?;
        let mut warn = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        for (k, why) in &report.corrupt {
            warn.push(format!(
                "remote {}: object {} is corrupt ({why}); it was not used",
                self.name,
                short(k)
            ));
        }
        Ok(report.pulled.iter().any(|k| k == key))
    }
}

/// What went wrong with one remote file.
#[derive(Debug)]
enum Problem {
    /// The transfer failed (network, server, local disk): stop.
    Transfer(RemoteError),
    /// The remote's copy is wrong (missing, truncated, other bytes): refuse its objects.
    Bad(String),
}

impl Problem {
    fn local(path: &Path, e: std::io::Error) -> Problem {
        Problem::Transfer(CacheError::io(path, e).into())
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Transfer(e) => write!(f, "{e}"),
            Problem::Bad(s) => f.write_str(s),
        }
    }
}

/// Parses a remote manifest and checks that it names `key` and only safe relative paths.
fn check_manifest(key: &str, bytes: &[u8]) -> Result<Manifest, String> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest unreadable: {e}"))?;
    if m.key != key {
        return Err(format!(
            "manifest says key {} but is stored as {}",
            short(&m.key),
            short(key)
        ));
    }
    for f in &m.files {
        let p = Path::new(&f.path);
        let safe = !f.path.is_empty()
            && p.components().all(|c| matches!(c, Component::Normal(_)))
            && f.path != "manifest.json";
        if !safe {
            return Err(format!("manifest lists an unsafe path {:?}", f.path));
        }
        if !is_hash(&f.blake3) {
            return Err(format!("manifest lists a bad blake3 for {}", f.path));
        }
    }
    Ok(m)
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

fn short(h: &str) -> &str {
    super::cache::short(h)
}

fn is_hash(s: &str) -> bool {
    super::cache::is_key(s)
}

/// The S3 client: standard AWS environment variables, then the profile of
/// `~/.aws/credentials` / `~/.aws/config`, then the remote's `endpoint`/`region`; and whether
/// any credentials were found there.
fn s3_store(
    spec: &RemoteSpec,
    bucket: &str,
) -> Result<(object_store::aws::AmazonS3, bool), RemoteError> {
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
    b.build()
        .map(|s| (s, found))
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

/// Turns a store error into what the user must fix: the endpoint, the credentials, the bucket.
fn classify(remote: &str, url: &str, what: &str, e: object_store::Error) -> RemoteError {
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
