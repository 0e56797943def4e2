//! What can be wrong with a stage family (`foreach:` / `matrix:` with `do:`), as data: the
//! variants hold what the message and the hint need, and [`SpecIssue::Family`] carries one
//! with the family's name; the CLI renders them with the file's line and column.
//!
//! [`SpecIssue::Family`]: super::super::super::spec_error::SpecIssue::Family

use std::fmt;

use super::super::super::spec_error::NAME_RULE;

/// One problem with a stage family.
#[derive(Debug, Clone, PartialEq)]
pub enum FamilyProblem {
    /// Both `foreach:` and `matrix:`.
    BothForeachAndMatrix,
    /// `do:` without `foreach:` or `matrix:`.
    NoItems,
    /// `foreach:` or `matrix:` without `do:`.
    MissingDo,
    /// `do:` is not a mapping.
    DoNotAMapping,
    /// `foreach:` is not a list, a mapping or a range.
    BadForeach,
    /// `foreach: { range: … }` is not `[start, end]` or `[start, end, step]` of integers.
    BadRange {
        /// What is wrong.
        message: String,
    },
    /// `matrix:` is not a mapping of name → list.
    BadMatrix {
        /// Dotted path of the offending value.
        path: String,
    },
    /// A list (or range, or matrix axis) with no values.
    Empty {
        /// What is empty (`foreach`, `matrix.lr`, …).
        what: String,
    },
    /// More members than a family may have.
    TooMany {
        /// How many the family would have.
        count: u128,
    },
    /// An item that cannot name a member (an empty value).
    BadItem {
        /// Dotted path of the item.
        path: String,
    },
    /// A member's name is not a valid stage name.
    BadMemberName {
        /// The member's name.
        name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A member's name (or the family's) equals another stage's or member's, up to case and
    /// `-`/`_`.
    Collision {
        /// The name the family would add.
        name: String,
        /// The stage or member it clashes with.
        other: String,
        /// The family `other` belongs to, if it is a member (else a stage written by hand).
        other_family: Option<String>,
    },
    /// `${item.KEY}` names a key the member's item does not have.
    UnknownItemKey {
        /// The member.
        member: String,
        /// The `${…}` written.
        token: String,
        /// The key that is missing.
        key: String,
        /// The keys the item has at that level.
        known: Vec<String>,
    },
    /// `${item.KEY}` on an item that is not a mapping.
    NotAMap {
        /// The member.
        member: String,
        /// The `${…}` written.
        token: String,
    },
    /// A list, a mapping or an empty value spliced into longer text.
    Splice {
        /// The member.
        member: String,
        /// The `${…}` written.
        token: String,
        /// What the value is (`a list`, `a mapping`, `an empty value`).
        found: &'static str,
    },
    /// A variable named `item` or `key` in a pipeline with families (the family's would hide
    /// it inside `do:`).
    HiddenVar {
        /// The variable.
        name: String,
    },
}

impl fmt::Display for FamilyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FamilyProblem::BothForeachAndMatrix => write!(f, "both `foreach:` and `matrix:`"),
            FamilyProblem::NoItems => write!(f, "`do:` without `foreach:` or `matrix:`"),
            FamilyProblem::MissingDo => write!(f, "no `do:` (the stage template)"),
            FamilyProblem::DoNotAMapping => {
                write!(f, "`do:` must be a stage (a mapping with `uses:`)")
            }
            FamilyProblem::BadForeach => {
                write!(
                    f,
                    "`foreach:` must be a list, a mapping or `{{ range: [start, end] }}`"
                )
            }
            FamilyProblem::BadRange { message } => write!(f, "`foreach: {{ range }}`: {message}"),
            FamilyProblem::BadMatrix { path } => {
                write!(
                    f,
                    "`{path}`: `matrix:` must map each name to a list of values"
                )
            }
            FamilyProblem::Empty { what } => write!(f, "`{what}` has no values"),
            FamilyProblem::TooMany { count } => write!(
                f,
                "would have {count} stages (at most {})",
                super::MAX_MEMBERS
            ),
            FamilyProblem::BadItem { path } => {
                write!(f, "`{path}`: an empty value cannot name a stage")
            }
            FamilyProblem::BadMemberName { name, problem } => {
                write!(f, "stage name `{}`: {problem}", name.escape_debug())
            }
            FamilyProblem::Collision {
                name,
                other,
                other_family,
            } => match other_family {
                Some(g) if g == other => write!(f, "`{name}` clashes with the family `{g}`"),
                Some(g) => write!(f, "`{name}` clashes with `{other}` of family `{g}`"),
                None => write!(f, "`{name}` clashes with the stage `{other}`"),
            },
            FamilyProblem::UnknownItemKey {
                member, token, key, ..
            } => write!(f, "`{token}` in `{member}`: its item has no key `{key}`"),
            FamilyProblem::NotAMap { member, token } => {
                write!(f, "`{token}` in `{member}`: its item is not a mapping")
            }
            FamilyProblem::Splice {
                member,
                token,
                found,
            } => write!(
                f,
                "`{token}` in `{member}` is {found}, which cannot be part of text"
            ),
            FamilyProblem::HiddenVar { name } => write!(
                f,
                "the variable `{name}` would be hidden by the family's own `${{{name}}}`"
            ),
        }
    }
}

