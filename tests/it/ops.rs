//! Operations: sd_notify, reload, drain, metrics, the systemd unit, `make install` and
//! the Debian package, all against the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::support::*;

// -------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------

fn lines(msg: &str) -> Vec<&str> {
    msg.lines().filter(|l| !l.is_empty()).collect()
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

const RELOADED: &str = "configuration, certificates and CAs reloaded";
const REFUSED: &str = "reload refused";

/// One TLS connection to the review listener, with the client certificate, kept open so
/// that several requests go over it (HTTP/1.1 keep-alive).
struct Conn {
    tls: TlsStream<TcpStream>,
}

impl Conn {
    async fn open(d: &Daemon) -> Conn {
        Conn { tls: d.tls().await }
    }

    /// The DER of the certificate the server presented.
    fn server_cert(&self) -> Vec<u8> {
        self.tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    async fn review(&mut self, token: &str) -> Value {
        http1_review(&mut self.tls, token)
            .await
            .expect("an answer on the open connection")
    }
}

fn pem_der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

fn alice() -> String {
    token("alice", "alice-password")
}

/// A TCP proxy in front of slapd that, while `hold` is on, keeps what the daemon sends
/// until the test calls [`HoldingProxy::release`]: a directory that answers exactly when
/// the test is ready for it.
struct HoldingProxy {
    port: u16,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HoldingProxy {
    async fn start(upstream: u16) -> HoldingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let (h, n) = (hold.clone(), held.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let (h, n, mut released) = (h.clone(), n.clone(), released.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 16384];
                    while let Ok(len) = cr.read(&mut buf).await {
                        if len == 0 {
                            break;
                        }
                        if h.load(Ordering::SeqCst) {
                            n.fetch_add(1, Ordering::SeqCst);
                            let _ = released.wait_for(|r| *r).await;
                        }
                        if sw.write_all(&buf[..len]).await.is_err() {
                            break;
                        }
                    }
                    let _ = sw.shutdown().await;
                });
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    let _ = cw.shutdown().await;
                });
            }
        });
        HoldingProxy {
            port,
            hold,
            held,
            release,
        }
    }

    fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// Passes on everything held; what comes later is not held.
    fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        let _ = self.release.send(true);
    }
}

/// Parses /metrics with the Prometheus project's Python client: its OpenMetrics parser
/// (strict: the format /metrics declares) and its classic text-format parser.
fn parse_metrics(text: &str) -> serde_json::Map<String, Value> {
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics
from prometheus_client.parser import text_string_to_metric_families as classic
text = sys.stdin.read()
out = {}
for f in openmetrics(text):
    out[f.name] = {"type": f.type, "samples": [[s.name, s.labels, s.value, repr(s.value)] for s in f.samples]}
list(classic(text))
json.dump(out, sys.stdout)
"#;
    // Debian's python3-prometheus-client (scripts/test-deps.sh) lives in the system Python.
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let out = run_with_input(
        Command::new(python).args(["-c", SCRIPT]),
        text.as_bytes(),
        &format!("the Prometheus parser (apt-get install python3-prometheus-client) on\n{text}\n"),
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Object(m) => m,
        other => panic!("{other}"),
    }
}

/// The value of the sample `name` whose labels include every pair in `labels`, summed.
fn sample(m: &serde_json::Map<String, Value>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.values()
        .flat_map(|f| f["samples"].as_array().unwrap().iter())
        .filter(|s| s[0] == name)
        .filter(|s| labels.iter().all(|(k, v)| s[1][*k] == *v))
        .map(|s| s[2].as_f64().unwrap())
        .sum()
}

