//! Lockout protection: Active Directory locks an account after a few bad passwords, and
//! anyone who can reach kube-apiserver can send bad passwords through this daemon. After
//! `max_failures` wrong passwords for an account within `failure_window`, further attempts
//! are refused here, with no bind, until the window has passed.
//!
//! - Budgets are keyed on the account the directory found (its DN), not on the string
//!   typed: every spelling the directory folds to one entry shares one budget.
//! - Names that matched nothing have their own, separate and bounded table, so a flood of
//!   unknown names can never push a failing account out.
//! - Attempts in flight count against the budget, so a burst of concurrent wrong passwords
//!   causes at most `max_failures` binds; further attempts wait for those to finish.
//! - A credential this daemon accepted before (still within `cache.stale_ttl`) is never
//!   refused here, whether it comes in a review or at `POST /login`: it goes to the
//!   directory, which decides. Three wrong passwords from an attacker cannot lock the owner
//!   of a working password out of Kubernetes or out of logging in ([`accepted`]).
//!
//! The state outlives a reload: one `Lockout` serves every runtime; a reload only changes
//! its settings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Notify;

use crate::clock;
use crate::login::{fold, Login};
use crate::secret::Password;

mod accepted;

pub(crate) use accepted::Proof;
use accepted::{Accepted, Hashes};

/// Accounts with failures or attempts in flight kept at most. Only names the directory
/// found can enter, so filling this takes that many real accounts.
const MAX_ACCOUNTS: usize = 100_000;
/// Names that matched nothing kept at most; the oldest is forgotten first.
const MAX_UNKNOWN: usize = 10_000;

struct State {
    failures: u32,
    window_start: Instant,
    in_flight: u32,
    changed: Arc<Notify>,
}

impl State {
    fn new(now: Instant) -> State {
        State {
            failures: 0,
            window_start: now,
            in_flight: 0,
            changed: Arc::new(Notify::new()),
        }
    }
}

/// Which budget an attempt draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// An entry the directory found, by DN.
    Account(String),
    /// A name that matched no entry, folded.
    Unknown(String),
}

impl Key {
    pub(crate) fn account(dn: &str) -> Key {
        Key::Account(fold(dn))
    }

    pub(crate) fn unknown(folded_name: String) -> Key {
        Key::Unknown(folded_name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    max_failures: u32,
    window: Duration,
}

struct Tables {
    settings: Settings,
    accounts: LruCache<String, State>,
    unknown: LruCache<String, State>,
}

impl Tables {
    fn table(&mut self, key: &Key) -> (&mut LruCache<String, State>, usize) {
        match key {
            Key::Account(_) => (&mut self.accounts, MAX_ACCOUNTS),
            Key::Unknown(_) => (&mut self.unknown, MAX_UNKNOWN),
        }
    }
}

fn name(key: &Key) -> &str {
    match key {
        Key::Account(k) | Key::Unknown(k) => k,
    }
}

pub(crate) struct Lockout {
    tables: Mutex<Tables>,
    /// Apart from `tables`: a review's trust lookup never waits on a budget's bookkeeping.
    accepted: Mutex<Accepted>,
    hashes: Hashes,
}

/// A running attempt; tell it how the attempt ended, or drop it to count nothing.
pub(crate) struct Attempt {
    lockout: Arc<Lockout>,
    key: Key,
    /// Counted in flight (always, unless lockout protection is off); cleared once told.
    registered: bool,
}

/// Why lockout protection kept an attempt from reaching the directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Blocked {
    /// Too many recent failures: refuse locally.
    Locked,
    /// The deadline passed while waiting for other attempts on this account to finish.
    Deadline,
}

/// Whether the caller holds a token this daemon accepted before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    Unknown,
    /// Accepted within `cache.stale_ttl`: never refused or held back here.
    AcceptedBefore,
}

impl Trust {
    /// Accepted before by either account.
    pub(crate) fn or(self, other: Trust) -> Trust {
        if self == Trust::AcceptedBefore {
            self
        } else {
            other
        }
    }
}

impl Lockout {
    pub(crate) fn new(max_failures: u32, window: Duration) -> Lockout {
        Lockout {
            tables: Mutex::new(Tables {
                settings: Settings {
                    max_failures,
                    window,
                },
                // Unbounded in the type, bounded by `insert`: nothing is allocated up front.
                accounts: LruCache::unbounded(),
                unknown: LruCache::unbounded(),
            }),
            accepted: Mutex::new(Accepted::new()),
            hashes: Hashes::new(),
        }
    }

    fn accepted(&self) -> std::sync::MutexGuard<'_, Accepted> {
        self.accepted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The keyed hash by which `login` with `password` is remembered.
    pub(crate) fn proof(&self, login: &Login, password: &Password) -> Proof {
        self.hashes.proof(login, password)
    }

    /// Whether the directory accepted this credential within `window`.
    pub(crate) fn accepted_before(&self, proof: &Proof, window: Duration) -> Trust {
        if self.accepted().contains(proof, window, clock::now()) {
            Trust::AcceptedBefore
        } else {
            Trust::Unknown
        }
    }

