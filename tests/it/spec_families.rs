//! Issue 26, point 3: stage families (`foreach:` / `matrix:` with `do:`) through the `luna`
//! binary. A family's members are ordinary stages: the same keys as the stages written by
//! hand (so one's cache serves the other), shown by `luna dag` and `luna status`; typed
//! placeholders reach the kind's parameters; a bad family is a plan-time error at the file's
//! line and column, with nothing run.

use serde_json::Value;

use crate::engine_support::Ws;

/// Real kinds (synth → load_annotations → merge_candidates) and `command`, as families: a
/// scalar list, a matrix with a named axis whose value is a variable, a list of mappings, and
/// `needs:` naming a whole family.
const FAMILIES: &str = r#"pipeline: fam
vars: { stride: 2 }
stages:
  data:
    foreach: [3, 4]
    do: { uses: synth, with: { preset: tiny, seed: "${item}" } }
  annotations:
    foreach: [3, 4]
    do: { uses: load_annotations, needs: ["data_${item}"] }
  candidates:
    matrix: { seed: [3, 4], stride: { s2: "${stride}", s5: 5 } }
    do:
      uses: merge_candidates
      needs: ["annotations_${item.seed}", "data_${item.seed}"]
      with: { val_stride: "${item.stride}" }
  echo:
    foreach: [{ word: a }, { word: b }]
    do: { uses: command, needs: [candidates], with: { run: "echo ${item.word} ${key} > $LUNA_OUT/x" } }
"#;

/// [`FAMILIES`] written by hand.
const BY_HAND: &str = r#"pipeline: hand
stages:
  data_3: { uses: synth, with: { preset: tiny, seed: 3 } }
  data_4: { uses: synth, with: { preset: tiny, seed: 4 } }
  annotations_3: { uses: load_annotations, needs: [data_3] }
  annotations_4: { uses: load_annotations, needs: [data_4] }
  candidates_3_s2: { uses: merge_candidates, needs: [annotations_3, data_3], with: { val_stride: 2 } }
  candidates_3_s5: { uses: merge_candidates, needs: [annotations_3, data_3], with: { val_stride: 5 } }
  candidates_4_s2: { uses: merge_candidates, needs: [annotations_4, data_4], with: { val_stride: 2 } }
  candidates_4_s5: { uses: merge_candidates, needs: [annotations_4, data_4], with: { val_stride: 5 } }
  echo_0:
    uses: command
    needs: [candidates_3_s2, candidates_3_s5, candidates_4_s2, candidates_4_s5]
    with: { run: "echo a 0 > $LUNA_OUT/x" }
  echo_1:
    uses: command
    needs: [candidates_3_s2, candidates_3_s5, candidates_4_s2, candidates_4_s5]
    with: { run: "echo b 1 > $LUNA_OUT/x" }
"#;

/// `(stage, key)` of every stage, from `luna status --json`.
fn keys(ws: &Ws, pipeline: &str) -> Vec<(String, String)> {
    let out = ws.luna(&["status", pipeline, "--json"]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(&out.stdout).expect("status --json is JSON");
    v.as_array()
        .expect("an array of stages")
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().expect("a string field").to_string();
            (field("stage"), field("key"))
        })
        .collect()
}

#[test]
fn a_family_has_the_keys_of_the_same_stages_written_by_hand() {
    let ws = Ws::new();
    ws.pipeline("fam", FAMILIES).pipeline("hand", BY_HAND);
    let fam = keys(&ws, "fam");
    assert_eq!(fam, keys(&ws, "hand"));
    let names: Vec<&str> = fam.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "data_3",
            "data_4",
            "annotations_3",
            "annotations_4",
            "candidates_3_s2",
            "candidates_3_s5",
            "candidates_4_s2",
            "candidates_4_s5",
            "echo_0",
            "echo_1"
        ]
    );
    // the keys differ where the items do
    let distinct: std::collections::BTreeSet<&String> = fam.iter().map(|(_, k)| k).collect();
    assert_eq!(distinct.len(), fam.len());
}

/// `test_params` writes its typed parameters to `params.json`.
const TYPED: &str = r#"pipeline: typed
stages:
  base: { uses: test_params }
  t:
    foreach: [{ e: 2, lr: 0.25, nested: { flag: true } }, { e: 3, lr: 0.5, nested: { flag: false } }]
    do: { uses: test_params, needs: [base], with: { epochs: "${item.e}", lr: "${item.lr}", nested: "${item.nested}" } }
  sweep:
    matrix: { epochs: { one: 1, two: 2 }, flag: [true, false] }
    do: { uses: test_params, needs: [t], with: { epochs: "${item.epochs}", nested: { flag: "${item.flag}" } } }
  last: { uses: test_params, needs: [sweep] }
"#;

