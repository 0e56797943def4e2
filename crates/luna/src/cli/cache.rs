//! `luna cache ls | verify | gc`.
//!
//! gc keeps every object referenced by the last N *finished* runs of each pipeline recorded in
//! this workspace's `runs/` (stage artifacts and the partitions they list); a run that is still
//! going, or was killed, has no stages in its record and does not count among the N. gc holds
//! the cache's gc lock exclusively and refuses to start while any `luna run` holds it shared
//! (see `cache.rs`), so it never deletes what a live run reads; it never deletes lock files. On
//! a cache shared by several workspaces, run gc from each or keep N generous: gc cannot see
//! other workspaces' runs.

use std::collections::{BTreeMap, BTreeSet};

use clap::Subcommand;

use super::workspace::{cache_root, workspace_here};
use super::{CliError, Globals};
use crate::engine::cache::{dir_size, remove_tree, short, Cache};
use crate::engine::error::CacheError;
use crate::engine::runs::Runs;

/// Cache subcommands.
#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// List cached objects.
    Ls,
    /// Re-hash every object against its manifest; quarantine corrupt ones.
    Verify,
    /// Delete objects not used by the last N runs of each pipeline.
    Gc {
        /// Runs to keep per pipeline.
        #[arg(long, value_name = "N")]
        keep_runs: usize,
        /// Only print what would be deleted.
        #[arg(short = 'n', long)]
        dry_run: bool,
    },
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
    let ws = workspace_here()?;
    let cache = Cache::open(&cache_root(g, &ws))?;
    match c {
        CacheCmd::Ls => {
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
        CacheCmd::Verify => {
            let keys = cache.keys();
            let mut bad = 0;
            // Downstream keys are computed from upstream keys, so an object built on a corrupt
            // one would be served again after the corrupt one is recomputed (same key): it is
            // quarantined with it. Manifests are read before anything moves.
            let mut built_on: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for k in &keys {
                if let Ok(m) = cache.manifest(k) {
                    for u in m.upstream.values().chain(m.partitions.iter()) {
                        built_on.entry(u.clone()).or_default().push(k.clone());
                    }
                }
            }
            let mut corrupt: Vec<(String, String)> = Vec::new();
            for k in &keys {
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
                bad += 1;
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
        CacheCmd::Gc { keep_runs, dry_run } => {
            let Some(_gc) = cache.try_gc_lock()? else {
                return Err(CacheError::InUse {
                    root: cache.root().to_path_buf(),
                }
                .into());
            };
            let runs = Runs::new(ws.join("runs"));
            let mut by_pipeline: BTreeMap<String, Vec<_>> = BTreeMap::new();
            for r in runs.list().into_iter().filter(|r| r.ended.is_some()) {
                by_pipeline.entry(r.pipeline.clone()).or_default().push(r);
            }
            let mut keep: BTreeSet<String> = BTreeSet::new();
            for rs in by_pipeline.values() {
                for r in rs.iter().rev().take(keep_runs) {
                    for s in &r.stages {
                        keep.insert(s.key.clone());
                        keep.extend(s.partitions.iter().cloned());
                    }
                }
            }
            // partitions listed by kept manifests are kept too
            for k in keep.clone() {
                if let Ok(m) = cache.manifest(&k) {
                    keep.extend(m.partitions);
                }
            }
            let mut freed = 0;
            let mut n = 0;
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
                    cache.remove(&k)?
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
            // No run is live (we hold the gc lock): a resume folder no kept run refers to is an
            // abandoned stage's checkpoints, and every tmp folder is a dead run's debris.
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
                    freed += dir_size(&t);
                    remove_tree(&t)?;
                }
            }
            println!(
                "{} {n} objects, {} (kept {} referenced by the last {keep_runs} runs of {} pipelines)",
                if dry_run { "would free" } else { "freed" },
                bytes(freed),
                keep.len(),
                by_pipeline.len()
            );
            Ok(0)
        }
    }
}
