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
//! ```
//!
//! Loading runs in passes so that every problem is reported before anything runs: YAML syntax
//! (serde_yaml, with its location) → document shape and keys → kinds and `needs` targets →
//! cycles → variable interpolation → each kind's typed parameters. Positions come from
//! [`SpanIndex`]. `${name}` is replaced by the variable's value: a string that is exactly
//! `${name}` takes the variable's type (so numbers stay numbers), otherwise the value is
//! spliced in as text; `$${` writes a literal `${`.
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
use super::kind::{CheckedParams, DynKind, ParamProblem};
use super::registry::Registry;
use super::span::{Pos, SpanIndex};
use super::spec_error::{LoadError, SpecError, SpecIssue};

mod bind;
pub mod resources;

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

struct Issues {
    spans: SpanIndex,
    list: Vec<(SpecIssue, Option<Pos>)>,
}

impl Issues {
    fn at_key(&mut self, path: &str, issue: SpecIssue) {
        let pos = self.spans.key(path).or_else(|| self.spans.best(path));
        self.list.push((issue, pos));
    }
    fn at_value(&mut self, path: &str, issue: SpecIssue) {
        let pos = self.spans.value(path).or_else(|| self.spans.best(path));
        self.list.push((issue, pos));
    }
}

fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Parses pipeline text (see [`load`]).
pub fn parse(
    text: &str,
    file: &Path,
    workspace: &Path,
    sets: &BTreeMap<String, Json>,
    registry: &Registry,
) -> Result<Pipeline, SpecError> {
    let err = |list| SpecError {
        file: file.into(),
        text: text.into(),
        issues: list,
    };
    let doc: Yaml = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                col: l.column(),
            });
            let message = format!("invalid YAML: {}", strip_locations(&e.to_string()));
            return Err(err(vec![(SpecIssue::Yaml { message }, pos)]));
        }
    };
    let mut is = Issues {
        spans: SpanIndex::build(text),
        list: Vec::new(),
    };

    // Pass 1: shape and keys.
    let Some(top) = doc.as_mapping() else {
        is.list.push((
            SpecIssue::Yaml {
                message: "a pipeline file must be a mapping with `pipeline:` and `stages:`".into(),
            },
            Some(Pos { line: 1, col: 1 }),
        ));
        return Err(err(is.list));
    };
    let top_keys = ["pipeline", "description", "vars", "stages"];
    for k in top.keys() {
        let k = yaml_key(k);
        if !top_keys.contains(&k.as_str()) {
            is.at_key(
                &k,
                SpecIssue::UnknownKey {
                    path: k.clone(),
                    allowed: top_keys.iter().map(|s| s.to_string()).collect(),
                },
            );
        }
    }
    // Non-finite numbers: serde_json would turn them into `null`, i.e. into "not given".
    let mut non_finite = Vec::new();
    find_non_finite(&doc, "", &mut non_finite);
    for (path, value) in &non_finite {
        is.at_value(
            path,
            SpecIssue::NonFinite {
                path: path.clone(),
                value: value.clone(),
            },
        );
    }
    let has_non_finite = |base: &str| {
        non_finite
            .iter()
            .any(|(p, _)| p == base || p.starts_with(&format!("{base}.")))
    };
    let name = match top.get("pipeline") {
        Some(Yaml::String(s)) => {
            if let Err(problem) = check_name(s) {
                is.at_value(
                    "pipeline",
                    SpecIssue::BadName {
                        what: "pipeline",
                        name: s.clone(),
                        problem,
                    },
                );
            }
            s.clone()
        }
        Some(_) => {
            is.at_value(
                "pipeline",
                SpecIssue::BadParam {
                    path: "pipeline".into(),
                    message: "expected a string".into(),
                },
            );
            String::new()
        }
        None => {
            is.list.push((
                SpecIssue::Yaml {
                    message: "missing `pipeline:` (the pipeline's name)".into(),
                },
                Some(Pos { line: 1, col: 1 }),
            ));
            String::new()
        }
    };
    let description = top
        .get("description")
        .and_then(|d| d.as_str())
        .map(String::from);

    // Variables, then overrides.
    let mut vars: BTreeMap<String, Json> = BTreeMap::new();
    match top.get("vars") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Mapping(m)) => {
            for (k, v) in m {
                let k = yaml_key(k);
                if has_non_finite(&format!("vars.{k}")) {
                    continue;
                }
                match serde_json::to_value(v) {
                    Ok(j) => {
                        vars.insert(k, j);
                    }
                    Err(e) => is.at_value(
                        &format!("vars.{k}"),
                        SpecIssue::BadParam {
                            path: format!("vars.{k}"),
                            message: e.to_string(),
                        },
                    ),
                }
            }
        }
        Some(_) => is.at_value(
            "vars",
            SpecIssue::BadParam {
                path: "vars".into(),
                message: "expected a mapping of name: value".into(),
            },
        ),
    }
    let known_vars: Vec<String> = vars.keys().cloned().collect();
    for (k, v) in sets {
        if vars.contains_key(k) {
            vars.insert(k.clone(), v.clone());
        } else {
            is.list.push((
                SpecIssue::UnknownSetVar {
                    name: k.clone(),
                    known: known_vars.clone(),
                },
                None,
            ));
        }
    }

    let stages_map = match top.get("stages") {
        Some(Yaml::Mapping(m)) => m.clone(),
        Some(_) => {
            is.at_value(
                "stages",
                SpecIssue::BadParam {
                    path: "stages".into(),
                    message: "expected a mapping of stage name: stage".into(),
                },
            );
            Default::default()
        }
        None => {
            is.list.push((
                SpecIssue::Yaml {
                    message: "missing `stages:`".into(),
                },
                Some(Pos { line: 1, col: 1 }),
            ));
            Default::default()
        }
    };
    let stage_names: Vec<String> = stages_map.keys().map(yaml_key).collect();
    let mut folded: BTreeMap<String, String> = BTreeMap::new();
    for sname in &stage_names {
        if let Err(problem) = check_name(sname) {
            is.at_key(
                &format!("stages.{sname}"),
                SpecIssue::BadName {
                    what: "stage",
                    name: sname.clone(),
                    problem,
                },
            );
            continue;
        }
        let f = sname.to_ascii_lowercase().replace('-', "_");
        match folded.get(&f) {
            Some(first) => is.at_key(
                &format!("stages.{sname}"),
                SpecIssue::NameClash {
                    first: first.clone(),
                    second: sname.clone(),
                },
            ),
            None => {
                folded.insert(f, sname.clone());
            }
        }
    }
    let stage_keys = ["uses", "needs", "with", "resources"];
    struct Raw {
        name: String,
        kind: Option<Arc<dyn DynKind>>,
        needs: Vec<String>,
        with: Yaml,
        resources: Yaml,
    }
    let mut raws = Vec::new();
    for (k, v) in &stages_map {
        let sname = yaml_key(k);
        let base = format!("stages.{sname}");
        let Some(m) = v.as_mapping() else {
            is.at_value(
                &base,
                SpecIssue::BadParam {
                    path: base.clone(),
                    message: "expected a mapping with `uses:`, `needs:`, `with:`".into(),
                },
            );
            continue;
        };
        for k in m.keys() {
            let k = yaml_key(k);
            if !stage_keys.contains(&k.as_str()) {
                let p = format!("{base}.{k}");
                is.at_key(
                    &p,
                    SpecIssue::UnknownKey {
                        path: p.clone(),
                        allowed: stage_keys.iter().map(|s| s.to_string()).collect(),
                    },
                );
            }
        }
        // Pass 2: kinds and needs.
        let kind = match m.get("uses") {
            Some(Yaml::String(u)) => {
                let k = registry.get(u);
                if k.is_none() {
                    is.at_value(
                        &format!("{base}.uses"),
                        SpecIssue::UnknownKind {
                            stage: sname.clone(),
                            kind: u.clone(),
                            known: registry.names().iter().map(|s| s.to_string()).collect(),
                        },
                    );
                }
                k
            }
            Some(_) => {
                is.at_value(
                    &format!("{base}.uses"),
                    SpecIssue::BadParam {
                        path: format!("{base}.uses"),
                        message: "expected a stage kind name".into(),
                    },
                );
                None
            }
            None => {
                is.at_key(
                    &base,
                    SpecIssue::BadParam {
                        path: base.clone(),
                        message: "missing `uses:` (the stage kind)".into(),
                    },
                );
                None
            }
        };
        let mut needs = Vec::new();
        match m.get("needs") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::String(s)) => needs.push(s.clone()),
            Some(Yaml::Sequence(seq)) => {
                for (i, n) in seq.iter().enumerate() {
                    match n.as_str() {
                        Some(s) => needs.push(s.to_string()),
                        None => is.at_value(
                            &format!("{base}.needs.{i}"),
                            SpecIssue::BadParam {
                                path: format!("{base}.needs.{i}"),
                                message: "expected a stage name".into(),
                            },
                        ),
                    }
                }
            }
            Some(_) => is.at_value(
                &format!("{base}.needs"),
                SpecIssue::BadParam {
                    path: format!("{base}.needs"),
                    message: "expected a list of stage names".into(),
                },
            ),
        }
        for (i, n) in needs.iter().enumerate() {
            if !stage_names.contains(n) {
                let p = if matches!(m.get("needs"), Some(Yaml::String(_))) {
                    format!("{base}.needs")
                } else {
                    format!("{base}.needs.{i}")
                };
                is.at_value(
                    &p,
                    SpecIssue::MissingNeed {
                        stage: sname.clone(),
                        target: n.clone(),
                        known: stage_names.clone(),
                    },
                );
            }
        }
        raws.push(Raw {
            name: sname,
            kind,
            needs,
            with: m.get("with").cloned().unwrap_or(Yaml::Null),
            resources: m.get("resources").cloned().unwrap_or(Yaml::Null),
        });
    }

    // Pass 3: cycles (only over valid edges).
    let edges: Vec<(String, Vec<String>)> = raws
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.needs
                    .iter()
                    .filter(|n| stage_names.contains(n))
                    .cloned()
                    .collect(),
            )
        })
        .collect();
    let dag = match Dag::new(&edges) {
        Ok(d) => Some(d),
        Err(cycle) => {
            let first = cycle.first().cloned().unwrap_or_default();
            is.at_key(&format!("stages.{first}.needs"), SpecIssue::Cycle { cycle });
            None
        }
    };

    // Pass 4 + 5: interpolation and typed params.
    let mut stages = Vec::new();
    for r in raws {
        let base = format!("stages.{}.with", r.name);
        if has_non_finite(&base) {
            continue;
        }
        let with_json = match serde_json::to_value(&r.with) {
            Ok(Json::Null) => Json::Object(Default::default()),
            Ok(j) => j,
            Err(e) => {
                is.at_value(
                    &base,
                    SpecIssue::BadParam {
                        path: base.clone(),
                        message: e.to_string(),
                    },
                );
                continue;
            }
        };
        let with_json = match interpolate(&with_json, &vars, &base) {
            Ok(j) => j,
            Err((path, name)) => {
                is.at_value(
                    &path,
                    SpecIssue::UnknownVar {
                        name,
                        path: path.clone(),
                        known: known_vars.clone(),
                    },
                );
                continue;
            }
        };
        let rbase = format!("stages.{}.resources", r.name);
        let resources = serde_json::to_value(&r.resources)
            .map_err(|e| (String::new(), e.to_string()))
            .and_then(|j| {
                interpolate(&j, &vars, &rbase).map_err(|(path, name)| {
                    let path = path.strip_prefix(&rbase).unwrap_or(&path);
                    (
                        path.trim_start_matches('.').to_string(),
                        format!("unknown variable `{name}`"),
                    )
                })
            })
            .and_then(|j| Resources::from_json(&j));
        let resources = match resources {
            Ok(res) => res,
            Err((path, message)) => {
                let full = if path.is_empty() {
                    rbase.clone()
                } else {
                    format!("{rbase}.{path}")
                };
                is.at_value(
                    &full,
                    SpecIssue::BadParam {
                        path: full.clone(),
                        message: humanize(&message),
                    },
                );
                continue;
            }
        };
        let Some(kind) = r.kind else { continue };
        match kind.check(&with_json) {
            Ok(params) => stages.push(StageSpec {
                name: r.name,
                kind,
                needs: r.needs,
                with: with_json,
                params,
                bindings: BTreeMap::new(),
                resources,
            }),
            Err(ParamProblem::Unknown { path, known }) => {
                let full = format!("{base}.{path}");
                is.at_key(
                    &full,
                    SpecIssue::UnknownParam {
                        path: full.clone(),
                        kind: kind.name().into(),
                        known,
                    },
                );
            }
            Err(ParamProblem::Invalid { path, message }) => {
                let full = if path.is_empty() {
                    base.clone()
                } else {
                    format!("{base}.{path}")
                };
                is.at_value(
                    &full,
                    SpecIssue::InvalidParam {
                        path: full.clone(),
                        kind: kind.name().into(),
                        message: humanize(&message),
                    },
                );
            }
        }
    }
    // Pass 6: bind named inputs to upstream stages (needs the graph and every stage).
    if let Some(dag) = &dag {
        if stages.len() == stage_names.len() {
            bind::bind_inputs(&mut stages, dag, &mut is);
        }
    }
    if !is.list.is_empty() {
        is.list
            .sort_by_key(|(_, p)| p.map(|p| (p.line, p.col)).unwrap_or((usize::MAX, 0)));
        return Err(err(is.list));
    }
    let dag = dag.expect("no cycle when there are no issues");
    Ok(Pipeline {
        name,
        description,
        file: file.into(),
        workspace: workspace.into(),
        vars,
        stages,
        dag,
    })
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

