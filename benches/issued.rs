//! `cargo bench --bench issued`: what issued tokens cost against basic tokens, measured
//! in the same run against a real slapd and the release daemon, on 127.0.0.1 only.
//!
//! 1. Repeat reviews (cache hits) of one issued token against repeat reviews of one basic
//!    token: closed loop, `CONNS` keep-alive mTLS connections, rounds interleaved so that
//!    drift in the machine's load hits both alike. Target: issued >= 0.95x basic.
//! 2. The first review of a fresh issued token (signature, then the account re-check:
//!    base search and group search) against a basic miss (user search, bind, group search),
//!    one at a time, medians.
//! 3. Login throughput: `POST /login` for distinct users, closed loop.
//! 4. A Kerberos login (`Authorization: Negotiate`, SPNEGO) against a password login of the
//!    same user, one at a time, interleaved, medians: the Samba AD DC of the tests as
//!    directory and KDC, one daemon taking both. Target: Negotiate <= 1.0x password.
//!
//! Prints a few lines and writes `target/bench/issued.json`. `KLW_BENCH_QUICK=1` for a
//! short smoke run.
#![allow(clippy::disallowed_methods)] // a real daemon and real LDAP servers run on the real clock

// The integration tests' harness, whole: this bench uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../tests/it/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::issued::{Issuer, KeyPair};
use support::kerberos::{kerberos_issuer, Mech, Ticket};
use support::{cpu_seconds, many_users_ldif, token, Site, Slapd};

const CONNS: usize = 8;
const TARGET: f64 = 0.95;

