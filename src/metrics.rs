//! The one metrics registry. Label values come from small closed sets (outcome, directory
//! name, server URL, operation, result, listener, close reason): never a username, a token
//! or a client's address.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReviewLabels {
    pub outcome: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabels {
    pub event: &'static str,
}

/// How a login was made, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub method: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LdapOpLabels {
    pub directory: String,
    pub server: String,
    pub operation: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OperationLabels {
    pub directory: String,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConnLabels {
    pub directory: String,
    pub server: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectoryLabels {
    pub directory: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DiscoveryLabels {
    pub directory: String,
    pub result: &'static str,
}

/// The operations whose duration is recorded, seeded per directory.
pub(crate) const LDAP_OPERATIONS: [&str; 6] = [
    "connect",
    "service_bind",
    "search_user",
    "bind",
    "search_groups",
    "probe",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClosedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ListenerLabels {
    pub listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabels {
    pub listener: &'static str,
    pub stage: &'static str,
}

/// Why the daemon closed a connection on its own (the `reason` label's closed set).
pub(crate) const CLOSE_REASONS: [&str; 8] = [
    "handshake_timeout",
    "no_certificate",
    "bad_certificate",
    "tls_error",
    "evicted",
    "limit",
    "first_request_timeout",
    "idle",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BuildLabels {
    pub version: &'static str,
}

/// Declares the metrics once: each line is the field, its type, how it is made, and the
/// name and help it is registered under (with the `kube_ldap_webhook_` prefix).
macro_rules! metrics {
    ($($(#[$doc:meta])* $field:ident: $ty:ty = $init:expr, $name:literal, $help:literal;)*) => {
        /// Every metric of the daemon, registered in one registry.
        pub(crate) struct Metrics {
            registry: Registry,
            $($(#[$doc])* pub(crate) $field: $ty,)*
        }

        impl Metrics {
            pub(crate) fn new() -> Self {
                let mut r = Registry::with_prefix("kube_ldap_webhook");
                let build_info = Family::<BuildLabels, Gauge>::default();
                build_info
                    .get_or_create(&BuildLabels {
                        version: env!("CARGO_PKG_VERSION"),
                    })
                    .set(1);
                r.register("build_info", "Build information", build_info);
                let m = Metrics {
                    $($field: reg(&mut r, $name, $help, $init),)*
                    registry: r,
                };
                m.seed();
                m
            }
        }
    };
}

metrics! {
    reviews: Family<ReviewLabels, Counter> = Family::default(),
        "reviews", "TokenReviews answered, by outcome and where the answer came from";
    review_seconds: Histogram = Histogram::new(exponential_buckets(0.000_025, 2.5, 14)),
        "review_duration_seconds", "Time to answer a TokenReview";
    cache_events: Family<EventLabels, Counter> = Family::default(),
        "cache_events", "Answer cache hits, misses, stale answers, coalesced waits and evictions";
    cache_entries: Gauge<i64, std::sync::atomic::AtomicI64> = Gauge::default(),
        "cache_entries", "Answers held in the cache";
    stale_served_age_seconds: Histogram = Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        "cache_stale_age_seconds", "Age of accepted answers served while every LDAP server was down";
    ldap_operations: Family<LdapOpLabels, Counter> = Family::default(),
        "ldap_operations", "LDAP operations, by directory, server, kind and result";
    ldap_seconds: Family<OperationLabels, Histogram> = Family::new_with_constructor(ldap_buckets),
        "ldap_operation_duration_seconds", "Time of LDAP operations, by directory and kind";
    ldap_failovers: Family<DirectoryLabels, Counter> = Family::default(),
        "ldap_failovers", "Times a review moved on to the next LDAP server, by directory";
    ldap_connections: Family<ConnLabels, Gauge> = Family::default(),
        "ldap_connections", "Open LDAP connections, by directory, server and kind (service, bind)";
    /// DNS lookups of `ldap.discover`, by result (ok, failed: the last good list is kept).
    ldap_discovery: Family<DiscoveryLabels, Counter> = Family::default(),
        "ldap_discovery_lookups",
        "DNS SRV lookups of LDAP servers, by directory and result (failed: the last good list is kept)";
    ldap_discovered: Family<DirectoryLabels, Gauge> = Family::default(),
        "ldap_discovered_servers", "LDAP servers the last good DNS lookup named, by directory";
    /// `tokenGroups` values that were not SIDs (`ldap.group.token_groups`), skipped.
    ldap_malformed_sids: Family<DirectoryLabels, Counter> = Family::default(),
        "ldap_malformed_sids",
        "tokenGroups values that were not well-formed SIDs, skipped (ldap.group.token_groups), by directory";
    lockout_refusals: Counter = Counter::default(),
        "lockout_refusals", "Reviews refused locally to protect an account from directory lockout";
    http_errors: Family<CodeLabels, Counter> = Family::default(),
        "http_errors", "Requests answered with an HTTP error status, by code";
    reloads: Family<EventLabels, Counter> = Family::default(),
        "reloads", "Configuration reloads, by result";
    tls_handshake_failures: Counter<u64, AtomicU64> = Counter::default(),
        "tls_handshake_failures", "TLS handshakes that failed or timed out";
    /// Accepted logins whose bind carried a password-policy warning, by kind.
    password_warnings: Family<EventLabels, Counter> = Family::default(),
        "password_policy_warnings",
        "Accepted logins the directory warned about: password_expiring, grace_login";
    /// Names the directory offered that would be `system:` names in Kubernetes, by kind.
    reserved_names: Family<EventLabels, Counter> = Family::default(),
        "reserved_names",
        "Directory names refused because they would be system: names: username (login refused), group (group dropped)";
    connections_closed: Family<ClosedLabels, Counter> = Family::default(),
        "connections_closed", "Connections the daemon closed on its own, by listener and reason";
    open_connections: Family<StageLabels, Gauge> = Family::default(),
        "open_connections",
        "Open connections, by listener and stage (handshake: replaceable, no verified client certificate yet or a login connection without a request in flight)";
    /// Password logins at a directory now that count against `login.max_logins_per_directory`.
    logins_in_flight: Family<DirectoryLabels, Gauge> = Family::default(),
        "logins_in_flight",
        "Logins of credentials not accepted before that are at the directory now, by directory (at most login.max_logins_per_directory)";
    /// Logins turned away at `login.max_logins_per_directory`, without LDAP traffic.
    login_ceiling_refusals: Family<DirectoryLabels, Counter> = Family::default(),
        "login_ceiling_refusals",
        "Logins refused without LDAP traffic because login.max_logins_per_directory logins were at the directory already, by directory";
    /// Requests on the login endpoint, by result.
    logins: Family<EventLabels, Counter> = Family::default(),
        "logins",
        "Login endpoint requests: issued, rejected, unavailable, backend_error, rate_limited, check_accepted, check_rejected, body_refused, busy";
    /// The audit stream's events, by what became of them.
    audit_events: Family<EventLabels, Counter> = Family::default(),
        "audit_events",
        "Audit events: written, dropped (the writer fell behind and the queue was full), failed (could not be written), cache_hit (a review answered from the cache, counted instead of written unless audit.cache_hits), not_ours (a review of a token for another authenticator, counted instead of written)";
    /// `POST /login` by the way it logged in (password, negotiate) and its result.
    login_methods: Family<MethodLabels, Counter> = Family::default(),
        "login_methods",
        "Logins by method (password: Basic; negotiate: Kerberos) and result: issued, rejected, unavailable, or for negotiate the refusal made without LDAP traffic (too_large, malformed, ntlm, continuation, mechanism, replay, expired, ticket, principal, realm, acceptor)";
    /// The serving chain's earliest notAfter, per TLS listener (reviews, login).
    tls_certificate_expiry: Family<ListenerLabels, Gauge> = Family::default(),
        "tls_certificate_expiry_timestamp_seconds",
        "When the TLS serving certificate (server.tls_cert_file) expires, Unix seconds of the earliest notAfter of its chain, by listener (reviews, login)";
    /// The client CA file's earliest notAfter, for the listener that asks for client certificates.
    tls_client_ca_expiry: Family<ListenerLabels, Gauge> = Family::default(),
        "tls_client_ca_expiry_timestamp_seconds",
        "When the first CA of server.client_ca_file expires (Unix seconds of its notAfter), by listener (reviews)";
}

fn ldap_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.5, 12))
}

/// Registers `metric` under `name` and hands it back for the struct field.
fn reg<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Series that exist from the start, so that rates and alerts work before the first
    /// event: the closed sets known here (LDAP series by server appear with the first use).
    fn seed(&self) {
        for event in ["hit", "miss", "stale", "coalesced", "eviction"] {
            let _ = self.cache_events.get_or_create(&EventLabels { event });
        }
        for (outcome, source) in [
            ("accepted", "ldap"),
            ("accepted", "cache"),
            ("accepted", "stale"),
            ("rejected", "ldap"),
            ("rejected", "cache"),
            ("rejected", "local"),
            ("not_ours", "local"),
            ("unavailable", "ldap"),
        ] {
            let _ = self
                .reviews
                .get_or_create(&ReviewLabels { outcome, source });
        }
        for event in ["ok", "failed"] {
            let _ = self.reloads.get_or_create(&EventLabels { event });
        }
        for event in ["written", "dropped", "failed", "cache_hit", "not_ours"] {
            let _ = self.audit_events.get_or_create(&EventLabels { event });
        }
        for event in ["password_expiring", "grace_login"] {
            let _ = self.password_warnings.get_or_create(&EventLabels { event });
        }
        for event in [
            "issued",
            "rejected",
            "unavailable",
            "rate_limited",
            "check_accepted",
            "check_rejected",
            "body_refused",
            "busy",
        ] {
            let _ = self.logins.get_or_create(&EventLabels { event });
        }
        for method in ["password", "negotiate"] {
            for result in ["issued", "rejected", "unavailable"] {
                let _ = self
                    .login_methods
                    .get_or_create(&MethodLabels { method, result });
            }
        }
        for event in ["username", "group"] {
            let _ = self.reserved_names.get_or_create(&EventLabels { event });
        }
        for reason in CLOSE_REASONS {
            let _ = self.connections_closed.get_or_create(&ClosedLabels {
                listener: "reviews",
                reason,
            });
        }
        let _ = self.connections_closed.get_or_create(&ClosedLabels {
            listener: "ops",
            reason: "limit",
        });
        for (listener, stage) in [
            ("reviews", "handshake"),
            ("reviews", "verified"),
            ("ops", "open"),
        ] {
            let _ = self
                .open_connections
                .get_or_create(&StageLabels { listener, stage });
        }
    }

    /// The series of one directory that exist before its first operation.
    pub(crate) fn seed_directory(&self, name: &str, discovers: bool) {
        for operation in LDAP_OPERATIONS {
            let _ = self.ldap_seconds.get_or_create(&OperationLabels {
                directory: name.to_string(),
                operation,
            });
        }
        let directory = DirectoryLabels {
            directory: name.to_string(),
        };
        let _ = self.ldap_failovers.get_or_create(&directory);
        let _ = self.ldap_malformed_sids.get_or_create(&directory);
        if discovers {
            let _ = self.ldap_discovered.get_or_create(&directory);
            for result in ["ok", "failed"] {
                let _ = self.ldap_discovery.get_or_create(&DiscoveryLabels {
                    directory: name.to_string(),
                    result,
                });
            }
        }
    }

    pub(crate) fn cache_event(&self, event: &'static str) {
        self.cache_events
            .get_or_create(&EventLabels { event })
            .inc();
    }

    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
