//! The policy of one review, as one straight line:
//! decode token -> cache lookup -> lockout check -> single flight -> directory -> identity
//! -> cache store. Every review ends in exactly one [`Outcome`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use tokio::sync::watch;

use crate::cache::{AnswerCache, CacheKey, Cached, Keyer, Lookup};
use crate::config::Config;
use crate::directory::{AccountState, Directory, Failure, RejectReason};
use crate::identity;
use crate::lockout::{Lockout, Refused};
use crate::metrics::{EventLabels, Metrics, ReviewLabels};
use crate::secret::Password;
use crate::token::{self, Refusal};
use crate::tokenreview::User;

/// The same text for every plain rejection, so that nobody can tell an unknown user from a
/// wrong password.
pub const REJECTED: &str = "Invalid username or password";
pub const UNAVAILABLE: &str = "Authentication backend unavailable";

#[derive(Debug, Clone)]
pub enum Outcome {
    Accepted(Arc<User>),
    /// Not a token of ours; answered without an error so kube-apiserver caches it.
    NotOurs,
    Rejected,
    AccountState(AccountState),
    /// No directory could answer: an error, never cached here or by kube-apiserver.
    Unavailable,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "accepted",
            Outcome::NotOurs => "not_ours",
            Outcome::Rejected => "rejected",
            Outcome::AccountState(s) => s.label(),
            Outcome::Unavailable => "unavailable",
        }
    }

    /// `status.error` of the reply.
    pub fn error(&self) -> Option<&'static str> {
        match self {
            Outcome::Accepted(_) | Outcome::NotOurs => None,
            Outcome::Rejected => Some(REJECTED),
            Outcome::AccountState(s) => Some(s.message()),
            Outcome::Unavailable => Some(UNAVAILABLE),
        }
    }

    pub fn user(&self) -> Option<&User> {
        match self {
            Outcome::Accepted(u) => Some(u),
            _ => None,
        }
    }
}

/// Where the answer came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Source {
    /// Decided from the token alone or by lockout protection: no LDAP traffic.
    Local,
    Cache,
    Directory,
    /// Waited for another review of the same token.
    Coalesced,
    /// An accepted answer this old, served because every LDAP server is down.
    Stale(Duration),
}

