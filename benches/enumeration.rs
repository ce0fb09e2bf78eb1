//! `make bench` (enumeration): can a client tell an unknown user from a wrong password by
//! the time the answer takes? Through a directory 2 ms away each way (a delay line between
//! the daemon and a real slapd), the latency of reviews for names that match nothing is
//! compared with that of wrong passwords for real users, in the same run: median, p90 and
//! mean. Both must cost the same LDAP round trips (user search, then bind and group search
//! together), so the target is a median ratio within 1/1.3 .. 1.3.
//!
//! Two shapes of the way to slapd, each with a daemon of its own: the delay line with
//! `TCP_NODELAY` on both sides, and the same delay line as a relay that leaves Nagle's
//! algorithm on. Behind the latter, an answer of two LDAP messages (a found user's entry,
//! then the search's end) can wait for the daemon's delayed ACK of the first before the
//! second is sent, an answer of one message (no such user) never does.
//!
//! Every review uses a fresh name (no cache hit, no lockout budget shared), and the two
//! kinds are interleaved so that drift in the machine's load hits both alike. Prints one
//! table line per shape and writes `target/bench/enumeration.json`.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use support::{many_users_ldif, token, Daemon, Slapd};

const ONE_WAY: Duration = Duration::from_millis(2);
const TARGET: f64 = 1.3;

/// Forwards `from` to `to`, each chunk delivered `ONE_WAY` after it was read, in order.
async fn delay_line(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let writer = tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let due = tokio::time::Instant::now() + ONE_WAY;
                if tx.send((due, buf[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = writer.await;
}

/// A TCP relay to `upstream` that makes it `ONE_WAY` further away in each direction;
/// `nagle` leaves `TCP_NODELAY` off on both of its sockets, as many relays do.
async fn slow_proxy(upstream: String, nagle: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(!nagle), server.set_nodelay(!nagle));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(delay_line(cr, sw), delay_line(sr, cw));
            });
        }
    });
    format!("ldap://{addr}")
}

/// Median, p90 and mean of one kind of review, in ms.
#[derive(Clone, Copy)]
struct Summary {
    median: f64,
    p90: f64,
    mean: f64,
}

impl Summary {
    fn of(mut v: Vec<Duration>) -> Summary {
        v.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        Summary {
            median: ms(v[v.len() / 2]),
            p90: ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
            mean: ms(v.iter().sum::<Duration>()) / v.len() as f64,
        }
    }

    /// `self / other` for each figure.
    fn ratios(&self, other: &Summary) -> Summary {
        Summary {
            median: self.median / other.median,
            p90: self.p90 / other.p90,
            mean: self.mean / other.mean,
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({ "median_ms": self.median, "p90_ms": self.p90, "mean_ms": self.mean })
    }
}

/// One shape's reviews: `n` unknown names and `n` wrong passwords for users `first..`,
/// interleaved, through a daemon of its own.
async fn measure(slapd: &Slapd, nagle: bool, n: usize, first: usize) -> (Summary, Summary) {
    let url = slow_proxy(slapd.url().trim_start_matches("ldap://").to_string(), nagle).await;
    // Generous LDAP timeouts: this measures latency, it must not time out on a busy machine.
    let d = Daemon::builder()
        .url(url)
        .section("cache", "max_failures = 3")
        .env("KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT", "30s")
        .env("KUBE_LDAP_WEBHOOK_LDAP__CONNECT_TIMEOUT", "30s")
        .start();
    d.wait_for_log("LDAP reachable");
    let c = d.client();
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    // Warm the connections (service and bind pool) before measuring.
    for i in 0..5 {
        c.review(&d.url(), "v1", &token(&format!("warm-{i}"), "x"))
            .await;
    }
    for i in first..first + n {
        for (name, into) in [
            (format!("nobody-{i}"), &mut unknown),
            (format!("user{i}"), &mut wrong),
        ] {
            let t = token(&name, "a-wrong-password");
            let started = Instant::now();
            let a = c.review(&d.url(), "v1", &t).await;
            into.push(started.elapsed());
            assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
        }
    }
    (Summary::of(unknown), Summary::of(wrong))
}

fn main() {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    let quick = std::env::var_os("KLW_BENCH_QUICK").is_some();
    let n = if quick { 40 } else { 300 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let slapd = Slapd::start_with(&many_users_ldif(2 * n, "the-real-password"));
        let mut report = Vec::new();
        // The relay is the deployment's, not the daemon's: its line is measured, not judged.
        for (k, (shape, nagle)) in [
            ("delay line, TCP_NODELAY", false),
            ("relay, Nagle on", true),
        ]
        .into_iter()
        .enumerate()
        {
            let (u, w) = measure(&slapd, nagle, n, k * n).await;
            let r = u.ratios(&w);
            let met = (!nagle).then(|| (1.0 / TARGET..=TARGET).contains(&r.median));
            let verdict = match met {
                Some(true) => format!("(target p50 1/{TARGET}..{TARGET})  MET"),
                Some(false) => format!("(target p50 1/{TARGET}..{TARGET})  MISSED"),
                None => "(a relay's shape: no target)".to_string(),
            };
            println!(
                "enumeration by timing, {shape:<24} unknown user / wrong password (ms)  \
                 p50 {:.2} / {:.2}  p90 {:.2} / {:.2}  mean {:.2} / {:.2}  \
                 ratio p50 {:.2}x p90 {:.2}x mean {:.2}x {verdict}",
                u.median, w.median, u.p90, w.p90, u.mean, w.mean, r.median, r.p90, r.mean,
            );
            report.push(json!({
                "shape": shape,
                "unknown_user": u.json(),
                "wrong_password": w.json(),
                "ratio": { "median": r.median, "p90": r.p90, "mean": r.mean },
                "met": met,
            }));
        }
        let out = support::repo().join("target/bench");
        let _ = std::fs::create_dir_all(&out);
        let report = json!({
            "reviews_each": n,
            "one_way_delay_ms": ONE_WAY.as_secs_f64() * 1e3,
            "target": TARGET,
            "shapes": report,
        });
        let _ = std::fs::write(
            out.join("enumeration.json"),
            serde_json::to_vec_pretty(&report).unwrap(),
        );
    });
}
