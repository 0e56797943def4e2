//! What a stage gets when it runs: its output directory, its upstream artifacts, a progress
//! handle, a log, and per-item partitions. A stage never chooses where its outputs live.
//!
//! **Partitions.** A stage that maps over items (CT series) calls [`StageContext::partition`]
//! once per item with the item's own key material (e.g. the CT's content hash and the item's
//! candidate rows). Each partition is a cache object of its own, keyed by the kind, its version,
//! the stage's semantic params and that material — *not* by the stage key — so adding CTs to the
//! input changes the stage key but only the new items are computed. The stage then assembles its
//! output from partition files (hard links where possible), and its manifest lists the partition
//! keys so `cache gc` keeps them with it.
//!
//! **Shards.** An executor backend may spread a partitioned stage's items over several
//! processes (a Slurm job array): each runs the stage with [`StageContext::set_shard`]`(i, n)`,
//! computes and commits only the items whose name hashes to shard `i`, and gets
//! [`StageError::OtherShard`] for the others (so the stage stops before assembling an output,
//! which a shard never commits). The stage itself then runs once more, unsharded, over the
//! cached partitions: the same code path as a local run, so keys and bytes are equal. Rejected:
//! a per-kind "list your items" hook (every partitioned kind would have to split its `run`),
//! and shards by call order (threads make it nondeterministic).
//!
//! **Thread budget.** A stage's thread count is a [`ThreadBudget`] shared with the executor,
//! which gives every running stage an equal share of the machine's cores ([`share_cores`])
//! and recomputes the shares whenever a stage finishes, so a long stage takes the cores that
//! free up; [`StageContext::threads`] reads the current value, and a stage that can change its
//! thread count between batches (torch) re-reads it there. Rejected: a count fixed when the
//! stage starts (a training that started beside another ran alone on one core afterwards).

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::cache::{read_manifest, Cache, FileEntry, Manifest, MANIFEST_VERSION};
use super::error::StageError;
use super::events::{Event, EventSink, ProgressHandle};
use super::kind::member_binding;
use super::statcache::StatCache;

/// An upstream artifact available to a stage.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Upstream {
    /// Stage name.
    pub stage: String,
    /// Its kind.
    pub kind: String,
    /// Its key.
    pub key: String,
    /// Directory of its artifact.
    pub dir: PathBuf,
    /// Whether it is a direct `needs:` entry (otherwise a transitive ancestor).
    pub direct: bool,
}

/// A committed partition.
#[derive(Debug, Clone)]
pub struct Partition {
    /// Its key.
    pub key: String,
    /// Its directory in the cache.
    pub dir: PathBuf,
    /// Whether it was already cached.
    pub cached: bool,
}

/// A running stage's thread budget: set by the executor, read by the stage (clones share it).
#[derive(Debug, Clone)]
pub struct ThreadBudget(Arc<AtomicUsize>);

impl ThreadBudget {
    /// A budget of `n` threads (at least 1).
    pub fn new(n: usize) -> ThreadBudget {
        ThreadBudget(Arc::new(AtomicUsize::new(n.max(1))))
    }
    /// The current number of threads.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    /// Changes the number of threads (at least 1).
    pub fn set(&self, n: usize) {
        self.0.store(n.max(1), Ordering::Relaxed);
    }
}

/// The machine's cores (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Gives each of `running` an equal share of the machine's cores (at least 1 each).
pub fn share_cores<'a>(running: impl ExactSizeIterator<Item = &'a ThreadBudget>) {
    let share = cores() / running.len().max(1);
    for b in running {
        b.set(share);
    }
}

/// The stage's view of the run.
pub struct StageContext {
    stage: String,
    pipeline: String,
    out_dir: PathBuf,
    workspace: PathBuf,
    upstream: Vec<Upstream>,
    bindings: BTreeMap<String, String>,
    progress: ProgressHandle,
    tx: EventSink,
    with: serde_json::Value,
    log_file: Mutex<Option<fs::File>>,
    log_path: PathBuf,
    cache: Cache,
    partition_base: serde_json::Value,
    partitions: Mutex<Vec<String>>,
    fetch: Option<std::sync::Arc<dyn super::remote::Fetcher>>,
    linked: Mutex<Vec<FileEntry>>,
    threads: ThreadBudget,
    key: String,
    stat: Arc<StatCache>,
    shard: Option<(u32, u32)>,
    shard_errors: Mutex<Vec<String>>,
    jobs: Mutex<Vec<String>>,
    computed: Mutex<std::collections::BTreeSet<String>>,
}

