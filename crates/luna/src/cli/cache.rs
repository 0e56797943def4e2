//! `luna cache ls | verify | gc | push | pull`.
//!
//! gc keeps every object referenced by the last N *finished* runs of each pipeline recorded in
//! this workspace's `runs/` (stage artifacts and the partitions they list); a run that is still
//! going, or was killed, has no stages in its record and does not count among the N. gc holds
//! the cache's gc lock exclusively and refuses to start while any `luna run` holds it shared
//! (see `cache.rs`), so it never deletes what a live run reads; it never deletes lock files. On
//! a cache shared by several workspaces, run gc from each or keep N generous: gc cannot see
//! other workspaces' runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::workspace::{cache_root, open, workspace_here, Opened};
use super::{CliError, Globals, PipelineArgs};
use crate::engine::cache::{dir_size, remove_tree, short, Cache, SharedPolicy, VerifyPolicy};
use crate::engine::error::CacheError;
use crate::engine::plan::{plan, Selection};
use crate::engine::remote::{PullReport, PushReport, Remote};
use crate::engine::runs::Runs;

/// Cache subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// List cached objects.
    Ls,
    /// Re-hash every object against its manifest; quarantine corrupt ones (with --remote:
    /// check the remote's objects instead).
    Verify {
        /// Check this remote's objects (every file downloaded and hashed; nothing changes).
        #[arg(long, value_name = "REMOTE", num_args = 0..=1, default_missing_value = "")]
        remote: Option<String>,
    },
    /// Upload the artifacts of a pipeline's current stages (and their partitions) that the
    /// remote lacks (no PIPELINE: every object of the local cache).
    Push(TransferArgs),
    /// Make DIR a cache shared by the members of a Unix group (setgid group folders,
    /// read-only objects, locks across users); use it with --cache-dir DIR.
    Init {
        /// The cache folder (created if needed).
        #[arg(long, value_name = "DIR")]
        shared: PathBuf,
        /// The group whose members share it (default: your primary group).
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Let every account on the machine read the objects (default: only the group's
        /// members: folders 2770/3770, files 0440).
        #[arg(long)]
        world_readable: bool,
        /// When a run verifies an object against its key and its files' blake3 before using
        /// it: `first-use` (once per user and object, again if a file changed) or `on-use`
        /// (every time).
        #[arg(long, value_name = "WHEN", default_value = "first-use", value_parser = ["first-use", "on-use"])]
        verify: String,
    },
    /// Keep the artifacts of a pipeline's current stages (and their partitions) through
    /// every `cache gc`, whoever runs it, until `cache unpin`.
    Pin(PinArgs),
    /// Remove the pin of `cache pin`.
    Unpin(PinArgs),
    /// Download the artifacts of a pipeline's current stages (and their partitions) that the
    /// local cache lacks, verified (no PIPELINE: every object of the remote).
    Pull(TransferArgs),
    /// Delete objects not used by the last N runs of each pipeline (with --remote: abort the
    /// remote's unfinished uploads instead).
    Gc {
        /// Runs to keep per pipeline.
        #[arg(long, value_name = "N", required_unless_present = "remote")]
        keep_runs: Option<usize>,
        /// Only print what would be deleted.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// Abort this remote's unfinished multipart uploads (a killed push's) instead.
        #[arg(long, value_name = "REMOTE", num_args = 0..=1, default_missing_value = "", conflicts_with = "keep_runs")]
        remote: Option<String>,
        /// With --remote: only uploads started at least this many hours ago (a live push's
        /// are younger).
        #[arg(
            long,
            value_name = "HOURS",
            default_value_t = 24.0,
            requires = "remote"
        )]
        older_than_hours: f64,
    },
}

/// What `cache push` / `cache pull` move.
#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Pipeline whose current stages are moved (default: every object).
    pipeline: Option<String>,
    /// Only this stage (repeatable).
    #[arg(long, value_name = "STAGE", requires = "pipeline")]
    stage: Vec<String>,
    /// The remote (default: [cache] remote of luna.toml, or the only one).
    #[arg(long, value_name = "NAME")]
    remote: Option<String>,
    /// Override a pipeline variable: --set name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE", requires = "pipeline")]
    sets: Vec<String>,
}

/// What `cache pin` / `cache unpin` name.
#[derive(Debug, Args)]
pub struct PinArgs {
    #[command(flatten)]
    p: PipelineArgs,
}

