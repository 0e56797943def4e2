//! Pull: manifests first (an object's partitions after it), then every distinct file once,
//! streamed into the cache's `tmp/` while hashed, verified against the manifest and
//! committed together; and the reading of one remote file that `verify` shares.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use futures::stream::{self, StreamExt};
use object_store::ObjectStoreExt;

use super::super::cache::{check_key, is_key, Cache, KeyLock, Manifest};
use super::super::error::{CacheError, RemoteError};
use super::{check_manifest, short, Progress, PullReport, Remote, RECEIVE_QUEUE, WRITEBACK_BYTES};

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

/// A remote manifest as read: `None` when absent, `Some(Err(why))` when refused.
pub(super) type Fetched = Option<Result<Manifest, String>>;

/// What went wrong with one remote file.
#[derive(Debug)]
pub(super) enum Problem {
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

impl Remote {
    /// Downloads the objects of `keys` (and the partitions they list) the local cache lacks,
    /// verifying every file before committing.
    pub fn pull(&self, cache: &Cache, keys: &[String]) -> Result<PullReport, RemoteError> {
        let mut report = PullReport::default();
        let inv = self.inventory()?;
        let mut want = Vec::new();
        for k in keys {
            if let Err(e) = check_key(k, &format!("remote {}", self.name)) {
                report.corrupt.push((k.clone(), e.to_string()));
            } else if cache.has(k) {
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
    pub(super) async fn fetch_all(
        &self,
        cache: &Cache,
        keys: Vec<String>,
        report: &mut PullReport,
        held: bool,
    ) -> Result<(), RemoteError> {
        let (objects, locks) = self.manifests(cache, keys, report, held).await?;
        let (tmps, dests) = prepare(cache, &objects, report)?;
        let total: u64 = dests.values().map(|d| d.0).sum();
        report.bytes_received += total;
        let bar = self.progress("pull", total, dests.len());
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
        bar.finish();
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
        commit_verified(cache, objects, tmps, &bad, report)?;
        drop(locks);
        Ok(())
    }

    /// The manifests of `keys` and of the partitions they list that the cache lacks, each
    /// with its key's lock taken (unless `held`); missing and refused ones go to `report`.
    async fn manifests(
        &self,
        cache: &Cache,
        keys: Vec<String>,
        report: &mut PullReport,
        held: bool,
    ) -> Result<(Vec<(String, Manifest)>, Vec<KeyLock>), RemoteError> {
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
                    // a string that is not a key is never turned into a path (refused below)
                    if !is_key(&k) {
                        return (k, held, None);
                    }
                    let m = self.get_manifest(&k).await;
                    (k, held, m)
                })
                .buffer_unordered(self.jobs * 4)
                .collect()
                .await;
            for (k, held, m) in fetched {
                let m = match m {
                    _ if !is_key(&k) => {
                        let why = format!("{k:?} is not a key (64 lowercase hex digits)");
                        report.corrupt.push((k, why));
                        continue;
                    }
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
                let parts = m.partitions.iter().filter(|p| !cache.has(p));
                queue.extend(parts.map(|p| (p.clone(), false)));
                objects.push((k, m));
            }
        }
        Ok((objects, locks))
    }

    /// Reads and checks a remote manifest: `None` when there is none, `Some(Err)` when it is
    /// unreadable or unsafe (a path leaving the object folder), with the reason.
    pub(super) async fn get_manifest(&self, key: &str) -> Fetched {
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
        bar: &Progress,
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
        bar.file_done();
        Ok(())
    }

    /// Reads the remote file `blake3` (shown as `name`), writing it to `out` when given, and
    /// checks its size and hash against the manifest's.
    pub(super) async fn read_file(
        &self,
        blake3: &str,
        size: u64,
        name: &str,
        out: Option<&Path>,
        bar: &Progress,
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
}

/// One download per distinct file: blake3 → (size, the paths it goes to, the indices of the
/// objects that hold it); the other places a file goes are hard links.
type Dests = BTreeMap<String, (u64, Vec<PathBuf>, Vec<usize>)>;

/// A tmp dir per object (adopting what an interrupted pull of the key completed: not
/// downloaded again) and the files to download into them.
fn prepare(
    cache: &Cache,
    objects: &[(String, Manifest)],
    report: &mut PullReport,
) -> Result<(Vec<PathBuf>, Dests), RemoteError> {
    let mut tmps: Vec<PathBuf> = Vec::new();
    let mut dests: Dests = BTreeMap::new();
    for (i, (k, m)) in objects.iter().enumerate() {
        let tmp = cache.new_tmp(k)?;
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
    Ok((tmps, dests))
}

/// Commits the objects none of whose files was refused, together (one batch of fsyncs for
/// all of them); the refused ones are discarded and reported as corrupt.
fn commit_verified(
    cache: &Cache,
    objects: Vec<(String, Manifest)>,
    tmps: Vec<PathBuf>,
    bad: &BTreeMap<usize, Vec<String>>,
    report: &mut PullReport,
) -> Result<(), RemoteError> {
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
    Ok(())
}
