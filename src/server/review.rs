//! The TokenReview handler: `admit` checks everything about the request that does not need
//! the token (path, method, size, body within the deadline, TokenReview shape); `respond`
//! evaluates the token and renders the answer. The client certificate was verified in the
//! TLS handshake before any of this runs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::http::{http_error, json, method_not_allowed, not_found, read_body, Reply};
use super::{trail, Runtime, Shared};
use crate::audit::Kind;
use crate::tokenreview::{self, parse_go_duration};

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

/// A request that may be evaluated: a body within the limits, and its deadline. The
/// TokenReview is parsed from the body where it is used, borrowing from it.
struct Admitted {
    body: Bytes,
    deadline: Instant,
}

pub(super) async fn handle_review(
    shared: &Shared,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    let at = trail::Request::new(peer, crate::clock::now());
    let rt = shared.current.load_full();
    let admitted = match admit(shared, &rt, req, at.started).await {
        Ok(admitted) => admitted,
        Err(reply) => return reply,
    };
    match tokenreview::parse(&admitted.body) {
        Ok(review) => respond(shared, &rt, review, admitted.deadline, &at).await,
        Err(e) => {
            // From kube-apiserver (its certificate checked): a decision worth a trace.
            let why = e.to_string();
            at.refused(shared, Kind::Review, "invalid_request", &why, None);
            http_error(shared, StatusCode::BAD_REQUEST, "BadRequest", &why)
        }
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
        return Err(not_found(shared));
    }
    if req.method() != Method::POST {
        return Err(method_not_allowed(shared, "POST", "only POST is allowed"));
    }
    let deadline = deadline_for(&req, cfg.request_timeout, started);
    let body = read_body(shared, req, deadline).await?;
    Ok(Admitted { body, deadline })
}

async fn respond(
    shared: &Shared,
    rt: &Runtime,
    review_req: tokenreview::Request<'_>,
    deadline: Instant,
    at: &trail::Request,
) -> Reply {
    let review = rt.authenticator.review(&review_req.token, deadline).await;
    let groups = review.outcome.user().map_or(0, |u| u.group_count());
    let stale_secs = match review.source {
        crate::outcome::Source::Stale(age) => Some(age.as_secs()),
        _ => None,
    };
    tracing::info!(
        request_id = %at.id,
        outcome = review.outcome.label(),
        source = review.source.label(),
        user = review.name().unwrap_or("-"),
        groups,
        stale_secs,
        latency_us = at.started.elapsed().as_micros() as u64,
        detail = %review.detail,
        "review"
    );
    let credential = trail::Credential {
        token: Some(&review_req.token),
        method: trail::method_of(&review_req.token),
    };
    trail::record(shared, rt, Kind::Review, at, &review, credential, None);
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
