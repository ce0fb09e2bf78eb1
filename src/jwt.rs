//! The issuer of short-lived JWTs for kube-apiserver's JWT authenticator (structured
//! authentication configuration): `[jwt]` on the login listener.
//!
//! ES256 only, fixed here: the daemon signs and never verifies a JWT, and the tests verify
//! with the algorithm pinned, so no header anywhere chooses how a token is checked.
//! kube-apiserver accepts no EdDSA, hence P-256 keys beside the Ed25519 ones of issued
//! tokens.
//!
//! A JWT carries what a review of the session would answer, already mapped (prefixes
//! applied, `system:` names dropped), so kube-apiserver's claim mappings stay plain:
//! `sub` (the directory's uid), `username`, `groups`; its life ends at `token_ttl` or at the
//! session's own expiry, whichever is first.

pub(crate) mod keys;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Header};
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use keys::keygen_es256;
pub(crate) use keys::{Jwk, JwtSigningKey};

/// Where the discovery document is, below the issuer's path.
pub(crate) const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the JWKS is, below the issuer's path (the path kube-apiserver's own service
/// account issuer uses).
pub(crate) const JWKS_PATH: &str = "/openid/v1/jwks";
/// How long a client may keep the discovery document and the JWKS: a new verification key
/// is seen within this, so rotation publishes the new key this long before signing with it.
pub(crate) const CACHE_MAX_AGE: Duration = Duration::from_secs(300);

/// The issuer as a runtime holds it: settings, keys, and the two documents, rendered once.
#[derive(Debug)]
pub(crate) struct Issuer {
    /// `jwt.issuer` as written: `iss`, and what kube-apiserver compares it with.
    pub(crate) url: String,
    /// The issuer URL's path without a trailing `/` ("" for none): prefixes both documents.
    pub(crate) path: String,
    pub(crate) audiences: Vec<String>,
    pub(crate) ttl: Duration,
    signing: JwtSigningKey,
    discovery: Vec<u8>,
    jwks: Vec<u8>,
}

/// The claims of a JWT, as signed.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) iss: String,
    /// One audience as a string, several as a list (RFC 7519 allows both).
    pub(crate) aud: serde_json::Value,
    pub(crate) sub: String,
    pub(crate) username: String,
    pub(crate) groups: Vec<String>,
    pub(crate) iat: u64,
    pub(crate) nbf: u64,
    pub(crate) exp: u64,
    pub(crate) jti: String,
}

/// Who a JWT is for: a review's `status.user`, as the review rendered it.
#[derive(Debug, Deserialize)]
pub(crate) struct Holder {
    pub(crate) username: String,
    pub(crate) uid: String,
    #[serde(default)]
    pub(crate) groups: Vec<String>,
}

/// A freshly signed JWT.
pub(crate) struct Signed {
    pub(crate) token: String,
    pub(crate) expires: SystemTime,
    /// Its `jti`, which audit events name it by.
    pub(crate) id: String,
}

/// A JWT is a credential until it expires: never in Debug output.
impl std::fmt::Debug for Signed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signed")
            .field("token", &"<redacted>")
            .field("expires", &self.expires)
            .finish()
    }
}

/// Why no JWT was signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SignError {
    /// The session ends within the second: nothing left to hand out.
    #[error("the session has expired")]
    SessionOver,
    /// The account has no uid to put in `sub`.
    #[error("the account has no uid")]
    NoUid,
    #[error("signing failed")]
    Sign,
}

#[derive(Serialize)]
struct Discovery<'a> {
    issuer: &'a str,
    jwks_uri: String,
    response_types_supported: [&'static str; 1],
    subject_types_supported: [&'static str; 1],
    id_token_signing_alg_values_supported: [&'static str; 1],
    claims_supported: [&'static str; 9],
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: &'a [Jwk],
}

impl Issuer {
    /// `url` is an https URL (checked by the config); `verifying` the public keys still
    /// accepted besides the signing key's.
    pub(crate) fn new(
        url: String,
        path: String,
        audiences: Vec<String>,
        ttl: Duration,
        signing: JwtSigningKey,
        verifying: Vec<Jwk>,
    ) -> Issuer {
        let mut keys = vec![signing.public.clone()];
        for k in verifying {
            if !keys.iter().any(|a| a.kid == k.kid) {
                keys.push(k);
            }
        }
        let base = url.trim_end_matches('/');
        let discovery = serde_json::to_vec(&Discovery {
            issuer: &url,
            jwks_uri: format!("{base}{JWKS_PATH}"),
            response_types_supported: ["id_token"],
            subject_types_supported: ["public"],
            id_token_signing_alg_values_supported: ["ES256"],
            claims_supported: [
                "iss", "aud", "sub", "username", "groups", "iat", "nbf", "exp", "jti",
            ],
        })
        .unwrap_or_default();
        let jwks = serde_json::to_vec(&Jwks { keys: &keys }).unwrap_or_default();
        Issuer {
            url,
            path,
            audiences,
            ttl,
            signing,
            discovery,
            jwks,
        }
    }

    /// The discovery document.
    pub(crate) fn discovery(&self) -> &[u8] {
        &self.discovery
    }

    /// The JWKS: every key a JWT of this issuer may be signed with.
    pub(crate) fn jwks(&self) -> &[u8] {
        &self.jwks
    }

    /// The key ids published, signing key first; for the start-up log line.
    pub(crate) fn signing_kid(&self) -> &str {
        &self.signing.public.kid
    }

    /// Signs a JWT for `holder`, valid from `now` for `jwt.token_ttl` but never past
    /// `session_expires`.
    pub(crate) fn sign(
        &self,
        holder: &Holder,
        session_expires: SystemTime,
        now: SystemTime,
    ) -> Result<Signed, SignError> {
        if holder.uid.is_empty() {
            return Err(SignError::NoUid);
        }
        let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let iat = secs(now);
        let exp = secs(now + self.ttl).min(secs(session_expires));
        if exp <= iat {
            return Err(SignError::SessionOver);
        }
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let aud = match self.audiences.as_slice() {
            [one] => serde_json::Value::from(one.as_str()),
            many => serde_json::Value::from(many.to_vec()),
        };
        let claims = Claims {
            iss: self.url.clone(),
            aud,
            sub: holder.uid.clone(),
            username: holder.username.clone(),
            groups: holder.groups.clone(),
            iat,
            nbf: iat,
            exp,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let id = claims.jti.clone();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.signing.public.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.signing.encoding)
            .map_err(|_| SignError::Sign)?;
        Ok(Signed {
            token,
            expires: UNIX_EPOCH + Duration::from_secs(exp),
            id,
        })
    }
}

#[cfg(test)]
mod tests;
