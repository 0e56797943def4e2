//! Bounds on what clients can make the server hold: request-body bytes in flight across all
//! requests (`--max-inflight`), one body's size (`--max-body`) and how long a body may take to
//! arrive (`--body-timeout-s` in all, `--body-idle-s` between two pieces).
//!
//! Design: one byte budget ([`Inflight`], an atomic counter) that a request reserves from
//! *before* its body is read — its whole `Content-Length` at once, or piece by piece for a
//! chunked body — so a request that does not fit is answered 503 + `Retry-After` without
//! reading a byte of it, and memory held by bodies never exceeds the budget (plus one piece).
//! A [`Reservation`] gives its bytes back when dropped, on every exit path; handlers drop it
//! as soon as the body is on disk or decoded. [`read_body`] reads into one buffer sized from
//! `Content-Length` (no second copy when the pieces are joined), with a deadline for the whole
//! body and one for each piece, so a trickled body is closed with 408; it yields its worker
//! every few MB, so a fast upload cannot hold it while `/healthz` waits.
//!
//! Rejected: a semaphore of bytes (tokio's caps permits at `u32::MAX >> 3` ≈ 512 MiB, less than
//! one allowed body); queueing requests that do not fit (a client uploading 100 MB waits with
//! its socket open either way; an immediate 503 lets it back off and keeps the server's memory
//! flat); a minimum transfer rate (harder to explain than two deadlines, same protection).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Body bytes a request reads before it lets other tasks run on its worker.
const YIELD_EVERY: usize = 1 << 20;

/// The budget of request-body bytes held at once.
#[derive(Debug)]
pub struct Inflight {
    max: u64,
    used: AtomicU64,
}

impl Inflight {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Arc<Inflight> {
        Arc::new(Inflight {
            max,
            used: AtomicU64::new(0),
        })
    }

    /// The budget.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }

    /// Reserves `n` bytes, or `None` when they do not fit now.
    pub fn reserve(self: &Arc<Inflight>, n: u64) -> Option<Reservation> {
        self.take(n).then(|| Reservation {
            owner: self.clone(),
            n,
        })
    }
}

/// Bytes of the budget held by one request; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    owner: Arc<Inflight>,
    n: u64,
}

impl Reservation {
    /// Holds `more` bytes in addition, if they fit.
    pub fn grow(&mut self, more: u64) -> bool {
        let ok = self.owner.take(more);
        if ok {
            self.n += more;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.owner.used.fetch_sub(self.n, Ordering::SeqCst);
    }
}

/// How a body may arrive.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Bytes at most.
    pub max_body: u64,
    /// The whole body within this.
    pub total: Duration,
    /// Each piece within this of the previous one.
    pub idle: Duration,
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Over `--max-body`.
    #[error("the body ({got}) exceeds the limit of {max} bytes (`luna serve --max-body`)")]
    TooLarge {
        /// What was seen (a declared length, or "streamed").
        got: String,
        /// The limit.
        max: u64,
    },
    /// The bytes in flight would pass `--max-inflight`.
    #[error("the server holds {used} of its {max} bytes of request bodies in flight (`luna serve --max-inflight`) and this body does not fit; retry later")]
    Budget {
        /// Reserved now.
        used: u64,
        /// The budget.
        max: u64,
    },
    /// Too slow.
    #[error(
        "the body did not arrive in time ({what}; `luna serve --body-timeout-s`/`--body-idle-s`)"
    )]
    Slow {
        /// Which deadline.
        what: String,
    },
    /// The connection failed.
    #[error("cannot read the body: {0}")]
    Read(String),
}

/// A reservation for a body of `declared` bytes (none: 0 now, grown while reading).
pub fn admit(
    budget: &Arc<Inflight>,
    declared: Option<u64>,
    limits: &BodyLimits,
) -> Result<Reservation, BodyError> {
    if let Some(n) = declared.filter(|&n| n > limits.max_body) {
        return Err(BodyError::TooLarge {
            got: format!("{n} bytes"),
            max: limits.max_body,
        });
    }
    budget
        .reserve(declared.unwrap_or(0))
        .ok_or_else(|| BodyError::Budget {
            used: budget.used(),
            max: budget.max(),
        })
}

/// Reads `body` within `limits`, growing `held` for bytes beyond what it already holds.
pub async fn read_body(
    mut body: Incoming,
    declared: Option<u64>,
    held: &mut Reservation,
    limits: &BodyLimits,
    budget: &Inflight,
) -> Result<Bytes, BodyError> {
    let start = tokio::time::Instant::now();
    let deadline = start + limits.total;
    let cap = declared.unwrap_or(0).min(limits.max_body);
    let mut buf: Vec<u8> = Vec::with_capacity(usize::try_from(cap).unwrap_or(0));
    let mut since_yield = 0usize;
    loop {
        let piece_deadline = deadline.min(tokio::time::Instant::now() + limits.idle);
        let frame = match tokio::time::timeout_at(piece_deadline, body.frame()).await {
            Err(_) => {
                let what = if piece_deadline == deadline {
                    format!("{} s for the whole body", limits.total.as_secs())
                } else {
                    format!("nothing for {} s", limits.idle.as_secs())
                };
                return Err(BodyError::Slow { what });
            }
            Ok(None) => break,
            Ok(Some(f)) => f.map_err(|e| BodyError::Read(e.to_string()))?,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = buf.len() as u64 + data.len() as u64;
        if len > limits.max_body {
            return Err(BodyError::TooLarge {
                got: "streamed".into(),
                max: limits.max_body,
            });
        }
        if len > held.n && !held.grow(len - held.n) {
            return Err(BodyError::Budget {
                used: budget.used(),
                max: budget.max(),
            });
        }
        buf.extend_from_slice(&data);
        since_yield += data.len();
        if since_yield >= YIELD_EVERY {
            // a body streaming at loopback speed is always ready: without this, one poll of
            // its task copies tens of MB (tokio's budget counts reads, not bytes) while
            // `/healthz` waits for the worker
            since_yield = 0;
            tokio::task::yield_now().await;
        }
    }
    Ok(Bytes::from(buf))
}

/// A size: a number of bytes, optionally with a unit (`KB`, `MB`, `GB`, `TB`: powers of 1000;
/// `KiB`, `MiB`, `GiB`, `TiB`: powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let unit = t.trim_start_matches(|c: char| c.is_ascii_digit());
    let num = t.strip_suffix(unit).unwrap_or(t);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 2GiB, 500MB, 1048576)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1000,
        "MB" => 1000u64.pow(2),
        "GB" => 1000u64.pow(3),
        "TB" => 1000u64.pow(4),
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        u => {
            return Err(format!(
                "`{s}`: unknown unit `{u}` (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_admits_what_fits_and_gets_bytes_back_on_drop() {
        let b = Inflight::new(100);
        let mut a = b.reserve(60).unwrap();
        assert!(b.reserve(50).is_none());
        assert!(!a.grow(41));
        assert!(a.grow(40));
        assert_eq!(b.used(), 100);
        drop(a);
        assert_eq!(b.used(), 0);
        assert!(b.reserve(100).is_some());
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn sizes_parse_with_and_without_units() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("1 GiX").unwrap_err().contains("unknown unit"));
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
    }
}
