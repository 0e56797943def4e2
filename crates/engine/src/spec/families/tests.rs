//! The families pass through the whole loader (`parse`), with one small kind.

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::super::super::context::StageContext;
use super::super::super::error::StageError;
use super::super::super::kind::Stage;
use super::super::super::registry::Registry;
use super::super::super::spec_error::SpecIssue;
use super::super::{parse, Pipeline};
use super::FamilyProblem;

#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct P {
    #[serde(default)]
    n: Option<i64>,
    #[serde(default)]
    s: Option<String>,
    #[serde(default)]
    l: Option<Vec<i64>>,
    #[serde(default)]
    x: Option<f64>,
}

struct K;

impl Stage for K {
    type Params = P;
    const KIND: &'static str = "k";
    const VERSION: u32 = 1;
    const DOC: &'static str = "test";
    fn run(&self, _: &P, _: &mut StageContext) -> Result<(), StageError> {
        Ok(())
    }
}

/// Issues with their (line, column).
type Found = Vec<(SpecIssue, Option<(usize, usize)>)>;

/// Whether a problem is the one expected.
type Expect = fn(&FamilyProblem) -> bool;

fn load(stages: &str) -> Result<Pipeline, Found> {
    load_with_vars("root: data", stages)
}

fn load_with_vars(vars: &str, stages: &str) -> Result<Pipeline, Found> {
    let mut reg = Registry::new();
    reg.add(K);
    let text = format!("pipeline: p\nvars: {{ {vars} }}\nstages:\n{stages}");
    parse(
        &text,
        Path::new("p.yaml"),
        Path::new("."),
        &BTreeMap::new(),
        &reg,
    )
    .map_err(|e| {
        e.issues
            .into_iter()
            .map(|(i, p)| (i, p.map(|p| (p.line, p.col))))
            .collect()
    })
}

fn names(p: &Pipeline) -> Vec<&str> {
    p.stages.iter().map(|s| s.name.as_str()).collect()
}

fn with(p: &Pipeline, stage: &str) -> serde_json::Value {
    p.stages[p.stage_index(stage).expect("the stage")]
        .with
        .clone()
}

fn family_problem(
    issues: &[(SpecIssue, Option<(usize, usize)>)],
) -> (&FamilyProblem, (usize, usize)) {
    match issues {
        [(SpecIssue::Family { problem, .. }, Some(pos))] => (problem, *pos),
        other => panic!("expected one family issue, got {other:?}"),
    }
}

#[test]
fn a_scalar_list_expands_in_place_with_typed_items() {
    let p = load(
        "  a: { uses: k }\n  f:\n    foreach: [1, 2]\n    do: { uses: k, needs: [a], with: { n: \"${item}\", s: \"${root}/${item}_${key}\" } }\n  z: { uses: k, needs: [f] }\n",
    )
    .expect("loads");
    assert_eq!(names(&p), ["a", "f_1", "f_2", "z"]);
    assert_eq!(with(&p, "f_2"), json!({ "n": 2, "s": "data/2_2" }));
    assert_eq!(p.stages[3].needs, ["f_1", "f_2"]);
    assert_eq!(p.dag.deps(3), [1, 2]);
}

#[test]
fn ranges_maps_and_matrices_name_their_members() {
    let p = load(
        "  r:\n    foreach: { range: [0, 5, 2] }\n    do: { uses: k, with: { n: \"${item}\" } }\n  \
         m:\n    foreach: [{ n: 7, l: [1] }, { n: 8, l: [] }]\n    do: { uses: k, with: { n: \"${item.n}\", l: \"${item.l}\" } }\n  \
         u:\n    foreach: { us: 10, uk: 12 }\n    do: { uses: k, with: { n: \"${item}\", s: \"${key}\" } }\n  \
         x:\n    matrix: { a: [1, 2], b: [p, q], c: { small: 0.5 } }\n    do: { uses: k, with: { s: \"${item.b}${item.a}\", x: \"${item.c}\" } }\n",
    )
    .expect("loads");
    assert_eq!(
        names(&p),
        [
            "r_0",
            "r_2",
            "r_4",
            "m_0",
            "m_1",
            "u_us",
            "u_uk",
            "x_1_p_small",
            "x_1_q_small",
            "x_2_p_small",
            "x_2_q_small"
        ]
    );
    assert_eq!(with(&p, "r_4"), json!({ "n": 4 }));
    assert_eq!(with(&p, "m_1"), json!({ "n": 8, "l": [] }));
    assert_eq!(with(&p, "u_uk"), json!({ "n": 12, "s": "uk" }));
    assert_eq!(with(&p, "x_2_q_small"), json!({ "s": "q2", "x": 0.5 }));
}

