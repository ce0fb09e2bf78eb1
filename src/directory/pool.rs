//! Connections to one directory's servers and failover between them.
//!
//! Per server: one service connection (bound as `bind_dn`) shared by every search, since
//! ldap3 multiplexes operations on one connection, and a pool of bind connections, each used
//! by one user bind at a time (a bind changes the identity of its whole connection).
//!
//! The list of servers is `ldap.urls` followed by those DNS names (`ldap.discover`), and
//! changes when a lookup says otherwise: a server that stays keeps its connections, one that
//! goes is dropped once the operations running on it are done.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rustls::ClientConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::classify::{Attempt, OpError};
use crate::config;
use crate::metrics::{
    ConnLabels, DirectoryLabels, LdapOpLabels, Metrics, OperationLabels, LDAP_OPERATIONS,
};

/// A server that failed is tried last for this long.
const BACKOFF: Duration = Duration::from_secs(5);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(crate::clock::now())
}

/// Whether a server was marked down after `seen` (its mark when a review began to wait for
/// it) and still is at `now`.
pub(crate) fn marked_since(seen: Option<Instant>, mark: Option<Instant>, now: Instant) -> bool {
    mark.is_some_and(|t| t > now && Some(t) != seen)
}

/// One server and its connections.
pub(crate) struct Server {
    pub(crate) url: String,
    label: String,
    starttls: bool,
    service: Mutex<Option<Ldap>>,
    connecting: tokio::sync::Mutex<()>,
    idle: Mutex<Vec<Ldap>>,
    permits: Arc<Semaphore>,
    down_until: Mutex<Option<Instant>>,
    /// `ldap_connections` of this server, kind service and bind.
    service_conns: Gauge,
    bind_conns: Gauge,
}

/// A server dropped from the list, or of a directory replaced by a reload, closes its
/// connections once the last operation on it is done: take them off the gauges.
impl Drop for Server {
    fn drop(&mut self) {
        if lock(&self.service).take().is_some() {
            self.service_conns.dec();
        }
        let idle = std::mem::take(&mut *lock(&self.idle));
        self.bind_conns.dec_by(idle.len() as i64);
    }
}

/// Why a server is in the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `ldap.urls`.
    Configured,
    /// An SRV record of `ldap.discover`.
    Dns {
        /// The name looked up (`_ldap._tcp.dc._msdcs.example.test`).
        record: String,
        priority: u16,
        weight: u16,
    },
}

/// A server in the list, with why it is there.
#[derive(Clone)]
pub(crate) struct Listed {
    pub(crate) server: Arc<Server>,
    pub(crate) origin: Origin,
}

/// A connection for one user bind; give it back with [`Pool::checkin`] or drop it with
/// [`Pool::discard`].
pub(crate) struct BindConn {
    pub(crate) ldap: Ldap,
    _permit: OwnedSemaphorePermit,
}

/// Every server of one directory, with the settings their connections need.
pub(crate) struct Pool {
    listed: ArcSwap<Vec<Listed>>,
    cfg: Arc<config::Ldap>,
    tls: Arc<ClientConfig>,
    /// The URL of the server that answered last: tried first.
    preferred: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
    /// The directory's name, the `directory` label of its series.
    directory: String,
    failovers: Counter,
}

fn label_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|p| {
            p.host_str()
                .map(|h| format!("{h}:{}", p.port().unwrap_or(0)))
        })
        .unwrap_or_else(|| url.to_string())
}

impl Pool {
    pub(crate) fn new(
        directory: &str,
        cfg: Arc<config::Ldap>,
        tls: Arc<ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> Pool {
        let failovers = metrics
            .ldap_failovers
            .get_or_create(&DirectoryLabels {
                directory: directory.to_string(),
            })
            .clone();
        let pool = Pool {
            listed: ArcSwap::from_pointee(Vec::new()),
            cfg,
            tls,
            preferred: Mutex::new(None),
            metrics,
            directory: directory.to_string(),
            failovers,
        };
        let configured = pool
            .cfg
            .urls
            .iter()
            .map(|u| Listed {
                server: Arc::new(pool.server(u)),
                origin: Origin::Configured,
            })
            .collect();
        pool.listed.store(Arc::new(configured));
        pool
    }

    fn server(&self, url: &str) -> Server {
        let label = label_of(url);
        let gauge = |kind| {
            self.metrics
                .ldap_connections
                .get_or_create(&ConnLabels {
                    directory: self.directory.clone(),
                    server: label.clone(),
                    kind,
                })
                .clone()
        };
        Server {
            url: url.to_string(),
            starttls: self.cfg.start_tls && url.to_ascii_lowercase().starts_with("ldap://"),
            service: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(self.cfg.max_connections)),
            down_until: Mutex::new(None),
            service_conns: gauge("service"),
            bind_conns: gauge("bind"),
            label,
        }
    }

    /// The servers now, in list order, with why each is there.
    pub(crate) fn listed(&self) -> Arc<Vec<Listed>> {
        self.listed.load_full()
    }