/// Collects (dotted path, text) of every `.nan`/`.inf` number in `v`.
fn find_non_finite(v: &Yaml, path: &str, out: &mut Vec<(String, String)>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Yaml::Number(n) if n.is_nan() || n.is_infinite() => {
            let text = if n.is_nan() {
                ".nan"
            } else if n.as_f64().is_some_and(|f| f < 0.0) {
                "-.inf"
            } else {
                ".inf"
            };
            out.push((path.to_string(), text.to_string()));
        }
        Yaml::Sequence(s) => {
            for (i, x) in s.iter().enumerate() {
                find_non_finite(x, &join(&i.to_string()), out);
            }
        }
        Yaml::Mapping(m) => {
            for (k, x) in m {
                find_non_finite(x, &join(&yaml_key(k)), out);
            }
        }
        Yaml::Tagged(t) => find_non_finite(&t.value, path, out),
        _ => {}
    }
}

/// Removes serde_yaml's ` at line L column C` parts (the position is rendered separately) but
/// keeps its context: "did not find expected key, while parsing a block mapping".
fn strip_locations(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let tail = &rest[i + " at line ".len()..];
        let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n = digits(tail);
        let after_line = &tail[n..];
        rest = match after_line.strip_prefix(" column ") {
            Some(c) if n > 0 => &c[digits(c)..],
            _ => {
                out.push_str(" at line ");
                tail
            }
        };
    }
    out.push_str(rest);
    out
}

