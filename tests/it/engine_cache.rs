//! Cache-key behaviour through the CLI: what re-runs after which change, and how `status`
//! explains it (issue 2, acceptance points 1–5).

use serde_json::Value;

use crate::engine_support::{b3, st, stages_with, Ws};

/// a → b → c, plus an unrelated branch d; b and c are `test_params` with `lr`.
fn chain(lr: &str, device: &str) -> String {
    format!(
        r#"pipeline: p
stages:
  a:
    uses: command
    with: {{ run: "echo a > $LUNA_OUT/a.txt" }}
  b:
    uses: test_params
    needs: [a]
    with: {{ lr: {lr}, epochs: 2, device: {device} }}
  c:
    uses: test_params
    needs: [b]
    with: {{ nested: {{ flag: true }} }}
  d:
    uses: command
    with: {{ run: "echo d > $LUNA_OUT/d.txt" }}
"#
    )
}

#[test]
fn second_run_is_all_cached() {
    let ws = Ws::new();
    ws.pipeline("p", &chain("0.001", "cpu"));
    let first = ws.luna(&["run", "p", "-j", "1"]);
    first.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("a", "ran"), ("b", "ran"), ("c", "ran"), ("d", "ran")])
    );
    let second = ws.luna(&["run", "p"]);
    second.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[
            ("a", "cached"),
            ("b", "cached"),
            ("c", "cached"),
            ("d", "cached")
        ])
    );
    let mut cached = stages_with(&second.stderr, "CACHED");
    cached.sort();
    assert_eq!(
        cached,
        vec!["a", "b", "c", "d"],
        "stderr:\n{}",
        second.stderr
    );
    assert!(
        stages_with(&second.stderr, "RUNNING").is_empty(),
        "stderr:\n{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("Finished"),
        "stderr:\n{}",
        second.stderr
    );
    assert!(
        second
            .stderr
            .contains("p: 0 ran, 4 cached, 0 failed, 0 skipped"),
        "stderr:\n{}",
        second.stderr
    );
    let status = ws.luna(&["status", "p"]);
    status.expect_code(0);
    assert!(
        status.stdout.ends_with("everything is up to date\n"),
        "{}",
        status.stdout
    );
    ws.luna(&["status", "p", "--quiet"]).expect_code(0);
}

#[test]
fn param_change_reruns_only_that_stage_and_downstream() {
    let ws = Ws::new();
    ws.pipeline("p", &chain("0.001", "cpu"));
    ws.luna(&["run", "p"]).expect_code(0);
    ws.pipeline("p", &chain("0.003", "cpu"));

    let status = ws.luna(&["status", "p"]);
    status.expect_code(0);
    let expected = "pipeline p (pipelines/p.yaml)\n  \
                    a  up to date\n  \
                    b  will run:\n       \
                    - param lr changed 0.001 → 0.003\n  \
                    c  may run (if its upstream's output changes):\n       \
                    - upstream 'b' will run\n  \
                    d  up to date\n\
                    1 of 4 stages would run, 1 more may run\n";
    assert_eq!(status.stdout, expected);
    ws.luna(&["status", "p", "--quiet"]).expect_code(1);

    let json = ws.luna(&["status", "p", "--json"]);
    json.expect_code(0);
    let v: Value = serde_json::from_str(&json.stdout).expect("status --json is JSON");
    let rows = v.as_array().expect("an array of stages");
    let summary: Vec<(String, String, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["stage"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
                r["reasons"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".into(), "fresh".into(), serde_json::json!([])),
            (
                "b".into(),
                "stale".into(),
                serde_json::json!([{"reason": "param_changed", "path": "lr", "old": 0.001, "new": 0.003}])
            ),
            (
                "c".into(),
                "maybe_stale".into(),
                serde_json::json!([{"reason": "upstream_will_run", "stage": "b"}])
            ),
            ("d".into(), "fresh".into(), serde_json::json!([])),
        ]
    );
    for r in rows {
        assert_eq!(
            r["key"].as_str().map(str::len),
            Some(64),
            "every row has its key: {r}"
        );
    }

    let run = ws.luna(&["run", "p"]);
    run.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("a", "cached"), ("b", "ran"), ("c", "ran"), ("d", "cached")])
    );
    let rec = ws.last_run();
    assert_eq!(
        rec["stages"][1]["reasons"],
        serde_json::json!([{"reason": "param_changed", "path": "lr", "old": 0.001, "new": 0.003}])
    );
    assert!(
        run.stderr
            .contains("RUNNING             b (param lr changed 0.001 → 0.003)"),
        "stderr:\n{}",
        run.stderr
    );
}

