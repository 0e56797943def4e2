//! Dynamic batching of classify requests onto one torch worker per device.
//!
//! Design (the book's `ModelRunner` of chapter 15, with its limits made explicit):
//! - A request's crops become one [`Job`] on an unbounded channel, but only after
//!   [`Batcher::submit`] admitted them against the queue capacity (in crops): over capacity
//!   the request is refused at once (HTTP 503 + `Retry-After`), so memory is bounded by
//!   `queue × crop size` and a queued request is never dropped later.
//! - One task forms batches: it waits for a first job, then takes more until the batch holds
//!   `max_batch` crops or `max_wait` has passed since the batch could first have left — the
//!   oldest job's arrival, or the moment the worker became free if that is later —
//!   whichever comes first. So a job waits at most `max_wait` for company beyond the time the
//!   worker was busy anyway. The book's runner counts from the oldest arrival alone; then
//!   jobs that queued while the worker was busy leave the instant it frees, without the
//!   clients whose answers it has just sent, and under saturation the clients split into two
//!   groups that alternate half-full batches, each request waiting for the other group's
//!   batch and then its own (measured: 64 clients, mean batch 31.6 crops, p99 2.2 batch
//!   times). Counting from the free worker lets those clients rejoin within `max_wait`: full
//!   batches, p99 ≈ one batch time. Requests whose headers are in but whose bodies are still
//!   being received when that time is up ([`Batcher::arriving`]) are waited for, up to another
//!   `max_wait`: they have reached the server already, and leaving them behind would make
//!   them wait a whole batch (a burst of clients starting at once is the common case). So
//!   are connections opened less than `max_wait` ago that have not sent their first request
//!   yet: in such a burst most clients are still connecting when the first request is in
//!   (measured: 64 clients starting at once, first batch 19 crops, the other 45 requests
//!   waited for it, then for their own). A batch therefore waits at most 2 × `max_wait` for
//!   company. A job that would overflow the batch waits for the next one (a single job
//!   larger than `max_batch` runs alone; the worker passes it through the model in chunks of
//!   `max_batch`). Jobs whose client has gone are skipped.
//! - The worker (`luna-torch infer`, see [`super::wire`]) runs one batch at a time; while it
//!   does, the next batch fills. On a GPU this is what keeps the device busy with large
//!   batches; on the CPU it still amortises the per-call overhead of small batches.
//! - A worker that dies or stops answering (EOF, broken pipe, no answer within
//!   `batch_timeout`) fails only the batch it held: those requests get 503 with
//!   [`BatchFailure::WorkerCrashed`], a new worker is started at once, and queued jobs run on it.
//!
//! Rejected: batching in the worker (the server would need a second queue to know the depth
//! and to refuse overload, and a worker crash would lose the queued requests too); a fixed
//! batching tick (adds up to a tick of latency at low load; the deadline starts with the first
//! request instead).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

use super::metrics::Metrics;
use super::wire::{self, BatchError, Hello, InferConfig, Tag};

/// Probabilities of one crop: P(nodule), P(malignant) (NaN when no malignancy model is served).
pub type Probs = [f32; 2];

/// A request's answer and where its time went (the server puts the times on the response).
#[derive(Debug, Clone)]
pub struct Answered {
    /// One pair per crop, in the request's order.
    pub probs: Vec<Probs>,
    /// From admission to the moment its batch went to the worker.
    pub queued: Duration,
    /// Its batch's time in the worker (sending the crops, the passes, the answer).
    pub batch: Duration,
    /// Crops in its batch.
    pub batch_crops: usize,
}

/// What a queued request receives.
pub type Reply = Result<Answered, BatchFailure>;

/// Why a batch has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BatchFailure {
    /// The worker died or stopped answering while it held the batch.
    #[error("the torch worker crashed while running this request ({0}); it has been restarted, retry the request")]
    WorkerCrashed(String),
    /// No worker could be started.
    #[error("the torch worker is not running: {0}")]
    NoWorker(String),
    /// The worker answered with an error (the model failed on the batch).
    #[error("the model failed on this batch: {0}")]
    Model(String),
}

