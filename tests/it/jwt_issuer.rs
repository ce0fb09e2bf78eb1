//! The JWT issuer (`[jwt]`) through the real daemon against a real slapd, over real HTTPS
//! on the login port: the discovery document and JWKS, `POST /token` exchanging a session
//! for an ES256 JWT that verifies against the JWKS, the re-check at every exchange (the
//! answer cache never answers one), everything that is not a live session refused with
//! nothing changed, and key rotation. kube-apiserver's side is in tests/e2e.

use std::process::Command;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

use crate::support::issued::*;
use crate::support::jwt::*;
use crate::support::*;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";
const DEVELOPERS: &str = "cn=developers,ou=groups,dc=example,dc=org";
const DISCOVERY: &str = "/kube/.well-known/openid-configuration";
const JWKS: &str = "/kube/openid/v1/jwks";

/// A daemon issuing sessions and JWTs. Accepted answers are cached for ten minutes, so
/// that an exchange refused within the test was refused by the directory, not the cache.
fn start(slapd: &Slapd, keys: &KeyPair, jwt: &EsKeys, sections: &[(&str, &str)]) -> Issuer {
    let mut all = vec![("cache", "ttl = \"10m\"")];
    all.extend_from_slice(sections);
    Issuer::on_slapd(
        slapd,
        &all,
        keys,
        "rate = 1000\nburst = 1000",
        &jwt_section(jwt, &[]),
    )
}

/// slapd and a daemon issuing sessions and JWTs with its keys, as [`start`] makes it.
fn setup(sections: &[(&str, &str)]) -> (Slapd, KeyPair, EsKeys, Issuer) {
    let slapd = Slapd::start();
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    let i = start(&slapd, &keys, &jwt, sections);
    (slapd, keys, jwt, i)
}

fn url(i: &Issuer, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", i.login_port)
}

/// The reply is a 401 whose `Status` message is `message`.
fn refused_with(r: &Reply, message: &str) {
    assert_eq!(
        (r.status, r.body["message"].as_str()),
        (401, Some(message)),
        "{}",
        r.raw
    );
}

async fn exchange(i: &Issuer, session: &str) -> Reply {
    let bearer = format!("Bearer {session}");
    i.call("POST", &url(i, "/token"), Some(&bearer)).await
}

