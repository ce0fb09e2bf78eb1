//! The ceiling on logins in flight per directory (`login.max_logins_per_directory`): each source is
//! held to its rate at the login port, but many sources together could still make the
//! daemon a password sprayer against the directory. Beyond the ceiling a login is refused
//! at once, without LDAP traffic, as an unavailable backend (the contract's 401 text).
//!
//! Credentials the directory accepted before do not count and are never refused here: the
//! ceiling is there to stop guesses, and must not keep their owners out while it does.
//! The count belongs to one runtime: during a reload, logins still running on the old one
//! are not counted by the new (at most twice the ceiling, for the length of a login).

use std::sync::atomic::{AtomicU32, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::config::Config;
use crate::metrics::{DirectoryLabels, Metrics};

struct Directory {
    in_flight: AtomicU32,
    gauge: Gauge,
    refusals: Counter,
}

pub(super) struct Ceiling {
    max: u32,
    /// By the directory's index: 0 for `[ldap]`, `i` for the `i`-th of `[directories.*]`.
    directories: Vec<Directory>,
}

/// A login counted in flight until dropped.
pub(super) struct Slot<'a>(&'a Directory);

impl Ceiling {
    pub(super) fn new(config: &Config, metrics: &Metrics) -> Ceiling {
        let directories = config
            .each_directory()
            .map(|(name, _, _)| {
                let labels = DirectoryLabels {
                    directory: name.to_string(),
                };
                Directory {
                    in_flight: AtomicU32::new(0),
                    gauge: metrics.logins_in_flight.get_or_create(&labels).clone(),
                    refusals: metrics
                        .login_ceiling_refusals
                        .get_or_create(&labels)
                        .clone(),
                }
            })
            .collect();
        Ceiling {
            max: config
                .login
                .as_ref()
                .map_or(u32::MAX, |l| l.max_logins_per_directory),
            directories,
        }
    }

    /// A place for one login at directory `index`, or `None` (counted) when all are taken.
    pub(super) fn enter(&self, index: usize) -> Option<Slot<'_>> {
        // A login is routed to a configured directory; the first stands in for a stray index.
        let d = self.directories.get(index).or(self.directories.first())?;
        let taken = d
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            });
        if taken.is_err() {
            d.refusals.inc();
            return None;
        }
        d.gauge.inc();
        Some(Slot(d))
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.gauge.dec();
    }
}
