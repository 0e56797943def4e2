//! Issue 14, the pipeline-file half: names never become paths outside the workspace, names
//! that would share an environment variable are rejected, and `.nan`/`.inf` never turn into
//! "not given". All are parse-time errors with file:line:column.

use crate::engine_support::Ws;

#[test]
fn a_pipeline_name_with_a_path_is_rejected_at_its_line_and_column() {
    let ws = Ws::new();
    // `<tmp>/<ws>/runs/<id>` with this name would land in `<tmp>/<ws>-outside/`
    let escape = format!(
        "x/../../../{}-outside/p",
        ws.root().file_name().expect("a name").to_string_lossy()
    );
    for name in [escape.as_str(), "/tmp/abs", "..", "a b"] {
        ws.pipeline(
            "p",
            &format!(
                "pipeline: \"{name}\"\nstages:\n  a:\n    uses: command\n    with: {{ run: \"true\" }}\n"
            ),
        );
        let out = ws.luna(&["run", "p"]);
        out.expect_code(2);
        assert!(
            out.stderr.contains("invalid pipeline name") && out.stderr.contains("p.yaml:1:11"),
            "{name}: {}",
            out.stderr
        );
        assert!(out.stderr.contains("letters, digits"), "{}", out.stderr);
    }
    assert!(!ws.path("runs").exists() && !ws.path(".luna").exists());
    let outside = ws.root().with_file_name(format!(
        "{}-outside",
        ws.root().file_name().expect("a name").to_string_lossy()
    ));
    assert!(!outside.exists());
}

#[test]
fn a_stage_name_with_a_path_is_rejected_at_its_key() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        "pipeline: p\nstages:\n  ../../x:\n    uses: command\n    with: { run: \"true\" }\n",
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("invalid stage name `../../x`") && out.stderr.contains("p.yaml:3:3"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("runs").exists());
}

#[test]
fn stage_names_that_share_an_environment_variable_are_rejected() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        r#"pipeline: p
stages:
  a-b:
    uses: command
    with: { run: "echo 1 > $LUNA_OUT/x" }
  a_b:
    uses: command
    with: { run: "echo 2 > $LUNA_OUT/x" }
  c:
    uses: command
    needs: [a-b, a_b]
    with: { run: "cat $LUNA_IN_A_B/x > $LUNA_OUT/y" }
"#,
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("`a-b` and `a_b` differ only") && out.stderr.contains("p.yaml:6:3"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("LUNA_IN_A_B"), "{}", out.stderr);
}

#[test]
fn nan_and_inf_are_rejected_at_parse_time_not_taken_as_the_default() {
    let ws = Ws::new();
    for (value, shown) in [(".nan", ".nan"), (".inf", ".inf"), ("-.Inf", "-.inf")] {
        ws.pipeline(
            "p",
            &format!(
                "pipeline: p\nstages:\n  t:\n    uses: test_params\n    with: {{ lr: {value} }}\n"
            ),
        );
        let out = ws.luna(&["run", "p"]);
        out.expect_code(2);
        assert!(
            out.stderr
                .contains(&format!("`{shown}` is not a finite number"))
                && out.stderr.contains("p.yaml:5:17"),
            "{value}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("null"), "{}", out.stderr);
    }
    // in `vars:` too (a variable is spliced into parameters)
    ws.pipeline(
        "p",
        "pipeline: p\nvars: { lr: .nan }\nstages:\n  t:\n    uses: test_params\n    with: { lr: \"${lr}\" }\n",
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    assert!(
        out.stderr
            .contains("vars.lr: `.nan` is not a finite number")
            && out.stderr.contains("p.yaml:2:13"),
        "{}",
        out.stderr
    );
    assert!(!ws.path("cache/objects").exists() || ws.manifests().is_empty());
}

#[test]
fn an_empty_required_value_does_not_say_found_null() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        "pipeline: p\nstages:\n  a:\n    uses: command\n    with:\n      run:\n",
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    assert!(!out.stderr.contains("null"), "{}", out.stderr);
    assert!(
        out.stderr.contains("found an empty value"),
        "{}",
        out.stderr
    );
}
