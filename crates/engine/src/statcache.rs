//! The stat cache: (path, device, inode, size, mtime, ctime) → blake3 of the file's bytes.
//!
//! It exists so an unchanged 100 GB input tree is re-checked with `stat` calls, not re-read.
//! It only ever *skips* hashing; freshness is still decided by content hash. It is local to a
//! machine (inodes are), so it lives in the workspace (`.luna/statcache.json`), never in a
//! shared cache. Entries hashed within two seconds of the file's mtime are not stored (racy
//! clean: the file may still change within the same timestamp tick). Saving merges with what
//! another process may have written meanwhile and replaces the file atomically (rename).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::fingerprint::hash_file;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    blake3: String,
}

/// A process-wide stat cache backed by a JSON file (or disabled).
#[derive(Debug)]
pub struct StatCache {
    file: Option<PathBuf>,
    entries: Mutex<HashMap<PathBuf, Entry>>,
    dirty: Mutex<bool>,
}

impl StatCache {
    /// A cache that never remembers anything (every file is re-read).
    pub fn disabled() -> StatCache {
        StatCache {
            file: None,
            entries: Mutex::new(HashMap::new()),
            dirty: Mutex::new(false),
        }
    }

    /// Loads the cache at `file`; an unreadable or missing file gives an empty cache.
    pub fn load(file: PathBuf) -> StatCache {
        let entries = fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        StatCache {
            file: Some(file),
            entries: Mutex::new(entries),
            dirty: Mutex::new(false),
        }
    }

    /// The blake3 of `path`, from the cache when its stamp is unchanged.
    pub fn hash(&self, path: &Path, meta: &fs::Metadata) -> std::io::Result<String> {
        let stamp = Stamp::of(meta);
        // Keyed by the path as given (absolute: inputs are resolved against the workspace);
        // canonicalizing every file would cost a readlink per path component per run.
        let key = path.to_path_buf();
        if self.file.is_some() {
            if let Some(e) = lock(&self.entries).get(&key) {
                if e.stamp == stamp {
                    return Ok(e.blake3.clone());
                }
            }
        }
        let hash = hash_file(path, meta.len())?;
        if self.file.is_some() {
            let now_ns = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i128)
                .unwrap_or(0);
            if now_ns - stamp.mtime_ns > 2_000_000_000 {
                lock(&self.entries).insert(
                    key,
                    Entry {
                        stamp,
                        blake3: hash.clone(),
                    },
                );
                *lock(&self.dirty) = true;
            }
        }
        Ok(hash)
    }

    /// Writes new entries back (merged with the file's current content). Errors are ignored:
    /// a stat cache that cannot be saved only costs re-hashing next time.
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        if !*lock(&self.dirty) {
            return;
        }
        let mut merged: HashMap<PathBuf, Entry> = fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        merged.extend(
            lock(&self.entries)
                .iter()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        // Forget files that no longer exist, so the cache does not grow forever.
        merged.retain(|p, _| p.exists());
        // best effort: a lost stat cache only costs re-hashing (a folder that cannot be made
        // fails the write below, which is ignored for that reason)
        if let Some(dir) = file.parent() {
            let _ = fs::create_dir_all(dir);
        }
        if let Ok(bytes) = serde_json::to_vec(&merged) {
            let _ = super::cache::write_durable(file, &bytes);
        }
        *lock(&self.dirty) = false;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
