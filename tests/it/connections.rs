//! Connection protections of the real daemon over real TLS: no client without a verified
//! certificate holds a place kube-apiserver needs, silent connections are closed, one
//! address cannot fill a budget, closes are counted each but logged sparingly, and the
//! operations listener is bounded too.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::conn::*;
use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// -------------------------------------------------------------------------------------
// Nobody without a certificate starves kube-apiserver
// -------------------------------------------------------------------------------------

const SMALL_BUDGETS: &str =
    "max_connections = 4\nmax_handshakes = 4\nmax_handshakes_per_source = 4";

#[tokio::test(flavor = "multi_thread")]
async fn silent_tcp_connections_beyond_every_limit_do_not_stop_a_review() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("server", SMALL_BUDGETS).start();
    let _held = silent(&d, 20).await;
    review_is_answered(&d).await;
    eventually("the oldest were replaced", || closes(&d, "evicted") >= 16.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_clients_stalled_mid_handshake_do_not_stop_a_review() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("server", SMALL_BUDGETS).start();
    let hello = client_hello(&d);
    let mut held = silent(&d, 20).await;
    for s in &mut held {
        s.write_all(&hello).await.unwrap();
    }
    review_is_answered(&d).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_clients_without_a_certificate_are_closed_and_do_not_stop_a_review() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("server", SMALL_BUDGETS).start();
    d.wait_for_log("LDAP reachable");
    let before = slapd.operations();
    let mut held = Vec::new();
    for _ in 0..20 {
        let tcp = tcp_from(Ipv4Addr::LOCALHOST, d.port).await;
        // TLS 1.3: the client's side of the handshake completes; the server then refuses.
        if let Ok(mut tls) = tls_connect(&d.pki, tcp, None, &[b"http/1.1"]).await {
            assert!(http1_review(&mut tls, &alice()).await.is_none());
            held.push(tls);
        }
    }
    for tls in &mut held {
        assert!(
            closed_within(tls, CAP).await,
            "a certificate-less client was closed"
        );
    }
    assert_eq!(slapd.operations(), before, "no token was looked at");
    review_is_answered(&d).await;
    eventually("each refusal is counted", || {
        closes(&d, "no_certificate") >= 20.0
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_clients_silent_in_the_http2_preface_do_not_stop_a_review_and_are_closed() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "handshake_timeout = \"3s\"")
        .start();
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut tls = verified_from(&d, Ipv4Addr::LOCALHOST, &[b"h2"]).await;
        // 16 of the 24 bytes of the HTTP/2 preface: hyper's version sniff waits for more.
        tls.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        held.push(tls);
    }
    review_is_answered(&d).await;
    for tls in &mut held {
        assert!(
            closed_within(tls, CAP).await,
            "a silent verified client was closed"
        );
    }
    eventually("each close is counted", || {
        closes(&d, "first_request_timeout") >= 8.0
    });
}

// -------------------------------------------------------------------------------------
// Timers
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_tcp_connection_is_closed_after_the_handshake_timeout() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "handshake_timeout = \"1s\"")
        .start();
    let mut s = tcp_from(Ipv4Addr::LOCALHOST, d.port).await;
    assert!(closed_within(&mut s, CAP).await);
    eventually("the close is counted", || {
        closes(&d, "handshake_timeout") >= 1.0
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_verified_client_with_half_a_request_head_is_closed_after_the_handshake_timeout() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "handshake_timeout = \"1s\"")
        .start();
    let mut tls = verified_from(&d, Ipv4Addr::LOCALHOST, &[b"http/1.1"]).await;
    tls.write_all(b"POST /authenticate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut tls, CAP).await);
    eventually("the close is counted", || {
        closes(&d, "first_request_timeout") >= 1.0
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http1_connection_is_closed_after_the_idle_timeout() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "idle_timeout = \"1s\"")
        .start();
    let mut tls = verified_from(&d, Ipv4Addr::LOCALHOST, &[b"http/1.1"]).await;
    let a = http1_review(&mut tls, &alice()).await.expect("an answer");
    assert_eq!(a["status"]["authenticated"], true);
    assert!(closed_within(&mut tls, CAP).await);
    eventually("the close is counted", || closes(&d, "idle") >= 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "idle_timeout = \"1s\"")
        .start();
    let tls = verified_from(&d, Ipv4Addr::LOCALHOST, &[b"h2"]).await;
    let (mut sender, conn) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": alice()},
    });
    let req = hyper::Request::post(format!("https://localhost:{}/authenticate", d.port))
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    // The client's connection task ends once the server has said goodbye and closed.
    tokio::time::timeout(CAP, conn)
        .await
        .expect("the server closed the idle connection")
        .unwrap()
        .ok();
    eventually("the close is counted", || closes(&d, "idle") >= 1.0);
}

