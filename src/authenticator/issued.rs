//! Issued tokens in the review policy, and logins.
//!
//! An issued token is looked up in the cache under the HMAC of the whole token, as a basic
//! token is: the cache only ever holds answers for tokens whose signature was checked, so
//! a repeat review costs what a basic cache hit costs. On a miss the token is verified
//! (shape, key, signature, claims: no LDAP traffic for a token that fails), then the
//! account is re-checked with the service account in a single flight: still there, still
//! the same uid and name, no account state, password unchanged, groups read now. The
//! answer is cached like a basic token's, but never past the token's `exp`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{failed, local, Authenticator, Outcome, Resolved, Reuse, Review};
use crate::cache::Lookup;
use crate::clock::now;
use crate::directory::{Backend, Failure};
use crate::issued::{Verified, VerifyError};

impl<B: Backend> Authenticator<B> {
    pub(super) async fn decide_issued(
        self: &Arc<Self>,
        token: &str,
        deadline: Instant,
        at: Instant,
    ) -> Review {
        self.decide_session(token, deadline, at, true).await.0
    }

    /// An exchange of a session (an issued token) for a JWT (`POST /token`): the review of
    /// that token, except that the answer cache never answers. An accepted answer may be
    /// `cache.ttl` old, and a JWT handed out on it would keep a disabled account or a
    /// removed group in kube-apiserver for that long plus the JWT's life; the issue wants
    /// them stopped at the next exchange. One directory read per exchange is cheap: a
    /// user exchanges once per `jwt.token_ttl`, where a webhook user is reviewed once per
    /// request kube-apiserver has not cached. For the same reason no stale answer bridges
    /// an outage. The fresh answer is cached for the reviews of the session token.
    ///
    /// Returns the session's expiry with an accepted answer: no JWT may outlive it.
    pub(crate) async fn exchange(
        self: &Arc<Self>,
        token: &str,
        deadline: Instant,
    ) -> (Review, Option<SystemTime>) {
        if !crate::issued::is_issued(token) {
            return (
                local(Outcome::Rejected, "not a session (issued) token"),
                None,
            );
        }
        self.decide_session(token, deadline, now(), false).await
    }

    /// An issued token; `use_cache` false (an exchange) always asks the directory.
    async fn decide_session(
        self: &Arc<Self>,
        token: &str,
        deadline: Instant,
        at: Instant,
        use_cache: bool,
    ) -> (Review, Option<SystemTime>) {
        let tokens = &self.config.tokens.issued;
        if !tokens.enabled() {
            let why = "issued token, but no token keys configured";
            let outcome = if use_cache {
                Outcome::NotOurs
            } else {
                Outcome::Rejected
            };
            return (local(outcome, why), None);
        }
        let token = token.trim();
        let key = self.keyer.key(token);
        let stale = match use_cache.then(|| self.cache.get(&key, at)) {
            Some(Lookup::Fresh(cached)) => return (self.hit(cached, None), None),
            Some(Lookup::Stale(user, age)) => Some((user, age)),
            Some(Lookup::Miss) | None => None,
        };
        let wall = crate::clock::wall();
        let verified = match tokens.verify(token, wall) {
            Ok(v) => v,
            Err(VerifyError::Expired) => {
                return (local(Outcome::TokenExpired, "issued token expired"), None)
            }
            Err(VerifyError::Invalid(why)) => return (local(Outcome::Rejected, why), None),
        };
        self.metrics.cache_event("miss");
        let expires = verified.expires;
        let left = expires.duration_since(wall).unwrap_or_default();
        let until = at + left;
        let reuse = Reuse {
            stale,
            until: Some(until),
            use_cache,
            name: None,
        };
        let auth = self.clone();
        let work = move || async move { auth.resolve_issued(&verified, deadline).await };
        // Boxed, as in decide_basic: a hit's future stays small.
        let review = self.fly(key, work, reuse, deadline).await;
        (review, Some(expires))
    }

    /// The re-check of a verified token's account, as the leader of its single flight:
    /// the directory reads the entry if the user filter still matches it, and the login's
    /// policy decides ([`Authenticator::admit`]).
    pub(super) async fn resolve_issued(&self, v: &Verified, deadline: Instant) -> Resolved {
        let s = &v.subject;
        let Some(login) = self.config.login_of(&s.directory, &s.username, &s.login) else {
            return Resolved::new(
                Outcome::Rejected,
                None,
                "the token's directory or prefix is no longer configured",
            );
        };
        match self
            .directory
            .recheck(&v.subject.dn, &login, deadline)
            .await
        {
            Ok(found) => {
                let resolved = self.admit(found, &login, Some(v));
                match resolved.outcome {
                    Outcome::Accepted(_) => Resolved {
                        detail: Cow::Borrowed("re-checked"),
                        ..resolved
                    },
                    _ => resolved,
                }
            }
            // The entry is gone, or the user filter no longer admits it: nobody to accept.
            Err(Failure::Rejected(_)) => Resolved::new(
                Outcome::Rejected,
                None,
                "the token's account is gone or no longer matches ldap.user.filter",
            ),
            Err(f) => failed(f, &login),
        }
    }

    /// A login: the policy of a review of this basic token (decode, lockout, single flight,
    /// directory, identity), except that the directory is always asked (a cached answer
    /// is not a password check) and `tokens.accept_basic` does not apply.
    pub(crate) async fn login(self: &Arc<Self>, credentials: &str, deadline: Instant) -> Review {
        self.decide_basic(credentials, deadline, now(), false).await
    }

    /// Whether a review would accept `token` now (`GET /login`): a review without its
    /// metrics, so that checks do not count as kube-apiserver's reviews.
    pub(crate) async fn check(self: &Arc<Self>, token: &str, deadline: Instant) -> Review {
        self.decide(token, deadline, now()).await
    }
}
