//! The content-addressed artifact store.
//!
//! ```text
//! <cache>/objects/<2 hex>/<key>/      immutable artifact: output files + manifest.json
//! <cache>/tmp/<key>.<host>.<pid>.<n>/ a stage's output while it runs (flocked by its writer)
//! <cache>/locks/<key>.lock            flock(2) per key: one computation per key at a time
//! <cache>/quarantine/<key>.<time>/    objects `cache verify` found corrupt
//! <cache>/resume/<key>/               checkpoints of an unfinished stage (deleted on commit;
//!                                     `cache ls` lists them, gc deletes those no kept run names)
//! ```
//!
//! **Atomic commit.** A stage writes into a fresh `tmp/` directory. When it succeeds, every
//! file is hashed into the manifest, files and directory are made read-only and fsync'd (an
//! fsync error fails the commit), and the directory is renamed into `objects/` (the shard
//! folder is fsync'd too). A crash (or `kill -9`) at any point leaves at most a `tmp/`
//! directory, never a half-visible object; a `tmp/` directory is flocked by the process that
//! writes it, and the next run removes those nobody holds (the writer died).
//!
//! **Only regular files and directories.** An output that is a symlink, FIFO, socket or device
//! fails the commit with an error naming it: a symlink's target lies outside the store and could
//! change after it was hashed. Copying the target instead was rejected: it would silently
//! commit whatever the link happened to point at (e.g. a host file). `verify` treats any file
//! the manifest does not list as corruption, like a changed byte.
//!
//! **A present object is a complete object.** [`Cache::has`] reads the manifest and checks
//! that every listed file exists with its recorded size (`stat` calls only, no hashing), so an
//! object whose data file was deleted or truncated counts as missing and is recomputed (and the
//! damaged copy quarantined on commit). Before a stage consumes an upstream object, the
//! executor checks sizes always, and blake3 too when the object has at most
//! [`CHEAP_HASH_BYTES`] or `luna run --verify` asks ([`Cache::check_upstream`]): models and
//! tables are small, CT datasets and crop stores are not (`luna cache verify` re-hashes those).
//!
//! **`--force` replaces atomically.** The new object is completed (hashed, read-only, fsync'd)
//! first, then exchanged with the old one in one `renameat2(RENAME_EXCHANGE)`; a crash at any
//! point leaves the old object or the new one under `objects/<key>`, never neither. Rejected:
//! moving the old object aside before the new one is complete (a crash then lost both, since
//! the set-aside copy looked like stale tmp).
//!
//! **Locks.** Before computing key K a run takes `locks/K.lock` with `flock`; after getting
//! it, it checks again whether `objects/K` exists (another run may have made it meanwhile) and
//! reuses it. The kernel drops the lock when a process dies, so locks never go stale, and two
//! `luna run`s on one cache compute each stage once in total. flock works on local file
//! systems and on NFSv4; on file systems where it does not, runs still never corrupt the store
//! (rename is atomic), they may only compute a stage twice.
//!
//! **gc and live runs.** Every `luna run` holds a shared `flock` on `locks/gc.lock` for its
//! whole duration; `cache gc` takes it exclusively (and fails at once when a run holds it), so
//! gc never deletes an object a live run on any host or of any user may read. gc never
//! deletes `locks/*.lock`: a lock file removed while one process holds it lets a third process
//! lock a fresh file of the same name and compute the same key concurrently. Rejected: each run
//! registering the keys it uses (a crash leaves stale registrations; the lock needs no cleanup).
//!
//! **Objects are never modified.** gc deletes whole objects; verify moves corrupt ones aside.
//!
//! **Shared by several Unix users** (`luna cache init --shared DIR --group G`, marked by
//! `luna-cache.json`, which also holds the cache's [`SharedPolicy`]). Every folder luna makes
//! in such a cache is group-owned (setgid, so new entries inherit the group) and
//! group-writable, set explicitly so that no member's umask breaks it; lock files are made
//! group-writable too (flock on NFS needs a writable fd), so locks and the gc lock work across
//! users. Committed objects are read-only and owned by their writer: every member reads them
//! and adds objects of their own, no one else can change a byte of them (not even chmod them
//! back). The folders are sticky too, so no member can rename or delete another's object, lock
//! file or pin. gc by one member deletes the unused objects it owns and reports the others'.
//! Rejected: group-writable objects (any member could then corrupt any object silently); one
//! service account that owns everything (needs sudo or a daemon; file systems already enforce
//! ownership).
//!
//! **Members are not trusted to be careful or honest; other accounts not at all.**
//! - *Group-only*: folders 3770, objects 0550/0440, locks 0660 (CT scans are personal data);
//!   `--world-readable` gives 3775/0555/0444/0664.
//! - *No link is followed*: a member can plant a symlink wherever the sticky folders let them
//!   create entries (`locks/K.lock`, `tmp/x`, `objects/<shard>/K`). Lock files are opened with
//!   `O_NOFOLLOW` and chmod'ed through their descriptor; `tmp/` folders are listed by their
//!   own type and opened `O_NOFOLLOW`; [`remove_tree`] refuses a link and never walks one;
//!   every chmod/chgrp refuses a link ([`CacheError::Symlink`], naming it). A link swapped in
//!   between the check and the call (a race) is not covered: that needs `openat`-relative
//!   walking of every path, rejected as out of proportion for a cache whose members can
//!   already be identified by the file owners.
//! - *Shards made once*: `cache init` makes all 256 `objects/<2 hex>/` folders, owned by the
//!   cache's owner, so no member's umask or `mkdir` can make one that blocks others' keys.
//! - *Keys are keys*: every key read from a manifest, a remote, a run record or a pin must be
//!   64 lowercase hex digits ([`check_key`]) before it is part of a path.
//! - *Verified before use* ([`Cache::verify_use`]): before a run uses an object (cached stage,
//!   or an upstream a stage reads), its manifest must hash to its key and every file match its
//!   blake3. "First use" is per user and object: a marker in the user's own
//!   `verified/<uid>/` records each file's inode and ctime, so the hashing is paid once and
//!   again only if the owner rewrites or chmods a file (ctime cannot be set back by a user).
//!   Rejected: trusting another member's marker (a dishonest member would write one); an
//!   in-memory record per run (every run would re-hash every object it uses). With
//!   [`VerifyPolicy::OnUse`] every run hashes. Not detectable by any check: a member who
//!   writes wrong bytes under the right key material and recomputes the hashes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::error::CacheError;
use super::fingerprint::{file_kind, hash_file, InputFingerprint, KeyMaterial};

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
    /// The output identity this artifact shares (early cutoff, see `fingerprint.rs`): set when
    /// the stage re-ran under a new key and wrote exactly the files of its previous artifact,
    /// whose identity (that artifact's key, or its own `same_output_as`) this is. Absent
    /// otherwise: the artifact's identity is its key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_output_as: Option<String>,
}