#[test]
fn device_hint_does_not_invalidate_cache() {
    let ws = Ws::new();
    ws.pipeline("p", &chain("0.001", "cpu"));
    ws.luna(&["run", "p"]).expect_code(0);
    ws.pipeline("p", &chain("0.001", "cuda"));
    let status = ws.luna(&["status", "p"]);
    assert!(
        status.stdout.ends_with("everything is up to date\n"),
        "{}",
        status.stdout
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(
        ws.last_statuses().iter().all(|(_, s)| s == "cached"),
        "{:?}",
        ws.last_statuses()
    );
}

#[test]
fn set_overrides_a_var_and_unknown_set_is_an_error() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        "pipeline: p\nvars: { lr: 0.001, word: hello }\nstages:\n  t:\n    uses: test_params\n    with: { lr: \"${lr}\" }\n  \
         e:\n    uses: command\n    with: { run: \"echo ${word} > $LUNA_OUT/w.txt\" }\n",
    );
    ws.luna(&["run", "p", "--set", "lr=0.5", "--set", "word=bye"])
        .expect_code(0);
    let t = ws.luna(&["path", "p", "t", "--set", "lr=0.5"]);
    t.expect_code(0);
    let params: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/params.json", t.stdout.trim())).unwrap(),
    )
    .unwrap();
    assert_eq!(
        params["lr"],
        serde_json::json!(0.5),
        "`${{lr}}` keeps the number type"
    );
    let e = ws.luna(&["path", "p", "e", "--set", "word=bye"]);
    e.expect_code(0);
    assert_eq!(
        std::fs::read_to_string(format!("{}/w.txt", e.stdout.trim())).unwrap(),
        "bye\n"
    );
    // without the override the declared value is used, so the stage is stale
    let status = ws.luna(&["status", "p"]);
    assert!(
        status.stdout.contains("- param lr changed 0.5 → 0.001"),
        "{}",
        status.stdout
    );

    let bad = ws.luna(&["run", "p", "--set", "lrr=1"]);
    bad.expect_code(2);
    assert_eq!(
        bad.stderr,
        "error: --set lrr: the pipeline declares no variable `lrr`\n  --> pipelines/p.yaml\n  = hint: did you mean `lr`? declared in `vars:`: lr, word\n"
    );
    let malformed = ws.luna(&["run", "p", "--set", "lr"]);
    malformed.expect_code(2);
    assert_eq!(
        malformed.stderr,
        "error: --set lr: expected name=value\n  = hint: e.g. --set luna_root=/data/luna\n"
    );
}

fn inputs_pipeline() -> &'static str {
    r#"pipeline: p
stages:
  file:
    uses: command
    with:
      run: "wc -c < data/a.csv > $LUNA_OUT/n.txt"
      inputs: [data/a.csv]
  dir:
    uses: command
    with:
      run: "ls data/dir > $LUNA_OUT/ls.txt"
      inputs: [data/dir]
  after:
    uses: command
    needs: [file]
    with: { run: "cat $LUNA_IN_FILE/n.txt > $LUNA_OUT/n.txt" }
"#
}

fn inputs_ws() -> Ws {
    let ws = Ws::new();
    ws.pipeline("p", inputs_pipeline())
        .file("data/a.csv", "x,y\n1,2\n")
        .file("data/dir/one.txt", "1")
        .file("data/dir/sub/two.txt", "22");
    for f in ["data/a.csv", "data/dir/one.txt", "data/dir/sub/two.txt"] {
        ws.age(f, 30);
    }
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(ws.last_statuses().iter().all(|(_, s)| s == "ran"));
    ws
}

