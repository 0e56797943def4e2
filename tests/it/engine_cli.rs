//! The inspection commands: run records (`runs`), the cache (`cache ls|verify|gc`, shared
//! `--cache-dir`), `dag`, `path`, `stages` and the generated pipeline schema (issue 2,
//! acceptance points 9, 11 and 12).

use serde_json::Value;

use crate::engine_support::{st, Ws};

const P: &str = r#"pipeline: p
stages:
  a:
    uses: command
    with: { run: "echo hello from a; echo a > $LUNA_OUT/a.txt" }
  b:
    uses: test_params
    needs: [a]
    with: { lr: 0.1 }
  c:
    uses: command
    needs: [a, b]
    with: { run: "cat $LUNA_IN_A/a.txt > $LUNA_OUT/c.txt" }
  d:
    uses: command
    with: { run: "echo d > $LUNA_OUT/d.txt" }
"#;

fn with_lr(lr: &str) -> String {
    P.replace("lr: 0.1", &format!("lr: {lr}"))
}

#[test]
fn run_record_has_every_field_and_a_log_per_stage() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    ws.luna(&["run", "p"]).expect_code(0);
    let rec = ws.last_run();
    let id = rec["id"].as_str().unwrap().to_string();
    assert!(id.contains("-p-"), "{id}");
    assert_eq!(rec["pipeline"], "p");
    assert_eq!(rec["pipeline_file"], "pipelines/p.yaml");
    assert_eq!(rec["success"], true);
    for field in ["host", "started", "ended", "luna_version"] {
        assert!(
            rec[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field} in {rec}"
        );
    }
    let started = chrono::DateTime::parse_from_rfc3339(rec["started"].as_str().unwrap()).unwrap();
    let ended = chrono::DateTime::parse_from_rfc3339(rec["ended"].as_str().unwrap()).unwrap();
    assert!(ended >= started);
    let stages = rec["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 4);
    let manifests = ws.manifests();
    for s in stages {
        let key = s["key"].as_str().unwrap();
        assert_eq!(key.len(), 64);
        assert_eq!(s["status"], "ran");
        assert!(s["duration_s"].as_f64().is_some_and(|d| d >= 0.0));
        assert_eq!(s["reasons"], serde_json::json!([{"reason": "first_run"}]));
        let m = manifests
            .iter()
            .find(|m| m["key"] == key)
            .unwrap_or_else(|| panic!("an object for {s}"));
        assert_eq!(m["stage"], s["stage"]);
        assert_eq!(m["kind"], s["kind"]);
    }
    assert_eq!(stages[1]["kind"], "test_params");
    let log = ws.read(&format!("runs/{id}/logs/a.log"));
    assert!(
        log.contains("$ echo hello from a; echo a > $LUNA_OUT/a.txt"),
        "{log}"
    );
    assert!(log.lines().any(|l| l.ends_with(" hello from a")), "{log}");

    ws.luna(&["run", "p"]).expect_code(0);
    let runs = ws.luna(&["runs"]);
    runs.expect_code(0);
    let lines: Vec<&str> = runs.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", runs.stdout);
    assert!(
        lines[0].starts_with("id ") && lines[0].ends_with("status"),
        "{}",
        lines[0]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        (row[0], row[1], row[3], row[4], row[5], row[6], row[7]),
        (id.as_str(), "p", "4", "0", "0", "0", "ok")
    );
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!((row[3], row[4], row[7]), ("0", "4", "ok"));

    let show = ws.luna(&["runs", "show", &id[..id.len() - 1]]);
    show.expect_code(0);
    assert!(
        show.stdout
            .starts_with(&format!("run       {id}\npipeline  p (pipelines/p.yaml)\n")),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("status    ok\n"), "{}", show.stdout);
    let key_a = stages[0]["key"].as_str().unwrap();
    assert!(
        show.stdout.contains(&format!(
            "] a (command, key {})\n                        - no cached artifact (first run)\n",
            &key_a[..12]
        )),
        "{}",
        show.stdout
    );
    let latest = ws.luna(&["runs", "show", "latest"]);
    assert!(latest.stdout.contains("CACHED"), "{}", latest.stdout);
    let none = ws.luna(&["runs", "show", "nope"]);
    none.expect_code(2);
    assert_eq!(
        none.stderr,
        "error: no single run matches `nope`\n  = hint: `luna runs` lists run ids\n"
    );
}

