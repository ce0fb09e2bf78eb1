//! What a login on the login port answers, whichever way it came (a password at
//! `server/login.rs`, a Kerberos ticket at `server/negotiate.rs`): the signed token, the
//! 401 that offers the schemes, and the per-method counter. Below both, so neither imports
//! the other back.

use base64::Engine;
use hyper::header::{HeaderValue, CACHE_CONTROL, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde::Serialize;

use super::http::{count, http_error, json, Reply};
use super::{trail, Runtime, Shared};
use crate::audit::Kind;
use crate::metrics::MethodLabels;
use crate::outcome::{Outcome, PasswordNotice, Review, REJECTED, UNAVAILABLE};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Issued<'a> {
    token: &'a str,
    expiration_timestamp: &'a str,
    /// Only when there is something to tell: clients that read only the two fields above
    /// see the answer they always saw.
    #[serde(skip_serializing_if = "Option::is_none")]
    password_expiry: Option<PasswordExpiry<'a>>,
}

/// `passwordExpiry` of a login answer: when the password expires, or how many grace
/// logins are left once it has, and where to change it (`login.password_change_url`,
/// from the config only: nothing the directory sends).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswordExpiry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    expiration_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grace_logins_remaining: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change_url: Option<&'a str>,
}

impl<'a> PasswordExpiry<'a> {
    fn of(notice: PasswordNotice, rt: &'a Runtime) -> PasswordExpiry<'a> {
        let (expiration_timestamp, grace_logins_remaining) = match notice {
            PasswordNotice::ExpiresAt(t) => (Some(crate::issued::rfc3339(t)), None),
            PasswordNotice::GraceLogins(n) => (None, Some(n)),
        };
        PasswordExpiry {
            expiration_timestamp,
            grace_logins_remaining,
            change_url: rt
                .config
                .login
                .as_ref()
                .and_then(|l| l.password_change_url.as_deref()),
        }
    }
}

/// The answer to a login's review: 200 with a signed token (and `mutual`, a Kerberos
/// mutual-authentication token, in `WWW-Authenticate: Negotiate`), 401 otherwise; and the
/// login's audit event, naming the token handed out.
pub(super) fn issue(
    shared: &Shared,
    rt: &Runtime,
    review: &Review,
    login: Login<'_>,
    mutual: Option<&[u8]>,
) -> Reply {
    let (reply, issued) = answer(shared, rt, review, login.credential.method, mutual);
    match (&review.outcome, issued) {
        (Outcome::Accepted(_), None) => login.at.refused(
            shared,
            Kind::Login,
            "unavailable",
            "accepted, but no token could be signed",
            Some(login.credential.method),
        ),
        (_, issued) => trail::record(
            shared,
            rt,
            Kind::Login,
            login.at,
            review,
            login.credential,
            issued.as_deref(),
        ),
    }
    reply
}

/// A login as the audit stream sees it.
pub(super) struct Login<'a> {
    pub(super) at: &'a trail::Request,
    pub(super) credential: trail::Credential<'a>,
}

fn answer(
    shared: &Shared,
    rt: &Runtime,
    review: &Review,
    method: &'static str,
    mutual: Option<&[u8]>,
) -> (Reply, Option<String>) {
    match &review.outcome {
        Outcome::Accepted(_) => match review
            .account
            .as_deref()
            .map(|a| rt.config.tokens.issued.sign(a, crate::clock::wall()))
        {
            Some(Ok(issued)) => {
                count(shared, "issued");
                count_method(shared, method, "issued");
                let body = serde_json::to_vec(&Issued {
                    token: &issued.token,
                    expiration_timestamp: &issued.expiration_timestamp,
                    password_expiry: review.password.map(|n| PasswordExpiry::of(n, rt)),
                })
                .unwrap_or_default();
                let mut r = json(StatusCode::OK, body);
                r.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                if let Some(m) = mutual.and_then(header) {
                    r.headers_mut().insert(WWW_AUTHENTICATE, m);
                }
                (r, Some(issued.id))
            }
            _ => {
                tracing::error!("cannot sign a token: check tokens.signing_key_file");
                count(shared, "unavailable");
                count_method(shared, method, "unavailable");
                (unauthorized(shared, UNAVAILABLE, true), None)
            }
        },
        o @ (Outcome::Unavailable | Outcome::BackendError) => {
            count(shared, o.label());
            count_method(shared, method, "unavailable");
            (unauthorized(shared, UNAVAILABLE, true), None)
        }
        o => {
            count(shared, "rejected");
            count_method(shared, method, "rejected");
            (
                unauthorized(shared, o.error().unwrap_or(REJECTED), true),
                None,
            )
        }
    }
}

pub(super) fn count_method(shared: &Shared, method: &'static str, result: &'static str) {
    shared
        .metrics
        .login_methods
        .get_or_create(&MethodLabels { method, result })
        .inc();
}

/// 401 with `message`; `offer` (a POST's) names the schemes a login may use: Negotiate
/// first when a keytab is configured, then Basic.
pub(super) fn unauthorized(shared: &Shared, message: &str, offer: bool) -> Reply {
    let mut r = http_error(shared, StatusCode::UNAUTHORIZED, "Unauthorized", message);
    if offer {
        let kerberos = shared
            .current
            .load()
            .config
            .login
            .as_ref()
            .is_some_and(|l| l.negotiate.is_some());
        let h = r.headers_mut();
        if kerberos {
            h.append(WWW_AUTHENTICATE, HeaderValue::from_static("Negotiate"));
        }
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"kube-ldap-webhook\""),
        );
    }
    r
}

/// `WWW-Authenticate: Negotiate <base64>`: the mutual-authentication token of a 200.
pub(super) fn header(token: &[u8]) -> Option<HeaderValue> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(token);
    HeaderValue::from_str(&format!("Negotiate {b64}")).ok()
}
