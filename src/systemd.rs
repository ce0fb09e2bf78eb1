//! systemd integration: `Type=notify` readiness, reload and stop notices, the watchdog,
//! and whether stderr goes to the journal. Every call is a no-op outside systemd.

use std::time::Duration;

use sd_notify::NotifyState;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

pub(crate) fn ready() {
    notify(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// systemd ≥ 253 wants MONOTONIC_USEC with RELOADING=1 to match the reload to its request.
pub(crate) fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(usec) => notify(&[NotifyState::Reloading, usec]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

pub(crate) fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// Pings more often than this are pointless: a runtime cannot prove itself alive faster.
const MIN_PING_PERIOD: Duration = Duration::from_millis(10);
/// Pings less often than this gain nothing and keep timer arithmetic far from overflow.
const MAX_PING_PERIOD: Duration = Duration::from_secs(3600);

/// Pings the watchdog at half the interval systemd asks for (`WatchdogSec=`), from the
/// runtime itself, so a wedged runtime stops the pings and systemd restarts the service.
pub(crate) fn spawn_watchdog() {
    let Some(usec) = watchdog_usec() else {
        return;
    };
    let period = ping_period(usec);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            notify(&[NotifyState::Watchdog]);
        }
    });
}

/// The watchdog interval systemd asks for, with sd_watchdog_enabled(3)'s rules:
/// `WATCHDOG_USEC` set and positive, and `WATCHDOG_PID`, when set, naming this process.
/// (The sd-notify crate also insists on `WATCHDOG_PID` being set, which libsystemd does not.)
fn watchdog_usec() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    if usec == 0 {
        return None;
    }
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.trim().parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

/// Half the interval, kept within what a timer can do: `WATCHDOG_USEC=1` must not make a
/// zero period (tokio's interval panics on one), nor a huge value an overflowing deadline.
fn ping_period(usec: u64) -> Duration {
    Duration::from_micros(usec / 2).clamp(MIN_PING_PERIOD, MAX_PING_PERIOD)
}

/// systemd sets JOURNAL_STREAM when stderr is connected to the journal.
pub(crate) fn stderr_is_journal() -> bool {
    std::env::var_os("JOURNAL_STREAM").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ping_period_is_half_the_interval() {
        assert_eq!(ping_period(30_000_000), Duration::from_secs(15));
    }

    #[test]
    fn the_ping_period_stays_within_what_a_timer_can_do() {
        assert_eq!(ping_period(1), MIN_PING_PERIOD);
        assert_eq!(ping_period(u64::MAX), MAX_PING_PERIOD);
    }
}
