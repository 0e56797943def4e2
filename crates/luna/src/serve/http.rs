//! The HTTP side of `luna serve`: routing, limits, request ids, the log line, graceful shutdown.
//!
//! Design: hyper 1 HTTP/1.1 connections on tokio, one task per connection, a plain `match` on
//! (method, path) for the five routes. Every answer goes through [`handle`], which assigns the
//! request id (an incoming `x-request-id` of up to 64 visible ASCII characters is kept, else
//! `<prefix>-<n>`), sets it on the response, records the metrics and writes one log line
//! `serve: <id> <method> <path> <status> <ms> ms[ note]` to stderr. A classify answer also
//! says where its time went, in headers and in the note: `x-queue-ms` (admission to its batch
//! leaving), `x-batch-ms` (that batch's time in the worker), `x-batch-size` (its crops), so a
//! client sees whether a slow answer waited or computed. Errors are JSON
//! `{"error": "...", "request_id": "..."}` with 400 (malformed input: the parser's message),
//! 401 (no or a wrong bearer token, `auth.rs`), 404/405, 408 (a body that did not arrive in
//! time), 413 (body over `--max-body`: refused from `Content-Length` before reading, or when
//! the streamed body passes the limit), 500 (the model failed), 503 + `Retry-After` (queue
//! full, request bodies in flight over `--max-inflight` (`limits.rs`), worker crashed or not
//! running, shutting down) and 507 (the disk is nearly full, `scratch.rs`). Answers that
//! refuse a body before reading it close the connection. Log lines are escaped and messages
//! carry no server paths (`sanitize.rs`).
//!
//! Uploads of CTs (`POST /v1/detect`) are received on a lane of async workers of their own at
//! nice 10 (`lanes.rs`), and parsing and writing a large body (a 100 MB CT) happens on the
//! blocking pool (`spawn_blocking`, also nice 10), never on the two main async workers, so
//! `/healthz` and small requests stay fast while uploads are being handled.
//!
//! Shutdown: on SIGTERM or SIGINT the listener closes, idle keep-alive connections are told
//! to close, and the server waits for every in-flight request to be answered (the batcher
//! keeps running until then; at most 300 s) before it returns. A connection that does not
//! finish its request headers within 30 s is closed (slowloris).
//!
//! Rejected: axum (a router, extractors and tower layers for five fixed routes; one more
//! dependency tree to build, and its body-limit and rejection types would need mapping to our
//! messages anyway); HTTP/2 (clients of a model service on a LAN gain little from it, and
//! HTTP/1.1 keep-alive with concurrent connections is what the book's batching targets).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use super::auth::Token;
use super::batcher::{Arriving, BatchFailure, Batcher};
use super::limits::{admit, read_body, BodyError, BodyLimits, Inflight, Reservation};
use super::metrics::Metrics;
use super::sanitize::{escape_log, redact};
use super::scratch::Scratch;
use super::{dicom_upload, lanes, parse};

/// A detection run for one uploaded CT header (`mhd`), with a folder of the request's own for
/// its scratch files (`work`): its JSON answer, or a status and message.
pub type DetectFn = dyn Fn(&Path, &Path) -> Result<Value, (u16, String)> + Send + Sync;

/// `/v1/detect`'s runner: detections one at a time on the device, a bounded wait list.
pub struct DetectService {
    /// Runs the pipeline's detection chain on one CT (blocking).
    pub run: Arc<DetectFn>,
    /// Where uploads are written and runs recorded (`scratch.rs`).
    pub scratch: Scratch,
    /// Detect requests waiting or running at most.
    pub capacity: usize,
    /// One detection at a time per device.
    pub device: Semaphore,
}

