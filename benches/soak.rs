//! `make soak` (`cargo bench --bench soak`): ten minutes of mixed load on the release daemon
//! against a real slapd, on 127.0.0.1 only, and whether anything grows without bound.
//!
//! The load, paced (each stream sends on its own fixed schedule, a late request is skipped,
//! not queued): cache hits of 200 users over one HTTP/2 connection as kube-apiserver sends
//! them, misses cycling through 20,000 users (the cache holds 5,000, so they keep churning
//! it), wrong passwords for random users (lockout protection's table fills and empties),
//! and password logins at the login port, each over a new TLS connection as the credential
//! plugin makes them. Every minute the config is reloaded (SIGHUP, waited for); half-way
//! through slapd is stopped for five seconds and started again.
//!
//! Before the load, every user is reviewed once, so that the answer cache and the table of
//! accepted credentials (lockout protection's, 20,000 entries at most) are at their bounds.
//! Every 30 s it reads the daemon's RSS, open file descriptors and cache entries, and the
//! p99 of each stream over that half minute. The verdict compares the end with the start:
//! RSS at the end within 10% of its peak over the first half (after the first minute, when
//! the cache is full), no more file descriptors at the end than after the first minute
//! (plus 2), and hit p99 in the last minute within 2x the second minute's.
//! `KLW_SOAK_SECS=120` for a short run (not for quoting). Writes `target/bench/soak.json`.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;
use serde_json::{json, Value};

use common::{open_fds, status_kib, verdict, write_json, BenchResult, Lat};
use support::issued::{reload, try_request_from, Issuer, KeyPair};
use support::{review_body, token, Daemon, Https, Site, Slapd};

const PASSWORD: &str = "soak-password";
const USERS: usize = 20_000;
const HOT_USERS: usize = 200;
const CAPACITY: usize = 5_000;
const SAMPLE: Duration = Duration::from_secs(30);

/// The streams of the mixed load: name and requests per second.
const STREAMS: [(&str, u32); 4] = [("hit", 400), ("miss", 40), ("wrong", 5), ("login", 5)];

/// One answered request: when (since the start), which stream, how long, whether it got
/// the answer it should have.
#[derive(Clone, Copy)]
struct Done {
    at: Duration,
    stream: usize,
    took: Duration,
    ok: bool,
}

type Log = Arc<Mutex<Vec<Done>>>;

/// What each request of a stream needs.
#[derive(Clone)]
struct Target {
    i: Arc<Issuer>,
    review: Uri,
    login: String,
    h2: Https,
}

fn main() -> BenchResult {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    kube_ldap_webhook::install_default_provider();
    let secs: u64 = std::env::var("KLW_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let total = Duration::from_secs(secs.max(60));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut slapd = Slapd::start_with(&support::many_users_ldif(USERS, PASSWORD));
    let keys = KeyPair::new();
    let cache = format!("capacity = {CAPACITY}\nttl = \"30m\"\nmax_failures = 3");
    let i = Arc::new(Issuer::start_with(
        Daemon::builder()
            .site(&Site::openldap())
            .url(slapd.url())
            .log_level("info"),
        &[("cache", &cache)],
        &keys,
        "rate = 100000\nburst = 10000",
        "",
    ));
    i.daemon.wait_for_ready();
    let d = &i.daemon;
    let target = Target {
        i: i.clone(),
        review: format!("{}?timeout=30s", d.url()).parse()?,
        login: i.login_url(),
        h2: d.http2_client(),
    };
    println!(
        "soak: {}s of mixed load ({}), a reload (SIGHUP) every minute, slapd stopped for 5 s at {}s; {USERS} LDAP users, cache.capacity = {CAPACITY}",
        total.as_secs(),
        STREAMS.map(|(n, r)| format!("{n} {r}/s")).join(", "),
        total.as_secs() / 2
    );
    // Every bounded table at its bound before the clock runs: each user accepted once fills
    // the answer cache to its capacity and the table of accepted credentials (20,000 at
    // most) to all 20,000 users, so that what grows after this is growth, not warm-up.
    let t0 = Instant::now();
    let refused = rt.block_on(prefill(&target));
    println!(
        "   prefill: {USERS} users reviewed once in {:.0} s ({refused} not accepted)",
        t0.elapsed().as_secs_f64()
    );
    let log: Log = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..STREAMS.len())
        .map(|s| {
            rt.spawn(stream(
                s,
                target.clone(),
                log.clone(),
                stop.clone(),
                started,
            ))
        })
        .collect();
    let samples = control(&i, &mut slapd, &log, started, total);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    let out = report(&samples, &log)?;
    println!("wrote {}", write_json("soak", &out)?.display());
    Ok(())
}

