//! Issued tokens against the Samba AD DC: the re-check at review time reads what a bind
//! would have said from the account's attributes (userAccountControl, pwdLastSet), so a
//! disabled account or a reset password takes effect within cache.ttl. Each test makes
//! its own user, so that the other tests of the domain are not disturbed.

use super::*;
use crate::support::issued::*;

/// A daemon with a login listener, `directory = "active-directory"` over LDAPS.
fn ad_issuer(keys: &KeyPair, cache: &str) -> Issuer {
    ad_issuer_with(keys, cache, "")
}

/// [`ad_issuer`] with `login` lines in `[login]`.
pub(super) fn ad_issuer_with(keys: &KeyPair, cache: &str, login: &str) -> Issuer {
    let ldap = format!(
        "directory = \"active-directory\"\nca_file = \"{}\"",
        dc().var("SAMBA_CA_FILE")
    );
    Issuer::start(
        &dc().site(),
        &[dc().var("SAMBA_LDAPS_URL").to_string()],
        &[("ldap", &ldap), ("cache", cache)],
        keys,
        login,
        "",
    )
}

/// ldapmodify (or an add) as the domain administrator over LDAPS.
pub(super) fn admin_ldif(ldif: &str) {
    dc().ldapmodify(ldif).unwrap();
}

/// A new enabled user `name` with `password`; its DN.
pub(super) fn add_user(name: &str, password: &str) -> String {
    let dn = format!("CN={name},{}", dc().var("SAMBA_USERS_DN"));
    admin_ldif(&format!(
        "dn: {dn}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
         userPrincipalName: {name}@example.test\nuserAccountControl: 512\nunicodePwd:: {}\n",
        unicode_pwd(password)
    ));
    dn
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issued_token_is_accepted_with_the_groups_and_guid_of_the_directory() {
    let keys = KeyPair::new();
    let i = ad_issuer(&keys, "");
    let token = i.token("EXAMPLE\\alice", ALICE_PASSWORD).await;
    let a = i.review(&token).await;
    assert!(authenticated(&a), "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "alice");
    assert_eq!(
        a.body["status"]["user"]["uid"],
        dc().var("SAMBA_ALICE_GUID")
    );
    assert_eq!(groups_of(&a), ["dev-team"]);
    assert_eq!(claims_of(&token)["sub"], dc().var("SAMBA_ALICE_GUID"));
    assert_eq!(i.check(&token).await.status, 204);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_is_refused_within_the_cache_ttl() {
    let keys = KeyPair::new();
    let i = ad_issuer(&keys, "ttl = \"1s\"");
    let dn = add_user("tok-disabled", "Passw0rd!tok-disabled");
    let token = i.token("tok-disabled", "Passw0rd!tok-disabled").await;
    assert!(authenticated(&i.review(&token).await));
    admin_ldif(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n"
    ));
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), "Account is disabled", "{}", a.raw);
    assert_eq!(i.check(&token).await.body["message"], "Account is disabled");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_logs_out_and_the_new_password_logs_in() {
    let keys = KeyPair::new();
    let i = ad_issuer(&keys, "ttl = \"1s\"");
    let dn = add_user("tok-reset", "Passw0rd!tok-reset");
    let token = i
        .token("tok-reset@example.test", "Passw0rd!tok-reset")
        .await;
    assert!(authenticated(&i.review(&token).await));
    admin_ldif(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n",
        unicode_pwd("N3w-Passw0rd!tok-reset")
    ));
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), EXPIRED, "{}", a.raw);
    let fresh = i.token("tok-reset", "N3w-Passw0rd!tok-reset").await;
    assert!(authenticated(&i.review(&fresh).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_account_is_refused_within_the_cache_ttl() {
    let keys = KeyPair::new();
    let i = ad_issuer(&keys, "ttl = \"1s\"");
    let dn = add_user("tok-expiring", "Passw0rd!tok-expiring");
    let token = i.token("tok-expiring", "Passw0rd!tok-expiring").await;
    assert!(authenticated(&i.review(&token).await));
    // 2020-01-01 as a FILETIME.
    admin_ldif(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: accountExpires\naccountExpires: 132223104000000000\n"
    ));
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), "Account has expired", "{}", a.raw);
}
