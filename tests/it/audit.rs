//! Audit events (`[audit]`) from the real daemon against a real slapd, over real HTTPS: one
//! JSON line per decision with the schema's fields, cache hits counted rather than written,
//! `personal_data = false`, a hostile name, lockout starts, reloads, rotation, and a file
//! that cannot be opened. Every daemon of the suite writes its stream, and the harness
//! scans every line of it for the secrets the tests used (support/audit.rs); the login
//! port's events are in audit/login.rs.

use serde_json::Value;

use crate::support::issued::reload;
use crate::support::*;

mod login;

fn of(kind: &str) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["event"] == kind
}

fn events_of(d: &Daemon, kind: &str) -> Vec<Value> {
    d.audit()
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

fn written(d: &Daemon) -> f64 {
    d.metric(
        "kube_ldap_webhook_audit_events_total",
        &[("event", "written")],
    )
}

/// Waits until every event the daemon counted as written is in the file, and returns them.
fn settled(d: &Daemon, n: usize) -> Vec<Value> {
    wait_until(
        || d.audit().len() >= n && written(d) as usize == d.audit().len(),
        || format!("{n} audit events never settled:\n{:?}", d.audit()),
    );
    d.audit()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_review_is_one_event_with_who_where_and_a_keyed_credential_id() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let a = d.login("alice", "alice-password").await;
    assert!(a.body["status"]["authenticated"] == true, "{}", a.raw);
    let e = d.wait_for_audit(of("review"));
    assert_eq!(e["outcome"], "accepted");
    assert_eq!(e["reason"], "bound");
    assert_eq!(
        (&e["method"], &e["answer"]),
        (&"basic".into(), &"ldap".into())
    );
    assert_eq!(e["directory"], "default");
    assert_eq!(e["username"], "alice");
    assert_eq!(e["groups"], serde_json::json!(["admins", "developers"]));
    assert!(
        e["source_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{e}"
    );
    assert!(e["latency_us"].as_u64().is_some(), "{e}");
    let id = e["credential_id"].as_str().unwrap();
    assert!(id.starts_with("hmac-sha256:") && id.len() == 44, "{e}");
    let time = e["time"].as_str().unwrap();
    assert!(
        time.ends_with('Z')
            && time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok(),
        "{e}"
    );
    // The correlation id is in the log line of the same review.
    let request_id = e["request_id"].as_str().unwrap();
    d.wait_for_log(request_id);
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_events_and_name_only_accounts_the_directory_confirmed() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    d.login("alice", "not-the-password").await;
    d.login("nobody-at-all", "nobodys-password").await;
    let malformed = d.client().review(&d.url(), "v1", "Og==").await;
    assert_eq!(malformed.body["status"]["authenticated"], false);
    let events = settled(&d, 3);
    let by_reason = |r: &str| events.iter().find(|e| e["reason"] == r).cloned();
    let wrong = by_reason("wrong_password").expect("a wrong password event");
    assert_eq!(
        (&wrong["outcome"], &wrong["username"]),
        (&"rejected".into(), &"alice".into())
    );
    let unknown = by_reason("unknown_user").expect("an unknown user event");
    assert!(unknown.get("username").is_none(), "{unknown}");
    let bad = by_reason("empty or malformed username or password").expect("a malformed event");
    assert_eq!(bad["answer"], "local");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_review_request_is_an_event_and_a_400() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let a = d
        .client()
        .request("POST", &d.url(), b"{\"kind\":".to_vec())
        .await;
    assert_eq!(a.map(|a| a.status), Ok(400));
    let e = d.wait_for_audit(of("review"));
    assert_eq!(
        (&e["outcome"], &e["answer"]),
        (&"invalid_request".into(), &"local".into())
    );
    assert!(e.get("credential_id").is_none(), "no token, no id: {e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_another_authenticator_is_counted_not_written() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    let a = d
        .client()
        .review(&d.url(), "v1", "ya29.someone-elses")
        .await;
    assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
    d.login("alice", "alice-password").await;
    settled(&d, 1);
    let not_ours = &[("event", "not_ours")];
    assert_eq!(
        d.metric("kube_ldap_webhook_audit_events_total", not_ours),
        1.0
    );
    let events = d.audit();
    assert_eq!(events.len(), 1, "only alice's review: {events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cache_hit_is_counted_not_written() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    for _ in 0..3 {
        d.login("alice", "alice-password").await;
    }
    let hits = || {
        d.metric(
            "kube_ldap_webhook_audit_events_total",
            &[("event", "cache_hit")],
        )
    };
    wait_until(|| hits() == 2.0, || format!("cache hits: {}", d.metrics()));
    assert_eq!(settled(&d, 1).len(), 1, "{:?}", d.audit());
}

#[tokio::test(flavor = "multi_thread")]
async fn with_cache_hits_on_a_cached_answer_is_written_too() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("audit", "cache_hits = true").start();
    let first = d.login("alice", "alice-password").await;
    let second = d.login("alice", "alice-password").await;
    assert_eq!(first.body["status"], second.body["status"]);
    let events = settled(&d, 2);
    let answers: Vec<&Value> = events.iter().map(|e| &e["answer"]).collect();
    assert_eq!(answers, ["ldap", "cache"]);
    assert_eq!(
        events[0]["credential_id"], events[1]["credential_id"],
        "the same token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_personal_data_no_event_names_the_user_or_groups() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("cache", "max_failures = 1")
        .section("audit", "personal_data = false")
        .start();
    d.login("alice", "alice-password").await;
    d.login("bob", "not-bobs-password").await;
    let events = settled(&d, 3);
    assert!(
        events.iter().any(|e| e["event"] == "lockout_start"),
        "{events:?}"
    );
    for e in &events {
        assert!(
            e.get("username").is_none() && e.get("groups").is_none(),
            "{e}"
        );
        let line = e.to_string();
        for name in ["alice", "bob", "admins", "developers"] {
            assert!(!line.contains(name), "{name} in {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_failure_that_uses_up_the_budget_starts_a_lockout_event_once() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("cache", "max_failures = 2").start();
    for i in 0..4 {
        d.login("alice", &format!("wrong-password-{i}")).await;
    }
    settled(&d, 5);
    let starts = events_of(&d, "lockout_start");
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(
        (&starts[0]["username"], &starts[0]["directory"]),
        (&"alice".into(), &"default".into())
    );
    let refused: Vec<Value> = events_of(&d, "review")
        .into_iter()
        .filter(|e| e["reason"] == "lockout protection")
        .collect();
    assert_eq!(refused.len(), 2, "{:?}", d.audit());
    assert!(refused.iter().all(|e| e["answer"] == "local"));
}

/// Control characters (a newline) never get past the token decoder; the unit test
/// `a_hostile_username_stays_one_line_of_valid_json` shows a line holds them whole.
/// A name that matched nothing is not written: it may be a password typed there.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_name_that_matched_nothing_is_not_written_and_makes_one_json_line() {
    let slapd = Slapd::start();
    let d = slapd.daemon().section("cache", "max_failures = 1").start();
    let hostile = "eve\"},{\"event\"=\"login\",\"outcome\"=\"accepted\"\u{2028}\u{2029}*)(uid=*))(|(uid=*\\00";
    d.login(hostile, "eves-password").await;
    let e = d.wait_for_audit(of("lockout_start"));
    assert!(e.get("username").is_none(), "{e}");
    let text = std::fs::read_to_string(d.audit_path()).unwrap();
    assert!(!text.contains("eve\\\""), "the name as typed in:\n{text}");
    assert_eq!(
        text.lines().count(),
        d.audit().len(),
        "one line an event:\n{text}"
    );
    assert!(
        d.audit().iter().all(|e| e["outcome"] != "accepted"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_at_the_size_limit_keeps_max_files() {
    let slapd = Slapd::start();
    let d = slapd
        .daemon()
        .section("audit", "max_size = \"4KiB\"\nmax_files = 2")
        .start();
    // Each a different token, so none is answered from the cache; ~300 bytes an event.
    for i in 0..60 {
        d.login("alice", &format!("wrong-password-{i}")).await;
    }
    wait_until(|| written(&d) >= 60.0, || d.metrics());
    let dir = d.audit_path().parent().unwrap().to_path_buf();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(AUDIT_FILE))
        .collect();
    files.sort();
    assert_eq!(files, ["audit.log", "audit.log.1", "audit.log.2"]);
    for f in &files {
        let size = std::fs::metadata(dir.join(f)).unwrap().len();
        assert!(size <= 4096, "{f}: {size} bytes");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_are_events_and_a_refused_reload_says_why() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    reload(&d, |t| t);
    let ok = d.wait_for_audit(of("config_reload"));
    assert_eq!(ok["outcome"], "ok");
    let text = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, text.replace("[cache]", "[cache]\ncapacity = -1")).unwrap();
    d.signal(libc::SIGHUP);
    let failed = d.wait_for_audit(|e| e["event"] == "config_reload" && e["outcome"] == "failed");
    assert!(
        failed["reason"].as_str().unwrap().contains("capacity"),
        "{failed}"
    );
    assert!(
        events_of(&d, "key_reload").is_empty(),
        "no keys, no key reload"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_turns_personal_data_off_and_leaves_the_file_until_a_restart() {
    let slapd = Slapd::start();
    let d = slapd.daemon().start();
    d.login("alice", "not-the-password").await;
    d.wait_for_audit(|e| e["username"] == "alice");
    let moved = d.audit_path().with_extension("moved");
    reload(&d, |t| {
        let file = format!("file = \"{}\"", d.audit_path().display());
        let moved = format!("file = \"{}\"\npersonal_data = false", moved.display());
        t.replace(&file, &moved)
    });
    d.wait_for_log("take effect at the next restart");
    d.login("bob", "not-bobs-password").await;
    let bob = d.wait_for_audit(|e| e["reason"] == "wrong_password" && e.get("username").is_none());
    assert_eq!(bob["event"], "review");
    assert!(!moved.exists(), "the file moves only at a restart");
}

/// `serve` and `check-config` of a config whose audit file is `file`.
fn refused_with_audit_file(file: &str) -> Vec<std::process::Output> {
    let slapd = Slapd::start();
    let dir = tempfile::tempdir().unwrap();
    let written = slapd.daemon().write_to(dir.path());
    let text = std::fs::read_to_string(&written.path).unwrap();
    let default = format!("file = \"{}\"", dir.path().join(AUDIT_FILE).display());
    std::fs::write(
        &written.path,
        text.replace(&default, &format!("file = \"{file}\"")),
    )
    .unwrap();
    ["serve", "check-config"]
        .iter()
        .map(|cmd| {
            std::process::Command::new(bin())
                .args([cmd, "--config"])
                .arg(&written.path)
                .output()
                .unwrap()
        })
        .collect()
}

#[test]
fn an_audit_file_that_cannot_be_written_refuses_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be; and a path under a plain file.
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "").unwrap();
    for file in [dir.path().to_path_buf(), plain.join("audit.log")] {
        for out in refused_with_audit_file(&file.display().to_string()) {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{file:?} accepted: {stderr}");
            assert!(stderr.contains("audit.file"), "{file:?}: {stderr}");
        }
    }
}