impl Source {
    pub fn label(&self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Cache => "cache",
            Source::Directory => "ldap",
            Source::Coalesced => "coalesced",
            Source::Stale(_) => "stale",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Review {
    pub outcome: Outcome,
    pub source: Source,
    /// The login name, only once the directory confirmed that it exists.
    pub username: Option<String>,
    /// Why, for the log line (never a secret).
    pub detail: Cow<'static, str>,
}

/// What a directory round trip produced, shared with every waiter of the same token.
#[derive(Debug, Clone)]
struct Resolved {
    outcome: Outcome,
    username: Option<String>,
    detail: Cow<'static, str>,
    /// Decided by lockout protection without asking the directory; not cached.
    local: bool,
}

type Flight = watch::Receiver<Option<Resolved>>;

pub struct Authenticator {
    config: Arc<Config>,
    directory: Arc<Directory>,
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
}

impl Authenticator {
    pub fn new(
        config: Arc<Config>,
        directory: Arc<Directory>,
        metrics: Arc<Metrics>,
    ) -> Authenticator {
        let c = &config.cache;
        Authenticator {
            cache: AnswerCache::new(c, metrics.clone()),
            keyer: Keyer::random(),
            lockout: Arc::new(Lockout::new(
                c.max_failures,
                c.failure_window,
                c.capacity.max(1024),
            )),
            inflight: Mutex::new(HashMap::new()),
            config,
            directory,
            metrics,
            accepted_from_cache: OnceLock::new(),
            cache_hits: OnceLock::new(),
        }
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    /// Answers one review before `deadline`.
    pub async fn review(self: &Arc<Self>, token: &str, deadline: Instant) -> Review {
        let started = Instant::now();
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
            .observe(started.elapsed().as_secs_f64());
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

    async fn decide(self: &Arc<Self>, token: &str, deadline: Instant, now: Instant) -> Review {
        let creds = match token::decode(token) {
            Ok(c) => c,
            Err(Refusal::NotOurs) => return local(Outcome::NotOurs, "not a basic token"),
            Err(Refusal::Invalid) => {
                return local(Outcome::Rejected, "empty or malformed username or password")
            }
        };

        let key = self.keyer.key(token);
        let mut stale = None;
        match self.cache.get(&key, now) {
            Lookup::Fresh(cached, _) => {
                self.cache_hits
                    .get_or_init(|| {
                        self.metrics
                            .cache_events
                            .get_or_create(&EventLabels { event: "hit" })
                            .clone()
                    })
                    .inc();
                let (outcome, username) = match cached {
                    Cached::Accepted(u) => (Outcome::Accepted(u), Some(creds.username)),
                    Cached::Rejected => (Outcome::Rejected, None),
                    Cached::AccountState(s) => (Outcome::AccountState(s), Some(creds.username)),
                };
                return Review {
                    outcome,
                    source: Source::Cache,
                    username,
                    detail: Cow::Borrowed("cached"),
                };
            }
            Lookup::Stale(user, age) => stale = Some((user, age)),
            Lookup::Miss => {}
        }
        self.metrics.cache_event("miss");

        let (flight, leader) = self.join_or_lead(key, creds.username, creds.password, deadline);
        let resolved = wait(flight, deadline).await;
        let source = if leader {
            Source::Directory
        } else {
            Source::Coalesced
        };
        if !leader {
            self.metrics.cache_event("coalesced");
        }
        let resolved = resolved.unwrap_or(Resolved {
            outcome: Outcome::Unavailable,
            username: None,
            detail: Cow::Borrowed("deadline reached waiting for LDAP"),
            local: false,
        });

        if let (Outcome::Unavailable, Some((user, age))) = (&resolved.outcome, stale) {
            self.metrics.cache_event("stale");
            self.metrics
                .stale_served_age_seconds
                .observe(age.as_secs_f64());
            let username = Some(user.username().to_string());
            return Review {
                outcome: Outcome::Accepted(user),
                source: Source::Stale(age),
                username,
                detail: Cow::Owned(format!(
                    "LDAP unavailable ({}); served a stale answer",
                    resolved.detail
                )),
            };
        }
        Review {
            outcome: resolved.outcome,
            source: if resolved.local {
                Source::Local
            } else {
                source
            },
            username: resolved.username,
            detail: resolved.detail,
        }
    }

    /// Joins the directory round trip already running for this token, or starts one. The
    /// round trip runs in its own task: a client that goes away cannot cancel a bind halfway
    /// and leave the other waiters, the cache or the lockout count behind.
    fn join_or_lead(
        self: &Arc<Self>,
        key: CacheKey,
        login: String,
        password: Password,
        deadline: Instant,
    ) -> (Flight, bool) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = inflight.get(&key) {
            return (rx.clone(), false);
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(key, rx.clone());
        drop(inflight);
        let this = self.clone();
        tokio::spawn(async move {
            let resolved = this.resolve(&login, &password, deadline).await;
            if let Some(cached) = to_cached(&resolved.outcome).filter(|_| !resolved.local) {
                this.cache.put(key, cached, Instant::now());
            }
            // Cache first, then leave the in-flight table: a review arriving in between
            // finds the answer in one place or the other.
            this.inflight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
            let _ = tx.send(Some(resolved));
        });
        (rx, true)
    }

    async fn resolve(&self, login: &str, password: &Password, deadline: Instant) -> Resolved {
        let canonical = self.directory.canonical_login(login).to_string();
        let attempt = match self.lockout.begin(&canonical, deadline).await {
            Ok(a) => a,
            Err(Refused::Locked) => {
                self.metrics.lockout_refusals.inc();
                return Resolved {
                    outcome: Outcome::Rejected,
                    username: None,
                    detail: Cow::Borrowed("lockout protection"),
                    local: true,
                };
            }
            Err(Refused::Deadline) => {
                return Resolved {
                    outcome: Outcome::Unavailable,
                    username: None,
                    detail: Cow::Borrowed(
                        "deadline reached waiting for other attempts of this user",
                    ),
                    local: false,
                }
            }
        };
        match self.directory.authenticate(login, password, deadline).await {
            Ok(found) => {
                attempt.succeeded();
                match identity::map(
                    &found.entry,
                    &canonical,
                    found.groups,
                    &self.config.ldap.user,
                    &self.config.identity,
                ) {
                    Ok(user) => Resolved {
                        outcome: Outcome::Accepted(Arc::new(User::new(&user))),
                        username: Some(login.to_string()),
                        detail: Cow::Borrowed("bound"),
                        local: false,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "cannot build the Kubernetes user from the directory entry");
                        Resolved {
                            outcome: Outcome::Unavailable,
                            username: Some(login.to_string()),
                            detail: Cow::Owned(e.to_string()),
                            local: false,
                        }
                    }
                }
            }
            Err(Failure::Rejected(reason)) => {
                if reason.checked_a_password() {
                    attempt.failed();
                }
                Resolved {
                    outcome: Outcome::Rejected,
                    // An unknown name is not confirmed, so it is not logged.
                    username: (reason == RejectReason::WrongPassword).then(|| login.to_string()),
                    detail: Cow::Borrowed(reason.label()),
                    local: false,
                }
            }
            Err(Failure::AccountState(s)) => Resolved {
                outcome: Outcome::AccountState(s),
                username: Some(login.to_string()),
                detail: Cow::Borrowed(s.label()),
                local: false,
            },
            Err(Failure::Unavailable(why)) => Resolved {
                outcome: Outcome::Unavailable,
                username: None,
                detail: Cow::Owned(why),
                local: false,
            },
        }
    }

    pub fn cached_entries(&self) -> usize {
        self.cache.len()
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
        Outcome::NotOurs | Outcome::Unavailable => None,
    }
}

async fn wait(mut flight: Flight, deadline: Instant) -> Option<Resolved> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, flight.wait_for(Option::is_some)).await {
        Ok(Ok(v)) => v.clone(),
        // Timed out, or the round trip's task died without an answer.
        _ => None,
    }
}