impl Manifest {
    /// Checks that the manifest's key and every partition key it lists are keys (`origin`
    /// names the manifest in the error).
    pub fn check_keys(&self, origin: &str) -> Result<(), CacheError> {
        check_key(&self.key, origin)?;
        let parts = format!("{origin} (its partitions)");
        self.partitions
            .iter()
            .try_for_each(|p| check_key(p, &parts))
    }

    /// Total bytes of the artifact's files.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// The digest of the artifact's output: blake3 over its files' (path, size, blake3), in
    /// path order. Two artifacts with the same digest hold byte-identical files.
    pub fn output_digest(&self) -> String {
        output_digest(&self.files)
    }
}

/// The digest of an output's files (see [`Manifest::output_digest`]).
pub fn output_digest(files: &[FileEntry]) -> String {
    let mut files: Vec<&FileEntry> = files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = blake3::Hasher::new();
    for f in files {
        h.update(f.path.as_bytes());
        h.update(b"\0");
        h.update(&f.size.to_le_bytes());
        h.update(f.blake3.as_bytes());
        h.update(b"\n");
    }
    h.finalize().to_hex().to_string()
}

/// Upstream objects up to this size are re-hashed before a stage consumes them.
pub const CHEAP_HASH_BYTES: u64 = 64 << 20;

/// A held per-key lock; released on drop (or by the kernel if the process dies).
#[derive(Debug)]
pub struct KeyLock {
    _file: fs::File,
}

/// A held lock on `locks/gc.lock`: shared while a run uses the cache, exclusive while gc runs.
#[derive(Debug)]
pub struct UseLock {
    /// `None` on a read-only cache without a gc lock file: no gc can delete anything there.
    _file: Option<fs::File>,
}

/// The store.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// Shared by several Unix users (see the module doc).
    shared: bool,
    /// How a shared cache was made (`luna cache init --shared`); the default for a private one.
    policy: SharedPolicy,
}

/// The options of a shared cache, kept in its marker file [`SHARED_MARKER`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPolicy {
    /// Every account on the machine may read the objects (`--world-readable`); by default
    /// only the group's members can.
    #[serde(default)]
    pub world_readable: bool,
    /// When an object is verified before a run uses it ([`Cache::verify_use`]).
    #[serde(default)]
    pub verify: VerifyPolicy,
}

/// When a shared cache's objects are verified against their key and their files' blake3.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyPolicy {
    /// The first time each user's run uses an object, and again whenever one of its files
    /// changed since (inode or ctime; see the module doc).
    #[default]
    FirstUse,
    /// Every time a run uses an object (`verify: on-use`).
    OnUse,
}

/// The marker file of a shared cache (written by [`Cache::init_shared`]).
pub const SHARED_MARKER: &str = "luna-cache.json";

/// Mode of the folders of a shared cache: setgid (entries inherit the group), group-writable,
/// sticky (only an entry's owner may rename or delete it: no member can move another's
/// object under a wrong key or delete another's lock file).
const SHARED_DIR_MODE: u32 = 0o3770;

/// [`SHARED_DIR_MODE`] of a `--world-readable` shared cache.
const WORLD_DIR_MODE: u32 = 0o3775;

/// `<cache>/<sub>/` folders of a shared cache made by [`Cache::init_shared`].
const SHARED_DIRS: [&str; 7] = [
    "objects",
    "tmp",
    "locks",
    "resume",
    "quarantine",
    "pins",
    "verified",
];

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Open (flocked) handles of this process's tmp directories.
fn tmp_locks() -> std::sync::MutexGuard<'static, BTreeMap<PathBuf, fs::File>> {
    static LOCKS: std::sync::Mutex<BTreeMap<PathBuf, fs::File>> =
        std::sync::Mutex::new(BTreeMap::new());
    LOCKS.lock().unwrap_or_else(|e| e.into_inner())
}

