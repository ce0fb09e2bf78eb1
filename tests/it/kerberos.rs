//! Kerberos single sign-on at `POST /login` (`Authorization: Negotiate`) against the real
//! Samba AD DC's KDC: the daemon accepts with the keytab of `HTTP/127.0.0.1` the fixture
//! exported, the tests get tickets with kinit and make their Negotiate tokens with libgssapi
//! (support/kerberos.rs). Every refusal the ticket alone decides is made without LDAP
//! traffic, which the daemon's own LDAP operation counter shows.

use std::path::Path;

use crate::support::issued::*;
use crate::support::kerberos::{
    kerberos_issuer as support_issuer, ntlm_negotiate, spnego_ntlm, Mech, Ticket,
};
use crate::support::*;
use base64::Engine;

const ALICE: &str = "alice@EXAMPLE.TEST";
const ALICE_PASSWORD: &str = "Passw0rd!alice";
const LDAP_OPS: &str = "kube_ldap_webhook_ldap_operations_total";

fn dc() -> &'static Dc {
    Dc::shared()
}

fn spn() -> &'static str {
    dc().var("SAMBA_HTTP_SPN")
}

fn kerberos_issuer(keys: &KeyPair, domains: &str, cache: &str) -> Issuer {
    support_issuer(dc(), keys, domains, cache, "burst = 20")
}

fn issuer(keys: &KeyPair) -> Issuer {
    kerberos_issuer(keys, "[\"EXAMPLE\", \"example.test\"]", "")
}

async fn negotiate(i: &Issuer, credential: &str) -> Reply {
    let header = format!("Negotiate {credential}");
    i.call("POST", &i.login_url(), Some(&header)).await
}

fn ldap_ops(i: &Issuer) -> f64 {
    i.daemon.metric(LDAP_OPS, &[])
}

/// The LDAP operations so far, once the daemon's startup probe (its own LDAP traffic) is
/// done.
fn ldap_ops_settled(i: &Issuer) -> f64 {
    wait_until(
        || i.daemon.metric(LDAP_OPS, &[("operation", "probe")]) >= 1.0,
        || format!("no startup probe:\n{}", i.daemon.log()),
    );
    ldap_ops(i)
}

fn negotiate_results(i: &Issuer, result: &str) -> f64 {
    i.daemon.metric(
        "kube_ldap_webhook_login_methods_total",
        &[("method", "negotiate"), ("result", result)],
    )
}

