//! The HTTPS listener for TokenReviews and the plain-HTTP operations listener.
//!
//! TLS handshakes run in their own tasks under `server.handshake_timeout`, so a slow or
//! silent client holds only its own task. Each request is checked in this order: client
//! certificate, path, method, size, body, TokenReview; only then is the token looked at.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::authenticator::Authenticator;
use crate::config::Config;
use crate::directory::Directory;
use crate::lockout::Lockout;
use crate::metrics::{CodeLabels, Metrics};
use crate::tokenreview;

pub const MAX_BODY: usize = 64 * 1024;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight reviews may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("signal handling: {0}")]
    Signal(std::io::Error),
}

/// Everything a reload replaces at once: settings, TLS acceptor, directory client and cache.
pub struct Runtime {
    pub config: Arc<Config>,
    pub acceptor: TlsAcceptor,
    pub authenticator: Arc<Authenticator>,
}

impl Runtime {
    /// Builds a complete runtime from a loaded config, or fails without side effects.
    /// `lockout` is the daemon's one lockout state, which outlives reloads.
    pub fn build(
        config: Config,
        metrics: Arc<Metrics>,
        lockout: Arc<Lockout>,
    ) -> Result<Runtime, ServeError> {
        config.check_files()?;
        let server_tls = crate::tls::server_config(
            &config.server.tls_cert_file,
            &config.server.tls_key_file,
            &config.server.client_ca_file,
        )?;
        let ldap_tls = crate::tls::ldap_client_config(config.ldap.ca_file.as_deref())?;
        let config = Arc::new(config);
        let directory = Arc::new(Directory::new(
            config.ldap.clone(),
            ldap_tls,
            metrics.clone(),
        ));
        let authenticator = Arc::new(Authenticator::new(
            config.clone(),
            directory,
            lockout,
            metrics,
        ));
        Ok(Runtime {
            config,
            acceptor: TlsAcceptor::from(server_tls),
            authenticator,
        })
    }
}

pub struct Shared {
    pub current: ArcSwap<Runtime>,
    pub metrics: Arc<Metrics>,
    /// Lockout protection's counts, kept across reloads.
    pub lockout: Arc<Lockout>,
}

/// Bound listeners, ready to serve; binding happens before READY=1 is sent.
pub struct Listeners {
    pub reviews: TcpListener,
    pub ops: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Listeners, ServeError> {
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
        Ok(Listeners { reviews, ops })
    }
}

/// Accepts TokenReview connections until `shutdown` turns true, then drains.
pub async fn run_reviews(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let max = shared.current.load().config.server.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stopped(&mut shutdown) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, max, "connection limit reached; closing the new connection");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let rt = shared.current.load_full();
        let handshake_timeout = rt.config.server.handshake_timeout;
        let acceptor = rt.acceptor.clone();
        drop(rt);
        let shared = shared.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    shared.metrics.tls_handshake_failures.inc();
                    tracing::info!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    shared.metrics.tls_handshake_failures.inc();
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // The verifier has already checked any certificate presented against
            // client_ca_file; here we only learn whether there was one.
            let client_cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let svc = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_review(&shared, client_cert, req).await) }
            });
            let builder = connection_builder();
            let conn = builder.serve_connection(TokioIo::new(tls), svc);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight reviews did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
    }
}

/// HTTP/1.1 and HTTP/2 settings of a TokenReview connection (also used by the benchmark's
/// baseline server, so that both stand on the same stack).
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    builder
}

type Reply = Response<Full<Bytes>>;

/// Resolves once shutdown was asked for (or the sender is gone).
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

fn json(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn http_error(shared: &Shared, status: StatusCode, reason: &str, message: &str) -> Reply {
    shared
        .metrics
        .http_errors
        .get_or_create(&CodeLabels {
            code: status.as_u16(),
        })
        .inc();
    json(
        status,
        tokenreview::render_status(status.as_u16(), reason, message),
    )
}

/// Oversized bodies up to this size are read and thrown away before the 413, so that a
/// client still writing its body sees the answer instead of a broken pipe; larger ones
/// are cut off at once.
const DRAIN_MAX: usize = 4 * 1024 * 1024;

enum BodyError {
    TooLarge,
    Timeout,
    Read,
}

/// Reads a body of at most [`MAX_BODY`] bytes before `deadline`. A body that arrives in one
/// frame, as it usually does, is not copied.
async fn read_body(mut body: Incoming, deadline: Instant) -> Result<Bytes, BodyError> {
    let mut first: Option<Bytes> = None;
    let mut rest = bytes::BytesMut::new();
    let mut total = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline.into(), body.frame()).await {
            Err(_) => return Err(BodyError::Timeout),
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(BodyError::Read),
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > DRAIN_MAX {
            return Err(BodyError::TooLarge);
        }
        if total > MAX_BODY {
            // Keep reading (and dropping) to the end, then answer 413.
            first = None;
            rest.clear();
            continue;
        }
        match first.take() {
            None if rest.is_empty() => first = Some(data),
            Some(f) => {
                rest.extend_from_slice(&f);
                rest.extend_from_slice(&data);
            }
            None => rest.extend_from_slice(&data),
        }
    }
    if total > MAX_BODY {
        return Err(BodyError::TooLarge);
    }
    Ok(first.unwrap_or_else(|| rest.freeze()))
}

