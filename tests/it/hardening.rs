//! Hardening, against the real binary: a reload with a value out of range, clear text to
//! another host or servers from DNS on the system roots is refused, `WATCHDOG_USEC` cannot panic the daemon, the process is not
//! dumpable, a large cache capacity costs nothing up front, no log level puts a password in
//! the log, and no `?timeout=` a client sends can overflow a deadline.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::support::*;

fn eventually(what: &str, cond: impl FnMut() -> bool) {
    wait_until(cond, || format!("never: {what}"));
}

const REFUSED: &str = "reload refused";

fn alice() -> String {
    token("alice", "alice-password")
}

// -------------------------------------------------------------------------------------
// Reload
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_out_of_range_in_clear_text_or_on_the_system_roots_is_refused_and_the_old_config_keeps_serving(
) {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let good = std::fs::read_to_string(&d.config).unwrap();
    let broken = [
        (
            good.replace("[cache]\n", "[cache]\ncapacity = 1000000000000\n"),
            "key `cache.capacity`: must be between 1 and 10000000",
        ),
        (
            good.replace("[cache]\n", "[cache]\nstale_ttl = \"1000y\"\n"),
            "key `cache.stale_ttl`: must be between 0s and 7d",
        ),
        (
            good.replace(&slapd.url(), "ldap://ldap.example.org:389"),
            "key `ldap.urls`: `ldap://ldap.example.org:389` would send passwords in clear text",
        ),
        (
            good.replace("[ldap]\n", "[ldap]\ndiscover = \"example.test\"\n"),
            "key `ldap.discover`: servers found in DNS are trusted by their certificate alone",
        ),
    ];
    for (i, (text, says)) in broken.iter().enumerate() {
        assert_ne!(text, &good);
        std::fs::write(&d.config, text).unwrap();
        d.signal(libc::SIGHUP);
        eventually("the reload is refused", || {
            d.log().matches(REFUSED).count() > i
        });
        let log = d.log();
        assert!(log.contains(says), "the refusal says {says:?}:\n{log}");
        let a = d.login("alice", "alice-password").await;
        assert_eq!(
            a.body["status"]["authenticated"], true,
            "still serving after refused reload {i}: {}",
            a.raw
        );
    }
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

// -------------------------------------------------------------------------------------
// The watchdog
// -------------------------------------------------------------------------------------

/// Starts the daemon with `WATCHDOG_USEC=usec`, and returns it with its notify socket once
/// it said READY=1.
fn with_watchdog(usec: &str) -> (Daemon, Notify) {
    let notify = Notify::new();
    let d = Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", usec)
        .start();
    notify.until("READY=1");
    (d, notify)
}

#[test]
fn a_one_microsecond_watchdog_interval_pings_without_panicking() {
    let (mut d, notify) = with_watchdog("1");
    let mut seen = vec![];
    while pings_in(&seen) < 5 {
        seen.extend(notify.until("WATCHDOG=1"));
    }
    assert_eq!(d.ops("/healthz").0, 200);
    assert!(d.terminate().success());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn the_largest_watchdog_interval_pings_once_without_panicking() {
    let (mut d, notify) = with_watchdog("18446744073709551615");
    // The first ping comes at once; the next deadline is computed right after it.
    notify.until("WATCHDOG=1");
    assert_eq!(d.ops("/healthz").0, 200);
    assert!(d.terminate().success());
    assert!(!d.log().contains("panicked"), "{}", d.log());
}

#[test]
fn a_zero_or_garbled_watchdog_interval_means_no_watchdog() {
    for usec in ["0", "-5", "soon", "", "99999999999999999999999"] {
        let (mut d, notify) = with_watchdog(usec);
        assert_eq!(d.ops("/healthz").0, 200);
        d.signal(libc::SIGTERM);
        let seen = notify.until("STOPPING=1");
        assert_eq!(pings_in(&seen), 0, "WATCHDOG_USEC={usec:?}: {seen:?}");
        assert!(d.wait_exit(Duration::from_secs(40)).success());
        assert!(!d.log().contains("panicked"), "{}", d.log());
    }
}

// -------------------------------------------------------------------------------------
// Not dumpable
// -------------------------------------------------------------------------------------

const NOBODY: u32 = 65534;

/// The kernel hands the `/proc/PID` files of a process that is not dumpable to root, and
/// refuses ptrace and `/proc/PID/mem` to other processes of its user. Run as an ordinary
/// user, the daemon's files would belong to that user; they belong to root.
#[test]
fn the_running_daemon_is_not_dumpable() {
    let d = Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .run_as(NOBODY)
        .start();
    let pid = d.pid();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&NOBODY.to_string()),
        "the daemon runs as {NOBODY}: {uid_line}"
    );
    for file in ["status", "environ", "mem"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{file}"))
            .unwrap()
            .uid();
        assert_eq!(owner, 0, "/proc/{pid}/{file} belongs to {owner}, not root");
    }
}

