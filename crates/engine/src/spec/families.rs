//! Stage families: one `do:` template expanded into many stages, before any stage is read.
//!
//! ```yaml
//! stages:
//!   train:
//!     foreach: [0, 1, 2]                 # train_0, train_1, train_2
//!     do: { uses: train_classifier, needs: ["candidates_${item}"], with: { epochs: 10 } }
//!   folds:
//!     foreach: { range: [0, 10] }        # folds_0 … folds_9 (start, end excluded[, step])
//!     do: { … }
//!   sites:
//!     foreach: { us: { thresh: 10 }, uk: { thresh: 12 } }   # sites_us, sites_uk
//!     do: { …, with: { t: "${item.thresh}", site: "${key}" } }
//!   sweep:
//!     matrix: { lr: [0.01, 0.1], depth: [1, 2] }            # sweep_0.01_1 is no name: see below
//!     do: { …, with: { optimizer: { lr: "${item.lr}" }, finetune_depth: "${item.depth}" } }
//! ```
//!
//! **Members and names.** `foreach:` takes a list, a mapping or `{ range: [start, end] }`
//! (integers, `end` excluded, an optional third value is the step, at most [`MAX_MEMBERS`]
//! members; a mapping whose one key is `range` is always a range); `matrix:` maps names to
//! lists and yields their cartesian product in the declared order (the last name varies
//! fastest). A member is named `<family>_<suffix>`: the suffix is a scalar item's text, a
//! list item's index when the item is a mapping or a list, a mapping's key, and for a matrix
//! the values' suffixes joined by `_` in key order (a matrix value may also be given as a
//! mapping `name: value` to choose its suffix). Names become file names and environment
//! variables, so a member's name must pass the same rule as any stage name (no `.`: the
//! `0.01` above must be named, e.g. `lr: { small: 0.01, big: 0.1 }`), and must differ from
//! every other stage, member and family name in more than case and `-`/`_`. Rejected:
//! rewriting values into names (`0.01` → `0_01`: names nobody can predict, and two values
//! could map to one name), DVC's `@` (not a file-name-safe character everywhere), a range
//! as text (`0..10`: Rust's and Python's readers disagree on the end).
//!
//! **Placeholders.** In `do:` (every value, not the keys), `${item}` is the member's item,
//! `${item.KEY}` a key of a mapping item (or of a matrix member: `${item.lr}`), `${key}` its
//! suffix (spelled as in its name); see `families/subst.rs` for types and splicing. Variables
//! (`${luna}`) are interpolated after, by the params pass, as in any stage. A list in `needs:`
//! (`needs: ["${item.ups}"]`) is flattened, and a `needs:` entry that names a family stands
//! for all of its members, in any stage.
//!
//! **Positions.** The members' issues found by the later passes are reported at the
//! template (`stages.train.do.with.lr` for `stages.train_1.with.lr`) through [`Aliases`], and
//! an issue that several members share at one position is reported once. The expanded stages
//! are ordinary stages from then on: `luna dag`, `status` and the keys see only them, so a
//! family's members have the keys of the same stages written by hand.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_yaml::{Mapping, Value as Yaml};

use super::super::spec_error::SpecIssue;
use super::check_name;
use super::document::{find_non_finite, yaml_key};
use super::parse::Parse;
use super::stages::folded;

mod problem;
mod subst;
#[cfg(test)]
mod tests;

pub use problem::{outside_family_hint, FamilyProblem};
use subst::{scalar_text, substitute, Scope};

/// The most members one family may have (a typo in a range should not plan a million stages).
pub const MAX_MEMBERS: usize = 10_000;

/// The keys a family may have.
const FAMILY_KEYS: [&str; 3] = ["foreach", "matrix", "do"];

/// Where an item is written: the key or the value at a dotted path.
#[derive(Clone)]
enum Place {
    Key(String),
    Value(String),
}

/// One member before its template is filled: suffix (`${key}`), item and where it is written.
struct Item {
    suffix: String,
    item: Yaml,
    at: Place,
}