/// The tests' own reader of /metrics values (support's `sample_sum`) reads every sample
/// in `text` as the Prometheus parser did (`m`).
fn assert_reader_agrees(text: &str, m: &serde_json::Map<String, Value>) {
    for s in m.values().flat_map(|f| f["samples"].as_array().unwrap()) {
        let name = s[0].as_str().unwrap();
        let labels: Vec<(&str, &str)> = s[1]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        // The value as Python wrote it, parsed as the reader parses it: serde_json's own
        // float parsing may be a unit in the last place off.
        let want: f64 = s[3].as_str().unwrap().parse().unwrap();
        assert_eq!(
            sample_sum(text, name, &labels),
            want,
            "{name} {labels:?}:\n{text}"
        );
    }
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn run_ok(cmd: &mut Command) -> String {
    let (ok, text) = run(cmd);
    assert!(ok, "{cmd:?} failed:\n{text}");
    text
}

// -------------------------------------------------------------------------------------
// sd_notify
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sd_notify_ready_reloading_ready_stopping_in_order_with_watchdog_pings() {
    let slapd = Slapd::start();
    let notify = Notify::new();
    let mut d = slapd
        .daemon()
        .env("NOTIFY_SOCKET", notify.path())
        .env("WATCHDOG_USEC", "200000")
        .start();
    let mut pings = 0;
    let first = notify.next(&mut pings);
    assert!(
        lines(&first).contains(&"READY=1"),
        "first message: {first:?}"
    );

    let before = monotonic_usec();
    d.signal(libc::SIGHUP);
    let reloading = notify.next(&mut pings);
    let after = monotonic_usec();
    let l = lines(&reloading);
    assert!(l.contains(&"RELOADING=1"), "after SIGHUP: {reloading:?}");
    let usec: u64 = l
        .iter()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .unwrap_or_else(|| panic!("RELOADING=1 without MONOTONIC_USEC: {reloading:?}"))
        .parse()
        .unwrap();
    assert!(
        before <= usec && usec <= after,
        "MONOTONIC_USEC {usec} not in [{before}, {after}]"
    );
    let ready = notify.next(&mut pings);
    assert!(
        lines(&ready).contains(&"READY=1"),
        "after the reload: {ready:?}"
    );
    d.wait_for_log(RELOADED);

    // At WATCHDOG_USEC=200ms the daemon pings every 100ms, on its own.
    notify.pings(pings + 3, &mut pings);
    d.signal(libc::SIGTERM);
    let stopping = notify.next(&mut pings);
    assert!(
        lines(&stopping).contains(&"STOPPING=1"),
        "after SIGTERM: {stopping:?}"
    );
    let status = d.wait_exit(PATIENCE);
    assert!(status.success(), "exit status {status}");
    let rest = notify.drain(Duration::from_millis(100));
    assert!(
        rest.iter().all(|m| m.trim() == "WATCHDOG=1"),
        "after STOPPING=1: {rest:?}"
    );
}

// -------------------------------------------------------------------------------------
// Reload
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sighup_swaps_the_server_certificate_and_open_connections_keep_working() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let old_cert = pem_der(&d.pki.server_cert);

    let mut open = Conn::open(&d).await;
    assert_eq!(open.server_cert(), old_cert);
    let a = open.review(&alice()).await;
    assert_eq!(a["status"]["authenticated"], true, "{a}");

    d.pki.reissue_server("kube-ldap-webhook-rotated");
    let new_cert = pem_der(&d.pki.server_cert);
    assert_ne!(new_cert, old_cert);
    d.signal(libc::SIGHUP);
    d.wait_for_log(RELOADED);

    let mut fresh = Conn::open(&d).await;
    assert_eq!(
        fresh.server_cert(),
        new_cert,
        "a new connection must see the new certificate"
    );
    let a = fresh.review(&alice()).await;
    assert_eq!(a["status"]["authenticated"], true, "{a}");

    // The connection opened before the reload goes on serving, on its old certificate.
    for _ in 0..2 {
        let a = open.review(&alice()).await;
        assert_eq!(a["status"]["authenticated"], true, "{a}");
    }
    assert_eq!(open.server_cert(), old_cert);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_config_on_reload_is_refused_and_the_old_one_keeps_serving() {
    let slapd = Slapd::start();
    let notify = Notify::new();
    let mut d = slapd.daemon().env("NOTIFY_SOCKET", notify.path()).start();
    let mut pings = 0;
    assert!(lines(&notify.next(&mut pings)).contains(&"READY=1"));
    let good = std::fs::read_to_string(&d.config).unwrap();
    let cert = pem_der(&d.pki.server_cert);

    let broken = [
        // Not TOML.
        "[server\nlisten = ".to_string(),
        // Valid TOML, but the server certificate is not there.
        good.replace(
            &format!("tls_cert_file = \"{}\"", d.pki.server_cert.display()),
            "tls_cert_file = \"/nonexistent/server.crt\"",
        ),
        // A bad value.
        good.replace("\ntimeout = \"30s\"", "\ntimeout = \"soon\""),
    ];
    for (i, text) in broken.iter().enumerate() {
        assert_ne!(text, &good);
        std::fs::write(&d.config, text).unwrap();
        d.signal(libc::SIGHUP);
        d.wait_for_log_count(REFUSED, i + 1);
        let reloading = notify.next(&mut pings);
        assert!(lines(&reloading).contains(&"RELOADING=1"), "{reloading:?}");
        // systemd waits for READY=1 to end the reload, refused or not.
        let ready = notify.next(&mut pings);
        assert!(lines(&ready).contains(&"READY=1"), "{ready:?}");

        let mut c = Conn::open(&d).await;
        assert_eq!(c.server_cert(), cert);
        let a = c.review(&alice()).await;
        assert_eq!(
            a["status"]["authenticated"], true,
            "still serving after refused reload {i}: {a}"
        );
    }
    assert_eq!(d.log().matches(RELOADED).count(), 0);
    let log = d.log();
    assert!(
        log.contains("/nonexistent/server.crt"),
        "the refusal names the file:\n{log}"
    );

    // Fixed again: the next reload is taken.
    std::fs::write(&d.config, &good).unwrap();
    d.signal(libc::SIGHUP);
    d.wait_for_log(RELOADED);
    let reloads = |event| d.metric("kube_ldap_webhook_reloads_total", &[("event", event)]);
    assert_eq!(reloads("failed"), 3.0);
    assert_eq!(reloads("ok"), 1.0);
    assert_eq!(pings, 0, "no WATCHDOG=1 without WATCHDOG_USEC");
    assert!(d.terminate().success());
    let rest = notify.drain(Duration::from_millis(100));
    assert!(rest.iter().all(|m| !m.contains("WATCHDOG=1")), "{rest:?}");
}

// -------------------------------------------------------------------------------------
// LoadCredential=
// -------------------------------------------------------------------------------------

/// The unit's `LoadCredential=bind-password:...` with the config's relative
/// `bind_password_file`: the password comes from `$CREDENTIALS_DIRECTORY`.
#[tokio::test(flavor = "multi_thread")]
async fn a_relative_bind_password_file_is_read_from_the_credentials_directory() {
    use std::os::unix::fs::PermissionsExt;
    let slapd = Slapd::start();
    let creds = tempfile::tempdir().unwrap();
    // A name that exists only there, not next to the config file.
    let pw = creds.path().join("ldap-bind-password");
    std::fs::write(&pw, format!("{SERVICE_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o400)).unwrap();
    let service =
        format!("bind_dn = \"{SERVICE_DN}\"\nbind_password_file = \"ldap-bind-password\"");
    let d = slapd
        .daemon()
        .without_service_account()
        .section("ldap", service)
        .env("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap())
        .start();
    let a = d.client().review(&d.url(), "v1", &alice()).await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert!(
        slapd.binds_for(SERVICE_DN) >= 1,
        "the service account never bound"
    );
}

// -------------------------------------------------------------------------------------
// Shutdown
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_in_flight_reviews_refuses_new_connections_and_exits_0() {
    let slapd = Slapd::start();
    let proxy = HoldingProxy::start(slapd.port).await;
    // Nothing but the drain may end the review: no LDAP or review deadline within reach.
    let mut d = Daemon::builder()
        .url(proxy.url())
        .section("server", "request_timeout = \"10m\"")
        .env("KUBE_LDAP_WEBHOOK_LDAP__TIMEOUT", "10m")
        .start();
    d.wait_for_probe();

    proxy.hold.store(true, Ordering::SeqCst);
    let client = d.client();
    let url = d.url();
    let review =
        tokio::spawn(async move { client.review_with_timeout(&url, "v1", &alice(), "1h").await });
    // The review is in flight once the proxy holds one of its LDAP messages.
    let deadline = Instant::now() + PATIENCE;
    while proxy.held.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the review never reached LDAP:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    d.signal(libc::SIGTERM);
    d.wait_for_log("shutting down");

    // No new connections while the held review waits.
    wait_until(
        || std::net::TcpStream::connect(d.addr()).is_err(),
        || "the listener still accepts after SIGTERM".into(),
    );
    assert!(
        !review.is_finished(),
        "the review ended while its LDAP answer was held"
    );

    proxy.release();
    let a = review.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.raw);
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    let status = d.wait_exit(PATIENCE);
    assert!(status.success(), "exit status {status}; log:\n{}", d.log());
    assert!(d.log().contains("stopped"));
}

// -------------------------------------------------------------------------------------
// Ops listener
// -------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_as_prometheus_text_and_move_with_reviews() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let (code, text) = d.ops("/metrics");
    assert_eq!(code, 200);
    let before = parse_metrics(&text);
    assert_eq!(sample(&before, "kube_ldap_webhook_reviews_total", &[]), 0.0);
    assert_eq!(
        sample(
            &before,
            "kube_ldap_webhook_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // Series of closed label sets are there before the first review (LDAP series by server
    // appear with the first use).
    for (name, labels) in [
        (
            "kube_ldap_webhook_reviews_total",
            &[("outcome", "accepted"), ("source", "ldap")][..],
        ),
        (
            "kube_ldap_webhook_reviews_total",
            &[("outcome", "rejected"), ("source", "ldap")],
        ),
        ("kube_ldap_webhook_review_duration_seconds_count", &[]),
        ("kube_ldap_webhook_cache_events_total", &[("event", "hit")]),
        ("kube_ldap_webhook_cache_events_total", &[("event", "miss")]),
        (
            "kube_ldap_webhook_cache_events_total",
            &[("event", "stale")],
        ),
        (
            "kube_ldap_webhook_cache_events_total",
            &[("event", "eviction")],
        ),
        ("kube_ldap_webhook_cache_entries", &[]),
        (
            "kube_ldap_webhook_ldap_operation_duration_seconds_count",
            &[("operation", "bind")],
        ),
        ("kube_ldap_webhook_ldap_failovers_total", &[]),
        ("kube_ldap_webhook_lockout_refusals_total", &[]),
        ("kube_ldap_webhook_reloads_total", &[("event", "failed")]),
    ] {
        let present = before
            .values()
            .flat_map(|f| f["samples"].as_array().unwrap().iter())
            .any(|s| s[0] == name && labels.iter().all(|(k, v)| s[1][*k] == *v));
        assert!(present, "/metrics lacks {name}{labels:?}:\n{text}");
    }

    let c = d.client();
    let url = d.url();
    let ok = c.review(&url, "v1", &alice()).await;
    assert_eq!(ok.body["status"]["authenticated"], true, "{}", ok.raw);
    let cached = c.review(&url, "v1", &alice()).await;
    assert_eq!(cached.body["status"]["authenticated"], true);
    let wrong = c
        .review(&url, "v1", &token("alice", "not-her-password"))
        .await;
    assert_eq!(wrong.body["status"]["authenticated"], false);
    let jwt = c
        .review(&url, "v1", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
        .await;
    assert_eq!(jwt.body["status"]["authenticated"], false);

    let (_, text) = d.ops("/metrics");
    let m = parse_metrics(&text);
    assert_reader_agrees(&text, &m);
    for family in [
        "kube_ldap_webhook_reviews",
        "kube_ldap_webhook_review_duration_seconds",
        "kube_ldap_webhook_cache_events",
        "kube_ldap_webhook_cache_entries",
        "kube_ldap_webhook_ldap_operations",
        "kube_ldap_webhook_ldap_operation_duration_seconds",
        "kube_ldap_webhook_ldap_failovers",
        "kube_ldap_webhook_ldap_connections",
        "kube_ldap_webhook_lockout_refusals",
        "kube_ldap_webhook_build_info",
    ] {
        assert!(m.contains_key(family), "/metrics lacks {family}:\n{text}");
    }
    let reviews = |outcome: &str, source: &str| {
        sample(
            &m,
            "kube_ldap_webhook_reviews_total",
            &[("outcome", outcome), ("source", source)],
        )
    };
    assert_eq!(reviews("accepted", "ldap"), 1.0, "{text}");
    assert_eq!(reviews("accepted", "cache"), 1.0, "{text}");
    assert_eq!(reviews("rejected", "ldap"), 1.0, "{text}");
    assert_eq!(reviews("not_ours", "local"), 1.0, "{text}");
    assert_eq!(
        m["kube_ldap_webhook_review_duration_seconds"]["type"],
        "histogram"
    );
    assert_eq!(
        sample(&m, "kube_ldap_webhook_review_duration_seconds_count", &[]),
        4.0
    );
    assert!(
        sample(
            &m,
            "kube_ldap_webhook_cache_events_total",
            &[("event", "hit")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &m,
            "kube_ldap_webhook_cache_events_total",
            &[("event", "miss")]
        ) >= 2.0,
        "{text}"
    );
    assert!(
        sample(&m, "kube_ldap_webhook_cache_entries", &[]) >= 2.0,
        "{text}"
    );
    let server = slapd.url();
    assert!(
        sample(
            &m,
            "kube_ldap_webhook_ldap_operations_total",
            &[("operation", "bind"), ("result", "ok")]
        ) >= 1.0,
        "{text}"
    );
    assert!(
        sample(
            &m,
            "kube_ldap_webhook_ldap_operations_total",
            &[("operation", "search_user"), ("result", "ok")]
        ) >= 1.0,
        "{text}"
    );
    let labelled_by_server = m["kube_ldap_webhook_ldap_operations"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| {
            s[1]["server"]
                .as_str()
                .is_some_and(|v| server.contains(v) || v.contains(&server))
        });
    assert!(
        labelled_by_server,
        "LDAP operations not labelled by server:\n{text}"
    );
    assert!(
        sample(
            &m,
            "kube_ldap_webhook_ldap_operation_duration_seconds_count",
            &[]
        ) >= 2.0
    );
    assert!(
        sample(&m, "kube_ldap_webhook_ldap_connections", &[]) >= 1.0,
        "{text}"
    );

    // Never a username, a password or a token in a label.
    let token = alice();
    for needle in [
        "alice",
        "alice-password",
        "not-her-password",
        token.as_str(),
    ] {
        let labels_hit = m
            .values()
            .flat_map(|f| f["samples"].as_array().unwrap().iter())
            .any(|s| {
                s[1].as_object()
                    .unwrap()
                    .values()
                    .any(|v| v.as_str().unwrap().contains(needle))
            });
        assert!(!labels_hit, "{needle:?} in a label:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_the_directory_and_healthz_the_process() {
    let mut slapd = Slapd::start();
    let d = slapd.daemon().start();
    assert_eq!(d.ops("/healthz").0, 200);
    d.wait_for_ready();
    slapd.stop();
    // /readyz may answer from a probe up to a second old.
    wait_until(
        || d.ops("/readyz").0 == 503,
        || "still ready with slapd stopped".into(),
    );
    assert_eq!(d.ops("/healthz").0, 200);
    slapd.restart();
    d.wait_for_ready();
}

// -------------------------------------------------------------------------------------
// The systemd unit, make install, the Debian package
// -------------------------------------------------------------------------------------

/// The repo's unit with ExecStart pointed at the binary under test (verify wants it to exist).
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(repo().join("systemd/kube-ldap-webhook.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/kube-ldap-webhook serve"),
        "{unit}"
    );
    let path = dir.join("kube-ldap-webhook.service");
    std::fs::write(&path, unit.replace("/usr/bin/kube-ldap-webhook", bin())).unwrap();
    path
}

#[test]
fn the_unit_verifies_and_scores_well_in_systemd_analyze_security() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let text = std::fs::read_to_string(&unit).unwrap();
    for line in [
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "User=kube-ldap-webhook",
        "LoadCredential=bind-password:/etc/kube-ldap-webhook/bind-password",
        "CapabilityBoundingSet=\n",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "LimitCORE=0",
    ] {
        assert!(text.contains(line), "the unit lacks {line:?}");
    }
    let out = run_ok(Command::new("systemd-analyze").arg("verify").arg(&unit));
    assert!(
        out.trim().is_empty(),
        "systemd-analyze verify warned:\n{out}"
    );

    // The exposure score, 0.0 (best) to 10.0; the README states it. --threshold is in tenths.
    let (ok, out) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager", "--threshold=15"])
        .arg(&unit));
    let score = out
        .lines()
        .find_map(|l| {
            l.split("exposure level for kube-ldap-webhook.service: ")
                .nth(1)
        })
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{out}"));
    assert!(ok && score <= 1.5, "exposure {score} (want <= 1.5):\n{out}");

    let sysusers = repo().join("systemd/kube-ldap-webhook.sysusers");
    run_ok(
        Command::new("systemd-sysusers")
            .arg("--dry-run")
            .arg(&sysusers),
    );
}

#[test]
fn make_install_honours_destdir_and_never_overwrites_the_config() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let make = |target: &str| {
        run_ok(
            Command::new("make")
                .current_dir(repo())
                .args(["-s", target])
                .arg(format!("DESTDIR={}", d.display()))
                .arg(format!("BIN={}", bin())),
        )
    };
    make("install");
    let installed_bin = d.join("usr/local/bin/kube-ldap-webhook");
    let unit = d.join("usr/local/lib/systemd/system/kube-ldap-webhook.service");
    let sysusers = d.join("usr/local/lib/sysusers.d/kube-ldap-webhook.conf");
    let config = d.join("etc/kube-ldap-webhook/config.toml");
    for f in [&installed_bin, &unit, &sysusers, &config] {
        assert!(f.is_file(), "{} not installed", f.display());
    }
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text.contains("ExecStart=/usr/local/bin/kube-ldap-webhook serve --config /etc/kube-ldap-webhook/config.toml"),
        "{unit_text}"
    );
    let example =
        std::fs::read_to_string(repo().join("etc/kube-ldap-webhook/config.toml")).unwrap();
    assert_eq!(std::fs::read_to_string(&config).unwrap(), example);
    let out = run_ok(Command::new(&installed_bin).arg("version"));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");

    std::fs::write(&config, "# the operator's own\n").unwrap();
    let out = make("install");
    assert!(out.contains("keeping the existing"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# the operator's own\n"
    );

    make("uninstall");
    for f in [&installed_bin, &unit, &sysusers] {
        assert!(!f.exists(), "{} left after uninstall", f.display());
    }
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "# the operator's own\n"
    );
}

const PACKAGE: &str = "kube-ldap-webhook";

fn package_installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", PACKAGE])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("installed"))
        .unwrap_or(false)
}

/// Purges the package when the test ends, however it ends.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        if package_installed() || Path::new("/etc/kube-ldap-webhook").exists() {
            let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
        }
    }
}