    /// Makes the list `ldap.urls` followed by `found` (DNS's servers, in the order to try
    /// them), keeping the connections of servers already listed. Returns the URLs added and
    /// removed.
    pub(crate) fn set_discovered(
        &self,
        found: Vec<(String, Origin)>,
    ) -> (Vec<String>, Vec<String>) {
        let old = self.listed.load_full();
        let mut new: Vec<Listed> = old
            .iter()
            .filter(|l| l.origin == Origin::Configured)
            .cloned()
            .collect();
        for (url, origin) in found {
            if new.iter().any(|l| l.server.url == url) {
                continue;
            }
            let server = match old.iter().find(|l| l.server.url == url) {
                Some(l) => l.server.clone(),
                None => Arc::new(self.server(&url)),
            };
            new.push(Listed { server, origin });
        }
        let urls =
            |v: &[Listed]| -> Vec<String> { v.iter().map(|l| l.server.url.clone()).collect() };
        let (before, after) = (urls(&old), urls(&new));
        let added = after
            .iter()
            .filter(|u| !before.contains(u))
            .cloned()
            .collect();
        let removed: Vec<String> = before
            .iter()
            .filter(|u| !after.contains(u))
            .cloned()
            .collect();
        self.listed.store(Arc::new(new));
        for url in &removed {
            self.forget(url);
        }
        (added, removed)
    }

    /// Removes the series of a server DNS no longer names: DNS must not be able to grow the
    /// metrics without bound by naming ever new servers. (A reload keeps them: the same
    /// servers come back.)
    fn forget(&self, url: &str) {
        let server = label_of(url);
        for kind in ["service", "bind"] {
            self.metrics.ldap_connections.remove(&ConnLabels {
                directory: self.directory.clone(),
                server: server.clone(),
                kind,
            });
        }
        for operation in LDAP_OPERATIONS {
            for result in ["ok", "error", "unreachable"] {
                self.metrics.ldap_operations.remove(&LdapOpLabels {
                    directory: self.directory.clone(),
                    server: server.clone(),
                    operation,
                    result,
                });
            }
        }
    }

    /// Servers in the order to try: from the last one that answered on, in list order, and
    /// servers in back-off last.
    pub(crate) fn order(&self) -> Vec<Arc<Server>> {
        let listed = self.listed.load();
        let n = listed.len().max(1);
        let start = lock(&self.preferred)
            .as_deref()
            .and_then(|u| listed.iter().position(|l| l.server.url == u))
            .unwrap_or(0);
        let now = crate::clock::now();
        let (mut up, mut down): (Vec<_>, Vec<_>) = (0..listed.len())
            .map(|i| listed[(start + i) % n].server.clone())
            .partition(|s| lock(&s.down_until).is_none_or(|t| t <= now));
        up.append(&mut down);
        up
    }

    /// This server answered: start with it next time, and it is not down.
    pub(crate) fn answered(&self, s: &Server) {
        let mut preferred = lock(&self.preferred);
        if preferred.as_deref() != Some(s.url.as_str()) {
            *preferred = Some(s.url.clone());
        }
        drop(preferred);
        *lock(&s.down_until) = None;
    }

    /// The server failed: tried last for [`BACKOFF`] from now. One already down (several
    /// reviews found it so at once) is not reported again.
    pub(crate) fn mark_down(&self, s: &Server, why: &str) {
        let now = crate::clock::now();
        let was_down = lock(&s.down_until)
            .replace(now + BACKOFF)
            .is_some_and(|t| t > now);
        if lock(&s.service).take().is_some() {
            s.service_conns.dec();
        }
        if was_down {
            return;
        }
        tracing::warn!(directory = %self.directory, server = %s.label, reason = %why,
            "LDAP server failed; trying the next one");
    }

    pub(crate) fn failover(&self) {
        self.failovers.inc();
    }

