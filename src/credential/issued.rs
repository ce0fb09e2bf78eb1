//! The issued-token mode of the plugin (`--login-url`). Under the slot's lock: a cached
//! token valid for long enough is checked with the daemon (`GET /login`) and printed; one
//! the daemon refuses, or one about to expire, is forgotten and replaced by a fresh login
//! (`POST /login`), so a token the daemon no longer accepts costs one prompt, never a
//! stuck 401 loop. A daemon that cannot be asked leaves the verdict to kube-apiserver.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::cache::{self, Cache, Entry, Held, Kind, Plan};
use super::kerberos;
use super::login::{self, Check, Endpoint, Issued, Trust};
use super::prompt::Sources;
use super::{exec_credential, CredentialError, Login};

pub(super) fn warn(text: impl std::fmt::Display) {
    eprintln!("kube-ldap-webhook: {text}");
}

fn open_cache() -> Result<Cache, CredentialError> {
    let dir = cache::location(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))?;
    Ok(Cache::open(dir)?)
}

/// `--logout`: forgets the cached tokens of the login URL (of that username only, when one
/// is given).
pub(super) fn logout(l: &Login<'_>, username: Option<&str>) -> Result<(), CredentialError> {
    let url = login::login_url(l.url)?;
    open_cache()?.forget_all(url.as_str(), username)?;
    Ok(())
}

/// What to do with a cached token.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Print it; with a warning when the daemon could not be asked.
    Use(Option<String>),
    /// Forget it and log in; with the daemon's reason when it refused the token.
    LogIn(Option<String>),
}

/// The decision for a token expiring at `expires`; `check` asks the daemon and is called
/// only for a token that is still valid for long enough.
fn decide(expires: OffsetDateTime, now: OffsetDateTime, check: impl FnOnce() -> Check) -> Decision {
    match cache::plan(expires, now) {
        Plan::LogIn => Decision::LogIn(None),
        Plan::Check => match check() {
            Check::Accepted => Decision::Use(None),
            Check::Refused(why) => Decision::LogIn(Some(format!(
                "the cached token is no longer accepted ({why}): logging in again"
            ))),
            Check::Unsettled(why) => Decision::Use(Some(format!(
                "cannot check the cached token with the login endpoint ({why}); using it"
            ))),
        },
    }
}

/// The login endpoint of `--login-url` with the trust of `--ca-file`/`--ca-data`.
pub(super) fn endpoint(l: &Login<'_>) -> Result<Endpoint, CredentialError> {
    let url = login::login_url(l.url)?;
    let trust = match (l.ca_file, l.ca_data) {
        (Some(f), _) => Trust::File(f),
        (None, Some(d)) => Trust::Data(d),
        (None, None) => Trust::System,
    };
    Ok(Endpoint::new(url, trust)?)
}

