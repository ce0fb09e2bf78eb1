//! How a review ended: one [`Outcome`] with its reply and cache policy, where the answer
//! came from, and the log line's facts.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::directory::{AccountState, PasswordWarning};
use crate::tokenreview::User;

/// The same text for every plain rejection, so that nobody can tell an unknown user from a
/// wrong password.
pub(crate) const REJECTED: &str = "Invalid username or password";
pub(crate) const UNAVAILABLE: &str = "Authentication backend unavailable";

/// Every review ends in exactly one of these.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Accepted(Arc<User>),
    /// Not a token of ours; answered without an error so kube-apiserver caches it.
    NotOurs,
    Rejected,
    AccountState(AccountState),
    /// A genuine issued token past its `exp`: "Credentials are expired", decided from the
    /// token alone.
    TokenExpired,
    /// Every directory server failed at the transport level, timed out or said it was busy:
    /// the one case where an accepted answer may be served stale. Never cached.
    Unavailable,
    /// The directory answered, but not about the user (an odd result code, a limit, a full
    /// pool): the same reply as `Unavailable`, but never bridged with a stale answer.
    BackendError,
}

impl Outcome {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "accepted",
            Outcome::NotOurs => "not_ours",
            Outcome::Rejected => "rejected",
            Outcome::AccountState(s) => s.label(),
            Outcome::TokenExpired => "token_expired",
            Outcome::Unavailable => "unavailable",
            Outcome::BackendError => "backend_error",
        }
    }

    /// `status.error` of the reply.
    pub(crate) fn error(&self) -> Option<&'static str> {
        match self {
            Outcome::Accepted(_) | Outcome::NotOurs => None,
            Outcome::Rejected => Some(REJECTED),
            Outcome::AccountState(s) => Some(s.message()),
            Outcome::TokenExpired => Some(AccountState::PasswordExpired.message()),
            Outcome::Unavailable | Outcome::BackendError => Some(UNAVAILABLE),
        }
    }

    pub(crate) fn user(&self) -> Option<&User> {
        match self {
            Outcome::Accepted(u) => Some(u),
            _ => None,
        }
    }
}

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// Decided from the token alone or by lockout protection: no bind.
    Local,
    Cache,
    Directory,
    /// Waited for another review of the same token.
    Coalesced,
    /// An accepted answer this old, served because every LDAP server is down.
    Stale(Duration),
}

impl Source {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Cache => "cache",
            Source::Directory => "ldap",
            Source::Coalesced => "coalesced",
            Source::Stale(_) => "stale",
        }
    }
}

/// One answered review, with what its log line says.
#[derive(Debug, Clone)]
pub(crate) struct Review {
    pub outcome: Outcome,
    pub source: Source,
    /// The login name, only once the directory confirmed that it exists.
    pub username: Option<String>,
    /// Why, for the log line (never a secret).
    pub detail: Cow<'static, str>,
    /// Who the directory said this is, when it said so in this review's round trip: what a
    /// login signs. Not kept in the cache, whose answers never sign anything.
    pub account: Option<Box<crate::issued::Subject>>,
    /// The directory the credential was checked at (0 for `[ldap]`), when one was chosen.
    pub directory: Option<usize>,
    /// The `jti` of a verified issued token, for the audit event.
    pub token_id: Option<String>,
    /// What the directory said about the password's expiry in this round trip, for the
    /// login answer to pass on to the user.
    pub password: Option<PasswordNotice>,
}

/// More grace logins than any policy grants: a count beyond is not told.
const MOST_GRACE_LOGINS: u64 = 10_000;

/// A password about to expire, as a login answer tells the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PasswordNotice {
    /// The password expires at this time.
    ExpiresAt(SystemTime),
    /// The password has expired; this many grace logins are left.
    GraceLogins(u64),
}

impl PasswordNotice {
    /// What the user is told of a bind's `warning` at `now`: an expiry within `window`
    /// (`login.password_expiry_warning`; zero tells none), every grace login. A directory
    /// that warns earlier than the window is not passed on, nor is an expiry no clock
    /// can hold (a directory's absurd number of seconds).
    pub(crate) fn of(
        warning: PasswordWarning,
        window: Duration,
        now: SystemTime,
    ) -> Option<PasswordNotice> {
        match warning {
            PasswordWarning::Expiring(secs) => {
                let left = Duration::from_secs(secs);
                (left <= window && !window.is_zero())
                    .then(|| now.checked_add(left))
                    .flatten()
                    .map(PasswordNotice::ExpiresAt)
            }
            PasswordWarning::GraceLogins(n) => {
                (n <= MOST_GRACE_LOGINS).then_some(PasswordNotice::GraceLogins(n))
            }
        }
    }
}

impl Review {
    /// The name the log line shows: the login name, or an accepted user's as the directory
    /// spells it (a cache hit keeps that in the cached user instead of copying it here).
    pub(crate) fn name(&self) -> Option<&str> {
        self.username
            .as_deref()
            .or_else(|| self.outcome.user().map(User::username))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    const WINDOW: Duration = Duration::from_secs(14 * DAY);

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000)
    }

    #[test]
    fn an_expiry_within_the_window_is_told_as_a_time() {
        let n = PasswordNotice::of(PasswordWarning::Expiring(3 * DAY), WINDOW, at());
        assert_eq!(
            n,
            Some(PasswordNotice::ExpiresAt(
                at() + Duration::from_secs(3 * DAY)
            ))
        );
    }

    #[test]
    fn an_expiry_beyond_the_window_or_absurdly_far_is_not_told() {
        for secs in [15 * DAY, u64::MAX, u64::MAX / 2] {
            let n = PasswordNotice::of(PasswordWarning::Expiring(secs), WINDOW, at());
            assert_eq!(n, None, "{secs}");
        }
    }

    #[test]
    fn an_absurd_number_of_grace_logins_is_not_told() {
        let n = PasswordNotice::of(PasswordWarning::GraceLogins(u64::MAX), WINDOW, at());
        assert_eq!(n, None);
    }

    #[test]
    fn a_zero_window_tells_no_expiry_but_still_tells_grace_logins() {
        let zero = Duration::ZERO;
        let n = PasswordNotice::of(PasswordWarning::Expiring(0), zero, at());
        assert_eq!(n, None);
        let n = PasswordNotice::of(PasswordWarning::GraceLogins(2), zero, at());
        assert_eq!(n, Some(PasswordNotice::GraceLogins(2)));
    }
}