/// The shard (of `count`) that computes `item`: a hash of its name, so every process agrees
/// without talking to the others.
pub fn shard_of(item: &str, count: u32) -> u32 {
    let h = blake3::hash(item.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) % u64::from(count.max(1))) as u32
}

/// Everything needed to build a [`StageContext`].
pub struct ContextParts {
    /// Stage name.
    pub stage: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Output directory (a fresh tmp dir).
    pub out_dir: PathBuf,
    /// Workspace root.
    pub workspace: PathBuf,
    /// Upstream artifacts (direct first).
    pub upstream: Vec<Upstream>,
    /// Named inputs bound at plan time: input name → upstream stage name.
    pub bindings: BTreeMap<String, String>,
    /// Where events go.
    pub tx: EventSink,
    /// The stage's `with:` after interpolation, hints included (for worker processes).
    pub with: serde_json::Value,
    /// Where the stage log goes.
    pub log_path: PathBuf,
    /// The cache.
    pub cache: Cache,
    /// Kind, version and semantic params (partition keys start from these).
    pub partition_base: serde_json::Value,
    /// Thread budget for the stage (the executor may change it while the stage runs).
    pub threads: ThreadBudget,
    /// The stage's cache key (empty for tools outside a run).
    pub key: String,
    /// Stat cache for [`StageContext::hash_file`].
    pub stat: Option<Arc<StatCache>>,
}

