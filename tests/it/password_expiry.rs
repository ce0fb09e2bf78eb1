//! Password-expiry warnings, from slapd's ppolicy overlay to the user's terminal: the login
//! answer carries what the bind's password-policy control said (`passwordExpiry`), and the
//! credential plugin prints one line on stderr after the login that brought it, on an
//! interactive run only (unless asked), never again from its cache. The Active Directory
//! side (msDS-UserPasswordExpiryTimeComputed) is in active_directory/password_expiry.rs.

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::credential_jwt::jwt_table;
use crate::credential_login::{exec_info, stderr, Credential, Laptop};
use crate::password_policy::ppolicy_slapd;
use crate::support::issued::*;
use crate::support::*;

pub(crate) const CHANGE_URL: &str = "https://password.example.org/change";
const EXPIRING_PASSWORD: &str = "expiring-password";
const GRACE_PASSWORD: &str = "grace-password";

/// The daemon with its login endpoint on slapd with the ppolicy overlay; `login` lines
/// go to `[login]`.
struct Site {
    _slapd: Slapd,
    _keys: KeyPair,
    issuer: Issuer,
}

impl Site {
    fn start(login: &str) -> Site {
        Site::start_with(login, "")
    }

    /// With `tokens`, what follows `[tokens]` (a `[jwt]` table).
    fn start_with(login: &str, tokens: &str) -> Site {
        let slapd = ppolicy_slapd();
        let keys = KeyPair::new();
        let issuer = Issuer::on_slapd(&slapd, &[], &keys, login, tokens);
        Site {
            _slapd: slapd,
            _keys: keys,
            issuer,
        }
    }

    /// With `login.password_change_url` set.
    fn with_change_url() -> Site {
        Site::start(&format!("password_change_url = \"{CHANGE_URL}\""))
    }

    /// A login that must succeed: its JSON body.
    async fn login(&self, user: &str, password: &str) -> Value {
        let r = self.issuer.login(user, password).await;
        assert_eq!(r.status, 200, "{}", r.raw);
        r.body
    }

    /// The credential plugin for `user` (non-interactive, as kubectl runs it in a script).
    fn plugin_command(&self, laptop: &Laptop, user: &str, password: &str) -> Command {
        let (url, ca) = (self.issuer.login_url(), &self.issuer.daemon.pki.server_ca);
        laptop.plugin_as(&url, ca, user, password)
    }

    /// The credential plugin for `user`, as kubectl runs it: interactive or not.
    fn plugin(&self, laptop: &Laptop, user: &str, password: &str, interactive: bool) -> Output {
        self.plugin_command(laptop, user, password)
            .env("KUBERNETES_EXEC_INFO", exec_info("v1", interactive))
            .output()
            .unwrap()
    }
}

/// The one line about the password the plugin printed, if any.
pub(crate) fn expiry_line(stderr: &str) -> Option<&str> {
    let mut lines = stderr.lines().filter(|l| l.contains("password"));
    let line = lines.next();
    assert!(lines.next().is_none(), "one line only:\n{stderr}");
    line
}

/// The plugin's line, which must say `left` ("in 22 hours") and end with the change URL.
pub(crate) fn assert_expiry_line<'a>(stderr: &'a str, left: &str) -> &'a str {
    let Some(line) = expiry_line(stderr) else {
        panic!("no password line:\n{stderr}")
    };
    assert!(
        line.starts_with(&format!("Your password expires {left} ("))
            && line.ends_with(&format!(" UTC); change it at {CHANGE_URL}")),
        "{line}"
    );
    line
}

/// `passwordExpiry.expirationTimestamp` of a login answer; panics without one.
pub(crate) fn expires_at(answer: &Value) -> SystemTime {
    let t = answer["passwordExpiry"]["expirationTimestamp"]
        .as_str()
        .unwrap_or_else(|| panic!("no expirationTimestamp: {answer}"));
    rfc3339_time(t)
}

