//! `luna cache ls | verify | gc`.
//!
//! gc keeps every object referenced by the last N runs of each pipeline recorded in this
//! workspace's `runs/` (stage artifacts and the partitions they list). On a cache shared by
//! several workspaces, run gc from each or keep N generous: gc cannot see other workspaces' runs.

use std::collections::{BTreeMap, BTreeSet};

use clap::Subcommand;

use super::workspace::{cache_root, workspace_here};
use super::{CliError, Globals};
use crate::engine::cache::{dir_size, short, Cache};
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
            for k in &keys {
                let problems = cache.verify(k);
                if !problems.is_empty() {
                    bad += 1;
                    let dest = cache.quarantine(k)?;
                    println!("CORRUPT {}: {}", short(k), problems.join("; "));
                    println!("        moved to {}", dest.display());
                }
            }
            println!(
                "verified {} objects: {} ok, {bad} corrupt",
                keys.len(),
                keys.len() - bad
            );
            Ok(if bad > 0 { 1 } else { 0 })
        }
        CacheCmd::Gc { keep_runs, dry_run } => {
            let runs = Runs::new(ws.join("runs"));
            let mut by_pipeline: BTreeMap<String, Vec<_>> = BTreeMap::new();
            for r in runs.list() {
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