impl Cache {
    /// Opens (creating if needed) a cache rooted at `root`.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        let marker = root.join(SHARED_MARKER);
        // an unreadable or older marker still marks a shared cache: group-only, first use
        let policy = fs::read(&marker)
            .ok()
            .and_then(|b| serde_json::from_slice::<SharedPolicy>(&b).ok())
            .unwrap_or_default();
        let cache = Cache {
            root: root.to_path_buf(),
            shared: marker.is_file(),
            policy,
        };
        for sub in ["objects", "tmp", "locks"] {
            let p = root.join(sub);
            if !p.is_dir() {
                fs::create_dir_all(&p).map_err(|e| CacheError::io(&p, e))?;
                cache.made_dir(&p)?;
            }
        }
        Ok(cache)
    }

    /// Makes (or converts) `root` a cache shared by the members of group `gid`: the root, its
    /// folders and all 256 shard folders group-owned, setgid, sticky and group-writable
    /// (members never make a shard, so none can block one), existing objects group-readable;
    /// then writes the marker with `policy`. Run by the folder's owner (or root). Nothing is
    /// followed: an entry that is a symbolic link stops it with [`CacheError::Symlink`].
    pub fn init_shared(root: &Path, gid: u32, policy: SharedPolicy) -> Result<Cache, CacheError> {
        let dir_mode = if policy.world_readable {
            WORLD_DIR_MODE
        } else {
            SHARED_DIR_MODE
        };
        let folder = |p: &Path| -> Result<(), CacheError> {
            match fs::symlink_metadata(p) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    fs::create_dir(p).map_err(|e| CacheError::io(p, e))?
                }
                Err(e) => return Err(CacheError::io(p, e)),
                Ok(_) => {}
            }
            lchgrp(p, gid)?;
            set_mode(p, dir_mode)
        };
        fs::create_dir_all(root).map_err(|e| CacheError::io(root, e))?;
        folder(root)?;
        for sub in SHARED_DIRS {
            folder(&root.join(sub))?;
        }
        for b in 0..=255u8 {
            folder(&root.join("objects").join(format!("{b:02x}")))?;
        }
        // what a private cache held: objects become group-readable (0440/0550 unless
        // world-readable), owned by whoever made them
        let (file_mode, obj_dir_mode) = sealed_modes(true, policy.world_readable);
        for e in walkdir::WalkDir::new(root.join("objects")).min_depth(1) {
            let e = e.map_err(|e| CacheError::io(root, std::io::Error::other(e.to_string())))?;
            lchgrp(e.path(), gid)?;
            if e.depth() > 1 {
                set_mode(
                    e.path(),
                    if e.file_type().is_dir() {
                        obj_dir_mode
                    } else {
                        file_mode
                    },
                )?;
            }
        }
        let marker = root.join(SHARED_MARKER);
        let mut doc = serde_json::to_value(policy).map_err(|e| CacheError::BadManifest {
            path: marker.clone(),
            reason: e.to_string(),
        })?;
        doc["luna_cache"] = 1.into();
        doc["shared"] = true.into();
        doc["gid"] = gid.into();
        if fs::symlink_metadata(&marker).is_ok() {
            set_mode(&marker, 0o644)?;
        }
        fs::write(&marker, doc.to_string()).map_err(|e| CacheError::io(&marker, e))?;
        lchgrp(&marker, gid)?;
        set_mode(&marker, file_mode)?;
        Cache::open(root)
    }

    /// The options of a shared cache (the defaults for a private one).
    pub fn policy(&self) -> SharedPolicy {
        self.policy
    }

    /// Mode of the files luna writes into the cache for every member to read (objects' files,
    /// pins): 0440 in a group-only shared cache, else 0444.
    pub fn readable_file_mode(&self) -> u32 {
        sealed_modes(self.shared, self.policy.world_readable).0
    }

    /// Mode of an object's folders once committed (0550 in a group-only shared cache).
    fn sealed_dir_mode(&self) -> u32 {
        sealed_modes(self.shared, self.policy.world_readable).1
    }

    /// Whether the cache is shared by several users (`luna cache init --shared`).
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// After creating folder `p`: in a shared cache, setgid and group-writable whatever the
    /// umask.
    fn made_dir(&self, p: &Path) -> Result<(), CacheError> {
        if self.shared {
            set_mode(p, self.dir_mode())?;
        }
        Ok(())
    }

    /// Mode of a shared cache's folders (setgid, sticky, group-writable).
    fn dir_mode(&self) -> u32 {
        if self.policy.world_readable {
            WORLD_DIR_MODE
        } else {
            SHARED_DIR_MODE
        }
    }

    /// `<cache>/pins/`: one file per pinned pipeline (`luna cache pin`).
    pub fn pins_dir(&self) -> PathBuf {
        self.root.join("pins")
    }

    /// Every key the pins of `pins/` name (gc keeps them).
    pub fn pinned(&self) -> std::collections::BTreeSet<String> {
        let mut keys = std::collections::BTreeSet::new();
        for e in fs::read_dir(self.pins_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(bytes) = fs::read(e.path()) else {
                continue;
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            for k in v["keys"].as_array().into_iter().flatten() {
                if let Some(k) = k.as_str().filter(|k| is_key(k)) {
                    keys.insert(k.to_string());
                }
            }
        }
        keys
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the object with `key` (whether or not it exists). A string that is not a
    /// key gets `objects/not-a-key`, a name no object has: callers that write check the key
    /// first ([`check_key`]), so this path is only ever looked at, never made.
    pub fn object_dir(&self, key: &str) -> PathBuf {
        let objects = self.root.join("objects");
        match key.get(..2) {
            Some(shard) if is_key(key) => objects.join(shard).join(key),
            _ => objects.join(NOT_A_KEY),
        }
    }

    /// Scratch directory for resumable work on `key` (see `StageContext::resume_dir`); as
    /// [`Cache::object_dir`] for a string that is not a key.
    pub fn resume_dir(&self, key: &str) -> PathBuf {
        let resume = self.root.join("resume");
        if is_key(key) {
            resume.join(key)
        } else {
            resume.join(NOT_A_KEY)
        }
    }

    /// Whether a complete object with `key` exists: its manifest parses and every file it
    /// lists exists with its recorded size (no hashing; see the module doc). A string that is
    /// not a key has no object.
    pub fn has(&self, key: &str) -> bool {
        is_key(key) && matches!(self.size_problems(key), Ok(p) if p.is_empty())
    }

    /// Files of object `key` that are missing or have another size than its manifest says.
    fn size_problems(&self, key: &str) -> Result<Vec<String>, CacheError> {
        let dir = self.object_dir(key);
        if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(CacheError::Symlink { path: dir });
        }
        let m = self.manifest(key)?;
        Ok(m.files
            .iter()
            .filter_map(|f| match fs::symlink_metadata(dir.join(&f.path)) {
                Err(_) => Some(format!("{} is missing", f.path)),
                Ok(meta) if !meta.file_type().is_file() => {
                    Some(format!("{} is not a regular file", f.path))
                }
                Ok(meta) if meta.len() != f.size => Some(format!(
                    "{} has {} bytes, manifest says {}",
                    f.path,
                    meta.len(),
                    f.size
                )),
                Ok(_) => None,
            })
            .collect())
    }

    /// Checks an object before a stage consumes it: every file's size, and every file's blake3
    /// when the whole object has at most [`CHEAP_HASH_BYTES`] or `full` is set (`--verify`).
    /// Returns [`CacheError::Damaged`] on a mismatch.
    pub fn check_upstream(&self, key: &str, full: bool) -> Result<(), CacheError> {
        let m = self.manifest(key)?;
        let mut problems = self.size_problems(key)?;
        if problems.is_empty() && (full || m.size() <= CHEAP_HASH_BYTES) {
            let dir = self.object_dir(key);
            problems.extend(m.files.iter().filter_map(|f| hash_problem(&dir, f)));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(CacheError::Damaged {
                key: key.to_string(),
                problems,
            })
        }
    }

    /// Takes `locks/gc.lock` shared: held by a run for its whole duration so that gc cannot
    /// delete what it uses (waits while a gc runs).
    pub fn use_lock(&self) -> Result<UseLock, CacheError> {
        let file = match self.flock_file("gc", libc::LOCK_SH) {
            Ok(f) => f.ok_or_else(|| {
                CacheError::io(
                    self.lock_path("gc"),
                    std::io::Error::other("lock not taken"),
                )
            })?,
            // reading a read-only cache needs no lock: no gc can delete from it either
            Err(CacheError::Io { source, .. })
                if source.raw_os_error() == Some(libc::ENOENT) && self.is_read_only() =>
            {
                return Ok(UseLock { _file: None })
            }
            Err(e) => return Err(e),
        };
        Ok(UseLock { _file: Some(file) })
    }

    /// Whether this process cannot write the cache (a read-only mount, or another user's
    /// folder): such a cache serves what it holds and computes nothing.
    pub fn is_read_only(&self) -> bool {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = std::ffi::CString::new(self.root.join("tmp").as_os_str().as_bytes()) else {
            return true;
        };
        // SAFETY: a NUL-terminated path that lives for the call.
        unsafe { libc::access(c.as_ptr(), libc::W_OK) != 0 }
    }

    /// Takes `locks/gc.lock` exclusively if no run holds it (`None` when one does).
    pub fn try_gc_lock(&self) -> Result<Option<UseLock>, CacheError> {
        Ok(self
            .flock_file("gc", libc::LOCK_EX | libc::LOCK_NB)?
            .map(|f| UseLock { _file: Some(f) }))
    }

    /// Reads the manifest of `key`.
    pub fn manifest(&self, key: &str) -> Result<Manifest, CacheError> {
        check_key(key, "a request for a cached object")?;
        read_manifest(&self.object_dir(key).join("manifest.json"))
    }

    /// The output identity of object `key`, which downstream keys are computed from (early
    /// cutoff, see `fingerprint.rs`): its manifest's `same_output_as`, else `key` itself (also
    /// when the manifest cannot be read: the caller then recomputes the object anyway). In a
    /// shared cache a member's claim is honoured only while the claimed object is present with
    /// the same output digest: a false claim would hand downstream stages another output's
    /// results.
    pub fn identity(&self, key: &str) -> String {
        let Ok(m) = self.manifest(key) else {
            return key.to_string();
        };
        let Some(claim) = m.same_output_as.as_deref().filter(|c| is_key(c)) else {
            return key.to_string();
        };
        if !self.shared {
            return claim.to_string();
        }
        match self.manifest(claim) {
            Ok(c) if c.output_digest() == m.output_digest() => claim.to_string(),
            _ => key.to_string(),
        }
    }

    /// Hashes the output files under `tmp` as a commit would (entries of `known` are trusted
    /// when the size matches), so the caller can compare an output before committing it.
    pub fn hash_output(
        &self,
        tmp: &Path,
        known: &[FileEntry],
    ) -> Result<Vec<FileEntry>, CacheError> {
        hash_tree(tmp, known)
    }

    /// Takes the per-key lock, waiting for another process that holds it.
    pub fn lock(&self, key: &str) -> Result<KeyLock, CacheError> {
        check_key(key, "a request for a key lock")?;
        self.flock_file(key, libc::LOCK_EX)?
            .map(|f| KeyLock { _file: f })
            .ok_or_else(|| {
                CacheError::io(self.lock_path(key), std::io::Error::other("lock not taken"))
            })
    }

    /// Takes the per-key lock if it is free.
    pub fn try_lock(&self, key: &str) -> Result<Option<KeyLock>, CacheError> {
        check_key(key, "a request for a key lock")?;
        Ok(self
            .flock_file(key, libc::LOCK_EX | libc::LOCK_NB)?
            .map(|f| KeyLock { _file: f }))
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// Opens `locks/<name>.lock` and flocks it with `op`; `None` when `LOCK_NB` found it held.
    fn flock_file(&self, name: &str, op: libc::c_int) -> Result<Option<fs::File>, CacheError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let path = self.lock_path(name);
        // never through a link a member planted (it would open, and chmod, its target)
        let opened = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path);
        let file = match opened {
            Ok(f) => f,
            // a lock file of another user that is not group-writable, or a read-only cache:
            // flock works on a read-only descriptor on local file systems
            Err(e)
                if e.kind() == std::io::ErrorKind::PermissionDenied
                    || e.raw_os_error() == Some(libc::EROFS) =>
            {
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| link_or_io(&path, e))?
            }
            Err(e) => return Err(link_or_io(&path, e)),
        };
        let meta = file.metadata().map_err(|e| CacheError::io(&path, e))?;
        if !meta.file_type().is_file() {
            return Err(CacheError::io(
                &path,
                std::io::Error::other(format!(
                    "is a {}, not a lock file",
                    file_kind(meta.file_type())
                )),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        let mine = meta.uid() == unsafe { libc::geteuid() };
        if self.shared && mine {
            // another member must be able to open it for writing too; only its creator may
            // (and needs to) chmod it: through the descriptor, so the file checked above.
            // Best effort: another member then opens it read-only, which flock accepts.
            let mode = if self.policy.world_readable {
                0o664
            } else {
                0o660
            };
            let _ = file.set_permissions(fs::Permissions::from_mode(mode));
        }
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
            if rc == 0 {
                return Ok(Some(file));
            }
            let err = std::io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if op & libc::LOCK_NB != 0 => return Ok(None),
                _ => return Err(CacheError::io(&path, err)),
            }
        }
    }

    /// Creates a fresh temporary output directory for computing `key`, flocked by this
    /// process until it is committed or discarded ([`Cache::discard_tmp`]), so that
    /// [`Cache::clean_stale_tmp`] in any other process, on any host, leaves it alone.
    pub fn new_tmp(&self, key: &str) -> Result<PathBuf, CacheError> {
        check_key(key, "a request for a temporary folder")?;
        loop {
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
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(CacheError::io(&dir, e)),
            }
            let f = fs::File::open(&dir).map_err(|e| CacheError::io(&dir, e))?;
            // SAFETY: flock on a file descriptor we own.
            let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            // between mkdir and flock another process's cleanup may have taken it: retry
            if !locked || !dir.is_dir() {
                continue;
            }
            tmp_locks().insert(dir.clone(), f);
            return Ok(dir);
        }
    }

    /// Deletes a temporary directory of this process (a failed stage's output) and its lock.
    pub fn discard_tmp(&self, tmp: &Path) {
        // what cannot be removed now is a dead run's debris: `clean_stale_tmp` and `cache gc`
        // remove it later, and no tmp dir is ever read as an object
        let _ = remove_tree(tmp);
        tmp_locks().remove(tmp);
    }

    /// Hashes the files of `tmp`, writes the manifest and renames `tmp` into `objects/`.
    /// If the object appeared meanwhile, `tmp` is discarded and the existing object kept.
    /// Entries already in `manifest.files` are trusted when the file's size matches (files
    /// hard-linked from other immutable objects, whose hashes are known); the rest are hashed.
    pub fn commit(&self, tmp: &Path, manifest: Manifest) -> Result<PathBuf, CacheError> {
        let dest = self.object_dir(&manifest.key);
        self.commit_all(&[(tmp.to_path_buf(), manifest)])?;
        Ok(dest)
    }

    /// After an object was renamed into place: its top folder becomes read-only and the shard
    /// folder is fsync'd.
    fn finish(&self, dest: &Path) -> Result<(), CacheError> {
        set_mode(dest, self.sealed_dir_mode())?;
        sync_dir(dest)?;
        sync_dir(dest.parent().unwrap_or(&self.root))
    }

    /// Completes `tmp` as the object of `manifest`: hashes its files, writes the manifest,
    /// makes everything read-only and fsyncs it, and creates (and fsyncs) the shard folder.
    fn seal(&self, tmp: &Path, manifest: Manifest) -> Result<(), CacheError> {
        let paths = self.seal_unsynced(tmp, manifest)?;
        sync_all_of(&paths)
    }

    /// [`Cache::seal`] but the fsyncs: returns the paths the caller must fsync before renaming.
    fn seal_unsynced(
        &self,
        tmp: &Path,
        mut manifest: Manifest,
    ) -> Result<Vec<PathBuf>, CacheError> {
        manifest.files = hash_tree(tmp, &manifest.files)?;
        let mpath = tmp.join("manifest.json");
        let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| CacheError::BadManifest {
            path: mpath.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&mpath, bytes).map_err(|e| CacheError::io(&mpath, e))?;
        let paths = seal_tree(tmp, sealed_modes(self.shared, self.policy.world_readable))?;
        let dest = self.object_dir(&manifest.key);
        if let Some(parent) = dest.parent() {
            self.shard_folder(parent)?;
        }
        Ok(paths)
    }

    /// Makes shard folder `p` if it is missing (with the shared mode whatever the umask);
    /// one that is a link is refused, one of ours without the shared mode is repaired.
    fn shard_folder(&self, p: &Path) -> Result<(), CacheError> {
        use std::os::unix::fs::MetadataExt;
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_symlink() => Err(CacheError::Symlink { path: p.into() }),
            // SAFETY: geteuid has no preconditions.
            Ok(m)
                if self.shared
                    && m.uid() == unsafe { libc::geteuid() }
                    && m.mode() & 0o7777 != self.dir_mode() =>
            {
                self.made_dir(p)
            }
            Ok(_) => Ok(()),
            Err(_) => {
                fs::create_dir_all(p).map_err(|e| CacheError::io(p, e))?;
                self.made_dir(p)?;
                sync_dir(&self.root.join("objects"))
            }
        }
    }

    /// Commits several objects at once, as [`Cache::commit`] each (the caller holds their
    /// locks; a pull): every file and folder of all of them is fsync'd in one parallel batch
    /// before the first rename, and the renamed folders and their shard folders in one batch
    /// after the last, so a crash still leaves each object complete or absent, and the commit
    /// waits for two rounds of fsyncs instead of three per object. Stops at the first error (the
    /// objects committed so far stay; the caller discards the other temporary folders).
    pub fn commit_all(&self, items: &[(PathBuf, Manifest)]) -> Result<(), CacheError> {
        let mut paths = Vec::new();
        for (tmp, m) in items {
            check_key(&m.key, "a manifest to commit")?;
            paths.extend(self.seal_unsynced(tmp, m.clone())?);
        }
        sync_all_of(&paths)?;
        let mut renamed: Vec<PathBuf> = Vec::new();
        for (tmp, m) in items {
            let dest = self.object_dir(&m.key);
            if self.has(&m.key) {
                self.discard_tmp(tmp);
                continue;
            }
            if dest.exists() {
                // A damaged object or debris from a foreign tool; move it aside.
                self.quarantine(&m.key)?;
            }
            fs::rename(tmp, &dest).map_err(|e| CacheError::io(&dest, e))?;
            tmp_locks().remove(tmp);
            set_mode(&dest, self.sealed_dir_mode())?;
            renamed.push(dest);
        }
        let mut parents: Vec<PathBuf> = renamed
            .iter()
            .filter_map(|d| d.parent().map(Path::to_path_buf))
            .collect();
        parents.sort();
        parents.dedup();
        renamed.extend(parents);
        sync_all_of(&renamed)
    }

    /// Like [`Cache::commit`], but an existing object with the same key is replaced (`--force`
    /// re-runs a stage whose output may differ, e.g. training with a new random seed). The new
    /// object is completed and fsync'd first, then swapped with the old one atomically
    /// (`renameat2(RENAME_EXCHANGE)`), so a crash leaves either the old or the new object; the
    /// old one, now in `tmp/`, is deleted. The caller holds the key lock.
    pub fn commit_replacing(&self, tmp: &Path, manifest: Manifest) -> Result<PathBuf, CacheError> {
        let dest = self.object_dir(&manifest.key);
        if !dest.exists() {
            return self.commit(tmp, manifest);
        }
        self.seal(tmp, manifest)?;
        set_mode(&dest, 0o700)?;
        exchange(tmp, &dest)?;
        self.finish(&dest)?;
        // `tmp` now holds the old object
        self.discard_tmp(tmp);
        Ok(dest)
    }

    /// Removes `tmp/` directories no live process holds (their writer died: its flock is gone).
    /// Rejected: matching host name and pid, which deleted a live run's tmp in another
    /// container with the same short host name.
    pub fn clean_stale_tmp(&self) {
        for dir in self.tmp_dirs() {
            let Ok(f) = open_dir_nofollow(&dir) else {
                continue;
            };
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                // best effort: a dead run's debris is tried again at the next clean-up
                let _ = remove_tree(&dir);
            }
        }
    }

    /// Moves into `into` (a fresh tmp folder for `key`) the files of `files` that a dead
    /// process left complete in its own tmp folder for `key` (an interrupted pull): size and
    /// blake3 must match the entry. Returns the paths adopted; the rest is left for
    /// [`Cache::clean_stale_tmp`].
    pub fn adopt_stale_tmp(&self, key: &str, into: &Path, files: &[FileEntry]) -> Vec<String> {
        let mut got: Vec<String> = Vec::new();
        let prefix = format!("{key}.");
        for dir in self.tmp_dirs() {
            let ours = dir.as_path() == into;
            let named = dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix));
            if ours || !named {
                continue;
            }
            let Ok(f) = open_dir_nofollow(&dir) else {
                continue;
            };
            // SAFETY: flock on a file descriptor we own; a live writer holds it.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                continue;
            }
            for fe in files {
                let src = dir.join(&fe.path);
                let complete = !got.contains(&fe.path)
                    && fs::symlink_metadata(&src).is_ok_and(|m| m.is_file() && m.len() == fe.size)
                    && hash_file(&src, fe.size).is_ok_and(|h| h == fe.blake3);
                if !complete {
                    continue;
                }
                let dest = into.join(&fe.path);
                let moved = dest.parent().is_none_or(|p| fs::create_dir_all(p).is_ok())
                    && fs::rename(&src, &dest).is_ok();
                if moved {
                    got.push(fe.path.clone());
                }
            }
        }
        got
    }

    /// Every object key in the cache, sorted (entries that are not objects are left out; see
    /// [`Cache::strays`]).
    pub fn keys(&self) -> Vec<String> {
        let (mut keys, _) = self.scan();
        keys.sort();
        keys
    }

    /// `resume/<key>/` folders (checkpoints of stages that have not committed), by key.
    pub fn resume_dirs(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = fs::read_dir(self.root.join("resume"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().to_string(), e.path()))
            .filter(|(k, p)| is_key(k) && p.is_dir())
            .collect();
        v.sort();
        v
    }

    /// Every folder under `tmp/` (only safe to delete while holding [`Cache::try_gc_lock`]).
    /// Links (a member's plant) are not folders: never listed, never followed.
    pub fn tmp_dirs(&self) -> Vec<PathBuf> {
        fs::read_dir(self.root.join("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    }

    /// Entries under `objects/` that are not `<2 hex>/<key>/` object folders (debris of
    /// another tool or a user), sorted: reported by `cache ls`/`verify`, never touched.
    pub fn strays(&self) -> Vec<PathBuf> {
        let (_, mut strays) = self.scan();
        strays.sort();
        strays
    }

    fn scan(&self) -> (Vec<String>, Vec<PathBuf>) {
        let (mut keys, mut strays) = (Vec::new(), Vec::new());
        let Ok(rd) = fs::read_dir(self.root.join("objects")) else {
            return (keys, strays);
        };
        for shard in rd.flatten() {
            let sname = shard.file_name().to_string_lossy().to_string();
            let is_shard = sname.len() == 2 && is_hex(&sname);
            match fs::read_dir(shard.path()) {
                Ok(rd2) if is_shard => {
                    for e in rd2.flatten() {
                        let name = e.file_name().to_string_lossy().to_string();
                        if is_key(&name) && name.starts_with(&sname) && e.path().is_dir() {
                            keys.push(name);
                        } else {
                            strays.push(e.path());
                        }
                    }
                }
                _ => strays.push(shard.path()),
            }
        }
        (keys, strays)
    }

    /// Before a run uses object `key` of a shared cache (a private cache: nothing to do): its
    /// manifest must name `key` and, when `expect` is given, hash to it (kind, version,
    /// params, upstream keys and inputs it records, with `expect`'s bindings), and every file
    /// must match its blake3 with nothing extra ([`Cache::verify`]). With
    /// [`VerifyPolicy::FirstUse`] a passed check is remembered in this user's own
    /// `verified/<uid>/<key>` with each file's inode and ctime, and skipped while they are the
    /// same (a rewrite or chmod changes the ctime, which no user can set back).
    pub fn verify_use(&self, key: &str, expect: Option<&KeyMaterial>) -> Result<(), CacheError> {
        if !self.shared {
            return Ok(());
        }
        let marker = self.verified_marker(key);
        let first_use = self.policy.verify == VerifyPolicy::FirstUse;
        if first_use && marker.as_ref().is_some_and(|m| self.marker_holds(key, m)) {
            return Ok(());
        }
        let mut problems = self.verify(key);
        if let (Some(want), Ok(m)) = (expect, self.manifest(key)) {
            let material = KeyMaterial {
                kind: m.kind.clone(),
                version: m.version,
                params: m.params.clone(),
                upstream: m.upstream.clone(),
                inputs: m.inputs.clone(),
                bindings: want.bindings.clone(),
            };
            if material.key() != key {
                problems.push(format!(
                    "its manifest (kind {} v{}, its params, upstream keys and inputs) hashes to {}, not to its key",
                    m.kind,
                    m.version,
                    short(&material.key())
                ));
            }
        }
        if !problems.is_empty() {
            return Err(CacheError::Mismatch {
                key: key.to_string(),
                dir: self.object_dir(key),
                problems,
            });
        }
        if let (true, Some(m)) = (first_use, marker) {
            // only a cost saving: without the marker the next run verifies again
            let _ = write_durable(&m, self.file_stamps(key).as_bytes());
        }
        Ok(())
    }

    /// `verified/<uid>/<key>` when `verified/<uid>/` is this user's own private folder (made
    /// now if missing); `None` when it is anything else (then every use verifies).
    fn verified_marker(&self, key: &str) -> Option<PathBuf> {
        use std::os::unix::fs::{DirBuilderExt, MetadataExt};
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        let all = self.root.join("verified");
        let dir = all.join(me.to_string());
        // best effort: missing folders are made (a cache made before `verified/` existed),
        // and one that cannot be made disables the markers
        if fs::symlink_metadata(&all).is_err() && fs::create_dir(&all).is_ok() {
            let _ = self.made_dir(&all);
        }
        let _ = fs::DirBuilder::new().mode(0o700).create(&dir);
        let meta = fs::symlink_metadata(&dir).ok()?;
        let own = meta.file_type().is_dir() && meta.uid() == me && meta.mode() & 0o077 == 0;
        own.then(|| dir.join(key))
    }

    /// Each file's (path, inode, ctime) of object `key`, one a line: what a marker records.
    fn file_stamps(&self, key: &str) -> String {
        use std::os::unix::fs::MetadataExt;
        let dir = self.object_dir(key);
        let mut out = String::new();
        for e in walkdir::WalkDir::new(&dir)
            .sort_by_file_name()
            .follow_root_links(false)
            .into_iter()
            .flatten()
        {
            if let Ok(m) = e.path().symlink_metadata() {
                let rel = e.path().strip_prefix(&dir).unwrap_or(e.path());
                out.push_str(&format!(
                    "{} {} {}.{} {}\n",
                    rel.display(),
                    m.ino(),
                    m.ctime(),
                    m.ctime_nsec(),
                    m.mode()
                ));
            }
        }
        out
    }

    /// Whether marker `m` records object `key`'s files as they are now.
    fn marker_holds(&self, key: &str, m: &Path) -> bool {
        fs::read_to_string(m).is_ok_and(|t| t == self.file_stamps(key))
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
        match self.size_problems(key) {
            Ok(p) if !p.is_empty() => problems.extend(p),
            Ok(_) => problems.extend(m.files.iter().filter_map(|f| hash_problem(&dir, f))),
            Err(e) => problems.push(e.to_string()),
        }
        // Anything the manifest does not list is corruption too (a file an orphaned process
        // or a user added, a symlink, a FIFO).
        let listed: std::collections::BTreeSet<&str> =
            m.files.iter().map(|f| f.path.as_str()).collect();
        for e in walkdir::WalkDir::new(&dir)
            .min_depth(1)
            .into_iter()
            .flatten()
        {
            let rel = e
                .path()
                .strip_prefix(&dir)
                .unwrap_or(e.path())
                .to_string_lossy()
                .to_string();
            let t = e.file_type();
            if t.is_dir()
                || rel == "manifest.json"
                || (t.is_file() && listed.contains(rel.as_str()))
            {
                continue;
            }
            problems.push(if t.is_file() {
                format!("{rel} is not in the manifest (an extra file)")
            } else {
                format!("{rel} is a {} (not in the manifest)", file_kind(t))
            });
        }
        problems
    }

    /// Moves an object to `quarantine/`.
    pub fn quarantine(&self, key: &str) -> Result<PathBuf, CacheError> {
        check_key(key, "a request to quarantine an object")?;
        let q = self.root.join("quarantine");
        if !q.is_dir() {
            fs::create_dir_all(&q).map_err(|e| CacheError::io(&q, e))?;
            self.made_dir(&q)?;
        }
        let dest = q.join(format!(
            "{key}.{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        let src = self.object_dir(key);
        // renaming a directory to another parent updates its `..`: it must be writable
        set_mode(&src, 0o700)?;
        fs::rename(&src, &dest).map_err(|e| CacheError::io(&src, e))?;
        Ok(dest)
    }

    /// Deletes an object; returns the bytes freed. Its lock file stays (see the module doc).
    pub fn remove(&self, key: &str) -> Result<u64, CacheError> {
        check_key(key, "a request to delete an object")?;
        let dir = self.object_dir(key);
        let size = dir_size(&dir);
        remove_tree(&dir)?;
        Ok(size)
    }
}

/// Whether a file matches its manifest entry's blake3 (a message when not).
fn hash_problem(dir: &Path, f: &FileEntry) -> Option<String> {
    match hash_file(&dir.join(&f.path), f.size) {
        Ok(h) if h != f.blake3 => Some(format!(
            "{} content changed (blake3 {} → {})",
            f.path,
            short(&f.blake3),
            short(&h)
        )),
        Ok(_) => None,
        Err(e) => Some(format!("{}: {e}", f.path)),
    }
}

/// chmod of a cache entry, never through a link ([`CacheError::Symlink`]): chmod(2) follows
/// links, and a member may plant one where luna expects its own folder.
fn set_mode(p: &Path, mode: u32) -> Result<(), CacheError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(p).map_err(|e| CacheError::io(p, e))?;
    if meta.file_type().is_symlink() {
        return Err(CacheError::Symlink { path: p.into() });
    }
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).map_err(|e| CacheError::io(p, e))
}

/// chgrp of a cache entry without following a link (`lchown`), refusing links.
fn lchgrp(p: &Path, gid: u32) -> Result<(), CacheError> {
    let meta = fs::symlink_metadata(p).map_err(|e| CacheError::io(p, e))?;
    if meta.file_type().is_symlink() {
        return Err(CacheError::Symlink { path: p.into() });
    }
    std::os::unix::fs::lchown(p, None, Some(gid)).map_err(|e| CacheError::io(p, e))
}

/// An I/O error opening `p` with `O_NOFOLLOW`: ELOOP means `p` is a link.
fn link_or_io(p: &Path, e: std::io::Error) -> CacheError {
    if e.raw_os_error() == Some(libc::ELOOP) {
        CacheError::Symlink { path: p.into() }
    } else {
        CacheError::io(p, e)
    }
}

/// Opens a folder to flock it, never through a link.
fn open_dir_nofollow(p: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(p)
}

/// Modes of a committed object's (files, folders): read-only; group-only in a shared cache
/// unless it is world-readable.
fn sealed_modes(shared: bool, world_readable: bool) -> (u32, u32) {
    if shared && !world_readable {
        (0o440, 0o550)
    } else {
        (0o444, 0o555)
    }
}

/// Deletes a (possibly read-only) object tree: directories are made writable first. Links
/// are never followed (a link where a folder was expected is refused; links inside are
/// deleted, not walked), so nothing outside `dir` is changed.
pub fn remove_tree(dir: &Path) -> Result<(), CacheError> {
    let meta = fs::symlink_metadata(dir).map_err(|e| CacheError::io(dir, e))?;
    if meta.file_type().is_symlink() {
        return Err(CacheError::Symlink { path: dir.into() });
    }
    for e in walkdir::WalkDir::new(dir)
        .follow_root_links(false)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            // a folder that stays read-only fails the removal below, which reports it
            let _ = set_mode(e.path(), 0o700);
        }
    }
    fs::remove_dir_all(dir).map_err(|e| CacheError::io(dir, e))
}

