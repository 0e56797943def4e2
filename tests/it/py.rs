//! The Python interpreter of the oracle tests (one place; the test modules used to carry a
//! copy each). It is `$LUNA_PYTHON` (scripts/env.sh exports it) or else the project venv,
//! `$HOME/.cache/luna/venv/bin/python`. A missing interpreter or module is a failure with what
//! to do, never a skip: oracles are part of the suite, and scripts/env.sh installs them.
//! Rejected: `python3` from PATH (a system Python without the venv's pinned numpy/SimpleITK/
//! torch gives different answers or import errors far from the cause).

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The oracle Python: `$LUNA_PYTHON`, or the project venv's.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LUNA_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is set (or set LUNA_PYTHON)");
    Path::new(&home).join(".cache/luna/venv/bin/python")
}

/// [`python`], after checking that it imports `modules` (comma-separated, as in `import`);
/// panics naming the interpreter and what is missing.
pub fn python_with(modules: &str) -> PathBuf {
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output();
    match probe {
        Ok(o) if o.status.success() => py,
        Ok(o) => panic!(
            "oracle python {} cannot import {modules}: {}; install them in the venv \
             (scripts/env.sh) or set LUNA_PYTHON",
            py.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "oracle python {} cannot run ({e}); create the venv (source scripts/env.sh) or set \
             LUNA_PYTHON",
            py.display()
        ),
    }
}

/// Runs python with `args`, `stdin` as its standard input; panics with its stderr unless it
/// succeeds, and returns its stdout.
pub fn run_stdin(args: &[&str], stdin: &str) -> String {
    let py = python();
    let mut child = Command::new(&py)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python {} ({e}): source scripts/env.sh or set LUNA_PYTHON",
                py.display()
            )
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin.as_bytes())
        .expect("write python's stdin");
    let o = child.wait_with_output().expect("wait for python");
    assert!(
        o.status.success(),
        "python {} {args:?} failed: {}",
        py.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
