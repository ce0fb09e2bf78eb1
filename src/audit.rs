//! Audit events: one JSON line per decision (a login, a review, a token exchange, the start
//! of a lockout, a reload), in a file of their own (`[audit]`), apart from the log.
//!
//! A leaf: the server and the authenticator call [`Audit::record`]; nothing here calls
//! back. The line is rendered on the caller's thread (a few hundred bytes of JSON) and
//! handed to a bounded queue; one writer thread ([`writer`]) appends it and rotates the
//! file by size. When the writer falls behind and the queue is full, the event is dropped
//! and counted (`kube_ldap_webhook_audit_events_total{event="dropped"}`): a review never
//! waits for the disk.
//!
//! Never a secret: an event names a credential by its id (an issued token's `jti`) or by
//! a keyed hash of the token (HMAC-SHA256 under a random key of this process, so the same
//! token has the same id until a restart and the id cannot be tested against guesses
//! without the key), never by the token; passwords never reach this module.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Serialize;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::config::Audit as Settings;
use prometheus_client::metrics::counter::Counter;

use crate::metrics::{EventLabels, Metrics};

mod writer;

pub(crate) use writer::OpenError;

/// What happened. The names are the `event` field of the schema (README, "Audit events").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    Login,
    Review,
    TokenExchange,
    LockoutStart,
    KeyReload,
    ConfigReload,
}

/// One decision, as its caller knows it. Fields left `None` are left out of the line.
#[derive(Debug)]
pub(crate) struct Event<'a> {
    pub kind: Kind,
    /// `accepted`, `rejected`, an account state, `unavailable`, `rate_limited`, `ok`, ...
    pub outcome: &'a str,
    /// Why, in words (never a secret; a name only where `personal_data` allows).
    pub reason: &'a str,
    pub request_id: Option<RequestId>,
    /// How the credential came: `basic`, `issued`, `password`, `negotiate`.
    pub method: Option<&'a str>,
    /// Where the answer came from: `ldap`, `cache`, `local`, `coalesced`, `stale`.
    pub answer: Option<&'a str>,
    pub directory: Option<&'a str>,
    pub source_address: Option<SocketAddr>,
    pub credential_id: Option<String>,
    /// The id of the token a login or an exchange handed out.
    pub issued_id: Option<&'a str>,
    pub latency: Option<Duration>,
    pub username: Option<&'a str>,
    pub groups: Option<&'a [String]>,
    /// The key ids in use after a key reload.
    pub keys: Option<&'a [String]>,
}

impl<'a> Event<'a> {
    pub(crate) fn new(kind: Kind, outcome: &'a str, reason: &'a str) -> Event<'a> {
        Event {
            kind,
            outcome,
            reason,
            request_id: None,
            method: None,
            answer: None,
            directory: None,
            source_address: None,
            credential_id: None,
            issued_id: None,
            latency: None,
            username: None,
            groups: None,
            keys: None,
        }
    }
}

/// The line as written: the schema, field by field.
#[derive(Serialize)]
struct Line<'a> {
    time: String,
    event: Kind,
    outcome: &'a str,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    directory: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issued_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<&'a [String]>,
}

/// The audit stream of the daemon: one for the process, kept across reloads.
pub(crate) struct Audit {
    /// `None` when `audit.file` is unset: every event is dropped at no cost.
    queue: Option<SyncSender<writer::Msg>>,
    personal_data: AtomicBool,
    cache_hits: AtomicBool,
    key: [u8; 32],
    /// `audit_events_total`'s counters of the request path, looked up in their family once
    /// (a lookup hashes the label set under a lock; a cache hit counts one).
    counters: Counters,
    /// The settings the file was opened with; a reload cannot move it.
    opened: Settings,
}

struct Counters {
    cache_hit: Counter,
    not_ours: Counter,
    dropped: Counter,
    failed: Counter,
}

impl Counters {
    fn new(metrics: &Metrics) -> Counters {
        let c = |event| {
            metrics
                .audit_events
                .get_or_create(&EventLabels { event })
                .clone()
        };
        Counters {
            cache_hit: c("cache_hit"),
            not_ours: c("not_ours"),
            dropped: c("dropped"),
            failed: c("failed"),
        }
    }
}

