//! Errors of the engine's runtime layers: stage execution, the cache and fingerprinting.
//! Spec errors (with source spans) live in `spec_error.rs`. Variants hold data; `hint()` says
//! what to do next, and the CLI renders both.

use std::path::PathBuf;

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// A domain error (CT, table, store, model) with an optional hint.
    #[error("{source}")]
    Domain {
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// A plain message from the stage.
    #[error("{message}")]
    Message {
        /// What went wrong.
        message: String,
        /// What the user can do about it.
        hint: Option<String>,
    },
    /// A `command` stage exited with a non-zero status.
    #[error(
        "command `{command}` failed with {status}{}",
        stderr_block(stderr_tail)
    )]
    CommandFailed {
        /// The shell command.
        command: String,
        /// Exit status as text (`exit code 3`, `signal 9`).
        status: String,
        /// Last lines of its stderr.
        stderr_tail: String,
        /// Where the full log is.
        log: PathBuf,
    },
    /// In shard mode, a partition that belongs to another shard of the stage (see
    /// [`StageContext::set_shard`](super::context::StageContext::set_shard)): not computed here.
    #[error("partition `{item}` belongs to another shard")]
    OtherShard {
        /// The item.
        item: String,
    },
    /// A declared output is missing after the stage finished.
    // The path is in the stage's temporary directory, which is gone by the time the user reads
    // the message, so the message names the output relative to $LUNA_OUT instead.
    #[error("declared output `{name}` was not produced under $LUNA_OUT")]
    MissingOutput {
        /// Output name.
        name: String,
        /// Where it was expected (inside the stage's temporary output directory).
        path: PathBuf,
    },
    /// The stage asked for an upstream artifact it does not have.
    #[error("no upstream stage `{name}` among this stage's inputs ({})", available.join(", "))]
    NoUpstream {
        /// What was asked for.
        name: String,
        /// What there is.
        available: Vec<String>,
    },
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The cache failed while committing an artifact or partition.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// An upstream artifact failed its check before the stage could consume it.
    #[error("upstream stage `{stage}`: {source}")]
    Upstream {
        /// The upstream stage.
        stage: String,
        /// What is wrong with its artifact.
        source: CacheError,
    },
    /// The stage's output did not fit: a write into the cache failed with ENOSPC or EDQUOT
    /// (found anywhere in the error's source chain). Stage outputs are written under the
    /// cache's `tmp/` and discarded on failure, so the message names the cache dir, not the
    /// deleted file; the original error stays reachable as `source`.
    #[error("no space left on device{}: the cache dir {} is full; the stage's output did not fit, so the stage was not committed", if *quota { " (disk quota exceeded)" } else { "" }, cache.display())]
    NoSpace {
        /// The cache root.
        cache: PathBuf,
        /// EDQUOT (the user's quota) rather than ENOSPC (the file system).
        quota: bool,
        /// The failure as the stage reported it.
        #[source]
        source: Box<StageError>,
    },
    /// The stage panicked (a bug in luna: please report it).
    #[error("stage panicked: {0}")]
    Panicked(String),
    /// A file the user gave the stage cannot be used (not what it claims to be, does not fit,
    /// refused as unsafe): the user's to fix, so `luna run` exits 2, not 1.
    #[error("{source}")]
    BadInput {
        /// What is wrong with it (names the file).
        source: Box<dyn std::error::Error + Send + Sync>,
        /// What the user can do about it.
        hint: Option<String>,
    },
}

/// Whether an I/O error in `e`'s source chain says the file system is full (`Some(false)`:
/// ENOSPC) or the quota is spent (`Some(true)`: EDQUOT).
pub fn out_of_space(e: &(dyn std::error::Error + 'static)) -> Option<bool> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::StorageFull => return Some(false),
                std::io::ErrorKind::QuotaExceeded => return Some(true),
                _ => {}
            }
        }
        cur = err.source();
    }
    None
}

/// The stderr tail of a failed command as an indented block after the message (empty when the
/// command wrote nothing to stderr): the first thing a user needs to see, without opening the log.
fn stderr_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        return String::new();
    }
    let lines: Vec<String> = tail.lines().map(|l| format!("  {l}")).collect();
    format!("\nstderr (last lines):\n{}", lines.join("\n"))
}

