//! Audit events of the login port: password and Kerberos logins naming the token they
//! handed out, the review of that token naming it by its id, a token exchange, a rate
//! limited login, and a key reload.

use base64::Engine;
use serde_json::Value;

use super::{events_of, of};
use crate::support::issued::*;
use crate::support::jwt::*;
use crate::support::kerberos::{kerberos_issuer, Mech, Ticket};
use crate::support::*;

const RATE: &str = "rate = 1000\nburst = 1000";

/// The claims of a JWT (its middle segment).
fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_login_names_the_token_it_issued_and_its_review_names_it_by_that_id() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = Issuer::on_slapd(&slapd, &[], &keys, RATE, "");
    let token = i.token("alice", "alice-password").await;
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_string();
    assert!(authenticated(&i.review(&token).await));
    let d = &i.daemon;
    let login = d.wait_for_audit(of("login"));
    assert_eq!(
        (&login["outcome"], &login["method"]),
        (&"accepted".into(), &"password".into())
    );
    assert_eq!(login["issued_id"], jti.as_str());
    assert_eq!(
        (&login["username"], &login["directory"]),
        (&"alice".into(), &"default".into())
    );
    assert!(
        login["credential_id"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:"),
        "{login}"
    );
    let review = d.wait_for_audit(of("review"));
    assert_eq!(review["method"], "issued");
    assert_eq!(review["credential_id"], format!("jti:{jti}"));
    assert_eq!(
        (&review["reason"], &review["directory"]),
        (&"re-checked".into(), &"default".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_and_a_rate_limited_login_are_events_without_a_token() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = Issuer::on_slapd(&slapd, &[], &keys, "rate = 1\nburst = 1", "");
    let refused = i.login("alice", "not-the-password").await;
    let limited = i.login("alice", "alice-password").await;
    assert_eq!((refused.status, limited.status), (401, 429));
    let d = &i.daemon;
    d.wait_for_audit(|e| e["event"] == "login" && e["outcome"] == "rate_limited");
    let logins = events_of(d, "login");
    let outcomes: Vec<&Value> = logins.iter().map(|e| &e["outcome"]).collect();
    assert_eq!(outcomes, ["rejected", "rate_limited"], "{logins:?}");
    assert!(logins.iter().all(|e| e.get("issued_id").is_none()));
    assert!(logins[1]["source_address"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_exchange_names_the_session_and_the_jwt_it_handed_out() {
    let slapd = Slapd::start();
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    let i = Issuer::on_slapd(&slapd, &[], &keys, RATE, &jwt_section(&jwt, &[]));
    let session = i.token("alice", "alice-password").await;
    let bearer = format!("Bearer {session}");
    let url = format!("https://127.0.0.1:{}/token", i.login_port);
    let r = i.call("POST", &url, Some(&bearer)).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let exchanged = jwt_claims(r.body["token"].as_str().unwrap());
    let e = i.daemon.wait_for_audit(of("token_exchange"));
    assert_eq!(
        (&e["outcome"], &e["answer"]),
        (&"accepted".into(), &"ldap".into())
    );
    assert_eq!(
        e["credential_id"],
        format!("jti:{}", claims_of(&session)["jti"].as_str().unwrap())
    );
    assert_eq!(e["issued_id"], exchanged["jti"]);
    assert_eq!(e["groups"], serde_json::json!(["admins", "developers"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_another_key_is_a_key_reload_naming_the_keys() {
    let slapd = Slapd::start();
    let (old, new) = (KeyPair::new(), KeyPair::new());
    let i = Issuer::on_slapd(&slapd, &[], &old, RATE, "");
    let (old_key, new_key) = (path_str(&old.key), path_str(&new.key));
    reload(&i.daemon, |t| t.replace(&old_key, &new_key));
    let e = i.daemon.wait_for_audit(of("key_reload"));
    assert_eq!(e["outcome"], "ok");
    assert_eq!(e["keys"], serde_json::json!([new.kid()]));
    assert_eq!(events_of(&i.daemon, "config_reload").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kerberos_login_is_an_event_of_its_directory_with_the_nested_groups() {
    let dc = Dc::shared();
    let keys = KeyPair::new();
    let i = kerberos_issuer(
        dc,
        &keys,
        "[\"EXAMPLE\", \"example.test\"]",
        "",
        "burst = 20",
    );
    let ticket = Ticket::new(dc, "alice@EXAMPLE.TEST", "Passw0rd!alice", &[]);
    let credential = ticket.negotiate(dc.var("SAMBA_HTTP_SPN"), Mech::Spnego);
    let r = i
        .call(
            "POST",
            &i.login_url(),
            Some(&format!("Negotiate {credential}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.raw);
    let jti = claims_of(r.body["token"].as_str().unwrap())["jti"].clone();
    let e = i.daemon.wait_for_audit(of("login"));
    assert_eq!(
        (&e["outcome"], &e["method"]),
        (&"accepted".into(), &"negotiate".into())
    );
    assert_eq!(
        (&e["username"], &e["directory"]),
        (&"alice".into(), &"default".into())
    );
    assert_eq!(e["issued_id"], jti);
    let mut groups: Vec<String> = serde_json::from_value(e["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["all-staff", "dev-team", "engineering"]);
    assert!(
        e.get("credential_id").is_none(),
        "a ticket has no reusable token: {e}"
    );
}
