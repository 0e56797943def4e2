//! Issue 14 point 11, first half: a disk that fills up while a stage writes its output. The
//! cache dir sits on a tiny tmpfs that the test mounts itself, so the file system is really
//! full (no fault injection): `unshare --user --map-root-user --mount` (util-linux; works
//! unprivileged where user namespaces are allowed), else, as root, `unshare --mount` or a plain
//! `mount`. None of them working is a failure, never a skip. Each run checks, inside the mount,
//! the exit code, the message ("no space left on device", the cache dir, `luna cache gc`, no
//! path of the deleted tmp file), that no object of the failed stages was committed and that
//! no tmp folder is left.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::data_support::data_synth;
use crate::engine_support::Ws;

/// What `luna run` did on the full file system, read back after the mount is gone.
struct FullDisk {
    code: i32,
    stderr: String,
    /// The cache dir as luna was given it (on the tmpfs).
    cache: String,
    /// Every path under the cache dir after the run, relative, sorted.
    files: Vec<String>,
    /// The stage of every committed object's manifest.
    committed: Vec<String>,
}

/// The shell script run inside the mount: mounts a `kib` KiB tmpfs on `$MNT`, runs `luna run
/// disk` with the cache dir on it (one stage at a time, so which write fails first is fixed), then records what the cache holds into `$OUT` (on the real
/// disk, so it outlives the mount).
const SCRIPT: &str = r#"
set -u
mount -t tmpfs -o "size=${KIB}k" luna-full "$MNT" || exit 97
: > "$OUT/mounted"
cd "$WS"
"$LUNA" run disk -j 1 --cache-dir "$MNT/cache" > "$OUT/stdout" 2> "$OUT/stderr"
echo $? > "$OUT/code"
(cd "$MNT/cache" && find . | sort) > "$OUT/files"
for m in "$MNT"/cache/objects/*/*/manifest.json; do
  [ -f "$m" ] && grep -o '"stage": *"[^"]*"' "$m" >> "$OUT/committed"
done
: >> "$OUT/committed"
if [ -n "${UNMOUNT:-}" ]; then umount "$MNT"; fi
exit 0
"#;

