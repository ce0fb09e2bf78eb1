//! The clock of the review policy (cache, lockout, deadlines): tokio's, so that unit tests
//! can pause and advance it; in the daemon it reads the same as `Instant::now()`.

use std::time::Instant;

pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}
