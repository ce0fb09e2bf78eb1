//! The answer cache: a bounded LRU of review answers keyed by a keyed hash of the token.
//! Neither token nor password is stored; the key is HMAC-SHA256 under a random per-process
//! key, so the cache contents say nothing about credentials even in a core dump.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use lru::LruCache;
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::directory::AccountState;
use crate::metrics::Metrics;
use crate::tokenreview::User;

#[derive(Clone, Copy)]
pub(crate) struct CacheKey([u8; 32]);

impl PartialEq for CacheKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for CacheKey {}

impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key is already a uniformly random MAC: eight bytes of it are a fine hash.
        state.write(&self.0[..8]);
    }
}

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

/// Derives cache keys from tokens.
pub(crate) struct Keyer {
    mac: Hmac<Sha256>,
}

impl Keyer {
    pub(crate) fn random() -> Keyer {
        // A key of HMAC-SHA256's block size: the fixed-size constructor, which cannot fail.
        let mut key = zeroize::Zeroizing::new([0u8; 64]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        Keyer {
            mac: <Hmac<Sha256> as KeyInit>::new(&(*key).into()),
        }
    }

    pub(crate) fn key(&self, token: &str) -> CacheKey {
        let mut mac = self.mac.clone();
        mac.update(token.as_bytes());
        CacheKey(mac.finalize().into_bytes().into())
    }

    /// The keyed hash of several parts, each length-prefixed so that no two different
    /// lists of parts hash alike (lockout protection's accepted credentials).
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(&(p.len() as u64).to_be_bytes());
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

/// A cacheable answer. Backend errors are never cached, so they have no variant here.
#[derive(Debug, Clone)]
pub(crate) enum Cached {
    Accepted(Arc<User>),
    Rejected,
    AccountState(AccountState),
}

struct Slot {
    value: Cached,
    stored: Instant,
    /// Never served from this instant on, stale or not (an issued token's `exp`).
    until: Option<Instant>,
}

#[derive(Debug)]
pub(crate) enum Lookup {
    Fresh(Cached),
    /// An accepted answer past `ttl` but within `stale_ttl`: usable only while every LDAP
    /// server is down.
    Stale(Arc<User>, Duration),
    Miss,
}

pub(crate) struct AnswerCache {
    /// Unbounded to lru, bounded here: `LruCache::new(cap)` would allocate the table for
    /// `cap` entries up front, so memory follows the entries actually held instead.
    lru: Mutex<LruCache<CacheKey, Slot>>,
    capacity: usize,
    ttl: Duration,
    negative_ttl: Duration,
    stale_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl AnswerCache {
    pub(crate) fn new(cfg: &crate::config::Cache, metrics: Arc<Metrics>) -> AnswerCache {
        metrics.cache_entries.set(0);
        AnswerCache {
            lru: Mutex::new(LruCache::unbounded()),
            capacity: cfg.capacity.max(1),
            ttl: cfg.ttl,
            negative_ttl: cfg.negative_ttl,
            stale_ttl: cfg.stale_ttl,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<CacheKey, Slot>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expiry is decided here, on read: no entry outlives its TTL for want of a sweep.
    pub(crate) fn get(&self, key: &CacheKey, now: Instant) -> Lookup {
        let mut lru = self.lock();
        let Some(slot) = lru.get(key) else {
            return Lookup::Miss;
        };
        let age = now.saturating_duration_since(slot.stored);
        let expired = slot.until.is_some_and(|u| now >= u);
        let result = match &slot.value {
            _ if expired => Lookup::Miss,
            Cached::Accepted(u) if age < self.ttl => Lookup::Fresh(slot.value.clone()),
            Cached::Accepted(u) if age < self.stale_ttl => Lookup::Stale(u.clone(), age),
            Cached::Rejected | Cached::AccountState(_) if age < self.negative_ttl => {
                Lookup::Fresh(slot.value.clone())
            }
            _ => Lookup::Miss,
        };
        if matches!(result, Lookup::Miss) {
            lru.pop(key);
            self.metrics.cache_entries.set(lru.len() as i64);
        }
        result
    }

    /// Stores an answer; `until` is when it must stop being served at all.
    pub(crate) fn put(&self, key: CacheKey, value: Cached, now: Instant, until: Option<Instant>) {
        let ttl = match value {
            Cached::Accepted(_) => self.ttl.max(self.stale_ttl),
            _ => self.negative_ttl,
        };
        if ttl.is_zero() {
            return;
        }
        let mut lru = self.lock();
        lru.push(
            key,
            Slot {
                value,
                stored: now,
                until,
            },
        );
        while lru.len() > self.capacity {
            lru.pop_lru();
            self.metrics.cache_event("eviction");
        }
        self.metrics.cache_entries.set(lru.len() as i64);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_with_an_end_is_never_served_past_it_not_even_stale() {
        let c = AnswerCache::new(&cfg(10), Arc::new(Metrics::new()));
        let k = Keyer::random().key("t");
        let t0 = crate::clock::now();
        let exp = t0 + Duration::from_secs(30);
        c.put(k, Cached::Accepted(user()), t0, Some(exp));
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(29)),
            Lookup::Fresh(..)
        ));
        assert!(matches!(c.get(&k, exp), Lookup::Miss));
        c.put(
            k,
            Cached::Accepted(user()),
            t0,
            Some(t0 + Duration::from_secs(90)),
        );
        assert!(
            matches!(c.get(&k, t0 + Duration::from_secs(61)), Lookup::Stale(..)),
            "past ttl, before the end: stale for outages only"
        );
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(91)),
            Lookup::Miss
        ));
    }