/// Human-readable byte count.
pub fn bytes(n: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// Runs the command.
pub fn cmd(g: &Globals, c: CacheCmd) -> Result<i32, CliError> {
    match c {
        CacheCmd::Ls => ls(g),
        CacheCmd::Verify { remote: None } => verify(g),
        CacheCmd::Verify { remote: Some(r) } => verify_remote(r),
        CacheCmd::Push(a) => transfer(g, a, true),
        CacheCmd::Pull(a) => transfer(g, a, false),
        CacheCmd::Init {
            shared,
            group,
            world_readable,
            verify,
        } => {
            let policy = SharedPolicy {
                world_readable,
                verify: if verify == "on-use" {
                    VerifyPolicy::OnUse
                } else {
                    VerifyPolicy::FirstUse
                },
            };
            init_shared(&shared, group.as_deref(), policy)
        }
        CacheCmd::Pin(a) => pin(g, &a.p, true),
        CacheCmd::Unpin(a) => pin(g, &a.p, false),
        CacheCmd::Gc {
            remote: Some(r),
            dry_run,
            older_than_hours,
            ..
        } => gc_remote(r, dry_run, older_than_hours),
        CacheCmd::Gc {
            keep_runs, dry_run, ..
        } => gc(g, keep_runs.unwrap_or(usize::MAX), dry_run),
    }
}

/// The cache of the workspace here (and the workspace).
fn open_cache(g: &Globals) -> Result<(PathBuf, Cache), CliError> {
    let ws = workspace_here()?;
    let cache = Cache::open(&cache_root(g, &ws))?;
    Ok((ws, cache))
}

/// `cache ls`.
fn ls(g: &Globals) -> Result<i32, CliError> {
    let (_, cache) = open_cache(g)?;
    let keys = cache.keys();
    let mut total = 0;
    println!(
        "{:<12} {:<24} {:<20} {:>10}  created",
        "key", "stage", "kind", "size"
    );
    for k in &keys {
        match cache.manifest(k) {
            Ok(m) => {
                total += m.size();
                println!(
                    "{:<12} {:<24} {:<20} {:>10}  {}",
                    short(k),
                    m.stage,
                    m.kind,
                    bytes(m.size()),
                    m.created
                );
            }
            Err(e) => println!("{:<12} (unreadable manifest: {e})", short(k)),
        }
    }
    for (k, dir) in cache.resume_dirs() {
        let size = dir_size(&dir);
        total += size;
        println!(
            "{:<12} {:<24} {:<20} {:>10}  (checkpoints of an unfinished stage)",
            short(&k),
            "resume/",
            "",
            bytes(size)
        );
    }
    for s in cache.strays() {
        println!(
            "stray        {} (not a cache object; left alone)",
            s.display()
        );
    }
    println!(
        "{} objects, {} in {}",
        keys.len(),
        bytes(total),
        cache.root().display()
    );
    Ok(0)
}

/// The objects that fail their manifest (key, problems), and those built on them (key, the
/// corrupt one it was built on).
type Doomed = (Vec<(String, String)>, Vec<(String, String)>);

/// Downstream keys are computed from upstream keys, so an object built on a corrupt one would
/// be served again after the corrupt one is recomputed (same key): it is quarantined with it.
/// Manifests are read before anything moves.
fn find_corrupt(cache: &Cache, keys: &[String]) -> Doomed {
    let mut built_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in keys {
        if let Ok(m) = cache.manifest(k) {
            for u in m.upstream.values().chain(m.partitions.iter()) {
                built_on.entry(u.clone()).or_default().push(k.clone());
            }
        }
    }
    let mut corrupt: Vec<(String, String)> = Vec::new();
    for k in keys {
        let problems = cache.verify(k);
        if !problems.is_empty() {
            corrupt.push((k.clone(), problems.join("; ")));
        }
    }
    let mut doomed: BTreeSet<String> = corrupt.iter().map(|(k, _)| k.clone()).collect();
    let mut invalid: Vec<(String, String)> = Vec::new();
    let mut queue: Vec<String> = doomed.iter().cloned().collect();
    while let Some(k) = queue.pop() {
        for d in built_on.get(&k).into_iter().flatten() {
            if doomed.insert(d.clone()) {
                invalid.push((d.clone(), k.clone()));
                queue.push(d.clone());
            }
        }
    }
    (corrupt, invalid)
}

/// `cache verify`: re-hash every object, quarantine the corrupt ones and those built on them.
fn verify(g: &Globals) -> Result<i32, CliError> {
    let (_, cache) = open_cache(g)?;
    let keys = cache.keys();
    let (corrupt, invalid) = find_corrupt(&cache, &keys);
    // every problem is reported, and one that cannot be moved aside stops nothing
    let mut stuck = 0;
    let mut move_aside = |k: &str| match cache.quarantine(k) {
        Ok(dest) => println!("        moved to {}", dest.display()),
        Err(e) => {
            stuck += 1;
            println!("        could not move it aside: {e}");
        }
    };
    for (k, problems) in &corrupt {
        println!("CORRUPT {}: {problems}", short(k));
        move_aside(k);
    }
    for (k, on) in &invalid {
        println!("INVALID {}: built on corrupt {}", short(k), short(on));
        move_aside(k);
    }
    let strays = cache.strays();
    for s in &strays {
        println!("STRAY   {} (not a cache object; left alone)", s.display());
    }
    let bad = corrupt.len();
    println!(
        "verified {} objects: {} ok, {bad} corrupt{}{}{}",
        keys.len(),
        keys.len() - bad - invalid.len(),
        if invalid.is_empty() {
            String::new()
        } else {
            format!(", {} built on corrupt ones", invalid.len())
        },
        if stuck > 0 {
            format!(" ({stuck} could not be quarantined)")
        } else {
            String::new()
        },
        if strays.is_empty() {
            String::new()
        } else {
            format!(", {} stray entries", strays.len())
        }
    );
    Ok(if bad > 0 { 1 } else { 0 })
}

/// What gc keeps: every object the last `keep_runs` finished runs of each pipeline used,
/// the pinned ones, and the partitions they list; with the number of pipelines and pins.
fn gc_keep(cache: &Cache, ws: &Path, keep_runs: usize) -> (BTreeSet<String>, usize, usize) {
    let runs = Runs::new(ws.join("runs"));
    let mut by_pipeline: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for r in runs.list().into_iter().filter(|r| r.ended.is_some()) {
        by_pipeline.entry(r.pipeline.clone()).or_default().push(r);
    }
    let mut keep: BTreeSet<String> = BTreeSet::new();
    for rs in by_pipeline.values() {
        for r in rs.iter().rev().take(keep_runs) {
            let origin = format!(
                "run record {}",
                runs.run_dir(&r.id).join("run.json").display()
            );
            for s in &r.stages {
                for k in std::iter::once(&s.key).chain(&s.partitions) {
                    match crate::engine::cache::check_key(k, &origin) {
                        Ok(()) => {
                            keep.insert(k.clone());
                        }
                        // a damaged or hand-edited record: it keeps nothing, and says so
                        Err(e) => eprintln!("warning: {e}; ignored"),
                    }
                }
            }
        }
    }
    // pinned objects (`cache pin`, by any user of a shared cache) are kept
    let pinned = cache.pinned();
    keep.extend(pinned.iter().cloned());
    // partitions listed by kept manifests are kept too
    for k in keep.clone() {
        if let Ok(m) = cache.manifest(&k) {
            keep.extend(m.partitions);
        }
    }
    (keep, by_pipeline.len(), pinned.len())
}

/// Deletes (or with `dry_run` lists) the objects not kept: (bytes freed, objects, objects of
/// other users left alone).
fn gc_objects(
    cache: &Cache,
    keep: &BTreeSet<String>,
    dry_run: bool,
) -> Result<(u64, usize, usize), CliError> {
    let (mut freed, mut n, mut foreign) = (0, 0, 0);
    for k in cache.keys() {
        if keep.contains(&k) {
            continue;
        }
        let what = cache
            .manifest(&k)
            .map(|m| format!("{} ({})", m.stage, m.kind))
            .unwrap_or_else(|_| "?".into());
        let size = if dry_run {
            dir_size(&cache.object_dir(&k))
        } else {
            match cache.remove(&k) {
                Ok(size) => size,
                // a shared cache: another member's object (read-only to us)
                Err(CacheError::Io { source, .. })
                    if cache.is_shared()
                        && source.kind() == std::io::ErrorKind::PermissionDenied =>
                {
                    foreign += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        freed += size;
        n += 1;
        println!(
            "{} {} {what} {}",
            if dry_run { "would delete" } else { "deleted" },
            short(&k),
            bytes(size)
        );
    }
    Ok((freed, n, foreign))
}

/// No run is live (gc holds the gc lock): a resume folder no kept run refers to is an
/// abandoned stage's checkpoints, and every tmp folder is a dead run's debris. Bytes freed.
fn gc_leftovers(cache: &Cache, keep: &BTreeSet<String>, dry_run: bool) -> Result<u64, CliError> {
    let mut freed = 0;
    for (k, dir) in cache.resume_dirs() {
        if keep.contains(&k) {
            continue;
        }
        let size = dir_size(&dir);
        if !dry_run {
            remove_tree(&dir)?;
        }
        freed += size;
        println!(
            "{} resume/{} {}",
            if dry_run { "would delete" } else { "deleted" },
            short(&k),
            bytes(size)
        );
    }
    if !dry_run {
        for t in cache.tmp_dirs() {
            let size = dir_size(&t);
            match remove_tree(&t) {
                Ok(()) => freed += size,
                Err(_) if cache.is_shared() => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(freed)
}

/// `cache gc --keep-runs N [-n]`.
fn gc(g: &Globals, keep_runs: usize, dry_run: bool) -> Result<i32, CliError> {
    let (ws, cache) = open_cache(g)?;
    let Some(_gc) = cache.try_gc_lock()? else {
        return Err(CacheError::InUse {
            root: cache.root().to_path_buf(),
        }
        .into());
    };
    let (keep, pipelines, pinned) = gc_keep(&cache, &ws, keep_runs);
    let (freed, n, foreign) = gc_objects(&cache, &keep, dry_run)?;
    let freed = freed + gc_leftovers(&cache, &keep, dry_run)?;
    if foreign > 0 {
        println!(
            "left {foreign} unused objects of other users (only their owner, or root, can delete them)"
        );
    }
    println!(
        "{} {n} objects, {} (kept {} referenced by the last {keep_runs} runs of {pipelines} pipelines{})",
        if dry_run { "would free" } else { "freed" },
        bytes(freed),
        keep.len(),
        if pinned == 0 {
            String::new()
        } else {
            format!(" or pinned ({pinned} pinned)")
        }
    );
    Ok(0)
}

/// `cache gc --remote [R] [--older-than-hours H] [-n]`: aborts (or lists) the remote's
/// unfinished multipart uploads started at least `hours` ago.
fn gc_remote(asked: String, dry_run: bool, hours: f64) -> Result<i32, CliError> {
    if !(hours.is_finite() && hours >= 0.0) {
        return Err(CliError::usage(
            format!("--older-than-hours {hours} is not a number of hours"),
            None,
        ));
    }
    let ws = workspace_here()?;
    let config = crate::config::Config::load(&ws)?;
    let asked = Some(asked).filter(|a| !a.is_empty());
    let (remote, _) = super::remote::open(&config, asked.as_deref())?;
    let stale = remote.stale_uploads(std::time::Duration::from_secs_f64(hours * 3600.0))?;
    for u in &stale {
        if !dry_run {
            remote.abort_upload(u)?;
        }
        println!(
            "{} unfinished upload of {} (started {})",
            if dry_run { "would abort" } else { "aborted" },
            u.key,
            u.initiated
        );
    }
    println!(
        "{} {} unfinished uploads on {} older than {hours} h",
        if dry_run { "would abort" } else { "aborted" },
        stale.len(),
        remote.name()
    );
    Ok(0)
}

/// SIGINT/SIGTERM during a push: stop and abort the unfinished multipart uploads instead of
/// dying with them open (a second signal kills at once).
fn stop_pushes_on_signals() {
    extern "C" fn on_signal(sig: libc::c_int) {
        crate::engine::remote::interrupt();
        // SAFETY: restoring the default disposition is async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only stores an atomic and resets itself.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// `cache push` (`push`) or `cache pull`.
fn transfer(g: &Globals, a: TransferArgs, push: bool) -> Result<i32, CliError> {
    let (config, cache, keys) = match &a.pipeline {
        Some(p) => {
            let o = open(
                g,
                &PipelineArgs {
                    pipeline: p.clone(),
                    sets: a.sets.clone(),
                },
            )?;
            if !push {
                return pull_stages(&o, &a);
            }
            let keys = stage_keys(&o, &a.stage)?;
            (o.config, o.cache, Some(keys))
        }
        None => {
            let ws = workspace_here()?;
            let config = crate::config::Config::load(&ws)?;
            let cache = Cache::open(&cache_root(g, &ws))?;
            (config, cache, None)
        }
    };
    let (remote, inv) = super::remote::open(&config, a.remote.as_deref())?;
    // gc must not delete what a push reads or a pull commits into
    let _in_use = cache.use_lock()?;
    let t0 = std::time::Instant::now();
    let code = if push {
        stop_pushes_on_signals();
        let keys = keys.unwrap_or_else(|| cache.keys());
        let r = remote.push(&cache, &keys)?;
        print_push(&remote, &r, t0.elapsed());
        0
    } else {
        let keys = keys.unwrap_or_else(|| inv.objects.iter().cloned().collect());
        let r = remote.pull(&cache, &keys)?;
        print_pull(&remote, &r, t0.elapsed())
    };
    Ok(code)
}

/// `cache pull PIPELINE`: its stages' objects, layer by layer. A stage's key may depend on
/// its upstream's artifact (the series its table names, its output identity: see the
/// engine's `keying.rs`), so the keys are planned again after each pull that brought
/// something, until one brings nothing.
fn pull_stages(o: &Opened, a: &TransferArgs) -> Result<i32, CliError> {
    let (remote, _) = super::remote::open(&o.config, a.remote.as_deref())?;
    let _in_use = o.cache.use_lock()?;
    let t0 = std::time::Instant::now();
    let mut total: Option<PullReport> = None;
    loop {
        let keys = stage_keys(o, &a.stage)?;
        let r = remote.pull(&o.cache, &keys)?;
        let more = !r.pulled.is_empty();
        total = Some(match total {
            None => r,
            Some(t) => PullReport {
                pulled: [t.pulled, r.pulled].concat(),
                present: t.present,
                missing_remotely: r.missing_remotely,
                corrupt: [t.corrupt, r.corrupt].concat(),
                bytes_received: t.bytes_received + r.bytes_received,
                resumed_files: t.resumed_files + r.resumed_files,
            },
        });
        if !more {
            break;
        }
    }
    Ok(print_pull(
        &remote,
        &total.unwrap_or_default(),
        t0.elapsed(),
    ))
}

/// Keys of the pipeline's current stages (`only`: these stages; unknown names are errors).
pub(super) fn stage_keys(o: &Opened, only: &[String]) -> Result<Vec<String>, CliError> {
    let planned = plan(&o.pipeline, &o.cache, &o.stat, &Selection::default());
    o.stat.save();
    let planned = planned?;
    for s in only {
        if !planned.iter().any(|p| &p.stage == s) {
            return Err(CliError::usage(
                format!("pipeline `{}` has no stage `{s}`", o.pipeline.name),
                Some(format!(
                    "its stages: {}",
                    planned
                        .iter()
                        .map(|p| p.stage.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ));
        }
    }
    Ok(planned
        .into_iter()
        .filter(|p| only.is_empty() || only.contains(&p.stage))
        .map(|p| p.key)
        .collect())
}

fn rate(bytes: u64, t: std::time::Duration) -> String {
    format!(
        "{}/s",
        self::bytes((bytes as f64 / t.as_secs_f64().max(1e-3)) as u64)
    )
}

/// Prints what a push did.
pub(super) fn print_push(remote: &Remote, r: &PushReport, t: std::time::Duration) {
    println!(
        "pushed {} objects to {} ({} files, {} in {:.1} s, {}); {} objects already there, {} files already there",
        r.pushed.len(),
        remote.name(),
        r.files_sent,
        bytes(r.bytes_sent),
        t.as_secs_f64(),
        rate(r.bytes_sent, t),
        r.present,
        r.files_skipped
    );
    if !r.missing_locally.is_empty() {
        println!(
            "not pushed (not in the local cache; run the pipeline first): {}",
            r.missing_locally
                .iter()
                .map(|k| short(k))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

/// Prints what a pull did; 1 when a remote object was refused.
pub(super) fn print_pull(remote: &Remote, r: &PullReport, t: std::time::Duration) -> i32 {
    println!(
        "pulled {} objects from {} ({} in {:.1} s, {}); {} already cached{}",
        r.pulled.len(),
        remote.name(),
        bytes(r.bytes_received),
        t.as_secs_f64(),
        rate(r.bytes_received, t),
        r.present,
        if r.resumed_files > 0 {
            format!(
                "; {} files resumed from an interrupted pull",
                r.resumed_files
            )
        } else {
            String::new()
        }
    );
    if !r.missing_remotely.is_empty() {
        println!(
            "not on {}: {}",
            remote.name(),
            r.missing_remotely
                .iter()
                .map(|k| short(k))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (k, why) in &r.corrupt {
        eprintln!(
            "error: remote {}: object {} is corrupt: {why}; it was not used",
            remote.name(),
            short(k)
        );
    }
    if r.corrupt.is_empty() {
        0
    } else {
        eprintln!("  = hint: push it again from a workspace that has it, or run `luna cache verify --remote {}`", remote.name());
        1
    }
}

/// `cache verify --remote [R]`.
fn verify_remote(asked: String) -> Result<i32, CliError> {
    let ws = workspace_here()?;
    let config = crate::config::Config::load(&ws)?;
    let asked = (!asked.is_empty()).then_some(asked);
    let (remote, _) = super::remote::open(&config, asked.as_deref())?;
    let (n, problems) = remote.verify()?;
    for (k, why) in &problems {
        println!("CORRUPT {}: {why}", short(k));
    }
    println!(
        "verified {n} objects on {}: {} ok, {} corrupt",
        remote.name(),
        n - problems.len(),
        problems.len()
    );
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// `cache init --shared DIR [--group G]`.
fn init_shared(dir: &Path, group: Option<&str>, policy: SharedPolicy) -> Result<i32, CliError> {
    let gid = match group {
        None => {
            // SAFETY: getegid has no preconditions.
            unsafe { libc::getegid() }
        }
        Some(name) => {
            let c = std::ffi::CString::new(name)
                .map_err(|_| CliError::usage(format!("bad group name {name:?}"), None))?;
            // SAFETY: getgrnam reads a NUL-terminated name; the returned record is read at
            // once, before any other call that could reuse its static storage.
            let gr = unsafe { libc::getgrnam(c.as_ptr()) };
            if gr.is_null() {
                return Err(CliError::usage(
                    format!("no Unix group `{name}`"),
                    Some("create it (`groupadd NAME`) and add the team's users to it (`usermod -aG NAME USER`), or name an existing group (see `getent group`)".into()),
                ));
            }
            // SAFETY: non-null record from getgrnam.
            unsafe { (*gr).gr_gid }
        }
    };
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        super::workspace::cwd()?.join(dir)
    };
    let cache = Cache::init_shared(&dir, gid, policy)?;
    println!(
        "{} is a shared cache of group {} (gid {gid}): use it with --cache-dir {} or LUNA_CACHE_DIR",
        cache.root().display(),
        group.unwrap_or("(your primary group)"),
        cache.root().display()
    );
    Ok(0)
}

/// `cache pin PIPELINE` (`on`) / `cache unpin PIPELINE`: `<cache>/pins/<pipeline>@<user>.json`
/// names the keys of the pipeline's current stages and their partitions.
fn pin(g: &Globals, a: &PipelineArgs, on: bool) -> Result<i32, CliError> {
    let o = open(g, a)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let ws_id = blake3::hash(o.root.to_string_lossy().as_bytes()).to_hex();
    let file = o.cache.pins_dir().join(format!(
        "{}@{uid}-{}.json",
        o.pipeline.name,
        short(ws_id.as_str())
    ));
    if !on {
        return match std::fs::remove_file(&file) {
            Ok(()) => {
                println!("unpinned {}", o.pipeline.name);
                Ok(0)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::usage(
                format!(
                    "pipeline `{}` of this workspace is not pinned in {}",
                    o.pipeline.name,
                    o.cache.root().display()
                ),
                Some(format!("pin it with `luna cache pin {}`", o.pipeline.name)),
            )),
            Err(e) => Err(CacheError::io(&file, e).into()),
        };
    }
    let mut keys = Vec::new();
    let mut missing = Vec::new();
    for k in stage_keys(&o, &[])? {
        match o.cache.manifest(&k) {
            Ok(m) => {
                keys.extend(m.partitions);
                keys.push(k);
            }
            Err(_) => missing.push(k),
        }
    }
    let dir = o.cache.pins_dir();
    std::fs::create_dir_all(&dir).map_err(|e| CacheError::io(&dir, e))?;
    let doc = serde_json::json!({
        "luna_pin": 1,
        "pipeline": o.pipeline.name,
        "workspace": o.root,
        "uid": uid,
        "created": chrono::Utc::now().to_rfc3339(),
        "keys": keys,
    });
    // readable by every member whatever the umask: any member's gc must see it
    crate::engine::cache::write_durable(&file, doc.to_string().as_bytes())
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                &file,
                std::fs::Permissions::from_mode(o.cache.readable_file_mode()),
            )
        })
        .map_err(|e| CacheError::io(&file, e))?;
    println!(
        "pinned {} objects of {} ({} stages not cached yet, not pinned)",
        keys.len(),
        o.pipeline.name,
        missing.len()
    );
    Ok(0)
}