impl StageContext {
    /// Builds a context.
    pub fn new(p: ContextParts) -> StageContext {
        if let Some(d) = p.log_path.parent() {
            let _ = fs::create_dir_all(d);
        }
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p.log_path)
            .ok();
        StageContext {
            progress: ProgressHandle::new(&p.stage, p.tx.clone()),
            stage: p.stage,
            pipeline: p.pipeline,
            out_dir: p.out_dir,
            workspace: p.workspace,
            upstream: p.upstream,
            bindings: p.bindings,
            tx: p.tx,
            with: p.with,
            log_file: Mutex::new(log_file),
            log_path: p.log_path,
            cache: p.cache,
            partition_base: p.partition_base,
            partitions: Mutex::new(Vec::new()),
            fetch: None,
            linked: Mutex::new(Vec::new()),
            threads: p.threads,
            key: p.key,
            stat: p.stat.unwrap_or_else(|| Arc::new(StatCache::disabled())),
            shard: None,
            shard_errors: Mutex::new(Vec::new()),
            jobs: Mutex::new(Vec::new()),
            computed: Mutex::new(Default::default()),
        }
    }

    /// Keys of the partitions computed (not found cached) for this stage so far, here or in
    /// other processes ([`StageContext::mark_computed`]).
    pub fn computed_partitions(&self) -> Vec<String> {
        self.computed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Records partitions that other processes computed for this run of the stage (its shards):
    /// [`StageContext::partition`] then reports them as computed, not cached, so what the
    /// stage writes about its work is the same as when it computed them itself.
    pub fn mark_computed(&self, keys: &[String]) {
        self.computed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(keys.iter().cloned());
    }

    /// Shard mode: from now on [`StageContext::partition`] computes only the items of shard
    /// `index` of `count` (by a hash of the item's name) and returns
    /// [`StageError::OtherShard`] for the rest.
    pub fn set_shard(&mut self, index: u32, count: u32) {
        self.shard = Some((index, count.max(1)));
    }

    /// The shard (index, count) this context computes, if in shard mode.
    pub fn shard(&self) -> Option<(u32, u32)> {
        self.shard
    }

    /// A shard's result: the stage's own result outside shard mode; in shard mode, success
    /// when the stage ended well or only at [`StageError::OtherShard`] and none of this
    /// shard's partitions failed, else the first of their errors.
    pub fn settle_shard(&self, res: Result<(), StageError>) -> Result<(), StageError> {
        if self.shard.is_none() {
            return res;
        }
        match res {
            Ok(()) | Err(StageError::OtherShard { .. }) => match self.shard_errors().first() {
                Some(e) => Err(StageError::msg(e.clone())),
                None => Ok(()),
            },
            Err(e) => Err(e),
        }
    }

    /// Whether `item` is computed by this context (always, outside shard mode).
    pub fn owns(&self, item: &str) -> bool {
        match self.shard {
            None => true,
            Some((i, n)) => shard_of(item, n) == i,
        }
    }

    /// Errors of this shard's own partitions (shard mode), in the order they happened: the
    /// stage's own result cannot tell them from [`StageError::OtherShard`].
    pub fn shard_errors(&self) -> Vec<String> {
        self.shard_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the id of a scheduler job that ran part of this stage (for the run record).
    pub fn record_job(&self, id: impl Into<String>) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id.into());
    }

    /// The scheduler job ids recorded so far.
    pub fn job_ids(&self) -> Vec<String> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stage name.
    pub fn stage(&self) -> &str {
        &self.stage
    }
    /// Pipeline name.
    pub fn pipeline(&self) -> &str {
        &self.pipeline
    }
    /// Where outputs go.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }
    /// Workspace root.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }
    /// Resolves a user path: absolute stays, relative is taken from the workspace root.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.workspace.join(p)
        }
    }
    /// blake3 of a file's bytes, via the run's stat cache (unchanged files are not re-read).
    pub fn hash_file(&self, path: &Path) -> Result<String, StageError> {
        let meta = fs::metadata(path).map_err(|e| StageError::io(path, e))?;
        self.stat
            .hash(path, &meta)
            .map_err(|e| StageError::io(path, e))
    }
    /// The stage's cache key.
    pub fn key(&self) -> &str {
        &self.key
    }
    /// A directory that survives a crash of this stage and is deleted once the stage's
    /// artifact is committed: `<cache>/resume/<key>/`. Long stages (training) keep
    /// checkpoints here so a re-run after `kill -9` resumes instead of starting over.
    pub fn resume_dir(&self) -> Result<PathBuf, StageError> {
        let d = self.cache.resume_dir(&self.key);
        fs::create_dir_all(&d).map_err(|e| StageError::io(&d, e))?;
        Ok(d)
    }
    /// Thread budget (a hint): its current value, which may change while the stage runs.
    pub fn threads(&self) -> usize {
        self.threads.get()
    }
    /// The shared thread budget itself (a worker process's context follows its parent's).
    pub fn thread_budget(&self) -> &ThreadBudget {
        &self.threads
    }
    /// The stage's `with:` as written (after interpolation, hints included).
    pub fn with_json(&self) -> &serde_json::Value {
        &self.with
    }
    /// The progress handle.
    pub fn progress(&self) -> &ProgressHandle {
        &self.progress
    }
    /// Path of this stage's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
    /// All upstream artifacts (direct `needs` first, then transitive ancestors).
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstream
    }

    /// The upstream artifact of stage `name`.
    pub fn upstream(&self, name: &str) -> Result<&Upstream, StageError> {
        self.upstream
            .iter()
            .find(|u| u.stage == name)
            .ok_or_else(|| StageError::NoUpstream {
                name: name.into(),
                available: self.upstream.iter().map(|u| u.stage.clone()).collect(),
            })
    }

    /// The named inputs bound at plan time (input name → upstream stage name).
    pub fn bindings(&self) -> &BTreeMap<String, String> {
        &self.bindings
    }

    /// The upstream artifact bound to the named input `name` (declared by the kind's
    /// `slots`; binding errors are spec errors, so an unbound required input here is a bug
    /// of the kind, reported as such).
    pub fn input(&self, name: &str) -> Result<&Upstream, StageError> {
        self.input_opt(name)?.ok_or_else(|| {
            StageError::msg(format!(
                "stage `{}` has no upstream bound to its input `{name}`",
                self.stage
            ))
            .with_hint(format!(
                "add a stage that provides it to `needs:`, or name one with `with: {{ {name}: <stage> }}`"
            ))
        })
    }

    /// Every upstream artifact bound to the listed input `name`
    /// ([`InputSlot::listed`](super::kind::InputSlot::listed)), in the order of its list (one
    /// when a single stage is bound, none when the input is unbound).
    pub fn inputs(&self, name: &str) -> Result<Vec<&Upstream>, StageError> {
        (0..)
            .map(|i| self.bindings.get(&member_binding(name, i)))
            .take_while(Option::is_some)
            .flatten()
            .map(|stage| self.upstream(stage))
            .collect()
    }

    /// The upstream artifact bound to the optional input `name`, if any.
    pub fn input_opt(&self, name: &str) -> Result<Option<&Upstream>, StageError> {
        match self.bindings.get(name) {
            None => Ok(None),
            Some(stage) => self.upstream(stage).map(Some),
        }
    }

    /// Lets [`StageContext::partition`] fetch a missing partition from a remote before
    /// computing it (`luna run --pull`).
    pub fn set_fetcher(&mut self, fetch: Option<std::sync::Arc<dyn super::remote::Fetcher>>) {
        self.fetch = fetch;
    }

    /// Kind, version and semantic params: what every partition key of this stage starts from.
    pub fn partition_base(&self) -> &serde_json::Value {
        &self.partition_base
    }

    /// Records partitions (and files with known hashes) that a worker process committed for
    /// this stage, so the stage manifest lists them and `cache gc` keeps them.
    pub fn record_partitions(&self, keys: &[String], known: &[FileEntry]) {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(keys.iter().cloned());
        self.linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(known.iter().cloned());
    }

    /// The nearest upstream artifact (direct first) holding `file`; an error names `what`.
    pub fn upstream_file(&self, file: &str, what: &str) -> Result<PathBuf, StageError> {
        self.upstream
            .iter()
            .map(|u| u.dir.join(file))
            .find(|p| p.exists())
            .ok_or_else(|| {
                StageError::msg(format!(
                    "stage `{}` needs {what} (`{file}`) but no upstream stage provides it",
                    self.stage
                ))
                .with_hint(format!("add the stage that produces {file} to `needs:`"))
            })
    }

    /// Writes a line to the stage log (and to the terminal with `-v`).
    pub fn log(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if let Some(f) = self
            .log_file
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = writeln!(f, "{} {line}", chrono::Local::now().format("%H:%M:%S%.3f"));
        }
        self.tx.send(Event::Log {
            stage: self.stage.clone(),
            line: line.to_string(),
        });
    }

    /// Returns the cached partition for `item`, computing it with `produce` (which writes into
    /// the directory it is given) if it is not cached. Safe to call from many threads.
    pub fn partition(
        &self,
        item: &str,
        material: &serde_json::Value,
        produce: impl FnOnce(&Path) -> Result<(), StageError>,
    ) -> Result<Partition, StageError> {
        let doc = serde_json::json!({ "luna_partition": 1, "base": self.partition_base, "item": item, "material": material });
        let key = blake3::hash(doc.to_string().as_bytes())
            .to_hex()
            .to_string();
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(key.clone());
        if !self.owns(item) {
            return Err(StageError::OtherShard { item: item.into() });
        }
        let dir = self.cache.object_dir(&key);
        if self.cache.has(&key) {
            let cached = !self
                .computed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&key);
            return Ok(Partition { key, dir, cached });
        }
        let _lock = self.cache.lock(&key)?;
        let fetched = match &self.fetch {
            Some(f) => f
                .fetch(&self.cache, &key)
                .map_err(|e| StageError::Message {
                    message: e.to_string(),
                    hint: e.hint(),
                })?,
            None => false,
        };
        if fetched || self.cache.has(&key) {
            return Ok(Partition {
                key,
                dir,
                cached: true,
            });
        }
        let tmp = self.cache.new_tmp(&key)?;
        let started = Instant::now();
        if let Err(e) = produce(&tmp) {
            self.cache.discard_tmp(&tmp);
            if self.shard.is_some() {
                self.shard_errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(format!("{item}: {e}"));
            }
            return Err(e);
        }
        let base = &self.partition_base;
        let manifest = Manifest {
            luna_manifest: MANIFEST_VERSION,
            key: key.clone(),
            stage: format!("{}[{item}]", self.stage),
            pipeline: self.pipeline.clone(),
            kind: format!(
                "{}/partition",
                base.get("kind").and_then(|k| k.as_str()).unwrap_or("?")
            ),
            version: base.get("version").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            params: serde_json::json!({ "item": item, "material": material }),
            upstream: Default::default(),
            inputs: Vec::new(),
            partitions: Vec::new(),
            files: Vec::new(),
            luna_version: env!("CARGO_PKG_VERSION").into(),
            created: chrono::Utc::now().to_rfc3339(),
            duration_s: started.elapsed().as_secs_f64(),
            same_output_as: None,
        };
        let dir = match self.cache.commit(&tmp, manifest) {
            Ok(d) => d,
            Err(e) => {
                self.cache.discard_tmp(&tmp);
                return Err(e.into());
            }
        };
        self.computed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone());
        Ok(Partition {
            key,
            dir,
            cached: false,
        })
    }

    /// Shows a line on the terminal (with `-v`) without writing it to the log file: for lines
    /// a worker process already wrote there.
    pub fn echo_log(&self, line: &str) {
        self.tx.send(Event::Log {
            stage: self.stage.clone(),
            line: line.to_string(),
        });
    }

    /// The cache this stage commits to.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Keys of the partitions used so far.
    pub fn partition_keys(&self) -> Vec<String> {
        let mut v = self
            .partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        v.sort();
        v.dedup();
        v
    }

    /// Links (or copies) `src` to `out_dir/rel`.
    pub fn link_into_output(&self, src: &Path, rel: &str) -> Result<PathBuf, StageError> {
        let dest = self.out_dir.join(rel);
        if let Some(p) = dest.parent() {
            fs::create_dir_all(p).map_err(|e| StageError::io(p, e))?;
        }
        if fs::hard_link(src, &dest).is_err() {
            fs::copy(src, &dest).map_err(|e| StageError::io(src, e))?;
        }
        // A file of a committed object is immutable and its hash is in that object's manifest:
        // remember it so the stage's own commit does not hash the same bytes again.
        let known = src
            .parent()
            .and_then(|d| read_manifest(&d.join("manifest.json")).ok())
            .and_then(|m| {
                let name = src.file_name()?.to_string_lossy().to_string();
                m.files.into_iter().find(|f| f.path == name)
            });
        if let Some(f) = known {
            let entry = FileEntry {
                path: rel.to_string(),
                size: f.size,
                blake3: f.blake3,
            };
            self.linked
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry);
        }
        Ok(dest)
    }

    /// Output files whose hashes are already known (linked from committed objects).
    pub fn known_files(&self) -> Vec<FileEntry> {
        self.linked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl StageContext {
    /// Runs `work` over `items` on `threads` threads, longest first by `cost`, and returns the
    /// results in item order. This is how per-item (per-series) stages schedule partitions:
    /// a shared queue sorted by estimated cost (ties in item order), so one slow item (a
    /// zlib-compressed CT with many slices) does not start last and leave the other threads
    /// idle. Rejected: rayon's `par_iter`, whose halving split can start the slowest item
    /// last. `cost` is a scheduling estimate only, never part of a key.
    pub fn longest_first<I, R, C, W>(
        &self,
        items: &[I],
        threads: usize,
        cost: C,
        work: W,
    ) -> Result<Vec<R>, StageError>
    where
        I: Sync,
        R: Send,
        C: Fn(&I) -> u64,
        W: Fn(&I) -> R + Sync,
    {
        let threads = threads.clamp(1, items.len().max(1));
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| StageError::msg(format!("cannot start {threads} threads: {e}")))?;
        let mut order: Vec<(u64, usize)> = items
            .iter()
            .enumerate()
            .map(|(i, it)| (cost(it), i))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        pool.scope(|s| {
            for _ in 0..threads {
                s.spawn(|_| loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&(_, i)) = order.get(k) else { break };
                    let r = work(&items[i]);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                });
            }
        });
        slots
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                m.into_inner()
                    .unwrap_or_else(|e| e.into_inner())
                    .ok_or_else(|| {
                        StageError::msg(format!(
                            "item {i} was not processed (a worker thread panicked)"
                        ))
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_the_executor_changes_is_what_the_running_stage_reads() {
        let dir = std::env::temp_dir().join(format!("luna-budget-{}", std::process::id()));
        let cache = match Cache::open(&dir.join("cache")) {
            Ok(c) => c,
            Err(e) => panic!("cache: {e}"),
        };
        let budget = ThreadBudget::new(1);
        let ctx = StageContext::new(ContextParts {
            stage: "s".into(),
            pipeline: "p".into(),
            out_dir: dir.join("out"),
            workspace: dir.clone(),
            upstream: Vec::new(),
            bindings: BTreeMap::new(),
            tx: EventSink::None,
            with: serde_json::Value::Null,
            log_path: dir.join("s.log"),
            cache,
            partition_base: serde_json::Value::Null,
            threads: budget.clone(),
            key: String::new(),
            stat: None,
        });
        assert_eq!(ctx.threads(), 1);
        // the executor's handle: one stage left running gets all the cores
        share_cores([&budget].into_iter());
        assert_eq!(ctx.threads(), cores());
        // two running stages share them, never below one thread each
        let other = ThreadBudget::new(1);
        share_cores([&budget, &other].into_iter());
        assert_eq!(ctx.threads(), (cores() / 2).max(1));
        assert_eq!(other.get(), (cores() / 2).max(1));
        // a worker process's context follows through its own handle
        ctx.thread_budget().set(0);
        assert_eq!(budget.get(), 1);
        let _ = fs::remove_dir_all(&dir); // best effort: a temp dir
    }
}
