//! Log lines about things an attacker can repeat (refused handshakes, reserved group
//! names) are written at most once per interval; the rest are counted and the count rides
//! on the next line, so a flood cannot flood the journal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Throttle {
    interval: Duration,
    /// When the last line was written, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(crate) const fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(crate::clock::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.0 {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                s.1 = s.1.saturating_add(1);
                None
            }
            _ => {
                let held = s.1;
                *s = (Some(now), 0);
                Some(held)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_and_the_rest_counted() {
        let t = Throttle::new(Duration::from_secs(10));
        let t0 = crate::clock::now();
        assert_eq!(t.allow_at(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(t.allow_at(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(t.allow_at(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(t.allow_at(t0 + Duration::from_secs(11)), None);
    }
}
