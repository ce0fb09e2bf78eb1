//! Credentials the directory accepted recently, so that lockout protection (and the ceiling
//! on logins in flight) never stands between a user and a password that worked: someone
//! else's wrong guesses must not keep the owner out, through reviews or `POST /login`.
//!
//! - Held as keyed hashes (HMAC-SHA256 under a random per-process key, 16 bytes kept) of
//!   the login as the directory folds it and the password: nothing here tells a password,
//!   even in a core dump. A review and a login of one credential share one entry.
//! - Only an accepted answer enters, so an attacker without passwords adds nothing. Each
//!   account keeps at most [`PER_ACCOUNT`] entries (spellings the directory folds to one
//!   entry, a password changed meanwhile): one holder of a working password cannot push
//!   other people's entries out. At most [`MAX_ENTRIES`] in all, the oldest forgotten first.
//! - An entry counts for the window the caller gives (`cache.stale_ttl`, or `cache.ttl`
//!   when longer: as long as a review would trust the cached answer), and is gone once
//!   the directory refuses that credential.
//! - Kept in the [`super::Lockout`], which outlives reloads: a reload forgets no one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::cache::Keyer;
use crate::login::Login;
use crate::secret::Password;

/// Entries kept at most: about 250 bytes each with the per-account index (measured: 12.2 MB
/// for 50,000 entries of as many accounts), so at most about 5 MB. Filling it takes that
/// many accepted passwords within the window.
pub(crate) const MAX_ENTRIES: usize = 20_000;
/// Entries one account may hold.
pub(crate) const PER_ACCOUNT: usize = 4;

/// The keyed hash of one login name and password.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Proof([u8; 16]);

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Proof(..)")
    }
}

/// The keyed hash of an account's folded DN.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct AccountId([u8; 16]);

/// Makes the keyed hashes, outside the table's lock.
pub(super) struct Hashes(Keyer);

impl Hashes {
    pub(super) fn new() -> Hashes {
        Hashes(Keyer::random())
    }

    /// Half a keyed hash: 128 bits keep two credentials apart as well as 256 would here.
    fn digest(&self, parts: &[&[u8]]) -> [u8; 16] {
        let full = self.0.digest(parts);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    pub(super) fn proof(&self, login: &Login, password: &Password) -> Proof {
        Proof(self.digest(&[
            b"credential",
            login.key().as_bytes(),
            password.expose().as_bytes(),
        ]))
    }

    /// The account of a folded (and scoped) DN.
    pub(super) fn account(&self, dn: &str) -> AccountId {
        AccountId(self.digest(&[b"account", dn.as_bytes()]))
    }
}

struct Entry {
    at: Instant,
    account: AccountId,
}

pub(super) struct Accepted {
    /// Least recently accepted first out; a lookup does not reorder.
    entries: LruCache<Proof, Entry>,
    by_account: HashMap<AccountId, Vec<Proof>>,
}

impl Accepted {
    pub(super) fn new() -> Accepted {
        Accepted {
            // Unbounded in the type, bounded by `remember`: nothing is allocated up front.
            entries: LruCache::unbounded(),
            by_account: HashMap::new(),
        }
    }

    pub(super) fn contains(&self, proof: &Proof, window: Duration, now: Instant) -> bool {
        self.entries
            .peek(proof)
            .is_some_and(|e| now.saturating_duration_since(e.at) < window)
    }

    /// Records an accepted credential of the account `id`.
    pub(super) fn remember(&mut self, proof: Proof, id: AccountId, window: Duration, now: Instant) {
        self.expire(window, now);
        if self.entries.contains(&proof) {
            self.forget(&proof);
        }
        let mine = self.by_account.entry(id).or_default();
        if mine.len() >= PER_ACCOUNT {
            // The account's oldest entry makes room: its own, nobody else's.
            let oldest = mine.remove(0);
            self.entries.pop(&oldest);
        }
        mine.push(proof);
        if self.entries.len() >= MAX_ENTRIES {
            if let Some((old, e)) = self.entries.pop_lru() {
                self.unindex(&old, &e.account);
            }
        }
        self.entries.put(
            proof,
            Entry {
                at: now,
                account: id,
            },
        );
    }

    pub(super) fn forget(&mut self, proof: &Proof) {
        if let Some(e) = self.entries.pop(proof) {
            self.unindex(proof, &e.account);
        }
    }

    /// Drops entries older than `window`, oldest first: they are at the cold end.
    fn expire(&mut self, window: Duration, now: Instant) {
        while let Some((proof, e)) = self.entries.peek_lru() {
            if now.saturating_duration_since(e.at) < window {
                break;
            }
            let (proof, account) = (*proof, e.account);
            self.entries.pop(&proof);
            self.unindex(&proof, &account);
        }
    }

    fn unindex(&mut self, proof: &Proof, account: &AccountId) {
        if let Some(list) = self.by_account.get_mut(account) {
            list.retain(|p| p != proof);
            if list.is_empty() {
                self.by_account.remove(account);
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> (usize, usize) {
        (self.entries.len(), self.by_account.len())
    }
}
