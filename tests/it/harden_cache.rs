//! Issue 14, the cache half: nothing a run needs is lost (gc, `--force`, damaged objects) and
//! committed objects hold exactly what their stage computed (no symlinks, read-only, no extra
//! files), and `cache ls | verify | gc` report every problem and go on. Each test names the
//! fault it guards against.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::engine_crash::wait_for;
use crate::engine_support::{one_command, st, Ws};

/// Makes `dir` writable again (objects are read-only; tests damage them on purpose).
fn writable(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Makes `obj/one.txt` say `onE` instead of `one`: other bytes, same size.
fn flip_a_byte(obj: &Path) {
    writable(obj);
    let f = obj.join("one.txt");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&f, "onE\n").expect("flip a byte, same size");
}

/// A workspace with [`CHAIN`] run once.
fn chain_ran() -> Ws {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    ws.luna(&["run", "p"]).expect_code(0);
    ws
}

/// Starts `luna args` on [`CHAIN`] with `$WAIT` set; returns once stage b is waiting for `go`.
fn start_waiting_b(ws: &Ws, args: &[&str]) -> std::process::Child {
    let mut run = ws
        .command(args)
        .env("WAIT", "1")
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start luna");
    if !wait_for(20, || ws.path("b.started").exists()) {
        let _ = run.kill();
        let _ = run.wait();
        panic!("stage b did not start within 20 s");
    }
    run
}

/// a → b; b waits for the file `go` when `$WAIT` is set.
const CHAIN: &str = r#"pipeline: p
stages:
  a:
    uses: command
    with: { run: "echo one > $LUNA_OUT/one.txt" }
  b:
    uses: command
    needs: [a]
    with: { run: "if [ -n \"$WAIT\" ]; then touch b.started; while [ ! -f go ]; do sleep 0.02; done; fi; cat $LUNA_IN_A/one.txt > $LUNA_OUT/two.txt" }
"#;

#[test]
fn gc_never_deletes_an_upstream_of_a_running_stage() {
    let ws = Ws::new();
    ws.pipeline("p", CHAIN);
    let mut run = start_waiting_b(&ws, &["run", "p"]);
    let gc = ws.luna(&["cache", "gc", "--keep-runs", "0"]);
    std::fs::write(ws.path("go"), "").expect("write go");
    let status = run.wait().expect("wait for luna");
    assert_ne!(
        gc.code, 0,
        "gc must refuse while a run uses the cache: {gc:?}"
    );
    assert!(gc.stderr.contains("is using the cache"), "{}", gc.stderr);
    assert!(
        status.success(),
        "the run completes: its upstream is still there"
    );
    assert_eq!(ws.last_statuses(), st(&[("a", "ran"), ("b", "ran")]));
    assert_eq!(ws.manifests().len(), 2);
}

#[test]
fn gc_never_counts_an_unfinished_run_among_the_last_n() {
    let ws = chain_ran();
    // a second run of the same pipeline is killed mid-stage: its record has no stages
    let mut run = start_waiting_b(&ws, &["run", "p", "--force", "b"]);
    let _ = run.kill();
    let _ = run.wait();
    assert_eq!(ws.runs().len(), 2);
    ws.luna(&["cache", "gc", "--keep-runs", "1"]).expect_code(0);
    assert_eq!(
        ws.manifests().len(),
        2,
        "the last finished run keeps both objects"
    );
    let status = ws.luna(&["status", "p"]);
    assert!(!status.stdout.contains("will run"), "{}", status.stdout);
}

#[test]
fn gc_never_removes_a_lock_file() {
    let ws = chain_ran();
    let locks = ws.ls("cache/locks");
    assert!(
        locks.iter().filter(|l| l.len() > 60).count() >= 2,
        "{locks:?}"
    );
    ws.luna(&["cache", "gc", "--keep-runs", "0"]).expect_code(0);
    assert!(ws.manifests().is_empty(), "gc deleted both objects");
    assert_eq!(ws.ls("cache/locks"), locks, "lock files stay");
}

