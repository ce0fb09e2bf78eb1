//! The HTTP of the listeners, beneath the handlers of `review.rs`, `login.rs` and `ops.rs`:
//!
//! - each TLS port's HTTP/1.1 and HTTP/2 settings, and what bounds one login connection's
//!   memory: the login port serves anyone, so its HTTP/2 streams, windows and HTTP/1.1
//!   buffer are small, and [`LOGIN_CONNECTION_BYTES`] adds up what a client can make one
//!   connection hold;
//! - replies: JSON, the `Status` body of an HTTP error (counted in `http_errors_total`),
//!   a connection that closes after the answer, a `HEAD` answer;
//! - a request body read within a size and a deadline, and the one answer for each way
//!   that can fail.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{
    HeaderValue, ALLOW, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use super::ratelimit::retry_after_secs;
use super::{trail, Shared};
use crate::config::Config;
use crate::metrics::{CodeLabels, EventLabels};
use crate::outcome::Review;
use crate::tokenreview;

/// Which listener: what it serves and whether a client certificate is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// TokenReviews from kube-apiserver; a client certificate from `client_ca_file`.
    Reviews,
    /// `POST /login` and `GET /login`; no client certificate.
    Login,
}

impl Port {
    pub(super) fn name(self) -> &'static str {
        match self {
            Port::Reviews => "reviews",
            Port::Login => "login",
        }
    }
}

/// hyper's header read timeout of the benchmark's baseline and other callers of
/// [`connection_builder`]; the daemon uses `idle_timeout` instead.
const DEFAULT_IDLE: Duration = Duration::from_secs(120);
/// The review port's HTTP/2 streams per connection: kube-apiserver sends its reviews on a
/// few connections.
const REVIEW_STREAMS: u32 = 256;
/// The login port's HTTP/2 streams per connection: a person's plugin sends one request.
const LOGIN_STREAMS: u32 = 4;
/// The login port's HTTP/2 flow-control windows. It never reads a body, so these are what
/// a client can make it buffer: at most the connection window per connection. 65,535 is
/// the protocol's initial connection window, below which no server can go.
const LOGIN_STREAM_WINDOW: u32 = 16 * 1024;
const LOGIN_CONN_WINDOW: u32 = 65_535;
/// What one login connection can make the daemon hold at most, in bytes: rustls (a
/// handshake message up to 64 KiB, a record being decrypted, 16 KiB of plaintext not yet
/// read, 64 KiB of output), then the larger of HTTP/2 (the connection window, a frame, a
/// header block being decoded, the header lists of its open streams, the HPACK table) and
/// HTTP/1.1 (its read buffer), and the task's own state. docs/architecture.md
/// ("Connections") multiplies it out per listener.
pub const LOGIN_CONNECTION_BYTES: usize = TLS_BYTES
    + const_max(
        LOGIN_CONN_WINDOW as usize
            + 16 * 1024
            + (LOGIN_STREAMS as usize + 1) * LOGIN_HEADER_LIST as usize
            + 4096,
        LOGIN_READ_BUFFER,
    )
    + 8 * 1024;
/// rustls' buffers of one connection (see [`LOGIN_CONNECTION_BYTES`]).
const TLS_BYTES: usize = (64 + 18 + 16 + 64) * 1024;

const fn const_max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}
/// The login port's HTTP/1.1 read buffer: a request head must fit (hyper's least is 8 KiB;
/// its default, 400 KiB, would be pinned by every slow anonymous head).
const LOGIN_READ_BUFFER: usize = 32 * 1024;
/// The largest request head (HTTP/2 header list) on the login port.
const LOGIN_HEADER_LIST: u32 = 16 * 1024;