/// Everything a request may need.
pub struct State {
    /// The classify queue.
    pub batcher: Batcher,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// `/v1/models`' document.
    pub models: Value,
    /// The model keys classify answers name (`{"nodule": key, "malignancy": key}`).
    pub model_keys: Value,
    /// The crop shape the models take.
    pub shape: [usize; 3],
    /// How bodies may arrive (size, deadlines).
    pub limits: BodyLimits,
    /// The budget of body bytes in flight.
    pub inflight: Arc<Inflight>,
    /// The bearer token every route but `/healthz` needs, if any.
    pub token: Option<Token>,
    /// The workspace root (named `<workspace>` in messages).
    pub workspace: PathBuf,
    /// `/v1/detect`, when the pipeline has a detection chain.
    pub detect: Option<DetectService>,
    /// Prefix of generated request ids.
    pub id_prefix: String,
    /// Requests seen (generated ids, upload folder names).
    pub seq: AtomicU64,
}

/// An error answer.
struct HttpError {
    status: StatusCode,
    message: String,
    retry_after: bool,
    /// Close the connection after the answer (the body was not read).
    close: bool,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
            retry_after: status == StatusCode::SERVICE_UNAVAILABLE,
            close: false,
        }
    }
    fn bad(e: parse::ParseError) -> HttpError {
        HttpError::new(StatusCode::BAD_REQUEST, e.to_string())
    }
    /// The answer closes the connection.
    fn closing(self) -> HttpError {
        HttpError {
            close: true,
            ..self
        }
    }
}

impl From<BodyError> for HttpError {
    fn from(e: BodyError) -> HttpError {
        let status = match e {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Budget { .. } => StatusCode::SERVICE_UNAVAILABLE,
            BodyError::Slow { .. } => StatusCode::REQUEST_TIMEOUT,
            BodyError::Read(_) => StatusCode::BAD_REQUEST,
        };
        HttpError::new(status, e.to_string()).closing()
    }
}

fn request_id(st: &State, h: &HeaderMap, seq: u64) -> String {
    h.get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.bytes().all(|c| c.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}-{seq}", st.id_prefix))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Answers one request (never fails: every error is an HTTP answer). `opened`: its
/// connection's guard as a request on its way, when this is the connection's first request.
pub async fn handle(
    st: Arc<State>,
    req: Request<Incoming>,
    opened: Option<Arriving>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let t0 = Instant::now();
    let seq = st.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let id = request_id(&st, req.headers(), seq);
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    st.metrics.in_flight.fetch_add(1, Ordering::SeqCst);
    // counted down also when hyper drops this future (the client closed its connection)
    let in_flight = Defer(|| {
        st.metrics.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
    let (route, result) = route(&st, req, &id, seq, opened).await;
    let (mut resp, note) = match result {
        Ok((r, note)) => (r, note),
        Err(mut e) => {
            // no server paths in what a client reads (detect's messages are redacted with
            // their upload folder already; this catches the rest)
            e.message = redact(&e.message, &[(&st.workspace, "<workspace>")]);
            let mut r = json_response(e.status, &json!({"error": e.message, "request_id": id}));
            if e.retry_after {
                r.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
            }
            if e.status == StatusCode::UNAUTHORIZED {
                r.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_static("Bearer realm=\"luna\""),
                );
            }
            if e.close {
                r.headers_mut()
                    .insert("connection", HeaderValue::from_static("close"));
            }
            (r, format!(" ({})", e.message))
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let secs = t0.elapsed().as_secs_f64();
    st.metrics.request(route, resp.status().as_u16(), secs);
    drop(in_flight);
    // client text (ids are checked, but notes quote bodies) never starts a line of its own
    eprintln!(
        "{}",
        escape_log(&format!(
            "serve: {id} {method} {path} {} {:.1} ms{note}",
            resp.status().as_u16(),
            secs * 1e3
        ))
    );
    Ok(resp)
}

type Answer = Result<(Response<Full<Bytes>>, String), HttpError>;

async fn route(
    st: &State,
    req: Request<Incoming>,
    id: &str,
    seq: u64,
    opened: Option<Arriving>,
) -> (&'static str, Answer) {
    let allow = |m: &'static str| {
        Err(HttpError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("use {m} for this path"),
        ))
    };
    let opened = match (req.method(), req.uri().path()) {
        (&Method::POST, "/v1/classify") => opened,
        _ => None,
    };
    if let Some(t) = &st.token {
        if req.uri().path() != "/healthz" && !t.admits(header(req.headers(), "authorization")) {
            let e = HttpError::new(
                StatusCode::UNAUTHORIZED,
                "this server needs `Authorization: Bearer <token>` (the token of `luna serve --token-file`)",
            );
            return ("unauthorized", Err(e.closing()));
        }
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => ("healthz", Ok((health(st).await, String::new()))),
        (&Method::GET, "/v1/models") => (
            "models",
            Ok((json_response(StatusCode::OK, &st.models), String::new())),
        ),
        (&Method::GET, "/metrics") => {
            let mut r = Response::new(Full::new(Bytes::from(st.metrics.render())));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            ("metrics", Ok((r, String::new())))
        }
        (&Method::POST, "/v1/classify") => ("classify", classify(st, req, id, opened).await),
        (&Method::POST, "/v1/detect") => ("detect", detect(st, req, seq).await),
        (_, "/healthz" | "/v1/models" | "/metrics") => ("other", allow("GET")),
        (_, "/v1/classify" | "/v1/detect") => ("other", allow("POST")),
        (_, p) => (
            "other",
            Err(HttpError::new(
                StatusCode::NOT_FOUND,
                format!("no route `{p}`; the routes are POST /v1/classify, POST /v1/detect, GET /v1/models, GET /healthz, GET /metrics"),
            )),
        ),
    }
}

async fn health(st: &State) -> Response<Full<Bytes>> {
    let w = st.batcher.state.lock().await.clone();
    let (status, doc) = match &w.hello {
        Ok(h) => (
            StatusCode::OK,
            json!({"status": "ok", "worker_pid": h.pid, "device": h.device, "workers_started": w.started}),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "no worker", "error": e, "workers_started": w.started}),
        ),
    };
    json_response(status, &doc)
}

