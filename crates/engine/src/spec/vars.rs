//! Pipeline variables: the `vars:` pass (declared values, then `--set` overrides, which may
//! only change declared variables) and `${name}` interpolation, which the params pass applies
//! to `with:` and `resources:`.
//!
//! A string that is exactly `${name}` takes the variable's type (so numbers stay numbers),
//! otherwise the value is spliced in as text; `$${` writes a literal `${`. Rejected: letting
//! `--set` introduce new variables (a typo would silently change nothing).

use std::collections::BTreeMap;

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;

use super::super::spec_error::SpecIssue;
use super::document::yaml_key;
use super::parse::Parse;

/// Pass: `vars:`, then the `--set` overrides.
pub(super) fn collect(st: &mut Parse<'_>) {
    match st.top.get("vars").cloned() {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Mapping(m)) => {
            for (k, v) in &m {
                let k = yaml_key(k);
                let path = format!("vars.{k}");
                if st.has_non_finite(&path) {
                    continue;
                }
                match serde_json::to_value(v) {
                    Ok(j) => {
                        st.vars.insert(k, j);
                    }
                    Err(e) => {
                        let message = e.to_string();
                        let issue = SpecIssue::BadParam {
                            path: path.clone(),
                            message,
                        };
                        st.is.at_value(&path, issue);
                    }
                }
            }
        }
        Some(_) => st.is.at_value(
            "vars",
            SpecIssue::BadParam {
                path: "vars".into(),
                message: "expected a mapping of name: value".into(),
            },
        ),
    }
    st.known_vars = st.vars.keys().cloned().collect();
    for (k, v) in st.sets {
        if st.vars.contains_key(k) {
            st.vars.insert(k.clone(), v.clone());
        } else {
            let issue = SpecIssue::UnknownSetVar {
                name: k.clone(),
                known: st.known_vars.clone(),
            };
            st.is.list.push((issue, None));
        }
    }
}

/// Replaces `${var}` in every string of `v`; on an unknown variable returns (path, name).
pub(super) fn interpolate(
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
    if let Some(name) = whole(s) {
        return vars.get(name).cloned().ok_or_else(|| name.to_string());
    }
    let mut out = String::new();
    for piece in pieces(s) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Escape => out.push_str("${"),
            Piece::Placeholder(name) => match vars.get(name) {
                Some(Json::String(v)) => out.push_str(v),
                Some(v) => out.push_str(&v.to_string()),
                None => return Err(name.to_string()),
            },
            Piece::Unclosed(rest) => return Err(rest.to_string()),
        }
    }
    Ok(Json::String(out))
}

/// The name of a string that is exactly one `${name}` placeholder.
pub(super) fn whole(s: &str) -> Option<&str> {
    let name = s.strip_prefix("${")?.strip_suffix('}')?;
    (!name.contains('}') && !name.contains("${")).then_some(name)
}

/// A part of a string with placeholders (the variables and the families passes read the same
/// syntax).
#[derive(Debug, PartialEq)]
pub(super) enum Piece<'s> {
    /// Text as written.
    Text(&'s str),
    /// `$${`: a literal `${`.
    Escape,
    /// `${name}`: the name.
    Placeholder(&'s str),
    /// `${` without a closing `}`: the text after `${`.
    Unclosed(&'s str),
}

/// `s` split into text, escapes and placeholders.
pub(super) fn pieces(s: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push(Piece::Text(&rest[..i]));
        let after = &rest[i..];
        if let Some(r) = after.strip_prefix("$${") {
            out.push(Piece::Escape);
            rest = r;
        } else if let Some(r) = after.strip_prefix("${") {
            let Some(end) = r.find('}') else {
                out.push(Piece::Unclosed(r));
                return out;
            };
            out.push(Piece::Placeholder(&r[..end]));
            rest = &r[end + 1..];
        } else {
            out.push(Piece::Text("$"));
            rest = &after[1..];
        }
    }
    out.push(Piece::Text(rest));
    out
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
}
