//! Pipeline files: `pipelines/NAME.yaml` → a checked [`Pipeline`].
//!
//! ```yaml
//! pipeline: classify
//! description: what it does
//! vars: { luna_root: data/synth }      # luna run classify --set luna_root=/data/luna
//! stages:
//!   annotations:
//!     uses: load_annotations           # a registered kind (`luna stages`)
//!     needs: [other]                   # upstream stages
//!     with: { annotations: "${luna_root}/annotations.csv" }
//!     resources: { cpus: 2, mem: 4G }  # scheduler hints, never in a key (spec/resources.rs)
//!   train:
//!     foreach: [0, 1, 2]               # a family: train_0, train_1, train_2 (spec/families.rs)
//!     do: { uses: train_classifier, needs: [annotations], with: { seed: "${item}" } }
//! ```
//!
//! Loading runs in passes so that every problem is reported before anything runs, one
//! function per pass over one shared state (`spec/parse.rs` holds the driver and the list):
//! YAML syntax (serde_yaml, with its location) and top-level keys (`spec/document.rs`) →
//! variables (`spec/vars.rs`) → `foreach:`/`matrix:` families expanded into their members,
//! `${item}`/`${key}` filled in (`spec/families.rs`) → stage names, kinds, `needs` targets and
//! cycles (`spec/stages.rs`) → variable interpolation and each kind's typed parameters
//! (`spec/params.rs`) → input bindings (`spec/bind.rs`). Positions come from [`SpanIndex`].
//! `${name}` is replaced by the variable's value: a string that is exactly `${name}` takes
//! the variable's type (so numbers stay numbers), otherwise the value is spliced in as text;
//! `$${` writes a literal `${`.
//!
//! **Names.** Pipeline and stage names become file names (`.luna/state/<pipeline>.json`, run
//! ids, `runs/<id>/logs/<stage>.log`) and environment variables (`LUNA_IN_<STAGE>`), so they are
//! checked at parse time against one documented character set
//! ([`NAME_RULE`](super::spec_error::NAME_RULE): ASCII letters,
//! digits, `_`, `-`, starting with a letter or digit, at most 64), and two stage names that
//! differ only in case or `-`/`_` are rejected; every path luna builds from a name is built
//! from a checked one. Rejected: escaping names into paths (two names could still map to one
//! file, and users could not predict the file names).
//!
//! **Numbers.** YAML's `.nan`, `.inf` and `-.inf` are rejected at their line and column: the
//! YAML → JSON conversion would turn them into `null`, i.e. into "parameter not given", with
//! the same cache key as leaving it out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::dag::Dag;
use super::kind::{CheckedParams, DynKind};
use super::registry::Registry;
use super::span::{Pos, SpanIndex};
use super::spec_error::{LoadError, SpecIssue};

mod bind;
mod document;
mod families;
mod params;
mod parse;
pub mod resources;
mod stages;
mod vars;

pub use families::{outside_family_hint, FamilyProblem, MAX_MEMBERS};
pub use parse::parse;
pub use resources::Resources;

/// A checked stage of a pipeline.
#[derive(Clone)]
pub struct StageSpec {
    /// Stage name (key under `stages:`).
    pub name: String,
    /// Its kind.
    pub kind: Arc<dyn DynKind>,
    /// Upstream stage names, as written.
    pub needs: Vec<String>,
    /// `with:` after interpolation (for display).
    pub with: Json,
    /// Checked parameters.
    pub params: CheckedParams,
    /// Named inputs bound to upstream stages: input name → stage name (see
    /// [`InputSlot`](super::kind::InputSlot)).
    pub bindings: BTreeMap<String, String>,
    /// `resources:` (scheduler hints; not part of the key).
    pub resources: Resources,
}

/// A checked pipeline.
#[derive(Clone)]
pub struct Pipeline {
    /// `pipeline:` name.
    pub name: String,
    /// `description:`.
    pub description: Option<String>,
    /// The file it came from.
    pub file: PathBuf,
    /// The workspace root (relative paths in params start here).
    pub workspace: PathBuf,
    /// Variables after `--set` overrides.
    pub vars: BTreeMap<String, Json>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
    /// The stage graph (same indices as `stages`).
    pub dag: Dag,
}

impl Pipeline {
    /// Index of a stage by name.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stages.iter().position(|s| s.name == name)
    }
}

/// The nearest ancestor of `start` (inclusive) that holds a `pipelines/` directory.
pub fn find_workspace(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("pipelines").is_dir())
        .map(Path::to_path_buf)
}

