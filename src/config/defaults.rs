//! Every default and every allowed range of the configuration, in one place.
//!
//! A numeric key is a [`Limit`]: its default and the closed range a value must fall in.
//! The ranges keep a mistyped value (`capacity = 1000000000000`, `ttl = "1000y"`) from
//! aborting the daemon on an allocation or overflowing `Instant` arithmetic later; the
//! example config and the README state them, and unit tests keep the three in step.

use std::time::Duration;

/// Loopback: one daemon per control-plane node, its kube-apiserver on the same host.
pub(crate) const LISTEN: &str = "127.0.0.1:8443";
pub(crate) const TLS_CERT_FILE: &str = "/etc/kube-ldap-webhook/tls/server.crt";
pub(crate) const TLS_KEY_FILE: &str = "/etc/kube-ldap-webhook/tls/server.key";
pub(crate) const CLIENT_CA_FILE: &str = "/etc/kube-ldap-webhook/tls/client-ca.crt";
pub(crate) const PATH: &str = "/authenticate";
pub(crate) const OPS_LISTEN: &str = "127.0.0.1:9090";
pub(crate) const LOG_LEVEL: &str = "info";

/// A numeric key's default and the closed range `min..=max` its value must fall in.
#[derive(Debug)]
pub(crate) struct Limit<T> {
    pub key: &'static str,
    pub default: T,
    pub min: T,
    pub max: T,
}

const MS: Duration = Duration::from_millis(1);
const ZERO: Duration = Duration::ZERO;

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
const fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}
const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}
const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

pub(crate) const HANDSHAKE_TIMEOUT: Limit<Duration> = Limit {
    key: "server.handshake_timeout",
    default: secs(10),
    min: MS,
    max: mins(10),
};
pub(crate) const REQUEST_TIMEOUT: Limit<Duration> = Limit {
    key: "server.request_timeout",
    default: secs(30),
    min: MS,
    max: mins(10),
};
pub(crate) const SERVER_MAX_CONNECTIONS: Limit<u64> = Limit {
    key: "server.max_connections",
    default: 1024,
    min: 1,
    max: 100_000,
};
pub(crate) const MAX_CONNECTIONS_PER_SOURCE: Limit<u64> = Limit {
    key: "server.max_connections_per_source",
    default: 256,
    min: 1,
    max: 100_000,
};
pub(crate) const MAX_HANDSHAKES: Limit<u64> = Limit {
    key: "server.max_handshakes",
    default: 256,
    min: 1,
    max: 100_000,
};
pub(crate) const MAX_HANDSHAKES_PER_SOURCE: Limit<u64> = Limit {
    key: "server.max_handshakes_per_source",
    default: 32,
    min: 1,
    max: 100_000,
};
pub(crate) const IDLE_TIMEOUT: Limit<Duration> = Limit {
    key: "server.idle_timeout",
    default: mins(2),
    min: MS,
    max: hours(1),
};
pub(crate) const CONNECT_TIMEOUT: Limit<Duration> = Limit {
    key: "ldap.connect_timeout",
    default: secs(3),
    min: MS,
    max: mins(10),
};
pub(crate) const LDAP_TIMEOUT: Limit<Duration> = Limit {
    key: "ldap.timeout",
    default: secs(5),
    min: MS,
    max: mins(10),
};
/// The refresh of servers found in DNS follows the records' TTL, but not more often than
/// this (a TTL of 0 would mean a lookup per review) ...
pub(crate) const DISCOVER_REFRESH_MIN: Limit<Duration> = Limit {
    key: "ldap.discover_refresh_min",
    default: secs(30),
    min: secs(1),
    max: hours(1),
};
/// ... and not more seldom than this (a DC retired with a day-long TTL would be tried for a
/// day). A failed lookup is retried after `DISCOVER_REFRESH_MIN`.
pub(crate) const DISCOVER_REFRESH_MAX: Limit<Duration> = Limit {
    key: "ldap.discover_refresh_max",
    default: hours(1),
    min: secs(1),
    max: days(1),
};
pub(crate) const LDAP_MAX_CONNECTIONS: Limit<u64> = Limit {
    key: "ldap.max_connections",
    default: 16,
    min: 1,
    max: 1000,
};
pub(crate) const MAX_NESTED_DEPTH: Limit<u64> = Limit {
    key: "ldap.group.max_nested_depth",
    default: 10,
    min: 1,
    max: 100,
};
pub(crate) const CAPACITY: Limit<u64> = Limit {
    key: "cache.capacity",
    default: 10_000,
    min: 1,
    max: 10_000_000,
};
pub(crate) const TTL: Limit<Duration> = Limit {
    key: "cache.ttl",
    default: mins(2),
    min: ZERO,
    max: hours(24),
};
pub(crate) const NEGATIVE_TTL: Limit<Duration> = Limit {
    key: "cache.negative_ttl",
    default: secs(10),
    min: ZERO,
    max: hours(1),
};
pub(crate) const STALE_TTL: Limit<Duration> = Limit {
    key: "cache.stale_ttl",
    default: hours(1),
    min: ZERO,
    max: days(7),
};
pub(crate) const MAX_FAILURES: Limit<u64> = Limit {
    key: "cache.max_failures",
    default: 3,
    min: 0,
    max: 1000,
};
/// Zero is allowed only while lockout protection is off (`max_failures = 0`).
pub(crate) const FAILURE_WINDOW: Limit<Duration> = Limit {
    key: "cache.failure_window",
    default: mins(5),
    min: ZERO,
    max: hours(24),
};

