//! The re-check of an issued token applies every rule a login applies, through the real
//! daemon against a real slapd: a user the login would now turn away (`ldap.user.filter`,
//! `identity.required_groups`) is refused at the next review of their token once the
//! cached answer (`cache.ttl`) is over, as their basic token is.

use crate::support;
use crate::support::issued::*;
use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const DEVELOPERS: &str = "cn=developers,ou=groups,dc=example,dc=org";

/// A daemon issuing tokens whose answers are cached for one second, with `sections`.
fn issuer(slapd: &Slapd, keys: &KeyPair, sections: &[(&str, &str)]) -> Issuer {
    let mut all = vec![("cache", "ttl = \"1s\"\nnegative_ttl = \"1s\"")];
    all.extend_from_slice(sections);
    Issuer::on_slapd(slapd, &all, keys, "", "")
}

/// Takes alice out of the developers group (slapd's memberof overlay drops her
/// `memberOf` value with it).
fn leave_developers(slapd: &Slapd) {
    slapd.modify(&format!(
        "dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\nmember: {ALICE_DN}\n"
    ));
}

/// Her token refused at a review, and her password refused as a basic token: the same
/// rule on both paths.
async fn refused_on_both_paths(i: &Issuer, token: &str, error: &str) {
    let a = review_until(i, token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), error, "{}", a.raw);
    assert_eq!(i.check(token).await.status, 401);
    let basic = i.review(&support::token("alice", "alice-password")).await;
    assert!(!authenticated(&basic), "{}", basic.raw);
    assert_eq!(error_of(&basic), error, "{}", basic.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_the_user_filter_no_longer_matches_is_refused_at_the_next_review() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let filter =
        "filter = \"(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))\"";
    let i = issuer(&slapd, &keys, &[("user", filter)]);
    let token = i.token("alice", "alice-password").await;
    assert!(authenticated(&i.review(&token).await));

    slapd.modify(&format!(
        "dn: {ALICE_DN}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    refused_on_both_paths(&i, &token, GENERIC).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_who_leaves_a_member_of_gate_in_the_user_filter_is_refused_at_the_next_review() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let filter = format!(
        "filter = \"(&(objectClass=inetOrgPerson)(uid={{username}})(memberOf={DEVELOPERS}))\""
    );
    let i = issuer(&slapd, &keys, &[("user", &filter)]);
    let token = i.token("alice", "alice-password").await;
    assert!(authenticated(&i.review(&token).await));

    leave_developers(&slapd);
    refused_on_both_paths(&i, &token, GENERIC).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_removed_from_the_required_groups_is_refused_at_the_next_review() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let required = "required_groups = [\"developers\"]";
    let i = issuer(&slapd, &keys, &[("identity", required)]);
    let token = i.token("alice", "alice-password").await;
    assert!(authenticated(&i.review(&token).await));

    leave_developers(&slapd);
    refused_on_both_paths(&i, &token, "Not a member of a group allowed to log in").await;
}

/// The user filter is filled as at the login: from the name as typed, which the token
/// records.
#[tokio::test(flavor = "multi_thread")]
async fn the_token_records_the_login_as_typed_for_the_user_filter() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[]);
    let token = i.token("ALICE", "alice-password").await;
    let c = claims_of(&token);
    assert_eq!(
        (c["login"].as_str(), c["name"].as_str()),
        (Some("ALICE"), Some("alice"))
    );
    assert!(authenticated(&i.review(&token).await));
}

/// The re-check costs what it cost before the filter: one search of the entry itself (base
/// scope, the filter the login searched with), then the group search.
#[tokio::test(flavor = "multi_thread")]
async fn a_recheck_is_one_base_search_of_the_dn_with_the_user_filter() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[]);
    let token = i.token("alice", "alice-password").await;
    let mark = slapd.log_mark();
    assert!(authenticated(&i.review(&token).await));
    let stats = slapd.stats_since(mark);
    let searches = stats.searches();
    let of_alice: Vec<_> = searches
        .iter()
        .filter(|l| l.contains(&format!("base=\"{ALICE_DN}\"")))
        .collect();
    assert_eq!(of_alice.len(), 1, "{searches:#?}");
    let filter = "filter=\"(&(objectClass=inetOrgPerson)(uid=alice))\"";
    assert!(
        of_alice[0].contains("scope=0") && of_alice[0].contains(filter),
        "{searches:#?}"
    );
    assert_eq!(
        searches.len(),
        2,
        "the entry, then the groups: {searches:#?}"
    );
}

/// Direct bind has nobody to re-check a token with (no password, no service account):
/// issued tokens there are refused before the daemon starts, naming the key.
#[test]
fn issued_tokens_without_a_service_account_are_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyPair::new();
    let tokens = issuing_config("", free_port(), &keys, "", "");
    let written = Daemon::builder()
        .url("ldap://127.0.0.1:389")
        .without_service_account()
        .section(
            "user",
            "dn_template = \"uid={username},ou=people,dc=example,dc=org\"",
        )
        .section("cache", tokens)
        .write_to(dir.path());
    let out = std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&written.path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("login.listen"), "{stderr}");
    assert!(stderr.contains("ldap.bind_dn"), "{stderr}");
}
