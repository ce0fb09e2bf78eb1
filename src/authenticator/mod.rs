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
use tokio::sync::watch;

use crate::cache::{AnswerCache, CacheKey, Cached, Keyer, Lookup};
use crate::clock::now;
use crate::config::Config;
use crate::directory::state::password_version;
use crate::directory::{AccountState, Backend, Directories, Failure, Found, RejectReason};
use crate::identity;
use crate::lockout::{Key, Lockout, Refused, Trust};
use crate::login::Login;
use crate::metrics::{EventLabels, Metrics, ReviewLabels};
use crate::secret::Password;
use crate::throttle::Throttle;
use crate::token::{self, Refusal};
use crate::tokenreview::User;

pub(crate) use crate::outcome::{Outcome, Review, Source};

/// What a directory round trip produced, shared with every waiter of the same token.
#[derive(Debug, Clone)]
struct Resolved {
    outcome: Outcome,
    username: Option<String>,
    detail: Cow<'static, str>,
    /// Decided by lockout protection without a bind; not cached.
    local: bool,
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
        }
    }

    fn locked_out() -> Resolved {
        Resolved {
            local: true,
            ..Resolved::new(Outcome::Rejected, None, "lockout protection")
        }
    }
}

type Flight = watch::Receiver<Option<Resolved>>;

/// What joining a token's directory round trip found.
enum Joined {
    /// The answer arrived in the cache meanwhile.
    Answered(Cached),
    /// Wait on this flight; `true` when this review leads it.
    Waiting(Flight, bool),
}

/// What one directory round trip is to find out.
enum Work {
    /// A password: find the account, bind, read the groups.
    Basic {
        login: String,
        password: Password,
        trust: Trust,
    },
    /// A verified issued token: re-check the account and read the groups.
    Issued(crate::issued::Verified),
}

/// How a round trip's answer relates to the cache.
struct Reuse {
    /// An accepted answer past `cache.ttl` that may bridge an outage.
    stale: Option<(Arc<User>, Duration)>,
    /// The cached answer must not outlive this (an issued token's expiry).
    until: Option<Instant>,
    /// False for a login: a cached answer is never a password check.
    use_cache: bool,
}

