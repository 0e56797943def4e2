//! What goes into a cache key, and why.
//!
//! A stage is **fresh** exactly when an object with its key exists in the cache; the key is
//! computed before anything runs, from things known up front, so `status` and `--dry-run` cost
//! no stage work. Reasons for a re-run come from a separate diff against the last recorded
//! state (see `reason.rs`): hash decides, diff explains.
//!
//! | input                                   | in key | why                                                  |
//! |-----------------------------------------|--------|------------------------------------------------------|
//! | kind name (`uses:`)                     | yes    | different code                                       |
//! | kind `VERSION`                          | yes    | bumped when a kind's output changes for same inputs  |
//! | semantic params, canonical JSON         | yes    | keys sorted, `null`s dropped, numbers as serde_json  |
//! | upstream output identities (sorted)     | yes    | Merkle chain over outputs (see "Early cutoff")       |
//! | named inputs → upstream identities      | yes    | `model: a` vs `model: b` over the same needs differ  |
//! | external file/dir content (blake3)      | yes    | content, not mtime: `touch` re-runs nothing          |
//! | of a narrowed dir: only what is read    | yes    | a README or a new subset beside the data: no re-run  |
//! | external path as written                | no     | machine-specific; teammates share hits               |
//! | [`Hint`](super::kind::Hint) params      | no     | `device`, threads: same result, different speed      |
//! | stage name, pipeline name               | no     | renaming a stage keeps its cache                     |
//! | luna version                            | no     | kinds carry their own VERSION; recorded in manifests |
//! | mtimes, absolute paths, hostnames       | no     | never: Docker zeroes ns, paths differ per machine    |
//!
//! External inputs: a file hashes to blake3 of its bytes; a directory to blake3 over the sorted
//! list of `(relative path, size, file hash)` of every regular file below it (symlinks
//! followed), so a new file, a removed file or a changed byte all change it. Hashing is
//! parallel across files (rayon) and within large files (blake3's mmap + rayon), like `b3sum`.
//!
//! **Keys from what a stage reads.** A directory input a kind declares *narrowed*
//! ([`ExternalInput::narrowed_by`](super::kind::ExternalInput::narrowed_by), e.g. an explicit
//! `ct_root`) is keyed by the items the stage reads below it, not by the tree: the kind's
//! [`Stage::reads`](super::kind::Stage::reads) names them (e.g. the CT series of its input
//! table: the `.mhd` and its data files, or a DICOM series' slices), given the artifact of the
//! input slot that decides (`candidates`). The fingerprint is blake3 over the sorted item
//! names, each with its files' content hashes (a `listing` input: the names alone); paths never
//! enter it. Files nothing reads (a README, lung masks) and series no table names (a new
//! `subset9`) leave the key alone; a changed byte of a read CT changes it. Per-item partitions
//! are keyed by their own item's content already (`context.rs`). While the deciding artifact
//! does not exist yet (its stage will run) the last recorded fingerprint stands in and the
//! stage is keyed again once it exists (`keying.rs`). A kind that cannot say what it reads (an
//! unreadable table, a broken tree) gets the whole-tree fingerprint, and reports the problem
//! when it runs.
//!
//! **Early cutoff.** Downstream keys are made from an upstream's *output identity*, not its
//! key: normally the same string (so keys of existing caches stay), but when a stage re-runs
//! under a new key and writes byte-identical files to its previous artifact (the key the state
//! file recorded; compared by the manifests' per-file blake3), its manifest records
//! `same_output_as` = that artifact's identity, and downstream keys do not change: they stay
//! cached, reported as `upstream re-ran, output unchanged`. Since identities are known only
//! after a stage ran, `status` keys a stage below one that will run from a guess (the
//! upstream's new key) and calls it *maybe stale* when nothing else about it changed; `run`
//! keys it again when the upstream finished (`keying.rs`). In a shared cache a claim is
//! honoured only while the claimed object is present with the same files (a member cannot
//! make downstream stages reuse results of other data). Rejected: keying downstream stages by
//! the output's content hash always (every existing downstream key would change, and a
//! non-reproducible upstream, e.g. training, would give teammates different downstream keys for
//! the same upstream key) and comparing with any earlier artifact (needs an index by content;
//! the previous artifact is the case that matters: a changed parameter that does not matter).
//! Limit: a stage that reads a transitive ancestor's files without a named input is keyed by
//! its direct upstream only; kinds read ancestors through named inputs (bindings), which are in
//! the key.
//!
//! The **stat cache** (`statcache.rs`) maps (path, device, inode, size, mtime ns, ctime ns) to
//! a file hash so an unchanged tree is re-checked with `stat` calls only. An entry whose mtime
//! is within two seconds of the moment it was hashed is not stored ("racy clean", as in git):
//! the file could still change within the same timestamp tick.
//!
//! Known limits: a file changed without changing size, mtime, ctime or inode is not noticed
//! until the stat cache is dropped (`--no-stat-cache`). An input that is itself a FIFO, socket
//! or device (`annotations: /dev/zero`) is an error; special files inside an input directory are
//! ignored. Stages open the files they read with [`open_regular`], which refuses special files
//! without blocking on them, and bound their reads by the size it returns.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::error::FingerprintError;
use super::kind::ReadItem;
use super::statcache::StatCache;