fn www_authenticate(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

/// A 401 with the generic error that offers Negotiate (and Basic).
fn assert_refused(r: &Reply, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.raw);
    assert_eq!(r.body["message"], GENERIC, "{what}: {}", r.raw);
    assert_eq!(
        www_authenticate(r),
        ["Negotiate", "Basic realm=\"kube-ldap-webhook\""],
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ticket_logs_in_as_the_ad_user_with_nested_groups() {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let ticket = Ticket::new(dc(), ALICE, ALICE_PASSWORD, &[]);
    let credential = ticket.negotiate(spn(), Mech::Spnego);
    let r = negotiate(&i, &credential).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let mutual = www_authenticate(&r);
    assert!(
        mutual.len() == 1 && mutual[0].starts_with("Negotiate "),
        "a mutual-authentication token: {mutual:?}"
    );
    let token = r.body["token"].as_str().unwrap().to_string();
    let a = i.review(&token).await;
    assert!(authenticated(&a), "{}", a.raw);
    assert_eq!(a.body["status"]["user"]["username"], "alice");
    assert_eq!(
        a.body["status"]["user"]["uid"],
        dc().var("SAMBA_ALICE_GUID")
    );
    let mut groups = groups_of(&a);
    groups.sort();
    assert_eq!(groups, ["all-staff", "dev-team", "engineering"]);
    assert_eq!(negotiate_results(&i, "issued"), 1.0);
    // The log line is written by the daemon's log thread, shortly after the answer.
    let negotiated =
        |log: &str| log.contains("method=\"negotiate\"") || log.contains("method=negotiate");
    wait_until(
        || negotiated(&i.daemon.log()),
        || format!("no negotiate login line:\n{}", i.daemon.log()),
    );
    let log = i.daemon.log();
    for secret in [&credential[..40], &mutual[0][10..50], &token[10..50]] {
        assert!(!log.contains(secret), "a secret in the log:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_kerberos_token_logs_in_too() {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let ticket = Ticket::new(dc(), ALICE, ALICE_PASSWORD, &[]);
    let r = negotiate(&i, &ticket.negotiate(spn(), Mech::Kerberos)).await;
    assert_eq!(r.status, 200, "{}", r.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_login_still_works_and_its_refusal_offers_negotiate() {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    assert_eq!(i.login("alice", ALICE_PASSWORD).await.status, 200);
    assert_refused(&i.login("alice", "wrong").await, "a wrong password");
    assert_eq!(
        i.daemon.metric(
            "kube_ldap_webhook_login_methods_total",
            &[("method", "password"), ("result", "issued")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_disabled_after_kinit_is_refused_at_the_next_recheck() {
    let keys = KeyPair::new();
    let i = kerberos_issuer(&keys, "[\"example.test\"]", "ttl = \"1s\"");
    let name = "krb-disabled";
    let password = "Passw0rd!krb-disabled";
    let dn = add_user(name, password);
    let ticket = Ticket::new(dc(), &format!("{name}@EXAMPLE.TEST"), password, &[]);
    let r = negotiate(&i, &ticket.negotiate(spn(), Mech::Spnego)).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let token = r.body["token"].as_str().unwrap().to_string();
    assert!(authenticated(&i.review(&token).await));
    dc().ldapmodify(&format!(
        "dn: {dn}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n"
    ))
    .unwrap();
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), "Account is disabled", "{}", a.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_the_ticket_alone_condemns_are_refused_without_ldap_traffic() {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    let ticket = Ticket::new(dc(), ALICE, ALICE_PASSWORD, &[]);
    let used = ticket.negotiate(spn(), Mech::Spnego);
    assert_eq!(negotiate(&i, &used).await.status, 200);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let cases = [
        ("replayed", used, "replay"),
        (
            "another service's ticket",
            ticket.negotiate(dc().var("SAMBA_OTHER_SPN"), Mech::Spnego),
            "ticket",
        ),
        ("raw NTLM", b64(&ntlm_negotiate()), "ntlm"),
        ("NTLM inside SPNEGO", spnego_ntlm(), "mechanism"),
        (
            "a continuation",
            b64(&[0xa1, 0x03, 0x0a, 0x01, 0x01]),
            "continuation",
        ),
        ("oversized", "YQ==".repeat(5_000), "too_large"),
        ("not base64", "%%%not*base64%%%".into(), "malformed"),
    ];
    let before = ldap_ops_settled(&i);
    for (what, credential, label) in cases {
        let was = negotiate_results(&i, label);
        assert_refused(&negotiate(&i, &credential).await, what);
        assert_eq!(
            negotiate_results(&i, label),
            was + 1.0,
            "{what}: counted as {label}; log:\n{}",
            i.daemon.log()
        );
    }
    assert_eq!(ldap_ops(&i), before, "LDAP traffic for a local refusal");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realm_no_directory_maps_is_refused_without_ldap_traffic() {
    let keys = KeyPair::new();
    let i = kerberos_issuer(&keys, "[\"OTHER.TEST\"]", "");
    let ticket = Ticket::new(dc(), ALICE, ALICE_PASSWORD, &[]);
    let before = ldap_ops_settled(&i);
    assert_refused(
        &negotiate(&i, &ticket.negotiate(spn(), Mech::Spnego)).await,
        "an unmapped realm",
    );
    assert_eq!(
        negotiate_results(&i, "realm"),
        1.0,
        "{}",
        i.daemon.metrics()
    );
    assert_eq!(ldap_ops(&i), before, "{}", i.daemon.metrics());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_of_an_expired_ticket_is_refused_without_ldap_traffic() {
    let keys = KeyPair::new();
    let i = issuer(&keys);
    // The initiator will not use an expired ticket: the token is made while it is valid and
    // sent after its end plus the realm's clockskew (5 s, FACTS.md). The service ticket
    // comes with the initial ticket (-S): Samba's KDC refuses a TGS-REQ on a TGT this short.
    let ticket = Ticket::new(dc(), ALICE, ALICE_PASSWORD, &["-l", "15s", "-S", spn()]);
    let credential = ticket.negotiate(spn(), Mech::Spnego);
    tokio::time::sleep(std::time::Duration::from_secs(22)).await;
    let before = ldap_ops_settled(&i);
    assert_refused(&negotiate(&i, &credential).await, "an expired ticket");
    assert_eq!(ldap_ops(&i), before, "{}", i.daemon.log());
}

#[test]
fn check_config_refuses_a_keytab_others_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let keytab = dir.path().join("http.keytab");
    std::fs::copy(dc().http_keytab(), &keytab).unwrap();
    set_mode(&keytab, 0o644);
    let keys = KeyPair::new();
    let login = format!("keytab_file = \"{}\"", keytab.display());
    let config = issuing_config("", free_port(), &keys, &login, "");
    let out = check_config_of(&config);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("login.keytab_file") && err.contains("readable by everyone"),
        "{err}"
    );
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `check-config` of a daemon config with `extra` TOML after `[cache]`.
fn check_config_of(extra: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let b = Daemon::builder()
        .site(&dc().site())
        .url(dc().ldaps_url())
        .section("ldap", "directory = \"active-directory\"")
        .section("user", "domains = [\"example.test\"]")
        .section("cache", extra);
    let written = b.write_to(dir.path());
    std::process::Command::new(bin())
        .args(["check-config", "--config"])
        .arg(&written.path)
        .output()
        .unwrap()
}

/// A new enabled AD user `name` with `password`; its DN.
fn add_user(name: &str, password: &str) -> String {
    let dn = format!("CN={name},{}", dc().var("SAMBA_USERS_DN"));
    let pw: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    dc().ldapadd(&format!(
        "dn: {dn}\nobjectClass: user\nsAMAccountName: {name}\n\
         userPrincipalName: {name}@example.test\nuserAccountControl: 512\nunicodePwd:: {}\n",
        base64::engine::general_purpose::STANDARD.encode(pw)
    ))
    .unwrap();
    dn
}
