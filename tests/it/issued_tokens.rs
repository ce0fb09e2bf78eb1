//! Issued tokens through the real daemon against a real slapd: log in once on the login
//! port, then review the token; what a review re-checks, node B and key rotation, and
//! every forgery, refused without a single LDAP operation. The rules of time (expiry,
//! `tokens.not_before`, the leeway, a cached or stale answer ending with its token) are
//! unit tests on the paused clock, in src/authenticator/tests/times.rs.
//! The login endpoint's own protections are in login_endpoint.rs; Active Directory's
//! account states in active_directory.rs.

use std::process::Command;

use crate::support::issued::*;
use crate::support::*;
use serde_json::json;

const ALICE_DN: &str = "uid=alice,ou=people,dc=example,dc=org";

fn issuer(slapd: &Slapd, keys: &KeyPair, sections: &[(&str, &str)]) -> Issuer {
    Issuer::on_slapd(slapd, sections, keys, "", "")
}

/// slapd with the ppolicy overlay, which keeps `pwdChangedTime` and the lock attributes.
fn ppolicy_slapd() -> Slapd {
    let conf = SlapdConf {
        global: "moduleload ppolicy\n".into(),
        database: "overlay ppolicy\n".into(),
    };
    Slapd::start_configured(&conf, "")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_gives_a_token_that_reviews_accept_with_the_groups_of_now() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[]);
    let r = i.login("alice", "alice-password").await;
    assert_eq!(r.status, 200, "{}", r.raw);
    assert_eq!(r.headers["cache-control"], "no-store");
    let token = r.body["token"].as_str().unwrap();
    assert!(token.starts_with("v4.public."), "{token}");
    let c = claims_of(token);
    assert_eq!(c["sub"], slapd.entry_uuid("alice"));
    assert_eq!(c["dn"], ALICE_DN);
    assert_eq!(c["name"], "alice");
    assert_eq!(c["exp"], r.body["expirationTimestamp"]);
    assert!(c.get("groups").is_none(), "groups are never in the token");

    let a = i.review(token).await;
    assert!(authenticated(&a), "{}", a.raw);
    let user = &a.body["status"]["user"];
    assert_eq!(user["username"], "alice");
    assert_eq!(user["uid"], slapd.entry_uuid("alice"));
    assert_eq!(groups_of(&a), ["admins", "developers"]);
    assert_eq!(
        user["extra"]["example.org/email"],
        json!(["alice@example.org"])
    );

    let binds = slapd.user_binds();
    let again = i.review(token).await;
    assert_eq!(again.raw, a.raw, "a repeat review gives the same answer");
    assert_eq!(
        slapd.user_binds(),
        binds,
        "a review never binds as the user"
    );
    assert_eq!(i.check(token).await.status, 204);

    let log = i.daemon.log();
    for secret in ["alice-password", token, &token[10..40]] {
        assert!(!log.contains(secret), "the log shows {secret:?}:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_token_is_credentials_are_expired_without_ldap_traffic() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[]);
    let fresh = i.token("alice", "alice-password").await;
    let expired = keys.sign(
        &keys.kid(),
        &claims(&fresh, |c| {
            c["iat"] = ago(7200).into();
            c["nbf"] = ago(7200).into();
            c["exp"] = ago(60).into();
        }),
    );
    let before = slapd.operations();
    let a = i.review(&expired).await;
    assert!(!authenticated(&a), "{}", a.raw);
    assert_eq!(error_of(&a), EXPIRED);
    let r = i.check(&expired).await;
    assert_eq!(r.status, 401, "{}", r.raw);
    assert_eq!(r.body["message"], EXPIRED);
    assert_eq!(slapd.operations(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_group_and_a_locked_account_take_effect_within_the_cache_ttl() {
    let slapd = ppolicy_slapd();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[("cache", "ttl = \"1s\"")]);
    let token = i.token("alice", "alice-password").await;
    assert_eq!(groups_of(&i.review(&token).await), ["admins", "developers"]);

    slapd.modify(&format!(
        "dn: cn=developers,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: {ALICE_DN}\n"
    ));
    let a = review_until(&i, &token, |a| groups_of(a) == ["admins"]).await;
    assert!(authenticated(&a));

    slapd.modify(&format!(
        "dn: {ALICE_DN}\nchangetype: modify\nadd: pwdAccountLockedTime\npwdAccountLockedTime: 000001010000Z\n"
    ));
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), "Account is locked");
    assert_eq!(i.check(&token).await.body["message"], "Account is locked");
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_the_password_logs_out_every_token_issued_before() {
    let slapd = ppolicy_slapd();
    let keys = KeyPair::new();
    let i = issuer(&slapd, &keys, &[("cache", "ttl = \"1s\"")]);
    let token = i.token("alice", "alice-password").await;
    assert!(authenticated(&i.review(&token).await));

    // The user changes their own password, as `passwd` would.
    run_checked(
        Command::new("ldappasswd")
            .args(["-x", "-H", &slapd.url(), "-D", ALICE_DN])
            .args(["-w", "alice-password", "-s", "a-new-password"]),
        "ldappasswd",
    );

    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), EXPIRED);
    assert_eq!(i.check(&token).await.status, 401);
    let fresh = i.token("alice", "a-new-password").await;
    assert!(authenticated(&i.review(&fresh).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_account_is_refused_even_when_recreated_under_the_same_dn() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = issuer(
        &slapd,
        &keys,
        &[("cache", "ttl = \"1s\"\nnegative_ttl = \"0s\"")],
    );
    let token = i.token("bob", "pa:ss:word").await;
    assert!(authenticated(&i.review(&token).await));
    let bob = "uid=bob,ou=people,dc=example,dc=org";
    slapd.modify(&format!("dn: {bob}\nchangetype: delete\n"));
    let a = review_until(&i, &token, |a| !authenticated(a)).await;
    assert_eq!(error_of(&a), GENERIC, "{}", a.raw);
    slapd.modify(&format!(
        "dn: {bob}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: Two\nuserPassword: pa:ss:word\n"
    ));
    let a = i.review(&token).await;
    assert!(
        !authenticated(&a),
        "a new entryUUID is another person: {}",
        a.raw
    );
    assert_eq!(error_of(&a), GENERIC);
    i.daemon
        .wait_for_log("uid or name changed since the token was issued");
}

#[tokio::test(flavor = "multi_thread")]
async fn node_b_with_the_same_key_pair_accepts_node_a_tokens() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let a = issuer(&slapd, &keys, &[]);
    let token = a.token("alice", "alice-password").await;
    // Node B holds the same pair; another node C holds only the public key.
    let b = issuer(&slapd, &keys, &[]);
    let answer = b.review(&token).await;
    assert!(authenticated(&answer), "{}", answer.raw);
    assert_eq!(groups_of(&answer), ["admins", "developers"]);
    let public = format!("verification_key_files = [\"{}\"]", keys.public.display());
    let c = slapd
        .daemon()
        .section("cache", format!("[tokens]\n{public}"))
        .start();
    let answer = c.client().review(&c.url(), "v1", &token).await;
    assert!(authenticated(&answer), "{}", answer.raw);
}

#[tokio::test(flavor = "multi_thread")]
async fn key_rotation_keeps_old_tokens_until_the_old_key_is_dropped() {
    let slapd = Slapd::start();
    let (old, new) = (KeyPair::new(), KeyPair::new());
    let i = issuer(&slapd, &old, &[]);
    let first = i.token("alice", "alice-password").await;
    let d = &i.daemon;

    // Step 1: every node learns the new public key. Step 2: the new key signs.
    let (old_key, new_key) = (path_str(&old.key), path_str(&new.key));
    let old_pub = path_str(&old.public);
    reload(d, |t| {
        t.replace(&old_key, &new_key).replace(
            "[tokens]\n",
            &format!("[tokens]\nverification_key_files = [\"{old_pub}\"]\n"),
        )
    });
    assert!(
        authenticated(&i.review(&first).await),
        "old tokens still verify"
    );
    let second = i.token("alice", "alice-password").await;
    assert_ne!(kid_of(&second), kid_of(&first));
    assert_eq!(kid_of(&second), new.kid());
    assert!(authenticated(&i.review(&second).await));

    // Step 3, after token_ttl: the old public key goes.
    reload(d, |t| {
        t.replace(&format!("verification_key_files = [\"{old_pub}\"]\n"), "")
    });
    let a = i.review(&first).await;
    assert_eq!(error_of(&a), GENERIC, "{}", a.raw);
    assert!(authenticated(&i.review(&second).await));
}

fn kid_of(token: &str) -> String {
    let footer = token.rsplit('.').next().unwrap();
    let bytes =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, footer).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    v["kid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_forgery_is_refused_without_an_ldap_operation() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    // Failed checks spend the rate limit; this test makes many on purpose.
    let i = Issuer::on_slapd(&slapd, &[], &keys, "rate = 1000\nburst = 1000", "");
    let genuine = i.token("alice", "alice-password").await;
    let kid = keys.kid();
    let other = KeyPair::new();
    let edit = |f: &dyn Fn(&mut serde_json::Value)| keys.sign(&kid, &claims(&genuine, f));
    let b64 =
        |s: &str| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, s);
    let jwt = |alg: &str| {
        format!(
            "{}.{}.{}",
            b64(&format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}")),
            b64(&claims_of(&genuine).to_string()),
            if alg == "none" {
                String::new()
            } else {
                b64("signature")
            }
        )
    };
    let edited = {
        let mut parts: Vec<String> = genuine.split('.').map(String::from).collect();
        let mut body =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &parts[2])
                .unwrap();
        let at = body.windows(7).position(|w| w == b"\"alice\"").unwrap();
        body[at + 1] = b'm';
        parts[2] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, body);
        parts.join(".")
    };
    let generic: Vec<(&str, String)> = vec![
        (
            "another key under our kid",
            other.sign(&kid, &claims_of(&genuine)),
        ),
        (
            "another key's kid",
            other.sign(&other.kid(), &claims_of(&genuine)),
        ),
        ("an edited payload", edited),
        ("another issuer", edit(&|c| c["iss"] = "dex".into())),
        (
            "another audience",
            edit(&|c| c["aud"] = "kubernetes".into()),
        ),
        (
            "nbf in the future",
            edit(&|c| c["nbf"] = from_now(3600).into()),
        ),
        (
            "a 48h lifetime",
            edit(&|c| c["exp"] = from_now(48 * 3600).into()),
        ),
        ("garbage with our prefix", "v4.public.not-a-token".into()),
        ("our prefix, nothing else", "v4.public.".into()),
        ("no footer", genuine.rsplit_once('.').unwrap().0.to_string()),
    ];
    let not_ours: Vec<(&str, String)> = vec![
        (
            "v4.local",
            format!("v4.local.{}", b64("0123456789abcdef0123456789abcdef")),
        ),
        ("v3.public", genuine.replacen("v4.", "v3.", 1)),
        ("v2.public", genuine.replacen("v4.", "v2.", 1)),
        ("alg none", jwt("none")),
        ("HS256 with the public key", jwt("HS256")),
        ("a service-account JWT", jwt("RS256")),
    ];
    let before = slapd.operations();
    for (what, t) in &generic {
        let a = i.review(t).await;
        assert!(!authenticated(&a), "{what}: {}", a.raw);
        assert_eq!(error_of(&a), GENERIC, "{what}: {}", a.raw);
        let r = i.check(t).await;
        assert_eq!(
            (r.status, r.body["message"].as_str()),
            (401, Some(GENERIC)),
            "{what}"
        );
    }
    for (what, t) in &not_ours {
        let a = i.review(t).await;
        assert!(!authenticated(&a), "{what}: {}", a.raw);
        assert!(a.body["status"].get("error").is_none(), "{what}: {}", a.raw);
    }
    assert_eq!(slapd.operations(), before, "not one LDAP operation");
    assert!(authenticated(&i.review(&genuine).await));
}

#[tokio::test(flavor = "multi_thread")]
async fn with_basic_tokens_off_a_basic_token_is_not_ours_but_logins_still_take_passwords() {
    let slapd = Slapd::start();
    let keys = KeyPair::new();
    let i = Issuer::on_slapd(&slapd, &[], &keys, "", "accept_basic = false");
    let before = slapd.operations();
    let a = i.review(&token("alice", "alice-password")).await;
    assert!(!authenticated(&a), "{}", a.raw);
    assert!(a.body["status"].get("error").is_none(), "{}", a.raw);
    assert_eq!(slapd.operations(), before);
    let t = i.token("alice", "alice-password").await;
    assert!(authenticated(&i.review(&t).await));
}
