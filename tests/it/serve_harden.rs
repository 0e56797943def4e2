//! `luna detect` and `luna serve` against the defects of the adversarial run (issue 24, points
//! 6–10): a CT whose uid no dataset knows, a relative symlink, the disk (scratch, run records,
//! a free-space floor), the network (token, bytes in flight, trickled bodies, a busy parser)
//! and hostile CTs (truncated, wrong DimSize, a header that is its own data file).
//!
//! One trained workspace (the tiny system of `system::pipeline`) serves every test here; it is
//! trained once per test binary (the first test to need it) and removed when the process exits.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine_support::Ws;
use crate::serve::{comparable, http, multipart, read_response, Resp, Server};

/// The trained workspace (models, segmenter, the dataset's diagnosis) shared by this module.
fn trained() -> &'static Ws {
    static WS: OnceLock<Ws> = OnceLock::new();
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_root() {
        if let Some(r) = ROOT.get() {
            // best effort at exit: a leftover temp folder is all that a failure leaves
            let _ = std::fs::remove_dir_all(r);
        }
    }
    WS.get_or_init(|| {
        let ws = Ws::new();
        ws.pipeline("t", &crate::system::pipeline("t", ""));
        let _torch = crate::nn_support::torch_lock();
        let run = ws.luna(&["run", "t", "--until", "diagnosis"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let _ = ROOT.set(ws.root().to_path_buf());
        // SAFETY: registers a plain function without arguments to run at process exit.
        unsafe { libc::atexit(remove_root) };
        ws
    })
}

/// Tests here look at the shared workspace's folders (`runs/`, `.luna/serve/`): one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// One of the dataset's CTs: its header path, header text and data file name.
fn dataset_ct(ws: &Ws) -> (PathBuf, String, String) {
    let data = PathBuf::from(ws.luna(&["path", "t", "data"]).stdout.trim());
    // an uncompressed one: its truncation is a short file, not a broken zlib stream
    let mhd = walkdir::WalkDir::new(data)
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "mhd")
                && !std::fs::read_to_string(p)
                    .unwrap()
                    .contains("CompressedData = True")
        })
        .expect("the synthetic dataset has an uncompressed .mhd");
    let header = std::fs::read_to_string(&mhd).unwrap();
    let raw = header
        .lines()
        .find_map(|l| l.strip_prefix("ElementDataFile = "))
        .expect("a data file line")
        .trim()
        .to_string();
    (mhd, header, raw)
}

/// Writes the dataset CT as `<dir>/<uid>.mhd` + `<uid>.raw` (a series no dataset knows).
fn fresh_ct(ws: &Ws, dir: &Path, uid: &str) -> PathBuf {
    let (mhd, header, raw) = dataset_ct(ws);
    std::fs::create_dir_all(dir).unwrap();
    let text = header.replace(
        &format!("ElementDataFile = {raw}"),
        &format!("ElementDataFile = {uid}.raw"),
    );
    let to = dir.join(format!("{uid}.mhd"));
    std::fs::write(&to, text).unwrap();
    std::fs::copy(
        mhd.parent().unwrap().join(&raw),
        dir.join(format!("{uid}.raw")),
    )
    .unwrap();
    to
}

/// The multipart `/v1/detect` body of a header text and data bytes.
fn upload(uid: &str, header: &str, raw_name: &str, data: &[u8]) -> Vec<u8> {
    multipart(
        "b0undary",
        &[
            ("mhd", &format!("{uid}.mhd"), header.as_bytes()),
            ("raw", raw_name, data),
        ],
    )
}

fn detect(srv: &Server, body: &[u8], extra: &[(&str, &str)]) -> Resp {
    let mut h = vec![("Content-Type", "multipart/form-data; boundary=b0undary")];
    h.extend_from_slice(extra);
    http(&srv.addr, "POST", "/v1/detect", &h, body)
}

/// The fresh CT's upload body (uid `uid`).
fn fresh_upload(ws: &Ws, uid: &str) -> Vec<u8> {
    let (mhd, header, raw) = dataset_ct(ws);
    let data = std::fs::read(mhd.parent().unwrap().join(&raw)).unwrap();
    let header = header.replace(
        &format!("ElementDataFile = {raw}"),
        &format!("ElementDataFile = {uid}.raw"),
    );
    upload(uid, &header, &format!("{uid}.raw"), &data)
}

