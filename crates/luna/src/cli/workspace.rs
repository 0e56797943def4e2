//! Opening a workspace: locate and load the pipeline, open the cache, the runs directory and
//! the stat cache, honouring --cache-dir / LUNA_CACHE_DIR.

use std::path::PathBuf;

use super::{CliError, Globals, PipelineArgs};
use crate::engine::cache::Cache;
use crate::engine::runs::Runs;
use crate::engine::spec::{self, Pipeline};
use crate::engine::statcache::StatCache;

/// A loaded pipeline with its workspace services.
pub struct Opened {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// The cache.
    pub cache: Cache,
    /// Run records.
    pub runs: Runs,
    /// Stat cache for fingerprints.
    pub stat: std::sync::Arc<StatCache>,
    /// The workspace root (the directory holding `pipelines/`).
    // read by the remotes commands being built on this
    #[allow(dead_code)]
    pub root: PathBuf,
    /// The workspace config (`luna.toml`; default when absent).
    pub config: crate::config::Config,
}

/// The current directory.
pub fn cwd() -> Result<PathBuf, CliError> {
    std::env::current_dir()
        .map_err(|e| CliError::usage(format!("cannot read the current directory: {e}"), None))
}

/// Cache root for a workspace.
pub fn cache_root(g: &Globals, workspace: &std::path::Path) -> PathBuf {
    g.cache_dir
        .clone()
        .unwrap_or_else(|| workspace.join("cache"))
}

/// Loads the pipeline named in `a` and opens its workspace.
pub fn open(g: &Globals, a: &PipelineArgs) -> Result<Opened, CliError> {
    let cwd = cwd()?;
    let (file, ws) = spec::locate(&a.pipeline, &cwd)?;
    let sets = spec::parse_sets(&a.sets)?;
    let config = crate::config::Config::load(&ws)?;
    let pipeline = spec::load(&file, &ws, &sets, &crate::stages::registry())?;
    let cache = Cache::open(&cache_root(g, &ws))?;
    let runs = Runs::new(ws.join("runs"));
    let stat = std::sync::Arc::new(if g.no_stat_cache {
        StatCache::disabled()
    } else {
        StatCache::load(ws.join(".luna").join("statcache.json"))
    });
    Ok(Opened {
        pipeline,
        cache,
        runs,
        stat,
        root: ws,
        config,
    })
}

/// `p` relative to the current directory when it lies below it (how paths are shown), else
/// as given.
pub fn shown(p: &std::path::Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|d| p.strip_prefix(d).ok().map(|r| r.display().to_string()))
        .unwrap_or_else(|| p.display().to_string())
}

/// The workspace above the current directory (for commands without a pipeline argument).
pub fn workspace_here() -> Result<PathBuf, CliError> {
    let cwd = cwd()?;
    spec::find_workspace(&cwd).ok_or_else(|| {
        CliError::from(crate::engine::spec_error::LoadError::NoWorkspace { start: cwd })
    })
}
