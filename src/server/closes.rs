//! Connections the daemon closes on its own: counted each in a metric, logged sparingly.
//!
//! Anyone who can reach a port can make the daemon close connections, as fast as they can
//! open them; one log line each would flood the journal. So per listener and reason the
//! first close of an interval is logged with its details and the rest are counted, then
//! summed up in one line when the interval ends: at most nine lines per interval.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::metrics::{ClosedLabels, Metrics, CLOSE_REASONS};

/// How often the suppressed closes are summed up in the log.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    HandshakeTimeout,
    NoCertificate,
    BadCertificate,
    TlsError,
    Evicted,
    Limit,
    FirstRequestTimeout,
    /// No request in flight for `idle_timeout`: the normal end of a verified connection.
    Idle,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        CLOSE_REASONS[self.index()]
    }

    fn index(self) -> usize {
        match self {
            Reason::HandshakeTimeout => 0,
            Reason::NoCertificate => 1,
            Reason::BadCertificate => 2,
            Reason::TlsError => 3,
            Reason::Evicted => 4,
            Reason::Limit => 5,
            Reason::FirstRequestTimeout => 6,
            Reason::Idle => 7,
        }
    }

    fn is_handshake_failure(self) -> bool {
        matches!(
            self,
            Reason::HandshakeTimeout
                | Reason::NoCertificate
                | Reason::BadCertificate
                | Reason::TlsError
        )
    }
}

#[derive(Default)]
struct Window {
    logged: [bool; CLOSE_REASONS.len()],
    suppressed: [u64; CLOSE_REASONS.len()],
}

pub(crate) struct Closes {
    listener: &'static str,
    metrics: Arc<Metrics>,
    window: Mutex<Window>,
}

impl Closes {
    pub(crate) fn new(listener: &'static str, metrics: Arc<Metrics>) -> Arc<Closes> {
        Arc::new(Closes {
            listener,
            metrics,
            window: Mutex::new(Window::default()),
        })
    }

    /// Counts a close; logs it if it is the first of this interval. `detail` is what the TLS
    /// layer said, never anything the client sent.
    pub(crate) fn record(&self, reason: Reason, peer: SocketAddr, detail: &str) {
        self.metrics
            .connections_closed
            .get_or_create(&ClosedLabels {
                listener: self.listener,
                reason: reason.label(),
            })
            .inc();
        if reason.is_handshake_failure() {
            self.metrics.tls_handshake_failures.inc();
        }
        if reason == Reason::Idle {
            // The ordinary end of a connection; the metric says how often.
            return;
        }
        let first = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            let i = reason.index();
            if w.logged[i] {
                w.suppressed[i] += 1;
            }
            !std::mem::replace(&mut w.logged[i], true)
        };
        if !first {
            return;
        }
        let (listener, reason) = (self.listener, reason.label());
        // A limit may be refusing kube-apiserver: the operator should see it.
        if reason == "limit" {
            tracing::warn!(listener, reason, %peer, detail, "connection closed: limit reached; more such closes are summed up every 10s");
        } else {
            tracing::info!(listener, reason, %peer, detail, "connection closed; more such closes are summed up every 10s");
        }
    }

    /// Ends the interval: one line for the closes not logged one by one, if any.
    pub(crate) fn flush(&self) {
        let w = {
            let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut *w)
        };
        let count: u64 = w.suppressed.iter().sum();
        if count == 0 {
            return;
        }
        let reasons = CLOSE_REASONS
            .iter()
            .zip(w.suppressed)
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let listener = self.listener;
        let message = "connections closed since the last such line (not logged one by one)";
        if w.suppressed[Reason::Limit.index()] > 0 {
            tracing::warn!(listener, count, reasons, "{message}");
        } else {
            tracing::info!(listener, count, reasons, "{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_metric_set() {
        for (i, r) in [
            Reason::HandshakeTimeout,
            Reason::NoCertificate,
            Reason::BadCertificate,
            Reason::TlsError,
            Reason::Evicted,
            Reason::Limit,
            Reason::FirstRequestTimeout,
            Reason::Idle,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(r.index(), i);
        }
        assert_eq!(Reason::NoCertificate.label(), "no_certificate");
    }

    #[test]
    fn only_the_first_close_per_reason_and_interval_is_logged_and_the_rest_counted() {
        let c = Closes::new("reviews", Arc::new(Metrics::new()));
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for _ in 0..5 {
            c.record(Reason::NoCertificate, peer, "x");
        }
        c.record(Reason::Limit, peer, "");
        c.record(Reason::Idle, peer, "");
        let w = c.window.lock().unwrap();
        assert!(w.logged[Reason::NoCertificate.index()] && w.logged[Reason::Limit.index()]);
        assert_eq!(w.suppressed[Reason::NoCertificate.index()], 4);
        assert_eq!(w.suppressed.iter().sum::<u64>(), 4, "idle is not counted");
        drop(w);
        c.flush();
        let w = c.window.lock().unwrap();
        assert!(w.logged.iter().all(|l| !l) && w.suppressed.iter().all(|n| *n == 0));
    }
}