// -------------------------------------------------------------------------------------
// Per-address and total budgets
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn one_address_flooding_handshakes_replaces_only_its_own() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section(
            "server",
            "max_handshakes = 8\nmax_handshakes_per_source = 2\nhandshake_timeout = \"60s\"",
        )
        .start();
    // Someone else's handshake, slow to start.
    let bystander = tcp_from(BYSTANDER, d.port).await;
    let mut flood = Vec::new();
    for _ in 0..6 {
        flood.push(tcp_from(ATTACKER, d.port).await);
    }
    for s in &mut flood[..4] {
        assert!(
            closed_within(s, CAP).await,
            "the attacker's oldest were replaced"
        );
    }
    eventually("four evictions counted", || closes(&d, "evicted") >= 4.0);
    assert_eq!(closes(&d, "evicted"), 4.0, "and nothing else was replaced");
    // The bystander's connection is still there: it finishes its handshake and is served.
    let id = d.pki.client_identity();
    let mut tls = tls_connect(&d.pki, bystander, Some(id), &[b"http/1.1"])
        .await
        .expect("the bystander's handshake");
    let a = http1_review(&mut tls, &alice()).await.expect("an answer");
    assert_eq!(a["status"]["authenticated"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_cannot_hold_more_verified_connections_than_its_share() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "max_connections_per_source = 2")
        .start();
    let mut first = verified_from(&d, ATTACKER, &[b"http/1.1"]).await;
    let mut second = verified_from(&d, ATTACKER, &[b"http/1.1"]).await;
    for c in [&mut first, &mut second] {
        assert!(http1_review(c, &alice()).await.is_some());
    }
    let mut third = verified_from(&d, ATTACKER, &[b"http/1.1"]).await;
    assert!(
        http1_review(&mut third, &alice()).await.is_none(),
        "a third connection from the same address is closed"
    );
    let mut other = verified_from(&d, BYSTANDER, &[b"http/1.1"]).await;
    assert!(http1_review(&mut other, &alice()).await.is_some());
    assert!(closes(&d, "limit") >= 1.0);
    // A place freed is a place to take.
    drop(first);
    let deadline = Instant::now() + CAP;
    loop {
        let mut again = verified_from(&d, ATTACKER, &[b"http/1.1"]).await;
        if http1_review(&mut again, &alice()).await.is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the freed place was never given out"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn verified_connections_beyond_max_connections_are_closed_and_logged() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("server", "max_connections = 2")
        .start();
    let mut held = Vec::new();
    for source in [ATTACKER, BYSTANDER] {
        let mut c = verified_from(&d, source, &[b"http/1.1"]).await;
        assert!(http1_review(&mut c, &alice()).await.is_some());
        held.push(c);
    }
    let mut third = verified_from(&d, Ipv4Addr::LOCALHOST, &[b"http/1.1"]).await;
    assert!(http1_review(&mut third, &alice()).await.is_none());
    assert!(closes(&d, "limit") >= 1.0);
    d.wait_for_log("limit reached");
}

// -------------------------------------------------------------------------------------
// Logging and counting
// -------------------------------------------------------------------------------------

/// (one-by-one lines, closes they account for) of the review listener in the log.
fn logged_closes(log: &str) -> (usize, u64) {
    let mut lines = 0;
    let mut accounted = 0;
    for l in log.lines().filter(|l| l.contains("listener=\"reviews\"")) {
        if l.contains("connection closed") {
            lines += 1;
            accounted += 1;
        } else if l.contains("connections closed since") {
            lines += 1;
            let n = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("count="))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no count in {l}"));
            accounted += n;
        }
    }
    (lines, accounted)
}

