//! Closed-loop HTTP/1.1 load client of `bench/serve.sh`: CLIENTS threads, each with one
//! keep-alive connection, POST one body (a 32×48×48 i16 crop) to PATH until SECONDS have passed,
//! then print one JSON line: requests, ok, errors (by status or kind), throughput, p50/p99 of
//! every request, and the same over the steady state (requests started after WARMUP seconds).
//! Where the server says how long each request's batch took and how long it queued (luna
//! serve's `x-batch-ms`, `x-queue-ms`), also the p99 of each latency beyond its own batch
//! (every request and steady), and the steady p99 queue wait and p50/p99 batch time.
//!
//! Why bundled rather than wrk: a closed-loop run starts all clients at once, and that burst
//! (whatever a batching server makes of it) lands in the first second; wrk's percentiles cannot
//! leave it out, and over a short cell it is more than 1% of the requests. Why not Python (the
//! previous client): 64 threads behind one GIL stagger their next requests, which is exactly
//! what a batching server is sensitive to. Bounded: SECONDS of wall clock per run (a stuck
//! request times out after 120 s and counts as an error).
//!
//! Usage: luna-loadgen HOST:PORT CLIENTS SECONDS WARMUP_SECONDS BODY_FILE [PATH] [X-SHAPE]
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One finished request: when it started (since the run began), its latency, its outcome,
/// and the server's account of it (`x-batch-ms`, `x-queue-ms`; luna serve only).
struct Sample {
    start: f64,
    latency: f64,
    outcome: Result<u16, String>,
    times: Times,
}

/// The server's timing headers of one answer, in seconds.
#[derive(Default, Clone, Copy)]
struct Times {
    batch: Option<f64>,
    queue: Option<f64>,
}

fn connect(addr: &str) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(BufReader::new(s))
}

/// Sends one request on `conn` and reads the whole response; returns its status, whether
/// the server keeps the connection open, and its timing headers.
fn exchange(
    conn: &mut BufReader<TcpStream>,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<(u16, bool, Times)> {
    let s = conn.get_mut();
    s.write_all(head)?;
    s.write_all(body)?;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    conn.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let version = parts
        .next()
        .ok_or_else(|| bad("empty response"))?
        .to_string();
    let status: u16 = parts
        .next()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let (mut len, mut close) = (None, version == "HTTP/1.0");
    let mut times = Times::default();
    let secs = |v: &str| v.parse::<f64>().ok().map(|ms| ms / 1000.0);
    loop {
        line.clear();
        if conn.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            if k == "content-length" {
                len = v.parse::<u64>().ok();
            } else if k == "connection" {
                close = v == "close";
            } else if k == "x-batch-ms" {
                times.batch = secs(&v);
            } else if k == "x-queue-ms" {
                times.queue = secs(&v);
            }
        }
    }
    let len = len.ok_or_else(|| bad("no content-length"))?;
    std::io::copy(&mut conn.by_ref().take(len), &mut std::io::sink())?;
    Ok((status, !close, times))
}

fn pct(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    Some((1000.0 * v[i] * 10.0).round() / 10.0)
}

