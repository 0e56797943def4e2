//! The content-addressed artifact store.
//!
//! ```text
//! <cache>/objects/<2 hex>/<key>/      immutable artifact: output files + manifest.json
//! <cache>/tmp/<key>.<host>.<pid>.<n>/ a stage's output while it runs
//! <cache>/locks/<key>.lock            flock(2) per key: one computation per key at a time
//! <cache>/quarantine/<key>.<time>/    objects `cache verify` found corrupt
//! <cache>/resume/<key>/               checkpoints of an unfinished stage (deleted on commit)
//! ```
//!
//! **Atomic commit.** A stage writes into a fresh `tmp/` directory. When it succeeds, every
//! file is hashed into the manifest, files and directory are fsync'd, and the directory is
//! renamed into `objects/`. A crash (or `kill -9`) at any point leaves at most a `tmp/`
//! directory, never a half-visible object; `tmp/` directories of processes that no longer run
//! on this host are removed by the next run.
//!
//! **Locks.** Before computing key K a run takes `locks/K.lock` with `flock`; after getting
//! it, it checks again whether `objects/K` exists (another run may have made it meanwhile) and
//! reuses it. The kernel drops the lock when a process dies, so locks never go stale, and two
//! `luna run`s on one cache compute each stage once in total. flock works on local file
//! systems and on NFSv4; on file systems where it does not, runs still never corrupt the store
//! (rename is atomic), they may only compute a stage twice.
//!
//! **Objects are never modified.** gc deletes whole objects; verify moves corrupt ones aside.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::fingerprint::{hash_file, InputFingerprint};

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// One file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the artifact directory.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// blake3 hex.
    pub blake3: String,
}

/// `manifest.json` of an artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub luna_manifest: u32,
    /// The artifact's key.
    pub key: String,
    /// Stage that produced it (informational; not part of the key).
    pub stage: String,
    /// Pipeline that produced it (informational).
    pub pipeline: String,
    /// Kind name.
    pub kind: String,
    /// Kind version.
    pub version: u32,
    /// Semantic parameters.
    pub params: serde_json::Value,
    /// Upstream keys by stage name.
    pub upstream: BTreeMap<String, String>,
    /// External inputs.
    pub inputs: Vec<InputFingerprint>,
    /// Keys of per-item partition objects this artifact uses (kept alive by gc with it).
    #[serde(default)]
    pub partitions: Vec<String>,
    /// Files with hashes.
    pub files: Vec<FileEntry>,
    /// luna version that wrote it.
    pub luna_version: String,
    /// RFC 3339 creation time.
    pub created: String,
    /// Seconds the stage took.
    pub duration_s: f64,
}

impl Manifest {
    /// Total bytes of the artifact's files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A held per-key lock; released on drop (or by the kernel if the process dies).
#[derive(Debug)]
pub struct KeyLock {
    _file: fs::File,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Cache {
    /// Opens (creating if needed) a cache rooted at `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        for sub in ["objects", "tmp", "locks"] {
            let p = root.join(sub);
            fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
        }
        Ok(Cache {
            root: root.to_path_buf(),
        })
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the object with `key` (whether or not it exists).
    pub fn object_dir(&self, key: &str) -> PathBuf {
        self.root
            .join("objects")
            .join(&key[..2.min(key.len())])
            .join(key)
    }

    /// Scratch directory for resumable work on `key` (see `StageContext::resume_dir`).
    pub fn resume_dir(&self, key: &str) -> PathBuf {
        self.root.join("resume").join(key)
    }

    /// Whether a complete object with `key` exists.
    pub fn has(&self, key: &str) -> bool {
        self.object_dir(key).join("manifest.json").is_file()
    }

    /// Reads the manifest of `key`.
    pub fn manifest(&self, key: &str) -> Result<Manifest, CacheError> {
        read_manifest(&self.object_dir(key).join("manifest.json"))
    }

    /// Takes the per-key lock, waiting for another process that holds it.
    pub fn lock(&self, key: &str) -> Result<KeyLock, CacheError> {
        self.lock_impl(key, true)
            .map(|l| l.expect("blocking flock returns a lock or an error"))
    }

