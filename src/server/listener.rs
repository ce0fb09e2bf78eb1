//! The HTTPS listeners: accept, TLS, then HTTP. The TokenReview port requires a client
//! certificate in the handshake; the login port (see [`Port`]) takes anyone, with its own
//! connection budget, so that login traffic never takes kube-apiserver's slots.
//!
//! Each connection runs in its own task through two stages (see [`super::admission`]):
//! the handshake, under `handshake_timeout` and replaceable by newer connections, and the
//! verified stage, where the first request head must arrive before the same deadline (the
//! clock runs from accept) and a connection with no request in flight for `idle_timeout`
//! is closed. Both HTTP versions are covered by that one timer, which also bounds hyper's
//! HTTP version sniff.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::admission::{Admission, HandshakeSlot, Limits, NoPlace, Place, Seat};
use super::closes::{Closes, Reason, LOG_INTERVAL};
use super::flat_io::FlatIo;
use super::http::{builder, closing, http_error, without_body, Port, Reply};
use super::in_flight::InFlight;
use super::login::handle_login;
use super::review::handle_review;
use super::{stopped, Shared};
use crate::metrics::StageLabels;

/// How long in-flight reviews may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Dead peers of idle connections are found by the kernel after about a minute.
const KEEPALIVE_TIME: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

/// Accepts connections on `port` until `shutdown` turns true, then drains.
pub(crate) async fn run_listener(
    port: Port,
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let gauge = |stage| {
        shared
            .metrics
            .open_connections
            .get_or_create(&StageLabels {
                listener: port.name(),
                stage,
            })
            .clone()
    };
    let admission = Admission::new(gauge("handshake"), gauge("verified"));
    let in_flight = Arc::new(InFlight::default());
    let closes = Closes::new(port.name(), shared.metrics.clone());
    // Every connection task holds a sender; the drain waits for the last one to go.
    let (alive, mut all_gone) = mpsc::channel::<()>(1);
    let mut tick = tokio::time::interval(LOG_INTERVAL);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = tick.tick() => {
                closes.flush();
                continue;
            }
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
        let accepted_at = crate::clock::tokio_now();
        let rt = shared.current.load_full();
        let acceptor = match port {
            Port::Reviews => Some(rt.acceptor.clone()),
            Port::Login => rt.login_acceptor.clone(),
        };
        // The login endpoint was turned off by a reload: its port closes what it accepts.
        let Some(acceptor) = acceptor else {
            continue;
        };
        let limits = Limits::of(&rt.config.server);
        let slot = admission.handshake(peer.ip(), limits);
        let conn = Connection {
            port,
            peer,
            shared: shared.clone(),
            closes: closes.clone(),
            deadline: accepted_at + rt.config.server.handshake_timeout,
            shutdown: shutdown.clone(),
            in_flight: in_flight.clone(),
        };
        drop(rt);
        let alive = alive.clone();
        tokio::spawn(async move {
            conn.run(tcp, acceptor, slot).await;
            drop(alive);
        });
    }
    drop(listener);
    drop(alive);
    if tokio::time::timeout(DRAIN_TIMEOUT, all_gone.recv())
        .await
        .is_err()
    {
        tracing::warn!("in-flight reviews did not finish within {DRAIN_TIMEOUT:?}; exiting anyway");
    }
    closes.flush();
}

fn set_keepalive(tcp: &TcpStream) {
    let params = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_TIME)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    // Without keepalive a vanished peer is still found by idle_timeout.
    let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&params);
}

/// What the TLS layer said about a failed handshake, as a close reason.
fn classify(e: &std::io::Error) -> Reason {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::NoCertificatesPresented) => Reason::NoCertificate,
        Some(rustls::Error::InvalidCertificate(_)) => Reason::BadCertificate,
        _ => Reason::TlsError,
    }
}

/// One accepted connection, from TCP to its last response.
struct Connection {
    port: Port,
    peer: SocketAddr,
    shared: Arc<Shared>,
    closes: Arc<Closes>,
    /// For the TLS handshake and the first request head, counted from accept.
    deadline: Instant,
    shutdown: watch::Receiver<bool>,
    /// Requests in flight on this listener (capped on the login port).
    in_flight: Arc<InFlight>,
}

