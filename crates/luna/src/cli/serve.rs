//! `luna serve [--pipeline demo] [--addr 127.0.0.1:8080]`: the pipeline's trained models as an
//! HTTP service (`crate::serve` is the design). Prints `listening on http://ADDR` on stdout
//! once the models are loaded, logs one line per request on stderr, exits 0 after SIGTERM
//! once every in-flight request is answered.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::{json, Value};

use super::detect::{detect, detect_err, trained_models, DetectArgs};
use super::workspace::open;
use super::{CliError, Globals, PipelineArgs};
use crate::detect::find_chain;
use crate::serve::auth::{loopback, Token};
use crate::serve::batcher::{BatchConfig, Batcher, WorkerSpec};
use crate::serve::http::{DetectService, State};
use crate::serve::limits::{BodyLimits, Inflight};
use crate::serve::metrics::Metrics;
use crate::serve::sanitize::redact_json;
use crate::serve::scratch::Scratch;
use crate::serve::wire::InferConfig;

/// Arguments of `luna serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The pipeline whose trained models to serve (name or path).
    #[arg(long, default_value = "demo")]
    pipeline: String,
    /// Override a variable of the pipeline: --set name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    sets: Vec<String>,
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: String,
    /// Crops per forward batch at most (1 = no batching).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    max_batch: u64,
    /// How long a batch waits for more requests once it could run (its first request queued
    /// and the worker free), in milliseconds.
    #[arg(long, default_value_t = 10)]
    max_wait_ms: u64,
    /// Crops waiting for a batch at most; more are refused with 503 + Retry-After.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    queue: u64,
    /// Detect requests waiting for the device at most; more are refused with 503.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    detect_queue: u64,
    /// Request body size limit (bytes, or with a unit: 512MiB); larger bodies are refused
    /// with 413.
    #[arg(long, default_value = "512MiB", value_parser = size)]
    max_body: u64,
    /// Request-body bytes held at once across all requests; a request whose body does not
    /// fit is refused with 503 + Retry-After before it is read.
    #[arg(long, default_value = "2GiB", value_parser = size)]
    max_inflight: u64,
    /// Seconds a request body may take to arrive in all; slower ones are closed with 408.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    body_timeout_s: u64,
    /// Seconds a request body may pause between two pieces; longer pauses are closed with 408.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    body_idle_s: u64,
    /// A file holding the bearer token clients must send (`Authorization: Bearer TOKEN`;
    /// every route but /healthz). Required to listen on an address other than loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Serve an address other than loopback without a token (anyone who reaches it can use
    /// the models).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Keep each /v1/detect request's upload folder (.luna/serve/uploads/) after the answer.
    #[arg(long)]
    keep_uploads: bool,
    /// Run records of /v1/detect kept in .luna/serve/runs/ (older ones are removed).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    keep_runs: u64,
    /// Free disk space /v1/detect keeps (bytes, or with a unit); uploads that would pass it
    /// are refused with 507.
    #[arg(long, default_value = "2GiB", value_parser = size)]
    min_free_disk: u64,
    /// Device of the classify worker: auto, cpu, cuda or cuda:N (detection uses the
    /// pipeline's own `device` params).
    #[arg(long, default_value = "auto")]
    device: String,
    /// Torch threads of the classify worker (default: number of cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Seconds a batch may take before the worker counts as hung and is restarted.
    #[arg(long, default_value_t = 120)]
    batch_timeout_s: u64,
}

fn setup(e: impl std::fmt::Display) -> CliError {
    CliError::failed(e.to_string(), None)
}

fn size(s: &str) -> Result<u64, String> {
    crate::serve::limits::parse_size(s)
}

/// The token, and the rule that a non-loopback address needs one (or `--insecure-no-auth`).
fn auth(a: &ServeArgs, addr: &std::net::SocketAddr) -> Result<Option<Token>, CliError> {
    let token = a
        .token_file
        .as_deref()
        .map(Token::load)
        .transpose()
        .map_err(|e| {
            CliError::usage(
                e.to_string(),
                Some("write one line of at least 16 random characters, e.g. `openssl rand -hex 32 > token`".into()),
            )
        })?;
    if token.is_none() && !loopback(addr) {
        if !a.insecure_no_auth {
            return Err(CliError::usage(
                format!("refusing to serve {addr} without authentication: it is reachable from other machines"),
                Some("give --token-file FILE (clients send `Authorization: Bearer TOKEN`), listen on 127.0.0.1, or pass --insecure-no-auth to serve it open anyway".into()),
            ));
        }
        eprintln!("serve: warning: serving on {addr} without authentication (--insecure-no-auth): anyone who can reach it can use the models");
    }
    Ok(token)
}