/// Pass: expands every family of `stages:` in place (members at the family's position), then
/// `needs:` entries that name a family.
pub(super) fn expand(st: &mut Parse<'_>) {
    let map = std::mem::take(&mut st.stages_map);
    let is_family = |v: &Yaml| {
        v.as_mapping()
            .is_some_and(|m| FAMILY_KEYS.iter().any(|k| m.contains_key(*k)))
    };
    if !map.values().any(is_family) {
        st.stages_map = map;
        return;
    }
    hidden_vars(st);
    let mut names = Names::default();
    for (k, v) in &map {
        if !is_family(v) {
            names
                .taken
                .insert(folded(&yaml_key(k)), (yaml_key(k), None));
        }
    }
    let mut out = Mapping::new();
    let mut families: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in map {
        let fam = yaml_key(&k);
        match v.as_mapping().filter(|_| is_family(&v)) {
            Some(m) => {
                let members = expand_family(st, &mut names, &fam, m);
                families.insert(fam, members.iter().map(|(n, _)| n.clone()).collect());
                for (n, body) in members {
                    out.insert(Yaml::String(n), body);
                }
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    for (k, v) in out.iter_mut() {
        if let Yaml::Mapping(m) = v {
            expand_needs(st, &yaml_key(k), m, &families);
        }
    }
    st.stage_names = out.keys().map(yaml_key).collect();
    st.stages_map = out;
    st.families = families;
}

/// The names taken so far (folded → (name, its family)), to find collisions.
#[derive(Default)]
struct Names {
    taken: HashMap<String, (String, Option<String>)>,
}

impl Names {
    /// Takes `name` (a member of `family`, or the family's own name), or returns the problem.
    fn take(&mut self, name: &str, family: &str) -> Result<(), FamilyProblem> {
        let f = folded(name);
        if let Some((other, other_family)) = self.taken.get(&f) {
            return Err(FamilyProblem::Collision {
                name: name.into(),
                other: other.clone(),
                other_family: other_family.clone(),
            });
        }
        self.taken.insert(f, (name.into(), Some(family.into())));
        Ok(())
    }
}

/// Variables named `item` or `key` (hidden inside every family's `do:`).
fn hidden_vars(st: &mut Parse<'_>) {
    for name in ["item", "key"] {
        if st.known_vars.iter().any(|v| v == name) {
            let issue = SpecIssue::Family {
                family: String::new(),
                problem: FamilyProblem::HiddenVar { name: name.into() },
            };
            st.is.at_key(&format!("vars.{name}"), issue);
        }
    }
}

/// Records a problem of family `fam`.
fn report(st: &mut Parse<'_>, fam: &str, at: &Place, problem: FamilyProblem) {
    let issue = SpecIssue::Family {
        family: fam.into(),
        problem,
    };
    match at {
        Place::Key(p) => st.is.at_key(p, issue),
        Place::Value(p) => st.is.at_value(p, issue),
    }
}

/// One family's members: (name, stage body), the ones with a usable name only.
fn expand_family(
    st: &mut Parse<'_>,
    names: &mut Names,
    fam: &str,
    m: &Mapping,
) -> Vec<(String, Yaml)> {
    let base = format!("stages.{fam}");
    if let Err(problem) = check_name(fam) {
        let issue = SpecIssue::BadName {
            what: "family",
            name: fam.into(),
            problem,
        };
        st.is.at_key(&base, issue);
        return Vec::new();
    }
    let Some((template, items)) = family_parts(st, fam, &base, m) else {
        return Vec::new();
    };
    if let Err(problem) = names.take(fam, fam) {
        report(st, fam, &Place::Key(base.clone()), problem);
    }
    let mut members = Vec::new();
    for it in items {
        let mut non_finite = Vec::new();
        find_non_finite(&it.item, "", &mut non_finite);
        if !non_finite.is_empty() {
            // reported by the document pass, at the item
            continue;
        }
        let name = format!("{fam}_{}", it.suffix);
        let checked = check_name(&name)
            .map_err(|problem| FamilyProblem::BadMemberName {
                name: name.clone(),
                problem,
            })
            .and_then(|()| names.take(&name, fam));
        if let Err(problem) = checked {
            report(st, fam, &it.at, problem);
            continue;
        }
        let body = fill(st, fam, &name, &it, template);
        members.push((name, body));
    }
    members
}

/// The template and the items of a family, or `None` (reported).
fn family_parts<'m>(
    st: &mut Parse<'_>,
    fam: &str,
    base: &str,
    m: &'m Mapping,
) -> Option<(&'m Mapping, Vec<Item>)> {
    for k in m.keys().map(yaml_key) {
        if !FAMILY_KEYS.contains(&k.as_str()) {
            let p = format!("{base}.{k}");
            let issue = SpecIssue::UnknownKey {
                path: p.clone(),
                allowed: FAMILY_KEYS.iter().map(|s| s.to_string()).collect(),
            };
            st.is.at_key(&p, issue);
        }
    }
    let (foreach, matrix) = (m.get("foreach"), m.get("matrix"));
    let items = match (foreach, matrix) {
        (Some(_), Some(_)) => Err(Box::new((
            Place::Key(format!("{base}.matrix")),
            FamilyProblem::BothForeachAndMatrix,
        ))),
        (Some(f), None) => foreach_items(&format!("{base}.foreach"), f),
        (None, Some(x)) => matrix_items(&format!("{base}.matrix"), x),
        (None, None) => Err(Box::new((
            Place::Key(format!("{base}.do")),
            FamilyProblem::NoItems,
        ))),
    };
    let template = match m.get("do") {
        Some(Yaml::Mapping(t)) => Some(t),
        Some(_) => {
            let at = Place::Value(format!("{base}.do"));
            report(st, fam, &at, FamilyProblem::DoNotAMapping);
            None
        }
        None if foreach.is_some() || matrix.is_some() => {
            report(st, fam, &Place::Key(base.into()), FamilyProblem::MissingDo);
            None
        }
        None => None,
    };
    let items = match items {
        Ok(items) => items,
        Err(located) => {
            let (at, problem) = *located;
            report(st, fam, &at, problem);
            return None;
        }
    };
    let (good, bad): (Vec<_>, Vec<_>) = items.into_iter().partition(|r| r.is_ok());
    for located in bad.into_iter().filter_map(Result::err) {
        let (at, problem) = *located;
        report(st, fam, &at, problem);
    }
    Some((template?, good.into_iter().filter_map(Result::ok).collect()))
}

/// A problem at a place.
type Located = Box<(Place, FamilyProblem)>;

/// The items of `foreach:` at `path`: each one, or its problem.
fn foreach_items(path: &str, v: &Yaml) -> Result<Vec<Result<Item, Located>>, Located> {
    let empty = || {
        Box::new((
            Place::Value(path.into()),
            FamilyProblem::Empty {
                what: "foreach".into(),
            },
        ))
    };
    let items: Vec<Result<Item, Located>> = match v {
        Yaml::Sequence(seq) => seq
            .iter()
            .enumerate()
            .map(|(i, x)| list_item(&format!("{path}.{i}"), i, x))
            .collect(),
        Yaml::Mapping(m) if m.len() == 1 && m.contains_key("range") => {
            let r = m.get("range").unwrap_or(&Yaml::Null);
            range_items(&format!("{path}.range"), r)?
                .into_iter()
                .map(Ok)
                .collect()
        }
        Yaml::Mapping(m) => named_items(path, m).into_iter().map(Ok).collect(),
        _ => {
            return Err(Box::new((
                Place::Value(path.into()),
                FamilyProblem::BadForeach,
            )))
        }
    };
    if items.is_empty() {
        return Err(empty());
    }
    check_count(path, items.len() as u128)?;
    Ok(items)
}

/// The suffix of list item `i`: a scalar's text, a mapping's or a list's index.
fn list_item(path: &str, i: usize, x: &Yaml) -> Result<Item, Located> {
    let suffix = match scalar_text(x) {
        Ok(t) => t,
        Err("an empty value") => {
            let p = FamilyProblem::BadItem { path: path.into() };
            return Err(Box::new((Place::Value(path.into()), p)));
        }
        Err(_) => i.to_string(),
    };
    Ok(Item {
        suffix,
        item: x.clone(),
        at: Place::Value(path.into()),
    })
}

/// The items of a mapping `name: value`: the name is the suffix.
fn named_items(path: &str, m: &Mapping) -> Vec<Item> {
    m.iter()
        .map(|(k, x)| {
            let suffix = yaml_key(k);
            Item {
                at: Place::Key(format!("{path}.{suffix}")),
                suffix,
                item: x.clone(),
            }
        })
        .collect()
}

/// `range: [start, end]` or `[start, end, step]`: integers, `end` excluded.
fn range_items(path: &str, v: &Yaml) -> Result<Vec<Item>, Located> {
    let bad = |message: &str| {
        Box::new((
            Place::Value(path.into()),
            FamilyProblem::BadRange {
                message: message.into(),
            },
        ))
    };
    let nums: Option<Vec<i64>> = v
        .as_sequence()
        .and_then(|s| s.iter().map(Yaml::as_i64).collect());
    let (start, end, step) = match nums.as_deref() {
        Some(&[a, b]) => (a, b, 1),
        Some(&[a, b, s]) => (a, b, s),
        _ => {
            return Err(bad(
                "expected [start, end] or [start, end, step] of integers",
            ))
        }
    };
    if step == 0 {
        return Err(bad("the step is 0"));
    }
    let span = (i128::from(end) - i128::from(start)) * i128::from(step.signum());
    let count = if span <= 0 {
        0
    } else {
        (span + i128::from(step.abs()) - 1) / i128::from(step.abs())
    };
    if count == 0 {
        let what = format!("range [{start}, {end}) (end excluded)");
        return Err(Box::new((
            Place::Value(path.into()),
            FamilyProblem::Empty { what },
        )));
    }
    check_count(path, count as u128)?;
    Ok((0..count as i64)
        .map(|i| start + i * step)
        .map(|n| Item {
            suffix: n.to_string(),
            item: Yaml::Number(n.into()),
            at: Place::Value(path.into()),
        })
        .collect())
}

fn check_count(path: &str, count: u128) -> Result<(), Located> {
    if count > MAX_MEMBERS as u128 {
        return Err(Box::new((
            Place::Value(path.into()),
            FamilyProblem::TooMany { count },
        )));
    }
    Ok(())
}

/// The members of `matrix:` at `path`: the cartesian product of its lists, in key order.
fn matrix_items(path: &str, v: &Yaml) -> Result<Vec<Result<Item, Located>>, Located> {
    let bad = |p: &str| {
        Box::new((
            Place::Value(p.into()),
            FamilyProblem::BadMatrix { path: p.into() },
        ))
    };
    let Some(axes) = v.as_mapping() else {
        return Err(bad(path));
    };
    if axes.is_empty() {
        let what = "matrix".to_string();
        return Err(Box::new((
            Place::Value(path.into()),
            FamilyProblem::Empty { what },
        )));
    }
    let mut lists: Vec<(Yaml, Vec<Item>)> = Vec::new();
    for (k, values) in axes {
        let p = format!("{path}.{}", yaml_key(k));
        let items = match values {
            Yaml::Sequence(seq) => seq
                .iter()
                .enumerate()
                .map(|(i, x)| list_item(&format!("{p}.{i}"), i, x))
                .collect::<Result<Vec<_>, _>>()?,
            Yaml::Mapping(m) => named_items(&p, m),
            _ => return Err(bad(&p)),
        };
        if items.is_empty() {
            let what = p.trim_start_matches("stages.").to_string();
            return Err(Box::new((Place::Value(p), FamilyProblem::Empty { what })));
        }
        lists.push((k.clone(), items));
    }
    let count = lists.iter().map(|(_, l)| l.len() as u128).product();
    check_count(path, count)?;
    Ok(product(&lists, path).into_iter().map(Ok).collect())
}

/// Every combination of one item per axis (the last axis fastest), as one item each: a
/// mapping axis → value, the suffixes joined by `_`, placed at the first value whose suffix
/// is no valid name part (else at `matrix:`).
fn product(lists: &[(Yaml, Vec<Item>)], path: &str) -> Vec<Item> {
    let mut out = vec![Vec::<&Item>::new()];
    for (_, items) in lists {
        out = out
            .into_iter()
            .flat_map(|pick| {
                items.iter().map(move |it| {
                    let mut p = pick.clone();
                    p.push(it);
                    p
                })
            })
            .collect();
    }
    out.into_iter()
        .map(|pick| {
            let item: Mapping = lists
                .iter()
                .zip(&pick)
                .map(|((k, _), it)| (k.clone(), it.item.clone()))
                .collect();
            let bad_part = pick
                .iter()
                .find(|it| check_name(&format!("x_{}", it.suffix)).is_err());
            Item {
                suffix: pick
                    .iter()
                    .map(|it| it.suffix.as_str())
                    .collect::<Vec<_>>()
                    .join("_"),
                item: Yaml::Mapping(item),
                at: bad_part.map_or(Place::Key(path.into()), |it| it.at.clone()),
            }
        })
        .collect()
}

/// One member's stage: the template with its placeholders filled (problems reported at the
/// template; the member's later issues are then not reported again).
fn fill(st: &mut Parse<'_>, fam: &str, name: &str, it: &Item, template: &Mapping) -> Yaml {
    let scope = Scope {
        member: name,
        item: &it.item,
        key: &it.suffix,
    };
    let base = format!("stages.{fam}.do");
    let mut errs = Vec::new();
    let body = substitute(&Yaml::Mapping(template.clone()), &scope, &base, &mut errs);
    let broken = !errs.is_empty();
    for (path, problem) in errs {
        let message = problem.to_string().replace(name, "\u{0}");
        if st.is.aliases.first(&path, fam, message) {
            report(st, fam, &Place::Value(path), problem);
        }
    }
    st.is.aliases.member(name, fam, broken);
    body
}

/// `needs:` of stage `name` with lists flattened and family names replaced by their members;
/// entries that moved are aliased to where they are written.
fn expand_needs(
    st: &mut Parse<'_>,
    name: &str,
    m: &mut Mapping,
    families: &BTreeMap<String, Vec<String>>,
) {
    let Some(needs) = m.get_mut("needs") else {
        return;
    };
    let (written, one) = match needs {
        Yaml::Sequence(s) => (std::mem::take(s), false),
        Yaml::String(_) => (vec![needs.clone()], true),
        _ => return,
    };
    let mut out = Vec::new();
    for (i, n) in written.into_iter().enumerate() {
        let expanded = match n {
            Yaml::Sequence(inner) => inner,
            Yaml::String(s) if families.contains_key(&s) => {
                families[&s].iter().cloned().map(Yaml::String).collect()
            }
            other => vec![other],
        };
        for e in expanded {
            let at = if one {
                format!("stages.{name}.needs")
            } else {
                format!("stages.{name}.needs.{i}")
            };
            st.is
                .aliases
                .moved(&format!("stages.{name}.needs.{}", out.len()), at);
            out.push(e);
        }
    }
    *needs = Yaml::Sequence(out);
}

/// Where the issues of expanded stages are reported (see the module doc).
#[derive(Default)]
pub(super) struct Aliases {
    /// Member name → its family.
    members: HashMap<String, String>,
    /// Members whose template had a problem: their later issues are not reported.
    broken: HashSet<String>,
    /// Dotted path → the path it was written at (`needs:` entries that moved).
    moved: HashMap<String, String>,
    /// (where, family, message with the member's name blanked) of the member issues
    /// reported so far.
    seen: HashSet<(String, String, String)>,
}

impl Aliases {
    fn member(&mut self, name: &str, family: &str, broken: bool) {
        self.members.insert(name.into(), family.into());
        if broken {
            self.broken.insert(name.into());
        }
    }

    fn moved(&mut self, path: &str, written: String) {
        if path != written {
            self.moved.insert(path.into(), written);
        }
    }

    /// The member a `stages.<member>…` path is in, with its family.
    fn member_of<'p>(&self, path: &'p str) -> Option<(&'p str, &str)> {
        let rest = path.strip_prefix("stages.")?;
        let name = rest.split('.').next()?;
        self.members.get(name).map(|f| (name, f.as_str()))
    }

    /// Where `path` is written in the file.
    pub(super) fn source(&self, path: &str) -> String {
        let p = self.moved.get(path).map_or(path, String::as_str);
        match self.member_of(p) {
            Some((name, fam)) => {
                let tail = &p["stages.".len() + name.len()..];
                format!("stages.{fam}.do{tail}")
            }
            None => p.to_string(),
        }
    }

    /// Whether an issue about `path` at `pos` is not to be reported: its member's template
    /// already had a problem, or another member of its family had the same issue there.
    pub(super) fn is_repeat(
        &mut self,
        path: &str,
        issue: &SpecIssue,
        pos: Option<super::super::span::Pos>,
    ) -> bool {
        let Some((name, fam)) = self.member_of(path) else {
            return false;
        };
        if self.broken.contains(name) {
            return true;
        }
        let at = pos.map_or(String::new(), |p| format!("{}:{}", p.line, p.col));
        let (fam, message) = (fam.to_string(), issue.to_string().replace(name, "\u{0}"));
        !self.first(&at, &fam, message)
    }

    /// Whether no other member of `family` had an issue with this message (the member's name
    /// blanked) at `at`; records it.
    fn first(&mut self, at: &str, family: &str, message: String) -> bool {
        self.seen.insert((at.into(), family.into(), message))
    }
}