fn all_closes(d: &Daemon) -> f64 {
    d.metric(
        "kube_ldap_webhook_connections_closed_total",
        &[("listener", "reviews")],
    ) - closes(d, "idle")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_refused_handshakes_is_counted_each_and_logged_in_a_few_lines() {
    let slapd = Slapd::start();
    let d = slapd.daemon().log_level("info").start();
    d.wait_for_log("LDAP reachable");
    let lines_before = d.log().lines().count();
    let before = all_closes(&d);
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(10));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let tcp = tcp_from(Ipv4Addr::LOCALHOST, d.port).await;
        let mut cfg = client_tls(&d.pki, None);
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        tasks.spawn(async move {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            if let Ok(mut tls) = tokio_rustls::TlsConnector::from(Arc::new(cfg))
                .connect(name, tcp)
                .await
            {
                assert!(closed_within(&mut tls, CAP).await);
            }
            drop(permit);
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eventually("200 closes counted", || all_closes(&d) >= before + 200.0);
    assert_eq!(closes(&d, "no_certificate"), 200.0);
    let total = all_closes(&d) as u64;
    // Every close is in the log, one by one or in a summary line.
    eventually("the summary line", || logged_closes(&d.log()).1 >= total);
    let elapsed = started.elapsed().as_secs();
    let log = d.log();
    let (lines, accounted) = logged_closes(&log);
    assert_eq!(accounted, total, "{log}");
    // Per 10 s interval at most one line per reason seen (the startup's readiness check
    // is a tls_error, the flood no_certificate) and the summary.
    let bound = 3 * (elapsed as usize / 10 + 2);
    assert!(lines <= bound, "{lines} lines for {total} closes:\n{log}");
    let new_lines = log.lines().count() - lines_before;
    assert!(
        new_lines <= bound,
        "{new_lines} new log lines for a flood of refused handshakes:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_another_ca_is_closed_as_bad_certificate() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let tcp = tcp_from(Ipv4Addr::LOCALHOST, d.port).await;
    let rogue = d.pki.rogue_identity();
    if let Ok(mut tls) = tls_connect(&d.pki, tcp, Some(rogue), &[b"http/1.1"]).await {
        assert!(http1_review(&mut tls, &alice()).await.is_none());
    }
    eventually("the close is counted", || {
        closes(&d, "bad_certificate") >= 1.0
    });
    d.wait_for_log("reason=\"bad_certificate\"");
}

// -------------------------------------------------------------------------------------
// Operations listener
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn the_ops_listener_closes_connections_beyond_its_cap_and_silent_ones_in_time() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let cap = kube_ldap_webhook::OPS_MAX_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..cap {
        held.push(tcp_from(Ipv4Addr::LOCALHOST, d.ops_port).await);
    }
    let mut extra = tcp_from(Ipv4Addr::LOCALHOST, d.ops_port).await;
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(CAP, extra.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
    // Silent connections are closed by the daemon, which frees their places.
    for s in &mut held {
        assert!(
            closed_within(s, CAP).await,
            "a silent ops connection was closed"
        );
    }
    eventually("/healthz answers again", || healthz_answers(d.ops_port));
    let limit = d.metric(
        "kube_ldap_webhook_connections_closed_total",
        &[("listener", "ops"), ("reason", "limit")],
    );
    assert!(limit >= 1.0);
}

/// Whether `/healthz` answers 200 (a connection closed at once is a no, not a panic).
fn healthz_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(CAP));
    let mut out = String::new();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .and_then(|_| s.read_to_string(&mut out))
        .is_ok()
        && out.starts_with("HTTP/1.1 200")
}

/// Base searches of the user base: the probe behind /readyz (reviews search the subtree).
fn probes(slapd: &Slapd) -> usize {
    slapd
        .log()
        .lines()
        .filter(|l| l.contains("SRCH base=\"ou=people,dc=example,dc=org\" scope=0"))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_readyz_shares_a_few_ldap_probes() {
    let slapd = Slapd::start();
    let d = Arc::new(slapd.daemon().start());
    d.wait_for_log("LDAP reachable");
    let before = probes(&slapd);
    assert!(before >= 1, "the startup probe is seen:\n{}", slapd.log());
    let started = Instant::now();
    let mut burst = Vec::new();
    for _ in 0..50 {
        let d = d.clone();
        burst.push(std::thread::spawn(move || d.ops("/readyz")));
    }
    for t in burst {
        let (code, body) = t.join().unwrap();
        assert_eq!(code, 200, "{body}");
    }
    let elapsed = started.elapsed().as_secs() as usize;
    let made = probes(&slapd) - before;
    assert!(made >= 1);
    // One probe per second at most, plus one for the second the burst started in.
    assert!(
        made <= elapsed + 2,
        "{made} probes for 50 /readyz in {elapsed}s"
    );
}

// -------------------------------------------------------------------------------------
// Configuration
// -------------------------------------------------------------------------------------

#[test]
fn the_review_listener_defaults_to_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let path = Daemon::builder()
        .url("ldaps://ldap.example.org")
        .write_to(dir.path())
        .path;
    let text = std::fs::read_to_string(&path).unwrap();
    let without_listen: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("listen ="))
        .collect();
    std::fs::write(&path, without_listen.join("\n")).unwrap();
    let c = kube_ldap_webhook::load_config(&path).unwrap();
    assert_eq!(c.server.listen, "127.0.0.1:8443".parse().unwrap());
}

#[test]
fn zero_connection_limits_and_timers_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for line in [
        "max_connections_per_source = 0",
        "max_handshakes = 0",
        "max_handshakes_per_source = 0",
        "idle_timeout = \"0s\"",
    ] {
        let path = Daemon::builder()
            .url("ldaps://ldap.example.org")
            .section("server", line)
            .write_to(dir.path())
            .path;
        let out = std::process::Command::new(bin())
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let key = line.split(' ').next().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{line} was accepted");
        assert!(err.contains(&format!("server.{key}")), "{line}: {err}");
    }
}