/// Runs the command.
pub fn cmd(g: &Globals, a: ServeArgs) -> Result<i32, CliError> {
    crate::model::Device::parse(&a.device)
        .map_err(|e| CliError::usage(format!("--device: {e}"), None))?;
    let addr: std::net::SocketAddr = a.addr.parse().map_err(|e| {
        CliError::usage(
            format!("--addr `{}`: {e}", a.addr),
            Some("give HOST:PORT, e.g. 127.0.0.1:8080 (port 0 picks a free one)".into()),
        )
    })?;
    let token = auth(&a, &addr)?;
    let pa = PipelineArgs {
        pipeline: a.pipeline.clone(),
        sets: a.sets.clone(),
    };
    let o = open(g, &pa)?;
    let chain = find_chain(&o.pipeline, None).map_err(detect_err)?;
    let planned = trained_models(&o, &chain, &a.pipeline)?;
    o.stat.save();
    let model = |stage: &str, role: &str| served_model(&o, &planned, stage, role);
    let (nodule, nodule_dir, nodule_key) = model(&chain.nodule_model, "nodule")?;
    let mal = chain
        .malignancy_model
        .as_deref()
        .map(|m| model(m, "malignancy"))
        .transpose()?;
    let (seg, _, _) = model(&chain.segmenter, "segmentation")?;
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let spec = WorkerSpec {
        bin: crate::worker::worker_binary()
            .map_err(|e| CliError::failed(e.to_string(), e.hint()))?,
        config: InferConfig {
            nodule: nodule_dir,
            malignancy: mal.as_ref().map(|m| m.1.clone()),
            device: a.device.clone(),
            threads,
            chunk: a.max_batch as usize,
        },
    };
    let mut models = vec![nodule.clone()];
    models.extend(mal.as_ref().map(|m| m.0.clone()));
    models.push(seg);
    let model_keys = json!({"nodule": nodule_key, "malignancy": mal.as_ref().map(|m| m.2.clone())});
    let cfg = BatchConfig {
        max_batch: a.max_batch as usize,
        max_wait: Duration::from_millis(a.max_wait_ms),
        queue: a.queue as usize,
        batch_timeout: Duration::from_secs(a.batch_timeout_s.max(1)),
    };
    // a worker that dies mid-write must not kill the server with SIGPIPE (main sets the
    // default disposition); writes to it fail with EPIPE instead
    // SAFETY: changing a signal disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // uploads streaming at loopback speed keep both workers busy: look for new connections
    // (spawned from the accept loop into the global queue) and for socket readiness every 8
    // task polls instead of 31/61, so /healthz is not left waiting behind them
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .event_interval(8)
        .global_queue_interval(8)
        .enable_all()
        .build()
        .map_err(setup)?;
    // uploads of CTs get async workers of their own at nice 10 (serve/lanes.rs)
    let bulk = crate::serve::lanes::bulk_runtime(2).map_err(setup)?;
    let bulk_handle = bulk.handle().clone();
    let scratch = detect_scratch(&o.root, &a);
    let detect_run = detect_runner(g.clone(), pa.clone(), scratch.runs.clone());
    let pipeline_name = o.pipeline.name.clone();
    let workspace = o.root.clone();
    let mut models_doc = models_doc(&pipeline_name, models, &cfg, a.max_wait_ms, &workspace);
    rt.block_on(async move {
        let metrics = Arc::new(Metrics::default());
        let (batcher, task) = Batcher::start(spec, cfg.clone(), metrics.clone())
            .await
            .map_err(|e| CliError::failed(format!("cannot start the model worker: {e}"), None))?;
        let hello = batcher.state.lock().await.hello.clone();
        let shape = hello.as_ref().map(|h| h.shape).map_err(|e| setup(e.clone()))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::failed(
                format!("cannot listen on {addr}: {e}"),
                Some("choose another port with --addr HOST:PORT".into()),
            )
        })?;
        let bound = listener.local_addr().map_err(setup)?;
        let st = Arc::new(State {
            batcher,
            metrics,
            models: {
                models_doc["crop_shape"] = json!(shape);
                models_doc
            },
            model_keys,
            shape,
            limits: BodyLimits {
                max_body: a.max_body,
                total: Duration::from_secs(a.body_timeout_s),
                idle: Duration::from_secs(a.body_idle_s),
            },
            inflight: Inflight::new(a.max_inflight),
            token,
            workspace,
            detect: Some(DetectService {
                run: Arc::new(detect_run),
                scratch,
                capacity: a.detect_queue as usize,
                device: tokio::sync::Semaphore::new(1),
            }),
            id_prefix: format!("{:08x}", rand::random::<u32>()),
            seq: AtomicU64::new(0),
        });
        eprintln!(
            "serve: pipeline `{pipeline_name}`: nodule model {}{}; worker pid {} on {}; max_batch {}, max_wait {} ms",
            crate::text::head_chars(nodule["key"].as_str().unwrap_or(""), 12),
            mal.as_ref().map(|m| format!(", malignancy model {}", crate::text::head_chars(&m.2, 12))).unwrap_or_default(),
            hello.as_ref().map(|h| h.pid).unwrap_or(0),
            hello.as_ref().map(|h| h.device.clone()).unwrap_or_default(),
            cfg.max_batch,
            a.max_wait_ms,
        );
        announce(bound);
        crate::serve::http::serve(st.clone(), listener, bulk_handle)
            .await
            .map_err(setup)?;
        drop(st);
        let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        eprintln!("serve: stopped");
        Ok::<i32, CliError>(0)
    })
}