/// Refused at admission: the queue is full.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the classify queue is full ({queued} crops waiting, capacity {capacity}); retry later")]
pub struct Busy {
    /// Crops waiting.
    pub queued: i64,
    /// Capacity.
    pub capacity: usize,
}

/// One request's crops and where its answer goes.
struct Job {
    /// When it was queued: the batch's deadline is max_wait after this (for its oldest job)
    /// or after the worker became free, whichever is later.
    arrived: tokio::time::Instant,
    n: usize,
    bytes: Vec<u8>,
    reply: oneshot::Sender<Reply>,
}

/// Batching limits.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    /// Crops per batch at most.
    pub max_batch: usize,
    /// How long a batch waits for company once it could leave (its oldest job queued, the
    /// worker free).
    pub max_wait: Duration,
    /// Crops admitted and waiting at most.
    pub queue: usize,
    /// How long a batch may take before the worker counts as hung.
    pub batch_timeout: Duration,
}

/// How to start the worker.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The `luna-torch` binary.
    pub bin: PathBuf,
    /// Its configuration frame.
    pub config: InferConfig,
}

/// A running worker.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

/// What the server knows of the current worker (for `/healthz`).
#[derive(Debug, Clone)]
pub struct WorkerState {
    /// Its hello (pid, device, shape), or why none runs.
    pub hello: Result<Hello, String>,
    /// Workers started so far (1 + restarts).
    pub started: u64,
}

async fn read_frame(r: &mut ChildStdout) -> std::io::Result<(Tag, Vec<u8>)> {
    let mut h = [0u8; wire::HEADER_LEN];
    r.read_exact(&mut h).await?;
    let (tag, len) = wire::parse_header(&h)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((tag, body))
}

async fn write_frame(w: &mut ChildStdin, tag: Tag, body: &[&[u8]]) -> std::io::Result<()> {
    let len = body.iter().map(|b| b.len()).sum();
    w.write_all(&wire::header(tag, len)).await?;
    for b in body {
        w.write_all(b).await?;
    }
    w.flush().await
}

/// Starts a worker and waits for its hello.
async fn spawn(spec: &WorkerSpec) -> Result<(Worker, Hello), String> {
    let mut cmd = tokio::process::Command::new(&spec.bin);
    cmd.arg("infer")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    // SAFETY: prctl in the child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", spec.bin.display()))?;
    let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the worker's pipes are missing".into());
    };
    let cfg = serde_json::to_vec(&spec.config).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| {
        format!("the worker exited during start-up ({e}); its error is on stderr above")
    };
    write_frame(&mut stdin, Tag::Json, &[&cfg])
        .await
        .map_err(io)?;
    let (tag, body) = read_frame(&mut stdout).await.map_err(io)?;
    if tag != Tag::Json {
        return Err(format!(
            "the worker answered its configuration with a {tag:?} frame"
        ));
    }
    if let Ok(hello) = serde_json::from_slice::<Hello>(&body) {
        return Ok((
            Worker {
                child,
                stdin,
                stdout,
            },
            hello,
        ));
    }
    match serde_json::from_slice::<BatchError>(&body) {
        Ok(e) => Err(match e.hint {
            Some(h) => format!("{} (hint: {h})", e.error),
            None => e.error,
        }),
        Err(e) => Err(format!("the worker's hello is not valid: {e}")),
    }
}

/// A request on its way (a classify body being received, or a new connection's first
/// request), counted while it lives (see [`Batcher::arriving`]).
pub struct Arriving(Arc<Arrivals>);

impl Drop for Arriving {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

/// Requests on their way, and a wake-up for a batch that waits for them when none is left.
#[derive(Default)]
struct Arrivals {
    count: AtomicUsize,
    none: Notify,
}

/// The classify queue and its batching task.
pub struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    metrics: Arc<Metrics>,
    capacity: usize,
    max_wait: Duration,
    arriving: Arc<Arrivals>,
    /// The current worker.
    pub state: Arc<Mutex<WorkerState>>,
}