    fn record(&self, s: &Server, operation: &'static str, result: &'static str, started: Instant) {
        self.metrics
            .ldap_operations
            .get_or_create(&LdapOpLabels {
                directory: self.directory.clone(),
                server: s.label.clone(),
                operation,
                result,
            })
            .inc();
        self.metrics
            .ldap_seconds
            .get_or_create(&OperationLabels {
                directory: self.directory.clone(),
                operation,
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// The time one operation may take: `ldap.timeout`, or less when the review's deadline
    /// is nearer.
    pub(crate) fn op_timeout(&self, deadline: Instant) -> Duration {
        self.cfg.timeout.min(remaining(deadline))
    }

    /// Runs one LDAP operation (a single request or a whole paged search) under
    /// [`Pool::op_timeout`] and records its result and duration.
    pub(crate) async fn op<T, F>(
        &self,
        s: &Server,
        operation: &'static str,
        deadline: Instant,
        fut: F,
    ) -> Result<T, OpError>
    where
        F: std::future::Future<Output = Result<T, LdapError>>,
    {
        let started = crate::clock::now();
        let t = self.op_timeout(deadline);
        let r = match tokio::time::timeout(t, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(OpError::from(e)),
            Err(_) => Err(OpError::Transport(format!(
                "{operation} timed out after {t:?}"
            ))),
        };
        let result = r.as_ref().map_or_else(OpError::label, |_| "ok");
        self.record(s, operation, result, started);
        r
    }

    async fn connect(&self, s: &Server, deadline: Instant) -> Result<Ldap, OpError> {
        let t = self.cfg.connect_timeout.min(remaining(deadline));
        let settings = LdapConnSettings::new()
            .set_conn_timeout(t)
            .set_config(self.tls.clone())
            .set_starttls(s.starttls);
        let started = crate::clock::now();
        let r = tokio::time::timeout(t, LdapConnAsync::with_settings(settings, &s.url)).await;
        let (conn, ldap) = match r {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                self.record(s, "connect", "unreachable", started);
                return Err(OpError::Transport(format!("connect: {e}")));
            }
            Err(_) => {
                self.record(s, "connect", "unreachable", started);
                return Err(OpError::Transport(format!("connect timed out after {t:?}")));
            }
        };
        self.record(s, "connect", "ok", started);
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A connection for the probe when there is no service account.
    pub(crate) async fn anonymous(&self, s: &Server, deadline: Instant) -> Result<Ldap, Attempt> {
        self.connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))
    }

    /// The shared search connection, connected and bound on first use and after it died.
    pub(crate) async fn service(&self, s: &Server, deadline: Instant) -> Result<Ldap, Attempt> {
        if let Some(mut l) = lock(&s.service).clone() {
            if !l.is_closed() {
                return Ok(l);
            }
        }
        let seen = *lock(&s.down_until);
        let _guard = tokio::time::timeout(remaining(deadline), s.connecting.lock())
            .await
            .map_err(|_| {
                Attempt::ServerDown("waiting for the service connection timed out".into())
            })?;
        // Whoever held the lock before may have just found the server down: connecting
        // again would cost every review in the queue another timeout.
        if marked_since(seen, *lock(&s.down_until), crate::clock::now()) {
            return Err(Attempt::ServerDown(
                "found down by another review while this one waited for it".into(),
            ));
        }
        {
            let mut slot = lock(&s.service);
            if let Some(mut l) = slot.clone() {
                if !l.is_closed() {
                    return Ok(l);
                }
                *slot = None;
                s.service_conns.dec();
            }
        }
        let r = self.open_service(s, deadline).await;
        // Marked while the lock is held, so that the next review in the queue sees it.
        if let Err(Attempt::ServerDown(why)) = &r {
            self.mark_down(s, why);
        }
        r
    }

    /// A new service connection, bound as `ldap.bind_dn`; kept for the searches to share.
    async fn open_service(&self, s: &Server, deadline: Instant) -> Result<Ldap, Attempt> {
        let mut ldap = self
            .connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))?;
        if let Some(sa) = &self.cfg.service {
            let r = self
                .op(
                    s,
                    "service_bind",
                    deadline,
                    ldap.simple_bind(&sa.bind_dn, sa.password.expose()),
                )
                .await
                .map_err(|e| e.into_attempt("service bind"))?;
            if r.rc != 0 {
                // Wrong service credentials are an operator problem: shout, and answer with
                // an error so that nobody is told their password is wrong. The server did
                // answer, so it is not down.
                tracing::error!(server = %s.label, rc = r.rc, text = %r.text.trim(), "the service account (ldap.bind_dn) could not bind");
                return Err(OpError::Result {
                    rc: r.rc,
                    text: r.text,
                }
                .into_attempt("service bind"));
            }
        }
        *lock(&s.service) = Some(ldap.clone());
        s.service_conns.inc();
        Ok(ldap)
    }

    /// A connection for one user bind, from the idle pool or new. A pool that stays full
    /// until the deadline is load, not an outage: an error, not a reason to fail over.
    pub(crate) async fn checkout(
        &self,
        s: &Server,
        deadline: Instant,
    ) -> Result<BindConn, Attempt> {
        let permit = tokio::time::timeout(remaining(deadline), s.permits.clone().acquire_owned())
            .await
            .map_err(|_| Attempt::error("no free LDAP connection before the deadline"))?
            .map_err(|_| Attempt::error("connection pool closed"))?;
        loop {
            let next = lock(&s.idle).pop();
            match next {
                Some(mut l) => {
                    if !l.is_closed() {
                        return Ok(BindConn {
                            ldap: l,
                            _permit: permit,
                        });
                    }
                    s.bind_conns.dec();
                }
                None => break,
            }
        }
        let ldap = self
            .connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))?;
        s.bind_conns.inc();
        Ok(BindConn {
            ldap,
            _permit: permit,
        })
    }

    pub(crate) fn checkin(&self, s: &Server, c: BindConn) {
        let mut idle = lock(&s.idle);
        if idle.len() < self.cfg.max_connections {
            idle.push(c.ldap);
        } else {
            s.bind_conns.dec();
        }
    }

    /// A bind connection whose operation failed in transit: it is not reused.
    pub(crate) fn discard(&self, s: &Server, c: BindConn) {
        drop(c);
        s.bind_conns.dec();
    }
}

#[cfg(test)]
mod tests;
