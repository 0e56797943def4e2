//! Issue 24, points 1 and 5: a malicious remote must not write outside the cache, and a
//! partition key that is not a key (`../../../victim`, `a€bc`) is refused with an error
//! naming the remote and the key, never a panic, and `run --pull` never hangs.
//!
//! The remote is a `file://` folder written by hand here (what an attacker with write access
//! to a team's share can write): a valid object whose manifest lists a hostile partition key,
//! and the hostile partition's own manifest stored where the object store looks for it
//! (`objects/%2E%2E/..%2F..%2F..%2Fvictim/manifest.json`, object_store's encoding of the
//! path parts `..` and `../../../victim`).

use crate::engine_support::{b3, one_command, Out, Ws};
use crate::harden_inputs::luna_bounded;
use std::path::{Path, PathBuf};

/// The hostile partition key: from `<cache>/objects/` it climbs to `<ws>/deep/a/victim`.
pub(crate) const CLIMB: &str = "../../../victim";

/// A workspace with pipeline `p`, a nested cache (`deep/a/b/cache`) and a victim folder next
/// to it (`deep/a/victim/secret.txt`), no remote yet.
pub(crate) fn victim_ws() -> Ws {
    let ws = Ws::new();
    ws.pipeline("p", &one_command("echo hi > $LUNA_OUT/a.txt"));
    ws.file("deep/a/victim/secret.txt", "the user's own file\n");
    std::fs::create_dir_all(ws.path("deep/a/b/cache")).expect("mkdir cache");
    ws
}

/// A workspace with a nested cache (`deep/a/b/cache`), a victim folder next to it
/// (`deep/a/victim/secret.txt`) and a `file://` remote `r` at `remote/`.
fn attacked_ws() -> Ws {
    let ws = victim_ws();
    std::fs::create_dir_all(ws.path("remote")).expect("mkdir remote");
    let url = format!("file://{}", ws.path("remote").display());
    ws.luna(&["remote", "add", "r", &url]).expect_code(0);
    ws
}

pub(crate) fn cache_dir(ws: &Ws) -> String {
    ws.path("deep/a/b/cache").display().to_string()
}

/// Stores `manifest` (a JSON object whose `key` is `key`) on the remote where object_store
/// reads it.
fn put_manifest(ws: &Ws, key: &str, manifest: &serde_json::Value) {
    put_manifest_at(&ws.path("remote"), key, manifest.to_string().as_bytes())
        .expect("write manifest");
}

/// A path part as object_store's `PathPart` encodes it (how a `file://` remote names it).
fn store_part(s: &str) -> String {
    match s {
        "." => "%2E".into(),
        ".." => "%2E%2E".into(),
        _ => s
            .bytes()
            .map(|b| match b {
                b'/' | b'%' | b'\\' | b'#' | b'{' | b'}' | b'[' | b']' | b'<' | b'>' | b'|'
                | b'^' | b'`' | b'~' | b'"' => format!("%{b:02X}"),
                b if !(0x20..0x7f).contains(&b) => format!("%{b:02X}"),
                _ => (b as char).to_string(),
            })
            .collect::<Vec<_>>()
            .concat(),
    }
}

/// Writes manifest `bytes` for `key` under the `file://` remote folder `remote` where a pull
/// looks for it (its first two characters as the shard, as luna names it).
pub fn put_manifest_at(remote: &Path, key: &str, bytes: &[u8]) -> std::io::Result<()> {
    let shard: String = key.chars().take(2).collect();
    let dir = remote
        .join("objects")
        .join(store_part(&shard))
        .join(store_part(key));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("manifest.json"), bytes)
}

/// Stores a file's bytes on the remote under its blake3; returns the manifest entry.
fn put_file(ws: &Ws, path: &str, bytes: &[u8]) -> serde_json::Value {
    let h = b3(bytes);
    ws.file(&format!("remote/files/{}/{h}", &h[..2]), bytes);
    serde_json::json!({ "path": path, "size": bytes.len(), "blake3": h })
}

/// A manifest for `key` listing `partitions` and `files`.
pub fn manifest(
    key: &str,
    partitions: &[&str],
    files: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({
        "luna_manifest": 1, "key": key, "stage": "a", "pipeline": "p", "kind": "command",
        "version": 1, "params": {}, "upstream": {}, "inputs": [], "partitions": partitions,
        "files": files, "luna_version": "0", "created": "2026-01-01T00:00:00Z", "duration_s": 0.0
    })
}

/// Every path under `dir` (relative, sorted), symlinks not followed.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .map(|e| e.path().strip_prefix(dir).expect("below").to_path_buf())
        .collect();
    v.sort();
    v
}

/// What is under `deep/` outside the cache (the victim folder and the cache's parents).
pub(crate) fn outside(ws: &Ws) -> Vec<PathBuf> {
    listing(&ws.path("deep"))
        .into_iter()
        .filter(|p| !p.starts_with("a/b/cache"))
        .collect()
}

