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
//! **A remote is untrusted input.** Anyone who can write to the bucket or share can write any
//! manifest: a key, a partition key or a file path is checked before it becomes part of a
//! path (keys: 64 hex digits; files: plain relative paths, never `manifest.json`), and an
//! object whose manifest fails is refused as corrupt with the reason, never committed. A
//! shard is a key's first two characters, never a split byte.
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

use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;

use super::cache::{Cache, Manifest};
use super::error::RemoteError;
use super::events::{Event, EventSink, Transfer};

mod config;
mod error;
mod pull;
mod push;
mod uploads;
mod verify;

pub use uploads::{interrupt, StaleUpload};

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
    /// Where transfer progress goes ([`Event::Transfer`]; dropped by default).
    events: Mutex<EventSink>,
    /// No credentials were found in the environment or the AWS files (the client then asks
    /// the instance metadata service, which only exists on cloud machines).
    no_credentials: bool,
    /// The S3 client itself (an S3 remote), for the calls `ObjectStore` lacks (uploads.rs).
    s3: Option<object_store::aws::AmazonS3>,
    /// Its region (signing those calls).
    region: String,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Remote({} {})", self.name, self.url)
    }
}

impl Remote {
    /// Opens a remote (no request is sent: [`Remote::inventory`] is the first).
    pub fn open(spec: &RemoteSpec) -> Result<Remote, RemoteError> {
        let bad = |reason: String| RemoteError::BadUrl {
            remote: spec.name.clone(),
            url: spec.url.clone(),
            reason,
        };
        let mut no_credentials = false;
        let (mut s3, mut region) = (None, String::new());
        let (store, prefix): (Arc<dyn ObjectStore>, String) =
            if let Some(rest) = spec.url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("no bucket name after s3://".into()));
                }
                let (store, found, r) = config::s3_store(spec, bucket)?;
                no_credentials = !found;
                (s3, region) = (Some(store.clone()), r);
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
            events: Mutex::new(EventSink::None),
            no_credentials,
            s3,
            region,
        })
    }

    /// The remote's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends the progress of transfers to `sink` as [`Event::Transfer`] (default: nowhere);
    /// the CLI's console renders them.
    pub fn set_events(&self, sink: EventSink) {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// The progress of a transfer of `total_bytes` in `total_files` files.
    fn progress(&self, verb: &'static str, total_bytes: u64, total_files: usize) -> Progress {
        let sink = self
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Progress {
            sink,
            state: Mutex::new((
                Transfer {
                    verb,
                    remote: self.name.clone(),
                    bytes: 0,
                    total_bytes,
                    files: 0,
                    total_files: total_files as u64,
                    done: false,
                },
                None,
            )),
        }
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

    /// Where the manifest of `key` is stored (the caller checked that `key` is a key; the
    /// shard of any other string is its first two characters, never a split one).
    fn manifest_path(&self, key: &str) -> StorePath {
        self.child(&["objects", shard(key), key, "manifest.json"])
    }

    fn file_path(&self, blake3: &str) -> StorePath {
        self.child(&["files", shard(blake3), blake3])
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

/// The first two characters of `s` (the shard folder of a key or a hash).
fn shard(s: &str) -> &str {
    let end = s.char_indices().nth(2).map_or(s.len(), |(i, _)| i);
    &s[..end]
}

/// Parses a remote manifest and checks that it names `key`, only keys as partitions, and only
/// safe relative paths.
fn check_manifest(key: &str, bytes: &[u8]) -> Result<Manifest, String> {
    let m: Manifest =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest unreadable: {e}"))?;
    m.check_keys(&format!("the manifest of {}", short(key)))
        .map_err(|e| e.to_string())?;
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

/// A transfer's progress, sent as [`Event::Transfer`] at most every 100 ms (and once at the
/// end), from whichever task moved the bytes.
struct Progress {
    sink: EventSink,
    /// The totals so far and when they were last sent.
    state: Mutex<(Transfer, Option<Instant>)>,
}

impl Progress {
    /// `bytes` more moved.
    fn inc(&self, bytes: u64) {
        self.update(|t| t.bytes += bytes);
    }

    /// One more file done.
    fn file_done(&self) {
        self.update(|t| t.files += 1);
    }

    fn update(&self, f: impl FnOnce(&mut Transfer)) {
        if matches!(self.sink, EventSink::None) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s.0);
        let due =
            s.1.is_none_or(|t| t.elapsed() >= Duration::from_millis(100));
        if due {
            s.1 = Some(Instant::now());
            self.sink.send(Event::Transfer(s.0.clone()));
        }
    }

    /// The transfer has ended (whether or not it succeeded).
    fn finish(&self) {
        if matches!(self.sink, EventSink::None) {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0.done = true;
        self.sink.send(Event::Transfer(s.0.clone()));
    }
}

fn short(h: &str) -> &str {
    super::cache::short(h)
}

fn is_hash(s: &str) -> bool {
    super::cache::is_key(s)
}