#[test]
fn needs_take_lists_from_items_and_a_whole_family() {
    let p = load(
        "  a: { uses: k }\n  b: { uses: k }\n  f:\n    foreach: [{ ups: [a, b] }, { ups: [b] }]\n    do: { uses: k, needs: \"${item.ups}\" }\n  \
         g:\n    foreach: [0, 1]\n    do: { uses: k, needs: [f, \"f_${item}\"] }\n",
    )
    .expect("loads");
    assert_eq!(p.stages[2].needs, ["a", "b"]);
    assert_eq!(p.stages[5].needs, ["f_0", "f_1", "f_1"]);
}

#[test]
fn collisions_are_reported_at_the_item() {
    let issues = load("  f_1: { uses: k }\n  f:\n    foreach: [0, 1]\n    do: { uses: k }\n")
        .err()
        .expect("a collision");
    let (problem, pos) = family_problem(&issues);
    assert!(
        matches!(problem, FamilyProblem::Collision { name, other, other_family: None } if name == "f_1" && other == "f_1")
    );
    assert_eq!(pos, (6, 18));
    let issues = load("  f:\n    foreach: [a, A]\n    do: { uses: k }\n")
        .err()
        .expect("a collision");
    let (problem, pos) = family_problem(&issues);
    assert!(matches!(problem, FamilyProblem::Collision { other_family: Some(g), .. } if g == "f"));
    assert_eq!(pos, (5, 18));
    // a member named like another family (whose name `needs:` would take for all its members)
    let issues = load("  x_1:\n    foreach: [a]\n    do: { uses: k }\n  x:\n    foreach: [1]\n    do: { uses: k }\n")
        .err()
        .expect("a collision");
    let (problem, pos) = family_problem(&issues);
    assert_eq!(problem.to_string(), "`x_1` clashes with the family `x_1`");
    assert_eq!(pos, (8, 15));
}

#[test]
fn a_family_name_is_checked_like_a_stage_name() {
    let issues = load("  ../f:\n    foreach: [0, 1]\n    do: { uses: k }\n")
        .err()
        .expect("a bad name");
    assert!(
        matches!(
            &issues[..],
            [(SpecIssue::BadName { what: "family", .. }, Some((4, 3)))]
        ),
        "{issues:?}"
    );
}

#[test]
fn bad_families_are_reported_with_line_and_column() {
    let cases: [(&str, Expect, (usize, usize)); 9] = [
        (
            "    foreach: []\n    do: { uses: k }\n",
            |p| matches!(p, FamilyProblem::Empty { .. }),
            (5, 14),
        ),
        (
            "    foreach: { range: [3, 3] }\n    do: { uses: k }\n",
            |p| matches!(p, FamilyProblem::Empty { .. }),
            (5, 23),
        ),
        (
            "    matrix: { a: [] }\n    do: { uses: k }\n",
            |p| matches!(p, FamilyProblem::Empty { what } if what == "f.matrix.a"),
            (5, 18),
        ),
        (
            "    foreach: [1]\n    matrix: { a: [1] }\n    do: { uses: k }\n",
            |p| *p == FamilyProblem::BothForeachAndMatrix,
            (6, 5),
        ),
        (
            "    foreach: [1]\n",
            |p| *p == FamilyProblem::MissingDo,
            (4, 3),
        ),
        (
            "    foreach: [0.5]\n    do: { uses: k }\n",
            |p| matches!(p, FamilyProblem::BadMemberName { name, .. } if name == "f_0.5"),
            (5, 15),
        ),
        (
            "    foreach: [{ n: 1 }]\n    do: { uses: k, needs: [\"a_${item}\"] }\n",
            |p| {
                matches!(
                    p,
                    FamilyProblem::Splice {
                        found: "a mapping",
                        ..
                    }
                )
            },
            (6, 28),
        ),
        // one issue, although each of the three members has it
        (
            "    foreach: [1, 2, 3]\n    do: { uses: k, with: { n: \"${item.x}\" } }\n",
            |p| matches!(p, FamilyProblem::NotAMap { member, .. } if member == "f_1"),
            (6, 31),
        ),
        (
            "    foreach: { range: [0, 20000] }\n    do: { uses: k }\n",
            |p| *p == FamilyProblem::TooMany { count: 20000 },
            (5, 23),
        ),
    ];
    for (family, expect, at) in cases {
        let issues = load(&format!("  f:\n{family}")).err().expect("an issue");
        let (problem, pos) = family_problem(&issues);
        assert!(expect(problem), "{family}: {problem:?}");
        assert_eq!(pos, at, "{family}");
    }
}