/// An RFC 3339 time; panics on anything else.
pub(crate) fn rfc3339_time(t: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{t}: {e}"));
    SystemTime::from(t)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_answer_tells_when_a_password_expires_and_where_to_change_it() {
    let site = Site::with_change_url();
    let answer = site.login("expiring", EXPIRING_PASSWORD).await;
    // Changed an hour ago under a one-day maximum age: 23 hours left, as slapd counts.
    let left = expires_at(&answer)
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let hour = Duration::from_secs(3600);
    assert!(left > 22 * hour && left <= 23 * hour, "{left:?}: {answer}");
    assert_eq!(
        answer["passwordExpiry"]["changeUrl"], CHANGE_URL,
        "{answer}"
    );
    assert!(answer["token"].as_str().is_some(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grace_login_answer_tells_the_grace_logins_left() {
    let site = Site::with_change_url();
    let answer = site.login("grace", GRACE_PASSWORD).await;
    // Three grace logins; this one used the first.
    assert_eq!(
        answer["passwordExpiry"]["graceLoginsRemaining"], 2,
        "{answer}"
    );
    assert!(answer["passwordExpiry"]["expirationTimestamp"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_beyond_the_configured_window_is_not_told() {
    let site = Site::start("password_expiry_warning = \"1h\"");
    let answer = site.login("expiring", EXPIRING_PASSWORD).await;
    assert!(answer.get("passwordExpiry").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_with_nothing_to_tell_answers_only_token_and_expiry() {
    let site = Site::with_change_url();
    let answer = site.login("alice", "alice-password").await;
    let Some(fields) = answer.as_object() else {
        panic!("not an object: {answer}")
    };
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["expirationTimestamp", "token"], "{answer}");
}

#[test]
fn an_interactive_plugin_run_prints_one_line_with_the_time_left_and_the_url() {
    let site = Site::with_change_url();
    let laptop = Laptop::new();
    let out = site.plugin(&laptop, "expiring", EXPIRING_PASSWORD, true);
    let c = Credential::of(&out);
    let line = assert_expiry_line(&c.stderr, "in 22 hours");
    assert!(
        !line.contains(EXPIRING_PASSWORD) && !line.contains(c.token()),
        "no secret in the line: {line}"
    );
}

#[test]
fn the_line_is_printed_once_per_login_not_again_from_the_cache() {
    let site = Site::with_change_url();
    let laptop = Laptop::new();
    let first = Credential::of(&site.plugin(&laptop, "expiring", EXPIRING_PASSWORD, true));
    assert!(expiry_line(&first.stderr).is_some(), "{}", first.stderr);
    let again = Credential::of(&site.plugin(&laptop, "expiring", EXPIRING_PASSWORD, true));
    assert_eq!(again.token(), first.token(), "the cached token");
    assert_eq!(expiry_line(&again.stderr), None, "{}", again.stderr);
}

#[test]
fn a_non_interactive_plugin_run_prints_no_line() {
    let site = Site::with_change_url();
    let laptop = Laptop::new();
    let out = site.plugin(&laptop, "expiring", EXPIRING_PASSWORD, false);
    let c = Credential::of(&out);
    assert_eq!(expiry_line(&c.stderr), None, "{}", c.stderr);
}

#[test]
fn asked_for_the_line_a_non_interactive_run_prints_it() {
    let site = Site::with_change_url();
    let laptop = Laptop::new();
    let out = site
        .plugin_command(&laptop, "expiring", EXPIRING_PASSWORD)
        .arg("--password-expiry-warning=always")
        .output()
        .unwrap();
    let c = Credential::of(&out);
    assert!(expiry_line(&c.stderr).is_some(), "{}", stderr(&out));
}

#[test]
fn a_grace_login_prints_its_own_line() {
    let site = Site::start("");
    let laptop = Laptop::new();
    let c = Credential::of(&site.plugin(&laptop, "grace", GRACE_PASSWORD, true));
    assert_eq!(
        expiry_line(&c.stderr),
        Some("Your password has expired: 2 grace logins left; change it now"),
        "{}",
        c.stderr
    );
}

#[test]
fn the_jwt_mode_prints_the_line_at_its_login_not_at_a_cached_jwt() {
    let (_jwt_keys, jwt) = jwt_table();
    let site = Site::start_with(&format!("password_change_url = \"{CHANGE_URL}\""), &jwt);
    let laptop = Laptop::new();
    let run = || {
        let out = site
            .plugin_command(&laptop, "expiring", EXPIRING_PASSWORD)
            .arg("--jwt")
            .env("KUBERNETES_EXEC_INFO", exec_info("v1", true))
            .output()
            .unwrap();
        Credential::of(&out)
    };
    let first = run();
    assert_expiry_line(&first.stderr, "in 22 hours");
    let again = run();
    assert_eq!(again.token(), first.token(), "the cached JWT");
    assert_eq!(expiry_line(&again.stderr), None, "{}", again.stderr);
}
