//! A real Prometheus (Debian's `prometheus` package) scrapes a real daemon with the
//! shipped alerting rules; when slapd stops, the directory-down alert fires.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::support::*;

/// Stops the Prometheus the test started when the test ends, passing or not.
struct Prometheus(Child, u16);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped rules with windows and `for:` short enough for a test: the expressions
/// are otherwise the ones operators load.
fn test_rules() -> String {
    let rules = std::fs::read_to_string(repo().join("etc/prometheus/kube-ldap-webhook.rules.yml"))
        .unwrap_or_else(|e| panic!("rules: {e}"));
    rules
        .replace("[5m]", "[10s]")
        .replace("[15m]", "[10s]")
        .replace("for: 2m", "for: 0s")
}

fn start_prometheus(dir: &std::path::Path, ops_port: u16) -> Prometheus {
    std::fs::write(dir.join("rules.yml"), test_rules()).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: webhook\n    static_configs: [{{targets: ['127.0.0.1:{ops_port}']}}]\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("prometheus: {e} (run scripts/test-deps.sh)"));
    Prometheus(child, port)
}

/// The JSON answer of Prometheus' HTTP API at `path`, or `None` while it does not answer.
fn api(port: u16, path: &str) -> Option<Value> {
    let get = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(PATIENCE))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    };
    let raw = get().ok()?;
    serde_json::from_str(raw.split("\r\n\r\n").nth(1)?).ok()
}

/// The names of the alerts firing in Prometheus, or none while its API does not answer yet.
fn firing(port: u16) -> Vec<String> {
    let Some(v) = api(port, "/api/v1/alerts") else {
        return Vec::new();
    };
    v["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["state"] == "firing")
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect()
}

/// Prometheus has scraped the daemon (`up` is 1).
fn scraped(port: u16) -> bool {
    api(port, "/api/v1/query?query=up").is_some_and(|v| v["data"]["result"][0]["value"][1] == "1")
}

/// Every rule group has been evaluated after `t`.
fn evaluated_since(port: u16, t: OffsetDateTime) -> bool {
    let Some(v) = api(port, "/api/v1/rules") else {
        return false;
    };
    let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
    !groups.is_empty()
        && groups.iter().all(|g| {
            g["lastEvaluation"]
                .as_str()
                .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
                .is_some_and(|e| e > t)
        })
}

/// Polls `ready` every half second until it holds, failing the test after [`PATIENCE`].
async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ready() {
        assert!(Instant::now() < deadline, "{what} not within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_fires_directory_down_when_slapd_stops() {
    let mut slapd = Slapd::start();
    let d = slapd.daemon().start();
    let prom_dir = tempfile::tempdir().unwrap();
    let prom = start_prometheus(prom_dir.path(), d.ops_port);
    let ok = d
        .client()
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(ok.body["status"]["authenticated"], true, "{}", ok.raw);
    // Not firing means something only once the rules ran on what was scraped.
    wait_until("a scrape of the daemon", || scraped(prom.1)).await;
    let scraped_at = OffsetDateTime::now_utc();
    wait_until("an evaluation of the rules after the scrape", || {
        evaluated_since(prom.1, scraped_at)
    })
    .await;
    let before = firing(prom.1);
    assert!(
        !before.iter().any(|a| a == "KubeLdapWebhookDirectoryDown"),
        "fires while slapd answers: {before:?}"
    );

    slapd.stop();
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    loop {
        // Fresh passwords miss the cache, so every review goes to the stopped directory.
        n += 1;
        let _ = d
            .client()
            .review(&d.url(), "v1", &token("alice", &format!("try-{n}")))
            .await;
        let now = firing(prom.1);
        if now.iter().any(|a| a == "KubeLdapWebhookDirectoryDown") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not firing within {PATIENCE:?}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
