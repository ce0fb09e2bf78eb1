//! The Prometheus alerting rules and the Grafana dashboard of etc/prometheus: promtool
//! accepts the rules and their unit tests pass, and every metric they name is one a real
//! daemon exports on /metrics.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const PREFIX: &str = "kube_ldap_webhook_";

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc/prometheus")
}

/// Runs promtool (Debian's `prometheus` package; scripts/test-deps.sh installs it) in
/// etc/prometheus and fails the test with its output when it does not succeed.
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .unwrap_or_else(|e| panic!("promtool: {e} (run scripts/test-deps.sh)"));
    assert!(
        out.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_check() {
    promtool(&["check", "rules", "kube-ldap-webhook.rules.yml"]);
}

#[test]
fn alert_rules_fire_and_stay_quiet_as_their_unit_tests_say() {
    promtool(&["test", "rules", "kube-ldap-webhook.rules.test.yml"]);
}

/// Every `kube_ldap_webhook_*` word of `text`: the metric names a rule or query uses.
fn names_used(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(PREFIX) {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// The sample names a /metrics text declares: its samples (with their `_total`, `_bucket`
/// suffixes) and those of the families that have no series yet (labelled by events still to
/// come, such as an HTTP error's code), from their `# TYPE` lines.
fn names_exported(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split(' ');
            let (Some(family), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_count", "_sum"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|s| format!("{family}{s}")));
        } else if !line.starts_with('#') {
            names.extend(line.split(['{', ' ']).next().map(str::to_string));
        }
    }
    names.remove("");
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_rules_and_dashboard_name_only_metrics_the_daemon_exports() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    // LDAP series by server appear with the first operation.
    let ok = d
        .client()
        .review(&d.url(), "v1", &token("alice", "alice-password"))
        .await;
    assert_eq!(ok.body["status"]["authenticated"], true, "{}", ok.raw);
    // HTTP error series appear with the first error: a body that is not a TokenReview.
    let bad = d
        .client()
        .request("POST", &d.url(), b"not json".to_vec())
        .await;
    assert!(bad.is_ok_and(|a| a.status >= 400));
    let exported = names_exported(&d.metrics());
    for file in [
        "kube-ldap-webhook.rules.yml",
        "kube-ldap-webhook.dashboard.json",
    ] {
        let text =
            std::fs::read_to_string(dir().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let used = names_used(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        let unknown: Vec<_> = used.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics the daemon does not export: {unknown:?}\nexported: {exported:?}"
        );
    }
}
