//! A cache shared by two Unix users (issue 11, point 5): `luna cache init --shared DIR
//! --group G`, then user A computes, user B reuses A's objects and adds its own, both with
//! umask 077; neither can change, move or delete the other's committed objects; B's gc while
//! A's run holds the cache deletes nothing, and B's gc afterwards keeps what A pinned.
//!
//! The test creates a group and two users (unique names, removed afterwards) and runs `luna`
//! as them with `setpriv`; it needs root (as here and in CI): without it the test fails under
//! CI and otherwise skips with a `SKIPPED` line (crate::harness).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A group and two users in it; deleted on drop.
pub(crate) struct Team {
    pub(crate) group: String,
    pub(crate) gid: u32,
    pub(crate) users: [String; 2],
}

impl Drop for Team {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = Command::new("userdel").arg(u).output();
        }
        let _ = Command::new("groupdel").arg(&self.group).output();
    }
}

pub(crate) fn ok(c: &mut Command) -> Output {
    let o = c.output().unwrap_or_else(|e| {
        panic!("cannot run {c:?}: {e} (useradd, groupadd and userdel are in /usr/sbin: is it on PATH?)")
    });
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

impl Team {
    pub(crate) fn create() -> Option<Team> {
        crate::harness::require_root()?;
        crate::harness::require(crate::harness::Need::Setpriv, || {
            Command::new("setpriv")
                .arg("--version")
                .output()
                .map(drop)
                .map_err(|e| format!("cannot run setpriv: {e}"))
        })?;
        let tag = format!("{}{}", std::process::id() % 100_000, rand_tag());
        let group = format!("lunag{tag}");
        ok(Command::new("groupadd").arg(&group));
        let users = [format!("lunaa{tag}"), format!("lunab{tag}")];
        let mut team = Team {
            group,
            gid: 0,
            users: [String::new(), String::new()],
        };
        for (i, u) in users.iter().enumerate() {
            ok(Command::new("useradd").args(["-M", "-U", "-G", &team.group, "-s", "/bin/sh", u]));
            team.users[i] = u.clone();
        }
        let gid = ok(Command::new("getent").args(["group", &team.group]));
        team.gid = String::from_utf8_lossy(&gid.stdout)
            .split(':')
            .nth(2)
            .and_then(|g| g.trim().parse().ok())
            .expect("a gid");
        Some(team)
    }

    pub(crate) fn uid(&self, i: usize) -> u32 {
        let o = ok(Command::new("id").args(["-u", &self.users[i]]));
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .expect("a uid")
    }

    /// `sh -c SCRIPT` as user `i` with umask 077 (its groups from /etc/group).
    pub(crate) fn sh(&self, i: usize, dir: &Path, script: &str) -> Command {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid",
            &self.users[i],
            "--regid",
            &self.users[i],
            "--init-groups",
            "--",
            "sh",
            "-c",
            &format!("umask 077; {script}"),
        ])
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("LUNA_CACHE_DIR")
        .stdin(Stdio::null());
        c
    }
}

pub(crate) fn rand_tag() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 10_000)
        .unwrap_or(0)
}

