//! The one metrics registry. Label values come from small closed sets (outcome, server URL,
//! operation, result, listener, close reason): never a username, a token or an address.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    pub outcome: &'static str,
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LdapOpLabels {
    pub server: String,
    pub operation: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub server: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabels {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClosedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub listener: &'static str,
    pub stage: &'static str,
}

/// Why the daemon closed a connection on its own (the `reason` label's closed set).
pub const CLOSE_REASONS: [&str; 8] = [
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
pub struct BuildLabels {
    pub version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub reviews: Family<ReviewLabels, Counter>,
    pub review_seconds: Histogram,
    pub cache_events: Family<EventLabels, Counter>,
    pub cache_entries: Gauge<i64, std::sync::atomic::AtomicI64>,
    pub stale_served_age_seconds: Histogram,
    pub ldap_operations: Family<LdapOpLabels, Counter>,
    pub ldap_seconds: Family<OperationLabels, Histogram>,
    pub ldap_failovers: Counter,
    pub ldap_connections: Family<ConnLabels, Gauge>,
    pub lockout_refusals: Counter,
    pub http_errors: Family<CodeLabels, Counter>,
    pub reloads: Family<EventLabels, Counter>,
    pub tls_handshake_failures: Counter<u64, AtomicU64>,
    /// Accepted logins whose bind carried a password-policy warning, by kind.
    pub password_warnings: Family<EventLabels, Counter>,
    /// Names the directory offered that would be `system:` names in Kubernetes, by kind.
    pub reserved_names: Family<EventLabels, Counter>,
    pub connections_closed: Family<ClosedLabels, Counter>,
    pub open_connections: Family<StageLabels, Gauge>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kube_ldap_webhook");
        let reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "reviews",
            "TokenReviews answered, by outcome and where the answer came from",
            reviews.clone(),
        );
        let review_seconds = Histogram::new(exponential_buckets(0.000_025, 2.5, 14));
        registry.register(
            "review_duration_seconds",
            "Time to answer a TokenReview",
            review_seconds.clone(),
        );
        let cache_events = Family::<EventLabels, Counter>::default();
        registry.register(
            "cache_events",
            "Answer cache hits, misses, stale answers, coalesced waits and evictions",
            cache_events.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register(
            "cache_entries",
            "Answers held in the cache",
            cache_entries.clone(),
        );
        let stale_served_age_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "cache_stale_age_seconds",
            "Age of accepted answers served while every LDAP server was down",
            stale_served_age_seconds.clone(),
        );
        let ldap_operations = Family::<LdapOpLabels, Counter>::default();
        registry.register(
            "ldap_operations",
            "LDAP operations, by server, kind and result",
            ldap_operations.clone(),
        );
        let ldap_seconds = Family::<OperationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_1, 2.5, 12))
        });
        registry.register(
            "ldap_operation_duration_seconds",
            "Time of LDAP operations",
            ldap_seconds.clone(),
        );
        let ldap_failovers = Counter::default();
        registry.register(
            "ldap_failovers",
            "Times a review moved on to the next LDAP server",
            ldap_failovers.clone(),
        );
        let ldap_connections = Family::<ConnLabels, Gauge>::default();
        registry.register(
            "ldap_connections",
            "Open LDAP connections, by server and kind (service, bind)",
            ldap_connections.clone(),
        );
        let lockout_refusals = Counter::default();
        registry.register(
            "lockout_refusals",
            "Reviews refused locally to protect an account from directory lockout",
            lockout_refusals.clone(),
        );
        let http_errors = Family::<CodeLabels, Counter>::default();
        registry.register(
            "http_errors",
            "Requests answered with an HTTP error status, by code",
            http_errors.clone(),
        );
        let reloads = Family::<EventLabels, Counter>::default();
        registry.register(
            "reloads",
            "Configuration reloads, by result",
            reloads.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_handshake_failures.clone(),
        );
        let password_warnings = Family::<EventLabels, Counter>::default();
        registry.register(
            "password_policy_warnings",
            "Accepted logins the directory warned about: password_expiring, grace_login",
            password_warnings.clone(),
        );
        let reserved_names = Family::<EventLabels, Counter>::default();
        registry.register(
            "reserved_names",
            "Directory names refused because they would be system: names: username (login refused), group (group dropped)",
            reserved_names.clone(),
        );
        let connections_closed = Family::<ClosedLabels, Counter>::default();
        registry.register(
            "connections_closed",
            "Connections the daemon closed on its own, by listener and reason",
            connections_closed.clone(),
        );
        let open_connections = Family::<StageLabels, Gauge>::default();
        registry.register(
            "open_connections",
            "Open connections, by listener and stage (handshake: no verified client certificate yet)",
            open_connections.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "Build information", build_info);
        // Series that exist from the start, so that rates and alerts work before the first
        // event: the closed sets known here (LDAP series by server appear with the first use).
        for event in ["hit", "miss", "stale", "coalesced", "eviction"] {
            let _ = cache_events.get_or_create(&EventLabels { event });
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
            let _ = reviews.get_or_create(&ReviewLabels { outcome, source });
        }
        for operation in [
            "connect",
            "service_bind",
            "search_user",
            "bind",
            "search_groups",
            "probe",
        ] {
            let _ = ldap_seconds.get_or_create(&OperationLabels { operation });
        }
        for event in ["ok", "failed"] {
            let _ = reloads.get_or_create(&EventLabels { event });
        }
        for event in ["password_expiring", "grace_login"] {
            let _ = password_warnings.get_or_create(&EventLabels { event });
        }
        for event in ["username", "group"] {
            let _ = reserved_names.get_or_create(&EventLabels { event });
        }
        for reason in CLOSE_REASONS {
            let _ = connections_closed.get_or_create(&ClosedLabels {
                listener: "reviews",
                reason,
            });
        }
        let _ = connections_closed.get_or_create(&ClosedLabels {
            listener: "ops",
            reason: "limit",
        });
        for (listener, stage) in [
            ("reviews", "handshake"),
            ("reviews", "verified"),
            ("ops", "open"),
        ] {
            let _ = open_connections.get_or_create(&StageLabels { listener, stage });
        }
        Metrics {
            registry,
            reviews,
            review_seconds,
            cache_events,
            cache_entries,
            stale_served_age_seconds,
            ldap_operations,
            ldap_seconds,
            ldap_failovers,
            ldap_connections,
            lockout_refusals,
            http_errors,
            reloads,
            tls_handshake_failures,
            password_warnings,
            reserved_names,
            connections_closed,
            open_connections,
        }
    }

    pub fn cache_event(&self, event: &'static str) {
        self.cache_events
            .get_or_create(&EventLabels { event })
            .inc();
    }

    pub fn encode(&self) -> String {
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
