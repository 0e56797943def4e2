//! The params pass: each stage's `with:` and `resources:` after variable interpolation, and
//! the `with:` checked by its kind into typed parameters ([`CheckedParams`]). serde's
//! messages are rewritten for people who write YAML ("expected a number, found string").
//! A stage with any problem here is left out of [`Parse::stages`] (the bindings pass then
//! does not run: it needs every stage).
//!
//! [`CheckedParams`]: super::super::kind::CheckedParams

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value as Json;

use super::super::kind::{DynKind, ParamProblem};
use super::super::spec_error::SpecIssue;
use super::parse::Parse;
use super::stages::RawStage;
use super::vars::interpolate;
use super::{Resources, StageSpec};

/// Pass: interpolation, `resources:` and typed parameters of every stage.
pub(super) fn check(st: &mut Parse<'_>) {
    for r in std::mem::take(&mut st.raws) {
        let base = format!("stages.{}.with", r.name);
        if st.has_non_finite(&base) {
            continue;
        }
        let Some(with) = with_json(st, &r, &base) else {
            continue;
        };
        let Some(resources) = resources(st, &r) else {
            continue;
        };
        let Some(kind) = r.kind else { continue };
        if let Some(params) = typed(st, &kind, &with, &base) {
            st.stages.push(StageSpec {
                name: r.name,
                kind,
                needs: r.needs,
                with,
                params,
                bindings: BTreeMap::new(),
                resources,
            });
        }
    }
}

/// `with:` as JSON after interpolation (`{}` when absent), or `None` (reported).
fn with_json(st: &mut Parse<'_>, r: &RawStage, base: &str) -> Option<Json> {
    let with = match serde_json::to_value(&r.with) {
        Ok(Json::Null) => Json::Object(Default::default()),
        Ok(j) => j,
        Err(e) => {
            let issue = SpecIssue::BadParam {
                path: base.into(),
                message: e.to_string(),
            };
            st.is.at_value(base, issue);
            return None;
        }
    };
    match interpolate(&with, &st.vars, base) {
        Ok(j) => Some(j),
        Err((path, name)) => {
            let issue = SpecIssue::UnknownVar {
                name,
                path: path.clone(),
                known: st.known_vars.clone(),
            };
            st.is.at_value(&path, issue);
            None
        }
    }
}

/// `resources:` after interpolation, or `None` (reported).
fn resources(st: &mut Parse<'_>, r: &RawStage) -> Option<Resources> {
    let rbase = format!("stages.{}.resources", r.name);
    let resources = serde_json::to_value(&r.resources)
        .map_err(|e| (String::new(), e.to_string()))
        .and_then(|j| {
            interpolate(&j, &st.vars, &rbase).map_err(|(path, name)| {
                let path = path.strip_prefix(&rbase).unwrap_or(&path);
                (
                    path.trim_start_matches('.').to_string(),
                    format!("unknown variable `{name}`"),
                )
            })
        })
        .and_then(|j| Resources::from_json(&j));
    match resources {
        Ok(res) => Some(res),
        Err((path, message)) => {
            let full = if path.is_empty() {
                rbase
            } else {
                format!("{rbase}.{path}")
            };
            let issue = SpecIssue::BadParam {
                path: full.clone(),
                message: humanize(&message),
            };
            st.is.at_value(&full, issue);
            None
        }
    }
}

/// The kind's check of `with`, or `None` (reported).
fn typed(
    st: &mut Parse<'_>,
    kind: &Arc<dyn DynKind>,
    with: &Json,
    base: &str,
) -> Option<super::super::kind::CheckedParams> {
    match kind.check(with) {
        Ok(params) => Some(params),
        Err(ParamProblem::Unknown { path, known }) => {
            let full = format!("{base}.{path}");
            let issue = SpecIssue::UnknownParam {
                path: full.clone(),
                kind: kind.name().into(),
                known,
            };
            st.is.at_key(&full, issue);
            None
        }
        Err(ParamProblem::Invalid { path, message }) => {
            let full = if path.is_empty() {
                base.to_string()
            } else {
                format!("{base}.{path}")
            };
            let issue = SpecIssue::InvalidParam {
                path: full.clone(),
                kind: kind.name().into(),
                message: humanize(&message),
            };
            st.is.at_value(&full, issue);
            None
        }
    }
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
