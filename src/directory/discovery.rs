//! Servers from DNS (`ldap.discover`), found the way Windows clients and SSSD find domain
//! controllers: SRV records (RFC 2782) under `_ldap._tcp.<site>._sites.dc._msdcs.<domain>`
//! and `_ldap._tcp.dc._msdcs.<domain>` for Active Directory, `_ldap._tcp.<domain>` for
//! other directories. They are ordered by priority and spread by weight, refreshed in the
//! background when their TTL runs out (within `ldap.discover_refresh_min..max`), and a
//! lookup that fails, even in part (one name of two), keeps the last good list.
//!
//! DNS is not trusted to name just any host: a target outside the domain looked up is
//! skipped, at most [`MAX_SERVERS`] are taken, and every server found is reached over TLS
//! whose certificate must name the host DNS gave.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rand::Rng;
use tokio::sync::watch;

use super::pool::{lock, Origin, Pool};
use crate::config::{self, Discover, Preset};
use crate::metrics::{DirectoryLabels, DiscoveryLabels, Metrics};

/// Servers taken from one lookup at most: each costs connections, and DNS is not trusted
/// to size the daemon's pools.
pub(crate) const MAX_SERVERS: usize = 32;
/// One whole lookup (every name): resolv.conf's own timeouts and attempts apply inside.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);

/// One SRV record, its target as an ASCII host name without the trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub(crate) target: String,
    pub(crate) port: u16,
    pub(crate) priority: u16,
    pub(crate) weight: u16,
}

/// Why a lookup gave no list; the last good one is kept.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LookupError {
    #[error("cannot read the DNS configuration (/etc/resolv.conf): {0}")]
    Config(String),
    #[error("{name}: {error}")]
    Dns { name: String, error: String },
    #[error("no usable SRV record under {0}")]
    NoRecords(String),
    #[error("DNS did not answer within {0:?}")]
    Timeout(Duration),
}

/// What one lookup found: the servers as (URL, origin) in the order to try them, the
/// smallest TTL among the records used, and the error of a name that failed while another
/// answered (a site's record beside the domain's).
#[derive(Debug)]
pub(crate) struct Found {
    pub(crate) servers: Vec<(String, Origin)>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) partial: Option<LookupError>,
}

/// The SRV names to look up, most preferred first.
pub(crate) fn record_names(d: &Discover, preset: Preset) -> Vec<String> {
    let domain = &d.domain;
    if preset != Preset::ActiveDirectory {
        return vec![format!("_ldap._tcp.{domain}")];
    }
    let mut names = Vec::with_capacity(2);
    if let Some(site) = &d.site {
        names.push(format!("_ldap._tcp.{site}._sites.dc._msdcs.{domain}"));
    }
    names.push(format!("_ldap._tcp.dc._msdcs.{domain}"));
    names
}

/// RFC 2782's order: by priority, lowest first; within one priority a weighted random
/// draw, repeated until none is left (a record of weight 0 is drawn first only when the
/// draw is exactly 0).
pub(crate) fn rfc2782_order(mut records: Vec<Srv>, rng: &mut impl Rng) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, tail) = rest.split_at(same);
        // Weight 0 first, as the RFC arranges them before the draw.
        let mut group: Vec<&Srv> = group.iter().collect();
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = rng.gen_range(0..=total);
            let mut running = 0;
            let i = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i).clone());
        }
        rest = tail;
    }
    out
}

/// How a server DNS named is reached: LDAPS on 636, or with `ldap.start_tls` StartTLS on the
/// record's port. Never clear text.
pub(crate) fn url(srv: &Srv, start_tls: bool) -> String {
    if start_tls {
        format!("ldap://{}:{}", srv.target, srv.port)
    } else {
        format!("ldaps://{}:636", srv.target)
    }
}

/// When to look again: the records' TTL within the configured bounds; a failed lookup (no
/// TTL) is retried after the lower bound.
pub(crate) fn refresh_after(ttl: Option<Duration>, d: &Discover) -> Duration {
    ttl.unwrap_or(d.refresh_min)
        .clamp(d.refresh_min, d.refresh_max)
}

/// Whether DNS may name `host` for `domain`: the domain itself or a name below it.
fn within(host: &str, domain: &str) -> bool {
    host == domain || host.strip_suffix(domain).is_some_and(|h| h.ends_with('.'))
}

/// One SRV record as DNS sent it: the target as ASCII without the trailing dot (`None`
/// for "."), and its TTL.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) target: Option<String>,
    pub(crate) port: u16,
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) ttl: Duration,
}