/// fsyncs a directory (its entries: a rename into it, a new subfolder).
fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| CacheError::io(dir, e))
}

/// Swaps two directories atomically (`renameat2(RENAME_EXCHANGE)`, Linux ≥ 3.15 on local file
/// systems). Where the file system does not support it, the error says so: a `--force` commit
/// then fails rather than risking the old object.
fn exchange(a: &Path, b: &Path) -> Result<(), CacheError> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| CacheError::io(p, std::io::Error::other(e)))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live for the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(CacheError::io(b, std::io::Error::last_os_error()))
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new content, never a torn
/// file: a unique temporary file next to it, fsync'd, renamed over `path`, and the folder
/// fsync'd. Used for run records, pipeline state files and the stat cache.
pub fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let res = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    if res.is_err() {
        // the write's own error is returned; a temporary file left behind is never read
        let _ = fs::remove_file(&tmp);
    }
    res
}

/// Reads and parses a manifest file; its own key and its partitions' must be keys.
pub fn read_manifest(path: &Path) -> Result<Manifest, CacheError> {
    let bytes = fs::read(path).map_err(|e| CacheError::io(path, e))?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| CacheError::BadManifest {
        path: path.into(),
        reason: e.to_string(),
    })?;
    m.check_keys(&format!("manifest {}", path.display()))?;
    Ok(m)
}

