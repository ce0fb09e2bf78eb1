use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::writer::Writer;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn review<'a>(username: &'a str, groups: &'a [String]) -> Event<'a> {
    Event {
        username: Some(username),
        groups: Some(groups),
        directory: Some("default"),
        latency: Some(Duration::from_micros(1500)),
        ..Event::new(Kind::Review, "accepted", "bound")
    }
}

#[test]
fn a_hostile_username_stays_one_line_of_valid_json() -> TestResult {
    let name = "al\"ice\n{\"event\":\"forged\"}\r\u{2028}*)(uid=*)\\00\u{0}";
    let groups = vec!["g\nx".to_string()];
    let line = render(&review(name, &groups), true, SystemTime::UNIX_EPOCH);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    let v: Value = serde_json::from_str(&line)?;
    assert_eq!(v["username"], name);
    assert_eq!(v["event"], "review");
    assert_eq!(v["groups"][0], "g\nx");
    Ok(())
}

#[test]
fn without_personal_data_no_username_or_groups() -> TestResult {
    let groups = vec!["admins".to_string()];
    let line = render(&review("alice", &groups), false, SystemTime::UNIX_EPOCH);
    let v: Value = serde_json::from_str(&line)?;
    assert!(
        v.get("username").is_none() && v.get("groups").is_none(),
        "{line}"
    );
    assert!(
        !line.contains("alice") && !line.contains("admins"),
        "{line}"
    );
    assert_eq!(v["directory"], "default");
    Ok(())
}

#[test]
fn a_request_id_is_sixteen_hex_digits() {
    assert_eq!(RequestId(0xbeef).to_string(), "000000000000beef");
    let e = Event {
        request_id: Some(RequestId(u64::MAX)),
        ..Event::new(Kind::Login, "accepted", "bound")
    };
    let line = render(&e, true, SystemTime::UNIX_EPOCH);
    assert!(
        line.contains("\"request_id\":\"ffffffffffffffff\""),
        "{line}"
    );
}

#[test]
fn time_is_rfc3339_utc_and_latency_in_microseconds() -> TestResult {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_780_000_000_123);
    let line = render(&review("alice", &[]), true, at);
    let v: Value = serde_json::from_str(&line)?;
    assert_eq!(v["time"], "2026-05-28T20:26:40.123Z");
    assert_eq!(v["latency_us"], 1500);
    Ok(())
}

#[test]
fn a_credential_id_is_keyed_and_never_the_token() {
    let metrics = Arc::new(Metrics::new());
    let (a, b) = (
        Audit::open(&Settings::default(), metrics.clone()),
        Audit::open(&Settings::default(), metrics),
    );
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("an audit stream without a file always opens");
    };
    let token = "YWxpY2U6YWxpY2UtcGFzc3dvcmQ=";
    let id = a.credential_id(token);
    assert_eq!(id, a.credential_id(token), "the same token, the same id");
    assert_ne!(id, b.credential_id(token), "another process, another key");
    assert!(
        id.starts_with("hmac-sha256:") && id.len() == 12 + 32,
        "{id}"
    );
    assert!(!id.contains(token));
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

#[test]
fn rotation_at_the_size_limit_keeps_max_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    // 100-byte lines (with the newline), 250 bytes a file: two lines per file.
    let mut w = Writer::for_test(&path, 250, 3)?;
    for i in 0..20 {
        w.write(&format!("{i:<99}"));
    }
    w.flush()?;
    let mut names: Vec<String> = std::fs::read_dir(dir.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["audit.log", "audit.log.1", "audit.log.2", "audit.log.3"]
    );
    let first = |p: &std::path::Path| lines(p).first().map(|l| l.trim().to_string());
    assert_eq!(lines(&path).len(), 2);
    assert_eq!(first(&path).as_deref(), Some("18"), "the newest in FILE");
    let oldest = dir.path().join("audit.log.3");
    assert_eq!(first(&oldest).as_deref(), Some("12"), "the oldest kept");
    for f in &names {
        let size = std::fs::metadata(dir.path().join(f))?.len();
        assert!(size <= 250, "{f}: {size} bytes");
    }
    Ok(())
}

#[test]
fn a_line_is_never_split_across_files() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("audit.log");
    let mut w = Writer::for_test(&path, 250, 2)?;
    w.write(&"a".repeat(200));
    w.write(&"b".repeat(200));
    w.flush()?;
    assert_eq!(lines(&path), vec!["b".repeat(200)]);
    assert_eq!(
        lines(&dir.path().join("audit.log.1")),
        vec!["a".repeat(200)]
    );
    Ok(())
}

#[test]
fn a_writer_that_falls_behind_drops_and_counts_events_rather_than_block() {
    let metrics = Arc::new(Metrics::new());
    let (audit, queue) = Audit::stalled(2, metrics.clone());
    for _ in 0..5 {
        audit.record(Event::new(Kind::Review, "accepted", "bound"));
    }
    let dropped = metrics
        .audit_events
        .get_or_create(&EventLabels { event: "dropped" })
        .get();
    assert_eq!(dropped, 3, "two queued, three dropped");
    assert_eq!(queue.try_iter().count(), 2);
}