/// Installs the .deb on this machine (CI runs as root) and removes it again.
#[test]
fn the_deb_installs_runs_and_removes_cleanly() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "this test installs a .deb with dpkg and needs root (CI runs as root)"
    );
    assert!(
        !package_installed() && !Path::new("/etc/kube-ldap-webhook").exists(),
        "{PACKAGE} is installed here already (or /etc/kube-ldap-webhook exists); this test installs \
         and purges the package: dpkg --purge {PACKAGE} first"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let out = run_ok(
        Command::new(repo().join("scripts/build-deb.sh"))
            .args(["--bin", bin(), "--compress", "none", "--out"])
            .arg(out_dir.path()),
    );
    let deb = PathBuf::from(out.lines().last().unwrap().trim());
    assert!(deb.is_file(), "{out}");

    let info = run_ok(Command::new("dpkg-deb").arg("--info").arg(&deb));
    assert!(info.contains("Package: kube-ldap-webhook"), "{info}");
    assert!(
        info.contains("Depends: ") && info.contains("libc6 (>= "),
        "{info}"
    );
    let conf = run_ok(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --ctrl-tarfile '{}' | tar -xO ./conffiles",
        deb.display()
    )));
    assert_eq!(conf.trim(), "/etc/kube-ldap-webhook/config.toml");
    let contents = run_ok(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for f in [
        "./usr/bin/kube-ldap-webhook",
        "./usr/lib/systemd/system/kube-ldap-webhook.service",
        "./usr/lib/sysusers.d/kube-ldap-webhook.conf",
        "./etc/kube-ldap-webhook/config.toml",
    ] {
        assert!(contents.contains(f), "{f} not in the package:\n{contents}");
    }

    let _purge = Purge;
    run_ok(
        Command::new("dpkg")
            .args(["--force-confdef", "--force-confold", "-i"])
            .arg(&deb)
            .stdin(Stdio::null()),
    );
    let version = run_ok(Command::new("/usr/bin/kube-ldap-webhook").arg("version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let user = run_ok(Command::new("getent").args(["passwd", PACKAGE]));
    assert!(user.contains("nologin"), "{user}");
    let out = run_ok(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg("/usr/lib/systemd/system/kube-ldap-webhook.service"),
    );
    assert!(
        out.trim().is_empty(),
        "systemd-analyze verify on the installed unit:\n{out}"
    );
    // The shipped example parses; it fails only on the certificates it names.
    let (ok, out) = run(Command::new("/usr/bin/kube-ldap-webhook").args([
        "check-config",
        "--config",
        "/etc/kube-ldap-webhook/config.toml",
    ]));
    assert!(!ok && out.contains("/etc/kube-ldap-webhook/"), "{out}");

    run_ok(Command::new("dpkg").args(["--remove", PACKAGE]));
    assert!(!Path::new("/usr/bin/kube-ldap-webhook").exists());
    assert!(!Path::new("/usr/lib/systemd/system/kube-ldap-webhook.service").exists());
    assert!(!Path::new("/usr/lib/sysusers.d/kube-ldap-webhook.conf").exists());
    assert!(
        Path::new("/etc/kube-ldap-webhook/config.toml").exists(),
        "remove (not purge) keeps the conffile"
    );
    run_ok(Command::new("dpkg").args(["--purge", PACKAGE]));
    assert!(
        !Path::new("/etc/kube-ldap-webhook").exists(),
        "purge leaves /etc/kube-ldap-webhook"
    );
    assert!(!package_installed());
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_new_log_level() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    d.login("alice", "alice-password").await;
    d.wait_for_log("outcome=\"accepted\"");
    let cfg = std::fs::read_to_string(&d.config)
        .unwrap()
        .replace("level = \"debug\"", "level = \"warn\"");
    std::fs::write(&d.config, cfg).unwrap();
    d.signal(libc::SIGHUP);
    wait_until(
        || d.metric("kube_ldap_webhook_reloads_total", &[("event", "ok")]) == 1.0,
        || "no reload".into(),
    );
    let before = d.log().matches("outcome=").count();
    d.login("bob", "pa:ss:word").await;
    d.login("alice", "wrong").await;
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        d.log().matches("outcome=").count(),
        before,
        "info lines stopped at warn"
    );
}
