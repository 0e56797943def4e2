//! The executor through `luna run`: selections (`--until`, `--only`, `--force`), `--dry-run`,
//! parallel stages, failures and their reporting (issue 2, acceptance point 10).

use crate::engine_support::{st, stages_with, Ws};

/// a → b → c and an unrelated d, all `command` stages writing one file each.
const CHAIN: &str = r#"pipeline: p
stages:
  a:
    uses: command
    with: { run: "echo a > $LUNA_OUT/a.txt" }
  b:
    uses: command
    needs: [a]
    with: { run: "cat $LUNA_IN_A/a.txt > $LUNA_OUT/b.txt; echo b >> $LUNA_OUT/b.txt" }
  c:
    uses: command
    needs: [b]
    with: { run: "cat $LUNA_IN_B/b.txt > $LUNA_OUT/c.txt" }
  d:
    uses: command
    with: { run: "echo d > $LUNA_OUT/d.txt" }
"#;

#[test]
fn until_runs_the_stage_and_its_ancestors_only() {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    ws.luna(&["run", "p", "--until", "b"]).expect_code(0);
    assert_eq!(ws.last_statuses(), st(&[("a", "ran"), ("b", "ran")]));
    let status = ws.luna(&["status", "p"]);
    assert!(
        status
            .stdout
            .contains("  c  will run:\n       - no cached artifact (first run)\n"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("  b  up to date\n"),
        "{}",
        status.stdout
    );
    let bad = ws.luna(&["run", "p", "--until", "bb"]);
    bad.expect_code(2);
    assert_eq!(bad.stderr, "error: --until bb: pipeline `p` has no stage `bb`\n  = hint: did you mean `b`? stages: a, b, c, d\n");
}

#[test]
fn only_needs_a_cached_upstream_and_runs_just_that_stage() {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    let early = ws.luna(&["run", "p", "--only", "b"]);
    early.expect_code(2);
    assert_eq!(
        early.stderr,
        "error: --only b: upstream stage `a` has no cached artifact\n  = hint: run `--until a` first, or drop --only\n"
    );
    assert!(ws.runs().is_empty());
    ws.luna(&["run", "p", "--until", "a"]).expect_code(0);
    ws.luna(&["run", "p", "--only", "b"]).expect_code(0);
    assert_eq!(ws.last_statuses(), st(&[("b", "ran")]));
    let b = ws.luna(&["path", "p", "b"]);
    b.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(format!("{}/b.txt", b.stdout.trim())).unwrap(),
        "a\nb\n"
    );
}

#[test]
fn force_reruns_the_stage_and_its_downstream() {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    ws.luna(&["run", "p"]).expect_code(0);
    let out = ws.luna(&["run", "p", "--force", "b"]);
    out.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("a", "cached"), ("b", "ran"), ("c", "ran"), ("d", "cached")])
    );
    let rec = ws.last_run();
    assert_eq!(
        rec["stages"][1]["reasons"],
        serde_json::json!([{"reason": "forced"}])
    );
    assert!(
        out.stderr
            .contains("RUNNING             b (forced (--force))"),
        "{}",
        out.stderr
    );
}

#[test]
fn dry_run_prints_the_plan_and_runs_nothing() {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    ws.luna(&["run", "p", "--until", "a"]).expect_code(0);
    let n_runs = ws.runs().len();
    let out = ws.luna(&["run", "p", "--dry-run"]);
    out.expect_code(0);
    assert_eq!(
        out.stdout,
        "pipeline p (pipelines/p.yaml)\n  \
         a  up to date\n  \
         b  would run:\n       - no cached artifact (first run)\n  \
         c  would run:\n       - no cached artifact (first run)\n  \
         d  would run:\n       - no cached artifact (first run)\n\
         3 of 4 stages would run\n"
    );
    assert_eq!(out.stderr, "");
    assert_eq!(ws.runs().len(), n_runs, "--dry-run writes no run record");
    assert_eq!(ws.manifests().len(), 1, "--dry-run computes nothing");
}

