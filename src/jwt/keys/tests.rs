use super::*;
use std::os::unix::fs::PermissionsExt;

use crate::issued::keys::{PUBLIC_KEY, SIGNING_KEY};

#[test]
fn keygen_es256_writes_an_owner_only_pkcs8_key_and_a_matching_public_key() {
    let d = tempfile::tempdir().unwrap();
    let kid = keygen_es256(d.path()).unwrap();
    let mode = std::fs::metadata(d.path().join(SIGNING_KEY))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(d.path().join(SIGNING_KEY)).unwrap();
    assert!(text.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{text}");
    let sk = load_signing_key(&d.path().join(SIGNING_KEY)).unwrap();
    let pk = load_verifying_key(&d.path().join(PUBLIC_KEY)).unwrap();
    assert_eq!(sk.public, pk);
    assert_eq!(pk.kid, kid);
    assert!(matches!(
        keygen_es256(d.path()),
        Err(KeyError::Exists { .. })
    ));
}

#[test]
fn an_ed25519_key_is_refused_where_a_p256_key_belongs() {
    let d = tempfile::tempdir().unwrap();
    crate::issued::keygen(d.path()).unwrap();
    let e = load_signing_key(&d.path().join(SIGNING_KEY)).unwrap_err();
    assert!(e.to_string().contains("P-256"), "{e}");
    let e = load_verifying_key(&d.path().join(PUBLIC_KEY)).unwrap_err();
    assert!(e.to_string().contains("P-256"), "{e}");
}

#[test]
fn a_readable_signing_key_and_a_private_key_in_place_of_a_public_one_are_refused() {
    let d = tempfile::tempdir().unwrap();
    keygen_es256(d.path()).unwrap();
    let key = d.path().join(SIGNING_KEY);
    let e = load_verifying_key(&key).unwrap_err();
    assert!(e.to_string().contains("holds a private key"), "{e}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(load_signing_key(&key), Err(KeyError::Mode { .. })));
}

#[test]
fn the_key_id_is_the_rfc7638_thumbprint() {
    // RFC 7638 section 3.1's method on the P-256 key of RFC 7515 appendix A.3.
    let x = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    let y = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let want = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
    assert_eq!(thumbprint(x, y), want);
    assert_eq!(want.len(), 43);
}

#[test]
fn debug_shows_the_key_id_only() {
    let d = tempfile::tempdir().unwrap();
    keygen_es256(d.path()).unwrap();
    let pem = std::fs::read_to_string(d.path().join(SIGNING_KEY)).unwrap();
    let sk = load_signing_key(&d.path().join(SIGNING_KEY)).unwrap();
    let shown = format!("{sk:?}");
    assert_eq!(shown, format!("JwtSigningKey({})", sk.public.kid));
    assert!(!shown.contains(&pem.lines().nth(1).unwrap()[..20]));
}