#[test]
fn force_never_leaves_the_key_without_an_object_even_when_killed_mid_commit() {
    let ws = Ws::new();
    // the forced run writes a large (sparse) file, so hashing it at commit takes a while
    ws.pipeline(
        "p",
        &one_command(
            "echo one > $LUNA_OUT/one.txt; if [ -f big ]; then truncate -s 256M $LUNA_OUT/big; fi",
        ),
    );
    ws.luna(&["run", "p"]).expect_code(0);
    let obj = ws.object_of("a");
    let manifest = obj.join("manifest.json");
    ws.file("big", "");
    let mut run = ws
        .command(&["run", "p", "--force", "a"])
        .stderr(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start luna");
    let end = Instant::now() + Duration::from_secs(60);
    let mut vanished = false;
    while Instant::now() < end {
        if !manifest.exists() {
            vanished = true;
            // a crash right now: the old object must not be lost
            let _ = run.kill();
            break;
        }
        if run.try_wait().expect("poll luna").is_some() {
            break;
        }
    }
    let _ = run.kill();
    let _ = run.wait();
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(
        !vanished,
        "objects/<key> had no manifest while --force was committing"
    );
    assert_eq!(ws.last_statuses(), st(&[("a", "cached")]));
}

#[test]
fn an_object_with_a_deleted_file_is_missing_not_up_to_date() {
    let ws = chain_ran();
    let obj = ws.object_of("a");
    writable(&obj);
    std::fs::remove_file(obj.join("one.txt")).expect("delete a data file");
    let status = ws.luna(&["status", "p"]);
    assert!(
        status.stdout.contains("will run"),
        "a damaged object is not up to date:\n{}",
        status.stdout
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(ws.last_statuses(), st(&[("a", "ran"), ("b", "cached")]));
    assert_eq!(
        std::fs::read_to_string(obj.join("one.txt")).expect("recomputed"),
        "one\n"
    );
}

#[test]
fn a_stage_never_consumes_a_damaged_upstream() {
    let ws = chain_ran();
    let obj = ws.object_of("a");
    flip_a_byte(&obj);
    // b's command changes, so b runs again on top of the damaged upstream
    ws.pipeline(
        "p",
        &CHAIN.replace("> $LUNA_OUT/two.txt", "> $LUNA_OUT/2.txt"),
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("upstream stage `a`") && out.stderr.contains("content changed"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("luna cache verify"), "{}", out.stderr);
    assert_eq!(ws.manifests().len(), 2, "nothing was computed from it");
}

#[test]
fn a_symlink_output_is_rejected_not_committed_unhashed() {
    let ws = Ws::new();
    ws.file("outside.txt", "host file\n");
    ws.pipeline(
        "p",
        &one_command(&format!(
            "ln -s {} $LUNA_OUT/link.txt",
            ws.path("outside.txt").display()
        )),
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("`link.txt` is a symbolic link")
            && out.stderr.contains("only regular files"),
        "{}",
        out.stderr
    );
    assert!(ws.manifests().is_empty());
}

#[test]
fn committed_objects_are_read_only() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        &one_command("mkdir $LUNA_OUT/sub; echo x > $LUNA_OUT/sub/x.txt"),
    );
    ws.luna(&["run", "p"]).expect_code(0);
    let obj = ws.object_of("a");
    for p in [
        obj.clone(),
        obj.join("sub"),
        obj.join("sub/x.txt"),
        obj.join("manifest.json"),
    ] {
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o222, 0, "{} is writable ({mode:o})", p.display());
    }
    // gc can still delete them
    ws.luna(&["cache", "gc", "--keep-runs", "0"]).expect_code(0);
    assert!(!obj.exists());
}