#[test]
fn cache_ls_lists_every_object() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    ws.luna(&["run", "p"]).expect_code(0);
    let ls = ws.luna(&["cache", "ls"]);
    ls.expect_code(0);
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{}", ls.stdout);
    let mut rows: Vec<(String, String, String)> = lines[1..5]
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[1].to_string(),
                f[2].to_string(),
                format!("{} {}", f[3], f[4]),
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        vec![
            ("a".into(), "command".into(), "2 B".into()),
            (
                "b".into(),
                "test_params".into(),
                format!(
                    "{} B",
                    std::fs::metadata(format!(
                        "{}/params.json",
                        ws.luna(&["path", "p", "b"]).stdout.trim()
                    ))
                    .unwrap()
                    .len()
                )
            ),
            ("c".into(), "command".into(), "2 B".into()),
            ("d".into(), "command".into(), "2 B".into()),
        ]
    );
    assert!(lines[5].starts_with("4 objects, "), "{}", lines[5]);
}

#[test]
fn cache_verify_quarantines_a_corrupt_object_and_the_next_run_recomputes_it() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    ws.luna(&["run", "p"]).expect_code(0);
    let ok = ws.luna(&["cache", "verify"]);
    ok.expect_code(0);
    assert_eq!(ok.stdout, "verified 4 objects: 4 ok, 0 corrupt\n");

    let dir = ws.luna(&["path", "p", "a"]).stdout.trim().to_string();
    let key = dir.rsplit('/').next().unwrap().to_string();
    std::fs::write(format!("{dir}/a.txt"), "b\n").unwrap(); // same size, other bytes
    let bad = ws.luna(&["cache", "verify"]);
    bad.expect_code(1);
    let lines: Vec<&str> = bad.stdout.lines().collect();
    // b and c were computed from a: they are quarantined with it (issue 14)
    assert_eq!(lines.len(), 7, "{}", bad.stdout);
    let (old, new) = (
        crate::engine_support::b3(b"a\n"),
        crate::engine_support::b3(b"b\n"),
    );
    assert_eq!(
        lines[0],
        format!(
            "CORRUPT {}: a.txt content changed (blake3 {} → {})",
            &key[..8],
            &old[..8],
            &new[..8]
        )
    );
    assert!(
        lines[1].starts_with(&format!(
            "        moved to {}/{key}.",
            ws.path("cache/quarantine").display()
        )),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("INVALID ")
            && lines[2].ends_with(&format!("built on corrupt {}", &key[..8])),
        "{}",
        lines[2]
    );
    assert!(lines[4].starts_with("INVALID "), "{}", lines[4]);
    assert_eq!(
        lines[6],
        "verified 4 objects: 1 ok, 1 corrupt, 2 built on corrupt ones"
    );
    assert_eq!(ws.ls("cache/quarantine").len(), 3);
    assert!(!std::path::Path::new(&dir).exists());

    let path = ws.luna(&["path", "p", "a"]);
    path.expect_code(1);
    assert_eq!(
        path.stderr,
        format!("error: stage `a` has no current artifact: no cached artifact (key {} not in cache)\n  = hint: run `luna run p --until a` first\n", &key[..8])
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("a", "ran"), ("b", "ran"), ("c", "ran"), ("d", "cached")])
    );
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/a.txt")).unwrap(),
        "a\n"
    );
    ws.luna(&["cache", "verify"]).expect_code(0);
}