impl Connection {
    async fn run(mut self, tcp: TcpStream, acceptor: TlsAcceptor, slot: HandshakeSlot) {
        let _ = tcp.set_nodelay(true);
        set_keepalive(&tcp);
        let Some(tls) = self.tls_accept(tcp, acceptor, slot).await else {
            return;
        };
        let (tls, place) = tls;
        self.serve(tls, place).await;
    }

    /// The handshake stage: a TLS session (on the review port with a verified client
    /// certificate) and a place in the verified budget, or nothing (the reason recorded).
    async fn tls_accept(
        &mut self,
        tcp: TcpStream,
        acceptor: TlsAcceptor,
        slot: HandshakeSlot,
    ) -> Option<(TlsStream<TcpStream>, Place)> {
        let handshake = tokio::time::timeout_at(self.deadline, acceptor.accept(tcp));
        let tls = tokio::select! {
            r = handshake => match r {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    self.closes.record(classify(&e), self.peer, &e.to_string());
                    return None;
                }
                Err(_) => {
                    self.closes.record(Reason::HandshakeTimeout, self.peer, "");
                    return None;
                }
            },
            _ = slot.evicted() => {
                self.closes.record(Reason::Evicted, self.peer, "replaced by a newer connection");
                return None;
            }
            _ = stopped(&mut self.shutdown) => return None,
        };
        // The verifier requires a certificate; an empty list here would be a rustls bug.
        if self.port == Port::Reviews
            && tls
                .get_ref()
                .1
                .peer_certificates()
                .is_none_or(|c| c.is_empty())
        {
            self.closes.record(Reason::NoCertificate, self.peer, "");
            return None;
        }
        if self.port == Port::Login {
            // Anyone completes this handshake: a login connection stays replaceable while
            // it has no request in flight.
            return Some((tls, Place::Pending(slot)));
        }
        let limits = Limits::of(&self.shared.current.load().config.server);
        match slot.verified(limits) {
            Ok(verified) => Some((tls, Place::Verified(verified))),
            Err(refused) => {
                let (reason, detail) = close_reason(refused);
                self.closes.record(reason, self.peer, detail);
                None
            }
        }
    }

    /// The verified stage: HTTP until the client leaves, falls silent or the daemon stops.
    async fn serve(mut self, tls: TlsStream<TcpStream>, place: Place) {
        let (idle, grace) = {
            let rt = self.shared.current.load();
            let s = &rt.config.server;
            (s.idle_timeout, s.request_timeout + Duration::from_secs(1))
        };
        let activity = Arc::new(Activity::new());
        let seat = Seat::new(place, self.port == Port::Login);
        let svc = {
            let (shared, activity, port, peer) =
                (self.shared.clone(), activity.clone(), self.port, self.peer);
            let (closes, in_flight, seat) =
                (self.closes.clone(), self.in_flight.clone(), seat.clone());
            service_fn(move |req| {
                let (shared, busy, seat) = (shared.clone(), activity.begin(), seat.clone());
                let (closes, in_flight) = (closes.clone(), in_flight.clone());
                async move {
                    let head = req.method() == hyper::Method::HEAD;
                    let limits = Limits::of(&shared.current.load().config.server);
                    let reply = match (seat.admit(limits), port) {
                        (Err(refused), _) => no_place(&shared, &closes, peer, refused),
                        (Ok(_held), Port::Reviews) => handle_review(&shared, peer, req).await,
                        (Ok(_held), Port::Login) => {
                            handle_login(&shared, &in_flight, peer, req).await
                        }
                    };
                    drop(busy);
                    Ok::<_, Infallible>(if head { without_body(reply) } else { reply })
                }
            })
        };
        let builder = builder(idle, self.port);
        let mut conn = pin!(builder.serve_connection(TokioIo::new(FlatIo(tls)), svc));
        // Set once the connection was asked to wind down: then the time it has left.
        let mut closing: Option<Instant> = None;
        loop {
            let wake = closing.unwrap_or_else(|| activity.next_check(self.deadline, idle));
            tokio::select! {
                r = conn.as_mut() => {
                    let timed_out = r.as_ref().err().and_then(|e| e.downcast_ref::<hyper::Error>()).is_some_and(hyper::Error::is_timeout);
                    if timed_out {
                        // hyper's header timer: an HTTP/1.1 connection idle between requests,
                        // or before the first when idle_timeout is the shorter timer.
                        let reason = if activity.has_started() { Reason::Idle } else { Reason::FirstRequestTimeout };
                        self.closes.record(reason, self.peer, "");
                    }
                    return;
                }
                _ = tokio::time::sleep_until(wake) => {
                    if closing.is_some() {
                        return;
                    }
                    match activity.verdict(self.deadline, idle) {
                        Verdict::Keep => {}
                        Verdict::NoRequest => {
                            self.closes.record(Reason::FirstRequestTimeout, self.peer, "no complete request head in server.handshake_timeout");
                            return;
                        }
                        Verdict::Idle => {
                            self.closes.record(Reason::Idle, self.peer, "");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(crate::clock::tokio_now() + grace);
                        }
                    }
                }
                _ = seat.evicted() => {
                    // Only a connection without a request in flight is replaceable.
                    self.closes.record(Reason::Evicted, self.peer, "replaced by a newer connection while idle");
                    return;
                }
                _ = stopped(&mut self.shutdown), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(crate::clock::tokio_now() + DRAIN_TIMEOUT);
                }
            }
        }
    }
}

