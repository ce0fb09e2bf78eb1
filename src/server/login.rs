//! The login endpoint, on its own listener (`login.listen`), for people:
//!
//! - `POST /login` with `Authorization: Basic base64(username:password)`: the policy of a
//!   review of that basic token (lockout, single flight, directory, identity), then a
//!   signed token. 200 `{"token","expirationTimestamp"}`; 401 with a `Status` body whose
//!   message is a review's `status.error` (`Authentication backend unavailable` included,
//!   as the contract fixes it); 429 with `Retry-After`. Every POST spends one of the
//!   source's logins.
//! - `GET /login` with `Authorization: Bearer <issued token>`: 204 when a review would
//!   accept the token now, 401 (same texts) when not, 503 when the directory cannot say: the
//!   plugin then keeps its token and leaves the verdict to kube-apiserver. Only a failed
//!   check spends a login.
//!
//! No request body is ever read here: credentials travel in the `Authorization` header, and
//! a request that announces a body (a `Content-Length` above 0, chunked, an HTTP/2 stream
//! left open) is answered 413 at once, before anything else. Anyone may connect, so nothing
//! an anonymous client sends stays in memory beyond the connection's buffers.
//!
//! - `POST /login` with `Authorization: Negotiate <base64>` (with `login.keytab_file`): a
//!   Kerberos login ([`super::negotiate`]), answered as a password login is.
//!
//! With `login.keytab_file`, every 401 of a `POST` offers `WWW-Authenticate: Negotiate`
//! beside `Basic`, so that clients know to try their ticket.
//!
//! Neither the header nor the token is ever logged; the log line is like a review's, with
//! the way the login went (`method`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};

use super::http::{
    announces_body, authorization, count, credential, http_error, log, method_not_allowed,
    not_found, too_large, too_many, Reply,
};
use super::in_flight::InFlight;
use super::login_answer::{issue, unauthorized, Login};
use super::ratelimit::Rate;
use super::{trail, Runtime, Shared};
use crate::audit::Kind;
use crate::outcome::{Outcome, REJECTED, UNAVAILABLE};

pub(crate) const PATH: &str = "/login";

/// `login_methods_total`'s method of a Basic login.
const PASSWORD: &str = "password";
/// The audit `method` of a `GET /login` check of an issued token.
const CHECK: &str = "login_check";
const RATE_LIMITED: &str = "login.rate: too many logins from this address";

