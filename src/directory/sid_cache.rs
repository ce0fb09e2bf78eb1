//! What `ldap.group.token_groups` learned about SIDs, kept briefly: which group entry
//! under `ldap.group.base_dn` a SID is (or that none is), and which groups a primary
//! group is nested in. Only these names are cached: the user's own `tokenGroups`, which
//! says what the user is a member of, is read at every lookup. A SID is never reused for
//! another object (RIDs are not handed out twice), so an entry can only be stale in its
//! name or place (a group renamed or moved), for at most [`TTL`].

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::sid::Sid;
use super::Group;

/// How long a resolution is used: a renamed group shows its new name after this long.
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// SIDs resolved: more than one user's groups (`paging::MAX_GROUPS`), few megabytes.
pub(crate) const CAPACITY: usize = 20_000;
/// Primary groups: a domain has a few (Domain Users, Domain Computers ...).
const PRIMARY_CAPACITY: usize = 64;

/// An LRU of at most `capacity` values, each used until `TTL` after it was stored.
struct Expiring<K: Hash + Eq, V> {
    lru: Mutex<LruCache<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> Expiring<K, V> {
    /// Unbounded to lru and bounded here, so memory follows what is held (as `cache.rs`).
    fn new(capacity: usize) -> Self {
        Expiring {
            lru: Mutex::new(LruCache::unbounded()),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruCache<K, (V, Instant)>> {
        self.lru.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut lru = self.lock();
        match lru.get(key) {
            Some((v, stored)) if now.saturating_duration_since(*stored) < TTL => Some(v.clone()),
            Some(_) => {
                lru.pop(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: K, value: V, now: Instant) {
        let mut lru = self.lock();
        lru.put(key, (value, now));
        while lru.len() > self.capacity {
            lru.pop_lru();
        }
    }
}

/// The caches of one directory (a reload starts empty ones).
pub(crate) struct SidCache {
    /// A SID's group under the group base; `None`: no group there has it.
    groups: Expiring<Sid, Option<Group>>,
    /// A primary group's SID, and the groups it is nested in (with itself).
    primary: Expiring<Sid, Arc<HashSet<Sid>>>,
}

impl SidCache {
    pub(crate) fn new() -> SidCache {
        SidCache {
            groups: Expiring::new(CAPACITY),
            primary: Expiring::new(PRIMARY_CAPACITY),
        }
    }

    /// `Some(None)`: known not to be a group under the base; `None`: not known.
    pub(crate) fn group(&self, sid: &Sid, now: Instant) -> Option<Option<Group>> {
        self.groups.get(sid, now)
    }

    pub(crate) fn put_group(&self, sid: Sid, group: Option<Group>, now: Instant) {
        self.groups.put(sid, group, now);
    }

    pub(crate) fn nested_in(&self, primary: &Sid, now: Instant) -> Option<Arc<HashSet<Sid>>> {
        self.primary.get(primary, now)
    }

    pub(crate) fn put_nested_in(&self, primary: Sid, parents: Arc<HashSet<Sid>>, now: Instant) {
        self.primary.put(primary, parents, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(rid: u8) -> Sid {
        match Sid::parse(&[1, 1, 0, 0, 0, 0, 0, 5, rid, 0, 0, 0]) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn group(name: &str) -> Option<Group> {
        Some(Group {
            dn: format!("CN={name},OU=Groups,DC=example,DC=test"),
            name: Some(name.into()),
        })
    }

    #[test]
    fn a_resolution_is_used_until_its_ttl_and_not_after() {
        let c = SidCache::new();
        let t0 = crate::clock::now();
        c.put_group(sid(1), group("dev-team"), t0);
        c.put_group(sid(2), None, t0);
        let later = t0 + TTL - Duration::from_millis(1);
        assert_eq!(c.group(&sid(1), later), Some(group("dev-team")));
        assert_eq!(c.group(&sid(2), later), Some(None), "known: no group");
        assert_eq!(c.group(&sid(1), t0 + TTL), None, "expired");
        assert_eq!(c.group(&sid(3), t0), None, "never seen");
    }

    #[test]
    fn the_cache_holds_at_most_its_capacity() {
        let c: Expiring<u32, u32> = Expiring::new(3);
        let t0 = crate::clock::now();
        for k in 0..10 {
            c.put(k, k, t0);
        }
        assert_eq!(c.lock().len(), 3);
        assert_eq!(c.get(&9, t0), Some(9), "the newest stay");
        assert_eq!(c.get(&0, t0), None, "the oldest went");
    }
}
