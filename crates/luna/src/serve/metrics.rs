//! The service's counters, written as Prometheus text (`GET /metrics`, exposition format 0.0.4).
//!
//! Design: a handful of series behind one mutex — requests by route and status, request
//! latency, batch size/time and queue-wait histograms, queue depth, the worker's state and restarts. A
//! request updates them once when it ends, a batch once when it returns, so the lock is taken
//! a few times per request and never held across an await.
//!
//! Rejected: the `prometheus` crate (a registry, protobuf and lazy statics for nine series);
//! atomics per series (histograms need several fields updated together to stay consistent).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histograms.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Upper bounds of the batch-size histogram (crops).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (c, b) in self.counts.iter_mut().zip(self.bounds) {
            if v <= *b {
                *c += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (c, b) in self.counts.iter().zip(self.bounds) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    batch_size: Histogram,
    batch_seconds: Histogram,
    queue_seconds: Histogram,
    restarts: u64,
}

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// Crops admitted to the classify queue and not yet in a batch.
    pub queued: AtomicI64,
    /// Detect requests waiting for or holding the device.
    pub detect_queued: AtomicI64,
    /// 1 while the worker runs a batch.
    pub worker_busy: AtomicI64,
    /// Requests being answered.
    pub in_flight: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                latency: BTreeMap::new(),
                batch_size: Histogram::new(BATCH_BUCKETS),
                batch_seconds: Histogram::new(LATENCY_BUCKETS),
                queue_seconds: Histogram::new(LATENCY_BUCKETS),
                restarts: 0,
            }),
            queued: AtomicI64::new(0),
            detect_queued: AtomicI64::new(0),
            worker_busy: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a finished request.
    pub fn request(&self, route: &'static str, status: u16, seconds: f64) {
        let mut m = self.lock();
        *m.requests.entry((route, status)).or_default() += 1;
        m.latency
            .entry(route)
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(seconds);
    }

    /// Records a batch the worker ran.
    pub fn batch(&self, crops: usize, seconds: f64) {
        let mut m = self.lock();
        m.batch_size.observe(crops as f64);
        m.batch_seconds.observe(seconds);
    }

    /// Records how long each request of a batch waited in the queue before the batch left.
    pub fn queued_for(&self, waits: &[std::time::Duration]) {
        let mut m = self.lock();
        for w in waits {
            m.queue_seconds.observe(w.as_secs_f64());
        }
    }

    /// Records a worker restart.
    pub fn restart(&self) {
        self.lock().restarts += 1;
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let m = self.lock().clone_view();
        let mut out = String::new();
        out.push_str("# HELP luna_serve_requests_total Requests answered, by route and HTTP status.\n# TYPE luna_serve_requests_total counter\n");
        for ((route, status), n) in &m.requests {
            let _ = writeln!(
                out,
                "luna_serve_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP luna_serve_request_seconds Request latency, by route.\n# TYPE luna_serve_request_seconds histogram\n");
        for (route, h) in &m.latency {
            h.write(
                &mut out,
                "luna_serve_request_seconds",
                &format!("route=\"{route}\""),
            );
        }
        out.push_str("# HELP luna_serve_batch_size Crops per forward batch.\n# TYPE luna_serve_batch_size histogram\n");
        m.batch_size.write(&mut out, "luna_serve_batch_size", "");
        out.push_str("# HELP luna_serve_batch_seconds Worker time per batch.\n# TYPE luna_serve_batch_seconds histogram\n");
        m.batch_seconds
            .write(&mut out, "luna_serve_batch_seconds", "");
        out.push_str("# HELP luna_serve_queue_seconds Classify request time from admission to its batch leaving for the worker.\n# TYPE luna_serve_queue_seconds histogram\n");
        m.queue_seconds
            .write(&mut out, "luna_serve_queue_seconds", "");
        let gauges = [
            (
                "luna_serve_queue_depth",
                "Crops waiting for a batch.",
                self.queued.load(Ordering::Relaxed),
            ),
            (
                "luna_serve_detect_queue_depth",
                "Detect requests waiting for or holding the device.",
                self.detect_queued.load(Ordering::Relaxed),
            ),
            (
                "luna_serve_worker_busy",
                "1 while the torch worker runs a batch.",
                self.worker_busy.load(Ordering::Relaxed),
            ),
            (
                "luna_serve_in_flight",
                "Requests being answered.",
                self.in_flight.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(out, "# HELP luna_serve_worker_restarts_total Torch worker restarts after a crash.\n# TYPE luna_serve_worker_restarts_total counter\nluna_serve_worker_restarts_total {}", m.restarts);
        out
    }
}

impl Inner {
    fn clone_view(&self) -> Inner {
        Inner {
            requests: self.requests.clone(),
            latency: self.latency.clone(),
            batch_size: self.batch_size.clone(),
            batch_seconds: self.batch_seconds.clone(),
            queue_seconds: self.queue_seconds.clone(),
            restarts: self.restarts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_requests_count_by_status() {
        let m = Metrics::default();
        m.request("classify", 200, 0.004);
        m.request("classify", 200, 0.2);
        m.request("classify", 503, 0.0001);
        m.batch(3, 0.01);
        m.queued_for(&[
            std::time::Duration::from_millis(3),
            std::time::Duration::from_millis(30),
        ]);
        let t = m.render();
        assert!(
            t.contains("luna_serve_requests_total{route=\"classify\",status=\"200\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("luna_serve_requests_total{route=\"classify\",status=\"503\"} 1\n"),
            "{t}"
        );
        assert!(
            t.contains("luna_serve_request_seconds_bucket{route=\"classify\",le=\"0.005\"} 2\n"),
            "{t}"
        );
        assert!(
            t.contains("luna_serve_request_seconds_bucket{route=\"classify\",le=\"+Inf\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("luna_serve_batch_size_bucket{le=\"2\"} 0\nluna_serve_batch_size_bucket{le=\"4\"} 1\n"), "{t}");
        assert!(t.contains("luna_serve_queue_depth 0\n"), "{t}");
        assert!(t.contains("luna_serve_queue_seconds_bucket{le=\"0.005\"} 1\nluna_serve_queue_seconds_bucket{le=\"0.01\"} 1\nluna_serve_queue_seconds_bucket{le=\"0.025\"} 1\nluna_serve_queue_seconds_bucket{le=\"0.05\"} 2\n"), "{t}");
    }
}