/// Finds the pipeline file for `name_or_path`: an existing `.yaml`/`.yml` path, or
/// `pipelines/NAME.yaml` in the workspace above `cwd`. Returns (file, workspace).
pub fn locate(name_or_path: &str, cwd: &Path) -> Result<(PathBuf, PathBuf), LoadError> {
    let as_path = cwd.join(name_or_path);
    let looks_like_path = name_or_path.contains('/')
        || name_or_path.ends_with(".yaml")
        || name_or_path.ends_with(".yml");
    if looks_like_path && as_path.is_file() {
        let dir = as_path.parent().unwrap_or(cwd).to_path_buf();
        let ws = find_workspace(&dir).unwrap_or(dir);
        return Ok((as_path, ws));
    }
    let ws = find_workspace(cwd).ok_or_else(|| LoadError::NoWorkspace {
        start: cwd.to_path_buf(),
    })?;
    let dir = ws.join("pipelines");
    for ext in ["yaml", "yml"] {
        let f = dir.join(format!("{name_or_path}.{ext}"));
        if f.is_file() {
            return Ok((f, ws));
        }
    }
    Err(LoadError::NoPipeline {
        name: name_or_path.into(),
        dir,
        known: list_pipelines(&ws),
    })
}

/// Names of the pipelines in a workspace, sorted.
pub fn list_pipelines(ws: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(ws.join("pipelines"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let ext = p.extension()?.to_str()?;
            (ext == "yaml" || ext == "yml")
                .then(|| p.file_stem()?.to_str().map(String::from))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// Parses `name=value` overrides (values are YAML scalars: `3` is a number, `x` a string).
pub fn parse_sets(args: &[String]) -> Result<BTreeMap<String, Json>, LoadError> {
    let mut out = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| LoadError::BadSet { arg: a.clone() })?;
        let k = k.trim();
        if k.is_empty() {
            return Err(LoadError::BadSet { arg: a.clone() });
        }
        let val = serde_yaml::from_str::<Yaml>(v)
            .ok()
            .and_then(|y| serde_json::to_value(y).ok())
            .filter(|j| !j.is_object() && !j.is_array() && !j.is_null())
            .unwrap_or_else(|| Json::String(v.to_string()));
        out.insert(k.to_string(), val);
    }
    Ok(out)
}

/// Reads and checks a pipeline file.
pub fn load(
    file: &Path,
    workspace: &Path,
    sets: &BTreeMap<String, Json>,
    registry: &Registry,
) -> Result<Pipeline, LoadError> {
    let text = std::fs::read_to_string(file).map_err(|e| LoadError::Io {
        path: file.into(),
        source: e,
    })?;
    parse(&text, file, workspace, sets, registry).map_err(LoadError::Spec)
}

/// The issues a load has found, each with the position it is reported at.
struct Issues {
    /// Where every key and value of the file is.
    spans: SpanIndex,
    /// The issues in the order they were found.
    list: Vec<(SpecIssue, Option<Pos>)>,
    /// Where the issues of family members are reported (`spec/families.rs`).
    aliases: families::Aliases,
}

impl Issues {
    /// An issue reported at the key of `path` (or the nearest position there is).
    fn at_key(&mut self, path: &str, issue: SpecIssue) {
        let src = self.aliases.source(path);
        let pos = self.spans.key(&src).or_else(|| self.spans.best(&src));
        self.push(path, issue, pos);
    }
    /// An issue reported at the value of `path` (or the nearest position there is).
    fn at_value(&mut self, path: &str, issue: SpecIssue) {
        let src = self.aliases.source(path);
        let pos = self.spans.value(&src).or_else(|| self.spans.best(&src));
        self.push(path, issue, pos);
    }
    /// Records an issue unless another member of a family already had it there.
    fn push(&mut self, path: &str, issue: SpecIssue, pos: Option<Pos>) {
        if !self.aliases.is_repeat(path, &issue, pos) {
            self.list.push((issue, pos));
        }
    }
}

/// Checks a pipeline or stage name against [`NAME_RULE`](super::spec_error::NAME_RULE): names
/// become file names (`runs/<id>/logs/<stage>.log`, `.luna/state/<pipeline>.json`), so `/`,
/// `..`, absolute paths and control characters must never get through.
pub fn check_name(name: &str) -> Result<(), String> {
    let first = name.chars().next();
    if first.is_none() {
        return Err("the name is empty".into());
    }
    if name.len() > 64 {
        return Err(format!(
            "the name has {} characters (at most 64)",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!("`{}` is not allowed", c.escape_debug()));
    }
    if !first.is_some_and(|c| c.is_ascii_alphanumeric()) {
        return Err("a name must start with a letter or digit".into());
    }
    Ok(())
}
