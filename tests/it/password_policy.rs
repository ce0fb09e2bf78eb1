//! Password policy (draft-behera, slapd's ppolicy overlay): the daemon asks for the policy
//! state on every user bind and tells the user what the directory said. A password a
//! helpdesk just reset is not a password to log in with.

use crate::support::*;

const METRIC: &str = "kube_ldap_webhook_password_policy_warnings_total";

/// slapd with the ppolicy overlay and one user per account state: `expiring`'s password
/// expires in 23 hours (and the policy warns a day ahead), `grace`'s has expired with 3
/// grace logins.
pub(crate) fn ppolicy_slapd() -> Slapd {
    let ldif = std::fs::read_to_string(repo().join("tests/fixtures/openldap/ppolicy.ldif"))
        .unwrap()
        .replace("@TWO_DAYS_AGO@", &generalized_time("-2 days"))
        .replace("@AN_HOUR_AGO@", &generalized_time("-1 hour"));
    let conf = SlapdConf::ppolicy_lockout();
    Slapd::start_configured(&conf, &ldif)
}

fn start() -> (Slapd, Daemon) {
    let slapd = ppolicy_slapd();
    let d = slapd.daemon().start();
    (slapd, d)
}

fn error_of(a: &Answer) -> String {
    assert_eq!(a.body["status"]["authenticated"], false, "{}", a.raw);
    a.body["status"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_by_the_helpdesk_must_be_changed_before_logging_in() {
    let (_slapd, d) = start();
    let a = d.login("reset", "temporary-password").await;
    assert_eq!(error_of(&a), "Password must be changed before logging in");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_password_gets_credentials_are_expired() {
    let (_slapd, d) = start();
    let a = d.login("expired", "expired-password").await;
    assert_eq!(error_of(&a), "Credentials are expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_locked_account_is_told_so() {
    let (_slapd, d) = start();
    let a = d.login("locked", "locked-password").await;
    assert_eq!(error_of(&a), "Account is locked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grace_login_is_accepted_and_counted() {
    let (_slapd, d) = start();
    let a = d.login("grace", "grace-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(d.metric(METRIC, &[("event", "grace_login")]), 1.0);
    d.wait_for_log("GraceLogins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_about_to_expire_is_accepted_and_counted() {
    let (_slapd, d) = start();
    let a = d.login("expiring", "expiring-password").await;
    assert_eq!(a.body["status"]["authenticated"], true, "{}", a.raw);
    assert_eq!(d.metric(METRIC, &[("event", "password_expiring")]), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_under_a_policy_stays_the_generic_rejection() {
    let (_slapd, d) = start();
    let a = d.login("expiring", "not-the-password").await;
    assert_eq!(error_of(&a), "Invalid username or password");
}
