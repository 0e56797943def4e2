//! `luna serve` on loopback, with a real HTTP client: classify answers equal
//! `evaluate_classifier`'s predictions for the same crops, detect answers equal `luna detect
//! --json` for the same CT (multipart `.mhd` + data file, and a LOCAL MetaImage); 400, 404,
//! 413 and 503 (full queue) answers with their messages and `Retry-After`; request ids kept
//! and logged; a torch worker killed mid-request → 503, restarted, the next request succeeds;
//! SIGTERM with requests in flight → every one answered, exit 0.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use luna::store::crop_set::{read_index, select, CropSet, Split, Task};
use serde_json::Value;

use crate::engine_support::Ws;

/// One HTTP/1.1 answer.
pub(crate) struct Resp {
    pub(crate) status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    /// The `error` of a JSON error answer.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A minimal blocking HTTP/1.1 client: one request per connection (`Connection: close`).
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // the server may answer (413) and close before the body is written: keep what came
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    read_response(&mut s)
}

fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Sleeps until `t` (at once when it has passed).
fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
}

/// A running `luna serve`.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: String,
    log: PathBuf,
}

impl Server {
    pub(crate) fn start(ws: &Ws, name: &str, args: &[&str]) -> Server {
        let log = ws.path(&format!("{name}.log"));
        let mut all = vec![
            "serve",
            "--pipeline",
            "t",
            "--addr",
            "127.0.0.1:0",
            "--device",
            "cpu",
            "--threads",
            "1",
        ];
        all.extend_from_slice(args);
        let mut child = ws
            .command(&all)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line:?}\n{}", std::fs::read_to_string(&log).unwrap()))
            .to_string();
        Server { child, addr, log }
    }
    fn get(&self, path: &str) -> Resp {
        http(&self.addr, "GET", path, &[], b"")
    }
    fn metric(&self, name: &str) -> f64 {
        let t = self.get("/metrics").text();
        t.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{t}"))
            .parse()
            .unwrap()
    }
    /// Waits until `cond(metric)` holds (panics after 60 s).
    fn wait_metric(&self, name: &str, cond: impl Fn(f64) -> bool) {
        let t0 = Instant::now();
        while !cond(self.metric(name)) {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{name} never reached the condition"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The head of a raw classify request of `n` crops and `len` body bytes, for tests that send
/// the body themselves (in pieces, or later).
fn classify_head(n: usize, len: usize) -> String {
    format!("POST /v1/classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nX-Shape: {n},32,48,48\r\nContent-Length: {len}\r\n\r\n")
}

fn raw_body(crops: &[Vec<i16>]) -> Vec<u8> {
    crops
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn npy_body(crops: &[Vec<i16>], shape: [usize; 3]) -> Vec<u8> {
    let mut h = format!(
        "{{'descr': '<i2', 'fortran_order': False, 'shape': ({}, {}, {}, {}), }}",
        crops.len(),
        shape[0],
        shape[1],
        shape[2]
    );
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend((h.len() as u16).to_le_bytes());
    v.extend(h.as_bytes());
    v.extend(raw_body(crops));
    v
}

fn classify(addr: &str, crops: &[Vec<i16>]) -> Resp {
    let shape = format!("{},32,48,48", crops.len());
    http(
        addr,
        "POST",
        "/v1/classify",
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Shape", &shape),
        ],
        &raw_body(crops),
    )
}

fn probs(r: &Resp) -> Vec<(f64, f64)> {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["prob_nodule"].as_f64().unwrap(),
                p["prob_malignant"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// `luna detect --json`'s document without what differs per call (run id, file path).
fn comparable(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("run");
    for s in doc["series"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("file");
    }
    doc
}

fn multipart(boundary: &str, parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut v = Vec::new();
    for (name, file, data) in parts {
        v.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes());
        v.extend(*data);
        v.extend(b"\r\n");
    }
    v.extend(format!("--{boundary}--\r\n").as_bytes());
    v
}

#[test]
fn serve_answers_like_the_pipeline_batches_refuses_overload_and_survives_its_worker() {
    let _torch = crate::nn_support::torch_lock();
    let ws = Ws::new();
    ws.pipeline("t", &crate::system::pipeline("t", ""));
    // before training: serve says which run trains the models; a bad address is a usage error
    let early = ws.luna(&["serve", "--pipeline", "t"]);
    assert_eq!(early.code, 1, "{}", early.stderr);
    assert!(
        early.stderr.contains(
            "run `luna run t --until detections` first; `luna detect` and `luna serve` never train"
        ),
        "{}",
        early.stderr
    );
    let bad = ws.luna(&["serve", "--pipeline", "t", "--addr", "localhost"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(
        bad.stderr
            .contains("--addr `localhost`: invalid socket address syntax"),
        "{}",
        bad.stderr
    );
    let run = ws.luna(&["run", "t"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "t", s]).stdout.trim());

    // the validation crops evaluate_classifier scored, and its probabilities
    let crops_dir = dir("crops");
    let index = crops_dir.join("index.parquet");
    let rows = read_index(&index).unwrap();
    let (sel, labels) = select(&rows, Task::Nodule, Split::Val, true, &index).unwrap();
    let set = CropSet::open(&crops_dir, sel, labels).unwrap();
    let shape = set.shape();
    assert_eq!(shape, [32, 48, 48]);
    let vox: usize = shape.iter().product();
    let crops: Vec<Vec<i16>> = (0..set.rows.len())
        .map(|i| {
            let mut c = vec![0i16; vox];
            set.read_into(i, &mut c).unwrap();
            c
        })
        .collect();
    let expected = crate::train_support::predictions(&dir("eval"));
    assert_eq!(expected.len(), crops.len());

    // `luna detect --json` on one dataset CT, before the server runs
    let mhd = walkdir::WalkDir::new(dir("data"))
        .into_iter()
        .flatten()
        .find(|e| e.path().extension().is_some_and(|x| x == "mhd"))
        .unwrap()
        .into_path();
    let cli = ws.luna(&["detect", mhd.to_str().unwrap(), "--pipeline", "t", "--json"]);
    assert_eq!(cli.code, 0, "{}", cli.stderr);
    let cli_doc: Value = serde_json::from_str(&cli.stdout).unwrap();

    let srv = Server::start(
        &ws,
        "main",
        &[
            "--max-batch",
            "24",
            "--max-wait-ms",
            "20",
            "--queue",
            "64",
            "--max-body",
            "64000000",
        ],
    );
    let health = srv.get("/healthz");
    assert_eq!(health.status, 200, "{}", health.text());
    let pid0 = health.json()["worker_pid"].as_u64().unwrap();

    // /v1/models names the cached artifacts by key
    let models = srv.get("/v1/models").json();
    let key_of = |stage: &str| {
        dir(stage)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string()
    };
    let listed: Vec<(String, String, String)> = models["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().into(),
                m["stage"].as_str().unwrap().into(),
                m["key"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("nodule".into(), "nodule".into(), key_of("nodule")),
            ("malignancy".into(), "mal".into(), key_of("mal")),
            ("segmentation".into(), "unet".into(), key_of("unet")),
        ]
    );
    assert_eq!(models["models"][0]["kind"], "train_classifier");
    assert_eq!(models["models"][0]["params"]["epochs"], 1);

    // classify: the first three crops raw in one request (with our request id), the others
    // as .npy, one crop per request from 8 threads at once (so the batcher merges them)
    let first = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Shape", "3,32,48,48"),
            ("X-Request-Id", "mine-42"),
        ],
        &raw_body(&crops[..3]),
    );
    assert_eq!(first.headers["x-request-id"], "mine-42");
    assert_eq!(first.json()["request_id"], "mine-42");
    assert_eq!(first.json()["models"]["nodule"], key_of("nodule").as_str());
    let mut got: Vec<(f64, f64)> = probs(&first);
    let rest: Vec<(usize, (f64, f64))> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let (crops, addr) = (&crops, &srv.addr);
                s.spawn(move || {
                    (3 + t..crops.len())
                        .step_by(8)
                        .map(|i| {
                            let r = http(
                                addr,
                                "POST",
                                "/v1/classify",
                                &[("Content-Type", "application/x-npy")],
                                &npy_body(&crops[i..i + 1], shape),
                            );
                            (i, probs(&r)[0])
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut rest = rest;
    rest.sort_by_key(|r| r.0);
    got.extend(rest.into_iter().map(|r| r.1));
    assert_eq!(got.len(), crops.len());
    let mut worst = 0f64;
    for (i, (pn, pm)) in got.iter().enumerate() {
        worst = worst.max((pn - expected[&set.rows[i].candidate_id]).abs());
        assert!((0.0..=1.0).contains(pm));
    }
    println!(
        "serve classify vs evaluate_classifier: {} crops, max |diff| {worst:e}",
        got.len()
    );
    // other batch compositions sum in another order (channels-last batches more so: oneDNN
    // blocks by batch size): a few float32 ulps of the logits, ~2e-6 in a probability
    assert!(worst <= 1e-5, "probabilities differ by {worst}");
    // in evaluate_classifier's own batches (24, then the rest) the numbers are identical
    // (compared as the f32 the model computes: serde_json's default float parsing may be one
    // f64 ulp off); the differences above come only from batch composition (summation order)
    for range in [0..24, 24..crops.len()] {
        let same = probs(&classify(&srv.addr, &crops[range.clone()]));
        for (k, (pn, _)) in same.iter().enumerate() {
            let want = expected[&set.rows[range.start + k].candidate_id];
            assert_eq!(*pn as f32, want as f32, "crop {}", range.start + k);
        }
    }
    assert!(
        srv.log().contains("serve: mine-42 POST /v1/classify 200"),
        "{}",
        srv.log()
    );
    // batches merged requests: fewer batches than requests
    let batches = srv.metric("luna_serve_batch_size_count");
    assert!(
        batches < 1.0 + (crops.len() - 3) as f64,
        "{batches} batches for {} requests",
        crops.len() - 2
    );

    // closed-loop clients that started apart rejoin one batch: 6 clients start, 6 more while
    // their first batch runs. max_wait counts from the moment the worker is free, so the first
    // six's next requests join the second six's batch; counted from the oldest arrival alone
    // (the book's rule), the queued six would leave at once and the groups would alternate
    // half batches for good (20 batches for these 120 requests). max_wait 1 s: the first six's
    // next requests are back well within it on a loaded machine (a full batch leaves at once).
    {
        let rejoin = Server::start(
            &ws,
            "rejoin",
            &["--max-batch", "12", "--max-wait-ms", "1000"],
        );
        let client = || {
            for _ in 0..10 {
                assert_eq!(classify(&rejoin.addr, &crops[..1]).status, 200);
            }
        };
        std::thread::scope(|s| {
            let first: Vec<_> = (0..6).map(|_| s.spawn(client)).collect();
            rejoin.wait_metric("luna_serve_worker_busy", |v| v == 1.0);
            let second: Vec<_> = (0..6).map(|_| s.spawn(client)).collect();
            for h in first.into_iter().chain(second) {
                h.join().unwrap();
            }
        });
        let batches = rejoin.metric("luna_serve_batch_size_count");
        assert!(
            batches <= 14.0,
            "{batches} batches for 120 requests of 12 clients (max_batch 12): the groups did not merge"
        );
    }

    // a body still arriving when the batch is due is waited for (up to another max_wait):
    // A's request admitted at t0 (seen in the queue-depth gauge: t0 <= tq; batch due at
    // t0 + 300 ms), B's headers right after tq and the rest of its body at tq + 350 ms, so
    // certainly after the batch was due -> one batch of both. The sleep is the scenario (a
    // slow client), anchored to the observed admission rather than to a guessed head start.
    {
        let arrive = Server::start(
            &ws,
            "arrive",
            &["--max-batch", "64", "--max-wait-ms", "300"],
        );
        std::thread::scope(|s| {
            let a = s.spawn(|| classify(&arrive.addr, &crops[..1]));
            arrive.wait_metric("luna_serve_queue_depth", |v| v == 1.0);
            let tq = Instant::now();
            let body = raw_body(&crops[1..2]);
            let mut b = TcpStream::connect(&arrive.addr).unwrap();
            let head = classify_head(1, body.len());
            b.write_all(head.as_bytes()).unwrap();
            b.write_all(&body[..1000]).unwrap();
            sleep_until(tq + Duration::from_millis(350));
            b.write_all(&body[1000..]).unwrap();
            assert_eq!(read_response(&mut b).status, 200);
            assert_eq!(a.join().unwrap().status, 200);
        });
        assert_eq!(arrive.metric("luna_serve_batch_size_count"), 1.0);
        assert_eq!(arrive.metric("luna_serve_batch_size_sum"), 2.0);
    }

    // so is a connection opened less than max_wait ago that has not sent its request yet (a
    // burst of clients still connecting): A's request admitted at t0 <= tq (the gauge shows
    // it; batch due at t0 + 1.5 s), B connects at tq + 300 ms (counted until tq + 1.8 s) and
    // sends at tq + 1.55 s, certainly after the batch was due -> one batch of both; each
    // answer says where its time went. The sleeps are the scenario (a slow client).
    {
        let opened = Server::start(
            &ws,
            "opened",
            &["--max-batch", "64", "--max-wait-ms", "1500"],
        );
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| classify(&opened.addr, &crops[..1]));
            opened.wait_metric("luna_serve_queue_depth", |v| v == 1.0);
            let tq = Instant::now();
            sleep_until(tq + Duration::from_millis(300));
            let mut b = TcpStream::connect(&opened.addr).unwrap();
            sleep_until(tq + Duration::from_millis(1550));
            let body = raw_body(&crops[1..2]);
            let head = classify_head(1, body.len());
            b.write_all(head.as_bytes()).unwrap();
            b.write_all(&body).unwrap();
            (a.join().unwrap(), read_response(&mut b))
        });
        assert_eq!((a.status, b.status), (200, 200));
        assert_eq!(opened.metric("luna_serve_batch_size_count"), 1.0);
        let ms = |r: &Resp, h: &str| -> f64 {
            r.headers
                .get(h)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no numeric {h} in {:?}", r.headers))
        };
        for r in [&a, &b] {
            assert_eq!(ms(r, "x-batch-size"), 2.0);
            assert!(ms(r, "x-batch-ms") > 0.0);
        }
        assert!(ms(&a, "x-queue-ms") >= 1000.0, "{:?}", a.headers);
        assert!(ms(&b, "x-queue-ms") < ms(&a, "x-queue-ms"));
        assert_eq!(opened.metric("luna_serve_queue_seconds_count"), 2.0);
        let id = &a.headers["x-request-id"];
        assert!(
            opened.log().lines().any(|l| l.contains(id.as_str())
                && l.contains("(1 crops; queued ")
                && l.contains(" ms, batch of 2 in ")),
            "{}",
            opened.log()
        );
    }

    // bad input: 400 naming the problem; unknown route 404
    let bad = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[
            ("Content-Type", "application/octet-stream"),
            ("X-Shape", "1,32,48,47"),
        ],
        &raw_body(&crops[..1]),
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error(), "crops of shape [32, 48, 47] do not fit the model, which takes [32, 48, 48] (d, h, w) i16 crops");
    let bad = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[("Content-Type", "application/octet-stream")],
        &raw_body(&crops[..1]),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("need an `x-shape` header"));
    let bad = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[("Content-Type", "application/x-npy")],
        b"\x93NUMPY\x01\x00\xff\xff",
    );
    assert_eq!(bad.status, 400);
    assert!(
        bad.error().starts_with("not a usable .npy array"),
        "{}",
        bad.text()
    );
    assert!(!bad.headers["x-request-id"].is_empty());
    assert_eq!(srv.get("/v2/nothing").status, 404);
    assert_eq!(srv.get("/v1/classify").status, 405);

    // a full queue: 503 + Retry-After while the worker is busy and 64 crops wait
    let big: Vec<Vec<i16>> = (0..64).map(|i| crops[i % crops.len()].clone()).collect();
    std::thread::scope(|s| {
        let a = s.spawn(|| classify(&srv.addr, &big));
        srv.wait_metric("luna_serve_worker_busy", |v| v == 1.0);
        let b = s.spawn(|| classify(&srv.addr, &big));
        srv.wait_metric("luna_serve_queue_depth", |v| v == 64.0);
        let c = classify(&srv.addr, &crops[..1]);
        assert_eq!(c.status, 503, "{}", c.text());
        assert_eq!(c.headers["retry-after"], "1");
        assert!(c
            .error()
            .contains("the classify queue is full (64 crops waiting, capacity 64)"));
        assert_eq!(probs(&a.join().unwrap()).len(), 64);
        assert_eq!(probs(&b.join().unwrap()).len(), 64);
    });

    // the worker killed mid-request: 503, restarted, the next request answers the same
    std::thread::scope(|s| {
        let a = s.spawn(|| classify(&srv.addr, &big));
        srv.wait_metric("luna_serve_worker_busy", |v| v == 1.0);
        unsafe { libc::kill(pid0 as i32, libc::SIGKILL) };
        let r = a.join().unwrap();
        assert_eq!(r.status, 503, "{}", r.text());
        assert!(
            r.error().contains("the torch worker crashed"),
            "{}",
            r.text()
        );
    });
    let after = classify(&srv.addr, &crops[..3]);
    assert_eq!(probs(&after), probs(&first));
    let pid1 = srv.get("/healthz").json()["worker_pid"].as_u64().unwrap();
    assert_ne!(pid1, pid0);
    assert_eq!(srv.metric("luna_serve_worker_restarts_total"), 1.0);

    // detect: multipart header + data file, and the same CT as one LOCAL MetaImage
    let header = std::fs::read_to_string(&mhd).unwrap();
    let data_name = header
        .lines()
        .find_map(|l| l.strip_prefix("ElementDataFile = "))
        .unwrap()
        .trim()
        .to_string();
    let data = std::fs::read(mhd.parent().unwrap().join(&data_name)).unwrap();
    let uid = mhd.file_stem().unwrap().to_string_lossy().to_string();
    let body = multipart(
        "b0undary",
        &[
            ("mhd", &format!("{uid}.mhd"), header.as_bytes()),
            ("raw", &data_name, &data),
        ],
    );
    let det = http(
        &srv.addr,
        "POST",
        "/v1/detect",
        &[("Content-Type", "multipart/form-data; boundary=b0undary")],
        &body,
    );
    assert_eq!(det.status, 200, "{}\n{}", det.text(), srv.log());
    assert_eq!(comparable(det.json()), comparable(cli_doc.clone()));
    assert_eq!(det.json()["series"][0]["file"], format!("{uid}.mhd"));
    let mut local: Vec<u8> = header
        .lines()
        .filter(|l| !l.starts_with("ElementDataFile"))
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect();
    local.extend(b"ElementDataFile = LOCAL\n");
    local.extend(&data);
    let det = http(
        &srv.addr,
        "POST",
        &format!("/v1/detect?uid={uid}"),
        &[("Content-Type", "application/octet-stream")],
        &local,
    );
    assert_eq!(det.status, 200, "{}", det.text());
    assert_eq!(comparable(det.json()), comparable(cli_doc));
    let bad = http(
        &srv.addr,
        "POST",
        "/v1/detect",
        &[("Content-Type", "multipart/form-data; boundary=b0undary")],
        &multipart("b0undary", &[("mhd", "a.mhd", b"NDims = 3\n")]),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("no `raw` part"), "{}", bad.text());
    assert!(srv.log().contains("/v1/detect 200"), "{}", srv.log());
    // every request counted by status
    let m = srv.get("/metrics").text();
    assert!(
        m.contains("luna_serve_requests_total{route=\"classify\",status=\"503\"} 2\n"),
        "{m}"
    );
    assert!(
        m.contains("luna_serve_requests_total{route=\"detect\",status=\"200\"} 2\n"),
        "{m}"
    );
    drop(srv);

    // SIGTERM with six requests waiting for their batch (max_wait 1.5 s): all answered, exit 0
    let mut srv = Server::start(
        &ws,
        "drain",
        &[
            "--max-batch",
            "64",
            "--max-wait-ms",
            "1500",
            "--max-body",
            "300000",
        ],
    );
    let huge = http(
        &srv.addr,
        "POST",
        "/v1/classify",
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", "1000000000"),
        ],
        b"",
    );
    assert_eq!(huge.status, 413, "{}", huge.text());
    assert!(huge.error().contains("exceeds the limit of 300000 bytes"));
    let streamed = {
        let mut s = TcpStream::connect(&srv.addr).unwrap();
        let _ = s.write_all(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\nX-Shape: 3,32,48,48\r\n\r\n");
        for c in raw_body(&crops[..3]).chunks(65536) {
            let _ = s
                .write_all(format!("{:x}\r\n", c.len()).as_bytes())
                .and_then(|()| s.write_all(c))
                .and_then(|()| s.write_all(b"\r\n"));
        }
        let _ = s.write_all(b"0\r\n\r\n");
        read_response(&mut s)
    };
    assert_eq!(streamed.status, 413, "{}", streamed.text());
    let answers: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let (addr, crops) = (&srv.addr, &crops);
                s.spawn(move || classify(addr, &crops[i..i + 2]).status)
            })
            .collect();
        srv.wait_metric("luna_serve_queue_depth", |v| v == 12.0);
        unsafe { libc::kill(srv.child.id() as i32, libc::SIGTERM) };
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, [200; 6]);
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", srv.log());
    assert!(
        srv.log().contains("draining 6 in-flight request(s)"),
        "{}",
        srv.log()
    );
    assert!(
        TcpStream::connect(&srv.addr).is_err(),
        "still listening after SIGTERM"
    );
}