/// Reviews every user once, 32 at a time: how many were not accepted.
async fn prefill(t: &Target) -> usize {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (t, next) = (t.clone(), next.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                loop {
                    let u = next.fetch_add(1, Ordering::Relaxed);
                    if u >= USERS {
                        return refused;
                    }
                    let body = Bytes::from(review_body("v1", &token(&format!("user{u}"), PASSWORD)));
                    if !matches!(t.h2.send("POST", t.review.clone(), body).await, Ok((200, b)) if b.windows(20).any(|w| w == b"\"authenticated\":true")) {
                        refused += 1;
                    }
                }
            })
        })
        .collect();
    let mut refused = 0;
    for task in tasks {
        refused += task.await.unwrap_or(1);
    }
    refused
}

/// The main thread while the load runs: a reload every minute, the slapd stop half-way,
/// a sample every 30 s.
fn control(
    i: &Issuer,
    slapd: &mut Slapd,
    log: &Log,
    started: Instant,
    total: Duration,
) -> Vec<Value> {
    let d = &i.daemon;
    println!(
        "   {:>5} {:>9} {:>5} {:>8} {:>9} {:>9} {:>9} {:>9}  errors (hit miss wrong login)",
        "t s", "RSS MiB", "fds", "entries", "hit p99", "miss p99", "wrong p99", "login p99"
    );
    let mut samples = vec![sample(d, log, Duration::ZERO)];
    let (mut next_sample, mut next_reload) = (SAMPLE, Duration::from_secs(60));
    let mut restarted = false;
    while started.elapsed() < total {
        std::thread::sleep(Duration::from_millis(200));
        let now = started.elapsed();
        if !restarted && now >= total / 2 {
            slapd.stop();
            std::thread::sleep(Duration::from_secs(5));
            slapd.restart();
            restarted = true;
            println!(
                "   {:>5} slapd stopped for 5 s and started again",
                now.as_secs()
            );
        }
        if now >= next_reload && now + Duration::from_secs(5) < total {
            reload(d, |s| s);
            next_reload += Duration::from_secs(60);
        }
        if now >= next_sample {
            samples.push(sample(d, log, next_sample));
            next_sample += SAMPLE;
        }
    }
    samples
}

/// The daemon's readings at `at`, and the p99 and errors of each stream over the half
/// minute before it; printed as a row.
fn sample(d: &Daemon, log: &Log, at: Duration) -> Value {
    let pid = d.pid();
    let (rss, fds) = (status_kib(pid, "VmRSS:"), open_fds(pid));
    let entries = d.metric("kube_ldap_webhook_cache_entries", &[]);
    let from = at.saturating_sub(SAMPLE);
    let (mut lat, mut errors): (Vec<Lat>, Vec<usize>) =
        (vec![Lat::default(); STREAMS.len()], vec![0; STREAMS.len()]);
    if let Ok(all) = log.lock() {
        for r in all.iter().filter(|r| r.at >= from && r.at < at) {
            lat[r.stream].push(r.took);
            errors[r.stream] += usize::from(!r.ok);
        }
    }
    println!(
        "   {:>5} {:>9.1} {:>5} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>9.0}  {errors:?}",
        at.as_secs(),
        rss as f64 / 1024.0,
        fds,
        entries,
        lat[0].p99(),
        lat[1].p99(),
        lat[2].p99(),
        lat[3].p99()
    );
    let streams: serde_json::Map<String, Value> = STREAMS
        .iter()
        .zip(lat.iter().zip(&errors))
        .map(|((n, _), (l, e))| (n.to_string(), json!({"latency": l.to_json(), "errors": e})))
        .collect();
    json!({"t_s": at.as_secs(), "rss_kib": rss, "fds": fds, "cache_entries": entries, "streams": streams})
}

