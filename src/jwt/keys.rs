//! The ES256 (P-256) keys of JWTs: PEM files in (PKCS#8 `PRIVATE KEY` as `keygen
//! --algorithm es256` or `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`
//! write it; SPKI `PUBLIC KEY`), JWKs out, and `keygen --algorithm es256`.
//!
//! The files pass the same checks as the Ed25519 key files of issued tokens
//! ([`crate::issued::key_files`]): whoever reads the signing key or replaces a key signs
//! JWTs kube-apiserver accepts for anyone.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::EncodingKey;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::issued::key_files::{self, Kind};
use crate::issued::keys::write_pair;
use crate::issued::KeyError;

/// The DER of a P-256 SubjectPublicKeyInfo up to the point: SEQUENCE { SEQUENCE { OID
/// id-ecPublicKey, OID prime256v1 }, BIT STRING (0 unused bits) ... }. Every P-256 SPKI
/// with an uncompressed point starts with exactly these bytes, so comparing them is the
/// whole parse, and nothing else (another curve, a compressed point) gets through.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// An uncompressed P-256 point: 0x04, then x and y of 32 bytes each.
const POINT_LEN: usize = 65;

/// A public key as a JWK (RFC 7517) of the JWKS: `kid` is its RFC 7638 thumbprint, so
/// every node names the same key the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Jwk {
    kty: &'static str,
    crv: &'static str,
    x: String,
    y: String,
    pub(crate) kid: String,
    #[serde(rename = "use")]
    use_: &'static str,
    alg: &'static str,
}

impl Jwk {
    /// The JWK of an uncompressed point, or `None` when `point` is not one.
    fn from_point(point: &[u8]) -> Option<Jwk> {
        if point.len() != POINT_LEN || point[0] != 0x04 {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..]);
        Some(Jwk {
            kid: thumbprint(&x, &y),
            kty: "EC",
            crv: "P-256",
            x,
            y,
            use_: "sig",
            alg: "ES256",
        })
    }
}

/// RFC 7638: the SHA-256 of the required members in lexicographic order, no whitespace.
fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The key that signs JWTs, with its public half. `Debug` shows only the key id.
pub(crate) struct JwtSigningKey {
    pub(crate) encoding: EncodingKey,
    pub(crate) public: Jwk,
}

impl std::fmt::Debug for JwtSigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtSigningKey({})", self.public.kid)
    }
}

/// Reads a P-256 signing key (PKCS#8 PEM) that only its owner and group may read and only
/// its owner may write.
pub(crate) fn load_signing_key(path: &Path) -> Result<JwtSigningKey, KeyError> {
    let pem = key_files::read(path, Kind::Signing)?;
    let invalid = |message| KeyError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let der = PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        invalid(
            "no P-256 private key (PKCS#8 PEM `PRIVATE KEY`, as `kube-ldap-webhook keygen \
             --algorithm es256` writes it; convert an `EC PRIVATE KEY` with `openssl pkcs8 \
             -topk8 -nocrypt`)",
        )
    })?;
    let der = Zeroizing::new(der.secret_pkcs8_der().to_vec());
    // ring refuses any other curve or algorithm, and a key whose public half does not match.
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
            .map_err(|_| invalid("not a usable P-256 (ES256) private key"))?;
    let public = Jwk::from_point(pair.public_key().as_ref())
        .ok_or_else(|| invalid("not a usable P-256 (ES256) private key"))?;
    Ok(JwtSigningKey {
        encoding: EncodingKey::from_ec_der(&der),
        public,
    })
}

/// Reads a P-256 public key (SPKI PEM `PUBLIC KEY`) that others cannot replace.
pub(crate) fn load_verifying_key(path: &Path) -> Result<Jwk, KeyError> {
    let pem = key_files::read(path, Kind::Verification)?;
    let invalid = |message| KeyError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    if pem.contains("PRIVATE KEY-----") {
        return Err(invalid(
            "holds a private key: list the public key (signing.pub) here, and keep the \
             private key on the nodes that sign",
        ));
    }
    let der = SubjectPublicKeyInfoDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        invalid("no public key (SPKI PEM `PUBLIC KEY`, as keygen writes signing.pub)")
    })?;
    der.strip_prefix(&P256_SPKI_PREFIX[..])
        .and_then(Jwk::from_point)
        .ok_or_else(|| invalid("not a P-256 public key with an uncompressed point"))
}

/// `kube-ldap-webhook keygen --algorithm es256 --out DIR`: a new P-256 key pair,
/// `DIR/signing.key` (PKCS#8 PEM, mode 0600) and `DIR/signing.pub` (SPKI PEM). Never
/// overwrites. Returns the new key's id (its JWK thumbprint).
pub fn keygen_es256(dir: &Path) -> Result<String, KeyError> {
    let rng = SystemRandom::new();
    let failed = |message| KeyError::Invalid {
        path: dir.to_path_buf(),
        message,
    };
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| failed("cannot generate a P-256 key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| failed("cannot generate a P-256 key"))?;
    let point = pair.public_key().as_ref();
    let jwk = Jwk::from_point(point).ok_or_else(|| failed("cannot generate a P-256 key"))?;
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(point);
    let secret_pem = pem("PRIVATE KEY", pkcs8.as_ref());
    write_pair(dir, &secret_pem, &pem("PUBLIC KEY", &spki))?;
    Ok(jwk.kid)
}

/// PEM as OpenSSL writes it: base64 in lines of 64.
pub(crate) fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let b64 = Zeroizing::new(STANDARD.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests;