/// The body within the limits (`limits.rs`), and the budget it holds (drop it once the body
/// is decoded or on disk).
async fn body(
    st: &State,
    req: Request<Incoming>,
) -> Result<(HeaderMap, Option<String>, Bytes, Reservation), HttpError> {
    let declared = declared_len(&req);
    let mut held = admit(&st.inflight, declared, &st.limits)?;
    let (parts, b) = req.into_parts();
    let bytes = read_body(b, declared, &mut held, &st.limits, &st.inflight).await?;
    Ok((
        parts.headers,
        parts.uri.query().map(str::to_string),
        bytes,
        held,
    ))
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn prob(v: f32) -> Value {
    if v.is_nan() {
        Value::Null
    } else {
        json!(f64::from(v))
    }
}

async fn classify(
    st: &State,
    req: Request<Incoming>,
    id: &str,
    opened: Option<Arriving>,
) -> Answer {
    let arriving = opened.unwrap_or_else(|| st.batcher.arriving());
    let (h, _, b, mut held) = body(st, req).await?;
    // the decoded crops are a copy of the body, held until their batch ran: budgeted too
    if !held.grow(b.len() as u64) {
        return Err(BodyError::Budget {
            used: st.inflight.used(),
            max: st.inflight.max(),
        }
        .into());
    }
    let ct = header(&h, "content-type").map(str::to_string);
    let shape_h = header(&h, "x-shape").map(str::to_string);
    let shape = st.shape;
    // the budget travels with the bytes: a client that goes away mid-parse frees it only
    // when the parse is done with them
    let (crops, held) = off_workers(move || {
        let crops = parse::classify_body(ct.as_deref(), shape_h.as_deref(), &b, shape);
        (crops, held)
    })
    .await?;
    let crops = crops.map_err(HttpError::bad)?;
    let n = crops.n;
    let rx = st
        .batcher
        .submit(n, crops.bytes)
        .map_err(|e| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    drop(arriving);
    let answered = rx
        .await
        .map_err(|_| {
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the batcher stopped (the server is shutting down)",
            )
        })?
        .map_err(|f| {
            let status = match f {
                BatchFailure::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
                BatchFailure::WorkerCrashed(_) | BatchFailure::NoWorker(_) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            HttpError::new(status, f.to_string())
        })?;
    drop(held);
    let predictions: Vec<Value> = answered
        .probs
        .iter()
        .map(|p| json!({"prob_nodule": prob(p[0]), "prob_malignant": prob(p[1])}))
        .collect();
    let doc = json!({"request_id": id, "models": st.model_keys, "predictions": predictions});
    let mut resp = json_response(StatusCode::OK, &doc);
    let (queue_ms, batch_ms) = (
        answered.queued.as_secs_f64() * 1e3,
        answered.batch.as_secs_f64() * 1e3,
    );
    for (name, v) in [
        ("x-queue-ms", format!("{queue_ms:.1}")),
        ("x-batch-ms", format!("{batch_ms:.1}")),
        ("x-batch-size", answered.batch_crops.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(name, v);
        }
    }
    let note = format!(
        " ({n} crops; queued {queue_ms:.1} ms, batch of {} in {batch_ms:.1} ms)",
        answered.batch_crops
    );
    Ok((resp, note))
}

/// `uid=` of a query string.
fn query_uid(q: Option<&str>) -> Option<&str> {
    q?.split('&').find_map(|kv| kv.strip_prefix("uid="))
}

/// Runs `f` on the blocking pool (parsing and writing large bodies, detections), never on the
/// async workers that answer `/healthz`; that pool's threads run at nice 10, so on a busy
/// machine the workers get the CPU first (what they run is short).
async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HttpError> {
    let background = move || {
        lanes::lower_priority();
        f()
    };
    tokio::task::spawn_blocking(background).await.map_err(|e| {
        HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the request's handler panicked: {e}"),
        )
    })
}

/// The declared body length, if any.
fn declared_len(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<u64>().ok())
}

