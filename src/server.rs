//! The HTTPS listeners (TokenReviews, and the login port) and the plain-HTTP operations
//! listener.
//!
//! - [`listener`]: accept, the TLS handshake (`tls_accept`: a client certificate required
//!   on the review port, anyone on the login port), then HTTP/1.1 or HTTP/2 under the
//!   connection timers;
//! - [`admission`]: the two connection budgets (replaceable, verified connections);
//! - [`http`]: each listener's HTTP/1.1 and HTTP/2 settings, a login connection's
//!   worst-case memory, the replies and HTTP errors, and bounded body reading;
//! - [`closes`]: connections closed by the daemon, counted and logged sparingly;
//! - [`review`]: the TokenReview handler, admit -> respond;
//! - [`login`]: `POST /login` and `GET /login` on the login listener, [`ratelimit`] its
//!   per-source rate limit, [`in_flight`] its cap on requests in flight;
//! - [`issuer`]: the JWT issuer's discovery document, JWKS and `POST /token`, on the
//!   login listener;
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::audit::Audit;
use crate::authenticator::Authenticator;
use crate::config::Config;
use crate::directory::Directories;
use crate::lockout::Lockout;
use crate::metrics::{ListenerLabels, Metrics};

pub(crate) mod admission;
pub(crate) mod closes;
mod flat_io;
mod http;
mod in_flight;
mod issuer;
mod listener;
mod login;
mod login_answer;
mod negotiate;
mod ops;
pub(crate) mod ratelimit;
mod review;
mod trail;

pub(crate) use http::Port;
pub use http::{
    anonymous_worst_case, connection_builder, LOGIN_CONNECTION_BYTES, OPS_MAX_CONNECTIONS,
};
pub(crate) use listener::run_listener;
pub(crate) use ops::run_ops;

/// Why the daemon could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    /// The configuration was refused.
    Config(#[from] crate::config::ConfigError),
    #[error("TLS: {0}")]
    /// A certificate, key or CA was refused.
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    /// A listener address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    #[error("signal handling: {0}")]
    /// Signal handlers could not be installed.
    Signal(std::io::Error),
}

/// Everything a reload replaces at once: settings, TLS acceptor, directory client and cache.
pub(crate) struct Runtime {
    pub(crate) config: Arc<Config>,
    pub(crate) acceptor: TlsAcceptor,
    /// The login listener's TLS (no client certificate); `None` without `[login]`.
    pub(crate) login_acceptor: Option<TlsAcceptor>,
    /// When the certificates of `acceptor` and `login_acceptor` expire.
    pub(crate) tls_expiry: crate::tls::Expiry,
    pub(crate) authenticator: Arc<Authenticator>,
}

impl Runtime {
    /// Builds a complete runtime from a loaded config, or fails without side effects.
    /// `lockout` is the daemon's one lockout state, which outlives reloads.
    pub(crate) fn build(
        config: Config,
        metrics: Arc<Metrics>,
        lockout: Arc<Lockout>,
        audit: Arc<Audit>,
    ) -> Result<Runtime, ServeError> {
        config.check_files()?;
        let tls = crate::tls::serving(
            &config.server.tls_cert_file,
            &config.server.tls_key_file,
            &config.server.client_ca_file,
            config.login.is_some(),
        )?;
        let directories = Arc::new(Directories::new(&config, &metrics)?);
        let config = Arc::new(config);
        let authenticator = Arc::new(Authenticator::new(
            config.clone(),
            directories,
            lockout,
            metrics,
            audit,
        ));
        Ok(Runtime {
            config,
            acceptor: TlsAcceptor::from(tls.reviews),
            login_acceptor: tls.login.map(TlsAcceptor::from),
            tls_expiry: tls.expiry,
            authenticator,
        })
    }

    /// Shows when this runtime's certificates expire, per TLS listener; called once it
    /// serves (at start, after a reload), so a refused reload leaves the served ones shown.
    pub(crate) fn publish_tls_expiry(&self, metrics: &Metrics) {
        let login = ListenerLabels { listener: "login" };
        let mut listeners = vec![ListenerLabels {
            listener: "reviews",
        }];
        match self.login_acceptor {
            Some(_) => listeners.push(login),
            // A reload turned the login endpoint off: it serves no certificate now.
            None => _ = metrics.tls_certificate_expiry.remove(&login),
        }
        for l in &listeners {
            metrics
                .tls_certificate_expiry
                .get_or_create(l)
                .set(self.tls_expiry.certificate);
        }
        // Only the review listener asks for client certificates.
        metrics
            .tls_client_ca_expiry
            .get_or_create(&ListenerLabels {
                listener: "reviews",
            })
            .set(self.tls_expiry.client_ca);
    }
}

pub(crate) struct Shared {
    pub(crate) current: ArcSwap<Runtime>,
    pub(crate) metrics: Arc<Metrics>,
    /// Lockout protection's counts, kept across reloads.
    pub(crate) lockout: Arc<Lockout>,
    /// The login endpoint's per-source budgets, kept across reloads.
    pub(crate) login_rate: ratelimit::RateLimit,
    /// The audit stream, opened at start and kept across reloads.
    pub(crate) audit: Arc<Audit>,
}

/// Bound listeners, ready to serve; binding happens before READY=1 is sent.
pub(crate) struct Listeners {
    pub(crate) reviews: TcpListener,
    pub(crate) ops: Option<TcpListener>,
    pub(crate) login: Option<TcpListener>,
}

impl Listeners {
    pub(crate) async fn bind(config: &Config) -> Result<Listeners, ServeError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })
        };
        let reviews = bind(config.server.listen).await?;
        let ops = match config.server.ops_listen {
            Some(a) => Some(bind(a).await?),
            None => None,
        };
        let login = match &config.login {
            Some(l) => Some(bind(l.listen).await?),
            None => None,
        };
        Ok(Listeners {
            reviews,
            ops,
            login,
        })
    }
}

/// Resolves once shutdown was asked for (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