impl StageError {
    /// A user's input file that cannot be used ([`StageError::BadInput`]).
    pub fn bad_input(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::BadInput {
            source: Box::new(e),
            hint: None,
        }
    }
    /// Whether the failure is a user's input file that cannot be used ([`StageError::BadInput`]).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, StageError::BadInput { .. })
    }
    /// A domain error without a hint.
    pub fn domain(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Domain {
            source: Box::new(e),
            hint: None,
        }
    }
    /// A message error.
    pub fn msg(message: impl Into<String>) -> Self {
        StageError::Message {
            message: message.into(),
            hint: None,
        }
    }
    /// Adds or replaces the hint.
    pub fn with_hint(self, h: impl Into<String>) -> Self {
        match self {
            StageError::Domain { source, .. } => StageError::Domain {
                source,
                hint: Some(h.into()),
            },
            StageError::Message { message, .. } => StageError::Message {
                message,
                hint: Some(h.into()),
            },
            other => other,
        }
    }
    /// An I/O error on a path.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io {
            path: path.into(),
            source,
        }
    }
    /// This error as [`StageError::NoSpace`] when a write into the cache at `cache_root` ran
    /// out of space somewhere in its chain; otherwise unchanged.
    pub fn or_no_space(self, cache_root: &std::path::Path) -> Self {
        match out_of_space(&self) {
            Some(quota) if !matches!(self, StageError::NoSpace { .. }) => StageError::NoSpace {
                cache: cache_root.to_path_buf(),
                quota,
                source: Box::new(self),
            },
            _ => self,
        }
    }
    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            StageError::Domain { hint, .. }
            | StageError::Message { hint, .. }
            | StageError::BadInput { hint, .. } => hint.clone(),
            StageError::NoSpace { cache, .. } => Some(format!(
                "free space on the file system of {} (`df -h {}`), delete objects no recent run uses with `luna cache gc`, or put the cache on a larger disk (--cache-dir / LUNA_CACHE_DIR)",
                cache.display(),
                cache.display()
            )),
            StageError::CommandFailed { log, .. } => {
                Some(format!("full output in {}", log.display()))
            }
            StageError::MissingOutput { .. } => {
                Some("the command must write each declared output under $LUNA_OUT".into())
            }
            StageError::NoUpstream { .. } => Some("add the stage to `needs:`".into()),
            StageError::Io { .. } | StageError::OtherShard { .. } => None,
            StageError::Cache(e) | StageError::Upstream { source: e, .. } => e.hint(),
            StageError::Panicked(_) => {
                Some("this is a bug in luna; the stage log has details".into())
            }
        }
    }
}

/// Errors of the content-addressed store.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// File system error inside the cache.
    #[error("cache {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A manifest could not be read or parsed.
    #[error("cache manifest {path} is unreadable: {reason}")]
    BadManifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No object with this key.
    #[error("no cached artifact {key}")]
    Missing {
        /// The key.
        key: String,
    },
    /// A stage's output holds something other than regular files and directories.
    #[error("the stage's output `{}` is a {what}{}; luna commits only regular files and directories", path.display(), target.as_ref().map(|t| format!(" (to {})", t.display())).unwrap_or_default())]
    SpecialFile {
        /// Path relative to the output directory ($LUNA_OUT).
        path: PathBuf,
        /// What it is (`symbolic link`, `FIFO`, …).
        what: &'static str,
        /// A symlink's target.
        target: Option<PathBuf>,
    },
    /// An object's files do not match its manifest.
    #[error("cached artifact {} is damaged: {}", super::cache::short(key), problems.join("; "))]
    Damaged {
        /// The key.
        key: String,
        /// What does not match.
        problems: Vec<String>,
    },
    /// A key read from a manifest, a remote, a run record or an argument is not a key (64
    /// lowercase hex digits): it never reaches a path.
    #[error("{origin} names {key:?}, which is not a key (64 lowercase hex digits)")]
    BadKey {
        /// The string found.
        key: String,
        /// Where it was read (a manifest, a remote, a run record).
        origin: String,
    },
    /// An object of a shared cache does not match its key (a member's planted or edited
    /// object): refused before a run uses it.
    #[error("cached artifact {} in the shared cache does not match its key: {}", super::cache::short(key), problems.join("; "))]
    Mismatch {
        /// The key.
        key: String,
        /// The object's folder.
        dir: PathBuf,
        /// What does not match.
        problems: Vec<String>,
    },
    /// The cache cannot be written (a read-only mount, or a folder of another user) and the
    /// run has stages to compute.
    #[error("cache {} is read-only and {stages} stages must be computed (first: `{first}`); a read-only cache only serves runs whose stages it holds", root.display())]
    ReadOnly {
        /// The cache root.
        root: PathBuf,
        /// Stages to compute.
        stages: usize,
        /// The first of them.
        first: String,
    },
    /// A cache entry that luna makes itself is a symbolic link (planted by someone else).
    #[error("cache entry {} is a symbolic link; luna never follows links inside a cache", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// `cache gc` found a `luna run` using the cache.
    #[error("a `luna run` is using the cache {}; gc deletes nothing while a run may read its objects", root.display())]
    InUse {
        /// The cache root.
        root: PathBuf,
    },
}