#[test]
fn detect_runs_on_a_fresh_uid_without_any_ground_truth() {
    let ws = trained();
    let _one = serial();
    let mhd = fresh_ct(ws, &ws.path("fresh6"), "9.9.9.fresh-six");
    let cli = ws.luna(&["detect", mhd.to_str().unwrap(), "--pipeline", "t", "--json"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let doc: Value = serde_json::from_str(&cli.stdout).unwrap();
    assert_eq!(doc["series"][0]["series_uid"], "9.9.9.fresh-six");
    assert!(doc["series"][0]["patient_score"].is_number(), "{doc}");
    // the same fresh CT through the server answers the same
    let srv = Server::start(ws, "fresh6", &[]);
    let r = detect(&srv, &fresh_upload(ws, "9.9.9.fresh-six"), &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), srv.log());
    assert_eq!(comparable(r.json()), comparable(doc));
}

#[test]
fn detect_resolves_a_relative_symlink_to_a_ct() {
    let ws = trained();
    let _one = serial();
    let real = fresh_ct(ws, &ws.path("real10"), "9.9.10.linked");
    let links = ws.path("links10");
    std::fs::create_dir_all(&links).unwrap();
    for f in ["9.9.10.linked.mhd", "9.9.10.linked.raw"] {
        std::os::unix::fs::symlink(Path::new("../real10").join(f), links.join(f)).unwrap();
    }
    let via = links.join("9.9.10.linked.mhd");
    let out = ws.luna(&["detect", via.to_str().unwrap(), "--pipeline", "t", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let direct = ws.luna(&[
        "detect",
        real.to_str().unwrap(),
        "--pipeline",
        "t",
        "--json",
    ]);
    assert_eq!(direct.code, 0, "{}", direct.stderr);
    let doc = |s: &str| comparable(serde_json::from_str(s).unwrap());
    assert_eq!(doc(&out.stdout), doc(&direct.stdout));
}

#[test]
fn serve_detect_keeps_no_scratch_and_rotates_its_run_records() {
    let ws = trained();
    let _one = serial();
    let before = ws.ls("runs");
    let staged = ws.ls(".luna/detect");
    let srv = Server::start(ws, "scratch7", &["--keep-runs", "2"]);
    for i in 0..3 {
        let r = detect(&srv, &fresh_upload(ws, &format!("9.9.7.{i}")), &[]);
        assert_eq!(r.status, 200, "{}\n{}", r.text(), srv.log());
        // nothing of the request is left once it is answered
        let left = ws.ls(".luna/serve/uploads");
        assert_eq!(left, Vec::<String>::new(), "upload scratch left behind");
        assert_eq!(ws.ls(".luna/detect"), staged);
    }
    // a failed detection leaves nothing either
    let bad = detect(
        &srv,
        &upload(
            "9.9.7.bad",
            "NDims = 3\nElementDataFile = x.raw\n",
            "x.raw",
            b"1",
        ),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(ws.ls(".luna/detect"), staged);
    // the server's runs: the last two, without a report; the workspace's runs/ untouched
    assert_eq!(ws.ls("runs"), before, "serve wrote into runs/");
    let kept = ws.ls(".luna/serve/runs");
    assert_eq!(kept.len(), 2, "{kept:?}");
    for k in &kept {
        let files = ws.ls(&format!(".luna/serve/runs/{k}"));
        assert!(files.contains(&"run.json".to_string()), "{files:?}");
        assert!(!files.iter().any(|f| f.starts_with("report")), "{files:?}");
    }
    drop(srv);
    // --keep-uploads keeps them (for debugging a client's CT)
    let srv = Server::start(ws, "keep7", &["--keep-uploads"]);
    let bad = detect(
        &srv,
        &upload(
            "9.9.7.kept",
            "NDims = 3\nElementDataFile = x.raw\n",
            "x.raw",
            b"1",
        ),
        &[],
    );
    assert_eq!(bad.status, 400, "{}", bad.text());
    let kept = ws.ls(".luna/serve/uploads");
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::remove_dir_all(ws.path(".luna/serve/uploads")).unwrap();
}

#[test]
fn serve_refuses_detections_when_the_disk_is_nearly_full() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(ws, "disk7", &["--min-free-disk", "1000000GiB"]);
    let r = detect(&srv, &fresh_upload(ws, "9.9.7.disk"), &[]);
    assert_eq!(r.status, 507, "{}", r.text());
    assert!(r.error().contains("--min-free-disk"), "{}", r.text());
    assert_eq!(ws.ls(".luna/serve/uploads"), Vec::<String>::new());
}

#[test]
fn serve_requires_its_bearer_token_and_refuses_an_open_address_without_one() {
    let ws = trained();
    let _one = serial();
    let tok = ws.path("token8");
    std::fs::write(&tok, "s3cret-token-eight\n").unwrap();
    let srv = Server::start(ws, "auth8", &["--token-file", tok.to_str().unwrap()]);
    for (auth, want) in [
        (None, 401),
        (Some("Bearer wrong"), 401),
        (Some("Bearer s3cret-token-eightx"), 401),
        (Some("Basic s3cret-token-eight"), 401),
        (Some("Bearer s3cret-token-eight"), 200),
    ] {
        let h: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = http(&srv.addr, "GET", "/v1/models", &h, b"");
        assert_eq!(r.status, want, "{auth:?}: {}", r.text());
        if want == 401 {
            assert_eq!(r.headers["www-authenticate"], "Bearer realm=\"luna\"");
        }
    }
    // health probes need no token
    assert_eq!(srv.get("/healthz").status, 200);
    drop(srv);
    let open = ws.luna(&["serve", "--pipeline", "t", "--addr", "0.0.0.0:0"]);
    assert_eq!(open.code, 2, "{}", open.stderr);
    assert!(open.stderr.contains("--token-file"), "{}", open.stderr);
    assert!(
        open.stderr.contains("--insecure-no-auth"),
        "{}",
        open.stderr
    );
    let srv = Server::start(ws, "open8", &["--addr", "0.0.0.0:0", "--insecure-no-auth"]);
    assert!(
        srv.log().contains("warning: serving on 0.0.0.0"),
        "{}",
        srv.log()
    );
}

#[test]
fn serve_bounds_the_bytes_in_flight_and_times_out_slow_bodies() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(
        ws,
        "inflight8",
        &["--max-inflight", "10MB", "--body-timeout-s", "3"],
    );
    let head = |len: usize| {
        format!("POST /v1/detect HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {len}\r\n\r\n")
    };
    // A holds 8 MB of the 10 MB while it trickles; B's 8 MB do not fit: 503 at once
    let mut a = TcpStream::connect(&srv.addr).unwrap();
    a.write_all(head(8_000_000).as_bytes()).unwrap();
    a.write_all(&[b'x'; 1000]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let b = http(
        &srv.addr,
        "POST",
        "/v1/detect",
        &[
            ("Content-Type", "multipart/form-data; boundary=b0undary"),
            ("Content-Length", "8000000"),
        ],
        b"",
    );
    assert_eq!(b.status, 503, "{}", b.text());
    assert_eq!(b.headers["retry-after"], "1");
    assert!(b.error().contains("--max-inflight"), "{}", b.text());
    assert!(t0.elapsed() < Duration::from_secs(2));
    // A trickles one byte a second: closed with 408 after the body timeout
    a.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let trickle = std::thread::spawn({
        let mut a = a.try_clone().unwrap();
        move || {
            for _ in 0..15 {
                if a.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    });
    let r = read_response(&mut a);
    let waited = t0.elapsed();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    trickle.join().unwrap();
    // the budget is free again
    let c = http(
        &srv.addr,
        "POST",
        "/v1/detect",
        &[("Content-Type", "multipart/form-data; boundary=b0undary")],
        &upload(
            "9.9.8.c",
            "NDims = 3\nElementDataFile = x.raw\n",
            "x.raw",
            &[b'y'; 7_000_000],
        ),
    );
    assert_eq!(c.status, 400, "{}", c.text());
}

#[test]
fn serve_health_stays_fast_while_large_bodies_are_parsed() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(ws, "parse8", &[]);
    // two 160 MB multipart bodies (the data part last, so the parser scans all of it)
    let big = upload(
        "9.9.8.big",
        "NDims = 3\nElementDataFile = x.raw\n",
        "x.raw",
        &vec![b'z'; 160 << 20],
    );
    let worst = std::thread::scope(|s| {
        let senders: Vec<_> = (0..2)
            .map(|_| s.spawn(|| detect(&srv, &big, &[]).status))
            .collect();
        let mut worst = Duration::ZERO;
        while !senders.iter().all(|h| h.is_finished()) {
            let t = Instant::now();
            assert_eq!(srv.get("/healthz").status, 200);
            worst = worst.max(t.elapsed());
            std::thread::sleep(Duration::from_millis(20));
        }
        for h in senders {
            assert_eq!(h.join().unwrap(), 400);
        }
        worst
    });
    println!("/healthz while two 160 MB bodies were parsed: slowest {worst:?}");
    assert!(
        worst < Duration::from_millis(500),
        "/healthz took {worst:?}"
    );
}

#[test]
fn serve_answers_bad_cts_with_400_naming_the_problem_without_server_paths() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(ws, "bad9", &[]);
    let root = ws.root().to_string_lossy().into_owned();
    let (mhd, header, raw) = dataset_ct(ws);
    let data = std::fs::read(mhd.parent().unwrap().join(&raw)).unwrap();
    let uid = "9.9.9.bad";
    let as_uid = header.replace(
        &format!("ElementDataFile = {raw}"),
        "ElementDataFile = u.raw",
    );
    let dims = as_uid
        .lines()
        .find(|l| l.starts_with("DimSize"))
        .unwrap()
        .to_string();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            upload(uid, &as_uid, "u.raw", &data[..data.len() / 2]),
            "truncated data",
        ),
        (
            "dimsize",
            upload(
                uid,
                &as_uid.replace(&dims, "DimSize = 7 7 7"),
                "u.raw",
                &data,
            ),
            "DimSize",
        ),
        (
            "itself",
            upload(
                uid,
                &as_uid.replace(
                    "ElementDataFile = u.raw",
                    &format!("ElementDataFile = {uid}.mhd"),
                ),
                "u.raw",
                &data,
            ),
            "its own data file",
        ),
    ];
    for (what, body, says) in cases {
        let r = detect(&srv, &body, &[]);
        assert_eq!(r.status, 400, "{what}: {}", r.text());
        assert!(r.error().contains(says), "{what}: {}", r.text());
        assert!(
            !r.text().contains(&root),
            "{what} names a server path: {}",
            r.text()
        );
    }
}

#[test]
fn serve_names_no_server_path_in_its_model_list() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(ws, "paths9", &[]);
    let root = ws.root().to_string_lossy().into_owned();
    let models = srv.get("/v1/models").text();
    assert!(
        !models.contains(&root),
        "/v1/models names a server path: {models}"
    );
}

#[test]
fn serve_log_lines_cannot_be_forged_by_client_text() {
    let ws = trained();
    let _one = serial();
    let srv = Server::start(ws, "log9", &[]);
    // a multipart filename and an npy descr with newlines: each is quoted in a 400's log line
    let forged = multipart(
        "b0undary",
        &[
            ("mhd", "a.mhd", b"NDims = 3\n"),
            ("raw", "x\nserve: forged-1 GET / 200", b"1"),
        ],
    );
    assert_eq!(detect(&srv, &forged, &[]).status, 400);
    let npy = {
        let h = "{'descr': '<f4\nserve: forged-2 GET / 200', 'fortran_order': False, 'shape': (1, 32, 48, 48), }\n";
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend((h.len() as u16).to_le_bytes());
        v.extend(h.as_bytes());
        v
    };
    let r = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[("Content-Type", "application/x-npy")],
        &npy,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let log = srv.log();
    assert!(
        !log.lines().any(|l| l.starts_with("serve: forged")),
        "{log}"
    );
    assert!(log.contains("\\nserve: forged-1"), "{log}");
    assert!(log.contains("\\nserve: forged-2"), "{log}");
}
