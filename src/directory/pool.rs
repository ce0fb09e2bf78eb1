//! Connections to one directory server and failover between servers.
//!
//! Per server: one service connection (bound as `bind_dn`) shared by every search, since
//! ldap3 multiplexes operations on one connection, and a pool of bind connections, each used
//! by one user bind at a time (a bind changes the identity of its whole connection).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use rustls::ClientConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::classify::{Attempt, OpError};
use crate::config;
use crate::metrics::{ConnLabels, LdapOpLabels, Metrics, OperationLabels};

/// A server that failed is tried last for this long.
const BACKOFF: Duration = Duration::from_secs(5);

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks leaves consistent data behind.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// One configured server and its connections.
pub(crate) struct Server {
    pub(crate) url: String,
    label: String,
    starttls: bool,
    service: Mutex<Option<Ldap>>,
    connecting: tokio::sync::Mutex<()>,
    idle: Mutex<Vec<Ldap>>,
    permits: Arc<Semaphore>,
    down_until: Mutex<Option<Instant>>,
}

/// A connection for one user bind; give it back with [`Pool::checkin`] or drop it with
/// [`Pool::discard`].
pub(crate) struct BindConn {
    pub(crate) ldap: Ldap,
    _permit: OwnedSemaphorePermit,
}

/// Every server of one directory, with the settings their connections need.
pub(crate) struct Pool {
    pub(crate) servers: Vec<Server>,
    cfg: Arc<config::Ldap>,
    tls: Arc<ClientConfig>,
    preferred: std::sync::atomic::AtomicUsize,
    metrics: Arc<Metrics>,
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
        cfg: Arc<config::Ldap>,
        tls: Arc<ClientConfig>,
        metrics: Arc<Metrics>,
    ) -> Pool {
        let servers = cfg
            .urls
            .iter()
            .map(|u| Server {
                url: u.clone(),
                label: label_of(u),
                starttls: cfg.start_tls && u.to_ascii_lowercase().starts_with("ldap://"),
                service: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(cfg.max_connections)),
                down_until: Mutex::new(None),
            })
            .collect();
        Pool {
            servers,
            cfg,
            tls,
            preferred: std::sync::atomic::AtomicUsize::new(0),
            metrics,
        }
    }

    /// Servers in the order to try: the last one that worked first, servers in back-off last.
    pub(crate) fn order(&self) -> Vec<usize> {
        let n = self.servers.len().max(1);
        let start = self.preferred.load(std::sync::atomic::Ordering::Relaxed) % n;
        let now = Instant::now();
        let (mut up, mut down): (Vec<usize>, Vec<usize>) = (0..self.servers.len())
            .map(|i| (start + i) % n)
            .partition(|&i| lock(&self.servers[i].down_until).is_none_or(|t| t <= now));
        up.append(&mut down);
        up
    }

    /// This server answered: start with it next time, and it is not down.
    pub(crate) fn answered(&self, i: usize) {
        self.preferred
            .store(i, std::sync::atomic::Ordering::Relaxed);
        *lock(&self.servers[i].down_until) = None;
    }

    pub(crate) fn mark_down(&self, i: usize, why: &str) {
        let s = &self.servers[i];
        *lock(&s.down_until) = Some(Instant::now() + BACKOFF);
        if lock(&s.service).take().is_some() {
            self.conn_gauge(s, "service").dec();
        }
        tracing::warn!(server = %s.label, reason = %why, "LDAP server failed; trying the next one");
    }

    pub(crate) fn failover(&self) {
        self.metrics.ldap_failovers.inc();
    }

    fn conn_gauge(
        &self,
        s: &Server,
        kind: &'static str,
    ) -> prometheus_client::metrics::gauge::Gauge {
        self.metrics
            .ldap_connections
            .get_or_create(&ConnLabels {
                server: s.label.clone(),
                kind,
            })
            .clone()
    }

    fn record(&self, s: &Server, operation: &'static str, result: &'static str, started: Instant) {
        self.metrics
            .ldap_operations
            .get_or_create(&LdapOpLabels {
                server: s.label.clone(),
                operation,
                result,
            })
            .inc();
        self.metrics
            .ldap_seconds
            .get_or_create(&OperationLabels { operation })
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
        let started = Instant::now();
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
        let started = Instant::now();
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
        let _guard = tokio::time::timeout(remaining(deadline), s.connecting.lock())
            .await
            .map_err(|_| {
                Attempt::ServerDown("waiting for the service connection timed out".into())
            })?;
        {
            let mut slot = lock(&s.service);
            if let Some(mut l) = slot.clone() {
                if !l.is_closed() {
                    return Ok(l);
                }
                *slot = None;
                self.conn_gauge(s, "service").dec();
            }
        }
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
        self.conn_gauge(s, "service").inc();
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
                    self.conn_gauge(s, "bind").dec();
                }
                None => break,
            }
        }
        let ldap = self
            .connect(s, deadline)
            .await
            .map_err(|e| e.into_attempt("connect"))?;
        self.conn_gauge(s, "bind").inc();
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
            self.conn_gauge(s, "bind").dec();
        }
    }

    /// A bind connection whose operation failed in transit: it is not reused.
    pub(crate) fn discard(&self, s: &Server, c: BindConn) {
        drop(c);
        self.conn_gauge(s, "bind").dec();
    }
}

/// A directory replaced by a reload closes its connections: take them off the gauges.
impl Drop for Pool {
    fn drop(&mut self) {
        for s in &self.servers {
            if lock(&s.service).take().is_some() {
                self.conn_gauge(s, "service").dec();
            }
            let idle = std::mem::take(&mut *lock(&s.idle));
            self.conn_gauge(s, "bind").dec_by(idle.len() as i64);
        }
    }
}
