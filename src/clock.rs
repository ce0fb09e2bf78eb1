//! The daemon's only clock. Everything else is handed a time or asks here: clippy.toml
//! bans `Instant::now` and `SystemTime::now` elsewhere, so a unit test on tokio's paused
//! clock controls every time the code under test sees.
//!
//! Monotonic time is tokio's: in the daemon it reads as `Instant::now()`, under
//! `start_paused` it stands still until the test advances it.
//!
//! Wall time is the system's in the daemon. In the crate's unit tests it is a fixed epoch
//! plus the monotonic time passed since the test thread first asked, so `advance` moves
//! both clocks together and a token's expiry or `not_before` is crossed by advancing, not
//! by sleeping. A `Clock` value threaded through the authenticator, the handlers and the
//! token code would do the same with a parameter on every path that only tests ever set;
//! here the two builds differ in one function.

use std::time::{Instant, SystemTime};

/// Now, on the monotonic clock (deadlines, ages, rates).
pub(crate) fn now() -> Instant {
    #[allow(clippy::disallowed_methods)] // the one reading of the monotonic clock
    tokio::time::Instant::now().into_std()
}

/// [`now`] as tokio's type, for `sleep_until` and the timers of the listener.
pub(crate) fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::from_std(now())
}

/// Now, on the wall clock (token times, directory times).
#[cfg(not(test))]
pub(crate) fn wall() -> SystemTime {
    #[allow(clippy::disallowed_methods)] // the one reading of the system's wall clock
    SystemTime::now()
}

/// Now, on the unit tests' wall clock: [`EPOCH_SECS`] after the Unix epoch, plus the
/// monotonic time the test thread has seen pass since it first asked.
#[cfg(test)]
pub(crate) fn wall() -> SystemTime {
    thread_local! {
        static START: Instant = now();
    }
    SystemTime::UNIX_EPOCH
        + std::time::Duration::from_secs(EPOCH_SECS)
        + START.with(|start| now().saturating_duration_since(*start))
}

/// Where the unit tests' wall clock starts: 2026-01-01T00:00:00Z, a time for which
/// "in the past" and "in the future" in test data are easy to write.
#[cfg(test)]
pub(crate) const EPOCH_SECS: u64 = 1_767_225_600;
