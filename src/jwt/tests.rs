use super::*;
use jsonwebtoken::{DecodingKey, Validation};

fn issuer(ttl: Duration, audiences: &[&str]) -> (tempfile::TempDir, Issuer) {
    let d = tempfile::tempdir().unwrap();
    keygen_es256(d.path()).unwrap();
    let key = keys::load_signing_key(&d.path().join("signing.key")).unwrap();
    let issuer = Issuer::new(
        "https://login.example.org:8444".into(),
        String::new(),
        audiences.iter().map(|a| a.to_string()).collect(),
        ttl,
        key,
        vec![],
    );
    (d, issuer)
}

fn holder() -> Holder {
    Holder {
        username: "ldap:alice".into(),
        uid: "4f1c".into(),
        groups: vec!["ldap:devs".into()],
    }
}

/// Verifies with the algorithm pinned to ES256 and the JWKS's first key: signature,
/// issuer and audience. The times are the unit tests' clock (2026), so the tests compare
/// them rather than the library against the system's clock.
fn verify(issuer: &Issuer, token: &str, aud: &str) -> Claims {
    let jwks: serde_json::Value = serde_json::from_slice(issuer.jwks()).unwrap();
    let k = &jwks["keys"][0];
    let key = DecodingKey::from_ec_components(k["x"].as_str().unwrap(), k["y"].as_str().unwrap())
        .unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[aud]);
    v.set_issuer(&["https://login.example.org:8444"]);
    v.validate_exp = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .unwrap()
        .claims
}

#[test]
fn a_jwt_carries_the_reviewed_user_and_lives_token_ttl() {
    let (_d, issuer) = issuer(Duration::from_secs(300), &["k8s"]);
    let now = crate::clock::wall();
    let signed = issuer
        .sign(&holder(), now + Duration::from_secs(3600), now)
        .unwrap();
    let c = verify(&issuer, &signed.token, "k8s");
    assert_eq!(c.sub, "4f1c");
    assert_eq!(c.username, "ldap:alice");
    assert_eq!(c.groups, ["ldap:devs"]);
    assert_eq!(c.aud, "k8s");
    assert_eq!(c.exp - c.iat, 300);
    assert_eq!(c.nbf, c.iat);
    assert_eq!(c.jti.len(), 22);
    let header = jsonwebtoken::decode_header(&signed.token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(issuer.signing_kid()));
}

#[test]
fn a_jwt_never_outlives_its_session() {
    let (_d, issuer) = issuer(Duration::from_secs(300), &["k8s"]);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let session = now + Duration::from_secs(42);
    let signed = issuer.sign(&holder(), session, now).unwrap();
    assert_eq!(signed.expires, session);
    assert_eq!(
        issuer.sign(&holder(), now, now).unwrap_err(),
        SignError::SessionOver
    );
}

#[test]
fn every_jwt_has_its_own_id_and_several_audiences_are_a_list() {
    let (_d, issuer) = issuer(Duration::from_secs(60), &["a", "b"]);
    let now = crate::clock::wall();
    let later = now + Duration::from_secs(600);
    let one = issuer.sign(&holder(), later, now).unwrap();
    let two = issuer.sign(&holder(), later, now).unwrap();
    let (c1, c2) = (
        verify(&issuer, &one.token, "b"),
        verify(&issuer, &two.token, "a"),
    );
    assert_ne!(c1.jti, c2.jti);
    assert_eq!(c1.aud, serde_json::json!(["a", "b"]));
}

#[test]
fn an_account_without_a_uid_gets_no_jwt() {
    let (_d, issuer) = issuer(Duration::from_secs(60), &["k8s"]);
    let now = crate::clock::wall();
    let h = Holder {
        uid: String::new(),
        ..holder()
    };
    let e = issuer.sign(&h, now + Duration::from_secs(600), now);
    assert_eq!(e.unwrap_err(), SignError::NoUid);
}

#[test]
fn the_discovery_document_points_at_the_jwks_under_the_issuer() {
    let (_d, issuer) = issuer(Duration::from_secs(60), &["k8s"]);
    let doc: serde_json::Value = serde_json::from_slice(issuer.discovery()).unwrap();
    assert_eq!(doc["issuer"], "https://login.example.org:8444");
    assert_eq!(
        doc["jwks_uri"],
        "https://login.example.org:8444/openid/v1/jwks"
    );
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "ES256");
    let jwks: serde_json::Value = serde_json::from_slice(issuer.jwks()).unwrap();
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["kid"], issuer.signing_kid());
}

#[test]
fn debug_never_shows_a_jwt() {
    let (_d, issuer) = issuer(Duration::from_secs(60), &["k8s"]);
    let now = crate::clock::wall();
    let signed = issuer
        .sign(&holder(), now + Duration::from_secs(600), now)
        .unwrap();
    assert!(!format!("{signed:?}").contains(&signed.token));
    assert!(!format!("{issuer:?}").contains("PRIVATE"));
}
