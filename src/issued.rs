//! Issued tokens: PASETO v4.public (Ed25519) signed by the login endpoint and verified at
//! review time.
//!
//! v4.public has no algorithm field: the version and purpose in the prefix fix Ed25519, so
//! no token can choose how it is checked. The footer `{"kid":"..."}` only selects one of
//! the configured public keys. Claims carry who (`sub`, `dn`, `name`, `login`) and when (`iat`,
//! `nbf`, `exp`), never groups: those are read from the directory at every review.

pub(crate) mod key_files;
pub(crate) mod keys;

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pasetors::token::UntrustedToken;
use pasetors::version4::{PublicToken, V4};
use pasetors::Public;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use keys::{SigningKey, VerifyingKey};

pub use key_files::KeyError;
pub use keys::keygen;

/// What every issued token starts with, and the only thing a review looks at to call a
/// token ours: basic tokens (base64, no `.`) and JWTs (`eyJ...`) never start with it.
pub(crate) const PREFIX: &str = "v4.public.";
/// Longer tokens are refused unread; ours are a few hundred bytes (a long DN included).
pub(crate) const MAX_LEN: usize = 8192;
/// Clocks of the nodes differ a little: a token from a node whose clock is ahead by less
/// than this is valid at once on the others.
pub(crate) const LEEWAY: Duration = Duration::from_secs(60);
/// `login.token_ttl` at most; a token claiming a longer life was not made by us.
pub(crate) const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Whether a token has the shape of ours.
pub(crate) fn is_issued(token: &str) -> bool {
    token.trim_start().starts_with(PREFIX)
}

/// The `jti` of an issued token, read without checking the signature: only for a token
/// whose signature was checked before (an answer cached under the whole token's hash).
pub(crate) fn token_id(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Id {
        jti: String,
    }
    let token = token.trim();
    let untrusted = UntrustedToken::<Public, V4>::try_from(token).ok()?;
    serde_json::from_slice::<Id>(untrusted.untrusted_payload())
        .ok()
        .map(|c| c.jti)
}

/// The settings and keys of issued tokens, as a runtime holds them.
#[derive(Debug)]
pub(crate) struct Tokens {
    signing: Option<SigningKey>,
    /// The signing key's public half first, then `tokens.verification_key_files`.
    verifying: Vec<VerifyingKey>,
    issuer: String,
    audience: String,
    ttl: Duration,
    not_before: Option<SystemTime>,
    /// The key of password versions, derived from the signing key.
    password_key: Option<PasswordKey>,
}

/// The key of the password-version digest: HMAC-SHA256 of a fixed label under the signing
/// key's secret, so every node with the same signing key derives the same key and nobody
/// without it can compute (or search for) a version.
struct PasswordKey(Hmac<Sha256>);

/// The label of the derivation: a key for this purpose only, never the signing key itself.
const PASSWORD_KEY_LABEL: &[u8] = b"kube-ldap-webhook password version key v1";

impl PasswordKey {
    fn derive(signing: &SigningKey) -> Option<PasswordKey> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(signing.secret.as_bytes()).ok()?;
        mac.update(PASSWORD_KEY_LABEL);
        let key = mac.finalize().into_bytes();
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .ok()
            .map(PasswordKey)
    }
}

/// A key: never in Debug output.
impl std::fmt::Debug for PasswordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordKey(<redacted>)")
    }
}

/// The claims of a token, as signed.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    /// The directory's stable uid, as the review renders it.
    sub: String,
    /// The directory of the entry (`[directories.NAME]`); absent for `[ldap]`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    dir: String,
    /// The entry's DN, for the re-check.
    dn: String,
    /// The Kubernetes username, prefix included.
    name: String,
    /// The name as typed at the login (NFKC): the re-check fills `ldap.user.filter` from
    /// it as the login's search did. Absent in tokens from before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    login: String,
    /// The account's password version at login: a digest of its password-change
    /// attributes keyed with a key derived from the signing key (see
    /// [`Tokens::password_version`]), so that it tells nothing about when the password
    /// was changed; a password change since then makes the token expired.
    pwv: String,
    iat: String,
    nbf: String,
    exp: String,
    jti: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Footer {
    kid: String,
}

/// Who a token is for; what the login endpoint signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subject {
    pub uid: String,
    /// The directory the account lives in: empty for `[ldap]`, `NAME` for
    /// `[directories.NAME]`.
    pub directory: String,
    pub dn: String,
    pub username: String,
    /// The name as typed at the login; empty in tokens that did not record it.
    pub login: String,
    pub password_version: String,
}

/// A verified token: who, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verified {
    pub subject: Subject,
    pub expires: SystemTime,
    /// Signed by this node's signing key: only then is its password version one this node
    /// can recompute (the key of the digest is derived from the signing key).
    pub signed_here: bool,
    /// The token's id (`jti`), which audit events name it by.
    pub jti: String,
}

/// A freshly signed token.
pub(crate) struct Issued {
    pub token: String,
    /// `exp` in RFC 3339, as the reply and the token write it.
    pub expiration_timestamp: String,
    /// Its `jti`, which audit events name it by.
    pub id: String,
}

/// The token is a credential until it expires: never in Debug output.
impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("token", &"<redacted>")
            .field("expiration_timestamp", &self.expiration_timestamp)
            .finish()
    }
}

/// Why a token with our prefix is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// Genuine, but past `exp`: "Credentials are expired".
    Expired,
    /// Anything else: the generic rejection. The text is for the log.
    Invalid(&'static str),
}

/// Why no token could be signed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SignError {
    #[error("no tokens.signing_key_file")]
    NoKey,
    #[error("signing failed")]
    Sign,
}

pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    // Whole seconds: the claims stay short and compare as written.
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

fn parse_time(s: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// `tokens.not_before` and the like: an RFC 3339 time, or why not.
pub(crate) fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    parse_time(s.trim())
        .ok_or_else(|| format!("`{s}` is not an RFC 3339 time like \"2024-05-01T12:00:00Z\""))
}

impl Tokens {
    pub(crate) fn new(
        signing: Option<SigningKey>,
        verifying: Vec<VerifyingKey>,
        issuer: String,
        audience: String,
        ttl: Duration,
        not_before: Option<SystemTime>,
    ) -> Tokens {
        let mut all: Vec<VerifyingKey> = signing.iter().map(|k| k.public.clone()).collect();
        for k in verifying {
            if !all.iter().any(|a| a.kid == k.kid) {
                all.push(k);
            }
        }
        Tokens {
            password_key: signing.as_ref().and_then(PasswordKey::derive),
            signing,
            verifying: all,
            issuer,
            audience,
            ttl,
            not_before,
        }
    }

    /// Whether any key verifies tokens: without one, no token of ours can be valid.
    pub(crate) fn enabled(&self) -> bool {
        !self.verifying.is_empty()
    }

    /// The key ids accepted, signing key first; for the start-up log line.
    pub(crate) fn key_ids(&self) -> Vec<&str> {
        self.verifying.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The key password versions are made under (derived from the signing key); `None`
    /// without a signing key: no token is signed then, and no token's version can be
    /// checked. The directory's `state::password_version` reads the attributes under it.
    pub(crate) fn password_key(&self) -> Option<&Hmac<Sha256>> {
        self.password_key.as_ref().map(|k| &k.0)
    }

    /// Signs a token for `subject`, valid from `now` for `login.token_ttl`.
    pub(crate) fn sign(&self, subject: &Subject, now: SystemTime) -> Result<Issued, SignError> {
        let key = self.signing.as_ref().ok_or(SignError::NoKey)?;
        let iat = now;
        let expires = iat + self.ttl;
        let mut jti = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut jti);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.uid.clone(),
            dir: subject.directory.clone(),
            dn: subject.dn.clone(),
            name: subject.username.clone(),
            login: subject.login.clone(),
            pwv: subject.password_version.clone(),
            iat: rfc3339(iat),
            nbf: rfc3339(iat),
            exp: rfc3339(expires),
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SignError::Sign)?;
        let footer = serde_json::to_vec(&Footer {
            kid: key.public.kid.clone(),
        })
        .map_err(|_| SignError::Sign)?;
        let token = PublicToken::sign(&key.secret, &payload, Some(&footer), None)
            .map_err(|_| SignError::Sign)?;
        Ok(Issued {
            token,
            expiration_timestamp: claims.exp,
            id: claims.jti,
        })
    }

    /// Checks a token with our prefix: shape, key, signature, then the claims. Nothing here
    /// touches the directory.
    pub(crate) fn verify(&self, token: &str, now: SystemTime) -> Result<Verified, VerifyError> {
        let token = token.trim();
        if token.len() > MAX_LEN {
            return Err(VerifyError::Invalid("oversized token"));
        }
        let untrusted = UntrustedToken::<Public, V4>::try_from(token)
            .map_err(|_| VerifyError::Invalid("malformed token"))?;
        let footer: Footer = serde_json::from_slice(untrusted.untrusted_footer())
            .map_err(|_| VerifyError::Invalid("no key id in the footer"))?;
        let key = self
            .verifying
            .iter()
            .find(|k| k.kid == footer.kid)
            .ok_or(VerifyError::Invalid("unknown key id"))?;
        PublicToken::verify(&key.key, &untrusted, None, None)
            .map_err(|_| VerifyError::Invalid("bad signature"))?;
        // Signed by one of our keys from here on.
        let claims: Claims = serde_json::from_slice(untrusted.untrusted_payload())
            .map_err(|_| VerifyError::Invalid("malformed claims"))?;
        let signed_here = self
            .signing
            .as_ref()
            .is_some_and(|s| s.public.kid == key.kid);
        self.check(claims, now, signed_here)
    }

    fn check(
        &self,
        c: Claims,
        now: SystemTime,
        signed_here: bool,
    ) -> Result<Verified, VerifyError> {
        if c.iss != self.issuer || c.aud != self.audience {
            return Err(VerifyError::Invalid("another issuer or audience"));
        }
        let (Some(iat), Some(nbf), Some(exp)) =
            (parse_time(&c.iat), parse_time(&c.nbf), parse_time(&c.exp))
        else {
            return Err(VerifyError::Invalid("malformed times"));
        };
        if exp.duration_since(iat).map_or(true, |life| life > MAX_TTL) {
            return Err(VerifyError::Invalid("lifetime longer than 24h"));
        }
        if self.not_before.is_some_and(|nb| iat < nb) {
            return Err(VerifyError::Invalid("issued before tokens.not_before"));
        }
        if nbf > now + LEEWAY || iat > now + LEEWAY {
            return Err(VerifyError::Invalid("not yet valid"));
        }
        if exp <= now {
            return Err(VerifyError::Expired);
        }
        if c.sub.is_empty() || c.dn.is_empty() || c.name.is_empty() {
            return Err(VerifyError::Invalid("empty subject"));
        }
        Ok(Verified {
            subject: Subject {
                uid: c.sub,
                directory: c.dir,
                dn: c.dn,
                username: c.name,
                login: c.login,
                password_version: c.pwv,
            },
            expires: exp,
            signed_here,
            jti: c.jti,
        })
    }
}

#[cfg(test)]
mod tests;