impl CacheError {
    /// Whether the user (or the cache's state) must change something rather than retry: a
    /// read-only cache, a planted link, a string that is not a key (exit 2).
    pub fn is_setup(&self) -> bool {
        match self {
            CacheError::ReadOnly { .. }
            | CacheError::Symlink { .. }
            | CacheError::BadKey { .. } => true,
            CacheError::Io { source, .. } => {
                source.raw_os_error() == Some(libc::EROFS)
                    || source.kind() == std::io::ErrorKind::PermissionDenied
            }
            _ => false,
        }
    }
    /// Wraps an I/O error.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io {
            path: path.into(),
            source,
        }
    }
    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            CacheError::Io { .. } => Some("check the cache directory's permissions and free space (--cache-dir / LUNA_CACHE_DIR)".into()),
            CacheError::BadManifest { .. } => Some("run `luna cache verify` to quarantine corrupt objects".into()),
            CacheError::Missing { .. } => Some("run the pipeline to produce it".into()),
            CacheError::SpecialFile { .. } => Some("write (or `cp -L`) the file itself into $LUNA_OUT instead of a link or special file".into()),
            CacheError::Damaged { .. } => Some("run `luna cache verify` to quarantine it; the next `luna run` recomputes it".into()),
            CacheError::InUse { .. } => Some("run gc again when the running `luna run`s have finished".into()),
            CacheError::Mismatch { dir, .. } => Some(format!("luna will not use it: its owner (`ls -ld {}`) or root must delete it; the next run then computes it", dir.display())),
            CacheError::ReadOnly { .. } => Some("run with a writable --cache-dir (or LUNA_CACHE_DIR), or ask the cache's owner to compute these stages".into()),
            CacheError::BadKey { .. } => Some("the source was damaged or written by someone else: do not use it (remove the object, record or remote entry that names it)".into()),
            CacheError::Symlink { .. } => Some("someone with write access to the cache planted it: remove the link (as its owner or root) and check what it points to".into()),
        }
    }
}

/// Errors of cache remotes (`luna cache push/pull`, `luna run --pull`).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The remote's URL is not one luna understands.
    #[error("remote `{remote}`: bad URL {url}: {reason}")]
    BadUrl {
        /// The remote's name.
        remote: String,
        /// Its URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A `file://` remote's folder does not exist (the share is not mounted?).
    #[error("remote `{remote}`: folder {} does not exist", path.display())]
    NoFolder {
        /// The remote's name.
        remote: String,
        /// The folder.
        path: PathBuf,
    },
    /// The server did not answer.
    #[error("remote `{remote}` ({url}) is unreachable: {reason}")]
    Unreachable {
        /// The remote's name.
        remote: String,
        /// Its URL.
        url: String,
        /// The client's words.
        reason: String,
    },
    /// The server refused the credentials.
    #[error("remote `{remote}` refused the credentials: {reason}")]
    Credentials {
        /// The remote's name.
        remote: String,
        /// The server's words.
        reason: String,
    },
    /// No credentials in the environment or the AWS files, and no instance metadata service.
    #[error("remote `{remote}`: no AWS credentials found")]
    NoCredentials {
        /// The remote's name.
        remote: String,
    },
    /// The bucket does not exist.
    #[error("remote `{remote}`: bucket `{bucket}` does not exist")]
    NoBucket {
        /// The remote's name.
        remote: String,
        /// The bucket.
        bucket: String,
    },
    /// Any other failed request.
    #[error("remote `{remote}`: {what} failed: {reason}")]
    Transfer {
        /// The remote's name.
        remote: String,
        /// The operation.
        what: String,
        /// The client's words.
        reason: String,
    },
    /// The local cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl RemoteError {
    /// Whether the remote's configuration or the environment is at fault (exit code 2), rather
    /// than a transfer that failed midway.
    pub fn is_setup(&self) -> bool {
        !matches!(self, RemoteError::Transfer { .. } | RemoteError::Cache(_))
    }

    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RemoteError::BadUrl { remote, .. } => format!("a remote URL is s3://BUCKET/PREFIX or file:///ABSOLUTE/PATH; fix it with `luna remote add {remote} URL --force`"),
            RemoteError::NoFolder { .. } => "mount the share, or create the folder (`luna cache init --shared DIR` for a team folder)".into(),
            RemoteError::Unreachable { remote, .. } => format!("check the server address: `endpoint` in [remotes.{remote}] of luna.toml, or AWS_ENDPOINT_URL; is the server running?"),
            RemoteError::NoCredentials { remote } => format!("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add a profile to ~/.aws/credentials (and `profile` to [remotes.{remote}] or AWS_PROFILE)"),
            RemoteError::Credentials { .. } => "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE with ~/.aws/credentials) to a key the server accepts".into(),
            RemoteError::NoBucket { remote, bucket } => format!("create the bucket `{bucket}` on the server, or point the remote at an existing one with `luna remote add {remote} s3://BUCKET/PREFIX --force`"),
            RemoteError::Transfer { .. } => "run the command again: complete files are not sent again".into(),
            RemoteError::Cache(e) => return e.hint(),
        })
    }
}

/// Errors while fingerprinting external inputs.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// A required input does not exist.
    #[error("input `{name}` not found: {path}")]
    Missing {
        /// Input label.
        name: String,
        /// Resolved path.
        path: PathBuf,
    },
    /// An input could not be read.
    #[error("input `{name}`: cannot read {path}: {source}")]
    Io {
        /// Input label.
        name: String,
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl FingerprintError {
    /// What the user can do next.
    pub fn hint(&self) -> Option<String> {
        match self {
            FingerprintError::Missing { .. } => Some(
                "check the path in the pipeline (relative paths start at the workspace root) or override it with --set"
                    .into(),
            ),
            FingerprintError::Io { .. } => Some("check the file's permissions".into()),
        }
    }
}
