//! The passes over `stages:` before any parameter is read: the mapping itself, the stage
//! names (one character set, no two names equal up to case and `-`/`_`), each stage's keys,
//! its kind (`uses:`) and upstream stages (`needs:`), and the graph they form (no cycles).
//! A stage whose kind is unknown is still carried on (as a [`RawStage`] without a kind), so
//! the later passes report its other problems too.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_yaml::{Mapping, Value as Yaml};

use super::super::dag::Dag;
use super::super::kind::DynKind;
use super::super::spec_error::SpecIssue;
use super::check_name;
use super::document::yaml_key;
use super::parse::{at_top, Parse};

/// The keys a stage may have.
const STAGE_KEYS: [&str; 4] = ["uses", "needs", "with", "resources"];

/// A stage after the kinds pass: its kind (when known) and needs, `with:` and `resources:`
/// still as written.
pub(super) struct RawStage {
    /// Stage name.
    pub(super) name: String,
    /// Its kind; `None` when `uses:` is missing or unknown (reported).
    pub(super) kind: Option<Arc<dyn DynKind>>,
    /// `needs:`, as written.
    pub(super) needs: Vec<String>,
    /// `with:`.
    pub(super) with: Yaml,
    /// `resources:`.
    pub(super) resources: Yaml,
}

/// Pass: the `stages:` mapping and the stage names in file order.
pub(super) fn collect(st: &mut Parse<'_>) {
    st.stages_map = match st.top.get("stages") {
        Some(Yaml::Mapping(m)) => m.clone(),
        Some(_) => {
            let issue = SpecIssue::BadParam {
                path: "stages".into(),
                message: "expected a mapping of stage name: stage".into(),
            };
            st.is.at_value("stages", issue);
            Mapping::new()
        }
        None => {
            st.is.list.push(at_top("missing `stages:`"));
            Mapping::new()
        }
    };
    st.stage_names = st.stages_map.keys().map(yaml_key).collect();
}

/// Pass: every stage name is a valid name and differs from the others in more than case or
/// `-`/`_` (names become file names and environment variables).
pub(super) fn check_names(st: &mut Parse<'_>) {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for sname in &st.stage_names {
        let at = format!("stages.{sname}");
        if let Err(problem) = check_name(sname) {
            let issue = SpecIssue::BadName {
                what: "stage",
                name: sname.clone(),
                problem,
            };
            st.is.at_key(&at, issue);
            continue;
        }
        let f = folded(sname);
        match seen.get(&f) {
            Some(first) => {
                let issue = SpecIssue::NameClash {
                    first: first.clone(),
                    second: sname.clone(),
                };
                st.is.at_key(&at, issue);
            }
            None => {
                seen.insert(f, sname.clone());
            }
        }
    }
}

/// A name as it is compared for clashes: lower case, `-` as `_`.
pub(super) fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('-', "_")
}

/// Pass: each stage's keys, kind and needs, into [`Parse::raws`].
pub(super) fn kinds(st: &mut Parse<'_>) {
    let stages_map = std::mem::take(&mut st.stages_map);
    for (k, v) in &stages_map {
        let sname = yaml_key(k);
        let base = format!("stages.{sname}");
        let Some(m) = v.as_mapping() else {
            let issue = SpecIssue::BadParam {
                path: base.clone(),
                message: "expected a mapping with `uses:`, `needs:`, `with:`".into(),
            };
            st.is.at_value(&base, issue);
            continue;
        };
        unknown_stage_keys(st, &base, m);
        let kind = stage_kind(st, &sname, &base, m);
        let needs = stage_needs(st, &sname, &base, m);
        st.raws.push(RawStage {
            name: sname,
            kind,
            needs,
            with: m.get("with").cloned().unwrap_or(Yaml::Null),
            resources: m.get("resources").cloned().unwrap_or(Yaml::Null),
        });
    }
    st.stages_map = stages_map;
}

