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
//! - A token this daemon accepted before (still within `cache.stale_ttl`) is never refused
//!   here: it goes to the directory, which decides. Three wrong passwords from an attacker
//!   cannot lock the owner of a working token out of Kubernetes.
//!
//! The state outlives a reload: one `Lockout` serves every runtime; a reload only changes
//! its settings.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Notify;

use crate::clock;
use crate::login::fold;

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
}

/// A running attempt; tell it how the attempt ended, or drop it to count nothing.
pub(crate) struct Attempt {
    lockout: Arc<Lockout>,
    key: Key,
    /// Counted in flight (always, unless lockout protection is off).
    registered: bool,
    failed: Option<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
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
        }
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
    ) -> Result<Attempt, Refused> {
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
                    return Err(Refused::Locked);
                }
                // Register before releasing the lock so that no notification is missed.
                state.changed.clone().notified_owned()
            };
            let left = deadline.saturating_duration_since(clock::now());
            if tokio::time::timeout(left, wait).await.is_err() {
                return Err(Refused::Deadline);
            }
        }
    }

    fn attempt(self: &Arc<Self>, key: Key, registered: bool) -> Attempt {
        Attempt {
            lockout: self.clone(),
            key,
            registered,
            failed: None,
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

    /// Accounts and unknown names with state.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (usize, usize) {
        let tables = self.lock();
        (tables.accounts.len(), tables.unknown.len())
    }

    fn finish(&self, key: &Key, failed: Option<bool>) {
        let mut tables = self.lock();
        let window = tables.settings.window;
        let (table, _) = tables.table(key);
        let Some(state) = table.peek_mut(name(key)) else {
            return;
        };
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
            }
            // The directory resets its own count on success; so do we.
            Some(false) => state.failures = 0,
            None => {}
        }
        state.changed.notify_waiters();
        forget_if_idle(table, name(key));
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
    pub(crate) fn failed(mut self) {
        self.failed = Some(true);
    }

    pub(crate) fn succeeded(mut self) {
        self.failed = Some(false);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.registered {
            self.lockout.finish(&self.key, self.failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        clock::now() + Duration::from_secs(5)
    }

    fn lockout(max: u32, window: Duration) -> Arc<Lockout> {
        Arc::new(Lockout::new(max, window))
    }

    fn alice() -> Key {
        Key::account("uid=alice,ou=people,dc=example,dc=org")
    }

    async fn fail(l: &Arc<Lockout>, key: Key) {
        l.begin(key, Trust::Unknown, later())
            .await
            .unwrap()
            .failed();
    }

    #[tokio::test]
    async fn refuses_after_max_failures_for_the_account_whatever_the_dn_case() {
        let l = lockout(3, Duration::from_secs(300));
        fail(&l, Key::account("uid=Alice,ou=People,dc=example,dc=org")).await;
        fail(&l, Key::account("UID=ALICE,OU=PEOPLE,DC=EXAMPLE,DC=ORG")).await;
        fail(&l, alice()).await;
        let r = l.begin(alice(), Trust::Unknown, later()).await;
        assert_eq!(r.err(), Some(Refused::Locked));
        assert!(l.is_locked(&alice()));
        let bob = Key::account("uid=bob,ou=people,dc=example,dc=org");
        assert!(l.begin(bob, Trust::Unknown, later()).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_accepted_before_is_never_refused() {
        let l = lockout(1, Duration::from_secs(300));
        fail(&l, alice()).await;
        assert!(l.is_locked(&alice()));
        let a = l.begin(alice(), Trust::AcceptedBefore, later()).await;
        assert!(a.is_ok(), "the directory decides for a known-good token");
        a.unwrap().succeeded();
        assert!(!l.is_locked(&alice()), "its success resets the count");
    }

    #[tokio::test]
    async fn a_flood_of_unknown_names_does_not_evict_a_locked_account() {
        let l = lockout(2, Duration::from_secs(300));
        fail(&l, alice()).await;
        fail(&l, alice()).await;
        for i in 0..(MAX_UNKNOWN + 500) {
            fail(&l, Key::unknown(format!("nobody{i}"))).await;
        }
        assert!(l.is_locked(&alice()));
        let (accounts, unknown) = l.tracked();
        assert_eq!(accounts, 1);
        assert_eq!(unknown, MAX_UNKNOWN, "unknown names are bounded");
    }

    #[tokio::test]
    async fn unknown_names_have_their_own_budget() {
        let l = lockout(2, Duration::from_secs(300));
        let ghost = || Key::unknown("ghost".into());
        fail(&l, ghost()).await;
        fail(&l, ghost()).await;
        let r = l.begin(ghost(), Trust::Unknown, later()).await;
        assert_eq!(r.err(), Some(Refused::Locked));
        assert!(!l.is_locked(&alice()));
    }

    #[tokio::test]
    async fn users_without_failures_leave_no_state_behind() {
        let l = lockout(3, Duration::from_secs(300));
        l.begin(alice(), Trust::Unknown, later())
            .await
            .unwrap()
            .succeeded();
        drop(
            l.begin(Key::unknown("bob".into()), Trust::Unknown, later())
                .await,
        );
        fail(&l, Key::account("uid=carol")).await;
        assert_eq!(l.tracked(), (1, 0), "only carol's failure is kept");
        l.begin(Key::account("uid=carol"), Trust::Unknown, later())
            .await
            .unwrap()
            .succeeded();
        assert_eq!(l.tracked(), (0, 0));
    }

    #[tokio::test]
    async fn success_resets_the_count() {
        let l = lockout(3, Duration::from_secs(300));
        fail(&l, alice()).await;
        fail(&l, alice()).await;
        l.begin(alice(), Trust::Unknown, later())
            .await
            .unwrap()
            .succeeded();
        fail(&l, alice()).await;
        fail(&l, alice()).await;
        assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn window_expiry_lifts_the_refusal() {
        let l = lockout(1, Duration::from_secs(300));
        fail(&l, alice()).await;
        assert!(l.is_locked(&alice()));
        tokio::time::advance(Duration::from_secs(299)).await;
        assert!(l.is_locked(&alice()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(!l.is_locked(&alice()));
        assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
    }

    #[tokio::test]
    async fn attempts_in_flight_hold_the_budget() {
        let l = lockout(2, Duration::from_secs(300));
        let a = l.begin(alice(), Trust::Unknown, later()).await.unwrap();
        let b = l.begin(alice(), Trust::Unknown, later()).await.unwrap();
        let soon = clock::now() + Duration::from_millis(30);
        let r = l.begin(alice(), Trust::Unknown, soon).await;
        assert_eq!(r.err(), Some(Refused::Deadline));
        a.failed();
        b.failed();
        let r = l.begin(alice(), Trust::Unknown, later()).await;
        assert_eq!(r.err(), Some(Refused::Locked));
    }

    #[tokio::test]
    async fn a_reload_changes_the_settings_and_keeps_the_counts() {
        let l = lockout(3, Duration::from_secs(300));
        fail(&l, alice()).await;
        fail(&l, alice()).await;
        assert!(!l.is_locked(&alice()));
        l.configure(2, Duration::from_secs(300));
        assert!(l.is_locked(&alice()));
    }

    #[tokio::test]
    async fn zero_max_failures_turns_protection_off() {
        let l = lockout(0, Duration::from_secs(300));
        for _ in 0..10 {
            fail(&l, alice()).await;
        }
        assert!(l.begin(alice(), Trust::Unknown, later()).await.is_ok());
        assert_eq!(l.tracked(), (0, 0));
    }
}
