//! The policy of one review, as one straight line:
//! decode token -> cache lookup -> single flight -> find the account -> lockout check ->
//! verify the password (or spend a decoy's work on a name that matched nothing) ->
//! identity -> cache store. Every review ends in exactly one [`Outcome`].
//!
//! The directory sits behind [`Backend`], so this policy is unit-tested against a fake
//! directory with tokio's paused clock (see `tests` below); the integration tests prove it
//! against real slapd and Samba.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::audit::Audit;
use crate::cache::{AnswerCache, CacheKey, Cached, Keyer, Lookup};
use crate::clock::now;
use crate::config::Config;
use crate::directory::{Backend, Directories, Failure, RejectReason};
use crate::issued::Subject;
use crate::lockout::{Lockout, Trust};
use crate::login::Login;
use crate::metrics::{EventLabels, Metrics, ReviewLabels};
use crate::throttle::Throttle;
use crate::token::{self, Refusal};
use crate::tokenreview::User;

pub(crate) use crate::outcome::{Outcome, PasswordNotice, Review, Source};

/// What a directory round trip produced, shared with every waiter of the same token.
#[derive(Debug, Clone)]
struct Resolved {
    outcome: Outcome,
    username: Option<String>,
    detail: Cow<'static, str>,
    /// Decided by lockout protection without a bind; not cached.
    local: bool,
    /// With an accepted answer from the directory: who, for a login to sign. Outside the
    /// cached [`User`], which would carry it (five strings) for every cached answer.
    account: Option<Box<Subject>>,
    /// The directory the login was routed to.
    directory: Option<usize>,
    /// With an accepted answer: the password's expiry, for a login to tell.
    password: Option<PasswordNotice>,
}

impl Resolved {
    fn new(
        outcome: Outcome,
        username: Option<&Login>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Resolved {
        Resolved {
            outcome,
            username: username.map(|l| l.typed().to_string()),
            detail: detail.into(),
            local: false,
            account: None,
            directory: None,
            password: None,
        }
    }

    /// Marks the answer as the directory of `login`'s.
    fn at(mut self, login: &Login) -> Resolved {
        self.directory = Some(login.directory());
        self
    }

    /// The log line names the account as the directory spells it (`name`) rather than as
    /// typed, where it names one at all: only once the directory confirmed the account.
    fn confirmed_as(mut self, name: Option<String>) -> Resolved {
        if self.username.is_some() && name.is_some() {
            self.username = name;
        }
        self
    }

    fn locked_out() -> Resolved {
        Resolved {
            local: true,
            ..Resolved::new(Outcome::Rejected, None, "lockout protection")
        }
    }
}

/// The review policy over a directory `B` (the LDAP client in the daemon, a fake in tests).
pub(crate) struct Authenticator<B: Backend = Directories> {
    config: Arc<Config>,
    directory: Arc<B>,
    cache: AnswerCache,
    keyer: Keyer,
    lockout: Arc<Lockout>,
    /// `login.max_logins_per_directory`, per directory.
    ceiling: Ceiling,
    inflight: Mutex<HashMap<CacheKey, Flight>>,
    metrics: Arc<Metrics>,
    /// The counters of the common case, an accepted token found in the cache, looked up in
    /// their families once rather than at every review (each lookup hashes a label set
    /// under a lock). Created at first use, so /metrics shows the same series as before.
    accepted_from_cache: OnceLock<Counter>,
    cache_hits: OnceLock<Counter>,
    reserved_log: Throttle,
    /// The daemon's audit stream (lockout starts are recorded here).
    audit: Arc<Audit>,
}

impl<B: Backend> Authenticator<B> {
    /// `lockout` outlives reloads: the daemon hands the same one to every runtime.
    pub(crate) fn new(
        config: Arc<Config>,
        directory: Arc<B>,
        lockout: Arc<Lockout>,
        metrics: Arc<Metrics>,
        audit: Arc<Audit>,
    ) -> Authenticator<B> {
        Authenticator {
            cache: AnswerCache::new(&config.cache, metrics.clone()),
            keyer: Keyer::random(),
            lockout,
            ceiling: Ceiling::new(&config, &metrics),
            inflight: Mutex::new(HashMap::new()),
            config,
            directory,
            metrics,
            accepted_from_cache: OnceLock::new(),
            cache_hits: OnceLock::new(),
            reserved_log: Throttle::new(Duration::from_secs(60)),
            audit,
        }
    }

    pub(crate) fn directory(&self) -> &Arc<B> {
        &self.directory
    }

    pub(crate) fn cached_entries(&self) -> usize {
        self.cache.len()
    }

    /// Answers one review before `deadline`.
    pub(crate) async fn review(self: &Arc<Self>, token: &str, deadline: Instant) -> Review {
        let started = now();
        let review = self.decide(token, deadline, started).await;
        if let (Outcome::Accepted(_), Source::Cache) = (&review.outcome, review.source) {
            self.accepted_from_cache
                .get_or_init(|| self.review_counter(&review))
                .inc();
        } else {
            self.review_counter(&review).inc();
        }
        self.metrics
            .review_seconds
            .observe(now().saturating_duration_since(started).as_secs_f64());
        review
    }

    fn review_counter(&self, review: &Review) -> Counter {
        self.metrics
            .reviews
            .get_or_create(&ReviewLabels {
                outcome: review.outcome.label(),
                source: review.source.label(),
            })
            .clone()
    }

