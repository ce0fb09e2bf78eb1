//! What the handlers hand the audit stream: one event per decision, built from the review
//! that made it and the request it answered. The handlers call in; [`crate::audit`] is a
//! leaf below them.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Runtime, Shared};
use crate::audit::{Event, Kind, RequestId};
use crate::outcome::{Outcome, Review, Source};

/// The request a decision answered: its correlation id (also in its log line), where it
/// came from and when it began.
pub(super) struct Request {
    pub(super) id: RequestId,
    pub(super) peer: SocketAddr,
    pub(super) started: Instant,
}

impl Request {
    pub(super) fn new(peer: SocketAddr, started: Instant) -> Request {
        Request {
            id: RequestId::random(),
            peer,
            started,
        }
    }

    /// An event of this request with no review behind it (rate limited, malformed).
    pub(super) fn refused(
        &self,
        shared: &Shared,
        kind: Kind,
        outcome: &str,
        reason: &str,
        method: Option<&str>,
    ) {
        shared.audit.record(Event {
            request_id: Some(self.id),
            source_address: Some(self.peer),
            latency: Some(self.started.elapsed()),
            method,
            answer: Some(Source::Local.label()),
            ..Event::new(kind, outcome, reason)
        });
    }
}

/// The credential a decision was about: the token as presented (never written; only its
/// keyed hash, when the review names no token id) and how it came.
pub(super) struct Credential<'a> {
    pub(super) token: Option<&'a str>,
    pub(super) method: &'static str,
}

/// Records `review`'s event; a review answered from the cache is only counted unless
/// `audit.cache_hits` asks for it, and a token that is not ours (a JWT for another
/// authenticator: no decision of this daemon) only counted. `issued_id` names the token a
/// login or an exchange handed out.
pub(super) fn record(
    shared: &Shared,
    rt: &Runtime,
    kind: Kind,
    req: &Request,
    review: &Review,
    credential: Credential<'_>,
    issued_id: Option<&str>,
) {
    let audit = &shared.audit;
    if !audit.enabled() {
        return;
    }
    if matches!(review.outcome, Outcome::NotOurs) {
        audit.count_not_ours();
        return;
    }
    if review.source == Source::Cache && !audit.wants_cache_hits() {
        audit.count_cache_hit();
        return;
    }
    let credential_id = match (&review.token_id, credential.token) {
        (Some(jti), _) => Some(format!("jti:{jti}")),
        (None, Some(token)) => Some(audit.credential_id(token)),
        (None, None) => None,
    };
    let groups = review.outcome.user().map(|u| u.group_names());
    audit.record(Event {
        request_id: Some(req.id),
        method: Some(credential.method),
        answer: Some(review.source.label()),
        directory: review.directory.and_then(|i| rt.config.directory_name(i)),
        source_address: Some(req.peer),
        credential_id,
        issued_id,
        latency: Some(req.started.elapsed()),
        username: review.username.as_deref(),
        groups: groups.as_deref(),
        ..Event::new(kind, review.outcome.label(), &review.detail)
    });
}

/// How a token presented for review came: an issued token or a basic one.
pub(super) fn method_of(token: &str) -> &'static str {
    if crate::issued::is_issued(token) {
        "issued"
    } else {
        "basic"
    }
}