impl Audit {
    /// Opens `settings.file` (creating it, mode 0600) and starts its writer; off without a
    /// file.
    pub(crate) fn open(settings: &Settings, metrics: Arc<Metrics>) -> Result<Audit, OpenError> {
        let queue = match &settings.file {
            Some(path) => Some(writer::start(path, settings, metrics.clone())?),
            None => None,
        };
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Ok(Audit {
            queue,
            personal_data: AtomicBool::new(settings.personal_data),
            cache_hits: AtomicBool::new(settings.cache_hits),
            key,
            counters: Counters::new(&metrics),
            opened: settings.clone(),
        })
    }

    /// A stream that writes nothing (unit tests, `check-config`).
    pub(crate) fn off(metrics: Arc<Metrics>) -> Audit {
        Audit {
            queue: None,
            personal_data: AtomicBool::new(true),
            cache_hits: AtomicBool::new(false),
            key: [0u8; 32],
            counters: Counters::new(&metrics),
            opened: Settings::default(),
        }
    }

    /// Takes a reload's `personal_data` and `cache_hits`; says whether the file settings
    /// differ from those it was opened with (they take effect at the next restart).
    pub(crate) fn reconfigure(&self, settings: &Settings) -> bool {
        self.personal_data
            .store(settings.personal_data, Ordering::Relaxed);
        self.cache_hits
            .store(settings.cache_hits, Ordering::Relaxed);
        let file_part = |s: &Settings| (s.file.clone(), s.max_size, s.max_files, s.queue);
        file_part(settings) != file_part(&self.opened)
    }

    pub(crate) fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Whether a review answered from the cache is written (else only counted).
    pub(crate) fn wants_cache_hits(&self) -> bool {
        self.cache_hits.load(Ordering::Relaxed)
    }

    /// A cache hit not written: counted instead.
    pub(crate) fn count_cache_hit(&self) {
        if self.enabled() {
            self.counters.cache_hit.inc();
        }
    }

    /// A review of a token that is not ours: counted, not written.
    pub(crate) fn count_not_ours(&self) {
        if self.enabled() {
            self.counters.not_ours.inc();
        }
    }

    /// The id of a credential whose token id is unknown: a keyed hash of the token.
    pub(crate) fn credential_id(&self, token: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(token.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("hmac-sha256:{hex}")
    }

    /// Writes `event` (or counts it dropped when the writer is behind).
    pub(crate) fn record(&self, event: Event<'_>) {
        let Some(queue) = &self.queue else {
            return;
        };
        let line = render(&event, self.personal_data.load(Ordering::Relaxed), now());
        match queue.try_send(writer::Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.failed.inc();
            }
        }
    }

    /// Waits (up to `within`) until every event queued so far is on disk: at shutdown.
    pub(crate) fn flush(&self, within: Duration) {
        let Some(queue) = &self.queue else {
            return;
        };
        let (done, wait) = mpsc::channel();
        if queue.send(writer::Msg::Flush(done)).is_ok() {
            let _ = wait.recv_timeout(within);
        }
    }
}

#[cfg(test)]
impl Audit {
    /// A stream whose queue of `capacity` nobody drains, and the queue's other end.
    fn stalled(capacity: usize, metrics: Arc<Metrics>) -> (Audit, mpsc::Receiver<writer::Msg>) {
        let (tx, rx) = mpsc::sync_channel(capacity);
        let mut audit = Audit::off(metrics);
        audit.queue = Some(tx);
        (audit, rx)
    }
}

fn now() -> SystemTime {
    crate::clock::wall()
}

/// The JSON line of `event`, without its newline. serde_json escapes every control
/// character and quote, so no field can break the line or add a field.
fn render(event: &Event<'_>, personal_data: bool, at: SystemTime) -> String {
    let time = OffsetDateTime::from(at)
        .format(&Rfc3339)
        .unwrap_or_default();
    let line = Line {
        time,
        event: event.kind,
        outcome: event.outcome,
        reason: event.reason,
        request_id: event.request_id.map(|id| id.to_string()),
        method: event.method,
        answer: event.answer,
        directory: event.directory,
        source_address: event.source_address.map(|a| a.to_string()),
        credential_id: event.credential_id.as_deref(),
        issued_id: event.issued_id,
        latency_us: event
            .latency
            .map(|l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX)),
        username: event.username.filter(|_| personal_data),
        groups: event.groups.filter(|_| personal_data),
        keys: event.keys,
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// A correlation id for one request, in its log line and its audit event: shown as 16 hex
/// digits, kept as a number so that a request pays no allocation for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestId(u64);

impl RequestId {
    pub(crate) fn random() -> RequestId {
        RequestId(rand::random())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests;