impl FamilyProblem {
    /// What to do.
    pub fn hint(&self) -> String {
        match self {
            FamilyProblem::BothForeachAndMatrix | FamilyProblem::NoItems => {
                "a family has one of `foreach: [...]` or `matrix: { name: [...] }`, and `do:`".into()
            }
            FamilyProblem::MissingDo | FamilyProblem::DoNotAMapping => {
                "put the stage template under `do:`, e.g. `do: { uses: KIND, with: { n: \"${item}\" } }`".into()
            }
            FamilyProblem::BadForeach | FamilyProblem::BadRange { .. } => {
                "e.g. `foreach: [0, 1, 2]`, `foreach: { a: 1, b: 2 }` or `foreach: { range: [0, 10] }` (0 to 9)".into()
            }
            FamilyProblem::BadMatrix { .. } => "e.g. `matrix: { lr: [0.01, 0.1], depth: [1, 2] }`".into(),
            FamilyProblem::Empty { .. } => "a family needs at least one value; remove it to have no stages".into(),
            FamilyProblem::TooMany { .. } => "split the family, or use fewer values".into(),
            FamilyProblem::BadItem { .. } => {
                "give the item a value, or name the members yourself with a mapping: `foreach: { name: value }`".into()
            }
            FamilyProblem::BadMemberName { .. } => format!(
                "{NAME_RULE}; a member is named `<family>_<item>`: name the members yourself with a mapping, e.g. `foreach: {{ small: 0.001 }}` or `matrix: {{ lr: {{ small: 0.001 }} }}`"
            ),
            FamilyProblem::Collision { .. } => {
                "stage names must differ in more than case or `-`/`_`; rename the family or the stage".into()
            }
            FamilyProblem::UnknownItemKey { known, .. } => format!(
                "keys of the item: {}",
                if known.is_empty() { "(none)".into() } else { known.join(", ") }
            ),
            FamilyProblem::NotAMap { .. } => {
                "`${item.KEY}` reads a key of a mapping item (a `foreach:` list of mappings, or `matrix:`); use `${item}`".into()
            }
            FamilyProblem::Splice { .. } => {
                "a list or mapping can only be a whole value: write `key: \"${item}\"` alone".into()
            }
            FamilyProblem::HiddenVar { .. } => {
                "`${item}` and `${key}` belong to families; rename the variable".into()
            }
        }
    }
}

/// The hint for a `${name}` that no variable defines, or a `needs:` target that is no stage,
/// when it is a family's placeholder written outside a family.
pub fn outside_family_hint(text: &str) -> Option<String> {
    let used = ["${item}", "${item.", "${key}"]
        .iter()
        .any(|t| text.contains(t))
        || text == "item"
        || text == "key"
        || text.starts_with("item.");
    used.then(|| {
        "`${item}`, `${item.KEY}` and `${key}` are defined only inside the `do:` of a `foreach:`/`matrix:` family".into()
    })
}