/// The cache slot of this endpoint and username, locked: one run at a time logs in.
pub(super) fn with_slot<T>(
    endpoint: &Endpoint,
    sources: &Sources<'_>,
    then: impl FnOnce(&Held<'_>) -> Result<T, CredentialError>,
) -> Result<T, CredentialError> {
    let cache = open_cache()?;
    let slot = cache.slot(endpoint.url(), sources.username.unwrap_or(""));
    let held = slot.lock(|| {
        warn(format_args!(
            "waiting for another run's login at {} to finish",
            endpoint.url()
        ))
    })?;
    then(&held)
}

/// The ExecCredential of the issued-token mode.
pub(super) fn credential(
    api_version: &str,
    sources: &Sources<'_>,
    l: &Login<'_>,
) -> Result<Zeroizing<String>, CredentialError> {
    let endpoint = endpoint(l)?;
    with_slot(&endpoint, sources, |held| {
        let entry = match cached_session(&endpoint, held)? {
            Some(entry) => entry,
            None => log_in(&endpoint, sources, l.kerberos, held)?,
        };
        Ok(exec_credential(
            api_version,
            &entry.token,
            Some(&entry.expiration_timestamp),
        ))
    })
}

/// The cached session if the daemon still accepts it (or cannot say), else `None` with
/// the session forgotten.
fn cached_session(endpoint: &Endpoint, held: &Held<'_>) -> Result<Option<Entry>, CredentialError> {
    if let Some(entry) = held.load(Kind::Session)? {
        // load() only returns entries whose expiry parses.
        let expires = entry.expires().unwrap_or(OffsetDateTime::UNIX_EPOCH);
        match decide(expires, OffsetDateTime::now_utc(), || {
            endpoint.check(&entry.token)
        }) {
            Decision::Use(warning) => {
                if let Some(w) = warning {
                    warn(w);
                }
                return Ok(Some(entry));
            }
            Decision::LogIn(notice) => {
                if let Some(n) = notice {
                    warn(n);
                }
                held.forget(Kind::Session)?;
            }
        }
    }
    Ok(None)
}

/// Gets a new session (the user's Kerberos ticket first when `kerberos`, else the login
/// prompts as it must) and keeps it in the slot.
pub(super) fn log_in(
    endpoint: &Endpoint,
    sources: &Sources<'_>,
    kerberos: bool,
    held: &Held<'_>,
) -> Result<Entry, CredentialError> {
    let (issued, username) = kerberos::log_in(
        kerberos.then_some(|| kerberos::attempt(endpoint, sources.username)),
        sources.username,
        || {
            let username = sources.username()?;
            let password = sources.password(&username)?;
            Ok((endpoint.login(&username, &password)?, username))
        },
    )?;
    // Here and nowhere else: once per login, never again from the cache.
    if sources.expiry_warning {
        if let Some(line) = issued
            .password
            .as_ref()
            .and_then(|n| n.line(OffsetDateTime::now_utc()))
        {
            eprintln!("{line}");
        }
    }
    if cache::plan(issued.expires, OffsetDateTime::now_utc()) == Plan::LogIn {
        warn(format_args!(
            "the new token expires at {}, in less than {} minutes by this machine's clock: \
             every run will log in again (is login.token_ttl that short, or this clock off?)",
            issued.expiration_timestamp,
            cache::REFRESH_MARGIN.whole_minutes()
        ));
    }
    Ok(keep(held, Kind::Session, issued, endpoint, username))
}

/// The cache entry of a token that just came, stored in the slot.
pub(super) fn keep(
    held: &Held<'_>,
    kind: Kind,
    issued: Issued,
    endpoint: &Endpoint,
    username: String,
) -> Entry {
    let entry = Entry {
        token: issued.token,
        expiration_timestamp: issued.expiration_timestamp,
        login_url: endpoint.url().to_string(),
        username,
        obtained: OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok()),
    };
    // The token is good whether or not it could be kept: the next run asks again.
    if let Err(e) = held.store(kind, &entry) {
        warn(format_args!("cannot keep the token: {e}"));
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
    }

    fn hours(n: i64) -> OffsetDateTime {
        now() + time::Duration::hours(n)
    }

    #[test]
    fn an_accepted_token_is_used_silently() {
        assert_eq!(
            decide(hours(8), now(), || Check::Accepted),
            Decision::Use(None)
        );
    }

    #[test]
    fn a_refused_token_leads_to_a_new_login_with_the_reason() {
        let d = decide(hours(8), now(), || {
            Check::Refused("Credentials are expired".into())
        });
        let Decision::LogIn(Some(notice)) = d else {
            panic!("{d:?}")
        };
        assert!(notice.contains("Credentials are expired"), "{notice}");
    }

    #[test]
    fn a_token_the_daemon_cannot_judge_is_used_with_a_warning() {
        let d = decide(hours(8), now(), || {
            Check::Unsettled("connection refused".into())
        });
        let Decision::Use(Some(warning)) = d else {
            panic!("{d:?}")
        };
        assert!(warning.contains("connection refused"), "{warning}");
    }

    #[test]
    fn an_expired_or_expiring_token_is_replaced_without_asking_the_daemon() {
        for expires in [hours(-1), now() + time::Duration::minutes(4)] {
            let d = decide(expires, now(), || {
                panic!("no check for a token about to expire")
            });
            assert_eq!(d, Decision::LogIn(None));
        }
    }
}