/// Every request of the login port: a body is refused before anything else, then the
/// port-wide cap on requests in flight (`login.max_in_flight`) applies.
pub(super) async fn handle_login(
    shared: &Shared,
    in_flight: &Arc<InFlight>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Reply {
    if announces_body(&req) {
        count(shared, "body_refused");
        return too_large(
            shared,
            "a login request has no body: credentials go in the Authorization header",
        );
    }
    let limit = shared
        .current
        .load()
        .config
        .login
        .as_ref()
        .map_or(1, |l| l.max_in_flight);
    match in_flight.enter(limit) {
        Some(_ticket) => login_request(shared, peer, req).await,
        None => busy(shared),
    }
}

async fn login_request(shared: &Shared, peer: SocketAddr, req: Request<Incoming>) -> Reply {
    let started = crate::clock::now();
    let rt = shared.current.load_full();
    let Some(login) = rt.config.login.as_ref() else {
        return not_found(shared);
    };
    if req.uri().path() != PATH {
        return super::issuer::handle(shared, &rt, peer, req, started).await;
    }
    let rate = Rate {
        per_minute: login.rate,
        burst: login.burst,
    };
    let deadline = started + rt.config.server.request_timeout;
    let method = req.method().clone();
    let limited = match method {
        Method::POST => shared.login_rate.take(peer.ip(), rate, started),
        Method::GET => shared.login_rate.check(peer.ip(), rate, started),
        _ => {
            return method_not_allowed(
                shared,
                "GET, POST",
                "only POST (log in) and GET (check a token) are allowed",
            )
        }
    };
    let at = trail::Request::new(peer, started);
    if let Err(wait) = limited {
        count(shared, "rate_limited");
        let (kind, method) = match method {
            Method::POST => (Kind::Login, None),
            _ => (Kind::Review, Some(CHECK)),
        };
        at.refused(shared, kind, "rate_limited", RATE_LIMITED, method);
        return too_many(shared, wait);
    }
    let authorization = authorization(req);
    let negotiate = match (&login.negotiate, authorization.as_deref()) {
        (Some(acceptor), Some(v)) if method == Method::POST => {
            credential(v, "negotiate").map(|c| (acceptor.clone(), c))
        }
        _ => None,
    };
    let credential = authorization.as_deref().and_then(|v| {
        credential(
            v,
            if method == Method::POST {
                "basic"
            } else {
                "bearer"
            },
        )
    });
    let reply = match (method, credential) {
        (Method::POST, Some(c)) => post(shared, &rt, c, deadline, &at).await,
        (Method::POST, None) => match negotiate {
            Some((acceptor, c)) => {
                let at = super::negotiate::At { deadline, req: &at };
                super::negotiate::post(shared, &rt, acceptor, c, at).await
            }
            None => {
                let why = "no Basic (or Negotiate) credential in Authorization";
                at.refused(shared, Kind::Login, "rejected", why, None);
                unauthorized(shared, REJECTED, true)
            }
        },
        (_, Some(t)) if crate::issued::is_issued(t) => {
            check(shared, &rt, t, deadline, &at, rate).await
        }
        (_, _) => {
            let _ = shared.login_rate.take(peer.ip(), rate, started);
            count(shared, "check_rejected");
            let why = "no issued token in Authorization: Bearer";
            at.refused(shared, Kind::Review, "rejected", why, Some(CHECK));
            unauthorized(shared, REJECTED, false)
        }
    };
    reply
}

async fn post(
    shared: &Shared,
    rt: &Runtime,
    basic: &str,
    deadline: Instant,
    at: &trail::Request,
) -> Reply {
    let review = rt.authenticator.login(basic, deadline).await;
    let credential = trail::Credential {
        token: Some(basic),
        method: PASSWORD,
    };
    let reply = issue(shared, rt, &review, Login { at, credential }, None);
    log("login", PASSWORD, &review, at);
    reply
}

async fn check(
    shared: &Shared,
    rt: &Runtime,
    token: &str,
    deadline: Instant,
    at: &trail::Request,
    rate: Rate,
) -> Reply {
    let (peer, started) = (at.peer, at.started);
    let review = rt.authenticator.check(token, deadline).await;
    let reply = match &review.outcome {
        Outcome::Accepted(_) => {
            count(shared, "check_accepted");
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NO_CONTENT;
            r
        }
        Outcome::Unavailable | Outcome::BackendError => unavailable(shared),
        o => {
            let _ = shared.login_rate.take(peer.ip(), rate, started);
            count(shared, "check_rejected");
            unauthorized(shared, o.error().unwrap_or(REJECTED), false)
        }
    };
    log("login check", "token", &review, at);
    let credential = trail::Credential {
        token: Some(token),
        method: CHECK,
    };
    trail::record(shared, rt, Kind::Review, at, &review, credential, None);
    reply
}

/// `login.max_in_flight` requests are in flight on the port: 503 at once.
fn busy(shared: &Shared) -> Reply {
    count(shared, "busy");
    let mut r = http_error(
        shared,
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "too many logins in flight; retry later",
    );
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn unavailable(shared: &Shared) -> Reply {
    http_error(
        shared,
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        UNAVAILABLE,
    )
}
#[cfg(test)]
mod tests {
    use super::credential;

    #[test]
    fn the_scheme_is_case_insensitive_and_must_match() {
        assert_eq!(
            credential("Basic YWxpY2U6eA==", "basic"),
            Some("YWxpY2U6eA==")
        );
        assert_eq!(
            credential("bearer  v4.public.x ", "bearer"),
            Some("v4.public.x")
        );
        assert_eq!(credential("Bearer v4.public.x", "basic"), None);
        assert_eq!(credential("Basic", "basic"), None);
        assert_eq!(credential("Basic ", "basic"), None);
    }
}
