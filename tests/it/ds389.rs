//! 389 Directory Server (FreeIPA's directory) for real, with the `freeipa` preset: each
//! account state its password policy and `nsAccountLock` give, for a basic token (what the
//! bind and 389-ds' Netscape controls say) and for an issued token (what its re-check reads
//! from the entry once the cached answer is over).

use std::time::SystemTime;

use crate::support;
use crate::support::issued::*;
use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=test";
const METRIC: &str = "kube_ldap_webhook_password_policy_warnings_total";

/// A daemon issuing tokens against `ds`, its answers cached for one second.
fn issuer(ds: &Ds389, keys: &KeyPair) -> Issuer {
    let mut sections = vec![("cache", "ttl = \"1s\"\nnegative_ttl = \"1s\"")];
    sections.extend_from_slice(&Ds389::sections());
    let i = Issuer::start(&Ds389::site(), &[ds.url()], &sections, keys, "", "");
    i.daemon.wait_for_probe();
    i
}

/// 389-ds and a daemon with a token alice logged in for, accepted by a review.
async fn logged_in() -> (Ds389, KeyPair, Issuer, String) {
    let ds = Ds389::start();
    let keys = KeyPair::new();
    let i = issuer(&ds, &keys);
    let token = i.token("alice", "alice-password").await;
    let a = i.review(&token).await;
    assert!(authenticated(&a), "{}", a.raw);
    (ds, keys, i, token)
}

fn set_alice(ds: &Ds389, attr: &str, value: &str) {
    ds.modify(&format!(
        "dn: {ALICE_DN}\nchangetype: modify\nreplace: {attr}\n{attr}: {value}\n"
    ));
}