    /// Takes the per-key lock if it is free.
    pub fn try_lock(&self, key: &str) -> Result<Option<KeyLock>, CacheError> {
        self.lock_impl(key, false)
    }

    fn lock_impl(&self, key: &str, wait: bool) -> Result<Option<KeyLock>, CacheError> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CacheError::io(&path, e))?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(KeyLock { _file: file }));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
                _ => return Err(CacheError::io(&path, err)),
            }
        }
    }

    /// Creates a fresh temporary output directory for computing `key`.
    pub fn new_tmp(&self, key: &str) -> Result<PathBuf, CacheError> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = self.root.join("tmp").join(format!(
            "{key}.{}.{}.{n}{nanos}",
            super::runs::hostname(),
            std::process::id()
        ));
        fs::create_dir_all(&dir).map_err(|e| CacheError::io(&dir, e))?;
        Ok(dir)
    }

    /// Hashes the files of `tmp`, writes the manifest and renames `tmp` into `objects/`.
    /// If the object appeared meanwhile, `tmp` is discarded and the existing object kept.
    /// Entries already in `manifest.files` are trusted when the file's size matches (files
    /// hard-linked from other immutable objects, whose hashes are known); the rest are hashed.
    pub fn commit(&self, tmp: &Path, mut manifest: Manifest) -> Result<PathBuf, CacheError> {
        manifest.files = hash_tree(tmp, &manifest.files)?;
        let mpath = tmp.join("manifest.json");
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::BadManifest {
            path: mpath.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&mpath, bytes).map_err(|e| CacheError::io(&mpath, e))?;
        sync_tree(tmp)?;
        let dest = self.object_dir(&manifest.key);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| CacheError::io(parent, e))?;
        }
        if self.has(&manifest.key) {
            let _ = fs::remove_dir_all(tmp);
            return Ok(dest);
        }
        if dest.exists() {
            // A directory without a manifest is debris from a foreign tool; move it aside.
            self.quarantine(&manifest.key)?;
        }
        fs::rename(tmp, &dest).map_err(|e| CacheError::io(&dest, e))?;
        if let Some(parent) = dest.parent() {
            if let Ok(d) = fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(dest)
    }

    /// Like [`Cache::commit`], but an existing object with the same key is replaced (`--force`
    /// re-runs a stage whose output may differ, e.g. training with a new random seed). The old
    /// object is moved aside into `tmp/` (so a crash leaves it to `clean_stale_tmp`), the new
    /// one renamed in, then the old one deleted; if the commit fails the old one is put back.
    /// The caller holds the key lock, so no other luna computes or replaces it meanwhile.
    pub fn commit_replacing(&self, tmp: &Path, manifest: Manifest) -> Result<PathBuf, CacheError> {
        let dest = self.object_dir(&manifest.key);
        if !dest.exists() {
            return self.commit(tmp, manifest);
        }
        let aside = self.new_tmp(&manifest.key)?;
        fs::remove_dir(&aside).map_err(|e| CacheError::io(&aside, e))?;
        fs::rename(&dest, &aside).map_err(|e| CacheError::io(&dest, e))?;
        match self.commit(tmp, manifest) {
            Ok(d) => {
                let _ = fs::remove_dir_all(&aside);
                Ok(d)
            }
            Err(e) => {
                let _ = fs::rename(&aside, &dest);
                Err(e)
            }
        }
    }

    /// Removes `tmp/` directories left by processes of this host that no longer run.
    pub fn clean_stale_tmp(&self) {
        let host = super::runs::hostname();
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let mut parts = name.split('.');
            let (_key, h, pid) = (parts.next(), parts.next(), parts.next());
            let (Some(h), Some(pid)) = (h, pid.and_then(|p| p.parse::<i32>().ok())) else {
                continue;
            };
            // hostnames may contain dots; compare only the first label then
            if host.split('.').next() != Some(h) {
                continue;
            }
            // SAFETY: kill with signal 0 only checks whether the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
            if !alive {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Every object key in the cache, sorted.
    pub fn keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(rd) = fs::read_dir(self.root.join("objects")) else {
            return out;
        };
        for shard in rd.flatten() {
            if let Ok(rd2) = fs::read_dir(shard.path()) {
                out.extend(
                    rd2.flatten()
                        .map(|e| e.file_name().to_string_lossy().to_string()),
                );
            }
        }
        out.sort();
        out
    }

    /// Re-hashes an object's files against its manifest; returns the problems found.
    pub fn verify(&self, key: &str) -> Vec<String> {
        let dir = self.object_dir(key);
        let m = match self.manifest(key) {
            Ok(m) => m,
            Err(e) => return vec![e.to_string()],
        };
        let mut problems = Vec::new();
        if m.key != key {
            problems.push(format!(
                "manifest says key {} but the object is stored as {key}",
                m.key
            ));
        }
        for f in &m.files {
            let p = dir.join(&f.path);
            match fs::metadata(&p) {
                Err(_) => problems.push(format!("{} is missing", f.path)),
                Ok(meta) if meta.len() != f.size => problems.push(format!(
                    "{} has {} bytes, manifest says {}",
                    f.path,
                    meta.len(),
                    f.size
                )),
                Ok(meta) => match hash_file(&p, meta.len()) {
                    Ok(h) if h != f.blake3 => problems.push(format!(
                        "{} content changed (blake3 {} → {})",
                        f.path,
                        short(&f.blake3),
                        short(&h)
                    )),
                    Ok(_) => {}
                    Err(e) => problems.push(format!("{}: {e}", f.path)),
                },
            }
        }
        problems
    }

    /// Moves an object to `quarantine/`.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf, CacheError> {
        let q = self.root.join("quarantine");
        fs::create_dir_all(&q).map_err(|e| CacheError::io(&q, e))?;
        let dest = q.join(format!(
            "{key}.{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        let src = self.object_dir(key);
        fs::rename(&src, &dest).map_err(|e| CacheError::io(&src, e))?;
        Ok(dest)
    }

    /// Deletes an object; returns the bytes freed.
    pub fn remove(&self, key: &str) -> Result<u64, CacheError> {
        let dir = self.object_dir(key);
        let size = dir_size(&dir);
        fs::remove_dir_all(&dir).map_err(|e| CacheError::io(&dir, e))?;
        let _ = fs::remove_file(self.root.join("locks").join(format!("{key}.lock")));
        Ok(size)
    }
}

/// Reads and parses a manifest file.
pub fn read_manifest(path: &Path) -> Result<Manifest, CacheError> {
    let bytes = fs::read(path).map_err(|e| CacheError::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| CacheError::BadManifest {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// First 8 hex digits of a hash, for messages.
pub fn short(h: &str) -> &str {
    &h[..8.min(h.len())]
}

/// Total bytes of the regular files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

fn hash_tree(dir: &Path, known: &[FileEntry]) -> Result<Vec<FileEntry>, CacheError> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let e = e.map_err(|e| CacheError::io(dir, std::io::Error::other(e.to_string())))?;
        if e.file_type().is_file() && e.path() != dir.join("manifest.json") {
            files.push(e.into_path());
        }
    }
    files
        .par_iter()
        .map(|p| {
            let size = fs::metadata(p).map_err(|e| CacheError::io(p, e))?.len();
            let rel = p
                .strip_prefix(dir)
                .unwrap_or(p)
                .to_string_lossy()
                .to_string();
            if let Some(k) = known.iter().find(|k| k.path == rel && k.size == size) {
                return Ok(k.clone());
            }
            let blake3 = hash_file(p, size).map_err(|e| CacheError::io(p, e))?;
            Ok(FileEntry {
                path: rel,
                size,
                blake3,
            })
        })
        .collect()
}

fn sync_tree(dir: &Path) -> Result<(), CacheError> {
    for e in walkdir::WalkDir::new(dir)
        .contents_first(true)
        .into_iter()
        .flatten()
    {
        if let Ok(f) = fs::File::open(e.path()) {
            let _ = f.sync_all();
        }
    }
    Ok(())
}
