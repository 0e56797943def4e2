//! Issue 24, acceptance: a property test of `pull` over generated remote manifests and
//! partition lists (10,000 by default; `LUNA_FUZZ_CASES` sets the number). Keys and
//! partition keys mix `..`, `/`, `%2E`, `%2F`, multibyte characters, NUL, valid hex and huge
//! strings; manifests are also byte-mutated. Every hostile partition's manifest is planted
//! where the object store looks for it, so a pull that trusted a key would follow it.
//!
//! Properties: nothing is created outside the cache (the folders from the cache up to the
//! test's base folder are listed before and after, and no entry named with the run's tag
//! appears in the base's parent, `/tmp` or `/`), no panic (each pull under `catch_unwind`),
//! no hang (a watchdog fails the test when a case takes over 20 s).
//!
//! In-process through the engine's library API (`Remote::pull`, `Fetcher::fetch`) over a
//! `file://` remote: spawning the binary 10,000 times would take minutes.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use luna_engine::cache::Cache;
use luna_engine::remote::{Fetcher, Remote, RemoteSpec};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use crate::harden_remote::{manifest, put_manifest_at};

fn cases() -> usize {
    std::env::var("LUNA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Pieces a hostile key is made of.
const PIECES: &[&str] = &[
    "..",
    "../",
    "/",
    ".",
    "%2E",
    "%2e",
    "%2E%2E",
    "%2F",
    "%2f",
    "€",
    "é",
    "a€bc",
    "\0",
    "\\",
    "~",
    "objects",
    "manifest.json",
    "tmp",
    "locks",
    "ab",
    "AB",
    " ",
    "\n",
    "%",
    "%%",
    "#",
];

/// A generated string that is usually not a key (`tag` marks anything it could create).
fn hostile(rng: &mut Pcg64, tag: &str) -> String {
    match rng.random_range(0..10) {
        0 => "a".repeat(rng.random_range(1..3) * 64),
        1 => {
            // huge
            let unit = PIECES[rng.random_range(0..PIECES.len())];
            unit.repeat(rng.random_range(1_000..6_000))
        }
        2 => format!("{}{tag}", "../".repeat(rng.random_range(1..8))),
        3 => {
            // 64 characters, one of them not hex
            let mut s: Vec<char> = "0123456789abcdef".repeat(4).chars().collect();
            let at = rng.random_range(0..64);
            s[at] = ['€', 'G', '.', '/', 'é', 'A'][rng.random_range(0..6)];
            s.into_iter().collect()
        }
        _ => {
            let n = rng.random_range(1..8);
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(PIECES[rng.random_range(0..PIECES.len())]);
            }
            s.push_str(tag);
            s
        }
    }
}

/// A valid key.
fn key(rng: &mut Pcg64) -> String {
    (0..64)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Every path under `dir` outside `skip` (sorted; links not followed).
fn listing(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| !e.path().starts_with(skip))
        .flatten()
        .map(|e| e.into_path())
        .collect();
    v.sort();
    v
}

/// Names under `dir` (one level) that contain `tag`.
fn tagged(dir: &Path, tag: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(tag))
        .collect()
}

/// One case: a top object (valid key) whose manifest lists hostile partitions (each planted),
/// pulled by key list and by the `run --pull` hook, plus the hostile strings asked directly.
fn one_case(rng: &mut Pcg64, remote: &Remote, dir: &Path, cache: &Cache, tag: &str) {
    let top = key(rng);
    let parts: Vec<String> = (0..rng.random_range(0..5))
        .map(|_| hostile(rng, tag))
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let mut bytes = manifest(&top, &refs, Vec::new()).to_string().into_bytes();
    if rng.random_range(0..4) == 0 && !bytes.is_empty() {
        // a byte-mutated manifest
        let at = rng.random_range(0..bytes.len());
        bytes[at] = rng.random();
    }
    // a name the file system refuses (NUL, too long) simply is not planted
    let _ = put_manifest_at(dir, &top, &bytes);
    for p in &parts {
        let nested = hostile(rng, tag);
        let m = manifest(p, &[nested.as_str()], Vec::new()).to_string();
        let _ = put_manifest_at(dir, p, m.as_bytes());
    }
    let mut asked = vec![top.clone()];
    asked.extend(parts.iter().take(2).cloned());
    // errors are fine (a refused object); a panic or a hang is not
    let _ = remote.pull(cache, &asked);
    let _ = remote.fetch(cache, &top);
    if let Some(p) = parts.first() {
        let _ = remote.fetch(cache, p);
    }
    // the next case lists a remote of its own size, not of all the cases before it
    let _ = std::fs::remove_dir_all(dir.join("objects"));
}

#[test]
fn harden_remote_fuzz_pull_stays_inside_the_cache() {
    // on tmpfs where there is one: the cases' commits then cost no disk flushes
    let shm = Path::new("/dev/shm");
    let base = tempfile::Builder::new()
        .prefix("luna-pullfuzz-")
        .tempdir_in(if shm.is_dir() { shm } else { Path::new("/tmp") })
        .expect("temp dir");
    let tag = format!("lunafuzz{}", std::process::id());
    let remote_dir = base.path().join("remote");
    std::fs::create_dir_all(&remote_dir).expect("mkdir");
    // deep enough that 8 `../` from objects/<shard>/ stay inside base
    let cache_dir = base.path().join("z1/z2/z3/z4/z5/z6/z7/z8/cache");
    let cache = Cache::open(&cache_dir).expect("open cache");
    let remote = Remote::open(&RemoteSpec {
        name: "fuzz".into(),
        url: format!("file://{}", remote_dir.display()),
        jobs: 2,
        ..Default::default()
    })
    .expect("open remote");
    let zone = base.path().join("z1");
    let before = listing(&zone, &cache_dir);
    let parent = base.path().parent().expect("parent").to_path_buf();
    let n = cases();
    let (tx, rx) = mpsc::channel::<usize>();
    let worker = {
        let (tag, remote_dir, cache) = (tag.clone(), remote_dir.clone(), cache.clone());
        std::thread::spawn(move || {
            let mut rng = Pcg64::seed_from_u64(24);
            for i in 0..n {
                let r = catch_unwind(AssertUnwindSafe(|| {
                    one_case(&mut rng, &remote, &remote_dir, &cache, &tag)
                }));
                if let Err(p) = r {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    panic!("case {i} panicked: {msg}");
                }
                if tx.send(i).is_err() {
                    return;
                }
            }
        })
    };
    let mut done = 0;
    while done < n {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(i) => done = i + 1,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("pull hung at case {done}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    if let Err(p) = worker.join() {
        std::panic::resume_unwind(p);
    }
    assert_eq!(done, n, "the worker stopped early");
    assert_eq!(
        listing(&zone, &cache_dir),
        before,
        "something was created outside the cache"
    );
    for dir in [
        base.path(),
        parent.as_path(),
        Path::new("/tmp"),
        Path::new("/"),
    ] {
        assert!(
            tagged(dir, &tag).is_empty(),
            "{tag} entries in {}",
            dir.display()
        );
    }
    // inside the cache: no entry outside its own folders
    let top: Vec<String> = std::fs::read_dir(&cache_dir)
        .expect("ls cache")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for name in &top {
        assert!(
            ["objects", "tmp", "locks"].contains(&name.as_str()),
            "unexpected {name} in the cache"
        );
    }
    println!("{n} pull cases: nothing outside the cache, no panic, no hang");
}
