//! `credential --login-url URL --jwt`: the token kubectl gets is a short-lived JWT that
//! kube-apiserver verifies itself (its `--authentication-config` points at the daemon's
//! issuer). Under the slot's lock: a cached JWT valid for long enough is printed with no
//! network traffic at all; otherwise the cached session is exchanged at `POST /token`
//! (the daemon re-checks the account there), and only a session that is gone or refused
//! costs a login. A JWT that cannot be refreshed because the daemon cannot be reached is
//! still printed while kube-apiserver would take it; after that the run fails saying so.

use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::cache::{self, Entry, Held, Kind, Plan};
use super::issued::{self, warn};
use super::login::{Endpoint, LoginError};
use super::prompt::Sources;
use super::{exec_credential, CredentialError, Login};

/// A cached JWT is replaced this long before it expires at most, so that what kubectl
/// does with it does not outlive it (kube-apiserver allows no leeway on `exp`).
const MARGIN: time::Duration = time::Duration::seconds(30);

/// How early a JWT valid from `obtained` to `expires` is replaced: a quarter of its
/// lifetime, at most [`MARGIN`]; a short `token_ttl` then still leaves most of it in use.
fn margin(obtained: Option<OffsetDateTime>, expires: OffsetDateTime) -> time::Duration {
    match obtained {
        Some(o) if expires > o => MARGIN.min((expires - o) / 4),
        _ => MARGIN,
    }
}

/// What a cached JWT is good for at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cached {
    /// Valid for longer than its margin: print it.
    Fresh,
    /// Still valid, but due to be replaced: printed only if no new one can be had.
    Due,
    /// Expired, or none cached.
    Gone,
}

fn judge(jwt: Option<&Entry>, now: OffsetDateTime) -> Cached {
    let Some(expires) = jwt.and_then(Entry::expires) else {
        return Cached::Gone;
    };
    let obtained = jwt.and_then(Entry::obtained);
    if expires - now > margin(obtained, expires) {
        Cached::Fresh
    } else if expires > now {
        Cached::Due
    } else {
        Cached::Gone
    }
}

/// Whether a failed refresh means the daemon could not be asked (rather than a verdict
/// about the user, or a problem on this machine).
fn unreachable(e: &CredentialError) -> bool {
    let login = match e {
        CredentialError::Login(l) | CredentialError::Exchange(l) => l,
        _ => return false,
    };
    matches!(
        login,
        LoginError::Unreachable { .. }
            | LoginError::Unavailable(_)
            | LoginError::RateLimited(_)
            | LoginError::Status { .. }
    )
}

/// After a failed refresh: the cached JWT to print anyway with a warning, or the error to
/// show.
fn fallback(
    cached: Cached,
    jwt: Option<Entry>,
    failure: CredentialError,
) -> Result<(Entry, String), CredentialError> {
    if !unreachable(&failure) {
        return Err(failure);
    }
    match (cached, jwt) {
        (Cached::Due | Cached::Fresh, Some(jwt)) => {
            let warning = format!(
                "cannot refresh the token for kube-apiserver ({failure}); \
                 using the cached one until it expires at {}",
                jwt.expiration_timestamp
            );
            Ok((jwt, warning))
        }
        (_, jwt) => Err(CredentialError::CannotRefresh {
            last: match jwt {
                Some(j) => format!("the last one expired at {}", j.expiration_timestamp),
                None => "none is cached".into(),
            },
            source: Box::new(failure),
        }),
    }
}

/// The ExecCredential of the JWT mode.
pub(super) fn credential(
    api_version: &str,
    sources: &Sources<'_>,
    l: &Login<'_>,
) -> Result<Zeroizing<String>, CredentialError> {
    let endpoint = issued::endpoint(l)?;
    issued::with_slot(&endpoint, sources, |held| {
        let cached_jwt = held.load(Kind::Jwt)?;
        let cached = judge(cached_jwt.as_ref(), OffsetDateTime::now_utc());
        let jwt = match (cached, cached_jwt) {
            (Cached::Fresh, Some(jwt)) => jwt,
            (cached, cached_jwt) => match refresh(&endpoint, sources, l.kerberos, held) {
                Ok(jwt) => jwt,
                Err(failure) => {
                    let (jwt, warning) = fallback(cached, cached_jwt, failure)?;
                    warn(warning);
                    jwt
                }
            },
        };
        Ok(exec_credential(
            api_version,
            &jwt.token,
            Some(&jwt.expiration_timestamp),
        ))
    })
}

/// A new JWT for the cached session, or for a new one when it is gone or refused.
fn refresh(
    endpoint: &Endpoint,
    sources: &Sources<'_>,
    kerberos: bool,
    held: &Held<'_>,
) -> Result<Entry, CredentialError> {
    let session = held
        .load(Kind::Session)?
        .and_then(|s| s.expires().map(|e| (s, e)))
        .filter(|(_, e)| cache::plan(*e, OffsetDateTime::now_utc()) == Plan::Check);
    if let Some((session, _)) = session {
        match endpoint.exchange(&session.token) {
            Ok(jwt) => {
                return Ok(issued::keep(
                    held,
                    Kind::Jwt,
                    jwt,
                    endpoint,
                    session.username,
                ))
            }
            Err(LoginError::Refused(why)) => {
                warn(format_args!(
                    "the cached session is no longer accepted ({why}): logging in again"
                ));
                held.forget(Kind::Session)?;
            }
            Err(e) => return Err(CredentialError::Exchange(e)),
        }
    }
    let session = issued::log_in(endpoint, sources, kerberos, held)?;
    let jwt = endpoint
        .exchange(&session.token)
        .map_err(CredentialError::Exchange)?;
    Ok(issued::keep(
        held,
        Kind::Jwt,
        jwt,
        endpoint,
        session.username,
    ))
}

#[cfg(test)]
mod tests;
