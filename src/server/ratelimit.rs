//! The login endpoint's rate limit: a token bucket per source address (IPv6: per /64),
//! `login.burst` deep, refilled at `login.rate` per minute.
//!
//! The table is bounded: when it is full, buckets that have refilled (their sources are
//! quiet) are dropped; if none has, a new source is refused until one has. Memory never
//! grows with the number of addresses an attacker can use, and a refused login is only a
//! retry later (the answer says when).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::admission::source_of;

/// Sources tracked at most (a few MB).
const MAX_SOURCES: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// `login.rate` and `login.burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn per_sec(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    fn refill(self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec()).min(f64::from(self.burst));
        b.at = now;
    }

    /// How long until one more login is allowed.
    fn wait(self, b: &Bucket) -> Duration {
        let missing = (1.0 - b.tokens).max(0.0);
        Duration::from_secs_f64(missing / self.per_sec())
    }
}

pub(crate) struct RateLimit {
    table: Mutex<HashMap<IpAddr, Bucket>>,
    capacity: usize,
}

impl RateLimit {
    pub(crate) fn new() -> RateLimit {
        RateLimit::with_capacity(MAX_SOURCES)
    }

    fn with_capacity(capacity: usize) -> RateLimit {
        RateLimit {
            table: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// Whether `peer` has a login left, without spending it; `Err` says when it will.
    pub(crate) fn check(&self, peer: IpAddr, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.with_bucket(peer, rate, now, |b| {
            if b.tokens >= 1.0 {
                Ok(())
            } else {
                Err(rate.wait(b))
            }
        })
    }

    /// Spends one of `peer`'s logins; `Err` says when the next one is allowed.
    pub(crate) fn take(&self, peer: IpAddr, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.with_bucket(peer, rate, now, |b| {
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                Ok(())
            } else {
                Err(rate.wait(b))
            }
        })
    }

    fn with_bucket(
        &self,
        peer: IpAddr,
        rate: Rate,
        now: Instant,
        f: impl FnOnce(&mut Bucket) -> Result<(), Duration>,
    ) -> Result<(), Duration> {
        let source = source_of(peer);
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !t.contains_key(&source) && t.len() >= self.capacity {
            t.retain(|_, b| {
                rate.refill(b, now);
                b.tokens < f64::from(rate.burst)
            });
            if t.len() >= self.capacity {
                return Err(Duration::from_secs(60));
            }
        }
        let b = t.entry(source).or_insert(Bucket {
            tokens: f64::from(rate.burst),
            at: now,
        });
        rate.refill(b, now);
        f(b)
    }
}

/// `Retry-After` in whole seconds, at least one.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_minute: 6,
        burst: 2,
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_gets_its_burst_then_one_login_per_refill() {
        let r = RateLimit::new();
        let t0 = crate::clock::now();
        assert!(r.take(ip("10.0.0.1"), RATE, t0).is_ok());
        assert!(r.take(ip("10.0.0.1"), RATE, t0).is_ok());
        let wait = r.take(ip("10.0.0.1"), RATE, t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10), "6 a minute: one every 10 s");
        assert!(
            r.take(ip("10.0.0.2"), RATE, t0).is_ok(),
            "others are not affected"
        );
        assert!(r
            .take(ip("10.0.0.1"), RATE, t0 + Duration::from_secs(10))
            .is_ok());
        assert!(r
            .take(ip("10.0.0.1"), RATE, t0 + Duration::from_secs(10))
            .is_err());
    }

    #[test]
    fn checking_spends_nothing() {
        let r = RateLimit::new();
        let t0 = crate::clock::now();
        for _ in 0..10 {
            assert!(r.check(ip("10.0.0.1"), RATE, t0).is_ok());
        }
        assert!(r.take(ip("10.0.0.1"), RATE, t0).is_ok());
    }

    #[test]
    fn one_ipv6_host_is_one_source() {
        let r = RateLimit::new();
        let t0 = crate::clock::now();
        assert!(r.take(ip("2001:db8::1"), RATE, t0).is_ok());
        assert!(r.take(ip("2001:db8::2"), RATE, t0).is_ok());
        assert!(r.take(ip("2001:db8::3"), RATE, t0).is_err());
    }

    #[test]
    fn a_full_table_makes_room_from_quiet_sources_only() {
        let r = RateLimit::with_capacity(2);
        let t0 = crate::clock::now();
        assert!(r.take(ip("10.0.0.1"), RATE, t0).is_ok());
        assert!(r.take(ip("10.0.0.2"), RATE, t0).is_ok());
        assert!(
            r.take(ip("10.0.0.3"), RATE, t0).is_err(),
            "both known sources are still refilling"
        );
        let later = t0 + Duration::from_secs(10);
        assert!(r.take(ip("10.0.0.3"), RATE, later).is_ok());
        assert!(r.table.lock().unwrap().len() <= 2);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(10)), 10);
        assert_eq!(retry_after_secs(Duration::from_millis(10_001)), 11);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