#[test]
fn an_unknown_item_key_is_reported_at_the_template_naming_the_member() {
    let issues = load("  f:\n    foreach: [{ n: 1 }, { m: 2 }]\n    do: { uses: k, with: { n: \"${item.n}\" } }\n")
        .err()
        .expect("an unknown key");
    let (problem, pos) = family_problem(&issues);
    assert!(
        matches!(problem, FamilyProblem::UnknownItemKey { member, key, known, .. } if member == "f_1" && key == "n" && known == &["m"])
    );
    assert_eq!(pos, (6, 31));
}

#[test]
fn a_template_problem_is_reported_once_at_the_template() {
    let issues =
        load("  f:\n    foreach: [0, 1, 2]\n    do: { uses: k, needs: [nope], with: { nn: 1 } }\n")
            .err()
            .expect("issues");
    let found: Vec<_> = issues
        .iter()
        .map(|(i, p)| (std::mem::discriminant(i), p.expect("a position")))
        .collect();
    assert_eq!(found.len(), 2, "{issues:?}");
    assert_eq!(found[0].1, (6, 28));
    assert_eq!(found[1].1, (6, 43));
}

#[test]
fn placeholders_outside_a_family_say_where_they_belong() {
    let issues = load("  a: { uses: k, needs: [\"b_${item}\"], with: { s: \"${key}\" } }\n")
        .err()
        .expect("issues");
    assert_eq!(issues.len(), 2, "{issues:?}");
    for (issue, _) in &issues {
        let hint = issue.hint().expect("a hint");
        assert!(hint.contains("only inside the `do:`"), "{hint}");
    }
}

#[test]
fn a_non_finite_number_in_a_template_or_an_item_is_reported_once() {
    let issues = load(
        "  t:\n    foreach: [0, 1]\n    do: { uses: k, with: { x: .nan, n: \"${item}\" } }\n  \
         u:\n    foreach: [.inf, { x: .nan }, 1]\n    do: { uses: k, with: { x: \"${item}\" } }\n",
    )
    .err()
    .expect("issues");
    let found: Vec<_> = issues.iter().map(|(i, p)| (i.to_string(), *p)).collect();
    assert_eq!(
        found,
        [
            (
                "stages.t.do.with.x: `.nan` is not a finite number".to_string(),
                Some((6, 31))
            ),
            (
                "stages.u.foreach.0: `.inf` is not a finite number".to_string(),
                Some((8, 15))
            ),
            (
                "stages.u.foreach.1.x: `.nan` is not a finite number".to_string(),
                Some((8, 26))
            ),
        ]
    );
}

#[test]
fn a_variable_a_family_would_hide_is_an_error_only_with_families() {
    let family = "  f:\n    foreach: [0]\n    do: { uses: k, with: { s: \"${key}\" } }\n";
    let issues = load_with_vars("key: 1", family)
        .err()
        .expect("a hidden variable");
    let (problem, pos) = family_problem(&issues);
    assert_eq!(problem, &FamilyProblem::HiddenVar { name: "key".into() });
    assert_eq!(pos, (2, 9));
    let p = load_with_vars("key: 1", "  a: { uses: k, with: { n: \"${key}\" } }\n").expect("loads");
    assert_eq!(with(&p, "a"), json!({ "n": 1 }));
}
