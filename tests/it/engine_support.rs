//! CLI test harness for the engine tests: a temporary workspace built step by step
//! (`Ws::new().pipeline(..).file(..)`), and `luna(&[..])`, which runs the real binary in it.
//!
//! Tests drive the binary rather than the library so that exit codes, stderr rendering, run
//! records and cross-process behaviour (locks, kill -9) are what a user gets. The binary runs
//! with `LUNA_TEST_KINDS=1` (the `test_params` kind) and without any inherited
//! `LUNA_CACHE_DIR`, so a developer's environment cannot leak into a test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use serde_json::Value;

/// What one `luna` invocation returned.
#[derive(Debug, Clone)]
pub struct Out {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Out {
    /// Panics with both streams when the exit code is not `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A temporary luna workspace (a directory with `pipelines/`).
pub struct Ws {
    dir: tempfile::TempDir,
}

impl Default for Ws {
    fn default() -> Self {
        Ws::new()
    }
}

impl Ws {
    /// An empty workspace with a `pipelines/` directory.
    pub fn new() -> Ws {
        Ws::with_prefix("luna-engine-")
    }

    /// An empty workspace whose folder name starts with `prefix` (e.g. one holding `%`).
    pub fn with_prefix(prefix: &str) -> Ws {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("create a temp dir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("create pipelines/");
        Ws { dir }
    }

    /// The workspace root.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `root/rel`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes `pipelines/<name>.yaml`.
    pub fn pipeline(&self, name: &str, yaml: &str) -> &Self {
        self.file(&format!("pipelines/{name}.yaml"), yaml.as_bytes())
    }

    /// Writes a file (creating parent directories).
    pub fn file(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Self {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().expect("a file path has a parent"))
            .expect("create parent dir");
        std::fs::write(&p, bytes).expect("write test file");
        self
    }

    /// Sets a file's mtime `secs` seconds into the past (so the stat cache may store it).
    pub fn age(&self, rel: &str, secs: u64) -> &Self {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(rel))
            .expect("open file to age");
        f.set_modified(SystemTime::now() - Duration::from_secs(secs))
            .expect("set mtime");
        self
    }

    /// Reads a file as text.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// A `luna` command in this workspace (not started).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(crate::bin("luna"));
        c.args(args)
            .current_dir(self.root())
            .env("LUNA_TEST_KINDS", "1")
            .env_remove("LUNA_CACHE_DIR")
            .stdin(Stdio::null());
        c
    }

    /// Runs `luna args...` and collects its output.
    pub fn luna(&self, args: &[&str]) -> Out {
        self.luna_env(args, &[])
    }

    /// Runs `luna args...` with extra environment variables.
    pub fn luna_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        let o = c.output().expect("start the luna binary");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Every run record under `runs/`, oldest first (by start time).
    pub fn runs(&self) -> Vec<Value> {
        let mut v: Vec<Value> = std::fs::read_dir(self.path("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("run.json")).ok())
            .map(|b| serde_json::from_slice(&b).expect("run.json is JSON"))
            .collect();
        v.sort_by_key(|r| r["started"].as_str().unwrap_or_default().to_string());
        v
    }

    /// The most recent run record.
    pub fn last_run(&self) -> Value {
        self.runs().pop().expect("at least one run record")
    }

    /// `(stage, status)` of the most recent run, in execution order.
    pub fn last_statuses(&self) -> Vec<(String, String)> {
        statuses(&self.last_run())
    }

    /// Manifests of every object in `dir` (a cache root).
    pub fn manifests_in(dir: &Path) -> Vec<Value> {
        let mut out = Vec::new();
        for shard in std::fs::read_dir(dir.join("objects"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for obj in std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(b) = std::fs::read(obj.path().join("manifest.json")) {
                    out.push(serde_json::from_slice(&b).expect("manifest.json is JSON"));
                }
            }
        }
        out
    }

    /// Manifests of every object in the workspace's default cache.
    pub fn manifests(&self) -> Vec<Value> {
        Ws::manifests_in(&self.path("cache"))
    }

    /// How many committed objects (artifacts and partitions) stage `stage` has in the cache.
    pub fn committed(&self, stage: &str) -> usize {
        self.manifests()
            .iter()
            .filter(|m| m["stage"] == stage)
            .count()
    }

    /// The object directory of stage `stage` in the last run (default cache).
    pub fn object_of(&self, stage: &str) -> PathBuf {
        let run = self.last_run();
        let key = run["stages"]
            .as_array()
            .expect("run.json has stages")
            .iter()
            .find(|s| s["stage"] == stage)
            .and_then(|s| s["key"].as_str())
            .unwrap_or_else(|| panic!("stage {stage} in the last run"))
            .to_string();
        self.path("cache/objects").join(&key[..2]).join(&key)
    }

    /// Entries of a directory (names, sorted; empty when it does not exist).
    pub fn ls(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.path(rel))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// A pipeline `p` with one `command` stage `a` that runs `run` (a shell command, as written).
pub fn one_command(run: &str) -> String {
    let quoted = serde_json::to_string(run).expect("a string serialises");
    format!("pipeline: p\nstages:\n  a:\n    uses: command\n    with: {{ run: {quoted} }}\n")
}

/// `(stage, status)` pairs of a run record.
pub fn statuses(run: &Value) -> Vec<(String, String)> {
    run["stages"]
        .as_array()
        .expect("run.json has stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or_default().to_string(),
                s["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Builds the expected `(stage, status)` list.
pub fn st(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// Lines of `text` that start (after the right-aligned status column) with `word`, e.g. the
/// stage names of every `CACHED` line.
pub fn stages_with(text: &str, word: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let rest = l.strip_prefix(word)?.trim_start();
            // `[    0.00s] name` or `name ...`
            let rest = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']')?.1.trim_start(),
                None => rest,
            };
            rest.split_whitespace().next().map(String::from)
        })
        .collect()
}

/// blake3 hex of `bytes`.
pub fn b3(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}