// -------------------------------------------------------------------------------------
// Memory
// -------------------------------------------------------------------------------------

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// `LruCache::new(capacity)` would allocate and initialise a table for every entry at
/// start: ten million cost more than 16 MiB of control bytes alone.
#[test]
fn the_largest_cache_capacity_costs_nothing_up_front() {
    let small = Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .section("cache", "capacity = 1")
        .start();
    let large = Daemon::builder()
        .url("ldap://127.0.0.1:1")
        .section("cache", "capacity = 10000000")
        .start();
    let (s, l) = (rss_kib(small.pid()), rss_kib(large.pid()));
    eprintln!("RSS: capacity 1: {s} KiB, capacity 10000000: {l} KiB");
    assert!(
        l < s + 8 * 1024,
        "capacity 10000000 costs {} KiB more at start",
        l.saturating_sub(s)
    );
}

// -------------------------------------------------------------------------------------
// Secrets in the log
// -------------------------------------------------------------------------------------

/// A successful and a failed login, then everything the daemon logged.
async fn log_after_logins(level: &str, env: &[(&str, &str)]) -> String {
    let slapd = Slapd::start();
    let mut daemon = slapd.daemon();
    for (key, value) in env {
        daemon = daemon.env(key, *value);
    }
    let mut d = daemon.start();
    std::fs::write(
        &d.config,
        std::fs::read_to_string(&d.config)
            .unwrap()
            .replace("level = \"debug\"", &format!("level = \"{level}\"")),
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_log("reloaded");
    let ok = d.login("alice", "alice-password").await;
    assert_eq!(ok.body["status"]["authenticated"], true, "{}", ok.raw);
    let bad = d.login("alice", "wrong-password-Xq7").await;
    assert_eq!(bad.body["status"]["authenticated"], false, "{}", bad.raw);
    assert!(d.terminate().success());
    d.log()
}

fn assert_no_secret(log: &str) {
    for secret in [
        "alice-password".to_string(),
        "wrong-password-Xq7".into(),
        SERVICE_PASSWORD.into(),
        alice(),
        token("alice", "wrong-password-Xq7"),
    ] {
        assert!(!log.contains(&secret), "the log holds {secret:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn at_log_level_trace_no_password_or_token_is_logged() {
    let log = log_after_logins("trace", &[]).await;
    assert!(log.contains("alice"), "the reviews were logged:\n{log}");
    assert_no_secret(&log);
    assert!(
        !log.contains("decided upon suite"),
        "a bare level keeps rustls at warn:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_rust_log_trace_for_every_library_no_password_or_token_is_logged() {
    let log = log_after_logins("info", &[("RUST_LOG", "trace")]).await;
    // rustls logs through the `log` crate: its records reach the output.
    assert!(
        log.contains("decided upon suite"),
        "rustls' log records are bridged:\n{log}"
    );
    assert!(log.contains("TRACE"), "{log}");
    assert_no_secret(&log);
}

// -------------------------------------------------------------------------------------
// Hostile ?timeout=
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_absurd_timeout_in_the_request_gets_an_answer_not_a_panic() {
    let d = Daemon::builder().url("ldap://127.0.0.1:1").start();
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": alice()},
    }))
    .unwrap();
    let client = d.client();
    for t in [
        "99999999999999999999999h",
        "18446744073709551615s",
        "584942417355y",
        "1e400s",
        "-1s",
        "0s",
        "NaN",
        ".s",
        "1.5.5s",
        "",
    ] {
        let a = client
            .request("POST", &format!("{}?timeout={t}", d.url()), body.clone())
            .await
            .unwrap_or_else(|e| panic!("?timeout={t}: {e}\n{}", d.log()));
        assert_eq!(a.status, 200, "?timeout={t}: {}", a.raw);
        assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
    }
    assert!(!d.log().contains("panicked"), "{}", d.log());
}