impl Batcher {
    /// Starts the first worker (an error when it cannot start: a bad model, no binary) and
    /// the batching task; returns the batcher and the task's handle (it ends when the batcher
    /// is dropped and the queue is empty).
    pub async fn start(
        spec: WorkerSpec,
        cfg: BatchConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Batcher, tokio::task::JoinHandle<()>), String> {
        let (worker, hello) = spawn(&spec).await?;
        let state = Arc::new(Mutex::new(WorkerState {
            hello: Ok(hello),
            started: 1,
        }));
        let (tx, rx) = mpsc::unbounded_channel();
        let arriving = Arc::new(Arrivals::default());
        let task = tokio::spawn(run(
            rx,
            Some(worker),
            spec,
            cfg.clone(),
            metrics.clone(),
            state.clone(),
            arriving.clone(),
        ));
        Ok((
            Batcher {
                tx,
                metrics,
                capacity: cfg.queue,
                max_wait: cfg.max_wait,
                arriving,
                state,
            },
            task,
        ))
    }

    /// How long a batch waits for company.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// Counts a request on its way until it is submitted or refused (drop the guard after
    /// [`Batcher::submit`]): a batch about to leave waits for such requests. The server takes
    /// one for a classify request from its headers on, and one for a new connection until its
    /// first request's headers are in (at most `max_wait`).
    pub fn arriving(&self) -> Arriving {
        self.arriving.count.fetch_add(1, Ordering::SeqCst);
        Arriving(self.arriving.clone())
    }

    /// Queues `n` crops (`bytes`: i16 LE); refused when they do not fit the queue.
    pub fn submit(&self, n: usize, bytes: Vec<u8>) -> Result<oneshot::Receiver<Reply>, Busy> {
        let before = self.metrics.queued.fetch_add(n as i64, Ordering::SeqCst);
        // one request larger than the whole queue still runs when the queue is empty
        if before > 0 && before + n as i64 > self.capacity as i64 {
            self.metrics.queued.fetch_sub(n as i64, Ordering::SeqCst);
            return Err(Busy {
                queued: before,
                capacity: self.capacity,
            });
        }
        let (reply, rx) = oneshot::channel();
        if let Err(mpsc::error::SendError(job)) = self.tx.send(Job {
            arrived: tokio::time::Instant::now(),
            n,
            bytes,
            reply,
        }) {
            self.metrics.queued.fetch_sub(n as i64, Ordering::SeqCst);
            let _ = job.reply.send(Err(BatchFailure::NoWorker(
                "the server is shutting down".into(),
            )));
        }
        Ok(rx)
    }
}