/// Name under `objects/` and `resume/` that [`Cache::object_dir`] gives a string that is not
/// a key (no object has it: it is not hex).
const NOT_A_KEY: &str = "not-a-key";

/// `key` if it is a key (64 lowercase hex digits), else [`CacheError::BadKey`] naming where it
/// was read (`origin`). Every key read from a manifest, a remote listing, a run record or a
/// pin passes here before it becomes part of a path.
pub fn check_key(key: &str, origin: &str) -> Result<(), CacheError> {
    if is_key(key) {
        Ok(())
    } else {
        Err(CacheError::BadKey {
            key: key.to_string(),
            origin: origin.to_string(),
        })
    }
}

/// First 8 characters of a key, for messages (any string: never splits a character).
pub fn short(h: &str) -> &str {
    crate::text::head_chars(h, 8)
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `s` is a key: 64 lowercase hex digits (blake3).
pub fn is_key(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
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
        let t = e.file_type();
        if t.is_file() && e.path() != dir.join("manifest.json") {
            files.push(e.into_path());
        } else if !t.is_file() && !t.is_dir() {
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            return Err(CacheError::SpecialFile {
                path: rel.to_path_buf(),
                what: file_kind(t),
                target: fs::read_link(e.path()).ok(),
            });
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

/// Makes every file (0444) and directory (0555) of `dir` read-only, children first, and
/// returns their paths, which the caller fsyncs; any error fails the commit (an ignored fsync
/// error can lose the data it reports).
fn seal_tree(dir: &Path, (file_mode, dir_mode): (u32, u32)) -> Result<Vec<PathBuf>, CacheError> {
    let mut paths = Vec::new();
    for e in walkdir::WalkDir::new(dir).contents_first(true) {
        let e = e.map_err(|e| CacheError::io(dir, std::io::Error::other(e.to_string())))?;
        // the top folder stays writable until it is renamed into place: renaming a directory
        // to another parent updates its `..` entry (see `Cache::finish`)
        if e.depth() > 0 {
            set_mode(
                e.path(),
                if e.file_type().is_dir() {
                    dir_mode
                } else {
                    file_mode
                },
            )?;
        }
        paths.push(e.into_path());
    }
    Ok(paths)
}

/// fsyncs every path, a few at a time: each fsync mostly waits for one synchronous inode
/// write, so overlapping them divides a commit's wait instead of adding it up (all are done
/// before the caller renames the object into place, so their order does not matter).
fn sync_all_of(paths: &[PathBuf]) -> Result<(), CacheError> {
    let sync = |p: &PathBuf| {
        fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|err| CacheError::io(p, err))
    };
    if paths.len() < 2 {
        return paths.iter().try_for_each(sync);
    }
    let per = paths.len().div_ceil(4);
    std::thread::scope(|s| {
        let handles: Vec<_> = paths
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().try_for_each(sync)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join().unwrap_or_else(|_| {
                Err(CacheError::io(
                    &paths[0],
                    std::io::Error::other("fsync thread panicked"),
                ))
            })
        })
    })
}
