//! The load generator: the tests' HTTPS client (hyper-rustls with a client certificate),
//! what kube-apiserver sends, latencies, and the closed loop of the throughput runs.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hyper::Uri;
use serde_json::{json, Value};

use crate::support::{self, Daemon, Https, Pki};
use crate::{Plan, PASSWORD};

/// One client of `pki`'s server with its client certificate; with `http2` every request of
/// it shares one connection, without it each request in flight holds one keep-alive
/// connection.
pub fn client(pki: &Pki, http2: bool) -> Https {
    Https::new(pki, Some(pki.client_identity()), http2)
}

/// Where kube-apiserver POSTs its reviews on `d`.
pub fn uri(d: &Daemon) -> Uri {
    format!("{}?timeout=30s", d.url()).parse().unwrap()
}

/// What kube-apiserver sends for `token`.
pub fn review_body(token: &str) -> Bytes {
    Bytes::from(support::review_body("v1", token))
}

/// The review of user `i` with the right password.
pub fn user_body(i: usize) -> Bytes {
    review_body(&support::token(&format!("user{i}"), PASSWORD))
}

pub async fn post(c: &Https, url: &Uri, body: Bytes) -> Result<(u16, Bytes), String> {
    c.send("POST", url.clone(), body).await
}

pub fn accepted(body: &[u8]) -> bool {
    body.windows(20).any(|w| w == b"\"authenticated\":true")
}

pub use crate::support::cpu_seconds;

/// A `/proc/PID/status` field in KiB (VmHWM, VmRSS).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| kib(l.strip_prefix(field)?))
        .unwrap_or(0)
}

/// `  1234 kB` as 1234.
pub fn kib(value: &str) -> Option<u64> {
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Latencies in nanoseconds.
#[derive(Default, Clone)]
pub struct Lat(pub Vec<u64>);

impl Lat {
    /// The `p`th percentile, in microseconds.
    pub fn pct(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_unstable();
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i] as f64 / 1000.0
    }

    /// The mean, in microseconds.
    pub fn mean(&self) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.iter().sum::<u64>() as f64 / self.0.len() as f64 / 1000.0
    }

    pub fn json(&self) -> Value {
        json!({"n": self.0.len(), "p50_us": self.pct(50.0), "p90_us": self.pct(90.0),
               "p99_us": self.pct(99.0), "max_us": self.pct(100.0), "mean_us": self.mean()})
    }
}

pub struct Throughput {
    pub requests: usize,
    pub errors: usize,
    pub secs: f64,
    pub lat: Lat,
    pub server_cpu: f64,
    pub client_cpu: f64,
}

impl Throughput {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    pub fn cpu_us_per_req(&self) -> f64 {
        self.server_cpu * 1e6 / self.requests.max(1) as f64
    }

    pub fn merge(runs: &[Throughput]) -> Throughput {
        Throughput {
            requests: runs.iter().map(|r| r.requests).sum(),
            errors: runs.iter().map(|r| r.errors).sum(),
            secs: runs.iter().map(|r| r.secs).sum(),
            lat: Lat(runs.iter().flat_map(|r| r.lat.0.iter().copied()).collect()),
            server_cpu: runs.iter().map(|r| r.server_cpu).sum(),
            client_cpu: runs.iter().map(|r| r.client_cpu).sum(),
        }
    }

    pub fn json(&self) -> Value {
        json!({"requests": self.requests, "errors": self.errors, "seconds": self.secs,
               "req_per_s": self.rps(), "latency": self.lat.json(),
               "server_cpu_us_per_req": self.cpu_us_per_req(),
               "client_cpu_us_per_req": self.client_cpu * 1e6 / self.requests.max(1) as f64})
    }
}

/// Closed loop: `per_client` requests in flight on each client, for `warmup + run`;
/// requests that complete within the measured window count. The server's CPU time is that
/// of all of `server_pids` (nginx's master and workers).
pub async fn closed_loop(
    clients: &[Https],
    per_client: usize,
    url: &Uri,
    bodies: &Arc<Vec<Bytes>>,
    server_pids: &[u32],
    plan: &Plan,
) -> Throughput {
    let server_cpu = || server_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let measure_from = Instant::now() + plan.warmup;
    let end = measure_from + plan.run;
    let mut tasks = Vec::new();
    for (ci, c) in clients.iter().enumerate() {
        for w in 0..per_client {
            let (c, url, bodies) = (c.clone(), url.clone(), bodies.clone());
            let first = (ci * per_client + w) * 7;
            tasks.push(tokio::spawn(async move {
                keep_one_in_flight(c, url, bodies, first, measure_from, end).await
            }));
        }
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let (s0, c0) = (server_cpu(), cpu_seconds(std::process::id()));
    tokio::time::sleep_until(end.into()).await;
    let (s1, c1) = (server_cpu(), cpu_seconds(std::process::id()));
    let mut all = Lat::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.0.extend(l);
        errors += e;
    }
    Throughput {
        requests: all.0.len(),
        errors,
        secs: plan.run.as_secs_f64(),
        lat: all,
        server_cpu: s1 - s0,
        client_cpu: c1 - c0,
    }
}

/// One request after another until `end`, cycling through `bodies` from `k`: the latencies
/// of the answers that came within `[measure_from, end)`, and how many of those failed.
async fn keep_one_in_flight(
    c: Https,
    url: Uri,
    bodies: Arc<Vec<Bytes>>,
    mut k: usize,
    measure_from: Instant,
    end: Instant,
) -> (Vec<u64>, usize) {
    let (mut lat, mut errors) = (Vec::with_capacity(1 << 16), 0usize);
    // Bounded in time and in count.
    for _ in 0..10_000_000u64 {
        let t0 = Instant::now();
        if t0 >= end {
            break;
        }
        k = (k + 1) % bodies.len();
        let ok = matches!(post(&c, &url, bodies[k].clone()).await, Ok((200, _)));
        let t1 = Instant::now();
        if t1 >= measure_from && t1 < end {
            if ok {
                lat.push((t1 - t0).as_nanos() as u64);
            } else {
                errors += 1;
            }
        }
    }
    (lat, errors)
}