/// `cache::bytes` as the CLI prints it.
fn bytes(n: u64) -> String {
    if n < 1024 {
        format!("{n} B")
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let m = e.metadata().unwrap();
        total += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    total
}

#[test]
fn cache_gc_keeps_what_the_last_run_used_and_deletes_the_rest() {
    let ws = Ws::new();
    for lr in ["0.1", "0.2", "0.3"] {
        ws.pipeline("p", &with_lr(lr));
        ws.luna(&["run", "p"]).expect_code(0);
    }
    // b and c exist in three versions, a and d in one
    assert_eq!(ws.manifests().len(), 8);
    let last: Vec<String> = ws.last_run()["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["key"].as_str().unwrap().to_string())
        .collect();
    let old: Vec<Value> = ws
        .manifests()
        .into_iter()
        .filter(|m| !last.contains(&m["key"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(old.len(), 4);
    let freed: u64 = old
        .iter()
        .map(|m| {
            let k = m["key"].as_str().unwrap();
            dir_size(&ws.path(&format!("cache/objects/{}/{k}", &k[..2])))
        })
        .sum();

    let dry = ws.luna(&["cache", "gc", "--keep-runs", "1", "--dry-run"]);
    dry.expect_code(0);
    assert_eq!(
        dry.stdout
            .lines()
            .filter(|l| l.starts_with("would delete "))
            .count(),
        4,
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.ends_with(&format!(
            "would free 4 objects, {} (kept 4 referenced by the last 1 runs of 1 pipelines)\n",
            bytes(freed)
        )),
        "{}",
        dry.stdout
    );
    assert_eq!(ws.manifests().len(), 8, "--dry-run deletes nothing");

    let gc = ws.luna(&["cache", "gc", "--keep-runs", "1"]);
    gc.expect_code(0);
    assert_eq!(
        gc.stdout
            .lines()
            .filter(|l| l.starts_with("deleted "))
            .count(),
        4,
        "{}",
        gc.stdout
    );
    assert!(
        gc.stdout.ends_with(&format!(
            "freed 4 objects, {} (kept 4 referenced by the last 1 runs of 1 pipelines)\n",
            bytes(freed)
        )),
        "{}",
        gc.stdout
    );
    let mut left: Vec<String> = ws
        .manifests()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    left.sort();
    let mut want = last.clone();
    want.sort();
    assert_eq!(left, want);
    ws.luna(&["status", "p", "--quiet"]).expect_code(0);
    // the older parameters now need a recompute
    ws.pipeline("p", &with_lr("0.2"));
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(
        ws.last_statuses(),
        st(&[("a", "cached"), ("b", "ran"), ("c", "ran"), ("d", "cached")])
    );
}

#[test]
fn cache_dir_flag_and_env_share_objects_between_workspaces() {
    let shared = tempfile::tempdir().unwrap();
    let shared_s = shared.path().to_str().unwrap();
    let one = Ws::new();
    one.pipeline("p", P);
    one.luna(&["--cache-dir", shared_s, "run", "p"])
        .expect_code(0);
    assert_eq!(Ws::manifests_in(shared.path()).len(), 4);
    assert!(
        one.manifests().is_empty(),
        "nothing in the workspace's own cache"
    );
    // another checkout with the same pipeline reuses every artifact
    let two = Ws::new();
    two.pipeline("p", P);
    two.luna_env(&["run", "p"], &[("LUNA_CACHE_DIR", shared_s)])
        .expect_code(0);
    assert_eq!(
        two.last_statuses(),
        st(&[
            ("a", "cached"),
            ("b", "cached"),
            ("c", "cached"),
            ("d", "cached")
        ])
    );
    let path = two.luna_env(&["path", "p", "c"], &[("LUNA_CACHE_DIR", shared_s)]);
    assert!(path.stdout.starts_with(shared_s), "{}", path.stdout);
    let ls = two.luna(&["--cache-dir", shared_s, "cache", "ls"]);
    assert!(
        ls.stdout.ends_with(&format!("in {shared_s}\n")),
        "{}",
        ls.stdout
    );
    // without it, the workspace cache is used (and empty)
    two.luna(&["status", "p", "--quiet"]).expect_code(1);
}

#[test]
fn dag_prints_text_dot_and_mermaid() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    let text = ws.luna(&["dag", "p"]);
    text.expect_code(0);
    assert_eq!(
        text.stdout,
        "p\n├── a (command)\n│   ├── b (test_params)\n│   │   └── c (command) ← a, b\n│   └── c (see above)\n└── d (command)\n"
    );
    let dot = ws.luna(&["dag", "p", "--format", "dot"]);
    assert_eq!(
        dot.stdout,
        "digraph \"p\" {\n  rankdir=LR;\n  \"a\" [label=\"a\\n(command)\"];\n  \"b\" [label=\"b\\n(test_params)\"];\n  \"a\" -> \"b\";\n  \
         \"c\" [label=\"c\\n(command)\"];\n  \"a\" -> \"c\";\n  \"b\" -> \"c\";\n  \"d\" [label=\"d\\n(command)\"];\n}\n"
    );
    let mermaid = ws.luna(&["dag", "p", "--format", "mermaid"]);
    assert_eq!(
        mermaid.stdout,
        "graph TD\n  a[\"a<br/>(command)\"]\n  b[\"b<br/>(test_params)\"]\n  a --> b\n  c[\"c<br/>(command)\"]\n  a --> c\n  b --> c\n  d[\"d<br/>(command)\"]\n"
    );
}

#[test]
fn path_prints_the_artifact_dir_or_why_it_is_stale() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    ws.luna(&["run", "p"]).expect_code(0);
    let out = ws.luna(&["path", "p", "c"]);
    out.expect_code(0);
    let dir = out.stdout.trim();
    assert!(
        dir.starts_with(ws.path("cache/objects").to_str().unwrap()),
        "{dir}"
    );
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/c.txt")).unwrap(),
        "a\n"
    );
    ws.pipeline("p", &with_lr("0.5"));
    let stale = ws.luna(&["path", "p", "c"]);
    stale.expect_code(1);
    assert_eq!(stale.stdout, "");
    assert_eq!(stale.stderr, "error: stage `c` has no current artifact: upstream 'b' will run\n  = hint: run `luna run p --until c` first\n");
    let unknown = ws.luna(&["path", "p", "cc"]);
    unknown.expect_code(2);
    assert_eq!(
        unknown.stderr,
        "error: pipeline `p` has no stage `cc`\n  = hint: did you mean `c`? stages: a, b, c, d\n"
    );
}

#[test]
fn stages_lists_kinds_and_shows_one_kinds_parameters() {
    let ws = Ws::new();
    let all = ws.luna(&["stages"]);
    all.expect_code(0);
    assert!(
        all.stdout.lines().any(|l| l.starts_with("command ")
            && l.contains(" v1  Run a shell command; $LUNA_OUT is its output dir")),
        "{}",
        all.stdout
    );
    assert!(
        all.stdout.lines().any(|l| l.starts_with("test_params ")),
        "{}",
        all.stdout
    );
    assert!(
        all.stdout
            .ends_with("\n`luna stages KIND` shows a kind's parameters.\n"),
        "{}",
        all.stdout
    );
    let one = ws.luna(&["stages", "command"]);
    one.expect_code(0);
    assert!(
        one.stdout
            .starts_with("command (version 1): Run a shell command;"),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout
            .contains("parameters (under `with:`):\n  run       string, required\n"),
        "{}",
        one.stdout
    );
    assert!(
        one.stdout
            .lines()
            .any(|l| l.starts_with("  inputs    ") && l.ends_with(", default []")),
        "{}",
        one.stdout
    );
    let tp = ws.luna(&["stages", "test_params"]);
    assert!(
        tp.stdout.contains("\n  lr      number, default 0.001\n"),
        "{}",
        tp.stdout
    );
    let bad = ws.luna(&["stages", "comand"]);
    bad.expect_code(2);
    let (head, kinds) = bad
        .stderr
        .split_once("known kinds: ")
        .expect("the hint lists the kinds");
    assert_eq!(
        head,
        "error: unknown stage kind `comand`\n  = hint: did you mean `command`? "
    );
    let kinds: Vec<&str> = kinds.trim_end().split(", ").collect();
    assert!(
        kinds.contains(&"command") && kinds.contains(&"test_params"),
        "{kinds:?}"
    );
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted, "kinds are listed sorted");
}

/// `schemas/pipeline.schema.json` is what `luna schema` prints. With `LUNA_UPDATE_SCHEMA=1` the
/// test rewrites the file instead of failing.
#[test]
fn pipeline_schema_file_is_current() {
    let file = &format!("{}/schemas/pipeline.schema.json", crate::REPO);
    let ws = Ws::new();
    // test-only kinds must not leak into the committed schema
    let out = ws.luna_env(&["schema"], &[("LUNA_TEST_KINDS", "0")]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(&out.stdout).expect("luna schema prints JSON");
    assert!(
        out.stdout.contains("\"command\""),
        "the schema describes the command kind"
    );
    assert!(
        !out.stdout.contains("test_params"),
        "test kinds stay out of the schema"
    );
    assert!(v.is_object());
    if std::env::var_os("LUNA_UPDATE_SCHEMA").is_some_and(|x| x == "1") {
        std::fs::write(file, &out.stdout).expect("write schemas/pipeline.schema.json");
        return;
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == out.stdout,
        "schemas/pipeline.schema.json is stale (it must equal `luna schema`): regenerate it with \
         `luna schema --write schemas/pipeline.schema.json`, or run this test with LUNA_UPDATE_SCHEMA=1"
    );
}

/// `schemas/luna-config.schema.json` is what `luna schema --config` prints (rewritten with
/// `LUNA_UPDATE_SCHEMA=1`).
#[test]
fn config_schema_file_is_current() {
    let file = &format!("{}/schemas/luna-config.schema.json", crate::REPO);
    let out = Ws::new().luna(&["schema", "--config"]);
    out.expect_code(0);
    let v: Value = serde_json::from_str(&out.stdout).expect("luna schema --config prints JSON");
    assert!(v["properties"]["remotes"].is_object(), "{}", out.stdout);
    if std::env::var_os("LUNA_UPDATE_SCHEMA").is_some_and(|x| x == "1") {
        std::fs::write(file, &out.stdout).expect("write schemas/luna-config.schema.json");
        return;
    }
    let committed = std::fs::read_to_string(file).unwrap_or_default();
    assert!(
        committed == out.stdout,
        "schemas/luna-config.schema.json is stale (it must equal `luna schema --config`): \
         regenerate it with `luna schema --config --write schemas/luna-config.schema.json`, or \
         run this test with LUNA_UPDATE_SCHEMA=1"
    );
}

/// A typo in luna.toml is an error naming file, line and column, exit 2, for any command that
/// opens the workspace.
#[test]
fn config_unknown_key_is_a_positioned_error() {
    let ws = Ws::new();
    ws.pipeline("p", P);
    ws.file("luna.toml", "[cache]\npull = true\nplul = 1\n");
    let out = ws.luna(&["status", "p"]);
    out.expect_code(2);
    assert!(
        out.stderr.contains("luna.toml:3:1: unknown field `plul`"),
        "{}",
        out.stderr
    );
}
