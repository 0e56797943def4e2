//! Team cache remotes (issue 11): `luna cache push/pull`, `run --pull/--push`, `status`,
//! `cache verify --remote`, integrity under corruption, `kill -9` and concurrent pushes, and
//! the bad-input errors, each against a real S3 server and against a `file://` folder.
//!
//! The S3 server is moto's (`moto[server]` from PyPI, installed into the test venv by
//! scripts/env.sh): a real S3 HTTP API (SigV4, multipart uploads, ListObjectsV2, error XML)
//! started by each test on 127.0.0.1 at a free port and killed with it. Chosen over MinIO
//! (not on crates.io, PyPI or Debian) and the `s3s-fs` crate (a long `cargo install` on every
//! fresh machine); with `INITIAL_NO_AUTH_ACTION_COUNT=0` it also checks access keys, which
//! the wrong-credentials test needs. The test side reads and damages the bucket through boto3
//! (an independent S3 client), never through luna.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::data_support::{data_artifact, data_ext_pipeline, data_json, data_synth};
use crate::engine_support::{b3, stages_with, Out, Ws};
use crate::harness::{require, Need};
use crate::py::python;

const KEY_ID: &str = "luna-test";
const SECRET: &str = "luna-test-secret";

/// A moto S3 server on loopback; killed on drop.
pub(crate) struct S3 {
    child: Child,
    pub(crate) endpoint: String,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl S3 {
    /// Starts a server (`auth`: check access keys); when moto is not installed, [`require`]
    /// fails the test under CI, or prints `SKIPPED` and gives `None`.
    pub(crate) fn start(auth: bool) -> Option<S3> {
        let py = python();
        require(Need::S3, || {
            let probe = Command::new(&py)
                .args(["-c", "import moto.server, boto3"])
                .output()
                .map_err(|e| format!("cannot run {} ({e})", py.display()))?;
            if probe.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{} cannot import moto.server and boto3: {}",
                    py.display(),
                    String::from_utf8_lossy(&probe.stderr)
                        .lines()
                        .last()
                        .unwrap_or_default()
                ))
            }
        })?;
        let port = free_port();
        let mut c = Command::new(&py);
        c.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        if auth {
            c.env("INITIAL_NO_AUTH_ACTION_COUNT", "0");
        }
        let child = c.spawn().expect("start moto's server");
        let s3 = S3 {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(t0.elapsed() < Duration::from_secs(30), "moto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s3)
    }

    /// Runs python with boto3's client `s3` for this server bound, and returns stdout.
    pub(crate) fn py(&self, code: &str) -> String {
        let script = format!(
            "import boto3, sys\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='{KEY_ID}', aws_secret_access_key='{SECRET}', region_name='us-east-1')\n{code}\n",
            self.endpoint
        );
        let o = Command::new(python())
            .args(["-c", &script])
            .output()
            .expect("run python");
        assert!(
            o.status.success(),
            "boto3 failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Keys under `prefix` in bucket `team` without a `#` (one ListObjectsV2 page, raw HTTP).
    fn count_keys(&self, prefix: &str) -> usize {
        use std::io::{Read, Write};
        let addr = self.endpoint.trim_start_matches("http://");
        let mut c = std::net::TcpStream::connect(addr).expect("connect to moto");
        let req = format!("GET /team?list-type=2&prefix={prefix} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        c.write_all(req.as_bytes()).expect("send a list request");
        let mut body = String::new();
        c.read_to_string(&mut body).expect("read the listing");
        assert!(
            body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
            "{body}"
        );
        body.split("<Key>")
            .skip(1)
            .filter(|k| !k.split("</Key>").next().unwrap_or("#").contains('#'))
            .count()
    }

    pub(crate) fn bucket(&self, name: &str) {
        self.py(&format!("s3.create_bucket(Bucket='{name}')"));
    }
}

/// Where a test's remote lives.
pub(crate) enum Store {
    S3(S3),
    Dir(tempfile::TempDir),
}

impl Store {
    pub(crate) fn s3() -> Option<Store> {
        let s = S3::start(false)?;
        s.bucket("team");
        Some(Store::S3(s))
    }

    fn dir() -> Store {
        Store::Dir(
            tempfile::Builder::new()
                .prefix("luna-remote-")
                .tempdir()
                .expect("temp dir"),
        )
    }

    /// `luna remote add team ...` in `ws`.
    pub(crate) fn add_to(&self, ws: &Ws) {
        match self {
            Store::S3(s) => ws.luna(&[
                "remote",
                "add",
                "team",
                "s3://team/luna",
                "--endpoint",
                &s.endpoint,
            ]),
            Store::Dir(d) => {
                let url = format!("file://{}", d.path().display());
                ws.luna(&["remote", "add", "team", &url])
            }
        }
        .expect_code(0);
    }

    /// Every stored path under the remote's prefix with its size (sorted).
    fn list(&self) -> BTreeMap<String, u64> {
        match self {
            Store::S3(s) => s
                .py("p = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='team', Prefix='luna/'):\n    for o in page.get('Contents', []):\n        print(o['Key'][5:], o['Size'])")
                .lines()
                .filter_map(|l| l.rsplit_once(' '))
                .map(|(k, n)| (k.to_string(), n.parse().expect("size")))
                .collect(),
            Store::Dir(d) => walkdir::WalkDir::new(d.path())
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .map(|e| {
                    let rel = e.path().strip_prefix(d.path()).expect("below").to_string_lossy().to_string();
                    (rel, e.metadata().expect("stat").len())
                })
                .collect(),
        }
    }

    /// How many pushed files (`files/…`, no part uploads) the remote holds, cheaply enough to
    /// poll every few milliseconds: on S3 one plain ListObjectsV2 GET over a socket (moto does
    /// not check signatures), not a Python process per look, which on a loaded machine took
    /// longer than a whole push.
    fn pushed_files(&self) -> usize {
        match self {
            Store::S3(s) => s.count_keys("luna/files/"),
            Store::Dir(_) => self
                .list()
                .keys()
                .filter(|k| k.starts_with("files/") && !k.contains('#'))
                .count(),
        }
    }

    /// Manifests on the remote.
    fn manifests(&self) -> Vec<String> {
        self.list()
            .into_keys()
            .filter(|k| k.starts_with("objects/") && k.ends_with("/manifest.json"))
            .collect()
    }

    /// Flips one byte in the middle of the largest remote file.
    fn flip_largest(&self) {
        let (path, size) = self
            .list()
            .into_iter()
            .filter(|(k, _)| k.starts_with("files/"))
            .max_by_key(|(_, n)| *n)
            .expect("a remote file");
        let at = size / 2;
        match self {
            Store::S3(s) => {
                s.py(&format!(
                    "b = bytearray(s3.get_object(Bucket='team', Key='luna/{path}')['Body'].read())\nb[{at}] ^= 0xff\ns3.put_object(Bucket='team', Key='luna/{path}', Body=bytes(b))"
                ));
            }
            Store::Dir(d) => {
                let p = d.path().join(&path);
                let mut b = std::fs::read(&p).expect("read remote file");
                b[at as usize] ^= 0xff;
                std::fs::write(&p, b).expect("write remote file");
            }
        }
    }
}

/// Two tests running `$body`: `$s3` against moto's server, `$file` against a folder.
macro_rules! on_both {
    ($s3:ident, $file:ident, $body:ident) => {
        #[test]
        fn $s3() {
            if let Some(s) = Store::s3() {
                $body(s);
            }
        }

        #[test]
        fn $file() {
            $body(Store::dir());
        }
    };
}

/// Every file of `dir` (relative path → blake3).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file() && e.file_name() != "manifest.json")
        .map(|e| {
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("below")
                .to_string_lossy()
                .to_string();
            (rel, b3(&std::fs::read(e.path()).expect("read")))
        })
        .collect()
}

/// A workspace with the `data` pipeline over `series` tiny synthetic CTs (seed 11: the first
/// series are the same bytes whatever the count) and the remote added.
fn data_ws(store: &Store, series: usize) -> Ws {
    let ws = Ws::new();
    ws.pipeline("data", &data_ext_pipeline("", ""));
    data_synth(&ws, "ext", 11, series);
    store.add_to(&ws);
    ws
}

/// `luna ARGS` with the test's S3 credentials.
pub(crate) fn luna(ws: &Ws, args: &[&str]) -> Out {
    ws.luna_env(
        args,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ],
    )
}

const DATA_STAGES: [&str; 3] = ["annotations", "candidates", "crops"];

/// Push from A, pull into B (empty cache): every stage cached, every byte identical; a second
/// push sends nothing; `run --pull` in C computes nothing the remote has, and with one more
/// CT computes only that CT's partition.
fn roundtrip(store: Store) {
    let a = data_ws(&store, 3);
    luna(&a, &["run", "data"]).expect_code(0);
    let o = luna(&a, &["cache", "push", "data"]);
    o.expect_code(0);
    // 3 stages + 3 crop partitions
    assert!(
        o.stdout.starts_with("pushed 6 objects to team"),
        "{}",
        o.stdout
    );
    assert_eq!(store.manifests().len(), 6);
    let again = luna(&a, &["cache", "push", "data"]);
    again.expect_code(0);
    assert!(
        again
            .stdout
            .starts_with("pushed 0 objects to team (0 files, 0 B"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("6 objects already there"),
        "{}",
        again.stdout
    );

    let b = data_ws(&store, 3);
    let st = luna(&b, &["status", "data", "--pull"]);
    st.expect_code(0);
    // a stage's key depends on what its upstream's artifact says it reads (the series of its
    // table): with nothing local yet, only the first stage's key is known before a pull
    for s in &DATA_STAGES[..1] {
        let want = [s, "available", "on", "remote", "team"];
        assert!(
            st.stdout.lines().any(|l| l.split_whitespace().eq(want)),
            "{}",
            st.stdout
        );
    }
    let o = luna(&b, &["cache", "pull", "data"]);
    o.expect_code(0);
    assert!(
        o.stdout.starts_with("pulled 6 objects from team"),
        "{}",
        o.stdout
    );
    let st = luna(&b, &["status", "data"]);
    assert!(
        st.stdout.contains("everything is up to date"),
        "{}",
        st.stdout
    );
    let run = luna(&b, &["run", "data"]);
    run.expect_code(0);
    assert_eq!(stages_with(&run.stderr, "CACHED"), DATA_STAGES);
    for s in DATA_STAGES {
        let (da, db) = (data_artifact(&a, "data", s), data_artifact(&b, "data", s));
        assert_eq!(tree(&da), tree(&db), "stage {s}");
        assert!(!tree(&da).is_empty());
    }

    // run --pull: nothing computed
    let c = data_ws(&store, 3);
    let run = luna(&c, &["run", "data", "--pull"]);
    run.expect_code(0);
    assert_eq!(
        stages_with(&run.stderr, "CACHED"),
        DATA_STAGES,
        "{}",
        run.stderr
    );
    assert_eq!(c.last_run()["stages"].as_array().map(|s| s.len()), Some(3));
    assert!(c.last_statuses().iter().all(|(_, s)| s == "cached"));

    // another validation split: `candidates` and `crops` get new keys, but the crop
    // partitions (keyed by CT bytes and centres) are the remote's: per-partition pull computes
    // none of them; --push then uploads the two new stage objects only
    let d = data_ws(&store, 3);
    d.pipeline(
        "data",
        &data_ext_pipeline("", "").replace("val_stride: 2", "val_stride: 3"),
    );
    let run = luna(&d, &["run", "data", "--pull", "--push"]);
    run.expect_code(0);
    assert_eq!(stages_with(&run.stderr, "CACHED"), ["annotations"]);
    assert_eq!(stages_with(&run.stderr, "RAN"), ["candidates", "crops"]);
    let crops = data_artifact(&d, "data", "crops");
    let report = data_json(&crops.join("crops.json"));
    assert_eq!(report["series_computed"], 0, "{report}");
    assert!(
        run.stdout.contains("pushed 2 objects to team (4 files, ")
            && run.stdout.contains("4 objects already there"),
        "{}",
        run.stdout
    );
    let v = luna(&d, &["cache", "verify", "--remote", "team"]);
    v.expect_code(0);
    assert!(
        v.stdout
            .contains("verified 8 objects on team: 8 ok, 0 corrupt"),
        "{}",
        v.stdout
    );
}

on_both!(
    team_s3_push_pull_run_pull,
    team_file_push_pull_run_pull,
    roundtrip
);

/// A pipeline whose one stage writes `files` files of `mib` MiB of random bytes: two
/// workspaces computing it get the same key and different bytes.
pub(crate) fn random_ws(store: &Store, files: usize, mib: usize) -> Ws {
    let ws = Ws::new();
    let run = format!(
        "for i in $(seq {files}); do head -c {} /dev/urandom > $LUNA_OUT/part$i.bin; done",
        mib << 20
    );
    ws.pipeline(
        "rand",
        &format!(
            "pipeline: rand\nstages:\n  a:\n    uses: command\n    with: {{ run: \"{run}\" }}\n"
        ),
    );
    store.add_to(&ws);
    ws.luna(&["run", "rand"]).expect_code(0);
    ws
}

/// One flipped byte on the remote: pull refuses the object (nothing committed) and
/// `cache verify --remote` reports it.
fn corrupt(store: Store) {
    let a = random_ws(&store, 2, 1);
    luna(&a, &["cache", "push", "rand"]).expect_code(0);
    store.flip_largest();
    let v = luna(&a, &["cache", "verify", "--remote"]);
    v.expect_code(1);
    assert!(
        v.stdout.contains("content does not match the manifest"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .contains("verified 1 objects on team: 0 ok, 1 corrupt"),
        "{}",
        v.stdout
    );
    let b = Ws::new();
    b.pipeline("rand", &a.read("pipelines/rand.yaml"));
    store.add_to(&b);
    let o = luna(&b, &["cache", "pull", "rand"]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("is corrupt") && o.stderr.contains("it was not used"),
        "{}",
        o.stderr
    );
    assert!(
        b.ls("cache/objects").is_empty(),
        "{:?}",
        b.ls("cache/objects")
    );
    assert!(b.ls("cache/tmp").is_empty());
    // run --pull refuses it too, says so, and computes the stage instead
    let run = luna(&b, &["run", "rand", "--pull"]);
    run.expect_code(0);
    assert_eq!(stages_with(&run.stderr, "RAN"), ["a"], "{}", run.stderr);
    assert!(
        run.stderr.contains("warning: remote team: object"),
        "{}",
        run.stderr
    );
    // a local object damaged after its commit (same size) is never completed on the remote
    let c = random_ws(&store, 3, 1);
    let obj = data_artifact(&c, "rand", "a");
    let f = obj.join("part2.bin");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut bytes = std::fs::read(&f).expect("read");
    bytes[7] ^= 1;
    std::fs::write(&f, bytes).expect("write");
    let before = store.manifests();
    let o = luna(&c, &["cache", "push", "rand"]);
    o.expect_code(1);
    assert!(
        o.stderr.contains("is damaged") && o.stderr.contains("part2.bin content changed"),
        "{}",
        o.stderr
    );
    assert_eq!(store.manifests(), before);
}

on_both!(
    team_s3_corrupt_object_is_refused,
    team_file_corrupt_object_is_refused,
    corrupt
);

/// Starts `luna ARGS` in `ws` with the test's S3 credentials (output discarded).
pub(crate) fn spawn(ws: &Ws, args: &[&str]) -> std::process::Child {
    ws.command(args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start luna")
}

/// Waits until `done()` and then kill -9s `child`.
fn kill_when(mut child: std::process::Child, what: &str, done: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !done() {
        assert!(t0.elapsed() < Duration::from_secs(60), "never saw {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: SIGKILL to the luna process this test started.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let _ = child.wait();
}

/// `files` files at a time for this workspace's remote.
fn set_jobs(ws: &Ws, files: usize) {
    let toml = ws
        .read("luna.toml")
        .replace("url =", &format!("jobs = {files}\nurl ="));
    ws.file("luna.toml", toml);
}

/// `kill -9` mid-push leaves no manifest; the next push sends only the missing files and
/// completes. `kill -9` mid-pull leaves no object; the next pull downloads only the files
/// the killed one had not completed. The result is byte-identical.
fn killed_push(store: Store) {
    let a = random_ws(&store, 40, 4);
    // two files at a time, so the kill lands with most of the 40 still to send
    set_jobs(&a, 2);
    let sent = || store.pushed_files();
    kill_when(
        spawn(&a, &["cache", "push", "rand"]),
        "a file on the remote",
        || sent() >= 1,
    );
    assert!(
        store.manifests().is_empty(),
        "a manifest after kill -9: {:?}",
        store.manifests()
    );
    let done_before = sent();
    assert!(done_before < 40, "the push had finished before the kill");
    let o = luna(&a, &["cache", "push", "rand"]);
    o.expect_code(0);
    assert!(
        o.stdout.starts_with(&format!(
            "pushed 1 objects to team ({} files",
            40 - done_before
        )),
        "{} (had {done_before})",
        o.stdout
    );
    assert!(
        o.stdout
            .contains(&format!("{done_before} files already there")),
        "{}",
        o.stdout
    );

    let b = Ws::new();
    b.pipeline("rand", &a.read("pipelines/rand.yaml"));
    store.add_to(&b);
    set_jobs(&b, 1);
    let arrived = || {
        b.ls("cache/tmp")
            .iter()
            .map(|t| b.ls(&format!("cache/tmp/{t}")).len())
            .sum::<usize>()
    };
    // three files begun: at least two complete
    kill_when(
        spawn(&b, &["cache", "pull", "rand"]),
        "files arriving",
        || arrived() >= 3,
    );
    assert!(b.ls("cache/objects").is_empty(), "an object after kill -9");
    let o = luna(&b, &["cache", "pull", "rand"]);
    o.expect_code(0);
    let resumed: usize = o
        .stdout
        .split("; ")
        .find_map(|p| p.strip_suffix(" files resumed from an interrupted pull\n"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no resumed files: {}", o.stdout));
    assert!((2..40).contains(&resumed), "{}", o.stdout);
    assert_eq!(
        tree(&data_artifact(&a, "rand", "a")),
        tree(&data_artifact(&b, "rand", "a"))
    );
    assert!(b.ls("cache/tmp").is_empty(), "{:?}", b.ls("cache/tmp"));
}

on_both!(
    team_s3_killed_push_resumes,
    team_file_killed_push_resumes,
    killed_push
);

/// Two members computed the same key with different bytes and push at once: the remote ends
/// with one manifest, it verifies, and a pull gets exactly one member's copy. The files
/// (34 MiB) go up as multipart uploads (`multipart_mib = 32`; the default is 200).
fn concurrent(store: Store) {
    let (a, b) = (random_ws(&store, 3, 34), random_ws(&store, 3, 34));
    for ws in [&a, &b] {
        let toml = ws
            .read("luna.toml")
            .replace("url =", "multipart_mib = 32\nurl =");
        ws.file("luna.toml", toml);
    }
    let (ta, tb) = (
        tree(&data_artifact(&a, "rand", "a")),
        tree(&data_artifact(&b, "rand", "a")),
    );
    assert_ne!(ta, tb);
    let push = ["cache", "push", "rand"];
    let (pa, pb) = (spawn(&a, &push), spawn(&b, &push));
    for p in [pa, pb] {
        let o = p.wait_with_output().expect("wait");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(store.manifests().len(), 1);
    let v = luna(&a, &["cache", "verify", "--remote"]);
    v.expect_code(0);
    assert!(v.stdout.contains("1 ok, 0 corrupt"), "{}", v.stdout);
    let c = Ws::new();
    c.pipeline("rand", &a.read("pipelines/rand.yaml"));
    store.add_to(&c);
    luna(&c, &["cache", "pull", "rand"]).expect_code(0);
    let tc = tree(&data_artifact(&c, "rand", "a"));
    assert!(
        tc == ta || tc == tb,
        "the pulled copy mixes the two members' files"
    );
}

on_both!(
    team_s3_concurrent_pushes_leave_one_copy,
    team_file_concurrent_pushes_leave_one_copy,
    concurrent
);

/// Bad input: each a one-line error with a hint, exit code 2, nothing changed.
#[test]
fn team_bad_remotes_are_clear_errors() {
    let Some(Store::S3(s3)) = Store::s3() else {
        return;
    };
    let Some(auth) = S3::start(true) else {
        return;
    };
    let ws = Ws::new();
    ws.pipeline("p", "pipeline: p\nstages:\n  a:\n    uses: command\n    with: { run: \"echo x > $LUNA_OUT/x\" }\n");
    ws.luna(&["run", "p"]).expect_code(0);
    let dead = format!("http://127.0.0.1:{}", free_port());
    for (name, url, endpoint) in [
        ("down", "s3://team/luna", dead.as_str()),
        ("nobucket", "s3://no-such-bucket/luna", s3.endpoint.as_str()),
        ("auth", "s3://team/luna", auth.endpoint.as_str()),
    ] {
        ws.luna(&["remote", "add", name, url, "--endpoint", endpoint])
            .expect_code(0);
    }
    ws.luna(&["remote", "add", "gone", "file:///nonexistent/luna-share"])
        .expect_code(0);
    let toml = ws.read("luna.toml");
    let objects = ws.ls("cache/objects");
    let cases = [
        (
            "nope",
            "error: unknown remote `nope` (luna.toml names: auth, down, gone, nobucket)",
            "luna remote add nope URL",
        ),
        (
            "down",
            "error: remote `down` (s3://team/luna) is unreachable: ",
            "is the server running?",
        ),
        (
            "nobucket",
            "error: remote `nobucket`: bucket `no-such-bucket` does not exist",
            "create the bucket `no-such-bucket`",
        ),
        (
            "auth",
            "error: remote `auth` refused the credentials: InvalidAccessKeyId",
            "AWS_ACCESS_KEY_ID",
        ),
        (
            "gone",
            "error: remote `gone`: folder /nonexistent/luna-share does not exist",
            "mount the share",
        ),
    ];
    for (remote, msg, hint) in cases {
        for args in [
            vec!["cache", "push", "p", "--remote", remote],
            vec!["cache", "pull", "p", "--remote", remote],
            vec!["run", "p", "--pull", "--remote", remote],
        ] {
            let o = luna(&ws, &args);
            o.expect_code(2);
            let lines: Vec<&str> = o.stderr.lines().collect();
            assert_eq!(lines.len(), 2, "{args:?}: {}", o.stderr);
            assert!(lines[0].starts_with(msg), "{args:?}: {}", o.stderr);
            assert!(
                lines[1].starts_with("  = hint: ") && lines[1].contains(hint),
                "{args:?}: {}",
                o.stderr
            );
        }
    }
    assert_eq!(ws.read("luna.toml"), toml);
    assert_eq!(ws.ls("cache/objects"), objects);
    assert_eq!(
        ws.runs().len(),
        1,
        "a failed remote check must not start a run"
    );
    // no credentials anywhere: said so (exit 2); a profile of an AWS credentials file works
    ws.luna(&[
        "remote",
        "add",
        "ok",
        "s3://team/luna",
        "--endpoint",
        &s3.endpoint,
    ])
    .expect_code(0);
    let toml = ws.read("luna.toml");
    let bare = |extra: &[(&str, &str)]| {
        let mut c = ws.command(&["cache", "push", "p", "--remote", "ok"]);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", ws.path("nohome")).envs(extra.iter().copied());
        c.output().expect("run luna")
    };
    let o = bare(&[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.starts_with(
            "error: remote `ok`: no AWS credentials found\n  = hint: set AWS_ACCESS_KEY_ID"
        ),
        "{err}"
    );
    ws.file("aws/credentials", format!("[default]\naws_access_key_id = nope\n\n[lab]\naws_access_key_id = {KEY_ID}\naws_secret_access_key = {SECRET}\n"));
    let creds = ws.path("aws/credentials");
    let creds = creds.to_string_lossy();
    let o = bare(&[
        ("AWS_SHARED_CREDENTIALS_FILE", &creds),
        ("AWS_PROFILE", "lab"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("pushed 1 objects to ok"));
    // bad names and URLs are refused before luna.toml is written
    let o = ws.luna(&["remote", "add", "x", "s3://Bad_Bucket/x"]);
    o.expect_code(2);
    assert!(
        o.stderr
            .starts_with("error: remote `x`: bad URL s3://Bad_Bucket/x: "),
        "{}",
        o.stderr
    );
    ws.luna(&["remote", "add", "down", "s3://team/x"])
        .expect_code(2);
    assert_eq!(ws.read("luna.toml"), toml);
}