/// How a connection without a verified place is counted and logged.
fn close_reason(refused: NoPlace) -> (Reason, &'static str) {
    match refused {
        NoPlace::Evicted => (Reason::Evicted, "replaced by a newer connection"),
        NoPlace::Limit => (
            Reason::Limit,
            "server.max_connections or server.max_connections_per_source reached",
        ),
    }
}

/// The answer to a request on a connection that found no verified place.
fn no_place(shared: &super::Shared, closes: &Closes, peer: SocketAddr, refused: NoPlace) -> Reply {
    let (reason, detail) = close_reason(refused);
    closes.record(reason, peer, detail);
    closing(http_error(
        shared,
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "too many connections; retry later",
    ))
}

enum Verdict {
    Keep,
    /// No request head before the deadline.
    NoRequest,
    /// Requests were served, none is in flight and none came for `idle_timeout`.
    Idle,
}

/// Requests of one connection, as its timers need them; updated by the service, read only
/// when a timer fires (no wake-up per request).
struct Activity {
    base: Instant,
    started: AtomicU64,
    in_flight: AtomicUsize,
    /// When the last request ended, in milliseconds since `base`.
    last_end_ms: AtomicU64,
}

/// Ends a request when dropped, also when hyper drops the request's future.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_end_ms
            .store(a.base.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            base: crate::clock::tokio_now(),
            started: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        // In flight before started: a timer that sees the request started also sees it busy.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.started.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    fn has_started(&self) -> bool {
        self.started.load(Ordering::SeqCst) > 0
    }

    fn idle_since(&self) -> Instant {
        self.base + Duration::from_millis(self.last_end_ms.load(Ordering::SeqCst))
    }

    /// When to look again.
    fn next_check(&self, first_deadline: Instant, idle: Duration) -> Instant {
        if !self.has_started() {
            first_deadline
        } else if self.in_flight.load(Ordering::SeqCst) > 0 {
            crate::clock::tokio_now() + idle
        } else {
            self.idle_since() + idle
        }
    }

    fn verdict(&self, first_deadline: Instant, idle: Duration) -> Verdict {
        let now = crate::clock::tokio_now();
        if !self.has_started() {
            if now >= first_deadline {
                Verdict::NoRequest
            } else {
                Verdict::Keep
            }
        } else if self.in_flight.load(Ordering::SeqCst) == 0 && now >= self.idle_since() + idle {
            Verdict::Idle
        } else {
            Verdict::Keep
        }
    }
}
