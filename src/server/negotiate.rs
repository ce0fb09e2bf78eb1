//! `POST /login` with `Authorization: Negotiate <base64>` (`login.keytab_file`): the one
//! GSSAPI call on tokio's blocking pool, then the login policy of the principal, answered
//! as a password login is (the same 200, the same 401 texts).
//!
//! The blocking calls are bounded by the login port's own cap on requests in flight
//! (`login.max_in_flight`, which every request of the port holds a place under), so a
//! flood of tickets cannot fill the blocking pool; each call is local work (decrypting the
//! ticket with the keytab's key, one replay-cache write) and its wait ends at the request's
//! deadline. Everything [`crate::negotiate`] refuses (and a realm no directory maps) is
//! refused here without LDAP traffic, with the generic error, and counted in
//! `login_methods_total{method="negotiate", result=<why>}`.

use std::sync::Arc;
use std::time::Instant;

use super::http::Reply;
use super::http::{count, log};
use super::login_answer::{count_method, issue, unauthorized, Login};
use super::{trail, Runtime, Shared};
use crate::audit::Kind;
use crate::negotiate::{self, gss::Keytab, Refusal};
use crate::outcome::{REJECTED, UNAVAILABLE};

/// `login_methods_total`'s method of a Kerberos login.
const NEGOTIATE: &str = "negotiate";

/// The request, and its deadline.
pub(super) struct At<'a> {
    pub(super) deadline: Instant,
    pub(super) req: &'a trail::Request,
}

pub(super) async fn post(
    shared: &Shared,
    rt: &Runtime,
    acceptor: Arc<Keytab>,
    credential: &str,
    at: At<'_>,
) -> Reply {
    let credential = zeroize::Zeroizing::new(credential.to_string());
    let call = tokio::task::spawn_blocking(move || {
        negotiate::authenticate(acceptor.as_ref(), &credential)
    });
    let deadline = tokio::time::Instant::from_std(at.deadline);
    let accepted = match tokio::time::timeout_at(deadline, call).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(_)) => Err(Refusal::Acceptor("the GSSAPI call panicked".into())),
        Err(_) => Err(Refusal::Acceptor(
            "deadline reached waiting for GSSAPI".into(),
        )),
    };
    let authenticated = match accepted {
        Ok(a) if rt.config.kerberos_login(&a.principal).is_none() => {
            return refused(shared, Refusal::Realm(a.principal), &at)
        }
        Ok(a) => a,
        Err(refusal) => return refused(shared, refusal, &at),
    };
    let review = rt
        .authenticator
        .login_principal(&authenticated.principal, at.deadline)
        .await;
    let login = Login {
        at: at.req,
        credential: trail::Credential {
            token: None,
            method: NEGOTIATE,
        },
    };
    let reply = issue(shared, rt, &review, login, authenticated.reply.as_deref());
    log("login", NEGOTIATE, &review, at.req);
    reply
}

/// A refusal made without the directory: the generic 401 (an acceptor that failed on its
/// own is the operator's problem: logged as an error, answered as an unavailable backend).
fn refused(shared: &Shared, refusal: Refusal, at: &At<'_>) -> Reply {
    let req = at.req;
    let latency_us = req.started.elapsed().as_micros() as u64;
    // The audit reason is the refusal's kind: its text may name a principal.
    let reason = format!("Kerberos: {}", refusal.label());
    if let Refusal::Acceptor(_) = refusal {
        req.refused(shared, Kind::Login, "unavailable", &reason, Some(NEGOTIATE));
        tracing::error!(request_id = %req.id, method = NEGOTIATE, outcome = "unavailable",
            source = "local", peer = %req.peer, latency_us, detail = %refusal, "login");
        count(shared, "unavailable");
        count_method(shared, NEGOTIATE, refusal.label());
        return unauthorized(shared, UNAVAILABLE, true);
    }
    req.refused(shared, Kind::Login, "rejected", &reason, Some(NEGOTIATE));
    tracing::info!(request_id = %req.id, method = NEGOTIATE, outcome = "rejected",
        source = "local", peer = %req.peer, latency_us, detail = %refusal, "login");
    count(shared, "rejected");
    count_method(shared, NEGOTIATE, refusal.label());
    unauthorized(shared, REJECTED, true)
}
