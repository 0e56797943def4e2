//! Run records: `runs/<id>/run.json` plus one log file per stage under `runs/<id>/logs/`, and
//! the per-pipeline state file `.luna/state/<pipeline>.json` (the key material each stage had
//! when it last ran or was reused) from which `status` explains re-runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::events::StageStatus;
use super::fingerprint::KeyMaterial;
use super::reason::RerunReason;

/// One stage in a run record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    /// Stage name.
    pub stage: String,
    /// Kind.
    pub kind: String,
    /// Cache key.
    pub key: String,
    /// Outcome.
    pub status: StageStatus,
    /// Seconds.
    pub duration_s: f64,
    /// Seconds from the run's start to the stage's start (0 in records written before luna
    /// kept it).
    #[serde(default)]
    pub start_s: f64,
    /// Why it ran.
    pub reasons: Vec<RerunReason>,
    /// Error text, for failures and skips.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Partition keys the artifact uses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<String>,
    /// Ids of the scheduler jobs that ran the stage's work (`--executor slurm`: one per job,
    /// `123_4` for task 4 of array job 123, resubmissions included); empty for local work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<String>,
    /// The failure was a user's input file that cannot be used (`luna run` exits 2).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bad_input: bool,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Run id (sortable by start time).
    pub id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Pipeline file, relative to the workspace.
    pub pipeline_file: String,
    /// Git revision of the workspace, if it is a git checkout.
    pub git_revision: Option<String>,
    /// Host name.
    pub host: String,
    /// luna version.
    pub luna_version: String,
    /// RFC 3339 start.
    pub started: String,
    /// RFC 3339 end.
    pub ended: Option<String>,
    /// Whether every stage succeeded.
    pub success: bool,
    /// Stages in execution order.
    pub stages: Vec<StageRecord>,
}

impl RunRecord {
    /// Counts of (ran, cached, failed, skipped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let c = |s| self.stages.iter().filter(|r| r.status == s).count();
        (
            c(StageStatus::Ran),
            c(StageStatus::Cached),
            c(StageStatus::Failed),
            c(StageStatus::Skipped),
        )
    }
}

/// Short host name (first label).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for 256 bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let full = String::from_utf8_lossy(&buf[..end]).to_string();
    full.split('.')
        .next()
        .unwrap_or("localhost")
        .replace(['/', ' '], "_")
}

/// The git revision of `workspace` (read from `.git` without spawning git).
pub fn git_revision(workspace: &Path) -> Option<String> {
    let git = workspace
        .ancestors()
        .map(|d| d.join(".git"))
        .find(|g| g.exists())?;
    let head = fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(r) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(h) = fs::read_to_string(git.join(r)) {
        return Some(h.trim().to_string());
    }
    let packed = fs::read_to_string(git.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(r).map(|h| h.trim().to_string()))
}

/// A new run id: UTC time + pipeline + 4 hex digits.
pub fn new_run_id(pipeline: &str) -> String {
    let now = chrono::Utc::now();
    let salt = blake3::hash(
        format!(
            "{}{}{:?}",
            std::process::id(),
            pipeline,
            now.timestamp_nanos_opt()
        )
        .as_bytes(),
    );
    format!(
        "{}-{pipeline}-{}",
        now.format("%Y%m%dT%H%M%S"),
        &salt.to_hex()[..4]
    )
}

/// The runs directory of a workspace.
#[derive(Debug, Clone)]
pub struct Runs {
    dir: PathBuf,
}

impl Runs {
    /// Runs under `dir` (usually `<workspace>/runs`).
    pub fn new(dir: PathBuf) -> Self {
        Runs { dir }
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Directory of run `id`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }
    /// Writes `run.json` atomically and durably (fsync'd, renamed).
    pub fn save(&self, rec: &RunRecord) -> std::io::Result<()> {
        let d = self.run_dir(&rec.id);
        fs::create_dir_all(&d)?;
        super::cache::write_durable(
            &d.join("run.json"),
            &serde_json::to_vec_pretty(rec).map_err(std::io::Error::other)?,
        )
    }
    /// Appends a line to the run's `warnings.log` (next to `run.json`): problems of the run
    /// itself, e.g. a record that could not be saved.
    pub fn append_warning(&self, id: &str, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        let d = self.run_dir(id);
        fs::create_dir_all(&d)?;
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("warnings.log"))?;
        writeln!(f, "{} warning: {line}", chrono::Utc::now().to_rfc3339())
    }
    /// All run records, oldest first by start time (unreadable ones skipped).
    pub fn list(&self) -> Vec<RunRecord> {
        let mut ids: Vec<String> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("run.json").is_file())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        ids.sort();
        let mut all: Vec<RunRecord> = ids.iter().filter_map(|id| self.load(id).ok()).collect();
        // Ids have one-second resolution and a random suffix, so two runs in the same second
        // would sort by chance; `started` has sub-second precision (RFC 3339, UTC), and
        // `latest` and `cache gc --keep-runs` depend on this order.
        all.sort_by(|a, b| a.started.cmp(&b.started).then_with(|| a.id.cmp(&b.id)));
        all
    }
    /// Loads run `id`.
    pub fn load(&self, id: &str) -> std::io::Result<RunRecord> {
        let b = fs::read(self.run_dir(id).join("run.json"))?;
        serde_json::from_slice(&b).map_err(std::io::Error::other)
    }
    /// Finds a run by id or unique id prefix (or `latest`).
    pub fn find(&self, id: &str) -> Option<RunRecord> {
        let all = self.list();
        if id == "latest" {
            return all.into_iter().last();
        }
        let matches: Vec<RunRecord> = all.into_iter().filter(|r| r.id.starts_with(id)).collect();
        if matches.len() == 1 {
            matches.into_iter().next()
        } else {
            None
        }
    }
}

/// The last key material of each stage of one pipeline (`.luna/state/<pipeline>.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PipelineState {
    /// By stage name.
    pub stages: BTreeMap<String, StageState>,
}

/// Last recorded state of one stage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    /// Its key.
    pub key: String,
    /// The material it was computed from.
    pub material: KeyMaterial,
}

impl PipelineState {
    fn path(workspace: &Path, pipeline: &str) -> PathBuf {
        workspace
            .join(".luna")
            .join("state")
            .join(format!("{pipeline}.json"))
    }
    /// Loads the state (empty if none; an unreadable file is reported as Err text).
    pub fn load(workspace: &Path, pipeline: &str) -> Result<PipelineState, String> {
        match fs::read(Self::path(workspace, pipeline)) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PipelineState::default()),
            Err(e) => Err(e.to_string()),
        }
    }
    /// Records stages, merging with what is on disk (another run may have written it).
    pub fn record(workspace: &Path, pipeline: &str, stages: Vec<(String, StageState)>) {
        if stages.is_empty() {
            return;
        }
        let path = Self::path(workspace, pipeline);
        let mut cur = Self::load(workspace, pipeline).unwrap_or_default();
        cur.stages.extend(stages);
        // best effort: `status` explains re-runs from it, the cache decides what runs (a
        // folder that cannot be made fails the write below, which is ignored for that reason)
        if let Some(d) = path.parent() {
            let _ = fs::create_dir_all(d);
        }
        if let Ok(b) = serde_json::to_vec(&cur) {
            let _ = super::cache::write_durable(&path, &b);
        }
    }
}
