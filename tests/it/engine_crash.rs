//! Crash safety and concurrency across processes: `kill -9` mid-stage leaves nothing
//! half-visible and no orphan, and two `luna run`s on one cache compute each stage once
//! (issue 2, acceptance points 6 and 7).

use std::time::{Duration, Instant};

use crate::engine_support::{statuses, Ws};

/// Waits until `cond` holds or `secs` pass.
pub(crate) fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Whether process `pid` still runs (a zombie counts as gone: it executes nothing).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(s) => {
            let state = s.rsplit_once(") ").and_then(|(_, r)| r.chars().next());
            !matches!(state, Some('Z') | Some('X'))
        }
    }
}

#[test]
fn kill_9_mid_stage_leaves_no_object_and_no_child_and_next_run_completes() {
    let ws = Ws::new();
    let marker = ws.path("started.pid");
    // `exec` keeps the inner shell's pid for the foreground sleep; the second sleep is a
    // background job, which PR_SET_PDEATHSIG on luna's direct child alone would not reach.
    ws.pipeline(
        "p",
        &format!(
            r#"pipeline: p
stages:
  first:
    uses: command
    with: {{ run: "echo 1 > $LUNA_OUT/one.txt" }}
  slow:
    uses: command
    needs: [first]
    with: {{ run: "echo partial > $LUNA_OUT/part.txt; if [ -n \"$SLOW\" ]; then sleep 31 & echo $$ $! > {m}; exec sleep 30; fi; echo done >> $LUNA_OUT/part.txt" }}
"#,
            m = marker.display()
        ),
    );
    let mut luna = ws
        .command(&["run", "p"])
        .env("SLOW", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start luna");
    let started = wait_for(20, || {
        std::fs::read_to_string(&marker).is_ok_and(|s| s.ends_with('\n'))
    });
    if !started {
        let _ = luna.kill();
        let _ = luna.wait();
        panic!("the slow stage did not start within 20 s");
    }
    let pids: Vec<i32> = std::fs::read_to_string(&marker)
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let (child, background) = (pids[0], pids[1]);
    assert!(
        alive(child) && alive(background),
        "the command and its background job run before the kill"
    );
    // SAFETY: sending SIGKILL to the luna process this test started.
    assert_eq!(unsafe { libc::kill(luna.id() as i32, libc::SIGKILL) }, 0);
    let status = luna.wait().expect("reap luna");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );

    assert!(
        wait_for(5, || !alive(child)),
        "the command {child} outlived luna (PDEATHSIG)"
    );
    assert!(
        wait_for(5, || !alive(background)),
        "the command's background job {background} outlived luna"
    );
    let stages: Vec<String> = ws
        .manifests()
        .iter()
        .map(|m| m["stage"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stages, vec!["first"], "no object for the killed stage");
    let tmp = ws.ls("cache/tmp");
    assert_eq!(
        tmp.len(),
        1,
        "the killed stage's partial output stays in tmp/ only: {tmp:?}"
    );
    assert!(ws
        .path("cache/tmp")
        .join(&tmp[0])
        .join("part.txt")
        .is_file());
    // the interrupted run's record says so
    let rec = ws.last_run();
    assert_eq!(rec["ended"], serde_json::Value::Null);
    let shown = ws.luna(&["runs"]);
    assert!(
        shown.stdout.lines().any(|l| l.ends_with("incomplete")),
        "{}",
        shown.stdout
    );

    let out = ws.luna(&["run", "p"]);
    out.expect_code(0);
    assert_eq!(
        statuses(&ws.last_run()),
        crate::engine_support::st(&[("first", "cached"), ("slow", "ran")])
    );
    assert_eq!(
        ws.ls("cache/tmp"),
        Vec::<String>::new(),
        "the next run removes the dead run's tmp dir"
    );
    let dir = ws.luna(&["path", "p", "slow"]).stdout.trim().to_string();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/part.txt")).unwrap(),
        "partial\ndone\n"
    );
}

#[test]
fn two_concurrent_runs_compute_each_stage_once() {
    let ws = Ws::new();
    let counter = ws.path("counter.txt");
    let go = ws.path("go");
    // a stage holds its lock until the test creates `go` (at most 60 s), which it does once
    // one run says it is WAITING: the overlap is observed, not hoped for with a sleep
    let stage = |name: &str, needs: &str| {
        format!(
            "  {name}:\n    uses: command\n    needs: [{needs}]\n    with: {{ run: \"echo {name} >> {c}; i=0; while [ ! -f {g} ] && [ $i -lt 3000 ]; do i=$((i+1)); sleep 0.02; done; echo {name} > $LUNA_OUT/out.txt\" }}\n",
            c = counter.display(),
            g = go.display()
        )
    };
    ws.pipeline(
        "p",
        &format!(
            "pipeline: p\nstages:\n{}{}",
            stage("a", ""),
            stage("b", "a")
        ),
    );
    let spawn = || {
        ws.command(&["run", "p"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start luna")
    };
    let (mut one, mut two) = (spawn(), spawn());
    // each run's stderr, collected by a thread as it comes
    let collect = |child: &mut std::process::Child| {
        let mut pipe = child.stderr.take().expect("piped stderr");
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = buf.clone();
        let reader = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut pipe, &mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]);
            }
        });
        (buf, reader)
    };
    let ((buf1, r1), (buf2, r2)) = (collect(&mut one), collect(&mut two));
    let text = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| {
        String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    };
    crate::harness::wait_until(
        "one run WAITING for the other",
        Duration::from_secs(60),
        || text(&buf1).contains("WAITING") || text(&buf2).contains("WAITING"),
    );
    std::fs::write(&go, "").expect("write go");
    let (mut one, mut two) = (
        one.wait_with_output().unwrap(),
        two.wait_with_output().unwrap(),
    );
    r1.join().expect("stderr reader");
    r2.join().expect("stderr reader");
    one.stderr = text(&buf1).into_bytes();
    two.stderr = text(&buf2).into_bytes();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        one.status.success() && two.status.success(),
        "both succeed:\n{}\n---\n{}",
        err(&one),
        err(&two)
    );
    let mut lines: Vec<String> = std::fs::read_to_string(&counter)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec!["a", "b"],
        "each stage ran exactly once in total"
    );

    let runs = ws.runs();
    assert_eq!(runs.len(), 2);
    for stage in ["a", "b"] {
        let mut seen: Vec<String> = runs
            .iter()
            .flat_map(statuses)
            .filter(|(s, _)| s == stage)
            .map(|(_, st)| st)
            .collect();
        seen.sort();
        assert_eq!(
            seen,
            vec!["cached", "ran"],
            "stage {stage}: one run computed it, the other reused it"
        );
    }
    let both = format!("{}{}", err(&one), err(&two));
    assert!(
        both.contains("WAITING"),
        "the second run waited for the first:\n{both}"
    );
    assert_eq!(ws.manifests().len(), 2);
}