pub(crate) const AUDIT_MAX_SIZE: Limit<u64> = Limit {
    key: "audit.max_size",
    default: 100 << 20,
    // A few events a file; a longer line (a user with very many groups) still goes whole
    // into a file of its own.
    min: 4 << 10,
    max: 1 << 40,
};
pub(crate) const AUDIT_MAX_FILES: Limit<u64> = Limit {
    key: "audit.max_files",
    default: 10,
    min: 1,
    max: 1000,
};
pub(crate) const AUDIT_QUEUE: Limit<u64> = Limit {
    key: "audit.queue",
    default: 4096,
    min: 1,
    max: 1_000_000,
};
pub(crate) const TOKEN_TTL: Limit<Duration> = Limit {
    key: "login.token_ttl",
    default: hours(8),
    min: mins(1),
    max: hours(24),
};
/// How far ahead a login answer warns of the password's expiry: two weeks, the notice
/// Windows gives at logon; zero warns of none.
pub(crate) const PASSWORD_EXPIRY_WARNING: Limit<Duration> = Limit {
    key: "login.password_expiry_warning",
    default: days(14),
    min: ZERO,
    max: days(365),
};
/// Logins per source address (IPv6: per /64) and minute, refilled evenly.
pub(crate) const LOGIN_RATE: Limit<u64> = Limit {
    key: "login.rate",
    default: 10,
    min: 1,
    max: 100_000,
};
/// Logins a source may make at once before the rate applies.
pub(crate) const LOGIN_BURST: Limit<u64> = Limit {
    key: "login.burst",
    default: 5,
    min: 1,
    max: 10_000,
};
/// Logins of credentials not accepted before at one directory at once, from every source
/// together: what many addresses, each within its rate, can make the daemon try. Half the
/// default `ldap.max_connections`, so that reviews keep connections of their own.
pub(crate) const LOGIN_MAX_LOGINS_PER_DIRECTORY: Limit<u64> = Limit {
    key: "login.max_logins_per_directory",
    default: 8,
    min: 1,
    max: 1000,
};
/// Requests in flight on the whole login port; beyond it 503 at once.
pub(crate) const LOGIN_MAX_IN_FLIGHT: Limit<u64> = Limit {
    key: "login.max_in_flight",
    default: 64,
    min: 1,
    max: 10_000,
};
pub(crate) const TOKEN_ISSUER: &str = "kube-ldap-webhook";
/// Lifetime of a JWT: how long a disabled account keeps access through kube-apiserver's
/// JWT authenticator, which never asks the daemon again.
pub(crate) const JWT_TOKEN_TTL: Limit<Duration> = Limit {
    key: "jwt.token_ttl",
    default: mins(5),
    min: secs(10),
    max: hours(1),
};

