//! Issue 24, points 2–4: a shared group cache against its own members. Member B plants
//! symlinks (a lock file, a tmp folder, an object shard) pointing at member A's files; A's
//! runs and root's `cache init --shared` must neither chmod nor chown through them and must
//! say which entry is a link. The cache is group-only (an account outside the group reads
//! nothing) unless made `--world-readable`; a member's hand-made shard folder cannot block
//! other members' keys; an object B planted (edited content, manifest rewritten to match) is
//! refused by A's first use.
//!
//! Users and the group are made with useradd/groupadd as tests/it/team_shared.rs does (root
//! needed: without it the tests fail under CI and print SKIPPED otherwise).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::team_shared::{ok, rand_tag, shared_cache, text, Team};

const PIPELINE: &str =
    "pipeline: p\nstages:\n  a:\n    uses: command\n    with: { run: \"echo computed > $LUNA_OUT/a.txt\" }\n";

/// A shared cache of a fresh team, a copy of luna the users can run, and a workspace each.
struct Shared {
    team: Team,
    _base: tempfile::TempDir,
    luna: PathBuf,
    cache: PathBuf,
    ws: [PathBuf; 2],
}

impl Shared {
    fn new(init_args: &[&str]) -> Option<Shared> {
        let team = Team::create()?;
        let (base, luna, cache) = shared_cache(&team, "luna-hshared-", init_args);
        let ws = [0, 1].map(|i| {
            let w = base.path().join(format!("ws{i}"));
            std::fs::create_dir_all(w.join("pipelines")).expect("mkdir");
            std::fs::write(w.join("pipelines/p.yaml"), PIPELINE).expect("write");
            std::fs::set_permissions(&w, std::fs::Permissions::from_mode(0o755)).expect("chmod");
            ok(Command::new("chown").args(["-R", &team.users[i]]).arg(&w));
            w
        });
        Some(Shared {
            team,
            _base: base,
            luna,
            cache,
            ws,
        })
    }

    /// `luna --cache-dir CACHE ARGS` as user `i` (umask 077).
    fn run(&self, i: usize, args: &str) -> Output {
        let script = format!(
            "{} --cache-dir {} {args}",
            self.luna.display(),
            self.cache.display()
        );
        self.team
            .sh(i, &self.ws[i], &script)
            .output()
            .expect("run as user")
    }

    /// `sh -c SCRIPT` as user `i`, which must succeed.
    fn sh_ok(&self, i: usize, script: &str) {
        let o = self.team.sh(i, &self.ws[i], script).output().expect("sh");
        assert!(o.status.success(), "user {i}: {script}: {}", text(&o));
    }

    /// The key of stage `a`, from a run of A in a private cache (keys do not depend on the
    /// cache): the shared cache has no trace of it yet.
    fn key(&self) -> String {
        let o = self
            .team
            .sh(
                0,
                &self.ws[0],
                &format!(
                    "{} --cache-dir {}/own run p",
                    self.luna.display(),
                    self.ws[0].display()
                ),
            )
            .output()
            .expect("run");
        assert!(o.status.success(), "{}", text(&o));
        let runs = self.ws[0].join("runs");
        let rec = std::fs::read_dir(&runs)
            .expect("runs")
            .flatten()
            .next()
            .expect("a run");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(rec.path().join("run.json")).expect("read"))
                .expect("json");
        v["stages"][0]["key"].as_str().expect("key").to_string()
    }

    /// A's private file `secret.env` (0600) in A's workspace.
    fn secret(&self) -> PathBuf {
        let p = self.ws[0].join("secret.env");
        std::fs::write(&p, "TOKEN=x\n").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        ok(Command::new("chown").arg(&self.team.users[0]).arg(&p));
        p
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).expect("stat").mode() & 0o7777
}

fn says_link(o: &Output, link: &Path) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("symbolic link") && err.contains(&link.display().to_string()),
        "the error does not name the link {}: {}",
        link.display(),
        text(o)
    );
}

