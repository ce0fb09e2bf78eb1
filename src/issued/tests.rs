//! Signing and verification of issued tokens, every forgery included. The same checks run
//! through the daemon against real directories in tests/it/issued_tokens.rs.

use super::*;
use crate::directory::state::PasswordStamp;

const HOUR: Duration = Duration::from_secs(3600);

fn pair() -> (tempfile::TempDir, SigningKey) {
    let d = tempfile::tempdir().unwrap();
    keygen(d.path()).unwrap();
    let k = keys::load_signing_key(&d.path().join(keys::SIGNING_KEY)).unwrap();
    (d, k)
}

fn tokens(signing: SigningKey) -> Tokens {
    Tokens::new(
        Some(signing),
        vec![],
        "kube-ldap-webhook".into(),
        "kube-ldap-webhook".into(),
        8 * HOUR,
        None,
    )
}

fn alice() -> Subject {
    Subject {
        directory: String::new(),
        uid: "a11ce".into(),
        dn: "uid=alice,ou=people,dc=example,dc=org".into(),
        username: "alice".into(),
        login: "EXAMPLE\\alice".into(),
        password_version: "v1".into(),
    }
}

fn now() -> SystemTime {
    crate::clock::wall()
}

/// A token over arbitrary claims, signed by `key` under `kid`.
fn forge(key: &SigningKey, kid: &str, claims: serde_json::Value) -> String {
    let footer = format!("{{\"kid\":\"{kid}\"}}");
    PublicToken::sign(
        &key.secret,
        claims.to_string().as_bytes(),
        Some(footer.as_bytes()),
        None,
    )
    .unwrap()
}

fn claims(iat: SystemTime, exp: SystemTime) -> serde_json::Value {
    serde_json::json!({
        "iss": "kube-ldap-webhook", "aud": "kube-ldap-webhook",
        "sub": "a11ce", "dn": "uid=alice,ou=people,dc=example,dc=org", "name": "alice",
        "pwv": "v1", "iat": rfc3339(iat), "nbf": rfc3339(iat), "exp": rfc3339(exp),
        "jti": "x",
    })
}

#[test]
fn a_signed_token_verifies_and_names_its_subject() {
    let (_d, k) = pair();
    let t = tokens(k);
    let issued = t.sign(&alice(), now()).unwrap();
    assert!(issued.token.starts_with(PREFIX));
    assert!(is_issued(&issued.token));
    let v = t.verify(&issued.token, now()).unwrap();
    assert_eq!(v.subject, alice());
    assert_eq!(rfc3339(v.expires), issued.expiration_timestamp);
    assert!(issued.expiration_timestamp.ends_with('Z'));
}

#[test]
fn a_signed_tokens_debug_output_does_not_show_it() {
    let (_d, k) = pair();
    let issued = tokens(k).sign(&alice(), now()).unwrap();
    let shown = format!("{issued:?}");
    assert!(!shown.contains(&issued.token), "{shown}");
    assert!(!shown.contains(PREFIX), "{shown}");
    assert!(shown.contains(&issued.expiration_timestamp), "{shown}");
}

#[test]
fn the_footer_names_the_key_and_the_claims_hold_no_groups() {
    let (_d, k) = pair();
    let kid = k.public.kid.clone();
    let t = tokens(k);
    let issued = t.sign(&alice(), now()).unwrap();
    let u = UntrustedToken::<Public, V4>::try_from(issued.token.as_str()).unwrap();
    let footer: serde_json::Value = serde_json::from_slice(u.untrusted_footer()).unwrap();
    assert_eq!(footer, serde_json::json!({ "kid": kid }));
    let claims: serde_json::Value = serde_json::from_slice(u.untrusted_payload()).unwrap();
    for c in [
        "iss", "aud", "sub", "dn", "name", "iat", "nbf", "exp", "jti",
    ] {
        assert!(claims.get(c).is_some(), "{c} in {claims}");
    }
    assert!(claims.get("groups").is_none());
}

#[test]
fn two_tokens_for_one_user_differ() {
    let (_d, k) = pair();
    let t = tokens(k);
    let at = now();
    assert_ne!(
        t.sign(&alice(), at).unwrap().token,
        t.sign(&alice(), at).unwrap().token
    );
}

#[test]
fn an_expired_token_is_expired_and_nothing_else() {
    let (_d, k) = pair();
    let kid = k.public.kid.clone();
    let token = forge(&k, &kid, claims(now() - 2 * HOUR, now() - HOUR));
    assert_eq!(tokens(k).verify(&token, now()), Err(VerifyError::Expired));
}

