//! Two lanes of async workers: uploads of CTs (`POST /v1/detect`) are served by a runtime of
//! their own whose threads run at nice 10, everything else (`/healthz`, `/metrics`,
//! `/v1/models`, `/v1/classify`) by the main runtime at normal priority.
//!
//! Design: an accepted connection's first bytes are peeked (not read) until its request line
//! shows whether it is an upload; an upload's socket is handed to the bulk runtime, where
//! hyper serves it as usual. Receiving a 100 MB body at loopback speed is CPU work of the
//! thread that calls `recv` (the copy, and on loopback the sender's softirq work charged to
//! whichever thread runs it); on a 2-CPU machine with ten such uploads, a probe of `/healthz`
//! on the same workers waited behind them (p99 96 ms with every other fix in place). With the
//! uploads on nice-10 threads the kernel runs the main workers first.
//!
//! A keep-alive connection stays on the lane its first request chose; a client mixing uploads
//! and probes on one connection gets no priority (documented in the README).
//!
//! Rejected: more workers on one runtime (measured: 4 instead of 2 gave p99 93 against 99 ms,
//! the tail is priority, not parallelism); a thread per probe connection (unbounded threads);
//! routing after hyper parsed the headers (the body's socket reads would still run on the
//! connection's task, on whichever runtime accepted it).

use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::runtime::{Handle, Runtime};

/// The request line prefix of an upload.
const UPLOAD: &[u8] = b"POST /v1/detect";
/// How long the first bytes may take before a connection goes to the main lane anyway.
const PEEK_FOR: Duration = Duration::from_millis(500);

/// The bulk lane: `threads` async workers at nice 10.
pub fn bulk_runtime(threads: usize) -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("luna-serve-bulk")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()
}

/// Lowers the calling thread's priority to nice 10.
pub fn lower_priority() {
    // SAFETY: changes the priority of the calling thread only (Linux: per-thread nice); a
    // failure leaves it at the default, which is what it was
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// Whether the connection's first request is an upload (peeked, nothing consumed). A client
/// that sends nothing within [`PEEK_FOR`] is not one (its header deadline runs on the main lane).
pub async fn is_upload(stream: &TcpStream) -> bool {
    let start = Instant::now();
    let mut buf = [0u8; UPLOAD.len()];
    loop {
        let n = match tokio::time::timeout(PEEK_FOR, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => return false,
        };
        if buf[..n] != UPLOAD[..n] {
            return false;
        }
        if n == UPLOAD.len() {
            return true;
        }
        // a request line split across segments: wait for the rest (peek returns at once
        // while the first part is queued)
        if start.elapsed() > PEEK_FOR {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Moves an accepted connection onto `lane` (a socket is registered with the runtime that
/// accepted it; this re-registers it with the lane's).
pub fn hand_over<F, Fut>(stream: TcpStream, lane: &Handle, serve: F) -> std::io::Result<()>
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let std = stream.into_std()?;
    lane.spawn(async move {
        match TcpStream::from_std(std) {
            Ok(s) => serve(s).await,
            Err(e) => eprintln!("serve: cannot move an upload's connection to its lane: {e}"),
        }
    });
    Ok(())
}