/// The ops listener's open connections at most. Prometheus, a probe and a person with curl
/// need a handful.
pub const OPS_MAX_CONNECTIONS: usize = 64;
/// The read buffer of an ops connection: a request head must fit (hyper's least is 8 KiB;
/// its default, 400 KiB, is what each of the 64 connections could otherwise hold).
pub(super) const OPS_READ_BUFFER: usize = 16 * 1024;
/// An ops connection: its read buffer, the answer being written (`/metrics`, a few tens of
/// KiB) and the task.
const OPS_CONNECTION_BYTES: usize = OPS_READ_BUFFER + 64 * 1024 + 8 * 1024;
/// A login in flight beyond its connection: the directory's answers about one account
/// and the token signed for it.
const LOGIN_REQUEST_BYTES: usize = 64 * 1024;

/// What clients without a client certificate can make the listeners of `config` hold at
/// most, in bytes: the review port's handshakes, every place of the login port and its
/// requests in flight, the ops listener's connections. docs/architecture.md
/// ("Connections") and the unit's `MemoryMax=` start from it.
pub fn anonymous_worst_case(config: &Config) -> u64 {
    let s = &config.server;
    let review = s.max_handshakes * TLS_BYTES;
    let login = config.login.as_ref().map_or(0, |l| {
        let busy = l.max_in_flight.min(s.max_connections);
        (s.max_handshakes + busy) * LOGIN_CONNECTION_BYTES + busy * LOGIN_REQUEST_BYTES
    });
    let ops = s
        .ops_listen
        .map_or(0, |_| OPS_MAX_CONNECTIONS * OPS_CONNECTION_BYTES);
    (review + login + ops) as u64
}

/// HTTP/1.1 and HTTP/2 settings of a TokenReview connection (also used by the benchmark's
/// baseline server, so that both stand on the same stack).
pub fn connection_builder() -> auto::Builder<TokioExecutor> {
    builder(DEFAULT_IDLE, Port::Reviews)
}

pub(super) fn builder(idle: Duration, port: Port) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's header timer runs from the end of one HTTP/1.1 response to the end of the next
    // request head: the idle timeout between requests (the first one is ours to time).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(REVIEW_STREAMS)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if port == Port::Reviews {
        // Without this, hyper reads from the connection while a request is in flight, to
        // notice a client that left; the request body still shares hyper's read buffer
        // then, so that read takes a fresh 8 KiB buffer at every review. A review is
        // bounded by its deadline, and kube-apiserver gains nothing from having it cut
        // short: it runs to its end and the answer to a closed connection is dropped.
        // The login port keeps the check: its anonymous clients' logins stop when they go.
        builder.http1().half_close(true);
        // hyper would hand the TLS stream the head and the body as two slices of one
        // vectored write, for which rustls collects the slices in a vector of its own: an
        // allocation at every review. Copying the body (a TokenReview, under a KiB) after
        // the head in hyper's write buffer, which is kept, costs none.
        builder.http1().writev(false);
    }
    if port == Port::Login {
        // Anonymous clients: what one connection can make the daemon hold stays small
        // (docs/architecture.md, "Connections").
        builder.http1().max_buf_size(LOGIN_READ_BUFFER);
        builder
            .http2()
            .max_concurrent_streams(LOGIN_STREAMS)
            .initial_stream_window_size(LOGIN_STREAM_WINDOW)
            .initial_connection_window_size(LOGIN_CONN_WINDOW)
            .max_header_list_size(LOGIN_HEADER_LIST);
    }
    builder
}