/// Every duration key, for the documentation checks.
#[cfg(test)]
pub(crate) const DURATIONS: &[&Limit<Duration>] = &[
    &HANDSHAKE_TIMEOUT,
    &REQUEST_TIMEOUT,
    &IDLE_TIMEOUT,
    &CONNECT_TIMEOUT,
    &LDAP_TIMEOUT,
    &DISCOVER_REFRESH_MIN,
    &DISCOVER_REFRESH_MAX,
    &TTL,
    &NEGATIVE_TTL,
    &STALE_TTL,
    &FAILURE_WINDOW,
    &TOKEN_TTL,
    &PASSWORD_EXPIRY_WARNING,
    &JWT_TOKEN_TTL,
];

/// Every count key, for the documentation checks.
#[cfg(test)]
pub(crate) const COUNTS: &[&Limit<u64>] = &[
    &SERVER_MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_SOURCE,
    &MAX_HANDSHAKES,
    &MAX_HANDSHAKES_PER_SOURCE,
    &LDAP_MAX_CONNECTIONS,
    &MAX_NESTED_DEPTH,
    &CAPACITY,
    &MAX_FAILURES,
    &LOGIN_RATE,
    &LOGIN_BURST,
    &LOGIN_MAX_LOGINS_PER_DIRECTORY,
    &LOGIN_MAX_IN_FLIGHT,
];

/// How a bound is written in messages and in the documentation.
pub(crate) trait Bound: Copy + PartialOrd {
    fn show(&self) -> String;
}

impl Bound for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Bound for Duration {
    /// The way an operator would write it in the file: `"10m"`, `"24h"`, `"7d"`, `"1ms"`.
    fn show(&self) -> String {
        let s = self.as_secs();
        if self.is_zero() {
            "0s".into()
        } else if self.subsec_nanos() != 0 {
            humantime::format_duration(*self)
                .to_string()
                .replace(' ', "")
        } else if s.is_multiple_of(86_400) && s >= 2 * 86_400 {
            format!("{}d", s / 86_400)
        } else if s.is_multiple_of(3600) {
            format!("{}h", s / 3600)
        } else if s.is_multiple_of(60) {
            format!("{}m", s / 60)
        } else {
            format!("{s}s")
        }
    }
}

impl<T: Bound> Limit<T> {
    /// `min..max`, as the example config and the README write the range.
    #[cfg(test)]
    pub(crate) fn range(&self) -> String {
        format!("{}..{}", self.min.show(), self.max.show())
    }

    /// The value, or the default when the key is absent; `Err` says what is allowed.
    pub(crate) fn pick(&self, value: Option<T>) -> Result<T, String> {
        let v = value.unwrap_or(self.default);
        if v < self.min || v > self.max {
            return Err(format!(
                "must be between {} and {} (got {})",
                self.min.show(),
                self.max.show(),
                v.show()
            ));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_shown_the_way_they_are_written() {
        assert_eq!(MS.show(), "1ms");
        assert_eq!(mins(10).show(), "10m");
        assert_eq!(hours(24).show(), "24h");
        assert_eq!(days(7).show(), "7d");
        assert_eq!(secs(90).show(), "90s");
        assert_eq!(ZERO.show(), "0s");
        assert_eq!(Duration::from_millis(1500).show(), "1s500ms");
    }

    #[test]
    fn every_default_lies_in_its_range() {
        for l in DURATIONS {
            assert!(l.pick(None).is_ok(), "{}", l.key);
        }
        for l in COUNTS {
            assert!(l.pick(None).is_ok(), "{}", l.key);
        }
    }

    #[test]
    fn a_value_outside_the_range_says_what_is_allowed() {
        let e = CAPACITY.pick(Some(1_000_000_000_000)).unwrap_err();
        assert_eq!(e, "must be between 1 and 10000000 (got 1000000000000)");
        assert!(CAPACITY.pick(Some(0)).is_err());
        assert_eq!(CAPACITY.pick(Some(10_000_000)), Ok(10_000_000));
        assert!(LDAP_TIMEOUT.pick(Some(ZERO)).is_err());
        assert!(TTL.pick(Some(hours(25))).is_err());
    }

    #[test]
    fn every_key_is_listed_once() {
        let mut keys: Vec<_> = DURATIONS.iter().map(|l| l.key).collect();
        keys.extend(COUNTS.iter().map(|l| l.key));
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }
}
