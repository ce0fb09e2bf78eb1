//! `make bench` (enumeration): can a client tell an unknown user from a wrong password by
//! the time the answer takes? Through a directory 2 ms away each way (a delay line between
//! the daemon and a real slapd), the median latency of reviews for names that match
//! nothing is compared with that of wrong passwords for real users, in the same run. Both
//! must cost the same LDAP round trips (user search, then bind and group search together),
//! so the target is a ratio within 1/1.3 .. 1.3.
//!
//! Every review uses a fresh name (no cache hit, no lockout budget shared), and the two
//! kinds are interleaved so that drift in the machine's load hits both alike. Prints one
//! table line and writes `target/bench/enumeration.json`.

#[path = "../tests/support/mod.rs"]
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

/// A TCP proxy to `upstream` that makes it `ONE_WAY` further away in each direction.
async fn slow_proxy(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::join!(delay_line(cr, sw), delay_line(sr, cw));
            });
        }
    });
    format!("ldap://{addr}")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var_os("KLW_BENCH_QUICK").is_some();
    let n = if quick { 40 } else { 300 };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let slapd = Slapd::start_with(&many_users_ldif(n, "the-real-password"));
        let url = slow_proxy(slapd.url().trim_start_matches("ldap://").to_string()).await;
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
            c.review(&d.url(), "v1", &token(&format!("warm-{i}"), "x")).await;
        }
        for i in 0..n {
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
        let (u, w) = (median(unknown), median(wrong));
        let ratio = u.as_secs_f64() / w.as_secs_f64();
        let met = (1.0 / TARGET..=TARGET).contains(&ratio);
        println!(
            "enumeration by timing   unknown user {:>7.2} ms  wrong password {:>7.2} ms  ratio {ratio:.2}x (target 1/{TARGET}..{TARGET})  {}",
            u.as_secs_f64() * 1e3,
            w.as_secs_f64() * 1e3,
            if met { "MET" } else { "MISSED" }
        );
        let out = support::repo().join("target/bench");
        let _ = std::fs::create_dir_all(&out);
        let report = json!({
            "reviews_each": n,
            "one_way_delay_ms": ONE_WAY.as_secs_f64() * 1e3,
            "unknown_user_median_ms": u.as_secs_f64() * 1e3,
            "wrong_password_median_ms": w.as_secs_f64() * 1e3,
            "ratio": ratio,
            "target": TARGET,
            "met": met,
        });
        let _ = std::fs::write(out.join("enumeration.json"), serde_json::to_vec_pretty(&report).unwrap());
    });
}