/// 2a: `locks/<key>.lock → ~A/secret.env` planted by B: A's run opens it without following
/// the link (O_NOFOLLOW) and says so; A's secret keeps its mode.
#[test]
fn harden_shared_lock_symlink_is_not_followed() {
    let Some(s) = Shared::new(&[]) else { return };
    let key = s.key();
    let secret = s.secret();
    let link = s.cache.join(format!("locks/{key}.lock"));
    s.sh_ok(1, &format!("ln -s {} {}", secret.display(), link.display()));
    let o = s.run(0, "run p");
    assert_eq!(
        mode(&secret),
        0o600,
        "A's secret was chmod'ed: {}",
        text(&o)
    );
    assert!(!o.status.success(), "{}", text(&o));
    says_link(&o, &link);
}

/// 2b: `tmp/x → ~A/private` planted by B: A's run (which cleans stale tmp folders) neither
/// walks into it nor chmods anything there.
#[test]
fn harden_shared_tmp_symlink_is_not_walked() {
    let Some(s) = Shared::new(&[]) else { return };
    let private = s.ws[0].join("private");
    s.sh_ok(
        0,
        &format!(
            "mkdir -p {0}/inner && chmod 700 {0} {0}/inner",
            private.display()
        ),
    );
    let link = s.cache.join("tmp/x");
    s.sh_ok(
        1,
        &format!("ln -s {} {}", private.display(), link.display()),
    );
    let o = s.run(0, "run p");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(mode(&private), 0o700, "A's folder was chmod'ed");
    assert_eq!(
        mode(&private.join("inner")),
        0o700,
        "A's folder was chmod'ed"
    );
    assert!(private.join("inner").is_dir());
}

/// 2: `objects/<shard>/<key> → ~A/private` planted by B where A's next object goes: A's run
/// neither reads through it nor chmods A's folder (moving the "damaged object" aside used to
/// chmod 0755 through the link); it fails naming the link.
#[test]
fn harden_shared_object_symlink_is_refused() {
    let Some(s) = Shared::new(&[]) else { return };
    let key = s.key();
    let private = s.ws[0].join("private");
    s.sh_ok(
        0,
        &format!("mkdir -p {0} && chmod 700 {0}", private.display()),
    );
    let link = s.cache.join("objects").join(&key[..2]).join(&key);
    s.sh_ok(
        1,
        &format!(
            "mkdir -p {} && ln -s {} {}",
            link.parent().expect("shard").display(),
            private.display(),
            link.display()
        ),
    );
    let o = s.run(0, "run p");
    assert_eq!(
        mode(&private),
        0o700,
        "A's folder was chmod'ed: {}",
        text(&o)
    );
    assert!(!private.join("a.txt").exists());
    assert!(!o.status.success(), "{}", text(&o));
    says_link(&o, &link);
}

/// 2c: root re-runs `cache init --shared` over a cache where B planted `objects/ab → ~A/secret`:
/// nothing is chowned through the link, and init names it.
#[test]
fn harden_shared_init_as_root_does_not_chown_through_links() {
    let Some(s) = Shared::new(&[]) else { return };
    let secret = s.secret();
    let gid_before = std::fs::metadata(&secret).expect("stat").gid();
    let shard = s.cache.join("objects/zz");
    s.sh_ok(
        1,
        &format!("ln -s {} {}", secret.display(), shard.display()),
    );
    let o = Command::new(&s.luna)
        .args(["cache", "init", "--shared"])
        .arg(&s.cache)
        .args(["--group", &s.team.group])
        .output()
        .expect("run luna");
    let meta = std::fs::metadata(&secret).expect("stat");
    assert_eq!(
        meta.gid(),
        gid_before,
        "A's secret was chgrp'ed: {}",
        text(&o)
    );
    assert_eq!(meta.mode() & 0o7777, 0o600, "A's secret was chmod'ed");
    assert!(!o.status.success(), "{}", text(&o));
    says_link(&o, &shard);
}