async fn detect(st: &State, req: Request<Incoming>, seq: u64) -> Answer {
    let Some(d) = &st.detect else {
        return Err(HttpError::new(
            StatusCode::NOT_FOUND,
            "this pipeline has no detection chain (segment → cluster → classify_candidates)",
        ));
    };
    let no_space = |e: super::scratch::NoSpace| {
        HttpError::new(StatusCode::INSUFFICIENT_STORAGE, e.to_string())
    };
    // refused before a byte is read when the declared upload would pass the disk floor
    d.scratch
        .check_space(declared_len(&req).unwrap_or(0))
        .map_err(|e| no_space(e).closing())?;
    let (h, q, b, held) = body(st, req).await?;
    d.scratch.check_space(b.len() as u64).map_err(no_space)?;
    let _queued = queued(st, d)?;
    let dir = d
        .scratch
        .request(&format!("{seq}-{}", std::process::id()))
        .map_err(|e| {
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot make the request's scratch folder: {e}"),
            )
        })?;
    let ct = header(&h, "content-type").map(str::to_string);
    let uid = query_uid(q.as_deref()).map(str::to_string);
    let at = dir.path().to_path_buf();
    // the budget travels with the bytes and is given back once they are on disk (also when
    // the client went away meanwhile)
    let (uid, mhd) = off_workers(move || {
        let written = write_upload(ct.as_deref(), uid.as_deref(), &b, &at);
        drop(held);
        written
    })
    .await??;
    let doc = run_detection(st, d, dir.path(), mhd).await?;
    Ok((json_response(StatusCode::OK, &doc), format!(" ({uid})")))
}

/// Counts a detection as waiting for the device until the guard drops; 503 past the capacity.
fn queued<'a>(st: &'a State, d: &DetectService) -> Result<Defer<impl FnMut() + 'a>, HttpError> {
    let waiting = st.metrics.detect_queued.fetch_add(1, Ordering::SeqCst);
    let guard = Defer(move || {
        st.metrics.detect_queued.fetch_sub(1, Ordering::SeqCst);
    });
    if waiting >= d.capacity as i64 {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{waiting} detections are waiting for the device (capacity {}); retry later",
                d.capacity
            ),
        ));
    }
    Ok(guard)
}

