//! Password-expiry warnings on the Samba AD DC: AD sends no password-policy control, so the
//! daemon reads the constructed `msDS-UserPasswordExpiryTimeComputed` with the user's entry
//! (pwdLastSet plus the maximum age of the domain, 42 days, or of the user's fine-grained
//! policy). Each test makes its own user, whose password was set just now, and a PSO of its
//! own that gives it a maximum age of 10 days: inside the default 14-day window, where the
//! fixture's users (42 days) are outside it.

use std::time::{Duration, SystemTime};

use super::issued_tokens::{ad_issuer_with, add_user, admin_ldif};
use super::*;
use crate::credential_login::{exec_info, Credential, Laptop};
use crate::password_expiry::{assert_expiry_line, expires_at, CHANGE_URL};
use crate::support::issued::*;
use crate::support::kerberos::{kerberos_issuer, Mech, Ticket};

const DAY: u64 = 86_400;
/// `msDS-MaximumPasswordAge` of the tests' PSOs: 10 days, in negative 100 ns ticks.
const TEN_DAYS_TICKS: i64 = -10 * 86_400 * 10_000_000;

/// A new user `name` with `password`, and a PSO of its own: its password expires in 10 days.
fn add_expiring_user(name: &str, password: &str) -> String {
    let dn = add_user(name, password);
    let pso = format!(
        "CN={name}-pso,CN=Password Settings Container,CN=System,{}",
        dc().var("SAMBA_BASE_DN")
    );
    admin_ldif(&format!(
        "dn: {pso}\nchangetype: add\nobjectClass: msDS-PasswordSettings\n\
         msDS-PasswordSettingsPrecedence: 30\nmsDS-PasswordReversibleEncryptionEnabled: FALSE\n\
         msDS-PasswordHistoryLength: 0\nmsDS-PasswordComplexityEnabled: FALSE\n\
         msDS-MinimumPasswordLength: 0\nmsDS-MinimumPasswordAge: 0\n\
         msDS-MaximumPasswordAge: {TEN_DAYS_TICKS}\nmsDS-LockoutThreshold: 0\n\
         msDS-LockoutObservationWindow: -18000000000\nmsDS-LockoutDuration: -18000000000\n\
         msDS-PSOAppliesTo: {dn}\n"
    ));
    dn
}

fn change_url() -> String {
    format!("password_change_url = \"{CHANGE_URL}\"")
}

/// A password login that must succeed: the answer's body.
async fn login(i: &Issuer, user: &str, password: &str) -> Value {
    let r = i.login(user, password).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    r.body
}

/// How long the answer says the password has left; panics without `passwordExpiry`.
fn time_left(answer: &Value) -> Duration {
    expires_at(answer)
        .duration_since(SystemTime::now())
        .unwrap_or_default()
}

/// Within the ten days since the password was set a moment ago.
fn assert_about_ten_days(left: Duration, answer: &Value) {
    let ten = Duration::from_secs(10 * DAY);
    assert!(
        left <= ten && left > ten - Duration::from_secs(3600),
        "{left:?}: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_login_answer_tells_when_an_ad_password_expires() {
    add_expiring_user("exp-login", "Passw0rd!exp-login");
    let keys = KeyPair::new();
    let i = ad_issuer_with(&keys, "", &change_url());
    let answer = login(&i, "exp-login", "Passw0rd!exp-login").await;
    assert_about_ten_days(time_left(&answer), &answer);
    assert_eq!(
        answer["passwordExpiry"]["changeUrl"], CHANGE_URL,
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ad_password_expiring_beyond_the_window_is_not_told() {
    // alice's password was set at provisioning under the domain's 42 days.
    let keys = KeyPair::new();
    let i = ad_issuer_with(&keys, "", "");
    let answer = login(&i, "alice", ALICE_PASSWORD).await;
    assert!(answer.get("passwordExpiry").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ad_password_that_never_expires_is_not_told() {
    // The service account: DONT_EXPIRE_PASSWORD, so AD computes 0x7FFFFFFFFFFFFFFF.
    let keys = KeyPair::new();
    let i = ad_issuer_with(&keys, "", "password_expiry_warning = \"365d\"");
    let answer = login(&i, "k8s-webhook", dc().var("SAMBA_BIND_PASSWORD")).await;
    assert!(answer.get("passwordExpiry").is_none(), "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kerberos_login_answer_tells_when_an_ad_password_expires() {
    add_expiring_user("exp-kerberos", "Passw0rd!exp-kerberos");
    let keys = KeyPair::new();
    let i = kerberos_issuer(dc(), &keys, "[\"EXAMPLE\", \"example.test\"]", "", "");
    let ticket = Ticket::new(
        dc(),
        "exp-kerberos@EXAMPLE.TEST",
        "Passw0rd!exp-kerberos",
        &[],
    );
    let credential = ticket.negotiate(dc().var("SAMBA_HTTP_SPN"), Mech::Spnego);
    let header = format!("Negotiate {credential}");
    let r = i.call("POST", &i.login_url(), Some(&header)).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_about_ten_days(time_left(&r.body), &r.body);
}

#[test]
fn an_interactive_plugin_run_tells_an_ad_user_the_days_left() {
    add_expiring_user("exp-plugin", "Passw0rd!exp-plugin");
    let keys = KeyPair::new();
    let i = ad_issuer_with(&keys, "", &change_url());
    let laptop = Laptop::new();
    let (url, ca) = (i.login_url(), &i.daemon.pki.server_ca);
    let out = laptop
        .plugin_as(&url, ca, "exp-plugin", "Passw0rd!exp-plugin")
        .env("KUBERNETES_EXEC_INFO", exec_info("v1", true))
        .output()
        .unwrap();
    let c = Credential::of(&out);
    // Ten days less the seconds since the password was set.
    let line = assert_expiry_line(&c.stderr, "in 9 days");
    assert!(!line.contains("Passw0rd"), "{line}");
}
