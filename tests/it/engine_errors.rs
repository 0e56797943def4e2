//! Malformed pipelines: `luna run` prints every problem with `file:line:column`, the source
//! line with a caret and a hint, exits 2, and runs nothing (issue 2, acceptance point 8).

use crate::engine_support::Ws;

/// Runs `luna run p` on `yaml`; asserts exit code 2, no run record, and returns stderr.
fn spec_error(yaml: &str) -> String {
    let ws = Ws::new();
    ws.pipeline("p", yaml);
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    assert_eq!(out.stdout, "");
    assert!(ws.runs().is_empty(), "a spec error runs nothing");
    assert!(ws.manifests().is_empty(), "a spec error caches nothing");
    out.stderr
}

#[test]
fn unknown_top_level_key_suggests_the_nearest() {
    let err = spec_error(
        "pipeline: p\nstagse: {}\nstages:\n  a:\n    uses: command\n    with: { run: \"true\" }\n",
    );
    assert_eq!(
        err,
        "error: unknown key `stagse`\n  \
         --> pipelines/p.yaml:2:1\n  |\n2 | stagse: {}\n  | ^^^^^^\n  \
         = hint: did you mean `stages`? allowed here: pipeline, description, vars, stages\n"
    );
}

#[test]
fn unknown_stage_key_suggests_the_nearest() {
    let err = spec_error("pipeline: p\nstages:\n  a:\n    uses: command\n    nedes: []\n    with: { run: \"true\" }\n");
    assert_eq!(
        err,
        "error: unknown key `stages.a.nedes`\n  \
         --> pipelines/p.yaml:5:5\n  |\n5 |     nedes: []\n  |     ^^^^^\n  \
         = hint: did you mean `needs`? allowed here: uses, needs, with, resources\n"
    );
}

#[test]
fn unknown_stage_kind_lists_kinds_and_suggests_the_nearest() {
    let err =
        spec_error("pipeline: p\nstages:\n  a:\n    uses: comand\n    with: { run: \"true\" }\n");
    // the list is every registered kind, as `luna stages` prints them (it grows with luna)
    let stages = Ws::new().luna(&["stages"]);
    let mut kinds: Vec<&str> = stages
        .stdout
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    kinds.sort();
    assert!(
        kinds.contains(&"command") && kinds.contains(&"test_params"),
        "{kinds:?}"
    );
    assert_eq!(
        err,
        format!(
            "error: stage `a` uses unknown stage kind `comand`\n  \
             --> pipelines/p.yaml:4:11\n  |\n4 |     uses: comand\n  |           ^^^^^^\n  \
             = hint: did you mean `command`? known kinds: {} (see `luna stages`)\n",
            kinds.join(", ")
        )
    );
}

#[test]
fn missing_needs_target_suggests_the_nearest_stage() {
    let err = spec_error(
        "pipeline: p\nstages:\n  prepare:\n    uses: command\n    with: { run: \"true\" }\n  \
         train:\n    uses: command\n    needs: [prepair]\n    with: { run: \"true\" }\n",
    );
    assert_eq!(
        err,
        "error: stage `train` needs `prepair`, which is not a stage of this pipeline\n  \
         --> pipelines/p.yaml:8:13\n  |\n8 |     needs: [prepair]\n  |             ^^^^^^^\n  \
         = hint: did you mean `prepare`? stages: prepare, train\n"
    );
}

#[test]
fn cycle_is_printed_as_a_closed_path() {
    let err = spec_error(
        "pipeline: p\nstages:\n  a:\n    uses: command\n    needs: [c]\n    with: { run: \"true\" }\n  \
         b:\n    uses: command\n    needs: [a]\n    with: { run: \"true\" }\n  \
         c:\n    uses: command\n    needs: [b]\n    with: { run: \"true\" }\n",
    );
    assert_eq!(
        err,
        "error: stages depend on each other in a cycle: a → c → b → a\n  \
         --> pipelines/p.yaml:5:5\n  |\n5 |     needs: [c]\n  |     ^^^^^\n  \
         = hint: remove one of these `needs:` entries\n"
    );
}

#[test]
fn parameter_of_the_wrong_type_names_expected_and_found() {
    let err = spec_error(
        "pipeline: p\nstages:\n  prep:\n    uses: command\n    with: { run: \"true\" }\n  \
         train:\n    uses: test_params\n    needs: [prep]\n    with:\n      epochs: 3\n      lr: fast\n",
    );
    assert_eq!(
        err,
        "error: stages.train.with.lr: expected a number, found string \"fast\"\n   \
         --> pipelines/p.yaml:11:11\n   |\n11 |       lr: fast\n   |           ^^^^\n   \
         = hint: `luna stages test_params` lists its parameters and their types\n"
    );
}

#[test]
fn unknown_parameter_of_a_kind_lists_its_parameters() {
    let err = spec_error("pipeline: p\nstages:\n  t:\n    uses: test_params\n    with: { lr: 0.1, nested: { flagg: true } }\n");
    assert_eq!(
        err,
        "error: stages.t.with.nested.flagg: unknown parameter for kind `test_params`\n  \
         --> pipelines/p.yaml:5:32\n  |\n5 |     with: { lr: 0.1, nested: { flagg: true } }\n  |                                ^^^^^\n  \
         = hint: did you mean `flag`? parameters of `test_params`: flag (see `luna stages test_params`)\n"
    );
}

#[test]
fn unknown_variable_lists_declared_ones() {
    let err = spec_error(
        "pipeline: p\nvars: { root: data }\nstages:\n  a:\n    uses: command\n    with:\n      run: \"ls ${rot}/x\"\n",
    );
    assert_eq!(
        err,
        "error: stages.a.with.run: unknown variable `${rot}`\n  \
         --> pipelines/p.yaml:7:12\n  |\n7 |       run: \"ls ${rot}/x\"\n  |            ^^^^^^^^^^^^^\n  \
         = hint: did you mean `root`? declared in `vars:`: root\n"
    );
}

#[test]
fn invalid_yaml_syntax_has_its_position_and_context() {
    let err = spec_error(
        "pipeline: p\nstages:\n  a:\n    uses: command\n    with:\n      run: x\n     bad: 1\n",
    );
    assert_eq!(
        err,
        "error: invalid YAML: did not find expected key, while parsing a block mapping\n  \
         --> pipelines/p.yaml:7:6\n  |\n7 |      bad: 1\n  |      ^^^\n"
    );
}

#[test]
fn every_problem_is_reported_at_once_in_file_order() {
    let err = spec_error(
        "pipeline: p\nstages:\n  a:\n    uses: comand\n    with: { run: \"true\" }\n  \
         b:\n    uses: test_params\n    needs: [aa]\n    with: { lr: fast }\n",
    );
    let firsts: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(
        firsts,
        vec![
            "error: stage `a` uses unknown stage kind `comand`",
            "error: stage `b` needs `aa`, which is not a stage of this pipeline",
            "error: stages.b.with.lr: expected a number, found string \"fast\"",
        ]
    );
}

#[test]
fn unknown_pipeline_suggests_the_nearest() {
    let ws = Ws::new();
    ws.pipeline("classify", "pipeline: classify\nstages: {}\n");
    let out = ws.luna(&["run", "clasify"]);
    out.expect_code(2);
    assert_eq!(
        out.stderr,
        format!(
            "error: no pipeline `clasify` in {}\n  = hint: did you mean `classify`? pipelines: classify\n",
            ws.path("pipelines").display()
        )
    );
}