    /// The credential was accepted for the account `key`; trusted for `window` from now.
    pub(crate) fn remember(&self, proof: Proof, key: &Key, window: Duration) {
        if window.is_zero() {
            return;
        }
        let id = self.hashes.account(name(key));
        self.accepted().remember(proof, id, window, clock::now());
    }

    /// The directory refused this credential: trust it no more.
    pub(crate) fn forget(&self, proof: &Proof) {
        self.accepted().forget(proof);
    }

    /// New settings from a reload; the counts so far are kept.
    pub(crate) fn configure(&self, max_failures: u32, window: Duration) {
        self.lock().settings = Settings {
            max_failures,
            window,
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks to send one bind for `key` to the directory.
    pub(crate) async fn begin(
        self: &Arc<Self>,
        key: Key,
        trust: Trust,
        deadline: Instant,
    ) -> Result<Attempt, Blocked> {
        loop {
            let wait = {
                let mut tables = self.lock();
                let settings = tables.settings;
                if settings.max_failures == 0 {
                    return Ok(self.attempt(key, false));
                }
                let now = clock::now();
                let (table, max) = tables.table(&key);
                let state = entry(table, max, name(&key), now);
                if state.failures > 0
                    && now.saturating_duration_since(state.window_start) >= settings.window
                {
                    state.failures = 0;
                }
                let admitted = trust == Trust::AcceptedBefore
                    || state.failures.saturating_add(state.in_flight) < settings.max_failures;
                if admitted {
                    state.in_flight = state.in_flight.saturating_add(1);
                    return Ok(self.attempt(key, true));
                }
                if state.failures >= settings.max_failures {
                    forget_if_idle(table, name(&key));
                    return Err(Blocked::Locked);
                }
                // Register before releasing the lock so that no notification is missed.
                state.changed.clone().notified_owned()
            };
            let left = deadline.saturating_duration_since(clock::now());
            if tokio::time::timeout(left, wait).await.is_err() {
                return Err(Blocked::Deadline);
            }
        }
    }

    fn attempt(self: &Arc<Self>, key: Key, registered: bool) -> Attempt {
        Attempt {
            lockout: self.clone(),
            key,
            registered,
        }
    }

    /// Whether attempts for `key` are being refused right now.
    #[cfg(test)]
    pub(crate) fn is_locked(&self, key: &Key) -> bool {
        let mut tables = self.lock();
        let settings = tables.settings;
        let (table, _) = tables.table(key);
        table.peek(name(key)).is_some_and(|s| {
            settings.max_failures > 0
                && s.failures >= settings.max_failures
                && clock::now().saturating_duration_since(s.window_start) < settings.window
        })
    }

    /// Remembered credentials, and accounts they belong to.
    #[cfg(test)]
    pub(crate) fn remembered(&self) -> (usize, usize) {
        self.accepted().len()
    }

    /// Accounts and unknown names with state.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.accounts.len(), tables.unknown.len())
    }

    /// Ends an attempt; true when its failure used up the budget (a lockout starts).
    fn finish(&self, key: &Key, failed: Option<bool>) -> bool {
        let mut tables = self.lock();
        let Settings {
            window,
            max_failures,
        } = tables.settings;
        let (table, _) = tables.table(key);
        let Some(state) = table.peek_mut(name(key)) else {
            return false;
        };
        let mut started = false;
        state.in_flight = state.in_flight.saturating_sub(1);
        match failed {
            Some(true) => {
                let now = clock::now();
                if state.failures == 0
                    || now.saturating_duration_since(state.window_start) >= window
                {
                    state.failures = 0;
                    state.window_start = now;
                }
                state.failures = state.failures.saturating_add(1);
                started = state.failures == max_failures;
            }
            // The directory resets its own count on success; so do we.
            Some(false) => state.failures = 0,
            None => {}
        }
        state.changed.notify_waiters();
        forget_if_idle(table, name(key));
        started
    }
}

/// The state of `name`, made when missing. A full table first forgets the least recently
/// used entry that has nothing in flight (waiters hold on to theirs).
fn entry<'t>(
    table: &'t mut LruCache<String, State>,
    max: usize,
    name: &str,
    now: Instant,
) -> &'t mut State {
    if !table.contains(name) && table.len() >= max {
        let idle = table
            .iter()
            .rev()
            .find(|(_, s)| s.in_flight == 0)
            .map(|(k, _)| k.clone());
        if let Some(k) = idle {
            table.pop(&k);
        }
    }
    table.get_or_insert_mut(name.to_string(), || State::new(now))
}

/// No failures and nothing in flight is what a missing entry means too: keep state only
/// for names that need it, not for everyone who ever logged in.
fn forget_if_idle(table: &mut LruCache<String, State>, name: &str) {
    if table
        .peek(name)
        .is_some_and(|s| s.failures == 0 && s.in_flight == 0)
    {
        table.pop(name);
    }
}

impl Attempt {
    /// A wrong password: true when this failure started a lockout of the account.
    pub(crate) fn failed(mut self) -> bool {
        self.end(Some(true))
    }

    pub(crate) fn succeeded(mut self) {
        self.end(Some(false));
    }

    fn end(&mut self, failed: Option<bool>) -> bool {
        std::mem::take(&mut self.registered) && self.lockout.finish(&self.key, failed)
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.end(None);
    }
}

#[cfg(test)]
mod tests;