/// Looks the names up, most preferred first, and turns their records into servers.
pub(crate) async fn lookup(
    names: &[String],
    domain: &str,
    start_tls: bool,
) -> Result<Found, LookupError> {
    // Built afresh for every lookup: a resolv.conf that changed is read, and no answer is
    // served from a cache past the TTL this module already honours.
    let resolver = TokioResolver::builder_tokio()
        .map_err(|e| LookupError::Config(e.to_string()))?
        .build()
        .map_err(|e| LookupError::Config(e.to_string()))?;
    let mut answers = Vec::new();
    let mut first_error = None;
    for name in names {
        match resolver.srv_lookup(format!("{name}.")).await {
            Ok(l) => {
                let records = l.answers().iter().filter_map(|r| {
                    let RData::SRV(srv) = &r.data else {
                        return None;
                    };
                    let target = &srv.target;
                    Some(Record {
                        target: (!target.is_root())
                            .then(|| target.to_ascii().trim_end_matches('.').to_string()),
                        port: srv.port,
                        priority: srv.priority,
                        weight: srv.weight,
                        ttl: Duration::from_secs(u64::from(r.ttl)),
                    })
                });
                answers.push((name.clone(), records.collect()));
            }
            Err(e) if e.is_no_records_found() => {}
            Err(e) => {
                first_error.get_or_insert(LookupError::Dns {
                    name: name.clone(),
                    error: e.to_string(),
                });
            }
        }
    }
    let mut found = servers_from(answers, domain, start_tls, &mut rand::thread_rng());
    match (found.servers.is_empty(), first_error) {
        (false, partial) => {
            found.partial = partial;
            Ok(found)
        }
        (true, Some(e)) => Err(e),
        // No record, or only "." and skipped targets: said so, and the last list is kept,
        // since a DNS mistake must not take every server away.
        (true, None) => Err(LookupError::NoRecords(names.join(", "))),
    }
}

/// The servers the answers name, name by name in order, each name's in RFC 2782 order:
/// without "." targets (no service there, RFC 2782), targets outside `domain`, repeats, and
/// any past [`MAX_SERVERS`]. The TTL is the smallest among the records.
pub(crate) fn servers_from(
    answers: Vec<(String, Vec<Record>)>,
    domain: &str,
    start_tls: bool,
    rng: &mut impl Rng,
) -> Found {
    let mut servers: Vec<(String, Origin)> = Vec::new();
    let mut ttl: Option<Duration> = None;
    for (name, records) in answers {
        let (mut usable, mut skipped) = (Vec::new(), Vec::new());
        for r in records {
            ttl = Some(ttl.map_or(r.ttl, |t| t.min(r.ttl)));
            let Some(target) = r.target.map(|t| t.to_ascii_lowercase()) else {
                continue;
            };
            if !target.split('.').all(config::is_dns_label) || !within(&target, domain) {
                skipped.push(target);
                continue;
            }
            usable.push(Srv {
                target,
                port: r.port,
                priority: r.priority,
                weight: r.weight,
            });
        }
        if !skipped.is_empty() {
            // One line per name, however many records DNS sent.
            let n = skipped.len();
            skipped.truncate(3);
            tracing::warn!(record = %name, skipped = n, examples = ?skipped,
                "skipped SRV targets outside the discovered domain (list such servers in ldap.urls)");
        }
        for srv in rfc2782_order(usable, rng) {
            let u = url(&srv, start_tls);
            if servers.len() < MAX_SERVERS && !servers.iter().any(|(x, _)| *x == u) {
                let origin = Origin::Dns {
                    record: name.clone(),
                    priority: srv.priority,
                    weight: srv.weight,
                };
                servers.push((u, origin));
            }
        }
    }
    Found {
        servers,
        ttl,
        partial: None,
    }
}

/// What a lookup does to the list.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Every name answered (with records or with none): the list becomes this one.
    Complete(Found),
    /// A name failed while another answered, and no whole lookup ever succeeded: these
    /// servers beat none, but the lookup counts as failed.
    Partial(Found, LookupError),
    /// The lookup failed, or failed in part after a whole one had succeeded: a site's DCs
    /// must not silently give way to the domain's because the site's record did not answer
    /// once. The last good list stays.
    Failed(LookupError),
}

/// The [`Verdict`] on a lookup, given whether a whole lookup has succeeded before.
pub(crate) fn verdict(found: Result<Found, LookupError>, had_complete: bool) -> Verdict {
    match found {
        Err(e) => Verdict::Failed(e),
        Ok(mut f) => match f.partial.take() {
            None => Verdict::Complete(f),
            Some(e) if had_complete => Verdict::Failed(e),
            Some(e) => Verdict::Partial(f, e),
        },
    }
}

/// What the last lookups said, for `/readyz` and `check-config --connect`.
#[derive(Debug, Default)]
struct State {
    last_ok: Option<(Instant, usize)>,
    last_error: Option<(Instant, String)>,
    next: Option<Instant>,
}

/// The background lookups of one directory.
pub(crate) struct Discovery {
    settings: Discover,
    names: Vec<String>,
    start_tls: bool,
    directory: String,
    state: Mutex<State>,
    /// How many lookups have completed: callers wait for the first one.
    lookups: watch::Sender<u64>,
    ok: Counter,
    failed: Counter,
    discovered: Gauge,
}