/// serde's "invalid type: string \"x\", expected f64" → "expected a number, found string \"x\"".
fn humanize(msg: &str) -> String {
    let Some(rest) = msg.strip_prefix("invalid type: ") else {
        return msg.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return msg.to_string();
    };
    let expected = match expected {
        "f64" | "f32" => "a number",
        "u64" | "u32" | "u16" | "u8" | "usize" => "a non-negative integer",
        "i64" | "i32" | "i16" | "i8" | "isize" => "an integer",
        "a boolean" | "bool" => "a boolean (true or false)",
        other => other,
    };
    // `key:` with nothing after it (or `~`) is YAML's null; users do not write "null"
    let found = if found == "null" {
        "an empty value"
    } else {
        found
    };
    format!("expected {expected}, found {found}")
}

/// Replaces `${var}` in every string of `v`; on an unknown variable returns (path, name).
fn interpolate(
    v: &Json,
    vars: &BTreeMap<String, Json>,
    path: &str,
) -> Result<Json, (String, String)> {
    match v {
        Json::String(s) => interpolate_str(s, vars).map_err(|name| (path.to_string(), name)),
        Json::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, x)| interpolate(x, vars, &format!("{path}.{i}")))
            .collect::<Result<Vec<_>, _>>()
            .map(Json::Array),
        Json::Object(m) => m
            .iter()
            .map(|(k, x)| Ok((k.clone(), interpolate(x, vars, &format!("{path}.{k}"))?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Json::Object),
        other => Ok(other.clone()),
    }
}