/// The key of stage `a` of pipeline `p` (computed once in a throw-away cache, then removed).
pub(crate) fn key_of_a(ws: &Ws) -> String {
    ws.luna(&["run", "p"]).expect_code(0);
    let key = ws.last_run()["stages"][0]["key"]
        .as_str()
        .expect("a key")
        .to_string();
    rm_tree(&ws.path("cache"));
    std::fs::remove_dir_all(ws.path("runs")).expect("rm runs");
    key
}

/// Sets up the remote: the real object of `a` (key `key`) whose manifest lists `bad` as a
/// partition, and `bad`'s own manifest with a file `pwn.txt`.
fn plant(ws: &Ws, key: &str, bad: &str) {
    let hi = put_file(ws, "a.txt", b"hi\n");
    put_manifest(ws, key, &manifest(key, &[bad], vec![hi]));
    let pwn = put_file(ws, "pwn.txt", b"attacker's content\n");
    put_manifest(ws, bad, &manifest(bad, &[], vec![pwn]));
}

pub(crate) fn assert_refused(ws: &Ws, o: &Out, bad: &str, before: &[PathBuf]) {
    assert_ne!(o.code, 101, "luna panicked:\n{}", o.stderr);
    assert_eq!(
        outside(ws),
        before,
        "something was created or moved outside the cache:\n{}\n{}",
        o.stdout,
        o.stderr
    );
    assert_eq!(ws.read("deep/a/victim/secret.txt"), "the user's own file\n");
    let all = format!("{}{}", o.stdout, o.stderr);
    assert!(
        all.contains(&format!("{bad:?}")) && all.contains("not a key"),
        "the message names neither the bad key nor what is wrong (exit {}):\n{all}",
        o.code
    );
    assert!(all.contains("remote r") || all.contains("r:"), "{all}");
}

/// A workspace attacked with partition key `bad`, `luna --cache-dir <nested cache> ARGS` run
/// in it (a hang fails the test), and what lay outside the cache before.
fn attack(bad: &str, args: &[&str]) -> (Ws, Out, Vec<PathBuf>) {
    let ws = attacked_ws();
    let key = key_of_a(&ws);
    plant(&ws, &key, bad);
    let before = outside(&ws);
    let cache = cache_dir(&ws);
    let mut all = vec!["--cache-dir", cache.as_str()];
    all.extend_from_slice(args);
    let o = luna_bounded(&ws, &all);
    (ws, o, before)
}

#[test]
fn harden_remote_pull_refuses_climbing_partition_key() {
    let (ws, o, before) = attack(CLIMB, &["cache", "pull"]);
    assert_refused(&ws, &o, CLIMB, &before);
    assert_eq!(o.code, 1, "a refused object exits 1:\n{}", o.stderr);
}

#[test]
fn harden_remote_run_pull_refuses_climbing_partition_key() {
    let (ws, o, before) = attack(CLIMB, &["run", "p", "--pull"]);
    assert_refused(&ws, &o, CLIMB, &before);
}

#[test]
fn harden_remote_pull_multibyte_partition_key_no_panic() {
    let (ws, o, before) = attack("a€bc", &["cache", "pull"]);
    assert_refused(&ws, &o, "a€bc", &before);
}

/// Before the fix the fetcher panicked inside the stage's thread and the run waited forever.
#[test]
fn harden_remote_run_pull_multibyte_partition_key_no_hang() {
    let (ws, o, before) = attack("a€bc", &["run", "p", "--pull"]);
    assert_refused(&ws, &o, "a€bc", &before);
}

/// `cache verify --remote` reports the object whose manifest lists a climbing partition key
/// (it said "ok" before) and touches nothing outside the cache.
#[test]
fn harden_remote_verify_remote_reports_climbing_partition_key() {
    let (ws, o, before) = attack(CLIMB, &["cache", "verify", "--remote"]);
    assert_eq!(o.code, 1, "{}\n{}", o.stdout, o.stderr);
    assert_refused(&ws, &o, CLIMB, &before);
}

/// A run record naming a key that is not one (`cache gc` reads every record's keys):
/// nothing outside the cache is touched, and gc says which record is wrong.
#[test]
fn harden_remote_gc_ignores_bad_keys_in_run_records() {
    let ws = attacked_ws();
    ws.luna(&["--cache-dir", &cache_dir(&ws), "run", "p"])
        .expect_code(0);
    let run = ws.last_run();
    let id = run["id"].as_str().expect("id").to_string();
    let mut bad = run.clone();
    bad["stages"][0]["key"] = serde_json::json!(CLIMB);
    bad["stages"][0]["partitions"] = serde_json::json!(["a€bc"]);
    ws.file(&format!("runs/{id}/run.json"), bad.to_string());
    let before = outside(&ws);
    let o = luna_bounded(
        &ws,
        &[
            "--cache-dir",
            &cache_dir(&ws),
            "cache",
            "gc",
            "--keep-runs",
            "5",
        ],
    );
    assert_ne!(o.code, 101, "gc panicked:\n{}", o.stderr);
    assert_eq!(outside(&ws), before);
    assert!(o.stderr.contains("not a key"), "{}\n{}", o.stdout, o.stderr);
}

/// Deletes a cache folder (its objects are read-only).
pub fn rm_tree(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_dir() {
            let _ = std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o755));
        }
    }
    std::fs::remove_dir_all(dir).expect("rm cache");
}