/// Runs the detection of the staged upload `mhd` in the request's folder `dir` when the device
/// is free; its record is rotated, its error message cut of server paths.
async fn run_detection(
    st: &State,
    d: &DetectService,
    dir: &Path,
    mhd: PathBuf,
) -> Result<Value, HttpError> {
    let _permit = d.device.acquire().await.map_err(|_| {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server is shutting down",
        )
    })?;
    let (run, work) = (d.run.clone(), dir.to_path_buf());
    let result = off_workers(move || run(&mhd, &work)).await?;
    d.scratch.rotate_runs();
    result.map_err(|(code, m)| {
        let m = redact(&m, &[(dir, ""), (&st.workspace, "<workspace>")]);
        HttpError::new(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            m,
        )
    })
}

/// Parses a detect body (a MetaImage or DICOM files) and writes its files into `dir`: a
/// label for the log and the CT's path (its header or its series folder).
fn write_upload(
    content_type: Option<&str>,
    query_uid: Option<&str>,
    body: &[u8],
    dir: &Path,
) -> Result<(String, PathBuf), HttpError> {
    let up = dicom_upload::parse(content_type, query_uid, body).map_err(HttpError::bad)?;
    let ct = up.write(dir).map_err(|e| match e {
        dicom_upload::WriteError::Bad(e) => HttpError::bad(e),
        dicom_upload::WriteError::Io(e) => HttpError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the upload: {e}"),
        ),
    })?;
    Ok((up.label(), ct))
}

/// Runs a closure when dropped (queue counters and upload folders on every exit path).
struct Defer<F: FnMut()>(F);

impl<F: FnMut()> Drop for Defer<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Takes a connection's guard as a request on its way (the first request, or the expiry).
fn take(opened: &std::sync::Mutex<Option<Arriving>>) -> Option<Arriving> {
    opened.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Serves one connection (HTTP/1.1, keep-alive) until it closes or the server shuts down.
async fn connection(
    st: Arc<State>,
    opened: Arc<std::sync::Mutex<Option<Arriving>>>,
    watcher: hyper_util::server::graceful::Watcher,
    stream: tokio::net::TcpStream,
) {
    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req, take(&opened)));
    // a client that never finishes its headers (slowloris) is dropped after 30 s
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(std::time::Duration::from_secs(30))
        // a client that shuts its sending side after the body still gets its answer
        .half_close(true)
        .serve_connection(TokioIo::new(stream), svc);
    // a connection's own error (reset, timeout) ends only that connection; its requests
    // were answered or logged by `handle`
    let _ = watcher.watch(conn).await;
}

/// Serves on `listener` until SIGTERM/SIGINT, then drains in-flight requests. Uploads are
/// served on `bulk` (`lanes.rs`), everything else on the runtime that runs this.
pub async fn serve(
    st: Arc<State>,
    listener: tokio::net::TcpListener,
    bulk: tokio::runtime::Handle,
) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have
                    eprintln!("serve: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        // Nagle only delays small answers; a failure leaves the socket usable as it is
        let _ = stream.set_nodelay(true);
        let st = st.clone();
        // a new connection is a request on its way: a batch about to leave waits for it
        // (see batcher's doc) until its first request's headers are in, at most max_wait
        let opened = Arc::new(std::sync::Mutex::new(Some(st.batcher.arriving())));
        let expire = opened.clone();
        let wait = st.batcher.max_wait();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            take(&expire);
        });
        let watcher = graceful.watcher();
        let bulk = bulk.clone();
        tokio::spawn(async move {
            let serve = move |stream| connection(st, opened, watcher, stream);
            if !lanes::is_upload(&stream).await {
                return serve(stream).await;
            }
            if let Err(e) = lanes::hand_over(stream, &bulk, serve) {
                eprintln!("serve: cannot move an upload's connection to its lane: {e}");
            }
        });
    }
    drop(listener);
    let inflight = st.metrics.in_flight.load(Ordering::SeqCst);
    eprintln!("serve: shutting down; draining {inflight} in-flight request(s)");
    // bounded: a client still uploading after 5 minutes does not keep the process alive
    if tokio::time::timeout(std::time::Duration::from_secs(300), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("serve: connections still open after 300 s; exiting anyway");
    }
    Ok(())
}
