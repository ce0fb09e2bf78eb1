//! How a review ended: one [`Outcome`] with its reply and cache policy, where the answer
//! came from, and the log line's facts.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::directory::AccountState;
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