#[test]
fn touch_without_byte_change_reruns_nothing() {
    let ws = inputs_ws();
    // a stat-cache hit first, then a touched file (new mtime and ctime, same bytes)
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(
        ws.last_statuses().iter().all(|(_, s)| s == "cached"),
        "{:?}",
        ws.last_statuses()
    );
    for f in ["data/a.csv", "data/dir/one.txt"] {
        ws.age(f, 0);
    }
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(
        ws.last_statuses().iter().all(|(_, s)| s == "cached"),
        "{:?}",
        ws.last_statuses()
    );
    ws.luna(&["run", "p", "--no-stat-cache"]).expect_code(0);
    assert!(
        ws.last_statuses().iter().all(|(_, s)| s == "cached"),
        "{:?}",
        ws.last_statuses()
    );
}

#[test]
fn input_byte_change_reruns_its_consumers_only() {
    let ws = inputs_ws();
    // same size and mtime as before: only the content differs (stat cache must not hide it
    // because the ctime changes)
    ws.file("data/a.csv", "x,y\n3,4\n").age("data/a.csv", 30);
    let status = ws.luna(&["status", "p"]);
    let (old, new) = (b3(b"x,y\n1,2\n"), b3(b"x,y\n3,4\n"));
    let line = format!(
        "- input data/a.csv changed (blake3 {}… → {}…)",
        &old[..4],
        &new[..4]
    );
    assert!(
        status.stdout.contains(&line),
        "want {line:?} in\n{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("- upstream 'file' will run"),
        "{}",
        status.stdout
    );
    let json: Value = serde_json::from_str(&ws.luna(&["status", "p", "--json"]).stdout).unwrap();
    assert_eq!(
        json[0]["reasons"],
        serde_json::json!([{"reason": "input_changed", "name": "data/a.csv", "path": "data/a.csv", "old": old, "new": new}])
    );
    // `file` writes the byte count, which is the same: `after` stops the cascade (early cutoff)
    let run = ws.luna(&["run", "p"]);
    run.expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("file", "ran"), ("dir", "cached"), ("after", "cached")])
    );
    let rec = ws.last_run();
    let after = rec["stages"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stage"] == "after"))
        .expect("a record of `after`");
    assert_eq!(
        after["reasons"],
        serde_json::json!([{"reason": "upstream_unchanged", "stage": "file"}])
    );
    assert!(
        run.stderr
            .contains("upstream re-ran, output unchanged ('file')"),
        "stderr:\n{}",
        run.stderr
    );
    let status = ws.luna(&["status", "p"]);
    assert!(
        status.stdout.ends_with("everything is up to date\n"),
        "{}",
        status.stdout
    );
}

#[test]
fn adding_a_file_to_an_input_directory_reruns() {
    let ws = inputs_ws();
    ws.file("data/dir/sub/three.txt", "333");
    let status = ws.luna(&["status", "p"]);
    assert!(
        status
            .stdout
            .contains("  dir    will run:\n           - input data/dir changed (blake3 "),
        "{}",
        status.stdout
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("file", "cached"), ("dir", "ran"), ("after", "cached")])
    );
    // removing it again brings back the first artifact
    std::fs::remove_file(ws.path("data/dir/sub/three.txt")).unwrap();
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("file", "cached"), ("dir", "cached"), ("after", "cached")])
    );
}

#[test]
fn missing_input_is_an_error_naming_stage_and_path() {
    let ws = Ws::new();
    ws.pipeline("p", inputs_pipeline())
        .file("data/dir/one.txt", "1");
    let out = ws.luna(&["run", "p"]);
    out.expect_code(2);
    let full = ws.root().join("data/a.csv");
    assert_eq!(
        out.stderr,
        format!(
            "error: stage `file`: input `data/a.csv` not found: {}\n  = hint: check the path in the pipeline (relative paths start at the workspace root) or override it with --set\n",
            full.display()
        )
    );
    assert!(ws.runs().is_empty(), "nothing ran, so no run record");
}