fn interpolate_str(s: &str, vars: &BTreeMap<String, Json>) -> Result<Json, String> {
    if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !name.contains('}') && !name.contains("${") {
            return vars.get(name).cloned().ok_or_else(|| name.to_string());
        }
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let end = r.find('}').ok_or_else(|| r.to_string())?;
            let name = &r[..end];
            match vars.get(name) {
                Some(Json::String(v)) => out.push_str(v),
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(name.to_string()),
            }
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Json::String(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_keeps_types_and_splices_text() {
        let vars = BTreeMap::from([
            ("n".to_string(), serde_json::json!(3)),
            ("root".to_string(), serde_json::json!("data/x")),
        ]);
        assert_eq!(interpolate_str("${n}", &vars), Ok(serde_json::json!(3)));
        assert_eq!(
            interpolate_str("${root}/a.csv", &vars),
            Ok(serde_json::json!("data/x/a.csv"))
        );
        assert_eq!(
            interpolate_str("n=${n}, $${root}", &vars),
            Ok(serde_json::json!("n=3, ${root}"))
        );
        assert_eq!(interpolate_str("${nope}/a", &vars), Err("nope".to_string()));
    }

    #[test]
    fn yaml_locations_are_stripped_but_context_kept() {
        assert_eq!(
            strip_locations("did not find expected key at line 7 column 6, while parsing a block mapping at line 3 column 5"),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_locations("odd at line x"), "odd at line x");
    }
}