fn json_num(v: Option<f64>) -> String {
    v.map_or("null".into(), |x| format!("{x}"))
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 6 {
        eprintln!("usage: luna-loadgen HOST:PORT CLIENTS SECONDS WARMUP_SECONDS BODY_FILE [PATH] [X-SHAPE]");
        std::process::exit(2);
    }
    let num = |i: usize| -> f64 {
        a[i].parse().unwrap_or_else(|_| {
            eprintln!("luna-loadgen: argument {i} `{}` is not a number", a[i]);
            std::process::exit(2)
        })
    };
    let (addr, clients, secs, warmup) = (a[1].clone(), num(2) as usize, num(3), num(4));
    let body = std::fs::read(&a[5]).unwrap_or_else(|e| {
        eprintln!("luna-loadgen: cannot read {}: {e}", a[5]);
        std::process::exit(2)
    });
    let path = a.get(6).cloned().unwrap_or_else(|| "/v1/classify".into());
    let shape = a.get(7).cloned().unwrap_or_else(|| "1,32,48,48".into());
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/octet-stream\r\nX-Shape: {shape}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    let (body, head) = (Arc::new(body), Arc::new(head));
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let t0 = Instant::now();
    let end = Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (addr, body, head, samples) =
                (addr.clone(), body.clone(), head.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                let mut conn = None;
                while t0.elapsed() < end {
                    let start = t0.elapsed().as_secs_f64();
                    let t = Instant::now();
                    let c = match conn.take() {
                        Some(c) => Ok(c),
                        None => connect(&addr),
                    };
                    let mut times = Times::default();
                    let outcome = c.and_then(|mut c| {
                        let (status, keep, t) = exchange(&mut c, &head, &body)?;
                        if keep {
                            conn = Some(c);
                        }
                        times = t;
                        Ok(status)
                    });
                    let outcome = outcome.map_err(|e| format!("{:?}", e.kind()));
                    let failed = outcome.is_err();
                    mine.push(Sample {
                        start,
                        latency: t.elapsed().as_secs_f64(),
                        outcome,
                        times,
                    });
                    if failed {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(mine);
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let wall = t0.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for s in &samples {
        match &s.outcome {
            Ok(200) => {}
            Ok(c) => *errors.entry(c.to_string()).or_default() += 1,
            Err(k) => *errors.entry(k.clone()).or_default() += 1,
        }
    }
    let ok: Vec<&Sample> = samples
        .iter()
        .filter(|s| matches!(s.outcome, Ok(200)))
        .collect();
    let all: Vec<f64> = ok.iter().map(|s| s.latency).collect();
    let steady: Vec<&&Sample> = ok.iter().filter(|s| s.start >= warmup).collect();
    let steady_lat: Vec<f64> = steady.iter().map(|s| s.latency).collect();
    // where the time went, by the server's headers: the request's own batch, its wait in the
    // queue, and its latency beyond its own batch (queue, transfer, parsing, the client)
    let of = |v: &[&Sample], f: &dyn Fn(&Sample) -> Option<f64>| -> Vec<f64> {
        v.iter().filter_map(|s| f(s)).collect()
    };
    let ok_v: Vec<&Sample> = ok.to_vec();
    let steady_v: Vec<&Sample> = steady.iter().map(|s| **s).collect();
    let batch = |s: &Sample| s.times.batch;
    let queue = |s: &Sample| s.times.queue;
    let beyond = |s: &Sample| s.times.batch.map(|b| s.latency - b);
    // steady throughput: requests completed in [warmup, wall]
    let done_steady = ok.iter().filter(|s| s.start + s.latency >= warmup).count();
    let errs: Vec<String> = errors
        .iter()
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    println!(
        "{{\"clients\": {clients}, \"requests\": {}, \"ok\": {}, \"errors\": {{{}}}, \"seconds\": {:.2}, \"throughput\": {:.1}, \"p50_ms\": {}, \"p99_ms\": {}, \"warmup_s\": {warmup}, \"steady_requests\": {}, \"steady_throughput\": {:.1}, \"steady_p50_ms\": {}, \"steady_p99_ms\": {}, \"p99_beyond_batch_ms\": {}, \"steady_p99_beyond_batch_ms\": {}, \"steady_p99_queue_ms\": {}, \"steady_p50_batch_ms\": {}, \"steady_p99_batch_ms\": {}}}",
        samples.len(),
        ok.len(),
        errs.join(", "),
        wall,
        ok.len() as f64 / wall,
        json_num(pct(all.clone(), 0.50)),
        json_num(pct(all, 0.99)),
        steady.len(),
        done_steady as f64 / (wall - warmup).max(1e-9),
        json_num(pct(steady_lat.clone(), 0.50)),
        json_num(pct(steady_lat, 0.99)),
        json_num(pct(of(&ok_v, &beyond), 0.99)),
        json_num(pct(of(&steady_v, &beyond), 0.99)),
        json_num(pct(of(&steady_v, &queue), 0.99)),
        json_num(pct(of(&steady_v, &batch), 0.50)),
        json_num(pct(of(&steady_v, &batch), 0.99)),
    );
}
