//! The TokenReview handler: `admit` checks everything about the request that does not need
//! the token (path, method, size, body within the deadline, TokenReview shape); `respond`
//! evaluates the token and renders the answer. The client certificate was verified in the
//! TLS handshake before any of this runs.

use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};

use super::http::{http_error, json, method_not_allowed, not_found, read_body, Reply};
use super::{Runtime, Shared};
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
        return Err(not_found(shared));
    }
    if req.method() != Method::POST {
        return Err(method_not_allowed(shared, "POST", "only POST is allowed"));
    }
    let deadline = deadline_for(&req, cfg.request_timeout, started);
    let bytes = read_body(shared, req, deadline).await?;
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
        user = review.name().unwrap_or("-"),
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