/// One round: requests per second of `CONNS` clients each reviewing `token` in a loop for
/// `secs`, and the daemon's CPU microseconds per request.
async fn closed_loop(i: &Issuer, token: &str, secs: f64) -> (f64, f64) {
    let cpu = cpu_seconds(i.daemon.pid());
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (c, url, t, done) = (
            i.daemon.client(),
            i.daemon.url(),
            token.to_string(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let a = c.review(&url, "v1", &t).await;
                assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let n = done.load(Ordering::Relaxed) as f64;
    let cpu_us = (cpu_seconds(i.daemon.pid()) - cpu) * 1e6 / n;
    (n / started.elapsed().as_secs_f64(), cpu_us)
}

fn middle(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn median(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e3
}

/// Logins per second of `CONNS` clients logging in distinct users for `secs`.
async fn login_loop(i: &Arc<Issuer>, users: usize, secs: f64) -> f64 {
    let next = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNS {
        let (i, next) = (i.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize % users;
                let r = i.login(&format!("user{n}"), "the-real-password").await;
                assert_eq!(r.status, 200, "{}", r.raw);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    next.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Section 4: the median of `n` Negotiate logins and of `n` password logins of alice,
/// interleaved, in ms. Each Negotiate credential is made before its request is timed.
async fn negotiate_against_password(n: usize) -> (f64, f64) {
    let dc = support::Dc::shared();
    let keys = KeyPair::new();
    let i = kerberos_issuer(
        dc,
        &keys,
        "[\"EXAMPLE\", \"example.test\"]",
        "",
        "rate = 100000\nburst = 10000",
    );
    i.daemon.wait_for_probe();
    let ticket = Ticket::new(dc, "alice@EXAMPLE.TEST", "Passw0rd!alice", &[]);
    let spn = dc.var("SAMBA_HTTP_SPN");
    let (mut negotiate, mut password) = (Vec::new(), Vec::new());
    for k in 0..n + 5 {
        let credential = format!("Negotiate {}", ticket.negotiate(spn, Mech::Spnego));
        let started = Instant::now();
        let r = i.call("POST", &i.login_url(), Some(&credential)).await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.raw);
        let started = Instant::now();
        let r = i.login("alice", "Passw0rd!alice").await;
        let took_password = started.elapsed();
        assert_eq!(r.status, 200, "{}", r.raw);
        // The first few warm the connections up.
        if k >= 5 {
            negotiate.push(took);
            password.push(took_password);
        }
    }
    (median(negotiate), median(password))
}

fn main() {
    // The daemon as it ships: no audit stream.
    support::without_audit();
    let quick = std::env::var_os("KLW_BENCH_QUICK").is_some();
    let (users, rounds, secs) = if quick { (100, 3, 1.0) } else { (600, 5, 3.0) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let slapd = Slapd::start_with(&many_users_ldif(users, "the-real-password"));
        let keys = KeyPair::new();
        let i = Arc::new(Issuer::start(
            &Site::openldap(),
            &[slapd.url()],
            &[("cache", "max_failures = 3\nttl = \"10m\"")],
            &keys,
            "rate = 100000\nburst = 10000",
            "",
        ));
        i.daemon.wait_for_probe();
        // Hits: alice (two groups) by an issued token and by a basic token.
        let issued = i.token("alice", "alice-password").await;
        let basic = token("alice", "alice-password");
        let (mut hit_issued, mut hit_basic) = (Vec::new(), Vec::new());
        closed_loop(&i, &issued, 0.5).await;
        closed_loop(&i, &basic, 0.5).await;
        for round in 0..rounds {
            let order = if round % 2 == 0 { [true, false] } else { [false, true] };
            for is_issued in order {
                let t = if is_issued { &issued } else { &basic };
                let r = closed_loop(&i, t, secs).await;
                if is_issued { hit_issued.push(r) } else { hit_basic.push(r) }
            }
        }
        // Each round's pair ran back to back: their ratios are what drift disturbs least.
        let pairs: Vec<f64> = hit_issued.iter().zip(&hit_basic).map(|(a, b)| a.0 / b.0).collect();
        let cpu_pairs: Vec<f64> = hit_issued.iter().zip(&hit_basic).map(|(a, b)| b.1 / a.1).collect();
        let (ratio, cpu_ratio) = (middle(pairs.clone()), middle(cpu_pairs.clone()));
        let hi = middle(hit_issued.iter().map(|r| r.0).collect());
        let hb = middle(hit_basic.iter().map(|r| r.0).collect());
        let ci = middle(hit_issued.iter().map(|r| r.1).collect());
        let cb = middle(hit_basic.iter().map(|r| r.1).collect());
        let met = ratio >= TARGET;
        println!(
            "1. cache hits, {CONNS} HTTP/1.1 connections, {rounds} x {secs}s rounds:\n   issued {hi:.0} req/s ({ci:.1} us CPU/req), basic {hb:.0} req/s ({cb:.1} us CPU/req)\n   => throughput ratio {ratio:.2} (rounds {}), CPU-per-request ratio basic/issued {cpu_ratio:.2}   target >= {TARGET}  {}",
            pairs.iter().map(|p| format!("{p:.2}")).collect::<Vec<_>>().join(" "),
            if met { "MET" } else { "MISSED" }
        );

        // Misses: a fresh issued token's first review against a basic miss, interleaved.
        let c = i.daemon.client();
        let n = users / 3;
        let (mut first_issued, mut miss_basic) = (Vec::new(), Vec::new());
        for k in 0..n {
            let t = i.token(&format!("user{k}"), "the-real-password").await;
            let started = Instant::now();
            let a = c.review(&i.daemon.url(), "v1", &t).await;
            first_issued.push(started.elapsed());
            assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
            let b = token(&format!("user{}", n + k), "the-real-password");
            let started = Instant::now();
            let a = c.review(&i.daemon.url(), "v1", &b).await;
            miss_basic.push(started.elapsed());
            assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
        }
        let (fi, mb) = (median(first_issued), median(miss_basic));
        println!(
            "2. first review, one at a time ({n} each): fresh issued token p50 {fi:.2} ms, basic miss p50 {mb:.2} ms, ratio {:.2}",
            fi / mb
        );

        let logins = login_loop(&i, users, secs).await;
        println!("3. logins, {CONNS} clients, distinct users: {logins:.0} logins/s");

        let (kn, kp) = negotiate_against_password(if quick { 20 } else { 200 }).await;
        let kerberos_ratio = kn / kp;
        println!(
            "4. Kerberos login (Negotiate) p50 {kn:.2} ms, password login p50 {kp:.2} ms, same user, same daemon: ratio {kerberos_ratio:.2}   target <= 1.0  {}",
            if kerberos_ratio <= 1.0 { "MET" } else { "MISSED" }
        );

        let out = support::repo().join("target/bench");
        let _ = std::fs::create_dir_all(&out);
        let report = json!({
            "connections": CONNS,
            "hits_issued_rps_cpu_us": hit_issued,
            "hits_basic_rps_cpu_us": hit_basic,
            "hit_ratio": ratio,
            "hit_round_ratios": pairs,
            "hit_cpu_ratio_basic_over_issued": cpu_ratio,
            "hit_target": TARGET,
            "hit_met": met,
            "first_review_issued_p50_ms": fi,
            "miss_basic_p50_ms": mb,
            "logins_per_s": logins,
            "negotiate_login_p50_ms": kn,
            "password_login_p50_ms": kp,
            "negotiate_over_password": kerberos_ratio,
        });
        let _ = std::fs::write(
            out.join("issued.json"),
            serde_json::to_vec_pretty(&report).unwrap(),
        );
    });
}