/// Files at least this large are hashed with multi-threaded mmap.
const MMAP_THRESHOLD: u64 = 4 << 20;

/// Returns `v` with object keys sorted recursively and `null` members removed.
pub fn canonical_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical_json(v)))
                .collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(canonical_json).collect()),
        other => other.clone(),
    }
}

/// The recorded fingerprint of one external input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFingerprint {
    /// Input label (e.g. the parameter name).
    pub name: String,
    /// Path as written in the pipeline.
    pub path: String,
    /// blake3 hex of the content, or `absent` for a missing optional input.
    pub blake3: String,
    /// Total bytes.
    pub size: u64,
    /// Number of files (1 for a file).
    pub files: u64,
}

/// Everything that determines a stage's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KeyMaterial {
    /// Kind name.
    pub kind: String,
    /// Kind version.
    pub version: u32,
    /// Canonical semantic parameters.
    pub params: serde_json::Value,
    /// Upstream artifact keys by stage name (the key hashes the sorted keys only).
    pub upstream: BTreeMap<String, String>,
    /// External input fingerprints.
    pub inputs: Vec<InputFingerprint>,
    /// Named inputs bound to upstreams: input name → upstream key.
    #[serde(default)]
    pub bindings: BTreeMap<String, String>,
}

impl KeyMaterial {
    /// The cache key: blake3 hex over the canonical serialisation described in the module doc.
    pub fn key(&self) -> String {
        let mut up: Vec<&String> = self.upstream.values().collect();
        up.sort();
        let inputs: Vec<(&str, &str)> = self
            .inputs
            .iter()
            .map(|i| (i.name.as_str(), i.blake3.as_str()))
            .collect();
        let doc = serde_json::json!({
            "luna_key": 1,
            "kind": self.kind,
            "version": self.version,
            "params": self.params,
            "upstream": up,
            "inputs": inputs,
            "bindings": self.bindings,
        });
        blake3::hash(doc.to_string().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// Opens `path` for reading only if it is a regular file (symlinks followed), without blocking
/// on a FIFO; returns the file and its size. A FIFO, socket or device is an `InvalidInput`
/// error that says what it is: reading one could block forever or never end (`/dev/zero`).
pub fn open_regular(path: &Path) -> std::io::Result<(fs::File, u64)> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(not_regular(&meta));
    }
    Ok((f, meta.len()))
}

/// The error for a special file where luna reads only regular files.
pub fn not_regular(meta: &fs::Metadata) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!(
            "is a {}, not a regular file (luna reads only regular files)",
            file_kind(meta.file_type())
        ),
    )
}

/// What a file is, for messages: `symbolic link`, `FIFO`, `socket`, `device file`, …
pub fn file_kind(t: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_file() {
        "regular file"
    } else {
        "special file"
    }
}

/// Hashes a file's bytes with blake3 (mmap + rayon for large files).
pub fn hash_file(path: &Path, size: u64) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    if size >= MMAP_THRESHOLD {
        h.update_mmap_rayon(path)?;
    } else {
        let mut f = fs::File::open(path)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Fingerprints an external input (file or directory), using and updating the stat cache.
pub fn fingerprint_input(
    name: &str,
    shown: &str,
    path: &Path,
    optional: bool,
    listing: bool,
    stat: &StatCache,
) -> Result<InputFingerprint, FingerprintError> {
    let io = |p: &Path, e: std::io::Error| FingerprintError::Io {
        name: name.into(),
        path: p.into(),
        source: e,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if optional {
                return Ok(InputFingerprint {
                    name: name.into(),
                    path: shown.into(),
                    blake3: "absent".into(),
                    size: 0,
                    files: 0,
                });
            }
            return Err(FingerprintError::Missing {
                name: name.into(),
                path: path.into(),
            });
        }
        Err(e) => return Err(io(path, e)),
    };
    if meta.is_file() {
        let hash = stat.hash(path, &meta).map_err(|e| io(path, e))?;
        return Ok(InputFingerprint {
            name: name.into(),
            path: shown.into(),
            blake3: hash,
            size: meta.len(),
            files: 1,
        });
    }
    if !meta.is_dir() {
        return Err(io(path, not_regular(&meta)));
    }
    let res = if listing {
        hash_listing(path)
    } else {
        hash_dir(path, stat)
    };
    let (hash, size, files) = res.map_err(|(p, e)| io(&p, e))?;
    Ok(InputFingerprint {
        name: name.into(),
        path: shown.into(),
        blake3: hash,
        size,
        files,
    })
}