/// `/v1/detect`'s folders and disk floor (`crate::serve::scratch`), with the uploads of
/// servers killed earlier removed.
fn detect_scratch(root: &Path, a: &ServeArgs) -> Scratch {
    let base = root.join(".luna").join("serve");
    let s = Scratch {
        uploads: base.join("uploads"),
        runs: base.join("runs"),
        keep_uploads: a.keep_uploads,
        keep_runs: a.keep_runs as usize,
        min_free: a.min_free_disk,
    };
    s.clean_stale();
    s
}

/// `/v1/models`' document without the crop shape (known once the worker runs), with no
/// server path in it (a model's params may name files).
fn models_doc(
    pipeline: &str,
    models: Vec<Value>,
    cfg: &BatchConfig,
    max_wait_ms: u64,
    root: &Path,
) -> Value {
    let mut doc = json!({"pipeline": pipeline, "models": models,
        "batching": {"max_batch": cfg.max_batch, "max_wait_ms": max_wait_ms, "queue": cfg.queue}});
    redact_json(&mut doc, &[(root, "<workspace>")]);
    doc
}

/// One served model: its `/v1/models` entry, its artifact directory and its key.
fn served_model(
    o: &super::workspace::Opened,
    planned: &[crate::engine::plan::PlannedStage],
    stage: &str,
    role: &str,
) -> Result<(Value, PathBuf, String), CliError> {
    let p = planned
        .iter()
        .find(|s| s.stage == stage)
        .ok_or_else(|| setup(format!("the model stage `{stage}` is not in the plan")))?;
    let spec = o.pipeline.stages.iter().find(|s| s.name == stage);
    let dir = o.cache.object_dir(&p.key);
    Ok((
        json!({"role": role, "stage": stage, "kind": p.kind, "key": p.key,
               "params": spec.map(|s| s.with.clone())}),
        dir,
        p.key.clone(),
    ))
}

/// `/v1/detect`'s runner: `luna detect` on the uploaded CT (staged in the request's folder,
/// recorded under `runs`), its JSON with the client's file name; a usage error (exit code 2:
/// the CT is unusable) is the client's (400), anything else the server's (500).
fn detect_runner(
    g: Globals,
    pa: PipelineArgs,
    runs: PathBuf,
) -> impl Fn(&Path, &Path) -> Result<Value, (u16, String)> + Send + Sync + 'static {
    move |mhd: &Path, work: &Path| -> Result<Value, (u16, String)> {
        let args = DetectArgs::for_serve(mhd.to_path_buf(), &pa, work.join("stage"), runs.clone());
        match detect(&g, &args) {
            Ok(d) => {
                let mut doc = d.json();
                // the client's file name, not the server's scratch path
                if let Some(s) = doc["series"].get_mut(0) {
                    s["file"] = json!(mhd.file_name().map(|f| f.to_string_lossy()));
                }
                Ok(doc)
            }
            Err(e) => {
                let status = if e.code() == 2 { 400 } else { 500 };
                let text = e.render();
                Err((
                    status,
                    text.trim_start_matches("error: ").trim_end().to_string(),
                ))
            }
        }
    }
}

/// Prints `listening on http://ADDR` on stdout (what scripts wait for), flushed at once.
fn announce(bound: std::net::SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // stdout closed: nobody waits for the line, and the server still serves
    let _ = writeln!(out, "listening on http://{bound}");
    let _ = out.flush();
}
