//! The cap on requests in flight across the whole login port (`login.max_in_flight`):
//! every address together, so that many addresses cannot hold more requests (and the
//! memory and directory work behind them) than the port was sized for. Beyond it a
//! request is answered 503 at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Default)]
pub(crate) struct InFlight(AtomicUsize);

/// One request in flight; counted off when dropped.
pub(crate) struct Ticket(Arc<InFlight>);

impl InFlight {
    /// A ticket while fewer than `limit` requests are in flight; `None` otherwise.
    pub(crate) fn enter(self: &Arc<Self>, limit: usize) -> Option<Ticket> {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| Ticket(self.clone()))
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_beyond_the_limit_get_no_ticket_until_one_ends() {
        let f = Arc::new(InFlight::default());
        let a = f.enter(2).unwrap();
        let _b = f.enter(2).unwrap();
        assert!(f.enter(2).is_none());
        drop(a);
        assert!(f.enter(2).is_some());
    }
}