#[test]
fn a_token_signed_by_another_key_under_our_kid_is_invalid() {
    let (_d, ours) = pair();
    let (_e, other) = pair();
    let kid = ours.public.kid.clone();
    let token = forge(&other, &kid, claims(now(), now() + HOUR));
    assert_eq!(
        tokens(ours).verify(&token, now()),
        Err(VerifyError::Invalid("bad signature"))
    );
}

#[test]
fn an_edited_payload_breaks_the_signature() {
    let (_d, k) = pair();
    let t = tokens(k);
    let issued = t.sign(&alice(), now()).unwrap();
    let u = UntrustedToken::<Public, V4>::try_from(issued.token.as_str()).unwrap();
    let mut message = u.untrusted_message().to_vec();
    let payload = String::from_utf8(u.untrusted_payload().to_vec()).unwrap();
    let edited = payload.replace("\"alice\"", "\"admin\"");
    assert_ne!(payload, edited);
    message.splice(..payload.len(), edited.bytes());
    let parts: Vec<&str> = issued.token.split('.').collect();
    let forged = format!(
        "v4.public.{}.{}",
        URL_SAFE_NO_PAD.encode(&message),
        parts[3]
    );
    assert_eq!(
        t.verify(&forged, now()),
        Err(VerifyError::Invalid("bad signature"))
    );
}

#[test]
fn another_issuer_or_audience_is_invalid() {
    let (_d, k) = pair();
    let kid = k.public.kid.clone();
    let t = tokens(k);
    for (claim, value) in [("iss", "someone-else"), ("aud", "kubernetes")] {
        let mut c = claims(now(), now() + HOUR);
        c[claim] = value.into();
        let key = t.signing.as_ref().unwrap();
        assert_eq!(
            t.verify(&forge(key, &kid, c), now()),
            Err(VerifyError::Invalid("another issuer or audience")),
            "{claim}"
        );
    }
}

#[test]
fn a_token_not_yet_valid_is_invalid_beyond_the_clock_leeway() {
    let (_d, k) = pair();
    let kid = k.public.kid.clone();
    let t = tokens(k);
    let key = t.signing.as_ref().unwrap();
    let mut c = claims(now(), now() + 2 * HOUR);
    c["nbf"] = rfc3339(now() + HOUR).into();
    assert_eq!(
        t.verify(&forge(key, &kid, c), now()),
        Err(VerifyError::Invalid("not yet valid"))
    );
    let ahead = claims(now() + Duration::from_secs(5), now() + HOUR);
    assert!(
        t.verify(&forge(key, &kid, ahead), now()).is_ok(),
        "a node whose clock is a few seconds ahead"
    );
}

#[test]
fn tokens_issued_before_not_before_are_invalid() {
    let (_d, k) = pair();
    let t = Tokens {
        not_before: Some(now()),
        ..tokens(k)
    };
    let old = t.sign(&alice(), now() - HOUR).unwrap();
    assert_eq!(
        t.verify(&old.token, now()),
        Err(VerifyError::Invalid("issued before tokens.not_before"))
    );
    let new = t.sign(&alice(), now() + Duration::from_secs(1)).unwrap();
    assert!(t.verify(&new.token, now()).is_ok());
}

#[test]
fn a_lifetime_over_24h_is_not_ours() {
    let (_d, k) = pair();
    let kid = k.public.kid.clone();
    let t = tokens(k);
    let c = claims(now(), now() + 25 * HOUR);
    let key = t.signing.as_ref().unwrap();
    assert_eq!(
        t.verify(&forge(key, &kid, c), now()),
        Err(VerifyError::Invalid("lifetime longer than 24h"))
    );
}

#[test]
fn an_unknown_kid_or_no_footer_is_invalid() {
    let (_d, k) = pair();
    let t = tokens(k);
    let key = t.signing.as_ref().unwrap();
    let c = claims(now(), now() + HOUR);
    assert_eq!(
        t.verify(&forge(key, "AAAAAAAAAAAAAAAA", c.clone()), now()),
        Err(VerifyError::Invalid("unknown key id"))
    );
    let bare = PublicToken::sign(&key.secret, c.to_string().as_bytes(), None, None).unwrap();
    assert_eq!(
        t.verify(&bare, now()),
        Err(VerifyError::Invalid("no key id in the footer"))
    );
}

#[test]
fn garbage_with_our_prefix_is_invalid() {
    let (_d, k) = pair();
    let t = tokens(k);
    for g in [
        "v4.public.",
        "v4.public.!!!",
        "v4.public.AAAA",
        "v4.public.eyJhbGciOiJub25lIn0.e30.",
    ] {
        assert!(is_issued(g));
        assert!(
            matches!(t.verify(g, now()), Err(VerifyError::Invalid(_))),
            "{g}"
        );
    }
    let long = format!("v4.public.{}", "A".repeat(MAX_LEN));
    assert_eq!(
        t.verify(&long, now()),
        Err(VerifyError::Invalid("oversized token"))
    );
}