/// One stream of the load: `STREAMS[s]`'s requests on schedule until `stop`.
async fn stream(s: usize, t: Target, log: Log, stop: Arc<AtomicBool>, started: Instant) {
    let (_, rate) = STREAMS[s];
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: usize = 0;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let (t, log) = (t.clone(), log.clone());
        // Each request on its own task: a slow answer does not hold the schedule up.
        tokio::spawn(async move {
            let t0 = Instant::now();
            let ok = request(s, n, &t).await;
            let done = Done {
                at: t0 - started,
                stream: s,
                took: t0.elapsed(),
                ok,
            };
            if let Ok(mut l) = log.lock() {
                l.push(done);
            }
        });
    }
}

/// The `n`th request of stream `s`: whether the answer was the right one.
async fn request(s: usize, n: usize, t: &Target) -> bool {
    let user = match s {
        0 => n % HOT_USERS,
        // The misses walk the users past the hot ones; random-ish ones for the rest.
        1 => HOT_USERS + n % (USERS - HOT_USERS),
        _ => (n * 7919) % USERS,
    };
    let name = format!("user{user}");
    match s {
        0..=2 => {
            let password = if s == 2 { "wrong-password" } else { PASSWORD };
            let body = Bytes::from(review_body("v1", &token(&name, password)));
            let Ok((200, b)) = t.h2.send("POST", t.review.clone(), body).await else {
                return false;
            };
            let accepted = b.windows(20).any(|w| w == b"\"authenticated\":true");
            accepted == (s != 2)
        }
        _ => {
            let basic = format!("Basic {}", token(&name, PASSWORD));
            let r = try_request_from(
                &t.i.daemon.pki,
                None,
                "POST",
                &t.login,
                Some(&basic),
                Vec::new(),
            );
            matches!(r.await, Ok(r) if r.status == 200)
        }
    }
}

/// The table's verdict lines, and the JSON of the run.
fn report(samples: &[Value], log: &Log) -> BenchResult<Value> {
    let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    let hit_p99 = |v: &Value| {
        v["streams"]["hit"]["latency"]["p99_us"]
            .as_f64()
            .unwrap_or(f64::NAN)
    };
    let (Some(first), Some(last)) = (samples.get(2), samples.last()) else {
        return Err("the soak took fewer than three samples".into());
    };
    let half = samples.len() / 2;
    let peak_first_half = samples[2..=half.max(2)]
        .iter()
        .map(|v| num(v, "rss_kib"))
        .fold(0.0, f64::max);
    let rss_ratio = num(last, "rss_kib") / peak_first_half;
    let fds_growth = num(last, "fds") - num(first, "fds");
    // The p99 of the second minute (samples 3 and 4) and of the last (the last two).
    let minute = |a: &Value, b: &Value| (hit_p99(a) + hit_p99(b)) / 2.0;
    let n = samples.len();
    let (p99_start, p99_end) = (
        minute(&samples[3.min(n - 1)], &samples[4.min(n - 1)]),
        minute(&samples[n - 2], &samples[n - 1]),
    );
    let requests = log.lock().map(|l| l.len()).unwrap_or(0);
    println!("   => RSS at the end / peak of the first half after minute 1: {rss_ratio:.3} ({:.1} MiB / {:.1} MiB)   target <= 1.10   {}",
        num(last, "rss_kib") / 1024.0, peak_first_half / 1024.0, verdict(rss_ratio <= 1.10));
    println!("   => open fds at the end - after minute 1: {fds_growth:+.0} ({} -> {})   target <= +2   {}",
        num(first, "fds"), num(last, "fds"), verdict(fds_growth <= 2.0));
    println!("   => hit p99 in the last minute / in the second: {:.2} ({p99_start:.0} us -> {p99_end:.0} us)   target <= 2.0   {}",
        p99_end / p99_start, verdict(p99_end <= 2.0 * p99_start));
    let bounded = rss_ratio <= 1.10 && fds_growth <= 2.0 && p99_end <= 2.0 * p99_start;
    println!(
        "   verdict: {} ({requests} requests)",
        if bounded {
            "nothing grew without bound"
        } else {
            "something grew: see above"
        }
    );
    Ok(
        json!({"samples": samples, "rss_ratio": rss_ratio, "fds_growth": fds_growth,
              "hit_p99_start_us": p99_start, "hit_p99_end_us": p99_end, "bounded": bounded,
              "requests": requests, "streams": STREAMS.map(|(n, r)| json!({"name": n, "per_s": r}))}),
    )
}
