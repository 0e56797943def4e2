//! What a test does when a piece of infrastructure it needs is missing, and waiting on events.
//!
//! **Missing infrastructure** (Slurm, the S3 server, root, setpriv): a test asks
//! [`require`], which probes for it. When the environment variable `CI` is set (to anything
//! but empty, `0` or `false`) a missing piece **fails** the test with what is missing and how
//! to get it: a CI machine without Slurm must not be green without testing the Slurm
//! executor. Without `CI` the test prints a line starting `SKIPPED` and returns, so a
//! developer without root or Slurm can still run the suite. The line is written straight to
//! file descriptor 2 (`std::io::stderr().lock()`), which libtest's output capture does not
//! intercept (it only redirects the `print!`/`eprint!` macros), so `cargo test` shows it next
//! to the test's `ok` without `--nocapture`. Rejected: `eprintln!` (captured and thrown away
//! for a passing test, which is how a skip used to look like a pass), `#[ignore]` (the
//! suite would never run them by default, even where the infrastructure is present), and
//! `/dev/tty` (absent in CI).
//!
//! `LUNA_TEST_WITHOUT=slurm,s3,root` treats the named pieces as missing without probing: the
//! way to check this file's behaviour (and a test's message) on a machine that has them.
//!
//! **Waiting**: [`wait_until`] polls a condition until a deadline and panics naming the event
//! that never came, for tests that must wait on something another process does. A sleep is
//! never the synchronisation; where a test checks that something does *not* happen, it waits
//! for a positive signal that the moment has passed (a process gone, a line logged).

#![allow(dead_code)]

use std::io::Write;
use std::time::{Duration, Instant};

/// A piece of infrastructure some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// The local single-node Slurm cluster of scripts/slurm-local.sh.
    Slurm,
    /// The S3 server: moto's, started by the test from the venv's python.
    S3,
    /// Running as root (creating Unix users, mounting).
    Root,
    /// util-linux's `setpriv`.
    Setpriv,
    /// The real data of `../shared/real` (LIDC-IDRI DICOM, book checkpoints).
    RealData,
}

impl Need {
    /// Its name in `LUNA_TEST_WITHOUT`.
    pub fn id(self) -> &'static str {
        match self {
            Need::Slurm => "slurm",
            Need::S3 => "s3",
            Need::Root => "root",
            Need::Setpriv => "setpriv",
            Need::RealData => "real",
        }
    }

    /// What it is, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Need::Slurm => "Slurm (the local cluster of scripts/slurm-local.sh)",
            Need::S3 => "the S3 server (moto[server] in the test venv)",
            Need::Root => "root",
            Need::Setpriv => "setpriv (util-linux)",
            Need::RealData => "the real data folder shared/real (LIDC-IDRI, book checkpoints)",
        }
    }

    /// How to get it.
    pub fn how(self) -> &'static str {
        match self {
            Need::Slurm => {
                "start it with `scripts/slurm-local.sh start` (as root; scripts/test.sh does)"
            }
            Need::S3 => "`source scripts/env.sh` installs moto[server] and boto3 into the venv",
            Need::Root => "run the tests as root (as CI does)",
            Need::Setpriv => "install util-linux (`apt-get install util-linux`)",
            Need::RealData => {
                "put the project's shared/ folder beside the checkout (or beside one of its \
                 parent folders), as CI has it"
            }
        }
    }
}

/// Whether `CI` is set to something other than empty, `0` or `false`.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Whether `LUNA_TEST_WITHOUT` names `need`.
fn pretend_missing(need: Need) -> bool {
    std::env::var("LUNA_TEST_WITHOUT").is_ok_and(|v| v.split(',').any(|p| p.trim() == need.id()))
}

/// What to do about a missing piece.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Fail the test with this message (CI).
    Fail(String),
    /// Print this line and return (not CI).
    Skip(String),
}

/// The verdict for `test` when `need` is missing because of `why`.
pub fn verdict(ci: bool, test: &str, need: Need, why: &str) -> Verdict {
    if ci {
        Verdict::Fail(format!(
            "{test} needs {} and it is missing: {why}; {}. (CI is set: a missing piece fails \
             instead of skipping.)",
            need.what(),
            need.how()
        ))
    } else {
        Verdict::Skip(format!(
            "SKIPPED {test}: needs {}: {why}; {} (with CI set this fails)",
            need.what(),
            need.how()
        ))
    }
}

/// `probe()`'s value when `need` is there; otherwise fails the test under CI, or prints a
/// `SKIPPED` line and returns `None` (the test then returns).
pub fn require<T>(need: Need, probe: impl FnOnce() -> Result<T, String>) -> Option<T> {
    let found = if pretend_missing(need) {
        Err(format!("LUNA_TEST_WITHOUT names `{}`", need.id()))
    } else {
        probe()
    };
    let why = match found {
        Ok(v) => return Some(v),
        Err(why) => why,
    };
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("this test");
    match verdict(ci(), test, need, &why) {
        Verdict::Fail(msg) => panic!("{msg}"),
        Verdict::Skip(line) => {
            // Straight to fd 2 (see the module doc). A failed write to stderr leaves nothing
            // to report it to; the test still returns without running.
            let _ = writeln!(std::io::stderr().lock(), "{line}");
            None
        }
    }
}

/// `shared/real` beside the checkout or beside one of its parent folders, through [`require`].
pub fn require_real_data() -> Option<std::path::PathBuf> {
    require(Need::RealData, || {
        let repo = std::path::Path::new(crate::REPO);
        repo.ancestors()
            .map(|a| a.join("shared/real"))
            .find(|p| p.join("README.md").is_file())
            .ok_or_else(|| {
                format!(
                    "no shared/real/README.md beside {} or its parents",
                    repo.display()
                )
            })
    })
}

/// Root, through [`require`].
pub fn require_root() -> Option<()> {
    require(Need::Root, || {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid == 0 {
            Ok(())
        } else {
            Err(format!("running as uid {uid}"))
        }
    })
}

/// Polls `cond` every 10 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_missing_piece_fails_under_ci_and_skips_with_a_visible_line_otherwise() {
    let fail = verdict(true, "t", Need::Slurm, "exit 3: not root");
    let Verdict::Fail(msg) = fail else {
        panic!("CI set: a missing piece must fail, got {fail:?}");
    };
    assert!(
        msg.contains("Slurm")
            && msg.contains("exit 3: not root")
            && msg.contains("slurm-local.sh start"),
        "{msg}"
    );
    let skip = verdict(false, "t", Need::S3, "no moto");
    let Verdict::Skip(line) = skip else {
        panic!("CI unset: a missing piece skips, got {skip:?}");
    };
    assert!(
        line.starts_with("SKIPPED t: needs the S3 server") && line.contains("no moto"),
        "{line}"
    );
}

/// Copies the executable `src` to `dst` and waits until it can be run. While the copy's write
/// descriptor is open, a process another test thread forks at that moment inherits it until its
/// own exec, and running `dst` then fails with ETXTBSY ("Text file busy"): try `dst --version`
/// until that passes (bounded).
pub fn copy_executable(src: &std::path::Path, dst: &std::path::Path) {
    std::fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
    for _ in 0..100 {
        match std::process::Command::new(dst).arg("--version").output() {
            Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("run {}: {e}", dst.display()),
            Ok(_) => return,
        }
    }
    panic!("{} stayed busy (ETXTBSY) for 2 s", dst.display());
}