impl Discovery {
    pub(crate) fn new(
        directory: &str,
        cfg: &config::Ldap,
        settings: &Discover,
        metrics: &Metrics,
    ) -> Discovery {
        let counter = |result| {
            metrics
                .ldap_discovery
                .get_or_create(&DiscoveryLabels {
                    directory: directory.to_string(),
                    result,
                })
                .clone()
        };
        Discovery {
            names: record_names(settings, cfg.directory),
            settings: settings.clone(),
            start_tls: cfg.start_tls,
            directory: directory.to_string(),
            state: Mutex::new(State::default()),
            lookups: watch::Sender::new(0),
            ok: counter("ok"),
            failed: counter("failed"),
            discovered: metrics
                .ldap_discovered
                .get_or_create(&DirectoryLabels {
                    directory: directory.to_string(),
                })
                .clone(),
        }
    }

    /// Starts the lookups in the background; they stop when the returned sender is dropped
    /// (with the directory) or `pool` is gone.
    pub(crate) fn spawn(self: &Arc<Self>, pool: Weak<Pool>) -> watch::Sender<()> {
        let (stop, mut stopped) = watch::channel(());
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    wait = me.refresh(&pool) => match wait {
                        Some(wait) => tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stopped.changed() => return,
                        },
                        None => return,
                    },
                    _ = stopped.changed() => return,
                }
            }
        });
        stop
    }

    /// One lookup, applied to the pool; the time until the next, or `None` when the pool is
    /// gone.
    async fn refresh(&self, pool: &Weak<Pool>) -> Option<Duration> {
        let found = tokio::time::timeout(
            LOOKUP_TIMEOUT,
            lookup(&self.names, &self.settings.domain, self.start_tls),
        )
        .await
        .unwrap_or(Err(LookupError::Timeout(LOOKUP_TIMEOUT)));
        let pool = pool.upgrade()?;
        let now = crate::clock::now();
        let had_complete = lock(&self.state).last_ok.is_some();
        let wait = match verdict(found, had_complete) {
            Verdict::Complete(found) => {
                self.ok.inc();
                let n = self.apply(&pool, found.servers);
                let mut st = lock(&self.state);
                st.last_ok = Some((now, n));
                st.last_error = None;
                refresh_after(found.ttl, &self.settings)
            }
            Verdict::Partial(found, e) => {
                self.failed.inc();
                tracing::warn!(directory = %self.directory, error = %e,
                    "DNS lookup of LDAP servers failed in part; using the servers of the names that answered until a whole lookup succeeds");
                self.apply(&pool, found.servers);
                lock(&self.state).last_error = Some((now, e.to_string()));
                refresh_after(None, &self.settings)
            }
            Verdict::Failed(e) => {
                self.failed.inc();
                tracing::warn!(directory = %self.directory, error = %e,
                    "DNS lookup of LDAP servers failed; keeping the servers found before");
                lock(&self.state).last_error = Some((now, e.to_string()));
                refresh_after(None, &self.settings)
            }
        };
        lock(&self.state).next = Some(now + wait);
        self.lookups.send_modify(|n| *n += 1);
        Some(wait)
    }

    /// Makes `servers` the pool's DNS servers; how many there are.
    fn apply(&self, pool: &Pool, servers: Vec<(String, Origin)>) -> usize {
        let n = servers.len();
        self.discovered.set(n as i64);
        let (added, removed) = pool.set_discovered(servers);
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(directory = %self.directory, added = ?added, removed = ?removed,
                "LDAP servers from DNS changed");
        }
        n
    }

    /// Waits until the first lookup completed, or `deadline`.
    pub(crate) async fn first_lookup(&self, deadline: Instant) {
        if *self.lookups.borrow() > 0 {
            return;
        }
        let mut rx = self.lookups.subscribe();
        let left = deadline.saturating_duration_since(crate::clock::now());
        let _ = tokio::time::timeout(left, rx.wait_for(|n| *n > 0)).await;
    }

    /// One line on where the servers come from and what the last lookups said.
    pub(crate) fn describe(&self) -> String {
        let st = lock(&self.state);
        let ago = |t: Instant| format!("{}s ago", t.elapsed().as_secs());
        let mut line = format!("DNS {}", self.names.join(" then "));
        match (&st.last_ok, &st.last_error) {
            (None, None) => line.push_str(": first lookup pending"),
            (Some((t, n)), None) => line.push_str(&format!(": {n} servers, looked up {}", ago(*t))),
            (ok, Some((t, e))) => {
                line.push_str(&format!(": lookup failed {}: {e}", ago(*t)));
                if let Some((t, n)) = ok {
                    line.push_str(&format!("; keeping the {n} servers found {}", ago(*t)));
                }
            }
        }
        if let Some(next) = st.next {
            let left = next
                .saturating_duration_since(crate::clock::now())
                .as_secs();
            line.push_str(&format!("; next lookup in {left}s"));
        }
        line
    }
}

#[cfg(test)]
mod tests;
