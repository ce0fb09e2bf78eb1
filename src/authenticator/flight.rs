//! Single flight: one directory round trip per token at a time, whatever the number of
//! reviews asking; the others wait for its answer. The round trip runs in a task of its own,
//! led by a drop guard, so no client going away and no panic can strand the token.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Authenticator, Outcome, Resolved, Review, Source};
use crate::cache::{CacheKey, Cached, Lookup};
use crate::clock::now;
use crate::directory::Backend;
use crate::tokenreview::User;

pub(super) type Flight = watch::Receiver<Option<Resolved>>;

/// What joining a token's directory round trip found.
enum Joined {
    /// The answer arrived in the cache meanwhile.
    Answered(Cached),
    /// Wait on this flight; `true` when this review leads it.
    Waiting(Flight, bool),
}

/// How a round trip's answer relates to the cache.
pub(super) struct Reuse {
    /// An accepted answer past `cache.ttl` that may bridge an outage.
    pub(super) stale: Option<(Arc<User>, Duration)>,
    /// The cached answer must not outlive this (an issued token's expiry).
    pub(super) until: Option<Instant>,
    /// False for a login: a cached answer is never a password check.
    pub(super) use_cache: bool,
    /// The login name as typed, for the log line of a cache hit found under the lock.
    pub(super) name: Option<String>,
}

impl<B: Backend> Authenticator<B> {
    /// Starts `leader()` as the single flight of `key` (or waits for the one running, and
    /// drops `leader` uncalled) and turns what it resolved into the review; an outage is
    /// bridged with `stale` when there is one. The flight knows nothing of what `leader`
    /// checks: a token kind brings its own round trip.
    ///
    /// `leader` makes the round trip's future inside the leader's task, so a review's own
    /// future (one per request) never carries the round trip's state machine: carried
    /// inline, it made every request's allocation several KiB larger, and their churn
    /// doubled the heap per cached answer (BENCHMARKS.md, issue 18).
    pub(super) async fn fly<L, F>(
        self: &Arc<Self>,
        key: CacheKey,
        leader: L,
        how: Reuse,
        deadline: Instant,
    ) -> Review
    where
        L: FnOnce() -> F,
        F: Future<Output = Resolved> + Send + 'static,
    {
        let (flight, leader) = match self.join_or_lead(key, leader, how.until, how.use_cache) {
            Joined::Answered(cached) => return self.hit(cached, how.name),
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
                account: resolved.account,
                directory: resolved.directory,
                token_id: None,
                password: resolved.password,
            },
        }
    }

    /// Joins the directory round trip already running for this token, or starts one. The
    /// round trip runs in its own task: a client that goes away cannot cancel a bind halfway
    /// and leave the other waiters, the cache or the lockout count behind.
    fn join_or_lead<L, F>(
        self: &Arc<Self>,
        key: CacheKey,
        start: L,
        until: Option<Instant>,
        use_cache: bool,
    ) -> Joined
    where
        L: FnOnce() -> F,
        F: Future<Output = Resolved> + Send + 'static,
    {
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
        let work = start();
        tokio::spawn(async move {
            let resolved = work.await;
            leader.finish(resolved);
        });
        Joined::Waiting(rx, true)
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