fn unknown_stage_keys(st: &mut Parse<'_>, base: &str, m: &Mapping) {
    for k in m.keys() {
        let k = yaml_key(k);
        if !STAGE_KEYS.contains(&k.as_str()) {
            let p = format!("{base}.{k}");
            let issue = SpecIssue::UnknownKey {
                path: p.clone(),
                allowed: STAGE_KEYS.iter().map(|s| s.to_string()).collect(),
            };
            st.is.at_key(&p, issue);
        }
    }
}

/// `uses:`: the registered kind, or `None` (reported).
fn stage_kind(
    st: &mut Parse<'_>,
    sname: &str,
    base: &str,
    m: &Mapping,
) -> Option<Arc<dyn DynKind>> {
    let at = format!("{base}.uses");
    match m.get("uses") {
        Some(Yaml::String(u)) => {
            let k = st.registry.get(u);
            if k.is_none() {
                let issue = SpecIssue::UnknownKind {
                    stage: sname.into(),
                    kind: u.clone(),
                    known: st.registry.names().iter().map(|s| s.to_string()).collect(),
                };
                st.is.at_value(&at, issue);
            }
            k
        }
        Some(_) => {
            let issue = SpecIssue::BadParam {
                path: at.clone(),
                message: "expected a stage kind name".into(),
            };
            st.is.at_value(&at, issue);
            None
        }
        None => {
            let issue = SpecIssue::BadParam {
                path: base.into(),
                message: "missing `uses:` (the stage kind)".into(),
            };
            st.is.at_key(base, issue);
            None
        }
    }
}

/// `needs:` (one name or a list); names that are not stages are reported.
fn stage_needs(st: &mut Parse<'_>, sname: &str, base: &str, m: &Mapping) -> Vec<String> {
    let mut needs = Vec::new();
    match m.get("needs") {
        None | Some(Yaml::Null) => {}
        Some(Yaml::String(s)) => needs.push(s.clone()),
        Some(Yaml::Sequence(seq)) => {
            for (i, n) in seq.iter().enumerate() {
                match n.as_str() {
                    Some(s) => needs.push(s.to_string()),
                    None => {
                        let p = format!("{base}.needs.{i}");
                        let issue = SpecIssue::BadParam {
                            path: p.clone(),
                            message: "expected a stage name".into(),
                        };
                        st.is.at_value(&p, issue);
                    }
                }
            }
        }
        Some(_) => {
            let p = format!("{base}.needs");
            let issue = SpecIssue::BadParam {
                path: p.clone(),
                message: "expected a list of stage names".into(),
            };
            st.is.at_value(&p, issue);
        }
    }
    let one = matches!(m.get("needs"), Some(Yaml::String(_)));
    for (i, n) in needs.iter().enumerate() {
        if !st.stage_names.contains(n) {
            let p = if one {
                format!("{base}.needs")
            } else {
                format!("{base}.needs.{i}")
            };
            let issue = SpecIssue::MissingNeed {
                stage: sname.into(),
                target: n.clone(),
                known: st.stage_names.clone(),
            };
            st.is.at_value(&p, issue);
        }
    }
    needs
}

/// Pass: the stage graph over the `needs:` that name stages; a cycle is reported at the
/// `needs:` of its first stage.
pub(super) fn graph(st: &mut Parse<'_>) {
    let edges: Vec<(String, Vec<String>)> = st
        .raws
        .iter()
        .map(|r| {
            let valid = r.needs.iter().filter(|n| st.stage_names.contains(n));
            (r.name.clone(), valid.cloned().collect())
        })
        .collect();
    st.dag = match Dag::new(&edges) {
        Ok(d) => Some(d),
        Err(cycle) => {
            let first = cycle.first().cloned().unwrap_or_default();
            let at = format!("stages.{first}.needs");
            st.is.at_key(&at, SpecIssue::Cycle { cycle });
            None
        }
    };
}