/// Runs pipeline `disk` of `ws` with its cache on a fresh `kib` KiB tmpfs.
fn run_on_full_tmpfs(ws: &Ws, kib: u64) -> FullDisk {
    let mnt = ws.path("mnt");
    let out = ws.path("out");
    std::fs::create_dir_all(&mnt).expect("mkdir mnt");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut tried = Vec::new();
    let ways: [(&str, &[&str], bool); 3] = [
        (
            "unshare",
            &["--user", "--map-root-user", "--mount", "sh", "-c", SCRIPT],
            false,
        ),
        ("unshare", &["--mount", "sh", "-c", SCRIPT], false),
        ("sh", &["-c", SCRIPT], true),
    ];
    for (i, (prog, args, unmount)) in ways.iter().enumerate() {
        if i > 0 && !root {
            break;
        }
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).expect("mkdir out");
        let mut c = Command::new(prog);
        c.args(*args)
            .env("KIB", kib.to_string())
            .env("MNT", &mnt)
            .env("OUT", &out)
            .env("WS", ws.root())
            .env("LUNA", crate::bin("luna"))
            .env("LUNA_TEST_KINDS", "1")
            .env_remove("LUNA_CACHE_DIR")
            .stdin(Stdio::null());
        if *unmount {
            c.env("UNMOUNT", "1");
        }
        let o = c.output().expect("start sh");
        if out.join("mounted").exists() {
            assert!(o.status.success(), "{prog} {args:?}: {o:?}");
            return read_back(&out, &mnt);
        }
        tried.push(format!(
            "{prog} {}: {}",
            args[..args.len() - 1].join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    panic!(
        "could not mount a tmpfs for the full-disk test (root: {root}); tried:\n{}",
        tried.join("\n")
    );
}

fn read_back(out: &Path, mnt: &Path) -> FullDisk {
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    FullDisk {
        code: read("code").trim().parse().expect("luna's exit code"),
        stderr: read("stderr"),
        cache: mnt.join("cache").display().to_string(),
        files: read("files").lines().map(str::to_string).collect(),
        committed: read("committed")
            .lines()
            .filter_map(|l| l.rsplit('"').nth(1).map(str::to_string))
            .collect(),
    }
}

/// The failure report of `stage` in luna's stderr: its `FAILED` line and the `error:` and
/// `hint:` lines under it.
fn failure_of(stderr: &str, stage: &str) -> String {
    let lines: Vec<&str> = stderr.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("FAILED") && l.trim_end().ends_with(&format!(" {stage}")))
        .unwrap_or_else(|| panic!("no FAILED line of stage {stage} in:\n{stderr}"));
    lines[at..]
        .iter()
        .take(3)
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_space(d: &FullDisk, stage: &str) {
    let f = failure_of(&d.stderr, stage);
    assert!(
        f.contains("no space left on device")
            && f.contains(&format!("the cache dir {} is full", d.cache))
            && f.contains("luna cache gc"),
        "{stage}: wrong message:\n{}",
        d.stderr
    );
    assert!(
        !d.stderr.contains(&format!("{}/tmp", d.cache)) && !d.stderr.contains("HDF5 failed"),
        "{stage}: the message names the deleted tmp file or the library:\n{}",
        d.stderr
    );
}

/// The stage log of `stage` (its one run in `ws`) names the cause HDF5 itself reported.
fn assert_log_says_enospc(ws: &Ws, stage: &str) {
    let runs: Vec<_> = std::fs::read_dir(ws.path("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let log = std::fs::read_to_string(runs[0].join("logs").join(format!("{stage}.log")))
        .expect("the stage log");
    assert!(
        log.contains("HDF5 failed to ") && log.contains("No space left on device (os error 28)"),
        "{stage}.log:\n{log}"
    );
}

/// No tmp folder left: `tmp/` is empty (or absent).
fn assert_no_tmp(d: &FullDisk) {
    let left: Vec<&String> = d.files.iter().filter(|f| f.starts_with("./tmp/")).collect();
    assert!(left.is_empty(), "tmp folders left: {left:?}");
}

fn ws_with(stages: &str) -> Ws {
    let ws = Ws::new();
    data_synth(&ws, "ext", 3, 2);
    ws.pipeline(
        "disk",
        &format!(
            "pipeline: disk\nstages:\n  \
             annotations: {{ uses: load_annotations, with: {{ annotations: ext/annotations_with_malignancy.csv, candidates: ext/candidates.csv }} }}\n  \
             candidates: {{ uses: merge_candidates, needs: [annotations], with: {{ val_stride: 2, ct_root: ext }} }}\n{stages}"
        ),
    );
    ws
}

#[test]
fn disk_full_inside_hdf5_says_no_space_left_with_the_cache_dir() {
    // 400 KiB: the two Parquet stages (~40 KB) fit; no crops partition (~1.3 MB) does, nor the
    // training CT's seg partition (~0.6 MB; the validation CT's, ~50 KB, may).
    let ws = ws_with(
        "  crops: { uses: build_crops, needs: [candidates], with: { ct_root: ext, level: 1 } }\n  \
         seg: { uses: seg_dataset, needs: [candidates], with: { ct_root: ext, crop: 32 } }\n",
    );
    let d = run_on_full_tmpfs(&ws, 400);
    assert_eq!(d.code, 1, "exit code; stderr:\n{}", d.stderr);
    assert_no_space(&d, "crops");
    assert_no_space(&d, "seg");
    assert_log_says_enospc(&ws, "crops");
    assert_log_says_enospc(&ws, "seg");
    let mut whole: Vec<&String> = d.committed.iter().filter(|s| !s.contains('[')).collect();
    whole.sort();
    assert_eq!(whole, ["annotations", "candidates"], "{:?}", d.committed);
    assert!(
        d.committed
            .iter()
            .filter(|s| s.starts_with("crops["))
            .count()
            == 0
            && d.committed.iter().filter(|s| s.starts_with("seg[")).count() <= 1,
        "{:?}",
        d.committed
    );
    assert_no_tmp(&d);
}

#[test]
fn disk_full_writing_parquet_says_no_space_left_with_the_cache_dir() {
    // 16 KiB: the candidates table (a few thousand rows) does not fit.
    let ws = ws_with("");
    let d = run_on_full_tmpfs(&ws, 16);
    assert_eq!(d.code, 1, "exit code; stderr:\n{}", d.stderr);
    let failed = if d.committed.is_empty() {
        "annotations"
    } else {
        "candidates"
    };
    assert_no_space(&d, failed);
    assert!(
        !d.committed.iter().any(|s| s == failed),
        "{:?}",
        d.committed
    );
    assert_no_tmp(&d);
}

#[test]
fn disk_full_inside_the_torch_worker_says_no_space_left_with_the_cache_dir() {
    // the worker (luna-torch) writes a 1 MiB partition file into a 64 KiB file system: its
    // error crosses the process boundary as text plus the out-of-space flag
    let ws = Ws::new();
    ws.file("items/a.bin", b"abc");
    ws.pipeline(
        "disk",
        "pipeline: disk\nstages:\n  t: { uses: test_torch_partitions, with: { items: items, pad_bytes: 1048576 } }\n",
    );
    let d = run_on_full_tmpfs(&ws, 64);
    assert_eq!(d.code, 1, "exit code; stderr:\n{}", d.stderr);
    assert_no_space(&d, "t");
    assert!(d.committed.is_empty(), "{:?}", d.committed);
    assert_no_tmp(&d);
    let runs: Vec<_> = std::fs::read_dir(ws.path("runs"))
        .expect("runs/")
        .map(|e| e.expect("entry").path())
        .collect();
    let log = std::fs::read_to_string(runs[0].join("logs").join("t.log")).expect("t.log");
    assert!(
        log.contains("pad.bin") && log.contains("No space left on device"),
        "t.log:\n{log}"
    );
}
