//! `[cache]`: the answer cache and lockout protection.

use super::defaults as d;
use super::raw::RawCache;
use super::{Cache, ConfigError, Ctx};

pub(super) fn resolve(c: RawCache, cx: &Ctx) -> Result<Cache, ConfigError> {
    let capacity = cx.count(&d::CAPACITY, c.capacity)?;
    let max_failures = cx.limit(&d::MAX_FAILURES, c.max_failures)?;
    let failure_window = cx.duration(&d::FAILURE_WINDOW, c.failure_window)?;
    if max_failures > 0 && failure_window.is_zero() {
        return Err(cx.invalid(d::FAILURE_WINDOW.key, "must be more than 0s"));
    }
    Ok(Cache {
        capacity,
        ttl: cx.duration(&d::TTL, c.ttl)?,
        negative_ttl: cx.duration(&d::NEGATIVE_TTL, c.negative_ttl)?,
        stale_ttl: cx.duration(&d::STALE_TTL, c.stale_ttl)?,
        max_failures: u32::try_from(max_failures)
            .map_err(|_| cx.invalid(d::MAX_FAILURES.key, "is too large"))?,
        failure_window,
    })
}
