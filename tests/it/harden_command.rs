//! Issue 14, `command` stages: a background job is killed with its stage (it cannot write into
//! the committed object, nor stall the stage by holding stdout open), and output that is not
//! UTF-8 does not make luna stop reading.

use std::time::{Duration, Instant};

use crate::engine_crash::alive;
use crate::engine_support::{one_command, Ws};
use crate::harness::wait_until;

#[test]
fn an_orphaned_background_job_cannot_write_into_a_committed_object() {
    let ws = Ws::new();
    let pid_file = ws.path("bg.pid");
    // the job would write 5 s after the command ends; its pid tells the test when it is gone
    ws.pipeline(
        "p",
        &one_command(&format!(
            "(cd $LUNA_OUT && sleep 5 && echo late > late.txt) > /dev/null 2>&1 & echo $! > {}; echo ok > $LUNA_OUT/ok.txt",
            pid_file.display()
        )),
    );
    ws.luna(&["run", "p"]).expect_code(0);
    let obj = ws.object_of("a");
    let pid: i32 = ws
        .read("bg.pid")
        .trim()
        .parse()
        .expect("the background job's pid");
    // The positive signal that the moment has passed: the job is gone. luna kills the
    // command's process group before it commits, so this holds at once; a job that survived
    // would still be sleeping at the deadline (well before it writes).
    wait_until(
        "the background job killed with its stage",
        Duration::from_secs(3),
        || !alive(pid),
    );
    assert!(
        !obj.join("late.txt").exists(),
        "the orphan wrote into the object"
    );
    ws.luna(&["cache", "verify"]).expect_code(0);
}

#[test]
fn a_background_job_holding_stdout_does_not_stall_its_stage() {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("sleep 20 & echo ok > $LUNA_OUT/ok.txt"));
    let t0 = Instant::now();
    ws.luna(&["run", "p"]).expect_code(0);
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
}

#[test]
fn a_command_printing_non_utf8_is_not_killed_by_sigpipe() {
    let ws = Ws::new();
    ws.pipeline(
        "p",
        &one_command(r"echo ok > $LUNA_OUT/ok.txt; printf 'bad \377 byte\n'; seq 1 50000"),
    );
    let out = ws.luna(&["run", "p"]);
    out.expect_code(0);
    let log = ws.ls("runs");
    assert_eq!(log.len(), 1);
    let text = std::fs::read(ws.path(&format!("runs/{}/logs/a.log", log[0]))).expect("log");
    assert!(String::from_utf8_lossy(&text).contains("50000"));
}