#[test]
fn other_versions_and_purposes_and_jwts_are_not_our_shape() {
    for t in [
        "v4.local.AAAA",
        "v3.public.AAAA",
        "v2.public.AAAA",
        "V4.PUBLIC.AAAA",
        "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJrdWJlcm5ldGVzIn0.c2ln",
        "YWxpY2U6cGFzc3dvcmQ=",
    ] {
        assert!(!is_issued(t), "{t}");
    }
}

#[test]
fn a_verification_key_alone_verifies_but_cannot_sign() {
    let (_d, k) = pair();
    let issued = tokens(pair_clone(&k)).sign(&alice(), now()).unwrap();
    let public_only = Tokens::new(
        None,
        vec![k.public.clone()],
        "kube-ldap-webhook".into(),
        "kube-ldap-webhook".into(),
        8 * HOUR,
        None,
    );
    assert!(public_only.verify(&issued.token, now()).is_ok());
    assert!(matches!(
        public_only.sign(&alice(), now()),
        Err(SignError::NoKey)
    ));
}

fn pair_clone(k: &SigningKey) -> SigningKey {
    SigningKey {
        secret: AsymmetricSecretKeyExt::copy(&k.secret),
        public: k.public.clone(),
    }
}

trait AsymmetricSecretKeyExt {
    fn copy(&self) -> Self;
}

impl AsymmetricSecretKeyExt for pasetors::keys::AsymmetricSecretKey<V4> {
    fn copy(&self) -> Self {
        pasetors::keys::AsymmetricSecretKey::<V4>::from(self.as_bytes()).unwrap()
    }
}

#[test]
fn not_before_times_parse_as_rfc3339_only() {
    assert!(parse_rfc3339("2024-05-01T12:00:00Z").is_ok());
    assert!(parse_rfc3339("2024-05-01T14:00:00+02:00").is_ok());
    let e = parse_rfc3339("yesterday").unwrap_err();
    assert!(e.contains("RFC 3339"), "{e}");
}

fn changed_at(time: &str) -> PasswordStamp {
    PasswordStamp::of(&crate::directory::Entry {
        dn: "uid=alice,ou=people,dc=example,dc=org".into(),
        attrs: vec![("pwdChangedTime".into(), vec![time.as_bytes().to_vec()])],
    })
}

/// The version a review computes for `stamp` under `tokens`' key.
fn version(tokens: &Tokens, stamp: &PasswordStamp) -> Option<String> {
    (tokens.password_key()).map(|k| stamp.version(k))
}

/// `pwv` is keyed with a key derived from the signing key: two nodes with the same key
/// agree, and a version says nothing to whoever lacks the key.
#[test]
fn the_password_version_is_keyed_by_the_signing_key() {
    let (d1, k1) = pair();
    let (_d2, k2) = pair();
    let again = keys::load_signing_key(&d1.path().join(keys::SIGNING_KEY)).unwrap();
    let entry = changed_at("20240501120000Z");
    let v1 = version(&tokens(k1), &entry).unwrap();
    let v2 = version(&tokens(k2), &entry).unwrap();
    let other_node = version(&tokens(again), &entry).unwrap();
    assert_ne!(v1, v2, "another signing key, another version");
    assert_eq!(v1, other_node, "the same signing key on another node");
    assert_eq!(v1.len(), 22);
    let k1 = keys::load_signing_key(&d1.path().join(keys::SIGNING_KEY)).unwrap();
    let later = version(&tokens(k1), &changed_at("20240501120001Z"));
    assert_ne!(Some(v1), later, "another password change, another version");
}

#[test]
fn without_a_signing_key_there_is_no_password_version() {
    let t = Tokens::new(None, vec![], "i".into(), "a".into(), HOUR, None);
    assert_eq!(version(&t, &changed_at("20240501120000Z")), None);
}

#[test]
fn a_token_knows_whether_this_nodes_signing_key_signed_it() {
    let (_d1, k1) = pair();
    let (_d2, k2) = pair();
    let other = k2.public.clone();
    let foreign = tokens(k2).sign(&alice(), now()).unwrap();
    let t = Tokens::new(
        Some(k1),
        vec![other],
        "kube-ldap-webhook".into(),
        "kube-ldap-webhook".into(),
        8 * HOUR,
        None,
    );
    let own = t.sign(&alice(), now()).unwrap();
    assert!(t.verify(&own.token, now()).unwrap().signed_here);
    assert!(!t.verify(&foreign.token, now()).unwrap().signed_here);
}