/// Fingerprints the items a stage reads below a narrowed input (see the module doc): blake3
/// over `item` names in order, each with its files' content hashes in the order given (or,
/// for a `listing` input, the names alone). Paths never enter it.
pub fn fingerprint_reads(
    name: &str,
    shown: &str,
    items: &[ReadItem],
    listing: bool,
    stat: &StatCache,
) -> Result<InputFingerprint, FingerprintError> {
    let mut sorted: Vec<&ReadItem> = items.iter().collect();
    sorted.sort_by(|a, b| a.item.cmp(&b.item));
    let files: Vec<&PathBuf> = if listing {
        Vec::new()
    } else {
        sorted.iter().flat_map(|i| i.files.iter()).collect()
    };
    let hashed: Vec<Result<(String, u64), FingerprintError>> = files
        .par_iter()
        .map(|p| {
            let io = |e| FingerprintError::Io {
                name: name.into(),
                path: p.to_path_buf(),
                source: e,
            };
            let meta = fs::metadata(p).map_err(io)?;
            let hash = stat.hash(p, &meta).map_err(io)?;
            Ok((hash, meta.len()))
        })
        .collect();
    let mut hashed = hashed.into_iter();
    let mut h = blake3::Hasher::new();
    h.update(if listing { b"items\n" } else { b"reads\n" });
    let mut size = 0u64;
    for it in &sorted {
        h.update(it.item.as_bytes());
        for _ in it.files.iter().filter(|_| !listing) {
            let (hash, len) = hashed.next().unwrap_or_else(|| Ok((String::new(), 0)))?;
            h.update(b"\0");
            h.update(hash.as_bytes());
            size += len;
        }
        h.update(b"\n");
    }
    Ok(InputFingerprint {
        name: name.into(),
        path: shown.into(),
        blake3: h.finalize().to_hex().to_string(),
        size,
        files: files.len() as u64,
    })
}

/// Hashes a directory's listing: blake3 over sorted `(relative path, size)` lines.
pub fn hash_listing(root: &Path) -> Result<(String, u64, u64), (PathBuf, std::io::Error)> {
    let mut h = blake3::Hasher::new();
    h.update(b"listing\n");
    let (mut total, mut n) = (0u64, 0u64);
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry =
            entry.map_err(|e| (root.to_path_buf(), std::io::Error::other(e.to_string())))?;
        if entry.file_type().is_file() {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
            h.update(rel.to_string_lossy().as_bytes());
            h.update(b"\0");
            h.update(&len.to_le_bytes());
            total += len;
            n += 1;
        }
    }
    Ok((h.finalize().to_hex().to_string(), total, n))
}

/// Hashes a directory tree: blake3 over sorted `(relative path, size, file hash)` lines.
pub fn hash_dir(
    root: &Path,
    stat: &StatCache,
) -> Result<(String, u64, u64), (PathBuf, std::io::Error)> {
    let mut files: Vec<(PathBuf, fs::Metadata)> = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| {
            let p = e
                .path()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| root.to_path_buf());
            (p, std::io::Error::other(e.to_string()))
        })?;
        if entry.file_type().is_file() {
            let meta = entry.metadata().map_err(|e| {
                (
                    entry.path().to_path_buf(),
                    std::io::Error::other(e.to_string()),
                )
            })?;
            files.push((entry.into_path(), meta));
        }
    }
    let hashes: Vec<Result<String, (PathBuf, std::io::Error)>> = files
        .par_iter()
        .map(|(p, m)| stat.hash(p, m).map_err(|e| (p.clone(), e)))
        .collect();
    let mut h = blake3::Hasher::new();
    let mut total = 0u64;
    for ((p, m), hash) in files.iter().zip(hashes) {
        let hash = hash?;
        let rel = p.strip_prefix(root).unwrap_or(p);
        h.update(rel.to_string_lossy().as_bytes());
        h.update(b"\0");
        h.update(&m.len().to_le_bytes());
        h.update(hash.as_bytes());
        h.update(b"\n");
        total += m.len();
    }
    Ok((h.finalize().to_hex().to_string(), total, files.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_nulls() {
        let v = serde_json::json!({"b": 1, "a": {"d": null, "c": [3, {"z": 1, "y": 2}]}});
        assert_eq!(
            canonical_json(&v).to_string(),
            r#"{"a":{"c":[3,{"y":2,"z":1}]},"b":1}"#
        );
    }

    #[test]
    fn key_ignores_upstream_names_but_not_keys() {
        let mut m = KeyMaterial {
            kind: "k".into(),
            version: 1,
            params: serde_json::json!({"lr": 0.1}),
            upstream: BTreeMap::from([("a".to_string(), "k1".to_string())]),
            inputs: vec![],
            bindings: BTreeMap::new(),
        };
        let k1 = m.key();
        m.upstream = BTreeMap::from([("renamed".to_string(), "k1".to_string())]);
        assert_eq!(m.key(), k1);
        m.upstream = BTreeMap::from([("a".to_string(), "k2".to_string())]);
        assert_ne!(m.key(), k1);
        m.upstream = BTreeMap::from([("a".to_string(), "k1".to_string())]);
        m.version = 2;
        assert_ne!(m.key(), k1);
    }
}
