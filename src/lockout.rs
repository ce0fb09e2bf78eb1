//! Lockout protection: Active Directory locks an account after a few bad passwords, and
//! anyone who can reach kube-apiserver can send bad passwords through this daemon. After
//! `max_failures` wrong passwords for a username within `failure_window`, unknown tokens for
//! that username are refused here, with no LDAP traffic, until the window has passed.
//!
//! Attempts in flight count against the budget, so a burst of concurrent wrong passwords
//! causes at most `max_failures` binds; further attempts wait for those to finish.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lru::LruCache;
use tokio::sync::Notify;

struct State {
    failures: u32,
    window_start: Instant,
    in_flight: u32,
    changed: Arc<Notify>,
}

pub struct Lockout {
    users: Mutex<LruCache<String, State>>,
    max_failures: u32,
    window: Duration,
}

/// A running attempt; tell it how the attempt ended, or drop it to count nothing.
pub struct Attempt {
    lockout: Arc<Lockout>,
    user: String,
    failed: Option<bool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Too many recent failures: refuse locally.
    Locked,
    /// The deadline passed while waiting for other attempts of this user to finish.
    Deadline,
}

impl Lockout {
    pub fn new(max_failures: u32, window: Duration, users: usize) -> Lockout {
        Lockout {
            users: Mutex::new(LruCache::new(
                NonZeroUsize::new(users.max(1)).unwrap_or(NonZeroUsize::MIN),
            )),
            max_failures,
            window,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<String, State>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Usernames compare case-insensitively here, as directories compare them.
    fn normalize(user: &str) -> String {
        user.to_lowercase()
    }

    /// Asks to send one bind for `user` to the directory.
    pub async fn begin(
        self: &Arc<Self>,
        user: &str,
        deadline: Instant,
    ) -> Result<Attempt, Refused> {
        let user = Self::normalize(user);
        if self.max_failures == 0 {
            return Ok(Attempt {
                lockout: self.clone(),
                user,
                failed: None,
            });
        }
        loop {
            let wait = {
                let mut users = self.lock();
                let now = Instant::now();
                let state = users.get_or_insert_mut(user.clone(), || State {
                    failures: 0,
                    window_start: now,
                    in_flight: 0,
                    changed: Arc::new(Notify::new()),
                });
                if state.failures > 0
                    && now.saturating_duration_since(state.window_start) >= self.window
                {
                    state.failures = 0;
                }
                if state.failures >= self.max_failures {
                    return Err(Refused::Locked);
                }
                if state.failures + state.in_flight < self.max_failures {
                    state.in_flight += 1;
                    return Ok(Attempt {
                        lockout: self.clone(),
                        user,
                        failed: None,
                    });
                }
                // Register before releasing the lock so that no notification is missed.
                state.changed.clone().notified_owned()
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, wait).await.is_err() {
                return Err(Refused::Deadline);
            }
        }
    }

    pub fn is_locked(&self, user: &str) -> bool {
        let users = self.lock();
        users.peek(&Self::normalize(user)).is_some_and(|s| {
            s.failures >= self.max_failures
                && s.window_start.elapsed() < self.window
                && self.max_failures > 0
        })
    }

    fn finish(&self, user: &str, failed: Option<bool>) {
        let mut users = self.lock();
        if let Some(state) = users.get_mut(user) {
            state.in_flight = state.in_flight.saturating_sub(1);
            match failed {
                Some(true) => {
                    let now = Instant::now();
                    if state.failures == 0
                        || now.saturating_duration_since(state.window_start) >= self.window
                    {
                        state.failures = 0;
                        state.window_start = now;
                    }
                    state.failures += 1;
                }
                // The directory resets its own count on success; so do we.
                Some(false) => state.failures = 0,
                None => {}
            }
            state.changed.notify_waiters();
            // No failures and nothing in flight is what a missing entry means too: keep
            // state only for users who need it, not for everyone who ever logged in.
            if state.failures == 0 && state.in_flight == 0 {
                users.pop(user);
            }
        }
    }
}

impl Attempt {
    pub fn failed(mut self) {
        self.failed = Some(true);
    }

    pub fn succeeded(mut self) {
        self.failed = Some(false);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.lockout.max_failures > 0 {
            self.lockout.finish(&self.user, self.failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn refuses_after_max_failures_case_insensitively() {
        let l = Arc::new(Lockout::new(3, Duration::from_secs(300), 100));
        for _ in 0..3 {
            l.begin("Alice", later()).await.unwrap().failed();
        }
        assert_eq!(l.begin("alice", later()).await.err(), Some(Refused::Locked));
        assert!(l.is_locked("ALICE"));
        assert!(
            l.begin("bob", later()).await.is_ok(),
            "other users are unaffected"
        );
    }

    #[tokio::test]
    async fn users_without_failures_leave_no_state_behind() {
        let l = Arc::new(Lockout::new(3, Duration::from_secs(300), 100));
        l.begin("alice", later()).await.unwrap().succeeded();
        drop(l.begin("bob", later()).await.unwrap());
        l.begin("carol", later()).await.unwrap().failed();
        assert_eq!(l.lock().len(), 1, "only carol's failure is kept");
        l.begin("carol", later()).await.unwrap().succeeded();
        assert_eq!(l.lock().len(), 0);
    }

    #[tokio::test]
    async fn success_resets_the_count() {
        let l = Arc::new(Lockout::new(3, Duration::from_secs(300), 100));
        for _ in 0..2 {
            l.begin("alice", later()).await.unwrap().failed();
        }
        l.begin("alice", later()).await.unwrap().succeeded();
        for _ in 0..2 {
            l.begin("alice", later()).await.unwrap().failed();
        }
        assert!(l.begin("alice", later()).await.is_ok());
    }

    #[tokio::test]
    async fn window_expiry_lifts_the_refusal() {
        let l = Arc::new(Lockout::new(1, Duration::from_millis(50), 100));
        l.begin("alice", later()).await.unwrap().failed();
        assert_eq!(l.begin("alice", later()).await.err(), Some(Refused::Locked));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(l.begin("alice", later()).await.is_ok());
    }

    #[tokio::test]
    async fn attempts_in_flight_hold_the_budget() {
        let l = Arc::new(Lockout::new(2, Duration::from_secs(300), 100));
        let a = l.begin("alice", later()).await.unwrap();
        let b = l.begin("alice", later()).await.unwrap();
        let soon = Instant::now() + Duration::from_millis(30);
        assert_eq!(l.begin("alice", soon).await.err(), Some(Refused::Deadline));
        a.failed();
        b.failed();
        assert_eq!(l.begin("alice", later()).await.err(), Some(Refused::Locked));
    }
}