impl Work {
    /// The login name as typed, for the log line of a cache hit.
    fn login_name(&self) -> Option<String> {
        match self {
            Work::Basic { login, .. } => Some(login.clone()),
            Work::Issued(_) => None,
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
    inflight: Mutex<HashMap<CacheKey, Flight>>,
    metrics: Arc<Metrics>,
    /// The counters of the common case, an accepted token found in the cache, looked up in
    /// their families once rather than at every review (each lookup hashes a label set
    /// under a lock). Created at first use, so /metrics shows the same series as before.
    accepted_from_cache: OnceLock<Counter>,
    cache_hits: OnceLock<Counter>,
    reserved_log: Throttle,
}

impl<B: Backend> Authenticator<B> {
    /// `lockout` outlives reloads: the daemon hands the same one to every runtime.
    pub(crate) fn new(
        config: Arc<Config>,
        directory: Arc<B>,
        lockout: Arc<Lockout>,
        metrics: Arc<Metrics>,
    ) -> Authenticator<B> {
        Authenticator {
            cache: AnswerCache::new(&config.cache, metrics.clone()),
            keyer: Keyer::random(),
            lockout,
            inflight: Mutex::new(HashMap::new()),
            config,
            directory,
            metrics,
            accepted_from_cache: OnceLock::new(),
            cache_hits: OnceLock::new(),
            reserved_log: Throttle::new(Duration::from_secs(60)),
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
        let creds = match token::decode(token) {
            Ok(c) => c,
            Err(Refusal::NotOurs) => return local(Outcome::NotOurs, "not a basic token"),
            Err(Refusal::Invalid) => {
                return local(Outcome::Rejected, "empty or malformed username or password")
            }
        };
        let key = self.keyer.key(token);
        let stale = match self.cache.get(&key, at) {
            _ if !use_cache => None,
            Lookup::Fresh(cached) => return self.hit(cached, Some(creds.username)),
            Lookup::Stale(user, age) => Some((user, age)),
            Lookup::Miss => None,
        };
        self.metrics.cache_event("miss");

        // A token accepted before is trusted with the directory's verdict even while
        // someone else's wrong passwords hold the account's lockout budget.
        let trust = match stale {
            Some(_) => Trust::AcceptedBefore,
            None => Trust::Unknown,
        };
        let work = Work::Basic {
            login: creds.username,
            password: creds.password,
            trust,
        };
        let reuse = Reuse {
            stale,
            until: None,
            use_cache,
        };
        self.fly(key, work, reuse, deadline).await
    }

    /// Runs `work` as the single flight of `key` (or waits for the one running) and turns
    /// what it resolved into the review; an outage is bridged with `stale` when there is one.
    async fn fly(
        self: &Arc<Self>,
        key: CacheKey,
        work: Work,
        how: Reuse,
        deadline: Instant,
    ) -> Review {
        let name = work.login_name();
        let (flight, leader) =
            match self.join_or_lead(key, work, how.until, how.use_cache, deadline) {
                Joined::Answered(cached) => return self.hit(cached, name),
                Joined::Waiting(flight, leader) => (flight, leader),
            };
        let stale = how.stale;
        let source = if leader {
            Source::Directory
        } else {
            self.metrics.cache_event("coalesced");
            Source::Coalesced
        };
        let resolved = wait(flight, deadline).await.unwrap_or_else(|| {
            Resolved::new(
                Outcome::Unavailable,
                None,
                "deadline reached waiting for LDAP",
            )
        });
        match (&resolved.outcome, stale) {
            (Outcome::Unavailable, Some((user, age))) => self.serve_stale(user, age, &resolved),
            _ => Review {
                outcome: resolved.outcome,
                source: if resolved.local {
                    Source::Local
                } else {
                    source
                },
                username: resolved.username,
                detail: resolved.detail,
            },
        }
    }

    /// A cached answer; `username` is the login name for the log line (the cached user's
    /// name when not given).
    fn hit(&self, cached: Cached, username: Option<String>) -> Review {
        self.cache_hits
            .get_or_init(|| {
                self.metrics
                    .cache_events
                    .get_or_create(&EventLabels { event: "hit" })
                    .clone()
            })
            .inc();
        let (outcome, username) = match cached {
            Cached::Accepted(u) => {
                let name = username.unwrap_or_else(|| u.username().to_string());
                (Outcome::Accepted(u), Some(name))
            }
            Cached::Rejected => (Outcome::Rejected, None),
            Cached::AccountState(s) => (Outcome::AccountState(s), username),
        };
        Review {
            outcome,
            source: Source::Cache,
            username,
            detail: Cow::Borrowed("cached"),
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
        }
    }

    /// Joins the directory round trip already running for this token, or starts one. The
    /// round trip runs in its own task: a client that goes away cannot cancel a bind halfway
    /// and leave the other waiters, the cache or the lockout count behind.
    fn join_or_lead(
        self: &Arc<Self>,
        key: CacheKey,
        work: Work,
        until: Option<Instant>,
        use_cache: bool,
        deadline: Instant,
    ) -> Joined {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = inflight.get(&key) {
            return Joined::Waiting(rx.clone(), false);
        }
        // A leader that finished between our cache miss and this lock stored its answer
        // before it left the table: look again, or this would be a second bind.
        if use_cache {
            if let Lookup::Fresh(cached) = self.cache.get(&key, now()) {
                return Joined::Answered(cached);
            }
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(key, rx.clone());
        drop(inflight);
        let leader = Leader {
            auth: self.clone(),
            key,
            until,
            tx: Some(tx),
        };
        tokio::spawn(async move {
            let resolved = match work {
                Work::Basic {
                    login,
                    password,
                    trust,
                } => {
                    leader
                        .auth
                        .resolve(&login, &password, trust, deadline)
                        .await
                }
                Work::Issued(verified) => leader.auth.resolve_issued(&verified, deadline).await,
            };
            leader.finish(resolved);
        });
        Joined::Waiting(rx, true)
    }

    async fn resolve(
        &self,
        raw: &str,
        password: &Password,
        trust: Trust,
        deadline: Instant,
    ) -> Resolved {
        let login = self.config.login(raw);
        let account = match self.directory.find(&login, deadline).await {
            Ok(a) => a,
            Err(Failure::Rejected(r @ (RejectReason::UnknownUser | RejectReason::Ambiguous))) => {
                return self.unknown(&login, password, r, deadline).await
            }
            Err(f) => return failed(f, &login),
        };
        let attempt = match self
            .lockout
            .begin(Key::account(&login.scoped(&account.dn)), trust, deadline)
            .await
        {
            Ok(a) => a,
            Err(refused) => return self.refused(refused),
        };
        match self
            .directory
            .verify(&account, &login, password, deadline)
            .await
        {
            Ok(found) => {
                attempt.succeeded();
                self.accept(found, &login)
            }
            Err(
                f @ Failure::Rejected(
                    RejectReason::WrongPassword
                    | RejectReason::BadCredentials
                    | RejectReason::UnknownUser,
                ),
            ) => {
                attempt.failed();
                failed(f, &login)
            }
            Err(f) => failed(f, &login),
        }
    }

    /// A name that matched nothing (or too much) draws on its own budget and costs a decoy
    /// bind and group search, so that it reads like a wrong password in time as in bytes.
    async fn unknown(
        &self,
        login: &Login,
        password: &Password,
        why: RejectReason,
        deadline: Instant,
    ) -> Resolved {
        match self
            .lockout
            .begin(Key::unknown(login.key()), Trust::Unknown, deadline)
            .await
        {
            Ok(attempt) => {
                self.directory.decoy(login, password, deadline).await;
                attempt.failed();
                Resolved::new(Outcome::Rejected, None, why.label())
            }
            Err(refused) => self.refused(refused),
        }
    }

    fn refused(&self, refused: Refused) -> Resolved {
        match refused {
            Refused::Locked => {
                self.metrics.lockout_refusals.inc();
                Resolved::locked_out()
            }
            Refused::Deadline => Resolved::new(
                Outcome::BackendError,
                None,
                "deadline reached waiting for other attempts on this account",
            ),
        }
    }

    fn accept(&self, found: Found, login: &Login) -> Resolved {
        let (ldap, ident) = self.config.directory_of(login);
        let mapped = identity::map(&found.entry, login.name(), found.groups, &ldap.user, ident);
        let mapped = match mapped {
            Ok(m) => m,
            Err(e @ identity::IdentityError::ReservedUsername(_)) => {
                self.metrics
                    .reserved_names
                    .get_or_create(&EventLabels { event: "username" })
                    .inc();
                tracing::warn!(error = %e, "login refused");
                return Resolved::new(
                    Outcome::Rejected,
                    Some(login),
                    RejectReason::ReservedName.label(),
                );
            }
            // Only reached with the right password, so it tells nothing to someone without.
            Err(identity::IdentityError::NotInRequiredGroup) => {
                let state = AccountState::NotInRequiredGroup;
                return Resolved::new(Outcome::AccountState(state), Some(login), state.label());
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot build the Kubernetes user from the directory entry");
                return Resolved::new(Outcome::BackendError, Some(login), e.to_string());
            }
        };
        if !mapped.reserved_groups.is_empty() {
            let n = mapped.reserved_groups.len() as u64;
            self.metrics
                .reserved_names
                .get_or_create(&EventLabels { event: "group" })
                .inc_by(n);
            if let Some(held) = self.reserved_log.allow() {
                tracing::warn!(groups = ?mapped.reserved_groups, earlier_lines_held_back = held,
                    "dropped directory groups that would be system: groups in Kubernetes");
            }
        }
        let detail: Cow<'static, str> = match found.warning {
            None => Cow::Borrowed("bound"),
            Some(w) => {
                self.metrics
                    .password_warnings
                    .get_or_create(&EventLabels { event: w.label() })
                    .inc();
                Cow::Owned(format!("bound; password policy: {w:?}"))
            }
        };
        Resolved::new(
            Outcome::Accepted(Arc::new(User::with_account(
                &mapped.user,
                login.scope().unwrap_or_default(),
                &found.entry.dn,
                password_version(&found.entry),
            ))),
            Some(login),
            detail,
        )
    }
}

/// The leader of one token's round trip. Dropped without [`Leader::finish`] (its task
/// panicked), it still leaves the in-flight table and tells the waiters, so the token is
/// not stuck until a reload.
struct Leader<B: Backend> {
    auth: Arc<Authenticator<B>>,
    key: CacheKey,
    /// The answer is never cached past this (an issued token's `exp`).
    until: Option<Instant>,
    tx: Option<watch::Sender<Option<Resolved>>>,
}

impl<B: Backend> Leader<B> {
    fn finish(mut self, resolved: Resolved) {
        if let Some(cached) = to_cached(&resolved.outcome).filter(|_| !resolved.local) {
            self.auth.cache.put(self.key, cached, now(), self.until);
        }
        // Cache first, then leave the in-flight table: a review arriving in between finds
        // the answer in one place or the other.
        self.leave(Some(resolved));
    }

    fn leave(&mut self, resolved: Option<Resolved>) {
        if let Some(tx) = self.tx.take() {
            self.auth
                .inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.key);
            let resolved = resolved.unwrap_or_else(|| {
                Resolved::new(
                    Outcome::BackendError,
                    None,
                    "the directory round trip failed",
                )
            });
            let _ = tx.send(Some(resolved));
        }
    }
}

impl<B: Backend> Drop for Leader<B> {
    fn drop(&mut self) {
        self.leave(None);
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
    }
}

fn to_cached(o: &Outcome) -> Option<Cached> {
    match o {
        Outcome::Accepted(u) => Some(Cached::Accepted(u.clone())),
        Outcome::Rejected => Some(Cached::Rejected),
        Outcome::AccountState(s) => Some(Cached::AccountState(*s)),
        Outcome::NotOurs | Outcome::TokenExpired | Outcome::Unavailable | Outcome::BackendError => {
            None
        }
    }
}

async fn wait(mut flight: Flight, deadline: Instant) -> Option<Resolved> {
    let left = deadline.saturating_duration_since(now());
    match tokio::time::timeout(left, flight.wait_for(Option::is_some)).await {
        Ok(Ok(v)) => v.clone(),
        // Timed out, or the round trip's task died without an answer.
        _ => None,
    }
}

mod issued;
#[cfg(test)]
mod tests;
