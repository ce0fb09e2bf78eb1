//! The TokenReview handler: `admit` checks everything about the request that does not need
//! the token (path, method, size, body within the deadline, TokenReview shape); `respond`
//! evaluates the token and renders the answer. The client certificate was verified in the
//! TLS handshake before any of this runs.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use super::{Runtime, Shared};
use crate::metrics::CodeLabels;
use crate::tokenreview;

pub(crate) const MAX_BODY: usize = 64 * 1024;

pub(super) type Reply = Response<Full<Bytes>>;

pub(super) fn json(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

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

/// Oversized bodies up to this size are read and thrown away before the 413, so that a
/// client still writing its body sees the answer instead of a broken pipe; larger ones
/// are cut off at once.
pub(super) const DRAIN_MAX: usize = 4 * 1024 * 1024;

pub(super) enum BodyError {
    TooLarge,
    Timeout,
    Read,
}

/// Reads a body of at most [`MAX_BODY`] bytes before `deadline`. A body that arrives in one
/// frame, as it usually does, is not copied.
pub(super) async fn read_body(mut body: Incoming, deadline: Instant) -> Result<Bytes, BodyError> {
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

/// 413 for a body over the limit, and the connection closes: the rest is still on the wire.
pub(super) fn too_large(shared: &Shared) -> Reply {
    closing(http_error(
        shared,
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        "request body is larger than 64 KiB",
    ))
}

/// The rest of an unread body is still on the wire: the connection cannot carry another
/// request, and saying so keeps the client from reusing it.
pub(super) fn closing(mut r: Reply) -> Reply {
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

/// A request that may be evaluated: a well-formed TokenReview and its deadline.
struct Admitted {
    review: tokenreview::Request,
    deadline: Instant,
}

pub(super) async fn handle_review(shared: &Shared, req: Request<Incoming>) -> Reply {
    let started = crate::clock::now();
    let rt = shared.current.load_full();
    match admit(shared, &rt, req, started).await {
        Ok(admitted) => respond(&rt, admitted, started).await,
        Err(reply) => reply,
    }
}

async fn admit(
    shared: &Shared,
    rt: &Runtime,
    req: Request<Incoming>,
    started: Instant,
) -> Result<Admitted, Reply> {
    let cfg = &rt.config.server;
    if req.uri().path() != cfg.path {
        return Err(http_error(
            shared,
            StatusCode::NOT_FOUND,
            "NotFound",
            "not found",
        ));
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
        return Err(r);
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_MAX as u64) {
        return Err(too_large(shared));
    }
    let deadline = deadline_for(&req, cfg.request_timeout, started);
    let bytes = match read_body(req.into_body(), deadline).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return Err(too_large(shared)),
        Err(BodyError::Read) => {
            return Err(http_error(
                shared,
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "could not read the request body",
            ))
        }
        Err(BodyError::Timeout) => {
            return Err(closing(http_error(
                shared,
                StatusCode::REQUEST_TIMEOUT,
                "Timeout",
                "the request body did not arrive in time",
            )))
        }
    };
    match tokenreview::parse(&bytes) {
        Ok(review) => Ok(Admitted { review, deadline }),
        Err(e) => Err(http_error(
            shared,
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &e.to_string(),
        )),
    }
}

async fn respond(rt: &Runtime, admitted: Admitted, started: Instant) -> Reply {
    let Admitted {
        review: review_req,
        deadline,
    } = admitted;
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