/// Every answer the listeners write: the body is always whole in memory.
pub(super) type Reply = Response<Full<Bytes>>;

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// An HTTP error with a Kubernetes `Status` body, counted by status code.
pub(super) fn http_error(
    shared: &Shared,
    status: StatusCode,
    reason: &str,
    message: &str,
) -> Reply {
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

/// 404 for any path but the handler's own.
pub(super) fn not_found(shared: &Shared) -> Reply {
    http_error(shared, StatusCode::NOT_FOUND, "NotFound", "not found")
}

/// 405, with the methods that are `allow`ed in the `Allow` header.
pub(super) fn method_not_allowed(shared: &Shared, allow: &'static str, message: &str) -> Reply {
    let mut r = http_error(
        shared,
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        message,
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// The rest of an unread body is still on the wire: the connection cannot carry another
/// request, and saying so keeps the client from reusing it.
pub(super) fn closing(mut r: Reply) -> Reply {
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// 413 for a body over the limit (or any body where none is read), and the connection
/// closes: the rest is still on the wire.
pub(super) fn too_large(shared: &Shared, message: &str) -> Reply {
    closing(http_error(
        shared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        message,
    ))
}

/// The answer to a `HEAD`: the headers of the `GET` answer, no body (HTTP/2 clients treat
/// DATA frames on a `HEAD` answer as a protocol error).
pub(super) fn without_body(reply: Reply) -> Reply {
    let (mut parts, body) = reply.into_parts();
    let len = Body::size_hint(&body).exact().unwrap_or(0);
    parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// The largest request body read (a TokenReview is a few KiB).
const MAX_BODY: usize = 64 * 1024;
/// Oversized bodies up to this size are read and thrown away before the 413, so that a
/// client still writing its body sees the answer instead of a broken pipe; larger ones
/// (or a `Content-Length` announcing one) are cut off at once.
const DRAIN_MAX: usize = 4 * 1024 * 1024;
const TOO_LARGE: &str = "request body is larger than 64 KiB";

enum BodyError {
    TooLarge,
    Timeout,
    Read,
}

/// The body of `req`, at most [`MAX_BODY`] bytes, read before `deadline`; or the answer
/// that refuses it: 413 (closing) for a body over the limit, 408 (closing) for one that
/// did not arrive in time, 400 for one that could not be read.
pub(super) async fn read_body(
    shared: &Shared,
    req: Request<Incoming>,
    deadline: Instant,
) -> Result<Bytes, Reply> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return Err(too_large(shared, TOO_LARGE));
    }
    read_frames(req.into_body(), deadline)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => too_large(shared, TOO_LARGE),
            BodyError::Read => http_error(
                shared,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "could not read the request body",
            ),
            BodyError::Timeout => closing(http_error(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "the request body did not arrive in time",
            )),
        })
}

/// Whether `req` announces a body, read or not: only a stream already ended (or an HTTP/2
/// stream that declared `content-length: 0`) has none.
pub(super) fn announces_body(req: &Request<Incoming>) -> bool {
    let body = req.body();
    !(body.is_end_stream() || body.size_hint().exact() == Some(0))
}

/// Reads a body of at most [`MAX_BODY`] bytes before `deadline`. A body that arrives in one
/// frame, as it usually does, is not copied.
async fn read_frames(mut body: Incoming, deadline: Instant) -> Result<Bytes, BodyError> {
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

/// The request's `Authorization` header, the request itself dropped: nothing else of it
/// is read.
pub(super) fn authorization(req: Request<Incoming>) -> Option<zeroize::Zeroizing<String>> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| zeroize::Zeroizing::new(v.to_string()))
}

/// The credential of an `Authorization` header with `scheme` (case-insensitive).
pub(super) fn credential<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    (s.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

/// 429 from the login port's per-source rate limit, with `Retry-After`.
pub(super) fn too_many(shared: &Shared, wait: Duration) -> Reply {
    let mut r = http_error(
        shared,
        StatusCode::TOO_MANY_REQUESTS,
        "TooManyRequests",
        "too many login attempts from this address; retry later",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    r
}

/// The log line of a request on the login port: like a review's, never a credential.
pub(super) fn log(what: &'static str, method: &'static str, review: &Review, at: &trail::Request) {
    tracing::info!(
        request_id = %at.id,
        method,
        outcome = review.outcome.label(),
        source = review.source.label(),
        user = review.name().unwrap_or("-"),
        groups = review.outcome.user().map_or(0, |u| u.group_count()),
        peer = %at.peer,
        latency_us = at.started.elapsed().as_micros() as u64,
        detail = %review.detail,
        "{what}"
    );
}

/// `kube_ldap_webhook_logins_total{event}`: the login port's requests, exchanges included.
pub(super) fn count(shared: &Shared, event: &'static str) {
    shared
        .metrics
        .logins
        .get_or_create(&EventLabels { event })
        .inc();
}