/// 3: an account outside the group reads nothing of a default shared cache; with
/// `--world-readable` it reads the objects (and only then).
#[test]
fn harden_shared_cache_is_group_only_by_default() {
    let Some(s) = Shared::new(&[]) else { return };
    let o = s.run(0, "run p");
    assert!(o.status.success(), "{}", text(&o));
    let outsider = Outsider::create();
    let obj = crate::team_shared::objects(&s.cache)
        .pop()
        .expect("an object");
    let file = obj.join("a.txt");
    assert_eq!(mode(&file), 0o440);
    assert_eq!(mode(&obj), 0o550);
    assert_eq!(mode(obj.parent().expect("shard")), 0o3770);
    assert_eq!(mode(&s.cache), 0o3770);
    let o = outsider.sh(&format!("cat {}", file.display()));
    assert!(
        !o.status.success(),
        "an outsider read the cache: {}",
        text(&o)
    );
    // a member reads it
    s.sh_ok(1, &format!("cat {}", file.display()));

    let Some(w) = Shared::new(&["--world-readable"]) else {
        return;
    };
    let o = w.run(0, "run p");
    assert!(o.status.success(), "{}", text(&o));
    let obj = crate::team_shared::objects(&w.cache)
        .pop()
        .expect("an object");
    assert_eq!(mode(&obj.join("a.txt")), 0o444);
    assert_eq!(mode(obj.parent().expect("shard")), 0o3775);
    let o = outsider.sh(&format!("cat {}", obj.join("a.txt").display()));
    assert!(o.status.success(), "{}", text(&o));
}

/// 4: B makes the shard folder of A's next key by hand with umask 022 (2755): A's run still
/// commits (shards are made by init, with the shared mode, whatever the umask).
#[test]
fn harden_shared_member_made_shard_does_not_block_keys() {
    let Some(s) = Shared::new(&[]) else { return };
    let key = s.key();
    let shard = s.cache.join("objects").join(&key[..2]);
    // B can only make it if it is not there already (and cannot change it then)
    let _ = s
        .team
        .sh(
            1,
            &s.ws[1],
            &format!(
                "umask 022; mkdir -m 2755 {0}; chmod 2755 {0}",
                shard.display()
            ),
        )
        .output();
    let o = s.run(0, "run p");
    assert!(o.status.success(), "A could not commit: {}", text(&o));
    assert!(s.cache.join("objects").join(&key[..2]).join(&key).is_dir());
}

/// 4: B plants, under the key of A's stage, a copy of B's own object with the content edited
/// and the manifest rewritten to match (sizes and blake3 agree): A's first use compares the
/// manifest with what A's plan expects for that key and refuses it, naming the key.
#[test]
fn harden_shared_planted_object_is_refused_on_first_use() {
    let Some(s) = Shared::new(&[]) else { return };
    let key = s.key();
    // B's object of another stage (other params), copied by hand under A's key with the
    // manifest's key rewritten: what `cp -r` and an editor give a member
    std::fs::write(
        s.ws[1].join("pipelines/p.yaml"),
        PIPELINE.replace("computed", "poison!!"),
    )
    .expect("write");
    let o = s.run(1, "run p");
    assert!(o.status.success(), "{}", text(&o));
    let theirs = crate::team_shared::objects(&s.cache)
        .into_iter()
        .find(|o| !o.ends_with(&key))
        .expect("B's object");
    let dest = s.cache.join("objects").join(&key[..2]).join(&key);
    let script = format!(
        "mkdir -p {dest} && cp {theirs}/a.txt {dest}/a.txt && sed 's/{old}/{key}/' {theirs}/manifest.json > {dest}/manifest.json && chmod -R u=rX,g=rX,o= {dest}",
        dest = dest.display(),
        theirs = theirs.display(),
        old = theirs.file_name().expect("name").to_string_lossy(),
    );
    s.sh_ok(1, &script);
    let o = s.run(0, "run p");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        !o.status.success(),
        "A used B's planted object: {}",
        text(&o)
    );
    assert!(
        out.contains(&key[..8]) && out.contains("does not match"),
        "{out}"
    );
}

/// A user in no group of the cache; deleted on drop.
struct Outsider {
    name: String,
}

impl Outsider {
    fn create() -> Outsider {
        let name = format!("lunao{}{}", std::process::id() % 100_000, rand_tag());
        ok(Command::new("useradd").args(["-M", "-U", "-s", "/bin/sh", &name]));
        Outsider { name }
    }

    fn sh(&self, script: &str) -> Output {
        Command::new("setpriv")
            .args([
                "--reuid",
                &self.name,
                "--regid",
                &self.name,
                "--init-groups",
                "--",
                "sh",
                "-c",
                script,
            ])
            .current_dir("/")
            .output()
            .expect("sh as outsider")
    }
}

impl Drop for Outsider {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}