#[test]
fn independent_stages_run_in_parallel_with_j2() {
    let ws = Ws::new();
    // different commands, so different keys (identical stages would share one artifact).
    // With BARRIER set each stage waits (at most 30 s, then fails) until both have started:
    // proof of the overlap that does not depend on timing. Without it, `sleep 1` is the
    // window in which a wrongly parallel -j 1 would show.
    let d = ws.root().display().to_string();
    let stage = |name: &str| {
        format!(
            "  {name}:\n    uses: command\n    with: {{ run: \"echo {name} > $LUNA_OUT/name; date +%s.%N > $LUNA_OUT/start; touch {d}/{name}.started; \
             if [ -n \\\"$BARRIER\\\" ]; then i=0; until [ -f {d}/x.started ] && [ -f {d}/y.started ]; do i=$((i+1)); [ $i -lt 1500 ] || exit 9; sleep 0.02; done; else sleep 1; fi; \
             date +%s.%N > $LUNA_OUT/end\" }}\n"
        )
    };
    ws.pipeline(
        "p",
        &format!("pipeline: p\nstages:\n{}{}", stage("x"), stage("y")),
    );
    ws.luna_env(&["run", "p", "-j", "2"], &[("BARRIER", "1")])
        .expect_code(0);
    let read = |stage: &str, f: &str| -> f64 {
        let dir = ws.luna(&["path", "p", stage]).stdout.trim().to_string();
        std::fs::read_to_string(format!("{dir}/{f}"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (xs, xe, ys, ye) = (
        read("x", "start"),
        read("x", "end"),
        read("y", "start"),
        read("y", "end"),
    );
    assert!(
        xs < ye && ys < xe,
        "x [{xs}, {xe}] and y [{ys}, {ye}] overlap with -j 2"
    );

    // and -j 1 runs them one after the other
    ws.luna(&["run", "p", "-j", "1", "--force", "x", "--force", "y"])
        .expect_code(0);
    let (xs, xe, ys, ye) = (
        read("x", "start"),
        read("x", "end"),
        read("y", "start"),
        read("y", "end"),
    );
    assert!(
        xe <= ys || ye <= xs,
        "x [{xs}, {xe}] and y [{ys}, {ye}] do not overlap with -j 1"
    );
}

#[test]
fn failed_stage_skips_its_downstream_and_lets_other_branches_finish() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        r#"pipeline: p
stages:
  bad:
    uses: command
    with: { run: "echo partial > $LUNA_OUT/x.txt; echo first line >&2; echo it broke >&2; exit 3" }
  after:
    uses: command
    needs: [bad]
    with: { run: "true" }
  other:
    uses: command
    with: { run: "sleep 0.3; echo ok > $LUNA_OUT/o.txt" }
"#,
    );
    let out = ws.luna(&["run", "p", "-j", "2"]);
    out.expect_code(1);
    assert_eq!(
        ws.last_statuses(),
        st(&[("bad", "failed"), ("after", "skipped"), ("other", "ran")])
    );
    assert_eq!(stages_with(&out.stderr, "SKIPPED"), vec!["after"]);
    let log = ws
        .root()
        .join("runs")
        .join(ws.last_run()["id"].as_str().unwrap())
        .join("logs/bad.log");
    let failed = out
        .stderr
        .lines()
        .position(|l| l.starts_with("      FAILED ["))
        .unwrap_or_else(|| panic!("no FAILED line:\n{}", out.stderr));
    let lines: Vec<&str> = out.stderr.lines().skip(failed).take(6).collect();
    assert!(lines[0].ends_with("] bad"), "{lines:?}");
    assert_eq!(
        &lines[1..6],
        &[
            "      error: command `echo partial > $LUNA_OUT/x.txt; echo first line >&2; echo it broke >&2; exit 3` failed with exit code 3",
            "             stderr (last lines):",
            "               first line",
            "               it broke",
            &format!("       hint: full output in {}", log.display()),
        ]
    );
    assert!(
        out.stderr
            .contains("     SKIPPED             after (upstream 'bad' did not complete)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("p: 1 ran, 0 cached, 1 failed, 1 skipped"),
        "{}",
        out.stderr
    );
    let stages: Vec<String> = ws
        .manifests()
        .iter()
        .map(|m| m["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        stages,
        vec!["other"],
        "nothing is committed for the failed stage"
    );
    assert_eq!(
        ws.ls("cache/tmp"),
        Vec::<String>::new(),
        "the failed stage's tmp dir is removed"
    );
    let rec = ws.last_run();
    assert_eq!(rec["success"], serde_json::json!(false));
    assert!(
        rec["stages"][0]["error"]
            .as_str()
            .unwrap()
            .contains("it broke"),
        "{}",
        rec["stages"][0]
    );
    assert_eq!(
        rec["stages"][1]["error"],
        serde_json::json!("upstream 'bad' did not complete")
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("first line") && logged.contains("it broke"),
        "{logged}"
    );
}

#[test]
fn command_missing_a_declared_output_fails() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        "pipeline: p\nstages:\n  s:\n    uses: command\n    with:\n      run: \"echo hi > $LUNA_OUT/other.txt\"\n      outputs: [model.bin]\n",
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(1);
    assert_eq!(ws.last_statuses(), st(&[("s", "failed")]));
    assert!(
        out.stderr.contains(
            "      error: declared output `model.bin` was not produced under $LUNA_OUT\n       \
             hint: the command must write each declared output under $LUNA_OUT\n"
        ),
        "{}",
        out.stderr
    );
    assert!(ws.manifests().is_empty());
}
