//! The password-expiry line of the plugin: the login answer's `passwordExpiry` (when the
//! password expires, or the grace logins left, and where to change it) told to the person
//! at the terminal once, right after the login that brought it, as one line on stderr.
//! Never from the cache, and by default never on a run kubectl marks non-interactive:
//! scripts and CI jobs read stderr too.
//!
//! The answer comes over verified HTTPS from the daemon, but its text still lands on a
//! terminal: anything odd in it (a time no calendar holds, a URL with control characters)
//! drops the line or the clause rather than printing it.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};
use url::Url;

/// `--password-expiry-warning`: when the line is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExpiryWarning {
    /// When kubectl says the run is interactive (`KUBERNETES_EXEC_INFO`), or, run by hand,
    /// when stderr is a terminal.
    #[default]
    Auto,
    /// On every login, interactive or not.
    Always,
    /// Never.
    Never,
}

impl ExpiryWarning {
    /// Whether to print: `kubectl_interactive` is kubectl's `spec.interactive` when kubectl
    /// ran the plugin, `None` when a person did (then stderr decides).
    pub(crate) fn show(self, kubectl_interactive: Option<bool>) -> bool {
        match self {
            ExpiryWarning::Always => true,
            ExpiryWarning::Never => false,
            ExpiryWarning::Auto => kubectl_interactive.unwrap_or_else(|| {
                use std::io::IsTerminal;
                std::io::stderr().is_terminal()
            }),
        }
    }
}

/// Longer than any expiry a daemon warns of (`login.password_expiry_warning` is at most a
/// year): further out is not a warning but a broken answer.
const FURTHEST: Duration = Duration::days(400);
/// Beyond this a grace-login count is not one.
const MOST_GRACE_LOGINS: u64 = 10_000;
/// A change URL longer than this is not printed.
const MAX_URL: usize = 1000;

/// What the login answer said about the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Notice {
    state: State,
    change_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    ExpiresAt(OffsetDateTime),
    GraceLogins(u64),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    expiration_timestamp: Option<String>,
    grace_logins_remaining: Option<u64>,
    change_url: Option<String>,
}

impl Notice {
    /// The `passwordExpiry` of a login answer; `None` when absent or not understood (the
    /// token is good either way).
    pub(crate) fn from_answer(value: Option<serde_json::Value>) -> Option<Notice> {
        let raw: Raw = serde_json::from_value(value?).ok()?;
        let state = match (raw.expiration_timestamp, raw.grace_logins_remaining) {
            (Some(t), None) => State::ExpiresAt(OffsetDateTime::parse(&t, &Rfc3339).ok()?),
            (None, Some(n)) if n <= MOST_GRACE_LOGINS => State::GraceLogins(n),
            _ => return None,
        };
        Some(Notice {
            state,
            change_url: raw.change_url.filter(|u| printable_url(u)),
        })
    }

    /// The line to print at `now`, if there is one to print.
    pub(crate) fn line(&self, now: OffsetDateTime) -> Option<String> {
        let change = match &self.change_url {
            Some(url) => format!("change it at {url}"),
            None => String::new(),
        };
        match self.state {
            State::ExpiresAt(at) => {
                let at = at.to_offset(UtcOffset::UTC);
                let left = at - now;
                if left > FURTHEST {
                    return None;
                }
                let tail = if change.is_empty() {
                    String::new()
                } else {
                    format!("; {change}")
                };
                Some(format!(
                    "Your password expires {} ({}){tail}",
                    in_words(left),
                    when(at, left)
                ))
            }
            State::GraceLogins(n) => {
                let left = match n {
                    0 => "this was the last grace login".to_string(),
                    1 => "1 grace login left".to_string(),
                    n => format!("{n} grace logins left"),
                };
                let act = if change.is_empty() {
                    "change it now".to_string()
                } else {
                    format!("{change} now")
                };
                Some(format!("Your password has expired: {left}; {act}"))
            }
        }
    }
}

/// `in 3 days`, `in 5 hours`, `in 12 minutes`, whole units rounded down.
fn in_words(left: Duration) -> String {
    let (n, unit) = if left.whole_days() >= 1 {
        (left.whole_days(), "day")
    } else if left.whole_hours() >= 1 {
        (left.whole_hours(), "hour")
    } else if left.whole_minutes() >= 1 {
        (left.whole_minutes(), "minute")
    } else {
        return "in less than a minute".into();
    };
    let s = if n == 1 { "" } else { "s" };
    format!("in {n} {unit}{s}")
}

/// `Friday 12:00 UTC` within the week; with the date beyond, where a weekday alone would
/// name two days.
fn when(at: OffsetDateTime, left: Duration) -> String {
    let clock = format!("{:02}:{:02} UTC", at.hour(), at.minute());
    if left < Duration::days(6) {
        format!("{} {clock}", at.weekday())
    } else {
        format!("{} {} {} {clock}", at.weekday(), at.day(), at.month())
    }
}

/// An http(s) URL a terminal shows as it is: no control characters (escape sequences),
/// no spaces, bounded.
fn printable_url(u: &str) -> bool {
    u.len() <= MAX_URL
        && !u.chars().any(|c| c.is_control() || c.is_whitespace())
        && Url::parse(u).is_ok_and(|url| matches!(url.scheme(), "https" | "http"))
}

#[cfg(test)]
mod tests;
