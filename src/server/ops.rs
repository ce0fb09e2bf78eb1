//! The operations listener: `/healthz`, `/readyz`, `/metrics`, plain HTTP/1.1 and without
//! authentication, so it is bounded: at most [`OPS_MAX_CONNECTIONS`] connections (more are
//! closed at once, and cannot use up the file descriptors the review listener needs), a
//! silent connection is closed after [`HEADER_READ_TIMEOUT`], and `/readyz` asks LDAP at
//! most about once a second however often it is called.

use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::closes::{Closes, Reason, LOG_INTERVAL};
use super::http::{Reply, OPS_MAX_CONNECTIONS, OPS_READ_BUFFER};
use super::{stopped, Runtime, Shared};
use crate::directory::Readiness;
use crate::metrics::StageLabels;

/// For a request head, the first or the next one on a keep-alive connection.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `/readyz` answer is reused.
const READY_MAX_AGE: Duration = Duration::from_secs(1);

pub(crate) async fn run_ops(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(OPS_MAX_CONNECTIONS));
    let closes = Closes::new("ops", shared.metrics.clone());
    let open = shared
        .metrics
        .open_connections
        .get_or_create(&StageLabels {
            listener: "ops",
            stage: "open",
        })
        .clone();
    let ready = Arc::new(ReadyCache::default());
    let mut tick = tokio::time::interval(LOG_INTERVAL);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tick.tick() => {
                closes.flush();
                continue;
            }
            _ = stopped(&mut shutdown) => break,
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            closes.record(Reason::Limit, peer, "ops listener connection limit");
            continue;
        };
        open.inc();
        let (shared, ready, open) = (shared.clone(), ready.clone(), open.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let (shared, ready) = (shared.clone(), ready.clone());
                async move { Ok::<_, Infallible>(handle_ops(&shared, &ready, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(OPS_READ_BUFFER)
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
            open.dec();
            drop(permit);
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

async fn handle_ops(shared: &Shared, ready: &ReadyCache, req: Request<Incoming>) -> Reply {
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
            let r = ready.probe(shared).await;
            readyz(&r, r.probes.len() > 1)
        }
        // One directory's readiness, for a check that must not fail with another's.
        p if p.starts_with("/readyz/") => {
            let r = ready.probe(shared).await;
            match r.only(&p["/readyz/".len()..]) {
                Some(one) => readyz(&one, true),
                None => text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "no such directory\n".into(),
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

fn readyz(r: &Readiness, named: bool) -> Reply {
    let status = if r.ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "text/plain", r.render(named))
}

struct Probed {
    at: Instant,
    /// The runtime probed: a reload makes the answer stale at once. Weak, so that a
    /// replaced runtime (and its LDAP connections) is not kept alive by this cache.
    runtime: Weak<Runtime>,
    result: Readiness,
}

/// One LDAP probe at a time for every `/readyz`: callers wait for the probe in progress
/// (the lock is held across it) and reuse an answer younger than [`READY_MAX_AGE`].
#[derive(Default)]
struct ReadyCache {
    last: tokio::sync::Mutex<Option<Probed>>,
}

impl ReadyCache {
    async fn probe(&self, shared: &Shared) -> Readiness {
        let rt = shared.current.load_full();
        let mut last = self.last.lock().await;
        if let Some(p) = last.as_ref() {
            if std::ptr::eq(p.runtime.as_ptr(), Arc::as_ptr(&rt)) && p.at.elapsed() < READY_MAX_AGE
            {
                return p.result.clone();
            }
        }
        let slowest = rt.config.each_directory().map(|(_, l, _)| l.timeout).max();
        let deadline =
            crate::clock::now() + slowest.unwrap_or_default().min(Duration::from_secs(3));
        let result = rt.authenticator.directory().probe(deadline).await;
        *last = Some(Probed {
            at: crate::clock::now(),
            runtime: Arc::downgrade(&rt),
            result: result.clone(),
        });
        result
    }
}