/// The rest of an unread body is still on the wire: the connection cannot carry another
/// request, and saying so keeps the client from reusing it.
fn closing(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Go's `time.Duration` text, as kube-apiserver writes it in `?timeout=30s` ("1m30s", "500ms").
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).ok()
}

/// The review's deadline: kube-apiserver's `?timeout=` (or `server.request_timeout`), less a
/// margin so that the answer arrives before the caller gives up.
fn deadline_for(req: &Request<Incoming>, default: Duration, started: Instant) -> Instant {
    let asked = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("timeout=")))
        .and_then(parse_go_duration)
        .filter(|d| !d.is_zero());
    let budget = asked.map_or(default, |d| d.min(default));
    let margin = (budget / 10).min(Duration::from_secs(1));
    started + budget.saturating_sub(margin)
}

async fn handle_review(shared: &Shared, client_cert: bool, req: Request<Incoming>) -> Reply {
    let started = Instant::now();
    let rt = shared.current.load_full();
    let cfg = &rt.config.server;
    if !client_cert {
        return http_error(
            shared,
            StatusCode::FORBIDDEN,
            "Forbidden",
            "a client certificate signed by the configured client CA is required",
        );
    }
    if req.uri().path() != cfg.path {
        return http_error(shared, StatusCode::NOT_FOUND, "NotFound", "not found");
    }
    if req.method() != Method::POST {
        let mut r = http_error(
            shared,
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only POST is allowed",
        );
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let too_large = || {
        closing(http_error(
            shared,
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "request body is larger than 64 KiB",
        ))
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return too_large();
    }
    let deadline = deadline_for(&req, cfg.request_timeout, started);
    let bytes = match read_body(req.into_body(), deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(),
        Err(BodyError::Read) => {
            return http_error(
                shared,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "could not read the request body",
            )
        }
        Err(BodyError::Timeout) => {
            return closing(http_error(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "the request body did not arrive in time",
            ))
        }
    };
    let review_req = match tokenreview::parse(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return http_error(
                shared,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &e.to_string(),
            )
        }
    };
    drop(bytes);

    let review = rt.authenticator.review(&review_req.token, deadline).await;
    let groups = review.outcome.user().map_or(0, |u| u.group_count());
    let stale_secs = match review.source {
        crate::outcome::Source::Stale(age) => Some(age.as_secs()),
        _ => None,
    };
    tracing::info!(
        outcome = review.outcome.label(),
        source = review.source.label(),
        user = review.username.as_deref().unwrap_or("-"),
        groups,
        stale_secs,
        latency_us = started.elapsed().as_micros() as u64,
        detail = %review.detail,
        "review"
    );
    json(
        StatusCode::OK,
        tokenreview::render(
            review_req.version,
            review.outcome.user(),
            &review_req.audiences,
            review.outcome.error(),
        ),
    )
}

/// The operations listener: `/healthz`, `/readyz`, `/metrics`, plain HTTP/1.1.
pub async fn run_ops(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => break,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle_ops(&shared, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

async fn handle_ops(shared: &Shared, req: Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let rt = shared.current.load_full();
            let deadline = Instant::now() + rt.config.ldap.timeout.min(Duration::from_secs(3));
            match rt.authenticator.directory().probe(deadline).await {
                Ok(url) => text(StatusCode::OK, "text/plain", format!("ok: {url} answers\n")),
                Err(e) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("no LDAP server answers: {e}\n"),
                ),
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.encode(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("30"), None);
        assert_eq!(parse_go_duration("soon"), None);
        assert_eq!(parse_go_duration(""), None);
    }
}