#[test]
fn typed_placeholders_reach_the_kind_and_dag_and_status_show_the_members() {
    let ws = Ws::new();
    ws.pipeline("typed", TYPED);
    ws.luna(&["run", "typed"]).expect_code(0);
    let params = |stage: &str| -> Value {
        let text =
            std::fs::read_to_string(ws.object_of(stage).join("params.json")).expect("params.json");
        serde_json::from_str(&text).expect("params.json is JSON")
    };
    let t1 = params("t_1");
    assert_eq!(
        (&t1["epochs"], &t1["lr"], &t1["flag"]),
        (&Value::from(3), &Value::from(0.5), &Value::from(false))
    );
    let s = params("sweep_two_true");
    assert_eq!(
        (&s["epochs"], &s["flag"]),
        (&Value::from(2), &Value::from(true))
    );
    // a stage that needs the family reads all of its members (and their ancestors: 4 + 2 + 1)
    assert_eq!(params("last")["upstream"].as_array().map(Vec::len), Some(7));

    let dag = ws.luna(&["dag", "typed"]);
    dag.expect_code(0);
    for member in [
        "t_0",
        "t_1",
        "sweep_one_true",
        "sweep_one_false",
        "sweep_two_true",
        "sweep_two_false",
    ] {
        assert!(
            dag.stdout.contains(&format!("{member} (test_params)")),
            "{member}: {}",
            dag.stdout
        );
    }
    assert!(
        dag.stdout.contains(
            "last (test_params) ← sweep_one_true, sweep_one_false, sweep_two_true, sweep_two_false"
        ),
        "{}",
        dag.stdout
    );
    let status = ws.luna(&["status", "typed"]);
    status.expect_code(0);
    assert!(
        status.stdout.contains("  sweep_two_false  up to date"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.ends_with("everything is up to date\n"),
        "{}",
        status.stdout
    );
}

/// Every problem of one file is reported at once, each at its line and column, with exit 2
/// and nothing run.
#[test]
fn bad_families_are_plan_time_errors_at_their_line_and_column() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        r#"pipeline: p
stages:
  a_1: { uses: test_params }
  a:
    foreach: [0, 1]
    do: { uses: test_params }
  b:
    foreach: []
    do: { uses: test_params }
  c:
    foreach: [{ n: 1 }, { m: 2 }]
    do: { uses: test_params, with: { epochs: "${item.n}" } }
  d:
    foreach: [{ n: 1 }]
    do: { uses: test_params, needs: ["a_${item}"] }
  e:
    foreach: [1]
    matrix: { x: [1] }
    do: { uses: test_params }
  f:
    foreach: [0.5]
    do: { uses: test_params }
  g:
    foreach: [1]
  h: { uses: test_params, with: { epochs: "${item}" } }
"#,
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    let expected = [
        (
            "family `a`: `a_1` clashes with the stage `a_1`",
            "p.yaml:5:18",
        ),
        ("family `b`: `foreach` has no values", "p.yaml:8:14"),
        (
            "family `c`: `${item.n}` in `c_1`: its item has no key `n`",
            "p.yaml:12:46",
        ),
        (
            "family `d`: `${item}` in `d_0` is a mapping, which cannot be part of text",
            "p.yaml:15:38",
        ),
        ("family `e`: both `foreach:` and `matrix:`", "p.yaml:18:5"),
        (
            "family `f`: stage name `f_0.5`: `.` is not allowed",
            "p.yaml:21:15",
        ),
        ("family `g`: no `do:` (the stage template)", "p.yaml:23:3"),
        (
            "stages.h.with.epochs: unknown variable `${item}`",
            "p.yaml:25:43",
        ),
    ];
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), expected.len(), "{}", out.stderr);
    for (i, (message, at)) in expected.iter().enumerate() {
        assert_eq!(errors[i], format!("error: {message}"), "{}", out.stderr);
        assert!(out.stderr.contains(at), "{at}: {}", out.stderr);
    }
    assert!(
        out.stderr.contains("defined only inside the `do:`"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("runs").exists(), "nothing ran");
}

/// A listed input named by a family's name binds the family's members in order: the same key
/// as the list written out, and `luna dag` names every member.
#[test]
fn a_family_name_in_a_listed_input_binds_its_members_in_order() {
    let ws = Ws::new();
    let folds = |predictions: &str| {
        format!(
            r#"pipeline: pool
stages:
  data: {{ uses: synth, with: {{ preset: tiny }} }}
  cands: {{ uses: command, with: {{ run: "true", provides: [candidates] }} }}
  fold:
    foreach: [0, 1, 2]
    do: {{ uses: command, with: {{ run: "echo ${{item}} > $LUNA_OUT/predictions.parquet", provides: [predictions] }} }}
  froc:
    uses: evaluate_froc
    needs: [fold, cands, data]
    with: {{ predictions: {predictions}, candidates: cands }}
"#
        )
    };
    ws.pipeline("pool", &folds("fold"));
    let by_family = keys(&ws, "pool");
    let dag = ws.luna(&["dag", "pool"]).expect_code(0).stdout.clone();
    assert!(
        dag.contains("froc (evaluate_froc) ← fold_0, fold_1, fold_2"),
        "{dag}"
    );
    ws.pipeline("pool", &folds("[fold_0, fold_1, fold_2]"));
    assert_eq!(keys(&ws, "pool"), by_family);
    ws.pipeline("pool", &folds("[fold_2, fold_1, fold_0]"));
    let reordered = keys(&ws, "pool");
    let froc = |k: &[(String, String)]| k.iter().find(|(s, _)| s == "froc").cloned();
    assert_ne!(froc(&reordered), froc(&by_family));
}
