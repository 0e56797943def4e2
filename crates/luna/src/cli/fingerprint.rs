//! `luna fingerprint PATH...`: hash inputs exactly as a stage's external inputs are hashed,
//! printing blake3, size, file count and throughput (used by the fingerprint benchmark).

use std::time::Instant;

use clap::Args;

use super::cache::bytes;
use super::{CliError, Globals};
use crate::engine::fingerprint::fingerprint_input;
use crate::engine::statcache::StatCache;

/// Arguments of `luna fingerprint`.
#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<std::path::PathBuf>,
}

/// Runs the command.
pub fn cmd(g: &Globals, a: FingerprintArgs) -> Result<i32, CliError> {
    let stat = match (g.no_stat_cache, super::workspace::workspace_here()) {
        (false, Ok(ws)) => StatCache::load(ws.join(".luna").join("statcache.json")),
        _ => StatCache::disabled(),
    };
    for p in &a.paths {
        let t = Instant::now();
        let shown = p.display().to_string();
        let fp = fingerprint_input(&shown, &shown, p, false, false, &stat)
            .map_err(|e| CliError::failed(e.to_string(), e.hint()))?;
        let secs = t.elapsed().as_secs_f64();
        println!("{}  {shown}", fp.blake3);
        eprintln!(
            "{shown}: {} in {} files, {secs:.3}s, {:.2} GB/s",
            bytes(fp.size),
            fp.files,
            fp.size as f64 / 1e9 / secs.max(1e-9)
        );
    }
    stat.save();
    Ok(0)
}