/// A world-traversable temp folder holding a copy of luna the team's users can run (they cannot
/// reach the build folder under /root) and a shared cache made for `team` by `cache init
/// --shared` with `init_args`: (folder, luna, cache).
pub(crate) fn shared_cache(
    team: &Team,
    prefix: &str,
    init_args: &[&str],
) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let base = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let luna = base.path().join("luna");
    crate::harness::copy_executable(&crate::bin("luna"), &luna);
    let cache = base.path().join("cache");
    let o = Command::new(&luna)
        .args(["cache", "init", "--shared"])
        .arg(&cache)
        .args(["--group", &team.group])
        .args(init_args)
        .output()
        .expect("run luna");
    assert!(o.status.success(), "{}", text(&o));
    (base, luna, cache)
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every object folder of the cache.
pub(crate) fn objects(cache: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(cache.join("objects"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|shard| {
            std::fs::read_dir(shard.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// The object folder whose manifest names `stage`.
fn object_of(cache: &Path, stage: &str) -> PathBuf {
    objects(cache)
        .into_iter()
        .find(|o| {
            std::fs::read_to_string(o.join("manifest.json"))
                .map(|m| m.contains(&format!("\"stage\": \"{stage}\"")))
                .unwrap_or(false)
        })
        .unwrap_or_else(|| panic!("no object of stage {stage}"))
}

const STAGE_A: &str =
    "  a:\n    uses: command\n    with: { run: \"echo computed-by-a > $LUNA_OUT/a.txt\" }\n";

#[test]
fn team_shared_cache_two_users() {
    let Some(team) = Team::create() else {
        return;
    };
    let (base, luna, cache) = shared_cache(&team, "luna-shared-", &[]);
    let ws: Vec<PathBuf> = (0..2)
        .map(|i| {
            let w = base.path().join(format!("ws{i}"));
            std::fs::create_dir_all(w.join("pipelines")).expect("mkdir");
            w
        })
        .collect();
    std::fs::write(
        ws[0].join("pipelines/p.yaml"),
        format!("pipeline: p\nstages:\n{STAGE_A}"),
    )
    .expect("write");
    std::fs::write(
        ws[0].join("pipelines/long.yaml"),
        "pipeline: long\nstages:\n  wait:\n    uses: command\n    with: { run: \"touch $HOME/started; i=0; while [ ! -f $HOME/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; echo x > $LUNA_OUT/x\" }\n",
    )
    .expect("write");
    std::fs::write(
        ws[1].join("pipelines/p.yaml"),
        format!("pipeline: p\nstages:\n{STAGE_A}  c:\n    uses: command\n    needs: [a]\n    with: {{ run: \"cat $LUNA_IN_A/a.txt > $LUNA_OUT/c.txt; echo by-b >> $LUNA_OUT/c.txt\" }}\n"),
    )
    .expect("write");
    // a folder remote both push to (a share: group-owned, setgid)
    let remote = base.path().join("remote");
    std::fs::create_dir(&remote).expect("mkdir");
    std::os::unix::fs::chown(&remote, None, Some(team.gid)).expect("chgrp");
    std::fs::set_permissions(&remote, std::fs::Permissions::from_mode(0o2775)).expect("chmod");
    for w in &ws {
        let toml = format!("[remotes.share]\nurl = \"file://{}\"\n", remote.display());
        std::fs::write(w.join("luna.toml"), toml).expect("write");
    }
    for (i, w) in ws.iter().enumerate() {
        ok(Command::new("chown").args(["-R", &team.users[i]]).arg(w));
    }
    let run = |i: usize, args: &str| {
        let script = format!("{} --cache-dir {} {args}", luna.display(), cache.display());
        team.sh(i, &ws[i], &script).output().expect("run as user")
    };

    // A computes; B reuses A's object and adds its own
    let o = run(0, "run p");
    assert!(o.status.success(), "A: {}", text(&o));
    let o = run(1, "run p");
    assert!(o.status.success(), "B: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("CACHED") && err.contains("RAN"), "{err}");
    let (obj_a, obj_c) = (object_of(&cache, "a"), object_of(&cache, "c"));
    let meta = |p: &Path| std::fs::metadata(p).expect("stat");
    assert_eq!(meta(&obj_a).uid(), team.uid(0));
    assert_eq!(meta(&obj_c).uid(), team.uid(1));
    for o in [&obj_a, &obj_c] {
        assert_eq!(meta(o).gid(), team.gid, "{o:?} is not group-owned");
        assert_eq!(meta(o).mode() & 0o7777, 0o550);
        assert_eq!(meta(o.parent().expect("shard")).mode() & 0o7777, 0o3770);
        for f in std::fs::read_dir(o).expect("ls").flatten() {
            assert_eq!(meta(&f.path()).mode() & 0o777, 0o440, "{:?}", f.path());
        }
    }
    assert_eq!(
        std::fs::read_to_string(obj_c.join("c.txt")).expect("read"),
        "computed-by-a\nby-b\n"
    );
    // both push to the shared folder remote with umask 077: B adds files next to A's
    for i in 0..2 {
        let o = run(i, "cache push p");
        assert!(o.status.success(), "push as {i}: {}", text(&o));
    }
    let o = run(1, "cache verify --remote");
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("verified 2 objects on share: 2 ok"),
        "{}",
        text(&o)
    );
    let lock = cache.join("locks/gc.lock");
    assert_eq!(
        meta(&lock).mode() & 0o777,
        0o660,
        "gc.lock must be group-writable (and group-only)"
    );

    // neither can change, chmod, delete or move the other's committed object
    let before = [
        std::fs::read(obj_a.join("a.txt")).expect("read"),
        std::fs::read(obj_c.join("c.txt")).expect("read"),
    ];
    for (user, obj, file) in [(1, &obj_a, "a.txt"), (0, &obj_c, "c.txt")] {
        let f = obj.join(file);
        let other = obj.with_file_name(format!("{}0", "f".repeat(63)));
        for attack in [
            format!("echo x >> {}", f.display()),
            format!("chmod u+w {}", f.display()),
            format!("chmod u+w {}", obj.display()),
            format!("rm -f {}", f.display()),
            format!("rm -rf {}", obj.display()),
            format!("mv {} {}", obj.display(), other.display()),
            format!("mv {} /tmp/", obj.display()),
            format!("touch {}/extra", obj.display()),
        ] {
            let o = team.sh(user, &ws[user], &attack).output().expect("sh");
            assert!(!o.status.success(), "user {user} could `{attack}`");
        }
    }
    assert_eq!(std::fs::read(obj_a.join("a.txt")).expect("read"), before[0]);
    assert_eq!(std::fs::read(obj_c.join("c.txt")).expect("read"), before[1]);
    for i in 0..2 {
        let o = run(i, "cache verify");
        assert!(o.status.success(), "verify as {i}: {}", text(&o));
    }

    // B's gc while A's run holds the cache: refused, nothing deleted
    let mut long = team
        .sh(
            0,
            &ws[0],
            &format!(
                "{} --cache-dir {} run long",
                luna.display(),
                cache.display()
            ),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start A's run");
    let t0 = Instant::now();
    while !ws[0].join("started").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "A's run did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let n_before = objects(&cache).len();
    let o = run(1, "cache gc --keep-runs 0");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("is using the cache"),
        "{}",
        text(&o)
    );
    assert_eq!(objects(&cache).len(), n_before);
    // A's run held the cache until now: it waits for this file (at most 60 s), not a guessed
    // number of seconds that B's gc had to fit in
    std::fs::write(ws[0].join("go"), "").expect("write go");
    assert!(long.wait().expect("wait").success());

    // A pins p; B's gc then deletes B's own unpinned object, keeps A's pinned one and leaves
    // A's other object (only A may delete it)
    let o = run(0, "cache pin p");
    assert!(o.status.success(), "{}", text(&o));
    let o = run(1, "cache gc --keep-runs 0");
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        out.contains("left 1 unused objects of other users"),
        "{out}"
    );
    assert!(
        obj_a.join("a.txt").is_file(),
        "A's pinned object was deleted"
    );
    assert!(!obj_c.exists(), "B's unpinned object was kept: {out}");
    // B cannot remove A's pin; A can
    let pins: Vec<PathBuf> = std::fs::read_dir(cache.join("pins"))
        .expect("pins")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(pins.len(), 1);
    let o = team
        .sh(1, &ws[1], &format!("rm -f {}", pins[0].display()))
        .output()
        .expect("sh");
    assert!(!o.status.success() && pins[0].exists(), "B removed A's pin");
    let o = run(0, "cache unpin p");
    assert!(o.status.success(), "{}", text(&o));
    let o = run(0, "cache gc --keep-runs 0");
    assert!(o.status.success(), "{}", text(&o));
    assert!(objects(&cache).is_empty(), "{:?}", objects(&cache));
}
