//! The first passes over a pipeline file: YAML syntax (serde_yaml, with its location), the
//! document's shape and top-level keys, non-finite numbers, `pipeline:` and `description:`.
//! Also the YAML helpers the later passes share (keys as text, serde_yaml's messages).
//!
//! **Numbers.** YAML's `.nan`, `.inf` and `-.inf` are found here, once for the whole file,
//! and rejected at their line and column: the YAML → JSON conversion would turn them into
//! `null`, i.e. into "parameter not given". Later passes skip the values that hold one
//! ([`Parse::has_non_finite`]) instead of reporting them again.

use serde_yaml::{Mapping, Value as Yaml};

use super::super::span::Pos;
use super::super::spec_error::SpecIssue;
use super::check_name;
use super::parse::{at_top, Parse};

/// The keys a pipeline file may have at the top.
const TOP_KEYS: [&str; 4] = ["pipeline", "description", "vars", "stages"];

/// Parses the YAML and checks that it is a mapping; the one issue that stops loading.
pub(super) fn read(text: &str) -> Result<Mapping, Box<(SpecIssue, Option<Pos>)>> {
    let doc: Yaml = match serde_yaml::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                col: l.column(),
            });
            let message = format!("invalid YAML: {}", strip_locations(&e.to_string()));
            return Err(Box::new((SpecIssue::Yaml { message }, pos)));
        }
    };
    match doc {
        Yaml::Mapping(m) => Ok(m),
        _ => Err(Box::new(at_top(
            "a pipeline file must be a mapping with `pipeline:` and `stages:`",
        ))),
    }
}

/// Pass: unknown top-level keys, non-finite numbers, `pipeline:` and `description:`.
pub(super) fn header(st: &mut Parse<'_>) {
    for k in st.top.keys() {
        let k = yaml_key(k);
        if !TOP_KEYS.contains(&k.as_str()) {
            let issue = SpecIssue::UnknownKey {
                path: k.clone(),
                allowed: TOP_KEYS.iter().map(|s| s.to_string()).collect(),
            };
            st.is.at_key(&k, issue);
        }
    }
    for (k, x) in &st.top {
        find_non_finite(x, &yaml_key(k), &mut st.non_finite);
    }
    for (path, value) in &st.non_finite {
        let issue = SpecIssue::NonFinite {
            path: path.clone(),
            value: value.clone(),
        };
        st.is.at_value(path, issue);
    }
    st.name = pipeline_name(st);
    st.description = st
        .top
        .get("description")
        .and_then(|d| d.as_str())
        .map(String::from);
}

/// `pipeline:`, checked (empty when missing or not a string).
fn pipeline_name(st: &mut Parse<'_>) -> String {
    match st.top.get("pipeline") {
        Some(Yaml::String(s)) => {
            if let Err(problem) = check_name(s) {
                let issue = SpecIssue::BadName {
                    what: "pipeline",
                    name: s.clone(),
                    problem,
                };
                st.is.at_value("pipeline", issue);
            }
            s.clone()
        }
        Some(_) => {
            let issue = SpecIssue::BadParam {
                path: "pipeline".into(),
                message: "expected a string".into(),
            };
            st.is.at_value("pipeline", issue);
            String::new()
        }
        None => {
            st.is
                .list
                .push(at_top("missing `pipeline:` (the pipeline's name)"));
            String::new()
        }
    }
}

/// A mapping key as text (YAML keys may be numbers or booleans).
pub(super) fn yaml_key(k: &Yaml) -> String {
    match k {
        Yaml::String(s) => s.clone(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Collects (dotted path, text) of every `.nan`/`.inf` number in `v`.
pub(super) fn find_non_finite(v: &Yaml, path: &str, out: &mut Vec<(String, String)>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_locations_are_stripped_but_context_kept() {
        assert_eq!(
            strip_locations("did not find expected key at line 7 column 6, while parsing a block mapping at line 3 column 5"),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_locations("odd at line x"), "odd at line x");
    }
}
