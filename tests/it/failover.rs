//! Failover past servers that do not answer, against the real daemon and a real slapd:
//! `ldap.urls` = a dead server (refused), a silent one (accepts TCP, never answers TLS),
//! then slapd. Reviews that arrive together pay each server's timeout once between them,
//! not once each in turn, and the start-up probe's findings spare the first review.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::support::*;

/// `ldap.connect_timeout` of these daemons: what one server that does not answer costs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// What the good server's part of a review may take on a machine busy with other builds:
/// margin, not a measure of speed (slapd answers in milliseconds).
const GOOD_SERVER_MARGIN: Duration = Duration::from_secs(4);

/// A server that holds its port and never says a word: the kernel completes the TCP
/// handshakes into the backlog, nobody accepts or answers the TLS ClientHello.
struct Silent {
    listener: TcpListener,
}

impl Silent {
    fn new() -> Silent {
        Silent {
            listener: TcpListener::bind("127.0.0.1:0").unwrap(),
        }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    fn url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.port())
    }

    /// The server label of its metric series.
    fn label(&self) -> String {
        format!("127.0.0.1:{}", self.port())
    }
}

/// A daemon whose servers are `dead`, `silent` and then `slapd`, in that order.
fn behind_dead_and_silent(slapd: &Slapd, silent: &Silent) -> Daemon {
    let dead = format!("ldap://127.0.0.1:{}", free_port());
    Daemon::builder()
        .url(dead)
        .url(silent.url())
        .url(slapd.url())
        .env(
            "KUBE_LDAP_WEBHOOK_LDAP__CONNECT_TIMEOUT",
            format!("{}s", CONNECT_TIMEOUT.as_secs()),
        )
        .start()
}

/// How often the daemon failed to connect to `server`.
fn failed_connects(d: &Daemon, server: &str) -> f64 {
    d.metric(
        "kube_ldap_webhook_ldap_operations_total",
        &[
            ("server", server),
            ("operation", "connect"),
            ("result", "unreachable"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_first_reviews_past_a_dead_and_a_silent_server_pay_one_timeout_each() {
    let slapd = Slapd::start();
    let silent = Silent::new();
    let d = behind_dead_and_silent(&slapd, &silent);
    // Eight different tokens (one directory round trip per token at a time): three users
    // who exist and five names that match nothing, whose search goes the same way.
    let mut logins = vec![
        ("alice", "alice-password", true),
        ("bob", "pa:ss:word", true),
        ("josé", "contraseña-ñ€", true),
    ];
    let unknown: Vec<String> = (1..=5).map(|i| format!("nobody{i}")).collect();
    logins.extend(unknown.iter().map(|n| (n.as_str(), "whatever", false)));
    let bound = 2 * CONNECT_TIMEOUT + GOOD_SERVER_MARGIN;
    let answers = futures_util::future::join_all(logins.iter().map(|&(user, pw, ok)| {
        let d = &d;
        async move {
            let started = Instant::now();
            let a = d.login(user, pw).await;
            (user, ok, started.elapsed(), a)
        }
    }))
    .await;
    for (user, ok, took, a) in &answers {
        assert_eq!(a.body["status"]["authenticated"], *ok, "{user}: {}", a.raw);
        assert_ne!(
            a.body["status"]["error"], "Authentication backend unavailable",
            "{user}: {}",
            a.raw
        );
        assert!(
            *took <= bound,
            "{user} answered after {took:?}, past 2 x connect_timeout + {GOOD_SERVER_MARGIN:?}: \
             the reviews queued for the silent server"
        );
    }
    assert_eq!(
        failed_connects(&d, &silent.label()),
        1.0,
        "the silent server was tried once for the probe and all eight reviews"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_review_after_the_start_up_probe_starts_at_the_server_that_answered() {
    let slapd = Slapd::start();
    let silent = Silent::new();
    let d = behind_dead_and_silent(&slapd, &silent);
    d.wait_for_probe();
    assert_eq!(failed_connects(&d, &silent.label()), 1.0, "the probe's try");
    let a = d.login("alice", "alice-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(
        d.failovers("default"),
        0.0,
        "the review went straight to slapd"
    );
    assert_eq!(failed_connects(&d, &silent.label()), 1.0, "not tried again");
}