    fn cfg(capacity: usize) -> crate::config::Cache {
        crate::config::Cache {
            capacity,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            stale_ttl: Duration::from_secs(3600),
            max_failures: 3,
            failure_window: Duration::from_secs(300),
        }
    }

    fn user() -> Arc<User> {
        Arc::new(User::new(&crate::identity::UserInfo {
            username: "alice".into(),
            uid: "1".into(),
            groups: vec![],
            extra: Default::default(),
        }))
    }

    #[test]
    fn same_token_same_key_other_token_other_key() {
        let k = Keyer::random();
        assert!(k.key("a") == k.key("a"));
        assert!(k.key("a") != k.key("b"));
        assert!(
            Keyer::random().key("a") != k.key("a"),
            "keys differ per process"
        );
    }

    #[test]
    fn accepted_is_fresh_then_stale_then_gone() {
        let c = AnswerCache::new(&cfg(10), Arc::new(Metrics::new()));
        let k = Keyer::random().key("t");
        let t0 = crate::clock::now();
        c.put(k, Cached::Accepted(user()), t0, None);
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(59)),
            Lookup::Fresh(..)
        ));
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(61)),
            Lookup::Stale(..)
        ));
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(3601)),
            Lookup::Miss
        ));
        assert!(c.is_empty(), "expired entries are dropped on read");
    }

    #[test]
    fn rejection_expires_after_negative_ttl_and_is_never_stale() {
        let c = AnswerCache::new(&cfg(10), Arc::new(Metrics::new()));
        let k = Keyer::random().key("t");
        let t0 = crate::clock::now();
        c.put(k, Cached::Rejected, t0, None);
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(9)),
            Lookup::Fresh(Cached::Rejected)
        ));
        assert!(matches!(
            c.get(&k, t0 + Duration::from_secs(11)),
            Lookup::Miss
        ));
    }

    #[test]
    fn capacity_bounds_the_cache() {
        let c = AnswerCache::new(&cfg(100), Arc::new(Metrics::new()));
        let keyer = Keyer::random();
        let now = crate::clock::now();
        for i in 0..1000 {
            c.put(keyer.key(&i.to_string()), Cached::Rejected, now, None);
        }
        assert_eq!(c.len(), 100);
    }

    #[test]
    fn the_least_recently_used_answer_is_evicted_first() {
        let c = AnswerCache::new(&cfg(2), Arc::new(Metrics::new()));
        let keyer = Keyer::random();
        let (a, b, n) = (keyer.key("a"), keyer.key("b"), keyer.key("new"));
        let now = crate::clock::now();
        c.put(a, Cached::Rejected, now, None);
        c.put(b, Cached::Rejected, now, None);
        assert!(matches!(c.get(&a, now), Lookup::Fresh(..)));
        c.put(n, Cached::Rejected, now, None);
        assert!(
            matches!(c.get(&b, now), Lookup::Miss),
            "b was least recently used"
        );
        assert!(matches!(c.get(&a, now), Lookup::Fresh(..)));
        assert!(matches!(c.get(&n, now), Lookup::Fresh(..)));
    }

    #[test]
    fn storing_the_same_token_again_evicts_nothing() {
        let metrics = Arc::new(Metrics::new());
        let c = AnswerCache::new(&cfg(1), metrics.clone());
        let k = Keyer::random().key("t");
        let now = crate::clock::now();
        c.put(k, Cached::Rejected, now, None);
        c.put(k, Cached::Accepted(user()), now, None);
        assert_eq!(c.len(), 1);
        let evictions = metrics
            .cache_events
            .get_or_create(&crate::metrics::EventLabels { event: "eviction" })
            .get();
        assert_eq!(evictions, 0);
        assert!(matches!(c.get(&k, now), Lookup::Fresh(Cached::Accepted(_))));
    }
}
