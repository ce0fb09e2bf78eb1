//! The JWT issuer (`[jwt]`) on the login listener, behind the same guards as the login
//! endpoint: a request announcing a body is refused (413) before anything else, the
//! port-wide in-flight cap applies, and only what reaches the directory spends the source's
//! login budget.
//!
//! - `GET {issuer path}/.well-known/openid-configuration` and `GET {issuer path}/openid/v1/jwks`:
//!   the documents kube-apiserver reads, rendered once per configuration and cacheable for
//!   [`CACHE_MAX_AGE`]. Nothing in the request is read but its method and path.
//! - `POST /token` with `Authorization: Bearer <issued token>`: the review of that session
//!   without the answer cache ([`Authenticator::exchange`]), then an ES256 JWT. 401 with a
//!   review's text otherwise.
//!
//! Neither the session token nor the JWT is ever logged.
//!
//! [`Authenticator::exchange`]: crate::authenticator::Authenticator::exchange

use std::net::SocketAddr;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, WWW_AUTHENTICATE};
use hyper::{Method, Request, StatusCode};
use serde::Serialize;

use super::http::{
    authorization, count, credential, http_error, json, log, method_not_allowed, not_found,
    too_many, Reply,
};
use super::ratelimit::Rate;
use super::{trail, Runtime, Shared};
use crate::audit::Kind;
use crate::jwt::{Holder, Issuer, SignError, CACHE_MAX_AGE, DISCOVERY_PATH, JWKS_PATH};
use crate::outcome::{Outcome, Source, REJECTED, UNAVAILABLE};

/// Where sessions are exchanged for JWTs; at the root, like `/login`, whatever the issuer's
/// path.
pub(super) const TOKEN_PATH: &str = "/token";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exchanged<'a> {
    token: &'a str,
    expiration_timestamp: &'a str,
}

/// A request to the login port for another path than `/login`.
pub(super) async fn handle(
    shared: &Shared,
    rt: &Runtime,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> Reply {
    let Some(issuer) = rt.config.jwt.as_deref() else {
        return not_found(shared);
    };
    let path = req.uri().path();
    if path == TOKEN_PATH {
        if req.method() != Method::POST {
            return method_not_allowed(shared, "POST", "only POST exchanges a session for a JWT");
        }
        return exchange(shared, rt, issuer, peer, req, started).await;
    }
    let body = match path.strip_prefix(issuer.path.as_str()) {
        Some(DISCOVERY_PATH) => issuer.discovery(),
        Some(JWKS_PATH) => issuer.jwks(),
        _ => return not_found(shared),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return method_not_allowed(shared, "GET, HEAD", "only GET reads the issuer's documents");
    }
    let mut r = json(StatusCode::OK, body.to_vec());
    let max_age = format!("public, max-age={}", CACHE_MAX_AGE.as_secs());
    if let Ok(v) = HeaderValue::from_str(&max_age) {
        r.headers_mut().insert(CACHE_CONTROL, v);
    }
    r
}

async fn exchange(
    shared: &Shared,
    rt: &Runtime,
    issuer: &Issuer,
    peer: SocketAddr,
    req: Request<Incoming>,
    started: Instant,
) -> Reply {
    let Some(login) = rt.config.login.as_ref() else {
        return not_found(shared);
    };
    let rate = Rate {
        per_minute: login.rate,
        burst: login.burst,
    };
    let at = trail::Request::new(peer, started);
    if let Err(wait) = shared.login_rate.check(peer.ip(), rate, started) {
        count(shared, "jwt_rate_limited");
        let why = "login.rate: too many logins from this address";
        at.refused(shared, Kind::TokenExchange, "rate_limited", why, None);
        return too_many(shared, wait);
    }
    let authorization = authorization(req);
    let Some(session) = authorization
        .as_deref()
        .and_then(|v| credential(v, "bearer"))
    else {
        count(shared, "jwt_rejected");
        let why = "no session token in Authorization: Bearer";
        at.refused(shared, Kind::TokenExchange, "rejected", why, None);
        return unauthorized(shared, REJECTED);
    };
    let deadline = started + rt.config.server.request_timeout;
    let (review, expires) = rt.authenticator.exchange(session, deadline).await;
    // A session whose signature checked reached the directory: that spends the budget
    // (a forged or garbage token costs a signature check only).
    if review.source != Source::Local {
        let _ = shared.login_rate.take(peer.ip(), rate, started);
    }
    let (reply, jwt) = match (&review.outcome, expires) {
        (Outcome::Accepted(user), Some(expires)) => signed(shared, issuer, user.json(), expires),
        (o @ (Outcome::Unavailable | Outcome::BackendError), _) => {
            count(shared, o.label());
            (unauthorized(shared, UNAVAILABLE), None)
        }
        (o, _) => {
            count(shared, "jwt_rejected");
            (unauthorized(shared, o.error().unwrap_or(REJECTED)), None)
        }
    };
    log("token exchange", "token", &review, &at);
    match (&review.outcome, jwt) {
        (Outcome::Accepted(_), None) => {
            let why = "the session was accepted, but no JWT could be signed for it";
            at.refused(shared, Kind::TokenExchange, "rejected", why, Some("issued"));
        }
        (_, jwt) => {
            let credential = trail::Credential {
                token: Some(session),
                method: "issued",
            };
            let kind = Kind::TokenExchange;
            trail::record(shared, rt, kind, &at, &review, credential, jwt.as_deref());
        }
    }
    reply
}

/// The JWT for an accepted session whose review answered `user_json`, and its id.
fn signed(
    shared: &Shared,
    issuer: &Issuer,
    user_json: &str,
    session_expires: std::time::SystemTime,
) -> (Reply, Option<String>) {
    let signed = serde_json::from_str::<Holder>(user_json)
        .map_err(|_| SignError::Sign)
        .and_then(|h| issuer.sign(&h, session_expires, crate::clock::wall()));
    match signed {
        Ok(jwt) => {
            count(shared, "jwt_issued");
            let expiration = crate::issued::rfc3339(jwt.expires);
            let body = serde_json::to_vec(&Exchanged {
                token: &jwt.token,
                expiration_timestamp: &expiration,
            })
            .unwrap_or_default();
            let mut r = json(StatusCode::OK, body);
            r.headers_mut()
                .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            (r, Some(jwt.id))
        }
        Err(SignError::SessionOver) => {
            count(shared, "jwt_rejected");
            let expired = Outcome::TokenExpired.error().unwrap_or(REJECTED);
            (unauthorized(shared, expired), None)
        }
        Err(e) => {
            tracing::error!("cannot sign a JWT: {e}");
            count(shared, "unavailable");
            (unauthorized(shared, UNAVAILABLE), None)
        }
    }
}

fn unauthorized(shared: &Shared, message: &str) -> Reply {
    let mut r = http_error(shared, StatusCode::UNAUTHORIZED, "Unauthorized", message);
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"kube-ldap-webhook\""),
    );
    r
}