/// The token's review once its cached answer is over, and a basic token's review.
async fn token_and_password(i: &Issuer, token: &str, password: &str) -> (Answer, Answer) {
    let issued = review_until(i, token, |a| !authenticated(a)).await;
    let basic = i.review(&support::token("alice", password)).await;
    (issued, basic)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_disabled_with_ns_account_lock_is_refused() {
    let (ds, _keys, i, token) = logged_in().await;
    // What `ipa user-disable` and `dsidm account lock` set.
    set_alice(&ds, "nsAccountLock", "TRUE");
    let (issued, basic) = token_and_password(&i, &token, "alice-password").await;
    assert_eq!(error_of(&issued), "Account is disabled", "{}", issued.raw);
    // 389-ds says "inactivated" to a wrong password too: the bind's answer stays generic.
    assert!(!authenticated(&basic), "{}", basic.raw);
    assert_eq!(error_of(&basic), GENERIC, "{}", basic.raw);
}

/// A role locked with `dsidm role lock`: 389-ds gives its members `nsAccountLock` through a
/// class of service (a virtual attribute), which the re-check reads like a stored one.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_of_a_locked_role_is_refused() {
    let (ds, _keys, i, token) = logged_in().await;
    ds.dsidm(&["role", "create-managed", "--cn", "contractors"]);
    let role = ds.dsidm(&["role", "get", "contractors"]);
    let role_dn = role
        .lines()
        .find_map(|l| l.strip_prefix("dn: "))
        .unwrap_or_else(|| panic!("no role DN in {role}"))
        .to_string();
    set_alice(&ds, "nsRoleDN", &role_dn);
    ds.dsidm(&["role", "lock", &role_dn]);
    assert_eq!(
        ds.attribute(ALICE_DN, "nsAccountLock").as_deref(),
        Some("true")
    );
    let (issued, basic) = token_and_password(&i, &token, "alice-password").await;
    assert_eq!(error_of(&issued), "Account is disabled", "{}", issued.raw);
    assert_eq!(error_of(&basic), GENERIC, "{}", basic.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_locked_by_the_password_policy_is_refused() {
    let (ds, _keys, i, token) = logged_in().await;
    for _ in 0..3 {
        assert!(!ds.binds(ALICE_DN, "a-guess"));
    }
    assert!(ds.attribute(ALICE_DN, "accountUnlockTime").is_some());
    let (issued, basic) = token_and_password(&i, &token, "alice-password").await;
    assert_eq!(error_of(&issued), "Account is locked", "{}", issued.raw);
    assert_eq!(error_of(&basic), "Account is locked", "{}", basic.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_logs_out_tokens_issued_before_it() {
    let (ds, _keys, i, token) = logged_in().await;
    let before = ds.attribute(ALICE_DN, "pwdUpdateTime");
    ds.modify_as(
        ALICE_DN,
        "alice-password",
        &format!("dn: {ALICE_DN}\nchangetype: modify\nreplace: userPassword\nuserPassword: a-new-password\n"),
    );
    assert_ne!(ds.attribute(ALICE_DN, "pwdUpdateTime"), before);
    let (issued, basic) = token_and_password(&i, &token, "alice-password").await;
    assert_eq!(error_of(&issued), EXPIRED, "{}", issued.raw);
    assert_eq!(error_of(&basic), GENERIC, "{}", basic.raw);
    let fresh = i.token("alice", "a-new-password").await;
    assert!(authenticated(&i.review(&fresh).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_an_administrator_reset_must_be_changed_first() {
    let (ds, _keys, i, token) = logged_in().await;
    // passwordMustChange: the reset password only binds to change it (the expired control).
    set_alice(&ds, "userPassword", "temporary-password");
    let (issued, basic) = token_and_password(&i, &token, "temporary-password").await;
    let must = "Password must be changed before logging in";
    assert_eq!(error_of(&issued), must, "{}", issued.raw);
    assert_eq!(error_of(&basic), must, "{}", basic.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_password_gets_credentials_are_expired() {
    let (ds, _keys, i, token) = logged_in().await;
    set_alice(&ds, "passwordExpirationTime", &generalized_time("-1 hour"));
    let (issued, basic) = token_and_password(&i, &token, "alice-password").await;
    assert_eq!(error_of(&issued), EXPIRED, "{}", issued.raw);
    assert_eq!(error_of(&basic), EXPIRED, "{}", basic.raw);
}

/// 389-ds' Netscape "expiring" control on a successful bind: accepted, and counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_about_to_expire_is_accepted_and_counted() {
    let ds = Ds389::start();
    set_alice(&ds, "passwordExpirationTime", &generalized_time("+1 hour"));
    let d = ds.daemon().start();
    let a = d.login("alice", "alice-password").await;
    assert!(authenticated(&a), "{}", a.raw);
    assert_eq!(d.metric(METRIC, &[("event", "password_expiring")]), 1.0);
}

/// alice's login answer once her `passwordExpirationTime` is `when` (as `date -d` reads
/// it), with the 389-ds it came from, and the time the answer tells.
async fn login_expiring(when: &str) -> (Ds389, Reply, SystemTime) {
    let ds = Ds389::start();
    set_alice(&ds, "passwordExpirationTime", &generalized_time(when));
    let keys = KeyPair::new();
    let i = issuer(&ds, &keys);
    let r = i.login("alice", "alice-password").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let told = crate::password_expiry::expires_at(&r.body);
    (ds, r, told)
}

/// What that bind says reaches the user: the login answer's `passwordExpiry`. 389-ds
/// gives a password that has not been warned about yet the whole `passwordWarning` (a day
/// here) from the first warning on, and moves `passwordExpirationTime` to match: that is
/// the time told.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_answer_tells_of_a_password_about_to_expire() {
    let (ds, r, told) = login_expiring("+1 hour").await;
    let Some(stored) = ds.attribute(ALICE_DN, "passwordExpirationTime") else {
        panic!("alice has no passwordExpirationTime")
    };
    // YYYYMMDDHHMMSSZ as RFC 3339.
    let rfc3339 = match (stored.get(0..4), stored.get(4..6), stored.get(6..8)) {
        (Some(y), Some(mo), Some(d)) => format!(
            "{y}-{mo}-{d}T{}:{}:{}Z",
            stored.get(8..10).unwrap_or_default(),
            stored.get(10..12).unwrap_or_default(),
            stored.get(12..14).unwrap_or_default()
        ),
        _ => panic!("passwordExpirationTime {stored}"),
    };
    let stored_at = crate::password_expiry::rfc3339_time(&rfc3339);
    let apart = told
        .duration_since(stored_at)
        .or_else(|_| stored_at.duration_since(told))
        .unwrap_or_default();
    // The daemon adds the seconds left to its own clock after the bind, in whole seconds:
    // a minute apart at most (an hour would be the time set before the bind).
    assert!(apart.as_secs() <= 60, "told {}, stored {stored}", r.raw);
}

/// An expiry the server does not warn of yet (`passwordWarning` is a day here) is told
/// from `passwordExpirationTime` once it is within the login's window (14 days).
#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_within_the_window_but_before_the_servers_warning_is_told() {
    let (_ds, r, told) = login_expiring("+5 days").await;
    let left = told.duration_since(SystemTime::now()).unwrap_or_default();
    let day = std::time::Duration::from_secs(86_400);
    assert!(left > 4 * day && left <= 5 * day, "{left:?}: {}", r.raw);
}