async fn run(
    mut rx: mpsc::UnboundedReceiver<Job>,
    mut worker: Option<Worker>,
    spec: WorkerSpec,
    cfg: BatchConfig,
    metrics: Arc<Metrics>,
    state: Arc<Mutex<WorkerState>>,
    arriving: Arc<Arrivals>,
) {
    let mut carry: Option<Job> = None;
    loop {
        // the worker is free from here on (the previous batch has been answered)
        let free = tokio::time::Instant::now();
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => break,
            },
        };
        let deadline = first.arrived.max(free) + cfg.max_wait;
        let late = deadline + cfg.max_wait;
        let mut n = first.n;
        let mut batch = vec![first];
        while n < cfg.max_batch {
            // registered before the count is read, so a last guard dropped in between wakes it
            let none_left = arriving.none.notified();
            tokio::pin!(none_left);
            none_left.as_mut().enable();
            let now = tokio::time::Instant::now();
            let waiting = arriving.count.load(Ordering::SeqCst) > 0;
            // before the deadline: wait for it; then, while requests are on their way, until
            // `late` or none is left; otherwise take only what is queued already (a past instant)
            let extend = now >= deadline && waiting && now < late;
            let until = if now < deadline {
                deadline
            } else if extend {
                late
            } else {
                now
            };
            let next = tokio::select! {
                r = tokio::time::timeout_at(until, rx.recv()) => r,
                () = &mut none_left, if extend => continue,
            };
            match next {
                Ok(Some(j)) if n + j.n > cfg.max_batch => {
                    carry = Some(j);
                    break;
                }
                Ok(Some(j)) => {
                    n += j.n;
                    batch.push(j);
                }
                Ok(None) => break,
                Err(_) if until == now => break,
                Err(_) => {}
            }
        }
        metrics.queued.fetch_sub(n as i64, Ordering::SeqCst);
        batch.retain(|j| !j.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if worker.is_none() {
            worker = restart(&spec, &metrics, &state).await;
        }
        let Some(w) = worker.as_mut() else {
            let why = match &state.lock().await.hello {
                Err(e) => e.clone(),
                Ok(_) => "it could not be restarted".into(),
            };
            for j in batch {
                let _ = j.reply.send(Err(BatchFailure::NoWorker(why.clone())));
            }
            continue;
        };
        let n: usize = batch.iter().map(|j| j.n).sum();
        metrics.worker_busy.store(1, Ordering::SeqCst);
        let started = tokio::time::Instant::now();
        let queued: Vec<Duration> = batch.iter().map(|j| started - j.arrived).collect();
        metrics.queued_for(&queued);
        let parts: Vec<&[u8]> = batch.iter().map(|j| j.bytes.as_slice()).collect();
        let answer = tokio::time::timeout(cfg.batch_timeout, async {
            write_frame(&mut w.stdin, Tag::Crops, &parts).await?;
            read_frame(&mut w.stdout).await
        })
        .await;
        metrics.worker_busy.store(0, Ordering::SeqCst);
        let took = started.elapsed();
        let result: Result<Vec<Probs>, BatchFailure> = match answer {
            Ok(Ok((Tag::Probs, body))) => match wire::f32_values(&body) {
                Some(v) if v.len() == 2 * n => {
                    metrics.batch(n, took.as_secs_f64());
                    Ok(v.chunks_exact(2).map(|c| [c[0], c[1]]).collect())
                }
                _ => Err(BatchFailure::WorkerCrashed(format!(
                    "it answered {} bytes for {n} crops",
                    body.len()
                ))),
            },
            Ok(Ok((Tag::Json, body))) => Err(BatchFailure::Model(
                serde_json::from_slice::<BatchError>(&body)
                    .map(|e| e.error)
                    .unwrap_or_else(|e| format!("unreadable error frame: {e}")),
            )),
            Ok(Ok((tag, _))) => Err(BatchFailure::WorkerCrashed(format!(
                "it answered a {tag:?} frame"
            ))),
            Ok(Err(e)) => Err(BatchFailure::WorkerCrashed(e.to_string())),
            Err(_) => Err(BatchFailure::WorkerCrashed(format!(
                "no answer within {} s",
                cfg.batch_timeout.as_secs()
            ))),
        };
        if let Err(BatchFailure::WorkerCrashed(why)) = &result {
            eprintln!("serve: torch worker failed on a batch of {n} crops: {why}; restarting it");
            if let Some(mut dead) = worker.take() {
                let _ = dead.child.kill().await;
            }
            worker = restart(&spec, &metrics, &state).await;
        }
        let mut at = 0;
        for (j, queued) in batch.into_iter().zip(queued) {
            let r = result
                .as_ref()
                .map(|v| Answered {
                    probs: v[at..at + j.n].to_vec(),
                    queued,
                    batch: took,
                    batch_crops: n,
                })
                .map_err(Clone::clone);
            at += j.n;
            let _ = j.reply.send(r);
        }
    }
    if let Some(mut w) = worker {
        drop(w.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(5), w.child.wait()).await;
    }
}

/// Starts a replacement worker, recording the attempt.
async fn restart(
    spec: &WorkerSpec,
    metrics: &Metrics,
    state: &Mutex<WorkerState>,
) -> Option<Worker> {
    metrics.restart();
    let r = spawn(spec).await;
    let mut st = state.lock().await;
    st.started += 1;
    match r {
        Ok((w, hello)) => {
            eprintln!("serve: torch worker restarted (pid {})", hello.pid);
            st.hello = Ok(hello);
            Some(w)
        }
        Err(e) => {
            eprintln!("serve: torch worker cannot be restarted: {e}");
            st.hello = Err(e);
            None
        }
    }
}
