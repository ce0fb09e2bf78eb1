//! The audit stream of a test's daemon: every daemon the harness starts writes one
//! (`audit.log` in its directory), and every line of it is checked when the daemon is
//! dropped: one JSON object with the schema's fields, and never a password or token any
//! test of this run used ([`used_secret`]), an issued token or a JWT.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::Value;

/// The passwords and tokens tests of this run handed to a daemon. One set for the whole
/// run: a secret of any test must appear in no test's audit stream.
static SECRETS: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Shorter strings are words an audit line may hold innocently ("wrong" in
/// `wrong_password`); every password and token of the fixtures is longer.
const SHORTEST_SECRET: usize = 8;

/// Whether the daemons this process starts write an audit stream.
static AUDITING: AtomicBool = AtomicBool::new(true);

/// Daemons started from now on write no audit stream: for the benches, which measure the
/// daemon as it ships (`audit.file` unset) and send millions of tokens a set of secrets
/// would only hold in memory.
#[allow(dead_code, reason = "for benches/")]
pub fn without_audit() {
    AUDITING.store(false, Ordering::Relaxed);
}

/// Whether daemons started now write an audit stream ([`without_audit`]).
pub fn auditing() -> bool {
    AUDITING.load(Ordering::Relaxed)
}

/// Remembers `secret` (a password, a token) to look for in every audit line.
pub fn used_secret(secret: &str) {
    if auditing() && secret.chars().count() >= SHORTEST_SECRET {
        SECRETS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(secret.to_string());
    }
}

/// The lines of `path` and of its rotated files (`path.1`, `path.2`, ...), oldest last.
/// A last line still being written (no newline yet) is left out.
pub fn audit_lines(path: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    for file in std::iter::once(path.to_path_buf()).chain(rotated(path)) {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        lines.extend(complete.lines().map(str::to_string));
    }
    lines
}

fn rotated(path: &Path) -> impl Iterator<Item = PathBuf> + '_ {
    (1..)
        .map(move |n| PathBuf::from(format!("{}.{n}", path.display())))
        .take_while(|p| p.exists())
}

/// The events of `path` as JSON, checked as [`assert_audit_clean`] checks them.
pub fn audit_events(path: &Path) -> Vec<Value> {
    audit_lines(path).iter().map(|l| checked(l)).collect()
}

/// Fails when a line of the audit stream at `path` is not one JSON event of the schema, or
/// holds a secret a test used, an issued token (`v4.public.`) or a JWT.
pub fn assert_audit_clean(path: &Path) {
    let secrets = SECRETS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for line in audit_lines(path) {
        checked(&line);
        assert!(
            !line.contains("v4.public.") && !has_jwt(&line),
            "a token in the audit stream {}: {line}",
            path.display()
        );
        if let Some(s) = secrets.iter().find(|s| line.contains(s.as_str())) {
            panic!(
                "a secret ({s:?}) in the audit stream {}: {line}",
                path.display()
            );
        }
    }
}

/// `line` parsed, with the fields every event has.
fn checked(line: &str) -> Value {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("an audit line that is not JSON ({e}): {line}"));
    for field in ["time", "event", "outcome", "reason"] {
        assert!(v[field].is_string(), "no {field} in the audit line {line}");
    }
    v
}

/// A JWT: three base64url segments, the first a JSON object's (`eyJ`).
fn has_jwt(line: &str) -> bool {
    line.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
        .any(|w| w.starts_with("eyJ") && w.split('.').count() == 3)
}