#[test]
fn verify_treats_an_extra_file_as_corruption() {
    let ws = chain_ran();
    let obj = ws.object_of("a");
    writable(&obj);
    std::fs::write(obj.join("added.txt"), "x").expect("add a file");
    let out = ws.luna(&["cache", "verify"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("added.txt is not in the manifest"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_closed_output_pipe_does_not_kill_a_run() {
    let ws = Ws::new();
    // b still runs (and luna still writes) after the reader is gone: the readers are dropped
    // right after the spawn, and b's `sleep 0.2` (scenario, not synchronisation) keeps luna
    // writing after that
    ws.pipeline(
        "p",
        &CHAIN.replace("cat $LUNA_IN_A", "sleep 0.2; cat $LUNA_IN_A"),
    );
    let mut run = ws
        .command(&["run", "p", "-v"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start luna");
    // the reader goes away at once, like `luna run p 2>&1 | head -1`
    drop(run.stdout.take());
    drop(run.stderr.take());
    let status = run.wait().expect("wait for luna");
    assert!(status.success(), "{status:?}");
    assert_eq!(ws.last_statuses(), st(&[("a", "ran"), ("b", "ran")]));
    assert_eq!(ws.last_run()["success"], true);
}

#[test]
fn a_tmp_folder_its_writer_still_holds_is_never_cleaned_up() {
    use std::os::unix::io::AsRawFd;
    let ws = chain_ran();
    // a writer in another container: same short host name, a pid that does not exist here
    let host = ws.last_run()["host"].as_str().expect("host").to_string();
    let name = |n: u32| format!("{}.{host}.999999999.{n}", "c".repeat(64));
    let live = ws.path(&format!("cache/tmp/{}", name(1)));
    let dead = ws.path(&format!("cache/tmp/{}", name(2)));
    for d in [&live, &dead] {
        std::fs::create_dir_all(d).expect("mkdir");
        std::fs::write(d.join("part.bin"), "x").expect("write");
    }
    let held = std::fs::File::open(&live).expect("open the tmp dir");
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(
        live.join("part.bin").exists(),
        "a held tmp folder was deleted"
    );
    assert!(!dead.exists(), "an abandoned tmp folder stays");
    drop(held);
}

#[test]
fn verify_quarantines_every_object_built_on_a_corrupt_one() {
    let ws = chain_ran();
    let obj = ws.object_of("a");
    flip_a_byte(&obj);
    let out = ws.luna(&["cache", "verify"]);
    out.expect_code(1);
    assert!(
        out.stdout.contains("INVALID") && out.stdout.contains("1 built on corrupt ones"),
        "{}",
        out.stdout
    );
    assert!(
        ws.manifests().is_empty(),
        "b was computed from the corrupt a"
    );
    ws.luna(&["run", "p"]).expect_code(0);
    assert_eq!(ws.last_statuses(), st(&[("a", "ran"), ("b", "ran")]));
}

#[test]
fn cache_commands_report_non_ascii_and_stray_entries_and_go_on() {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("echo 1 > $LUNA_OUT/x"));
    ws.luna(&["run", "p"]).expect_code(0);
    let shard = ws.ls("cache/objects").pop().expect("a shard");
    ws.file(&format!("cache/objects/{shard}/aéééé-stray"), "x");
    ws.file("cache/objects/zz/notes.txt", "x");
    let ls = ws.luna(&["cache", "ls"]);
    ls.expect_code(0);
    assert!(ls.stdout.contains("1 objects"), "{}", ls.stdout);
    assert_eq!(
        ls.stdout.matches("(not a cache object").count(),
        2,
        "{}",
        ls.stdout
    );
    let verify = ws.luna(&["cache", "verify"]);
    verify.expect_code(0);
    assert!(
        verify.stdout.contains("1 ok, 0 corrupt, 2 stray entries"),
        "{}",
        verify.stdout
    );
    ws.luna(&["cache", "gc", "--keep-runs", "0"]).expect_code(0);
    assert!(ws.manifests().is_empty());
    assert!(
        ws.path("cache/objects/zz/notes.txt").exists(),
        "strays are left alone"
    );
}

#[test]
fn resume_folders_are_listed_and_gc_removes_abandoned_ones() {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("echo 1 > $LUNA_OUT/x"));
    ws.luna(&["run", "p"]).expect_code(0);
    let orphan = "ab".repeat(32);
    ws.file(
        &format!("cache/resume/{orphan}/checkpoint.bin"),
        vec![0u8; 100],
    );
    let ls = ws.luna(&["cache", "ls"]);
    assert!(
        ls.stdout.contains("abababab") && ls.stdout.contains("resume/"),
        "{}",
        ls.stdout
    );
    let gc = ws.luna(&["cache", "gc", "--keep-runs", "1"]);
    gc.expect_code(0);
    assert!(
        gc.stdout.contains("deleted resume/abababab"),
        "{}",
        gc.stdout
    );
    assert!(ws.ls("cache/resume").is_empty());
    assert_eq!(ws.manifests().len(), 1, "the kept run's object stays");
}

#[test]
fn run_verify_rehashes_a_large_upstream_before_a_stage_reads_it() {
    let ws = Ws::new();
    // a's object is larger than the cheap-hash limit: only its sizes are checked by default
    let chain = CHAIN.replace(
        "echo one > $LUNA_OUT/one.txt",
        "echo one > $LUNA_OUT/one.txt; truncate -s 65M $LUNA_OUT/big",
    );
    ws.pipeline("p", &chain);
    ws.luna(&["run", "p"]).expect_code(0);
    let obj = ws.object_of("a");
    flip_a_byte(&obj);
    ws.pipeline(
        "p",
        &chain.replace("> $LUNA_OUT/two.txt", "> $LUNA_OUT/2.txt"),
    );
    let out = ws.luna(&["run", "p", "--verify"]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("upstream stage `a`") && out.stderr.contains("content changed"),
        "{}",
        out.stderr
    );
    assert_eq!(ws.manifests().len(), 2, "nothing was computed from it");
}
