//! The load generator of the growth curves: kube-apiserver's review of a user, a closed
//! loop over a working set of users, and the fill that caches answers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;

use crate::common::{BenchResult, Lat};
use crate::support::{self, cpu_seconds, Daemon, Https};
use crate::PASSWORD;

/// What kube-apiserver sends for `user` with the right password.
pub fn body(user: &str) -> Bytes {
    Bytes::from(support::review_body("v1", &support::token(user, PASSWORD)))
}

pub fn user_body(i: usize) -> Bytes {
    body(&format!("user{i}"))
}

pub fn uri(d: &Daemon) -> BenchResult<Uri> {
    Ok(format!("{}?timeout=30s", d.url()).parse()?)
}

pub fn accepted(b: &[u8]) -> bool {
    b.windows(20).any(|w| w == b"\"authenticated\":true")
}

/// One review that must be accepted: how long it took.
pub async fn review(c: &Https, url: &Uri, body: Bytes) -> BenchResult<Duration> {
    let t0 = Instant::now();
    let (status, b) = c.send("POST", url.clone(), body).await?;
    let took = t0.elapsed();
    if status != 200 || !accepted(&b) {
        return Err(format!("review refused: {status} {}", String::from_utf8_lossy(&b)).into());
    }
    Ok(took)
}

/// A closed loop's result.
pub struct Run {
    pub requests: usize,
    pub errors: usize,
    pub secs: f64,
    pub lat: Lat,
    pub server_cpu: f64,
}

impl Run {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }

    pub fn merge(runs: Vec<Run>) -> Run {
        let mut all = Run {
            requests: 0,
            errors: 0,
            secs: 0.0,
            lat: Lat::default(),
            server_cpu: 0.0,
        };
        for r in runs {
            all.requests += r.requests;
            all.errors += r.errors;
            all.secs += r.secs;
            all.lat.0.extend(r.lat.0);
            all.server_cpu += r.server_cpu;
        }
        all
    }

    pub fn cpu_us(&self) -> f64 {
        self.server_cpu * 1e6 / self.requests.max(1) as f64
    }
}

/// Which body worker `w` of `workers` sends as its `k`th request: each worker walks its
/// own slice of the working set, so that the loop touches all of it evenly and no two
/// requests in flight are for the same user.
pub type Pick = Arc<dyn Fn(usize, usize) -> Bytes + Send + Sync>;

/// `in_flight` requests kept in flight on `clients` for `warmup + run`; the answers that
/// came within the measured window count.
pub async fn closed_loop(
    clients: &[Https],
    in_flight: usize,
    url: &Uri,
    pick: Pick,
    pid: u32,
    run: Duration,
) -> Run {
    let from = Instant::now() + Duration::from_millis(500);
    let end = from + run;
    let tasks: Vec<_> = (0..in_flight)
        .map(|w| {
            let (c, url, pick) = (clients[w % clients.len()].clone(), url.clone(), pick.clone());
            tokio::spawn(async move {
                let (mut lat, mut errors) = (Lat::default(), 0usize);
                for k in 0.. {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    let ok = matches!(c.send("POST", url.clone(), pick(w, k)).await, Ok((200, b)) if accepted(&b));
                    let t1 = Instant::now();
                    if t1 >= from && t1 < end {
                        if ok {
                            lat.push(t1 - t0);
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep_until(from.into()).await;
    let cpu0 = cpu_seconds(pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu = cpu_seconds(pid) - cpu0;
    let mut out = Run {
        requests: 0,
        errors: 0,
        secs: run.as_secs_f64(),
        lat: Lat::default(),
        server_cpu: cpu,
    };
    for t in tasks {
        if let Ok((l, e)) = t.await {
            out.lat.0.extend(l.0);
            out.errors += e;
        }
    }
    out.requests = out.lat.0.len();
    out
}

/// Reviews users `from..upto`, each once, `concurrency` at a time over `clients`, until
/// `deadline`: how many were reviewed and how many of those were not accepted.
pub async fn fill(
    clients: &[Https],
    url: &Uri,
    from: usize,
    upto: usize,
    concurrency: usize,
    deadline: Instant,
) -> (usize, usize) {
    let next = Arc::new(AtomicUsize::new(from));
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let (c, url, next) = (clients[w % clients.len()].clone(), url.clone(), next.clone());
            tokio::spawn(async move {
                let (mut done, mut failed) = (0, 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= upto || Instant::now() > deadline {
                        return (done, failed);
                    }
                    done += 1;
                    if !matches!(c.send("POST", url.clone(), user_body(i)).await, Ok((200, b)) if accepted(&b)) {
                        failed += 1;
                    }
                }
            })
        })
        .collect();
    let (mut done, mut failed) = (0, 0);
    for t in tasks {
        if let Ok((d, f)) = t.await {
            done += d;
            failed += f;
        }
    }
    (done, failed)
}

/// `n` HTTP clients of `d` with kube-apiserver's certificate.
pub fn clients(d: &Daemon, n: usize, http2: bool) -> Vec<Https> {
    (0..n)
        .map(|_| Https::new(&d.pki, Some(d.pki.client_identity()), http2))
        .collect()
}
