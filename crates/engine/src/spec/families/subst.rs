//! `${item}`, `${item.KEY}` and `${key}` in a family's `do:` template, for one member.
//!
//! A string that is exactly one placeholder takes the value's YAML type (an int stays an int,
//! a list stays a list); inside longer text a scalar is spliced in (a list, a mapping or an
//! empty value there is an error). Every other `${…}` and `$${` is left as written, for the
//! variables pass after it (so an item may itself hold `${luna}`). Rejected: substituting
//! through a YAML → text → YAML round trip (types and positions would be lost), and one
//! interpolator shared with the variables pass (they run at different times over different
//! values: YAML before the kinds, JSON after).

use serde_yaml::{Mapping, Value as Yaml};

use super::super::document::yaml_key;
use super::super::vars::{pieces, whole, Piece};
use super::FamilyProblem;

/// What one member's placeholders stand for.
pub(super) struct Scope<'a> {
    /// The member's name (for messages).
    pub(super) member: &'a str,
    /// `${item}`.
    pub(super) item: &'a Yaml,
    /// `${key}`: the member's name after `<family>_`.
    pub(super) key: &'a str,
}

/// `v` with the member's placeholders replaced; problems as (dotted path under `do`, problem).
pub(super) fn substitute(
    v: &Yaml,
    scope: &Scope<'_>,
    path: &str,
    errs: &mut Vec<(String, FamilyProblem)>,
) -> Yaml {
    let at = |k: &str| format!("{path}.{k}");
    match v {
        Yaml::String(s) => match substitute_str(s, scope) {
            Ok(y) => y,
            Err(p) => {
                errs.push((path.to_string(), p));
                v.clone()
            }
        },
        Yaml::Sequence(seq) => Yaml::Sequence(
            seq.iter()
                .enumerate()
                .map(|(i, x)| substitute(x, scope, &at(&i.to_string()), errs))
                .collect(),
        ),
        Yaml::Mapping(m) => Yaml::Mapping(
            m.iter()
                .map(|(k, x)| (k.clone(), substitute(x, scope, &at(&yaml_key(k)), errs)))
                .collect::<Mapping>(),
        ),
        other => other.clone(),
    }
}

/// A family placeholder: `${item}` / `${item.a.b}` (the keys) or `${key}`.
enum Token<'s> {
    Item(Vec<&'s str>),
    Key,
}

/// The placeholder `name` stands for, or `None` when it is not a family's (a variable).
fn token(name: &str) -> Option<Token<'_>> {
    if name == "key" {
        return Some(Token::Key);
    }
    let rest = name.strip_prefix("item")?;
    if rest.is_empty() {
        return Some(Token::Item(Vec::new()));
    }
    rest.strip_prefix('.')
        .map(|keys| Token::Item(keys.split('.').collect()))
}

fn substitute_str(s: &str, scope: &Scope<'_>) -> Result<Yaml, FamilyProblem> {
    if let Some((name, t)) = whole(s).and_then(|name| token(name).map(|t| (name, t))) {
        return resolve(&t, name, scope);
    }
    let mut out = String::new();
    for piece in pieces(s) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            // kept as written for the variables pass, which writes `${`
            Piece::Escape => out.push_str("$${"),
            Piece::Placeholder(name) => match token(name) {
                Some(t) => out.push_str(&splice(resolve(&t, name, scope)?, name, scope)?),
                None => out.push_str(&format!("${{{name}}}")),
            },
            Piece::Unclosed(rest) => out.push_str(&format!("${{{rest}")),
        }
    }
    Ok(Yaml::String(out))
}

/// The value of a placeholder for this member.
fn resolve(t: &Token<'_>, name: &str, scope: &Scope<'_>) -> Result<Yaml, FamilyProblem> {
    let keys = match t {
        Token::Key => return Ok(Yaml::String(scope.key.to_string())),
        Token::Item(keys) => keys,
    };
    let mut cur = scope.item;
    for k in keys {
        let Yaml::Mapping(m) = cur else {
            return Err(FamilyProblem::NotAMap {
                member: scope.member.into(),
                token: format!("${{{name}}}"),
            });
        };
        cur = m
            .iter()
            .find(|(mk, _)| yaml_key(mk) == *k)
            .map(|(_, v)| v)
            .ok_or_else(|| FamilyProblem::UnknownItemKey {
                member: scope.member.into(),
                token: format!("${{{name}}}"),
                key: k.to_string(),
                known: m.keys().map(yaml_key).collect(),
            })?;
    }
    Ok(cur.clone())
}

/// A scalar as text, or what it is instead.
pub(super) fn scalar_text(v: &Yaml) -> Result<String, &'static str> {
    match v {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Null => Err("an empty value"),
        Yaml::Sequence(_) => Err("a list"),
        Yaml::Mapping(_) => Err("a mapping"),
        Yaml::Tagged(t) => scalar_text(&t.value),
    }
}

fn splice(v: Yaml, name: &str, scope: &Scope<'_>) -> Result<String, FamilyProblem> {
    scalar_text(&v).map_err(|found| FamilyProblem::Splice {
        member: scope.member.into(),
        token: format!("${{{name}}}"),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Yaml {
        serde_yaml::from_str(s).expect("test YAML")
    }

    fn sub(template: &str, item: &str) -> (Yaml, Vec<(String, FamilyProblem)>) {
        let item = yaml(item);
        let scope = Scope {
            member: "f_k",
            item: &item,
            key: "k",
        };
        let mut errs = Vec::new();
        let out = substitute(&yaml(template), &scope, "do", &mut errs);
        (out, errs)
    }

    #[test]
    fn a_whole_placeholder_keeps_its_type_and_text_is_spliced() {
        let (out, errs) = sub(
            "{ n: '${item.n}', l: '${item.l}', m: '${item}', s: 'x_${item.n}_${key}', k: '${key}' }",
            "{ n: 3, l: [1, 2] }",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            out,
            yaml("{ n: 3, l: [1, 2], m: { n: 3, l: [1, 2] }, s: x_3_k, k: k }")
        );
    }

    #[test]
    fn variables_and_escapes_are_left_for_the_variables_pass() {
        let (out, errs) = sub(
            "[ '${luna}/a_${item}', '$${item}', '${item', 'a$b', '${items}' ]",
            "0.5",
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(
            out,
            yaml("[ '${luna}/a_0.5', '$${item}', '${item', 'a$b', '${items}' ]")
        );
    }

    #[test]
    fn unknown_keys_non_maps_and_spliced_lists_are_reported_at_their_path() {
        let (_, errs) = sub("{ a: '${item.x}' }", "{ n: 1 }");
        assert_eq!(errs[0].0, "do.a");
        assert!(
            matches!(&errs[0].1, FamilyProblem::UnknownItemKey { key, known, .. } if key == "x" && known == &["n"])
        );
        let (_, errs) = sub("{ a: ['${item.x}'] }", "3");
        assert_eq!(errs[0].0, "do.a.0");
        assert!(matches!(errs[0].1, FamilyProblem::NotAMap { .. }));
        let (_, errs) = sub("{ a: 'c_${item}' }", "{ n: 1 }");
        assert!(matches!(
            errs[0].1,
            FamilyProblem::Splice {
                found: "a mapping",
                ..
            }
        ));
    }
}