/// The JWT of an exchange that must succeed, verified against the JWKS the daemon serves
/// with the algorithm pinned to ES256, the issuer and the audience: its header and claims.
async fn verified_jwt(i: &Issuer, session: &str) -> (jsonwebtoken::Header, Value) {
    let r = exchange(i, session).await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.headers["cache-control"], "no-store");
    let jwt = r.body["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwks = i.call("GET", &url(i, JWKS), None).await.body;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| Some(k["kid"].as_str().unwrap()) == header.kid.as_deref())
        .expect("the JWT's kid is in the JWKS");
    let key =
        DecodingKey::from_ec_components(key["x"].as_str().unwrap(), key["y"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&["kubernetes"]);
    v.set_issuer(&[ISSUER]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
    let claims = jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims;
    let expiration = r.body["expirationTimestamp"].as_str().unwrap();
    assert_eq!(
        expiration,
        rfc3339(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(claims["exp"].as_u64().unwrap())
        )
    );
    (header, claims)
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_jwks_describe_the_issuer_and_every_accepted_key() {
    let slapd = Slapd::start();
    let (keys, jwt, old) = (KeyPair::new(), EsKeys::new(), EsKeys::new());
    let i = Issuer::on_slapd(&slapd, &[], &keys, "", &jwt_section(&jwt, &[&old]));
    let d = i.call("GET", &url(&i, DISCOVERY), None).await;
    assert_eq!(d.status, 200, "{}", d.raw);
    assert_eq!(d.body["issuer"], ISSUER);
    assert_eq!(d.body["jwks_uri"], format!("{ISSUER}/openid/v1/jwks"));
    assert_eq!(
        d.body["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert!(d.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=300"));

    let k = i.call("GET", &url(&i, JWKS), None).await;
    assert_eq!(k.status, 200, "{}", k.raw);
    assert!(k.headers["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age=300"));
    let keys = k.body["keys"].as_array().unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, [jwt.kid.as_str(), old.kid.as_str()]);
    for k in keys {
        assert_eq!(
            (&k["kty"], &k["crv"], &k["use"], &k["alg"]),
            (
                &json!("EC"),
                &json!("P-256"),
                &json!("sig"),
                &json!("ES256")
            )
        );
        assert!(k.get("d").is_none(), "no private part: {k}");
    }
    // Outside the issuer's path, nothing; the documents are read-only.
    let r = i
        .call("GET", &url(&i, "/.well-known/openid-configuration"), None)
        .await;
    assert_eq!(r.status, 404);
    let r = i.call("POST", &url(&i, DISCOVERY), None).await;
    assert_eq!(r.status, 405);
    let r = i.call("GET", &url(&i, "/token"), None).await;
    assert_eq!(r.status, 405);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_exchange_gives_a_jwt_of_the_reviewed_user_that_verifies_against_the_jwks() {
    let (slapd, _keys, jwt, i) = setup(&[(
        "identity",
        "username_prefix = \"ldap:\"\ngroup_prefix = \"ldap:\"",
    )]);
    let session = i.token("alice", "alice-password").await;
    let (header, c) = verified_jwt(&i, &session).await;
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(jwt.kid.as_str()));
    assert_eq!(c["iss"], ISSUER);
    assert_eq!(c["aud"], "kubernetes");
    assert_eq!(c["sub"], slapd.entry_uuid("alice"));
    assert_eq!(c["username"], "ldap:alice");
    let review = i.review(&session).await;
    assert_eq!(c["groups"], json!(groups_of(&review)), "{}", review.raw);
    assert!(c["groups"]
        .as_array()
        .unwrap()
        .contains(&json!("ldap:developers")));
    let (iat, nbf, exp) = (c["iat"].as_u64(), c["nbf"].as_u64(), c["exp"].as_u64());
    assert_eq!(nbf, iat);
    assert_eq!(exp.unwrap() - iat.unwrap(), 120, "jwt.token_ttl");
    let (_, again) = verified_jwt(&i, &session).await;
    assert_ne!(again["jti"], c["jti"], "every JWT has its own id");
    let issued = i
        .daemon
        .metric("kube_ldap_webhook_logins_total", &[("event", "jwt_issued")]);
    assert_eq!(issued, 2.0, "counted with the logins");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_is_refused_at_the_next_exchange_though_its_review_is_cached() {
    let filter =
        "filter = \"(&(objectClass=inetOrgPerson)(uid={username})(!(employeeType=disabled)))\"";
    let (slapd, _keys, _jwt, i) = setup(&[("user", filter)]);
    let session = i.token("alice", "alice-password").await;
    verified_jwt(&i, &session).await;
    assert!(authenticated(&i.review(&session).await));

    slapd.modify(&format!(
        "dn: {ALICE_DN}\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n"
    ));
    let r = exchange(&i, &session).await;
    refused_with(&r, GENERIC);
    assert!(r.body.get("token").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_removed_from_the_required_groups_is_refused_at_the_next_exchange() {
    let (slapd, _keys, _jwt, i) = setup(&[("identity", "required_groups = [\"developers\"]")]);
    let session = i.token("alice", "alice-password").await;
    verified_jwt(&i, &session).await;

    slapd.modify(&format!(
        "dn: {DEVELOPERS}\nchangetype: modify\ndelete: member\nmember: {ALICE_DN}\n"
    ));
    let r = exchange(&i, &session).await;
    refused_with(&r, "Not a member of a group allowed to log in");
}

/// An expired session, a basic token, a session of a key nobody configured, garbage, no
/// credentials, a body and a huge header: each refused, none reaching the directory, and
/// the live session still exchanged afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn what_is_not_a_live_session_is_refused_without_a_directory_operation() {
    let slapd = Slapd::start();
    let (keys, jwt, stranger) = (KeyPair::new(), EsKeys::new(), KeyPair::new());
    let i = start(&slapd, &keys, &jwt, &[]);
    let session = i.token("alice", "alice-password").await;
    let expired = keys.sign(
        &keys.kid(),
        &claims(&session, |c| {
            c["iat"] = json!(ago(7200));
            c["nbf"] = json!(ago(7200));
            c["exp"] = json!(ago(60));
        }),
    );
    let foreign = stranger.sign(&stranger.kid(), &claims_of(&session));
    let mark = slapd.log_mark();
    let to = url(&i, "/token");
    let r = exchange(&i, &expired).await;
    refused_with(&r, EXPIRED);
    for (what, authorization) in [
        (
            "a basic token",
            Some(format!("Bearer {}", token("alice", "alice-password"))),
        ),
        (
            "a session of an unknown key",
            Some(format!("Bearer {foreign}")),
        ),
        ("garbage", Some("Bearer v4.public.garbage".to_string())),
        (
            "a JWT",
            Some(format!("Bearer eyJhbGciOiJub25lIn0.{}.", "e30")),
        ),
        (
            "Basic credentials",
            Some(format!("Basic {}", token("alice", "alice-password"))),
        ),
        ("nothing", None),
    ] {
        let r = i.call("POST", &to, authorization.as_deref()).await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (401, Some(GENERIC)),
            "{what}: {}",
            r.raw
        );
        assert!(r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
    let bearer = format!("Bearer {session}");
    let body = request(&i.daemon.pki, "POST", &to, Some(&bearer), b"{}".to_vec()).await;
    assert_eq!(body.status, 413, "{}", body.raw);
    // A head over the login port's buffer: 431, or the connection closed while the
    // client still writes; either way nothing reached the directory.
    let huge = format!("Bearer {}", "A".repeat(200_000));
    match try_request_from(&i.daemon.pki, None, "POST", &to, Some(&huge), Vec::new()).await {
        Ok(r) => assert_eq!(r.status, 431, "{}", r.raw),
        Err(e) => {
            let e = format!("{e:?}");
            assert!(
                e.contains("BrokenPipe") || e.contains("ConnectionReset"),
                "{e}"
            );
        }
    }
    assert_eq!(slapd.stats_since(mark).operations(), 0, "no LDAP operation");
    verified_jwt(&i, &session).await;
}

/// Rotation: the new key signs, the old one stays in the JWKS for the JWTs already out;
/// a reload switches both at once.
#[tokio::test(flavor = "multi_thread")]
async fn after_a_rotation_new_jwts_are_signed_by_the_new_key_and_the_old_is_still_published() {
    let slapd = Slapd::start();
    let (keys, old, new) = (KeyPair::new(), EsKeys::new(), EsKeys::new());
    let i = start(&slapd, &keys, &old, &[]);
    let session = i.token("alice", "alice-password").await;
    let (h, _) = verified_jwt(&i, &session).await;
    assert_eq!(h.kid.as_deref(), Some(old.kid.as_str()));

    let (before, after) = (jwt_section(&old, &[]), jwt_section(&new, &[&old]));
    reload(&i.daemon, |t| t.replace(&before, &after));
    let (h, _) = verified_jwt(&i, &session).await;
    assert_eq!(h.kid.as_deref(), Some(new.kid.as_str()));
    let jwks = i.call("GET", &url(&i, JWKS), None).await.body;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new.kid.as_str(), old.kid.as_str()]);
}

/// A reload whose `[jwt]` cannot work is refused as a whole: the running issuer keeps its
/// key and keeps signing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_with_an_unusable_jwt_key_keeps_the_running_issuer() {
    let (_slapd, _keys, jwt, i) = setup(&[]);
    let session = i.token("alice", "alice-password").await;
    let before = i.daemon.log().matches("reload refused").count();
    let text = std::fs::read_to_string(&i.daemon.config).unwrap();
    let key = jwt.key.display().to_string();
    std::fs::write(
        &i.daemon.config,
        text.replace(&key, "/nonexistent/signing.key"),
    )
    .unwrap();
    i.daemon.signal(libc::SIGHUP);
    wait_until(
        || i.daemon.log().matches("reload refused").count() > before,
        || format!("no refused reload:\n{}", i.daemon.log()),
    );
    assert!(i.daemon.log().contains("jwt.signing_key_file"));
    let (h, _) = verified_jwt(&i, &session).await;
    assert_eq!(h.kid.as_deref(), Some(jwt.kid.as_str()));
}

/// Neither the session nor the JWT appears in the daemon's log.
#[tokio::test(flavor = "multi_thread")]
async fn no_session_and_no_jwt_in_the_log() {
    let (_slapd, _keys, _jwt, i) = setup(&[]);
    let session = i.token("alice", "alice-password").await;
    let r = exchange(&i, &session).await;
    let token = r.body["token"].as_str().unwrap();
    let signature = token.rsplit('.').next().unwrap();
    wait_until(
        || i.daemon.log().contains("token exchange"),
        || i.daemon.log(),
    );
    let log = i.daemon.log();
    assert!(
        !log.contains(signature),
        "the JWT's signature is in the log"
    );
    assert!(!log.contains(&session[10..60]), "the session is in the log");
}

/// Only an exchange that reaches the directory spends the source's login budget: forged
/// or garbage sessions cost a signature check, a real one a directory read.
#[tokio::test(flavor = "multi_thread")]
async fn exchanges_that_reach_the_directory_spend_the_sources_login_budget() {
    let slapd = Slapd::start();
    let (keys, jwt) = (KeyPair::new(), EsKeys::new());
    let login = "rate = 1\nburst = 3";
    let i = Issuer::on_slapd(&slapd, &[], &keys, login, &jwt_section(&jwt, &[]));
    let session = i.token("alice", "alice-password").await;
    for _ in 0..10 {
        let r = exchange(&i, "v4.public.garbage").await;
        assert_eq!(r.status, 401, "{}", r.raw);
    }
    verified_jwt(&i, &session).await;
    verified_jwt(&i, &session).await;
    let r = exchange(&i, &session).await;
    assert_eq!(r.status, 429, "{}", r.raw);
    assert!(r.headers.contains_key("retry-after"));
}

/// With every LDAP server down an exchange gets no JWT: no stale answer stands in for the
/// re-check, though reviews of the same session are still answered from the cache.
#[tokio::test(flavor = "multi_thread")]
async fn with_the_directory_down_an_exchange_is_refused_as_unavailable() {
    let (mut slapd, _keys, _jwt, i) = setup(&[]);
    let session = i.token("alice", "alice-password").await;
    verified_jwt(&i, &session).await;
    slapd.stop();
    assert!(
        authenticated(&i.review(&session).await),
        "the review is cached"
    );
    let r = exchange(&i, &session).await;
    refused_with(&r, "Authentication backend unavailable");
}

/// `authentication-config` of a running daemon's file, with the login listener's CA.
#[tokio::test(flavor = "multi_thread")]
async fn authentication_config_prints_the_issuer_audiences_and_the_login_listeners_ca() {
    let (_slapd, _keys, _jwt, i) = setup(&[]);
    let printed = run_checked(
        Command::new(bin())
            .args(["authentication-config", "--config"])
            .arg(&i.daemon.config)
            .arg("--ca-file")
            .arg(&i.daemon.pki.server_ca),
        "kube-ldap-webhook authentication-config",
    );
    let doc: serde_norway::Value = serde_norway::from_str(&printed).unwrap();
    assert_eq!(doc["kind"], "AuthenticationConfiguration");
    let issuer = &doc["jwt"][0]["issuer"];
    assert_eq!(issuer["url"], ISSUER);
    assert_eq!(issuer["audiences"][0], "kubernetes");
    let ca = std::fs::read_to_string(&i.daemon.pki.server_ca).unwrap();
    let embedded = issuer["certificateAuthority"].as_str().unwrap();
    let b64 = |pem: &str| -> String { pem.lines().filter(|l| !l.starts_with("-----")).collect() };
    assert_eq!(b64(embedded), b64(&ca));
    let d = i.call("GET", &url(&i, DISCOVERY), None).await;
    assert_eq!(
        d.body["issuer"],
        issuer["url"].as_str().unwrap(),
        "the iss kube-apiserver expects"
    );
}
