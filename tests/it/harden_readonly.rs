//! Issue 24, point 10: a read-only cache (a read-only bind mount of a team's reference cache)
//! serves a fully cached run: reading needs no write, not even of `locks/gc.lock`; a stage that
//! would have to be computed fails with a clear message and exit 2.
//!
//! Needs root for `mount --bind -o ro` (as in CI); otherwise fails under CI and prints SKIPPED.

use std::process::Command;

use crate::engine_support::{one_command, Ws};
use crate::harness::{require, Need};

/// A read-only bind mount of `src` at `dst`; unmounted on drop.
struct RoMount(std::path::PathBuf);

impl Drop for RoMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

fn ro_mount(src: &std::path::Path, dst: &std::path::Path) -> Option<RoMount> {
    crate::harness::require_root()?;
    std::fs::create_dir_all(dst).expect("mkdir mount point");
    require(Need::Root, || {
        let o = Command::new("mount")
            .args(["--bind", "-o", "ro"])
            .arg(src)
            .arg(dst)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if o.status.success() {
            Ok(())
        } else {
            Err(format!(
                "mount --bind -o ro: {}",
                String::from_utf8_lossy(&o.stderr)
            ))
        }
    })?;
    let m = RoMount(dst.to_path_buf());
    // some kernels need a remount for the read-only flag of a bind mount
    let _ = Command::new("mount")
        .args(["-o", "remount,bind,ro"])
        .arg(dst)
        .output();
    Some(m)
}

#[test]
fn harden_readonly_cache_serves_a_cached_run() {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("echo hi > $LUNA_OUT/a.txt"));
    ws.luna(&["run", "p"]).expect_code(0);
    let ro = ws.path("ro-cache");
    let Some(_m) = ro_mount(&ws.path("cache"), &ro) else {
        return;
    };
    assert!(
        std::fs::write(ro.join("probe"), "x").is_err(),
        "the bind mount is writable"
    );
    let o = ws.luna(&["--cache-dir", &ro.display().to_string(), "run", "p"]);
    assert_eq!(
        o.code, 0,
        "a fully cached run on a read-only cache failed:\n{}",
        o.stderr
    );
    assert!(o.stderr.contains("CACHED"), "{}", o.stderr);
    // a stage to compute: a clear error, exit 2
    ws.pipeline("q", &one_command("echo other > $LUNA_OUT/b.txt"));
    let o = ws.luna(&["--cache-dir", &ro.display().to_string(), "run", "q"]);
    assert_eq!(o.code, 2, "{}", o.stderr);
    assert!(o.stderr.contains("read-only"), "{}", o.stderr);
}