    async fn decide(self: &Arc<Self>, token: &str, deadline: Instant, at: Instant) -> Review {
        if crate::issued::is_issued(token) {
            return self.decide_issued(token, deadline, at).await;
        }
        if !self.config.tokens.accept_basic {
            return local(
                Outcome::NotOurs,
                "basic tokens are off (tokens.accept_basic)",
            );
        }
        self.decide_basic(token, deadline, at, true).await
    }

    /// A basic token; `use_cache` false (a login) always asks the directory.
    async fn decide_basic(
        self: &Arc<Self>,
        token: &str,
        deadline: Instant,
        at: Instant,
        use_cache: bool,
    ) -> Review {
        // Only a token that decoded is ever cached, so the cache is asked first: an accepted
        // hit needs nothing of the decoded token (its log line names the cached user).
        let key = self.keyer.key(token);
        let lookup = self.cache.get(&key, at);
        if let (Lookup::Fresh(Cached::Accepted(user)), true) = (&lookup, use_cache) {
            return self.hit(Cached::Accepted(user.clone()), None);
        }
        let creds = match token::decode(token) {
            Ok(c) => c,
            Err(Refusal::NotOurs) => return local(Outcome::NotOurs, "not a basic token"),
            Err(Refusal::Invalid) => {
                return local(Outcome::Rejected, "empty or malformed username or password")
            }
        };
        // A token accepted before is trusted with the directory's verdict even while
        // someone else's wrong passwords hold the account's lockout budget; a login of the
        // same credential too, though its answer never comes from the cache.
        let (stale, trust) = match lookup {
            Lookup::Fresh(cached) if use_cache => return self.hit(cached, Some(creds.username)),
            Lookup::Fresh(Cached::Accepted(_)) => (None, Trust::AcceptedBefore),
            Lookup::Stale(user, age) => (use_cache.then_some((user, age)), Trust::AcceptedBefore),
            Lookup::Fresh(_) | Lookup::Miss => (None, Trust::Unknown),
        };
        self.metrics.cache_event("miss");

        let reuse = Reuse {
            stale,
            until: None,
            use_cache,
            name: Some(creds.username.clone()),
        };
        let auth = self.clone();
        let (login, password, ceiling) = (creds.username, creds.password, !use_cache);
        let work = move || async move {
            auth.resolve(&login, &password, trust, ceiling, deadline)
                .await
        };
        // Boxed: the wait for the round trip would otherwise be inline in every review's
        // future, a hit's too, which HTTP/2 allocates per stream (a task each).
        self.fly(key, work, reuse, deadline).await
    }

    /// A cached answer. The log line names an accepted user as the directory did; other
    /// answers keep no name, so theirs is `username`, the login as typed, if given.
    fn hit(&self, cached: Cached, username: Option<String>) -> Review {
        self.cache_hits
            .get_or_init(|| {
                self.metrics
                    .cache_events
                    .get_or_create(&EventLabels { event: "hit" })
                    .clone()
            })
            .inc();
        // An accepted answer's name is the cached user's (`Review::name`): not copied here.
        let (username, outcome) = match cached {
            Cached::Accepted(u) => (None, Outcome::Accepted(u)),
            Cached::Rejected => (None, Outcome::Rejected),
            Cached::AccountState(s) => (username, Outcome::AccountState(s)),
        };
        Review {
            outcome,
            source: Source::Cache,
            username,
            detail: Cow::Borrowed("cached"),
            account: None,
            directory: None,
            token_id: None,
            password: None,
        }
    }

    /// Only an outage (every server unreachable, timed out or busy) is bridged.
    fn serve_stale(&self, user: Arc<User>, age: Duration, resolved: &Resolved) -> Review {
        self.metrics.cache_event("stale");
        self.metrics
            .stale_served_age_seconds
            .observe(age.as_secs_f64());
        Review {
            username: Some(user.username().to_string()),
            outcome: Outcome::Accepted(user),
            source: Source::Stale(age),
            detail: Cow::Owned(format!(
                "LDAP unavailable ({}); served a stale answer",
                resolved.detail
            )),
            account: None,
            directory: resolved.directory,
            token_id: None,
            password: None,
        }
    }
}

/// A failure's outcome. Only the names the directory confirmed are logged.
fn failed(f: Failure, login: &Login) -> Resolved {
    match f {
        Failure::Rejected(reason) => {
            let confirmed = reason == RejectReason::WrongPassword;
            Resolved::new(
                Outcome::Rejected,
                confirmed.then_some(login),
                reason.label(),
            )
        }
        Failure::AccountState(s) => Resolved::new(Outcome::AccountState(s), Some(login), s.label()),
        Failure::Outage(why) => Resolved::new(Outcome::Unavailable, None, why),
        Failure::Error(why) => Resolved::new(Outcome::BackendError, None, why),
    }
}

fn local(outcome: Outcome, why: &'static str) -> Review {
    Review {
        outcome,
        source: Source::Local,
        username: None,
        detail: Cow::Borrowed(why),
        account: None,
        directory: None,
        token_id: None,
        password: None,
    }
}

mod basic;
mod ceiling;
mod flight;
mod issued;
#[cfg(test)]
mod login_tests;
mod negotiate;
#[cfg(test)]
mod negotiate_tests;
#[cfg(test)]
mod tests;

use ceiling::Ceiling;
use flight::{Flight, Reuse};
